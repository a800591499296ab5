//! Per-account packet policy, as pure functions of state, input and `now` (unix milliseconds):
//! token buckets for the rate limit (packets, T05) and throughput (amount, T04), the maximum
//! packet amount (F08), the balance rules (reserve, commit, roll back, settle), and the rules
//! for a Prepare leaving over a link (expiry R00, fulfillment check F05, link failures).
//!
//! The numbers mirror the JS connector's middlewares (`rate-limit.ts`, `throughput.ts`,
//! `max-packet-amount.ts`, `balance.ts`); the runtime keeps the state and applies the verdicts.

pub mod balance;
pub mod expiry;
pub mod outgoing;
pub mod token_bucket;

pub use balance::{Balance, BalanceError, BalanceLimits, LimitViolation};
pub use expiry::{next_hop_expiry, ExpiryError};
pub use outgoing::OutgoingError;
pub use token_bucket::{
    RateLimiter, Throttled, ThroughputLimiter, TokenBucket, TokenBucketError, TokenBucketParams,
};

use thiserror::Error;

/// A Prepare larger than the account's `max_packet_amount`: reject with F08 and these numbers
/// in the reject data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("packet amount {received} exceeds the maximum of {maximum}")]
pub struct AmountTooLarge {
    pub received: u64,
    pub maximum: u64,
}

impl AmountTooLarge {
    /// The ILP error code to reject with.
    pub const CODE: &'static str = "F08";
}

/// Checks an incoming Prepare's amount against the account's maximum, when it has one.
pub fn check_max_packet_amount(amount: u64, maximum: Option<u64>) -> Result<(), AmountTooLarge> {
    match maximum {
        Some(maximum) if amount > maximum => Err(AmountTooLarge {
            received: amount,
            maximum,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_packet_amount() {
        assert_eq!(check_max_packet_amount(u64::MAX, None), Ok(()));
        assert_eq!(check_max_packet_amount(100, Some(100)), Ok(()));
        assert_eq!(
            check_max_packet_amount(101, Some(100)),
            Err(AmountTooLarge {
                received: 101,
                maximum: 100
            })
        );
        assert_eq!(
            AmountTooLarge {
                received: 101,
                maximum: 100
            }
            .to_string(),
            "packet amount 101 exceeds the maximum of 100"
        );
    }
}
