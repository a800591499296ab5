//! In-memory links between two PeerAccounts in one process, for tests and simulations. Both ends
//! share a switch (up/down) and a delay, which fault-injection tests turn.

use super::{Link, LinkError};
use crate::messages::{IncomingPrepare, PacketResult};
use actix::Recipient;
use futures::future::BoxFuture;
use ilp::packet::Prepare;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, Default)]
struct Shared {
    down: AtomicBool,
    delay_ms: AtomicU64,
}

/// One end of an in-memory link.
#[derive(Clone)]
pub struct MemoryLink {
    shared: Arc<Shared>,
    /// Where this end delivers: the other end's PeerAccount.
    remote: Arc<RwLock<Option<Arc<Recipient<IncomingPrepare>>>>>,
    /// Where the other end delivers: this end's PeerAccount.
    local: Arc<RwLock<Option<Arc<Recipient<IncomingPrepare>>>>>,
}

impl MemoryLink {
    /// Two connected ends. Attach each end's PeerAccount with [`MemoryLink::attach`].
    pub fn pair() -> (MemoryLink, MemoryLink) {
        let shared = Arc::new(Shared::default());
        let a_in = Arc::new(RwLock::new(None));
        let b_in = Arc::new(RwLock::new(None));
        (
            MemoryLink {
                shared: shared.clone(),
                remote: b_in.clone(),
                local: a_in.clone(),
            },
            MemoryLink {
                shared,
                remote: a_in,
                local: b_in,
            },
        )
    }

    /// Takes the link down (both directions) or brings it back.
    pub fn set_up(&self, up: bool) {
        self.shared.down.store(!up, Ordering::SeqCst);
    }

    /// Every packet waits this long before delivery (a slow peer); 0 for none.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Link for MemoryLink {
    fn send_prepare(
        &self,
        prepare: Prepare,
    ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
        let target = match self.remote.read() {
            Ok(slot) if self.is_up() => slot.clone(),
            _ => None,
        };
        let delay = self.shared.delay_ms.load(Ordering::SeqCst);
        let shared = self.shared.clone();
        Box::pin(async move {
            let target = target.ok_or(LinkError::Down)?;
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if shared.down.load(Ordering::SeqCst) {
                    return Err(LinkError::Down);
                }
            }
            super::deliver(&target, prepare)
                .await
                .map_err(|_| LinkError::Down)
        })
    }

    fn is_up(&self) -> bool {
        !self.shared.down.load(Ordering::SeqCst)
    }

    /// Packets sent by the other end are delivered to `account` (this end's PeerAccount).
    fn attach(&self, account: Recipient<IncomingPrepare>) {
        if let Ok(mut slot) = self.local.write() {
            *slot = Some(Arc::new(account));
        }
    }
}
