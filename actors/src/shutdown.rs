//! Graceful shutdown: the [`PacketGate`] every Prepare passes in the Router. While open it
//! counts the packets in flight; once closed it turns new ones away (T03, try later) and
//! [`PacketGate::drain`] waits until those in flight are answered, or a bound passes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct PacketGate {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One packet in flight; dropping it (answered, or its future dropped) lets it out.
#[derive(Debug)]
pub struct Pass(Arc<PacketGate>);

impl Drop for Pass {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl PacketGate {
    pub fn new() -> Arc<PacketGate> {
        Arc::new(PacketGate::default())
    }

    /// Lets a packet in, unless the gate is closed.
    pub fn enter(self: &Arc<Self>) -> Option<Pass> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // Closed in between: the drain may already have seen zero, so do not count on it.
        if self.closed.load(Ordering::Acquire) {
            drop(Pass(self.clone()));
            return None;
        }
        Some(Pass(self.clone()))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the gate and waits until no packet is in flight or `within` has passed; returns
    /// how many were still in flight then.
    pub async fn drain(&self, within: Duration) -> usize {
        self.closed.store(true, Ordering::Release);
        let idle = async {
            loop {
                let notified = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, idle).await;
        self.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_packets_in_flight_and_closes_the_gate() {
        let gate = PacketGate::new();
        let first = gate.enter().unwrap();
        let second = gate.enter().unwrap();
        assert_eq!(gate.in_flight(), 2);
        let releaser = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(first);
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(second);
        });
        let start = tokio::time::Instant::now();
        assert_eq!(gate.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert!(gate.enter().is_none(), "closed for new packets");
        releaser.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_at_its_bound() {
        let gate = PacketGate::new();
        let stuck = gate.enter().unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(gate.drain(Duration::from_secs(3)).await, 1);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        drop(stuck);
        assert_eq!(gate.in_flight(), 0);
        assert_eq!(PacketGate::new().drain(Duration::from_secs(3)).await, 0);
    }
}
