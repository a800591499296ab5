//! Links carry packets between this node and a peer. The outgoing half is the [`Link`] trait a
//! PeerAccount sends through; the incoming half delivers [`IncomingPrepare`] messages to that
//! PeerAccount. In-memory links live in [`memory`]; BTP and ILP-over-HTTP come later.

pub mod memory;

use crate::messages::PacketResult;
use futures::future::BoxFuture;
use ilp::packet::Prepare;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// Not connected: the packet never left (the account rejects it T01 at once).
    #[error("link is down")]
    Down,
    /// The peer answered with something that is not a Fulfill or Reject.
    #[error("peer sent an invalid response: {0}")]
    Protocol(String),
}

/// The outgoing half of a link.
pub trait Link: Send + Sync + 'static {
    /// Sends `prepare` to the peer and resolves with its answer. Resolves at once with
    /// [`LinkError::Down`] while the link is down; never hangs past the Prepare's expiry because
    /// the PeerAccount races it against an expiry timer.
    fn send_prepare(&self, prepare: Prepare)
        -> BoxFuture<'static, Result<PacketResult, LinkError>>;

    /// Whether packets can be sent now.
    fn is_up(&self) -> bool;
}
