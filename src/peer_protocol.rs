//! The framing shared by every `peer.*` protocol (IL-DCP, CCP, `peer.balance`): a zero-amount
//! Prepare to a `peer.*` address carrying the peer-protocol condition, answered by a Fulfill
//! with the peer-protocol fulfillment. The fulfillment is 32 zero bytes and the condition its
//! SHA-256, so a peer-protocol exchange never moves money and anybody can "fulfill" it.

use crate::packet::{
    Address, ErrorCode, Fulfill, FulfillBuilder, PacketError, Prepare, PrepareBuilder, Timestamp,
};
use thiserror::Error;

/// Fulfillment of every peer-protocol request: 32 zero bytes.
pub const PEER_PROTOCOL_FULFILLMENT: [u8; 32] = [0; 32];

/// Condition of every peer-protocol request: SHA-256 of [`PEER_PROTOCOL_FULFILLMENT`].
pub const PEER_PROTOCOL_CONDITION: [u8; 32] = [
    0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77, 0x6c, 0x8f, 0xc1, 0x8b, 0x8e, 0x9f, 0x8e, 0x20,
    0x08, 0x97, 0x14, 0x85, 0x6e, 0xe2, 0x33, 0xb3, 0x90, 0x2a, 0x59, 0x1d, 0x0d, 0x5f, 0x29, 0x25,
];

/// How far in the future the JS reference implementations set a peer-protocol request's expiry.
pub const PEER_PROTOCOL_EXPIRY_DURATION_MS: u64 = 60_000;

/// Why a packet is not a valid peer-protocol request or response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerProtocolError {
    #[error("packet is not addressed to {0}")]
    WrongDestination(&'static str),
    #[error("packet does not carry the peer-protocol condition")]
    WrongCondition,
    #[error("peer-protocol request has expired")]
    Expired,
    #[error("response does not carry the peer-protocol fulfillment")]
    WrongFulfillment,
    #[error(transparent)]
    Packet(#[from] PacketError),
}

impl PeerProtocolError {
    /// The ILP error code of the Reject answering a peer-protocol request refused for this
    /// reason. Every `peer.*` handler (IL-DCP, `peer.balance`, CCP, `peer.settle`) answers with
    /// this one mapping, chosen after the JS `ilp-connector` (23.x) and RFC 27:
    ///
    /// - [`WrongCondition`](Self::WrongCondition): **F01** Invalid Packet. The JS
    ///   `PeerProtocolController` throws `InvalidPacketError` ("condition must be null.") for a
    ///   `peer.*` Prepare without the peer-protocol condition: the packet is malformed for its
    ///   protocol. F05 (Wrong Condition) is what a receiver answers when it cannot fulfill a
    ///   payment's condition; nobody is asked to fulfill anything here.
    /// - [`WrongDestination`](Self::WrongDestination): **F01** Invalid Packet, as the JS
    ///   controller's "unknown peer protocol." (e.g. `peer.settle.x`, `peer.route.bogus`).
    /// - [`Expired`](Self::Expired): **R02** Insufficient Timeout. The request reached us after
    ///   its expiry; the JS connector answers a Prepare that arrives expired with R02
    ///   (`InsufficientTimeoutError`, "source transfer has already expired", its route
    ///   builder). R00 (Transfer Timed Out) means a next hop did not answer in time, which is
    ///   not what happened: we are the last hop and we refuse to start.
    /// - [`WrongFulfillment`](Self::WrongFulfillment): **F05** Wrong Condition. A response
    ///   whose fulfillment is not the peer-protocol one does not fulfill the request's
    ///   condition; the JS connector's `validate-fulfillment` middleware (and our PeerAccount)
    ///   turns a Fulfill that does not match into an F05 Reject.
    /// - [`Packet`](Self::Packet): **T00** Internal Error. Only building a request or response
    ///   fails this way (data too long): our fault, not the peer's.
    pub fn code(&self) -> ErrorCode {
        match self {
            PeerProtocolError::WrongCondition | PeerProtocolError::WrongDestination(_) => {
                ErrorCode::F01_INVALID_PACKET
            }
            PeerProtocolError::Expired => ErrorCode::R02_INSUFFICIENT_TIMEOUT,
            PeerProtocolError::WrongFulfillment => ErrorCode::F05_WRONG_CONDITION,
            PeerProtocolError::Packet(_) => ErrorCode::T00_INTERNAL_ERROR,
        }
    }
}

/// A zero-amount peer-protocol Prepare to `destination` (one of the `peer.*` addresses).
pub fn peer_request(
    destination: &'static str,
    expires_at: Timestamp,
    data: &[u8],
) -> Result<Prepare, PeerProtocolError> {
    let destination = Address::try_from(destination).map_err(PacketError::from)?;
    Ok(PrepareBuilder {
        amount: 0,
        expires_at,
        execution_condition: &PEER_PROTOCOL_CONDITION,
        destination: &destination,
        data,
    }
    .build()?)
}

/// Checks what the JS implementations check before serving a peer-protocol request:
/// destination, condition, and that it has not expired at `now`.
pub fn check_peer_request(
    prepare: &Prepare,
    destination: &'static str,
    now: Timestamp,
) -> Result<(), PeerProtocolError> {
    if prepare.destination_str() != destination {
        return Err(PeerProtocolError::WrongDestination(destination));
    }
    if prepare.execution_condition() != &PEER_PROTOCOL_CONDITION {
        return Err(PeerProtocolError::WrongCondition);
    }
    if now > prepare.expires_at() {
        return Err(PeerProtocolError::Expired);
    }
    Ok(())
}

/// The Fulfill answering a peer-protocol request.
pub fn peer_response(data: &[u8]) -> Result<Fulfill, PeerProtocolError> {
    Ok(FulfillBuilder {
        fulfillment: &PEER_PROTOCOL_FULFILLMENT,
        data,
    }
    .build()?)
}

pub fn check_peer_response(fulfill: &Fulfill) -> Result<(), PeerProtocolError> {
    if fulfill.fulfillment() != &PEER_PROTOCOL_FULFILLMENT {
        return Err(PeerProtocolError::WrongFulfillment);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn peer_protocol_condition_is_hash_of_fulfillment() {
        let hash: [u8; 32] = Sha256::digest(PEER_PROTOCOL_FULFILLMENT).into();
        assert_eq!(hash, PEER_PROTOCOL_CONDITION);
        assert_eq!(
            hex::encode(PEER_PROTOCOL_CONDITION),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn wrong_condition_is_f01() {
        assert_eq!(
            PeerProtocolError::WrongCondition.code(),
            ErrorCode::F01_INVALID_PACKET
        );
    }

    #[test]
    fn wrong_destination_is_f01() {
        assert_eq!(
            PeerProtocolError::WrongDestination("peer.settle").code(),
            ErrorCode::F01_INVALID_PACKET
        );
    }

    #[test]
    fn expired_is_r02() {
        assert_eq!(
            PeerProtocolError::Expired.code(),
            ErrorCode::R02_INSUFFICIENT_TIMEOUT
        );
    }

    #[test]
    fn wrong_fulfillment_is_f05() {
        assert_eq!(
            PeerProtocolError::WrongFulfillment.code(),
            ErrorCode::F05_WRONG_CONDITION
        );
    }

    #[test]
    fn packet_error_is_t00() {
        assert_eq!(
            PeerProtocolError::Packet(PacketError::DataTooLong(40_000)).code(),
            ErrorCode::T00_INTERNAL_ERROR
        );
    }

    #[test]
    fn oversize_peer_request_is_refused() {
        let big = vec![0u8; 40_000];
        assert_eq!(
            peer_request("peer.config", Timestamp::from_unix_millis(0), &big).map(|_| ()),
            Err(PeerProtocolError::Packet(PacketError::DataTooLong(40_000)))
        );
        assert_eq!(
            peer_response(&big).map(|_| ()),
            Err(PeerProtocolError::Packet(PacketError::DataTooLong(40_000)))
        );
    }
}
