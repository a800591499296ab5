//! Links carry packets between this node and a peer. The outgoing half is the [`Link`] trait a
//! PeerAccount sends through; the incoming half delivers [`IncomingPrepare`] messages to that
//! PeerAccount. In-memory links live in [`memory`], BTP/2.0 over WebSocket in [`btp_ws`], ILP over HTTP in
//! [`http`].

pub mod btp_ws;
pub mod http;
pub mod memory;

use crate::messages::{ask, IncomingPrepare, PacketResult};
use actix::{MailboxError, Recipient};
use futures::future::BoxFuture;
use ilp::packet::Prepare;
use std::sync::Arc;
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

/// Hands a Prepare that arrived on a link to its account and runs the whole exchange (routing,
/// balances, the next hop, the commit) in a task of its own. A link that stops waiting (its
/// peer hung up) then cancels nothing: a reservation is always resolved and a Fulfill always
/// booked. Resolves with the answer to send back, or the account's mailbox error.
pub fn deliver(
    account: &Arc<Recipient<IncomingPrepare>>,
    prepare: Prepare,
) -> impl std::future::Future<Output = Result<PacketResult, MailboxError>> + Send + 'static {
    let account = Arc::clone(account);
    let task = tokio::spawn(async move { ask(&account, IncomingPrepare { prepare }).await });
    async move { task.await.unwrap_or(Err(MailboxError::Closed)) }
}

/// The outgoing half of a link.
pub trait Link: Send + Sync + 'static {
    /// Sends `prepare` to the peer and resolves with its answer. Resolves at once with
    /// [`LinkError::Down`] while the link is down (a BTP/2.0-I link whose connection drops
    /// after the send repeats the request on the next connection instead); never hangs past
    /// the Prepare's expiry because the PeerAccount races it against an expiry timer.
    fn send_prepare(&self, prepare: Prepare)
        -> BoxFuture<'static, Result<PacketResult, LinkError>>;

    /// Whether packets can be sent now.
    fn is_up(&self) -> bool;

    /// Requests the peer sent that this link refused (T03) because its BTP/2.0-I memory was
    /// full of requests in progress; 0 for a link without such a memory.
    fn busy_refusals(&self) -> u64 {
        0
    }

    /// Prepares the peer sends on this link go to `account` (this end's PeerAccount). A link
    /// that only sends (a test fake) may ignore it.
    fn attach(&self, account: Recipient<IncomingPrepare>) {
        let _ = account;
    }
}

/// The link of an account whose transport this build cannot open yet (or whose peer is not
/// connected): always down, so its packets are rejected T01 at once instead of hanging.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnconnectedLink;

impl Link for UnconnectedLink {
    fn send_prepare(
        &self,
        _prepare: Prepare,
    ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
        Box::pin(async { Err(LinkError::Down) })
    }

    fn is_up(&self) -> bool {
        false
    }
}
