//! Router tests on paused virtual time, with tiny fake actors for the PeerAccounts, the
//! BalanceKeeper and the peer-protocol handlers.

use super::*;
use crate::messages::{BalanceSnapshot, Crash, Reply as Answer, ReservationId};
use crate::store::StoreError;
use crate::test_support::run;
use actix::{ActorContext, Addr, Supervisor};
use ilp::echo::EchoMessage;
use ilp::ildcp::IldcpResponse;
use ilp::packet::{Fulfill, FulfillBuilder, PrepareBuilder};
use ilp::peer_balance::BalanceResponse;
use ilp::peer_protocol::{peer_response, PEER_PROTOCOL_CONDITION};
use ilp::policy::BalanceError;
use ilp::rates::{RateBackend, Spread, StaticRates};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NOW: u64 = 1_600_000_000_000;
const FULFILLMENT: [u8; 32] = [7; 32];

type Shared<T> = Arc<Mutex<Vec<T>>>;

fn shared<T>() -> Shared<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn id(s: &str) -> AccountId {
    AccountId::from(s)
}

fn addr(s: &str) -> Address {
    Address::try_from(s).unwrap()
}

fn condition() -> [u8; 32] {
    Sha256::digest(FULFILLMENT).into()
}

fn fulfill_with(fulfillment: &[u8; 32]) -> Fulfill {
    FulfillBuilder {
        fulfillment,
        data: b"paid",
    }
    .build()
    .unwrap()
}

fn prepare_to(dest: &str, amount: u64, expires_at_ms: u64) -> Prepare {
    PrepareBuilder {
        amount,
        expires_at: Timestamp::from_unix_millis(expires_at_ms),
        execution_condition: &condition(),
        destination: &addr(dest),
        data: b"payload",
    }
    .build()
    .unwrap()
}

fn peer_request_to(dest: &str) -> Prepare {
    PrepareBuilder {
        amount: 0,
        expires_at: Timestamp::from_unix_millis(NOW + 60_000),
        execution_condition: &PEER_PROTOCOL_CONDITION,
        destination: &addr(dest),
        data: &[],
    }
    .build()
    .unwrap()
}

// ---- fakes ----------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Reply {
    Fulfill,
    WrongFulfillment,
    Reject(ErrorCode),
    Never,
    /// Fulfills after 100 ms.
    Slow,
}

struct FakePeer {
    name: &'static str,
    reply: Reply,
    seen: Shared<Prepare>,
    log: Shared<String>,
}

impl Actor for FakePeer {
    type Context = Context<Self>;
}

impl Handler<SendPrepare> for FakePeer {
    type Result = Answer<PacketResult>;

    fn handle(&mut self, msg: SendPrepare, _ctx: &mut Self::Context) -> Self::Result {
        self.seen.lock().unwrap().push(msg.prepare.clone());
        self.log.lock().unwrap().push(format!("send {}", self.name));
        match self.reply {
            Reply::Fulfill => Answer::ready(Ok(fulfill_with(&FULFILLMENT))),
            Reply::WrongFulfillment => Answer::ready(Ok(fulfill_with(&[9; 32]))),
            Reply::Reject(code) => {
                let r = Reject::new(code, Some(&addr("g.downstream")), "from downstream");
                Answer::ready(Err(r))
            }
            Reply::Never => Answer::later(std::future::pending()),
            Reply::Slow => Answer::later(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(fulfill_with(&FULFILLMENT))
            }),
        }
    }
}

/// An account whose PeerAccount is gone.
struct Dead;

impl Actor for Dead {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<SendPrepare> for Dead {
    type Result = Answer<PacketResult>;
    fn handle(&mut self, _msg: SendPrepare, _ctx: &mut Self::Context) -> Self::Result {
        Answer::ready(Err(Reject::new(
            ErrorCode::T99_APPLICATION_ERROR,
            None,
            "unreachable",
        )))
    }
}

#[derive(Clone)]
struct BalanceConfig {
    refuse: Option<BalanceError>,
    commit_delay: Duration,
    commit_fails: bool,
    snapshot: Option<BalanceSnapshot>,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            refuse: None,
            commit_delay: Duration::ZERO,
            commit_fails: false,
            snapshot: Some(BalanceSnapshot::default()),
        }
    }
}

struct FakeBalance {
    config: BalanceConfig,
    next_id: u64,
    reserves: Shared<ReservePacket>,
    resolves: Shared<ResolvePacket>,
    gets: Shared<AccountId>,
    log: Shared<String>,
}

impl Actor for FakeBalance {
    type Context = Context<Self>;
}

impl Handler<ReservePacket> for FakeBalance {
    type Result = Result<ReservationId, BalanceError>;
    fn handle(&mut self, msg: ReservePacket, _ctx: &mut Self::Context) -> Self::Result {
        self.reserves.lock().unwrap().push(msg);
        self.log.lock().unwrap().push("reserve".into());
        if let Some(e) = &self.config.refuse {
            return Err(*e);
        }
        self.next_id += 1;
        Ok(ReservationId(self.next_id))
    }
}

impl Handler<ResolvePacket> for FakeBalance {
    type Result = Answer<Result<(), StoreError>>;
    fn handle(&mut self, msg: ResolvePacket, _ctx: &mut Self::Context) -> Self::Result {
        let kind = if msg.fulfilled { "commit" } else { "rollback" };
        self.resolves.lock().unwrap().push(msg);
        let log = self.log.clone();
        let delay = self.config.commit_delay;
        let fails = self.config.commit_fails;
        Answer::later(async move {
            tokio::time::sleep(delay).await;
            log.lock().unwrap().push(format!("{kind} durable"));
            if fails {
                Err(StoreError::Io("disk full".into()))
            } else {
                Ok(())
            }
        })
    }
}

impl Handler<GetBalance> for FakeBalance {
    type Result = Option<BalanceSnapshot>;
    fn handle(&mut self, msg: GetBalance, _ctx: &mut Self::Context) -> Self::Result {
        self.gets.lock().unwrap().push(msg.account);
        self.config.snapshot
    }
}

struct FakeProtocol {
    seen: Shared<(AccountId, String)>,
}

impl Actor for FakeProtocol {
    type Context = Context<Self>;
}

impl Handler<HandlePeerProtocol> for FakeProtocol {
    type Result = PacketResult;
    fn handle(&mut self, msg: HandlePeerProtocol, _ctx: &mut Self::Context) -> PacketResult {
        let dest = msg.prepare.destination_str().to_string();
        self.seen.lock().unwrap().push((msg.from, dest));
        Ok(peer_response(b"handled").unwrap())
    }
}

// ---- harness --------------------------------------------------------------------------------

struct AccountSpec {
    name: &'static str,
    relation: Relation,
    code: &'static str,
    scale: u8,
    reply: Option<Reply>,
    dedup: bool,
}

struct Setup {
    settings: RouterSettings,
    accounts: Vec<AccountSpec>,
    balance: BalanceConfig,
    ccp: bool,
    settle: bool,
}

impl Setup {
    /// alice: child; bob, carl: peers; parent: parent (the default route). All USD, scale 9.
    fn new() -> Self {
        let account = |name, relation| AccountSpec {
            name,
            relation,
            code: "USD",
            scale: 9,
            reply: Some(Reply::Fulfill),
            dedup: true,
        };
        Setup {
            settings: RouterSettings {
                node_address: Some(addr("test.node")),
                static_routes: vec![],
                default_route: Some(id("parent")),
                exchange: Exchange {
                    backend: RateBackend::OneToOne,
                    spread: Spread::ZERO,
                },
                min_message_window_ms: 1_000,
                max_hold_time_ms: 30_000,
                reflect_payments: true,
            },
            accounts: vec![
                account("alice", Relation::Child),
                account("bob", Relation::Peer),
                account("carl", Relation::Peer),
                account("parent", Relation::Parent),
            ],
            balance: BalanceConfig::default(),
            ccp: true,
            settle: true,
        }
    }

    fn account(&mut self, name: &str) -> &mut AccountSpec {
        self.accounts.iter_mut().find(|a| a.name == name).unwrap()
    }

    fn start(self) -> Harness {
        let log = shared();
        let mut seen = HashMap::new();
        let mut accounts = BTreeMap::new();
        for spec in &self.accounts {
            let peer_seen = shared();
            let send = match spec.reply {
                Some(reply) => FakePeer {
                    name: spec.name,
                    reply,
                    seen: peer_seen.clone(),
                    log: log.clone(),
                }
                .start()
                .recipient(),
                None => Dead.start().recipient(),
            };
            seen.insert(spec.name, peer_seen);
            accounts.insert(
                id(spec.name),
                RouterAccount {
                    send: Arc::new(send),
                    relation: spec.relation,
                    asset_code: spec.code.to_string(),
                    asset_scale: spec.scale,
                    child_segment: (spec.relation == Relation::Child)
                        .then(|| spec.name.to_string()),
                    dedup: spec.dedup,
                    payments: Default::default(),
                    local: None,
                    receiver: None,
                },
            );
        }
        let reserves = shared();
        let resolves = shared();
        let gets = shared();
        let balance = FakeBalance {
            config: self.balance,
            next_id: 0,
            reserves: reserves.clone(),
            resolves: resolves.clone(),
            gets: gets.clone(),
            log: log.clone(),
        }
        .start();
        let ccp_seen = shared();
        let settle_seen = shared();
        let protocols = PeerProtocolHandlers {
            ccp: self.ccp.then(|| {
                FakeProtocol {
                    seen: ccp_seen.clone(),
                }
                .start()
                .recipient()
            }),
            settle: self.settle.then(|| {
                FakeProtocol {
                    seen: settle_seen.clone(),
                }
                .start()
                .recipient()
            }),
        };
        let clock = Clock::starting_at(NOW);
        let router_balance = RouterBalance {
            reserve: balance.clone().recipient(),
            resolve: balance.clone().recipient(),
            get: balance.recipient(),
            record: None,
        };
        let settings = self.settings;
        let router = Supervisor::start(move |_| {
            Router::new(settings, accounts, router_balance, protocols, clock)
        });
        Harness {
            router,
            clock,
            seen,
            reserves,
            resolves,
            gets,
            ccp_seen,
            settle_seen,
            log,
        }
    }
}

struct Harness {
    router: Addr<Router>,
    clock: Clock,
    seen: HashMap<&'static str, Shared<Prepare>>,
    reserves: Shared<ReservePacket>,
    resolves: Shared<ResolvePacket>,
    gets: Shared<AccountId>,
    ccp_seen: Shared<(AccountId, String)>,
    settle_seen: Shared<(AccountId, String)>,
    log: Shared<String>,
}

impl Harness {
    async fn send(&self, from: &str, prepare: Prepare) -> PacketResult {
        self.router
            .send(ForwardPrepare {
                from: id(from),
                prepare,
                origin: None,
            })
            .await
            .unwrap()
            .await
    }

    async fn pay(&self, from: &str, dest: &str) -> PacketResult {
        self.send(from, prepare_to(dest, 100, NOW + 10_000)).await
    }

    async fn learn(&self, changes: &[(&str, Option<&str>)]) {
        let changes = changes
            .iter()
            .map(|(p, a)| (p.to_string(), a.map(id)))
            .collect();
        self.router
            .send(ApplyRouteUpdate { changes })
            .await
            .unwrap();
    }

    fn seen(&self, account: &str) -> Vec<Prepare> {
        self.seen[account].lock().unwrap().clone()
    }

    /// Which account received the one packet sent so far.
    fn only_receiver(&self) -> &'static str {
        let got: Vec<_> = self
            .seen
            .iter()
            .filter(|(_, s)| !s.lock().unwrap().is_empty())
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(got.len(), 1, "receivers: {got:?}");
        got[0]
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn rejected(result: PacketResult) -> Reject {
    match result {
        Ok(f) => panic!("expected a Reject, got {f:?}"),
        Err(r) => r,
    }
}

fn assert_reject(result: PacketResult, code: ErrorCode, by: Option<&str>) {
    let r = rejected(result);
    assert_eq!(r.code(), code, "message: {}", r.message());
    assert_eq!(
        r.triggered_by().map(|a| a.as_str().to_string()),
        by.map(str::to_string)
    );
}

// ---- routing --------------------------------------------------------------------------------

#[test]
fn longest_prefix_wins() {
    run(async {
        let h = Setup::new().start();
        h.learn(&[("g.a", Some("bob")), ("g.a.b", Some("carl"))])
            .await;
        h.pay("alice", "g.a.b.c").await.unwrap();
        assert_eq!(h.only_receiver(), "carl");
        h.pay("alice", "g.a.x").await.unwrap();
        assert_eq!(h.seen("bob").len(), 1);
    });
}

#[test]
fn static_route_beats_learned_route() {
    run(async {
        let mut s = Setup::new();
        s.settings.static_routes = vec![("g.x".into(), id("bob"))];
        let h = s.start();
        h.learn(&[("g.x", Some("carl"))]).await;
        h.pay("alice", "g.x.y").await.unwrap();
        assert_eq!(h.only_receiver(), "bob");
    });
}

#[test]
fn learned_route_withdrawn_falls_back_to_default() {
    run(async {
        let h = Setup::new().start();
        h.learn(&[("g.x", Some("carl"))]).await;
        h.learn(&[("g.x", None)]).await;
        h.pay("alice", "g.x.y").await.unwrap();
        assert_eq!(h.only_receiver(), "parent");
    });
}

#[test]
fn route_through_unknown_account_is_ignored() {
    run(async {
        let h = Setup::new().start();
        h.learn(&[("g.x", Some("carl")), ("g.x", Some("nobody"))])
            .await;
        h.pay("alice", "g.x.y").await.unwrap();
        assert_eq!(h.only_receiver(), "parent");
    });
}

#[test]
fn child_address_routes_to_child() {
    run(async {
        let h = Setup::new().start();
        h.pay("bob", "test.node.alice.wallet").await.unwrap();
        assert_eq!(h.only_receiver(), "alice");
    });
}

#[test]
fn child_routes_follow_a_new_node_address() {
    run(async {
        let mut s = Setup::new();
        s.settings.node_address = None;
        s.settings.default_route = None;
        let h = s.start();
        assert_reject(
            h.pay("bob", "test.learned.alice").await,
            ErrorCode::F02_UNREACHABLE,
            None,
        );
        h.router
            .send(SetNodeAddress {
                address: addr("test.learned"),
            })
            .await
            .unwrap();
        h.pay("bob", "test.learned.alice").await.unwrap();
        assert_eq!(h.only_receiver(), "alice");
    });
}

#[test]
fn default_route_takes_the_rest() {
    run(async {
        let h = Setup::new().start();
        h.pay("alice", "private.somewhere").await.unwrap();
        assert_eq!(h.only_receiver(), "parent");
    });
}

#[test]
fn no_route_is_f02() {
    run(async {
        let mut s = Setup::new();
        s.settings.default_route = None;
        let h = s.start();
        assert_reject(
            h.pay("alice", "private.somewhere").await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.node"),
        );
        assert!(h.reserves.lock().unwrap().is_empty());
    });
}

#[test]
fn unknown_address_under_ours_is_f02_not_sent_to_parent() {
    run(async {
        let h = Setup::new().start();
        assert_reject(
            h.pay("bob", "test.node.nobody").await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.node"),
        );
        assert!(h.seen("parent").is_empty());
    });
}

#[test]
fn reflection_refused_when_disabled() {
    run(async {
        let mut s = Setup::new();
        s.settings.reflect_payments = false;
        let h = s.start();
        assert_reject(
            h.pay("parent", "private.somewhere").await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.node"),
        );
        h.pay("bob", "private.somewhere").await.unwrap();
    });
}

#[test]
fn reflection_allowed_by_default() {
    run(async {
        let h = Setup::new().start();
        h.pay("parent", "private.somewhere").await.unwrap();
        assert_eq!(h.only_receiver(), "parent");
    });
}

#[test]
fn non_echo_packet_to_our_address_is_f02() {
    run(async {
        let h = Setup::new().start();
        assert_reject(
            h.pay("bob", "test.node").await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.node"),
        );
    });
}

#[test]
fn unknown_peer_protocol_is_f01() {
    run(async {
        let h = Setup::new().start();
        assert_reject(
            h.send("bob", peer_request_to("peer.nonsense")).await,
            ErrorCode::F01_INVALID_PACKET,
            Some("test.node"),
        );
    });
}

// ---- conversion and expiry ------------------------------------------------------------------

#[test]
fn converts_with_rate_spread_and_scale_rounding_down() {
    run(async {
        let mut s = Setup::new();
        s.settings.exchange = Exchange {
            backend: RateBackend::Static(
                StaticRates::from_decimal_strings([("EUR", "1"), ("USD", "1.1")]).unwrap(),
            ),
            spread: Spread::parse_decimal("0.01").unwrap(),
        };
        s.settings.static_routes = vec![("g.eu".into(), id("bob"))];
        let bob = s.account("bob");
        bob.code = "EUR";
        bob.scale = 6;
        let h = s.start();
        // 1_100_999 nano-USD / 1.1 * 0.99 = 990_899.1 nano-EUR = 990.8991 micro-EUR.
        h.send("alice", prepare_to("g.eu.x", 1_100_999, NOW + 10_000))
            .await
            .unwrap();
        assert_eq!(h.seen("bob")[0].amount(), 990);
        let reserve = h.reserves.lock().unwrap()[0].clone();
        assert_eq!(reserve.incoming, Some((id("alice"), 1_100_999)));
        assert_eq!(reserve.outgoing, Some((id("bob"), 990)));
    });
}

#[test]
fn missing_rate_is_f00() {
    run(async {
        let mut s = Setup::new();
        s.settings.exchange = Exchange {
            backend: RateBackend::Static(
                StaticRates::from_decimal_strings([("USD", "1")]).unwrap(),
            ),
            spread: Spread::ZERO,
        };
        s.account("bob").code = "XRP";
        s.settings.static_routes = vec![("g.xrp".into(), id("bob"))];
        let h = s.start();
        assert_reject(
            h.pay("alice", "g.xrp.x").await,
            ErrorCode::F00_BAD_REQUEST,
            Some("test.node"),
        );
        assert!(h.seen("bob").is_empty());
    });
}

#[test]
fn converted_amount_overflow_is_f00() {
    run(async {
        let mut s = Setup::new();
        s.account("bob").scale = 12;
        s.settings.static_routes = vec![("g.big".into(), id("bob"))];
        let h = s.start();
        assert_reject(
            h.send("alice", prepare_to("g.big.x", u64::MAX, NOW + 10_000))
                .await,
            ErrorCode::F00_BAD_REQUEST,
            Some("test.node"),
        );
    });
}

#[test]
fn expiry_shortened_by_message_window() {
    run(async {
        let h = Setup::new().start();
        h.send("alice", prepare_to("g.x", 5, NOW + 10_000))
            .await
            .unwrap();
        let out = &h.seen("parent")[0];
        assert_eq!(out.expires_at(), Timestamp::from_unix_millis(NOW + 9_000));
        assert_eq!(out.amount(), 5);
        assert_eq!(out.destination_str(), "g.x");
        assert_eq!(out.execution_condition(), &condition());
        assert_eq!(out.data(), b"payload");
    });
}

#[test]
fn expiry_capped_at_max_hold_time() {
    run(async {
        let h = Setup::new().start();
        h.send("alice", prepare_to("g.x", 5, NOW + 600_000))
            .await
            .unwrap();
        assert_eq!(
            h.seen("parent")[0].expires_at(),
            Timestamp::from_unix_millis(NOW + 30_000)
        );
    });
}

#[test]
fn too_little_time_left_is_r02() {
    run(async {
        let h = Setup::new().start();
        assert_reject(
            h.send("alice", prepare_to("g.x", 5, NOW + 1_999)).await,
            ErrorCode::R02_INSUFFICIENT_TIMEOUT,
            Some("test.node"),
        );
        assert!(h.seen("parent").is_empty());
        assert!(h.reserves.lock().unwrap().is_empty());
    });
}

#[test]
fn already_expired_is_r02() {
    run(async {
        let h = Setup::new().start();
        assert_reject(
            h.send("alice", prepare_to("g.x", 5, NOW - 1)).await,
            ErrorCode::R02_INSUFFICIENT_TIMEOUT,
            Some("test.node"),
        );
    });
}

// ---- balance, sending, durability -----------------------------------------------------------

#[test]
fn balance_refusal_is_t04_and_nothing_is_sent() {
    run(async {
        let mut s = Setup::new();
        s.balance.refuse = Some(BalanceError::BelowMinimum {
            available: 0,
            amount: 100,
            minimum: 0,
        });
        let h = s.start();
        assert_reject(
            h.pay("alice", "g.x").await,
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
            Some("test.node"),
        );
        assert!(h.seen("parent").is_empty());
        assert!(h.resolves.lock().unwrap().is_empty());
    });
}

#[test]
fn fulfill_relayed_only_after_commit_is_durable() {
    run(async {
        let mut s = Setup::new();
        s.balance.commit_delay = Duration::from_secs(3);
        let h = s.start();
        let start = h.clock.now_ms();
        let fulfill = h.pay("alice", "g.x").await.unwrap();
        h.log.lock().unwrap().push("relayed".into());
        assert_eq!(fulfill.fulfillment(), &FULFILLMENT);
        assert_eq!(
            h.log(),
            ["reserve", "send parent", "commit durable", "relayed"]
        );
        assert!(h.clock.now_ms() - start >= 3_000);
        let resolve = h.resolves.lock().unwrap()[0].clone();
        assert!(resolve.fulfilled);
        assert_eq!(resolve.id, ReservationId(1));
        assert_eq!(resolve.incoming, Some((id("alice"), 100)));
        assert_eq!(resolve.outgoing, Some((id("parent"), 100)));
    });
}

#[test]
fn failed_commit_is_t00_not_a_fulfill() {
    run(async {
        let mut s = Setup::new();
        s.balance.commit_fails = true;
        let h = s.start();
        assert_reject(
            h.pay("alice", "g.x").await,
            ErrorCode::T00_INTERNAL_ERROR,
            Some("test.node"),
        );
        assert_eq!(h.seen("parent").len(), 1);
    });
}

#[test]
fn downstream_reject_relayed_as_is_and_rolled_back() {
    run(async {
        let mut s = Setup::new();
        s.account("parent").reply = Some(Reply::Reject(ErrorCode::F99_APPLICATION_ERROR));
        let h = s.start();
        let r = rejected(h.pay("alice", "g.x").await);
        assert_eq!(r.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert_eq!(r.triggered_by(), Some(addr("g.downstream")));
        assert_eq!(r.message(), "from downstream");
        assert_eq!(h.log(), ["reserve", "send parent", "rollback durable"]);
        assert!(!h.resolves.lock().unwrap()[0].fulfilled);
    });
}

#[test]
fn wrong_fulfillment_is_f05_and_rolled_back() {
    run(async {
        let mut s = Setup::new();
        s.account("parent").reply = Some(Reply::WrongFulfillment);
        let h = s.start();
        assert_reject(
            h.pay("alice", "g.x").await,
            ErrorCode::F05_WRONG_CONDITION,
            Some("test.node"),
        );
        assert!(!h.resolves.lock().unwrap()[0].fulfilled);
    });
}

#[test]
fn stopped_next_hop_is_t01() {
    run(async {
        let mut s = Setup::new();
        s.account("parent").reply = None;
        let h = s.start();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_reject(
            h.pay("alice", "g.x").await,
            ErrorCode::T01_PEER_UNREACHABLE,
            Some("test.node"),
        );
        assert!(!h.resolves.lock().unwrap()[0].fulfilled);
    });
}

#[test]
fn silent_next_hop_released_at_incoming_expiry_with_r00() {
    run(async {
        let mut s = Setup::new();
        s.account("parent").reply = Some(Reply::Never);
        let h = s.start();
        assert_reject(
            h.pay("alice", "g.x").await,
            ErrorCode::R00_TRANSFER_TIMED_OUT,
            Some("test.node"),
        );
        assert_eq!(h.clock.now_ms(), NOW + 10_000);
        assert!(!h.resolves.lock().unwrap()[0].fulfilled);
    });
}

#[test]
fn zero_amount_packets_skip_the_balance_keeper() {
    run(async {
        let h = Setup::new().start();
        h.send("alice", prepare_to("g.x", 0, NOW + 10_000))
            .await
            .unwrap();
        assert!(h.reserves.lock().unwrap().is_empty());
        assert!(h.resolves.lock().unwrap().is_empty());
    });
}

// ---- local destinations ---------------------------------------------------------------------

#[test]
fn ildcp_serves_child_its_address_and_asset() {
    run(async {
        let mut s = Setup::new();
        let alice = s.account("alice");
        alice.code = "XRP";
        alice.scale = 6;
        let h = s.start();
        let fulfill = h
            .send("alice", peer_request_to("peer.config"))
            .await
            .unwrap();
        assert_eq!(
            IldcpResponse::from_fulfill(&fulfill).unwrap(),
            IldcpResponse {
                client_address: addr("test.node.alice"),
                asset_scale: 6,
                asset_code: "XRP".into(),
            }
        );
        assert!(h.reserves.lock().unwrap().is_empty());
    });
}

#[test]
fn ildcp_for_non_child_is_f00() {
    run(async {
        let h = Setup::new().start();
        assert_reject(
            h.send("bob", peer_request_to("peer.config")).await,
            ErrorCode::F00_BAD_REQUEST,
            Some("test.node"),
        );
    });
}

#[test]
fn ildcp_without_peer_condition_is_f01() {
    run(async {
        let h = Setup::new().start();
        let mut p = prepare_to("peer.config", 0, NOW + 10_000);
        assert_ne!(p.execution_condition(), &PEER_PROTOCOL_CONDITION);
        assert_reject(
            h.send("alice", p.clone()).await,
            ErrorCode::F01_INVALID_PACKET,
            Some("test.node"),
        );
        p = prepare_to("peer.balance", 0, NOW + 10_000);
        assert_reject(
            h.send("alice", p).await,
            ErrorCode::F01_INVALID_PACKET,
            Some("test.node"),
        );
    });
}

#[test]
fn ildcp_before_we_have_an_address_is_t00() {
    run(async {
        let mut s = Setup::new();
        s.settings.node_address = None;
        let h = s.start();
        assert_reject(
            h.send("alice", peer_request_to("peer.config")).await,
            ErrorCode::T00_INTERNAL_ERROR,
            None,
        );
    });
}

#[test]
fn peer_balance_answers_requesters_balance_in_its_favour() {
    run(async {
        let mut s = Setup::new();
        s.balance.snapshot = Some(BalanceSnapshot {
            balance: 250,
            pending_incoming: 5,
            pending_outgoing: 7,
        });
        let h = s.start();
        let fulfill = h
            .send("bob", peer_request_to("peer.balance"))
            .await
            .unwrap();
        assert_eq!(
            BalanceResponse::from_fulfill(&fulfill).unwrap(),
            BalanceResponse { balance: -250 }
        );
        assert_eq!(*h.gets.lock().unwrap(), [id("bob")]);
    });
}

#[test]
fn peer_balance_without_a_balance_is_f00() {
    run(async {
        let mut s = Setup::new();
        s.balance.snapshot = None;
        let h = s.start();
        assert_reject(
            h.send("bob", peer_request_to("peer.balance")).await,
            ErrorCode::F00_BAD_REQUEST,
            Some("test.node"),
        );
    });
}

#[test]
fn peer_route_and_settle_dispatched_to_their_handlers() {
    run(async {
        let h = Setup::new().start();
        let f = h
            .send("bob", peer_request_to("peer.route.update"))
            .await
            .unwrap();
        assert_eq!(f.data(), b"handled");
        h.send("carl", peer_request_to("peer.route.control"))
            .await
            .unwrap();
        h.send("parent", peer_request_to("peer.settle"))
            .await
            .unwrap();
        assert_eq!(
            *h.ccp_seen.lock().unwrap(),
            [
                (id("bob"), "peer.route.update".to_string()),
                (id("carl"), "peer.route.control".to_string())
            ]
        );
        assert_eq!(
            *h.settle_seen.lock().unwrap(),
            [(id("parent"), "peer.settle".to_string())]
        );
    });
}

#[test]
fn peer_protocols_without_handler_are_f02() {
    run(async {
        let mut s = Setup::new();
        s.ccp = false;
        s.settle = false;
        let h = s.start();
        assert_reject(
            h.send("bob", peer_request_to("peer.route.update")).await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.node"),
        );
        assert_reject(
            h.send("bob", peer_request_to("peer.settle")).await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.node"),
        );
    });
}

#[test]
fn paid_peer_protocol_packet_is_booked_as_incoming() {
    run(async {
        let h = Setup::new().start();
        let mut p = peer_request_to("peer.settle");
        p = p.with_amount_and_expiry(40, p.expires_at());
        h.send("bob", p).await.unwrap();
        let reserve = h.reserves.lock().unwrap()[0].clone();
        assert_eq!(reserve.incoming, Some((id("bob"), 40)));
        assert_eq!(reserve.outgoing, None);
        assert!(h.resolves.lock().unwrap()[0].fulfilled);
    });
}

#[test]
fn echo_round_trip() {
    run(async {
        let h = Setup::new().start();
        h.learn(&[("g.bob", Some("bob"))]).await;
        let ping = ilp::echo::request(
            &addr("test.node"),
            &addr("g.bob.pinger"),
            100,
            Timestamp::from_unix_millis(NOW + 10_000),
            &condition(),
        )
        .unwrap();
        let fulfill = h.send("bob", ping).await.unwrap();
        assert_eq!(fulfill.fulfillment(), &FULFILLMENT);
        let pong = &h.seen("bob")[0];
        assert_eq!(pong.destination_str(), "g.bob.pinger");
        assert_eq!(EchoMessage::decode(pong.data()), Ok(EchoMessage::Response));
        assert_eq!(pong.execution_condition(), &condition());
        assert_eq!(pong.amount(), 100);
        assert_eq!(pong.expires_at(), Timestamp::from_unix_millis(NOW + 9_000));
        let reserve = h.reserves.lock().unwrap()[0].clone();
        assert_eq!(reserve.incoming, Some((id("bob"), 100)));
        assert_eq!(reserve.outgoing, Some((id("bob"), 100)));
    });
}

#[test]
fn malformed_or_response_echo_to_us_is_f01() {
    run(async {
        let h = Setup::new().start();
        let mut data = b"ECHOECHOECHOECHO".to_vec();
        data.push(1);
        let pong = PrepareBuilder {
            amount: 1,
            expires_at: Timestamp::from_unix_millis(NOW + 10_000),
            execution_condition: &condition(),
            destination: &addr("test.node"),
            data: &data,
        }
        .build()
        .unwrap();
        assert_reject(
            h.send("bob", pong).await,
            ErrorCode::F01_INVALID_PACKET,
            Some("test.node"),
        );
        data[16] = 7;
        let garbage = PrepareBuilder {
            amount: 1,
            expires_at: Timestamp::from_unix_millis(NOW + 10_000),
            execution_condition: &condition(),
            destination: &addr("test.node"),
            data: &data,
        }
        .build()
        .unwrap();
        assert_reject(
            h.send("bob", garbage).await,
            ErrorCode::F01_INVALID_PACKET,
            Some("test.node"),
        );
    });
}

// ---- restarts -------------------------------------------------------------------------------

#[test]
fn crash_keeps_settings_learned_routes_and_node_address() {
    run(async {
        let h = Setup::new().start();
        h.learn(&[("g.x", Some("carl"))]).await;
        h.router
            .send(SetNodeAddress {
                address: addr("test.renamed"),
            })
            .await
            .unwrap();
        h.router.send(Crash).await.unwrap();
        h.pay("alice", "g.x.y").await.unwrap();
        assert_eq!(h.only_receiver(), "carl");
        assert_reject(
            h.pay("alice", "test.renamed.nobody").await,
            ErrorCode::F02_UNREACHABLE,
            Some("test.renamed"),
        );
        h.pay("bob", "test.renamed.alice").await.unwrap();
        assert_eq!(h.seen("alice").len(), 1);
    });
}

#[test]
fn settings_from_config() {
    let config = ilp::config::Config::from_toml_str(
        r#"
        [node]
        ilp_address = "test.cfg"
        spread = "0.01"
        min_message_window_ms = 500
        max_hold_time_ms = 9000
        reflect_payments = false
        [routing]
        static_routes = [{ prefix = "g.s", account = "kid" }]
        [accounts.up]
        relation = "parent"
        link = { type = "memory" }
        [accounts.kid]
        relation = "child"
        ilp_address_segment = "k"
        asset_code = "EUR"
        asset_scale = 2
        link = { type = "memory" }
        "#,
    )
    .unwrap();
    let s = RouterSettings::from_config(&config).unwrap();
    assert_eq!(s.node_address, Some(addr("test.cfg")));
    assert_eq!(s.static_routes, vec![("g.s".to_string(), id("kid"))]);
    assert_eq!(s.default_route, Some(id("up")));
    assert_eq!(s.exchange.spread, Spread::parse_decimal("0.01").unwrap());
    assert_eq!(s.min_message_window_ms, 500);
    assert_eq!(s.max_hold_time_ms, 9_000);
    assert!(!s.reflect_payments);
    run(async move {
        let send = FakePeer {
            name: "kid",
            reply: Reply::Fulfill,
            seen: shared(),
            log: shared(),
        }
        .start()
        .recipient();
        let kid = RouterAccount::from_config("kid", &config.accounts["kid"], send);
        assert_eq!(kid.child_segment.as_deref(), Some("k"));
        assert_eq!((kid.asset_code.as_str(), kid.asset_scale), ("EUR", 2));
        assert_eq!(kid.relation, Relation::Child);
    });
}

#[test]
fn ping_sends_a_zero_amount_echo_request_and_checks_the_answer() {
    run(async {
        let h = Setup::new().start();
        let ping = |destination: &str| SendPing {
            destination: addr(destination),
            timeout: Duration::from_secs(5),
        };
        // The parent's fake answers with a fulfillment of its own, not the ping's: F05.
        let answer = h.router.send(ping("g.far.node")).await.unwrap();
        assert_eq!(answer.unwrap_err().code(), ErrorCode::F05_WRONG_CONDITION);
        let request = &h.seen("parent")[0];
        assert_eq!(request.amount(), 0);
        assert_eq!(request.destination_str(), "g.far.node");
        assert_eq!(
            EchoMessage::decode(request.data()),
            Ok(EchoMessage::Request {
                source_address: addr("test.node")
            })
        );
        assert_eq!(
            request.expires_at(),
            Timestamp::from_unix_millis(h.clock.now_ms() + 5_000)
        );
        // A zero-amount ping reserves nothing.
        assert!(h.reserves.lock().unwrap().is_empty());
        // Under our own address with no child there: no route.
        let answer = h.router.send(ping("test.node.nobody")).await.unwrap();
        assert_eq!(answer.unwrap_err().code(), ErrorCode::F02_UNREACHABLE);
    });
}

/// A ping to our own address is the echo exchange done in place: answered with a round-trip
/// time, no packet sent to any account, nothing reserved; the ping's entry is gone afterwards.
#[test]
fn ping_to_our_own_address_is_a_round_trip() {
    run(async {
        let h = Setup::new().start();
        let answer = h
            .router
            .send(SendPing {
                destination: addr("test.node"),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
        let rtt = answer.expect("a ping to ourselves is answered");
        assert!(rtt < Duration::from_secs(5), "{rtt:?}");
        for account in ["alice", "bob", "carl", "parent"] {
            assert!(h.seen(account).is_empty(), "{account} was sent a packet");
        }
        assert!(h.reserves.lock().unwrap().is_empty());
        // Twice in a row: the first ping left nothing behind that the second could trip on.
        let again = h
            .router
            .send(SendPing {
                destination: addr("test.node"),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
        assert!(again.is_ok(), "{again:?}");
    });
}

#[test]
fn ping_needs_our_address() {
    run(async {
        let mut setup = Setup::new();
        setup.settings.node_address = None;
        let h = setup.start();
        let answer = h
            .router
            .send(SendPing {
                destination: addr("g.far"),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
        assert_eq!(answer.unwrap_err().code(), ErrorCode::T00_INTERNAL_ERROR);
    });
}

#[test]
fn runtime_static_routes_are_validated() {
    run(async {
        let h = Setup::new().start();
        let set = |prefix: &str, account: Option<&str>| SetStaticRoute {
            prefix: prefix.into(),
            account: account.map(id),
        };
        assert_eq!(
            h.router.send(set("g.x", Some("bob"))).await.unwrap(),
            Ok(())
        );
        let routes = h.router.send(GetRoutes).await.unwrap();
        assert!(routes.contains(&RouteEntry {
            prefix: "g.x".into(),
            account: id("bob"),
            kind: crate::messages::RouteKind::Static,
        }));
        h.send("alice", prepare_to("g.x.y", 5, NOW + 10_000))
            .await
            .unwrap();
        assert_eq!(h.seen("bob").len(), 1);
        for bad in ["", "g..x", "g x", "g."] {
            assert_eq!(
                h.router.send(set(bad, Some("bob"))).await.unwrap(),
                Err(StaticRouteError::InvalidPrefix(bad.into()))
            );
        }
        assert_eq!(
            h.router.send(set("g.y", Some("nobody"))).await.unwrap(),
            Err(StaticRouteError::UnknownAccount(id("nobody")))
        );
        assert_eq!(h.router.send(set("g.x", None)).await.unwrap(), Ok(()));
        assert_eq!(
            h.router.send(set("g.x", None)).await.unwrap(),
            Err(StaticRouteError::NotFound("g.x".into()))
        );
    });
}

// ---- one payment per Prepare ----------------------------------------------------------------

/// Sends `prepare` from each of `from` at once; returns the outcomes in order.
async fn send_together(h: &Harness, from: &[&str], prepare: &Prepare) -> Vec<PacketResult> {
    futures::future::join_all(from.iter().map(|f| h.send(f, prepare.clone()))).await
}

fn outgoing_booked(h: &Harness) -> usize {
    h.reserves
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.outgoing.is_some())
        .count()
}

#[test]
fn identical_prepares_from_two_accounts_share_one_send_and_book_the_next_hop_once() {
    run(async {
        let mut s = Setup::new();
        s.account("bob").reply = Some(Reply::Slow);
        let h = s.start();
        h.learn(&[("g.bob", Some("bob"))]).await;
        let p = prepare_to("g.bob.x", 100, NOW + 10_000);
        for result in send_together(&h, &["alice", "carl"], &p).await {
            assert_eq!(result.unwrap(), fulfill_with(&FULFILLMENT));
        }
        assert_eq!(h.seen("bob").len(), 1, "one packet on the wire");
        let reserves = h.reserves.lock().unwrap().clone();
        let incoming: Vec<_> = reserves.iter().map(|r| r.incoming.clone()).collect();
        assert_eq!(
            incoming,
            vec![Some((id("alice"), 100)), Some((id("carl"), 100))]
        );
        assert_eq!(outgoing_booked(&h), 1, "bob was paid once");
        // Once bob paid them, the same bytes from a third account are refused, not sent: bob
        // would answer them from its own memory without paying again.
        let late = rejected(h.send("parent", p).await);
        assert_eq!(late.code(), ErrorCode::F00_BAD_REQUEST);
        assert_eq!(h.seen("bob").len(), 1);
        assert_eq!(outgoing_booked(&h), 1);
    });
}

#[test]
fn identical_prepares_in_flight_share_a_reject_too() {
    run(async {
        let mut s = Setup::new();
        s.account("bob").reply = Some(Reply::Never);
        let h = s.start();
        h.learn(&[("g.bob", Some("bob"))]).await;
        let p = prepare_to("g.bob.x", 100, NOW + 10_000);
        for result in send_together(&h, &["alice", "carl"], &p).await {
            assert_reject(result, ErrorCode::R00_TRANSFER_TIMED_OUT, Some("test.node"));
        }
        assert_eq!(h.seen("bob").len(), 1);
    });
}

#[test]
fn with_dedup_off_every_copy_is_sent_and_booked() {
    run(async {
        let mut s = Setup::new();
        s.account("bob").reply = Some(Reply::Slow);
        s.account("bob").dedup = false;
        let h = s.start();
        h.learn(&[("g.bob", Some("bob"))]).await;
        let p = prepare_to("g.bob.x", 100, NOW + 10_000);
        for result in send_together(&h, &["alice", "carl"], &p).await {
            result.unwrap();
        }
        assert_eq!(h.seen("bob").len(), 2);
        assert_eq!(outgoing_booked(&h), 2);
    });
}

#[test]
fn identical_prepares_from_one_account_are_reserved_once_and_answered_alike() {
    run(async {
        let mut s = Setup::new();
        s.account("bob").reply = Some(Reply::Slow);
        s.balance.commit_delay = Duration::from_millis(50);
        let h = s.start();
        h.learn(&[("g.bob", Some("bob"))]).await;
        let p = prepare_to("g.bob.x", 100, NOW + 10_000);
        let results = send_together(&h, &["alice", "alice", "alice"], &p).await;
        for result in results {
            assert_eq!(result.unwrap(), fulfill_with(&FULFILLMENT));
        }
        // And once paid, a repeat is answered without reaching the keeper or bob.
        h.send("alice", p.clone()).await.unwrap();
        assert_eq!(h.seen("bob").len(), 1);
        assert_eq!(h.reserves.lock().unwrap().len(), 1);
        assert_eq!(h.resolves.lock().unwrap().len(), 1);
        // Different bytes are another payment.
        h.send("alice", prepare_to("g.bob.x", 101, NOW + 10_000))
            .await
            .unwrap();
        assert_eq!(h.seen("bob").len(), 2);
    });
}

#[test]
fn a_failed_commit_is_not_remembered_as_paid() {
    run(async {
        let mut s = Setup::new();
        s.balance.commit_fails = true;
        let h = s.start();
        h.learn(&[("g.bob", Some("bob"))]).await;
        let p = prepare_to("g.bob.x", 100, NOW + 10_000);
        let first = rejected(h.send("alice", p.clone()).await);
        assert_eq!(first.code(), ErrorCode::T00_INTERNAL_ERROR);
        // Nothing was booked, so a repeat is not answered with the Fulfill; bob was paid, so
        // it is not sent to bob again either.
        let again = rejected(h.send("alice", p).await);
        assert_eq!(again.code(), ErrorCode::F00_BAD_REQUEST);
        assert_eq!(h.seen("bob").len(), 1);
    });
}
