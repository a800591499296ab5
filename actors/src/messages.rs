//! The typed messages actors exchange. A Prepare goes in, a `Result<Fulfill, Reject>` comes
//! out; nothing crosses an actor boundary untyped. Actors are wired with `Recipient<M>` of these
//! messages, so a test can put a fake behind any of them.

use actix::Message;
use ilp::packet::{Fulfill, Prepare, Reject};
use std::sync::Arc;

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

/// A Prepare that arrived on an account's link (link → that account's PeerAccount).
#[derive(Debug, Clone, Message)]
#[rtype(result = "PacketResult")]
pub struct IncomingPrepare {
    pub prepare: Prepare,
}

/// A Prepare that passed the incoming account's policies, to be routed (PeerAccount → Router).
#[derive(Debug, Clone, Message)]
#[rtype(result = "PacketResult")]
pub struct ForwardPrepare {
    pub from: AccountId,
    pub prepare: Prepare,
}

/// A Prepare to send out over an account's link (Router → PeerAccount of the next hop).
#[derive(Debug, Clone, Message)]
#[rtype(result = "PacketResult")]
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
#[rtype(result = "Result<(), crate::store::StoreError>")]
pub struct ResolvePacket {
    pub id: ReservationId,
    pub incoming: Option<(AccountId, u64)>,
    pub outgoing: Option<(AccountId, u64)>,
    pub fulfilled: bool,
    /// Written in the same batch as the balances of a fulfilled packet (the durable fulfill
    /// record of [`crate::replay`]); ignored on a Reject or when no balance changes.
    pub record: Option<crate::store::StoreOp>,
}

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
}

/// Event: a committed balance crossed the account's settle threshold; settling `amount` brings
/// it to `settle_to` (BalanceKeeper → SettlementEngine).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SettleThresholdCrossed {
    pub account: AccountId,
    pub amount: u64,
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
