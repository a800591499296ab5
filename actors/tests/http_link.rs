//! ILP over HTTP on real sockets (127.0.0.1, port 0): two nodes peered over HTTP pay each other;
//! the server refuses bad requests with the right status; the client turns a failing, silent
//! or absent peer into the right ILP Reject. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use actix::prelude::*;
use bytes::Bytes;
use common::{
    account_tail, fulfilled, http_request, listener, node_base, payment, rejected, route_to, run,
    Counter,
};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ilp::config::Config;
use ilp::packet::{ErrorCode, FulfillBuilder, Packet, Prepare, PrepareBuilder};
use ilp_actors::clock::Clock;
use ilp_actors::link::http::{
    HttpLink, HttpLinkOptions, HttpServer, HttpServerOptions, MAX_BODY_BYTES,
};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{AccountId, PacketResult};
use ilp_actors::node::Node;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A node `test.<name>` with a memory `wallet` child and an http peer account `<peer>`.
fn node_config(
    name: &str,
    peer: &str,
    listen: SocketAddr,
    peer_url: &str,
    incoming_token: &str,
    outgoing_token: &str,
) -> Config {
    let text = format!(
        "{}[listeners.http]\nbind = \"{listen}\"\n{}[accounts.{peer}]\nrelation = \"peer\"\n\
         link = {{ type = \"http\", outgoing_url = \"{peer_url}\", \
         outgoing_auth_token = \"{outgoing_token}\", incoming_auth_token = \"{incoming_token}\" }}\n{}",
        node_base(name),
        route_to(peer),
        account_tail(peer)
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// A started node with its wallet end and its http link.
struct TestNode {
    node: Node,
    wallet: MemoryLink,
    http: HttpLink,
    received: Arc<AtomicUsize>,
    _server: Option<HttpServer>,
}

impl TestNode {
    /// Starts the node of `config`; serves its http account on `listener` when given.
    fn start(config: &Config, peer: &str, listener: Option<TcpListener>) -> TestNode {
        TestNode::start_with(config, peer, listener, false)
    }

    /// As `start`; `h2`: the link speaks HTTP/2 with prior knowledge.
    fn start_with(
        config: &Config,
        peer: &str,
        listener: Option<TcpListener>,
        h2: bool,
    ) -> TestNode {
        let clock = Clock::system();
        let options = HttpLinkOptions {
            http2_prior_knowledge: h2,
            ..HttpLinkOptions::default()
        };
        let http = HttpLink::from_config(peer, &config.accounts[peer], clock, &options).unwrap();
        let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
        links.insert(Arc::from(peer), Arc::new(http.clone()));
        let (node, wallet_end, received) = common::start_wallet_node(config, links, clock);
        http.set_node_address(node.address.clone());
        let server = listener
            .map(|l| HttpServer::serve(l, [http.clone()], HttpServerOptions::default()).unwrap());
        TestNode {
            node,
            wallet: wallet_end,
            http,
            received,
            _server: server,
        }
    }

    async fn pay(&self, prepare: Prepare) -> PacketResult {
        self.wallet.send_prepare(prepare).await.unwrap()
    }

    async fn balance(&self, account: &str) -> i64 {
        common::balance(&self.node, account).await
    }
}

#[test]
fn two_nodes_pay_each_other_over_http1_and_h2c_and_balances_mirror() {
    run(|| async {
        let (la, addr_a) = listener().await;
        let (lb, addr_b) = listener().await;
        let url_a = format!("http://{addr_a}/accounts/b/ilp");
        let url_b = format!("http://{addr_b}/accounts/a/ilp");
        // a presents "a-to-b" to b, b presents "b-to-a" to a; a speaks h2c, b HTTP/1.1.
        let a = TestNode::start_with(
            &node_config("a", "b", addr_a, &url_b, "b-to-a", "a-to-b"),
            "b",
            Some(la),
            true,
        );
        let b = TestNode::start(
            &node_config("b", "a", addr_b, &url_a, "a-to-b", "b-to-a"),
            "a",
            Some(lb),
        );

        fulfilled(a.pay(payment("test.b.wallet", 100, 5_000, 1)).await);
        assert_eq!(b.received.load(Ordering::SeqCst), 1);
        assert_eq!(a.balance("b").await, -100);
        assert_eq!(b.balance("a").await, 100);

        fulfilled(b.pay(payment("test.a.wallet", 30, 5_000, 2)).await);
        assert_eq!(a.received.load(Ordering::SeqCst), 1);
        assert_eq!(a.balance("b").await, -70);
        assert_eq!(b.balance("a").await, 70);
        assert_eq!(a.balance("b").await, -b.balance("a").await);

        // Concurrent payments share the pooled connections, both ways at once.
        let a_to_b = (0..20u8).map(|i| a.pay(payment("test.b.wallet", 2, 5_000, 100 + i)));
        let b_to_a = (0..10u8).map(|i| b.pay(payment("test.a.wallet", 1, 5_000, 200 + i)));
        let (ab, ba) = futures::join!(
            futures::future::join_all(a_to_b),
            futures::future::join_all(b_to_a)
        );
        ab.into_iter().chain(ba).for_each(|r| {
            fulfilled(r);
        });
        assert_eq!(a.balance("b").await, -70 - 40 + 10);
        assert_eq!(b.balance("a").await, 70 + 40 - 10);

        // A Reject from the far wallet crosses back as it is, and moves no balance.
        let mut wrong = payment("test.b.wallet", 5, 5_000, 3);
        wrong = PrepareBuilder {
            amount: wrong.amount(),
            expires_at: wrong.expires_at(),
            execution_condition: &[9; 32],
            destination: &wrong.destination(),
            data: wrong.data(),
        }
        .build()
        .unwrap();
        rejected(a.pay(wrong).await, ErrorCode::F05_WRONG_CONDITION);
        assert_eq!(a.balance("b").await, -100);
        assert_eq!(b.balance("a").await, 100);
        assert!(a.http.is_up() && b.http.is_up());
    });
}

// ---- the server against raw requests ----------------------------------------------------------

/// A server for one account "p" at /accounts/p/ilp with token "secret", attached to a Counter.
async fn lone_server() -> (HttpServer, Arc<AtomicUsize>) {
    lone_server_with(HttpServerOptions::default()).await
}

async fn lone_server_with(options: HttpServerOptions) -> (HttpServer, Arc<AtomicUsize>) {
    let (l, addr) = listener().await;
    let config = node_config("s", "p", addr, "http://127.0.0.1:1/", "secret", "x");
    let link = HttpLink::from_config(
        "p",
        &config.accounts["p"],
        Clock::system(),
        &HttpLinkOptions::default(),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Counter {
        calls: calls.clone(),
    }
    .start();
    link.attach(counter.recipient());
    let server = HttpServer::serve(l, [link], options).unwrap();
    (server, calls)
}

/// Sends one request with a plain hyper client; returns status, version and body.
async fn raw(
    h2: bool,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Bytes,
) -> (StatusCode, Version, Bytes) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    http_request(h2, method, &url, &headers, body).await
}

/// POSTs `chunks` as a chunked HTTP/1.1 body (no Content-Length) with the right token.
async fn raw_chunked(url: String, chunks: Vec<Bytes>) -> StatusCode {
    type Chunks = http_body_util::StreamBody<
        futures::stream::Iter<
            std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
        >,
    >;
    let client: Client<HttpConnector, Chunks> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let frames: Vec<_> = chunks
        .into_iter()
        .map(|c| Ok(hyper::body::Frame::data(c)))
        .collect();
    let req = Request::post(url)
        .header("authorization", "Bearer secret")
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
        .unwrap();
    client.request(req).await.unwrap().status()
}

fn some_prepare() -> Bytes {
    payment("test.s.p", 1, 5_000, 4).as_bytes().clone()
}

#[test]
fn server_answers_a_good_request_with_the_accounts_packet_over_http1_and_h2c() {
    run(|| async {
        let (server, calls) = lone_server().await;
        let url = format!("http://{}/accounts/p/ilp", server.local_addr());
        for (h2, version) in [(false, Version::HTTP_11), (true, Version::HTTP_2)] {
            let (status, v, body) = raw(
                h2,
                Method::POST,
                url.clone(),
                Some("secret"),
                some_prepare(),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(v, version);
            match Packet::parse(body).unwrap() {
                Packet::Reject(r) => assert_eq!(r.code(), ErrorCode::T99_APPLICATION_ERROR),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn server_refuses_a_wrong_or_missing_token_with_401() {
    run(|| async {
        let (server, calls) = lone_server().await;
        let url = format!("http://{}/accounts/p/ilp", server.local_addr());
        for token in [Some("secreT"), Some("secret2"), Some(""), None] {
            let (status, _, _) = raw(false, Method::POST, url.clone(), token, some_prepare()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn server_refuses_a_malformed_body_with_400() {
    run(|| async {
        let (server, calls) = lone_server().await;
        let url = format!("http://{}/accounts/p/ilp", server.local_addr());
        let mut truncated = some_prepare().to_vec();
        truncated.pop();
        let fulfill = FulfillBuilder {
            fulfillment: &[0; 32],
            data: b"",
        }
        .build()
        .unwrap();
        for body in [
            Bytes::from_static(b"hello"),
            Bytes::new(),
            Bytes::from(truncated),
            fulfill.as_bytes().clone(),
        ] {
            let (status, _, text) =
                raw(false, Method::POST, url.clone(), Some("secret"), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(String::from_utf8_lossy(&text).contains("not an ILP Prepare"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn server_refuses_an_oversize_body_with_413() {
    run(|| async {
        let (server, calls) = lone_server().await;
        let url = format!("http://{}/accounts/p/ilp", server.local_addr());
        let big = Bytes::from(vec![12u8; MAX_BODY_BYTES + 1]);
        for h2 in [false, true] {
            let (status, _, _) =
                raw(h2, Method::POST, url.clone(), Some("secret"), big.clone()).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        }
        // Without a Content-Length (chunked), the limit is enforced while reading.
        let status = raw_chunked(url, vec![Bytes::from(vec![12u8; 40_000]); 2]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn server_answers_404_for_an_unknown_path_and_405_for_another_method() {
    run(|| async {
        let (server, calls) = lone_server().await;
        let addr = server.local_addr();
        let (status, _, _) = raw(
            false,
            Method::POST,
            format!("http://{addr}/accounts/q/ilp"),
            Some("secret"),
            some_prepare(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = raw(
            false,
            Method::GET,
            format!("http://{addr}/accounts/p/ilp"),
            Some("secret"),
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    });
}

// ---- the client against failing peers ----------------------------------------------------------

/// Serves every request on `l` with `status` and a short text body.
fn serve_status(l: TcpListener, status: StatusCode) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"boom")));
                    *r.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Node "a" whose http account "b" posts to `url` (no server of its own).
fn lone_node(url: &str) -> TestNode {
    let config = node_config("a", "b", "127.0.0.1:9".parse().unwrap(), url, "in", "out");
    TestNode::start(&config, "b", None)
}

#[test]
fn a_peer_answering_500_gives_t00_upstream() {
    run(|| async {
        let (l, addr) = listener().await;
        serve_status(l, StatusCode::INTERNAL_SERVER_ERROR);
        let a = lone_node(&format!("http://{addr}/ilp"));
        let reject = rejected(
            a.pay(payment("test.b.x", 10, 5_000, 5)).await,
            ErrorCode::T00_INTERNAL_ERROR,
        );
        assert!(reject.message().contains("500"), "{}", reject.message());
        assert_eq!(reject.triggered_by().unwrap().as_str(), "test.a");
        assert_eq!(a.balance("b").await, 0);
        assert!(a.http.is_up());
    });
}

#[test]
fn a_peer_answering_4xx_gives_f00_with_the_status() {
    run(|| async {
        let (l, addr) = listener().await;
        serve_status(l, StatusCode::UNAUTHORIZED);
        let a = lone_node(&format!("http://{addr}/ilp"));
        let reject = rejected(
            a.pay(payment("test.b.x", 10, 5_000, 6)).await,
            ErrorCode::F00_BAD_REQUEST,
        );
        assert!(reject.message().contains("401"), "{}", reject.message());
        assert!(reject.message().contains("boom"), "{}", reject.message());
    });
}

#[test]
fn a_peer_answering_200_with_garbage_gives_t00() {
    run(|| async {
        let (l, addr) = listener().await;
        serve_status(l, StatusCode::OK);
        let a = lone_node(&format!("http://{addr}/ilp"));
        rejected(
            a.pay(payment("test.b.x", 10, 5_000, 7)).await,
            ErrorCode::T00_INTERNAL_ERROR,
        );
    });
}

#[test]
fn a_peer_that_never_answers_is_rejected_at_the_prepares_expiry() {
    run(|| async {
        let (l, addr) = listener().await;
        // Accepts connections and holds them without ever answering.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = l.accept().await {
                held.push(stream);
            }
        });
        let a = lone_node(&format!("http://{addr}/ilp"));
        let started = tokio::time::Instant::now();
        // Leaves a - min_message_window (500 ms) = 1 s for b.
        let reject = rejected(
            a.pay(payment("test.b.x", 10, 1_500, 8)).await,
            ErrorCode::R00_TRANSFER_TIMED_OUT,
        );
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(reject.triggered_by().unwrap().as_str(), "test.a");
        assert_eq!(a.balance("b").await, 0);
    });
}

#[test]
fn a_refused_connection_gives_t01_and_marks_the_link_down_for_a_while() {
    run(|| async {
        let (l, addr) = listener().await;
        drop(l);
        let a = lone_node(&format!("http://{addr}/ilp"));
        assert!(a.http.is_up());
        rejected(
            a.pay(payment("test.b.x", 10, 5_000, 9)).await,
            ErrorCode::T01_PEER_UNREACHABLE,
        );
        assert!(!a.http.is_up());
        // While down, packets are refused at once without a connect attempt.
        rejected(
            a.pay(payment("test.b.x", 10, 5_000, 10)).await,
            ErrorCode::T01_PEER_UNREACHABLE,
        );
        // After the pause the link tries again.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !a.http.is_up() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
    });
}

#[test]
fn the_http2_key_makes_an_account_send_over_h2c() {
    run(|| async {
        let (la, addr_a) = listener().await;
        let (lb, addr_b) = listener().await;
        let url_a = format!("http://{addr_a}/accounts/b/ilp");
        let url_b = format!("http://{addr_b}/accounts/a/ilp");
        let mut config_a = node_config("a", "b", addr_a, &url_b, "b-to-a", "a-to-b");
        match &mut config_a.accounts.get_mut("b").unwrap().link {
            ilp::config::LinkConfig::Http { http2, .. } => *http2 = true,
            other => panic!("not an http link: {other:?}"),
        }
        let a = TestNode::start(&config_a, "b", Some(la));
        let b = TestNode::start(
            &node_config("b", "a", addr_b, &url_a, "a-to-b", "b-to-a"),
            "a",
            Some(lb),
        );
        fulfilled(a.pay(payment("test.b.wallet", 10, 5_000, 1)).await);
        fulfilled(b.pay(payment("test.a.wallet", 10, 5_000, 2)).await);
        let into_b = b._server.as_ref().unwrap().request_counts();
        let into_a = a._server.as_ref().unwrap().request_counts();
        assert_eq!((into_b.http1, into_b.http2), (0, 1), "a sends h2c");
        assert_eq!((into_a.http1, into_a.http2), (1, 0), "b sends HTTP/1.1");
    });
}

#[test]
fn the_listener_closes_connections_beyond_its_cap() {
    use tokio::io::AsyncReadExt;
    run(|| async {
        // Idle connections are kept far longer than this test waits: only the cap closes one.
        let options = HttpServerOptions {
            max_connections: 2,
            header_timeout: Duration::from_secs(600),
            ..HttpServerOptions::default()
        };
        let (server, _) = lone_server_with(options).await;
        let addr = server.local_addr();
        // Two idle connections take both places.
        let first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A third is closed at once, before any request.
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(common::HTTP_WAIT, third.read(&mut buf))
            .await
            .expect("the third connection is closed within the bound");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Once one of the two goes, a new client is served (until the server has reaped the
        // closed connection, a new one may still be turned away: try again).
        drop(first);
        let body = some_prepare();
        let mut request = format!(
            "POST /accounts/p/ilp HTTP/1.1\r\nhost: x\r\nauthorization: Bearer secret\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        tokio::time::timeout(common::HTTP_WAIT, async {
            loop {
                use tokio::io::AsyncWriteExt;
                let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut answer = [0u8; 12];
                let served = conn.write_all(&request).await.is_ok()
                    && conn.read_exact(&mut answer).await.is_ok();
                if served {
                    assert_eq!(&answer, b"HTTP/1.1 200");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a new connection is served once there is room");
    });
}
