//! BTP/2.0 frames (RFC 23, `BilateralTransferProtocol.asn`): the envelope (type byte, request
//! id, length-prefixed body) and the four live bodies, Response (1), Error (2), Message (6) and
//! Transfer (7). Bytes match the JS `btp-packet` codec.
//!
//! The BTP/1 types Prepare (3), Fulfill (4) and Reject (5) are not decoded: they yield
//! [`FrameError::DeprecatedType`] (with the request id, which the envelope still gives), the
//! same outcome as with the current JS codec, which refuses them.

use bytes::{BufMut, Bytes};
use std::fmt;
use thiserror::Error;

use super::generalized_time::GeneralizedTime;
use super::protocol_data::{read_ia5, ProtocolData};
use crate::oer::{length_prefix_size, var_octet_string_size, OerError, OerWrite, Reader};

pub const TYPE_RESPONSE: u8 = 1;
pub const TYPE_ERROR: u8 = 2;
pub const TYPE_PREPARE: u8 = 3;
pub const TYPE_FULFILL: u8 = 4;
pub const TYPE_REJECT: u8 = 5;
pub const TYPE_MESSAGE: u8 = 6;
pub const TYPE_TRANSFER: u8 = 7;

/// Largest `data` of an Error frame (`OCTET STRING (SIZE (0..8192))`).
pub const MAX_ERROR_DATA: usize = 8192;

/// Everything that can make a frame unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error(transparent)]
    Oer(#[from] OerError),
    #[error("unknown BTP frame type {0}")]
    UnknownType(u8),
    #[error("BTP/1 frame type {type_id} (request {request_id}) is not supported by BTP/2.0")]
    DeprecatedType { type_id: u8, request_id: u32 },
    #[error("{0} is not an IA5 (ASCII) string")]
    NonAscii(&'static str),
    #[error("error code {0:?} is not three ASCII characters")]
    InvalidErrorCode([u8; 3]),
    #[error("triggeredAt is not a YYYYMMDDHHMMSS.mmmZ GeneralizedTime")]
    InvalidTimestamp,
    #[error("error data is {0} bytes; at most 8192 are allowed")]
    ErrorDataTooLong(usize),
}

/// A three-character BTP error code (`IA5String (SIZE (3))`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BtpErrorCode([u8; 3]);

impl BtpErrorCode {
    pub const T00_UNREACHABLE: BtpErrorCode = BtpErrorCode(*b"T00");
    pub const F00_NOT_ACCEPTED: BtpErrorCode = BtpErrorCode(*b"F00");
    pub const F01_INVALID_FIELDS: BtpErrorCode = BtpErrorCode(*b"F01");
    pub const F03_TRANSFER_NOT_FOUND: BtpErrorCode = BtpErrorCode(*b"F03");
    pub const F04_INVALID_FULFILLMENT: BtpErrorCode = BtpErrorCode(*b"F04");
    pub const F05_DUPLICATE_ID: BtpErrorCode = BtpErrorCode(*b"F05");
    pub const F06_ALREADY_ROLLED_BACK: BtpErrorCode = BtpErrorCode(*b"F06");
    pub const F07_ALREADY_FULFILLED: BtpErrorCode = BtpErrorCode(*b"F07");
    pub const F08_INSUFFICIENT_BALANCE: BtpErrorCode = BtpErrorCode(*b"F08");

    /// Any three ASCII bytes.
    pub fn new(code: [u8; 3]) -> Result<Self, FrameError> {
        if code.is_ascii() {
            Ok(BtpErrorCode(code))
        } else {
            Err(FrameError::InvalidErrorCode(code))
        }
    }

    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The RFC 23 name of a standard code.
    pub fn name(&self) -> Option<&'static str> {
        Some(match &self.0 {
            b"T00" => "UnreachableError",
            b"F00" => "NotAcceptedError",
            b"F01" => "InvalidFieldsError",
            b"F03" => "TransferNotFoundError",
            b"F04" => "InvalidFulfillmentError",
            b"F05" => "DuplicateIdError",
            b"F06" => "AlreadyRolledBackError",
            b"F07" => "AlreadyFulfilledError",
            b"F08" => "InsufficientBalanceError",
            _ => return None,
        })
    }

    /// `T..` codes may be retried after a wait; the rest are final.
    pub fn is_temporary(&self) -> bool {
        self.0[0] == b'T'
    }
}

impl fmt::Debug for BtpErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BtpErrorCode({})", self.as_str())
    }
}

impl fmt::Display for BtpErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of an Error frame. `name` and `data` are private because the decoder refuses a
/// non-ASCII name and more than [`MAX_ERROR_DATA`] bytes of data; the constructors refuse them
/// too, so every payload we can build encodes to a frame we (and the JS codec) read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPayload {
    pub code: BtpErrorCode,
    name: String,
    pub triggered_at: GeneralizedTime,
    data: Bytes,
    pub protocol_data: ProtocolData,
}

impl ErrorPayload {
    /// An error with the standard name of `code` (or `"UnknownError"`), no protocol data, and
    /// `data` cut to [`MAX_ERROR_DATA`] bytes.
    pub fn new(code: BtpErrorCode, triggered_at: GeneralizedTime, data: impl Into<Bytes>) -> Self {
        let mut data: Bytes = data.into();
        data.truncate(MAX_ERROR_DATA);
        ErrorPayload {
            code,
            name: code.name().unwrap_or("UnknownError").to_owned(),
            triggered_at,
            data,
            protocol_data: ProtocolData::new(),
        }
    }

    /// Every field chosen by the caller: [`FrameError::NonAscii`] for a non-ASCII `name`,
    /// [`FrameError::ErrorDataTooLong`] for more than [`MAX_ERROR_DATA`] bytes of `data`.
    pub fn try_new(
        code: BtpErrorCode,
        name: impl Into<String>,
        triggered_at: GeneralizedTime,
        data: impl Into<Bytes>,
        protocol_data: ProtocolData,
    ) -> Result<Self, FrameError> {
        let name = name.into();
        if !name.is_ascii() {
            return Err(FrameError::NonAscii("name"));
        }
        let data = data.into();
        if data.len() > MAX_ERROR_DATA {
            return Err(FrameError::ErrorDataTooLong(data.len()));
        }
        Ok(ErrorPayload {
            code,
            name,
            triggered_at,
            data,
            protocol_data,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// At most [`MAX_ERROR_DATA`] bytes; ilp-plugin-btp puts a JSON `{"message": ...}` here.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    fn encoded_len(&self) -> usize {
        3 + var_octet_string_size(self.name.len())
            + var_octet_string_size(GeneralizedTime::LEN)
            + var_octet_string_size(self.data.len())
            + self.protocol_data.encoded_len()
    }
}

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Response(ProtocolData),
    Error(ErrorPayload),
    Message(ProtocolData),
    Transfer {
        amount: u64,
        protocol_data: ProtocolData,
    },
}

/// One BTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub request_id: u32,
    pub payload: Payload,
}

impl Frame {
    /// The client's first Message: `auth`, `auth_username`, `auth_token`.
    pub fn auth(request_id: u32, username: &str, token: &str) -> Self {
        Frame {
            request_id,
            payload: Payload::Message(ProtocolData::auth(username, token)),
        }
    }

    /// A Message carrying an ILP packet (normally a Prepare) under `ilp`.
    pub fn ilp_message(request_id: u32, packet: impl Into<Bytes>) -> Self {
        Frame {
            request_id,
            payload: Payload::Message(ProtocolData::ilp_packet(packet)),
        }
    }

    /// A Response carrying an ILP packet (a Fulfill or Reject) under `ilp`.
    pub fn ilp_response(request_id: u32, packet: impl Into<Bytes>) -> Self {
        Frame {
            request_id,
            payload: Payload::Response(ProtocolData::ilp_packet(packet)),
        }
    }

    pub fn type_id(&self) -> u8 {
        match self.payload {
            Payload::Response(_) => TYPE_RESPONSE,
            Payload::Error(_) => TYPE_ERROR,
            Payload::Message(_) => TYPE_MESSAGE,
            Payload::Transfer { .. } => TYPE_TRANSFER,
        }
    }

    /// Message and Transfer are requests; Response and Error answer them.
    pub fn is_request(&self) -> bool {
        matches!(self.payload, Payload::Message(_) | Payload::Transfer { .. })
    }

    /// The protocol data of any frame type.
    pub fn protocol_data(&self) -> &ProtocolData {
        match &self.payload {
            Payload::Response(pd) | Payload::Message(pd) => pd,
            Payload::Error(e) => &e.protocol_data,
            Payload::Transfer { protocol_data, .. } => protocol_data,
        }
    }

    /// Decodes a frame, copying the data it keeps.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        decode_with(bytes, &Bytes::copy_from_slice)
    }

    /// Decodes a frame whose protocol data share `bytes` (no copy of the ILP packets).
    pub fn decode_bytes(bytes: &Bytes) -> Result<Frame, FrameError> {
        decode_with(bytes, &|s| bytes.slice_ref(s))
    }

    fn body_len(&self) -> usize {
        match &self.payload {
            Payload::Response(pd) | Payload::Message(pd) => pd.encoded_len(),
            Payload::Error(e) => e.encoded_len(),
            Payload::Transfer { protocol_data, .. } => 8 + protocol_data.encoded_len(),
        }
    }

    /// Exact size of [`Frame::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        1 + 4 + length_prefix_size(body) + body
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.type_id());
        buf.put_u32(self.request_id);
        buf.put_length_prefix(self.body_len());
        match &self.payload {
            Payload::Response(pd) | Payload::Message(pd) => pd.encode_to(buf),
            Payload::Transfer {
                amount,
                protocol_data,
            } => {
                buf.put_u64(*amount);
                protocol_data.encode_to(buf);
            }
            Payload::Error(e) => {
                buf.put_slice(e.code.as_bytes());
                buf.put_var_octet_string(e.name.as_bytes());
                buf.put_var_octet_string(e.triggered_at.as_bytes());
                buf.put_var_octet_string(&e.data);
                e.protocol_data.encode_to(buf);
            }
        }
    }
}

fn decode_with(bytes: &[u8], share: &dyn Fn(&[u8]) -> Bytes) -> Result<Frame, FrameError> {
    let mut envelope = Reader::new(bytes);
    let type_id = envelope.read_u8()?;
    let request_id = envelope.read_u32()?;
    let body = envelope.read_var_octet_string()?;
    envelope.finish()?;

    let mut r = Reader::new(body);
    let payload = match type_id {
        TYPE_RESPONSE => Payload::Response(ProtocolData::decode_from(&mut r, share)?),
        TYPE_MESSAGE => Payload::Message(ProtocolData::decode_from(&mut r, share)?),
        TYPE_TRANSFER => {
            let amount = r.read_u64()?;
            Payload::Transfer {
                amount,
                protocol_data: ProtocolData::decode_from(&mut r, share)?,
            }
        }
        TYPE_ERROR => Payload::Error(decode_error(&mut r, share)?),
        TYPE_PREPARE | TYPE_FULFILL | TYPE_REJECT => {
            return Err(FrameError::DeprecatedType {
                type_id,
                request_id,
            })
        }
        other => return Err(FrameError::UnknownType(other)),
    };
    r.finish()?;
    Ok(Frame {
        request_id,
        payload,
    })
}

fn decode_error(
    r: &mut Reader<'_>,
    share: &dyn Fn(&[u8]) -> Bytes,
) -> Result<ErrorPayload, FrameError> {
    let code = BtpErrorCode::new(*r.read_array::<3>()?)?;
    let name = read_ia5(r, "name")?;
    let triggered_at = GeneralizedTime::parse(r.read_var_octet_string()?)
        .map_err(|_| FrameError::InvalidTimestamp)?;
    let data = r.read_var_octet_string()?;
    if data.len() > MAX_ERROR_DATA {
        return Err(FrameError::ErrorDataTooLong(data.len()));
    }
    let data = share(data);
    let protocol_data = ProtocolData::decode_from(r, share)?;
    Ok(ErrorPayload {
        code,
        name,
        triggered_at,
        data,
        protocol_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btp::protocol_data::{ContentType, ProtocolDataEntry};
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/data/btp/vectors.json");

    fn entries_from_json(v: &Value) -> ProtocolData {
        ProtocolData(
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    ProtocolDataEntry::new(
                        e["protocolName"].as_str().unwrap(),
                        ContentType(e["contentType"].as_u64().unwrap() as u8),
                        hex::decode(e["dataHex"].as_str().unwrap()).unwrap(),
                    )
                    .unwrap()
                })
                .collect(),
        )
    }

    fn frame_from_json(v: &Value) -> Frame {
        let pd = entries_from_json(&v["protocolData"]);
        let payload = match v["type"].as_u64().unwrap() {
            1 => Payload::Response(pd),
            6 => Payload::Message(pd),
            7 => Payload::Transfer {
                amount: v["amount"].as_str().unwrap().parse().unwrap(),
                protocol_data: pd,
            },
            2 => Payload::Error(
                ErrorPayload::try_new(
                    BtpErrorCode::new(v["code"].as_str().unwrap().as_bytes().try_into().unwrap())
                        .unwrap(),
                    v["errorName"].as_str().unwrap(),
                    GeneralizedTime::parse(v["triggeredAt"].as_str().unwrap().as_bytes()).unwrap(),
                    hex::decode(v["dataHex"].as_str().unwrap()).unwrap(),
                    pd,
                )
                .unwrap(),
            ),
            t => panic!("unexpected type {t}"),
        };
        Frame {
            request_id: v["requestId"].as_u64().unwrap() as u32,
            payload,
        }
    }

    #[test]
    fn golden_vectors_both_ways() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 8);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
            let expected = frame_from_json(v);
            assert_eq!(Frame::decode(&bytes).unwrap(), expected, "{name}");
            assert_eq!(
                Frame::decode_bytes(&Bytes::from(bytes.clone())).unwrap(),
                expected,
                "{name}"
            );
            assert_eq!(expected.encode(), bytes, "{name}");
            assert_eq!(expected.encoded_len(), bytes.len(), "{name}");
        }
    }

    #[test]
    fn invalid_vectors_give_typed_errors() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        for v in doc["invalid"].as_array().unwrap() {
            let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
            let err = Frame::decode(&bytes).unwrap_err();
            assert_eq!(
                format!("{err:?}"),
                v["error"].as_str().unwrap(),
                "{}",
                v["name"]
            );
        }
    }

    #[test]
    fn helpers_build_the_js_shapes() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        let find = |n: &str| {
            doc["vectors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == n)
                .map(|v| hex::decode(v["hex"].as_str().unwrap()).unwrap())
                .unwrap()
        };
        assert_eq!(
            Frame::auth(0x0102_0304, "alice", "secret").encode(),
            find("auth_message")
        );
        let prepare = hex::decode("0c03010203").unwrap();
        assert_eq!(
            Frame::ilp_message(7, prepare.clone()).encode(),
            find("ilp_message")
        );
        assert_eq!(
            Frame::ilp_response(7, prepare.clone()).encode(),
            find("ilp_response")
        );
        let f = Frame::decode(&find("ilp_message")).unwrap();
        assert!(f.is_request());
        assert_eq!(f.protocol_data().ilp().unwrap().as_ref(), &prepare[..]);
    }

    #[test]
    fn error_code_helpers() {
        assert_eq!(
            BtpErrorCode::F00_NOT_ACCEPTED.name(),
            Some("NotAcceptedError")
        );
        assert_eq!(
            BtpErrorCode::T00_UNREACHABLE.name(),
            Some("UnreachableError")
        );
        assert!(BtpErrorCode::T00_UNREACHABLE.is_temporary());
        assert!(!BtpErrorCode::F05_DUPLICATE_ID.is_temporary());
        assert_eq!(BtpErrorCode::new(*b"L13").unwrap().name(), None);
        assert_eq!(BtpErrorCode::new(*b"L13").unwrap().to_string(), "L13");
        assert_eq!(
            BtpErrorCode::new([b'F', 0x80, b'0']),
            Err(FrameError::InvalidErrorCode([b'F', 0x80, b'0']))
        );
        let t = GeneralizedTime::from_unix_millis(0).unwrap();
        let e = ErrorPayload::new(BtpErrorCode::new(*b"X99").unwrap(), t, vec![0u8; 9000]);
        assert_eq!(e.name(), "UnknownError");
        assert_eq!(e.data().len(), MAX_ERROR_DATA);
    }

    #[test]
    fn unencodable_error_payloads_are_unrepresentable() {
        let t = GeneralizedTime::from_unix_millis(0).unwrap();
        let code = BtpErrorCode::F00_NOT_ACCEPTED;
        let pd = ProtocolData::new;
        assert_eq!(
            ErrorPayload::try_new(code, "Fehl\u{e9}r", t, Bytes::new(), pd()),
            Err(FrameError::NonAscii("name"))
        );
        assert_eq!(
            ErrorPayload::try_new(code, "n", t, vec![0u8; MAX_ERROR_DATA + 1], pd()),
            Err(FrameError::ErrorDataTooLong(MAX_ERROR_DATA + 1))
        );
        // The limits themselves are fine and round-trip.
        let e = ErrorPayload::try_new(code, "\x7f", t, vec![7u8; MAX_ERROR_DATA], pd()).unwrap();
        let f = Frame {
            request_id: 1,
            payload: Payload::Error(e),
        };
        assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
    }

    /// A well-formed frame of each type, for the error-path tests to corrupt.
    fn error_frame_bytes(data_len: usize) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_slice(b"F00");
        body.put_var_octet_string(b"NotAcceptedError");
        body.put_var_octet_string(b"20171223012140.549Z");
        body.put_var_octet_string(&vec![b'x'; data_len]);
        body.put_slice(&[1, 0]);
        let mut out = vec![TYPE_ERROR, 0, 0, 0, 9];
        out.put_var_octet_string(&body);
        out
    }

    #[test]
    fn decode_error_paths() {
        use OerError::*;
        let d = |b: &[u8]| Frame::decode(b).unwrap_err();
        // Envelope.
        assert_eq!(d(&[]), FrameError::Oer(UnexpectedEnd));
        assert_eq!(d(&[6, 0, 0]), FrameError::Oer(UnexpectedEnd));
        assert_eq!(d(&[6, 0, 0, 0, 1]), FrameError::Oer(UnexpectedEnd));
        assert_eq!(d(&[6, 0, 0, 0, 1, 3, 1, 0]), FrameError::Oer(UnexpectedEnd));
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 2, 1, 0, 0xff]),
            FrameError::Oer(TrailingBytes(1))
        );
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 0x81, 2, 1, 0]),
            FrameError::Oer(NonCanonicalLength)
        );
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 0x84, 0xff, 0xff, 0xff, 0xff]),
            FrameError::Oer(LengthTooLarge(0xffff_ffff))
        );
        // Types.
        assert_eq!(d(&[0, 0, 0, 0, 1, 2, 1, 0]), FrameError::UnknownType(0));
        assert_eq!(d(&[8, 0, 0, 0, 1, 2, 1, 0]), FrameError::UnknownType(8));
        assert_eq!(d(&[255, 0, 0, 0, 1, 0]), FrameError::UnknownType(255));
        for t in [TYPE_PREPARE, TYPE_FULFILL, TYPE_REJECT] {
            assert_eq!(
                d(&[t, 0, 0, 1, 2, 0]),
                FrameError::DeprecatedType {
                    type_id: t,
                    request_id: 0x102
                }
            );
        }
        // Bodies: empty, trailing, truncated, non-canonical count.
        assert_eq!(d(&[1, 0, 0, 0, 1, 0]), FrameError::Oer(UnexpectedEnd));
        assert_eq!(
            d(&[1, 0, 0, 0, 1, 3, 1, 0, 0]),
            FrameError::Oer(TrailingBytes(1))
        );
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 3, 2, 0, 0]),
            FrameError::Oer(NonCanonicalVarUint)
        );
        assert_eq!(d(&[6, 0, 0, 0, 1, 1, 0]), FrameError::Oer(EmptyVarUint));
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 10, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            FrameError::Oer(VarUintTooLarge(9))
        );
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 5, 1, 2, 1, b'a', 0]),
            FrameError::Oer(CountTooLarge(2))
        );
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 5, 1, 1, 1, b'a', 0]),
            FrameError::Oer(UnexpectedEnd)
        );
        assert_eq!(
            d(&[6, 0, 0, 0, 1, 6, 1, 1, 1, 0xe9, 0, 0]),
            FrameError::NonAscii("protocolName")
        );
        // Transfer: amount truncated.
        assert_eq!(
            d(&[7, 0, 0, 0, 1, 4, 0, 0, 0, 1]),
            FrameError::Oer(UnexpectedEnd)
        );
        // Error bodies.
        let good = error_frame_bytes(3);
        assert!(Frame::decode(&good).is_ok());
        for cut in 0..good.len() {
            // Every strict prefix of the whole frame breaks the envelope.
            assert_eq!(d(&good[..cut]), FrameError::Oer(UnexpectedEnd), "cut {cut}");
        }
        let mut bad_code = good.clone();
        bad_code[6] = 0xc6;
        assert_eq!(
            d(&bad_code),
            FrameError::InvalidErrorCode([0xc6, b'0', b'0'])
        );
        let mut bad_name = good.clone();
        bad_name[10] = 0x80;
        assert_eq!(d(&bad_name), FrameError::NonAscii("name"));
        let mut bad_time = good.clone();
        let t = 6 + 3 + 1 + 16 + 1;
        assert_eq!(&bad_time[t..t + 4], b"2017");
        bad_time[t + 4] = b'1';
        bad_time[t + 5] = b'3';
        assert_eq!(d(&bad_time), FrameError::InvalidTimestamp);
        bad_time[t + 14] = b'Z';
        assert_eq!(d(&bad_time), FrameError::InvalidTimestamp);
        assert!(Frame::decode(&error_frame_bytes(MAX_ERROR_DATA)).is_ok());
        assert_eq!(
            d(&error_frame_bytes(MAX_ERROR_DATA + 1)),
            FrameError::ErrorDataTooLong(MAX_ERROR_DATA + 1)
        );
    }

    /// Cuts each body short but wraps the cut in a valid envelope, so the error comes from the
    /// body decoder itself, field by field.
    #[test]
    fn truncated_bodies_inside_valid_envelopes() {
        use OerError::*;
        let pd = || {
            ProtocolData(vec![ProtocolDataEntry::new(
                "ilp",
                ContentType::OCTET_STREAM,
                &b"\x0c\x01\x02"[..],
            )
            .unwrap()])
        };
        let t = GeneralizedTime::from_unix_millis(1_514_000_000_549).unwrap();
        let error = ErrorPayload::try_new(
            BtpErrorCode::F08_INSUFFICIENT_BALANCE,
            "E",
            t,
            &b"xyz"[..],
            pd(),
        )
        .unwrap();
        let frames = [
            Payload::Response(pd()),
            Payload::Message(pd()),
            Payload::Transfer {
                amount: 0x0102_0304_0506_0708,
                protocol_data: pd(),
            },
            Payload::Error(error),
        ];
        for payload in frames {
            let f = Frame {
                request_id: 3,
                payload,
            };
            let bytes = f.encode();
            let body_len = f.body_len();
            let body = &bytes[5 + length_prefix_size(body_len)..];
            assert_eq!(body.len(), body_len);
            // The protocol data (last in every body) is count 1 (two bytes) then 9 bytes of
            // entry; a cut leaving one or two entry bytes is refused by the count bound, before
            // the entry is read.
            let pd_start = body_len - f.protocol_data().encoded_len();
            for cut in 0..body_len {
                let mut framed = vec![f.type_id(), 0, 0, 0, 3];
                framed.put_var_octet_string(&body[..cut]);
                let expected = if (pd_start + 2..pd_start + 5).contains(&cut) {
                    FrameError::Oer(CountTooLarge(1))
                } else {
                    FrameError::Oer(UnexpectedEnd)
                };
                assert_eq!(
                    Frame::decode(&framed),
                    Err(expected),
                    "type {} cut {cut}",
                    f.type_id()
                );
            }
        }
    }

    #[test]
    fn short_timestamp_is_refused() {
        let mut body = Vec::new();
        body.put_slice(b"F00");
        body.put_var_octet_string(b"n");
        body.put_var_octet_string(b"20171223012140549Z");
        body.put_var_octet_string(b"");
        body.put_slice(&[1, 0]);
        let mut out = vec![TYPE_ERROR, 0, 0, 0, 1];
        out.put_var_octet_string(&body);
        assert_eq!(Frame::decode(&out), Err(FrameError::InvalidTimestamp));
    }

    fn arb_protocol_data() -> impl Strategy<Value = ProtocolData> {
        proptest::collection::vec(
            (
                "[ -~]{0,12}",
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..160),
            )
                .prop_map(|(n, c, d)| ProtocolDataEntry::new(n, ContentType(c), d).unwrap()),
            0..4,
        )
        .prop_map(ProtocolData)
    }

    fn arb_error() -> impl Strategy<Value = ErrorPayload> {
        (
            "[ -~]{3}",
            "[ -~]{0,20}",
            0..=253_402_300_799_999u64,
            proptest::collection::vec(any::<u8>(), 0..300),
            arb_protocol_data(),
        )
            .prop_map(|(code, name, ms, data, pd)| {
                ErrorPayload::try_new(
                    BtpErrorCode::new(code.as_bytes().try_into().unwrap()).unwrap(),
                    name,
                    GeneralizedTime::from_unix_millis(ms).unwrap(),
                    data,
                    pd,
                )
                .unwrap()
            })
    }

    fn round_trip(f: &Frame) -> Result<(), TestCaseError> {
        let bytes = f.encode();
        prop_assert_eq!(bytes.len(), f.encoded_len());
        prop_assert_eq!(&Frame::decode(&bytes).unwrap(), f);
        prop_assert_eq!(&Frame::decode_bytes(&Bytes::from(bytes)).unwrap(), f);
        Ok(())
    }

    proptest! {
        #[test]
        fn response_round_trip(id: u32, pd in arb_protocol_data()) {
            round_trip(&Frame { request_id: id, payload: Payload::Response(pd) })?;
        }

        #[test]
        fn message_round_trip(id: u32, pd in arb_protocol_data()) {
            round_trip(&Frame { request_id: id, payload: Payload::Message(pd) })?;
        }

        #[test]
        fn transfer_round_trip(id: u32, amount: u64, pd in arb_protocol_data()) {
            round_trip(&Frame {
                request_id: id,
                payload: Payload::Transfer { amount, protocol_data: pd },
            })?;
        }

        #[test]
        fn error_round_trip(id: u32, e in arb_error()) {
            round_trip(&Frame { request_id: id, payload: Payload::Error(e) })?;
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Frame::decode(&bytes);
            let _ = Frame::decode_bytes(&Bytes::from(bytes));
        }

        #[test]
        fn decode_never_panics_on_plausible_envelopes(
            t in 1u8..8,
            id: u32,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = vec![t];
            bytes.put_u32(id);
            bytes.put_var_octet_string(&body);
            if let Ok(f) = Frame::decode(&bytes) {
                // Whatever decodes must re-encode to the same bytes (canonical form).
                prop_assert_eq!(f.encode(), bytes);
            }
        }
    }
}
