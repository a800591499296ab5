//! BTP/2.0-I receiver memory: which requests this side has seen, by request id and a SHA-256
//! of the request frame, and the reply it gave.
//!
//! In BTP/2.0-I the sender repeats a request (same id, same bytes) until it gets an answer, so
//! the receiver must give every repeat the same answer and must not act on a repeat twice. The
//! digest keeps a *different* request that reuses an old id from being answered with the old
//! reply, and an answer from being stored under a different request than the one it answers.
//!
//! Memory is bounded. Entries expire at a caller-given instant (the ILP packet's expiry,
//! normally, after which the sender stops repeating). When the table is full, the *answered*
//! entry closest to expiry goes first (its sender is the nearest to giving up, and a repeat
//! after that gets a fresh delivery that the node's own one-payment rule answers); a request
//! still in progress is never forgotten, since a repeat of it would be delivered a second time
//! while the first is still running. With every entry in progress the table refuses new
//! requests ([`MemoryFull`]) until one is answered.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Fingerprint of a request frame's exact bytes.
pub fn digest(frame_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(frame_bytes).into()
}

/// What to do with an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not seen (or forgotten): deliver it.
    New,
    /// A repeat of a request still being processed: drop it; the answer will follow.
    InProgress,
    /// A repeat of an answered request: send these reply bytes again.
    Answered(Bytes),
    /// Same id as a request still being processed, different content: the peer reused an id
    /// while it was in flight.
    Conflict,
}

/// Every remembered request is still in progress: a new one cannot be remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the BTP/2.0-I memory is full of requests in progress")]
pub struct MemoryFull;

#[derive(Debug, Clone)]
enum EntryState {
    InProgress,
    Answered(Bytes),
}

#[derive(Debug, Clone)]
struct Entry {
    digest: [u8; 32],
    expires_at: u64,
    state: EntryState,
}

/// Bounded map from request id to the request's digest and its reply.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    max_entries: usize,
    entries: BTreeMap<u32, Entry>,
    /// `(expires_at, request_id)` for every entry, so expiry is an ordered scan.
    by_expiry: BTreeSet<(u64, u32)>,
    /// The same for the answered entries only: the ones that may be evicted.
    answered: BTreeSet<(u64, u32)>,
}

impl ReplayCache {
    /// A cache holding at most `max_entries` requests (0 remembers nothing).
    pub fn new(max_entries: usize) -> Self {
        ReplayCache {
            max_entries,
            entries: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            answered: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Requests remembered that have no answer yet.
    pub fn in_progress(&self) -> usize {
        self.entries.len() - self.answered.len()
    }

    /// Classifies an incoming request. Expired entries count as absent even before
    /// [`ReplayCache::expire`] removes them.
    pub fn check(&self, request_id: u32, digest: &[u8; 32], now: u64) -> Lookup {
        let Some(e) = self.entries.get(&request_id) else {
            return Lookup::New;
        };
        if now >= e.expires_at {
            return Lookup::New;
        }
        match (&e.state, e.digest == *digest) {
            (EntryState::InProgress, true) => Lookup::InProgress,
            (EntryState::InProgress, false) => Lookup::Conflict,
            (EntryState::Answered(reply), true) => Lookup::Answered(reply.clone()),
            // The sender has its answer and moved on; the id is free again.
            (EntryState::Answered(_), false) => Lookup::New,
        }
    }

    /// Records a request that is now being processed until `expires_at`, replacing any older
    /// entry with the same id. Returns the ids of answered entries evicted to make room, or
    /// [`MemoryFull`] (and remembers nothing) when every entry is still in progress.
    pub fn begin(
        &mut self,
        request_id: u32,
        digest: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<Vec<u32>, MemoryFull> {
        self.remove(request_id);
        self.expire(now);
        if self.max_entries == 0 || expires_at <= now {
            return Ok(Vec::new());
        }
        if self.entries.len() >= self.max_entries && self.answered.is_empty() {
            return Err(MemoryFull);
        }
        let mut evicted = Vec::new();
        while self.entries.len() >= self.max_entries {
            let Some(&(_, id)) = self.answered.first() else {
                break;
            };
            self.remove(id);
            evicted.push(id);
        }
        self.entries.insert(
            request_id,
            Entry {
                digest,
                expires_at,
                state: EntryState::InProgress,
            },
        );
        self.by_expiry.insert((expires_at, request_id));
        Ok(evicted)
    }

    /// Stores the reply of the request `request_id` with `digest`, still in progress, and keeps
    /// it until `expires_at`. Returns false (and stores nothing) if that request is no longer
    /// remembered (it expired, or another request took its id) or was answered already.
    pub fn complete(
        &mut self,
        request_id: u32,
        digest: &[u8; 32],
        reply: Bytes,
        expires_at: u64,
    ) -> bool {
        let Some(e) = self.entries.get_mut(&request_id) else {
            return false;
        };
        if !matches!(e.state, EntryState::InProgress) || e.digest != *digest {
            return false;
        }
        self.by_expiry.remove(&(e.expires_at, request_id));
        e.expires_at = expires_at;
        e.state = EntryState::Answered(reply);
        self.by_expiry.insert((expires_at, request_id));
        self.answered.insert((expires_at, request_id));
        true
    }

    /// Records a request together with its reply in one step (used for the auth Message,
    /// which is answered by the session itself). Nothing is kept when the memory is full.
    pub fn remember(
        &mut self,
        request_id: u32,
        digest: [u8; 32],
        reply: Bytes,
        expires_at: u64,
        now: u64,
    ) {
        if self.begin(request_id, digest, expires_at, now).is_ok() {
            self.complete(request_id, &digest, reply, expires_at);
        }
    }

    /// Forgets one request.
    pub fn remove(&mut self, request_id: u32) -> bool {
        match self.entries.remove(&request_id) {
            Some(e) => {
                self.by_expiry.remove(&(e.expires_at, request_id));
                self.answered.remove(&(e.expires_at, request_id));
                true
            }
            None => false,
        }
    }

    /// Drops every entry whose deadline has passed; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(&(at, id)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            self.answered.remove(&(at, id));
            self.entries.remove(&id);
            n += 1;
        }
        n
    }

    /// The earliest instant at which an entry expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn new_then_in_progress_then_answered() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.check(1, &A, 0), Lookup::New);
        assert_eq!(c.begin(1, A, 100, 0), Ok(vec![]));
        assert_eq!(c.check(1, &A, 10), Lookup::InProgress);
        assert!(c.complete(1, &A, Bytes::from_static(b"reply"), 200));
        assert_eq!(
            c.check(1, &A, 150),
            Lookup::Answered(Bytes::from_static(b"reply"))
        );
        // Completing twice changes nothing.
        assert!(!c.complete(1, &A, Bytes::from_static(b"other"), 300));
        assert_eq!(
            c.check(1, &A, 150),
            Lookup::Answered(Bytes::from_static(b"reply"))
        );
    }

    #[test]
    fn different_content_with_same_id() {
        let mut c = ReplayCache::new(10);
        c.begin(1, A, 100, 0).unwrap();
        assert_eq!(c.check(1, &B, 1), Lookup::Conflict);
        // An answer names its request: B's answer is not stored under A.
        assert!(!c.complete(1, &B, Bytes::from_static(b"not A's"), 100));
        assert_eq!(c.check(1, &A, 1), Lookup::InProgress);
        assert!(c.complete(1, &A, Bytes::from_static(b"r"), 100));
        // Answered: a new request may reuse the id and is not given the old reply.
        assert_eq!(c.check(1, &B, 2), Lookup::New);
        c.begin(1, B, 100, 2).unwrap();
        assert_eq!(c.check(1, &B, 3), Lookup::InProgress);
        // A late answer to A does not land on B, which reused the id.
        assert!(!c.complete(1, &A, Bytes::from_static(b"late"), 100));
        assert_eq!(c.check(1, &B, 3), Lookup::InProgress);
        assert_eq!(c.check(1, &A, 3), Lookup::Conflict);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let mut c = ReplayCache::new(10);
        c.begin(1, A, 100, 0).unwrap();
        c.begin(2, B, 50, 0).unwrap();
        assert_eq!(c.next_expiry(), Some(50));
        assert_eq!(c.check(2, &B, 49), Lookup::InProgress);
        assert_eq!(c.check(2, &B, 50), Lookup::New);
        assert_eq!(c.expire(50), 1);
        assert_eq!(c.len(), 1);
        c.complete(1, &A, Bytes::from_static(b"r"), 80);
        assert_eq!(c.next_expiry(), Some(80));
        assert_eq!(c.check(1, &A, 80), Lookup::New);
        assert_eq!(c.expire(1000), 1);
        assert!(c.is_empty());
        assert_eq!(c.next_expiry(), None);
    }

    #[test]
    fn bounded_memory_evicts_answered_entries_only_and_is_full_when_all_are_in_progress() {
        let mut c = ReplayCache::new(2);
        c.begin(1, A, 300, 0).unwrap();
        c.begin(2, A, 100, 0).unwrap();
        // Both in progress: a third cannot be remembered, and nothing is forgotten.
        assert_eq!(c.begin(3, A, 200, 0), Err(MemoryFull));
        assert_eq!(c.len(), 2);
        assert_eq!(c.in_progress(), 2);
        assert_eq!(c.check(2, &A, 1), Lookup::InProgress);
        assert_eq!(c.check(3, &A, 1), Lookup::New);
        // Once one is answered it may make room, the earliest answered first.
        assert!(c.complete(1, &A, Bytes::from_static(b"one"), 300));
        assert_eq!(c.begin(3, B, 200, 0), Ok(vec![1]));
        assert_eq!(c.check(1, &A, 1), Lookup::New);
        assert_eq!(
            c.check(2, &A, 1),
            Lookup::InProgress,
            "never evicted in progress"
        );
        assert_eq!(c.begin(4, A, 400, 0), Err(MemoryFull));
        // An evicted request cannot be completed; its reply is simply not remembered.
        assert!(!c.complete(1, &A, Bytes::new(), 500));
        assert!(c.complete(2, &A, Bytes::from_static(b"two"), 150));
        assert!(c.complete(3, &B, Bytes::from_static(b"three"), 120));
        assert_eq!(c.begin(4, A, 400, 0), Ok(vec![3]));
        assert_eq!(c.in_progress(), 1);
    }

    #[test]
    fn begin_expires_first_and_replaces_same_id() {
        let mut c = ReplayCache::new(2);
        c.begin(1, A, 10, 0).unwrap();
        c.begin(2, A, 100, 0).unwrap();
        // Entry 1 is already expired at t=20, so there is room without evicting.
        assert_eq!(c.begin(3, A, 100, 20), Ok(vec![]));
        assert_eq!(c.len(), 2);
        // Re-beginning an id replaces it rather than evicting another.
        assert_eq!(c.begin(3, B, 200, 20), Ok(vec![]));
        assert_eq!(c.check(3, &B, 21), Lookup::InProgress);
        assert!(c.remove(3));
        assert!(!c.remove(3));
    }

    #[test]
    fn zero_capacity_and_past_deadlines_store_nothing() {
        let mut c = ReplayCache::new(0);
        assert_eq!(c.begin(1, A, 100, 0), Ok(vec![]));
        assert!(c.is_empty());
        let mut c = ReplayCache::new(5);
        assert_eq!(c.begin(1, A, 10, 10), Ok(vec![]));
        assert!(c.is_empty());
        c.remember(2, A, Bytes::from_static(b"ok"), 50, 0);
        assert_eq!(
            c.check(2, &A, 0),
            Lookup::Answered(Bytes::from_static(b"ok"))
        );
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            hex::encode(digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
