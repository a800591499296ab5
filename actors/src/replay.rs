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
//! Records are keyed by expiry first, so dropping the expired ones is one range delete
//! ([`expired_before`]), which the BalanceKeeper issues periodically.

use crate::messages::AccountId;
use crate::store::{Store, StoreError, StoreOp};
use bytes::Bytes;
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

    /// The store write that remembers `fulfill` as this Prepare's answer.
    pub fn record(&self, fulfill: &Fulfill) -> StoreOp {
        StoreOp::PutRecord {
            key: self.key(),
            value: fulfill.as_bytes().to_vec(),
        }
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
            let tag = ReplayTag::parse(&key).ok_or_else(|| {
                StoreError::Corrupt(format!("malformed fulfill record key {key:02x?}"))
            })?;
            let fulfill = Fulfill::parse(Bytes::from(value)).map_err(|e| {
                StoreError::Corrupt(format!(
                    "fulfill record of account {} is not a Fulfill: {e}",
                    tag.account
                ))
            })?;
            entries.insert((tag.account, tag.digest), (tag.expires_at, fulfill));
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

    #[tokio::test]
    async fn load_keeps_unexpired_records_and_answers_per_account() {
        let store = MemoryStore::new();
        store
            .commit(vec![
                tag("alice", 1, 1_000).record(&fulfill(1)),
                tag("alice", 2, 5_000).record(&fulfill(2)),
                tag("bob", 2, 9_000).record(&fulfill(3)),
            ])
            .await
            .unwrap();
        let recovered = RecoveredFulfills::load(&store, at(2_000)).unwrap();
        assert_eq!(
            recovered.len(),
            2,
            "the record that expired at 1 000 is not loaded"
        );
        let alice = AccountId::from("alice");
        let bob = AccountId::from("bob");
        assert_eq!(recovered.get(&alice, &[2; 32], at(2_000)), Some(fulfill(2)));
        assert_eq!(recovered.get(&bob, &[2; 32], at(2_000)), Some(fulfill(3)));
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
                tag("alice", 1, 1_000).record(&fulfill(1)),
                tag("alice", 2, 2_000).record(&fulfill(2)),
                StoreOp::PutRecord {
                    key: b"settle/x".to_vec(),
                    value: b"1".to_vec(),
                },
            ])
            .await
            .unwrap();
        store.commit(vec![expired_before(at(2_000))]).await.unwrap();
        assert_eq!(store.count_records(PREFIX), 1);
        assert_eq!(store.count_records(b"settle/"), 1);
        store.commit(vec![expired_before(at(2_001))]).await.unwrap();
        assert_eq!(store.count_records(PREFIX), 0);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_skipped() {
        let store = MemoryStore::new();
        let mut key = tag("alice", 1, 5_000).key();
        store
            .commit(vec![StoreOp::PutRecord {
                key: key.clone(),
                value: b"not a packet".to_vec(),
            }])
            .await
            .unwrap();
        assert!(matches!(
            RecoveredFulfills::load(&store, at(0)),
            Err(StoreError::Corrupt(_))
        ));
        store
            .commit(vec![StoreOp::DeleteRecord { key: key.clone() }])
            .await
            .unwrap();
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
    }
}
