//! The ILP Reject packet (type 14).

use super::{
    open_envelope, read_data, seal, validate_address, Address, ErrorCode, PacketError, PacketType,
    MAX_DATA_LEN,
};
use crate::oer::{length_prefix_size, var_octet_string_size, OerWrite};
use bytes::{BufMut, Bytes};
use std::fmt;

/// A valid Reject. `triggeredBy` may be empty on the wire (some senders leave it blank); it is
/// an [`Address`] otherwise.
#[derive(Clone, PartialEq, Eq)]
pub struct Reject {
    buf: Bytes,
    code: ErrorCode,
    triggered_by: (usize, usize),
    message: (usize, usize),
    data: (usize, usize),
}

impl Reject {
    #[inline]
    pub fn parse(buf: Bytes) -> Result<Reject, PacketError> {
        let (mut r, body) = open_envelope(&buf, PacketType::Reject)?;
        let code = ErrorCode::new(*r.read_array::<3>()?).ok_or(PacketError::InvalidErrorCode)?;
        let by = r.read_var_octet_string()?;
        if !by.is_empty() {
            validate_address(by)?;
        }
        let by_end = r.position();
        let msg = r.read_var_octet_string()?;
        std::str::from_utf8(msg).map_err(|_| PacketError::InvalidMessage)?;
        let msg_end = r.position();
        let (data_start, data_end) = read_data(&mut r)?;
        r.finish()?;
        Ok(Reject {
            code,
            triggered_by: (body + by_end - by.len(), body + by_end),
            message: (body + msg_end - msg.len(), body + msg_end),
            data: (body + data_start, body + data_end),
            buf,
        })
    }

    #[inline]
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// `None` when the sender left `triggeredBy` empty.
    #[inline]
    pub fn triggered_by(&self) -> Option<Address> {
        let (s, e) = self.triggered_by;
        (s != e).then(|| Address::from_validated(self.buf.slice(s..e)))
    }

    #[inline]
    pub fn message(&self) -> &str {
        std::str::from_utf8(&self.buf[self.message.0..self.message.1]).unwrap_or_default()
    }
}

super::wire_accessors!(Reject);

impl fmt::Debug for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reject")
            .field("code", &self.code)
            .field("triggered_by", &self.triggered_by())
            .field("message", &self.message())
            .field("data_len", &self.data().len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RejectBuilder<'a> {
    pub code: ErrorCode,
    pub triggered_by: Option<&'a Address>,
    pub message: &'a str,
    pub data: &'a [u8],
}

impl RejectBuilder<'_> {
    /// Serializes into one exact-size buffer. Fails only if `data` is over 32767 bytes.
    #[inline]
    pub fn build(&self) -> Result<Reject, PacketError> {
        if self.data.len() > MAX_DATA_LEN {
            return Err(PacketError::DataTooLong(self.data.len()));
        }
        Ok(self.encode())
    }

    /// The encoding itself; every field but `data` is valid by construction.
    fn encode(&self) -> Reject {
        let by = self.triggered_by.map(Address::as_bytes).unwrap_or_default();
        let msg = self.message.as_bytes();
        let contents_len = 3
            + var_octet_string_size(by.len())
            + var_octet_string_size(msg.len())
            + var_octet_string_size(self.data.len());
        let buf = seal(PacketType::Reject, contents_len, |out| {
            out.put_slice(self.code.as_bytes());
            out.put_var_octet_string(by);
            out.put_var_octet_string(msg);
            out.put_var_octet_string(self.data);
        });
        let by_start = buf.len() - contents_len + 3 + length_prefix_size(by.len());
        let by_end = by_start + by.len();
        let msg_start = by_end + length_prefix_size(msg.len());
        let msg_end = msg_start + msg.len();
        let data_start = msg_end + length_prefix_size(self.data.len());
        Reject {
            code: self.code,
            triggered_by: (by_start, by_end),
            message: (msg_start, msg_end),
            data: (data_start, data_start + self.data.len()),
            buf,
        }
    }
}

impl Reject {
    /// A Reject without data: cannot fail, so error paths always have one to send.
    pub fn new(code: ErrorCode, triggered_by: Option<&Address>, message: &str) -> Reject {
        RejectBuilder {
            code,
            triggered_by,
            message,
            data: &[],
        }
        .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oer::OerError;
    use crate::packet::{AddressError, PacketType};
    use proptest::prelude::*;

    fn frame(contents: &[u8]) -> Bytes {
        let mut v = vec![14u8];
        v.put_var_octet_string(contents);
        Bytes::from(v)
    }

    fn contents(code: &[u8; 3], by: &[u8], msg: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = code.to_vec();
        c.put_var_octet_string(by);
        c.put_var_octet_string(msg);
        c.put_var_octet_string(data);
        c
    }

    #[test]
    fn empty_triggered_by() {
        let r = RejectBuilder {
            code: ErrorCode::T01_PEER_UNREACHABLE,
            triggered_by: None,
            message: "",
            data: &[],
        }
        .build()
        .unwrap();
        assert_eq!(r.triggered_by(), None);
        assert_eq!(r.as_bytes().as_ref(), [14, 6, b'T', b'0', b'1', 0, 0, 0]);
    }

    #[test]
    fn new_matches_builder_and_parse() {
        let by = Address::try_from("g.conn").unwrap();
        let r = Reject::new(ErrorCode::F02_UNREACHABLE, Some(&by), "no route to g.x");
        assert_eq!(Reject::parse(r.as_bytes().clone()).unwrap(), r);
        assert_eq!(r.triggered_by(), Some(by));
        assert_eq!(r.message(), "no route to g.x");
        assert!(r.data().is_empty());
    }

    #[test]
    fn error_paths() {
        let good = contents(b"F02", b"g.a", "héllo".as_bytes(), b"d");
        assert!(Reject::parse(frame(&good)).is_ok());
        for cut in 0..good.len() {
            assert_eq!(
                Reject::parse(frame(&good[..cut])),
                Err(PacketError::Oer(OerError::UnexpectedEnd))
            );
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            Reject::parse(frame(&extra)),
            Err(PacketError::Oer(OerError::TrailingBytes(1)))
        );
        assert_eq!(
            Reject::parse(frame(&contents(b"F0\n", b"g.a", b"", b""))),
            Err(PacketError::InvalidErrorCode)
        );
        assert_eq!(
            Reject::parse(frame(&contents(b"F02", b"g", b"", b""))),
            Err(PacketError::InvalidAddress(AddressError::NoSegments))
        );
        assert_eq!(
            Reject::parse(frame(&contents(b"F02", b"g.a", &[0xc3, 0x28], b""))),
            Err(PacketError::InvalidMessage)
        );
        assert_eq!(
            Reject::parse(Bytes::from_static(&[14, 0x84, 0xff, 0xff, 0xff, 0xff])),
            Err(PacketError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
        let mut after = frame(&good).to_vec();
        after.push(0);
        assert_eq!(
            Reject::parse(Bytes::from(after)),
            Err(PacketError::Oer(OerError::TrailingBytes(1)))
        );
        assert_eq!(
            Reject::parse(Bytes::from_static(&[12, 0])),
            Err(PacketError::WrongType {
                expected: PacketType::Reject,
                found: 12
            })
        );
        let big = vec![0u8; MAX_DATA_LEN + 1];
        assert_eq!(
            Reject::parse(frame(&contents(b"F02", b"g.a", b"", &big))),
            Err(PacketError::DataTooLong(MAX_DATA_LEN + 1))
        );
        assert_eq!(
            RejectBuilder {
                code: ErrorCode::F00_BAD_REQUEST,
                triggered_by: None,
                message: "",
                data: &big
            }
            .build(),
            Err(PacketError::DataTooLong(MAX_DATA_LEN + 1))
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            code in prop::sample::select(ErrorCode::ALL),
            by in prop::option::of("g(\\.[a-z0-9]{1,8}){1,4}"),
            message in ".{0,80}",
            data in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let by = by.map(|s| Address::try_from(s).unwrap());
            let r = RejectBuilder { code, triggered_by: by.as_ref(), message: &message, data: &data }
                .build().unwrap();
            let s = Reject::parse(r.as_bytes().clone()).unwrap();
            prop_assert_eq!(s.code(), code);
            prop_assert_eq!(s.triggered_by(), by);
            prop_assert_eq!(s.message(), &message[..]);
            prop_assert_eq!(s.data(), &data[..]);
        }

        #[test]
        fn never_panics_and_canonical(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            for input in [Bytes::from(bytes.clone()), frame(&bytes)] {
                if let Ok(r) = Reject::parse(input.clone()) {
                    let by = r.triggered_by();
                    let again = RejectBuilder {
                        code: r.code(),
                        triggered_by: by.as_ref(),
                        message: r.message(),
                        data: r.data(),
                    }
                    .build()
                    .unwrap();
                    prop_assert_eq!(again.as_bytes(), &input);
                }
            }
        }
    }
}
