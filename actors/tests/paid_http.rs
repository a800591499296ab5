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

/// A POST with `Pay-Token: token`.
async fn post_with_token(
    url: &str,
    token: &str,
    body: &str,
) -> (StatusCode, hyper::HeaderMap, String) {
    call(Method::POST, url, &[("pay-token", token)], body).await
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
        let (status, headers, _) = post_with_token(&url("/upload"), TOKEN, "img").await;
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
        let (status, headers, body) = post_with_token(&url("/upload"), TOKEN, "img").await;
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
        let (status, headers, _) =
            post_with_token(&format!("http://{dead_proxy_addr}/upload"), TOKEN, "img").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(header(&headers, "pay-balance"), "25");

        // Paid as ilp-fetch pays: one PSK2 request on the default Pay's credentials, for the
        // price, with the token's 16 bytes as its data.
        let second_token = "EBESExQVFhcYGRobHB0eHw";
        let (status, headers, _) = post_with_token(&url("/upload"), second_token, "img").await;
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
        let (status, headers, body) = post_with_token(&url("/upload"), second_token, "img2").await;
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
        let (status, headers, _) = post_with_token(&url("/upload"), TOKEN, "img").await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(header(&headers, "pay-balance"), "0");
    });
}

/// A link that holds each Prepare for `delay` ms before passing it on (0: at once).
struct SlowLink {
    inner: ilp_actors::link::memory::MemoryLink,
    delay: Arc<std::sync::atomic::AtomicU64>,
}

impl Link for SlowLink {
    fn send_prepare(
        &self,
        prepare: ilp::packet::Prepare,
    ) -> futures::future::BoxFuture<
        'static,
        Result<ilp_actors::messages::PacketResult, ilp_actors::link::LinkError>,
    > {
        let delay = Duration::from_millis(self.delay.load(Ordering::SeqCst));
        let sent = self.inner.send_prepare(prepare);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            sent.await
        })
    }

    fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    fn attach(&self, account: actix::Recipient<ilp_actors::messages::IncomingPrepare>) {
        self.inner.attach(account)
    }
}

/// The seed's two sides: Ankita's node `test.ankita` (the local account `api`, USD/4, paid by
/// the proxy in front of a plain upstream; `POST /upload` costs 250) and Marat's node
/// `test.marat` (the local account `marat`, USD/2, funded with 10 000 cents), peered over a
/// memory link (Marat's end holds Prepares for `delay` ms), and Marat's admin API.
struct Story {
    marat: ilp_actors::node::Node,
    ankita: ilp_actors::node::Node,
    proxy: PaidProxy,
    proxy_addr: SocketAddr,
    served: Arc<AtomicUsize>,
    delay: Arc<std::sync::atomic::AtomicU64>,
    admin: SocketAddr,
    _admin_server: AdminServer,
    _upstream: tokio::task::JoinHandle<()>,
}

const MARAT_FUNDS: i64 = 10_000;

async fn story() -> Story {
    let (upstream_addr, served, upstream_task) = upstream().await;
    let usd = |scale: u8| format!("asset_code = \"USD\"\nasset_scale = {scale}\n");
    let rates = "[rates]\nbackend = \"static\"\n[rates.static]\nUSD = \"1\"\n";
    let ankita_text = format!(
        "{}{rates}[routing]\ndefault_route = \"\"\n\
         static_routes = [{{ prefix = \"test.marat\", account = \"marat\" }}]\n\
         [accounts.marat]\nrelation = \"peer\"\n{}link = {{ type = \"memory\" }}\n\
         [accounts.marat.rate_limit]\nenabled = false\n\
         [accounts.api]\nrelation = \"child\"\n{}link = {{ type = \"local\" }}\n\
         [paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"http://{upstream_addr}/v1\"\n\
         account = \"api\"\nupstream_timeout_ms = 5000\n\
         [[paid_http.routes]]\nmethod = \"POST\"\npath_prefix = \"/upload\"\nprice = 250\n",
        node_base("ankita"),
        usd(2),
        usd(4),
    );
    let marat_text = format!(
        "{}{rates}[routing]\ndefault_route = \"\"\n\
         static_routes = [{{ prefix = \"test.ankita\", account = \"ankita\" }}]\n\
         [accounts.ankita]\nrelation = \"peer\"\n{}link = {{ type = \"memory\" }}\n\
         [accounts.ankita.rate_limit]\nenabled = false\n\
         [accounts.marat]\nrelation = \"child\"\n{}link = {{ type = \"local\" }}\n\
         [accounts.marat.rate_limit]\nenabled = false\n",
        node_base("marat"),
        usd(2),
        usd(2),
    );
    let parse = |text: &str| Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (ankita_config, marat_config) = (parse(&ankita_text), parse(&marat_text));
    let (to_ankita, to_marat) = ilp_actors::link::memory::MemoryLink::pair();
    let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let slow = SlowLink {
        inner: to_ankita,
        delay: delay.clone(),
    };
    let (marat, _, _) = start_wallet_node(
        &marat_config,
        BTreeMap::from([(AccountId::from("ankita"), Arc::new(slow) as Arc<dyn Link>)]),
        Clock::system(),
    );
    let (ankita, _, _) = start_wallet_node(
        &ankita_config,
        BTreeMap::from([(
            AccountId::from("marat"),
            Arc::new(to_marat) as Arc<dyn Link>,
        )]),
        Clock::system(),
    );
    marat
        .balance
        .send(ilp_actors::messages::AdjustBalance {
            account: AccountId::from("marat"),
            adjust: -MARAT_FUNDS,
        })
        .await
        .unwrap()
        .unwrap();
    let (listener, proxy_addr) = common::listener().await;
    let proxy = PaidProxy::serve(listener, None, &ankita_config, &ankita).unwrap();
    let (listener, admin) = common::listener().await;
    let admin_server =
        AdminServer::serve(listener, AdminState::new(&marat, &marat_config)).unwrap();
    Story {
        marat,
        ankita,
        proxy,
        proxy_addr,
        served,
        delay,
        admin,
        _admin_server: admin_server,
        _upstream: upstream_task,
    }
}

impl Story {
    /// Marat's `POST /accounts/marat/http`: status and JSON answer.
    async fn fetch(&self, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        let (status, _, text) = call(
            Method::POST,
            &format!("http://{}/accounts/marat/http", self.admin),
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .await;
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }

    fn upload_url(&self) -> String {
        format!("http://{}/upload", self.proxy_addr)
    }

    /// Ankita's tokens and what they spent.
    async fn tokens(&self) -> (Vec<(String, u64)>, u64) {
        self.ankita
            .balance
            .send(GetTokens {
                account: AccountId::from("api"),
            })
            .await
            .unwrap()
    }

    /// What Marat's account has spent of its funds, in cents.
    async fn marat_spent(&self) -> u64 {
        u64::try_from(common::balance(&self.marat, "marat").await + MARAT_FUNDS).unwrap()
    }

    /// What Ankita's `api` account was paid, in its units (USD/4).
    async fn api_paid(&self) -> u64 {
        u64::try_from(-common::balance(&self.ankita, "api").await).unwrap()
    }
}

fn paid(value: &serde_json::Value) -> u64 {
    value["paid"].as_str().unwrap().parse().unwrap()
}

/// Seed 001's story: Marat's tool uploads through Ankita's paid proxy from an account on
/// another node. The upstream sees the upload once; what Marat's account paid in cents is what
/// Ankita's account was paid in its units; the token holds what arrived less the price, and
/// `Pay-Balance` says so. Without a maximum price nothing is paid; a maximum below the cost
/// pays nothing; the next upload uses what the token holds.
#[test]
fn marat_uploads_through_ankitas_proxy_from_another_node_and_the_books_agree() {
    run(|| async {
        let s = story().await;
        let upload = |max_price: Option<u64>| {
            let mut body = serde_json::json!({
                "method": "POST",
                "url": s.upload_url(),
                "headers": {"Content-Type": "image/png"},
                "body": "picture one",
            });
            if let Some(max) = max_price {
                body["max_price"] = serde_json::json!(max.to_string());
            }
            body
        };

        // No maximum: the 402 is reported, nothing paid, nothing uploaded.
        let (status, answer) = s.fetch(upload(None)).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
        assert_eq!(answer["asked"], "250");
        assert_eq!(paid(&answer), 0);
        // A maximum below what 250 units of USD/4 cost in cents: the quote is refused, nothing
        // fulfillable is sent.
        let (status, answer) = s.fetch(upload(Some(2))).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("more than the 2 allowed"),
            "{answer}"
        );
        assert_eq!(s.marat_spent().await, 0);
        assert_eq!(s.served.load(Ordering::SeqCst), 0);

        // Paid: 3 cents deliver 300 units, 250 buy the upload, 50 stay on the token.
        let (status, answer) = s.fetch(upload(Some(10))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["body"], "upstream: POST /v1/upload picture one");
        assert_eq!(s.served.load(Ordering::SeqCst), 1);
        let token = answer["token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 22, "16 bytes, unpadded base64url");
        let payment = &answer["payments"][0];
        assert_eq!(payment["status"], "completed", "{answer}");
        assert_eq!(payment["protocol"], "psk2");
        let spent = s.marat_spent().await;
        assert_eq!(paid(&answer), spent);
        assert_eq!(spent, 3);
        assert_eq!(s.api_paid().await, 300);
        let pay_balance = answer["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "pay-balance")
            .map(|h| h[1].as_str().unwrap().to_owned());
        assert_eq!(pay_balance.as_deref(), Some("50"), "{answer}");
        let (tokens, spent_on_api) = s.tokens().await;
        assert_eq!(tokens, vec![(token.clone(), 50)]);
        assert_eq!(spent_on_api, 250);

        // The next upload pays only what the token lacks (200 units: 3 cents at most), with the
        // same token: the server's books stay whole.
        let (status, answer) = s.fetch(upload(Some(10))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["token"], token.as_str());
        assert_eq!(s.served.load(Ordering::SeqCst), 2);
        let spent = s.marat_spent().await;
        let (tokens, spent_on_api) = s.tokens().await;
        assert_eq!(spent_on_api, 500);
        assert_eq!(spent * 100, s.api_paid().await);
        assert_eq!(tokens[0].1 + spent_on_api, s.api_paid().await);
        // A free route costs nothing.
        let (status, answer) = s
            .fetch(serde_json::json!({"url": format!("http://{}/about", s.proxy_addr)}))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["body"], "upstream: GET /v1/about ");
        assert_eq!(paid(&answer), 0);
        assert_eq!(s.marat_spent().await, spent);
    });
}

/// The price rises between the 402 that quoted it and the payment: the payment made on the old
/// price stays on the token, the request is refused 402 with the new price and that balance,
/// and the client pays only the difference (or, with too low a maximum, nothing more).
#[test]
fn a_price_that_rises_between_quote_and_payment_costs_only_the_difference() {
    run(|| async {
        let s = story().await;
        let url = url::Url::parse(&s.upload_url()).unwrap();
        let token = s.marat.http_client.token("marat", &url).await.unwrap();
        // What a client sees of the upload with the token, as it would send it.
        let upload_with = |token: &ilp::paid_http::PayToken| {
            let (url, value) = (url.to_string(), token.header_value());
            async move {
                let (status, headers, _) = post_with_token(&url, &value, "x").await;
                (status, headers)
            }
        };
        // The quote: 402 at 250.
        let (status, headers) = upload_with(&token).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        let pay = Pay::parse(&header(&headers, "pay")).unwrap();
        assert_eq!(pay.price, Some(250));
        // The operator raises the price before the client pays (a reload does this).
        let mut prices = ilp::paid_http::PriceTable::default();
        prices.routes.push(ilp::paid_http::Route {
            method: Some("POST".into()),
            path_prefix: "/upload".into(),
            price: 400,
        });
        s.proxy.set_prices(prices);
        // The client pays the quoted 250 as it would after that 402.
        let view = s
            .marat
            .payer
            .pay_direct(
                "marat",
                ilp_actors::payer::DirectPayment {
                    to: url.to_string(),
                    destination: pay.destination.clone(),
                    shared_secret: pay.shared_secret,
                    protocol: ilp::stream::credentials::Protocol::Psk2,
                    deliver: 250,
                    max_source: 10,
                    psk2_data: token.as_bytes().to_vec(),
                },
            )
            .await
            .unwrap();
        assert_eq!(view.status, ilp_actors::payer::Status::Completed);
        assert_eq!(view.progress.sent, 3);
        // The same request now: 402 at 400, the 300 paid are on the token.
        let (status, headers) = upload_with(&token).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(header(&headers, "pay-balance"), "300");
        assert_eq!(
            Pay::parse(&header(&headers, "pay")).unwrap().price,
            Some(400)
        );
        assert_eq!(s.served.load(Ordering::SeqCst), 0);
        // A client allowed 1 cent more may not pay the 2 cents that 100 units can cost at 1 %
        // slippage: nothing more is paid, the balance stays.
        let body = |max: &str| serde_json::json!({"method": "POST", "url": url.as_str(), "body": "x", "max_price": max});
        let (status, answer) = s.fetch(body("1")).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
        assert_eq!(answer["asked"], "400");
        assert_eq!(answer["balance"], "300");
        assert_eq!(s.marat_spent().await, 3);
        assert_eq!(s.tokens().await.0, vec![(token.id(), 300)]);
        // Allowed enough: it pays the 100 lacking (1 cent, at the path's rate) and is served
        // once.
        let (status, answer) = s.fetch(body("5")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(paid(&answer), 1);
        assert_eq!(s.served.load(Ordering::SeqCst), 1);
        assert_eq!(s.marat_spent().await, 4);
        assert_eq!(s.api_paid().await, 400);
        assert_eq!(s.tokens().await, (vec![(token.id(), 0)], 400));
    });
}

/// A client whose request times out while its payment is still on its way: the payment goes
/// on, what it delivers stays on the token, and the next request is served with it, paying
/// nothing more.
#[test]
fn a_payment_that_lands_after_its_request_timed_out_stays_on_the_token() {
    run(|| async {
        let s = story().await;
        // Each Prepare Marat's node sends waits 2.5 s on the link: the payment takes seconds.
        s.delay.store(2_500, Ordering::SeqCst);
        let body = serde_json::json!({
            "method": "POST",
            "url": s.upload_url(),
            "body": "late",
            "max_price": "10",
            "timeout_ms": 1500,
        });
        let (status, answer) = s.fetch(body.clone()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("the payment goes on"),
            "{answer}"
        );
        // The payment under way is named, to be followed.
        assert_eq!(answer["payments"][0]["status"], "paying", "{answer}");
        let id = answer["payments"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(s.served.load(Ordering::SeqCst), 0);
        // The payment lands after the request gave up.
        let mut held = 0;
        for _ in 0..400 {
            held = s.tokens().await.0.first().map_or(0, |t| t.1);
            if held >= 250 && s.marat.payer.running() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(held, 300, "the token holds what arrived");
        let ended = s.marat.payer.get("marat", &id).await.unwrap();
        assert_eq!(ended["status"], "completed", "{ended}");
        s.delay.store(0, Ordering::SeqCst);
        let spent = s.marat_spent().await;
        assert_eq!(spent, 3);
        let (status, answer) = s.fetch(body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(paid(&answer), 0, "served with what the token held");
        assert_eq!(answer["body"], "upstream: POST /v1/upload late");
        assert_eq!(s.served.load(Ordering::SeqCst), 1);
        assert_eq!(s.marat_spent().await, 3);
        assert_eq!(
            s.tokens().await,
            (
                vec![(answer["token"].as_str().unwrap().to_owned(), 50)],
                250
            )
        );
    });
}

/// A server that keeps the money: it answers 402 with the same price and a balance of 0 after
/// being paid. The client pays once, not again, and says so (502 with what it paid).
#[test]
fn a_server_that_does_not_credit_the_payment_is_not_paid_again() {
    run(|| async {
        let s = story().await;
        // Real credentials to pay (Ankita's, for Marat's token), served by a liar.
        let (liar, liar_addr) = common::listener().await;
        let liar_url = url::Url::parse(&format!("http://{liar_addr}/upload")).unwrap();
        let token = s.marat.http_client.token("marat", &liar_url).await.unwrap();
        let (_, headers, _) = call(
            Method::OPTIONS,
            &s.upload_url(),
            &[("pay-token", &token.header_value())],
            "",
        )
        .await;
        let pay = header(&headers, "pay");
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let _liar = tokio::spawn(async move {
            while let Ok((stream, _)) = liar.accept().await {
                let (pay, count) = (pay.clone(), count.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let response = Response::builder()
                            .status(StatusCode::PAYMENT_REQUIRED)
                            .header("pay", pay.as_str())
                            .header("pay-balance", "0")
                            .body(Full::new(Bytes::from_static(b"pay me")))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let (status, answer) = s
            .fetch(serde_json::json!({
                "method": "POST", "url": liar_url.as_str(), "body": "x", "max_price": "100"
            }))
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("asks again for 250"),
            "{answer}"
        );
        assert_eq!(paid(&answer), 3, "paid once");
        assert_eq!(s.marat_spent().await, 3);
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    });
}
