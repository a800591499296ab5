//! The admin API on real sockets (127.0.0.1, ephemeral ports): two nodes pay each other over
//! BTP, then `/metrics`, `/accounts` and `/stats` show exactly those packets; the bearer token;
//! JSON errors; balance adjustments that survive a restart on RocksDB; static routes added and
//! removed at run time; snapshots that open as a store; pings between two nodes. Every wait is
//! bounded.

#![allow(clippy::unwrap_used)] // test harness: helpers unwrap what a correct run never fails

mod common;

use actix::Actor;
use bytes::Bytes;
use common::{
    account_tail, btp_client_account, btp_server_account, eventually, node_base, prepare, Receiver,
    BTP_WAIT, PREIMAGE,
};
use hyper::{Method, StatusCode};
use ilp::config::Config;
use ilp::packet::ErrorCode;
use ilp_actors::admin::{AdminServer, AdminState};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{links_for_config, BtpLinks, BtpOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{AccountId, PacketResult};
use ilp_actors::metrics::Metrics;
use ilp_actors::node::{Node, NodeOptions};
use ilp_actors::store::memory::MemoryStore;
use ilp_actors::store::rocks::RocksStore;
use ilp_actors::store::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

const TOKEN: &str = "admin-s3cret";

/// A node with its admin API, a memory `wallet` child (far end: a [`Receiver`]) and extra
/// memory accounts whose far ends are Receivers too.
struct AdminNode {
    node: Node,
    wallet: MemoryLink,
    _btp: BtpLinks,
    admin: AdminServer,
    /// The far ends of the extra memory accounts, kept alive.
    _far: Vec<MemoryLink>,
}

impl AdminNode {
    async fn start(config: &Config, store: Arc<dyn Store>, memory_accounts: &[&str]) -> AdminNode {
        let options = BtpOptions {
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(200),
            ..BtpOptions::default()
        };
        let btp = links_for_config(config, options).await.unwrap();
        let mut links: BTreeMap<AccountId, Arc<dyn Link>> = btp.links.clone();
        let mut far = Vec::new();
        let mut wallet = None;
        for id in std::iter::once("wallet").chain(memory_accounts.iter().copied()) {
            let (node_end, far_end) = MemoryLink::pair();
            far_end.attach(Receiver { data: vec![] }.start().recipient());
            links.insert(Arc::from(id), Arc::new(node_end));
            if id == "wallet" {
                wallet = Some(far_end);
            } else {
                far.push(far_end);
            }
        }
        let node = Node::start(
            config,
            NodeOptions {
                clock: Clock::system(),
                store,
                seed: 1,
                links,
                metrics: Some(Arc::new(Metrics::new())),
            },
        )
        .unwrap();
        let (listener, _) = common::listener().await;
        let admin = AdminServer::serve(listener, AdminState::new(&node, config)).unwrap();
        AdminNode {
            node,
            wallet: wallet.unwrap(),
            _btp: btp,
            admin,
            _far: far,
        }
    }

    fn btp_addr(&self) -> std::net::SocketAddr {
        self._btp.server.as_ref().unwrap().local_addr()
    }

    fn link(&self, id: &str) -> Arc<dyn Link> {
        self._btp.links.get(id).unwrap().clone()
    }

    async fn pay(&self, to: &str, amount: u64) -> PacketResult {
        let p = prepare(to, amount, 30_000);
        timeout(BTP_WAIT, self.wallet.send_prepare(p))
            .await
            .expect("payment answered in time")
            .expect("wallet link up")
    }

    /// One admin request with `token` (`None`: no Authorization header).
    async fn call_with(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Bytes) {
        let url = format!("http://{}{path}", self.admin.local_addr());
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let (status, _, body) = common::http_request(false, method, &url, &headers, body).await;
        (status, body)
    }

    /// An authorized request whose answer is JSON.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, body) = self.call_with(Some(TOKEN), method, path, body).await;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
        (status, value)
    }

    async fn metrics(&self) -> String {
        let (status, body) = self
            .call_with(Some(TOKEN), Method::GET, "/metrics", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }
}

fn admin_listener() -> String {
    format!("[listeners.admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

fn parse(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("config:\n{e}\n{text}"))
}

/// Node `test.a` serving child `b` over BTP, and node `test.a.b` dialing it as its parent.
async fn two_nodes() -> (AdminNode, AdminNode) {
    let a_config = parse(&format!(
        "{}{}[listeners.btp]\nbind = \"127.0.0.1:0\"\n{}",
        node_base("a"),
        admin_listener(),
        btp_server_account("b", "b-token", None)
    ));
    let a = AdminNode::start(&a_config, Arc::new(MemoryStore::new()), &[]).await;
    let url = format!("ws://{}", a.btp_addr());
    let b_config = parse(&format!(
        "{}{}{}",
        node_base("a.b"),
        admin_listener(),
        btp_client_account("a", &url, "b", "b-token", None)
    ));
    let b = AdminNode::start(&b_config, Arc::new(MemoryStore::new()), &[]).await;
    let (a_link, b_link) = (a.link("b"), b.link("a"));
    eventually(BTP_WAIT, "both ends of the link are up", || {
        a_link.is_up() && b_link.is_up()
    })
    .await;
    (a, b)
}

fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in:\n{text}"
    );
}

#[test]
fn btp_traffic_shows_in_metrics_accounts_and_stats() {
    common::run(|| async {
        let (a, b) = two_nodes().await;
        for _ in 0..3 {
            let paid = b.pay("test.a.wallet", 100).await.unwrap();
            assert_eq!(paid.fulfillment(), &PREIMAGE);
        }
        let reject = b.pay("test.a.nobody", 7).await.unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F02_UNREACHABLE);

        let text = a.metrics().await;
        let packets = |account: &str, direction: &str, outcome: &str, code: &str, n: u64| {
            format!(
                "ilp_packets_total{{account=\"{account}\",direction=\"{direction}\",\
                 outcome=\"{outcome}\",code=\"{code}\"}} {n}"
            )
        };
        has_line(&text, &packets("b", "incoming", "fulfilled", "", 3));
        has_line(&text, &packets("b", "incoming", "rejected", "F02", 1));
        has_line(&text, &packets("wallet", "outgoing", "fulfilled", "", 3));
        has_line(&text, &packets("b", "outgoing", "fulfilled", "", 0));
        has_line(
            &text,
            r#"ilp_fulfilled_amount_total{account="b",direction="incoming"} 300"#,
        );
        has_line(
            &text,
            r#"ilp_fulfilled_amount_total{account="wallet",direction="outgoing"} 300"#,
        );
        has_line(
            &text,
            r#"ilp_incoming_packet_duration_seconds_count{account="b"} 4"#,
        );
        has_line(&text, r#"ilp_account_balance{account="b"} 300"#);
        has_line(&text, r#"ilp_account_balance{account="wallet"} -300"#);
        has_line(&text, r#"ilp_link_up{account="b"} 1"#);
        has_line(&text, r#"ilp_link_up{account="wallet"} 1"#);
        // The node that sent them counts the same packets the other way.
        let text = b.metrics().await;
        has_line(&text, &packets("a", "outgoing", "fulfilled", "", 3));
        has_line(&text, &packets("a", "outgoing", "rejected", "F02", 1));
        has_line(&text, &packets("wallet", "incoming", "fulfilled", "", 3));
        has_line(&text, r#"ilp_account_balance{account="a"} -300"#);

        let (status, account) = a.call(Method::GET, "/accounts/b", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            account,
            json!({
                "id": "b", "relation": "child", "asset_code": "USD", "asset_scale": 9,
                "link_up": true, "balance": 300, "pending_incoming": 0, "pending_outgoing": 0,
            })
        );
        let (status, accounts) = a.call(Method::GET, "/accounts", None).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = accounts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b", "wallet"]);
        assert_eq!(accounts[1]["balance"], -300);

        let (status, stats) = a.call(Method::GET, "/stats", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            stats["packets"],
            json!({
                "incoming": {"fulfilled": 3, "rejected": 1},
                "outgoing": {"fulfilled": 3, "rejected": 0},
            })
        );
        assert_eq!(stats["address"], "test.a");
        assert_eq!(stats["links_up"], 2);
    });
}

#[test]
fn ping_between_two_nodes() {
    common::run(|| async {
        let (a, b) = two_nodes().await;
        let (status, pong) = a
            .call(
                Method::POST,
                "/ping",
                Some(json!({"destination": "test.a.b"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{pong}");
        assert_eq!(pong["destination"], "test.a.b");
        assert!(pong["rtt_ms"].as_f64().unwrap() >= 0.0);
        // The other way round, through the child's default route.
        let (status, pong) = b
            .call(
                Method::POST,
                "/ping",
                Some(json!({"destination": "test.a"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{pong}");
        // Each node to its own address: a round trip that never leaves the node.
        for (node, own) in [(&a, "test.a"), (&b, "test.a.b")] {
            let (status, pong) = node
                .call(Method::POST, "/ping", Some(json!({"destination": own})))
                .await;
            assert_eq!(status, StatusCode::OK, "{own}: {pong}");
            assert_eq!(pong["destination"], own);
            assert!(pong["rtt_ms"].as_f64().unwrap() >= 0.0, "{pong}");
        }
        // Nothing answers at an unknown address: the Reject comes back as a 502.
        let (status, refused) = a
            .call(
                Method::POST,
                "/ping",
                Some(json!({"destination": "test.a.nobody"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(refused["code"], "F02");
        assert!(refused["error"].as_str().unwrap().contains("F02"));
        // A malformed address is the client's mistake.
        let (status, _) = a
            .call(
                Method::POST,
                "/ping",
                Some(json!({"destination": "no spaces"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Pings are zero-amount: no balance moved.
        let (_, account) = a.call(Method::GET, "/accounts/b", None).await;
        assert_eq!(account["balance"], 0);
    });
}

/// Node `test.a` serving `b1` and `b2` over BTP, and node `test.b` dialing it twice as `up1`
/// and `up2`, routing `test.a` back through `up2` and keeping a 1 % spread: a payment from `a`
/// out through `b1` comes back through `b2`.
async fn loop_nodes() -> (AdminNode, AdminNode) {
    let a_config = parse(&format!(
        "{}{}[listeners.btp]\nbind = \"127.0.0.1:0\"\n{}{}",
        node_base("a"),
        admin_listener(),
        btp_server_account("b1", "b1-token", None),
        btp_server_account("b2", "b2-token", None),
    ));
    let a = AdminNode::start(&a_config, Arc::new(MemoryStore::new()), &[]).await;
    let url = format!("ws://{}", a.btp_addr());
    let b_config = parse(
        &format!(
            "{}{}[routing]\ndefault_route = \"\"\n\
             static_routes = [{{ prefix = \"test.a\", account = \"up2\" }}]\n{}{}",
            node_base("b"),
            admin_listener(),
            btp_client_account("up1", &url, "b1", "b1-token", None),
            btp_client_account("up2", &url, "b2", "b2-token", None),
        )
        .replace("spread = \"0\"", "spread = \"0.01\""),
    );
    let b = AdminNode::start(&b_config, Arc::new(MemoryStore::new()), &[]).await;
    let links = [a.link("b1"), a.link("b2"), b.link("up1"), b.link("up2")];
    eventually(BTP_WAIT, "all four ends of the two links are up", || {
        links.iter().all(|l| l.is_up())
    })
    .await;
    (a, b)
}

async fn balances(node: &AdminNode, accounts: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for id in accounts {
        let (status, account) = node
            .call(Method::GET, &format!("/accounts/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{account}");
        out.push(account["balance"].as_i64().unwrap());
    }
    out
}

/// A circular payment leaves `a` through `b1`, crosses `b` (which keeps its spread) and comes
/// back through `b2`: `a` pays `b1` what it sent and `b2` pays `a` what came back, on both
/// nodes' books. One that comes back another way than the caller asked, or with less than the
/// caller's minimum, is refused by `a` and moves nothing anywhere.
#[test]
fn circular_payment_out_through_one_peer_and_back_through_another() {
    common::run(|| async {
        let (a, b) = loop_nodes().await;
        let circular = |body: Value| {
            let a = &a;
            async move { a.call(Method::POST, "/circular", Some(body)).await }
        };
        let (status, report) = circular(json!({
            "via": "b1", "amount": "1000", "return_via": "b2", "min_return": 990
        }))
        .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["destination"], "test.a");
        assert_eq!(report["path"], json!(["b1", "b2"]));
        assert_eq!(report["sent"]["via"], "b1");
        assert_eq!(report["sent"]["amount"]["amount"], "1000");
        assert_eq!(report["sent"]["amount"]["code"], "USD");
        assert_eq!(report["returned"]["via"], "b2");
        assert_eq!(report["returned"]["amount"]["amount"], "990");
        assert_eq!(report["rate"], "0.990000000");
        assert_eq!(report["first_hop"], "fulfilled");
        assert_eq!(report["id"].as_str().unwrap().len(), 32);
        let sent_expiry = report["sent"]["expires_at"].as_str().unwrap();
        let back_expiry = report["returned"]["expires_at"].as_str().unwrap();
        assert!(back_expiry < sent_expiry, "{report}");
        // a paid b1 1000 and was paid 990 by b2; b mirrors both.
        assert_eq!(balances(&a, &["b1", "b2"]).await, vec![-1000, 990]);
        assert_eq!(balances(&b, &["up1", "up2"]).await, vec![1000, -990]);

        // Any account will do when none is named.
        let (status, report) = circular(json!({"via": "b1", "amount": 500})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["returned"]["via"], "b2");
        assert_eq!(report["returned"]["amount"]["amount"], "495");
        assert_eq!(balances(&a, &["b1", "b2"]).await, vec![-1500, 1485]);

        // Back through b2 when b1 was asked for, or with less than the minimum: refused where
        // it returns, and nothing moves on either node.
        for (body, code) in [
            (
                json!({"via": "b1", "amount": 1000, "return_via": "b1"}),
                "F06",
            ),
            (
                json!({"via": "b1", "amount": 1000, "return_via": "b2", "min_return": 991}),
                "F04",
            ),
        ] {
            let (status, refused) = circular(body.clone()).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}: {refused}");
            assert_eq!(refused["code"], code, "{refused}");
            assert_eq!(refused["triggered_by"], "test.a", "{refused}");
        }
        assert_eq!(balances(&a, &["b1", "b2"]).await, vec![-1500, 1485]);
        assert_eq!(balances(&b, &["up1", "up2"]).await, vec![1500, -1485]);

        // The caller's mistakes.
        for (body, status) in [
            (json!({"via": "nobody", "amount": 1}), StatusCode::NOT_FOUND),
            (
                json!({"via": "b1", "amount": 1, "return_via": "nobody"}),
                StatusCode::NOT_FOUND,
            ),
            (json!({"via": "b1"}), StatusCode::BAD_REQUEST),
            // A minimum in an account not named.
            (
                json!({"via": "b1", "amount": 1, "min_return": 1}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"via": "b1", "amount": 1, "timeout_ms": 600000}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"via": "b1", "amount": "lots"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"via": "b1", "amount": 1, "color": "red"}),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let (got, answer) = circular(body.clone()).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert!(answer["error"].is_string(), "{answer}");
        }
        // b sends it back the way it came: out and back through b1, which nets the spread.
        let (status, answer) = b
            .call(
                Method::PUT,
                "/routes/static/test.a",
                Some(json!({"account": "up1"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (status, report) = circular(json!({"via": "b1", "amount": 1000})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["path"], json!(["b1", "b1"]));
        assert_eq!(balances(&a, &["b1", "b2"]).await, vec![-1510, 1485]);
        assert_eq!(balances(&b, &["up1", "up2"]).await, vec![1510, -1485]);
    });
}

/// The far end of a first hop that sends a circular payment straight back through the other
/// account's link, waits for our Fulfill, and still answers us with a Reject (as a hop whose
/// timer ran out would).
struct LateFirstHop {
    back: MemoryLink,
    fulfilled: Arc<std::sync::atomic::AtomicBool>,
}

impl Actor for LateFirstHop {
    type Context = actix::Context<Self>;
}

impl actix::Handler<ilp_actors::messages::IncomingPrepare> for LateFirstHop {
    type Result = ilp_actors::messages::Reply<PacketResult>;

    fn handle(
        &mut self,
        msg: ilp_actors::messages::IncomingPrepare,
        _: &mut Self::Context,
    ) -> Self::Result {
        let back = self.back.send_prepare(msg.prepare);
        let fulfilled = self.fulfilled.clone();
        ilp_actors::messages::Reply::later(async move {
            if let Ok(Ok(_)) = back.await {
                fulfilled.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Err(ilp::packet::Reject::new(
                ErrorCode::R00_TRANSFER_TIMED_OUT,
                None,
                "too late",
            ))
        })
    }
}

/// The first hop rejects a circular payment after it came back and was fulfilled: the
/// returning account paid us (our Fulfill reached it), and the first hop, which says it was not
/// paid, is not booked as paid.
#[test]
fn a_first_hop_that_rejects_after_the_return_is_not_booked_as_paid() {
    common::run(|| async {
        let config = parse(&format!(
            "{}[accounts.b1]\nrelation = \"peer\"\nlink = {{ type = \"memory\" }}\n{}\
             [accounts.b2]\nrelation = \"peer\"\nlink = {{ type = \"memory\" }}\n{}",
            node_base("a"),
            account_tail("b1"),
            account_tail("b2"),
        ));
        let (b1, far1) = MemoryLink::pair();
        let (b2, far2) = MemoryLink::pair();
        let fulfilled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        far1.attach(
            LateFirstHop {
                back: far2.clone(),
                fulfilled: fulfilled.clone(),
            }
            .start()
            .recipient(),
        );
        let (wallet, _wallet_far) = MemoryLink::pair();
        let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
        links.insert(Arc::from("wallet"), Arc::new(wallet));
        links.insert(Arc::from("b1"), Arc::new(b1));
        links.insert(Arc::from("b2"), Arc::new(b2));
        let node = Node::start(
            &config,
            NodeOptions {
                clock: Clock::system(),
                store: Arc::new(MemoryStore::new()),
                seed: 1,
                links,
                metrics: None,
            },
        )
        .unwrap();
        let report = node
            .router
            .send(ilp_actors::messages::SendCircular {
                via: AccountId::from("b1"),
                amount: 700,
                return_via: None,
                min_return: 0,
                timeout: Duration::from_secs(10),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(fulfilled.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(report.returned, 700);
        assert_eq!(
            report.first_hop_rejected.as_ref().map(|r| r.code()),
            Some(ErrorCode::R00_TRANSFER_TIMED_OUT)
        );
        assert_eq!(common::balance(&node, "b2").await, 700, "b2 paid us");
        assert_eq!(
            common::balance(&node, "b1").await,
            0,
            "b1 says it was not paid"
        );
        drop(far1);
    });
}

fn single_node_config(store: &str) -> Config {
    let base = node_base("a").replace("[store]\nbackend = \"memory\"\n", store);
    parse(&format!(
        "{base}{}[accounts.peer]\nrelation = \"peer\"\nlink = {{ type = \"memory\" }}\n{}",
        admin_listener(),
        account_tail("peer")
    ))
}

/// One node on the memory store with a `peer` account.
async fn memory_node() -> AdminNode {
    AdminNode::start(
        &single_node_config("[store]\nbackend = \"memory\"\n"),
        Arc::new(MemoryStore::new()),
        &["peer"],
    )
    .await
}

fn rocks_store_section(path: &Path) -> String {
    format!(
        "[store]\nbackend = \"rocksdb\"\npath = {:?}\n",
        path.display().to_string()
    )
}

#[test]
fn token_health_and_json_errors() {
    common::run(|| async {
        let a = memory_node().await;
        for token in [None, Some("wrong"), Some("admin-s3cret-but-longer")] {
            let (status, body) = a.call_with(token, Method::GET, "/accounts", None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body, json!({"error": "missing or wrong bearer token"}));
        }
        let (status, _) = a.call_with(None, Method::GET, "/health", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = a.call_with(None, Method::GET, "/ready", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = a.call(Method::GET, "/accounts/nobody", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"error": "no account nobody"}));
        let (status, body) = a.call(Method::GET, "/nothing/here", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
        let (status, body) = a.call(Method::DELETE, "/accounts", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["error"].is_string());
        let (status, body) = a
            .call(
                Method::POST,
                "/accounts/wallet/balance",
                Some(json!({"adjust": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().starts_with("bad JSON body"));
        // The memory store cannot snapshot.
        let (status, body) = a.call(Method::POST, "/snapshot", None).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, json!({"error": "the memory store has no snapshots"}));
        // Metrics come as Prometheus text.
        let url = format!("http://{}/metrics", a.admin.local_addr());
        let auth = format!("Bearer {TOKEN}");
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let request = hyper::Request::get(url)
            .header("authorization", auth)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
    });
}

#[test]
fn ready_waits_for_an_address() {
    common::run(|| async {
        let config = parse(&format!(
            "[broadcast]\nenabled = false\n[store]\nbackend = \"memory\"\n{}\
             [accounts.up]\nrelation = \"parent\"\nlink = {{ type = \"memory\" }}\n{}",
            admin_listener(),
            account_tail("up")
        ));
        let a = AdminNode::start(&config, Arc::new(MemoryStore::new()), &["up"]).await;
        let (status, body) = a.call_with(None, Method::GET, "/ready", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"error": "the node has no ILP address yet"}));
        a.node
            .set_address(ilp::packet::Address::try_from("test.learned").unwrap());
        let (status, _) = a.call_with(None, Method::GET, "/ready", None).await;
        assert_eq!(status, StatusCode::OK);
    });
}

#[test]
fn static_routes_at_run_time() {
    common::run(|| async {
        let a = memory_node().await;
        let reject = a.pay("g.far.x", 10).await.unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F02_UNREACHABLE);

        let (status, body) = a
            .call(
                Method::PUT,
                "/routes/static/g.far",
                Some(json!({"account": "peer"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, routes) = a.call(Method::GET, "/routes", None).await;
        assert!(
            routes
                .as_array()
                .unwrap()
                .contains(&json!({"prefix": "g.far", "account": "peer", "kind": "static"})),
            "{routes}"
        );
        assert!(routes
            .as_array()
            .unwrap()
            .contains(&json!({"prefix": "test.a.wallet", "account": "wallet", "kind": "child"})));
        let paid = a.pay("g.far.x", 10).await.unwrap();
        assert_eq!(paid.fulfillment(), &PREIMAGE);

        let (status, _) = a.call(Method::DELETE, "/routes/static/g.far", None).await;
        assert_eq!(status, StatusCode::OK);
        let reject = a.pay("g.far.x", 10).await.unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F02_UNREACHABLE);

        let (status, body) = a.call(Method::DELETE, "/routes/static/g.far", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"error": "no static route for \"g.far\""}));
        let (status, _) = a
            .call(
                Method::PUT,
                "/routes/static/g..bad",
                Some(json!({"account": "peer"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = a
            .call(
                Method::PUT,
                "/routes/static/g.far",
                Some(json!({"account": "nobody"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": "no account nobody"}));
    });
}

#[test]
fn balance_adjustments_and_snapshots_on_rocksdb_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = single_node_config(&rocks_store_section(&data));
    let snapshot = common::block_on({
        let config = config.clone();
        let data = data.clone();
        async move {
            let store = Arc::new(RocksStore::open(&data).unwrap());
            let a = AdminNode::start(&config, store, &["peer"]).await;
            let (status, body) = a
                .call(
                    Method::POST,
                    "/accounts/wallet/balance",
                    Some(json!({"adjust": 250})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body, json!({"id": "wallet", "balance": 250}));
            let (status, body) = a
                .call(
                    Method::POST,
                    "/accounts/wallet/balance",
                    Some(json!({"adjust": i64::MAX})),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(body["error"].as_str().unwrap().contains("overflow"));
            let (status, _) = a
                .call(
                    Method::POST,
                    "/accounts/nobody/balance",
                    Some(json!({"adjust": 1})),
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (_, account) = a.call(Method::GET, "/accounts/wallet", None).await;
            assert_eq!(account["balance"], 250);

            let (status, body) = a.call(Method::POST, "/snapshot", None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let snapshot = std::path::PathBuf::from(body["path"].as_str().unwrap());
            assert!(snapshot.starts_with(data.join("snapshots")), "{snapshot:?}");
            // Changes after the snapshot stay out of it.
            let (status, _) = a
                .call(
                    Method::POST,
                    "/accounts/wallet/balance",
                    Some(json!({"adjust": -50})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            snapshot
        }
    });
    // The first System is gone with its actors: the store is closed. A new node reloads it.
    common::block_on(async {
        let store = Arc::new(RocksStore::open(&data).unwrap());
        let a = AdminNode::start(&config, store, &["peer"]).await;
        let (_, account) = a.call(Method::GET, "/accounts/wallet", None).await;
        assert_eq!(account["balance"], 200);
    });
    let copy = RocksStore::open(&snapshot).unwrap();
    assert_eq!(copy.load_balances().unwrap().get("wallet"), Some(&250));
}

/// A node `test.a` with the local account `shop` (maximum 1 000 000) and its admin API, which
/// says payers reach the SPSP server at https://pay.example.com/; STREAM credentials for shop.
async fn shop_node() -> (AdminNode, ilp::stream::credentials::Credentials) {
    let config = parse(&format!(
        "{}{}[listeners.spsp]\nbind = \"127.0.0.1:0\"\n\
         [accounts.shop]\nrelation = \"child\"\nlink = {{ type = \"local\" }}\n\
         [accounts.shop.receiver]\nmaximum = 1000000\n",
        node_base("a"),
        admin_listener(),
    ));
    let (node_end, wallet) = MemoryLink::pair();
    let links = BTreeMap::from([(
        AccountId::from("wallet"),
        Arc::new(node_end) as Arc<dyn Link>,
    )]);
    let node = Node::start(
        &config,
        NodeOptions {
            clock: Clock::system(),
            store: Arc::new(MemoryStore::new()),
            seed: 1,
            links,
            metrics: None,
        },
    )
    .unwrap();
    let (listener, _) = common::listener().await;
    let base = url::Url::parse("https://pay.example.com/").unwrap();
    let state = AdminState::new(&node, &config).with_spsp_base(base);
    let admin = AdminServer::serve(listener, state).unwrap();
    let shop = ilp::packet::Address::try_from("test.a.shop").unwrap();
    let credentials = node
        .receivers
        .keys()
        .issue(
            "shop",
            &shop,
            &ilp::stream::credentials::IssueOptions::default(),
            0,
            &[1; 12],
        )
        .unwrap();
    let a = AdminNode {
        node,
        wallet,
        _btp: links_for_config(&config, BtpOptions::default())
            .await
            .unwrap(),
        admin,
        _far: Vec::new(),
    };
    (a, credentials)
}

/// The wallet pays `amount` to shop, STREAM packet `sequence`; it must be fulfilled.
async fn pay_shop(
    a: &AdminNode,
    credentials: &ilp::stream::credentials::Credentials,
    sequence: u64,
    amount: u64,
) {
    let expires = Clock::system().now().checked_add_millis(30_000).unwrap();
    let p = common::stream_payment(
        &credentials.destination,
        &credentials.shared_secret,
        sequence,
        amount,
        expires,
    );
    timeout(BTP_WAIT, a.wallet.send_prepare(p))
        .await
        .unwrap()
        .unwrap()
        .expect("fulfilled");
}

#[test]
fn local_accounts_show_where_they_are_paid_and_their_payments_page_by_page() {
    common::run(|| async {
        let (a, credentials) = shop_node().await;
        for (sequence, amount) in [(1, 100), (2, 20), (3, 3)] {
            pay_shop(&a, &credentials, sequence, amount).await;
        }
        let (status, account) = a.call(Method::GET, "/accounts/shop", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            account["receiver"],
            json!({
                "spsp_url": "https://pay.example.com/shop",
                "payment_pointer": "$pay.example.com/shop",
                "received": "123",
                "maximum": 1000000,
            })
        );
        let (_, wallet) = a.call(Method::GET, "/accounts/wallet", None).await;
        assert!(wallet.get("receiver").is_none());

        let (status, page) = a
            .call(Method::GET, "/accounts/shop/payments?limit=2", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let amounts = |page: &Value| -> Vec<String> {
            page["payments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["amount"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(amounts(&page), ["100", "20"]);
        assert_eq!(page["next"], 2);
        assert_eq!(page["payments"][0]["from_account"], "wallet");
        assert_eq!(page["payments"][1]["streams"], json!([["1", "120"]]));
        let (_, page) = a
            .call(Method::GET, "/accounts/shop/payments?after=2", None)
            .await;
        assert_eq!(amounts(&page), ["3"]);
        assert_eq!(page["next"], 3);
        let (_, page) = a
            .call(Method::GET, "/accounts/shop/payments?after=3", None)
            .await;
        assert_eq!(amounts(&page), Vec::<String>::new());
        assert_eq!(page["next"], 3);
        for bad in ["limit=0", "limit=1001", "after=x", "colour=red"] {
            let (status, body) = a
                .call(Method::GET, &format!("/accounts/shop/payments?{bad}"), None)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        let (status, _) = a.call(Method::GET, "/accounts/wallet/payments", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = a.call(Method::GET, "/accounts/nobody/payments", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}

/// A Server-Sent Events stream read in the background: its events' ids and data, as they come.
struct EventStream {
    events: tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    _reader: tokio::task::JoinHandle<()>,
}

impl EventStream {
    async fn open(
        a: &AdminNode,
        path: &str,
        last_event_id: Option<&str>,
    ) -> (StatusCode, EventStream) {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let mut request = hyper::Request::get(format!("http://{}{path}", a.admin.local_addr()))
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = timeout(
            BTP_WAIT,
            client.request(
                request
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        let status = response.status();
        if status == StatusCode::OK {
            assert_eq!(response.headers()["content-type"], "text/event-stream");
        }
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut body = response.into_body();
        let reader = tokio::spawn(async move {
            use http_body_util::BodyExt;
            let mut text = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                text.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block
                            .lines()
                            .find_map(|l| l.strip_prefix(name).map(str::to_owned))
                    };
                    if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                        let _ = tx.send((id, serde_json::from_str(&data).unwrap()));
                    }
                }
            }
        });
        (
            status,
            EventStream {
                events,
                _reader: reader,
            },
        )
    }

    /// The next `n` events' ids (bounded wait).
    async fn ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let (id, _) = timeout(BTP_WAIT, self.events.recv())
                .await
                .expect("an event in time")
                .expect("the stream is open");
            ids.push(id);
        }
        ids
    }
}

#[test]
fn payment_events_stream_live_and_resume_after_the_last_id() {
    common::run(|| async {
        let (a, credentials) = shop_node().await;
        pay_shop(&a, &credentials, 1, 10).await;
        // The log first, then live events as they become durable.
        let (status, mut shop) =
            EventStream::open(&a, "/accounts/shop/payments/events", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, mut all) = EventStream::open(&a, "/payments/events", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shop.ids(1).await, ["shop:1"]);
        pay_shop(&a, &credentials, 2, 20).await;
        pay_shop(&a, &credentials, 3, 30).await;
        assert_eq!(shop.ids(2).await, ["shop:2", "shop:3"]);
        // Every account's stream starts from now.
        assert_eq!(all.ids(2).await, ["shop:2", "shop:3"]);
        let (_, data) = timeout(BTP_WAIT, async {
            pay_shop(&a, &credentials, 4, 40).await;
            shop.events.recv().await.unwrap()
        })
        .await
        .unwrap();
        assert_eq!(data["amount"], "40");
        assert_eq!(data["streams"], json!([["1", "100"]]));

        // A client that saw shop:2 reconnects: 3 and 4 come again, from the log.
        let (status, mut again) =
            EventStream::open(&a, "/accounts/shop/payments/events", Some("shop:2")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again.ids(2).await, ["shop:3", "shop:4"]);
        let (status, mut after) =
            EventStream::open(&a, "/accounts/shop/payments/events?after=3", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(after.ids(1).await, ["shop:4"]);

        let (status, _) =
            EventStream::open(&a, "/accounts/shop/payments/events", Some("cafe:2")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = EventStream::open(&a, "/accounts/wallet/payments/events", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}
