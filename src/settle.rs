//! `peer.settle`: the built-in bilateral settlement between two ilp-connector nodes, carried
//! over the link itself so that simulations can run indefinitely without an external ledger.
//!
//! The node whose balance with a peer fell below the settle threshold sends a zero-amount
//! peer-protocol Prepare to `peer.settle` whose data is the settlement id (16 bytes) followed by
//! the amount (OER `UInt64`, big-endian). The peer applies the amount once per id and answers
//! with the peer-protocol Fulfill, also for an id it has applied before, so a sender that lost
//! the Fulfill can repeat the same request until it gets one.
//!
//! The sender writes a [`SettleIntent`] (id, account, amount) to its store before the first
//! send, so a sender that crashed resumes the very same request: the peer may have applied it.
//! The intent is done once the sender has booked the settlement, which writes the id's record
//! (`settle/<id>`) in the same batch as the balance; the intent is deleted after that.

use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{ErrorCode, Fulfill, Prepare, Timestamp};
use crate::peer_protocol::{
    check_peer_request, check_peer_response, peer_request, PeerProtocolError,
};
use bytes::BufMut;
use thiserror::Error;

/// Destination address of a settlement request.
pub const SETTLE_DESTINATION: &str = "peer.settle";

/// How long a settlement request may stay in flight before the sender gives up on that attempt.
pub const SETTLE_EXPIRY_MS: u64 = 30_000;

/// Prefix of the store key recording that a settlement id was applied.
pub const RECORD_PREFIX: &str = "settle/";

/// Prefix of the store key of a settlement being sent ([`SettleIntent`]). Sorts apart from
/// [`RECORD_PREFIX`]: a scan of `settle/` never sees an intent.
pub const INTENT_PREFIX: &str = "settle-out/";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettleError {
    #[error("malformed settlement request: {0}")]
    Oer(#[from] OerError),
    #[error("peer.settle: {0}")]
    PeerProtocol(#[from] PeerProtocolError),
}

impl SettleError {
    /// The ILP error code an incoming request refused for this reason is rejected with: data
    /// that does not decode is an invalid packet (F01); the peer-protocol checks answer as every
    /// `peer.*` handler does ([`PeerProtocolError::code`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            SettleError::Oer(_) => ErrorCode::F01_INVALID_PACKET,
            SettleError::PeerProtocol(e) => e.code(),
        }
    }
}

/// The data of a `peer.settle` Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SettleRequest {
    /// Chosen by the sender; the receiver applies each id once.
    pub settlement_id: [u8; 16],
    /// Base units of the account's asset the sender paid the receiver.
    pub amount: u64,
}

impl SettleRequest {
    pub const ENCODED_LEN: usize = 24;

    pub fn decode(bytes: &[u8]) -> Result<Self, SettleError> {
        let mut r = Reader::new(bytes);
        let settlement_id = *r.read_array::<16>()?;
        let amount = r.read_u64()?;
        r.finish()?;
        Ok(SettleRequest {
            settlement_id,
            amount,
        })
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.settlement_id);
        buf.put_u64(self.amount);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        self.encode_to(&mut out);
        out
    }

    /// The zero-amount peer-protocol Prepare carrying this request.
    pub fn to_prepare(&self, expires_at: Timestamp) -> Result<Prepare, SettleError> {
        Ok(peer_request(
            SETTLE_DESTINATION,
            expires_at,
            &self.encode(),
        )?)
    }

    /// Validates an incoming `peer.settle` Prepare received at `now` and reads its request.
    pub fn from_prepare(prepare: &Prepare, now: Timestamp) -> Result<Self, SettleError> {
        check_peer_request(prepare, SETTLE_DESTINATION, now)?;
        Self::decode(prepare.data())
    }

    /// Store key recording that this request's id was applied.
    pub fn record_key(&self) -> Vec<u8> {
        record_key(&self.settlement_id)
    }
}

/// Store key recording that `settlement_id` was applied: `settle/<32 lowercase hex digits>`.
pub fn record_key(settlement_id: &[u8; 16]) -> Vec<u8> {
    hex_key(RECORD_PREFIX, settlement_id)
}

fn hex_key(prefix: &str, settlement_id: &[u8; 16]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 32);
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(hex_lower(settlement_id).as_bytes());
    key
}

/// `bytes` as lowercase hex digits (store keys).
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The key range `[from, to)` of every record under `prefix` (which ends in '/': the next byte
/// value bounds every key that starts with it).
pub fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let from = prefix.as_bytes().to_vec();
    let mut to = from.clone();
    if let Some(last) = to.last_mut() {
        *last += 1;
    }
    (from, to)
}

/// A settlement we send: which account, and the request (id and amount) it is sent with until
/// the peer fulfills it. Persisted before the first send under [`SettleIntent::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleIntent {
    pub account: String,
    pub request: SettleRequest,
}

impl SettleIntent {
    /// Store key: `settle-out/<32 lowercase hex digits of the id>`.
    pub fn key(&self) -> Vec<u8> {
        intent_key(&self.request.settlement_id)
    }

    /// Stored value: the request as on the wire (id, amount) then the account id as an OER
    /// variable-length octet string.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SettleRequest::ENCODED_LEN + 1 + self.account.len());
        self.request.encode_to(&mut out);
        out.put_var_octet_string(self.account.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SettleError> {
        let mut r = Reader::new(bytes);
        let request = SettleRequest::decode(r.read_bytes(SettleRequest::ENCODED_LEN)?)?;
        let account = r.read_var_str()?.to_owned();
        r.finish()?;
        Ok(SettleIntent { account, request })
    }
}

/// Store key of the intent of `settlement_id`.
pub fn intent_key(settlement_id: &[u8; 16]) -> Vec<u8> {
    hex_key(INTENT_PREFIX, settlement_id)
}

/// The key range `[from, to)` holding every intent.
pub fn intent_range() -> (Vec<u8>, Vec<u8>) {
    prefix_range(INTENT_PREFIX)
}

/// Checks the peer's answer to a settlement request.
pub fn check_response(fulfill: &Fulfill) -> Result<(), SettleError> {
    Ok(check_peer_response(fulfill)?)
}

/// Wait before attempt `attempt + 1` of an unanswered settlement request: 1 s doubling up to a
/// minute. The sender never gives up (the peer may already have applied the id), it only slows.
pub fn retry_delay_ms(attempt: u32) -> u64 {
    const INITIAL_MS: u64 = 1_000;
    const MAX_MS: u64 = 60_000;
    1u64.checked_shl(attempt)
        .and_then(|f| INITIAL_MS.checked_mul(f))
        .map_or(MAX_MS, |d| d.min(MAX_MS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Address, FulfillBuilder, PrepareBuilder};
    use crate::peer_protocol::{peer_response, PEER_PROTOCOL_CONDITION};
    use bytes::Bytes;
    use proptest::prelude::*;

    const GOLDEN: &str = "000102030405060708090a0b0c0d0e0f00000000000003e8";

    fn golden() -> SettleRequest {
        SettleRequest {
            settlement_id: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            amount: 1000,
        }
    }

    #[test]
    fn golden_both_ways() {
        let bytes = hex::decode(GOLDEN).unwrap();
        assert_eq!(SettleRequest::decode(&bytes), Ok(golden()));
        assert_eq!(golden().encode(), bytes);
        let max = SettleRequest {
            settlement_id: [0xff; 16],
            amount: u64::MAX,
        };
        assert_eq!(max.encode(), vec![0xff; 24]);
        assert_eq!(SettleRequest::decode(&[0xff; 24]), Ok(max));
    }

    #[test]
    fn decode_errors() {
        let bytes = hex::decode(GOLDEN).unwrap();
        assert_eq!(
            SettleRequest::decode(&[]),
            Err(SettleError::Oer(OerError::UnexpectedEnd))
        );
        // Truncated inside the id, then inside the amount.
        assert_eq!(
            SettleRequest::decode(&bytes[..10]),
            Err(SettleError::Oer(OerError::UnexpectedEnd))
        );
        assert_eq!(
            SettleRequest::decode(&bytes[..23]),
            Err(SettleError::Oer(OerError::UnexpectedEnd))
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            SettleRequest::decode(&long),
            Err(SettleError::Oer(OerError::TrailingBytes(1)))
        );
        assert_eq!(
            SettleRequest::decode(&long).unwrap_err().code(),
            ErrorCode::F01_INVALID_PACKET
        );
    }

    #[test]
    fn prepare_round_trip_and_checks() {
        let now = Timestamp::from_unix_millis(1_000_000);
        let expires = now.checked_add_millis(SETTLE_EXPIRY_MS).unwrap();
        let p = golden().to_prepare(expires).unwrap();
        assert_eq!(p.amount(), 0);
        assert_eq!(p.destination_str(), "peer.settle");
        assert_eq!(p.execution_condition(), &PEER_PROTOCOL_CONDITION);
        assert_eq!(p.data(), &hex::decode(GOLDEN).unwrap()[..]);
        // Survives the wire.
        let p = Prepare::parse(Bytes::copy_from_slice(p.as_bytes())).unwrap();
        assert_eq!(SettleRequest::from_prepare(&p, now), Ok(golden()));

        let late = expires.checked_add_millis(1).unwrap();
        let e = SettleRequest::from_prepare(&p, late).unwrap_err();
        assert_eq!(e, SettleError::PeerProtocol(PeerProtocolError::Expired));
        assert_eq!(e.code(), ErrorCode::R02_INSUFFICIENT_TIMEOUT);

        let other = Address::try_from("peer.balance").unwrap();
        let wrong_dest = PrepareBuilder {
            amount: 0,
            expires_at: expires,
            execution_condition: &PEER_PROTOCOL_CONDITION,
            destination: &other,
            data: p.data(),
        }
        .build()
        .unwrap();
        let e = SettleRequest::from_prepare(&wrong_dest, now).unwrap_err();
        assert_eq!(
            e,
            SettleError::PeerProtocol(PeerProtocolError::WrongDestination("peer.settle"))
        );
        assert_eq!(e.code(), ErrorCode::F01_INVALID_PACKET);

        let dest = Address::try_from("peer.settle").unwrap();
        let wrong_cond = PrepareBuilder {
            amount: 0,
            expires_at: expires,
            execution_condition: &[7; 32],
            destination: &dest,
            data: p.data(),
        }
        .build()
        .unwrap();
        let e = SettleRequest::from_prepare(&wrong_cond, now).unwrap_err();
        assert_eq!(
            e,
            SettleError::PeerProtocol(PeerProtocolError::WrongCondition)
        );
        assert_eq!(e.code(), ErrorCode::F01_INVALID_PACKET);

        let bad_data = PrepareBuilder {
            amount: 0,
            expires_at: expires,
            execution_condition: &PEER_PROTOCOL_CONDITION,
            destination: &dest,
            data: &[1, 2, 3],
        }
        .build()
        .unwrap();
        let e = SettleRequest::from_prepare(&bad_data, now).unwrap_err();
        assert_eq!(e, SettleError::Oer(OerError::UnexpectedEnd));
        assert_eq!(e.code(), ErrorCode::F01_INVALID_PACKET);
    }

    #[test]
    fn response_check() {
        assert_eq!(check_response(&peer_response(&[]).unwrap()), Ok(()));
        let wrong = FulfillBuilder {
            fulfillment: &[1; 32],
            data: &[],
        }
        .build()
        .unwrap();
        let e = check_response(&wrong).unwrap_err();
        assert_eq!(
            e,
            SettleError::PeerProtocol(PeerProtocolError::WrongFulfillment)
        );
        assert_eq!(e.code(), ErrorCode::F05_WRONG_CONDITION);
    }

    #[test]
    fn record_keys() {
        assert_eq!(
            golden().record_key(),
            b"settle/000102030405060708090a0b0c0d0e0f".to_vec()
        );
        assert_eq!(
            record_key(&[0xab; 16]),
            format!("settle/{}", "ab".repeat(16)).into_bytes()
        );
    }

    #[test]
    fn intents_round_trip_and_sort_apart_from_records() {
        let intent = SettleIntent {
            account: "bob.ü".to_owned(),
            request: golden(),
        };
        let bytes = intent.encode();
        assert_eq!(
            hex::encode(&bytes),
            format!("{GOLDEN}06{}", hex::encode("bob.ü"))
        );
        assert_eq!(SettleIntent::decode(&bytes), Ok(intent.clone()));
        assert_eq!(
            intent.key(),
            b"settle-out/000102030405060708090a0b0c0d0e0f".to_vec()
        );
        let (from, to) = intent_range();
        assert_eq!(
            (&from[..], &to[..]),
            (&b"settle-out/"[..], &b"settle-out0"[..])
        );
        let key = intent.key();
        assert!(from <= key && key < to);
        // Neither range holds a key of the other.
        let record = golden().record_key();
        assert!(!(from <= record && record < to));
        assert!(!key.starts_with(RECORD_PREFIX.as_bytes()));
        // Truncated, trailing bytes, an account that is not UTF-8.
        assert!(SettleIntent::decode(&bytes[..30]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(SettleIntent::decode(&long).is_err());
        let mut bad = bytes[..SettleRequest::ENCODED_LEN].to_vec();
        bad.extend_from_slice(&[1, 0xff]);
        assert_eq!(
            SettleIntent::decode(&bad),
            Err(SettleError::Oer(OerError::InvalidUtf8))
        );
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay_ms(0), 1_000);
        assert_eq!(retry_delay_ms(1), 2_000);
        assert_eq!(retry_delay_ms(5), 32_000);
        assert_eq!(retry_delay_ms(6), 60_000);
        assert_eq!(retry_delay_ms(63), 60_000);
        assert_eq!(retry_delay_ms(64), 60_000);
        assert_eq!(retry_delay_ms(u32::MAX), 60_000);
    }

    proptest! {
        #[test]
        fn round_trip(id: [u8; 16], amount: u64) {
            let r = SettleRequest { settlement_id: id, amount };
            let bytes = r.encode();
            prop_assert_eq!(bytes.len(), SettleRequest::ENCODED_LEN);
            prop_assert_eq!(SettleRequest::decode(&bytes), Ok(r));
            let key = String::from_utf8(r.record_key()).unwrap();
            prop_assert_eq!(key, format!("settle/{}", hex::encode(id)));
        }

        #[test]
        fn intent_round_trip(id: [u8; 16], amount: u64, account in ".{0,40}") {
            let request = SettleRequest { settlement_id: id, amount };
            let intent = SettleIntent { account, request };
            prop_assert_eq!(SettleIntent::decode(&intent.encode()), Ok(intent.clone()));
            let key = String::from_utf8(intent.key()).unwrap();
            prop_assert_eq!(key, format!("settle-out/{}", hex::encode(id)));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = SettleRequest::decode(&bytes);
            prop_assert_eq!(r.is_ok(), bytes.len() == SettleRequest::ENCODED_LEN);
        }
    }
}
