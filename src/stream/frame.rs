//! STREAM frames (RFC 29 §5.3): the typed [`Frame`] enum, the close [`ErrorCode`]s and the
//! per-frame wire codec (`type: u8`, then the contents as a length-prefixed octet string).
//!
//! Unknown frame types are kept verbatim as [`Frame::Unknown`] rather than dropped: the RFC
//! says to ignore them, and keeping the bytes lets a caller ignore them while still re-encoding
//! the packet byte for byte.
//!
//! Inside a known frame's contents every byte must be accounted for: the contents of each
//! frame type are fixed by the RFC, so leftover bytes mean a malformed or non-canonical frame.

use std::fmt;

use bytes::BufMut;
use thiserror::Error;

use crate::oer::{self, OerError, OerWrite, Reader};
use crate::packet::Address;

/// Frame type identifiers (RFC 29 §5.3).
pub mod frame_type {
    pub const CONNECTION_CLOSE: u8 = 0x01;
    pub const CONNECTION_NEW_ADDRESS: u8 = 0x02;
    pub const CONNECTION_MAX_DATA: u8 = 0x03;
    pub const CONNECTION_DATA_BLOCKED: u8 = 0x04;
    pub const CONNECTION_MAX_STREAM_ID: u8 = 0x05;
    pub const CONNECTION_STREAM_ID_BLOCKED: u8 = 0x06;
    pub const CONNECTION_ASSET_DETAILS: u8 = 0x07;
    pub const STREAM_CLOSE: u8 = 0x10;
    pub const STREAM_MONEY: u8 = 0x11;
    pub const STREAM_MAX_MONEY: u8 = 0x12;
    pub const STREAM_MONEY_BLOCKED: u8 = 0x13;
    pub const STREAM_DATA: u8 = 0x14;
    pub const STREAM_MAX_DATA: u8 = 0x15;
    pub const STREAM_DATA_BLOCKED: u8 = 0x16;
    pub const STREAM_RECEIPT: u8 = 0x17;

    /// Whether `t` names a frame type this crate decodes into a typed variant.
    pub const fn is_known(t: u8) -> bool {
        matches!(t, 0x01..=0x07 | 0x10..=0x17)
    }
}

/// Why a stream or connection was closed (RFC 29 §5.4). A newtype rather than an enum because
/// the field is a plain `UInt8` on the wire and peers may send codes this version does not
/// know; those must survive a decode/encode round trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    pub const NO_ERROR: ErrorCode = ErrorCode(0x01);
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x02);
    pub const ENDPOINT_BUSY: ErrorCode = ErrorCode(0x03);
    pub const FLOW_CONTROL_ERROR: ErrorCode = ErrorCode(0x04);
    pub const STREAM_ID_ERROR: ErrorCode = ErrorCode(0x05);
    pub const STREAM_STATE_ERROR: ErrorCode = ErrorCode(0x06);
    pub const FRAME_FORMAT_ERROR: ErrorCode = ErrorCode(0x07);
    pub const PROTOCOL_VIOLATION: ErrorCode = ErrorCode(0x08);
    pub const APPLICATION_ERROR: ErrorCode = ErrorCode(0x09);

    /// The RFC's name for the code, or `None` for a code it does not define.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "NoError",
            0x02 => "InternalError",
            0x03 => "EndpointBusy",
            0x04 => "FlowControlError",
            0x05 => "StreamIdError",
            0x06 => "StreamStateError",
            0x07 => "FrameFormatError",
            0x08 => "ProtocolViolation",
            0x09 => "ApplicationError",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "ErrorCode({:#04x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One STREAM frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    ConnectionClose {
        code: ErrorCode,
        message: String,
    },
    /// The sender's address, as it wrote it: empty from a client that only sends (as
    /// `@interledger/pay` writes it unless the receiver's connection token is 24 characters
    /// long), and not checked as an ILP address here (the JS implementation reads any string).
    /// [`Frame::source_address`] gives it as an address when it is one.
    ConnectionNewAddress {
        source_account: String,
    },
    ConnectionMaxData {
        max_offset: u64,
    },
    ConnectionDataBlocked {
        max_offset: u64,
    },
    ConnectionMaxStreamId {
        max_stream_id: u64,
    },
    ConnectionStreamIdBlocked {
        max_stream_id: u64,
    },
    ConnectionAssetDetails {
        source_asset_code: String,
        source_asset_scale: u8,
    },
    StreamClose {
        stream_id: u64,
        code: ErrorCode,
        message: String,
    },
    StreamMoney {
        stream_id: u64,
        shares: u64,
    },
    /// `receive_max` above `u64::MAX` on the wire decodes as `u64::MAX` (RFC 29 §5.1.4).
    StreamMaxMoney {
        stream_id: u64,
        receive_max: u64,
        total_received: u64,
    },
    /// `send_max` above `u64::MAX` on the wire decodes as `u64::MAX` (RFC 29 §5.1.4).
    StreamMoneyBlocked {
        stream_id: u64,
        send_max: u64,
        total_sent: u64,
    },
    StreamData {
        stream_id: u64,
        offset: u64,
        data: Vec<u8>,
    },
    StreamMaxData {
        stream_id: u64,
        max_offset: u64,
    },
    StreamDataBlocked {
        stream_id: u64,
        max_offset: u64,
    },
    /// The receipt stays opaque here: a sender must carry receipts of versions it cannot
    /// decode (see [`super::receipt`] for version 1).
    StreamReceipt {
        stream_id: u64,
        receipt: Vec<u8>,
    },
    /// A frame type this version does not know. Encoding one whose `frame_type` is a known
    /// type produces bytes that decode as that known type instead.
    Unknown {
        frame_type: u8,
        contents: Vec<u8>,
    },
}

/// Everything that can be wrong with one frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("malformed frame: {0}")]
    Oer(#[from] OerError),
    #[error("frame {frame_type:#04x} has {count} bytes after its last field")]
    TrailingBytes { frame_type: u8, count: usize },
}

impl Frame {
    /// The address a `ConnectionNewAddress` names, when it is a valid ILP address; `None` for
    /// any other frame, an empty one (a sender that does not receive) or an invalid one.
    pub fn source_address(&self) -> Option<Address> {
        match self {
            Frame::ConnectionNewAddress { source_account } => {
                Address::try_from(source_account.as_str()).ok()
            }
            _ => None,
        }
    }

    /// The frame's type byte.
    pub fn frame_type(&self) -> u8 {
        use frame_type::*;
        match self {
            Frame::ConnectionClose { .. } => CONNECTION_CLOSE,
            Frame::ConnectionNewAddress { .. } => CONNECTION_NEW_ADDRESS,
            Frame::ConnectionMaxData { .. } => CONNECTION_MAX_DATA,
            Frame::ConnectionDataBlocked { .. } => CONNECTION_DATA_BLOCKED,
            Frame::ConnectionMaxStreamId { .. } => CONNECTION_MAX_STREAM_ID,
            Frame::ConnectionStreamIdBlocked { .. } => CONNECTION_STREAM_ID_BLOCKED,
            Frame::ConnectionAssetDetails { .. } => CONNECTION_ASSET_DETAILS,
            Frame::StreamClose { .. } => STREAM_CLOSE,
            Frame::StreamMoney { .. } => STREAM_MONEY,
            Frame::StreamMaxMoney { .. } => STREAM_MAX_MONEY,
            Frame::StreamMoneyBlocked { .. } => STREAM_MONEY_BLOCKED,
            Frame::StreamData { .. } => STREAM_DATA,
            Frame::StreamMaxData { .. } => STREAM_MAX_DATA,
            Frame::StreamDataBlocked { .. } => STREAM_DATA_BLOCKED,
            Frame::StreamReceipt { .. } => STREAM_RECEIPT,
            Frame::Unknown { frame_type, .. } => *frame_type,
        }
    }

    /// Decodes exactly one frame (type byte, length prefix, contents) from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let mut reader = Reader::new(bytes);
        let frame = Frame::read(&mut reader)?;
        reader.finish()?;
        Ok(frame)
    }

    /// Reads one frame from `reader`, leaving it just after the frame.
    pub fn read(reader: &mut Reader<'_>) -> Result<Frame, FrameError> {
        let frame_type = reader.read_u8()?;
        let contents = reader.read_var_octet_string()?;
        Frame::from_contents(frame_type, contents)
    }

    /// Builds a frame from its type byte and the bytes inside its length prefix.
    pub fn from_contents(frame_type: u8, contents: &[u8]) -> Result<Frame, FrameError> {
        use frame_type::*;
        let mut r = Reader::new(contents);
        let frame = match frame_type {
            CONNECTION_CLOSE => Frame::ConnectionClose {
                code: ErrorCode(r.read_u8()?),
                message: r.read_var_str()?.to_owned(),
            },
            CONNECTION_NEW_ADDRESS => Frame::ConnectionNewAddress {
                source_account: r.read_var_str()?.to_owned(),
            },
            CONNECTION_MAX_DATA => Frame::ConnectionMaxData {
                max_offset: r.read_var_uint()?,
            },
            CONNECTION_DATA_BLOCKED => Frame::ConnectionDataBlocked {
                max_offset: r.read_var_uint()?,
            },
            CONNECTION_MAX_STREAM_ID => Frame::ConnectionMaxStreamId {
                max_stream_id: r.read_var_uint()?,
            },
            CONNECTION_STREAM_ID_BLOCKED => Frame::ConnectionStreamIdBlocked {
                max_stream_id: r.read_var_uint()?,
            },
            CONNECTION_ASSET_DETAILS => Frame::ConnectionAssetDetails {
                source_asset_code: r.read_var_str()?.to_owned(),
                source_asset_scale: r.read_u8()?,
            },
            STREAM_CLOSE => Frame::StreamClose {
                stream_id: r.read_var_uint()?,
                code: ErrorCode(r.read_u8()?),
                message: r.read_var_str()?.to_owned(),
            },
            STREAM_MONEY => Frame::StreamMoney {
                stream_id: r.read_var_uint()?,
                shares: r.read_var_uint()?,
            },
            STREAM_MAX_MONEY => Frame::StreamMaxMoney {
                stream_id: r.read_var_uint()?,
                receive_max: r.read_var_uint_saturating()?,
                total_received: r.read_var_uint()?,
            },
            STREAM_MONEY_BLOCKED => Frame::StreamMoneyBlocked {
                stream_id: r.read_var_uint()?,
                send_max: r.read_var_uint_saturating()?,
                total_sent: r.read_var_uint()?,
            },
            STREAM_DATA => Frame::StreamData {
                stream_id: r.read_var_uint()?,
                offset: r.read_var_uint()?,
                data: r.read_var_octet_string()?.to_vec(),
            },
            STREAM_MAX_DATA => Frame::StreamMaxData {
                stream_id: r.read_var_uint()?,
                max_offset: r.read_var_uint()?,
            },
            STREAM_DATA_BLOCKED => Frame::StreamDataBlocked {
                stream_id: r.read_var_uint()?,
                max_offset: r.read_var_uint()?,
            },
            STREAM_RECEIPT => Frame::StreamReceipt {
                stream_id: r.read_var_uint()?,
                receipt: r.read_var_octet_string()?.to_vec(),
            },
            _ => {
                return Ok(Frame::Unknown {
                    frame_type,
                    contents: contents.to_vec(),
                })
            }
        };
        match r.remaining() {
            0 => Ok(frame),
            count => Err(FrameError::TrailingBytes { frame_type, count }),
        }
    }

    /// Length of the contents (the part inside the frame's length prefix).
    pub fn contents_len(&self) -> usize {
        use oer::{var_octet_string_size as vos, var_uint_size as vu};
        match self {
            Frame::ConnectionClose { message, .. } => 1 + vos(message.len()),
            Frame::ConnectionNewAddress { source_account } => vos(source_account.len()),
            Frame::ConnectionMaxData { max_offset: v }
            | Frame::ConnectionDataBlocked { max_offset: v }
            | Frame::ConnectionMaxStreamId { max_stream_id: v }
            | Frame::ConnectionStreamIdBlocked { max_stream_id: v } => vu(*v),
            Frame::ConnectionAssetDetails {
                source_asset_code, ..
            } => vos(source_asset_code.len()) + 1,
            Frame::StreamClose {
                stream_id, message, ..
            } => vu(*stream_id) + 1 + vos(message.len()),
            Frame::StreamMoney { stream_id, shares } => vu(*stream_id) + vu(*shares),
            Frame::StreamMaxMoney {
                stream_id: a,
                receive_max: b,
                total_received: c,
            }
            | Frame::StreamMoneyBlocked {
                stream_id: a,
                send_max: b,
                total_sent: c,
            } => vu(*a) + vu(*b) + vu(*c),
            Frame::StreamData {
                stream_id,
                offset,
                data,
            } => vu(*stream_id) + vu(*offset) + vos(data.len()),
            Frame::StreamMaxData {
                stream_id,
                max_offset,
            }
            | Frame::StreamDataBlocked {
                stream_id,
                max_offset,
            } => vu(*stream_id) + vu(*max_offset),
            Frame::StreamReceipt { stream_id, receipt } => vu(*stream_id) + vos(receipt.len()),
            Frame::Unknown { contents, .. } => contents.len(),
        }
    }

    /// Length of the whole encoded frame.
    pub fn encoded_len(&self) -> usize {
        1 + oer::var_octet_string_size(self.contents_len())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.frame_type());
        buf.put_length_prefix(self.contents_len());
        match self {
            Frame::ConnectionClose { code, message } => {
                buf.put_u8(code.0);
                buf.put_var_octet_string(message.as_bytes());
            }
            Frame::ConnectionNewAddress { source_account } => {
                buf.put_var_octet_string(source_account.as_bytes());
            }
            Frame::ConnectionMaxData { max_offset: v }
            | Frame::ConnectionDataBlocked { max_offset: v }
            | Frame::ConnectionMaxStreamId { max_stream_id: v }
            | Frame::ConnectionStreamIdBlocked { max_stream_id: v } => buf.put_var_uint(*v),
            Frame::ConnectionAssetDetails {
                source_asset_code,
                source_asset_scale,
            } => {
                buf.put_var_octet_string(source_asset_code.as_bytes());
                buf.put_u8(*source_asset_scale);
            }
            Frame::StreamClose {
                stream_id,
                code,
                message,
            } => {
                buf.put_var_uint(*stream_id);
                buf.put_u8(code.0);
                buf.put_var_octet_string(message.as_bytes());
            }
            Frame::StreamMoney { stream_id, shares } => {
                buf.put_var_uint(*stream_id);
                buf.put_var_uint(*shares);
            }
            Frame::StreamMaxMoney {
                stream_id: a,
                receive_max: b,
                total_received: c,
            }
            | Frame::StreamMoneyBlocked {
                stream_id: a,
                send_max: b,
                total_sent: c,
            } => {
                buf.put_var_uint(*a);
                buf.put_var_uint(*b);
                buf.put_var_uint(*c);
            }
            Frame::StreamData {
                stream_id,
                offset,
                data,
            } => {
                buf.put_var_uint(*stream_id);
                buf.put_var_uint(*offset);
                buf.put_var_octet_string(data);
            }
            Frame::StreamMaxData {
                stream_id,
                max_offset,
            }
            | Frame::StreamDataBlocked {
                stream_id,
                max_offset,
            } => {
                buf.put_var_uint(*stream_id);
                buf.put_var_uint(*max_offset);
            }
            Frame::StreamReceipt { stream_id, receipt } => {
                buf.put_var_uint(*stream_id);
                buf.put_var_octet_string(receipt);
            }
            Frame::Unknown { contents, .. } => buf.put_slice(contents),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn address() -> impl Strategy<Value = Address> {
        proptest::string::string_regex("(g|test|example)(\\.[a-zA-Z0-9_~-]{1,12}){1,4}")
            .unwrap()
            .prop_map(|s| Address::try_from(s.as_str()).unwrap())
    }

    pub(crate) fn frame() -> impl Strategy<Value = Frame> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (any::<u8>(), ".{0,40}").prop_map(|(c, message)| Frame::ConnectionClose {
                code: ErrorCode(c),
                message
            }),
            prop_oneof![
                address().prop_map(|a| a.as_str().to_owned()),
                ".{0,20}".boxed()
            ]
            .prop_map(|source_account| Frame::ConnectionNewAddress { source_account }),
            any::<u64>().prop_map(|max_offset| Frame::ConnectionMaxData { max_offset }),
            any::<u64>().prop_map(|max_offset| Frame::ConnectionDataBlocked { max_offset }),
            any::<u64>().prop_map(|max_stream_id| Frame::ConnectionMaxStreamId { max_stream_id }),
            any::<u64>()
                .prop_map(|max_stream_id| Frame::ConnectionStreamIdBlocked { max_stream_id }),
            (".{0,10}", any::<u8>()).prop_map(|(source_asset_code, source_asset_scale)| {
                Frame::ConnectionAssetDetails {
                    source_asset_code,
                    source_asset_scale,
                }
            }),
            (any::<u64>(), any::<u8>(), ".{0,200}").prop_map(|(stream_id, c, message)| {
                Frame::StreamClose {
                    stream_id,
                    code: ErrorCode(c),
                    message,
                }
            }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(stream_id, shares)| Frame::StreamMoney { stream_id, shares }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| {
                Frame::StreamMaxMoney {
                    stream_id: a,
                    receive_max: b,
                    total_received: c,
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| {
                Frame::StreamMoneyBlocked {
                    stream_id: a,
                    send_max: b,
                    total_sent: c,
                }
            }),
            (any::<u64>(), any::<u64>(), bytes()).prop_map(|(stream_id, offset, data)| {
                Frame::StreamData {
                    stream_id,
                    offset,
                    data,
                }
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(stream_id, max_offset)| {
                Frame::StreamMaxData {
                    stream_id,
                    max_offset,
                }
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(stream_id, max_offset)| {
                Frame::StreamDataBlocked {
                    stream_id,
                    max_offset,
                }
            }),
            (any::<u64>(), bytes())
                .prop_map(|(stream_id, receipt)| Frame::StreamReceipt { stream_id, receipt }),
            (
                any::<u8>().prop_filter("unknown types only", |t| !frame_type::is_known(*t)),
                bytes()
            )
                .prop_map(|(frame_type, contents)| Frame::Unknown {
                    frame_type,
                    contents
                }),
        ]
    }

    fn round_trip(frame: &Frame, hex_bytes: &str) {
        let bytes = hex::decode(hex_bytes).unwrap();
        assert_eq!(Frame::decode(&bytes).as_ref(), Ok(frame), "{hex_bytes}");
        assert_eq!(frame.encode(), bytes);
        assert_eq!(frame.encoded_len(), bytes.len());
    }

    #[test]
    fn golden_frames() {
        round_trip(
            &Frame::ConnectionClose {
                code: ErrorCode::NO_ERROR,
                message: "fail".into(),
            },
            "010601046661696c",
        );
        round_trip(
            &Frame::StreamMoney {
                stream_id: 1,
                shares: 1,
            },
            "110401010101",
        );
        round_trip(
            &Frame::Unknown {
                frame_type: 0xff,
                contents: vec![0x0f; 3],
            },
            "ff030f0f0f",
        );
        round_trip(
            &Frame::Unknown {
                frame_type: 0x08,
                contents: vec![],
            },
            "0800",
        );
    }

    #[test]
    fn long_contents_use_long_length_prefix() {
        let frame = Frame::StreamData {
            stream_id: 1,
            offset: 0,
            data: vec![7; 200],
        };
        let bytes = frame.encode();
        // 2 + 2 + (2 + 200) = 206 bytes of contents: long form 0x81 0xce.
        assert_eq!(&bytes[..3], &[0x14, 0x81, 206]);
        assert_eq!(Frame::decode(&bytes), Ok(frame));
    }

    #[test]
    fn saturating_amounts() {
        // receive_max is nine bytes (2^64), too big for a u64; total_received is 512.
        let max_money = hex::decode("120f017b09010000000000000000020200").unwrap();
        assert_eq!(
            Frame::decode(&max_money),
            Ok(Frame::StreamMaxMoney {
                stream_id: 123,
                receive_max: u64::MAX,
                total_received: 512,
            })
        );
        let mut blocked = max_money.clone();
        blocked[0] = frame_type::STREAM_MONEY_BLOCKED;
        assert_eq!(
            Frame::decode(&blocked),
            Ok(Frame::StreamMoneyBlocked {
                stream_id: 123,
                send_max: u64::MAX,
                total_sent: 512,
            })
        );
        // Only those two fields saturate; elsewhere an oversize var-uint is an error.
        assert_eq!(
            Frame::decode(&hex::decode("030a09010000000000000000").unwrap()),
            Err(FrameError::Oer(OerError::VarUintTooLarge(9)))
        );
        assert_eq!(
            Frame::decode(&hex::decode("120e09010000000000000000017b0100").unwrap()),
            Err(FrameError::Oer(OerError::VarUintTooLarge(9)))
        );
    }

    /// `@interledger/pay` 0.2.2 announces an empty address unless the receiver's connection
    /// token is 24 characters long (asset-details.js); the JS reference reads any string.
    #[test]
    fn a_connection_new_address_may_be_empty_or_not_an_address() {
        let empty = Frame::decode(&hex::decode("020100").unwrap()).unwrap();
        assert_eq!(
            empty,
            Frame::ConnectionNewAddress {
                source_account: String::new()
            }
        );
        assert_eq!(empty.source_address(), None);
        assert_eq!(hex::encode(empty.encode()), "020100");
        let odd = Frame::decode(&hex::decode("02050461626364").unwrap()).unwrap();
        assert_eq!(odd.source_address(), None);
        assert_eq!(hex::encode(odd.encode()), "02050461626364");
        let sender = Frame::ConnectionNewAddress {
            source_account: "test.alice".to_owned(),
        };
        assert_eq!(
            sender.source_address(),
            Some(Address::try_from("test.alice").unwrap())
        );
        assert_eq!(
            Frame::ConnectionMaxData { max_offset: 0 }.source_address(),
            None
        );
    }

    #[test]
    fn decode_errors() {
        let cases: &[(&str, FrameError)] = &[
            ("", FrameError::Oer(OerError::UnexpectedEnd)),
            ("11", FrameError::Oer(OerError::UnexpectedEnd)),
            // length prefix promises more than is there
            ("1105010101", FrameError::Oer(OerError::UnexpectedEnd)),
            // oversize length prefix
            (
                "1184ffffffff",
                FrameError::Oer(OerError::LengthTooLarge(0xffff_ffff)),
            ),
            // non-canonical length prefix
            (
                "11810401010101",
                FrameError::Oer(OerError::NonCanonicalLength),
            ),
            // contents too short for the fields
            ("11020101", FrameError::Oer(OerError::UnexpectedEnd)),
            // non-canonical var-uint inside the contents
            (
                "11050200010101",
                FrameError::Oer(OerError::NonCanonicalVarUint),
            ),
            // empty var-uint
            ("1103000101", FrameError::Oer(OerError::EmptyVarUint)),
            // leftover byte inside the contents
            (
                "11050101010100",
                FrameError::TrailingBytes {
                    frame_type: 0x11,
                    count: 1,
                },
            ),
            // invalid UTF-8 in the string fields
            ("01040102fffe", FrameError::Oer(OerError::InvalidUtf8)),
            ("1005017b0101ff", FrameError::Oer(OerError::InvalidUtf8)),
            ("070301ff02", FrameError::Oer(OerError::InvalidUtf8)),
            ("020201ff", FrameError::Oer(OerError::InvalidUtf8)),
        ];
        for (hex_bytes, err) in cases {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert_eq!(Frame::decode(&bytes).as_ref(), Err(err), "{hex_bytes}");
        }
        // trailing bytes after a whole frame
        assert_eq!(
            Frame::decode(&hex::decode("080000").unwrap()),
            Err(FrameError::Oer(OerError::TrailingBytes(1)))
        );
    }

    #[test]
    fn error_code_names() {
        assert_eq!(ErrorCode::NO_ERROR.name(), Some("NoError"));
        assert_eq!(
            ErrorCode::APPLICATION_ERROR.name(),
            Some("ApplicationError")
        );
        assert_eq!(ErrorCode(0xff).name(), None);
        assert_eq!(format!("{:?}", ErrorCode(0xff)), "ErrorCode(0xff)");
        assert_eq!(
            ErrorCode::PROTOCOL_VIOLATION.to_string(),
            "ProtocolViolation"
        );
    }

    proptest! {
        #[test]
        fn frame_round_trip(frame in frame()) {
            let bytes = frame.encode();
            prop_assert_eq!(bytes.len(), frame.encoded_len());
            prop_assert_eq!(Frame::decode(&bytes), Ok(frame));
        }

        #[test]
        fn frame_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(frame) = Frame::decode(&bytes) {
                // Whatever decodes (without saturation) re-encodes to the same bytes.
                let saturated = matches!(
                    frame,
                    Frame::StreamMaxMoney { receive_max: u64::MAX, .. }
                        | Frame::StreamMoneyBlocked { send_max: u64::MAX, .. }
                );
                if !saturated {
                    prop_assert_eq!(frame.encode(), bytes);
                }
            }
        }

        #[test]
        fn frame_decode_with_known_type_never_panics(
            t in prop_oneof![0x01u8..=0x07, 0x10u8..=0x17],
            contents in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let _ = Frame::from_contents(t, &contents);
        }
    }
}
