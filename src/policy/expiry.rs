//! The expiry a connector gives the Prepare it forwards, as the JS connector's route builder
//! computes it: the next hop must answer `min_message_window` before the incoming Prepare
//! expires (time to relay the Fulfill back), and funds are never held longer than
//! `max_hold_time` from now. A Prepare that arrives expired, or leaves the next hop less than
//! one message window, is rejected R02 (Insufficient Timeout).

use crate::packet::{ErrorCode, Timestamp};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ExpiryError {
    /// The incoming Prepare expired before we could forward it.
    #[error(
        "source transfer has already expired (expires at {expires_at_ms} ms, now {now_ms} ms)"
    )]
    AlreadyExpired { expires_at_ms: u64, now_ms: u64 },
    /// After keeping our message window, the next hop would have less than a window left.
    #[error(
        "source transfer expires too soon to complete payment (expires at {expires_at_ms} ms, \
         needs at least {required_ms} ms)"
    )]
    TooSoon {
        expires_at_ms: u64,
        required_ms: u64,
    },
}

impl ExpiryError {
    /// The ILP error code to reject with: R02 for both.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::R02_INSUFFICIENT_TIMEOUT
    }
}

/// The next hop's expiry for a Prepare expiring at `incoming` and received at `now`:
/// `min(incoming - min_message_window, now + max_hold_time)`, refused when `incoming < now` or
/// when the result is less than `min_message_window` after `now`.
pub fn next_hop_expiry(
    incoming: Timestamp,
    now: Timestamp,
    min_message_window_ms: u64,
    max_hold_time_ms: u64,
) -> Result<Timestamp, ExpiryError> {
    if incoming < now {
        return Err(ExpiryError::AlreadyExpired {
            expires_at_ms: incoming.unix_millis(),
            now_ms: now.unix_millis(),
        });
    }
    let by_window = incoming.saturating_sub_millis(min_message_window_ms);
    // Past the largest timestamp the hold-time cap no longer binds.
    let outgoing = match now.checked_add_millis(max_hold_time_ms) {
        Some(cap) => by_window.min(cap),
        None => by_window,
    };
    let too_soon = || ExpiryError::TooSoon {
        expires_at_ms: incoming.unix_millis(),
        required_ms: now
            .unix_millis()
            .saturating_add(min_message_window_ms.saturating_mul(2)),
    };
    match now.checked_add_millis(min_message_window_ms) {
        Some(earliest) if outgoing >= earliest => Ok(outgoing),
        _ => Err(too_soon()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_600_000_000_000;

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn keeps_message_window_when_within_hold_time() {
        assert_eq!(
            next_hop_expiry(ts(NOW + 10_000), ts(NOW), 1_000, 30_000),
            Ok(ts(NOW + 9_000))
        );
    }

    #[test]
    fn caps_at_max_hold_time() {
        assert_eq!(
            next_hop_expiry(ts(NOW + 100_000), ts(NOW), 1_000, 30_000),
            Ok(ts(NOW + 30_000))
        );
    }

    #[test]
    fn exactly_one_window_left_is_enough() {
        assert_eq!(
            next_hop_expiry(ts(NOW + 2_000), ts(NOW), 1_000, 30_000),
            Ok(ts(NOW + 1_000))
        );
    }

    #[test]
    fn less_than_a_window_left_is_r02() {
        let err = next_hop_expiry(ts(NOW + 1_999), ts(NOW), 1_000, 30_000).unwrap_err();
        assert_eq!(
            err,
            ExpiryError::TooSoon {
                expires_at_ms: NOW + 1_999,
                required_ms: NOW + 2_000
            }
        );
        assert_eq!(err.code(), ErrorCode::R02_INSUFFICIENT_TIMEOUT);
    }

    #[test]
    fn hold_time_shorter_than_window_is_r02() {
        let err = next_hop_expiry(ts(NOW + 60_000), ts(NOW), 1_000, 500).unwrap_err();
        assert!(matches!(err, ExpiryError::TooSoon { .. }));
    }

    #[test]
    fn already_expired_is_r02() {
        let err = next_hop_expiry(ts(NOW - 1), ts(NOW), 1_000, 30_000).unwrap_err();
        assert_eq!(
            err,
            ExpiryError::AlreadyExpired {
                expires_at_ms: NOW - 1,
                now_ms: NOW
            }
        );
        assert_eq!(err.code(), ErrorCode::R02_INSUFFICIENT_TIMEOUT);
    }

    #[test]
    fn expiring_now_is_too_soon_not_expired() {
        let err = next_hop_expiry(ts(NOW), ts(NOW), 1_000, 30_000).unwrap_err();
        assert!(matches!(err, ExpiryError::TooSoon { .. }));
    }

    #[test]
    fn near_the_largest_timestamp_does_not_overflow() {
        let max = Timestamp::MAX;
        assert_eq!(
            next_hop_expiry(max, max.saturating_sub_millis(5_000), 1_000, u64::MAX),
            Ok(max.saturating_sub_millis(1_000))
        );
        assert!(next_hop_expiry(max, max, 1_000, 30_000).is_err());
        assert!(next_hop_expiry(max, ts(0), u64::MAX, u64::MAX).is_err());
    }

    proptest! {
        #[test]
        fn outgoing_is_within_bounds(
            now in 0u64..=253_402_300_799_999,
            ahead in 0u64..10_000_000,
            window in 0u64..100_000,
            hold in 0u64..1_000_000,
        ) {
            let incoming = ts(now.saturating_add(ahead));
            if let Ok(out) = next_hop_expiry(incoming, ts(now), window, hold) {
                prop_assert!(out.unix_millis() + window <= incoming.unix_millis());
                prop_assert!(out.unix_millis() <= now.saturating_add(hold));
                prop_assert!(out.unix_millis() >= now + window);
            }
        }
    }
}
