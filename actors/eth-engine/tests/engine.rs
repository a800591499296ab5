//! The engine binary against a local ganache chain and a scripted connector in this test: the
//! RFC 38 API it serves (idempotent settlements, 409 for a reused key, scale conversion with
//! leftovers, unknown accounts), the address exchange, payments on chain exactly once across a
//! `kill -9`, and incoming transfers credited once per transaction, after their confirmations,
//! with retries, also when they came from an address learned later.

#![allow(clippy::unwrap_used)] // test harness: a failed spawn or bind is a test bug

#[path = "../../tests/common/process.rs"]
mod process;

#[path = "../../tests/common/chain.rs"]
#[allow(dead_code)]
mod chain;

use bytes::Bytes;
use chain::{rpc, transfers, EthEngine, Ganache, KEYS};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ilp_actors::http_serve::{self, ServeOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Ganache's deterministic accounts 1 and 2.
const PEER: &str = "0xffcf8fdee72ac11b5c542428b35eef5769c409f0";
const STRANGER: &str = "0x22d491bde2303f2f43325b2108d26f1eaba1e32b";

/// One request the scripted connector got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    key: Option<String>,
    body: serde_json::Value,
}

/// The connector side: takes credits (refusing the first `refuse` of them) and answers
/// address messages with the address its script names per account.
#[derive(Clone, Default)]
struct Connector {
    seen: Arc<Mutex<Vec<Seen>>>,
    refuse: Arc<Mutex<usize>>,
    peers: Arc<Mutex<Vec<(String, String)>>>,
}

impl Connector {
    async fn start() -> (Connector, SocketAddr) {
        let connector = Connector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = ServeOptions {
            h2: false,
            header_timeout: Duration::from_secs(5),
            tls: None,
            max_connections: 16,
        };
        let c = connector.clone();
        // Served until the test's runtime ends.
        drop(http_serve::serve(listener, &options, move |request, _| {
            let c = c.clone();
            async move { Ok::<_, std::convert::Infallible>(c.answer(request).await) }
        }));
        (connector, addr)
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let key = request
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_default();
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            key,
            body,
        });
        let (status, reply) = if path.ends_with("/settlements") {
            let mut refuse = self.refuse.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                (500, String::new())
            } else {
                (201, "RECEIVED".to_owned())
            }
        } else {
            let peers = self.peers.lock().unwrap();
            match peers
                .iter()
                .find(|(account, _)| path == format!("/accounts/{account}/messages"))
            {
                Some((_, address)) => (
                    201,
                    serde_json::json!({"type": "address", "address": address}).to_string(),
                ),
                None => (502, "peer unreachable".to_owned()),
            }
        };
        let mut r = Response::new(Full::new(Bytes::from(reply)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    }

    fn credits(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.ends_with("/settlements"))
            .cloned()
            .collect()
    }
}

fn write_config(
    dir: &Path,
    chain: &str,
    connector: SocketAddr,
    confirmations: u64,
) -> std::path::PathBuf {
    let path = dir.join("engine.toml");
    std::fs::write(
        &path,
        format!(
            "[engine]\nbind = \"127.0.0.1:0\"\nconnector_url = \"http://{connector}\"\n\
             [ethereum]\nrpc_url = \"{chain}\"\nprivate_key = \"{}\"\nchain_id = 1337\n\
             confirmations = {confirmations}\npoll_interval_ms = 100\n\
             [store]\npath = \"{}\"\n",
            KEYS[0],
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

async fn call(
    engine: &EthEngine,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", engine.api));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `POST /accounts/peer/settlements` with `key` and `body`.
async fn settle(engine: &EthEngine, key: Option<&str>, body: &str) -> (StatusCode, String) {
    call(
        engine,
        Method::POST,
        "/accounts/peer/settlements",
        key,
        body,
    )
    .await
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ganache's unlocked account `from` sends `wei` to `to`; returns the transaction hash.
async fn send(chain: &str, from: &str, to: &str, wei: u128) -> String {
    let tx = serde_json::json!([{
        "from": from, "to": to, "value": format!("0x{wei:x}"), "gasPrice": "0x77359400"
    }]);
    rpc(chain, "eth_sendTransaction", tx)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_engine_api_pays_once_per_key_with_leftovers_kept_across_a_kill() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let chain = Ganache::start(&dir.path().join("ganache.log"));
        let chain_url = chain.url();
        let (connector, connector_addr) = Connector::start().await;
        let config = write_config(dir.path(), &chain_url, connector_addr, 1);
        let log = dir.path().join("engine.log");
        let engine = EthEngine::start(&config, &log);
        assert_eq!(engine.address, "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1");

        // Unknown account, missing key, bad quantities.
        let q = r#"{"amount":"1500","scale":9}"#;
        let (status, _) = settle(&engine, Some("k1"), q).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) =
            call(&engine, Method::POST, "/accounts", None, r#"{"id":"peer"}"#).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::CREATED, r#"{"id":"peer"}"#)
        );
        let (status, _) = call(&engine, Method::POST, "/accounts", None, r#"{"id":"peer"}"#).await;
        assert_eq!(status, StatusCode::CREATED, "creating again is fine");
        let (status, _) = settle(&engine, None, q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for bad in [r#"{"amount":"1.5","scale":9}"#, r#"{"amount":"1"}"#, "x"] {
            let (status, _) = settle(&engine, Some("bad"), bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let (status, _) = call(&engine, Method::GET, "/accounts/peer/settlements", None, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // The peer's address is not known yet (its connector does not answer): settlements
        // are taken and wait.
        let (status, body) = settle(&engine, Some("k1"), q).await;
        assert_eq!((status, body.as_str()), (StatusCode::CREATED, q));
        let (status, body) = settle(&engine, Some("k1"), q).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::CREATED, q),
            "a repeat: same answer"
        );
        let other = r#"{"amount":"1501","scale":9}"#;
        let (status, body) = settle(&engine, Some("k1"), other).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        // 1.23 wei, then 0.77 wei: one wei each time, the rest kept.
        for (key, amount) in [("k2", "123"), ("k3", "77")] {
            let body = format!(r#"{{"amount":"{amount}","scale":20}}"#);
            let (status, _) = settle(&engine, Some(key), &body).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(transfers(&chain_url, &engine.address, PEER).await, (0, 0));

        // Killed while the payments wait; back, it learns the address and pays each once.
        engine.kill_9();
        connector
            .peers
            .lock()
            .unwrap()
            .push(("peer".into(), PEER.into()));
        let engine = EthEngine::start(&config, &log);
        eventually("the payments are on chain", || async {
            transfers(&chain_url, &engine.address, PEER).await.1 >= 3
        })
        .await;
        // Killed again and restarted: nothing is paid twice.
        engine.kill_9();
        let engine = EthEngine::start(&config, &log);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            transfers(&chain_url, &engine.address, PEER).await,
            (1_500_000_000_000 + 1 + 1, 3)
        );
        // A repeat after all that still gets the first answer, and pays nothing.
        let (status, body) = settle(&engine, Some("k1"), q).await;
        assert_eq!((status, body.as_str()), (StatusCode::CREATED, q));

        // Messages: the peer's engine tells its address and gets ours.
        let hello = format!(r#"{{"type":"address","address":"{PEER}"}}"#);
        let (status, body) = call(
            &engine,
            Method::POST,
            "/accounts/peer/messages",
            None,
            &hello,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            reply,
            serde_json::json!({"type": "address", "address": engine.address})
        );
        let (status, _) = call(&engine, Method::POST, "/accounts/peer/messages", None, "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let bad = r#"{"type":"address","address":"0x12"}"#;
        let (status, _) = call(&engine, Method::POST, "/accounts/peer/messages", None, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(&engine, Method::DELETE, "/accounts/peer", None, "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = settle(&engine, Some("k9"), q).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        drop(chain);
    });
}

#[test]
fn incoming_transfers_are_credited_once_after_their_confirmations() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let chain = Ganache::start(&dir.path().join("ganache.log"));
        let chain_url = chain.url();
        let (connector, connector_addr) = Connector::start().await;
        connector
            .peers
            .lock()
            .unwrap()
            .push(("peer".into(), PEER.into()));
        *connector.refuse.lock().unwrap() = 2;
        let config = write_config(dir.path(), &chain_url, connector_addr, 2);
        let log = dir.path().join("engine.log");
        let engine = EthEngine::start(&config, &log);
        let (status, _) = call(&engine, Method::POST, "/accounts", None, r#"{"id":"peer"}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        eventually("the peer's address is learned", || async {
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("peer address learned")
        })
        .await;

        let hash = send(&chain_url, PEER, &engine.address, 5_000_000_000).await;
        // Two confirmations: nothing until another block is mined.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(connector.credits().is_empty());
        // A stranger pays too: kept aside, not credited to anyone.
        let stranger_hash = send(&chain_url, STRANGER, &engine.address, 7).await;
        eventually("the credit is taken", || async {
            connector.credits().len() >= 3
        })
        .await;
        // Refused twice, then taken: the same key and amount every time.
        let credits = connector.credits();
        for c in &credits {
            assert_eq!(c.path, "/accounts/peer/settlements");
            assert_eq!(c.key.as_deref(), Some(format!("eth:{hash}").as_str()));
            assert_eq!(
                c.body,
                serde_json::json!({"amount": "5000000000", "scale": 18})
            );
        }
        // Killed and restarted: the chain is not read again from the start, nothing is
        // credited twice.
        engine.kill_9();
        let engine = EthEngine::start(&config, &log);
        send(&chain_url, PEER, PEER, 0).await; // one more block
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(connector.credits().len(), 3);

        // The stranger turns out to be the peer of another account: its transfer is credited
        // there.
        connector
            .peers
            .lock()
            .unwrap()
            .push(("other".into(), STRANGER.into()));
        let (status, _) = call(
            &engine,
            Method::POST,
            "/accounts",
            None,
            r#"{"id":"other"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        eventually("the stranger's transfer is credited", || async {
            connector
                .credits()
                .iter()
                .any(|c| c.path == "/accounts/other/settlements")
        })
        .await;
        let other: Vec<Seen> = connector
            .credits()
            .into_iter()
            .filter(|c| c.path == "/accounts/other/settlements")
            .collect();
        assert_eq!(other.len(), 1);
        assert_eq!(
            other[0].key.as_deref(),
            Some(format!("eth:{stranger_hash}").as_str())
        );
        assert_eq!(
            other[0].body,
            serde_json::json!({"amount": "7", "scale": 18})
        );
        drop(engine);
        drop(chain);
    });
}
