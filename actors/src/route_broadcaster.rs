//! The RouteBroadcaster actor: the node's CCP speaker and listener (`peer.route.control`,
//! `peer.route.update`) for every account, around the sans-IO [`ilp::ccp::RouteBroadcaster`].
//!
//! It sends the core's requests as Prepares over each account's `SendPrepare` recipient and
//! reports the answers back to the core, answers the CCP Prepares the Router hands it, pushes
//! every change of the selected routes to the Router as [`ApplyRouteUpdate`], and keeps one
//! timer armed at the core's next deadline. A restart, or a new node address, rebuilds the core
//! under a fresh routing table id (drawn from a seeded RNG), so peers resync from epoch 0, and
//! pushes the whole table to the Router again.

use crate::clock::Clock;
use crate::messages::{
    AccountId, ApplyRouteUpdate, Crash, HandlePeerProtocol, PacketResult, SendPrepare,
    SetNodeAddress,
};
use crate::supervise::Backoff;
use actix::prelude::*;
use ilp::ccp::{
    self, BroadcasterConfig, CcpAction, CcpError, Mode, Relation, RouteBroadcaster, RouteChange,
    RouteControlRequest, RouteUpdateRequest, RoutingTableId, SenderConfig,
};
use ilp::config::{Config, Relation as ConfigRelation};
use ilp::packet::{Address, ErrorCode, Prepare, Reject, Timestamp};
use ilp::peer_protocol::{PeerProtocolError, PEER_PROTOCOL_EXPIRY_DURATION_MS};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// Furthest ahead the timer is ever set; the core's deadlines are seconds away, this only keeps
/// a nonsensical one from overflowing tokio's `Instant`.
const MAX_TIMER_MS: u64 = 24 * 60 * 60 * 1000;

/// What the broadcaster needs to know about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRouting {
    pub relation: Relation,
    /// We broadcast our routes to it.
    pub send_routes: bool,
    /// We accept its route broadcasts.
    pub receive_routes: bool,
    /// Children: the segment appended to our address to form the child's address.
    pub child_segment: Option<String>,
}

/// The broadcaster's part of the configuration (`[broadcast]`, `[routing]`, the accounts).
#[derive(Clone)]
pub struct BroadcastSettings {
    /// Off: no CCP is spoken, but local, default and static routes still reach the Router.
    pub enabled: bool,
    /// Heartbeat interval of route updates, and retry interval of a refused route control (ms).
    pub interval_ms: u64,
    /// Hold-down time we advertise, and how long a new peer has to send its first update (ms).
    pub route_expiry_ms: u64,
    pub max_epochs_per_update: u32,
    /// Keys the HMAC of the routes we originate.
    pub routing_secret: [u8; 32],
    /// `None` until learned (IL-DCP); [`SetNodeAddress`] supplies it.
    pub own_address: Option<Address>,
    /// Only routes under it are accepted or advertised (`g`, `test`); `None`: the scheme of
    /// our address.
    pub global_prefix: Option<String>,
    pub accounts: BTreeMap<AccountId, AccountRouting>,
    /// Configured routes: `(prefix, account)`.
    pub static_routes: Vec<(String, AccountId)>,
    /// Account of the default route (a local route for the global prefix).
    pub default_route: Option<AccountId>,
}

impl std::fmt::Debug for BroadcastSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastSettings")
            .field("enabled", &self.enabled)
            .field("interval_ms", &self.interval_ms)
            .field("route_expiry_ms", &self.route_expiry_ms)
            .field("max_epochs_per_update", &self.max_epochs_per_update)
            .field("routing_secret", &"***")
            .field("own_address", &self.own_address)
            .field("global_prefix", &self.global_prefix)
            .field("accounts", &self.accounts)
            .field("static_routes", &self.static_routes)
            .field("default_route", &self.default_route)
            .finish()
    }
}

fn ccp_relation(r: ConfigRelation) -> Relation {
    match r {
        ConfigRelation::Parent => Relation::Parent,
        ConfigRelation::Peer => Relation::Peer,
        ConfigRelation::Child => Relation::Child,
    }
}

impl BroadcastSettings {
    /// From a validated configuration. `generated_secret` is used when `node.routing_secret`
    /// is not configured (the caller draws it once per process).
    pub fn from_config(config: &Config, generated_secret: [u8; 32]) -> Self {
        let accounts = config
            .accounts
            .iter()
            .map(|(id, a)| {
                (
                    AccountId::from(id.as_str()),
                    AccountRouting {
                        relation: ccp_relation(a.relation),
                        send_routes: a.sends_routes(),
                        receive_routes: a.receives_routes(),
                        child_segment: a.child_segment(id).map(str::to_owned),
                    },
                )
            })
            .collect();
        BroadcastSettings {
            enabled: config.broadcast.enabled,
            interval_ms: config.broadcast.interval_ms,
            route_expiry_ms: config.broadcast.route_expiry_ms,
            max_epochs_per_update: config.broadcast.max_epochs_per_update,
            routing_secret: config
                .node
                .routing_secret
                .as_ref()
                .map_or(generated_secret, |s| s.0),
            own_address: config.node.ilp_address.clone(),
            global_prefix: None,
            accounts,
            static_routes: config
                .routing
                .static_routes
                .iter()
                .map(|r| (r.prefix.clone(), AccountId::from(r.account.as_str())))
                .collect(),
            default_route: config.default_route_account().map(AccountId::from),
        }
    }

    fn core_config(&self, global_prefix: String) -> BroadcasterConfig {
        BroadcasterConfig {
            global_prefix,
            sender: SenderConfig {
                route_broadcast_interval_ms: self.interval_ms,
                route_expiry_ms: u32::try_from(self.route_expiry_ms).unwrap_or(u32::MAX),
                max_epochs_per_update: self.max_epochs_per_update,
                ..SenderConfig::default()
            },
            initial_hold_down_ms: self.route_expiry_ms,
            route_control_retry_ms: self.interval_ms,
            ..BroadcasterConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Control,
    Update,
}

/// The answer to a request we sent, reported back to the actor by the task that sent it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct RequestOutcome {
    peer: AccountId,
    kind: Kind,
    incarnation: u64,
    seq: u64,
    accepted: bool,
}

fn sync_from_scratch() -> RouteControlRequest {
    RouteControlRequest {
        mode: Mode::Sync,
        last_known_routing_table_id: RoutingTableId::default(),
        last_known_epoch: 0,
        features: Vec::new(),
    }
}

fn stop_syncing() -> RouteControlRequest {
    RouteControlRequest {
        mode: Mode::Idle,
        ..sync_from_scratch()
    }
}

pub struct RouteBroadcasterActor {
    settings: BroadcastSettings,
    accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
    router: Recipient<ApplyRouteUpdate>,
    clock: Clock,
    rng: SmallRng,
    backoff: Backoff,
    /// `None` until our address is known, and between a crash and the restart.
    core: Option<RouteBroadcaster<AccountId>>,
    /// Bumped at every rebuild of `core`: answers to requests an older core sent are dropped.
    incarnation: u64,
    /// Per peer and kind, the latest request sent: the core tracks one request in flight per
    /// peer, so only the answer to the latest one is reported.
    latest: BTreeMap<(AccountId, Kind), u64>,
    next_seq: u64,
    /// Peers we started pushing our table to after a rebuild without their asking (see
    /// [`RouteBroadcasterActor::rebuild`]); cleared when they ask or answer.
    presumed_sync: BTreeSet<AccountId>,
    /// Next hop per prefix as last pushed to the Router.
    installed: BTreeMap<String, AccountId>,
    timer: Option<SpawnHandle>,
    /// `now` of the last poll, so a deadline the core keeps in the past cannot spin the actor.
    last_poll_ms: Option<u64>,
}

impl RouteBroadcasterActor {
    /// `accounts`: where to send each account's CCP requests (its PeerAccount); `rng_seed`
    /// seeds the generator of routing table ids.
    pub fn new(
        settings: BroadcastSettings,
        accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
        router: Recipient<ApplyRouteUpdate>,
        clock: Clock,
        rng_seed: u64,
    ) -> Self {
        RouteBroadcasterActor {
            settings,
            accounts,
            router,
            clock,
            rng: SmallRng::seed_from_u64(rng_seed),
            backoff: Backoff::default(),
            core: None,
            incarnation: 0,
            latest: BTreeMap::new(),
            next_seq: 0,
            presumed_sync: BTreeSet::new(),
            installed: BTreeMap::new(),
            timer: None,
            last_poll_ms: None,
        }
    }

    /// Builds a fresh core from the settings under a new routing table id, registers the
    /// local, default and static routes and the CCP peers, and pushes the whole table to the
    /// Router.
    ///
    /// A peer that synced from our previous core holds routes under a table id that no longer
    /// exists, and will not ask again until they expire (no link went down to tell it). So every
    /// peer we send routes to gets our new table from epoch 0 right away, as if it had asked;
    /// if it refuses, we wait for it to ask.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        self.incarnation = self.incarnation.wrapping_add(1);
        self.latest.clear();
        self.presumed_sync.clear();
        self.last_poll_ms = None;
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let Some(own) = self.settings.own_address.clone() else {
            self.core = None;
            return;
        };
        let global = self
            .settings
            .global_prefix
            .clone()
            .unwrap_or_else(|| own.scheme().to_owned());
        let mut id = [0u8; 16];
        self.rng.fill_bytes(&mut id);
        let mut core = RouteBroadcaster::new(
            own.clone(),
            &self.settings.routing_secret,
            RoutingTableId(id),
            self.settings.core_config(global.clone()),
        );
        let now = self.clock.now_ms();
        let mut actions = Vec::new();
        for (account, a) in &self.settings.accounts {
            // An invalid segment is reported by config validation; the child just gets no route.
            if let Some(child) = a.child_segment.as_deref().and_then(|s| own.with_suffix(s).ok()) {
                actions.extend(core.set_local_route(child.as_str(), account.clone(), a.relation));
            }
        }
        if let Some(account) = &self.settings.default_route {
            if let Some(a) = self.settings.accounts.get(account) {
                actions.extend(core.set_local_route(&global, account.clone(), a.relation));
            }
        }
        for (prefix, account) in &self.settings.static_routes {
            if let Some(a) = self.settings.accounts.get(account) {
                actions.extend(core.set_static_route(prefix, account.clone(), a.relation));
            }
        }
        if self.settings.enabled {
            for (account, a) in &self.settings.accounts {
                if !(a.send_routes || a.receive_routes) {
                    continue;
                }
                actions.extend(core.add_peer(
                    account.clone(),
                    a.relation,
                    a.send_routes,
                    a.receive_routes,
                    now,
                ));
                if a.send_routes
                    && core
                        .handle_route_control(account, &sync_from_scratch())
                        .is_ok()
                {
                    self.presumed_sync.insert(account.clone());
                }
            }
        }
        self.core = Some(core);
        // The full push below supersedes the changes made while building.
        actions.retain(|a| !matches!(a, CcpAction::RouteChanged(_)));
        self.push_full_table();
        self.apply(actions, ctx);
        self.rearm(ctx);
    }

    /// Sends the Router every selected route, and removals for what it holds beyond them.
    fn push_full_table(&mut self) {
        let desired: BTreeMap<String, AccountId> = self
            .core
            .iter()
            .flat_map(|c| c.local_routes())
            .filter_map(|(p, r)| Some((p.to_owned(), r.next_hop.clone()?)))
            .collect();
        let mut changes: Vec<(String, Option<AccountId>)> = self
            .installed
            .keys()
            .filter(|p| !desired.contains_key(*p))
            .map(|p| (p.clone(), None))
            .collect();
        changes.extend(desired.iter().map(|(p, h)| (p.clone(), Some(h.clone()))));
        self.installed = desired;
        if !changes.is_empty() {
            self.router.do_send(ApplyRouteUpdate { changes });
        }
    }

    fn apply(&mut self, actions: Vec<CcpAction<AccountId>>, ctx: &mut Context<Self>) {
        let expires_at = Timestamp::from_unix_millis(
            self.clock
                .now_ms()
                .saturating_add(PEER_PROTOCOL_EXPIRY_DURATION_MS),
        );
        let mut changes = Vec::new();
        for action in actions {
            match action {
                CcpAction::SendRouteControl { peer, request } => {
                    let prepare = request.to_prepare(expires_at);
                    self.send(ctx, peer, Kind::Control, prepare);
                }
                CcpAction::SendRouteUpdate { peer, request } => {
                    let prepare = request.to_prepare(expires_at);
                    self.send(ctx, peer, Kind::Update, prepare);
                }
                CcpAction::RouteChanged(RouteChange::Set { prefix, next_hop }) => {
                    self.installed.insert(prefix.clone(), next_hop.clone());
                    changes.push((prefix, Some(next_hop)));
                }
                CcpAction::RouteChanged(RouteChange::Removed { prefix }) => {
                    self.installed.remove(&prefix);
                    changes.push((prefix, None));
                }
            }
        }
        if !changes.is_empty() {
            self.router.do_send(ApplyRouteUpdate { changes });
        }
    }

    /// Sends a request in a task of its own (the actor keeps serving meanwhile); the task
    /// reports the answer back as a [`RequestOutcome`].
    fn send(
        &mut self,
        ctx: &mut Context<Self>,
        peer: AccountId,
        kind: Kind,
        prepare: Result<Prepare, CcpError>,
    ) {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.latest.insert((peer.clone(), kind), self.next_seq);
        let recipient = self.accounts.get(&peer).cloned();
        let outcome = RequestOutcome {
            peer,
            kind,
            incarnation: self.incarnation,
            seq: self.next_seq,
            accepted: false,
        };
        let (Ok(prepare), Some(recipient)) = (prepare, recipient) else {
            // Unsendable (no link for the account, or a request too big to encode): a failure
            // the core retries, reported after this handler like any other answer.
            ctx.notify(outcome);
            return;
        };
        let me = ctx.address();
        actix::spawn(async move {
            let accepted = matches!(
                recipient.send(SendPrepare { prepare }).await,
                Ok(Ok(fulfill)) if ccp::check_response(&fulfill).is_ok()
            );
            me.do_send(RequestOutcome {
                accepted,
                ..outcome
            });
        });
    }

    /// Arms the timer at the core's next deadline (replacing the previous one).
    fn rearm(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let Some(next) = self.core.as_ref().and_then(|c| c.next_timeout()) else {
            return;
        };
        let now = self.clock.now_ms();
        let at = match self.last_poll_ms {
            Some(last) => next.max(last.saturating_add(1)),
            None => next,
        }
        .min(now.saturating_add(MAX_TIMER_MS));
        let deadline = self.clock.instant_at(Timestamp::from_unix_millis(at));
        let timer = actix::fut::wrap_future::<_, Self>(tokio::time::sleep_until(deadline)).map(
            |_, act: &mut Self, ctx: &mut Context<Self>| {
                act.timer = None;
                act.on_timer(ctx);
            },
        );
        self.timer = Some(ctx.spawn(timer));
    }

    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now_ms();
        self.last_poll_ms = Some(now);
        let actions = match self.core.as_mut() {
            Some(core) => core.poll(now),
            None => return,
        };
        self.apply(actions, ctx);
        self.rearm(ctx);
    }

    fn handle_peer_protocol(
        &mut self,
        from: &AccountId,
        prepare: &Prepare,
        ctx: &mut Context<Self>,
    ) -> PacketResult {
        let now_ms = self.clock.now_ms();
        let now = Timestamp::from_unix_millis(now_ms);
        let Some(core) = self.core.as_mut() else {
            return Err(Reject::new(
                ErrorCode::T00_INTERNAL_ERROR,
                None,
                "route broadcaster has no ILP address yet",
            ));
        };
        let own = core.own_address().clone();
        let refuse = |e: &dyn std::fmt::Display| {
            Reject::new(ErrorCode::F00_BAD_REQUEST, Some(&own), &e.to_string())
        };
        match prepare.destination_str() {
            ccp::CCP_CONTROL_DESTINATION => {
                let request = RouteControlRequest::from_prepare(prepare, now)
                    .map_err(|e| decode_reject(&e, &own))?;
                core.handle_route_control(from, &request)
                    .map_err(|e| refuse(&e))?;
                self.presumed_sync.remove(from);
            }
            ccp::CCP_UPDATE_DESTINATION => {
                let request = RouteUpdateRequest::from_prepare(prepare, now)
                    .map_err(|e| decode_reject(&e, &own))?;
                let actions = core
                    .handle_route_update(from, now_ms, &request)
                    .map_err(|e| refuse(&e))?;
                self.apply(actions, ctx);
            }
            _ => {
                return Err(Reject::new(
                    ErrorCode::F01_INVALID_PACKET,
                    Some(&own),
                    "unknown peer.route protocol",
                ))
            }
        }
        ccp::response().map_err(|e| {
            Reject::new(ErrorCode::T00_INTERNAL_ERROR, Some(&own), &e.to_string())
        })
    }
}

/// The Reject for a CCP Prepare that does not decode, with the codes the JS connector uses: a
/// wrong condition makes the packet invalid (F01), an expired one timed out (R00), and
/// undecodable data is a bad request (F00).
fn decode_reject(e: &CcpError, own: &Address) -> Reject {
    let code = match e {
        CcpError::PeerProtocol(PeerProtocolError::WrongCondition)
        | CcpError::PeerProtocol(PeerProtocolError::WrongDestination(_)) => {
            ErrorCode::F01_INVALID_PACKET
        }
        CcpError::PeerProtocol(PeerProtocolError::Expired) => ErrorCode::R00_TRANSFER_TIMED_OUT,
        _ => ErrorCode::F00_BAD_REQUEST,
    };
    Reject::new(code, Some(own), &e.to_string())
}

impl Actor for RouteBroadcasterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.backoff.delay();
        if delay.is_zero() {
            self.rebuild(ctx);
        } else {
            ctx.wait(
                actix::fut::wrap_future::<_, Self>(tokio::time::sleep(delay)).map(
                    |_, act: &mut Self, ctx: &mut Context<Self>| act.rebuild(ctx),
                ),
            );
        }
    }
}

impl actix::Supervised for RouteBroadcasterActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.backoff.on_restart();
        // The context dropped the timer; `started` builds a new core under a new table id.
        self.timer = None;
        self.core = None;
    }
}

impl Handler<HandlePeerProtocol> for RouteBroadcasterActor {
    type Result = PacketResult;

    fn handle(&mut self, msg: HandlePeerProtocol, ctx: &mut Self::Context) -> PacketResult {
        let result = self.handle_peer_protocol(&msg.from, &msg.prepare, ctx);
        self.rearm(ctx);
        result
    }
}

impl Handler<RequestOutcome> for RouteBroadcasterActor {
    type Result = ();

    fn handle(&mut self, msg: RequestOutcome, ctx: &mut Self::Context) {
        if msg.incarnation != self.incarnation
            || self.latest.get(&(msg.peer.clone(), msg.kind)) != Some(&msg.seq)
        {
            return;
        }
        let now = self.clock.now_ms();
        let Some(core) = self.core.as_mut() else {
            return;
        };
        match (msg.kind, msg.accepted) {
            (Kind::Update, true) => {
                core.route_update_acknowledged(&msg.peer);
                self.presumed_sync.remove(&msg.peer);
            }
            (Kind::Update, false) => {
                core.route_update_failed(&msg.peer);
                if self.presumed_sync.remove(&msg.peer) {
                    // It never asked for our routes and refused them: wait until it does.
                    let _ = core.handle_route_control(&msg.peer, &stop_syncing());
                }
            }
            (Kind::Control, true) => core.route_control_acknowledged(&msg.peer),
            (Kind::Control, false) => core.route_control_failed(&msg.peer, now),
        }
        self.rearm(ctx);
    }
}

impl Handler<SetNodeAddress> for RouteBroadcasterActor {
    type Result = ();

    fn handle(&mut self, msg: SetNodeAddress, ctx: &mut Self::Context) {
        if self.settings.own_address.as_ref() == Some(&msg.address) && self.core.is_some() {
            return;
        }
        self.settings.own_address = Some(msg.address);
        self.rebuild(ctx);
    }
}

impl Handler<Crash> for RouteBroadcasterActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
