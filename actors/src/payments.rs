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
//! Each account has two tables behind one lock ([`AccountPayments`]): the Prepares it sends us
//! (incoming), and the ones we send it (outgoing). The outgoing table keeps no Fulfills: it joins
//! copies in flight to one next hop, whichever account sent them to us, so the next hop sees one
//! packet and only the first copy books the outgoing side; a copy of one it paid is refused.
//!
//! Memory: a paid Prepare costs one slot in its account's table (16 bytes of key, 16 of state)
//! and, on the incoming side, the Fulfill's bytes in its expiry second's arena. The table is
//! split into shards, so that no single map grows (and rehashes) to the size of a whole
//! account's traffic. Lookups sweep: the arena of a second that has passed is dropped (its
//! buffer kept for a later second), and one shard is scanned for lapsed slots every
//! [`SCAN_EVERY_MS`], so every slot is looked at about once a second, in memory order.

use crate::messages::{AccountId, PacketResult};
use bytes::Bytes;
use ilp::packet::{Fulfill, Timestamp};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Shards per table: a full shard rehashes, and a scan walks, 1/32 of the table at a time.
const SHARDS: usize = 32;
/// One shard is scanned for lapsed slots this often: all of them in about a second.
const SCAN_EVERY_MS: u64 = 1000 / SHARDS as u64;
/// Arenas of passed seconds kept for reuse (already grown to a second's traffic).
const SPARE_ARENAS: usize = 4;

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

#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The first copy is being answered; `joined` when copies wait in [`Table::waiters`].
    InFlight { joined: bool },
    /// Paid; remembered through the end of `second` (unix seconds), with its Fulfill (when the
    /// table keeps them) at `offset..offset + len` in that second's arena. A slot whose second
    /// has passed is lapsed: never read again, dropped by the next scan of its shard.
    Paid { second: u32, offset: u32, len: u32 },
}

impl Slot {
    fn lapsed(&self, now_s: u32) -> bool {
        matches!(self, Slot::Paid { second, .. } if *second < now_s)
    }
}

/// One account's payments in one direction.
#[derive(Default)]
struct Table {
    /// Empty until the first payment: most accounts of a large node are idle.
    shards: Vec<KeyMap<Slot>>,
    waiters: KeyMap<Waiters>,
    /// The Fulfills of paid Prepares, by the second their first copy expires in.
    arenas: BTreeMap<u32, Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// The shard the next scan looks at, and when.
    scan_shard: usize,
    next_scan_ms: u64,
    /// The latest second a lookup saw.
    now_s: u32,
    /// Whether a paid entry keeps its Fulfill (to answer copies with) or only its key.
    keep_fulfills: bool,
    in_flight: usize,
    paid: usize,
}

/// A unix second as stored in a slot (u32 lasts until 2106).
fn second_of(at: Timestamp) -> u32 {
    u32::try_from(at.unix_millis() / 1000).unwrap_or(u32::MAX)
}

/// What [`Table::begin`] found.
enum Found {
    Paid(Option<Fulfill>),
    Joined(oneshot::Receiver<PacketResult>),
    First,
}

impl Table {
    fn with_fulfills(keep_fulfills: bool) -> Table {
        Table {
            keep_fulfills,
            ..Table::default()
        }
    }

    fn shard(&mut self, key: Key) -> &mut KeyMap<Slot> {
        if self.shards.is_empty() {
            self.shards.resize_with(SHARDS, KeyMap::default);
        }
        &mut self.shards[key.shard()]
    }

    /// Drops what lapsed by `now`: the arenas of passed seconds at once, and the lapsed slots
    /// of the shards due for a scan (all of them when `all`).
    fn sweep(&mut self, now: Timestamp, all: bool) {
        let now_ms = now.unix_millis();
        let now_s = second_of(now);
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
        if self.shards.is_empty() || (!all && now_ms < self.next_scan_ms) {
            return;
        }
        let shards = if all { SHARDS } else { 1 };
        for _ in 0..shards {
            let mut dropped = 0;
            self.shards[self.scan_shard].retain(|_, slot| {
                let lapsed = slot.lapsed(now_s);
                dropped += usize::from(lapsed);
                !lapsed
            });
            self.paid -= dropped;
            self.scan_shard = (self.scan_shard + 1) % SHARDS;
        }
        self.next_scan_ms = now_ms + SCAN_EVERY_MS;
    }

    fn fulfill_at(&self, second: u32, offset: u32, len: u32) -> Option<Fulfill> {
        let start = offset as usize;
        let arena = self.arenas.get(&second)?;
        let bytes = arena.get(start..start + len as usize)?;
        Fulfill::parse(Bytes::copy_from_slice(bytes)).ok()
    }

    fn begin(&mut self, key: Key, now: Timestamp) -> Found {
        let now_s = second_of(now);
        self.sweep(now, false);
        let slot = match self.shard(key).entry(key) {
            Entry::Vacant(vacant) => {
                vacant.insert(Slot::InFlight { joined: false });
                self.in_flight += 1;
                return Found::First;
            }
            Entry::Occupied(slot) => slot.into_mut(),
        };
        match *slot {
            Slot::Paid {
                second,
                offset,
                len,
            } if second >= now_s => {
                if len == 0 {
                    return Found::Paid(None);
                }
                // Read back from the arena; a Fulfill that no longer parses (it cannot: it was
                // stored whole) is treated as not remembered.
                match self.fulfill_at(second, offset, len) {
                    Some(fulfill) => Found::Paid(Some(fulfill)),
                    None => Found::Paid(None),
                }
            }
            Slot::Paid { .. } => {
                // Lapsed, not swept yet: a new payment.
                *slot = Slot::InFlight { joined: false };
                self.paid -= 1;
                self.in_flight += 1;
                Found::First
            }
            Slot::InFlight { ref mut joined } => {
                *joined = true;
                let (tx, rx) = oneshot::channel();
                self.waiters.entry(key).or_default().push(tx);
                Found::Joined(rx)
            }
        }
    }

    /// Ends the first copy under `key`: a Fulfill becomes paid until `expires_at`'s second, a
    /// Reject (or `None`: abandoned) frees the slot. Returns the copies that waited.
    fn finish(&mut self, key: Key, expires_at: Timestamp, fulfill: Option<&Fulfill>) -> Waiters {
        let Some(shard) = self.shards.get_mut(key.shard()) else {
            return Vec::new();
        };
        let Entry::Occupied(mut slot) = shard.entry(key) else {
            // Not ours (cannot happen: only the first copy finishes its own slot).
            return Vec::new();
        };
        let Slot::InFlight { joined } = *slot.get() else {
            return Vec::new();
        };
        self.in_flight -= 1;
        let paid = fulfill.and_then(|fulfill| {
            let place = Place {
                arenas: &mut self.arenas,
                spare: &mut self.spare,
                keep_fulfills: self.keep_fulfills,
                now_s: self.now_s,
            };
            place.paid(second_of(expires_at), fulfill)
        });
        match paid {
            Some(paid) => {
                *slot.get_mut() = paid;
                self.paid += 1;
            }
            None => {
                slot.remove();
            }
        }
        if joined {
            self.waiters.remove(&key).unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// Remembers a Prepare paid before a restart, unless a live entry has its key already.
    fn remember(&mut self, key: Key, expires_at: Timestamp, now: Timestamp, fulfill: &Fulfill) {
        let (second, now_s) = (second_of(expires_at), second_of(now));
        if second < now_s {
            return;
        }
        match self.shard(key).get(&key).copied() {
            Some(Slot::Paid { second: s, .. }) if s >= now_s => return,
            Some(Slot::InFlight { .. }) => return,
            Some(Slot::Paid { .. }) => self.paid -= 1,
            None => {}
        }
        let place = Place {
            arenas: &mut self.arenas,
            spare: &mut self.spare,
            keep_fulfills: self.keep_fulfills,
            now_s: self.now_s,
        };
        match place.paid(second, fulfill) {
            Some(paid) => {
                self.shard(key).insert(key, paid);
                self.paid += 1;
            }
            None => {
                self.shard(key).remove(&key);
            }
        }
    }

    /// Heap bytes held by the paid memory (slots and arenas), approximately.
    fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Key, Slot)>() + 1;
        let shards: usize = self.shards.iter().map(|m| m.capacity() * slot).sum();
        let arenas: usize = (self.arenas.values().chain(&self.spare))
            .map(Vec::capacity)
            .sum();
        shards + arenas
    }
}

/// Where a table keeps a paid Prepare's Fulfill: its arenas, borrowed apart from its shards.
struct Place<'a> {
    arenas: &'a mut BTreeMap<u32, Vec<u8>>,
    spare: &'a mut Vec<Vec<u8>>,
    keep_fulfills: bool,
    now_s: u32,
}

impl Place<'_> {
    /// The slot of a Prepare paid with `fulfill` whose first copy expires in `second`, its
    /// Fulfill stored when the table keeps them; `None` when it is not to be remembered.
    fn paid(self, second: u32, fulfill: &Fulfill) -> Option<Slot> {
        if second < self.now_s {
            // Expired while it was answered: no copy can come that is not expired itself.
            return None;
        }
        if !self.keep_fulfills {
            return Some(Slot::Paid {
                second,
                offset: 0,
                len: 0,
            });
        }
        let bytes = fulfill.as_bytes();
        let spare = self.spare;
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
}

/// The two tables of one account.
struct Tables {
    incoming: Table,
    outgoing: Table,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            incoming: Table::with_fulfills(true),
            outgoing: Table::with_fulfills(false),
        }
    }
}

/// Which of an account's tables: Prepares from it, or Prepares to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Incoming,
    Outgoing,
}

impl Tables {
    fn side(&mut self, side: Side) -> &mut Table {
        match side {
            Side::Incoming => &mut self.incoming,
            Side::Outgoing => &mut self.outgoing,
        }
    }
}

/// One account's memory, held by the Router with the account so that a packet costs no lookup
/// by account id.
#[derive(Clone, Default)]
pub struct AccountPayments {
    tables: Arc<Mutex<Tables>>,
}

/// What a Prepare is to the node: see [`AccountPayments::begin`].
pub enum Seen {
    /// Paid before its expiry: answer with this Fulfill and book nothing.
    Paid(Fulfill),
    /// Paid before its expiry, in a table that keeps no Fulfills (the outgoing side).
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
    tables: Arc<Mutex<Tables>>,
    side: Side,
    key: Option<Key>,
    expires_at: Timestamp,
}

fn lock(tables: &Mutex<Tables>) -> MutexGuard<'_, Tables> {
    // Nothing panics while holding the lock; a poisoned table is still consistent.
    tables.lock().unwrap_or_else(|e| e.into_inner())
}

impl First {
    /// Ends the first copy with `outcome`. A Fulfill must already be durable: from now on
    /// copies are answered with it without booking anything.
    pub fn finish(mut self, outcome: &PacketResult) {
        let Some(key) = self.key.take() else {
            return;
        };
        let waiters =
            lock(&self.tables)
                .side(self.side)
                .finish(key, self.expires_at, outcome.as_ref().ok());
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
}

impl Drop for First {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The waiters' senders drop: they learn the first was abandoned.
            drop(
                lock(&self.tables)
                    .side(self.side)
                    .finish(key, self.expires_at, None),
            );
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
        let found = lock(&self.tables).side(side).begin(key, now);
        match found {
            Found::Paid(Some(fulfill)) => Seen::Paid(fulfill),
            Found::Paid(None) => Seen::Sent,
            Found::Joined(rx) => Seen::Joined(Joined(rx)),
            Found::First => Seen::First(First {
                tables: self.tables.clone(),
                side,
                key: Some(key),
                expires_at,
            }),
        }
    }
}

/// Every account's memory: the Router's accounts hold their own handles
/// ([`Payments::account`]); the fulfill records are loaded and the metrics read through this.
#[derive(Clone, Default)]
pub struct Payments {
    accounts: Arc<Mutex<HashMap<AccountId, AccountPayments>>>,
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

    /// The memory of `account`, made on first use.
    pub fn account(&self, account: &AccountId) -> AccountPayments {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.entry(account.clone()).or_default().clone()
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
        let tables = self.account(account).tables;
        lock(&tables)
            .incoming
            .remember(Key::of(digest), expires_at, now, fulfill);
    }

    /// Sizes as of `now`: seconds that have passed are dropped first.
    pub fn stats(&self, now: Timestamp) -> PaymentsStats {
        let accounts: Vec<AccountPayments> = {
            let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            accounts.values().cloned().collect()
        };
        let mut stats = PaymentsStats::default();
        for account in accounts {
            let mut guard = lock(&account.tables);
            let tables = &mut *guard;
            for table in [&mut tables.incoming, &mut tables.outgoing] {
                table.sweep(now, true);
                stats.in_flight += table.in_flight;
                stats.paid += table.paid;
                stats.paid_bytes += table.heap_bytes();
            }
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
        // The same digest on the outgoing side (to alice) is another table.
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

    #[tokio::test]
    async fn lapsed_entries_are_swept_a_shard_at_a_time_and_arenas_at_once() {
        let payments = Payments::new();
        let alice = payments.account(&AccountId::from("alice"));
        // 100 payments in each of the seconds 2..=5.
        let digest = |n: u16| {
            let mut digest = [0; 32];
            digest[..2].copy_from_slice(&n.to_le_bytes());
            digest[8..10].copy_from_slice(&n.to_le_bytes());
            digest
        };
        for n in 0..400u16 {
            let expiry = at(2_000 + u64::from(n / 100) * 1_000 + u64::from(n % 100));
            first(alice.begin(Side::Incoming, &digest(n), expiry, at(1_000)))
                .finish(&Ok(fulfill(1)));
        }
        let state = |alice: &AccountPayments| {
            let tables = lock(&alice.tables);
            (tables.incoming.paid, tables.incoming.arenas.len())
        };
        assert_eq!(state(&alice), (400, 4));
        // At 4 s the seconds 2 and 3 have passed: their arenas go at once, their slots as
        // the scans reach their shards, one shard per lookup at most every SCAN_EVERY_MS.
        drop(first(incoming(&alice, 200, 9_000, 4_000)));
        let (kept, arenas) = state(&alice);
        assert_eq!(arenas, 2);
        assert!((390..400).contains(&kept), "one shard scanned: {kept}");
        drop(first(incoming(&alice, 200, 9_000, 4_000)));
        assert_eq!(
            state(&alice).0,
            kept,
            "not scanned again before SCAN_EVERY_MS"
        );
        for n in 1..SHARDS as u64 {
            drop(first(incoming(
                &alice,
                200,
                9_000,
                4_000 + n * SCAN_EVERY_MS,
            )));
        }
        assert_eq!(
            state(&alice),
            (200, 2),
            "and stops at the seconds still live"
        );
        // Lapsed slots are never read, even before they are swept.
        assert!(matches!(
            alice.begin(Side::Incoming, &digest(150), at(9_000), at(4_500)),
            Seen::First(_)
        ));
        assert_eq!(
            paid(alice.begin(Side::Incoming, &digest(350), at(5_050), at(5_050))),
            Some(fulfill(1))
        );
        // The arenas of the passed seconds 2, 3 and 4 wait for later seconds.
        assert_eq!(lock(&alice.tables).incoming.spare.len(), 3);
        assert_eq!(payments.stats(at(6_000)).paid, 0, "stats sweep everything");
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
    async fn records_loaded_keep_the_first_fulfill_and_the_outgoing_table_keeps_keys_only() {
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
        let tables = lock(&alice.tables);
        let arena = |t: &Table| t.arenas.values().map(Vec::len).sum::<usize>();
        assert_eq!(
            arena(&tables.outgoing),
            0,
            "the outgoing table keeps no Fulfill"
        );
        assert_eq!(arena(&tables.incoming), 2 * fulfill(1).as_bytes().len());
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
