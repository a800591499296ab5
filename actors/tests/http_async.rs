//! Asynchronous ILP over HTTP (HTTP-OER-ASYNC: `Callback-Url` and `Request-Id`, 202, the answer
//! POSTed back) on real sockets (127.0.0.1, port 0): two nodes pay each other over plain HTTP
//! and over HTTPS with h2 negotiated; a raw client sees the 202 and the callback, which is
//! retried after a 500; an async account still answers sync requests; on the sending side a
//! repeated, unknown or late callback gets 400 and resolves nothing. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind, build or write is a test bug

mod common;

use actix::prelude::*;
use bytes::Bytes;
use common::{
    account_tail, fulfilled, http_request, listener, node_base, p, payment, rejected, route_to,
    run, Counter, Leaf, Pki, HTTP_WAIT as WAIT,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ilp::config::Config;
use ilp::packet::{ErrorCode, FulfillBuilder, Packet, Prepare, PrepareBuilder, Reject};
use ilp_actors::clock::Clock;
use ilp_actors::link::http::{HttpLink, HttpLinkOptions, HttpServer, HttpServerOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{AccountId, PacketResult};
use ilp_actors::node::Node;
use ilp_actors::tls;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn test_pki(test: &str) -> Pki {
    let dir = format!("ilp-async-{}-{test}", std::process::id());
    Pki::new(&dir, "async test CA", None)
}

// ---- nodes ------------------------------------------------------------------------------------

/// How a test node's http account is set up.
struct Setup<'a> {
    name: &'a str,
    peer: &'a str,
    listen: SocketAddr,
    /// `http` or `https` (then `tls` is the server certificate and `ca` the peer's CA).
    scheme: &'a str,
    /// Host written in our callback URL.
    host: &'a str,
    peer_url: &'a str,
    tls: Option<(&'a Leaf, &'a Path)>,
}

/// Node `test.<name>` with a memory `wallet` child and an async http peer account `<peer>`;
/// `<peer>` presents `<peer>-to-<name>`, we present `<name>-to-<peer>`.
fn async_config(s: &Setup) -> Config {
    let Setup {
        name,
        peer,
        listen,
        scheme,
        host,
        peer_url,
        tls,
    } = s;
    let port = listen.port();
    let (listener_tls, link_tls) = match tls {
        Some((leaf, ca)) => (
            format!(
                "[listeners.http.tls]\nenabled = true\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
                p(&leaf.cert),
                p(&leaf.key)
            ),
            format!(", tls = {{ ca_path = \"{}\" }}", p(ca)),
        ),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "{}[listeners.http]\nbind = \"{listen}\"\n{listener_tls}{}\
         [accounts.{peer}]\nrelation = \"peer\"\n\
         link = {{ type = \"http\", mode = \"async\", outgoing_url = \"{peer_url}\", \
         outgoing_auth_token = \"{name}-to-{peer}\", incoming_auth_token = \"{peer}-to-{name}\", \
         callback_url = \"{scheme}://{host}:{port}/accounts/{peer}/callback\"{link_tls} }}\n{}",
        node_base(name),
        route_to(peer),
        account_tail(peer)
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config:\n{e}\n{text}"))
}

struct TestNode {
    node: Node,
    wallet: MemoryLink,
    http: HttpLink,
    received: Arc<AtomicUsize>,
    server: HttpServer,
}

impl TestNode {
    /// Starts the node of `config` and serves its `peer` account on `listener` (with the
    /// config's `[listeners.http.tls]` when enabled); `h2c`: the link speaks HTTP/2 with prior
    /// knowledge over plain http.
    fn start(config: &Config, peer: &str, listener: TcpListener, h2c: bool) -> TestNode {
        let options = HttpLinkOptions {
            http2_prior_knowledge: h2c,
            ..HttpLinkOptions::default()
        };
        TestNode::start_with(config, peer, listener, options)
    }

    /// As `start`, with the link's `options`.
    fn start_with(
        config: &Config,
        peer: &str,
        listener: TcpListener,
        options: HttpLinkOptions,
    ) -> TestNode {
        let clock = Clock::system();
        let http = HttpLink::from_config(peer, &config.accounts[peer], clock, &options).unwrap();
        let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
        links.insert(Arc::from(peer), Arc::new(http.clone()));
        let (node, wallet, received) = common::start_wallet_node(config, links, clock);
        http.set_node_address(node.address.clone());
        let section = config.listeners.http.as_ref().unwrap();
        let server_tls =
            tls::server_tls(&section.tls, "listeners.http.tls", tls::ALPN_H2_HTTP1).unwrap();
        let options = HttpServerOptions {
            tls: server_tls,
            ..HttpServerOptions::default()
        };
        let server = HttpServer::serve(listener, [http.clone()], options).unwrap();
        TestNode {
            node,
            wallet,
            http,
            received,
            server,
        }
    }

    async fn pay(&self, prepare: Prepare) -> PacketResult {
        timeout(WAIT, self.wallet.send_prepare(prepare))
            .await
            .expect("payment answered in time")
            .expect("wallet link up")
    }

    async fn balance(&self, account: &str) -> i64 {
        common::balance(&self.node, account).await
    }
}

/// Pays 100 a→b, 30 b→a, then 20×2 a→b and 10×1 b→a concurrently, and checks the balances
/// mirror and no callback is left pending.
async fn pay_both_ways(a: &TestNode, b: &TestNode) {
    fulfilled(a.pay(payment("test.b.wallet", 100, 10_000, 1)).await);
    assert_eq!(b.received.load(Ordering::SeqCst), 1);
    assert_eq!(a.balance("b").await, -100);
    assert_eq!(b.balance("a").await, 100);
    fulfilled(b.pay(payment("test.a.wallet", 30, 10_000, 2)).await);
    assert_eq!(a.received.load(Ordering::SeqCst), 1);
    assert_eq!(a.balance("b").await, -70);
    assert_eq!(b.balance("a").await, 70);

    let a_to_b = (0..20u8).map(|i| a.pay(payment("test.b.wallet", 2, 10_000, 100 + i)));
    let b_to_a = (0..10u8).map(|i| b.pay(payment("test.a.wallet", 1, 10_000, 200 + i)));
    let (ab, ba) = futures::join!(
        futures::future::join_all(a_to_b),
        futures::future::join_all(b_to_a)
    );
    ab.into_iter().chain(ba).for_each(|r| {
        fulfilled(r);
    });
    assert_eq!(a.balance("b").await, -70 - 40 + 10);
    assert_eq!(b.balance("a").await, 70 + 40 - 10);
    assert_eq!(a.balance("b").await, -b.balance("a").await);

    // A Reject from the far wallet comes back by callback too, and moves no balance.
    let good = payment("test.b.wallet", 5, 10_000, 3);
    let wrong = PrepareBuilder {
        amount: good.amount(),
        expires_at: good.expires_at(),
        execution_condition: &[9; 32],
        destination: &good.destination(),
        data: good.data(),
    }
    .build()
    .unwrap();
    rejected(a.pay(wrong).await, ErrorCode::F05_WRONG_CONDITION);
    assert_eq!(a.balance("b").await, -100);
    assert_eq!(b.balance("a").await, 100);
    assert_eq!(a.http.pending_callbacks(), 0);
    assert_eq!(b.http.pending_callbacks(), 0);
}

#[test]
fn two_nodes_pay_each_other_over_async_http_and_balances_mirror() {
    run(|| async {
        let (la, addr_a) = listener().await;
        let (lb, addr_b) = listener().await;
        let url_a = format!("http://{addr_a}/accounts/b/ilp");
        let url_b = format!("http://{addr_b}/accounts/a/ilp");
        let setup = |name, peer, listen, peer_url| Setup {
            name,
            peer,
            listen,
            scheme: "http",
            host: "127.0.0.1",
            peer_url,
            tls: None,
        };
        // a speaks h2c, b HTTP/1.1 (requests and callbacks alike).
        let a = TestNode::start(
            &async_config(&setup("a", "b", addr_a, &url_b)),
            "b",
            la,
            true,
        );
        let b = TestNode::start(
            &async_config(&setup("b", "a", addr_b, &url_a)),
            "a",
            lb,
            false,
        );
        pay_both_ways(&a, &b).await;
        // Each Prepare and each callback is a request of its own, in the sender's version:
        // b got a's 22 Prepares and 11 callbacks over h2c, a got b's over HTTP/1.1.
        let (at_a, at_b) = (a.server.request_counts(), b.server.request_counts());
        assert_eq!((at_b.http1, at_b.http2), (0, 22 + 11), "{at_b:?}");
        assert_eq!((at_a.http1, at_a.http2), (11 + 22, 0), "{at_a:?}");
    });
}

#[test]
fn two_nodes_pay_each_other_over_async_https_with_h2_negotiated() {
    run(|| async {
        let pki = test_pki("https");
        let server = pki.leaf("server", &["localhost", "127.0.0.1"]);
        let ca = pki.ca_path();
        let (la, addr_a) = listener().await;
        let (lb, addr_b) = listener().await;
        let url_a = format!("https://localhost:{}/accounts/b/ilp", addr_a.port());
        let url_b = format!("https://{addr_b}/accounts/a/ilp");
        let setup = |name, peer, listen, host, peer_url| Setup {
            name,
            peer,
            listen,
            scheme: "https",
            host,
            peer_url,
            tls: Some((&server, &ca)),
        };
        let a = TestNode::start(
            &async_config(&setup("a", "b", addr_a, "localhost", &url_b)),
            "b",
            la,
            false,
        );
        let b = TestNode::start(
            &async_config(&setup("b", "a", addr_b, "127.0.0.1", &url_a)),
            "a",
            lb,
            false,
        );
        pay_both_ways(&a, &b).await;
        // Prepares and callbacks all arrived over HTTP/2, negotiated by ALPN.
        for node in [&a, &b] {
            let counts = node.server.request_counts();
            assert_eq!(counts.http1, 0, "{counts:?}");
            assert!(counts.http2 >= 2 * 11, "{counts:?}");
        }
        // And a bare TLS client offering both protocols is given h2.
        let mut client = tls::client_config(
            &ilp::config::ClientTlsConfig {
                ca_path: Some(pki.ca_path()),
                ..Default::default()
            },
            "test",
        )
        .unwrap();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr_a).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(tls::server_name("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    });
}

// ---- raw peers --------------------------------------------------------------------------------

/// One request a scripted server received.
#[derive(Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Serves `l` over HTTP/1.1: reports each request on the returned channel and answers it
/// with the next status of `script` (then `otherwise`).
fn scripted_server(
    l: TcpListener,
    script: Vec<StatusCode>,
    otherwise: StatusCode,
) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                return;
            };
            let tx = tx.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    let script = script.clone();
                    async move {
                        let (head, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let status = script.lock().unwrap().pop_front().unwrap_or(otherwise);
                        let _ = tx.send(Seen {
                            path: head.uri.path().to_owned(),
                            headers: head.headers,
                            body,
                        });
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    timeout(WAIT, rx.recv())
        .await
        .expect("a request arrived in time")
        .expect("server running")
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// POSTs `body` to `url` with `headers`; returns the status and body.
async fn post(url: &str, headers: &[(&str, &str)], body: Bytes) -> (StatusCode, Bytes) {
    let (status, _, body) = http_request(false, Method::POST, url, headers, body).await;
    (status, body)
}

/// A server for async account "p" of node "s" (expects "p-to-s", calls back with "s-to-p"),
/// attached to a Counter; callback retries start at 20 ms.
async fn lone_server() -> (HttpServer, String, Arc<AtomicUsize>) {
    let (l, addr) = listener().await;
    let config = async_config(&Setup {
        name: "s",
        peer: "p",
        listen: addr,
        scheme: "http",
        host: "127.0.0.1",
        peer_url: "http://127.0.0.1:1/",
        tls: None,
    });
    let options = HttpLinkOptions {
        callback_first_backoff: Duration::from_millis(20),
        ..HttpLinkOptions::default()
    };
    let link =
        HttpLink::from_config("p", &config.accounts["p"], Clock::system(), &options).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    link.attach(
        Counter {
            calls: calls.clone(),
        }
        .start()
        .recipient(),
    );
    let server = HttpServer::serve(l, [link], HttpServerOptions::default()).unwrap();
    let url = format!("http://{addr}/accounts/p/ilp");
    (server, url, calls)
}

fn reject_code(body: Bytes) -> ErrorCode {
    match Packet::parse(body).unwrap() {
        Packet::Reject(r) => r.code(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_prepare_with_a_callback_url_gets_202_and_then_a_callback_with_its_request_id() {
    run(|| async {
        let (_server, url, calls) = lone_server().await;
        let (cl, cb_addr) = listener().await;
        let mut callbacks = scripted_server(cl, vec![], StatusCode::OK);
        let callback_url = format!("http://{cb_addr}/my/callback");
        let prepare = payment("test.s.p", 1, 10_000, 4);
        let (status, _) = post(
            &url,
            &[
                ("authorization", "Bearer p-to-s"),
                ("callback-url", &callback_url),
                ("request-id", "3442196b-5fc7-4d60-a17e-a9416a77745b"),
            ],
            prepare.as_bytes().clone(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let seen = next(&mut callbacks).await;
        assert_eq!(seen.path, "/my/callback");
        assert_eq!(
            header(&seen, "request-id"),
            "3442196b-5fc7-4d60-a17e-a9416a77745b"
        );
        assert_eq!(header(&seen, "authorization"), "Bearer s-to-p");
        assert_eq!(header(&seen, "content-type"), "application/octet-stream");
        assert_eq!(reject_code(seen.body), ErrorCode::T99_APPLICATION_ERROR);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn an_async_account_answers_a_request_without_callback_url_synchronously() {
    run(|| async {
        let (_server, url, calls) = lone_server().await;
        let prepare = payment("test.s.p", 1, 10_000, 5);
        let (status, body) = post(
            &url,
            &[("authorization", "Bearer p-to-s")],
            prepare.as_bytes().clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reject_code(body), ErrorCode::T99_APPLICATION_ERROR);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn bad_async_headers_or_credentials_are_refused_before_the_account() {
    run(|| async {
        let (_server, url, calls) = lone_server().await;
        let prepare = payment("test.s.p", 1, 10_000, 6).as_bytes().clone();
        let cases: [(&[(&str, &str)], StatusCode); 5] = [
            (
                // Another host than the peer's configured outgoing_url.
                &[
                    ("authorization", "Bearer p-to-s"),
                    ("callback-url", "http://127.0.0.2:9/cb"),
                    ("request-id", "1"),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                &[
                    ("authorization", "Bearer p-to-s"),
                    ("callback-url", "http://127.0.0.1:9/cb"),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                &[
                    ("authorization", "Bearer p-to-s"),
                    ("callback-url", "/relative"),
                    ("request-id", "1"),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                &[
                    ("authorization", "Bearer p-to-s"),
                    ("callback-url", "ftp://127.0.0.1:9/cb"),
                    ("request-id", "1"),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                &[
                    ("authorization", "Bearer wrong"),
                    ("callback-url", "http://127.0.0.1:9/cb"),
                    ("request-id", "1"),
                ],
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (headers, expected) in cases {
            let (status, _) = post(&url, headers, prepare.clone()).await;
            assert_eq!(status, expected, "{headers:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_callback_answered_500_is_retried_until_accepted_and_a_4xx_stops_it() {
    run(|| async {
        let (_server, url, _calls) = lone_server().await;
        let (cl, cb_addr) = listener().await;
        let mut callbacks = scripted_server(
            cl,
            vec![StatusCode::INTERNAL_SERVER_ERROR, StatusCode::BAD_GATEWAY],
            StatusCode::OK,
        );
        let callback_url = format!("http://{cb_addr}/cb");
        let (status, _) = post(
            &url,
            &[
                ("authorization", "Bearer p-to-s"),
                ("callback-url", &callback_url),
                ("request-id", "retry-me"),
            ],
            payment("test.s.p", 1, 10_000, 7).as_bytes().clone(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        for _ in 0..3 {
            let seen = next(&mut callbacks).await;
            assert_eq!(header(&seen, "request-id"), "retry-me");
            assert_eq!(reject_code(seen.body), ErrorCode::T99_APPLICATION_ERROR);
        }
        // The 200 ended it; and a 4xx ends the next one at its first attempt.
        let (cl, cb_addr) = listener().await;
        let mut refusing = scripted_server(cl, vec![], StatusCode::BAD_REQUEST);
        let callback_url = format!("http://{cb_addr}/cb");
        let (status, _) = post(
            &url,
            &[
                ("authorization", "Bearer p-to-s"),
                ("callback-url", &callback_url),
                ("request-id", "refuse-me"),
            ],
            payment("test.s.p", 1, 10_000, 8).as_bytes().clone(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            header(&next(&mut refusing).await, "request-id"),
            "refuse-me"
        );
        // A retry would come within the first backoff (20 ms); none comes in 300 ms.
        assert!(timeout(Duration::from_millis(300), callbacks.recv())
            .await
            .is_err());
        assert!(timeout(Duration::from_millis(300), refusing.recv())
            .await
            .is_err());
    });
}

// ---- the sending side against a scripted peer --------------------------------------------------

/// Node "a" whose async account "b" POSTs to a scripted peer answering 202; returns the node
/// (serving a's callback path) and the peer's request channel.
async fn node_with_silent_peer() -> (TestNode, mpsc::UnboundedReceiver<Seen>) {
    node_with_silent_peer_holding(HttpLinkOptions::default().max_pending_callbacks).await
}

/// As [`node_with_silent_peer`], with at most `max_pending` Prepares awaiting a callback.
async fn node_with_silent_peer_holding(
    max_pending: usize,
) -> (TestNode, mpsc::UnboundedReceiver<Seen>) {
    // No repeats of unanswered Prepares within these tests: each request seen is a new one.
    node_with_silent_peer_options(HttpLinkOptions {
        max_pending_callbacks: max_pending,
        async_repeat_interval: Duration::from_secs(3600),
        ..HttpLinkOptions::default()
    })
    .await
}

async fn node_with_silent_peer_options(
    options: HttpLinkOptions,
) -> (TestNode, mpsc::UnboundedReceiver<Seen>) {
    let (peer_l, peer_addr) = listener().await;
    let prepares = scripted_server(peer_l, vec![], StatusCode::ACCEPTED);
    let (la, addr_a) = listener().await;
    let peer_url = format!("http://{peer_addr}/ilp");
    let config = async_config(&Setup {
        name: "a",
        peer: "b",
        listen: addr_a,
        scheme: "http",
        host: "127.0.0.1",
        peer_url: &peer_url,
        tls: None,
    });
    (TestNode::start_with(&config, "b", la, options), prepares)
}

#[test]
fn an_accepted_prepare_without_a_callback_is_posted_again_with_the_same_request_id() {
    run(|| async {
        let (a, mut prepares) = node_with_silent_peer_options(HttpLinkOptions {
            async_repeat_interval: Duration::from_millis(100),
            ..HttpLinkOptions::default()
        })
        .await;
        let paying = tokio::spawn({
            let wallet = a.wallet.clone();
            async move {
                wallet
                    .send_prepare(payment("test.b.x", 10, 3_000, 21))
                    .await
            }
        });
        let first = next(&mut prepares).await;
        let repeat = next(&mut prepares).await;
        assert_eq!(
            header(&first, "request-id"),
            header(&repeat, "request-id"),
            "a repeat carries the same Request-Id"
        );
        assert_eq!(
            header(&first, "callback-url"),
            header(&repeat, "callback-url")
        );
        assert_eq!(first.body, repeat.body, "and the same Prepare");
        // Nobody calls back: at its expiry the Prepare is rejected, and nothing was booked.
        let answer = timeout(WAIT, paying).await.unwrap().unwrap().unwrap();
        rejected(answer, ErrorCode::R00_TRANSFER_TIMED_OUT);
        assert_eq!(a.balance("b").await, 0);
    });
}

fn fulfill_bytes(seed: u8) -> Bytes {
    FulfillBuilder {
        fulfillment: &[seed; 32],
        data: b"",
    }
    .build()
    .unwrap()
    .as_bytes()
    .clone()
}

#[test]
fn the_first_callback_wins_and_a_repeat_or_unknown_request_id_gets_400() {
    run(|| async {
        let (a, mut prepares) = node_with_silent_peer().await;
        let paying = tokio::spawn({
            let wallet = a.wallet.clone();
            async move {
                wallet
                    .send_prepare(payment("test.b.x", 10, 10_000, 9))
                    .await
            }
        });
        let seen = next(&mut prepares).await;
        assert_eq!(header(&seen, "authorization"), "Bearer a-to-b");
        let callback = header(&seen, "callback-url").to_owned();
        assert_eq!(
            callback,
            format!("http://{}/accounts/b/callback", a.server.local_addr())
        );
        let id = header(&seen, "request-id").to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert!(matches!(
            Packet::parse(seen.body).unwrap(),
            Packet::Prepare(_)
        ));
        assert_eq!(a.http.pending_callbacks(), 1);

        let auth = ("authorization", "Bearer b-to-a");
        // Wrong token, unknown id, missing id, a Prepare instead of an answer: all refused.
        let (status, _) = post(
            &callback,
            &[("authorization", "Bearer nope"), ("request-id", &id)],
            fulfill_bytes(9),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = post(
            &callback,
            &[auth, ("request-id", "00000000-0000-4000-8000-000000000000")],
            fulfill_bytes(9),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = post(&callback, &[auth], fulfill_bytes(9)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = post(
            &callback,
            &[auth, ("request-id", &id)],
            payment("test.a", 1, 10_000, 1).as_bytes().clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(a.http.pending_callbacks(), 1);

        // The first good callback resolves the payment.
        let (status, _) = post(&callback, &[auth, ("request-id", &id)], fulfill_bytes(9)).await;
        assert_eq!(status, StatusCode::OK);
        fulfilled(timeout(WAIT, paying).await.unwrap().unwrap().unwrap());
        assert_eq!(a.balance("b").await, -10);
        // A repeat (even a different answer) is refused and changes nothing.
        let reject = Bytes::from(Reject::new(ErrorCode::F99_APPLICATION_ERROR, None, "late"));
        for body in [fulfill_bytes(9), reject] {
            let (status, _) = post(&callback, &[auth, ("request-id", &id)], body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
        assert_eq!(a.balance("b").await, -10);
        assert_eq!(a.http.pending_callbacks(), 0);
    });
}

#[test]
fn a_callback_after_the_prepares_expiry_gets_400_and_upstream_saw_r00() {
    run(|| async {
        let (a, mut prepares) = node_with_silent_peer().await;
        let started = tokio::time::Instant::now();
        let paying = tokio::spawn({
            let wallet = a.wallet.clone();
            async move {
                wallet
                    .send_prepare(payment("test.b.x", 10, 1_500, 10))
                    .await
            }
        });
        let seen = next(&mut prepares).await;
        let callback = header(&seen, "callback-url").to_owned();
        let id = header(&seen, "request-id").to_owned();
        let reject = rejected(
            timeout(WAIT, paying).await.unwrap().unwrap().unwrap(),
            ErrorCode::R00_TRANSFER_TIMED_OUT,
        );
        assert_eq!(reject.triggered_by().unwrap().as_str(), "test.a");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(a.http.pending_callbacks(), 0);
        let (status, _) = post(
            &callback,
            &[("authorization", "Bearer b-to-a"), ("request-id", &id)],
            fulfill_bytes(10),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(a.balance("b").await, 0);
    });
}

#[test]
fn a_full_callback_table_rejects_t03_without_sending() {
    // Each step has a bound of its own, shorter than the test's, so a stall names its step.
    // Expiries leave the Router a full second over its 2 x 500 ms minimum: at 1 000 ms the
    // third Prepare had no margin at all, and a millisecond tick between building it and
    // routing it made it R02 (never sent), which stalled this test now and then.
    const STEP: Duration = Duration::from_secs(8);
    run(|| async {
        let (a, mut prepares) = node_with_silent_peer_holding(1).await;
        let first = tokio::spawn({
            let wallet = a.wallet.clone();
            async move {
                wallet
                    .send_prepare(payment("test.b.x", 10, 2_500, 11))
                    .await
            }
        });
        timeout(STEP, next(&mut prepares))
            .await
            .expect("step 1: the first Prepare reaches the peer");
        let second = timeout(STEP, a.pay(payment("test.b.x", 10, 10_000, 12)))
            .await
            .expect("step 2: the second Prepare is answered at once");
        let reject = rejected(second, ErrorCode::T03_CONNECTOR_BUSY);
        assert_eq!(reject.triggered_by().unwrap().as_str(), "test.a");
        rejected(
            timeout(STEP, first)
                .await
                .expect("step 3: the first Prepare expires")
                .unwrap()
                .unwrap(),
            ErrorCode::R00_TRANSFER_TIMED_OUT,
        );
        // The expired entry is gone, so the table takes the next Prepare.
        let again = tokio::spawn({
            let wallet = a.wallet.clone();
            async move {
                wallet
                    .send_prepare(payment("test.b.x", 10, 2_500, 13))
                    .await
            }
        });
        let sent = timeout(STEP, next(&mut prepares)).await;
        let answer = timeout(STEP, again)
            .await
            .expect("step 5: the third Prepare is answered")
            .unwrap()
            .unwrap();
        assert!(
            sent.is_ok(),
            "step 4: the third Prepare never reached the peer; it was answered {:?} {:?}",
            answer.as_ref().err().map(|r| r.code()),
            answer.as_ref().err().map(|r| r.message().to_owned())
        );
        rejected(answer, ErrorCode::R00_TRANSFER_TIMED_OUT);
        assert!(
            prepares.try_recv().is_err(),
            "the T03 Prepare was never sent"
        );
        assert_eq!(a.balance("b").await, 0);
    });
}
