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
    ask, AccountId, ApplyRouteUpdate, HandlePeerProtocol, PacketResult, SendPrepare, SetNodeAddress,
};
use crate::supervise::Backoff;
use actix::prelude::*;
use ilp::ccp::{
    self, BroadcasterConfig, CcpAction, CcpError, Mode, Relation, RouteBroadcaster, RouteChange,
    RouteControlRequest, RouteUpdateRequest, RoutingTableId, SenderConfig,
};
use ilp::config::{Config, Relation as ConfigRelation};
use ilp::packet::{Address, ErrorClass, ErrorCode, Prepare, Reject, Timestamp};
use ilp::peer_protocol::PEER_PROTOCOL_EXPIRY_DURATION_MS;
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
            static_routes: crate::messages::configured_static_routes(config),
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
    /// The peer's final Reject (F..), which a repeat would get again; `None` when accepted or
    /// when the request did not get through (link down, no answer in time).
    refused: Option<Reject>,
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
    log: slog::Logger,
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
            log: crate::log::logger().clone(),
        }
    }

    /// Logs to `log` instead of the node's logger (tests read what it says).
    pub fn with_logger(mut self, log: slog::Logger) -> Self {
        self.log = log;
        self
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
            if let Some(child) = a
                .child_segment
                .as_deref()
                .and_then(|s| own.with_suffix(s).ok())
            {
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
            refused: None,
        };
        let (Ok(prepare), Some(recipient)) = (prepare, recipient) else {
            // Unsendable (no link for the account, or a request too big to encode): a failure
            // the core retries, reported after this handler like any other answer.
            ctx.notify(outcome);
            return;
        };
        let me = ctx.address();
        actix::spawn(async move {
            let (accepted, refused) = match ask(&recipient, SendPrepare { prepare }).await {
                Ok(Ok(fulfill)) => (ccp::check_response(&fulfill).is_ok(), None),
                Ok(Err(reject)) if reject.code().class() == ErrorClass::Final => {
                    (false, Some(reject))
                }
                _ => (false, None),
            };
            me.do_send(RequestOutcome {
                accepted,
                refused,
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
        ccp::response()
            .map_err(|e| Reject::new(ErrorCode::T00_INTERNAL_ERROR, Some(&own), &e.to_string()))
    }
}

/// The Reject for a CCP Prepare that does not decode: a failed peer-protocol check gets the
/// code every `peer.*` handler answers it with
/// ([`ilp::peer_protocol::PeerProtocolError::code`]: a wrong condition F01, an expired request
/// R02), and undecodable data is a bad request (F00).
fn decode_reject(e: &CcpError, own: &Address) -> Reject {
    let code = match e {
        CcpError::PeerProtocol(p) => p.code(),
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
                actix::fut::wrap_future::<_, Self>(tokio::time::sleep(delay))
                    .map(|_, act: &mut Self, ctx: &mut Context<Self>| act.rebuild(ctx)),
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
            (Kind::Control, false) => match &msg.refused {
                // Refused for good (a JS parent answers its child F00 "non-peer"): said once
                // per run of refusals, each one waiting twice as long as the one before.
                Some(reject) => {
                    if core.route_control_refused(&msg.peer, now) == Some(1) {
                        slog::warn!(self.log, "peer refuses our route control requests; asking less and less often";
                            "account" => %msg.peer, "code" => reject.code().as_str(),
                            "message" => reject.message());
                    }
                }
                None => core.route_control_failed(&msg.peer, now),
            },
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

/// A reload: new settings and accounts; the routing table is rebuilt under a new id (peers
/// resync). An address learned over IL-DCP is kept when the settings name none.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub settings: BroadcastSettings,
    pub accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
}

impl Handler<Reconfigure> for RouteBroadcasterActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) {
        let mut settings = msg.settings;
        if settings.own_address.is_none() {
            settings.own_address = self.settings.own_address.clone();
        }
        settings.global_prefix = settings
            .global_prefix
            .or_else(|| self.settings.global_prefix.clone());
        self.settings = settings;
        self.accounts = msg.accounts;
        self.rebuild(ctx);
    }
}

crate::supervise::stop_on_crash!(RouteBroadcasterActor);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Crash;
    use crate::messages::Reply;
    use crate::test_support::run;
    use ilp::ccp::{forwarded_auth, route_auth, Route};
    use ilp::packet::PrepareBuilder;
    use ilp::peer_protocol::peer_request;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const START_MS: u64 = 1_700_000_000_000;

    type Shared<T> = Arc<Mutex<T>>;

    fn id(s: &str) -> AccountId {
        AccountId::from(s)
    }

    fn addr(s: &str) -> Address {
        Address::try_from(s).unwrap()
    }

    fn secret(name: &str) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..name.len()].copy_from_slice(name.as_bytes());
        s
    }

    async fn settle(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Stands in for a PeerAccount, its link and the far node's Router: hands what its node
    /// sends to the far node's broadcaster, as a CCP Prepare from the account the far node
    /// knows us as.
    struct FakeLink {
        from: AccountId,
        far: Shared<Option<Recipient<HandlePeerProtocol>>>,
        up: Arc<AtomicBool>,
        sent: Shared<Vec<Prepare>>,
    }

    impl Actor for FakeLink {
        type Context = Context<Self>;
    }

    impl Handler<SendPrepare> for FakeLink {
        type Result = Reply<PacketResult>;

        fn handle(&mut self, msg: SendPrepare, _: &mut Context<Self>) -> Self::Result {
            self.sent.lock().unwrap().push(msg.prepare.clone());
            let far = self.far.lock().unwrap().clone();
            let far = far.filter(|_| self.up.load(Ordering::SeqCst));
            let from = self.from.clone();
            Reply::later(async move {
                let down = || Reject::new(ErrorCode::T01_PEER_UNREACHABLE, None, "link down");
                match far {
                    Some(far) => far
                        .send(HandlePeerProtocol {
                            from,
                            prepare: msg.prepare,
                        })
                        .await
                        .unwrap_or_else(|_| Err(down())),
                    None => Err(down()),
                }
            })
        }
    }

    /// One direction of a link: what a node uses to send to one of its accounts.
    struct Wire {
        far: Shared<Option<Recipient<HandlePeerProtocol>>>,
        up: Arc<AtomicBool>,
        sent: Shared<Vec<Prepare>>,
        recipient: Recipient<SendPrepare>,
    }

    impl Wire {
        /// `from`: the account id under which the far node knows the sender.
        fn new(from: &str) -> Wire {
            let far = Arc::new(Mutex::new(None));
            let up = Arc::new(AtomicBool::new(true));
            let sent = Arc::new(Mutex::new(Vec::new()));
            let recipient = FakeLink {
                from: id(from),
                far: far.clone(),
                up: up.clone(),
                sent: sent.clone(),
            }
            .start()
            .recipient();
            Wire {
                far,
                up,
                sent,
                recipient,
            }
        }

        fn attach(&self, node: &Node) {
            *self.far.lock().unwrap() = Some(node.addr.clone().recipient());
        }

        fn set_up(&self, up: bool) {
            self.up.store(up, Ordering::SeqCst);
        }

        fn sent_count(&self) -> usize {
            self.sent.lock().unwrap().len()
        }

        /// Every route update sent so far, decoded.
        fn updates(&self) -> Vec<RouteUpdateRequest> {
            self.sent
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.destination_str() == ccp::CCP_UPDATE_DESTINATION)
                .map(|p| RouteUpdateRequest::decode(p.data()).unwrap())
                .collect()
        }

        /// The last route for `prefix` this wire carried.
        fn advertised(&self, prefix: &str) -> Option<Route> {
            self.updates()
                .into_iter()
                .flat_map(|u| u.new_routes)
                .filter(|r| r.prefix == prefix)
                .last()
        }
    }

    /// The Router as the broadcaster sees it: next hop per prefix, and every change received.
    #[derive(Clone, Default)]
    struct RouterView {
        table: Shared<BTreeMap<String, AccountId>>,
        log: Shared<Vec<(String, Option<AccountId>)>>,
    }

    impl RouterView {
        fn hop(&self, prefix: &str) -> Option<String> {
            self.table
                .lock()
                .unwrap()
                .get(prefix)
                .map(|h| h.to_string())
        }

        fn ever_removed(&self, prefix: &str) -> bool {
            self.log
                .lock()
                .unwrap()
                .iter()
                .any(|(p, h)| p == prefix && h.is_none())
        }

        fn ever_set(&self, prefix: &str) -> bool {
            self.log.lock().unwrap().iter().any(|(p, _)| p == prefix)
        }
    }

    struct FakeRouter(RouterView);

    impl Actor for FakeRouter {
        type Context = Context<Self>;
    }

    impl Handler<ApplyRouteUpdate> for FakeRouter {
        type Result = ();

        fn handle(&mut self, msg: ApplyRouteUpdate, _: &mut Context<Self>) {
            let mut table = self.0.table.lock().unwrap();
            for (prefix, hop) in msg.changes {
                self.0
                    .log
                    .lock()
                    .unwrap()
                    .push((prefix.clone(), hop.clone()));
                match hop {
                    Some(hop) => table.insert(prefix, hop),
                    None => table.remove(&prefix),
                };
            }
        }
    }

    struct Node {
        addr: Addr<RouteBroadcasterActor>,
        router: RouterView,
    }

    impl Node {
        fn start(settings: BroadcastSettings, links: &[(&str, &Wire)], seed: u64) -> Node {
            let router = RouterView::default();
            let router_rcpt = FakeRouter(router.clone()).start().recipient();
            let accounts: BTreeMap<_, _> = links
                .iter()
                .map(|(a, w)| (id(a), w.recipient.clone()))
                .collect();
            let clock = Clock::starting_at(START_MS);
            let addr = actix::Supervisor::start(move |_| {
                RouteBroadcasterActor::new(settings, accounts, router_rcpt, clock, seed)
            });
            Node { addr, router }
        }

        async fn deliver(&self, from: &str, prepare: Prepare) -> PacketResult {
            self.addr
                .send(HandlePeerProtocol {
                    from: id(from),
                    prepare,
                })
                .await
                .unwrap()
        }
    }

    /// Settings of node `test.<name>`; accounts send and receive routes unless they are
    /// children (the JS defaults), and children get their id as address segment.
    fn settings(name: &str, accounts: &[(&str, Relation)]) -> BroadcastSettings {
        BroadcastSettings {
            enabled: true,
            interval_ms: 30_000,
            route_expiry_ms: 45_000,
            max_epochs_per_update: 50,
            routing_secret: secret(name),
            own_address: Some(addr(&format!("test.{name}"))),
            global_prefix: None,
            accounts: accounts
                .iter()
                .map(|(a, r)| {
                    let child = *r == Relation::Child;
                    (
                        id(a),
                        AccountRouting {
                            relation: *r,
                            send_routes: !child,
                            receive_routes: !child,
                            child_segment: child.then(|| a.to_string()),
                        },
                    )
                })
                .collect(),
            static_routes: Vec::new(),
            default_route: None,
        }
    }

    /// Nodes a and b, peers of each other, with `a` and `b` settings adjusted by the caller.
    fn pair(sa: BroadcastSettings, sb: BroadcastSettings) -> (Node, Node, Wire, Wire) {
        let a_to_b = Wire::new("a");
        let b_to_a = Wire::new("b");
        let a = Node::start(sa, &[("b", &a_to_b)], 1);
        let b = Node::start(sb, &[("a", &b_to_a)], 2);
        a_to_b.attach(&b);
        b_to_a.attach(&a);
        (a, b, a_to_b, b_to_a)
    }

    /// a — b — c, each a peer of its neighbours.
    struct Chain {
        a: Node,
        b: Node,
        c: Node,
        a_to_b: Wire,
        b_to_a: Wire,
        b_to_c: Wire,
    }

    fn chain() -> Chain {
        let a_to_b = Wire::new("a");
        let b_to_a = Wire::new("b");
        let b_to_c = Wire::new("b");
        let c_to_b = Wire::new("c");
        let a = Node::start(
            settings("a", &[("b", Relation::Peer)]),
            &[("b", &a_to_b)],
            1,
        );
        let b = Node::start(
            settings("b", &[("a", Relation::Peer), ("c", Relation::Peer)]),
            &[("a", &b_to_a), ("c", &b_to_c)],
            2,
        );
        let c = Node::start(
            settings("c", &[("b", Relation::Peer)]),
            &[("b", &c_to_b)],
            3,
        );
        a_to_b.attach(&b);
        b_to_a.attach(&a);
        b_to_c.attach(&c);
        c_to_b.attach(&b);
        Chain {
            a,
            b,
            c,
            a_to_b,
            b_to_a,
            b_to_c,
        }
    }

    fn update_from(speaker: &str, routes: Vec<Route>) -> RouteUpdateRequest {
        RouteUpdateRequest {
            routing_table_id: RoutingTableId([0x5e; 16]),
            current_epoch_index: 1,
            from_epoch_index: 0,
            to_epoch_index: 1,
            hold_down_time: 45_000,
            speaker: addr(speaker),
            new_routes: routes,
            withdrawn_routes: Vec::new(),
        }
    }

    fn route(prefix: &str, path: &[&str]) -> Route {
        Route {
            prefix: prefix.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            auth: [3; 32],
            props: Vec::new(),
        }
    }

    fn expiry() -> Timestamp {
        Timestamp::from_unix_millis(START_MS + 3_600_000)
    }

    fn code(result: PacketResult) -> String {
        result.unwrap_err().code().as_str().to_string()
    }

    #[test]
    fn peers_learn_each_others_routes() {
        run(async {
            let mut sa = settings("a", &[("b", Relation::Peer)]);
            sa.default_route = Some(id("b"));
            let mut sb = settings("b", &[("a", Relation::Peer), ("kid", Relation::Child)]);
            sb.static_routes = vec![("test.other".into(), id("kid"))];
            let (a, b, _, _) = pair(sa, sb);
            settle(1_000).await;
            assert_eq!(a.router.hop("test.b").as_deref(), Some("b"));
            assert_eq!(a.router.hop("test.other").as_deref(), Some("b"));
            assert_eq!(a.router.hop("test").as_deref(), Some("b"), "default route");
            // b's child is reached through b's own address; its route is not advertised
            assert_eq!(a.router.hop("test.b.kid"), None);
            assert_eq!(b.router.hop("test.a").as_deref(), Some("a"));
            assert_eq!(b.router.hop("test.b.kid").as_deref(), Some("kid"));
            assert_eq!(b.router.hop("test.other").as_deref(), Some("kid"));
            // our own address never goes to the Router: it has no next hop
            assert_eq!(a.router.hop("test.a"), None);
        });
    }

    #[test]
    fn auth_values_are_the_cores_hmac_chain() {
        run(async {
            let net = chain();
            settle(1_000).await;
            assert_eq!(net.c.router.hop("test.a").as_deref(), Some("b"));
            assert_eq!(net.a.router.hop("test.c").as_deref(), Some("b"));
            let originated = route_auth(&secret("a"), "test.a");
            let from_a = net.a_to_b.advertised("test.a").unwrap();
            assert_eq!(from_a.path, vec!["test.a"]);
            assert_eq!(from_a.auth, forwarded_auth(&originated));
            let relayed = net.b_to_c.advertised("test.a").unwrap();
            assert_eq!(relayed.path, vec!["test.b", "test.a"]);
            assert_eq!(relayed.auth, forwarded_auth(&forwarded_auth(&originated)));
            let own_b = net.b_to_c.advertised("test.b").unwrap();
            assert_eq!(
                own_b.auth,
                forwarded_auth(&route_auth(&secret("b"), "test.b"))
            );
            // split horizon: b never offers a its own routes back
            assert!(net.b_to_a.advertised("test.a").is_none());
        });
    }

    #[test]
    fn silent_peer_expires_and_the_withdrawal_propagates() {
        run(async {
            let net = chain();
            settle(1_000).await;
            assert_eq!(net.b.router.hop("test.a").as_deref(), Some("a"));
            net.a_to_b.set_up(false);
            net.b_to_a.set_up(false);
            settle(10_000).await;
            // within the 45 s hold-down the route stays
            assert_eq!(net.b.router.hop("test.a").as_deref(), Some("a"));
            assert_eq!(net.c.router.hop("test.a").as_deref(), Some("b"));
            settle(40_000).await;
            assert_eq!(net.b.router.hop("test.a"), None);
            assert!(net.b.router.ever_removed("test.a"));
            assert_eq!(net.c.router.hop("test.a"), None, "withdrawn by b");
            assert_eq!(net.c.router.hop("test.b").as_deref(), Some("b"));
            // link back: b asks a again and relearns
            net.a_to_b.set_up(true);
            net.b_to_a.set_up(true);
            settle(61_000).await;
            assert_eq!(net.b.router.hop("test.a").as_deref(), Some("a"));
            assert_eq!(net.c.router.hop("test.a").as_deref(), Some("b"));
        });
    }

    #[test]
    fn new_address_withdraws_the_old_one() {
        run(async {
            let (a, b, _, _) = pair(
                settings("a", &[("b", Relation::Peer)]),
                settings("b", &[("a", Relation::Peer), ("kid", Relation::Child)]),
            );
            settle(1_000).await;
            assert_eq!(a.router.hop("test.b").as_deref(), Some("b"));
            b.addr.do_send(SetNodeAddress {
                address: addr("test.b2"),
            });
            settle(1_000).await;
            assert_eq!(a.router.hop("test.b"), None);
            assert!(a.router.ever_removed("test.b"));
            assert_eq!(a.router.hop("test.b2").as_deref(), Some("b"));
            assert_eq!(b.router.hop("test.b.kid"), None);
            assert_eq!(b.router.hop("test.b2.kid").as_deref(), Some("kid"));
            assert_eq!(b.router.hop("test.a").as_deref(), Some("a"));
        });
    }

    #[test]
    fn crash_resyncs_under_a_new_table_id_without_an_outage_at_the_peer() {
        run(async {
            let (a, b, a_to_b, _) = pair(
                settings("a", &[("b", Relation::Peer)]),
                settings("b", &[("a", Relation::Peer)]),
            );
            settle(1_000).await;
            let before = a_to_b.updates();
            let old_id = before.last().unwrap().routing_table_id;
            a.addr.do_send(Crash);
            settle(1_000).await;
            let after = a_to_b.updates();
            let first_new = &after[before.len()];
            assert_ne!(first_new.routing_table_id, old_id);
            assert_eq!(first_new.from_epoch_index, 0);
            assert!(first_new.new_routes.iter().any(|r| r.prefix == "test.a"));
            // b switched tables in one update: test.a was never removed from its Router
            assert!(!b.router.ever_removed("test.a"));
            assert_eq!(b.router.hop("test.a").as_deref(), Some("a"));
            // a relearned b's routes and pushed them to its Router again
            assert_eq!(a.router.hop("test.b").as_deref(), Some("b"));
            let sets = a
                .router
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, h)| p == "test.b" && h.is_some())
                .count();
            assert_eq!(sets, 2);
        });
    }

    #[test]
    fn looping_route_is_not_installed() {
        run(async {
            let to_b = Wire::new("a");
            let a = Node::start(settings("a", &[("b", Relation::Peer)]), &[("b", &to_b)], 1);
            let update = update_from(
                "test.b",
                vec![
                    route("test.x", &["test.b", "test.a", "test.x"]),
                    route("test.y", &["test.b", "test.y"]),
                ],
            );
            let fulfill = a
                .deliver("b", update.to_prepare(expiry()).unwrap())
                .await
                .unwrap();
            assert_eq!(ccp::check_response(&fulfill), Ok(()));
            settle(10).await;
            assert_eq!(a.router.hop("test.y").as_deref(), Some("b"));
            assert!(!a.router.ever_set("test.x"));
        });
    }

    #[test]
    fn receive_routes_disabled_refuses_updates_with_f00() {
        run(async {
            let mut sb = settings("b", &[("a", Relation::Peer)]);
            sb.accounts.get_mut("a").unwrap().receive_routes = false;
            let (a, b, a_to_b, _) = pair(settings("a", &[("b", Relation::Peer)]), sb);
            settle(1_000).await;
            assert_eq!(b.router.hop("test.a"), None);
            assert!(!b.router.ever_set("test.a"));
            assert_eq!(a.router.hop("test.b").as_deref(), Some("b"));
            let update = update_from("test.a", vec![route("test.a", &["test.a"])]);
            let reject = b
                .deliver("a", update.to_prepare(expiry()).unwrap())
                .await
                .unwrap_err();
            assert_eq!(reject.code(), ErrorCode::F00_BAD_REQUEST);
            assert_eq!(reject.triggered_by(), Some(addr("test.b")));
            // a stopped pushing the routes b refused; it waits for b to ask
            let sent = a_to_b.sent_count();
            settle(120_000).await;
            assert_eq!(a_to_b.sent_count(), sent);
        });
    }

    #[test]
    fn bad_ccp_prepares_get_the_js_error_codes() {
        run(async {
            let mut s = settings("a", &[("b", Relation::Peer), ("q", Relation::Peer)]);
            s.accounts.get_mut("q").unwrap().send_routes = false;
            let to_b = Wire::new("a");
            let a = Node::start(s, &[("b", &to_b)], 1);
            let control = sync_from_scratch();
            let valid = control.to_prepare(expiry()).unwrap();
            let garbage = peer_request(ccp::CCP_UPDATE_DESTINATION, expiry(), &[0xff]).unwrap();
            assert_eq!(code(a.deliver("b", garbage).await), "F00");
            let destination = addr(ccp::CCP_CONTROL_DESTINATION);
            let data = control.encode();
            let wrong_condition = PrepareBuilder {
                amount: 0,
                expires_at: expiry(),
                execution_condition: &[7; 32],
                destination: &destination,
                data: &data,
            }
            .build()
            .unwrap();
            assert_eq!(code(a.deliver("b", wrong_condition).await), "F01");
            let expired = control
                .to_prepare(Timestamp::from_unix_millis(START_MS - 1_000))
                .unwrap();
            assert_eq!(code(a.deliver("b", expired).await), "R02");
            let unknown = peer_request("peer.route.bogus", expiry(), &data).unwrap();
            assert_eq!(code(a.deliver("b", unknown).await), "F01");
            assert_eq!(code(a.deliver("eve", valid.clone()).await), "F00");
            let refused = a.deliver("q", valid.clone()).await.unwrap_err();
            assert_eq!(refused.code(), ErrorCode::F00_BAD_REQUEST);
            assert_eq!(refused.triggered_by(), Some(addr("test.a")));
            let fulfill = a.deliver("b", valid).await.unwrap();
            assert_eq!(ccp::check_response(&fulfill), Ok(()));
        });
    }

    #[test]
    fn address_learned_late() {
        run(async {
            let mut s = settings("a", &[("b", Relation::Peer), ("kid", Relation::Child)]);
            s.own_address = None;
            let to_b = Wire::new("a");
            let a = Node::start(s, &[("b", &to_b)], 1);
            let valid = sync_from_scratch().to_prepare(expiry()).unwrap();
            let reject = a.deliver("b", valid.clone()).await.unwrap_err();
            assert_eq!(reject.code(), ErrorCode::T00_INTERNAL_ERROR);
            assert_eq!(to_b.sent_count(), 0);
            a.addr.do_send(SetNodeAddress {
                address: addr("test.late"),
            });
            settle(10).await;
            assert_eq!(a.router.hop("test.late.kid").as_deref(), Some("kid"));
            assert!(a.deliver("b", valid).await.is_ok());
            assert!(to_b.sent_count() > 0);
        });
    }

    #[test]
    fn disabled_broadcast_still_feeds_the_router() {
        run(async {
            let mut s = settings("a", &[("b", Relation::Peer), ("kid", Relation::Child)]);
            s.enabled = false;
            s.static_routes = vec![("test.z".into(), id("b"))];
            let to_b = Wire::new("a");
            let a = Node::start(s, &[("b", &to_b)], 1);
            settle(100_000).await;
            assert_eq!(to_b.sent_count(), 0);
            assert_eq!(a.router.hop("test.a.kid").as_deref(), Some("kid"));
            assert_eq!(a.router.hop("test.z").as_deref(), Some("b"));
            let valid = sync_from_scratch().to_prepare(expiry()).unwrap();
            assert_eq!(code(a.deliver("b", valid).await), "F00");
        });
    }

    #[test]
    fn settings_from_config() {
        let text = r#"
            [node]
            ilp_address = "test.me"
            [routing]
            static_routes = [{ prefix = "test.x", account = "bob" }]
            [accounts.bob]
            relation = "peer"
            link = { type = "memory" }
            [accounts.kid]
            relation = "child"
            link = { type = "memory" }
            send_routes = true
            [accounts.mom]
            relation = "parent"
            link = { type = "memory" }
            receive_routes = false
        "#;
        let config = Config::from_toml_str(text).unwrap();
        let s = BroadcastSettings::from_config(&config, [9; 32]);
        assert_eq!(s.routing_secret, [9; 32]);
        assert_eq!(s.own_address, Some(addr("test.me")));
        assert_eq!(s.default_route, Some(id("mom")));
        assert_eq!(s.static_routes, vec![("test.x".into(), id("bob"))]);
        let kid = &s.accounts[&id("kid")];
        assert_eq!(
            (kid.relation, kid.send_routes, kid.receive_routes),
            (Relation::Child, true, false)
        );
        assert_eq!(kid.child_segment.as_deref(), Some("kid"));
        let mom = &s.accounts[&id("mom")];
        assert_eq!((mom.send_routes, mom.receive_routes), (true, false));
        assert_eq!(s.accounts[&id("bob")].child_segment, None);
        assert!(!format!("{s:?}").contains("9, 9"), "secret not in Debug");
    }
    /// One log record: level, message, key-value pairs.
    type Record = (slog::Level, String, Vec<(String, String)>);

    /// What the log was told.
    #[derive(Clone, Default)]
    struct Said(Arc<Mutex<Vec<Record>>>);

    struct Pairs(Vec<(String, String)>);

    impl slog::Serializer for Pairs {
        fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
            self.0.push((key.to_string(), val.to_string()));
            Ok(())
        }
    }

    impl slog::Drain for Said {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            let mut pairs = Pairs(Vec::new());
            let _ = slog::KV::serialize(&record.kv(), record, &mut pairs);
            let said = (record.level(), record.msg().to_string(), pairs.0);
            self.0.lock().unwrap().push(said);
            Ok(())
        }
    }

    impl Said {
        fn warnings(&self) -> Vec<(String, Vec<(String, String)>)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|(level, _, _)| *level == slog::Level::Warning)
                .map(|(_, m, kv)| (m.clone(), kv.clone()))
                .collect()
        }
    }

    /// A parent as a JS connector is to its child: every CCP request is refused F00 (until told
    /// to accept route controls); records when each route control arrived.
    struct RefusingParent {
        controls: Shared<Vec<tokio::time::Instant>>,
        accept: Arc<AtomicBool>,
    }

    impl Actor for RefusingParent {
        type Context = Context<Self>;
    }

    impl Handler<SendPrepare> for RefusingParent {
        type Result = Reply<PacketResult>;

        fn handle(&mut self, msg: SendPrepare, _: &mut Context<Self>) -> Self::Result {
            let control = msg.prepare.destination_str() == ccp::CCP_CONTROL_DESTINATION;
            if control {
                self.controls
                    .lock()
                    .unwrap()
                    .push(tokio::time::Instant::now());
                if self.accept.load(Ordering::SeqCst) {
                    return Reply::ready(ccp::response().map_err(|e| {
                        Reject::new(ErrorCode::T00_INTERNAL_ERROR, None, &e.to_string())
                    }));
                }
            }
            let message = "cannot process route control messages from non-peers.";
            let refusal = Reject::new(ErrorCode::F00_BAD_REQUEST, Some(&addr("test.mom")), message);
            Reply::ready(Err(refusal))
        }
    }

    /// A parent that refuses our route controls is told once (a warning with the account, the
    /// code and the message) and asked less and less often: 30 s, then 60, 120, 240, 480 s, then
    /// every 10 minutes, with no extra request at each hold-down expiry. Once it accepts, the
    /// backoff ends; a refusal after that is told once more and waits 30 s again.
    #[test]
    fn refused_route_controls_are_logged_once_and_spaced_out() {
        run(async {
            let controls = Arc::new(Mutex::new(Vec::new()));
            let accept = Arc::new(AtomicBool::new(false));
            let parent = RefusingParent {
                controls: controls.clone(),
                accept: accept.clone(),
            }
            .start()
            .recipient();
            let said = Said::default();
            let log = slog::Logger::root(slog::Drain::fuse(said.clone()), slog::o!());
            let router = FakeRouter(RouterView::default()).start().recipient();
            let settings = settings("kid", &[("mom", Relation::Parent)]);
            let accounts = BTreeMap::from([(id("mom"), parent)]);
            let clock = Clock::starting_at(START_MS);
            let _kid = actix::Supervisor::start(move |_| {
                RouteBroadcasterActor::new(settings, accounts, router, clock, 7).with_logger(log)
            });
            let started = tokio::time::Instant::now();
            settle(20 * 60 * 1000).await;
            let at: Vec<u64> = controls
                .lock()
                .unwrap()
                .iter()
                .map(|t| u64::try_from((*t - started).as_millis()).unwrap())
                .collect();
            let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
            assert_eq!(gaps, [30_000, 60_000, 120_000, 240_000, 480_000], "{at:?}");
            let warnings = said.warnings();
            assert_eq!(warnings.len(), 1, "{:?}", said.0.lock().unwrap());
            let (message, pairs) = &warnings[0];
            assert!(message.contains("refuses our route control"), "{message}");
            let pair = |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(pair("account").as_deref(), Some("mom"));
            assert_eq!(pair("code").as_deref(), Some("F00"));
            assert_eq!(
                pair("message").as_deref(),
                Some("cannot process route control messages from non-peers.")
            );

            // Accepted at the next try, 600 s after the last one (at 1530 s; 1200 s have
            // passed): the backoff ends. The next request, at the hold-down expiry 45 s later
            // (the parent sends no routes), is refused again: one more warning, then 30 s.
            accept.store(true, Ordering::SeqCst);
            settle(330_000 + 1_000).await;
            assert_eq!(controls.lock().unwrap().len(), at.len() + 1);
            let accepted_at = *controls.lock().unwrap().last().unwrap();
            assert_eq!(accepted_at - started, Duration::from_secs(1530));
            accept.store(false, Ordering::SeqCst);
            settle(45_000 + 30_000).await;
            let later: Vec<u64> = controls.lock().unwrap()[at.len()..]
                .iter()
                .map(|t| u64::try_from((*t - accepted_at).as_millis()).unwrap())
                .collect();
            assert_eq!(later, [0, 45_000, 75_000]);
            assert_eq!(said.warnings().len(), 2);
        });
    }
}
