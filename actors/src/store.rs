//! What the node keeps across restarts: committed balances and keyed records (settlement ids,
//! idempotency entries). [`Store`] is the one interface; [`memory::MemoryStore`] implements it
//! in memory (tests, simulations, `store.backend = "memory"`); RocksDB implements it for
//! durable deployments.

pub mod memory;

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store is closed")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// The committed balance of an account.
    SetBalance {
        account: String,
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
}

/// Persistent state of a node. Implementations are shared between actors (`Arc<dyn Store>`).
pub trait Store: Send + Sync + 'static {
    /// Every committed balance, by account id.
    fn load_balances(&self) -> Result<BTreeMap<String, i64>, StoreError>;

    /// A record, if present.
    fn get_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `ops` atomically; resolves once they are durable. Implementations may group
    /// concurrent batches into one write (group commit), so callers never block a thread.
    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>>;
}
