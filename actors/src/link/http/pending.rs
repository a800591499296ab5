//! The sending side's table of HTTP-OER-ASYNC requests waiting for their callback: each
//! outgoing Prepare is registered under its `Request-Id` before it is POSTed (a quick peer may
//! call back before its 202 arrives), and the first callback for the id takes the entry and
//! resolves the waiting send. The table is bounded, and an entry is worthless once its
//! Prepare has expired (the PeerAccount has rejected R00 upstream by then), so a late callback
//! finds nothing, exactly like a repeated or an unknown one.

use crate::messages::PacketResult;
use std::collections::HashMap;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What became of a callback offered to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The waiting send got the packet.
    Resolved,
    /// No live request has this id: never sent, already answered, expired or given up.
    Unknown,
}

/// The table is full of live requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

struct Entry {
    expires: Instant,
    reply: oneshot::Sender<PacketResult>,
}

/// Requests awaiting a callback, by Request-Id.
pub struct PendingReplies {
    entries: HashMap<String, Entry>,
    capacity: usize,
}

impl PendingReplies {
    /// An empty table that holds at most `capacity` live requests.
    pub fn new(capacity: usize) -> PendingReplies {
        PendingReplies {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// Registers `id`, live until `expires`; the receiver gets the callback's packet. A full
    /// table first drops its expired entries (and those whose sender gave up), and refuses
    /// only if it is still full.
    pub fn insert(
        &mut self,
        id: String,
        expires: Instant,
        now: Instant,
    ) -> Result<oneshot::Receiver<PacketResult>, TableFull> {
        if self.entries.len() >= self.capacity {
            self.entries
                .retain(|_, e| e.expires > now && !e.reply.is_closed());
            if self.entries.len() >= self.capacity {
                return Err(TableFull);
            }
        }
        let (reply, receiver) = oneshot::channel();
        self.entries.insert(id, Entry { expires, reply });
        Ok(receiver)
    }

    /// Hands `packet` to the request `id` if it is live: the first callback wins, and the
    /// entry is gone after it, so a repeat is [`Delivery::Unknown`].
    pub fn deliver(&mut self, id: &str, packet: PacketResult, now: Instant) -> Delivery {
        let Some(entry) = self.entries.remove(id) else {
            return Delivery::Unknown;
        };
        if entry.expires <= now {
            return Delivery::Unknown;
        }
        match entry.reply.send(packet) {
            Ok(()) => Delivery::Resolved,
            // The send was dropped (the PeerAccount's expiry timer won the race).
            Err(_) => Delivery::Unknown,
        }
    }

    /// Forgets `id` (its send finished another way or was dropped).
    pub fn remove(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// Live and not yet pruned entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ilp::packet::{ErrorCode, Reject};
    use std::time::Duration;

    fn reject() -> PacketResult {
        Err(Reject::new(ErrorCode::T99_APPLICATION_ERROR, None, "x"))
    }

    #[test]
    fn first_callback_wins_and_a_repeat_or_unknown_id_is_unknown() {
        let now = Instant::now();
        let mut table = PendingReplies::new(4);
        let mut rx = table
            .insert("a".into(), now + Duration::from_secs(1), now)
            .unwrap();
        assert_eq!(table.deliver("b", reject(), now), Delivery::Unknown);
        assert_eq!(table.deliver("a", reject(), now), Delivery::Resolved);
        assert_eq!(table.deliver("a", reject(), now), Delivery::Unknown);
        assert!(rx.try_recv().unwrap().is_err());
        assert!(table.is_empty());
    }

    #[test]
    fn an_expired_or_abandoned_entry_is_unknown() {
        let now = Instant::now();
        let mut table = PendingReplies::new(4);
        let _rx = table
            .insert("a".into(), now + Duration::from_millis(10), now)
            .unwrap();
        let later = now + Duration::from_millis(10);
        assert_eq!(table.deliver("a", reject(), later), Delivery::Unknown);
        let rx = table
            .insert("b".into(), now + Duration::from_secs(1), now)
            .unwrap();
        drop(rx);
        assert_eq!(table.deliver("b", reject(), now), Delivery::Unknown);
    }

    #[test]
    fn a_full_table_prunes_dead_entries_before_refusing() {
        let now = Instant::now();
        let mut table = PendingReplies::new(2);
        let _a = table
            .insert("a".into(), now + Duration::from_millis(5), now)
            .unwrap();
        let _b = table
            .insert("b".into(), now + Duration::from_secs(1), now)
            .unwrap();
        assert_eq!(
            table
                .insert("c".into(), now + Duration::from_secs(1), now)
                .unwrap_err(),
            TableFull
        );
        let later = now + Duration::from_millis(5);
        let _c = table
            .insert("c".into(), later + Duration::from_secs(1), later)
            .unwrap();
        assert_eq!(table.len(), 2);
        table.remove("b");
        assert_eq!(table.len(), 1);
    }
}
