//! Durable fulfill records: what lets a node that crashed answer a repeated Prepare it had
//! already been paid for, instead of forwarding (and charging) it a second time.
//!
//! The BalanceKeeper commits a fulfilled packet's balances and, in the same atomic batch, a
//! record `fulfilled/<expiry ms, 8 bytes BE><SHA-256 of the incoming Prepare><account id>` whose
//! value is the Fulfill. A crash can fall between that commit and the Fulfill reaching the
//! sender; the sender then repeats the identical Prepare (a BTP/2.0-I retry, an HTTP retry).
//! While the node runs, its in-memory replay caches answer such repeats. After a restart those
//! are gone, so [`RecoveredFulfills`] loads the records whose Prepare has not expired yet, and the
//! Router answers a matching Prepare from the same account with the stored Fulfill.
//!
//! The keeper commits the packets it resolved in one mailbox pass as one batch, and their
//! records as one [`RecordGroup`]: a single store record, keyed like the record of its
//! latest-expiring packet, whose value lists every packet's tag and Fulfill. One record per
//! batch instead of one per packet: the store sorts, flushes and compacts some fifty times
//! fewer entries at full load.
//!
//! Records are keyed by expiry first, so dropping the expired ones is one range delete
//! ([`expired_before`]), which the BalanceKeeper issues periodically; a group goes once its
//! last packet expired. Records of single packets (the layout before groups) are still read.

use crate::messages::AccountId;
use crate::store::{Store, StoreError, StoreOp};
use bytes::{BufMut, Bytes};
use ilp::oer::{OerError, OerWrite, Reader};
use ilp::packet::{Fulfill, Timestamp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Prefix of every fulfill record key.
pub const PREFIX: &[u8] = b"fulfilled/";

const DIGEST_LEN: usize = 32;
const EXPIRY_LEN: usize = 8;

/// Identifies one incoming Prepare: the account it came from, the SHA-256 of its bytes and
/// its expiry (which bounds how long the record is worth keeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTag {
    pub account: AccountId,
    pub digest: [u8; 32],
    pub expires_at: Timestamp,
}

impl ReplayTag {
    pub fn key(&self) -> Vec<u8> {
        let mut key =
            Vec::with_capacity(PREFIX.len() + EXPIRY_LEN + DIGEST_LEN + self.account.len());
        key.extend_from_slice(PREFIX);
        key.extend_from_slice(&self.expires_at.unix_millis().to_be_bytes());
        key.extend_from_slice(&self.digest);
        key.extend_from_slice(self.account.as_bytes());
        key
    }

    fn parse(key: &[u8]) -> Option<ReplayTag> {
        let rest = key.strip_prefix(PREFIX)?;
        let (expiry, rest) = rest.split_first_chunk::<EXPIRY_LEN>()?;
        let (digest, account) = rest.split_first_chunk::<DIGEST_LEN>()?;
        let account = std::str::from_utf8(account).ok()?;
        Some(ReplayTag {
            account: AccountId::from(account),
            digest: *digest,
            expires_at: Timestamp::from_unix_millis(u64::from_be_bytes(*expiry)),
        })
    }
}

/// A fulfilled packet's record, on its way to the keeper's [`RecordGroup`].
#[derive(Debug, Clone)]
pub struct FulfillRecord {
    pub tag: ReplayTag,
    pub fulfill: Fulfill,
}

/// First byte of a group's value. A record of one packet (the older layout) holds the Fulfill
/// itself, whose first byte is its packet type, 13.
const GROUP_MARK: u8 = 1;

/// The fulfill records of one store commit, built into one record: the value is
/// [`GROUP_MARK`], then per packet, in OER: its expiry (u64), the SHA-256 of its Prepare (32
/// bytes), its account id and its Fulfill (variable-length octet strings).
#[derive(Debug, Default)]
pub struct RecordGroup {
    /// The tag of the packet that expires last: the group's key, so it lives as long.
    latest: Option<ReplayTag>,
    value: Vec<u8>,
}

impl RecordGroup {
    pub fn push(&mut self, record: FulfillRecord) {
        let FulfillRecord { tag, fulfill } = record;
        if self.value.is_empty() {
            // Room for a few dozen packets of a busy batch without regrowing from zero.
            self.value.reserve(64 * 128);
            self.value.push(GROUP_MARK);
        }
        self.value.put_u64(tag.expires_at.unix_millis());
        self.value.put_slice(&tag.digest);
        self.value.put_var_octet_string(tag.account.as_bytes());
        self.value.put_var_octet_string(fulfill.as_bytes());
        match &self.latest {
            Some(latest) if latest.expires_at >= tag.expires_at => {}
            _ => self.latest = Some(tag),
        }
    }

    /// The store write of the whole group; `None` when no packet was pushed.
    pub fn into_op(self) -> Option<StoreOp> {
        let latest = self.latest?;
        Some(StoreOp::PutRecord {
            key: latest.key(),
            value: self.value,
        })
    }
}

/// The packets of one stored record, in either layout.
fn parse_record(key: &[u8], value: Vec<u8>) -> Result<Vec<(ReplayTag, Fulfill)>, StoreError> {
    let tag = ReplayTag::parse(key)
        .ok_or_else(|| StoreError::Corrupt(format!("malformed fulfill record key {key:02x?}")))?;
    let not_a_fulfill = |account: &AccountId, e: ilp::packet::PacketError| {
        StoreError::Corrupt(format!(
            "fulfill record of account {account} is not a Fulfill: {e}"
        ))
    };
    if value.first() != Some(&GROUP_MARK) {
        let fulfill =
            Fulfill::parse(Bytes::from(value)).map_err(|e| not_a_fulfill(&tag.account, e))?;
        return Ok(vec![(tag, fulfill)]);
    }
    let value = Bytes::from(value);
    let corrupt =
        |e: OerError| StoreError::Corrupt(format!("fulfill record group {key:02x?}: {e}"));
    let mut packets = Vec::new();
    let mut reader = Reader::new(&value[1..]);
    while !reader.is_empty() {
        let expiry = reader.read_u64().map_err(corrupt)?;
        let digest = *reader.read_array::<DIGEST_LEN>().map_err(corrupt)?;
        let account = AccountId::from(reader.read_var_str().map_err(corrupt)?);
        let bytes = reader.read_var_octet_string().map_err(corrupt)?;
        let fulfill =
            Fulfill::parse(value.slice_ref(bytes)).map_err(|e| not_a_fulfill(&account, e))?;
        packets.push((
            ReplayTag {
                account,
                digest,
                expires_at: Timestamp::from_unix_millis(expiry),
            },
            fulfill,
        ));
    }
    Ok(packets)
}

fn time_key(at: Timestamp) -> Vec<u8> {
    [PREFIX, &at.unix_millis().to_be_bytes()].concat()
}

/// Deletes every record whose Prepare expired before `now`.
pub fn expired_before(now: Timestamp) -> StoreOp {
    StoreOp::DeleteRange {
        from: PREFIX.to_vec(),
        to: time_key(now),
    }
}

/// Stored answers by (source account, digest of the Prepare), with the Prepare's expiry.
type Entries = HashMap<(AccountId, [u8; 32]), (Timestamp, Fulfill)>;

/// The fulfill records found at start-up whose Prepares have not expired, shared by the Router
/// (which answers from them) across its restarts. Empty in the steady state: the check costs
/// one atomic load per packet then.
#[derive(Debug, Clone, Default)]
pub struct RecoveredFulfills {
    any: Arc<AtomicBool>,
    entries: Arc<Mutex<Entries>>,
}

impl RecoveredFulfills {
    /// Reads the records of Prepares that expire at or after `now`. A record that does not
    /// parse is reported as corrupt rather than skipped: it may be a payment we owe an answer.
    pub fn load(store: &dyn Store, now: Timestamp) -> Result<RecoveredFulfills, StoreError> {
        // Just past every key under the prefix ('0' follows '/').
        let end = b"fulfilled0";
        let mut entries = HashMap::new();
        for (key, value) in store.scan_records(&time_key(now), end)? {
            for (tag, fulfill) in parse_record(&key, value)? {
                // A group lives as long as its latest packet; the others may have expired.
                if tag.expires_at >= now {
                    entries.insert((tag.account, tag.digest), (tag.expires_at, fulfill));
                }
            }
        }
        Ok(RecoveredFulfills {
            any: Arc::new(AtomicBool::new(!entries.is_empty())),
            entries: Arc::new(Mutex::new(entries)),
        })
    }

    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.with(|e| e.len())
    }

    /// The stored answer to the Prepare `digest` from `account`, if it has not expired. Expired
    /// entries are dropped on the way; once none is left, lookups stop here at the atomic.
    pub fn get(&self, account: &AccountId, digest: &[u8; 32], now: Timestamp) -> Option<Fulfill> {
        if self.is_empty() {
            return None;
        }
        self.with(|entries| {
            let found = match entries.get(&(account.clone(), *digest)) {
                Some((expires_at, fulfill)) if now <= *expires_at => Some(fulfill.clone()),
                _ => None,
            };
            if found.is_none() {
                entries.retain(|_, (expires_at, _)| now <= *expires_at);
                if entries.is_empty() {
                    self.any.store(false, Ordering::Relaxed);
                }
            }
            found
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        // Entries are inserted whole, so a poisoned map is still consistent.
        match self.entries.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use ilp::packet::FulfillBuilder;

    fn fulfill(byte: u8) -> Fulfill {
        FulfillBuilder {
            fulfillment: &[byte; 32],
            data: b"paid",
        }
        .build()
        .unwrap()
    }

    fn tag(account: &str, digest: u8, expires_ms: u64) -> ReplayTag {
        ReplayTag {
            account: AccountId::from(account),
            digest: [digest; 32],
            expires_at: Timestamp::from_unix_millis(expires_ms),
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn keys_round_trip_and_sort_by_expiry() {
        let a = tag("alice.x~y", 7, 1_700_000_000_000);
        assert_eq!(ReplayTag::parse(&a.key()), Some(a.clone()));
        let later = tag("a", 0, 1_700_000_000_001);
        assert!(a.key() < later.key());
        assert_eq!(ReplayTag::parse(b"fulfilled/short"), None);
        assert_eq!(ReplayTag::parse(b"other/"), None);
    }

    /// The one-packet layout written before groups.
    fn single(tag: &ReplayTag, fulfill: &Fulfill) -> StoreOp {
        StoreOp::PutRecord {
            key: tag.key(),
            value: fulfill.as_bytes().to_vec(),
        }
    }

    fn group(packets: &[(ReplayTag, Fulfill)]) -> StoreOp {
        let mut group = RecordGroup::default();
        for (tag, fulfill) in packets {
            group.push(FulfillRecord {
                tag: tag.clone(),
                fulfill: fulfill.clone(),
            });
        }
        group.into_op().unwrap()
    }

    #[test]
    fn a_group_is_keyed_by_its_latest_packet_and_lists_every_packet() {
        assert_eq!(RecordGroup::default().into_op(), None);
        let packets = vec![
            (tag("alice", 1, 5_000), fulfill(1)),
            (tag("bob.x~y", 2, 9_000), fulfill(2)),
            (tag("alice", 3, 7_000), fulfill(3)),
        ];
        let StoreOp::PutRecord { key, value } = group(&packets) else {
            panic!("a group is one record");
        };
        assert_eq!(key, tag("bob.x~y", 2, 9_000).key());
        assert_eq!(parse_record(&key, value).unwrap(), packets);
    }

    #[tokio::test]
    async fn load_keeps_unexpired_records_and_answers_per_account() {
        let store = MemoryStore::new();
        store
            .commit(vec![
                group(&[
                    (tag("alice", 1, 1_000), fulfill(1)),
                    (tag("alice", 2, 5_000), fulfill(2)),
                ]),
                group(&[(tag("bob", 2, 9_000), fulfill(3))]),
                single(&tag("carol", 4, 3_000), &fulfill(4)),
                single(&tag("carol", 5, 1_500), &fulfill(5)),
            ])
            .await
            .unwrap();
        let recovered = RecoveredFulfills::load(&store, at(2_000)).unwrap();
        assert_eq!(
            recovered.len(),
            3,
            "what expired before 2 000 is not loaded, from a group or a single record"
        );
        let alice = AccountId::from("alice");
        let bob = AccountId::from("bob");
        let carol = AccountId::from("carol");
        assert_eq!(recovered.get(&alice, &[2; 32], at(2_000)), Some(fulfill(2)));
        assert_eq!(recovered.get(&bob, &[2; 32], at(2_000)), Some(fulfill(3)));
        assert_eq!(recovered.get(&carol, &[4; 32], at(2_000)), Some(fulfill(4)));
        // Same Prepare bytes from another account are another packet.
        assert_eq!(recovered.get(&alice, &[3; 32], at(2_000)), None);
        assert_eq!(recovered.get(&alice, &[1; 32], at(2_000)), None);
        // A repeat is answered again (the first answer may have been lost too).
        assert_eq!(recovered.get(&alice, &[2; 32], at(5_000)), Some(fulfill(2)));
        // Past its expiry a record answers nothing and is dropped.
        assert_eq!(recovered.get(&alice, &[2; 32], at(5_001)), None);
        assert_eq!(recovered.len(), 1);
        assert!(!recovered.is_empty());
        assert_eq!(recovered.get(&bob, &[9; 32], at(9_001)), None);
        assert!(recovered.is_empty());
    }

    #[tokio::test]
    async fn expired_before_deletes_only_expired_records() {
        let store = MemoryStore::new();
        store
            .commit(vec![
                single(&tag("alice", 1, 1_000), &fulfill(1)),
                group(&[
                    (tag("alice", 2, 2_000), fulfill(2)),
                    (tag("alice", 3, 500), fulfill(3)),
                ]),
                StoreOp::PutRecord {
                    key: b"settle/x".to_vec(),
                    value: b"1".to_vec(),
                },
            ])
            .await
            .unwrap();
        store.commit(vec![expired_before(at(2_000))]).await.unwrap();
        assert_eq!(
            store.count_records(PREFIX),
            1,
            "a group stays while its latest packet has not expired"
        );
        assert_eq!(store.count_records(b"settle/"), 1);
        store.commit(vec![expired_before(at(2_001))]).await.unwrap();
        assert_eq!(store.count_records(PREFIX), 0);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_skipped() {
        let store = MemoryStore::new();
        let corrupt = |value: Vec<u8>| StoreOp::PutRecord {
            key: tag("alice", 1, 5_000).key(),
            value,
        };
        let StoreOp::PutRecord { value: whole, .. } = group(&[
            (tag("alice", 1, 5_000), fulfill(1)),
            (tag("bob", 2, 4_000), fulfill(2)),
        ]) else {
            panic!("a group is one record");
        };
        let mut bad_fulfill = whole.clone();
        // The packet type of the last Fulfill.
        let last = bad_fulfill.len() - fulfill(2).as_bytes().len();
        bad_fulfill[last] = 12;
        let mut bad_account = whole.clone();
        // The first byte of the account id, after its one-byte length.
        bad_account[1 + EXPIRY_LEN + DIGEST_LEN + 1] = 0xff;
        for value in [
            b"not a packet".to_vec(),
            whole[..whole.len() - 1].to_vec(),
            whole[..1 + EXPIRY_LEN + 3].to_vec(),
            bad_fulfill,
            bad_account,
        ] {
            store.commit(vec![corrupt(value.clone())]).await.unwrap();
            assert!(
                matches!(
                    RecoveredFulfills::load(&store, at(0)),
                    Err(StoreError::Corrupt(_))
                ),
                "{value:02x?} loads"
            );
        }
        store.commit(vec![corrupt(whole)]).await.unwrap();
        assert_eq!(RecoveredFulfills::load(&store, at(0)).unwrap().len(), 2);
        let mut key = tag("alice", 1, 5_000).key();
        key.truncate(PREFIX.len() + EXPIRY_LEN + 3);
        store
            .commit(vec![StoreOp::PutRecord {
                key,
                value: fulfill(1).as_bytes().to_vec(),
            }])
            .await
            .unwrap();
        assert!(matches!(
            RecoveredFulfills::load(&store, at(0)),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// A node that committed a packet and "crashed" before its Fulfill reached the sender: a
    /// second node on the same store answers the repeat from the record, without forwarding
    /// it or moving any balance again.
    mod across_a_restart {
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
                [accounts.payee]
                relation = "child"
                link = { type = "memory" }
                balance = { minimum = -1000000, maximum = 1000000 }
                "#,
            )
            .unwrap()
        }

        /// Starts a node on `store`; returns it, the payer's far end and the payee's count.
        fn start(store: &MemoryStore, clock: Clock) -> (Node, MemoryLink, Arc<AtomicUsize>) {
            let (payer_node, payer) = MemoryLink::pair();
            let (payee_node, payee) = MemoryLink::pair();
            let delivered = Arc::new(AtomicUsize::new(0));
            payee.attach(
                PreimagePayee {
                    delivered: delivered.clone(),
                }
                .start()
                .recipient(),
            );
            let links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::from([
                (
                    AccountId::from("payer"),
                    Arc::new(payer_node) as Arc<dyn Link>,
                ),
                (
                    AccountId::from("payee"),
                    Arc::new(payee_node) as Arc<dyn Link>,
                ),
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
            (node, payer, delivered)
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

        #[test]
        fn a_repeat_after_restart_is_answered_from_the_record() {
            run(async {
                let clock = Clock::starting_at(START_MS);
                let store = MemoryStore::new();
                let expiry = Timestamp::from_unix_millis(START_MS + 30_000);
                let paid = payment(1, 100, expiry);
                let (first, payer, delivered) = start(&store, clock);
                let fulfill = payer.send_prepare(paid.clone()).await.unwrap().unwrap();
                assert_eq!(delivered.load(Ordering::SeqCst), 1);
                assert_eq!(balance(&first, "payer").await, 100);
                assert_eq!(store.count_records(super::PREFIX), 1);

                // A new incarnation on the same store; the sender repeats the same bytes.
                let (second, payer, delivered) = start(&store, clock);
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
                assert_eq!(store.count_records(super::PREFIX), 2);

                // Past the expiry the records are collected and a repeat is not answered.
                tokio::time::sleep(std::time::Duration::from_secs(45)).await;
                assert_eq!(store.count_records(super::PREFIX), 0);
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
                let (first, payer, delivered) = start(&store, clock);
                let fulfills =
                    futures::future::join_all(paid.iter().map(|p| payer.send_prepare(p.clone())))
                        .await;
                assert_eq!(delivered.load(Ordering::SeqCst), 20);
                assert_eq!(balance(&first, "payer").await, 200);
                let records = store.count_records(super::PREFIX);
                assert!(
                    (1..20).contains(&records),
                    "{records} records for 20 packets sent at once"
                );

                let (second, payer, delivered) = start(&store, clock);
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
