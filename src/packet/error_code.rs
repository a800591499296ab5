//! ILPv4 error codes (RFC 27 §error codes) and the F08 Amount Too Large data.

use crate::oer::{OerError, Reader};
use bytes::BufMut;
use std::fmt;

/// A three-character ILP error code. Codes outside RFC 27's table are kept as they came (a peer
/// may use a newer one); [`ErrorCode::name`] is `None` for those.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode([u8; 3]);

/// Whether a Reject is final, temporary or relative (the first letter of the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Final,
    Temporary,
    Relative,
    Unknown,
}

macro_rules! codes {
    ($($konst:ident = $code:literal, $name:literal;)*) => {
        impl ErrorCode {
            $(pub const $konst: ErrorCode = ErrorCode(*$code);)*

            /// Every code RFC 27 defines.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$konst),*];

            /// RFC 27's name for a known code (`"Unreachable"` for F02).
            pub fn name(self) -> Option<&'static str> {
                match &self.0 {
                    $($code => Some($name),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    F00_BAD_REQUEST = b"F00", "Bad Request";
    F01_INVALID_PACKET = b"F01", "Invalid Packet";
    F02_UNREACHABLE = b"F02", "Unreachable";
    F03_INVALID_AMOUNT = b"F03", "Invalid Amount";
    F04_INSUFFICIENT_DESTINATION_AMOUNT = b"F04", "Insufficient Destination Amount";
    F05_WRONG_CONDITION = b"F05", "Wrong Condition";
    F06_UNEXPECTED_PAYMENT = b"F06", "Unexpected Payment";
    F07_CANNOT_RECEIVE = b"F07", "Cannot Receive";
    F08_AMOUNT_TOO_LARGE = b"F08", "Amount Too Large";
    F99_APPLICATION_ERROR = b"F99", "Application Error";
    T00_INTERNAL_ERROR = b"T00", "Internal Error";
    T01_PEER_UNREACHABLE = b"T01", "Peer Unreachable";
    T02_PEER_BUSY = b"T02", "Peer Busy";
    T03_CONNECTOR_BUSY = b"T03", "Connector Busy";
    T04_INSUFFICIENT_LIQUIDITY = b"T04", "Insufficient Liquidity";
    T05_RATE_LIMITED = b"T05", "Rate Limited";
    T99_APPLICATION_ERROR = b"T99", "Application Error";
    R00_TRANSFER_TIMED_OUT = b"R00", "Transfer Timed Out";
    R01_INSUFFICIENT_SOURCE_AMOUNT = b"R01", "Insufficient Source Amount";
    R02_INSUFFICIENT_TIMEOUT = b"R02", "Insufficient Timeout";
    R99_APPLICATION_ERROR = b"R99", "Application Error";
}

impl ErrorCode {
    /// Accepts any three ASCII alphanumerics.
    pub fn new(code: [u8; 3]) -> Option<Self> {
        code.iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(ErrorCode(code))
    }

    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn class(self) -> ErrorClass {
        match self.0[0] {
            b'F' => ErrorClass::Final,
            b'T' => ErrorClass::Temporary,
            b'R' => ErrorClass::Relative,
            _ => ErrorClass::Unknown,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({n})", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let b: [u8; 3] = s.as_bytes().try_into().map_err(|_| ())?;
        ErrorCode::new(b).ok_or(())
    }
}

/// The data of an F08 Amount Too Large reject: the amount that arrived and the largest the
/// connector accepts, both in the rejecting connector's units (RFC 27 / InterledgerErrorData).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPacketAmountDetails {
    pub amount_received: u64,
    pub max_amount: u64,
}

impl MaxPacketAmountDetails {
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut w = &mut out[..];
        w.put_u64(self.amount_received);
        w.put_u64(self.max_amount);
        out
    }

    /// Decodes the first 16 bytes; later bytes are allowed for forward compatibility, as the
    /// JS implementation allows them.
    pub fn decode(data: &[u8]) -> Result<Self, OerError> {
        let mut r = Reader::new(data);
        Ok(MaxPacketAmountDetails {
            amount_received: r.read_u64()?,
            max_amount: r.read_u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn f08_round_trip(amount_received: u64, max_amount: u64) {
            let d = MaxPacketAmountDetails { amount_received, max_amount };
            prop_assert_eq!(MaxPacketAmountDetails::decode(&d.encode()), Ok(d));
        }
    }

    #[test]
    fn table() {
        assert_eq!(ErrorCode::ALL.len(), 21);
        assert_eq!(ErrorCode::F02_UNREACHABLE.name(), Some("Unreachable"));
        assert_eq!(ErrorCode::F02_UNREACHABLE.as_str(), "F02");
        assert_eq!(ErrorCode::T05_RATE_LIMITED.class(), ErrorClass::Temporary);
        assert_eq!(
            ErrorCode::R00_TRANSFER_TIMED_OUT.class(),
            ErrorClass::Relative
        );
        assert_eq!(ErrorCode::F08_AMOUNT_TOO_LARGE.class(), ErrorClass::Final);
        assert_eq!(
            "F99".parse::<ErrorCode>(),
            Ok(ErrorCode::F99_APPLICATION_ERROR)
        );
        let custom: ErrorCode = "F42".parse().unwrap();
        assert_eq!(custom.name(), None);
        assert_eq!(format!("{custom:?}"), "F42");
        assert!("F4".parse::<ErrorCode>().is_err());
        assert!(ErrorCode::new(*b"F\0x").is_none());
        for c in ErrorCode::ALL {
            assert!(c.name().is_some());
            assert_eq!(c.as_str().parse::<ErrorCode>(), Ok(*c));
        }
    }

    #[test]
    fn f08_data() {
        let d = MaxPacketAmountDetails {
            amount_received: 1000,
            max_amount: 100,
        };
        let bytes = d.encode();
        assert_eq!(hex::encode(bytes), "00000000000003e80000000000000064");
        assert_eq!(MaxPacketAmountDetails::decode(&bytes), Ok(d));
        assert_eq!(
            MaxPacketAmountDetails::decode(&bytes[..15]),
            Err(OerError::UnexpectedEnd)
        );
    }
}
