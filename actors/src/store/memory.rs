//! The in-memory [`Store`]: the reference the RocksDB store is tested against, and the store of
//! tests and simulations. A clone shares the same state, so a "restarted" actor sees what the
//! previous instance committed.

use super::{Record, Store, StoreError, StoreOp};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    balances: BTreeMap<String, i64>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records have keys starting with `prefix` (tests and the admin API).
    pub fn count_records(&self, prefix: &[u8]) -> usize {
        self.with(|s| s.records.keys().filter(|k| k.starts_with(prefix)).count())
            .unwrap_or(0)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| StoreError::Io("memory store lock poisoned".into()))?;
        Ok(f(&mut guard))
    }
}

impl Store for MemoryStore {
    fn load_balances(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        self.with(|s| s.balances.clone())
    }

    fn get_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|s| s.records.get(key).cloned())
    }

    fn scan_records(&self, from: &[u8], to: &[u8]) -> Result<Vec<Record>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.with(|s| {
            s.records
                .range::<[u8], _>((
                    std::ops::Bound::Included(from),
                    std::ops::Bound::Excluded(to),
                ))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>> {
        let result = self.with(|s| {
            for op in ops {
                match op {
                    StoreOp::SetBalance { account, balance } => {
                        s.balances.insert(account.to_string(), balance);
                    }
                    StoreOp::PutRecord { key, value } => {
                        s.records.insert(key, value);
                    }
                    StoreOp::DeleteRecord { key } => {
                        s.records.remove(&key);
                    }
                    StoreOp::DeleteRange { from, to } => {
                        if from < to {
                            let doomed: Vec<Vec<u8>> =
                                s.records.range(from..to).map(|(k, _)| k.clone()).collect();
                            for key in doomed {
                                s.records.remove(&key);
                            }
                        }
                    }
                }
            }
        });
        Box::pin(async move { result })
    }

    fn checkpoint(&self, _dir: &Path) -> Result<(), StoreError> {
        Err(StoreError::NoSnapshots("the memory store has no snapshots"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    #[tokio::test]
    async fn conformance_ranges() {
        conformance::ranges(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn conformance_balances_round_trip() {
        conformance::balances_round_trip(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn conformance_records_round_trip() {
        conformance::records_round_trip(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn conformance_delete() {
        conformance::delete(&MemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_batch_is_atomic() {
        conformance::batch_is_atomic(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_concurrent_commits() {
        conformance::concurrent_commits(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn conformance_restart() {
        // A clone is a fresh handle on the same state, as a reopened database is.
        let storage = MemoryStore::new();
        conformance::restart(|| storage.clone()).await;
    }

    #[test]
    fn memory_store_has_no_snapshots() {
        let dir = std::env::temp_dir().join("ilp-memory-store-no-snapshot");
        assert_eq!(
            MemoryStore::new().checkpoint(&dir),
            Err(StoreError::NoSnapshots("the memory store has no snapshots"))
        );
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn commits_are_visible_to_clones() {
        let a = MemoryStore::new();
        let b = a.clone();
        a.commit(vec![
            StoreOp::SetBalance {
                account: "alice".into(),
                balance: -5,
            },
            StoreOp::PutRecord {
                key: b"settle/1".to_vec(),
                value: b"10".to_vec(),
            },
        ])
        .await
        .unwrap();
        assert_eq!(b.load_balances().unwrap().get("alice"), Some(&-5));
        assert_eq!(b.get_record(b"settle/1").unwrap(), Some(b"10".to_vec()));
        assert_eq!(b.count_records(b"settle/"), 1);
        assert_eq!(b.count_records(b"other/"), 0);
        b.commit(vec![StoreOp::DeleteRecord {
            key: b"settle/1".to_vec(),
        }])
        .await
        .unwrap();
        assert_eq!(a.get_record(b"settle/1").unwrap(), None);
    }
}
