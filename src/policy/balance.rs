//! Balance rules of one account, as pure arithmetic on a [`Balance`] value.
//!
//! The sign convention is the JS connector's: the balance is from the connector's point of
//! view, positive when the counterparty owes the connector. So:
//! - an incoming Prepare raises the balance at once (reserve) and is refunded on Reject or
//!   expiry; the `maximum` bounds it (T04 when exceeded);
//! - an outgoing Prepare is reserved against the `minimum` while in flight and lowers the
//!   balance only when fulfilled. (The JS connector checks the minimum only after the Fulfill;
//!   reserving first keeps concurrent packets from jointly overshooting the limit.)
//! - when, after a fulfilled outgoing packet, the balance is below `settle_threshold`, the
//!   connector settles `settle_to - balance` to bring it back up to `settle_to`;
//! - a settlement we send raises the balance; one we receive lowers it.
//!
//! Amounts are `u64`; balances `i64`; the arithmetic runs in `i128` and every result that does
//! not fit is an error, never a wrap.

use crate::packet::ErrorCode;
use thiserror::Error;

/// The configured limits of one account, in its own asset's base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BalanceLimits {
    /// Lowest balance outgoing packets may bring it to; `None` is unbounded (JS `-Infinity`).
    pub minimum: Option<i64>,
    /// Highest balance incoming packets may bring it to; `None` is unbounded.
    pub maximum: Option<i64>,
    /// Settle when the balance falls below this; `None` never settles.
    pub settle_threshold: Option<i64>,
    /// The balance a settlement aims for.
    pub settle_to: i64,
}

/// One broken relationship between configured limits, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitViolation {
    /// `minimum`, `maximum`, `settle_threshold` or `settle_to`.
    pub field: &'static str,
    pub message: String,
}

impl BalanceLimits {
    /// Every broken relationship among the limits: `minimum < maximum`, and when settling is
    /// on, `minimum <= settle_threshold <= settle_to <= maximum` (the checks the JS settlement
    /// plugins apply to their balance settings).
    pub fn violations(&self) -> Vec<LimitViolation> {
        let mut out = Vec::new();
        let mut v = |field, message: String| out.push(LimitViolation { field, message });
        if let (Some(min), Some(max)) = (self.minimum, self.maximum) {
            if max <= min {
                v(
                    "maximum",
                    format!("must be greater than minimum ({min}), is {max}"),
                );
            }
        }
        if let Some(threshold) = self.settle_threshold {
            if let Some(min) = self.minimum {
                if threshold < min {
                    v(
                        "settle_threshold",
                        format!("must be at least minimum ({min}), is {threshold}"),
                    );
                }
            }
            if self.settle_to < threshold {
                v(
                    "settle_to",
                    format!(
                        "must be at least settle_threshold ({threshold}), is {}",
                        self.settle_to
                    ),
                );
            }
            if let Some(max) = self.maximum {
                if self.settle_to > max {
                    v(
                        "settle_to",
                        format!("must be at most maximum ({max}), is {}", self.settle_to),
                    );
                }
            }
        }
        out
    }
}

/// Why a balance change is refused or impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BalanceError {
    /// An incoming packet would lift the balance above the maximum (reject T04).
    #[error("exceeded maximum balance: balance {balance} + amount {amount} > maximum {maximum}")]
    ExceedsMaximum {
        balance: i64,
        amount: u64,
        maximum: i64,
    },
    /// An outgoing packet would take the balance, net of in-flight packets, below the minimum
    /// (reject T04).
    #[error("insufficient funds: available {available} - amount {amount} < minimum {minimum}")]
    BelowMinimum {
        available: i128,
        amount: u64,
        minimum: i64,
    },
    /// The result does not fit in the balance's integer type.
    #[error("balance arithmetic overflowed")]
    Overflow,
    /// A commit or rollback of more than is reserved: a bookkeeping bug upstream.
    #[error("releasing {amount} but only {pending} is reserved")]
    NotReserved { amount: u64, pending: u64 },
}

impl BalanceError {
    /// The ILP error code a Prepare refused for this reason is rejected with.
    pub fn code(&self) -> ErrorCode {
        match self {
            BalanceError::ExceedsMaximum { .. } | BalanceError::BelowMinimum { .. } => {
                ErrorCode::T04_INSUFFICIENT_LIQUIDITY
            }
            BalanceError::Overflow | BalanceError::NotReserved { .. } => {
                ErrorCode::T00_INTERNAL_ERROR
            }
        }
    }
}

/// The balance of one account: what is settled-or-committed, and what outgoing packets hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Positive when the counterparty owes the connector. Includes in-flight incoming packets.
    pub balance: i64,
    /// Sum of outgoing Prepares sent and not yet fulfilled or rejected.
    pub pending_outgoing: u64,
}

fn to_i64(v: i128) -> Result<i64, BalanceError> {
    i64::try_from(v).map_err(|_| BalanceError::Overflow)
}

impl Balance {
    /// A balance with nothing in flight.
    pub fn new(balance: i64) -> Balance {
        Balance {
            balance,
            pending_outgoing: 0,
        }
    }

    /// The balance net of in-flight outgoing packets (what the minimum bounds).
    pub fn available(&self) -> i128 {
        i128::from(self.balance) - i128::from(self.pending_outgoing)
    }

    /// An incoming Prepare of `amount`: the balance rises now. Zero amounts pass untouched.
    pub fn reserve_incoming(
        &self,
        limits: &BalanceLimits,
        amount: u64,
    ) -> Result<Balance, BalanceError> {
        if amount == 0 {
            return Ok(*self);
        }
        let next = i128::from(self.balance) + i128::from(amount);
        if let Some(maximum) = limits.maximum {
            if next > i128::from(maximum) {
                return Err(BalanceError::ExceedsMaximum {
                    balance: self.balance,
                    amount,
                    maximum,
                });
            }
        }
        Ok(Balance {
            balance: to_i64(next)?,
            ..*self
        })
    }

    /// An incoming Prepare was rejected or expired: refund it.
    pub fn rollback_incoming(&self, amount: u64) -> Result<Balance, BalanceError> {
        let next = i128::from(self.balance) - i128::from(amount);
        Ok(Balance {
            balance: to_i64(next)?,
            ..*self
        })
    }

    /// An outgoing Prepare of `amount`: hold it against the minimum. Zero amounts pass untouched.
    pub fn reserve_outgoing(
        &self,
        limits: &BalanceLimits,
        amount: u64,
    ) -> Result<Balance, BalanceError> {
        if amount == 0 {
            return Ok(*self);
        }
        if let Some(minimum) = limits.minimum {
            if self.available() - i128::from(amount) < i128::from(minimum) {
                return Err(BalanceError::BelowMinimum {
                    available: self.available(),
                    amount,
                    minimum,
                });
            }
        }
        let pending = self
            .pending_outgoing
            .checked_add(amount)
            .ok_or(BalanceError::Overflow)?;
        // The committed balance must still fit once this packet is fulfilled.
        to_i64(i128::from(self.balance) - i128::from(amount))?;
        Ok(Balance {
            pending_outgoing: pending,
            ..*self
        })
    }

    fn release(&self, amount: u64) -> Result<u64, BalanceError> {
        self.pending_outgoing
            .checked_sub(amount)
            .ok_or(BalanceError::NotReserved {
                amount,
                pending: self.pending_outgoing,
            })
    }

    /// An outgoing Prepare was fulfilled: the reservation becomes a lower balance.
    pub fn commit_outgoing(&self, amount: u64) -> Result<Balance, BalanceError> {
        let pending = self.release(amount)?;
        let balance = to_i64(i128::from(self.balance) - i128::from(amount))?;
        Ok(Balance {
            balance,
            pending_outgoing: pending,
        })
    }

    /// An outgoing Prepare was rejected or expired: drop the reservation.
    pub fn rollback_outgoing(&self, amount: u64) -> Result<Balance, BalanceError> {
        Ok(Balance {
            pending_outgoing: self.release(amount)?,
            ..*self
        })
    }

    /// How much to settle now: `settle_to - balance` when the balance is below the threshold.
    pub fn settle_amount(&self, limits: &BalanceLimits) -> Option<u64> {
        let threshold = limits.settle_threshold?;
        if self.balance >= threshold {
            return None;
        }
        let amount = i128::from(limits.settle_to) - i128::from(self.balance);
        u64::try_from(amount).ok().filter(|a| *a > 0)
    }

    /// Whether moving from `self` to `after` took the balance below the settle threshold (for
    /// callers that settle once per crossing rather than after every packet below it).
    pub fn crosses_settle_threshold(&self, after: &Balance, limits: &BalanceLimits) -> bool {
        match limits.settle_threshold {
            Some(t) => self.balance >= t && after.balance < t,
            None => false,
        }
    }

    /// We paid the counterparty `amount` outside ILP: they owe us that much more.
    pub fn apply_outgoing_settlement(&self, amount: u64) -> Result<Balance, BalanceError> {
        Ok(Balance {
            balance: to_i64(i128::from(self.balance) + i128::from(amount))?,
            ..*self
        })
    }

    /// The counterparty paid us `amount` outside ILP: they owe that much less.
    pub fn apply_incoming_settlement(&self, amount: u64) -> Result<Balance, BalanceError> {
        Ok(Balance {
            balance: to_i64(i128::from(self.balance) - i128::from(amount))?,
            ..*self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(min: Option<i64>, max: Option<i64>, th: Option<i64>, to: i64) -> BalanceLimits {
        BalanceLimits {
            minimum: min,
            maximum: max,
            settle_threshold: th,
            settle_to: to,
        }
    }

    #[test]
    fn incoming_reserve_and_rollback() {
        let l = limits(None, Some(1000), None, 0);
        let b = Balance::new(900);
        assert_eq!(b.reserve_incoming(&l, 100), Ok(Balance::new(1000)));
        assert_eq!(
            b.reserve_incoming(&l, 101),
            Err(BalanceError::ExceedsMaximum {
                balance: 900,
                amount: 101,
                maximum: 1000
            })
        );
        assert_eq!(
            b.reserve_incoming(&l, 101).unwrap_err().code(),
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY
        );
        // Zero amounts are ignored even when already above the maximum.
        assert_eq!(
            Balance::new(2000).reserve_incoming(&l, 0),
            Ok(Balance::new(2000))
        );
        assert_eq!(
            Balance::new(1000).rollback_incoming(100),
            Ok(Balance::new(900))
        );
        // No maximum: only the integer range bounds it.
        let open = BalanceLimits::default();
        assert_eq!(
            Balance::new(i64::MAX).reserve_incoming(&open, 1),
            Err(BalanceError::Overflow)
        );
        assert_eq!(
            Balance::new(0).reserve_incoming(&open, u64::MAX),
            Err(BalanceError::Overflow)
        );
        assert_eq!(
            Balance::new(i64::MIN).rollback_incoming(1),
            Err(BalanceError::Overflow)
        );
    }

    #[test]
    fn outgoing_reserve_commit_rollback() {
        let l = limits(Some(-500), None, None, 0);
        let b = Balance::new(0);
        let r1 = b.reserve_outgoing(&l, 300).unwrap();
        assert_eq!(
            r1,
            Balance {
                balance: 0,
                pending_outgoing: 300
            }
        );
        assert_eq!(r1.available(), -300);
        assert_eq!(
            r1.reserve_outgoing(&l, 201),
            Err(BalanceError::BelowMinimum {
                available: -300,
                amount: 201,
                minimum: -500
            })
        );
        let r2 = r1.reserve_outgoing(&l, 200).unwrap();
        assert_eq!(r2.pending_outgoing, 500);
        let c = r2.commit_outgoing(300).unwrap();
        assert_eq!(
            c,
            Balance {
                balance: -300,
                pending_outgoing: 200
            }
        );
        let back = c.rollback_outgoing(200).unwrap();
        assert_eq!(back, Balance::new(-300));
        assert_eq!(
            back.rollback_outgoing(1),
            Err(BalanceError::NotReserved {
                amount: 1,
                pending: 0
            })
        );
        assert_eq!(
            back.commit_outgoing(1),
            Err(BalanceError::NotReserved {
                amount: 1,
                pending: 0
            })
        );
        assert_eq!(
            back.commit_outgoing(1).unwrap_err().code(),
            ErrorCode::T00_INTERNAL_ERROR
        );
        assert_eq!(back.reserve_outgoing(&l, 0), Ok(back));
    }

    #[test]
    fn outgoing_without_minimum_is_bounded_by_integers_only() {
        let open = BalanceLimits::default();
        assert_eq!(
            Balance::new(i64::MIN).reserve_outgoing(&open, 1),
            Err(BalanceError::Overflow)
        );
        let b = Balance {
            balance: 0,
            pending_outgoing: u64::MAX,
        };
        assert_eq!(b.reserve_outgoing(&open, 1), Err(BalanceError::Overflow));
        assert_eq!(
            Balance::new(0).reserve_outgoing(&open, 5),
            Ok(Balance {
                balance: 0,
                pending_outgoing: 5
            })
        );
    }

    #[test]
    fn settlement_threshold() {
        let l = limits(Some(-1000), Some(1000), Some(-100), 0);
        assert_eq!(Balance::new(-100).settle_amount(&l), None);
        assert_eq!(Balance::new(-101).settle_amount(&l), Some(101));
        assert_eq!(Balance::new(-1000).settle_amount(&l), Some(1000));
        let to_pos = limits(None, None, Some(10), 50);
        assert_eq!(Balance::new(5).settle_amount(&to_pos), Some(45));
        assert_eq!(
            Balance::new(5).settle_amount(&limits(None, None, None, 0)),
            None
        );
        // settle_to at or below the balance (misconfigured): nothing to send.
        assert_eq!(
            Balance::new(5).settle_amount(&limits(None, None, Some(10), 5)),
            None
        );
        assert!(Balance::new(0).crosses_settle_threshold(&Balance::new(-101), &l));
        assert!(!Balance::new(-101).crosses_settle_threshold(&Balance::new(-200), &l));
        assert!(!Balance::new(0).crosses_settle_threshold(&Balance::new(-100), &l));
        assert!(!Balance::new(0)
            .crosses_settle_threshold(&Balance::new(-5000), &limits(None, None, None, 0)));
    }

    #[test]
    fn settlements_move_the_balance() {
        let b = Balance::new(-101);
        let settled = b.apply_outgoing_settlement(101).unwrap();
        assert_eq!(settled, Balance::new(0));
        assert_eq!(settled.apply_incoming_settlement(40), Ok(Balance::new(-40)));
        assert_eq!(
            Balance::new(i64::MAX).apply_outgoing_settlement(1),
            Err(BalanceError::Overflow)
        );
        assert_eq!(
            Balance::new(i64::MIN).apply_incoming_settlement(1),
            Err(BalanceError::Overflow)
        );
    }

    #[test]
    fn limit_violations() {
        assert!(limits(Some(-1000), Some(1000), Some(-100), 0)
            .violations()
            .is_empty());
        assert!(limits(None, None, None, 0).violations().is_empty());
        assert!(limits(Some(-10), Some(10), Some(-10), 10)
            .violations()
            .is_empty());
        let v = limits(Some(10), Some(10), None, 0).violations();
        assert_eq!(
            v,
            vec![LimitViolation {
                field: "maximum",
                message: "must be greater than minimum (10), is 10".into()
            }]
        );
        let v = limits(Some(0), Some(100), Some(-5), -10).violations();
        let fields: Vec<_> = v.iter().map(|x| x.field).collect();
        assert_eq!(fields, vec!["settle_threshold", "settle_to"]);
        let v = limits(None, Some(100), Some(0), 200).violations();
        assert_eq!(
            v,
            vec![LimitViolation {
                field: "settle_to",
                message: "must be at most maximum (100), is 200".into()
            }]
        );
    }

    proptest! {
        #[test]
        fn reserve_then_rollback_is_identity(start in -1_000_000i64..1_000_000, amount in 0u64..2_000_000) {
            let l = limits(Some(-1_500_000), Some(1_500_000), None, 0);
            let b = Balance::new(start);
            if let Ok(r) = b.reserve_incoming(&l, amount) {
                prop_assert!(r.balance <= 1_500_000);
                prop_assert_eq!(r.rollback_incoming(amount), Ok(b));
            }
            if let Ok(r) = b.reserve_outgoing(&l, amount) {
                prop_assert!(r.available() >= -1_500_000);
                prop_assert_eq!(r.rollback_outgoing(amount), Ok(b));
                prop_assert_eq!(r.commit_outgoing(amount).map(|c| c.balance), Ok(start - amount as i64));
            }
        }

        #[test]
        fn never_panics(balance: i64, pending: u64, amount: u64, min: Option<i64>, max: Option<i64>,
                        th: Option<i64>, to: i64) {
            let l = limits(min, max, th, to);
            let b = Balance { balance, pending_outgoing: pending };
            if let (Ok(r), Some(max)) = (b.reserve_incoming(&l, amount), max) {
                prop_assert!(amount == 0 || r.balance <= max);
            }
            if let (Ok(r), Some(min)) = (b.reserve_outgoing(&l, amount), min) {
                prop_assert!(amount == 0 || r.available() >= i128::from(min));
            }
            for r in [b.commit_outgoing(amount), b.rollback_outgoing(amount)].iter().flatten() {
                prop_assert_eq!(r.pending_outgoing, pending - amount);
            }
            for r in [b.rollback_incoming(amount), b.apply_incoming_settlement(amount)].iter().flatten() {
                prop_assert_eq!(i128::from(r.balance), i128::from(balance) - i128::from(amount));
            }
            if let Ok(r) = b.apply_outgoing_settlement(amount) {
                prop_assert_eq!(i128::from(r.balance), i128::from(balance) + i128::from(amount));
            }
            if let Some(s) = b.settle_amount(&l) {
                prop_assert!(s > 0);
            }
        }
    }
}
