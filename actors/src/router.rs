//! The Router: takes every Prepare that passed its incoming account's policies
//! ([`ForwardPrepare`]), answers the ones addressed to the node itself (IL-DCP, `peer.balance`,
//! echo, our own circular payments coming back; `peer.route.*` and `peer.settle` are handed to
//! the actors that speak them), and
//! forwards the rest: next hop by longest prefix, amount converted and rounded down, expiry
//! shortened, balances reserved with the BalanceKeeper, sent through the next hop's
//! PeerAccount, and the reservation committed or rolled back by the outcome.
//!
//! A Fulfill is relayed upstream only after the BalanceKeeper said its balance effect is
//! durable. Error codes follow the JS connector (`route-builder.ts`, `ilp-prepare.ts`); where it
//! has none, the choice is documented where it is made.
//!
//! Restarts: actix keeps the actor value across a restart, so settings and learned routes
//! survive a `Crash`; `restarting` rebuilds the merged routing table from its sources and drops
//! the rate cache. Packets in flight are futures owned by their callers and are not affected.

mod local;
pub mod table;

use crate::clock::Clock;
use crate::messages::{
    ask, AccountId, ApplyRouteUpdate, CircularError, CircularReport, ForwardPrepare, GetBalance,
    GetRoutes, HandlePeerProtocol, PacketResult, RecordReceived, Reply, ReservationId,
    ReservePacket, ResolvePacket, RouteEntry, SendCircular, SendPing, SendPrepare, SetNodeAddress,
    SetStaticRoute, StaticRouteError,
};
use crate::payment_log::Received;
use crate::payments::{AccountPayments, First, Joined, Payments, Seen, Side};
use crate::receiver::{Acceptance, Answer, Receiver, Receivers};
use crate::replay::{FulfillRecord, ReplayTag};
use crate::shutdown::PacketGate;
use crate::supervise::Backoff;
use actix::{
    Actor, AsyncContext, Context, Handler, MailboxError, Message, Recipient, ResponseFuture,
};
use ilp::config::{AccountConfig, Config, Relation};
use ilp::packet::{Address, ErrorCode, Prepare, Reject, Timestamp};
use ilp::policy::balance::BalanceError;
use ilp::policy::expiry::next_hop_expiry;
use ilp::policy::outgoing::payment_digest;
use ilp::rates::{Asset, Exchange, Rate, RateError};
use local::LocalDestination;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use table::Routes;

/// The node-wide settings the Router forwards by.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Our ILP address; `None` until a parent tells us over IL-DCP ([`SetNodeAddress`]).
    pub node_address: Option<Address>,
    /// Configured routes: `(prefix, account)`.
    pub static_routes: Vec<(String, AccountId)>,
    /// Account for destinations nothing else covers.
    pub default_route: Option<AccountId>,
    pub exchange: Exchange,
    pub min_message_window_ms: u64,
    pub max_hold_time_ms: u64,
    /// Whether a packet may leave through the account it came in on.
    pub reflect_payments: bool,
}

impl RouterSettings {
    /// The Router's settings from a validated configuration; fails only when the rate table
    /// cannot be built.
    pub fn from_config(config: &Config) -> Result<Self, RateError> {
        Ok(RouterSettings {
            node_address: config.node.ilp_address.clone(),
            static_routes: crate::messages::configured_static_routes(config),
            default_route: config.default_route_account().map(AccountId::from),
            exchange: config.exchange()?,
            min_message_window_ms: config.node.min_message_window_ms,
            max_hold_time_ms: config.node.max_hold_time_ms,
            reflect_payments: config.node.reflect_payments,
        })
    }
}

/// What the Router needs to know about one account.
#[derive(Clone)]
pub struct RouterAccount {
    /// The account's PeerAccount, which sends Prepares out over its link. Shared by the
    /// packets in flight: cloning an actix `Recipient` allocates, an `Arc` does not.
    pub send: Arc<Recipient<SendPrepare>>,
    pub relation: Relation,
    pub asset_code: String,
    pub asset_scale: u8,
    /// For a child: the segment its address adds to ours.
    pub child_segment: Option<String>,
    /// Whether identical Prepares in flight to this account share one send.
    pub dedup: bool,
    /// The account's memory of payments ([`crate::payments`]); the Router attaches the node's
    /// own to every account it is given.
    pub payments: AccountPayments,
    /// A local account (`link.type = "local"`): the node answers the packets to it itself;
    /// `bounded` when it has a maximum.
    pub local: Option<LocalSettings>,
    /// A local account's receiver, attached by the Router when it has [`Receivers`].
    pub receiver: Option<Receiver>,
}

/// What the Router knows of a local account beyond what every account has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSettings {
    pub bounded: bool,
}

impl RouterAccount {
    /// The account `id` as configured, sending through `send`.
    pub fn from_config(id: &str, config: &AccountConfig, send: Recipient<SendPrepare>) -> Self {
        RouterAccount {
            send: Arc::new(send),
            relation: config.relation,
            asset_code: config.asset_code.clone(),
            asset_scale: config.asset_scale,
            child_segment: config.child_segment(id).map(str::to_string),
            dedup: config.dedup.enabled,
            payments: AccountPayments::default(),
            local: config.is_local().then(|| LocalSettings {
                bounded: config.balance_limits().minimum.is_some(),
            }),
            receiver: None,
        }
    }
}

/// The BalanceKeeper, as the Router uses it.
#[derive(Clone)]
pub struct RouterBalance {
    pub reserve: Recipient<ReservePacket>,
    pub resolve: Recipient<ResolvePacket>,
    pub get: Recipient<GetBalance>,
    /// Payment events that move no money (connections closed); `None`: not recorded.
    pub record: Option<Recipient<RecordReceived>>,
}

/// The actors that speak the node's own peer protocols; `None` rejects those packets F02.
#[derive(Clone, Default)]
pub struct PeerProtocolHandlers {
    /// `peer.route.*` (RouteBroadcaster).
    pub ccp: Option<Recipient<HandlePeerProtocol>>,
    /// `peer.settle` (SettlementEngine).
    pub settle: Option<Recipient<HandlePeerProtocol>>,
}

pub struct Router {
    settings: RouterSettings,
    node_address: Option<Address>,
    accounts: BTreeMap<AccountId, RouterAccount>,
    routes: Routes,
    /// Combined rate per (source, next hop) account pair; rates are fixed for our lifetime.
    /// Rates by source account, then next hop's account: looked up by reference, no clones.
    quotes: foldhash::HashMap<AccountId, foldhash::HashMap<AccountId, Result<Rate, RateError>>>,
    balance: Arc<RouterBalance>,
    peer_protocols: PeerProtocolHandlers,
    /// Every account's memory of payments in flight and paid, incoming and outgoing: copies are
    /// one payment ([`crate::payments`]). Loaded from the fulfill records at start.
    payments: Payments,
    /// The local accounts' receivers; `None`: packets to local accounts are refused F02.
    receivers: Option<Receivers>,
    /// Counts packets in flight; closed at shutdown.
    gate: Arc<PacketGate>,
    clock: Clock,
    backoff: Backoff,
    /// Pings in flight ([`SendPing`]): the fulfillment of each one's condition, by condition,
    /// so the echo response coming back to us can be fulfilled. Shared with the ping futures,
    /// which remove their own entry.
    pings: Rc<RefCell<HashMap<[u8; 32], [u8; 32]>>>,
    /// Our circular payments out ([`SendCircular`]), by condition. Shared with their futures,
    /// which remove their own entry once the first hop has answered.
    circulars: Rc<RefCell<HashMap<[u8; 32], PendingCircular>>>,
}

/// A circular payment on its way.
struct PendingCircular {
    circuit: ilp::circular::Circuit,
    via: AccountId,
    /// Once it came back: the booking's outcome, and the returning account's asset.
    booked: Option<tokio::sync::oneshot::Receiver<Result<CircularReturn, Reject>>>,
}

/// What came back, booked.
struct CircularReturn {
    returned: ilp::circular::Returned,
    asset: ilp::sender::Asset,
    fulfill: ilp::packet::Fulfill,
}

/// A Prepare ready to go to its next hop.
struct Outgoing {
    to: AccountId,
    send: Arc<Recipient<SendPrepare>>,
    /// The next hop's account joins identical Prepares in flight.
    dedup: bool,
    /// The next hop's memory of payments.
    payments: AccountPayments,
    /// The next hop is a local account: `Some` with its receiver when it has one.
    local: Option<Option<Receiver>>,
    prepare: Prepare,
    incoming_amount: u64,
    /// The incoming Prepare's expiry: past it nobody upstream waits for an answer.
    deadline: Timestamp,
}

impl Router {
    pub fn new(
        settings: RouterSettings,
        accounts: BTreeMap<AccountId, RouterAccount>,
        balance: RouterBalance,
        peer_protocols: PeerProtocolHandlers,
        clock: Clock,
    ) -> Self {
        let children = accounts
            .iter()
            .filter_map(|(id, a)| a.child_segment.clone().map(|s| (s, id.clone())))
            .collect();
        let routes = Routes::new(
            settings.default_route.clone(),
            settings.static_routes.clone(),
            children,
            settings.node_address.clone(),
        );
        Router {
            node_address: settings.node_address.clone(),
            settings,
            accounts,
            routes,
            quotes: foldhash::HashMap::default(),
            balance: Arc::new(balance),
            peer_protocols,
            payments: Payments::new(),
            receivers: None,
            gate: PacketGate::new(),
            clock,
            backoff: Backoff::default(),
            pings: Rc::default(),
            circulars: Rc::default(),
        }
        .with_payments(Payments::new())
    }

    /// Keeps payments in `payments` (loaded with the Prepares paid before a restart,
    /// [`crate::replay::load_paid`]).
    pub fn with_payments(mut self, payments: Payments) -> Self {
        attach_payments(&payments, &mut self.accounts);
        self.payments = payments;
        self
    }

    /// Local accounts are paid through `receivers`.
    pub fn with_receivers(mut self, receivers: Receivers) -> Self {
        attach_receivers(&receivers, self.node_address.as_ref(), &mut self.accounts);
        self.receivers = Some(receivers);
        self
    }

    /// Every packet passes `gate` (shared with whoever shuts the node down).
    pub fn with_gate(mut self, gate: Arc<PacketGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Fulfills an echo response that came back to us for one of our pings.
    fn answer_ping(&self, prepare: &Prepare) -> PacketResult {
        let node = self.node_address.as_ref();
        let pings = self.pings.borrow();
        let Some(fulfillment) = pings.get(prepare.execution_condition()) else {
            let e = ilp::echo::EchoError::UnexpectedResponse;
            return Err(Reject::new(
                ErrorCode::F01_INVALID_PACKET,
                node,
                &e.to_string(),
            ));
        };
        ilp::packet::FulfillBuilder {
            fulfillment,
            data: &[],
        }
        .build()
        .map_err(|e| Reject::new(ErrorCode::T00_INTERNAL_ERROR, node, &e.to_string()))
    }

    /// The expiry of a Prepare we originate that may take `timeout`.
    fn expiry_after(&self, timeout: Duration) -> Timestamp {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.clock
            .now()
            .checked_add_millis(timeout_ms)
            .unwrap_or(Timestamp::MAX)
    }

    fn reject(&self, code: ErrorCode, message: &str) -> Reject {
        Reject::new(code, self.node_address.as_ref(), message)
    }

    /// The answer to a copy of a Prepare that another account already had paid through the
    /// same next hop. Final: the same bytes can never be paid again there.
    fn already_paid(&self) -> Reject {
        self.reject(
            ErrorCode::F00_BAD_REQUEST,
            "an identical packet was already paid through this connector",
        )
    }

    /// Route, rate and expiry for a Prepare from `from`: everything decided before the
    /// balance is touched.
    fn plan(
        &mut self,
        from: &AccountId,
        prepare: Prepare,
        now: Timestamp,
    ) -> Result<Outgoing, Reject> {
        let node = self.node_address.as_ref();
        let source = self.accounts.get(from).ok_or_else(|| {
            Reject::new(
                ErrorCode::T00_INTERNAL_ERROR,
                node,
                "unknown source account",
            )
        })?;
        let to = self
            .routes
            .next_hop(
                from,
                prepare.destination_str(),
                self.settings.reflect_payments,
            )
            .map_err(|e| Reject::new(ErrorCode::F02_UNREACHABLE, node, &e.to_string()))?
            .clone();
        let next = self.accounts.get(&to).ok_or_else(|| {
            Reject::new(
                ErrorCode::F02_UNREACHABLE,
                node,
                &format!("no route to next hop {to}"),
            )
        })?;
        let exchange = &self.settings.exchange;
        let known = self.quotes.get(from).and_then(|rates| rates.get(&to));
        let rate = match known {
            Some(rate) => rate.clone(),
            None => {
                let rate = exchange.quote(
                    Asset {
                        code: &source.asset_code,
                        scale: source.asset_scale,
                    },
                    Asset {
                        code: &next.asset_code,
                        scale: next.asset_scale,
                    },
                );
                self.quotes
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone(), rate.clone());
                rate
            }
        };
        // The JS connector has no code for a missing rate or an unrepresentable amount: its
        // plain errors become F00, and so do ours (final: retrying cannot fix configuration).
        let amount = rate
            .and_then(|r| r.apply_floor(prepare.amount()))
            .map_err(|e| Reject::new(ErrorCode::F00_BAD_REQUEST, node, &e.to_string()))?;
        let expiry = next_hop_expiry(
            prepare.expires_at(),
            now,
            self.settings.min_message_window_ms,
            self.settings.max_hold_time_ms,
        )
        .map_err(|e| Reject::new(e.code(), node, &e.to_string()))?;
        Ok(Outgoing {
            send: next.send.clone(),
            dedup: next.dedup,
            payments: next.payments.clone(),
            local: next.local.map(|_| next.receiver.clone()),
            to,
            incoming_amount: prepare.amount(),
            deadline: prepare.expires_at(),
            prepare: prepare.with_amount_and_expiry(amount, expiry),
        })
    }

    /// Copies of a Prepare from one account before their expiry are one payment: a copy of one
    /// in flight or paid is answered with its outcome and books nothing (`Err`: that answer).
    /// A paid packet is also remembered durably with its balances, so this holds across a
    /// crash. Zero amounts move no money and are not tracked; an expired Prepare is refused
    /// later. A first copy gets its fulfill record's tag and its place in the memory.
    #[inline]
    fn remember_incoming(
        &self,
        from: &AccountId,
        prepare: &Prepare,
        now: Timestamp,
    ) -> Result<(Option<ReplayTag>, Option<First>), Reply<PacketResult>> {
        let source = self.accounts.get(from);
        let Some(source) = source.filter(|_| prepare.amount() > 0 && now <= prepare.expires_at())
        else {
            return Ok((None, None));
        };
        let digest = payment_digest(prepare);
        let expires_at = prepare.expires_at();
        let first = match source
            .payments
            .begin(Side::Incoming, &digest, expires_at, now)
        {
            Seen::Paid(fulfill) => return Err(Reply::ready(Ok(fulfill))),
            // Only an outgoing table answers this.
            Seen::Sent => return Err(Reply::ready(Err(self.already_paid()))),
            Seen::Joined(joined) => {
                return Err(Reply::later(joined_outcome(
                    joined,
                    self.node_address.clone(),
                )))
            }
            Seen::First(place) => place,
        };
        let tag = ReplayTag {
            account: from.clone(),
            digest,
            expires_at,
        };
        Ok((Some(tag), Some(first)))
    }

    /// One of our circular payments coming back through `from`: fulfilled when it passes its
    /// checks ([`ilp::circular::Circuit::accept_return`]), after both legs are booked in one
    /// commit, as if we had forwarded it from `from` to the first hop.
    fn circular_return(
        &mut self,
        from: AccountId,
        prepare: Prepare,
        now: Timestamp,
    ) -> Reply<PacketResult> {
        let (tag, first) = match self.remember_incoming(&from, &prepare, now) {
            Ok(new) => new,
            Err(answered) => return answered,
        };
        let refuse = |first: Option<First>, code, message: &str| {
            let result = Err(self.reject(code, message));
            if let Some(first) = first {
                first.finish(&result);
            }
            Reply::ready(result)
        };
        let asset = match self.accounts.get(&from) {
            Some(account) => ilp::sender::Asset {
                code: account.asset_code.clone(),
                scale: account.asset_scale,
            },
            None => {
                return refuse(
                    first,
                    ErrorCode::T00_INTERNAL_ERROR,
                    "unknown source account",
                )
            }
        };
        let mut circulars = self.circulars.borrow_mut();
        let Some(pending) = circulars.get_mut(prepare.execution_condition()) else {
            return refuse(
                first,
                ErrorCode::F06_UNEXPECTED_PAYMENT,
                "no circular payment of this node is waiting for this condition",
            );
        };
        let window = self.settings.min_message_window_ms;
        let (fulfill, returned) = match pending.circuit.accept_return(&from, &prepare, now, window)
        {
            Ok(accepted) => accepted,
            Err(refusal) => return refuse(first, refusal.code(), &refusal.to_string()),
        };
        let (booked, outcome) = tokio::sync::oneshot::channel();
        pending.booked = Some(outcome);
        let outgoing = Some((pending.via.clone(), pending.circuit.amount));
        drop(circulars);
        let incoming = Some((from, prepare.amount()));
        let balance = self.balance.clone();
        let node = self.node_address.clone();
        Reply::later(async move {
            let answer = {
                let fulfill = fulfill.clone();
                async move { Ok(fulfill) }
            };
            let records = Records {
                tag,
                ..Records::default()
            };
            let result = with_balance(balance, node, incoming, outgoing, records, answer).await;
            let _ = booked.send(match &result {
                Ok(_) => Ok(CircularReturn {
                    returned,
                    asset,
                    fulfill,
                }),
                Err(reject) => Err(reject.clone()),
            });
            if let Some(first) = first {
                first.finish(&result);
            }
            result
        })
    }

    /// `origin`: the node's own payment that sent it from the local account `from`.
    fn forward(
        &mut self,
        from: AccountId,
        prepare: Prepare,
        now: Timestamp,
        origin: Option<AccountId>,
    ) -> Reply<PacketResult> {
        let (tag, first) = match self.remember_incoming(&from, &prepare, now) {
            Ok(new) => new,
            Err(answered) => return answered,
        };
        let out = match self.plan(&from, prepare, now) {
            Ok(out) => out,
            Err(reject) => return Reply::ready(Err(reject)),
        };
        let amount = out.prepare.amount();
        let sent = origin.map(|payment| (payment, out.incoming_amount));
        if let Some(receiver) = out.local {
            let incoming = (from, out.incoming_amount);
            let outgoing = (out.to, amount);
            let records = Records {
                tag,
                received: None,
                sent,
            };
            return self.receive(receiver, out.prepare, incoming, outgoing, records, first);
        }
        // Copies to one next hop are one payment to it, whoever sent them to us: a copy of one
        // in flight takes its outcome and books only its incoming side; a copy of one paid is
        // refused, since the next hop would answer it without paying again.
        let mut downstream = Downstream::Send {
            send: out.send,
            deadline: out.deadline,
            first: None,
        };
        if out.dedup && amount > 0 {
            // The same contents as the incoming Prepare unless the amount changed.
            let digest = match &tag {
                Some(tag) if amount == out.incoming_amount => tag.digest,
                _ => payment_digest(&out.prepare),
            };
            match out
                .payments
                .begin(Side::Outgoing, &digest, out.prepare.expires_at(), now)
            {
                Seen::Joined(joined) => downstream = Downstream::Joined(joined),
                Seen::First(place) => {
                    if let Downstream::Send { first, .. } = &mut downstream {
                        *first = Some(place);
                    }
                }
                Seen::Sent | Seen::Paid(_) => return Reply::ready(Err(self.already_paid())),
            }
        }
        let outgoing = match downstream {
            Downstream::Send { .. } => Some((out.to, amount)),
            Downstream::Joined(_) => None,
        };
        Reply::later(exchange(Forwarded {
            balance: self.balance.clone(),
            node: self.node_address.clone(),
            clock: self.clock,
            incoming: Some((from, out.incoming_amount)),
            outgoing,
            records: Records {
                tag,
                received: None,
                sent,
            },
            prepare: out.prepare,
            downstream,
            first,
        }))
    }

    /// A Prepare to one of our local accounts (`outgoing`: the account and what arrived there),
    /// answered by its receiver: at once when no money moves, else after the credit is durable.
    fn receive(
        &self,
        receiver: Option<Receiver>,
        prepare: Prepare,
        incoming: (AccountId, u64),
        outgoing: (AccountId, u64),
        records: Records,
        first: Option<First>,
    ) -> Reply<PacketResult> {
        let answer = match receiver {
            Some(receiver) => receiver.answer(&prepare, outgoing.1, &rand::random()),
            None => Answer::Now(Err(self.reject(
                ErrorCode::F02_UNREACHABLE,
                "this account receives no payments here",
            ))),
        };
        match answer {
            Answer::Now(result) => {
                if let Some(first) = first {
                    first.finish(&result);
                }
                Reply::ready(result)
            }
            Answer::Closing(result, closing) => {
                if let Some(record) = &self.balance.record {
                    record.do_send(RecordReceived(
                        closing.received(&incoming.0, self.clock.now()),
                    ));
                }
                if let Some(first) = first {
                    first.finish(&result);
                }
                Reply::ready(result)
            }
            Answer::Credit(acceptance) => Reply::later(deliver(Delivered {
                balance: self.balance.clone(),
                node: self.node_address.clone(),
                clock: self.clock,
                incoming,
                outgoing,
                records,
                acceptance,
                first,
            })),
        }
    }

    /// A packet we answer ourselves: a non-zero amount is still money received from `from`.
    fn answer_locally(
        &self,
        from: AccountId,
        amount: u64,
        answer: impl Future<Output = PacketResult> + Send + 'static,
    ) -> Reply<PacketResult> {
        Reply::later(with_balance(
            self.balance.clone(),
            self.node_address.clone(),
            Some((from, amount)),
            None,
            Records::default(),
            answer,
        ))
    }

    fn to_protocol(
        &self,
        handler: Option<Recipient<HandlePeerProtocol>>,
        name: &str,
        from: AccountId,
        prepare: Prepare,
    ) -> Reply<PacketResult> {
        let Some(handler) = handler else {
            let reject = self.reject(
                ErrorCode::F02_UNREACHABLE,
                &format!("{name} is not served here"),
            );
            return Reply::ready(Err(reject));
        };
        let node = self.node_address.clone();
        let amount = prepare.amount();
        let answer = {
            let from = from.clone();
            async move {
                handler
                    .send(HandlePeerProtocol { from, prepare })
                    .await
                    .unwrap_or_else(|e| {
                        Err(Reject::new(
                            ErrorCode::T00_INTERNAL_ERROR,
                            node.as_ref(),
                            &format!("peer protocol handler unavailable: {e}"),
                        ))
                    })
            }
        };
        self.answer_locally(from, amount, answer)
    }
}

/// Hands every local account its receiver, at its address under `node` (ours).
fn attach_receivers(
    receivers: &Receivers,
    node: Option<&Address>,
    accounts: &mut BTreeMap<AccountId, RouterAccount>,
) {
    for (id, account) in accounts {
        account.receiver = match (account.local, &account.child_segment) {
            (Some(local), Some(segment)) => Some(receivers.account(
                id,
                node.and_then(|node| node.with_suffix(segment).ok()),
                (&account.asset_code, account.asset_scale),
                local.bounded,
            )),
            _ => None,
        };
    }
}

/// Hands every account its memory of payments.
fn attach_payments(payments: &Payments, accounts: &mut BTreeMap<AccountId, RouterAccount>) {
    for (id, account) in accounts {
        account.payments = payments.account(id);
    }
}

/// Where a forwarded Prepare's answer comes from.
enum Downstream {
    /// Sent to the next hop; `first` holds its place in the next hop's outgoing table.
    Send {
        send: Arc<Recipient<SendPrepare>>,
        deadline: Timestamp,
        first: Option<First>,
    },
    /// A copy already in flight to the next hop: its outcome.
    Joined(Joined),
}

/// Everything a forwarded packet's exchange needs after the Router has planned it.
struct Forwarded {
    balance: Arc<RouterBalance>,
    node: Option<Address>,
    clock: Clock,
    incoming: Option<(AccountId, u64)>,
    outgoing: Option<(AccountId, u64)>,
    records: Records,
    prepare: Prepare,
    downstream: Downstream,
    /// The Prepare's place in its source's incoming table.
    first: Option<First>,
}

/// A forwarded packet from the balance reservation to its booked outcome, as one future: built
/// from its arguments alone, so handing it to the caller moves little.
async fn exchange(x: Forwarded) -> PacketResult {
    let Forwarded {
        balance,
        node,
        clock,
        incoming,
        outgoing,
        records,
        prepare,
        downstream,
        first,
    } = x;
    let at = node.clone();
    let answer = async move {
        match downstream {
            Downstream::Joined(joined) => joined_outcome(joined, at).await,
            Downstream::Send {
                send,
                deadline,
                first,
            } => {
                let result = send_to_next_hop(send, prepare, deadline, clock, at).await;
                if let Some(first) = first {
                    first.finish(&result);
                }
                result
            }
        }
    };
    let result = with_balance(balance, node, incoming, outgoing, records, answer).await;
    if let Some(first) = first {
        first.finish(&result);
    }
    result
}

/// The outcome of the copy `joined` waits for.
async fn joined_outcome(joined: Joined, node: Option<Address>) -> PacketResult {
    joined
        .outcome()
        .await
        .unwrap_or_else(|| Err(abandoned(node.as_ref())))
}

/// The answer to a copy whose first was dropped before it had an outcome.
fn abandoned(node: Option<&Address>) -> Reject {
    Reject::new(
        ErrorCode::T00_INTERNAL_ERROR,
        node,
        "the identical packet this one joined was abandoned",
    )
}

/// Sends the Prepare and checks the answer. The PeerAccount rejects R00 at the Prepare's own
/// expiry; the timer here only guarantees the reservation is released if it never answers.
async fn send_to_next_hop(
    send: Arc<Recipient<SendPrepare>>,
    prepare: Prepare,
    deadline: Timestamp,
    clock: Clock,
    node: Option<Address>,
) -> PacketResult {
    let condition = *prepare.execution_condition();
    let reject = |code, message: &str| Reject::new(code, node.as_ref(), message);
    let answer = tokio::time::timeout_at(
        clock.instant_at(deadline),
        ask(&send, SendPrepare { prepare }),
    );
    match answer.await {
        Ok(Ok(Ok(fulfill))) => {
            let hash: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
            if hash == condition {
                Ok(fulfill)
            } else {
                // Not a claim on anything: we pay nobody and tell upstream why.
                Err(reject(
                    ErrorCode::F05_WRONG_CONDITION,
                    "next hop sent a fulfillment that does not match the condition",
                ))
            }
        }
        Ok(Ok(Err(downstream))) => Err(downstream),
        Ok(Err(MailboxError::Closed)) => Err(reject(
            ErrorCode::T01_PEER_UNREACHABLE,
            "next hop's account is not running",
        )),
        Ok(Err(MailboxError::Timeout)) | Err(_) => Err(reject(
            ErrorCode::R00_TRANSFER_TIMED_OUT,
            "next hop did not answer before the packet expired",
        )),
    }
}

/// Why [`reserve`] did not reserve: a limit (the keeper's refusal) or a keeper failure.
enum Unreserved {
    Refused(BalanceError),
    Failed(Reject),
}

impl Unreserved {
    fn into_reject(self, node: Option<&Address>) -> Reject {
        match self {
            Unreserved::Refused(refused) => Reject::new(refused.code(), node, &refused.to_string()),
            Unreserved::Failed(reject) => reject,
        }
    }
}

/// Reserves a packet's amounts with the keeper; `None` when it moves no money (zero amounts
/// change no balance and cross no limit, as in the JS balance middleware; peer-protocol
/// traffic costs no keeper round trip).
async fn reserve(
    balance: &RouterBalance,
    node: Option<&Address>,
    incoming: &Option<(AccountId, u64)>,
    outgoing: &Option<(AccountId, u64)>,
) -> Result<Option<ReservationId>, Unreserved> {
    let moves_money = |side: &Option<(AccountId, u64)>| side.as_ref().is_some_and(|(_, a)| *a > 0);
    if !moves_money(incoming) && !moves_money(outgoing) {
        return Ok(None);
    }
    let reserved = balance
        .reserve
        .send(ReservePacket {
            incoming: incoming.clone(),
            outgoing: outgoing.clone(),
        })
        .await;
    match reserved {
        Ok(Ok(id)) => Ok(Some(id)),
        Ok(Err(refused)) => Err(Unreserved::Refused(refused)),
        Err(e) => Err(Unreserved::Failed(Reject::new(
            ErrorCode::T00_INTERNAL_ERROR,
            node,
            &format!("balance keeper unavailable: {e}"),
        ))),
    }
}

/// What a fulfilled packet's commit writes beside its balances.
#[derive(Default)]
struct Records {
    /// Its fulfill record ([`crate::replay`]).
    tag: Option<ReplayTag>,
    /// A local account's payment event and connection totals ([`crate::payment_log`]).
    received: Option<Received>,
    /// One of our payments' packet: its id and what it sent.
    sent: Option<(AccountId, u64)>,
}

/// Books the outcome of reservation `id`: commits a Fulfill (with its fulfill record when
/// `tag`), rolls back a Reject. The Fulfill is returned only once its commit is durable.
///
/// If the commit fails we answer T00 instead: whoever we paid holds a valid Fulfill, but we
/// will not collect from upstream, so the node bears that amount. That is the price of never
/// relaying a Fulfill the store could forget, which would let balances disagree with a peer
/// after a restart.
async fn book(
    balance: &RouterBalance,
    node: Option<&Address>,
    id: ReservationId,
    incoming: Option<(AccountId, u64)>,
    outgoing: Option<(AccountId, u64)>,
    records: Records,
    result: PacketResult,
) -> PacketResult {
    let reject = |code, message: &str| Reject::new(code, node, message);
    let Records {
        tag,
        received,
        sent,
    } = records;
    let record = match (tag, &result) {
        (Some(tag), Ok(fulfill)) => Some(FulfillRecord {
            tag,
            fulfill: fulfill.clone(),
        }),
        _ => None,
    };
    let resolved = ask(
        &balance.resolve,
        ResolvePacket {
            id,
            incoming,
            outgoing,
            fulfilled: result.is_ok(),
            record,
            received,
            sent,
        },
    )
    .await;
    match (result, resolved) {
        (Ok(fulfill), Ok(Ok(()))) => Ok(fulfill),
        (Ok(_), Ok(Err(e))) => Err(reject(
            ErrorCode::T00_INTERNAL_ERROR,
            &format!("could not record the payment: {e}"),
        )),
        (Ok(_), Err(e)) => Err(reject(
            ErrorCode::T00_INTERNAL_ERROR,
            &format!("balance keeper unavailable: {e}"),
        )),
        // A failed rollback leaves funds reserved, never moved; the Reject stands as it is.
        (Err(rejected), _) => Err(rejected),
    }
}

/// Runs `exchange` inside a balance reservation: reserve first (refused: the keeper's code,
/// T04 for a limit), then commit on a Fulfill or roll back on a Reject ([`book`]).
async fn with_balance(
    balance: Arc<RouterBalance>,
    node: Option<Address>,
    incoming: Option<(AccountId, u64)>,
    outgoing: Option<(AccountId, u64)>,
    records: Records,
    exchange: impl Future<Output = PacketResult>,
) -> PacketResult {
    let id = match reserve(&balance, node.as_ref(), &incoming, &outgoing).await {
        Ok(Some(id)) => id,
        Ok(None) => return exchange.await,
        Err(unreserved) => return Err(unreserved.into_reject(node.as_ref())),
    };
    let result = exchange.await;
    book(
        &balance,
        node.as_ref(),
        id,
        incoming,
        outgoing,
        records,
        result,
    )
    .await
}

/// Everything a payment to one of our receivers needs once the receiver accepted it.
struct Delivered {
    balance: Arc<RouterBalance>,
    node: Option<Address>,
    clock: Clock,
    incoming: (AccountId, u64),
    /// The receiving account, and what arrived there.
    outgoing: (AccountId, u64),
    /// Its fulfill record's tag and, for one of our payments, what it sent; the credit's
    /// event is added here.
    records: Records,
    acceptance: Acceptance,
    /// The Prepare's place in its source's incoming table.
    first: Option<First>,
}

/// A payment to one of our receivers, from its reservation to its booked Fulfill: the credit is
/// durable before the Fulfill leaves. A receiver at its maximum refuses with the room it has.
async fn deliver(x: Delivered) -> PacketResult {
    let Delivered {
        balance,
        node,
        clock,
        incoming,
        outgoing,
        mut records,
        acceptance,
        first,
    } = x;
    let from = incoming.0.clone();
    let (incoming, outgoing) = (Some(incoming), Some(outgoing));
    let reserved = reserve(&balance, node.as_ref(), &incoming, &outgoing).await;
    acceptance.recall().await;
    let result = match reserved {
        Err(Unreserved::Refused(BalanceError::BelowMinimum {
            available, minimum, ..
        })) => {
            let room = u64::try_from((available - i128::from(minimum)).max(0)).unwrap_or(u64::MAX);
            Err(acceptance.refuse(room, &rand::random()))
        }
        Err(unreserved) => Err(unreserved.into_reject(node.as_ref())),
        Ok(None) => Ok(acceptance.fulfill(&rand::random()).0),
        Ok(Some(id)) => {
            let (fulfill, credited) = acceptance.fulfill(&rand::random());
            records.received = Some(credited.received(&from, clock.now()));
            let result = book(
                &balance,
                node.as_ref(),
                id,
                incoming,
                outgoing,
                records,
                Ok(fulfill),
            )
            .await;
            if result.is_err() {
                credited.undo();
            }
            result
        }
    };
    if let Some(first) = first {
        first.finish(&result);
    }
    result
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervise::PACKET_PATH_MAILBOX);
        let delay = self.backoff.delay();
        if !delay.is_zero() {
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
        }
    }
}

impl actix::Supervised for Router {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.backoff.on_restart();
        // Learned routes are kept: the RouteBroadcaster only sends changes, so dropping them
        // would leave prefixes unreachable until their next change.
        self.routes.rebuild();
        self.quotes.clear();
    }
}

impl Handler<ForwardPrepare> for Router {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: ForwardPrepare, _ctx: &mut Self::Context) -> Self::Result {
        let ForwardPrepare {
            from,
            prepare,
            origin,
        } = msg;
        let now = self.clock.now();
        let node = self.node_address.clone();
        let fail = |code, message: &str| -> Reply<PacketResult> {
            Reply::ready(Err(Reject::new(code, node.as_ref(), message)))
        };
        let Some(pass) = self.gate.enter() else {
            return fail(
                ErrorCode::T03_CONNECTOR_BUSY,
                "the connector is shutting down; try again later",
            );
        };
        let log = crate::log::logger();
        let trace = slog::Drain::is_debug_enabled(log).then(|| {
            (
                from.clone(),
                prepare.amount(),
                prepare.destination_str().to_owned(),
                std::time::Instant::now(),
            )
        });
        let destination = local::classify(
            prepare.destination_str(),
            self.node_address.as_ref(),
            prepare.data(),
        );
        let answer = match destination {
            LocalDestination::Forward => self.forward(from, prepare, now, origin),
            LocalDestination::Ildcp => {
                let answer = match self.accounts.get(&from) {
                    Some(account) => local::ildcp_answer(&prepare, now, node.as_ref(), account),
                    None => Err(Reject::new(
                        ErrorCode::T00_INTERNAL_ERROR,
                        node.as_ref(),
                        "unknown source account",
                    )),
                };
                self.answer_locally(from, prepare.amount(), async move { answer })
            }
            LocalDestination::PeerBalance => {
                if let Err(reject) = local::check_peer_balance(&prepare, now, node.as_ref()) {
                    return Reply::ready(Err(reject));
                }
                let get = self.balance.get.clone();
                let account = from.clone();
                let answer = async move {
                    match get.send(GetBalance { account }).await {
                        Ok(snapshot) => local::peer_balance_answer(snapshot, node.as_ref()),
                        Err(e) => Err(Reject::new(
                            ErrorCode::T00_INTERNAL_ERROR,
                            node.as_ref(),
                            &format!("balance keeper unavailable: {e}"),
                        )),
                    }
                };
                self.answer_locally(from, prepare.amount(), answer)
            }
            LocalDestination::PeerRoute => {
                let ccp = self.peer_protocols.ccp.clone();
                self.to_protocol(ccp, "peer.route", from, prepare)
            }
            LocalDestination::PeerSettle => {
                let settle = self.peer_protocols.settle.clone();
                self.to_protocol(settle, "peer.settle", from, prepare)
            }
            LocalDestination::UnknownPeerProtocol => {
                fail(ErrorCode::F01_INVALID_PACKET, "unknown peer protocol")
            }
            LocalDestination::Circular => self.circular_return(from, prepare, now),
            LocalDestination::OwnAddress => fail(
                ErrorCode::F02_UNREACHABLE,
                "nothing at this node answers packets to its own address",
            ),
            LocalDestination::Echo if ilp::echo::is_response(&prepare) => {
                let answer = self.answer_ping(&prepare);
                self.answer_locally(from, prepare.amount(), async move { answer })
            }
            LocalDestination::Echo => {
                // As the JS echo middleware: the response Prepare replaces the request and
                // takes the normal forwarding path (route, rate, expiry, balance).
                let source = match ilp::echo::requested_source(&prepare) {
                    Ok(source) => source,
                    Err(e) => return fail(ErrorCode::F01_INVALID_PACKET, &e.to_string()),
                };
                match ilp::echo::answer_request(&prepare, &source, 0) {
                    Ok(response) => self.forward(from, response, now, None),
                    Err(e) => fail(ErrorCode::T00_INTERNAL_ERROR, &e.to_string()),
                }
            }
        };
        Reply::later(async move {
            let result = answer.await;
            drop(pass);
            if let Some((from, amount, destination, started)) = trace {
                let micros = started.elapsed().as_micros();
                match &result {
                    Ok(_) => slog::debug!(log, "packet fulfilled";
                        "from" => %from, "amount" => amount, "destination" => destination,
                        "micros" => micros),
                    Err(r) => slog::debug!(log, "packet rejected";
                        "from" => %from, "amount" => amount, "destination" => destination,
                        "code" => r.code().as_str(), "message" => r.message(), "micros" => micros),
                }
            }
            result
        })
    }
}

/// A reload: new settings and accounts. Learned routes through accounts that are gone are
/// dropped; an address learned over IL-DCP is kept when the configuration names none.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub settings: RouterSettings,
    pub accounts: BTreeMap<AccountId, RouterAccount>,
}

impl Handler<Reconfigure> for Router {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _ctx: &mut Self::Context) {
        let Reconfigure {
            mut settings,
            accounts,
        } = msg;
        if settings.node_address.is_none() {
            settings.node_address = self.node_address.clone();
        }
        let children = accounts
            .iter()
            .filter_map(|(id, a)| a.child_segment.clone().map(|s| (s, id.clone())))
            .collect();
        self.routes.reconfigure(
            settings.default_route.clone(),
            settings.static_routes.clone(),
            children,
            |a| accounts.contains_key(a),
        );
        if settings.node_address != self.node_address {
            self.routes.set_own_address(settings.node_address.clone());
        }
        self.node_address = settings.node_address.clone();
        self.settings = settings;
        self.accounts = accounts;
        attach_payments(&self.payments, &mut self.accounts);
        if let Some(receivers) = &self.receivers {
            attach_receivers(receivers, self.node_address.as_ref(), &mut self.accounts);
        }
        self.quotes.clear();
    }
}

impl Handler<ApplyRouteUpdate> for Router {
    type Result = ();

    fn handle(&mut self, msg: ApplyRouteUpdate, _ctx: &mut Self::Context) {
        for (prefix, next_hop) in msg.changes {
            // A route through an account we do not have could never be used; it withdraws
            // whatever was learned for the prefix before.
            let next_hop = next_hop.filter(|a| self.accounts.contains_key(a));
            self.routes.apply_learned(prefix, next_hop);
        }
    }
}

impl Handler<SetNodeAddress> for Router {
    type Result = ();

    fn handle(&mut self, msg: SetNodeAddress, _ctx: &mut Self::Context) {
        self.node_address = Some(msg.address.clone());
        self.routes.set_own_address(Some(msg.address));
        // The receivers' addresses are under ours.
        if let Some(receivers) = &self.receivers {
            attach_receivers(receivers, self.node_address.as_ref(), &mut self.accounts);
        }
    }
}

impl Handler<GetRoutes> for Router {
    type Result = Vec<RouteEntry>;

    fn handle(&mut self, _msg: GetRoutes, _ctx: &mut Self::Context) -> Self::Result {
        self.routes.entries()
    }
}

/// The configuration's rule for a static route prefix: non-empty, valid address segments.
fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .split('.')
            .all(|segment| ilp::packet::validate_segment(segment).is_ok())
}

impl Handler<SetStaticRoute> for Router {
    type Result = Result<(), StaticRouteError>;

    fn handle(&mut self, msg: SetStaticRoute, _ctx: &mut Self::Context) -> Self::Result {
        if !valid_prefix(&msg.prefix) {
            return Err(StaticRouteError::InvalidPrefix(msg.prefix));
        }
        match msg.account {
            Some(account) => {
                if !self.accounts.contains_key(&account) {
                    return Err(StaticRouteError::UnknownAccount(account));
                }
                self.routes.set_static(msg.prefix, account);
                Ok(())
            }
            None if self.routes.remove_static(&msg.prefix) => Ok(()),
            None => Err(StaticRouteError::NotFound(msg.prefix)),
        }
    }
}

impl Handler<SendPing> for Router {
    type Result = ResponseFuture<Result<Duration, Reject>>;

    fn handle(&mut self, msg: SendPing, _ctx: &mut Self::Context) -> Self::Result {
        let node = self.node_address.clone();
        let fail = |code, message: &str| -> Self::Result {
            let reject = Reject::new(code, node.as_ref(), message);
            Box::pin(async move { Err(reject) })
        };
        let Some(own) = self.node_address.clone() else {
            return fail(
                ErrorCode::T00_INTERNAL_ERROR,
                "the node's address is not known yet",
            );
        };
        let fulfillment: [u8; 32] = rand::random();
        let condition: [u8; 32] = Sha256::digest(fulfillment).into();
        let expires_at = self.expiry_after(msg.timeout);
        let prepare = match ilp::echo::request(&msg.destination, &own, 0, expires_at, &condition) {
            Ok(p) => p,
            Err(e) => return fail(ErrorCode::T00_INTERNAL_ERROR, &e.to_string()),
        };
        if msg.destination == own {
            // To ourselves: no account leads there, so the exchange an incoming echo request
            // gets is done here, with the same steps: the request is answered with an echo
            // response to its source (us), which is fulfilled from the ping's own entry.
            let started = tokio::time::Instant::now();
            self.pings.borrow_mut().insert(condition, fulfillment);
            let answer = ilp::echo::requested_source(&prepare)
                .map_err(|e| Reject::new(ErrorCode::F01_INVALID_PACKET, Some(&own), &e.to_string()))
                .and_then(|source| {
                    ilp::echo::answer_request(&prepare, &source, 0).map_err(|e| {
                        Reject::new(ErrorCode::T00_INTERNAL_ERROR, Some(&own), &e.to_string())
                    })
                })
                .and_then(|response| {
                    let to = response.destination_str();
                    match local::classify(to, Some(&own), response.data()) {
                        LocalDestination::Echo if ilp::echo::is_response(&response) => {
                            self.answer_ping(&response)
                        }
                        _ => Err(Reject::new(
                            ErrorCode::F02_UNREACHABLE,
                            Some(&own),
                            &format!("echo response to {to} is not ours to answer"),
                        )),
                    }
                })
                .and_then(|fulfill| {
                    let hash: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
                    (hash == condition).then_some(()).ok_or_else(|| {
                        Reject::new(
                            ErrorCode::F05_WRONG_CONDITION,
                            Some(&own),
                            "echo fulfillment does not match the ping's condition",
                        )
                    })
                });
            self.pings.borrow_mut().remove(&condition);
            let rtt = started.elapsed();
            return Box::pin(async move { answer.map(|()| rtt) });
        }
        // Locally originated: no source account, so reflection cannot apply.
        let to = match self.routes.next_hop("", msg.destination.as_str(), true) {
            Ok(to) => to.clone(),
            Err(e) => return fail(ErrorCode::F02_UNREACHABLE, &e.to_string()),
        };
        let Some(next) = self.accounts.get(&to) else {
            return fail(
                ErrorCode::F02_UNREACHABLE,
                &format!("no route to next hop {to}"),
            );
        };
        self.pings.borrow_mut().insert(condition, fulfillment);
        let pings = self.pings.clone();
        let send = send_to_next_hop(next.send.clone(), prepare, expires_at, self.clock, node);
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = send.await;
            pings.borrow_mut().remove(&condition);
            result.map(|_| started.elapsed())
        })
    }
}

impl Handler<SendCircular> for Router {
    type Result = ResponseFuture<Result<CircularReport, CircularError>>;

    fn handle(&mut self, msg: SendCircular, _ctx: &mut Self::Context) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(async move { Err(e) }) };
        let Some(own) = self.node_address.clone() else {
            return fail(CircularError::NoAddress);
        };
        let peer = |id: &AccountId| match self.accounts.get(id) {
            None => Err(CircularError::UnknownAccount(id.clone())),
            Some(a) if a.local.is_some() => Err(CircularError::LocalAccount(id.clone())),
            Some(a) => Ok(a),
        };
        let via = match peer(&msg.via) {
            Ok(via) => via,
            Err(e) => return fail(e),
        };
        if let Some(Err(e)) = msg.return_via.as_ref().map(peer) {
            return fail(e);
        }
        let sent_asset = ilp::sender::Asset {
            code: via.asset_code.clone(),
            scale: via.asset_scale,
        };
        let expires_at = self.expiry_after(msg.timeout);
        let circuit = ilp::circular::Circuit::new(
            rand::random(),
            rand::random(),
            &msg.via,
            msg.return_via.as_deref(),
            msg.amount,
            msg.min_return,
            expires_at,
        );
        let prepare = match circuit.prepare(&own) {
            Ok(p) => p,
            Err(e) => {
                let reject = Reject::new(ErrorCode::T00_INTERNAL_ERROR, Some(&own), &e.to_string());
                return fail(CircularError::Rejected(reject));
            }
        };
        let id = circuit.id();
        let condition = *circuit.condition();
        let send = send_to_next_hop(
            via.send.clone(),
            prepare,
            expires_at,
            self.clock,
            Some(own.clone()),
        );
        self.circulars.borrow_mut().insert(
            condition,
            PendingCircular {
                circuit,
                via: msg.via.clone(),
                booked: None,
            },
        );
        let circulars = self.circulars.clone();
        let balance = self.balance.clone();
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let first_hop = send.await;
            let round_trip = started.elapsed();
            let pending = circulars.borrow_mut().remove(&condition);
            let booked = match pending.and_then(|p| p.booked) {
                // Booked, or refused, before the Fulfill could leave: waits no longer than it.
                Some(outcome) => Some(outcome.await.unwrap_or_else(|_| {
                    Err(Reject::new(
                        ErrorCode::T00_INTERNAL_ERROR,
                        Some(&own),
                        "the returning packet was dropped before it was booked",
                    ))
                })),
                None => None,
            };
            match (booked, first_hop) {
                (Some(Ok(back)), first_hop) => {
                    if first_hop.is_err() {
                        // The first hop says it was not paid (it answered too late, or its link
                        // failed): its leg, booked with the return, is reversed so that our books
                        // mirror its view. The returning account was paid by our Fulfill.
                        reverse_first_hop(&balance, &own, &msg.via, msg.amount, &back.fulfill)
                            .await;
                    }
                    Ok(CircularReport {
                        id,
                        destination: own,
                        via: msg.via,
                        sent: msg.amount,
                        sent_asset,
                        expires_at,
                        returned_via: AccountId::from(back.returned.account.as_str()),
                        returned: back.returned.amount,
                        returned_asset: back.asset,
                        returned_expires_at: back.returned.expires_at,
                        round_trip,
                        first_hop_rejected: first_hop.err(),
                    })
                }
                // It came back but could not be booked: that Reject is why it failed.
                (Some(Err(reject)), _) => Err(CircularError::Rejected(reject)),
                (None, Err(reject)) => Err(CircularError::Rejected(reject)),
                // Only we know the fulfillment, and we never released it.
                (None, Ok(_)) => Err(CircularError::Rejected(Reject::new(
                    ErrorCode::T00_INTERNAL_ERROR,
                    Some(&own),
                    "the first hop fulfilled a circular payment that never came back",
                ))),
            }
        })
    }
}

/// Books `amount` back from `via` after it rejected a circular payment whose legs were booked
/// when the payment returned: the same move as a packet from `via` fulfilled by us.
async fn reverse_first_hop(
    balance: &RouterBalance,
    own: &Address,
    via: &AccountId,
    amount: u64,
    fulfill: &ilp::packet::Fulfill,
) {
    let incoming = Some((via.clone(), amount));
    let reversed = match reserve(balance, Some(own), &incoming, &None).await {
        Ok(Some(id)) => book(
            balance,
            Some(own),
            id,
            incoming,
            None,
            Records::default(),
            Ok(fulfill.clone()),
        )
        .await
        .map(|_| ()),
        Ok(None) => Ok(()),
        Err(unreserved) => Err(unreserved.into_reject(Some(own))),
    };
    if let Err(reject) = reversed {
        slog::error!(crate::log::logger(), "could not reverse a circular payment's first leg";
            "account" => %via, "amount" => amount, "error" => reject.message());
    }
}

crate::supervise::stop_on_crash!(Router);

#[cfg(test)]
mod tests;
