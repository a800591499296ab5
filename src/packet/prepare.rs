//! The ILP Prepare packet (type 12): parsed zero-copy, built into one exact-size buffer.

use super::{
    open_envelope, read_data, seal, validate_address, Address, PacketError, PacketType, Timestamp,
    MAX_DATA_LEN, TIMESTAMP_LEN,
};
use crate::oer::{var_octet_string_size, OerWrite};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Fixed part of a Prepare's contents: amount, expiresAt, executionCondition.
const FIXED_LEN: usize = 8 + TIMESTAMP_LEN + 32;

/// A valid Prepare. Fields are read from the wire bytes on demand; `expires_at` is parsed once.
#[derive(Clone, PartialEq, Eq)]
pub struct Prepare {
    buf: Bytes,
    /// Offset of the contents (the amount field) in `buf`.
    body: usize,
    expires_at: Timestamp,
    destination: (usize, usize),
    data: (usize, usize),
}

impl Prepare {
    /// Parses and fully validates a Prepare: envelope length, address (RFC 15), timestamp,
    /// data size, no trailing bytes.
    #[inline]
    pub fn parse(buf: Bytes) -> Result<Prepare, PacketError> {
        let (mut r, body) = open_envelope(&buf, PacketType::Prepare)?;
        r.skip(8)?;
        let expires_at = Timestamp::parse(r.read_array::<TIMESTAMP_LEN>()?)?;
        r.skip(32)?;
        let dest = r.read_var_octet_string()?;
        validate_address(dest)?;
        let dest_end = r.position();
        let dest_start = dest_end - dest.len();
        let (data_start, data_end) = read_data(&mut r)?;
        r.finish()?;
        Ok(Prepare {
            body,
            expires_at,
            destination: (body + dest_start, body + dest_end),
            data: (body + data_start, body + data_end),
            buf,
        })
    }

    #[inline]
    pub fn amount(&self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buf[self.body..self.body + 8]);
        u64::from_be_bytes(a)
    }

    #[inline]
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    #[inline]
    pub fn execution_condition(&self) -> &[u8; 32] {
        let start = self.body + 8 + TIMESTAMP_LEN;
        self.buf[start..start + 32].try_into().unwrap_or(&[0u8; 32])
    }

    /// The destination, sharing the packet's buffer.
    #[inline]
    pub fn destination(&self) -> Address {
        Address::from_validated(self.buf.slice(self.destination.0..self.destination.1))
    }

    /// The destination as text, without touching the reference count.
    #[inline]
    pub fn destination_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.destination.0..self.destination.1]).unwrap_or_default()
    }

    /// The Prepare's contents without its expiry, as two slices: the amount, then the
    /// condition, destination and data (each of fixed or prefixed length, so no two
    /// different Prepares give the same pair). What a payment is, whenever it expires.
    #[inline]
    pub fn contents_without_expiry(&self) -> (&[u8], &[u8]) {
        (
            &self.buf[self.body..self.body + 8],
            &self.buf[self.body + 8 + TIMESTAMP_LEN..],
        )
    }

    /// A copy with a new amount and expiry, as a connector forwards it: one memcpy and two
    /// in-place patches, no re-validation.
    pub fn with_amount_and_expiry(&self, amount: u64, expires_at: Timestamp) -> Prepare {
        let mut out = BytesMut::from(&self.buf[..]);
        out[self.body..self.body + 8].copy_from_slice(&amount.to_be_bytes());
        out[self.body + 8..self.body + 8 + TIMESTAMP_LEN].copy_from_slice(&expires_at.to_bytes());
        Prepare {
            buf: out.freeze(),
            expires_at,
            ..*self
        }
    }
}

super::wire_accessors!(Prepare);

impl fmt::Debug for Prepare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepare")
            .field("amount", &self.amount())
            .field("expires_at", &self.expires_at)
            .field("execution_condition", &hex(self.execution_condition()))
            .field("destination", &self.destination_str())
            .field("data_len", &self.data().len())
            .finish()
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fields of a new Prepare.
#[derive(Debug, Clone, Copy)]
pub struct PrepareBuilder<'a> {
    pub amount: u64,
    pub expires_at: Timestamp,
    pub execution_condition: &'a [u8; 32],
    pub destination: &'a Address,
    pub data: &'a [u8],
}

impl PrepareBuilder<'_> {
    /// Serializes into one allocation of the exact size. Fails only if `data` is over 32767
    /// bytes (the address is valid by construction).
    #[inline]
    pub fn build(&self) -> Result<Prepare, PacketError> {
        if self.data.len() > MAX_DATA_LEN {
            return Err(PacketError::DataTooLong(self.data.len()));
        }
        let dest = self.destination.as_bytes();
        let contents_len =
            FIXED_LEN + var_octet_string_size(dest.len()) + var_octet_string_size(self.data.len());
        let buf = seal(PacketType::Prepare, contents_len, |out| {
            out.put_u64(self.amount);
            out.put_slice(&self.expires_at.to_bytes());
            out.put_slice(self.execution_condition);
            out.put_var_octet_string(dest);
            out.put_var_octet_string(self.data);
        });
        let body = buf.len() - contents_len;
        let dest_start = body + FIXED_LEN + crate::oer::length_prefix_size(dest.len());
        let dest_end = dest_start + dest.len();
        let data_start = dest_end + crate::oer::length_prefix_size(self.data.len());
        Ok(Prepare {
            body,
            expires_at: self.expires_at,
            destination: (dest_start, dest_end),
            data: (data_start, data_start + self.data.len()),
            buf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oer::OerError;
    use crate::packet::{AddressError, TimestampError};
    use proptest::prelude::*;

    fn sample(data: &[u8]) -> Prepare {
        let dest = Address::try_from("g.us.acme.bob").unwrap();
        PrepareBuilder {
            amount: 107,
            expires_at: Timestamp::from_unix_millis(1_513_992_100_549),
            execution_condition: &[7; 32],
            destination: &dest,
            data,
        }
        .build()
        .unwrap()
    }

    /// Re-frames `contents` as a Prepare.
    fn frame(contents: &[u8]) -> Bytes {
        let mut v = vec![12u8];
        v.put_var_octet_string(contents);
        Bytes::from(v)
    }

    fn contents(p: &Prepare) -> Vec<u8> {
        p.as_bytes()[p.body..].to_vec()
    }

    #[test]
    fn fields_and_rewrite() {
        let p = sample(b"hello");
        assert_eq!(p.amount(), 107);
        assert_eq!(p.destination_str(), "g.us.acme.bob");
        assert_eq!(p.data(), b"hello");
        let q = p.with_amount_and_expiry(99, Timestamp::from_unix_millis(5));
        assert_eq!(q.amount(), 99);
        assert_eq!(q.expires_at().unix_millis(), 5);
        assert_eq!(Prepare::parse(q.as_bytes().clone()).unwrap(), q);
        assert_eq!(q.data(), b"hello");
        assert_eq!(q.execution_condition(), &[7; 32]);
        assert!(format!("{q:?}").contains("g.us.acme.bob"));
    }

    #[test]
    fn large_data_uses_long_length_prefix() {
        let data = vec![0xab; MAX_DATA_LEN];
        let p = sample(&data);
        assert_eq!(
            Prepare::parse(p.as_bytes().clone()).unwrap().data(),
            &data[..]
        );
        let dest = Address::try_from("g.x").unwrap();
        let too_long = vec![0; MAX_DATA_LEN + 1];
        let err = PrepareBuilder {
            amount: 1,
            expires_at: Timestamp::default(),
            execution_condition: &[0; 32],
            destination: &dest,
            data: &too_long,
        }
        .build();
        assert_eq!(err, Err(PacketError::DataTooLong(MAX_DATA_LEN + 1)));
    }

    #[test]
    fn error_paths() {
        let good = contents(&sample(b"abc"));
        let parse = |c: &[u8]| Prepare::parse(frame(c));

        // truncated at every position inside the contents
        for cut in 0..good.len() {
            assert_eq!(
                parse(&good[..cut]),
                Err(PacketError::Oer(OerError::UnexpectedEnd)),
                "cut at {cut}"
            );
        }
        // trailing bytes inside the envelope
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            parse(&extra),
            Err(PacketError::Oer(OerError::TrailingBytes(1)))
        );
        // trailing bytes after the envelope
        let mut after = frame(&good).to_vec();
        after.push(9);
        assert_eq!(
            Prepare::parse(Bytes::from(after)),
            Err(PacketError::Oer(OerError::TrailingBytes(1)))
        );
        // envelope longer than the buffer
        let mut short = frame(&good).to_vec();
        short.pop();
        assert_eq!(
            Prepare::parse(Bytes::from(short)),
            Err(PacketError::Oer(OerError::UnexpectedEnd))
        );
        // oversize length prefix on the envelope
        assert_eq!(
            Prepare::parse(Bytes::from_static(&[12, 0x84, 0xff, 0xff, 0xff, 0xff])),
            Err(PacketError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
        // invalid timestamp
        let mut bad_ts = good.clone();
        bad_ts[8 + 4] = b'1';
        bad_ts[8 + 5] = b'3';
        assert_eq!(
            parse(&bad_ts),
            Err(PacketError::InvalidTimestamp(TimestampError::OutOfRange))
        );
        bad_ts[8] = b'x';
        assert_eq!(
            parse(&bad_ts),
            Err(PacketError::InvalidTimestamp(TimestampError::NotDigit(0)))
        );
        // invalid address
        let mut bad_addr = good.clone();
        bad_addr[FIXED_LEN + 1] = b'z'; // "z.us.acme.bob"
        assert_eq!(
            parse(&bad_addr),
            Err(PacketError::InvalidAddress(AddressError::UnknownScheme))
        );
        let mut bad_char = good.clone();
        bad_char[FIXED_LEN + 4] = b' ';
        assert_eq!(
            parse(&bad_char),
            Err(PacketError::InvalidAddress(AddressError::InvalidCharacter(
                3
            )))
        );
        // data over the maximum
        let mut big = good[..FIXED_LEN + 14].to_vec();
        big.put_length_prefix(MAX_DATA_LEN + 1);
        big.extend(std::iter::repeat_n(0, MAX_DATA_LEN + 1));
        assert_eq!(parse(&big), Err(PacketError::DataTooLong(MAX_DATA_LEN + 1)));
        // non-canonical data length prefix
        let mut noncanon = good[..FIXED_LEN + 14].to_vec();
        noncanon.extend_from_slice(&[0x81, 0x03, b'a', b'b', b'c']);
        assert_eq!(
            parse(&noncanon),
            Err(PacketError::Oer(OerError::NonCanonicalLength))
        );
    }

    fn arb_address() -> impl Strategy<Value = Address> {
        (
            prop::sample::select(&["g", "test", "private", "example", "peer"][..]),
            prop::collection::vec("[A-Za-z0-9_~-]{1,20}", 1..6),
        )
            .prop_map(|(s, segs)| Address::try_from(format!("{s}.{}", segs.join("."))).unwrap())
    }

    proptest! {
        #[test]
        fn round_trip(
            amount: u64,
            ms in 0u64..=Timestamp::MAX.unix_millis(),
            cond: [u8; 32],
            dest in arb_address(),
            data in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let p = PrepareBuilder {
                amount,
                expires_at: Timestamp::from_unix_millis(ms),
                execution_condition: &cond,
                destination: &dest,
                data: &data,
            }.build().unwrap();
            let q = Prepare::parse(p.as_bytes().clone()).unwrap();
            prop_assert_eq!(q.amount(), amount);
            prop_assert_eq!(q.expires_at().unix_millis(), ms);
            prop_assert_eq!(q.execution_condition(), &cond);
            prop_assert_eq!(q.destination(), dest);
            prop_assert_eq!(q.data(), &data[..]);
            prop_assert_eq!(&q, &p);
        }

        #[test]
        fn never_panics_and_canonical(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            for input in [Bytes::from(bytes.clone()), frame(&bytes)] {
                if let Ok(p) = Prepare::parse(input.clone()) {
                    let dest = p.destination();
                    let again = PrepareBuilder {
                        amount: p.amount(),
                        expires_at: p.expires_at(),
                        execution_condition: p.execution_condition(),
                        destination: &dest,
                        data: p.data(),
                    }
                    .build()
                    .unwrap();
                    prop_assert_eq!(again.as_bytes(), &input);
                }
            }
        }
    }
}
