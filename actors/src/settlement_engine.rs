//! The SettlementEngine actor: built-in bilateral settlement between two ilp-connector nodes
//! over the link itself (`peer.settle`, see [`ilp::settle`]), so a simulation can run forever
//! without an external ledger. It serves only the accounts configured with
//! `settlement.bilateral = true`: each side takes the other's word that money moved, which is
//! sound only when one operator runs both nodes.
//!
//! Sending: when the BalanceKeeper reports that an account fell below its settle threshold, the
//! engine picks a settlement id (from a seeded RNG, so simulations replay), sends the peer a
//! `peer.settle` request through that account's PeerAccount, and repeats the very same request
//! with backoff until the peer fulfills it; then it applies the settlement (`Sent`) to the
//! keeper. One settlement per account is in flight at a time; a request arriving meanwhile
//! waits for it.
//!
//! Receiving: a `peer.settle` Prepare from a bilateral account is applied (`Received`) once per
//! id by the keeper and answered with the peer-protocol Fulfill, also when the id was applied
//! before, so a sender whose Fulfill was lost heals it by repeating the request. Any other
//! account's request is rejected (F00) before anything is applied or stored.

use crate::clock::Clock;
use crate::messages::{
    ask, AccountId, ApplySettlement, HandlePeerProtocol, PacketResult, SendPrepare,
    SettleThresholdCrossed, SettlementDirection,
};
use crate::peer_account::NodeAddress;
use crate::supervise::Backoff;
use actix::prelude::*;
use ilp::packet::{ErrorCode, Reject};
use ilp::peer_protocol::peer_response;
use ilp::settle::{self, SettleRequest, SETTLE_EXPIRY_MS};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct SettlementEngine {
    node_address: NodeAddress,
    accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
    balance: Recipient<ApplySettlement>,
    clock: Clock,
    rng: SmallRng,
    /// The settlement being sent per account. Kept across restarts of the actor: the peer may
    /// have applied it already, so it is resumed with the same id, never replaced.
    in_flight: BTreeMap<AccountId, SettleRequest>,
    /// The latest amount asked for while a settlement was in flight, sent after it.
    queued: BTreeMap<AccountId, u64>,
    backoff: Backoff,
}

impl SettlementEngine {
    /// `accounts`: the PeerAccount of each account settled over its link (those configured
    /// with `settlement.bilateral = true`; nobody else may send or receive `peer.settle`).
    /// `balance`: the BalanceKeeper, which applies each settlement once.
    pub fn new(
        node_address: NodeAddress,
        accounts: BTreeMap<AccountId, Recipient<SendPrepare>>,
        balance: Recipient<ApplySettlement>,
        clock: Clock,
        rng_seed: u64,
    ) -> Self {
        SettlementEngine {
            node_address,
            accounts,
            balance,
            clock,
            rng: SmallRng::seed_from_u64(rng_seed),
            in_flight: BTreeMap::new(),
            queued: BTreeMap::new(),
            backoff: Backoff::default(),
        }
    }

    fn start_settlement(&mut self, account: AccountId, amount: u64, ctx: &mut Context<Self>) {
        let mut settlement_id = [0u8; 16];
        self.rng.fill_bytes(&mut settlement_id);
        let request = SettleRequest {
            settlement_id,
            amount,
        };
        self.in_flight.insert(account.clone(), request);
        self.spawn_settlement(account, request, ctx);
    }

    fn spawn_settlement(
        &self,
        account: AccountId,
        request: SettleRequest,
        ctx: &mut Context<Self>,
    ) {
        let Some(peer) = self.accounts.get(&account).cloned() else {
            return;
        };
        let work = send_settlement(
            peer,
            self.balance.clone(),
            self.clock,
            account.clone(),
            request,
        );
        ctx.spawn(work.into_actor(self).map(move |(), act, ctx| {
            act.in_flight.remove(&account);
            if let Some(amount) = act.queued.remove(&account) {
                act.start_settlement(account, amount, ctx);
            }
        }));
    }

    fn reject(&self, code: ErrorCode, message: &str) -> Reject {
        Reject::new(code, self.node_address.get().as_ref(), message)
    }
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(settle::retry_delay_ms(attempt))
}

/// Sends `request` until the peer fulfills it, then applies it to our balance; never gives up,
/// since the peer may already count it.
async fn send_settlement(
    peer: Recipient<SendPrepare>,
    balance: Recipient<ApplySettlement>,
    clock: Clock,
    account: AccountId,
    request: SettleRequest,
) {
    let mut attempt = 0u32;
    while !send_once(&peer, &clock, &request).await {
        tokio::time::sleep(retry_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
    let apply = ApplySettlement {
        account,
        settlement_id: request.settlement_id,
        amount: request.amount,
        direction: SettlementDirection::Sent,
    };
    let mut attempt = 0u32;
    // Applying is idempotent per id, so a store failure is simply retried.
    while !matches!(balance.send(apply.clone()).await, Ok(Ok(_))) {
        tokio::time::sleep(retry_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
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
        // Resume what a crash interrupted, with the same ids.
        let resume: Vec<(AccountId, SettleRequest)> = self
            .in_flight
            .iter()
            .map(|(a, r)| (a.clone(), *r))
            .collect();
        for (account, request) in resume {
            self.spawn_settlement(account, request, ctx);
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
        if msg.amount == 0 || !self.accounts.contains_key(&msg.account) {
            return;
        }
        if self.in_flight.contains_key(&msg.account) {
            self.queued.insert(msg.account, msg.amount);
        } else {
            self.start_settlement(msg.account, msg.amount, ctx);
        }
    }
}

impl Handler<HandlePeerProtocol> for SettlementEngine {
    type Result = ResponseFuture<PacketResult>;

    fn handle(&mut self, msg: HandlePeerProtocol, _ctx: &mut Self::Context) -> Self::Result {
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
/// an account that is gone stops being retried; its record stays in the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateAccounts(pub BTreeMap<AccountId, Recipient<SendPrepare>>);

impl Handler<UpdateAccounts> for SettlementEngine {
    type Result = ();

    fn handle(&mut self, msg: UpdateAccounts, _ctx: &mut Self::Context) {
        self.accounts = msg.0;
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

    /// A keeper and an engine wired to each other, settling with `peer` through `link`.
    fn node(name: &str, peer: &str, link: Recipient<SendPrepare>, clock: Clock, seed: u64) -> Node {
        let store = FakeStore::default();
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let address = NodeAddress::new(Some(Address::try_from(format!("test.{name}")).unwrap()));
        let peer = acc(peer);
        let engine_slot = Arc::new(Mutex::new(None));
        let slot = engine_slot.clone();
        let keeper = Supervisor::start(move |ctx: &mut Context<BalanceKeeper>| {
            let me = ctx.address().recipient();
            let links = BTreeMap::from([(peer.clone(), link)]);
            let engine =
                Supervisor::start(move |_| SettlementEngine::new(address, links, me, clock, seed));
            *slot.lock().unwrap() = Some(engine.clone());
            let accounts = BTreeMap::from([(peer, limits(Some(-1000), Some(1000), Some(-100), 0))]);
            BalanceKeeper::new(accounts, shared, Some(engine.recipient()))
        });
        // Supervisor::start runs the factory before it returns.
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
    }

    /// Two nodes, `a` and `b`, each keeping the other's balance and settling over a fake link.
    async fn pair() -> Pair {
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
        let a = node("a", "b", link_ab.recipient(), clock, 1);
        let b = node("b", "a", link_ba.recipient(), clock, 2);
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

    fn records(store: &FakeStore) -> Vec<StoreOp> {
        store
            .batches()
            .into_iter()
            .flatten()
            .filter(|op| matches!(op, StoreOp::PutRecord { .. }))
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
                })
                .await
                .unwrap()
                .await
                .unwrap();
            idle(3).await;
            // Refused (T00) and repeated; nothing applied on either side yet.
            let log = p.log_a_to_b.lock().unwrap().clone();
            assert!(log.len() >= 2);
            assert!(log.iter().all(|(_, r)| *r == log[0].1));
            assert_eq!(balances(&p).await, (-200, 200));
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

    /// A keeper that records what it is asked to apply.
    #[derive(Default)]
    struct FakeBalance(Arc<Mutex<Vec<ApplySettlement>>>);

    impl Actor for FakeBalance {
        type Context = Context<Self>;
    }

    impl Handler<ApplySettlement> for FakeBalance {
        type Result = Result<bool, crate::store::StoreError>;
        fn handle(&mut self, msg: ApplySettlement, _ctx: &mut Self::Context) -> Self::Result {
            self.0.lock().unwrap().push(msg);
            Ok(true)
        }
    }

    /// A PeerAccount that fulfills every Prepare after `delay`, logging the requests.
    struct FakePeer {
        delay: Duration,
        log: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
        clock: Clock,
    }

    impl Actor for FakePeer {
        type Context = Context<Self>;
    }

    impl Handler<SendPrepare> for FakePeer {
        type Result = Reply<PacketResult>;
        fn handle(&mut self, msg: SendPrepare, _ctx: &mut Self::Context) -> Self::Result {
            let r = SettleRequest::from_prepare(&msg.prepare, self.clock.now()).unwrap();
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
        sent: Arc<Mutex<Vec<(u64, SettleRequest)>>>,
    }

    fn solo(seed: u64, delay: Duration) -> Solo {
        let clock = Clock::starting_at(START_MS);
        let balance = FakeBalance::default();
        let applied = balance.0.clone();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let peer = FakePeer {
            delay,
            log: sent.clone(),
            clock,
        }
        .start();
        let accounts = BTreeMap::from([(acc("b"), peer.recipient())]);
        let balance = balance.start().recipient();
        let address = NodeAddress::new(Some(Address::try_from("test.a").unwrap()));
        let engine = Supervisor::start(move |_| {
            SettlementEngine::new(address, accounts, balance, clock, seed)
        });
        Solo {
            engine,
            applied,
            sent,
        }
    }

    fn crossed(account: &str, amount: u64) -> SettleThresholdCrossed {
        SettleThresholdCrossed {
            account: acc(account),
            amount,
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
            s.engine.send(crossed("b", 200)).await.unwrap();
            s.engine.send(crossed("b", 300)).await.unwrap();
            idle(5).await;
            assert_eq!(s.sent.lock().unwrap().len(), 1);
            idle(30).await;
            let sent = s.sent.lock().unwrap().clone();
            // The latest request waited for the first to complete.
            let amounts: Vec<u64> = sent.iter().map(|(_, r)| r.amount).collect();
            assert_eq!(amounts, vec![100, 300]);
            assert_eq!(sent[1].0 - sent[0].0, 10_000);
            assert_eq!(s.applied.lock().unwrap().len(), 2);
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
                clock,
            }
            .start();
            let engine = SettlementEngine::new(
                NodeAddress::new(Some(Address::try_from("test.a").unwrap())),
                BTreeMap::from([(acc("b"), peer.recipient())]),
                keeper.clone().recipient(),
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
