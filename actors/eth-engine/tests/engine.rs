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
use ilp_eth_engine::engine::proof_hash;
use ilp_eth_engine::eth;
use process::mentions;
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

/// How the peer's engine (behind the scripted connector) answers an account's address ask.
#[derive(Clone)]
enum Answer {
    /// The address of `key`, proven with it.
    Proven(&'static str),
    /// `address`, with a proof made by `key` (or none).
    Claimed {
        address: String,
        key: Option<&'static str>,
    },
}

/// The answer of the peer's engine to an ask from `asker`.
fn answer_body(answer: &Answer, asker: &str) -> String {
    let asker = eth::parse_address(asker).unwrap();
    let sign = |key: &str, address: &eth::Address| {
        let wallet = eth::Wallet::from_hex(key).unwrap();
        hex::encode(
            wallet
                .sign_hash(&proof_hash(1337, address, &asker))
                .unwrap(),
        )
    };
    let (address, proof) = match answer {
        Answer::Proven(key) => {
            let address = eth::Wallet::from_hex(key).unwrap().address();
            (eth::format_address(&address), Some(sign(key, &address)))
        }
        Answer::Claimed { address, key } => {
            let parsed = eth::parse_address(address).unwrap();
            (address.clone(), key.map(|k| sign(k, &parsed)))
        }
    };
    serde_json::json!({"type": "address", "address": address, "proof": proof}).to_string()
}

/// The connector side: takes credits (refusing the first `refuse` of them, and every one for
/// the accounts in `refuse_always`) and answers address asks as `answers` says per account
/// (502, as a connector whose peer is unreachable, for the others).
#[derive(Clone, Default)]
struct Connector {
    seen: Arc<Mutex<Vec<Seen>>>,
    refuse: Arc<Mutex<usize>>,
    refuse_always: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<(String, Answer)>>>,
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

    fn answer_for(&self, account: &str, answer: Answer) {
        self.answers.lock().unwrap().push((account.into(), answer));
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let key = request
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            key,
            body: body.clone(),
        });
        let account = path
            .strip_prefix("/accounts/")
            .and_then(|p| p.split('/').next())
            .unwrap_or("")
            .to_owned();
        let (status, reply) = if path.ends_with("/settlements") {
            let mut refuse = self.refuse.lock().unwrap();
            if self.refuse_always.lock().unwrap().contains(&account) {
                (404, "no such account".to_owned())
            } else if *refuse > 0 {
                *refuse -= 1;
                (500, String::new())
            } else {
                (201, "RECEIVED".to_owned())
            }
        } else {
            let asker = body["address"].as_str().unwrap_or_default().to_owned();
            let answers = self.answers.lock().unwrap();
            match answers.iter().find(|(a, _)| *a == account) {
                Some((_, answer)) => (201, answer_body(answer, &asker)),
                None => (502, "peer unreachable".to_owned()),
            }
        };
        let mut r = Response::new(Full::new(Bytes::from(reply)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    }

    fn credits(&self, account: &str) -> Vec<Seen> {
        let path = format!("/accounts/{account}/settlements");
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
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
    let content_type = if path.ends_with("/messages") {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", engine.api))
        .header("content-type", content_type);
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
        connector.answer_for("peer", Answer::Proven(KEYS[1]));
        let engine = EthEngine::start(&config, &log);
        eventually("the payments are on chain", || async {
            transfers(&chain_url, &engine.address, PEER).await.1 >= 3
        })
        .await;
        // Killed again and restarted: nothing is paid twice. (The next settlement on chain
        // shows the restarted engine has gone through its payments.)
        engine.kill_9();
        let engine = EthEngine::start(&config, &log);
        let (status, _) = settle(&engine, Some("k4"), r#"{"amount":"1","scale":9}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        eventually("the next payment is on chain", || async {
            transfers(&chain_url, &engine.address, PEER).await.1 >= 4
        })
        .await;
        assert_eq!(
            transfers(&chain_url, &engine.address, PEER).await,
            (1_500_000_000_000 + 1 + 1 + 1_000_000_000, 4)
        );
        // A repeat after all that still gets the first answer, and pays nothing.
        let (status, body) = settle(&engine, Some("k1"), q).await;
        assert_eq!((status, body.as_str()), (StatusCode::CREATED, q));

        // Messages: the peer's engine asks our address and gets it, proven for it.
        let hello = format!(r#"{{"type":"address","address":"{STRANGER}"}}"#);
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
        assert_eq!(reply["address"], serde_json::json!(engine.address));
        let proof: [u8; 65] = hex::decode(reply["proof"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let ours = eth::parse_address(&engine.address).unwrap();
        let stranger = eth::parse_address(STRANGER).unwrap();
        let signer = eth::recover_address(&proof_hash(1337, &ours, &stranger), &proof).unwrap();
        assert_eq!(signer, ours);
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
        connector.answer_for("peer", Answer::Proven(KEYS[1]));
        *connector.refuse.lock().unwrap() = 2;
        let config = write_config(dir.path(), &chain_url, connector_addr, 2);
        let log = dir.path().join("engine.log");
        let engine = EthEngine::start(&config, &log);
        let (status, _) = call(&engine, Method::POST, "/accounts", None, r#"{"id":"peer"}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        eventually("the peer's address is learned", || async {
            mentions(&log, "peer address learned") == 1
        })
        .await;

        let hash = send(&chain_url, PEER, &engine.address, 5_000_000_000).await;
        // Two confirmations: nothing until another block is mined.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(connector.credits("peer").is_empty());
        // A stranger pays too (the next block): kept aside, credited to nobody.
        let stranger_hash = send(&chain_url, STRANGER, &engine.address, 7).await;
        eventually("the credit is taken", || async {
            connector.credits("peer").len() >= 3
        })
        .await;
        // Refused twice, then taken: the same key and amount every time.
        for c in connector.credits("peer") {
            assert_eq!(c.key.as_deref(), Some(format!("eth:{hash}").as_str()));
            assert_eq!(
                c.body,
                serde_json::json!({"amount": "5000000000", "scale": 18})
            );
        }
        // Killed (once it has recorded the credit as taken) and restarted: the chain is not
        // read again from the start, nothing is credited twice (the next transfer's credit
        // shows the restarted engine read on).
        eventually("the engine records the credit", || async {
            mentions(&log, "INFO credited") >= 1
        })
        .await;
        engine.kill_9();
        let engine = EthEngine::start(&config, &log);
        let next = send(&chain_url, PEER, &engine.address, 11).await;
        send(&chain_url, PEER, PEER, 0).await; // its second confirmation
        eventually("the next credit is taken", || async {
            connector.credits("peer").len() >= 4
        })
        .await;
        let credits = connector.credits("peer");
        assert_eq!(credits.len(), 4, "{credits:?}");
        assert_eq!(
            credits[3].key.as_deref(),
            Some(format!("eth:{next}").as_str())
        );

        // The stranger turns out to be the peer of another account, which the connector
        // refuses to credit for now: its transfer is credited there, and that refusal holds up
        // no other credit.
        connector.refuse_always.lock().unwrap().push("other".into());
        connector.answer_for("other", Answer::Proven(KEYS[2]));
        let (status, _) = call(
            &engine,
            Method::POST,
            "/accounts",
            None,
            r#"{"id":"other"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        eventually("the stranger's transfer is offered", || async {
            !connector.credits("other").is_empty()
        })
        .await;
        let other = connector.credits("other");
        assert_eq!(
            other[0].key.as_deref(),
            Some(format!("eth:{stranger_hash}").as_str())
        );
        assert_eq!(
            other[0].body,
            serde_json::json!({"amount": "7", "scale": 18})
        );
        let later = send(&chain_url, PEER, &engine.address, 13).await;
        send(&chain_url, PEER, PEER, 0).await;
        eventually("a later credit of the peer is taken", || async {
            connector
                .credits("peer")
                .iter()
                .any(|c| c.key.as_deref() == Some(format!("eth:{later}").as_str()))
        })
        .await;
        drop(engine);
        drop(chain);
    });
}

#[test]
fn only_an_address_proven_by_its_key_is_taken_as_a_peer() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let chain = Ganache::start(&dir.path().join("ganache.log"));
        let chain_url = chain.url();
        let (connector, connector_addr) = Connector::start().await;
        let ours = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1";
        // Claims without a proof, with the proof of another key, of our own address, and of
        // an address already proven for another account.
        connector.answer_for(
            "bare",
            Answer::Claimed {
                address: STRANGER.into(),
                key: None,
            },
        );
        connector.answer_for(
            "forged",
            Answer::Claimed {
                address: STRANGER.into(),
                key: Some(KEYS[1]),
            },
        );
        connector.answer_for(
            "mirror",
            Answer::Claimed {
                address: ours.into(),
                key: Some(KEYS[0]),
            },
        );
        connector.answer_for("peer", Answer::Proven(KEYS[1]));
        connector.answer_for("twin", Answer::Proven(KEYS[1]));
        // A proven address that is not the one the operator pinned for the account.
        connector.answer_for("pinned", Answer::Proven(KEYS[2]));
        let config = write_config(dir.path(), &chain_url, connector_addr, 1);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("[peers]\npinned = \"0x95ced938f7991cd0dfcb48f0a06a40fa1af46ebc\"\n");
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("engine.log");
        let engine = EthEngine::start(&config, &log);
        assert_eq!(engine.address, ours);
        for id in ["bare", "forged", "mirror", "pinned", "peer"] {
            let body = format!(r#"{{"id":"{id}"}}"#);
            let (status, _) = call(&engine, Method::POST, "/accounts", None, &body).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        eventually("the peer's address is learned", || async {
            mentions(&log, "peer address learned") >= 1
        })
        .await;
        let (status, _) = call(&engine, Method::POST, "/accounts", None, r#"{"id":"twin"}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        eventually("every claim is refused", || async {
            mentions(&log, "the answer carries no proof") >= 1
                && mentions(&log, "the proof was not made by") >= 1
                && mentions(&log, "the address is ours") >= 1
                && mentions(&log, "the address is the peer of account") >= 1
                && mentions(&log, "pins this account's peer") >= 1
        })
        .await;
        assert_eq!(mentions(&log, "peer address learned"), 1);
        // Settlements with the accounts whose claims were refused wait; the peer's is paid.
        for (id, key) in [
            ("bare", "b1"),
            ("forged", "f1"),
            ("mirror", "m1"),
            ("twin", "t1"),
            ("peer", "p1"),
        ] {
            let (status, _) = call(
                &engine,
                Method::POST,
                &format!("/accounts/{id}/settlements"),
                Some(key),
                r#"{"amount":"1000","scale":9}"#,
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        eventually("the peer is paid", || async {
            transfers(&chain_url, ours, PEER).await.1 >= 1
        })
        .await;
        assert_eq!(
            transfers(&chain_url, ours, PEER).await,
            (1_000_000_000_000, 1)
        );
        assert_eq!(transfers(&chain_url, ours, STRANGER).await, (0, 0));
        // (start.js's transfer of nothing to itself is the only one.)
        assert_eq!(transfers(&chain_url, ours, ours).await, (0, 1));
        // Requests a web page could send are refused.
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let request = Request::post(format!("http://{}/accounts/peer/messages", engine.api))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let status = client.request(request).await.unwrap().status();
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let request = Request::post(format!("http://{}/accounts", engine.api))
            .header("content-type", "application/json")
            .header("origin", "http://evil.example")
            .body(Full::new(Bytes::from_static(br#"{"id":"x"}"#)))
            .unwrap();
        let status = client.request(request).await.unwrap().status();
        assert_eq!(status, StatusCode::FORBIDDEN);
        drop(engine);
        drop(chain);
    });
}
