//! Restart policy shared by every supervised actor: actix's `Supervisor` restarts an actor that
//! stops; [`Backoff`] makes an actor that keeps failing wait longer before it serves again, so a
//! crash loop cannot spin a core. Each actor keeps one `Backoff`, calls
//! [`Backoff::on_restart`] from `Supervised::restarting` and [`Backoff::delay`] from `started`.

use std::time::Duration;

/// Mailbox size of the actors on the packet path (PeerAccount, Router, BalanceKeeper). actix's
/// default of 16 makes a sender beyond it park (a lock, an allocation and a wake-up each time)
/// as soon as more than 16 packets are in flight; the links bound what is in flight anyway.
pub const PACKET_PATH_MAILBOX: usize = 4096;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Backoff {
    /// Restarts within the current failure streak.
    streak: u32,
    last_restart: Option<Instant>,
    pub initial: Duration,
    pub max: Duration,
    /// A restart this long after the previous one starts a new streak.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            streak: 0,
            last_restart: None,
            initial: Duration::from_millis(10),
            max: Duration::from_secs(5),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Records a restart.
    pub fn on_restart(&mut self) {
        let now = Instant::now();
        let fresh = self
            .last_restart
            .is_none_or(|t| now.duration_since(t) >= self.reset_after);
        self.streak = if fresh {
            1
        } else {
            self.streak.saturating_add(1)
        };
        self.last_restart = Some(now);
    }

    /// How long to wait before serving again: zero on the first restart of a streak, then
    /// doubling from `initial` up to `max`.
    pub fn delay(&self) -> Duration {
        match self.streak {
            0 | 1 => Duration::ZERO,
            n => {
                let factor = 1u32.checked_shl(n - 2).unwrap_or(u32::MAX);
                self.initial.saturating_mul(factor).min(self.max)
            }
        }
    }

    /// Restarts in the current streak.
    pub fn streak(&self) -> u32 {
        self.streak
    }
}

/// Implements `Handler<Crash>` for a supervised actor: it stops as if it had failed, and its
/// `Supervisor` restarts it (the same for every actor, hence one definition).
macro_rules! stop_on_crash {
    ($actor:ty) => {
        impl actix::Handler<$crate::messages::Crash> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::messages::Crash, ctx: &mut Self::Context) {
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use stop_on_crash;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_then_caps_then_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.delay(), Duration::ZERO);
        b.on_restart();
        assert_eq!(b.delay(), Duration::ZERO);
        b.on_restart();
        assert_eq!(b.delay(), Duration::from_millis(10));
        b.on_restart();
        assert_eq!(b.delay(), Duration::from_millis(20));
        for _ in 0..20 {
            b.on_restart();
        }
        assert_eq!(b.delay(), Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(31)).await;
        b.on_restart();
        assert_eq!(b.streak(), 1);
        assert_eq!(b.delay(), Duration::ZERO);
    }
}
