//! Rules for a Prepare leaving over an account's link, and the ILP code each failure is
//! rejected with: an expired Prepare is not sent, the answer races the Prepare's expiry, a
//! Fulfill is relayed only when it matches the condition, and link failures map to codes.
//!
//! Codes: expiry is R00 Transfer Timed Out whether the Prepare expired before sending or while
//! waiting (the JS connector's `expire.ts` uses R02 for the timer; R00 is RFC 27's code for "the
//! next hop did not answer in time", and R02 stays the Router's code for a Prepare that arrives
//! with too little time left). A wrong fulfillment is F05 (JS `validate-fulfillment.ts`). A
//! link that is down is T01. A peer answering with something that is not a Fulfill or Reject is
//! T00: the Prepare itself was fine, so a final F code would wrongly tell the sender that
//! retrying cannot help (the JS connector's catch-all would give F00).

use crate::packet::{ErrorCode, Prepare, Timestamp};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why an outgoing Prepare is rejected by this node rather than answered by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OutgoingError {
    /// `expires_at` had passed (or was now) before the Prepare was sent.
    #[error("packet expired before it could be sent.")]
    ExpiredBeforeSend,
    /// The peer did not answer before `expires_at`.
    #[error("transfer timed out.")]
    TimedOut,
    /// SHA-256 of the Fulfill's fulfillment is not the Prepare's execution condition.
    #[error("fulfillment did not match expected value.")]
    WrongCondition,
    /// The link is not connected; the Prepare never left.
    #[error("peer unreachable.")]
    PeerUnreachable,
    /// The peer answered with something that is neither a Fulfill nor a Reject.
    #[error("invalid response from peer.")]
    InvalidResponse,
}

impl OutgoingError {
    /// The ILP error code to reject with.
    pub fn code(&self) -> ErrorCode {
        match self {
            OutgoingError::ExpiredBeforeSend | OutgoingError::TimedOut => {
                ErrorCode::R00_TRANSFER_TIMED_OUT
            }
            OutgoingError::WrongCondition => ErrorCode::F05_WRONG_CONDITION,
            OutgoingError::PeerUnreachable => ErrorCode::T01_PEER_UNREACHABLE,
            OutgoingError::InvalidResponse => ErrorCode::T00_INTERNAL_ERROR,
        }
    }
}

/// A Prepare may be sent only while `now` is before its expiry.
pub fn check_not_expired(expires_at: Timestamp, now: Timestamp) -> Result<(), OutgoingError> {
    if expires_at <= now {
        Err(OutgoingError::ExpiredBeforeSend)
    } else {
        Ok(())
    }
}

/// A Fulfill answers a Prepare only if SHA-256(fulfillment) is the execution condition.
pub fn check_fulfillment(
    execution_condition: &[u8; 32],
    fulfillment: &[u8; 32],
) -> Result<(), OutgoingError> {
    let digest: [u8; 32] = Sha256::digest(fulfillment).into();
    if &digest == execution_condition {
        Ok(())
    } else {
        Err(OutgoingError::WrongCondition)
    }
}

/// What identifies a payment: the SHA-256 of the Prepare's amount, condition, destination and
/// data, without its expiry. Copies of one Prepare that a sender or a connector re-sent with
/// another expiry are the same payment.
pub fn payment_digest(prepare: &Prepare) -> [u8; 32] {
    let (amount, rest) = prepare.contents_without_expiry();
    let mut hash = Sha256::new();
    hash.update(amount);
    hash.update(rest);
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 27's peer-protocol pair: SHA-256 of 32 zero bytes.
    const ZERO_CONDITION: [u8; 32] = [
        0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77, 0x6c, 0x8f, 0xc1, 0x8b, 0x8e, 0x9f, 0x8e,
        0x20, 0x08, 0x97, 0x14, 0x85, 0x6e, 0xe2, 0x33, 0xb3, 0x90, 0x2a, 0x59, 0x1d, 0x0d, 0x5f,
        0x29, 0x25,
    ];

    #[test]
    fn expiry() {
        let t = Timestamp::from_unix_millis(1_000);
        assert_eq!(
            check_not_expired(t, Timestamp::from_unix_millis(999)),
            Ok(())
        );
        assert_eq!(
            check_not_expired(t, t),
            Err(OutgoingError::ExpiredBeforeSend)
        );
        assert_eq!(
            check_not_expired(t, Timestamp::from_unix_millis(1_001)),
            Err(OutgoingError::ExpiredBeforeSend)
        );
    }

    #[test]
    fn fulfillment() {
        assert_eq!(check_fulfillment(&ZERO_CONDITION, &[0; 32]), Ok(()));
        assert_eq!(
            check_fulfillment(&ZERO_CONDITION, &[1; 32]),
            Err(OutgoingError::WrongCondition)
        );
        assert_eq!(
            check_fulfillment(&[0; 32], &[0; 32]),
            Err(OutgoingError::WrongCondition)
        );
    }

    #[test]
    fn codes_and_messages() {
        let cases = [
            (OutgoingError::ExpiredBeforeSend, "R00"),
            (OutgoingError::TimedOut, "R00"),
            (OutgoingError::WrongCondition, "F05"),
            (OutgoingError::PeerUnreachable, "T01"),
            (OutgoingError::InvalidResponse, "T00"),
        ];
        for (e, code) in cases {
            assert_eq!(e.code().as_str(), code);
        }
        assert_eq!(
            OutgoingError::WrongCondition.to_string(),
            "fulfillment did not match expected value."
        );
    }

    #[test]
    fn the_payment_digest_ignores_the_expiry_only() {
        use crate::packet::{Address, PrepareBuilder, Timestamp};
        let destination = Address::try_from("test.alice").unwrap();
        let prepare = |amount, expiry_ms, condition: &[u8; 32], data: &[u8]| {
            PrepareBuilder {
                amount,
                expires_at: Timestamp::from_unix_millis(expiry_ms),
                execution_condition: condition,
                destination: &destination,
                data,
            }
            .build()
            .unwrap()
        };
        let one = prepare(5, 1_000, &ZERO_CONDITION, b"data");
        let digest = payment_digest(&one);
        assert_eq!(
            digest,
            payment_digest(&prepare(5, 99_000, &ZERO_CONDITION, b"data"))
        );
        assert_eq!(
            digest,
            payment_digest(&one.with_amount_and_expiry(5, one.expires_at()))
        );
        for other in [
            prepare(6, 1_000, &ZERO_CONDITION, b"data"),
            prepare(5, 1_000, &[0; 32], b"data"),
            prepare(5, 1_000, &ZERO_CONDITION, b"dat"),
        ] {
            assert_ne!(digest, payment_digest(&other));
        }
        // The SHA-256 of amount, condition, destination and data as they are on the wire.
        let mut wire = 5u64.to_be_bytes().to_vec();
        wire.extend_from_slice(&ZERO_CONDITION);
        wire.push(10);
        wire.extend_from_slice(b"test.alice");
        wire.push(4);
        wire.extend_from_slice(b"data");
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&wire)));
    }
}
