//! The typed messages actors exchange. A Prepare goes in, a `Result<Fulfill, Reject>` comes
//! out; nothing crosses an actor boundary untyped. Actors are wired with `Recipient<M>` of these
//! messages, so a test can put a fake behind any of them.

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, MailboxError, Message};
use futures::future::BoxFuture;
use ilp::packet::{Fulfill, Prepare, Reject};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// An account's id as written in `config.toml` (`[accounts.<id>]`); cheap to clone.
pub type AccountId = Arc<str>;

/// The configured static routes as (prefix, account), in file order: the Router installs them
/// and the RouteBroadcaster advertises them, so both read them through this one conversion.
pub fn configured_static_routes(config: &ilp::config::Config) -> Vec<(String, AccountId)> {
    config
        .routing
        .static_routes
        .iter()
        .map(|r| (r.prefix.clone(), AccountId::from(r.account.as_str())))
        .collect()
}

/// What every packet exchange resolves to.
pub type PacketResult = Result<Fulfill, Reject>;

/// An actor's answer to a message on the packet path: the result, or the rest of the exchange
/// for the sender to await in its own task.
///
/// The handler reads and changes the actor's state; what is left (waiting for another actor or
/// the link) needs none of it. actix would run a `ResponseFuture` as a task of its own, so a
/// packet crossing four actors cost four spawned tasks; a continuation costs none. The task
/// that awaits it must run to its end: links hand every incoming Prepare to
/// [`crate::link::deliver`], which gives it a task no peer can cancel (a BTP connection hands
/// its exchanges to one task of its own that outlives it).
#[must_use = "a Reply does nothing unless awaited"]
pub enum Reply<T> {
    Ready(Option<T>),
    Later(BoxFuture<'static, T>),
}

impl<T> Reply<T> {
    pub fn ready(value: T) -> Self {
        Reply::Ready(Some(value))
    }

    pub fn later(rest: impl Future<Output = T> + Send + 'static) -> Self {
        Reply::Later(Box::pin(rest))
    }
}

// The value is never pinned: it is only moved out once ready.
impl<T> Unpin for Reply<T> {}

impl<T> Future for Reply<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Reply::Ready(value) => Poll::Ready(value.take().expect("Reply polled after it ended")),
            Reply::Later(rest) => rest.as_mut().poll(cx),
        }
    }
}

impl<A, M, T> MessageResponse<A, M> for Reply<T>
where
    A: Actor,
    M: Message<Result = Reply<T>>,
    T: 'static,
{
    fn handle(self, _: &mut A::Context, tx: Option<OneshotSender<Reply<T>>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Sends a message answered with a [`Reply`] and awaits the whole answer: the actor's handler,
/// then its continuation, in the caller's task.
pub async fn ask<M, T>(to: &actix::Recipient<M>, msg: M) -> Result<T, MailboxError>
where
    M: Message<Result = Reply<T>> + Send + 'static,
    T: Send + 'static,
{
    Ok(to.send(msg).await?.await)
}

/// A Prepare that arrived on an account's link (link → that account's PeerAccount).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<PacketResult>")]
pub struct IncomingPrepare {
    pub prepare: Prepare,
}

/// A Prepare that passed the incoming account's policies, to be routed (PeerAccount → Router).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<PacketResult>")]
pub struct ForwardPrepare {
    pub from: AccountId,
    pub prepare: Prepare,
    /// The node's own payment that sent it from the local account `from` ([`OriginatePrepare`]).
    pub origin: Option<AccountId>,
}

/// A Prepare of one of the node's own payments, from a local account (Payer → that account's
/// PeerAccount): checked as a child's Prepare would be, and `payment`'s total sent is kept
/// durably with each debit.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<PacketResult>")]
pub struct OriginatePrepare {
    pub prepare: Prepare,
    pub payment: AccountId,
}

/// A Prepare to send out over an account's link (Router → PeerAccount of the next hop).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<PacketResult>")]
pub struct SendPrepare {
    pub prepare: Prepare,
}

/// A Prepare addressed to one of the node's own protocols (`peer.route.*`, `peer.settle`),
/// handed by the Router to the actor that speaks it (RouteBroadcaster, SettlementEngine).
#[derive(Debug, Clone, Message)]
#[rtype(result = "PacketResult")]
pub struct HandlePeerProtocol {
    pub from: AccountId,
    pub prepare: Prepare,
}

// ---- BalanceKeeper --------------------------------------------------------------------------

/// Identifies one reservation made by [`ReservePacket`]; unique for the node's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u64);

/// Reserve the balance effects of a packet being forwarded from `from` (receiving
/// `incoming_amount`) to `to` (sending `outgoing_amount`), checking both accounts' limits.
/// Either account may be absent (a locally originated or locally terminated packet).
/// Refused with the limit that would be crossed (its `code()` is T04).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ReservationId, ilp::policy::balance::BalanceError>")]
pub struct ReservePacket {
    pub incoming: Option<(AccountId, u64)>,
    pub outgoing: Option<(AccountId, u64)>,
}

/// Resolve a reservation: commit it on a Fulfill (resolves once the new balances are durable
/// in the store, so the Fulfill may then be relayed), roll it back on a Reject or expiry.
/// A reservation the keeper no longer knows (it restarted since) is still applied on commit,
/// from the amounts given here, and ignored on rollback.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<Result<(), crate::store::StoreError>>")]
pub struct ResolvePacket {
    pub id: ReservationId,
    pub incoming: Option<(AccountId, u64)>,
    pub outgoing: Option<(AccountId, u64)>,
    pub fulfilled: bool,
    /// Written in the same batch as the balances of a fulfilled packet (the durable fulfill
    /// record of [`crate::replay`]); ignored on a Reject or when no balance changes.
    pub record: Option<crate::replay::FulfillRecord>,
    /// Money a local account received: its event and its connection's totals are written in
    /// the same batch ([`crate::payment_log`]); ignored on a Reject.
    pub received: Option<crate::payment_log::Received>,
    /// A fulfilled packet of one of the node's own payments: the payment's id and what it sent
    /// (source units), added to its durable total in the same batch ([`crate::payment_log`]).
    pub sent: Option<(AccountId, u64)>,
}

/// A local account's payment event that moves no money (a sender closed its connection with a
/// packet that carried none): written in the keeper's next batch.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RecordReceived(pub crate::payment_log::Received);

/// A paid HTTP API's request takes `price` from `token`'s balance on the local account
/// `account` (paid proxy → BalanceKeeper): answered with the balance left once that is durable,
/// or refused with the balance that falls short (nothing taken). Serialized by the keeper, so
/// concurrent requests with one token never spend more than it holds.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<Result<u64, TokenSpendError>>")]
pub struct SpendToken {
    pub account: AccountId,
    /// The token's id ([`ilp::paid_http::PayToken::id`]).
    pub token: String,
    pub price: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSpendError {
    #[error("the token's balance {balance} is less than the price")]
    Short { balance: u64 },
    #[error("the token's balance could not be recorded: {0}")]
    Store(String),
}

/// Gives `amount` back to `token` after a request it paid for was not served (paid proxy →
/// BalanceKeeper): the balance then, once durable.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<Result<u64, TokenSpendError>>")]
pub struct RefundToken {
    pub account: AccountId,
    pub token: String,
    pub amount: u64,
}

/// An operator expires a paid HTTP token (admin → BalanceKeeper): what it held counts as spent,
/// durably; answered with that amount.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply<Result<u64, TokenSpendError>>")]
pub struct ExpireToken {
    pub account: AccountId,
    pub token: String,
}

/// One paid HTTP token's balance on `account` (0 when never paid for).
#[derive(Debug, Clone, Message)]
#[rtype(result = "u64")]
pub struct TokenBalance {
    pub account: AccountId,
    pub token: String,
}

/// `account`'s paid HTTP tokens: each with its balance, and what they spent.
#[derive(Debug, Clone, Message)]
#[rtype(result = "(Vec<(String, u64)>, u64)")]
pub struct GetTokens {
    pub account: AccountId,
}

/// An outgoing payment of a local account ended: its event joins the account's log in the
/// keeper's next batch (Payer → BalanceKeeper).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RecordSent(pub crate::payment_log::Sent);

/// The balance of an account as the keeper sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BalanceSnapshot {
    /// Committed balance; positive when the peer owes us (JS connector convention).
    pub balance: i64,
    /// Sum of incoming Prepares reserved and not yet resolved.
    pub pending_incoming: u64,
    /// Sum of outgoing Prepares reserved and not yet resolved.
    pub pending_outgoing: u64,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<BalanceSnapshot>")]
pub struct GetBalance {
    pub account: AccountId,
}

/// Direction of a settlement as seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementDirection {
    /// We paid the peer: our balance with it goes up by the amount.
    Sent,
    /// The peer paid us: our balance with it goes down by the amount.
    Received,
}

/// Apply a settlement to an account's balance exactly once per `settlement_id`, durably.
/// Resolves `Ok(true)` when applied now, `Ok(false)` when that id was applied before.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<bool, crate::store::StoreError>")]
pub struct ApplySettlement {
    pub account: AccountId,
    pub settlement_id: [u8; 16],
    pub amount: u64,
    pub direction: SettlementDirection,
    /// Further records written in the same batch as the balance (e.g. what an RFC 38
    /// settlement must keep with it); not written when the id was applied before.
    pub also: Vec<crate::store::StoreOp>,
}

/// How much to settle with `account` now, reckoned on its committed balance: `settle_to -
/// balance` when it is below the settle threshold (or below `settle_to` at all, with
/// `force`). A request the keeper reported earlier is done with either way; when an amount is
/// returned the keeper counts it as asked for, until a settlement we send is applied.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<u64>")]
pub struct ReckonSettlement {
    pub account: AccountId,
    pub force: bool,
}

/// Event: a committed balance crossed the account's settle threshold; settling `amount` brings
/// it to `settle_to` (BalanceKeeper → SettlementEngine).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SettleThresholdCrossed {
    pub account: AccountId,
    pub amount: u64,
    /// The last settlement we sent that the keeper had applied to this account when it
    /// reckoned `amount` (since the keeper started). The engine drops a request reckoned
    /// before the settlement it is booking, which that settlement already covers.
    pub after: Option<[u8; 16]>,
}

// ---- Router ---------------------------------------------------------------------------------

/// Replace the next hop for `prefix` (`Some(account)`) or remove it (`None`), as the
/// RouteBroadcaster's route selection decided (RouteBroadcaster → Router).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ApplyRouteUpdate {
    pub changes: Vec<(String, Option<AccountId>)>,
}

/// The node's ILP address became known or changed (IL-DCP from a parent, or config).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetNodeAddress {
    pub address: ilp::packet::Address,
}

// ---- Supervision and fault injection --------------------------------------------------------

/// Stop the actor as if it had failed; its supervisor restarts it (after a backoff when it
/// keeps failing) and it reloads its state. Used by operators' tooling and fault-injection tests.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Crash;

// ---- Admin API (admin.rs) -------------------------------------------------------------------

/// Move an account's committed balance by `adjust` (an operator's correction), durably, like a
/// settlement: resolves with the new balance once it is in the store (admin → BalanceKeeper).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<i64, AdjustBalanceError>")]
pub struct AdjustBalance {
    pub account: AccountId,
    pub adjust: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdjustBalanceError {
    #[error("no balance is kept for account {0}")]
    UnknownAccount(AccountId),
    #[error("the balance of account {0} would overflow a signed 64-bit integer")]
    Overflow(AccountId),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Where a route in the Router's table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `routing.default_route`: the prefix "" (everything nothing else covers).
    Default,
    /// Configured (`routing.static_routes`) or set through the admin API.
    Static,
    /// A child account's address under ours.
    Child,
    /// Learned from a peer over CCP.
    Learned,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Default => "default",
            RouteKind::Static => "static",
            RouteKind::Child => "child",
            RouteKind::Learned => "learned",
        }
    }
}

/// One entry of the Router's table, as lookups see it (a local route hides a learned one for
/// the same prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: String,
    pub account: AccountId,
    pub kind: RouteKind,
}

/// The Router's table, by prefix (admin → Router).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<RouteEntry>")]
pub struct GetRoutes;

/// Set (`Some(account)`) or remove (`None`) the static route for `prefix` at run time
/// (admin → Router). Lives until the process stops; the configuration is not rewritten.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StaticRouteError>")]
pub struct SetStaticRoute {
    pub prefix: String,
    pub account: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaticRouteError {
    #[error(
        "{0:?} is not a valid address prefix (segments of A-Z a-z 0-9 _ ~ -, no empty segment)"
    )]
    InvalidPrefix(String),
    #[error("no account {0}")]
    UnknownAccount(AccountId),
    #[error("no static route for {0:?}")]
    NotFound(String),
}

/// A circular payment ([`ilp::circular`]): `amount` (in `via`'s units) goes out through `via`
/// addressed to ourselves and is fulfilled by us when it comes back, through `return_via` if
/// named, with at least `min_return` (admin → Router). Both legs are booked together, once,
/// when the returning Prepare is fulfilled: `via` is paid what was sent, the returning account
/// pays what came back.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<CircularReport, CircularError>")]
pub struct SendCircular {
    pub via: AccountId,
    pub amount: u64,
    pub return_via: Option<AccountId>,
    pub min_return: u64,
    /// How long the payment may take (the outgoing Prepare's expiry).
    pub timeout: std::time::Duration,
}

/// A circular payment that came back and was booked.
#[derive(Debug, Clone)]
pub struct CircularReport {
    pub id: [u8; 16],
    /// Our address: the payment's destination.
    pub destination: ilp::packet::Address,
    pub via: AccountId,
    pub sent: u64,
    pub sent_asset: ilp::sender::Asset,
    pub expires_at: ilp::packet::Timestamp,
    pub returned_via: AccountId,
    pub returned: u64,
    pub returned_asset: ilp::sender::Asset,
    pub returned_expires_at: ilp::packet::Timestamp,
    pub round_trip: std::time::Duration,
    /// The first hop's answer when it was not the Fulfill (its link failed or it answered too
    /// late): its leg, booked with the return, was then reversed, since it says it was not
    /// paid; the returning account was.
    pub first_hop_rejected: Option<Reject>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CircularError {
    #[error("no account {0}")]
    UnknownAccount(AccountId),
    #[error("account {0} is a local account: a circular payment leaves and returns through peers")]
    LocalAccount(AccountId),
    #[error("the node's address is not known yet")]
    NoAddress,
    #[error("rejected {}: {}", .0.code().as_str(), .0.message())]
    Rejected(Reject),
}

/// Ping `destination` with the echo protocol: a zero-amount Prepare asking the connector at
/// `destination` to send it back to us; we fulfill the returning Prepare ourselves. Resolves
/// with the round trip time, or the Reject that ended it (admin → Router).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<std::time::Duration, Reject>")]
pub struct SendPing {
    pub destination: ilp::packet::Address,
    /// How long the echo request may take (its expiry).
    pub timeout: std::time::Duration,
}
