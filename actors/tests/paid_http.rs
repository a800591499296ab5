//! The paid HTTP proxy in front of a plain upstream HTTP server (a few lines of hyper in this
//! test, not ours), on 127.0.0.1 with ports the OS picks: a priced route is refused 402 until
//! the client's token has paid through the Pay header's credentials, then served once per
//! price, never more than the token holds however many requests share it; a free route needs
//! no token; an upstream that is down costs nothing. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use bytes::Bytes;
use common::{node_base, run, start_wallet_node, stream_payment};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ilp::config::Config;
use ilp::packet::Timestamp;
use ilp::paid_http::{Pay, PayMethod};
use ilp_actors::admin::{AdminServer, AdminState};
use ilp_actors::clock::Clock;
use ilp_actors::link::Link;
use ilp_actors::messages::{AccountId, GetTokens};
use ilp_actors::paid_proxy::PaidProxy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "AAECAwQFBgcICQoLDA0ODw";

/// A plain HTTP server that counts the requests it serves and answers `upstream: METHOD PATH
/// BODY`.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let (listener, addr) = common::listener().await;
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let method = req.method().clone();
                            let path = req.uri().path().to_owned();
                            let token = if req.headers().contains_key("pay-token") {
                                "token "
                            } else {
                                ""
                            };
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            count.fetch_add(1, Ordering::SeqCst);
                            let text = format!(
                                "upstream: {token}{method} {path} {}",
                                String::from_utf8_lossy(&body)
                            );
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(text),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, served, task)
}

/// One request: status, headers and body.
async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, hyper::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("answered in time")
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn header(headers: &hyper::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn config_for(upstream: SocketAddr) -> Config {
    let text = format!(
        "{}[accounts.api]\nrelation = \"child\"\nlink = {{ type = \"local\" }}\n\
         [paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"http://{upstream}/v1\"\n\
         account = \"api\"\nupstream_timeout_ms = 5000\n\
         [[paid_http.routes]]\nmethod = \"POST\"\npath_prefix = \"/upload\"\nprice = 10\n",
        node_base("node")
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn a_token_pays_through_the_pay_header_and_each_request_costs_its_price_once() {
    run(|| async {
        let (upstream_addr, served, upstream_task) = upstream().await;
        let config = config_for(upstream_addr);
        let (node, wallet, _) = start_wallet_node(
            &config,
            BTreeMap::new(),
            Clock::starting_at(1_700_000_000_000),
        );
        let (listener, addr) = common::listener().await;
        let _proxy = PaidProxy::serve(listener, None, &config, &node).unwrap();
        let url = |path: &str| format!("http://{addr}{path}");

        // A free route needs no token.
        let (status, _, body) = call(Method::GET, &url("/free?x=1"), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, "upstream: GET /v1/free ");
        // The priced route without a token: 402, nothing forwarded.
        let (status, headers, _) = call(Method::POST, &url("/upload"), &[], "img").await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert!(headers.get("pay").is_none());
        assert_eq!(served.load(Ordering::SeqCst), 1);
        // No spelling of the path gets around its price, or reaches the upstream as another.
        let (status, _, _) = call(Method::POST, &url("/%75pload"), &[], "img").await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        let (status, _, _) = call(Method::POST, &url("/UPLOAD"), &[], "img").await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        for path in ["//upload", "/x/../upload", "/free/%2e%2e/upload"] {
            let (status, _, _) = call(Method::POST, &url(path), &[], "img").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        }
        assert_eq!(served.load(Ordering::SeqCst), 1);
        // A bad token is the client's mistake.
        let (status, _, _) =
            call(Method::POST, &url("/upload"), &[("pay-token", "short")], "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // The preflight says how to pay, for STREAM when asked.
        let (status, headers, _) = call(
            Method::OPTIONS,
            &url("/upload"),
            &[("pay-token", TOKEN), ("pay-accept", "interledger-stream")],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(header(&headers, "pay-balance"), "0");
        let pay = Pay::parse(&header(&headers, "pay")).unwrap();
        assert_eq!(pay.method, PayMethod::Stream);
        assert_eq!(pay.price, Some(10));
        assert!(pay.destination.as_str().starts_with("test.node.api."));
        // Unpaid, the request is refused with the same headers, PSK2 by default.
        let (status, headers, _) = call(
            Method::POST,
            &url("/upload"),
            &[("pay-token", TOKEN)],
            "img",
        )
        .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(header(&headers, "pay-balance"), "0");
        assert_eq!(
            header(&headers, "access-control-expose-headers"),
            "Pay, Pay-Balance"
        );
        let psk2 = Pay::parse(&header(&headers, "pay")).unwrap();
        assert_eq!(psk2.method, PayMethod::Psk2);
        assert_eq!(served.load(Ordering::SeqCst), 1);

        // 95 units paid on the STREAM credentials credit the token.
        let expires = Timestamp::from_unix_millis(1_700_000_000_000 + 600_000);
        let prepare = stream_payment(&pay.destination, &pay.shared_secret, 1, 95, expires);
        let paid = wallet.send_prepare(prepare).await.unwrap();
        assert!(paid.is_ok(), "{paid:?}");

        // Paid: forwarded once, 10 taken.
        let (status, headers, body) = call(
            Method::POST,
            &url("/upload"),
            &[("pay-token", TOKEN)],
            "img",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The token is not passed on: it is the client's key to its balance.
        assert_eq!(body, "upstream: POST /v1/upload img");
        assert_eq!(header(&headers, "pay-balance"), "85");
        assert_eq!(served.load(Ordering::SeqCst), 2);

        // Twenty requests at once on 85: exactly eight are served.
        let upload = url("/upload");
        let requests = (0..20).map(|_| call(Method::POST, &upload, &[("pay-token", TOKEN)], "x"));
        let answers = futures::future::join_all(requests).await;
        let ok = answers
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::OK)
            .count();
        let refused = answers
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::PAYMENT_REQUIRED)
            .count();
        assert_eq!((ok, refused), (8, 12));
        assert_eq!(served.load(Ordering::SeqCst), 10);

        // An upstream that is down (a second proxy on the same node, whose upstream's port has
        // nothing listening): no charge.
        drop(upstream_task);
        let dead = {
            let (socket, addr) = common::listener().await;
            drop(socket);
            addr
        };
        let (listener, dead_proxy_addr) = common::listener().await;
        let _dead_proxy = PaidProxy::serve(listener, None, &config_for(dead), &node).unwrap();
        let extra = stream_payment(&pay.destination, &pay.shared_secret, 2, 20, expires);
        assert!(wallet.send_prepare(extra).await.unwrap().is_ok());
        let (status, headers, _) = call(
            Method::POST,
            &format!("http://{dead_proxy_addr}/upload"),
            &[("pay-token", TOKEN)],
            "img",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(header(&headers, "pay-balance"), "25");

        // Paid as ilp-fetch pays: one PSK2 request on the default Pay's credentials, for the
        // price, with the token's 16 bytes as its data.
        let second_token = "EBESExQVFhcYGRobHB0eHw";
        let (status, headers, _) = call(
            Method::POST,
            &url("/upload"),
            &[("pay-token", second_token)],
            "img",
        )
        .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        let pay = Pay::parse(&header(&headers, "pay")).unwrap();
        assert_eq!(pay.method, PayMethod::Psk2);
        let keys = ilp::psk2::keys(&pay.shared_secret);
        let plaintext = ilp::psk2::Psk2Packet::Request {
            packet_type: ilp::psk2::TYPE_REQUEST,
            request_id: 1,
            amount: 10,
            data: (16u8..32).collect(),
        }
        .encode();
        let data = keys.encrypt(&[3; 12], &plaintext).unwrap();
        let prepare = ilp::packet::PrepareBuilder {
            amount: 10,
            expires_at: expires,
            execution_condition: &keys.condition(&data),
            destination: &pay.destination,
            data: &data,
        }
        .build()
        .unwrap();
        assert!(wallet.send_prepare(prepare).await.unwrap().is_ok());
        let (status, headers, body) = call(
            Method::POST,
            &url("/upload"),
            &[("pay-token", second_token)],
            "img2",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(header(&headers, "pay-balance"), "0");

        // The books: what the account was paid is what the tokens hold plus what they spent.
        let (tokens, spent) = node
            .balance
            .send(GetTokens {
                account: AccountId::from("api"),
            })
            .await
            .unwrap();
        assert_eq!(
            tokens,
            vec![(TOKEN.to_owned(), 25), (second_token.to_owned(), 0)]
        );
        assert_eq!(spent, 100);
        assert_eq!(common::balance(&node, "api").await, -125);

        // An operator lists the tokens and expires one: what it held counts as spent.
        let (listener, admin_addr) = common::listener().await;
        let _admin = AdminServer::serve(listener, AdminState::new(&node, &config)).unwrap();
        let admin = |path: &str| format!("http://{admin_addr}{path}");
        let (status, _, listed) = call(Method::GET, &admin("/accounts/api/tokens"), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed["tokens"][0]["token"], TOKEN);
        assert_eq!(listed["tokens"][0]["balance"], "25");
        assert_eq!(listed["spent"], "100");
        let path = format!("/accounts/api/tokens/{TOKEN}");
        let (status, _, expired) = call(Method::DELETE, &admin(&path), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{expired}");
        assert!(expired.contains("\"expired\":\"25\""), "{expired}");
        let (status, _, _) = call(Method::DELETE, &admin(&path), &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(Method::GET, &admin("/accounts/wallet/tokens"), &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "not a local account");
        let (status, headers, _) = call(
            Method::POST,
            &url("/upload"),
            &[("pay-token", TOKEN)],
            "img",
        )
        .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(header(&headers, "pay-balance"), "0");
    });
}
