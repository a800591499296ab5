//! ILPv4 packets (RFC 27): Prepare, Fulfill, Reject, their error codes and timestamps, and
//! ILP addresses (RFC 15).
//!
//! Parsed packets keep their wire bytes (`bytes::Bytes`) and remember field offsets, so parsing
//! copies nothing, cloning is a reference-count increment, and relaying an unchanged packet
//! re-sends the same buffer.

mod address;
mod error_code;
mod fulfill;
mod prepare;
mod reject;
mod timestamp;

pub use address::{validate_address, validate_segment, Address, AddressError, MAX_ADDRESS_LEN};
pub use error_code::{ErrorClass, ErrorCode, MaxPacketAmountDetails};
pub use fulfill::{Fulfill, FulfillBuilder};
pub use prepare::{Prepare, PrepareBuilder};
pub use reject::{Reject, RejectBuilder};
pub use timestamp::{Timestamp, TimestampError, TIMESTAMP_LEN};

use crate::oer::{OerError, OerWrite, Reader};
use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Largest `data` field RFC 27 allows in any ILP packet.
pub const MAX_DATA_LEN: usize = 32_767;

/// The packet type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Prepare = 12,
    Fulfill = 13,
    Reject = 14,
}

impl TryFrom<u8> for PacketType {
    type Error = PacketError;
    fn try_from(b: u8) -> Result<Self, PacketError> {
        match b {
            12 => Ok(PacketType::Prepare),
            13 => Ok(PacketType::Fulfill),
            14 => Ok(PacketType::Reject),
            other => Err(PacketError::UnknownType(other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("malformed packet: {0}")]
    Oer(#[from] OerError),
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    #[error("expected packet type {expected:?}, found {found}")]
    WrongType { expected: PacketType, found: u8 },
    #[error("invalid address: {0}")]
    InvalidAddress(#[from] AddressError),
    #[error("invalid expiresAt: {0}")]
    InvalidTimestamp(#[from] TimestampError),
    #[error("data is {0} bytes; the maximum is 32767")]
    DataTooLong(usize),
    #[error("invalid error code")]
    InvalidErrorCode,
    #[error("reject message is not valid UTF-8")]
    InvalidMessage,
}

/// Any ILPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Prepare(Prepare),
    Fulfill(Fulfill),
    Reject(Reject),
}

impl Packet {
    /// Parses whichever packet type `buf` holds.
    pub fn parse(buf: Bytes) -> Result<Packet, PacketError> {
        let first = *buf.first().ok_or(OerError::UnexpectedEnd)?;
        match PacketType::try_from(first)? {
            PacketType::Prepare => Prepare::parse(buf).map(Packet::Prepare),
            PacketType::Fulfill => Fulfill::parse(buf).map(Packet::Fulfill),
            PacketType::Reject => Reject::parse(buf).map(Packet::Reject),
        }
    }

    pub fn as_bytes(&self) -> &Bytes {
        match self {
            Packet::Prepare(p) => p.as_bytes(),
            Packet::Fulfill(f) => f.as_bytes(),
            Packet::Reject(r) => r.as_bytes(),
        }
    }
}

impl From<Packet> for Bytes {
    fn from(p: Packet) -> Bytes {
        match p {
            Packet::Prepare(p) => p.into(),
            Packet::Fulfill(f) => f.into(),
            Packet::Reject(r) => r.into(),
        }
    }
}

/// Checks the type octet and the envelope's length prefix; returns a reader over exactly the
/// contents, positioned at their start, and the contents' offset in `buf`.
#[inline]
fn open_envelope(buf: &[u8], expected: PacketType) -> Result<(Reader<'_>, usize), PacketError> {
    let mut r = Reader::new(buf);
    let t = r.read_u8()?;
    if t != expected as u8 {
        return Err(match PacketType::try_from(t) {
            Ok(_) => PacketError::WrongType { expected, found: t },
            Err(e) => e,
        });
    }
    let len = r.read_length_prefix()?;
    let start = r.position();
    let contents = r.read_bytes(len)?;
    r.finish()?;
    Ok((Reader::new(contents), start))
}

/// Reads a length-prefixed `data` field, enforcing [`MAX_DATA_LEN`]; returns its offset range
/// relative to the reader's buffer.
#[inline]
fn read_data(r: &mut Reader<'_>) -> Result<(usize, usize), PacketError> {
    let len = r.read_length_prefix()?;
    if len > MAX_DATA_LEN {
        return Err(PacketError::DataTooLong(len));
    }
    let start = r.position();
    r.skip(len)?;
    Ok((start, start + len))
}

/// Writes type, length prefix and contents (produced by `fill`) into one exact-size buffer.
#[inline]
fn seal(packet_type: PacketType, contents_len: usize, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + crate::oer::var_octet_string_size(contents_len));
    out.extend_from_slice(&[packet_type as u8]);
    out.put_length_prefix(contents_len);
    fill(&mut out);
    debug_assert_eq!(out.len(), out.capacity());
    out.freeze()
}

#[cfg(test)]
mod vectors {
    //! The RFC 27 examples in tests/data/ilp-packet, both ways.
    use super::*;
    use base64::Engine;

    fn load(name: &str) -> (Bytes, serde_json::Value) {
        let path = format!(
            "{}/tests/data/ilp-packet/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let bin = hex::decode(v["binary"].as_str().unwrap()).unwrap();
        (Bytes::from(bin), v["json"].clone())
    }

    fn b64(v: &serde_json::Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn prepare_example() {
        let (bin, json) = load("ilp_prepare_example01.json");
        let p = Prepare::parse(bin.clone()).unwrap();
        assert_eq!(p.amount().to_string(), json["amount"].as_str().unwrap());
        assert_eq!(
            p.expires_at().to_rfc3339(),
            json["expiresAt"].as_str().unwrap()
        );
        assert_eq!(
            &p.execution_condition()[..],
            &b64(&json["executionCondition"])[..]
        );
        assert_eq!(
            p.destination().as_str(),
            json["destination"].as_str().unwrap()
        );
        assert_eq!(p.data(), &b64(&json["data"])[..]);
        let dest = p.destination();
        let rebuilt = PrepareBuilder {
            amount: p.amount(),
            expires_at: p.expires_at(),
            execution_condition: p.execution_condition(),
            destination: &dest,
            data: p.data(),
        }
        .build()
        .unwrap();
        assert_eq!(rebuilt.as_bytes(), &bin);
        assert_eq!(Packet::parse(bin).unwrap(), Packet::Prepare(p));
    }

    #[test]
    fn fulfill_example() {
        let (bin, json) = load("ilp_fulfill_example01.json");
        let f = Fulfill::parse(bin.clone()).unwrap();
        assert_eq!(&f.fulfillment()[..], &b64(&json["fulfillment"])[..]);
        assert_eq!(f.data(), &b64(&json["data"])[..]);
        let rebuilt = FulfillBuilder {
            fulfillment: f.fulfillment(),
            data: f.data(),
        }
        .build()
        .unwrap();
        assert_eq!(rebuilt.as_bytes(), &bin);
        assert_eq!(Packet::parse(bin).unwrap(), Packet::Fulfill(f));
    }

    #[test]
    fn reject_example() {
        let (bin, json) = load("ilp_reject_example01.json");
        let r = Reject::parse(bin.clone()).unwrap();
        assert_eq!(r.code().as_str(), json["code"].as_str().unwrap());
        assert_eq!(
            r.triggered_by().unwrap().as_str(),
            json["triggeredBy"].as_str().unwrap()
        );
        assert_eq!(r.message(), json["message"].as_str().unwrap());
        assert_eq!(r.data(), &b64(&json["data"])[..]);
        let by = r.triggered_by();
        let rebuilt = RejectBuilder {
            code: r.code(),
            triggered_by: by.as_ref(),
            message: r.message(),
            data: r.data(),
        }
        .build()
        .unwrap();
        assert_eq!(rebuilt.as_bytes(), &bin);
        assert_eq!(Packet::parse(bin).unwrap(), Packet::Reject(r));
    }

    #[test]
    fn dispatch_errors() {
        assert_eq!(
            Packet::parse(Bytes::new()),
            Err(PacketError::Oer(OerError::UnexpectedEnd))
        );
        assert_eq!(
            Packet::parse(Bytes::from_static(&[15, 0])),
            Err(PacketError::UnknownType(15))
        );
        assert_eq!(
            Prepare::parse(Bytes::from_static(&[13, 0])),
            Err(PacketError::WrongType {
                expected: PacketType::Prepare,
                found: 13
            })
        );
        assert_eq!(
            Fulfill::parse(Bytes::from_static(&[1, 0])),
            Err(PacketError::UnknownType(1))
        );
    }
}
