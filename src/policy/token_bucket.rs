//! Token buckets with continuous refill, the JS connector's `TokenBucket` in exact integers.
//!
//! The JS bucket refills `refillCount / refillPeriod` tokens per elapsed millisecond as a
//! float, capped at `capacity`, and starts full. Here the level is kept in units of
//! `1 / refill_period` token (`u128`), so the same continuous refill is exact: after `d` ms the
//! level grows by `d * refill_count` units. Unlike the JS bucket, a clock that steps backwards
//! neither refills nor moves the reference time back (which would refill the same interval twice).

use crate::packet::ErrorCode;
use thiserror::Error;

/// The settings of one bucket: `refill_count` tokens every `refill_period_ms`, at most
/// `capacity` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucketParams {
    pub refill_period_ms: u64,
    pub refill_count: u64,
    pub capacity: u64,
}

impl TokenBucketParams {
    /// The JS connector's rate limit when an account sets none: 10 000 packets a minute.
    pub const RATE_LIMIT_DEFAULT: TokenBucketParams = TokenBucketParams {
        refill_period_ms: 60_000,
        refill_count: 10_000,
        capacity: 10_000,
    };

    /// The JS connector's throughput refill period: one second.
    pub const THROUGHPUT_REFILL_PERIOD_MS: u64 = 1_000;

    /// A throughput bucket for `amount_per_period` units every `refill_period_ms`, holding at
    /// most one period's worth (as the JS throughput middleware builds it).
    pub fn throughput(amount_per_period: u64, refill_period_ms: u64) -> TokenBucketParams {
        TokenBucketParams {
            refill_period_ms,
            refill_count: amount_per_period,
            capacity: amount_per_period,
        }
    }
}

/// Bucket settings that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenBucketError {
    #[error("refill period must be greater than zero")]
    ZeroRefillPeriod,
}

/// A token bucket; `now` is unix milliseconds supplied by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    params: TokenBucketParams,
    /// Tokens times `refill_period_ms`.
    level: u128,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket as of `now_ms`.
    pub fn new(params: TokenBucketParams, now_ms: u64) -> Result<TokenBucket, TokenBucketError> {
        if params.refill_period_ms == 0 {
            return Err(TokenBucketError::ZeroRefillPeriod);
        }
        Ok(TokenBucket {
            params,
            level: Self::scaled(params.capacity, params.refill_period_ms),
            last_ms: now_ms,
        })
    }

    fn scaled(tokens: u64, period: u64) -> u128 {
        // Both factors are below 2^64, so the product fits in u128.
        u128::from(tokens) * u128::from(period)
    }

    /// The settings this bucket runs with.
    pub fn params(&self) -> TokenBucketParams {
        self.params
    }

    fn refill(&mut self, now_ms: u64) {
        if now_ms <= self.last_ms {
            return;
        }
        let elapsed = now_ms - self.last_ms;
        let added = Self::scaled(elapsed, self.params.refill_count);
        let cap = Self::scaled(self.params.capacity, self.params.refill_period_ms);
        self.level = self.level.saturating_add(added).min(cap);
        self.last_ms = now_ms;
    }

    /// Whole tokens available at `now_ms`.
    pub fn available(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        let whole = self.level / u128::from(self.params.refill_period_ms);
        // level <= capacity * period, so whole <= capacity.
        u64::try_from(whole).unwrap_or(u64::MAX)
    }

    /// Takes `count` tokens if that many are available at `now_ms`; otherwise takes none.
    pub fn try_take(&mut self, count: u64, now_ms: u64) -> bool {
        self.refill(now_ms);
        let needed = Self::scaled(count, self.params.refill_period_ms);
        if needed > self.level {
            return false;
        }
        self.level -= needed;
        true
    }
}

/// Why a packet was throttled, with the ILP error code to reject it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Throttled {
    /// Too many packets: T05 Rate Limited.
    #[error("too many requests, throttling.")]
    RateLimited,
    /// Too much value per interval: T04 Insufficient Liquidity, as the JS throughput middleware.
    #[error("exceeded money bandwidth, throttling.")]
    ExceededThroughput,
}

impl Throttled {
    /// The ILP error code (`T05` or `T04`).
    pub fn code(&self) -> ErrorCode {
        match self {
            Throttled::RateLimited => ErrorCode::T05_RATE_LIMITED,
            Throttled::ExceededThroughput => ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
        }
    }
}

/// Incoming packet-rate limit of one account: one token per Prepare (and per incoming
/// settlement, as the JS connector counts those too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiter(TokenBucket);

impl RateLimiter {
    /// A full limiter as of `now_ms`.
    pub fn new(params: TokenBucketParams, now_ms: u64) -> Result<RateLimiter, TokenBucketError> {
        TokenBucket::new(params, now_ms).map(RateLimiter)
    }

    /// Admits one packet at `now_ms`, or says to reject it with T05.
    pub fn check(&mut self, now_ms: u64) -> Result<(), Throttled> {
        if self.0.try_take(1, now_ms) {
            Ok(())
        } else {
            Err(Throttled::RateLimited)
        }
    }
}

/// Amount-per-interval limit of one direction of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThroughputLimiter(TokenBucket);

impl ThroughputLimiter {
    /// A full limiter as of `now_ms`.
    pub fn new(
        params: TokenBucketParams,
        now_ms: u64,
    ) -> Result<ThroughputLimiter, TokenBucketError> {
        TokenBucket::new(params, now_ms).map(ThroughputLimiter)
    }

    /// Admits a Prepare of `amount` at `now_ms`, or says to reject it with T04.
    pub fn check(&mut self, amount: u64, now_ms: u64) -> Result<(), Throttled> {
        if self.0.try_take(amount, now_ms) {
            Ok(())
        } else {
            Err(Throttled::ExceededThroughput)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(period: u64, count: u64, capacity: u64) -> TokenBucketParams {
        TokenBucketParams {
            refill_period_ms: period,
            refill_count: count,
            capacity,
        }
    }

    #[test]
    fn starts_full_and_empties() {
        let mut b = TokenBucket::new(params(1000, 10, 3), 0).unwrap();
        assert_eq!(b.available(0), 3);
        assert!(b.try_take(1, 0));
        assert!(b.try_take(2, 0));
        assert!(!b.try_take(1, 0));
        assert!(b.try_take(0, 0));
        assert_eq!(b.available(0), 0);
    }

    #[test]
    fn refills_continuously_and_exactly() {
        // 10 tokens per 1000 ms = one per 100 ms.
        let mut b = TokenBucket::new(params(1000, 10, 10), 5_000).unwrap();
        assert!(b.try_take(10, 5_000));
        assert!(!b.try_take(1, 5_099));
        assert!(b.try_take(1, 5_100));
        assert!(!b.try_take(1, 5_150));
        // The 50 ms of refill seen at 5_150 are kept, so 5_200 completes a token.
        assert!(b.try_take(1, 5_200));
        // One token per three ms: 1/3 per ms accumulates exactly, no float drift.
        let mut c = TokenBucket::new(params(3, 1, 1), 0).unwrap();
        assert!(c.try_take(1, 0));
        assert!(!c.try_take(1, 1));
        assert!(!c.try_take(1, 2));
        assert!(c.try_take(1, 3));
    }

    #[test]
    fn capped_at_capacity() {
        let mut b = TokenBucket::new(params(1000, 10, 5), 0).unwrap();
        assert!(b.try_take(5, 0));
        assert_eq!(b.available(1_000_000), 5);
        assert!(!b.try_take(6, 1_000_000));
        assert!(b.try_take(5, 1_000_000));
    }

    #[test]
    fn capacity_zero_admits_nothing_but_zero() {
        let mut b = TokenBucket::new(params(1000, 10, 0), 0).unwrap();
        assert!(!b.try_take(1, 10_000));
        assert!(b.try_take(0, 10_000));
    }

    #[test]
    fn clock_going_backwards_does_not_refill_twice() {
        let mut b = TokenBucket::new(params(100, 1, 1), 1_000).unwrap();
        assert!(b.try_take(1, 1_000));
        assert!(!b.try_take(1, 500));
        // Back to 1_050: only 50 ms have passed since the last real refill.
        assert!(!b.try_take(1, 1_050));
        assert!(b.try_take(1, 1_100));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut b = TokenBucket::new(params(u64::MAX, u64::MAX, u64::MAX), 0).unwrap();
        assert!(b.try_take(u64::MAX, 0));
        assert_eq!(b.available(u64::MAX), u64::MAX);
        assert!(b.try_take(u64::MAX, u64::MAX));
    }

    #[test]
    fn zero_period_rejected() {
        assert_eq!(
            TokenBucket::new(params(0, 1, 1), 0),
            Err(TokenBucketError::ZeroRefillPeriod)
        );
        assert_eq!(
            RateLimiter::new(params(0, 1, 1), 0),
            Err(TokenBucketError::ZeroRefillPeriod)
        );
    }

    #[test]
    fn rate_limiter_rejects_with_t05() {
        let mut r = RateLimiter::new(params(1000, 2, 2), 0).unwrap();
        assert_eq!(r.check(0), Ok(()));
        assert_eq!(r.check(0), Ok(()));
        assert_eq!(r.check(0), Err(Throttled::RateLimited));
        assert_eq!(Throttled::RateLimited.code(), ErrorCode::T05_RATE_LIMITED);
        assert_eq!(r.check(500), Ok(()));
        let d = TokenBucketParams::RATE_LIMIT_DEFAULT;
        assert_eq!(
            (d.refill_period_ms, d.refill_count, d.capacity),
            (60_000, 10_000, 10_000)
        );
    }

    #[test]
    fn throughput_limiter_rejects_with_t04() {
        let p =
            TokenBucketParams::throughput(1_000, TokenBucketParams::THROUGHPUT_REFILL_PERIOD_MS);
        let mut t = ThroughputLimiter::new(p, 0).unwrap();
        assert_eq!(t.check(600, 0), Ok(()));
        assert_eq!(t.check(401, 0), Err(Throttled::ExceededThroughput));
        assert_eq!(t.check(400, 0), Ok(()));
        assert_eq!(
            Throttled::ExceededThroughput.code(),
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY
        );
        // 250 ms refill 250 units.
        assert_eq!(t.check(251, 250), Err(Throttled::ExceededThroughput));
        assert_eq!(t.check(250, 250), Ok(()));
        assert_eq!(t.check(1_001, 10_000), Err(Throttled::ExceededThroughput));
    }

    proptest! {
        #[test]
        fn never_admits_more_than_capacity_plus_refill(
            period in 1u64..10_000, count in 0u64..1_000, capacity in 0u64..1_000,
            takes in proptest::collection::vec((0u64..200, 0u64..50), 0..64),
        ) {
            let mut b = TokenBucket::new(params(period, count, capacity), 0).unwrap();
            let mut now = 0u64;
            let mut taken: u128 = 0;
            for (dt, n) in takes {
                now += dt;
                if b.try_take(n, now) {
                    taken += u128::from(n);
                }
            }
            let bound = u128::from(capacity)
                + u128::from(now) * u128::from(count) / u128::from(period);
            prop_assert!(taken <= bound, "taken {} > bound {}", taken, bound);
        }
    }
}
