//! The durable [`Store`] on RocksDB; the only file that names `rocksdb`.
//!
//! Keys: `b/<account>` holds a balance as 8 big-endian bytes (i64), `r/<key>` holds a record.
//! Reads go to the database directly. Writes go through one writer thread fed by a channel: it
//! takes every batch queued so far, writes them as a single `WriteBatch` with a WAL fsync, then
//! answers each waiter (group commit), so one fsync covers many concurrent commits and no actor
//! thread ever blocks on the disk.
//!
//! Short-lived records (the fulfill records of [`crate::replay`]: one per batch of paid packets,
//! deleted by time range some seconds later) live in a column family of their own whose
//! memtable is a vector: an insert is an append, sorted once when the memtable is flushed,
//! where the skip list of the default family costs a dozen key comparisons per insert. Their
//! table files are not compressed: the records are hashes and fulfillments, random bytes.
//! Nothing reads them but the scan at start-up. Which family a record lives in is this file's business only: the
//! [`Store`] functions see one key space.

use super::{Record, Store, StoreError, StoreOp};
use crossbeam_channel::{Receiver, Sender};
use futures::channel::oneshot;
use futures::future::BoxFuture;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, MemtableFactory, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

const BALANCE_PREFIX: &[u8] = b"b/";
const RECORD_PREFIX: &[u8] = b"r/";

/// Size of one memtable of the short-lived records' family (two at most).
const SHORT_LIVED_MEMTABLE_BYTES: usize = 16 << 20;
/// Size of one memtable of the default family: balances and long-lived records.
const MEMTABLE_BYTES: usize = 4 << 20;

/// The column family of short-lived records, and the record key prefixes that go there.
const SHORT_LIVED: &str = "short-lived";
const SHORT_LIVED_PREFIXES: &[&[u8]] = &[crate::replay::PREFIX];

fn is_short_lived(key: &[u8]) -> bool {
    SHORT_LIVED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// How the writer thread commits (`[store]` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// fsync the WAL with every group before answering its waiters.
    pub sync: bool,
    /// Most commits written as one batch; bounds the memory a flood of commits can take.
    pub max_group: usize,
    /// Longest the first commit of a group waits for companions (zero: take what is queued).
    pub max_delay: std::time::Duration,
    /// Most commits queued for the writer thread. A caller that finds the queue full waits
    /// for room (the disk is behind; the node slows down with it) instead of queueing without
    /// bound.
    pub max_queued: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            sync: true,
            max_group: 256,
            max_delay: std::time::Duration::ZERO,
            max_queued: 4096,
        }
    }
}

impl WriterOptions {
    pub fn from_config(config: &ilp::config::StoreConfig) -> Self {
        WriterOptions {
            sync: config.sync,
            max_group: usize::try_from(config.group_commit_max_batch)
                .unwrap_or(usize::MAX)
                .max(1),
            max_delay: std::time::Duration::from_micros(config.group_commit_max_delay_us),
            ..WriterOptions::default()
        }
    }
}

/// One `commit()` waiting for the writer thread.
struct Request {
    ops: Vec<StoreOp>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A RocksDB-backed store. Dropping it (or [`RocksStore::close`]) lets the writer thread finish
/// the batches already queued, joins it, and closes the database.
pub struct RocksStore {
    db: Arc<DB>,
    // `Option` so shutdown can drop the sender (ending the writer loop) before joining.
    requests: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens (creating if missing) the database at `path` and starts its writer thread, with
    /// the default writer options (fsync every group).
    pub fn open(path: impl AsRef<Path>) -> Result<RocksStore, StoreError> {
        Self::open_with(path, WriterOptions::default())
    }

    /// [`RocksStore::open`] with explicit writer options.
    pub fn open_with(
        path: impl AsRef<Path>,
        writer_options: WriterOptions,
    ) -> Result<RocksStore, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // One writer thread: nothing to gain from concurrent inserts, and the vector memtable
        // does not support them.
        options.set_allow_concurrent_memtable_write(false);
        // Two memtables per family bound the memory they take; flushes keep the WAL short.
        options.set_write_buffer_size(MEMTABLE_BYTES);
        options.set_max_write_buffer_number(2);
        // Reused WAL files: appending to blocks already written lets each fsync skip the inode
        // update (size, extents) a fresh file needs. RocksDB 7.8 recycles only with this
        // recovery mode: a record torn by a crash at the end of the live WAL is dropped (it was
        // never acknowledged, its fsync had not returned), corruption anywhere else refuses to
        // open. Records left over from a file's previous use carry an older log number and end
        // the replay. The crash test kills the node under load and checks every unit.
        options.set_recycle_log_file_num(4);
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        let mut short_lived = options.clone();
        short_lived.set_write_buffer_size(SHORT_LIVED_MEMTABLE_BYTES);
        short_lived.set_memtable_factory(MemtableFactory::Vector);
        // Random bytes: compression would cost CPU at every flush and compaction, for nothing.
        short_lived.set_compression_type(rocksdb::DBCompressionType::None);
        let families = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, options.clone()),
            ColumnFamilyDescriptor::new(SHORT_LIVED, short_lived),
        ];
        let db = DB::open_cf_descriptors(&options, path.as_ref(), families).map_err(io_error)?;
        move_short_lived_records(&db)?;
        let db = Arc::new(db);
        let (tx, rx) = crossbeam_channel::bounded::<Request>(writer_options.max_queued.max(1));
        let writer_db = Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("rocks-writer".into())
            .spawn(move || run_writer(&writer_db, &rx, writer_options))
            .map_err(|e| StoreError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(RocksStore {
            db,
            requests: Some(tx),
            writer: Some(writer),
        })
    }

    /// Waits until every commit queued so far has landed, then writes the memtables to table
    /// files (a shutdown step: the next start replays no WAL).
    pub async fn flush(&self) -> Result<(), StoreError> {
        // Commits are written in order, so an empty one lands after everything queued.
        self.commit(Vec::new()).await?;
        self.db.flush_cf(short_lived(&self.db)?).map_err(io_error)?;
        self.db.flush().map_err(io_error)
    }

    /// Waits for queued writes to land, stops the writer thread and closes the database.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        drop(self.requests.take());
        match self.writer.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| StoreError::Io("the writer thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        // A failure here has no one left to report to; close() returns it instead.
        let _ = self.shutdown();
    }
}

impl Store for RocksStore {
    fn load_balances(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut balances = BTreeMap::new();
        // One iterator reads one implicit snapshot, so a concurrent batch is seen whole or not at all.
        let iter = self
            .db
            .iterator(IteratorMode::From(BALANCE_PREFIX, Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(io_error)?;
            let Some(account) = key.strip_prefix(BALANCE_PREFIX) else {
                break;
            };
            let account = std::str::from_utf8(account)
                .map_err(|_| StoreError::Corrupt("an account id is not UTF-8".into()))?;
            let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "balance of {account:?} has {} bytes, not 8",
                    value.len()
                ))
            })?;
            balances.insert(account.to_owned(), i64::from_be_bytes(bytes));
        }
        Ok(balances)
    }

    fn get_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let family = family_of(&self.db, key)?;
        self.db.get_cf(family, record_key(key)).map_err(io_error)
    }

    fn scan_records(&self, from: &[u8], to: &[u8]) -> Result<Vec<Record>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        // Both families, read at one snapshot, merged into key order.
        let snapshot = self.db.snapshot();
        let mut records = Vec::new();
        for family in [default_family(&self.db)?, short_lived(&self.db)?] {
            let mut read = ReadOptions::default();
            read.set_iterate_upper_bound(record_key(to));
            read.set_snapshot(&snapshot);
            let start = record_key(from);
            let iter = self.db.iterator_cf_opt(
                family,
                read,
                IteratorMode::From(&start, Direction::Forward),
            );
            for item in iter {
                let (key, value) = item.map_err(io_error)?;
                let Some(key) = key.strip_prefix(RECORD_PREFIX) else {
                    break;
                };
                records.push((key.to_vec(), value.to_vec()));
            }
        }
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(records)
    }

    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>> {
        let (reply, answer) = oneshot::channel();
        // Sent now, not when the future is first polled, so commits land in call order.
        let sent = match &self.requests {
            Some(requests) => requests.send(Request { ops, reply }).is_ok(),
            None => false,
        };
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            // A dropped reply means the writer thread is gone.
            answer.await.unwrap_or(Err(StoreError::Closed))
        })
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        // Hard links to the immutable table files plus a copy of the live ones: consistent
        // at one sequence number while the writer thread keeps committing.
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(io_error)
    }
}

/// The writer loop: ends when every sender is gone and the queue is drained.
fn run_writer(db: &DB, requests: &Receiver<Request>, writer: WriterOptions) {
    let mut options = WriteOptions::default();
    options.set_sync(writer.sync);
    let (Ok(default), Ok(short)) = (default_family(db), short_lived(db)) else {
        // Checked at open; without its families the writer fails every commit.
        for request in requests {
            let _ = request
                .reply
                .send(Err(StoreError::Io("a column family is missing".into())));
        }
        return;
    };
    let family = |key: &[u8]| if is_short_lived(key) { short } else { default };
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        group.extend(requests.try_iter().take(writer.max_group - 1));
        if !writer.max_delay.is_zero() && group.len() < writer.max_group {
            let deadline = std::time::Instant::now() + writer.max_delay;
            while group.len() < writer.max_group {
                match requests.recv_deadline(deadline) {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
        }
        let mut batch = WriteBatch::default();
        let mut waiters = Vec::with_capacity(group.len());
        // A busy account's balance is set by many commits of one group: only its last value
        // is written (balances and records are separate key spaces, so moving the balances to
        // the end of the batch changes nothing a reader of the whole batch can see).
        let mut balances: HashMap<crate::messages::AccountId, i64> = HashMap::new();
        for request in group {
            for op in request.ops {
                match op {
                    StoreOp::SetBalance { account, balance } => {
                        balances.insert(account, balance);
                    }
                    StoreOp::PutRecord { key, value } => {
                        batch.put_cf(family(&key), record_key(&key), value);
                    }
                    StoreOp::DeleteRecord { key } => {
                        batch.delete_cf(family(&key), record_key(&key));
                    }
                    StoreOp::DeleteRange { from, to } => {
                        // RocksDB wants from <= to; an empty range deletes nothing anyway. A
                        // range within one short-lived prefix touches only that family.
                        if from < to {
                            let only_short = SHORT_LIVED_PREFIXES
                                .iter()
                                .any(|p| from.starts_with(p) && to.starts_with(p));
                            let families: &[&ColumnFamily] = if only_short {
                                &[short]
                            } else {
                                &[short, default]
                            };
                            for f in families {
                                batch.delete_range_cf(*f, record_key(&from), record_key(&to));
                            }
                        }
                    }
                }
            }
            waiters.push(request.reply);
        }
        for (account, balance) in balances {
            batch.put(balance_key(&account), balance.to_be_bytes());
        }
        let result = db.write_opt(batch, &options).map_err(io_error);
        for waiter in waiters {
            // The caller may have dropped its future; the write stands regardless.
            let _ = waiter.send(result.clone());
        }
    }
}

fn short_lived(db: &DB) -> Result<&ColumnFamily, StoreError> {
    db.cf_handle(SHORT_LIVED)
        .ok_or_else(|| StoreError::Corrupt(format!("no column family {SHORT_LIVED:?}")))
}

fn default_family(db: &DB) -> Result<&ColumnFamily, StoreError> {
    db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
        .ok_or_else(|| StoreError::Corrupt("no default column family".into()))
}

fn family_of<'a>(db: &'a DB, key: &[u8]) -> Result<&'a ColumnFamily, StoreError> {
    if is_short_lived(key) {
        short_lived(db)
    } else {
        default_family(db)
    }
}

/// A database written before short-lived records had a family of their own keeps them in the
/// default one: move them over (one batch) so a start-up scan and range deletes see them.
fn move_short_lived_records(db: &DB) -> Result<(), StoreError> {
    let short = short_lived(db)?;
    let default = default_family(db)?;
    let mut batch = WriteBatch::default();
    for prefix in SHORT_LIVED_PREFIXES {
        let start = record_key(prefix);
        for item in db.iterator_cf(default, IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item.map_err(io_error)?;
            if !key.starts_with(&start) {
                break;
            }
            batch.put_cf(short, &key, &value);
            batch.delete_cf(default, &key);
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let mut options = WriteOptions::default();
    options.set_sync(true);
    db.write_opt(batch, &options).map_err(io_error)
}

fn balance_key(account: &str) -> Vec<u8> {
    [BALANCE_PREFIX, account.as_bytes()].concat()
}

fn record_key(key: &[u8]) -> Vec<u8> {
    [RECORD_PREFIX, key].concat()
}

fn io_error(e: rocksdb::Error) -> StoreError {
    StoreError::Io(e.into_string())
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[tokio::test]
    async fn ranges() {
        let dir = temp();
        conformance::ranges(&RocksStore::open(dir.path()).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_unsynced_with_a_group_delay() {
        let dir = temp();
        let options = WriterOptions {
            sync: false,
            max_group: 7,
            max_delay: std::time::Duration::from_micros(200),
            max_queued: 3,
        };
        conformance::concurrent_commits(Arc::new(
            RocksStore::open_with(dir.path(), options).unwrap(),
        ))
        .await;
    }

    #[tokio::test]
    async fn balances_round_trip() {
        let dir = temp();
        conformance::balances_round_trip(&RocksStore::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn records_round_trip() {
        let dir = temp();
        conformance::records_round_trip(&RocksStore::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn delete() {
        let dir = temp();
        conformance::delete(&RocksStore::open(dir.path()).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_is_atomic() {
        let dir = temp();
        conformance::batch_is_atomic(Arc::new(RocksStore::open(dir.path()).unwrap())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits() {
        let dir = temp();
        conformance::concurrent_commits(Arc::new(RocksStore::open(dir.path()).unwrap())).await;
    }

    #[tokio::test]
    async fn restart() {
        let dir = temp();
        conformance::restart(|| RocksStore::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn commit_after_close_is_closed_not_a_hang() {
        let dir = temp();
        let mut store = RocksStore::open(dir.path()).unwrap();
        store.shutdown().unwrap();
        let result = store
            .commit(vec![StoreOp::DeleteRecord { key: vec![1] }])
            .await;
        assert_eq!(result, Err(StoreError::Closed));
    }

    #[tokio::test]
    async fn flush_waits_for_queued_writes() {
        let dir = temp();
        let store = RocksStore::open(dir.path()).unwrap();
        let pending = store.commit(vec![StoreOp::SetBalance {
            account: "a".into(),
            balance: 5,
        }]);
        store.flush().await.unwrap();
        assert_eq!(futures::FutureExt::now_or_never(pending), Some(Ok(())));
        drop(store);
        let store = RocksStore::open(dir.path()).unwrap();
        assert_eq!(store.load_balances().unwrap().get("a"), Some(&5));
    }

    #[tokio::test]
    async fn close_waits_for_queued_writes() {
        let dir = temp();
        let store = RocksStore::open(dir.path()).unwrap();
        let pending = store.commit(vec![StoreOp::PutRecord {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }]);
        store.close().unwrap();
        assert_eq!(pending.await, Ok(()));
        let store = RocksStore::open(dir.path()).unwrap();
        assert_eq!(store.get_record(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test]
    async fn a_second_open_of_a_locked_path_is_an_io_error() {
        let dir = temp();
        let _first = RocksStore::open(dir.path()).unwrap();
        assert!(matches!(
            RocksStore::open(dir.path()),
            Err(StoreError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_malformed_balance_is_corrupt_not_a_panic() {
        let dir = temp();
        let store = RocksStore::open(dir.path()).unwrap();
        store.db.put(b"b/alice", b"short").unwrap();
        assert!(matches!(store.load_balances(), Err(StoreError::Corrupt(_))));
        store.db.delete(b"b/alice").unwrap();
        store.db.put(b"b/\xff", 1i64.to_be_bytes()).unwrap();
        assert!(matches!(store.load_balances(), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn checkpoint_is_a_consistent_openable_copy() {
        let dir = temp();
        let store = RocksStore::open(dir.path().join("db")).unwrap();
        store
            .commit(vec![
                StoreOp::SetBalance {
                    account: "alice".into(),
                    balance: -7,
                },
                StoreOp::PutRecord {
                    key: b"settle/1".to_vec(),
                    value: b"x".to_vec(),
                },
            ])
            .await
            .unwrap();
        let snapshot = dir.path().join("snap");
        store.checkpoint(&snapshot).unwrap();
        // Later commits do not reach the snapshot.
        store
            .commit(vec![StoreOp::SetBalance {
                account: "alice".into(),
                balance: 100,
            }])
            .await
            .unwrap();
        // A second checkpoint into an existing directory is refused.
        assert!(matches!(
            store.checkpoint(&snapshot),
            Err(StoreError::Io(_))
        ));
        let copy = RocksStore::open(&snapshot).unwrap();
        assert_eq!(
            copy.load_balances().unwrap(),
            BTreeMap::from([("alice".to_owned(), -7)])
        );
        assert_eq!(copy.get_record(b"settle/1").unwrap(), Some(b"x".to_vec()));
        assert_eq!(store.load_balances().unwrap().get("alice"), Some(&100));
    }

    /// Short-lived records (their own column family) and others read as one key space.
    #[tokio::test]
    async fn short_lived_records_scan_and_delete_with_the_others() {
        let dir = temp();
        let short = |n: u8| [crate::replay::PREFIX, &[n]].concat();
        let put = |key: Vec<u8>| StoreOp::PutRecord {
            key,
            value: b"v".to_vec(),
        };
        {
            let store = RocksStore::open(dir.path()).unwrap();
            store
                .commit(vec![
                    put(b"e/1".to_vec()),
                    put(short(2)),
                    put(short(1)),
                    put(b"g/1".to_vec()),
                ])
                .await
                .unwrap();
            let keys: Vec<Vec<u8>> = store
                .scan_records(b"e/", b"h")
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(
                keys,
                vec![b"e/1".to_vec(), short(1), short(2), b"g/1".to_vec()]
            );
            assert_eq!(store.get_record(&short(1)).unwrap(), Some(b"v".to_vec()));
            store
                .commit(vec![StoreOp::DeleteRange {
                    from: short(0),
                    to: short(2),
                }])
                .await
                .unwrap();
            store.close().unwrap();
        }
        let store = RocksStore::open(dir.path()).unwrap();
        let keys: Vec<Vec<u8>> = store
            .scan_records(b"", b"z")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"e/1".to_vec(), short(2), b"g/1".to_vec()]);
        // A range over both families deletes in both.
        store
            .commit(vec![StoreOp::DeleteRange {
                from: b"a".to_vec(),
                to: b"z".to_vec(),
            }])
            .await
            .unwrap();
        assert_eq!(store.scan_records(b"", b"z").unwrap(), Vec::new());
    }

    /// A database from before the short-lived family kept fulfill records in the default one:
    /// they are moved on open and read back the same.
    #[tokio::test]
    async fn short_lived_records_of_an_older_layout_are_moved_on_open() {
        let dir = temp();
        let key = [crate::replay::PREFIX, b"old"].concat();
        {
            let mut options = Options::default();
            options.create_if_missing(true);
            let db = DB::open(&options, dir.path()).unwrap();
            db.put(record_key(&key), b"fulfill").unwrap();
            db.put(record_key(b"settle/1"), b"s").unwrap();
        }
        let store = RocksStore::open(dir.path()).unwrap();
        assert_eq!(
            store.scan_records(b"", b"z").unwrap(),
            vec![
                (key.clone(), b"fulfill".to_vec()),
                (b"settle/1".to_vec(), b"s".to_vec())
            ]
        );
        let default = default_family(&store.db).unwrap();
        assert_eq!(store.db.get_cf(default, record_key(&key)).unwrap(), None);
        assert_eq!(store.get_record(&key).unwrap(), Some(b"fulfill".to_vec()));
    }

    #[tokio::test]
    async fn records_and_balances_do_not_alias() {
        let dir = temp();
        let store = RocksStore::open(dir.path()).unwrap();
        store
            .commit(vec![
                StoreOp::SetBalance {
                    account: "x".into(),
                    balance: 7,
                },
                StoreOp::PutRecord {
                    key: b"b/y".to_vec(),
                    value: 9i64.to_be_bytes().to_vec(),
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            store.load_balances().unwrap(),
            BTreeMap::from([("x".to_owned(), 7)])
        );
        assert_eq!(store.get_record(b"x").unwrap(), None);
    }
}
