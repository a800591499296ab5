//! The SettlementEngine actor: built-in bilateral settlement between two ilp-connector nodes
//! over the link itself (`peer.settle`, see [`ilp::settle`]), so a simulation can run forever
//! without an external ledger. It serves only the accounts configured with
//! `settlement.bilateral = true`: each side takes the other's word that money moved, which is
//! sound only when one operator runs both nodes.
//!
//! Sending: when the BalanceKeeper reports that an account fell below its settle threshold, the
//! engine picks a settlement id (from a seeded RNG, so simulations replay), writes the intent
//! (id, account, amount) to the store, and only once that is durable sends the peer a
//! `peer.settle` request through that account's PeerAccount; it repeats the very same request
//! with backoff until the peer fulfills it, then books the settlement (`Sent`) with the keeper,
//! which writes the id's record with the new balance, and deletes the intent. At start the
//! engine resumes every intent whose id has no record yet, with the same id and amount, so a
//! crash never makes it draw a second id for money the peer may already count. One settlement
//! per account is in flight at a time.
//!
//! Receiving: a `peer.settle` Prepare from a bilateral account is applied (`Received`) once per
//! id by the keeper and answered with the peer-protocol Fulfill, also when the id was applied
//! before, so a sender whose Fulfill was lost heals it by repeating the request. Any other
//! account's request is rejected (F00) before anything is applied or stored.

mod rfc38;

pub use rfc38::{
    keyed_check, ApiAnswer, Converted, CreditSettlement, EngineAccount, GetSettlementStats, Keyed,
    SendEngineMessage, SettlementStats, TriggerError, TriggerOutcome, TriggerSettlement,
};

use crate::clock::Clock;
use crate::engine_client::EngineClient;
use crate::messages::{
    ask, AccountId, ApplySettlement, HandlePeerProtocol, PacketResult, ReckonSettlement,
    SendPrepare, SettleThresholdCrossed, SettlementDirection,
};
use crate::peer_account::NodeAddress;
use crate::store::{Store, StoreError, StoreOp};
use crate::supervise::Backoff;
use actix::prelude::*;
use ilp::packet::{ErrorCode, Reject};
use ilp::peer_protocol::peer_response;
use ilp::settle::{self, SettleIntent, SettleRequest, SETTLE_EXPIRY_MS};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where a settlement being sent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its intent is written, then the request is repeated until the peer fulfills it.
    Sending,
    /// The peer fulfilled it: it is booked with the keeper, then its intent deleted.
    Booking,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    request: SettleRequest,
    phase: Phase,
    /// A task of this incarnation of the actor drives it (none while its account is not
    /// configured for bilateral settlement).
    running: bool,
}

pub struct SettlementEngine {
    node_address: NodeAddress,
    /// The PeerAccount of each account that settles bilaterally.
    accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
    balance: Recipient<ApplySettlement>,
    /// Where intents are kept (the store the keeper books settlements in).
    store: Arc<dyn Store>,
    clock: Clock,
    rng: SmallRng,
    /// The intents left in the store were read (at the first start that could read them).
    loaded: bool,
    /// The settlement being sent per account. Kept across restarts of the actor: the peer may
    /// have applied it already, so it is resumed with the same id, never replaced.
    in_flight: BTreeMap<AccountId, InFlight>,
    /// Further unfinished intents found at start for an account that already has one in
    /// flight (this version keeps one per account), resumed one after the other.
    backlog: BTreeMap<AccountId, Vec<SettleRequest>>,
    /// The latest request that came while a settlement was in flight: sent after it, unless
    /// the keeper reckoned it before that settlement was applied (which already covers it).
    queued: BTreeMap<AccountId, SettleThresholdCrossed>,
    backoff: Backoff,
    /// The accounts settled through an RFC 38 engine, and their settlements.
    engines: rfc38::Engines,
}

impl SettlementEngine {
    /// `accounts`: the PeerAccount of each account settled over its link (those configured
    /// with `settlement.bilateral = true`; nobody else may send or receive `peer.settle`).
    /// `balance`: the BalanceKeeper, which applies each settlement once. `store`: where the
    /// intents of settlements being sent persist.
    pub fn new(
        node_address: NodeAddress,
        accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
        balance: Recipient<ApplySettlement>,
        store: Arc<dyn Store>,
        clock: Clock,
        rng_seed: u64,
    ) -> Self {
        SettlementEngine {
            node_address,
            accounts,
            balance,
            store,
            clock,
            rng: SmallRng::seed_from_u64(rng_seed),
            loaded: false,
            in_flight: BTreeMap::new(),
            backlog: BTreeMap::new(),
            queued: BTreeMap::new(),
            backoff: Backoff::default(),
            engines: rfc38::Engines::default(),
        }
    }

    /// The accounts settled through RFC 38 engines (`settlement_engine_url`), the client that
    /// calls the engines, and the keeper that reckons what to settle.
    pub fn with_engines(
        mut self,
        accounts: BTreeMap<AccountId, EngineAccount>,
        client: EngineClient,
        reckon: Recipient<ReckonSettlement>,
    ) -> Self {
        self.engines = rfc38::Engines::new(accounts, client, reckon);
        self
    }

    /// Reads the intents a previous run left: those whose id has a record were booked (only
    /// their deletion was lost) and are returned for deletion; the others are in flight again,
    /// with their ids and amounts, from the start of their sending.
    fn load_intents(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        let (from, to) = settle::intent_range();
        let mut done = Vec::new();
        for (key, value) in self.store.scan_records(&from, &to)? {
            // A record this version cannot read is left alone rather than guessed at.
            let Ok(intent) = SettleIntent::decode(&value) else {
                continue;
            };
            let request = intent.request;
            if self.store.get_record(&request.record_key())?.is_some() {
                done.push(key);
                continue;
            }
            let account = AccountId::from(intent.account.as_str());
            match self.in_flight.entry(account) {
                Entry::Occupied(first) => {
                    self.backlog
                        .entry(first.key().clone())
                        .or_default()
                        .push(request);
                }
                Entry::Vacant(slot) => {
                    slot.insert(InFlight {
                        request,
                        phase: Phase::Sending,
                        running: false,
                    });
                }
            }
        }
        Ok(done)
    }

    fn start_settlement(&mut self, account: AccountId, amount: u64, ctx: &mut Context<Self>) {
        let mut settlement_id = [0u8; 16];
        self.rng.fill_bytes(&mut settlement_id);
        let request = SettleRequest {
            settlement_id,
            amount,
        };
        self.send(account, request, ctx);
    }

    /// Makes `request` the settlement in flight to `account` and starts sending it.
    fn send(&mut self, account: AccountId, request: SettleRequest, ctx: &mut Context<Self>) {
        self.in_flight.insert(
            account.clone(),
            InFlight {
                request,
                phase: Phase::Sending,
                running: false,
            },
        );
        self.drive(account, ctx);
    }

    /// Runs the settlement in flight to `account` from its phase, unless a task already does
    /// or the account is not (or no longer) settled bilaterally.
    fn drive(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let Some(peer) = self.accounts.get(&account).cloned() else {
            return;
        };
        let Some(entry) = self.in_flight.get_mut(&account) else {
            return;
        };
        if entry.running {
            return;
        }
        entry.running = true;
        let request = entry.request;
        match entry.phase {
            Phase::Sending => {
                let intent = SettleIntent {
                    account: account.to_string(),
                    request,
                };
                let work = send_settlement(self.store.clone(), peer, self.clock, intent);
                ctx.spawn(
                    work.into_actor(self)
                        .map(move |(), act, ctx| act.fulfilled(account, ctx)),
                );
            }
            Phase::Booking => self.book(account, request, ctx),
        }
    }

    /// The peer fulfilled the settlement to `account`: book it.
    fn fulfilled(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let Some(entry) = self.in_flight.get_mut(&account) else {
            return;
        };
        entry.phase = Phase::Booking;
        let request = entry.request;
        self.book(account, request, ctx);
    }

    fn book(&mut self, account: AccountId, request: SettleRequest, ctx: &mut Context<Self>) {
        let work = book_settlement(
            self.balance.clone(),
            self.store.clone(),
            account.clone(),
            request,
        );
        ctx.spawn(
            work.into_actor(self)
                .map(move |(), act, ctx| act.finished(account, request.settlement_id, ctx)),
        );
    }

    /// The settlement to `account` is booked: the next one, if any, may start.
    fn finished(&mut self, account: AccountId, booked: [u8; 16], ctx: &mut Context<Self>) {
        self.in_flight.remove(&account);
        if let Some(request) = self.backlog.get_mut(&account).and_then(Vec::pop) {
            self.send(account, request, ctx);
            return;
        }
        self.backlog.remove(&account);
        // The keeper asks for nothing more while our settlement is unbooked, unless it started
        // afresh (a restart of the node) and reckoned on a balance without it: sending that
        // too would pay the same shortfall twice. Once it applies ours it reckons again, and
        // what it asks for then comes marked as after ours.
        if let Some(asked) = self.queued.remove(&account) {
            if asked.after == Some(booked) {
                self.start_settlement(account, asked.amount, ctx);
            }
        }
    }

    /// Runs every settlement in flight that no task of this incarnation drives.
    fn drive_all(&mut self, ctx: &mut Context<Self>) {
        let idle: Vec<AccountId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| !f.running)
            .map(|(a, _)| a.clone())
            .collect();
        for account in idle {
            self.drive(account, ctx);
        }
    }

    fn reject(&self, code: ErrorCode, message: &str) -> Reject {
        Reject::new(code, self.node_address.get().as_ref(), message)
    }
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(settle::retry_delay_ms(attempt))
}

/// Makes the intent durable, then sends its request until the peer fulfills it; never gives
/// up, since the peer may already count it.
async fn send_settlement(
    store: Arc<dyn Store>,
    peer: Recipient<SendPrepare>,
    clock: Clock,
    intent: SettleIntent,
) {
    // Written again when resumed: the same key and value, so nothing changes.
    let put = StoreOp::PutRecord {
        key: intent.key(),
        value: intent.encode(),
    };
    let mut attempt = 0u32;
    while store.commit(vec![put.clone()]).await.is_err() {
        tokio::time::sleep(retry_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
    let mut attempt = 0u32;
    while !send_once(&peer, &clock, &intent.request).await {
        tokio::time::sleep(retry_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Books a settlement the peer fulfilled, then deletes its intent.
async fn book_settlement(
    balance: Recipient<ApplySettlement>,
    store: Arc<dyn Store>,
    account: AccountId,
    request: SettleRequest,
) {
    let apply = ApplySettlement {
        account,
        settlement_id: request.settlement_id,
        amount: request.amount,
        direction: SettlementDirection::Sent,
        also: Vec::new(),
    };
    let mut attempt = 0u32;
    // Applying is idempotent per id, so a store failure is simply retried.
    while !matches!(balance.send(apply.clone()).await, Ok(Ok(_))) {
        tokio::time::sleep(retry_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
    // The keeper wrote the id's record in the batch that moved the balance: from then on the
    // intent is done whatever happens to it. Deleting it only tidies up; one a crash left
    // behind is found done (by that record) and deleted at the next start.
    let delete = StoreOp::DeleteRecord {
        key: settle::intent_key(&request.settlement_id),
    };
    let _ = store.commit(vec![delete]).await;
}

/// One attempt: whether the peer answered with the peer-protocol Fulfill before expiry.
async fn send_once(peer: &Recipient<SendPrepare>, clock: &Clock, request: &SettleRequest) -> bool {
    let Some(expires_at) = clock.now().checked_add_millis(SETTLE_EXPIRY_MS) else {
        return false;
    };
    let Ok(prepare) = request.to_prepare(expires_at) else {
        return false;
    };
    // The PeerAccount rejects at expiry already; this bounds a peer actor that never answers.
    let answer = tokio::time::timeout_at(
        clock.instant_at(expires_at),
        ask(peer, SendPrepare { prepare }),
    )
    .await;
    match answer {
        Ok(Ok(Ok(fulfill))) => settle::check_response(&fulfill).is_ok(),
        _ => false,
    }
}

impl Actor for SettlementEngine {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.backoff.delay();
        if !delay.is_zero() {
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
        }
        if !self.loaded {
            match self.load_intents() {
                Ok(done) => {
                    self.loaded = true;
                    if !done.is_empty() {
                        let ops = done
                            .into_iter()
                            .map(|key| StoreOp::DeleteRecord { key })
                            .collect();
                        let delete = self.store.commit(ops);
                        ctx.spawn(actix::fut::wrap_future(delete).map(|_, _, _| ()));
                    }
                }
                Err(_) => {
                    // Settling without knowing what is in flight could pay twice: fail, and
                    // read again after the restart's backoff.
                    ctx.stop();
                    return;
                }
            }
        }
        // Resume what a crash interrupted, with the same ids; the tasks of the previous
        // incarnation died with it.
        for entry in self.in_flight.values_mut() {
            entry.running = false;
        }
        self.drive_all(ctx);
        if self.start_engines(ctx).is_err() {
            // As above: what was asked of the engines must be known before anything more is.
            ctx.stop();
        }
    }
}

impl actix::Supervised for SettlementEngine {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.backoff.on_restart();
    }
}

impl Handler<SettleThresholdCrossed> for SettlementEngine {
    type Result = ();

    fn handle(&mut self, msg: SettleThresholdCrossed, ctx: &mut Self::Context) {
        if msg.amount == 0 {
            return;
        }
        if self.engines.serves(&msg.account) {
            self.engine_shortfall(msg.account, msg.amount, ctx);
            return;
        }
        if !self.accounts.contains_key(&msg.account) {
            return;
        }
        if self.in_flight.contains_key(&msg.account) {
            self.queued.insert(msg.account.clone(), msg);
        } else {
            self.start_settlement(msg.account, msg.amount, ctx);
        }
    }
}

impl Handler<HandlePeerProtocol> for SettlementEngine {
    type Result = ResponseFuture<PacketResult>;

    fn handle(&mut self, msg: HandlePeerProtocol, _ctx: &mut Self::Context) -> Self::Result {
        if self.engines.serves(&msg.from) {
            return self.engine_message_from_peer(msg.from, msg.prepare);
        }
        if !self.accounts.contains_key(&msg.from) {
            // A claim that money moved, from an account whose configuration does not say we
            // take its word for it: refused before anything is applied or stored.
            let r = self.reject(
                ErrorCode::F00_BAD_REQUEST,
                "peer.settle is not enabled for this account",
            );
            return Box::pin(futures::future::ready(Err(r)));
        }
        let request = match SettleRequest::from_prepare(&msg.prepare, self.clock.now()) {
            Ok(r) => r,
            Err(e) => {
                let r = self.reject(e.code(), &e.to_string());
                return Box::pin(futures::future::ready(Err(r)));
            }
        };
        let balance = self.balance.clone();
        let internal = self.reject(
            ErrorCode::T00_INTERNAL_ERROR,
            "settlement could not be recorded",
        );
        Box::pin(async move {
            let applied = balance
                .send(ApplySettlement {
                    account: msg.from,
                    settlement_id: request.settlement_id,
                    amount: request.amount,
                    direction: SettlementDirection::Received,
                    also: Vec::new(),
                })
                .await;
            // Applied now or before: either way the peer may stop repeating it.
            match applied {
                Ok(Ok(_)) => peer_response(&[]).map_err(|_| internal),
                _ => Err(internal),
            }
        })
    }
}

/// A reload: the PeerAccount of each account now settled bilaterally. A settlement in flight to
/// an account that left keeps being repeated by its task (the peer may count it already); one
/// resumed at start for an account that was not configured then starts once it is.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateAccounts(pub BTreeMap<AccountId, Recipient<SendPrepare>>);

impl Handler<UpdateAccounts> for SettlementEngine {
    type Result = ();

    fn handle(&mut self, msg: UpdateAccounts, ctx: &mut Self::Context) {
        self.accounts = msg.0;
        self.drive_all(ctx);
    }
}

/// A reload: the accounts now settled through an RFC 38 engine.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateEngines(pub BTreeMap<AccountId, EngineAccount>);

impl Handler<UpdateEngines> for SettlementEngine {
    type Result = ();

    fn handle(&mut self, msg: UpdateEngines, ctx: &mut Self::Context) {
        self.update_engines(msg.0, ctx);
    }
}

crate::supervise::stop_on_crash!(SettlementEngine);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance_keeper::tests::{balance, limits, FakeStore};
    use crate::balance_keeper::BalanceKeeper;
    use crate::messages::Crash;
    use crate::messages::Reply;
    use crate::messages::{GetBalance, ReservePacket, ResolvePacket};
    use crate::store::{Store, StoreOp};
    use crate::test_support::run;
    use ilp::packet::Address;
    use ilp::packet::{Prepare, PrepareBuilder, Timestamp};
    use ilp::peer_protocol::PEER_PROTOCOL_CONDITION;
    use std::sync::{Arc, Mutex};

    const START_MS: u64 = 1_700_000_000_000;

    fn acc(id: &str) -> AccountId {
        AccountId::from(id)
    }

    /// What the fake link does with the next Prepares.
    #[derive(Debug, Default, Clone)]
    struct Faults {
        /// Refuse this many without delivering (link down: T01).
        down: usize,
        /// Deliver this many but lose the answer (the sender sees the expiry: R00).
        lose_reply: usize,
        /// Deliver every Prepare twice (a retransmission).
        duplicate: bool,
    }

    /// One direction of a link between two engines: delivers `peer.settle` Prepares to the
    /// other node's engine as coming from `from`, logging every delivery.
    struct FakeLink {
        from: AccountId,
        to: Recipient<HandlePeerProtocol>,
        faults: Arc<Mutex<Faults>>,
        log: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
        clock: Clock,
    }

    impl Actor for FakeLink {
        type Context = Context<Self>;
    }

    impl Handler<SendPrepare> for FakeLink {
        type Result = Reply<PacketResult>;

        fn handle(&mut self, msg: SendPrepare, _ctx: &mut Self::Context) -> Self::Result {
            let (down, lose, duplicate) = {
                let mut f = self.faults.lock().unwrap();
                let down = f.down > 0;
                let lose = !down && f.lose_reply > 0;
                if down {
                    f.down -= 1;
                } else if lose {
                    f.lose_reply -= 1;
                }
                (down, lose, f.duplicate)
            };
            let unreachable = Reject::new(ErrorCode::T01_PEER_UNREACHABLE, None, "link down");
            let expired = Reject::new(ErrorCode::R00_TRANSFER_TIMED_OUT, None, "expired");
            if down {
                return Reply::ready(Err(unreachable));
            }
            let request = SettleRequest::decode(msg.prepare.data()).unwrap();
            let times = if duplicate { 2 } else { 1 };
            for _ in 0..times {
                self.log
                    .lock()
                    .unwrap()
                    .push((self.clock.now_ms(), request));
            }
            let to = self.to.clone();
            let from = self.from.clone();
            let prepare = msg.prepare;
            Reply::later(async move {
                let mut answer = Err(expired.clone());
                for _ in 0..times {
                    answer = to
                        .send(HandlePeerProtocol {
                            from: from.clone(),
                            prepare: prepare.clone(),
                        })
                        .await
                        .unwrap();
                }
                if lose {
                    Err(expired)
                } else {
                    answer
                }
            })
        }
    }

    struct Node {
        keeper: Addr<BalanceKeeper>,
        engine: Addr<SettlementEngine>,
        store: FakeStore,
    }

    /// A keeper and an engine wired to each other, settling with `peer` through `link`, on
    /// `store` (which may hold what an earlier node left), below `threshold` (never: `None`).
    /// Unsupervised, its actors stop for good on [`Crash`], as a killed process does.
    #[allow(clippy::too_many_arguments)]
    fn node_on(
        store: FakeStore,
        supervised: bool,
        threshold: Option<i64>,
        name: &str,
        peer: &str,
        link: Recipient<SendPrepare>,
        clock: Clock,
        seed: u64,
    ) -> Node {
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let address = NodeAddress::new(Some(Address::try_from(format!("test.{name}")).unwrap()));
        let peer = acc(peer);
        let engine_slot = Arc::new(Mutex::new(None));
        let slot = engine_slot.clone();
        let make = move |ctx: &mut Context<BalanceKeeper>| {
            let me = ctx.address().recipient();
            let links = BTreeMap::from([(peer.clone(), link)]);
            let engine_store = shared.clone();
            let make_engine =
                move || SettlementEngine::new(address, links, me, engine_store, clock, seed);
            let engine = if supervised {
                Supervisor::start(move |_| make_engine())
            } else {
                make_engine().start()
            };
            *slot.lock().unwrap() = Some(engine.clone());
            let accounts = BTreeMap::from([(peer, limits(Some(-1000), Some(1000), threshold, 0))]);
            BalanceKeeper::new(accounts, shared, Some(engine.recipient()))
        };
        let keeper = if supervised {
            Supervisor::start(make)
        } else {
            BalanceKeeper::create(make)
        };
        // Both run the factory before they return.
        let engine = engine_slot.lock().unwrap().clone().unwrap();
        Node {
            keeper,
            engine,
            store,
        }
    }

    struct Pair {
        a: Node,
        b: Node,
        /// Faults on A's link to B (A settles with B through it).
        a_to_b: Arc<Mutex<Faults>>,
        log_a_to_b: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
        log_b_to_a: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
        /// A's link to B, and what B's link to A delivers to (A's engine), for a new node A.
        link_ab: Recipient<SendPrepare>,
        proxy_a: Addr<Proxy>,
        clock: Clock,
    }

    /// Two nodes, `a` and `b`, each keeping the other's balance and settling over a fake link.
    async fn pair() -> Pair {
        pair_with(FakeStore::default(), true, true).await
    }

    /// As [`pair`], node A on `a_store`, supervised or not; B settles with A or never does.
    async fn pair_with(a_store: FakeStore, a_supervised: bool, b_settles: bool) -> Pair {
        let clock = Clock::starting_at(START_MS);
        // The links need the engines and the engines the links: start the links on proxies
        // whose target is filled in once the engines exist.
        let a_to_b = Arc::new(Mutex::new(Faults::default()));
        let b_to_a = Arc::new(Mutex::new(Faults::default()));
        let log_a_to_b = Arc::new(Mutex::new(Vec::new()));
        let log_b_to_a = Arc::new(Mutex::new(Vec::new()));
        let proxy_a = Proxy::default().start();
        let proxy_b = Proxy::default().start();
        let link_ab = FakeLink {
            from: acc("a"),
            to: proxy_b.clone().recipient(),
            faults: a_to_b.clone(),
            log: log_a_to_b.clone(),
            clock,
        }
        .start();
        let link_ba = FakeLink {
            from: acc("b"),
            to: proxy_a.clone().recipient(),
            faults: b_to_a,
            log: log_b_to_a.clone(),
            clock,
        }
        .start();
        let link_ab = link_ab.recipient();
        let a = node_on(
            a_store,
            a_supervised,
            Some(-100),
            "a",
            "b",
            link_ab.clone(),
            clock,
            1,
        );
        let b_threshold = b_settles.then_some(-100);
        let b_link = link_ba.recipient();
        let b = node_on(
            FakeStore::default(),
            true,
            b_threshold,
            "b",
            "a",
            b_link,
            clock,
            2,
        );
        proxy_a
            .send(SetTarget(a.engine.clone().recipient()))
            .await
            .unwrap();
        proxy_b
            .send(SetTarget(b.engine.clone().recipient()))
            .await
            .unwrap();
        Pair {
            a,
            b,
            a_to_b,
            log_a_to_b,
            log_b_to_a,
            link_ab,
            proxy_a,
            clock,
        }
    }

    #[derive(Default)]
    struct Proxy(Option<Recipient<HandlePeerProtocol>>);

    impl Actor for Proxy {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct SetTarget(Recipient<HandlePeerProtocol>);

    impl Handler<SetTarget> for Proxy {
        type Result = ();
        fn handle(&mut self, msg: SetTarget, _ctx: &mut Self::Context) {
            self.0 = Some(msg.0);
        }
    }

    impl Handler<HandlePeerProtocol> for Proxy {
        type Result = ResponseFuture<PacketResult>;
        fn handle(&mut self, msg: HandlePeerProtocol, _ctx: &mut Self::Context) -> Self::Result {
            let target = self.0.clone().unwrap();
            Box::pin(async move { target.send(msg).await.unwrap() })
        }
    }

    /// A packet of `amount` from node A to node B, fulfilled: B commits its incoming side
    /// before A commits its outgoing side, as the Fulfill travels back.
    async fn pay_a_to_b(p: &Pair, amount: u64) {
        let incoming = ReservePacket {
            incoming: Some((acc("a"), amount)),
            outgoing: None,
        };
        let outgoing = ReservePacket {
            incoming: None,
            outgoing: Some((acc("b"), amount)),
        };
        let ida = p.a.keeper.send(outgoing.clone()).await.unwrap().unwrap();
        let idb = p.b.keeper.send(incoming.clone()).await.unwrap().unwrap();
        for (k, id, r) in [(&p.b.keeper, idb, incoming), (&p.a.keeper, ida, outgoing)] {
            k.send(ResolvePacket {
                id,
                incoming: r.incoming,
                outgoing: r.outgoing,
                fulfilled: true,
                record: None,
                received: None,
                sent: None,
            })
            .await
            .unwrap()
            .await
            .unwrap();
        }
    }

    async fn balances(p: &Pair) -> (i64, i64) {
        (
            balance(&p.a.keeper, "b").await.balance,
            balance(&p.b.keeper, "a").await.balance,
        )
    }

    /// The settlement records (`settle/<id>`) written to `store`.
    fn records(store: &FakeStore) -> Vec<StoreOp> {
        store
            .batches()
            .into_iter()
            .flatten()
            .filter(
                |op| matches!(op, StoreOp::PutRecord { key, .. } if key.starts_with(b"settle/")),
            )
            .collect()
    }

    /// The intents left in `store`.
    fn intents(store: &FakeStore) -> Vec<SettleIntent> {
        let (from, to) = settle::intent_range();
        store
            .inner
            .scan_records(&from, &to)
            .unwrap()
            .iter()
            .map(|(_, v)| SettleIntent::decode(v).unwrap())
            .collect()
    }

    async fn idle(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[test]
    fn settles_below_threshold_and_balances_mirror() {
        run(async {
            let p = pair().await;
            pay_a_to_b(&p, 60).await;
            idle(1).await;
            // Above the threshold: nothing settled; the two sides mirror each other.
            assert_eq!(balances(&p).await, (-60, 60));
            assert!(p.log_a_to_b.lock().unwrap().is_empty());
            pay_a_to_b(&p, 90).await;
            idle(1).await;
            assert_eq!(balances(&p).await, (0, 0));
            let log = p.log_a_to_b.lock().unwrap().clone();
            assert_eq!(log.len(), 1);
            let sent = log[0].1;
            assert_eq!(sent.amount, 150);
            // Each side recorded the id once, with its own direction.
            let key = sent.record_key();
            assert_eq!(
                records(&p.a.store),
                vec![StoreOp::PutRecord {
                    key: key.clone(),
                    value: [&b"S"[..], &150u64.to_be_bytes()].concat()
                }]
            );
            assert_eq!(
                records(&p.b.store),
                vec![StoreOp::PutRecord {
                    key,
                    value: [&b"R"[..], &150u64.to_be_bytes()].concat()
                }]
            );
            assert!(p.log_b_to_a.lock().unwrap().is_empty());
        });
    }

    #[test]
    fn lost_fulfill_is_healed_by_repeating_the_same_id() {
        run(async {
            let p = pair().await;
            p.a_to_b.lock().unwrap().lose_reply = 2;
            pay_a_to_b(&p, 150).await;
            idle(60).await;
            assert_eq!(balances(&p).await, (0, 0));
            let log = p.log_a_to_b.lock().unwrap().clone();
            assert_eq!(log.len(), 3);
            assert!(log.iter().all(|(_, r)| *r == log[0].1));
            // Retried after 1 s, then 2 s.
            assert_eq!(log[1].0 - log[0].0, 1_000);
            assert_eq!(log[2].0 - log[1].0, 2_000);
            assert_eq!(p.b.store.settle_records(), 1);
            assert_eq!(p.a.store.settle_records(), 1);
        });
    }

    #[test]
    fn repeated_prepare_is_applied_once() {
        run(async {
            let p = pair().await;
            p.a_to_b.lock().unwrap().duplicate = true;
            pay_a_to_b(&p, 500).await;
            idle(5).await;
            assert_eq!(balances(&p).await, (0, 0));
            assert_eq!(p.log_a_to_b.lock().unwrap().len(), 2);
            assert_eq!(p.b.store.settle_records(), 1);
        });
    }

    #[test]
    fn link_down_is_retried_until_up() {
        run(async {
            let p = pair().await;
            p.a_to_b.lock().unwrap().down = 4;
            pay_a_to_b(&p, 200).await;
            idle(5).await;
            // 1 + 2 + 4 s of backoff so far: still unsettled, the shortfall is still visible.
            assert_eq!(balances(&p).await, (-200, 200));
            idle(60).await;
            assert_eq!(balances(&p).await, (0, 0));
            assert_eq!(p.log_a_to_b.lock().unwrap().len(), 1);
        });
    }

    #[test]
    fn receiver_store_failure_is_t00_and_retried() {
        run(async {
            let p = pair().await;
            // B commits the packet; then its store fails before A commits and settles.
            let idb =
                p.b.keeper
                    .send(ReservePacket {
                        incoming: Some((acc("a"), 200)),
                        outgoing: None,
                    })
                    .await
                    .unwrap()
                    .unwrap();
            p.b.keeper
                .send(ResolvePacket {
                    id: idb,
                    incoming: Some((acc("a"), 200)),
                    outgoing: None,
                    fulfilled: true,
                    record: None,
                    received: None,
                    sent: None,
                })
                .await
                .unwrap()
                .await
                .unwrap();
            p.b.store.fail(true);
            let out = Some((acc("b"), 200));
            let ida =
                p.a.keeper
                    .send(ReservePacket {
                        incoming: None,
                        outgoing: out.clone(),
                    })
                    .await
                    .unwrap()
                    .unwrap();
            p.a.keeper
                .send(ResolvePacket {
                    id: ida,
                    incoming: None,
                    outgoing: out,
                    fulfilled: true,
                    record: None,
                    received: None,
                    sent: None,
                })
                .await
                .unwrap()
                .await
                .unwrap();
            idle(3).await;
            // Refused (T00) and repeated; nothing applied on either side yet. (B's keeper may
            // show the settlement applied in memory while its failing commit is under way, so
            // the books are read where they are kept.)
            let log = p.log_a_to_b.lock().unwrap().clone();
            assert!(log.len() >= 2);
            assert!(log.iter().all(|(_, r)| *r == log[0].1));
            assert_eq!(balance(&p.a.keeper, "b").await.balance, -200);
            assert_eq!(
                p.b.store.inner.load_balances().unwrap().get("a"),
                Some(&200)
            );
            assert_eq!(
                p.b.store.inner.get_record(&log[0].1.record_key()).unwrap(),
                None
            );
            p.b.store.fail(false);
            idle(60).await;
            assert_eq!(balances(&p).await, (0, 0));
            let stored = p.b.store.inner.get_record(&log[0].1.record_key()).unwrap();
            assert_eq!(stored, Some([&b"R"[..], &200u64.to_be_bytes()].concat()));
            assert_eq!(p.a.store.settle_records(), 1);
        });
    }

    #[test]
    fn engine_restart_resumes_with_the_same_id() {
        run(async {
            let p = pair().await;
            p.a_to_b.lock().unwrap().down = 3;
            pay_a_to_b(&p, 200).await;
            idle(2).await;
            p.a.engine.send(Crash).await.unwrap();
            idle(60).await;
            assert_eq!(balances(&p).await, (0, 0));
            let log = p.log_a_to_b.lock().unwrap().clone();
            assert_eq!(log.len(), 1);
            assert_eq!(log[0].1.amount, 200);
            assert_eq!(p.b.store.settle_records(), 1);
        });
    }

    /// What the fake keeper asks for once, right after it applies a settlement and before it
    /// answers: reckoned after it (as the keeper asks when the booked balance is still below
    /// the threshold), or, when the flag is false, before it (as a keeper that just restarted
    /// may have asked, on a balance without it).
    type AskAfterApply = Arc<Mutex<Option<(Recipient<SettleThresholdCrossed>, u64, bool)>>>;

    /// A keeper that records what it is asked to apply.
    #[derive(Default)]
    struct FakeBalance {
        applied: Arc<Mutex<Vec<ApplySettlement>>>,
        ask_after_apply: AskAfterApply,
    }

    impl Actor for FakeBalance {
        type Context = Context<Self>;
    }

    impl Handler<ApplySettlement> for FakeBalance {
        type Result = Result<bool, crate::store::StoreError>;
        fn handle(&mut self, msg: ApplySettlement, _ctx: &mut Self::Context) -> Self::Result {
            if let Some((engine, amount, after)) = self.ask_after_apply.lock().unwrap().take() {
                engine.do_send(SettleThresholdCrossed {
                    account: msg.account.clone(),
                    amount,
                    after: after.then_some(msg.settlement_id),
                });
            }
            self.applied.lock().unwrap().push(msg);
            Ok(true)
        }
    }

    /// A PeerAccount that fulfills every Prepare after `delay`, logging the requests and
    /// whether the request's intent was in `store` when it arrived.
    struct FakePeer {
        delay: Duration,
        log: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
        store: FakeStore,
        durable: Arc<Mutex<Vec<bool>>>,
        clock: Clock,
    }

    impl Actor for FakePeer {
        type Context = Context<Self>;
    }

    impl Handler<SendPrepare> for FakePeer {
        type Result = Reply<PacketResult>;
        fn handle(&mut self, msg: SendPrepare, _ctx: &mut Self::Context) -> Self::Result {
            let r = SettleRequest::from_prepare(&msg.prepare, self.clock.now()).unwrap();
            let stored = self
                .store
                .inner
                .get_record(&settle::intent_key(&r.settlement_id))
                .unwrap()
                .map(|v| SettleIntent::decode(&v).unwrap());
            let durable = stored.is_some_and(|i| i.request == r && i.account == "b");
            self.durable.lock().unwrap().push(durable);
            self.log.lock().unwrap().push((self.clock.now_ms(), r));
            let delay = self.delay;
            Reply::later(async move {
                tokio::time::sleep(delay).await;
                Ok(peer_response(&[]).unwrap())
            })
        }
    }

    struct Solo {
        engine: Addr<SettlementEngine>,
        applied: Arc<Mutex<Vec<ApplySettlement>>>,
        ask_after_apply: AskAfterApply,
        sent: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
        /// Per request sent: whether its intent was durable by then.
        durable: Arc<Mutex<Vec<bool>>>,
        store: FakeStore,
    }

    fn solo(seed: u64, delay: Duration) -> Solo {
        solo_on(FakeStore::default(), seed, delay)
    }

    /// An engine settling with account `b` (a peer that fulfills after `delay`) on `store`.
    fn solo_on(store: FakeStore, seed: u64, delay: Duration) -> Solo {
        let clock = Clock::starting_at(START_MS);
        let balance = FakeBalance::default();
        let applied = balance.applied.clone();
        let ask_after_apply = balance.ask_after_apply.clone();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let durable = Arc::new(Mutex::new(Vec::new()));
        let peer = FakePeer {
            delay,
            log: sent.clone(),
            store: store.clone(),
            durable: durable.clone(),
            clock,
        }
        .start();
        let accounts = BTreeMap::from([(acc("b"), peer.recipient())]);
        let balance = balance.start().recipient();
        let address = NodeAddress::new(Some(Address::try_from("test.a").unwrap()));
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let engine = Supervisor::start(move |_| {
            SettlementEngine::new(address, accounts, balance, shared, clock, seed)
        });
        Solo {
            engine,
            applied,
            ask_after_apply,
            sent,
            durable,
            store,
        }
    }

    fn crossed(account: &str, amount: u64) -> SettleThresholdCrossed {
        SettleThresholdCrossed {
            account: acc(account),
            amount,
            after: None,
        }
    }

    #[test]
    fn sends_the_peer_protocol_prepare_and_applies_sent() {
        run(async {
            let s = solo(7, Duration::ZERO);
            s.engine.send(crossed("b", 321)).await.unwrap();
            // Unknown accounts and zero amounts are ignored.
            s.engine.send(crossed("nobody", 5)).await.unwrap();
            s.engine.send(crossed("b", 0)).await.unwrap();
            idle(1).await;
            let sent = s.sent.lock().unwrap().clone();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].1.amount, 321);
            let applied = s.applied.lock().unwrap().clone();
            assert_eq!(applied.len(), 1);
            assert_eq!(applied[0].account, acc("b"));
            assert_eq!(applied[0].amount, 321);
            assert_eq!(applied[0].settlement_id, sent[0].1.settlement_id);
            assert_eq!(applied[0].direction, SettlementDirection::Sent);
        });
    }

    #[test]
    fn settlement_ids_replay_from_the_seed() {
        let ids = |seed| {
            run(async move {
                let s = solo(seed, Duration::ZERO);
                for amount in [10, 20] {
                    s.engine.send(crossed("b", amount)).await.unwrap();
                    idle(1).await;
                }
                let sent = s.sent.lock().unwrap().clone();
                sent.iter()
                    .map(|(_, r)| r.settlement_id)
                    .collect::<Vec<_>>()
            })
        };
        let first = ids(42);
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], first[1]);
        assert_eq!(ids(42), first);
        assert_ne!(ids(43), first);
    }

    #[test]
    fn one_settlement_per_account_in_flight() {
        run(async {
            let s = solo(1, Duration::from_secs(10));
            s.engine.send(crossed("b", 100)).await.unwrap();
            idle(1).await;
            // Asked while 100 is being sent: reckoned on a balance without those 100, so
            // dropped once they are paid (the keeper asks again after booking if need be).
            s.engine.send(crossed("b", 200)).await.unwrap();
            s.engine.send(crossed("b", 300)).await.unwrap();
            // The keeper, booking the 100, finds the balance still short by 40.
            *s.ask_after_apply.lock().unwrap() = Some((s.engine.clone().recipient(), 40, true));
            idle(5).await;
            assert_eq!(s.sent.lock().unwrap().len(), 1);
            idle(30).await;
            let sent = s.sent.lock().unwrap().clone();
            // The request made while the first was booked waited for it to complete.
            let amounts: Vec<u64> = sent.iter().map(|(_, r)| r.amount).collect();
            assert_eq!(amounts, vec![100, 40]);
            assert_eq!(sent[1].0 - sent[0].0, 10_000);
            assert_ne!(sent[0].1.settlement_id, sent[1].1.settlement_id);
            assert_eq!(s.applied.lock().unwrap().len(), 2);
            assert!(intents(&s.store).is_empty());
        });
    }

    /// A keeper that restarted reckons on a balance without the settlement being booked; its
    /// request, arriving while that settlement is booked, is already covered by it.
    #[test]
    fn a_request_reckoned_before_the_booked_settlement_is_not_sent() {
        run(async {
            let s = solo(4, Duration::from_secs(10));
            s.engine.send(crossed("b", 100)).await.unwrap();
            *s.ask_after_apply.lock().unwrap() = Some((s.engine.clone().recipient(), 100, false));
            idle(60).await;
            let amounts: Vec<u64> = s
                .sent
                .lock()
                .unwrap()
                .iter()
                .map(|(_, r)| r.amount)
                .collect();
            assert_eq!(amounts, vec![100]);
            assert_eq!(s.applied.lock().unwrap().len(), 1);
            assert!(intents(&s.store).is_empty());
        });
    }

    #[test]
    fn the_intent_is_durable_before_the_first_send_and_deleted_once_booked() {
        run(async {
            let s = solo(3, Duration::from_secs(10));
            // The store refuses writes: nothing may be sent, since a crash now would forget
            // the id.
            s.store.fail(true);
            s.engine.send(crossed("b", 70)).await.unwrap();
            idle(5).await;
            assert!(s.sent.lock().unwrap().is_empty());
            s.store.fail(false);
            idle(5).await;
            let sent = s.sent.lock().unwrap().clone();
            assert_eq!(sent.len(), 1);
            assert_eq!(*s.durable.lock().unwrap(), vec![true]);
            // In the store while the peer has not answered.
            let stored = intents(&s.store);
            assert_eq!(
                stored,
                vec![SettleIntent {
                    account: "b".into(),
                    request: sent[0].1
                }]
            );
            idle(20).await;
            assert_eq!(s.applied.lock().unwrap().len(), 1);
            assert!(intents(&s.store).is_empty());
        });
    }

    #[test]
    fn an_intent_found_at_start_is_resumed_with_its_id_and_one_already_booked_is_not() {
        run(async {
            let store = FakeStore::default();
            let open = SettleIntent {
                account: "b".into(),
                request: SettleRequest {
                    settlement_id: [7; 16],
                    amount: 55,
                },
            };
            let booked = SettleIntent {
                account: "b".into(),
                request: SettleRequest {
                    settlement_id: [8; 16],
                    amount: 66,
                },
            };
            let put = |key: Vec<u8>, value: Vec<u8>| StoreOp::PutRecord { key, value };
            store
                .inner
                .commit(vec![
                    put(open.key(), open.encode()),
                    put(booked.key(), booked.encode()),
                    put(booked.request.record_key(), b"S".to_vec()),
                ])
                .await
                .unwrap();
            let s = solo_on(store, 9, Duration::ZERO);
            // Asked at start (the keeper's reload) while the resumed one is being sent.
            s.engine.send(crossed("b", 55)).await.unwrap();
            idle(5).await;
            let sent: Vec<SettleRequest> = s.sent.lock().unwrap().iter().map(|(_, r)| *r).collect();
            assert_eq!(sent, vec![open.request]);
            let applied = s.applied.lock().unwrap().clone();
            assert_eq!(applied.len(), 1);
            assert_eq!(applied[0].settlement_id, [7; 16]);
            assert_eq!(applied[0].amount, 55);
            assert_eq!(applied[0].direction, SettlementDirection::Sent);
            assert!(intents(&s.store).is_empty());
        });
    }

    #[test]
    fn a_killed_node_resumes_its_settlement_with_the_same_id_and_the_peer_applies_it_once() {
        run(async {
            let a_store = FakeStore::default();
            // Node A without a supervisor: a Crash stops it for good, like kill -9. B never
            // settles itself, so a settlement A made twice shows in B's balance.
            let p = pair_with(a_store.clone(), false, false).await;
            // B applies what A sends, but A never hears back.
            p.a_to_b.lock().unwrap().lose_reply = usize::MAX;
            pay_a_to_b(&p, 150).await;
            idle(10).await;
            let first = p.log_a_to_b.lock().unwrap().clone();
            assert!(!first.is_empty());
            let id = first[0].1.settlement_id;
            assert_eq!(balances(&p).await, (-150, 0));
            assert_eq!(
                intents(&a_store),
                vec![SettleIntent {
                    account: "b".into(),
                    request: first[0].1
                }]
            );
            p.a.engine.send(Crash).await.unwrap();
            p.a.keeper.send(Crash).await.unwrap();
            idle(1).await;
            let sends_before_restart = p.log_a_to_b.lock().unwrap().len();
            idle(120).await;
            assert_eq!(
                p.log_a_to_b.lock().unwrap().len(),
                sends_before_restart,
                "the stopped node kept sending"
            );

            // A new process on the same store (another seed: it would draw other ids).
            p.a_to_b.lock().unwrap().lose_reply = 0;
            let a = node_on(
                a_store.clone(),
                true,
                Some(-100),
                "a",
                "b",
                p.link_ab.clone(),
                p.clock,
                99,
            );
            p.proxy_a
                .send(SetTarget(a.engine.clone().recipient()))
                .await
                .unwrap();
            idle(120).await;
            let b_owes = balance(&p.b.keeper, "a").await.balance;
            let a_is_owed = balance(&a.keeper, "b").await.balance;
            assert_eq!((a_is_owed, b_owes), (0, 0));
            let log = p.log_a_to_b.lock().unwrap().clone();
            assert!(log.len() > sends_before_restart);
            assert!(log
                .iter()
                .all(|(_, r)| r.settlement_id == id && r.amount == 150));
            // B applied the id once, however often it came.
            assert_eq!(p.b.store.settle_records(), 1);
            assert_eq!(
                a_store.inner.get_record(&settle::record_key(&id)).unwrap(),
                Some([&b"S"[..], &150u64.to_be_bytes()].concat())
            );
            assert!(intents(&a_store).is_empty());
        });
    }

    fn settle_prepare(data: &[u8], condition: &[u8; 32], expires_at: Timestamp) -> Prepare {
        PrepareBuilder {
            amount: 0,
            expires_at,
            execution_condition: condition,
            destination: &Address::try_from("peer.settle").unwrap(),
            data,
        }
        .build()
        .unwrap()
    }

    #[test]
    fn incoming_requests_are_checked() {
        run(async {
            let s = solo(1, Duration::ZERO);
            let now = Timestamp::from_unix_millis(START_MS);
            let later = now.checked_add_millis(30_000).unwrap();
            let good = SettleRequest {
                settlement_id: [5; 16],
                amount: 9,
            }
            .encode();
            let cases = [
                (
                    "b",
                    settle_prepare(&good[..20], &PEER_PROTOCOL_CONDITION, later),
                    ErrorCode::F01_INVALID_PACKET,
                ),
                (
                    "b",
                    settle_prepare(&good, &[1; 32], later),
                    ErrorCode::F01_INVALID_PACKET,
                ),
                (
                    "b",
                    settle_prepare(
                        &good,
                        &PEER_PROTOCOL_CONDITION,
                        now.saturating_sub_millis(1),
                    ),
                    ErrorCode::R02_INSUFFICIENT_TIMEOUT,
                ),
                (
                    "nobody",
                    settle_prepare(&good, &PEER_PROTOCOL_CONDITION, later),
                    ErrorCode::F00_BAD_REQUEST,
                ),
            ];
            for (from, prepare, code) in cases {
                let r = s
                    .engine
                    .send(HandlePeerProtocol {
                        from: acc(from),
                        prepare,
                    })
                    .await
                    .unwrap()
                    .unwrap_err();
                assert_eq!(r.code(), code);
                assert_eq!(r.triggered_by().unwrap().as_str(), "test.a");
            }
            assert!(s.applied.lock().unwrap().is_empty());
            let f = s
                .engine
                .send(HandlePeerProtocol {
                    from: acc("b"),
                    prepare: settle_prepare(&good, &PEER_PROTOCOL_CONDITION, later),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(settle::check_response(&f), Ok(()));
            let applied = s.applied.lock().unwrap().clone();
            assert_eq!(applied.len(), 1);
            assert_eq!(applied[0].direction, SettlementDirection::Received);
            assert_eq!(applied[0].amount, 9);
            assert_eq!(applied[0].settlement_id, [5; 16]);
        });
    }

    #[test]
    fn keeper_failure_is_t00() {
        run(async {
            let store = FakeStore::default();
            store.fail(true);
            let keeper = crate::balance_keeper::tests::start(
                &store,
                &[("b", limits(None, None, None, 0))],
                None,
            );
            let clock = Clock::starting_at(START_MS);
            let peer = FakePeer {
                delay: Duration::ZERO,
                log: Arc::default(),
                store: store.clone(),
                durable: Arc::default(),
                clock,
            }
            .start();
            let engine = SettlementEngine::new(
                NodeAddress::new(Some(Address::try_from("test.a").unwrap())),
                BTreeMap::from([(acc("b"), peer.recipient())]),
                keeper.clone().recipient(),
                Arc::new(store.clone()),
                clock,
                0,
            )
            .start();
            let later = Timestamp::from_unix_millis(START_MS + 30_000);
            let data = SettleRequest {
                settlement_id: [1; 16],
                amount: 9,
            }
            .encode();
            let r = engine
                .send(HandlePeerProtocol {
                    from: acc("b"),
                    prepare: settle_prepare(&data, &PEER_PROTOCOL_CONDITION, later),
                })
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(r.code(), ErrorCode::T00_INTERNAL_ERROR);
            let _ = keeper.send(GetBalance { account: acc("b") }).await;
        });
    }
}
