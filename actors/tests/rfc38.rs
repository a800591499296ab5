//! RFC 38 settlement engines, the connector side, against a scripted engine in this test:
//! two nodes `test.a` and `test.b` peered over a memory link, each account of the pair settled
//! through its own engine, each node serving the settlement API on a port of its own.
//!
//! - Paying: the settlement is booked (the balance moves) before the engine is asked, and is
//!   asked again with the very same key and quantity until the engine acknowledges it.
//! - Being paid: credits are booked once per key (a repeat gets the same answer, the same key
//!   with another quantity 409), converted to the account's scale with the leftover kept.
//! - Messages cross from one engine to the other as `peer.settle` packets, answered with the
//!   other engine's reply, byte for byte as interledger-rs answers them.
//! - An engine that is down: settlements wait, packets flow to the credit limit, T04 beyond.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use bytes::Bytes;
use common::{eventually, http_request, payment, run, start_wallet_node};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use ilp::config::{Config, ConfigChanges};
use ilp::packet::{ErrorCode, Fulfill, Prepare, Timestamp};
use ilp::peer_protocol::PEER_PROTOCOL_CONDITION;
use ilp_actors::clock::Clock;
use ilp_actors::http_serve::{self, ServeOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::AccountId;
use ilp_actors::node::Node;
use ilp_actors::settlement_api::SettlementApi;
use ilp_actors::settlement_engine::{GetSettlementStats, SettlementStats};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// One request the scripted engine got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    key: Option<String>,
    body: Bytes,
}

/// How the scripted engine answers.
#[derive(Debug, Clone)]
struct Script {
    /// Answer everything 503.
    down: bool,
    /// Settlements answered 500 before one is acknowledged.
    fail_settlements: usize,
    /// The status and body a message gets.
    message_reply: (u16, &'static [u8]),
}

impl Default for Script {
    fn default() -> Self {
        Script {
            down: false,
            fail_settlements: 0,
            message_reply: (201, b"pong"),
        }
    }
}

#[derive(Clone, Default)]
struct Engine {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Script>>,
}

impl Engine {
    async fn start() -> (Engine, SocketAddr, tokio::task::JoinHandle<()>) {
        let engine = Engine::default();
        let (listener, addr) = common::listener().await;
        let options = ServeOptions {
            h2: false,
            header_timeout: Duration::from_secs(5),
            tls: None,
            max_connections: 64,
        };
        let e = engine.clone();
        let task = http_serve::serve(listener, &options, move |request, _| {
            let e = e.clone();
            async move { Ok::<_, std::convert::Infallible>(e.answer(request).await) }
        });
        (engine, addr, task)
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt;
        let path = request.uri().path().to_owned();
        let key = request
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = request.into_body().collect().await.unwrap().to_bytes();
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            key,
            body,
        });
        let mut script = self.script.lock().unwrap();
        let (status, body): (u16, &[u8]) = if script.down {
            (503, b"down")
        } else if path.ends_with("/settlements") {
            if script.fail_settlements > 0 {
                script.fail_settlements -= 1;
                (500, b"try later")
            } else {
                (201, b"")
            }
        } else if path.ends_with("/messages") {
            script.message_reply
        } else {
            (201, b"CREATED")
        };
        let mut r = Response::new(Full::new(Bytes::from_static(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().unwrap());
    }
}

/// Node `test.<name>` with peer account `<peer>` settled through the engine at `engine`:
/// scale 9, settle below -1000 up to 0, credit limit 5000 each way.
fn config(name: &str, peer: &str, engine: SocketAddr, token: Option<&str>) -> Config {
    let token = token.map_or(String::new(), |t| format!("token = \"{t}\"\n"));
    let text = format!(
        "{base}\
         [listeners.settlement]\nbind = \"127.0.0.1:0\"\n{token}\
         [routing]\ndefault_route = \"\"\n\
         static_routes = [{{ prefix = \"test.{peer}\", account = \"{peer}\" }}]\n\
         [accounts.{peer}]\nrelation = \"peer\"\nlink = {{ type = \"memory\" }}\n\
         settlement_engine_url = \"http://{engine}/\"\n\
         [accounts.{peer}.balance]\nminimum = -5000\nmaximum = 5000\n\
         settle_threshold = -1000\nsettle_to = 0\n\
         [accounts.{peer}.rate_limit]\nenabled = false\n",
        base = common::node_base(name)
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config:\n{e}\n{text}"))
}

struct Side {
    node: Node,
    wallet: MemoryLink,
    engine: Engine,
    api: SettlementApi,
    /// The configuration the node started with.
    config: Config,
    _engine_task: tokio::task::JoinHandle<()>,
}

impl Side {
    fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api.local_addr())
    }

    async fn stats(&self, account: &str) -> SettlementStats {
        let all = self.node.settlement.send(GetSettlementStats).await.unwrap();
        all.get(account).cloned().unwrap_or_default()
    }

    async fn balance(&self, account: &str) -> i64 {
        common::balance(&self.node, account).await
    }

    /// Pays `amount` from this node's wallet to the other node's wallet.
    async fn pay(&self, to: &str, amount: u64, seed: u8) -> Result<Fulfill, ErrorCode> {
        let p = payment(&format!("test.{to}.wallet"), amount, 20_000, seed);
        match self.wallet.send_prepare(p).await.unwrap() {
            Ok(f) => Ok(f),
            Err(r) => Err(r.code()),
        }
    }
}

/// Nodes `a` and `b` peered over a memory link, each with its scripted engine.
async fn pair(token: Option<&str>) -> (Side, Side) {
    let (a_end, b_end) = MemoryLink::pair();
    let a_end: Arc<dyn Link> = Arc::new(a_end);
    let b_end: Arc<dyn Link> = Arc::new(b_end);
    let a = side("a", "b", a_end, token).await;
    let b = side("b", "a", b_end, token).await;
    (a, b)
}

async fn side(name: &str, peer: &str, link: Arc<dyn Link>, token: Option<&str>) -> Side {
    let (engine, engine_addr, engine_task) = Engine::start().await;
    let config = config(name, peer, engine_addr, token);
    let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
    links.insert(AccountId::from(peer), link);
    let (node, wallet, _) = start_wallet_node(&config, links, Clock::system());
    let listener = config.settlement_listener().unwrap();
    let socket = tokio::net::TcpListener::bind(listener.bind).await.unwrap();
    let api = SettlementApi::serve(socket, &listener, node.settlement.clone()).unwrap();
    Side {
        node,
        wallet,
        engine,
        api,
        config,
        _engine_task: engine_task,
    }
}

/// POSTs `body` to the settlement API at `url`, as JSON (a settlement) or bytes (a message).
async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, String) {
    let content_type = if url.ends_with("/messages") {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let (status, _, body) = common::http_request_as(
        false,
        Method::POST,
        url,
        content_type,
        headers,
        Bytes::from(body.to_owned()),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn outgoing_settlement_is_booked_first_and_retried_with_the_same_key() {
    run(|| async {
        let (a, b) = pair(None).await;
        a.engine.script(|s| s.fail_settlements = 3);
        for seed in 0..3 {
            a.pay("b", 500, seed).await.unwrap();
        }
        // -1500 crossed -1000: 1500 is booked at once, though the engine refuses it for now.
        let url = "/accounts/b/settlements";
        eventually(WAIT, "the engine is asked", || {
            !a.engine.seen(url).is_empty()
        })
        .await;
        assert_eq!(a.balance("b").await, 0);
        assert_eq!(b.balance("a").await, 1500);
        eventually(WAIT, "the engine acknowledges", || {
            a.engine.seen(url).len() >= 4
        })
        .await;
        let asked = a.engine.seen(url);
        assert_eq!(
            asked.len(),
            4,
            "asked again after the acknowledgement: {asked:?}"
        );
        let key = asked[0].key.clone().expect("an Idempotency-Key");
        assert_eq!(key.len(), 36, "a UUID: {key}");
        assert_eq!(key.as_bytes()[14], b'4', "version 4: {key}");
        for seen in &asked {
            assert_eq!(seen.key.as_deref(), Some(key.as_str()));
            let q: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
            assert_eq!(q, serde_json::json!({"amount": "1500", "scale": 9}));
        }
        // The engine was told about the account first.
        let created = a.engine.seen("/accounts");
        assert!(!created.is_empty());
        let id: serde_json::Value = serde_json::from_slice(&created[0].body).unwrap();
        assert_eq!(id, serde_json::json!({"id": "b"}));
        let stats = settled(&a, "b").await;
        assert_eq!((stats.settled_out, stats.pending), (1500, 0));
        assert!(stats.last_error.unwrap().contains("500"));
        // Once: the balance moved by 1500 and no more.
        assert_eq!(a.balance("b").await, 0);
    });
}

#[test]
fn credits_are_booked_once_per_key_with_scales_converted_and_leftovers_kept() {
    run(|| async {
        let (_a, b) = pair(None).await;
        let url = b.api_url("/accounts/a/settlements");
        let credit = |key: &'static str, amount: &'static str, scale: u8| {
            let url = url.clone();
            async move {
                let body = format!("{{\"amount\":\"{amount}\",\"scale\":{scale}}}");
                post(&url, &[("idempotency-key", key)], &body).await
            }
        };
        // 905 at scale 11 is 9 units at scale 9, and 5 left over.
        assert_eq!(
            credit("k1", "905", 11).await,
            (StatusCode::CREATED, "RECEIVED".into())
        );
        assert_eq!(b.balance("a").await, -9);
        // The same again: the same answer, booked once.
        assert_eq!(
            credit("k1", "905", 11).await,
            (StatusCode::CREATED, "RECEIVED".into())
        );
        assert_eq!(b.balance("a").await, -9);
        // The same key for another quantity.
        let (status, body) = credit("k1", "906", 11).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("\"status\":409"), "problem JSON: {body}");
        // The leftover 5 and 95 more make one unit.
        assert_eq!(credit("k2", "95", 11).await.0, StatusCode::CREATED);
        assert_eq!(b.balance("a").await, -10);
        // A coarser scale is multiplied up.
        assert_eq!(credit("k3", "1", 8).await.0, StatusCode::CREATED);
        assert_eq!(b.balance("a").await, -20);
        // All leftover: booked as nothing now, counted with the next.
        assert_eq!(credit("k4", "7", 12).await.0, StatusCode::CREATED);
        assert_eq!(b.balance("a").await, -20);
        assert_eq!(credit("k5", "993", 12).await.0, StatusCode::CREATED);
        assert_eq!(b.balance("a").await, -21);
        assert_eq!(b.stats("a").await.settled_in, 21);

        // Bad requests, none booked.
        let unknown = b.api_url("/accounts/nobody/settlements");
        let q = r#"{"amount":"5","scale":9}"#;
        assert_eq!(
            post(&unknown, &[("idempotency-key", "u")], q).await.0,
            StatusCode::NOT_FOUND
        );
        // The wallet keeps a balance but settles through no engine.
        let wallet = b.api_url("/accounts/wallet/settlements");
        assert_eq!(
            post(&wallet, &[("idempotency-key", "w")], q).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(post(&url, &[], q).await.0, StatusCode::BAD_REQUEST);
        for bad in [
            r#"{"amount":"-5","scale":9}"#,
            r#"{"amount":"5"}"#,
            r#"{"amount":5,"scale":9}"#,
            r#"{"amount":"5","scale":256}"#,
            "not json",
            r#"{"amount":"99999999999999999999","scale":9}"#,
        ] {
            let (status, body) = post(&url, &[("idempotency-key", "bad")], bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        let (status, _, _) = http_request(false, Method::GET, &url, &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = http_request(
            false,
            Method::POST,
            &b.api_url("/accounts/a/other"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // HTTP/2 with prior knowledge is served too.
        let (status, version, _) = common::http_request_as(
            true,
            Method::POST,
            &url,
            "application/json",
            &[("idempotency-key", "k1")],
            Bytes::from_static(b"{\"amount\":\"905\",\"scale\":11}"),
        )
        .await;
        assert_eq!(
            (status, version),
            (StatusCode::CREATED, hyper::Version::HTTP_2)
        );
        assert_eq!(b.balance("a").await, -21);
    });
}

#[test]
fn a_reload_leaves_a_booked_settlement_with_the_engine_it_was_booked_for() {
    run_long(|| async {
        let (mut a, _b) = pair(None).await;
        a.engine.script(|s| s.fail_settlements = usize::MAX);
        for seed in 0..3 {
            a.pay("b", 500, seed).await.unwrap();
        }
        let url = "/accounts/b/settlements";
        eventually(WAIT, "the first engine is asked", || {
            !a.engine.seen(url).is_empty()
        })
        .await;
        let key = a.engine.seen(url)[0].key.clone();

        // The account moves to another engine while its settlement is unacknowledged.
        let (other, other_addr, _task) = Engine::start().await;
        let v2 = config("a", "b", other_addr, None);
        let changes = ConfigChanges::between(&a.config, &v2);
        assert!(changes.updated.contains("b"), "{changes:?}");
        a.node.reload(&v2, &changes, BTreeMap::new()).await.unwrap();
        eventually(WAIT, "the new engine is told about the account", || {
            !other.seen("/accounts").is_empty()
        })
        .await;
        // The first engine takes it at last: the settlement is done, and it was never asked
        // of the new one (which may not know what the first paid).
        a.engine.script(|s| s.fail_settlements = 0);
        let stats = loop {
            let stats = settled(&a, "b").await;
            if stats.settled_out == 1500 {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(stats.pending, 0);
        assert!(a.engine.seen(url).iter().all(|s| s.key == key));
        assert!(other.seen(url).iter().all(|s| s.key != key));
        // The next shortfall goes to the new engine.
        for seed in 3..6 {
            a.pay("b", 500, seed).await.unwrap();
        }
        eventually(WAIT, "the new engine is asked", || {
            !other.seen(url).is_empty()
        })
        .await;
        let stats = loop {
            let stats = settled(&a, "b").await;
            if stats.settled_out == 3000 {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(stats.pending, 0);
        assert_eq!(a.balance("b").await, 0);

        // Without an engine the account settles no more: its threshold does nothing.
        let v3 = Config::from_toml_str(&toml::to_string(&v2).unwrap().replace(
            &format!("settlement_engine_url = \"http://{other_addr}/\"\n"),
            "",
        ))
        .unwrap();
        assert!(!v3.accounts["b"].settles_with_engine());
        let changes = ConfigChanges::between(&v2, &v3);
        a.node.reload(&v3, &changes, BTreeMap::new()).await.unwrap();
        let asked = other.seen(url).len();
        for seed in 6..9 {
            a.pay("b", 500, seed).await.unwrap();
        }
        assert_eq!(a.balance("b").await, -1500);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(other.seen(url).len(), asked);
        assert_eq!(a.balance("b").await, -1500);
    });
}

#[test]
fn a_restarted_settlement_actor_finishes_what_it_was_doing() {
    run_long(|| async {
        let (a, b) = pair(None).await;
        a.engine.script(|s| s.down = true);
        for seed in 0..3 {
            a.pay("b", 500, seed).await.unwrap();
        }
        eventually(WAIT, "the engine is called", || {
            !a.engine.seen("/accounts").is_empty()
        })
        .await;
        credit(&b, "chain-1", 1500).await;
        // A second shortfall is reported while the first settlement waits for the engine.
        for seed in 3..6 {
            a.pay("b", 500, seed).await.unwrap();
        }
        assert_eq!(a.balance("b").await, -1500);
        // The actor fails and its supervisor restarts it: its tasks die with it.
        a.node
            .settlement
            .send(ilp_actors::messages::Crash)
            .await
            .unwrap();
        a.engine.script(|s| s.down = false);
        // The first settlement is sent again with its key, the second follows.
        let stats = loop {
            let stats = settled(&a, "b").await;
            if stats.settled_out == 3000 {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(stats.pending, 0);
        assert_eq!(a.balance("b").await, 0);
        let keys: std::collections::BTreeSet<Option<String>> = a
            .engine
            .seen("/accounts/b/settlements")
            .into_iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
    });
}

#[test]
fn concurrent_repeats_of_one_credit_book_it_once() {
    run(|| async {
        let (_a, b) = pair(None).await;
        let url = b.api_url("/accounts/a/settlements");
        let q = r#"{"amount":"40","scale":9}"#;
        let tries: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { post(&url, &[("idempotency-key", "same")], q).await })
            })
            .collect();
        for t in tries {
            assert_eq!(t.await.unwrap(), (StatusCode::CREATED, "RECEIVED".into()));
        }
        assert_eq!(b.balance("a").await, -40);
        assert_eq!(b.stats("a").await.settled_in, 40);
    });
}

#[test]
fn the_settlement_api_refuses_what_a_web_page_could_send() {
    run(|| async {
        let (_a, b) = pair(None).await;
        let url = b.api_url("/accounts/a/settlements");
        let q = r#"{"amount":"5","scale":9}"#;
        // A page may POST text/plain or a form without asking first; not JSON.
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let (status, _, _) = common::http_request_as(
                false,
                Method::POST,
                &url,
                content_type,
                &[("idempotency-key", "p")],
                Bytes::from_static(q.as_bytes()),
            )
            .await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        }
        // Browsers send an Origin with every POST, same-site (DNS rebinding) or not.
        let (status, _) = post(
            &url,
            &[("idempotency-key", "p"), ("origin", "http://evil.example")],
            q,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = post(
            &b.api_url("/accounts/a/messages"),
            &[("origin", "http://127.0.0.1:7771")],
            "x",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(b.balance("a").await, 0);
        assert_eq!(
            post(&url, &[("idempotency-key", "p")], q).await.0,
            StatusCode::CREATED
        );
        assert_eq!(b.balance("a").await, -5);
    });
}

#[test]
fn the_settlement_api_wants_its_token() {
    run(|| async {
        let (_a, b) = pair(Some("s3cret")).await;
        let url = b.api_url("/accounts/a/settlements");
        let q = r#"{"amount":"5","scale":9}"#;
        let (status, _) = post(&url, &[("idempotency-key", "t")], q).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = post(
            &url,
            &[("idempotency-key", "t"), ("authorization", "Bearer wrong")],
            q,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(b.balance("a").await, 0);
        let (status, _) = post(
            &url,
            &[("idempotency-key", "t"), ("authorization", "Bearer s3cret")],
            q,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(b.balance("a").await, -5);
    });
}

#[test]
fn messages_cross_to_the_peer_engine_and_its_reply_comes_back() {
    run(|| async {
        let (a, b) = pair(None).await;
        let url = a.api_url("/accounts/b/messages");
        let (status, body) = post(&url, &[], "ping").await;
        assert_eq!((status, body.as_str()), (StatusCode::CREATED, "pong"));
        let got = b.engine.seen("/accounts/a/messages");
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].body[..], b"ping");

        // The other engine fails: T00 for a 5xx, F00 for a 4xx, reported as 502.
        b.engine.script(|s| s.message_reply = (500, b"boom"));
        let (status, body) = post(&url, &[], "ping").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.contains("T00"), "{body}");
        b.engine.script(|s| s.message_reply = (400, b"what?"));
        let (status, body) = post(&url, &[], "ping").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.contains("F00"), "{body}");
        // No engine account by that name.
        let (status, _) = post(&a.api_url("/accounts/wallet/messages"), &[], "x").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Longer than an ILP packet can carry.
        let long = "x".repeat(40_000);
        let (status, _) = post(&url, &[], &long).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    });
}

/// A `peer.settle` Prepare as interledger-rs sends one.
fn settle_prepare(amount: u64, data: &[u8]) -> Prepare {
    let expires = Timestamp::from_unix_millis(Clock::system().now_ms() + 30_000);
    ilp::packet::PrepareBuilder {
        amount,
        expires_at: expires,
        execution_condition: &PEER_PROTOCOL_CONDITION,
        destination: &ilp::packet::Address::try_from("peer.settle").unwrap(),
        data,
    }
    .build()
    .unwrap()
}

#[test]
fn an_incoming_peer_settle_is_answered_with_the_engine_reply_byte_for_byte() {
    run(|| async {
        // Node b alone; its peer account's far end is this test.
        let (engine, engine_addr, _task) = Engine::start().await;
        let config = config("b", "a", engine_addr, None);
        let (ours, theirs) = MemoryLink::pair();
        let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
        links.insert(AccountId::from("a"), Arc::new(ours));
        let (_node, _wallet, _) = start_wallet_node(&config, links, Clock::system());

        let fulfill = theirs
            .send_prepare(settle_prepare(0, b"ping"))
            .await
            .unwrap()
            .unwrap();
        // Type 13, length 37, 32 zero bytes of fulfillment, data "pong".
        let mut expected = vec![13u8, 37];
        expected.extend_from_slice(&[0; 32]);
        expected.push(4);
        expected.extend_from_slice(b"pong");
        assert_eq!(fulfill.as_bytes(), &expected[..]);
        assert_eq!(&engine.seen("/accounts/a/messages")[0].body[..], b"ping");

        // The engine fails: T00 (5xx), F00 (4xx), triggered by peer.settle, its body as data.
        engine.script(|s| s.message_reply = (503, b"later"));
        let reject = theirs
            .send_prepare(settle_prepare(0, b"ping"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::T00_INTERNAL_ERROR);
        assert_eq!(
            reject.triggered_by().map(|a| a.to_string()),
            Some("peer.settle".into())
        );
        assert_eq!(reject.data(), b"later");
        engine.script(|s| s.message_reply = (422, b"bad message"));
        let reject = theirs
            .send_prepare(settle_prepare(0, b"ping"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F00_BAD_REQUEST);
        assert_eq!(reject.data(), b"bad message");

        // Money sent to peer.settle would be booked by nobody: refused before the engine.
        let before = engine.seen("/accounts/a/messages").len();
        let reject = theirs
            .send_prepare(settle_prepare(5, b"ping"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F01_INVALID_PACKET);
        assert_eq!(engine.seen("/accounts/a/messages").len(), before);
    });
}

#[test]
fn an_engine_that_is_down_holds_settlements_while_packets_flow_to_the_limit() {
    run_long(|| async {
        let (a, b) = pair(None).await;
        a.engine.script(|s| s.down = true);
        // 1500 crosses the threshold: booked (balance back to 0), its engine call waits.
        for seed in 0..3 {
            a.pay("b", 500, seed).await.unwrap();
        }
        let url = "/accounts/b/settlements";
        // Told about the account first (and refused), then asked to settle.
        eventually(WAIT, "the engine is called", || {
            !a.engine.seen("/accounts").is_empty()
        })
        .await;
        assert_eq!(a.balance("b").await, 0);
        // What b's engine would credit once it sees the money (a's engine will pay it later).
        credit(&b, "chain-1", 1500).await;
        // Further payments go on to the credit limit (-5000), and no further settlement is
        // booked while the first is unacknowledged.
        for seed in 3..13 {
            a.pay("b", 500, seed).await.unwrap();
        }
        assert_eq!(a.balance("b").await, -5000);
        assert_eq!(
            a.pay("b", 1, 13).await.unwrap_err(),
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY
        );
        let stats = a.stats("b").await;
        assert_eq!((stats.pending, stats.settled_out), (1500, 0));
        assert!(stats.last_error.is_some());
        // The engine comes back: the first settlement is acknowledged, then the shortfall of
        // the moment (5000) is settled, and packets flow again.
        a.engine.script(|s| s.down = false);
        let stats = loop {
            let stats = settled(&a, "b").await;
            if stats.settled_out == 6500 {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!((stats.settled_out, stats.pending), (6500, 0));
        assert_eq!(a.balance("b").await, 0);
        let keys: std::collections::BTreeSet<Option<String>> =
            a.engine.seen(url).into_iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), 2, "one key per settlement: {keys:?}");
        credit(&b, "chain-2", 5000).await;
        a.pay("b", 500, 14).await.unwrap();
        assert_eq!(a.balance("b").await, -500);
        assert_eq!(b.balance("a").await, 500);
    });
}

/// The stats of `side`'s engine account `account` once nothing is pending (the caller's bound
/// applies).
async fn settled(side: &Side, account: &str) -> SettlementStats {
    loop {
        let stats = side.stats(account).await;
        if stats.pending == 0 {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `test` like [`run`], with a minute for it: an engine that was down is asked again after
/// pauses of up to several seconds.
fn run_long<F: std::future::Future<Output = ()> + 'static>(test: impl FnOnce() -> F) {
    common::block_on(async move {
        tokio::time::timeout(Duration::from_secs(60), test())
            .await
            .expect("test did not finish in time");
    });
}

/// Credits `amount` (scale 9) to b's account `a` through b's settlement API.
async fn credit(b: &Side, key: &str, amount: u64) {
    let body = format!("{{\"amount\":\"{amount}\",\"scale\":9}}");
    let url = b.api_url("/accounts/a/settlements");
    let (status, text) = post(&url, &[("idempotency-key", key)], &body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

/// The binary with a peer account `b` (its link never connects) settled through the engine at
/// `engine`, and a RocksDB store in `data`.
fn binary_config(engine: SocketAddr, data: &std::path::Path) -> String {
    format!(
        "[node]\nilp_address = \"test.a\"\n[broadcast]\nenabled = false\n\
         [listeners.btp]\nbind = \"127.0.0.1:0\"\n[listeners.admin]\nbind = \"127.0.0.1:0\"\n\
         [listeners.settlement]\nbind = \"127.0.0.1:0\"\n\
         [store]\nbackend = \"rocksdb\"\npath = \"{}\"\n\
         [accounts.b]\nrelation = \"peer\"\nsettlement_engine_url = \"http://{engine}\"\n\
         [accounts.b.link]\ntype = \"btp-client\"\nurl = \"ws://127.0.0.1:9/\"\n\
         auth_username = \"a\"\nauth_token = \"t\"\n\
         [accounts.b.balance]\nminimum = -5000\nmaximum = 5000\nsettle_threshold = -1000\n\
         settle_to = 0\n",
        data.display()
    )
}

async fn admin_json(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = http_request(
        false,
        method,
        &format!("http://{admin}{path}"),
        &[],
        Bytes::from(body.to_owned()),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[test]
fn a_node_killed_before_its_engine_acknowledged_asks_again_with_the_same_key() {
    run_long(|| async {
        use common::connector::Connector;
        let (engine, engine_addr, _task) = Engine::start().await;
        engine.script(|s| s.fail_settlements = usize::MAX);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("a.toml");
        let log = dir.path().join("a.log");
        std::fs::write(
            &config,
            binary_config(engine_addr, &dir.path().join("data")),
        )
        .unwrap();
        let start = || {
            let (config, log) = (config.clone(), log.clone());
            tokio::task::spawn_blocking(move || Connector::start(&config, &log))
        };
        let node = start().await.unwrap();
        let admin = node.admin.unwrap();
        // The operator settles 700 now: booked, and asked of the engine, which refuses.
        let (status, body) = admin_json(
            admin,
            Method::POST,
            "/accounts/b/settlement",
            r#"{"amount":"700"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // Started now, or queued behind the node's own check of the balance at start.
        let started = serde_json::json!({"status": "started", "amount": 700});
        let queued = serde_json::json!({"status": "queued"});
        assert!(
            body["settlement"] == started || body["settlement"] == queued,
            "{body}"
        );
        let url = "/accounts/b/settlements";
        eventually(WAIT, "the engine is asked", || !engine.seen(url).is_empty()).await;
        let key = engine.seen(url)[0].key.clone().unwrap();
        let (_, view) = admin_json(admin, Method::GET, "/accounts/b/settlement", "").await;
        assert_eq!(view["kind"], "engine");
        assert_eq!(view["pending"], "700");
        assert!(
            view["last_error"].as_str().unwrap().contains("500"),
            "{view}"
        );
        let (_, account) = admin_json(admin, Method::GET, "/accounts/b", "").await;
        assert_eq!(account["balance"], 700);

        tokio::task::spawn_blocking(move || node.kill_9())
            .await
            .unwrap();
        let asked_before = engine.seen(url).len();
        engine.script(|s| s.fail_settlements = 0);
        let node = start().await.unwrap();
        let admin = node.admin.unwrap();
        eventually(WAIT, "asked again after the restart", || {
            engine.seen(url).len() > asked_before
        })
        .await;
        for seen in engine.seen(url) {
            assert_eq!(seen.key.as_deref(), Some(key.as_str()), "the same key");
            assert_eq!(&seen.body[..], br#"{"amount":"700","scale":9}"#);
        }
        let mut view;
        loop {
            view = admin_json(admin, Method::GET, "/accounts/b/settlement", "")
                .await
                .1;
            if view["pending"] == "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (&view["settled_out"], &view["pending"]),
            (&"700".into(), &"0".into())
        );
        // Booked once: the balance moved by 700 and no more.
        let (_, account) = admin_json(admin, Method::GET, "/accounts/b", "").await;
        assert_eq!(account["balance"], 700);
        // Nothing is due now, and zero is no amount.
        let (status, _) = admin_json(admin, Method::POST, "/accounts/b/settlement", "").await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = admin_json(
            admin,
            Method::POST,
            "/accounts/b/settlement",
            r#"{"amount":"0"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let metrics = http_request(
            false,
            Method::GET,
            &format!("http://{admin}/metrics"),
            &[],
            Bytes::new(),
        )
        .await
        .2;
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(
            metrics.contains("ilp_settlement_settled_out{account=\"b\"} 700"),
            "{metrics}"
        );
        tokio::task::spawn_blocking(move || node.terminate())
            .await
            .unwrap();
    });
}
