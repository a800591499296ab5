//! Wall-clock time for the runtime, read through tokio's clock so that a simulation running on
//! paused (virtual) tokio time sees a consistent, deterministic `now` in unix milliseconds.

use ilp::packet::Timestamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Maps tokio instants to unix milliseconds from one fixed origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ms: u64,
}

impl Clock {
    /// The real clock: `now` follows the system time at creation plus tokio's elapsed time.
    pub fn system() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock::starting_at(unix)
    }

    /// A clock whose `now` starts at `unix_ms` (simulations pick a fixed start for replay).
    pub fn starting_at(unix_ms: u64) -> Self {
        Clock {
            origin: Instant::now(),
            origin_unix_ms: unix_ms,
        }
    }

    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.origin_unix_ms.saturating_add(elapsed)
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.now_ms())
    }

    /// The tokio instant at which `at` falls (now, if it is already past).
    pub fn instant_at(&self, at: Timestamp) -> Instant {
        let ms = at.unix_millis().saturating_sub(self.origin_unix_ms);
        self.origin + Duration::from_millis(ms)
    }
}
