//! One payment per Prepare: the node's memory of the Prepares it is answering and of the ones it
//! was paid for, so that copies of a Prepare from the same account before their expiry are one
//! payment, booked once and answered with the first outcome, whether the copy arrives while the
//! first is in flight, after it was fulfilled, or after a restart.
//!
//! A copy is a Prepare with the same amount, condition, destination and data
//! ([`ilp::policy::outgoing::payment_digest`]); its expiry may differ. A connector upstream
//! that crashed before booking a packet it had forwarded forwards the sender's repeat with a new
//! expiry when the sender's is further out than its hold time, and that repeat must still be
//! the same payment here. (Reusing a condition for a second payment is unsafe in ILP anyway:
//! whoever saw the first fulfillment can claim the second.)
//!
//! - **In flight**: a copy that arrives while the first is being answered waits for the first's
//!   outcome (its Fulfill once that is durable, or its Reject) and books nothing itself.
//! - **Paid**: once a Prepare's Fulfill is durable, a copy that has not expired is answered with
//!   that Fulfill until the end of the second the first copy expires in. After a restart the same
//!   memory is loaded from the fulfill records ([`crate::replay`]) the BalanceKeeper commits with
//!   the balances.
//! - **Rejected**: a Reject books nothing on either side, so it is not remembered: a copy sent
//!   after the first was rejected is a new attempt (senders repeat identical bytes after a
//!   temporary error, and an over-the-wire repeat cannot be told from such a retry).
//!
//! Zero-amount Prepares move no money and are not tracked.
//!
//! Each account has two sides: the Prepares it sends us (incoming), and the ones we send it
//! (outgoing). The outgoing side keeps no Fulfills: it joins copies in flight to one next hop,
//! whichever account sent them to us, so the next hop sees one packet and only the first copy
//! books the outgoing side; a copy of one it paid is refused.
//!
//! Layout: one table for the whole node, keyed by the digest, split into [`SHARDS`] shards each
//! behind its own lock. An entry holds both sides of one digest: the account it came from and
//! its state, the account it went to and its state. A forwarded packet thus finds its incoming
//! and its outgoing state in one place (one random memory access where two tables per account
//! took four). The rare second holder of a digest on one side (the same Prepare from two
//! accounts, or to two next hops) is kept in its shard's small overflow map.
//!
//! Memory: a paid Prepare costs one entry (16 bytes of key, 40 of state) and, on the incoming
//! side, the Fulfill's bytes in its shard's arena for the second it expires in. Lookups sweep
//! their shard: the arena of a second that has passed is dropped (its buffer kept for a later
//! second), and once every [`SCAN_EVERY_MS`] the shard is scanned for lapsed entries, in memory
//! order, so that no single map grows (and rehashes, or is scanned) to the node's whole traffic.

use crate::messages::{AccountId, PacketResult};
use bytes::Bytes;
use ilp::packet::{Fulfill, Timestamp};
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Shards of the node's table: each rehashes, is scanned and is locked on its own.
const SHARDS: usize = 64;
/// A shard is scanned for lapsed entries this often. Entries live for their Prepare's expiry
/// (30 s at most through our own nodes), so a scan drops about a ninth of a full table: a
/// lapsed entry stays 2 s longer on average (about 6 % more memory) and the scans cost a
/// quarter of what one a second did (measured: 2 % of the node's CPU at K = 100).
const SCAN_EVERY_MS: u64 = 4000;
/// Arenas of passed seconds kept for reuse (already grown to a second's traffic).
const SPARE_ARENAS: usize = 2;

/// The first 16 bytes of a payment digest, as two words: collisions need 2^64 work. The digest
/// is a SHA-256, so its first word is already a good hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key(u64, u64);

impl Key {
    fn of(digest: &[u8; 32]) -> Key {
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&digest[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Key(word(0), word(8))
    }

    fn shard(self) -> usize {
        (self.1 % SHARDS as u64) as usize
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// Passes a [`Key`]'s first word through: it is uniformly distributed already.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;
type Waiters = Vec<oneshot::Sender<PacketResult>>;

/// A node-wide number for an account, smaller to keep than its id.
type Holder = u32;

/// Which side of an account: Prepares from it, or Prepares to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Incoming,
    Outgoing,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Incoming => 0,
            Side::Outgoing => 1,
        }
    }

    /// Whether a paid Prepare keeps its Fulfill (to answer copies with) or only its key.
    fn keeps_fulfills(self) -> bool {
        self == Side::Incoming
    }
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The first copy is being answered; `joined` when copies wait in [`Shard::waiters`].
    InFlight { joined: bool },
    /// Paid; remembered through the end of `second` (unix seconds), with its Fulfill (on the
    /// incoming side) at `offset..offset + len` in that second's arena. A slot whose second
    /// has passed is lapsed: never read again, dropped by the next scan of its shard.
    Paid { second: u32, offset: u32, len: u32 },
}

impl Slot {
    fn lapsed(&self, now_s: u32) -> bool {
        matches!(self, Slot::Paid { second, .. } if *second < now_s)
    }
}

/// Both sides of one digest: who holds each, and in what state (`None`: free).
#[derive(Clone, Copy, Debug)]
struct Entry {
    holders: [Holder; 2],
    slots: [Option<Slot>; 2],
}

/// A digest's place on one side of one account, for the overflow and the waiting copies.
type Spot = (Key, Holder, Side);

/// A unix second as stored in a slot (u32 lasts until 2106).
fn second_of(at: Timestamp) -> u32 {
    u32::try_from(at.unix_millis() / 1000).unwrap_or(u32::MAX)
}

/// Where a first copy's slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Main,
    Overflow,
}

/// What [`Shard::begin`] found.
enum Found {
    Paid(Option<Fulfill>),
    Joined(oneshot::Receiver<PacketResult>),
    First(Place),
}

/// What a slot told a copy that came to it.
enum Visit {
    Paid { second: u32, offset: u32, len: u32 },
    Joined,
    First,
}

/// One shard of the node's table.
#[derive(Default)]
struct Shard {
    main: KeyMap<Entry>,
    /// Second holders of a digest on a side whose entry in `main` is held by another account.
    overflow: HashMap<Spot, Slot>,
    waiters: HashMap<Spot, Waiters>,
    /// The Fulfills of paid Prepares, by the second their first copy expires in.
    arenas: BTreeMap<u32, Vec<u8>>,
    spare: Vec<Vec<u8>>,
    next_scan_ms: u64,
    /// The latest second a lookup saw.
    now_s: u32,
    in_flight: usize,
    paid: usize,
}

impl Shard {
    /// Drops what lapsed by `now`: the arenas of passed seconds at once, and the lapsed slots
    /// when a scan is due (or `all`).
    fn sweep(&mut self, now: Timestamp, all: bool) {
        let now_ms = now.unix_millis();
        let now_s = second_of(now);
        if !all && now_s <= self.now_s && now_ms < self.next_scan_ms {
            // Within the second of the last lookup: no arena has passed, no scan is due.
            return;
        }
        self.now_s = self.now_s.max(now_s);
        while let Some(entry) = self.arenas.first_entry() {
            if *entry.key() >= now_s {
                break;
            }
            let mut arena = entry.remove();
            if self.spare.len() < SPARE_ARENAS {
                arena.clear();
                self.spare.push(arena);
            }
        }
        if !all && now_ms < self.next_scan_ms {
            return;
        }
        self.next_scan_ms = now_ms + SCAN_EVERY_MS;
        let mut dropped = 0;
        self.main.retain(|_, entry| {
            for slot in &mut entry.slots {
                if slot.is_some_and(|s| s.lapsed(now_s)) {
                    *slot = None;
                    dropped += 1;
                }
            }
            entry.slots.iter().any(Option::is_some)
        });
        self.overflow.retain(|_, slot| {
            let lapsed = slot.lapsed(now_s);
            dropped += usize::from(lapsed);
            !lapsed
        });
        self.paid -= dropped;
    }

    /// A copy comes to `slot` (`None`: free): the first of a new payment takes it.
    fn visit(
        slot: &mut Option<Slot>,
        now_s: u32,
        in_flight: &mut usize,
        paid: &mut usize,
    ) -> Visit {
        match slot {
            Some(Slot::Paid {
                second,
                offset,
                len,
            }) if *second >= now_s => Visit::Paid {
                second: *second,
                offset: *offset,
                len: *len,
            },
            Some(Slot::InFlight { joined }) => {
                *joined = true;
                Visit::Joined
            }
            _ => {
                // Free, or lapsed and not swept yet: a new payment.
                if slot.is_some() {
                    *paid -= 1;
                }
                *slot = Some(Slot::InFlight { joined: false });
                *in_flight += 1;
                Visit::First
            }
        }
    }

    fn begin(&mut self, holder: Holder, side: Side, key: Key, now: Timestamp) -> Found {
        self.sweep(now, false);
        let now_s = second_of(now);
        let i = side.index();
        let spot = (key, holder, side);
        let in_overflow = !self.overflow.is_empty() && self.overflow.contains_key(&spot);
        let (visit, place) = match self.main.entry(key) {
            MapEntry::Vacant(vacant) if !in_overflow => {
                let mut entry = Entry {
                    holders: [Holder::MAX; 2],
                    slots: [None; 2],
                };
                entry.holders[i] = holder;
                entry.slots[i] = Some(Slot::InFlight { joined: false });
                vacant.insert(entry);
                self.in_flight += 1;
                (Visit::First, Place::Main)
            }
            MapEntry::Occupied(mut occupied)
                if !in_overflow
                    && (occupied.get().holders[i] == holder
                        || occupied.get().slots[i].is_none_or(|s| s.lapsed(now_s))) =>
            {
                let entry = occupied.get_mut();
                if entry.holders[i] != holder {
                    if entry.slots[i].take().is_some() {
                        self.paid -= 1;
                    }
                    entry.holders[i] = holder;
                }
                let visit = Self::visit(
                    &mut entry.slots[i],
                    now_s,
                    &mut self.in_flight,
                    &mut self.paid,
                );
                (visit, Place::Main)
            }
            _ => {
                // Held by another account on this side, or already in the overflow.
                let mut slot = self.overflow.get(&spot).copied();
                let visit = Self::visit(&mut slot, now_s, &mut self.in_flight, &mut self.paid);
                if let Some(slot) = slot {
                    self.overflow.insert(spot, slot);
                }
                (visit, Place::Overflow)
            }
        };
        match visit {
            Visit::First => Found::First(place),
            Visit::Paid { len: 0, .. } => Found::Paid(None),
            // Read back from the arena; a Fulfill that no longer parses (it cannot: it was
            // stored whole) is treated as not remembered.
            Visit::Paid {
                second,
                offset,
                len,
            } => Found::Paid(self.fulfill_at(second, offset, len)),
            Visit::Joined => {
                let (tx, rx) = oneshot::channel();
                self.waiters.entry(spot).or_default().push(tx);
                Found::Joined(rx)
            }
        }
    }

    fn fulfill_at(&self, second: u32, offset: u32, len: u32) -> Option<Fulfill> {
        let start = offset as usize;
        let arena = self.arenas.get(&second)?;
        let bytes = arena.get(start..start + len as usize)?;
        Fulfill::parse(Bytes::copy_from_slice(bytes)).ok()
    }

    /// The slot of a Prepare paid with `fulfill` whose first copy expires in `second`, its
    /// Fulfill stored on the incoming side; `None` when it is not to be remembered.
    fn paid_slot(&mut self, side: Side, second: u32, fulfill: &Fulfill) -> Option<Slot> {
        if second < self.now_s {
            // Expired while it was answered: no copy can come that is not expired itself.
            return None;
        }
        if !side.keeps_fulfills() {
            return Some(Slot::Paid {
                second,
                offset: 0,
                len: 0,
            });
        }
        let bytes = fulfill.as_bytes();
        let spare = &mut self.spare;
        let arena = self
            .arenas
            .entry(second)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        // Four gigabytes of Fulfills expiring in one second: not remembered.
        let offset = u32::try_from(arena.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        arena.extend_from_slice(bytes);
        Some(Slot::Paid {
            second,
            offset,
            len,
        })
    }

    /// The slot of `holder`'s first copy under `key`, where [`Shard::begin`] put it.
    fn slot_mut(
        &mut self,
        place: Place,
        holder: Holder,
        side: Side,
        key: Key,
    ) -> Option<&mut Slot> {
        match place {
            Place::Main => {
                let entry = self.main.get_mut(&key)?;
                let i = side.index();
                if entry.holders[i] != holder {
                    return None;
                }
                entry.slots[i].as_mut()
            }
            Place::Overflow => self.overflow.get_mut(&(key, holder, side)),
        }
    }

    /// Ends the first copy under `key`: a Fulfill becomes paid until `expires_at`'s second, a
    /// Reject (or `None`: abandoned) frees the slot. Returns the copies that waited.
    fn finish(
        &mut self,
        (place, holder, side, key): (Place, Holder, Side, Key),
        expires_at: Timestamp,
        fulfill: Option<&Fulfill>,
    ) -> Waiters {
        let Some(Slot::InFlight { joined }) = self.slot_mut(place, holder, side, key).copied()
        else {
            // Not ours (cannot happen: only the first copy finishes its own slot).
            return Vec::new();
        };
        self.in_flight -= 1;
        let paid = fulfill.and_then(|f| self.paid_slot(side, second_of(expires_at), f));
        self.paid += usize::from(paid.is_some());
        self.set(place, side, key, holder, paid);
        if joined {
            self.waiters
                .remove(&(key, holder, side))
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// Puts `slot` where `holder`'s slot under `key` is, dropping what is left empty.
    fn set(&mut self, place: Place, side: Side, key: Key, holder: Holder, slot: Option<Slot>) {
        match place {
            Place::Main => {
                if let MapEntry::Occupied(mut entry) = self.main.entry(key) {
                    let i = side.index();
                    entry.get_mut().holders[i] = holder;
                    entry.get_mut().slots[i] = slot;
                    if entry.get().slots.iter().all(Option::is_none) {
                        entry.remove();
                    }
                }
            }
            Place::Overflow => match slot {
                Some(slot) => {
                    self.overflow.insert((key, holder, side), slot);
                }
                None => {
                    self.overflow.remove(&(key, holder, side));
                }
            },
        }
    }

    /// Remembers a Prepare from `holder` paid before a restart, unless a live slot has it.
    fn remember(
        &mut self,
        holder: Holder,
        key: Key,
        expires_at: Timestamp,
        now: Timestamp,
        fulfill: &Fulfill,
    ) {
        self.sweep(now, false);
        if second_of(expires_at) < second_of(now) {
            return;
        }
        match self.begin(holder, Side::Incoming, key, now) {
            Found::First(place) => {
                drop(self.finish(
                    (place, holder, Side::Incoming, key),
                    expires_at,
                    Some(fulfill),
                ));
            }
            // Already remembered, or in flight (it cannot be at start-up; the waiter made for
            // it is dropped here and its send will find no one).
            Found::Paid(_) | Found::Joined(_) => {}
        }
    }

    /// Heap bytes held by the table (entries and arenas), approximately.
    fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(Key, Entry)>() + 1;
        let overflow = std::mem::size_of::<(Spot, Slot)>() + 1;
        let arenas: usize = (self.arenas.values().chain(&self.spare))
            .map(Vec::capacity)
            .sum();
        self.main.capacity() * entry + self.overflow.capacity() * overflow + arenas
    }
}

/// The node's table.
type Shards = Arc<[Mutex<Shard>]>;

fn new_shards() -> Shards {
    (0..SHARDS).map(|_| Mutex::default()).collect()
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Nothing panics while holding the lock; a poisoned shard is still consistent.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// One account's handle on the node's memory, held by the Router with the account so that a
/// packet costs no lookup by account id.
#[derive(Clone)]
pub struct AccountPayments {
    shards: Shards,
    holder: Holder,
}

impl Default for AccountPayments {
    /// A memory of its own, for an account not attached to a node's yet.
    fn default() -> Self {
        AccountPayments {
            shards: new_shards(),
            holder: 0,
        }
    }
}

/// What a Prepare is to the node: see [`AccountPayments::begin`].
pub enum Seen {
    /// Paid before its expiry: answer with this Fulfill and book nothing.
    Paid(Fulfill),
    /// Paid before its expiry, on a side that keeps no Fulfills (the outgoing side).
    Sent,
    /// An identical Prepare is in flight: answer with its outcome and book nothing.
    Joined(Joined),
    /// The first of its kind: answer it, then [`First::finish`] with the outcome.
    First(First),
}

/// A copy waiting for the first's outcome.
pub struct Joined(oneshot::Receiver<PacketResult>);

impl Joined {
    /// The first copy's outcome; `None` when the first was abandoned without one (its task was
    /// dropped), which the caller answers as an internal error.
    pub async fn outcome(self) -> Option<PacketResult> {
        self.0.await.ok()
    }
}

/// The first copy's place in the table: its outcome goes to the copies that joined it, and a
/// Fulfill is remembered. Dropped unfinished, it leaves the table and the copies are told it was
/// abandoned.
pub struct First {
    shards: Shards,
    at: Option<(Place, Holder, Side, Key)>,
    expires_at: Timestamp,
}

impl First {
    /// Ends the first copy with `outcome`. A Fulfill must already be durable: from now on
    /// copies are answered with it without booking anything.
    pub fn finish(mut self, outcome: &PacketResult) {
        let Some(at) = self.at.take() else {
            return;
        };
        let waiters =
            lock(&self.shards[at.3.shard()]).finish(at, self.expires_at, outcome.as_ref().ok());
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
}

impl Drop for First {
    fn drop(&mut self) {
        if let Some(at) = self.at.take() {
            // The waiters' senders drop: they learn the first was abandoned.
            drop(lock(&self.shards[at.3.shard()]).finish(at, self.expires_at, None));
        }
    }
}

impl AccountPayments {
    /// Looks the Prepare with payment digest `digest` (from this account on the incoming side,
    /// to it on the outgoing side), expiring at `expires_at`, up and, when it is new, takes its
    /// place as the first copy. The caller tracks only Prepares that have not expired.
    pub fn begin(
        &self,
        side: Side,
        digest: &[u8; 32],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Seen {
        let key = Key::of(digest);
        let found = lock(&self.shards[key.shard()]).begin(self.holder, side, key, now);
        match found {
            Found::Paid(Some(fulfill)) => Seen::Paid(fulfill),
            Found::Paid(None) => Seen::Sent,
            Found::Joined(rx) => Seen::Joined(Joined(rx)),
            Found::First(place) => Seen::First(First {
                shards: self.shards.clone(),
                at: Some((place, self.holder, side, key)),
                expires_at,
            }),
        }
    }
}

/// The node's memory: the Router's accounts hold their own handles ([`Payments::account`]); the
/// fulfill records are loaded and the metrics read through this.
#[derive(Clone)]
pub struct Payments {
    shards: Shards,
    holders: Arc<Mutex<HashMap<AccountId, Holder>>>,
}

impl Default for Payments {
    fn default() -> Self {
        Payments {
            shards: new_shards(),
            holders: Arc::default(),
        }
    }
}

/// How much the paid memory holds, for the metrics and the README's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaymentsStats {
    pub in_flight: usize,
    pub paid: usize,
    /// Approximate heap bytes of the paid memory.
    pub paid_bytes: usize,
}

impl Payments {
    pub fn new() -> Self {
        Payments::default()
    }

    /// The memory of `account`: its number is drawn on first use and kept for the node's life.
    pub fn account(&self, account: &AccountId) -> AccountPayments {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let next = Holder::try_from(holders.len()).unwrap_or(Holder::MAX - 1);
        let holder = *holders.entry(account.clone()).or_insert(next);
        AccountPayments {
            shards: self.shards.clone(),
            holder,
        }
    }

    /// Remembers a Prepare from `account` paid before (a fulfill record read at start-up).
    pub fn remember_paid(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
        expires_at: Timestamp,
        now: Timestamp,
        fulfill: &Fulfill,
    ) {
        let holder = self.account(account).holder;
        let key = Key::of(digest);
        lock(&self.shards[key.shard()]).remember(holder, key, expires_at, now, fulfill);
    }

    /// Sizes as of `now`: what has lapsed is dropped first.
    pub fn stats(&self, now: Timestamp) -> PaymentsStats {
        let mut stats = PaymentsStats::default();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.sweep(now, true);
            stats.in_flight += shard.in_flight;
            stats.paid += shard.paid;
            stats.paid_bytes += shard.heap_bytes();
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::tests::fulfill;
    use ilp::packet::{ErrorCode, Reject};

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn first(seen: Seen) -> First {
        match seen {
            Seen::First(first) => first,
            Seen::Paid(_) | Seen::Sent => panic!("paid, expected new"),
            Seen::Joined(_) => panic!("joined, expected new"),
        }
    }

    fn joined(seen: Seen) -> Joined {
        match seen {
            Seen::Joined(joined) => joined,
            Seen::Paid(_) | Seen::Sent => panic!("paid, expected joined"),
            Seen::First(_) => panic!("new, expected joined"),
        }
    }

    fn paid(seen: Seen) -> Option<Fulfill> {
        match seen {
            Seen::Paid(fulfill) => Some(fulfill),
            _ => None,
        }
    }

    /// `account`'s incoming table: the Prepare with digest `[n; 32]` expiring at `expiry_ms`,
    /// seen at `now_ms`.
    fn incoming(account: &AccountPayments, n: u8, expiry_ms: u64, now_ms: u64) -> Seen {
        account.begin(Side::Incoming, &[n; 32], at(expiry_ms), at(now_ms))
    }

    #[tokio::test]
    async fn copies_in_flight_take_the_first_outcome_and_a_fulfill_is_remembered() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        let bob = payments.account(&AccountId::from("bob"));
        let one = first(incoming(&alice, 1, 10_500, 1_000));
        let copy = joined(incoming(&alice, 1, 10_500, 1_001));
        // Another account's copy, and another payment, are other payments.
        let other = first(incoming(&bob, 1, 10_500, 1_001));
        let different = first(incoming(&alice, 2, 10_500, 1_001));
        // The same digest on the outgoing side (to alice) is another side.
        let sent = first(alice.begin(Side::Outgoing, &[1; 32], at(10_500), at(1_001)));
        assert_eq!(payments.stats(at(1_001)).in_flight, 4);
        one.finish(&Ok(fulfill(1)));
        assert_eq!(copy.outcome().await, Some(Ok(fulfill(1))));
        assert_eq!(
            paid(incoming(&alice, 1, 10_500, 10_999)),
            Some(fulfill(1)),
            "answered through the end of the second the first copy expires in"
        );
        assert!(matches!(
            incoming(&alice, 1, 10_500, 11_000),
            Seen::First(_)
        ));
        drop((other, different, sent));
        let stats = payments.stats(at(11_000));
        assert_eq!((stats.in_flight, stats.paid), (0, 0));
    }

    #[tokio::test]
    async fn a_copy_with_another_expiry_is_the_same_payment() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        let one = first(incoming(&alice, 1, 30_000, 1_000));
        // A connector upstream re-sent it with a clock-based expiry.
        let copy = joined(incoming(&alice, 1, 31_250, 1_250));
        one.finish(&Ok(fulfill(1)));
        assert_eq!(copy.outcome().await, Some(Ok(fulfill(1))));
        assert_eq!(paid(incoming(&alice, 1, 45_000, 15_000)), Some(fulfill(1)));
        assert_eq!(paid(incoming(&alice, 1, 20_000, 15_000)), Some(fulfill(1)));
        // Remembered as long as the first copy lives, whatever the copy's expiry.
        assert!(matches!(
            incoming(&alice, 1, 60_000, 31_000),
            Seen::First(_)
        ));
    }

    #[tokio::test]
    async fn a_reject_goes_to_the_copies_and_is_not_remembered() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        let one = first(incoming(&alice, 1, 10_000, 1_000));
        let copy = joined(incoming(&alice, 1, 10_000, 1_000));
        let reject = Reject::new(ErrorCode::T04_INSUFFICIENT_LIQUIDITY, None, "full");
        one.finish(&Err(reject.clone()));
        assert_eq!(copy.outcome().await, Some(Err(reject)));
        // A copy after a Reject is a new attempt.
        drop(first(incoming(&alice, 1, 10_000, 1_000)));
        assert_eq!(payments.stats(at(1_000)).in_flight, 0);
        assert_eq!(payments.stats(at(1_000)).paid, 0);
    }

    #[tokio::test]
    async fn an_abandoned_first_tells_its_copies_and_leaves_the_table() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        let one = first(incoming(&alice, 1, 10_000, 1_000));
        let copy = joined(incoming(&alice, 1, 10_000, 1_000));
        drop(one);
        assert_eq!(copy.outcome().await, None);
        drop(first(incoming(&alice, 1, 10_000, 1_000)));
    }

    /// The paid entries and the seconds with arenas, over all shards.
    fn state(payments: &Payments) -> (usize, Vec<u32>) {
        let mut paid = 0;
        let mut seconds = Vec::new();
        for shard in payments.shards.iter() {
            let shard = lock(shard);
            paid += shard.paid;
            seconds.extend(shard.arenas.keys());
        }
        seconds.sort_unstable();
        seconds.dedup();
        (paid, seconds)
    }

    /// A digest in shard `n % SHARDS`, distinct for every `n`.
    fn digest(n: u16) -> [u8; 32] {
        let mut digest = [0; 32];
        digest[..2].copy_from_slice(&n.to_le_bytes());
        digest[8..10].copy_from_slice(&n.to_le_bytes());
        digest
    }

    #[tokio::test]
    async fn lapsed_entries_are_swept_a_shard_at_a_time_and_arenas_at_once() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        // The first scan is due SCAN_EVERY_MS after the inserts at 1 s: the story below is
        // told from then on, `d` later than with scans once a second.
        let d = SCAN_EVERY_MS - 1_000;
        let first_second = u32::try_from(2 + d / 1_000).unwrap();
        // 100 payments in each of the seconds 2..=5 (plus d).
        for n in 0..400u16 {
            let expiry = at(2_000 + d + u64::from(n / 100) * 1_000 + u64::from(n % 100));
            first(alice.begin(Side::Incoming, &digest(n), expiry, at(1_000)))
                .finish(&Ok(fulfill(1)));
        }
        let seconds: Vec<u32> = (first_second..first_second + 4).collect();
        assert_eq!(state(&payments), (400, seconds));
        let shard_of = |n: u16| usize::from(n) % SHARDS;
        let in_shard = |shard: usize, seconds: std::ops::Range<u16>| {
            seconds
                .flat_map(|s| s * 100..s * 100 + 100)
                .filter(|&n| shard_of(n) == shard)
                .count()
        };
        // At 4.6 s the seconds 2 and 3 have passed: a lookup drops its shard's arenas of them
        // and scans its shard; the other shards wait for their own lookups.
        let probe = 456; // not one of the 400, in the shard of 200
        drop(first(alice.begin(
            Side::Incoming,
            &digest(probe),
            at(9_000 + d),
            at(4_600 + d),
        )));
        let lapsed = in_shard(shard_of(probe), 0..2);
        assert!(lapsed > 0);
        assert_eq!(state(&payments).0, 400 - lapsed);
        assert!(lock(&payments.shards[shard_of(probe)])
            .arenas
            .keys()
            .all(|&s| s >= first_second + 2));
        // At 5.5 s second 4 has passed too: its arena in the shard goes at once, but the shard
        // is not scanned again before SCAN_EVERY_MS.
        drop(first(alice.begin(
            Side::Incoming,
            &digest(probe),
            at(9_000 + d),
            at(5_500 + d),
        )));
        assert_eq!(state(&payments).0, 400 - lapsed);
        assert!(lock(&payments.shards[shard_of(probe)])
            .arenas
            .keys()
            .all(|&s| s >= first_second + 3));
        let next_scan = 4_600 + d + SCAN_EVERY_MS;
        drop(first(alice.begin(
            Side::Incoming,
            &digest(probe),
            at(next_scan + 1_000),
            at(next_scan),
        )));
        // The groups of seconds 2..=5 that have passed by then.
        let passed = u16::try_from(
            (next_scan / 1000)
                .saturating_sub(u64::from(first_second))
                .min(4),
        )
        .unwrap();
        let lapsed = in_shard(shard_of(probe), 0..passed);
        assert_eq!(
            state(&payments).0,
            400 - lapsed,
            "and stops at the seconds still live"
        );
        // Lapsed slots are never read, even before they are swept.
        assert_ne!(shard_of(150), shard_of(probe));
        assert!(matches!(
            alice.begin(Side::Incoming, &digest(150), at(9_000 + d), at(4_500 + d)),
            Seen::First(_)
        ));
        assert_eq!(
            paid(alice.begin(Side::Incoming, &digest(350), at(5_050 + d), at(5_050 + d))),
            Some(fulfill(1))
        );
        assert_eq!(
            payments.stats(at(6_000 + d)).paid,
            0,
            "stats sweep everything"
        );
        assert_eq!(state(&payments), (0, vec![]));
    }

    #[tokio::test]
    async fn a_lapsed_entry_is_a_new_payment_and_a_fulfill_after_expiry_is_not_kept() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        first(incoming(&alice, 1, 5_000, 1_000)).finish(&Ok(fulfill(1)));
        // Second 5 has passed, the slot is not swept yet when the same digest comes again.
        let again = first(incoming(&alice, 1, 9_000, 6_000));
        again.finish(&Ok(fulfill(7)));
        assert_eq!(payments.stats(at(6_000)).paid, 1);
        assert_eq!(paid(incoming(&alice, 1, 9_000, 8_000)), Some(fulfill(7)));
        // Fulfilled after the second its Prepare expired in has passed: not remembered.
        let late = first(incoming(&alice, 2, 7_500, 7_000));
        drop(first(incoming(&alice, 3, 9_000, 8_000)));
        late.finish(&Ok(fulfill(2)));
        assert_eq!(payments.stats(at(8_000)).paid, 1);
    }

    #[tokio::test]
    async fn records_loaded_keep_the_first_fulfill_and_the_outgoing_side_keeps_keys_only() {
        let payments = Payments::new();
        let id = AccountId::from("alice");
        let alice = payments.account(&id);
        first(incoming(&alice, 1, 6_500, 1_000)).finish(&Ok(fulfill(1)));
        payments.remember_paid(&id, &[1; 32], at(6_500), at(1_000), &fulfill(9));
        assert_eq!(paid(incoming(&alice, 1, 6_500, 1_000)), Some(fulfill(1)));
        // A record whose second has passed is not kept.
        payments.remember_paid(&id, &[2; 32], at(3_000), at(4_000), &fulfill(2));
        payments.remember_paid(&id, &[3; 32], at(4_000), at(4_000), &fulfill(3));
        assert_eq!(payments.stats(at(4_000)).paid, 2);
        assert_eq!(paid(incoming(&alice, 3, 4_000, 4_000)), Some(fulfill(3)));

        let sent = first(alice.begin(Side::Outgoing, &[4; 32], at(10_000), at(4_000)));
        sent.finish(&Ok(fulfill(4)));
        assert!(matches!(
            alice.begin(Side::Outgoing, &[4; 32], at(10_000), at(4_000)),
            Seen::Sent
        ));
        let stats = payments.stats(at(4_000));
        assert_eq!((stats.in_flight, stats.paid), (0, 3));
        let arenas: usize = (payments.shards.iter())
            .map(|shard| lock(shard).arenas.values().map(Vec::len).sum::<usize>())
            .sum();
        assert_eq!(
            arenas,
            2 * fulfill(1).as_bytes().len(),
            "the outgoing side keeps no Fulfill"
        );
    }

    #[tokio::test]
    async fn a_second_holder_of_a_digest_is_kept_apart_on_each_side() {
        let payments = Payments::new();
        let [alice, bob, carol] =
            ["alice", "bob", "carol"].map(|id| payments.account(&AccountId::from(id)));
        // alice and bob send the same Prepare; both go to carol.
        let from_alice = first(incoming(&alice, 1, 9_000, 1_000));
        let from_bob = first(incoming(&bob, 1, 9_000, 1_000));
        let to_carol = first(carol.begin(Side::Outgoing, &[1; 32], at(9_000), at(1_000)));
        let copy_to_carol = joined(carol.begin(Side::Outgoing, &[1; 32], at(9_000), at(1_000)));
        // A copy from bob joins bob's own first, not alice's.
        let bobs_copy = joined(incoming(&bob, 1, 9_000, 1_000));
        // The same digest to another next hop is another payment.
        drop(first(bob.begin(
            Side::Outgoing,
            &[1; 32],
            at(9_000),
            at(1_000),
        )));
        assert_eq!(payments.stats(at(1_000)).in_flight, 3);
        to_carol.finish(&Ok(fulfill(1)));
        assert_eq!(copy_to_carol.outcome().await, Some(Ok(fulfill(1))));
        from_bob.finish(&Ok(fulfill(1)));
        assert_eq!(bobs_copy.outcome().await, Some(Ok(fulfill(1))));
        // alice's is still in flight; bob's is paid; carol's side refuses a copy.
        assert!(matches!(incoming(&alice, 1, 9_000, 1_000), Seen::Joined(_)));
        assert_eq!(paid(incoming(&bob, 1, 9_000, 1_000)), Some(fulfill(1)));
        assert!(matches!(
            carol.begin(Side::Outgoing, &[1; 32], at(9_000), at(1_000)),
            Seen::Sent
        ));
        from_alice.finish(&Err(Reject::new(
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
            None,
            "x",
        )));
        // alice's side is free again (a new attempt); bob's paid one still answers from the
        // overflow, and when it lapses the digest is free for bob as well.
        drop(first(incoming(&alice, 1, 9_000, 1_000)));
        assert_eq!(paid(incoming(&bob, 1, 9_000, 2_000)), Some(fulfill(1)));
        let stats = payments.stats(at(1_000));
        assert_eq!((stats.in_flight, stats.paid), (0, 2));
        assert!(matches!(incoming(&bob, 1, 19_000, 10_000), Seen::First(_)));
    }

    /// Identical Prepares through a whole node (in-memory links, the real Router, BalanceKeeper
    /// and PeerAccounts): in flight together, after a Fulfill, after a restart.
    mod through_a_node {
        use crate::clock::Clock;
        use crate::link::memory::MemoryLink;
        use crate::link::Link;
        use crate::messages::{AccountId, GetBalance};
        use crate::node::{Node, NodeOptions};
        use crate::store::memory::MemoryStore;
        use crate::store::Store;
        use crate::test_support::{run, PreimagePayee};
        use actix::prelude::*;
        use ilp::config::Config;
        use ilp::packet::{Address, ErrorCode, Prepare, PrepareBuilder, Timestamp};
        use sha2::{Digest, Sha256};
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        const START_MS: u64 = 1_700_000_000_000;

        fn config() -> Config {
            Config::from_toml_str(
                r#"
                [node]
                ilp_address = "test.node"
                spread = "0"
                [broadcast]
                enabled = false
                [accounts.payer]
                relation = "child"
                link = { type = "memory" }
                balance = { maximum = 1000000 }
                [accounts.payer2]
                relation = "child"
                link = { type = "memory" }
                balance = { maximum = 1000000 }
                [accounts.payee]
                relation = "child"
                link = { type = "memory" }
                balance = { minimum = -1000000, maximum = 1000000 }
                "#,
            )
            .unwrap()
        }

        /// A node on `store`, with the far ends of its payers and its payee's delivery count.
        struct Started {
            node: Node,
            payer: MemoryLink,
            payer2: MemoryLink,
            payee: MemoryLink,
            delivered: Arc<AtomicUsize>,
        }

        fn start(store: &MemoryStore, clock: Clock) -> Started {
            let (payer_node, payer) = MemoryLink::pair();
            let (payer2_node, payer2) = MemoryLink::pair();
            let (payee_node, payee) = MemoryLink::pair();
            let delivered = Arc::new(AtomicUsize::new(0));
            payee.attach(
                PreimagePayee {
                    delivered: delivered.clone(),
                }
                .start()
                .recipient(),
            );
            let link = |l: MemoryLink| Arc::new(l) as Arc<dyn Link>;
            let links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::from([
                (AccountId::from("payer"), link(payer_node)),
                (AccountId::from("payer2"), link(payer2_node)),
                (AccountId::from("payee"), link(payee_node)),
            ]);
            let node = Node::start(
                &config(),
                NodeOptions {
                    clock,
                    store: Arc::new(store.clone()),
                    seed: 1,
                    links,
                    metrics: None,
                },
            )
            .unwrap();
            Started {
                node,
                payer,
                payer2,
                payee,
                delivered,
            }
        }

        fn payment(seed: u8, amount: u64, expires_at: Timestamp) -> Prepare {
            let preimage = [seed; 32];
            let condition: [u8; 32] = Sha256::digest(preimage).into();
            PrepareBuilder {
                amount,
                expires_at,
                execution_condition: &condition,
                destination: &Address::try_from("test.node.payee").unwrap(),
                data: &preimage,
            }
            .build()
            .unwrap()
        }

        async fn balance(node: &Node, account: &str) -> i64 {
            node.balance
                .send(GetBalance {
                    account: AccountId::from(account),
                })
                .await
                .unwrap()
                .unwrap()
                .balance
        }

        async fn balances(node: &Node) -> [i64; 3] {
            [
                balance(node, "payer").await,
                balance(node, "payer2").await,
                balance(node, "payee").await,
            ]
        }

        #[test]
        fn identical_prepares_in_flight_from_one_account_are_one_payment() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let n = start(&store, clock);
                n.payee.set_delay(Duration::from_millis(200));
                let p = payment(1, 100, Timestamp::from_unix_millis(START_MS + 30_000));
                let (a, b) = futures::join!(
                    n.payer.send_prepare(p.clone()),
                    n.payer.send_prepare(p.clone())
                );
                let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
                assert_eq!(a, b);
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
                assert_eq!(
                    store.load_balances().unwrap(),
                    BTreeMap::from([("payee".into(), -100), ("payer".into(), 100)])
                );
            });
        }

        #[test]
        fn identical_prepares_in_flight_from_two_accounts_book_the_next_hop_once() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let n = start(&store, clock);
                n.payee.set_delay(Duration::from_millis(200));
                let p = payment(1, 100, Timestamp::from_unix_millis(START_MS + 30_000));
                let (a, b) = futures::join!(
                    n.payer.send_prepare(p.clone()),
                    n.payer2.send_prepare(p.clone())
                );
                assert!(a.unwrap().is_ok() && b.unwrap().is_ok());
                // The payee saw one packet and was paid once; each payer saw its own Fulfill.
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balances(&n.node).await, [100, 100, -100]);
            });
        }

        #[test]
        fn a_repeat_of_a_paid_prepare_while_running_is_answered_not_paid_again() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let n = start(&store, clock);
                let expiry = Timestamp::from_unix_millis(START_MS + 30_000);
                let p = payment(1, 100, expiry);
                let fulfill = n.payer.send_prepare(p.clone()).await.unwrap().unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
                let again = n.payer.send_prepare(p.clone()).await.unwrap().unwrap();
                assert_eq!(again, fulfill);
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
                // The same bytes from the other account are refused: the payee was paid for
                // them once, and our books must say so.
                let other = n.payer2.send_prepare(p.clone()).await.unwrap().unwrap_err();
                assert_eq!(other.code(), ErrorCode::F00_BAD_REQUEST);
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
                // Past its expiry a repeat is refused like any expired packet, and books nothing.
                tokio::time::sleep(Duration::from_secs(30)).await;
                let late = n.payer.send_prepare(p).await.unwrap().unwrap_err();
                assert_eq!(late.code(), ErrorCode::R02_INSUFFICIENT_TIMEOUT);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
            });
        }

        /// An upstream connector that crashed before booking a packet it forwarded forwards
        /// the sender's repeat again; when the sender's expiry is further out than its hold
        /// time, the repeat carries another expiry. It is the same payment.
        #[test]
        fn a_repeat_with_another_expiry_is_answered_not_paid_again() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let n = start(&store, clock);
                let p = payment(1, 100, Timestamp::from_unix_millis(START_MS + 30_000));
                let fulfill = n.payer.send_prepare(p.clone()).await.unwrap().unwrap();
                tokio::time::sleep(Duration::from_secs(3)).await;
                let later = Timestamp::from_unix_millis(START_MS + 33_000);
                let repeat = p.with_amount_and_expiry(p.amount(), later);
                assert_ne!(repeat.as_bytes(), p.as_bytes());
                let again = n.payer.send_prepare(repeat.clone()).await.unwrap().unwrap();
                assert_eq!(again, fulfill);
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
                // And after a restart, from the record.
                drop(n);
                let n = start(&store, clock);
                let again = n.payer.send_prepare(repeat).await.unwrap().unwrap();
                assert_eq!(again, fulfill);
                assert_eq!(n.delivered.load(Ordering::SeqCst), 0);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
                // Another amount is another payment.
                let more = payment(1, 101, later);
                n.payer.send_prepare(more).await.unwrap().unwrap();
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
            });
        }

        #[test]
        fn a_repeat_after_a_reject_is_a_new_attempt() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let n = start(&store, clock);
                let p = payment(1, 100, Timestamp::from_unix_millis(START_MS + 30_000));
                n.payee.set_up(false);
                let down = n.payer.send_prepare(p.clone()).await.unwrap().unwrap_err();
                assert_eq!(down.code(), ErrorCode::T01_PEER_UNREACHABLE);
                n.payee.set_up(true);
                n.payer.send_prepare(p).await.unwrap().unwrap();
                assert_eq!(n.delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balances(&n.node).await, [100, 0, -100]);
            });
        }

        #[test]
        fn a_repeat_after_restart_is_answered_from_the_record() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let expiry = Timestamp::from_unix_millis(START_MS + 30_000);
                let paid = payment(1, 100, expiry);
                let Started {
                    node: first,
                    payer,
                    delivered,
                    ..
                } = start(&store, clock);
                let fulfill = payer.send_prepare(paid.clone()).await.unwrap().unwrap();
                assert_eq!(delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balance(&first, "payer").await, 100);
                assert_eq!(store.count_records(crate::replay::PREFIX), 1);

                // A new incarnation on the same store; the sender repeats the same bytes.
                let Started {
                    node: second,
                    payer,
                    delivered,
                    ..
                } = start(&store, clock);
                let again = payer.send_prepare(paid.clone()).await.unwrap().unwrap();
                assert_eq!(again, fulfill);
                assert_eq!(delivered.load(Ordering::SeqCst), 0, "not forwarded again");
                assert_eq!(balance(&second, "payer").await, 100);
                assert_eq!(balance(&second, "payee").await, -100);
                assert_eq!(
                    store.load_balances().unwrap(),
                    BTreeMap::from([("payee".into(), -100), ("payer".into(), 100)])
                );

                // Another packet (other bytes) is forwarded and paid as usual.
                payer
                    .send_prepare(payment(2, 5, expiry))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balance(&second, "payer").await, 105);
                assert_eq!(store.count_records(crate::replay::PREFIX), 2);

                // Past the expiry the records are collected and a repeat is not answered.
                tokio::time::sleep(std::time::Duration::from_secs(45)).await;
                assert_eq!(store.count_records(crate::replay::PREFIX), 0);
                let late = payer.send_prepare(paid).await.unwrap();
                assert_eq!(
                    late.unwrap_err().code(),
                    ErrorCode::R02_INSUFFICIENT_TIMEOUT
                );
                assert_eq!(balance(&second, "payer").await, 105);
            });
        }

        /// Packets resolved together share one record; after a restart each of them is still
        /// answered on its own, and a packet that was not paid is still forwarded.
        #[test]
        fn packets_committed_together_are_each_answered_after_restart() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let expiry = Timestamp::from_unix_millis(START_MS + 30_000);
                let paid: Vec<Prepare> = (1..=20).map(|n| payment(n, 10, expiry)).collect();
                let Started {
                    node: first,
                    payer,
                    delivered,
                    ..
                } = start(&store, clock);
                let fulfills =
                    futures::future::join_all(paid.iter().map(|p| payer.send_prepare(p.clone())))
                        .await;
                assert_eq!(delivered.load(Ordering::SeqCst), 20);
                assert_eq!(balance(&first, "payer").await, 200);
                let records = store.count_records(crate::replay::PREFIX);
                assert!(
                    (1..20).contains(&records),
                    "{records} records for 20 packets sent at once"
                );

                let Started {
                    node: second,
                    payer,
                    delivered,
                    ..
                } = start(&store, clock);
                let again =
                    futures::future::join_all(paid.iter().map(|p| payer.send_prepare(p.clone())))
                        .await;
                for (n, (first, again)) in fulfills.into_iter().zip(again).enumerate() {
                    assert_eq!(
                        first.unwrap().unwrap(),
                        again.unwrap().unwrap(),
                        "packet {n}"
                    );
                }
                assert_eq!(delivered.load(Ordering::SeqCst), 0, "none forwarded again");
                payer
                    .send_prepare(payment(21, 10, expiry))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balance(&second, "payer").await, 210);
            });
        }
    }
}
