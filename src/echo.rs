//! The echo (ping) protocol of the JS connector: a Prepare addressed to a connector's own
//! address whose data starts with `ECHOECHOECHOECHO` asks the connector to send a Prepare with
//! the same amount and condition back to the sender's address. The sender fulfills that
//! returning Prepare itself, which proves the round trip.
//!
//! Data layout: the 16-byte prefix, a type byte (0 request, 1 response) and, for a request,
//! the source address as a var string.

use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{Address, AddressError, PacketError, Prepare, PrepareBuilder, Timestamp};
use bytes::BufMut;
use thiserror::Error;

/// Every echo message starts with these 16 bytes.
pub const ECHO_PREFIX: &[u8; 16] = b"ECHOECHOECHOECHO";

const TYPE_REQUEST: u8 = 0;
const TYPE_RESPONSE: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EchoError {
    #[error("data does not start with the echo prefix")]
    NotEcho,
    #[error("malformed echo message: {0}")]
    Oer(#[from] OerError),
    #[error("unknown echo message type {0}")]
    UnknownType(u8),
    #[error("echo source address is invalid: {0}")]
    InvalidSourceAddress(AddressError),
    #[error("unexpected echo response addressed to us")]
    UnexpectedResponse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoMessage {
    /// Asks the receiving connector to send the payment back to `source_address`.
    Request { source_address: Address },
    /// The payment on its way back.
    Response,
}

impl EchoMessage {
    /// True when `data` carries the echo prefix, i.e. the packet is meant as an echo message
    /// (whether or not the rest of it is well formed).
    pub fn has_prefix(data: &[u8]) -> bool {
        data.starts_with(ECHO_PREFIX)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EchoError> {
        if !Self::has_prefix(bytes) {
            return Err(EchoError::NotEcho);
        }
        let mut r = Reader::new(bytes);
        r.skip(ECHO_PREFIX.len())?;
        let msg = match r.read_u8()? {
            TYPE_REQUEST => {
                let raw = r.read_var_octet_string()?;
                let source_address =
                    Address::try_from(raw).map_err(EchoError::InvalidSourceAddress)?;
                EchoMessage::Request { source_address }
            }
            TYPE_RESPONSE => EchoMessage::Response,
            other => return Err(EchoError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_slice(ECHO_PREFIX);
        match self {
            EchoMessage::Request { source_address } => {
                buf.put_u8(TYPE_REQUEST);
                buf.put_var_octet_string(source_address.as_bytes());
            }
            EchoMessage::Response => buf.put_u8(TYPE_RESPONSE),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A ping: a Prepare to `destination` (a connector's own address) asking it to send the
/// payment back to `source`. Building the Prepare is the only thing that can fail.
pub fn request(
    destination: &Address,
    source: &Address,
    amount: u64,
    expires_at: Timestamp,
    execution_condition: &[u8; 32],
) -> Result<Prepare, PacketError> {
    let data = EchoMessage::Request {
        source_address: source.clone(),
    }
    .encode();
    PrepareBuilder {
        amount,
        expires_at,
        execution_condition,
        destination,
        data: &data,
    }
    .build()
}

/// The address an echo request addressed to us asks us to send the payment back to.
pub fn requested_source(prepare: &Prepare) -> Result<Address, EchoError> {
    match EchoMessage::decode(prepare.data())? {
        EchoMessage::Request { source_address } => Ok(source_address),
        EchoMessage::Response => Err(EchoError::UnexpectedResponse),
    }
}

/// Answers an echo request whose source [`requested_source`] read: the same amount and
/// condition go back to `source` as an echo response. The JS middleware keeps the expiry and
/// lets the forwarding path shorten it like any other packet's; `expiry_margin_ms` takes a
/// margin off here as well (0 behaves exactly like the JS connector).
pub fn answer_request(
    prepare: &Prepare,
    source: &Address,
    expiry_margin_ms: u64,
) -> Result<Prepare, PacketError> {
    let data = EchoMessage::Response.encode();
    PrepareBuilder {
        amount: prepare.amount(),
        expires_at: prepare.expires_at().saturating_sub_millis(expiry_margin_ms),
        execution_condition: prepare.execution_condition(),
        destination: source,
        data: &data,
    }
    .build()
}

/// True when `prepare` is an echo response coming back to its sender.
pub fn is_response(prepare: &Prepare) -> bool {
    EchoMessage::decode(prepare.data()) == Ok(EchoMessage::Response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request_bytes() -> Vec<u8> {
        let mut v = b"ECHOECHOECHOECHO".to_vec();
        v.push(0);
        v.push(11);
        v.extend_from_slice(b"test.sender");
        v
    }

    #[test]
    fn golden_request() {
        let bytes = request_bytes();
        let msg = EchoMessage::Request {
            source_address: Address::try_from("test.sender").unwrap(),
        };
        assert_eq!(EchoMessage::decode(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
        assert_eq!(
            hex::encode(&bytes),
            "4543484f4543484f4543484f4543484f000b746573742e73656e646572"
        );
    }

    #[test]
    fn golden_response() {
        let bytes = hex::decode("4543484f4543484f4543484f4543484f01").unwrap();
        assert_eq!(EchoMessage::decode(&bytes), Ok(EchoMessage::Response));
        assert_eq!(EchoMessage::Response.encode(), bytes);
    }

    #[test]
    fn errors() {
        assert_eq!(EchoMessage::decode(b""), Err(EchoError::NotEcho));
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECH"),
            Err(EchoError::NotEcho)
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHX\x01"),
            Err(EchoError::NotEcho)
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO"),
            Err(EchoError::Oer(OerError::UnexpectedEnd))
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO\x02"),
            Err(EchoError::UnknownType(2))
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO\x01\x00"),
            Err(EchoError::Oer(OerError::TrailingBytes(1)))
        );
        let good = request_bytes();
        for n in 16..good.len() {
            assert_eq!(
                EchoMessage::decode(&good[..n]),
                Err(EchoError::Oer(OerError::UnexpectedEnd)),
                "prefix of {n} bytes"
            );
        }
        let mut trailing = good.clone();
        trailing.push(b'x');
        assert_eq!(
            EchoMessage::decode(&trailing),
            Err(EchoError::Oer(OerError::TrailingBytes(1)))
        );
        let mut bad = good.clone();
        bad[23] = b' ';
        assert_eq!(
            EchoMessage::decode(&bad),
            Err(EchoError::InvalidSourceAddress(
                AddressError::InvalidCharacter(5)
            ))
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO\x00\x81\x05g.abc"),
            Err(EchoError::Oer(OerError::NonCanonicalLength))
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO\x00\x83\xff\xff\xff"),
            Err(EchoError::Oer(OerError::UnexpectedEnd))
        );
        // a length prefix beyond what OER allows at all
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO\x00\x84\xff\xff\xff\xff"),
            Err(EchoError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
        assert_eq!(
            EchoMessage::decode(b"ECHOECHOECHOECHO\x00\x03g.\xff"),
            Err(EchoError::InvalidSourceAddress(
                AddressError::InvalidCharacter(2)
            ))
        );
    }

    fn addr(s: &str) -> Address {
        Address::try_from(s).unwrap()
    }

    #[test]
    fn answer_sends_the_payment_back() {
        let expires = Timestamp::from_unix_millis(1_434_412_860_000);
        let ping = request(
            &addr("g.connector"),
            &addr("g.sender"),
            1234,
            expires,
            &[7; 32],
        )
        .unwrap();
        assert_eq!(
            hex::encode(ping.data()),
            "4543484f4543484f4543484f4543484f0008672e73656e646572"
        );
        assert!(!is_response(&ping));
        let source = requested_source(&ping).unwrap();
        assert_eq!(source, addr("g.sender"));
        let pong = answer_request(&ping, &source, 1_000).unwrap();
        assert_eq!(pong.destination(), addr("g.sender"));
        assert_eq!(pong.amount(), 1234);
        assert_eq!(pong.execution_condition(), &[7; 32]);
        assert_eq!(pong.expires_at().unix_millis(), 1_434_412_859_000);
        assert_eq!(pong.data(), EchoMessage::Response.encode());
        assert!(is_response(&pong));
        // margin 0 keeps the expiry, as the JS middleware does
        assert_eq!(
            answer_request(&ping, &source, 0).unwrap().expires_at(),
            expires
        );
    }

    #[test]
    fn answer_errors() {
        let expires = Timestamp::from_unix_millis(1_000);
        let ping = request(&addr("g.c"), &addr("g.s"), 1, expires, &[0; 32]).unwrap();
        let pong = answer_request(&ping, &addr("g.s"), 0).unwrap();
        assert_eq!(requested_source(&pong), Err(EchoError::UnexpectedResponse));
        let plain = PrepareBuilder {
            amount: 1,
            expires_at: expires,
            execution_condition: &[0; 32],
            destination: &addr("g.c"),
            data: b"hello",
        }
        .build()
        .unwrap();
        assert_eq!(requested_source(&plain), Err(EchoError::NotEcho));
        assert!(!is_response(&plain));
    }

    proptest! {
        #[test]
        fn round_trip(address in crate::ildcp::tests::arb_address(), request: bool) {
            let msg = if request {
                EchoMessage::Request { source_address: address }
            } else {
                EchoMessage::Response
            };
            prop_assert_eq!(EchoMessage::decode(&msg.encode()), Ok(msg));
        }

        #[test]
        fn decode_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..40), prefixed: bool) {
            let mut data = if prefixed { ECHO_PREFIX.to_vec() } else { Vec::new() };
            data.extend_from_slice(&tail);
            if let Ok(msg) = EchoMessage::decode(&data) {
                prop_assert_eq!(msg.encode(), data);
            }
        }
    }
}
