//! One payment per Prepare: the node's memory of the Prepares it is answering and of the ones it
//! was paid for, so that identical bytes from the same account before their expiry are one
//! payment, booked once and answered with the first outcome, whether the copy arrives while the
//! first is in flight, after it was fulfilled, or after a restart.
//!
//! - **In flight**: a copy that arrives while the first is being answered waits for the first's
//!   outcome (its Fulfill once that is durable, or its Reject) and books nothing itself.
//! - **Paid**: once a Prepare's Fulfill is durable, a copy is answered with that Fulfill until
//!   the Prepare expires. After a restart the same memory is loaded from the fulfill records
//!   ([`crate::replay`]) the BalanceKeeper commits with the balances.
//! - **Rejected**: a Reject books nothing on either side, so it is not remembered: a copy sent
//!   after the first was rejected is a new attempt (senders repeat identical bytes after a
//!   temporary error, and an over-the-wire repeat cannot be told from such a retry).
//!
//! Zero-amount Prepares move no money and are not tracked.
//!
//! The same in-flight table, without the paid memory, joins identical *outgoing* Prepares to one
//! next hop ([`Payments::outgoing`]): the next hop sees one packet, so only the first copy books
//! the outgoing side.
//!
//! Memory: a paid Prepare costs its key (16 bytes of the SHA-256 of its bytes), an offset and a
//! length into its expiry second's arena, and the Fulfill's bytes in that arena: about 75 bytes
//! for a Fulfill without data. Entries are grouped by the second their Prepare expires in, so a
//! lookup touches one group (identical bytes have the identical expiry) and a whole second is
//! freed at once when it has passed.

use crate::messages::{AccountId, PacketResult};
use bytes::Bytes;
use ilp::packet::{Fulfill, Timestamp};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Bytes of the Prepare's SHA-256 that key a paid entry: collisions need 2^64 work.
const KEY_LEN: usize = 16;

type Key = (AccountId, [u8; 32]);
type Waiters = Vec<oneshot::Sender<PacketResult>>;

/// The Fulfills of paid Prepares that expire within one second.
#[derive(Default)]
struct Second {
    /// Key → (offset, length) of the Fulfill's bytes in `fulfills`.
    index: foldhash::HashMap<[u8; KEY_LEN], (u32, u32)>,
    fulfills: Vec<u8>,
}

impl Second {
    /// `Some` when `key` was paid, with its Fulfill when this table keeps them.
    fn get(&self, key: &[u8; KEY_LEN]) -> Option<Option<Fulfill>> {
        let &(offset, len) = self.index.get(key)?;
        if len == 0 {
            return Some(None);
        }
        let start = offset as usize;
        let bytes = self.fulfills.get(start..start + len as usize);
        Some(bytes.and_then(|b| Fulfill::parse(Bytes::copy_from_slice(b)).ok()))
    }

    fn insert(&mut self, key: [u8; KEY_LEN], fulfill: Option<&Fulfill>) {
        let bytes: &[u8] = fulfill.map_or(&[], |f| f.as_bytes());
        let (Ok(offset), Ok(len)) = (
            u32::try_from(self.fulfills.len()),
            u32::try_from(bytes.len()),
        ) else {
            // Four gigabytes of Fulfills expiring in one second: not remembered.
            return;
        };
        // A second copy of a paid Prepare (a record loaded at start-up, then the packet again)
        // keeps the first Fulfill.
        if let std::collections::hash_map::Entry::Vacant(slot) = self.index.entry(key) {
            slot.insert((offset, len));
            self.fulfills.extend_from_slice(bytes);
        }
    }

    /// Heap bytes held: the arena and the index (key, slot and control byte per bucket).
    fn heap_bytes(&self) -> usize {
        self.fulfills.capacity() + self.index.capacity() * (KEY_LEN + 8 + 1)
    }
}

/// Paid Prepares of one account, by the second they expire in.
type Paid = BTreeMap<u64, Second>;

#[derive(Default)]
struct Inner {
    in_flight: foldhash::HashMap<Key, Waiters>,
    paid: foldhash::HashMap<AccountId, Paid>,
    /// Whether a paid entry keeps its Fulfill (to answer copies with) or only its key.
    keep_fulfills: bool,
    /// The last second whose expired entries were dropped.
    swept: u64,
}

fn key_of(digest: &[u8; 32]) -> [u8; KEY_LEN] {
    let mut key = [0; KEY_LEN];
    key.copy_from_slice(&digest[..KEY_LEN]);
    key
}

impl Inner {
    /// Drops every second that has passed: all of its Prepares expired.
    fn sweep(&mut self, now: Timestamp) {
        let now_s = now.unix_millis() / 1000;
        if now_s <= self.swept {
            return;
        }
        self.swept = now_s;
        self.paid.retain(|_, seconds| {
            // Second `s` holds expiries up to `s`.999, all passed once `now` is in a later one.
            *seconds = seconds.split_off(&now_s);
            !seconds.is_empty()
        });
    }

    fn paid(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
        expires_at: Timestamp,
    ) -> Option<Option<Fulfill>> {
        let second = expires_at.unix_millis() / 1000;
        self.paid.get(account)?.get(&second)?.get(&key_of(digest))
    }

    fn remember(
        &mut self,
        account: &AccountId,
        digest: &[u8; 32],
        expires_at: Timestamp,
        fulfill: &Fulfill,
    ) {
        let second = expires_at.unix_millis() / 1000;
        if second < self.swept {
            return;
        }
        let keep = self.keep_fulfills.then_some(fulfill);
        let seconds = match self.paid.get_mut(account) {
            Some(seconds) => seconds,
            None => self.paid.entry(account.clone()).or_default(),
        };
        seconds
            .entry(second)
            .or_default()
            .insert(key_of(digest), keep);
    }
}

/// What a Prepare is to the node: see [`Payments::begin`].
pub enum Seen {
    /// Paid before its expiry: answer with this Fulfill and book nothing.
    Paid(Fulfill),
    /// Paid before its expiry, in a table that keeps no Fulfills ([`Payments::outgoing`]).
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
/// Fulfill is remembered (when the table keeps paid Prepares). Dropped unfinished, it leaves the
/// table and the copies are told it was abandoned.
pub struct First {
    payments: Payments,
    key: Option<Key>,
    expires_at: Timestamp,
}

impl First {
    /// Ends the first copy with `outcome`. A Fulfill must already be durable: from now on
    /// identical copies are answered with it without booking anything.
    pub fn finish(mut self, outcome: &PacketResult) {
        let Some(key) = self.key.take() else {
            return;
        };
        let waiters = {
            let mut inner = self.payments.lock();
            if let Ok(fulfill) = outcome {
                inner.remember(&key.0, &key.1, self.expires_at, fulfill);
            }
            inner.in_flight.remove(&key).unwrap_or_default()
        };
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
}

impl Drop for First {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The waiters' senders drop with the entry: they learn the first was abandoned.
            self.payments.lock().in_flight.remove(&key);
        }
    }
}

/// The table shared by the Router and the continuations of the packets it forwards.
#[derive(Clone, Default)]
pub struct Payments {
    inner: Arc<Mutex<Inner>>,
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
    /// A table for incoming Prepares: joins copies in flight and answers copies of paid ones
    /// with their Fulfill.
    pub fn incoming() -> Self {
        Payments {
            inner: Arc::new(Mutex::new(Inner {
                keep_fulfills: true,
                ..Inner::default()
            })),
        }
    }

    /// A table for outgoing Prepares: joins copies in flight and knows which were paid, without
    /// their Fulfills.
    pub fn outgoing() -> Self {
        Payments::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned table is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks the Prepare (`digest` of its bytes, from `account`, expiring at `expires_at`) up
    /// and, when it is new, takes its place as the first copy.
    pub fn begin(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Seen {
        let mut inner = self.lock();
        inner.sweep(now);
        if now <= expires_at {
            match inner.paid(account, digest, expires_at) {
                Some(Some(fulfill)) => return Seen::Paid(fulfill),
                Some(None) => return Seen::Sent,
                None => {}
            }
        }
        let key = (account.clone(), *digest);
        if let Some(waiters) = inner.in_flight.get_mut(&key) {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            return Seen::Joined(Joined(rx));
        }
        inner.in_flight.insert(key.clone(), Vec::new());
        drop(inner);
        Seen::First(First {
            payments: self.clone(),
            key: Some(key),
            expires_at,
        })
    }

    /// Remembers a Prepare paid before (a fulfill record read at start-up).
    pub fn remember_paid(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
        expires_at: Timestamp,
        fulfill: &Fulfill,
    ) {
        self.lock().remember(account, digest, expires_at, fulfill);
    }

    pub fn stats(&self) -> PaymentsStats {
        let inner = self.lock();
        let seconds = inner.paid.values().flat_map(|s| s.values());
        let (paid, paid_bytes) = seconds.fold((0, 0), |(n, bytes), s| {
            (n + s.index.len(), bytes + s.heap_bytes())
        });
        PaymentsStats {
            in_flight: inner.in_flight.len(),
            paid,
            paid_bytes,
        }
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

    #[tokio::test]
    async fn copies_in_flight_take_the_first_outcome_and_a_fulfill_is_remembered() {
        let payments = Payments::incoming();
        let alice = AccountId::from("alice");
        let bob = AccountId::from("bob");
        let expiry = at(10_500);
        let one = first(payments.begin(&alice, &[1; 32], expiry, at(1_000)));
        let copy = joined(payments.begin(&alice, &[1; 32], expiry, at(1_001)));
        // Another account's identical bytes, and other bytes, are other payments.
        let other = first(payments.begin(&bob, &[1; 32], expiry, at(1_001)));
        let different = first(payments.begin(&alice, &[2; 32], expiry, at(1_001)));
        assert_eq!(payments.stats().in_flight, 3);
        one.finish(&Ok(fulfill(1)));
        assert_eq!(copy.outcome().await, Some(Ok(fulfill(1))));
        assert_eq!(
            paid(payments.begin(&alice, &[1; 32], expiry, at(10_500))),
            Some(fulfill(1)),
            "answered until its expiry, inclusive"
        );
        assert_eq!(
            paid(payments.begin(&alice, &[1; 32], expiry, at(10_501))),
            None
        );
        drop((other, different));
        let stats = payments.stats();
        assert_eq!((stats.in_flight, stats.paid), (0, 1));
        assert!(stats.paid_bytes > fulfill(1).as_bytes().len());
    }

    #[tokio::test]
    async fn a_reject_goes_to_the_copies_and_is_not_remembered() {
        let payments = Payments::incoming();
        let alice = AccountId::from("alice");
        let expiry = at(10_000);
        let one = first(payments.begin(&alice, &[1; 32], expiry, at(1_000)));
        let copy = joined(payments.begin(&alice, &[1; 32], expiry, at(1_000)));
        let reject = Reject::new(ErrorCode::T04_INSUFFICIENT_LIQUIDITY, None, "full");
        one.finish(&Err(reject.clone()));
        assert_eq!(copy.outcome().await, Some(Err(reject)));
        // A copy after a Reject is a new attempt.
        drop(first(payments.begin(&alice, &[1; 32], expiry, at(1_000))));
        assert_eq!(payments.stats(), PaymentsStats::default());
    }

    #[tokio::test]
    async fn an_abandoned_first_tells_its_copies_and_leaves_the_table() {
        let payments = Payments::incoming();
        let alice = AccountId::from("alice");
        let one = first(payments.begin(&alice, &[1; 32], at(10_000), at(1_000)));
        let copy = joined(payments.begin(&alice, &[1; 32], at(10_000), at(1_000)));
        drop(one);
        assert_eq!(copy.outcome().await, None);
        drop(first(payments.begin(
            &alice,
            &[1; 32],
            at(10_000),
            at(1_000),
        )));
    }

    #[tokio::test]
    async fn passed_seconds_are_dropped_whole_and_the_outgoing_table_keeps_keys_only() {
        let payments = Payments::incoming();
        let alice = AccountId::from("alice");
        for n in 0..100u8 {
            let expiry = at(2_000 + u64::from(n) * 100);
            first(payments.begin(&alice, &[n; 32], expiry, at(1_000))).finish(&Ok(fulfill(n)));
        }
        assert_eq!(payments.stats().paid, 100);
        // At 6.5 s the seconds 2..=5 have passed: 40 packets, expiring before 6 000.
        drop(first(payments.begin(
            &alice,
            &[200; 32],
            at(9_000),
            at(6_500),
        )));
        assert_eq!(payments.stats().paid, 60);
        assert_eq!(
            paid(payments.begin(&alice, &[45; 32], at(6_500), at(6_500))),
            Some(fulfill(45))
        );
        // Remembered from a record: the first Fulfill for a key stays.
        payments.remember_paid(&alice, &[45; 32], at(6_500), &fulfill(9));
        assert_eq!(
            paid(payments.begin(&alice, &[45; 32], at(6_500), at(6_500))),
            Some(fulfill(45))
        );
        // A record of an already swept second is not kept.
        payments.remember_paid(&alice, &[250; 32], at(3_000), &fulfill(9));
        assert_eq!(payments.stats().paid, 60);

        let outgoing = Payments::outgoing();
        first(outgoing.begin(&alice, &[1; 32], at(10_000), at(1_000))).finish(&Ok(fulfill(1)));
        assert!(matches!(
            outgoing.begin(&alice, &[1; 32], at(10_000), at(1_000)),
            Seen::Sent
        ));
        let stats = outgoing.stats();
        assert_eq!((stats.in_flight, stats.paid), (0, 1));
        let incoming = Payments::incoming();
        first(incoming.begin(&alice, &[1; 32], at(10_000), at(1_000))).finish(&Ok(fulfill(1)));
        assert_eq!(
            stats.paid_bytes + fulfill(1).as_bytes().len(),
            incoming.stats().paid_bytes,
            "the outgoing table keeps no Fulfill"
        );
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
