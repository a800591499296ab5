//! What the node keeps across restarts: committed balances and keyed records (settlement ids,
//! idempotency entries). [`Store`] is the one interface; [`memory::MemoryStore`] implements it
//! in memory (tests, simulations, `store.backend = "memory"`); [`rocks::RocksStore`] implements
//! it on RocksDB for durable deployments. Both pass the same [`conformance`] suite.

pub mod memory;
pub mod rocks;

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store is closed")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// [`Store::checkpoint`] on a store that cannot make one.
    #[error("{0}")]
    NoSnapshots(&'static str),
}

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// The committed balance of an account.
    SetBalance {
        /// Shared with the keeper's table: no string copy per packet.
        account: crate::messages::AccountId,
        balance: i64,
    },
    /// A keyed record, e.g. `settle/<id>` for a settlement applied once.
    PutRecord {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    DeleteRecord {
        key: Vec<u8>,
    },
    /// Every record with `from <= key < to` (expiring records keyed by time, e.g. the durable
    /// fulfill records of [`crate::replay`]).
    DeleteRange {
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// A record's key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Runs `read` on tokio's blocking pool, so a disk read never holds up the actor thread (which
/// carries every socket by default) while it waits for the disk.
pub async fn read_off_thread<T: Send + 'static>(
    store: Arc<dyn Store>,
    read: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || read(store.as_ref()))
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(format!("a store read failed: {e}"))))
}

/// Persistent state of a node. Implementations are shared between actors (`Arc<dyn Store>`).
pub trait Store: Send + Sync + 'static {
    /// Every committed balance, by account id.
    fn load_balances(&self) -> Result<BTreeMap<String, i64>, StoreError>;

    /// A record, if present.
    fn get_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every record with `from <= key < to`, in key order, as one consistent read.
    fn scan_records(&self, from: &[u8], to: &[u8]) -> Result<Vec<Record>, StoreError>;

    /// Applies `ops` atomically; resolves once they are durable. Implementations may group
    /// concurrent batches into one write (group commit), so callers never block a thread.
    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Writes a consistent copy of everything committed so far to `dir` (which must not exist;
    /// its parent must), while the store keeps serving. Blocking: call it off the actor
    /// threads. A node started on a copy of `dir` sees exactly that state.
    fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        let _ = dir;
        Err(StoreError::NoSnapshots("this store has no snapshots"))
    }
}

/// Behaviour every [`Store`] must have; each implementation's tests call every function here.
#[cfg(test)]
pub(crate) mod conformance {
    use super::{Store, StoreOp};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn balance(account: &str, balance: i64) -> StoreOp {
        StoreOp::SetBalance {
            account: account.into(),
            balance,
        }
    }

    fn put(key: &[u8], value: &[u8]) -> StoreOp {
        StoreOp::PutRecord {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    fn delete_op(key: &[u8]) -> StoreOp {
        StoreOp::DeleteRecord { key: key.to_vec() }
    }

    pub(crate) async fn balances_round_trip<S: Store>(store: &S) {
        assert_eq!(store.load_balances().unwrap(), BTreeMap::new());
        store
            .commit(vec![
                balance("alice", -5),
                balance("bob", i64::MAX),
                balance("carol", i64::MIN),
                balance("", 0),
                balance("dave/ü", 1),
            ])
            .await
            .unwrap();
        store.commit(vec![balance("alice", 42)]).await.unwrap();
        let expected = BTreeMap::from([
            ("alice".to_owned(), 42),
            ("bob".to_owned(), i64::MAX),
            ("carol".to_owned(), i64::MIN),
            (String::new(), 0),
            ("dave/ü".to_owned(), 1),
        ]);
        assert_eq!(store.load_balances().unwrap(), expected);
    }

    pub(crate) async fn records_round_trip<S: Store>(store: &S) {
        assert_eq!(store.get_record(b"settle/1").unwrap(), None);
        store
            .commit(vec![
                put(b"settle/1", b"10"),
                put(b"\x00\xff", b""),
                put(b"", b"empty key"),
            ])
            .await
            .unwrap();
        store.commit(vec![put(b"settle/1", b"11")]).await.unwrap();
        assert_eq!(store.get_record(b"settle/1").unwrap(), Some(b"11".to_vec()));
        assert_eq!(store.get_record(b"\x00\xff").unwrap(), Some(Vec::new()));
        assert_eq!(store.get_record(b"").unwrap(), Some(b"empty key".to_vec()));
        assert_eq!(store.get_record(b"settle/2").unwrap(), None);
        // Records never show up as balances.
        assert_eq!(store.load_balances().unwrap(), BTreeMap::new());
    }

    pub(crate) async fn delete<S: Store>(store: &S) {
        store
            .commit(vec![put(b"a", b"1"), put(b"b", b"2")])
            .await
            .unwrap();
        store.commit(vec![delete_op(b"a")]).await.unwrap();
        assert_eq!(store.get_record(b"a").unwrap(), None);
        assert_eq!(store.get_record(b"b").unwrap(), Some(b"2".to_vec()));
        // Deleting what is absent is not an error.
        store.commit(vec![delete_op(b"missing")]).await.unwrap();
        // Within a batch, later ops win.
        store
            .commit(vec![
                put(b"c", b"3"),
                delete_op(b"c"),
                put(b"b", b"x"),
                delete_op(b"b"),
            ])
            .await
            .unwrap();
        assert_eq!(store.get_record(b"c").unwrap(), None);
        assert_eq!(store.get_record(b"b").unwrap(), None);
        store
            .commit(vec![delete_op(b"d"), put(b"d", b"4")])
            .await
            .unwrap();
        assert_eq!(store.get_record(b"d").unwrap(), Some(b"4".to_vec()));
    }

    pub(crate) async fn ranges<S: Store>(store: &S) {
        store
            .commit(vec![
                put(b"f/1", b"a"),
                put(b"f/2", b"b"),
                put(b"f/2x", b"c"),
                put(b"f/3", b"d"),
                put(b"g/1", b"e"),
                balance("f/2", 9),
            ])
            .await
            .unwrap();
        let scanned = store.scan_records(b"f/2", b"f/3").unwrap();
        assert_eq!(
            scanned,
            vec![
                (b"f/2".to_vec(), b"b".to_vec()),
                (b"f/2x".to_vec(), b"c".to_vec())
            ]
        );
        assert_eq!(store.scan_records(b"f/", b"g/").unwrap().len(), 4);
        assert_eq!(store.scan_records(b"f/3", b"f/2").unwrap(), Vec::new());
        assert_eq!(store.scan_records(b"h", b"i").unwrap(), Vec::new());
        // A range delete, in the same batch as a put inside the range that follows it.
        store
            .commit(vec![
                StoreOp::DeleteRange {
                    from: b"f/".to_vec(),
                    to: b"f/3".to_vec(),
                },
                put(b"f/25", b"new"),
            ])
            .await
            .unwrap();
        assert_eq!(
            store.scan_records(b"f/", b"g/").unwrap(),
            vec![
                (b"f/25".to_vec(), b"new".to_vec()),
                (b"f/3".to_vec(), b"d".to_vec())
            ]
        );
        assert_eq!(store.get_record(b"g/1").unwrap(), Some(b"e".to_vec()));
        // Balances are not records: a range over their names leaves them alone.
        assert_eq!(store.load_balances().unwrap().get("f/2"), Some(&9));
    }

    /// Each batch moves value between two accounts; a reader must never see half of one.
    pub(crate) async fn batch_is_atomic<S: Store>(store: Arc<S>) {
        store
            .commit(vec![balance("a", 0), balance("b", 0)])
            .await
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !done.load(Ordering::SeqCst) || reads == 0 {
                    let balances = store.load_balances().unwrap();
                    let a = balances.get("a").copied().unwrap_or(0);
                    let b = balances.get("b").copied().unwrap_or(0);
                    assert_eq!(a + b, 0, "saw half a batch: {balances:?}");
                    let record = store.get_record(b"round").unwrap();
                    assert!(record.is_some() || a == 0);
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..=200i64 {
            store
                .commit(vec![
                    balance("a", i),
                    put(b"round", &i.to_be_bytes()),
                    balance("b", -i),
                ])
                .await
                .unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        let balances = store.load_balances().unwrap();
        assert_eq!(
            balances,
            BTreeMap::from([("a".into(), 200), ("b".into(), -200)])
        );
        assert_eq!(
            store.get_record(b"round").unwrap(),
            Some(200i64.to_be_bytes().to_vec())
        );
    }

    /// Many commits in flight at once: each is answered once, and all are visible afterwards.
    pub(crate) async fn concurrent_commits<S: Store>(store: Arc<S>) {
        const TASKS: usize = 64;
        const PER_TASK: usize = 8;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                // Issue every commit before awaiting any, so the writer finds a queue to group.
                let pending: Vec<_> = (0..PER_TASK)
                    .map(|n| {
                        let key = format!("t{t}/n{n}");
                        store.commit(vec![
                            put(key.as_bytes(), &[1]),
                            balance(&format!("acct{t}"), i64::try_from(n).unwrap()),
                        ])
                    })
                    .collect();
                let mut answered = 0;
                for result in futures::future::join_all(pending).await {
                    result.unwrap();
                    answered += 1;
                }
                answered
            }));
        }
        let mut answered = 0;
        for task in tasks {
            answered += task.await.unwrap();
        }
        assert_eq!(answered, TASKS * PER_TASK);
        let balances = store.load_balances().unwrap();
        assert_eq!(balances.len(), TASKS);
        for t in 0..TASKS {
            // Commits from one task land in the order it issued them.
            assert_eq!(
                balances.get(&format!("acct{t}")),
                Some(&i64::try_from(PER_TASK - 1).unwrap())
            );
            for n in 0..PER_TASK {
                let key = format!("t{t}/n{n}");
                assert_eq!(store.get_record(key.as_bytes()).unwrap(), Some(vec![1]));
            }
        }
    }

    /// `open` gives a fresh handle on the same storage; what one handle committed survives it.
    pub(crate) async fn restart<S: Store>(mut open: impl FnMut() -> S) {
        let first = open();
        first
            .commit(vec![
                balance("alice", -7),
                put(b"settle/1", b"done"),
                put(b"gone", b"x"),
            ])
            .await
            .unwrap();
        first.commit(vec![delete_op(b"gone")]).await.unwrap();
        drop(first);

        let second = open();
        assert_eq!(
            second.load_balances().unwrap(),
            BTreeMap::from([("alice".to_owned(), -7)])
        );
        assert_eq!(
            second.get_record(b"settle/1").unwrap(),
            Some(b"done".to_vec())
        );
        assert_eq!(second.get_record(b"gone").unwrap(), None);
        second.commit(vec![balance("alice", 3)]).await.unwrap();
        drop(second);

        let third = open();
        assert_eq!(third.load_balances().unwrap().get("alice"), Some(&3));
    }
}
