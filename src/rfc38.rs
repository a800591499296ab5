//! RFC 38 settlement engines: what the connector and an engine both need, without I/O.
//!
//! A connector and its settlement engine talk HTTP. The connector asks the engine to settle
//! (`POST /accounts/<id>/settlements` with a [`Quantity`] and an `Idempotency-Key`); the engine
//! asks the connector to credit what the peer settled (the same request in the other
//! direction), and each side can send the other's engine opaque messages, which the connectors
//! carry as zero-amount `peer.settle` Prepares ([`message_prepare`], [`message_fulfill`]).
//!
//! - Amounts are decimal strings of any size at a scale (0..=255); a side that receives more
//!   precision than it keeps converts with [`rescale`] and keeps the [`Leftover`] for the next
//!   amount, so nothing is lost to rounding.
//! - Every settle and credit request carries an idempotency key. The side that serves it keeps
//!   the key with a hash of the request and its answer ([`IdempotentAnswer`]): a repeat gets the
//!   same answer, the same key with another request a 409.
//! - The `peer.settle` exchange uses the peer-protocol condition (SHA-256 of 32 zero bytes), as
//!   interledger-rs does; the RFC's text lists SHA-256 of nothing, which no fulfillment it
//!   allows can meet, so an incoming message is not checked for its condition at all.

use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{ErrorCode, Fulfill, Prepare, Timestamp};
use crate::peer_protocol::{peer_request, peer_response, PeerProtocolError};
use crate::settle::{hex_lower, SETTLE_DESTINATION};
use bytes::BufMut;
pub use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// How long a `peer.settle` message Prepare may stay in flight (interledger-rs uses 30 s).
pub const MESSAGE_EXPIRY_MS: u64 = 30_000;

/// Most decimal digits an amount may have: more than any 256-bit ledger amount needs.
pub const MAX_AMOUNT_DIGITS: usize = 80;

/// Longest idempotency key taken (a UUID is 36 characters).
pub const MAX_KEY_LEN: usize = 256;

/// `{"amount": "<decimal string>", "scale": <0..=255>}`: `amount × 10^-scale` units of the
/// account's asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantity {
    pub amount: String,
    pub scale: u8,
}

impl Quantity {
    pub fn new(amount: impl ToString, scale: u8) -> Self {
        Quantity {
            amount: amount.to_string(),
            scale,
        }
    }

    /// The amount as a number: decimal digits only, at most [`MAX_AMOUNT_DIGITS`].
    pub fn parse_amount(&self) -> Result<BigUint, QuantityError> {
        let digits = self.amount.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QuantityError::NotANumber(shorten(digits)));
        }
        if digits.len() > MAX_AMOUNT_DIGITS {
            return Err(QuantityError::TooManyDigits(digits.len()));
        }
        BigUint::parse_bytes(digits.as_bytes(), 10)
            .ok_or_else(|| QuantityError::NotANumber(shorten(digits)))
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("amount {0:?} is not a non-negative integer in decimal digits")]
    NotANumber(String),
    #[error("amount has {0} digits; at most 80 are taken")]
    TooManyDigits(usize),
    #[error("amount {amount} at scale {scale} does not fit a 64-bit balance")]
    TooLarge { amount: String, scale: u8 },
}

/// What was below one unit of the scale an amount was converted to: `amount × 10^-scale`,
/// always less than one unit of that scale. Added to the next amount converted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leftover {
    pub amount: BigUint,
    pub scale: u8,
}

impl Leftover {
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Stored value: the scale, then the amount as big-endian bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.scale];
        if !self.amount.is_zero() {
            out.extend_from_slice(&self.amount.to_bytes_be());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, OerError> {
        let (&scale, amount) = bytes.split_first().ok_or(OerError::UnexpectedEnd)?;
        Ok(Leftover {
            amount: BigUint::from_bytes_be(amount),
            scale,
        })
    }
}

/// An amount converted to another scale: the whole units there, and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescaled {
    pub amount: BigUint,
    pub leftover: Leftover,
}

impl Rescaled {
    /// The whole units as a 64-bit amount (what a balance can take).
    pub fn amount_u64(&self, scale: u8) -> Result<u64, QuantityError> {
        self.amount.to_u64().ok_or_else(|| QuantityError::TooLarge {
            amount: self.amount.to_string(),
            scale,
        })
    }
}

/// Converts `amount` at scale `from`, plus what an earlier conversion left over, to scale
/// `to`: the whole units at `to` (rounded down), and what remains, at the finest scale
/// involved. Converting the parts one by one and summing gives what converting their sum at
/// once gives, so rounding never loses anything.
pub fn rescale(amount: &BigUint, from: u8, leftover: &Leftover, to: u8) -> Rescaled {
    let finest = from.max(if leftover.is_zero() {
        from
    } else {
        leftover.scale
    });
    let total = amount * pow10(finest - from)
        + if leftover.is_zero() {
            BigUint::zero()
        } else {
            &leftover.amount * pow10(finest - leftover.scale)
        };
    if finest <= to {
        return Rescaled {
            amount: total * pow10(to - finest),
            leftover: Leftover::default(),
        };
    }
    let divisor = pow10(finest - to);
    let rest = &total % &divisor;
    Rescaled {
        amount: total / divisor,
        leftover: if rest.is_zero() {
            Leftover::default()
        } else {
            Leftover {
                amount: rest,
                scale: finest,
            }
        },
    }
}

fn pow10(exponent: u8) -> BigUint {
    BigUint::from(10u8).pow(u32::from(exponent))
}

/// Checks an `Idempotency-Key` header value: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn check_idempotency_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("the Idempotency-Key header is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("the Idempotency-Key header is longer than 256 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the Idempotency-Key header has characters other than visible ASCII");
    }
    Ok(())
}

/// SHA-256 over `parts`, each preceded by its length, so no two lists of parts collide.
pub fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// What a request carrying an idempotency key got, kept to answer its repeats: the hash of the
/// request (account and quantity), the HTTP status and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentAnswer {
    pub input_hash: [u8; 32],
    pub status: u16,
    pub body: Vec<u8>,
    /// When it was answered (Unix ms).
    pub at_ms: u64,
}

/// How a request whose key was seen before is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// The same request: the same status and body again.
    Same { status: u16, body: Vec<u8> },
    /// Another request under a key already used: refused (409).
    Conflict,
}

impl IdempotentAnswer {
    /// The answer to a request with hash `input_hash` under this answer's key.
    pub fn repeat(&self, input_hash: &[u8; 32]) -> Repeat {
        if &self.input_hash == input_hash {
            Repeat::Same {
                status: self.status,
                body: self.body.clone(),
            }
        } else {
            Repeat::Conflict
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 2 + 8 + 2 + self.body.len());
        out.put_slice(&self.input_hash);
        out.put_u16(self.status);
        out.put_u64(self.at_ms);
        out.put_var_octet_string(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, OerError> {
        let mut r = Reader::new(bytes);
        let input_hash = *r.read_array::<32>()?;
        let status = r.read_u16()?;
        let at_ms = r.read_u64()?;
        let body = r.read_var_octet_string()?.to_vec();
        r.finish()?;
        Ok(IdempotentAnswer {
            input_hash,
            status,
            body,
            at_ms,
        })
    }
}

/// The hash an incoming credit is recognised by: the account and the quantity (its amount
/// read as a number, so `"010"` and `"10"` are the same request).
pub fn credit_input_hash(account: &str, amount: &BigUint, scale: u8) -> [u8; 32] {
    digest(&[
        b"rfc38-credit",
        account.as_bytes(),
        amount.to_str_radix(10).as_bytes(),
        &[scale],
    ])
}

/// Formats 16 bytes as a UUID (lowercase, hyphenated).
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let h = hex_lower(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Makes 16 random bytes a version-4 UUID (sets the version and variant bits).
pub fn uuid_v4(mut random: [u8; 16]) -> [u8; 16] {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    random
}

/// Store key prefixes of the connector's RFC 38 records. Account ids appear hex-encoded, so
/// any id makes a key that sorts under its prefix.
pub mod keys {
    use crate::settle::hex_lower as hex;
    pub use crate::settle::prefix_range as range;

    /// `rfc38-out/<id>`: a settlement we asked our engine for and it has not acknowledged.
    pub const OUTGOING: &str = "rfc38-out/";
    /// `rfc38-in/<digest of account and key>`: the answer to an incoming credit request.
    pub const INCOMING: &str = "rfc38-in/";
    /// `rfc38-left/<account>`: what incoming credits left below one unit of the account.
    pub const LEFTOVER: &str = "rfc38-left/";
    /// `rfc38-log/<account>/<id>`: each settlement booked, out or in (the settlement ledger).
    pub const LOG: &str = "rfc38-log/";

    pub fn outgoing(id: &[u8; 16]) -> Vec<u8> {
        join(OUTGOING, &[id])
    }

    pub fn incoming(digest: &[u8; 32]) -> Vec<u8> {
        join(INCOMING, &[digest])
    }

    pub fn leftover(account: &str) -> Vec<u8> {
        join(LEFTOVER, &[account.as_bytes()])
    }

    pub fn log(account: &str, id: &[u8; 16]) -> Vec<u8> {
        join(LOG, &[account.as_bytes(), id])
    }

    fn join(prefix: &str, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = prefix.as_bytes().to_vec();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push(b'/');
            }
            key.extend_from_slice(hex(part).as_bytes());
        }
        key
    }
}

/// The id a credit is booked under: the digest of the account and its idempotency key, so a
/// repeat finds the first.
pub fn credit_digest(account: &str, idempotency_key: &str) -> [u8; 32] {
    digest(&[b"rfc38-in", account.as_bytes(), idempotency_key.as_bytes()])
}

/// A settlement the connector asked its engine for: booked (the balance moved) when it was
/// written, and asked for again with the same idempotency key until the engine acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSettlement {
    /// A version-4 UUID: the idempotency key, and the id the balance change is booked under.
    pub id: [u8; 16],
    pub account: String,
    pub amount: u64,
    pub scale: u8,
    /// The engine it was asked of (its base URL): asked again there, whatever the configuration
    /// says later, since that engine may have paid it already.
    pub engine: String,
}

impl OutgoingSettlement {
    pub fn idempotency_key(&self) -> String {
        format_uuid(&self.id)
    }

    pub fn quantity(&self) -> Quantity {
        Quantity::new(self.amount, self.scale)
    }

    pub fn key(&self) -> Vec<u8> {
        keys::outgoing(&self.id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 + 1 + 2 + self.account.len() + self.engine.len());
        out.put_slice(&self.id);
        out.put_u64(self.amount);
        out.put_u8(self.scale);
        out.put_var_octet_string(self.account.as_bytes());
        out.put_var_octet_string(self.engine.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, OerError> {
        let mut r = Reader::new(bytes);
        let id = *r.read_array::<16>()?;
        let amount = r.read_u64()?;
        let scale = r.read_u8()?;
        let account = r.read_var_str()?.to_owned();
        let engine = r.read_var_str()?.to_owned();
        r.finish()?;
        Ok(OutgoingSettlement {
            id,
            account,
            amount,
            scale,
            engine,
        })
    }
}

/// Direction of a settlement in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We paid the peer (through our engine).
    Out,
    /// The peer paid us (our engine saw it and credited it).
    In,
}

/// One settlement booked for an account: its direction, the amount in the account's units,
/// and when (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    pub direction: Direction,
    pub amount: u64,
    pub at_ms: u64,
}

impl LedgerEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        out.put_u8(match self.direction {
            Direction::Out => b'O',
            Direction::In => b'I',
        });
        out.put_u64(self.amount);
        out.put_u64(self.at_ms);
        out
    }

    /// `None` for bytes that are not an entry.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        let direction = match r.read_u8().ok()? {
            b'O' => Direction::Out,
            b'I' => Direction::In,
            _ => return None,
        };
        let amount = r.read_u64().ok()?;
        let at_ms = r.read_u64().ok()?;
        r.finish().ok()?;
        Some(LedgerEntry {
            direction,
            amount,
            at_ms,
        })
    }
}

/// The `peer.settle` Prepare carrying an engine's message to the peer: zero amount, the
/// peer-protocol condition, `data` as given.
pub fn message_prepare(data: &[u8], expires_at: Timestamp) -> Result<Prepare, PeerProtocolError> {
    peer_request(SETTLE_DESTINATION, expires_at, data)
}

/// The Fulfill carrying our engine's reply back to the peer: 32 zero bytes of fulfillment,
/// the reply as data.
pub fn message_fulfill(reply: &[u8]) -> Result<Fulfill, PeerProtocolError> {
    peer_response(reply)
}

/// Why an incoming `peer.settle` Prepare is not passed to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("a settlement engine message must be addressed to peer.settle")]
    WrongDestination,
    #[error("a settlement engine message must carry no amount (it has {0})")]
    NotZero(u64),
    #[error("the message expired before it arrived")]
    Expired,
}

impl MessageError {
    pub fn code(&self) -> ErrorCode {
        match self {
            MessageError::WrongDestination | MessageError::NotZero(_) => {
                ErrorCode::F01_INVALID_PACKET
            }
            MessageError::Expired => ErrorCode::R02_INSUFFICIENT_TIMEOUT,
        }
    }
}

/// Checks an incoming `peer.settle` Prepare meant for our engine: the destination, a zero
/// amount (an amount would be money the peer thinks it paid and nobody books), and its expiry.
/// The condition is not checked (see the module notes).
pub fn check_message(prepare: &Prepare, now: Timestamp) -> Result<(), MessageError> {
    if prepare.destination_str() != SETTLE_DESTINATION {
        return Err(MessageError::WrongDestination);
    }
    if prepare.amount() != 0 {
        return Err(MessageError::NotZero(prepare.amount()));
    }
    if now > prepare.expires_at() {
        return Err(MessageError::Expired);
    }
    Ok(())
}

/// The code a `peer.settle` message is rejected with when our engine did not take it: F00 for
/// a 4xx answer (the message is wrong, repeating it will not help), T00 for anything else (a
/// 5xx, no answer: it may work later), as interledger-rs answers.
pub fn engine_failure_code(status: Option<u16>) -> ErrorCode {
    match status {
        Some(s) if (400..500).contains(&s) => ErrorCode::F00_BAD_REQUEST,
        _ => ErrorCode::T00_INTERNAL_ERROR,
    }
}

/// Wait before attempt `attempt + 1` of a request to an engine or connector that got no
/// acknowledgement: `base_ms` doubling up to `cap_ms`, then a random part of it (`random`
/// picks where in its upper half), so many waiting clients do not all retry at once.
pub fn backoff_ms(attempt: u32, base_ms: u64, cap_ms: u64, random: u64) -> u64 {
    let full = 1u64
        .checked_shl(attempt)
        .and_then(|f| base_ms.checked_mul(f))
        .map_or(cap_ms, |d| d.min(cap_ms));
    let half = full / 2;
    half + random % (full - half + 1)
}

#[cfg(test)]
mod tests;
