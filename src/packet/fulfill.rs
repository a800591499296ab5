//! The ILP Fulfill packet (type 13).

use super::{open_envelope, read_data, seal, PacketError, PacketType, MAX_DATA_LEN};
use crate::oer::{var_octet_string_size, OerWrite};
use bytes::{BufMut, Bytes};
use std::fmt;

/// A valid Fulfill: a 32-byte fulfillment and up to 32767 bytes of data.
#[derive(Clone, PartialEq, Eq)]
pub struct Fulfill {
    buf: Bytes,
    /// Offset of the fulfillment in `buf`.
    body: usize,
    data: (usize, usize),
}

impl Fulfill {
    #[inline]
    pub fn parse(buf: Bytes) -> Result<Fulfill, PacketError> {
        let (mut r, body) = open_envelope(&buf, PacketType::Fulfill)?;
        r.skip(32)?;
        let (start, end) = read_data(&mut r)?;
        r.finish()?;
        Ok(Fulfill {
            body,
            data: (body + start, body + end),
            buf,
        })
    }

    #[inline]
    pub fn fulfillment(&self) -> &[u8; 32] {
        self.buf[self.body..self.body + 32]
            .try_into()
            .unwrap_or(&[0u8; 32])
    }
}

super::wire_accessors!(Fulfill);

impl fmt::Debug for Fulfill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fulfill")
            .field("fulfillment", &super::prepare::hex(self.fulfillment()))
            .field("data_len", &self.data().len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FulfillBuilder<'a> {
    pub fulfillment: &'a [u8; 32],
    pub data: &'a [u8],
}

impl FulfillBuilder<'_> {
    #[inline]
    pub fn build(&self) -> Result<Fulfill, PacketError> {
        if self.data.len() > MAX_DATA_LEN {
            return Err(PacketError::DataTooLong(self.data.len()));
        }
        let contents_len = 32 + var_octet_string_size(self.data.len());
        let buf = seal(PacketType::Fulfill, contents_len, |out| {
            out.put_slice(self.fulfillment);
            out.put_var_octet_string(self.data);
        });
        let body = buf.len() - contents_len;
        let end = buf.len();
        Ok(Fulfill {
            body,
            data: (end - self.data.len(), end),
            buf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oer::OerError;
    use crate::packet::PacketType;
    use proptest::prelude::*;

    fn frame(contents: &[u8]) -> Bytes {
        let mut v = vec![13u8];
        v.put_var_octet_string(contents);
        Bytes::from(v)
    }

    #[test]
    fn error_paths() {
        let good = FulfillBuilder {
            fulfillment: &[1; 32],
            data: b"xyz",
        }
        .build()
        .unwrap();
        let contents = good.as_bytes()[2..].to_vec();
        for cut in 0..contents.len() {
            assert_eq!(
                Fulfill::parse(frame(&contents[..cut])),
                Err(PacketError::Oer(OerError::UnexpectedEnd))
            );
        }
        let mut extra = contents.clone();
        extra.push(1);
        assert_eq!(
            Fulfill::parse(frame(&extra)),
            Err(PacketError::Oer(OerError::TrailingBytes(1)))
        );
        let mut big = vec![0u8; 32];
        big.put_length_prefix(MAX_DATA_LEN + 1);
        big.resize(big.len() + MAX_DATA_LEN + 1, 0);
        assert_eq!(
            Fulfill::parse(frame(&big)),
            Err(PacketError::DataTooLong(MAX_DATA_LEN + 1))
        );
        assert_eq!(
            FulfillBuilder {
                fulfillment: &[0; 32],
                data: &big
            }
            .build(),
            Err(PacketError::DataTooLong(big.len()))
        );
        assert_eq!(
            Fulfill::parse(Bytes::from_static(&[13, 0x81])),
            Err(PacketError::Oer(OerError::UnexpectedEnd))
        );
        assert_eq!(
            Fulfill::parse(Bytes::from_static(&[13, 0x84, 0xff, 0xff, 0xff, 0xff])),
            Err(PacketError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
        let mut after = good.as_bytes().to_vec();
        after.push(0);
        assert_eq!(
            Fulfill::parse(Bytes::from(after)),
            Err(PacketError::Oer(OerError::TrailingBytes(1)))
        );
        assert_eq!(
            Fulfill::parse(Bytes::from_static(&[14, 0])),
            Err(PacketError::WrongType {
                expected: PacketType::Fulfill,
                found: 14
            })
        );
    }

    proptest! {
        #[test]
        fn round_trip(ful: [u8; 32], data in prop::collection::vec(any::<u8>(), 0..400)) {
            let f = FulfillBuilder { fulfillment: &ful, data: &data }.build().unwrap();
            let g = Fulfill::parse(f.as_bytes().clone()).unwrap();
            prop_assert_eq!(g.fulfillment(), &ful);
            prop_assert_eq!(g.data(), &data[..]);
            prop_assert_eq!(g, f);
        }

        #[test]
        fn never_panics_and_canonical(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            for input in [Bytes::from(bytes.clone()), frame(&bytes)] {
                if let Ok(f) = Fulfill::parse(input.clone()) {
                    let again = FulfillBuilder { fulfillment: f.fulfillment(), data: f.data() }
                        .build()
                        .unwrap();
                    prop_assert_eq!(again.as_bytes(), &input);
                }
            }
        }
    }
}
