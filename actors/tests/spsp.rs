//! The SPSP server on a real socket (127.0.0.1, port 0): credentials for local accounts over
//! HTTP/1.1 and HTTP/2, the headers clients rely on, every refusal, and credentials that pay:
//! a STREAM packet built from an SPSP answer is credited to the account, with a receipt the
//! requester's secret verifies. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use bytes::Bytes;
use common::{http_request, listener, node_base, run, start_wallet_node};
use hyper::{Method, StatusCode, Version};
use ilp::config::Config;
use ilp::packet::{Fulfill, Prepare, Reject, Timestamp};
use ilp::spsp::{ReceiptSetup, SpspResponse};
use ilp::stream::{Frame, Receipt, StreamKeys};
use ilp_actors::clock::Clock;
use ilp_actors::http_serve::ServeOptions;
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::node::Node;
use ilp_actors::peer_account::NodeAddress;
use ilp_actors::receiver::Receivers;
use ilp_actors::spsp_server::{SpspAccounts, SpspServer};
use std::collections::BTreeMap;
use std::time::Duration;

const START_MS: u64 = 1_700_000_000_000;

fn config() -> Config {
    let text = format!(
        "{}[accounts.shop]\nrelation = \"child\"\nasset_code = \"EUR\"\nasset_scale = 2\n\
         link = {{ type = \"local\" }}\n\
         [listeners.spsp]\nbind = \"127.0.0.1:0\"\ndefault_account = \"shop\"\n",
        node_base("node")
    );
    let text = text.replace(
        "spread = \"0\"",
        "spread = \"0\"\nasset_code = \"EUR\"\nasset_scale = 2",
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn options() -> ServeOptions {
    ServeOptions {
        h2: true,
        header_timeout: Duration::from_secs(5),
        tls: None,
        max_connections: 16,
    }
}

async fn start() -> (Node, MemoryLink, SpspServer, String) {
    let config = config();
    let (node, wallet, _) =
        start_wallet_node(&config, BTreeMap::new(), Clock::starting_at(START_MS));
    let (socket, addr) = listener().await;
    let server = SpspServer::serve(
        socket,
        &options(),
        node.receivers.clone(),
        node.address.clone(),
        SpspAccounts::from_config(&config),
        60,
    )
    .unwrap();
    (node, wallet, server, format!("http://{addr}"))
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut request = hyper::Request::builder().uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
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
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, headers, body)
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// A fulfillable STREAM Prepare paying `amount` on stream 1 of `credentials`.
fn stream_prepare(credentials: &SpspResponse, sequence: u64, amount: u64) -> Prepare {
    common::stream_payment(
        &credentials.destination_account,
        &credentials.shared_secret,
        sequence,
        amount,
        Timestamp::from_unix_millis(START_MS + 30_000),
    )
}

async fn pay(wallet: &MemoryLink, prepare: Prepare) -> Result<Fulfill, Reject> {
    wallet.send_prepare(prepare).await.unwrap()
}

#[test]
fn credentials_over_http1_and_http2_pay_the_account() {
    run(|| async {
        let (node, wallet, _server, url) = start().await;
        let (status, headers, body) = get(
            &format!("{url}/shop"),
            &[("accept", "application/spsp4+json")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), "application/spsp4+json");
        assert_eq!(header(&headers, "cache-control"), "max-age=60");
        assert_eq!(header(&headers, "access-control-allow-origin"), "*");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json.get("receipts_enabled").is_none());
        let secret = json["shared_secret"].as_str().unwrap();
        assert!(secret.ends_with('='), "padded base64: {secret}");
        let credentials = SpspResponse::decode(&body).unwrap();
        assert!(credentials
            .destination_account
            .as_str()
            .starts_with("test.node.shop."));
        pay(&wallet, stream_prepare(&credentials, 1, 250))
            .await
            .expect("fulfilled");
        assert_eq!(common::balance(&node, "shop").await, -250);
        assert_eq!(common::balance(&node, "wallet").await, 250);

        // The default account over HTTP/2 (prior knowledge); each answer is a new connection.
        let (status, version, body) = http_request(
            true,
            Method::GET,
            &format!("{url}/.well-known/pay"),
            &[("accept", "application/spsp4+json")],
            Bytes::new(),
        )
        .await;
        assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
        let other = SpspResponse::decode(&body).unwrap();
        assert_ne!(other.shared_secret, credentials.shared_secret);
        pay(&wallet, stream_prepare(&other, 1, 50))
            .await
            .expect("fulfilled");
        assert_eq!(common::balance(&node, "shop").await, -300);
    });
}

#[test]
fn receipts_are_signed_with_the_requesters_secret() {
    run(|| async {
        let (_node, wallet, _server, url) = start().await;
        let setup = ReceiptSetup {
            nonce: [4; 16],
            secret: [6; 32],
        };
        let [(nonce_name, nonce), (secret_name, secret)] = setup.to_headers();
        let (status, headers, body) = get(
            &format!("{url}/shop"),
            &[(nonce_name, nonce.as_str()), (secret_name, secret.as_str())],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "cache-control"), "no-store");
        let credentials = SpspResponse::decode(&body).unwrap();
        assert_eq!(credentials.receipts_enabled, Some(true));
        let keys = StreamKeys::new(&credentials.shared_secret);
        let mut total = 0;
        for (sequence, amount) in [(1, 100), (2, 30)] {
            total += amount;
            let fulfill = pay(&wallet, stream_prepare(&credentials, sequence, amount))
                .await
                .expect("fulfilled");
            let reply = keys.decrypt_packet(fulfill.data()).unwrap();
            let receipt = reply
                .frames
                .iter()
                .find_map(|f| match f {
                    Frame::StreamReceipt { receipt, .. } => Some(receipt.clone()),
                    _ => None,
                })
                .expect("a receipt");
            assert!(Receipt::verify(&receipt, &[7; 32]).is_err());
            let receipt = Receipt::verify(&receipt, &setup.secret).unwrap();
            assert_eq!(receipt.nonce, setup.nonce);
            assert_eq!((receipt.stream_id, receipt.total_received), (1, total));
        }
    });
}

#[test]
fn psk2_credentials_for_clients_that_accept_only_the_older_type() {
    run(|| async {
        let (_node, _wallet, _server, url) = start().await;
        let (status, headers, body) = get(
            &format!("{url}/shop"),
            &[("accept", "application/spsp+json")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), "application/spsp+json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["asset_info"]["code"], "EUR");
        assert_eq!(json["asset_info"]["scale"], 2);
        // A client that takes both gets STREAM.
        let (_, headers, _) = get(
            &format!("{url}/shop"),
            &[("accept", "application/spsp4+json, application/spsp+json")],
        )
        .await;
        assert_eq!(header(&headers, "content-type"), "application/spsp4+json");
    });
}

#[test]
fn refusals_have_their_status_and_an_spsp_error_body() {
    run(|| async {
        let (_node, _wallet, _server, url) = start().await;
        let error_id = |body: &Bytes| {
            let json: serde_json::Value = serde_json::from_slice(body).unwrap();
            json["id"].as_str().unwrap().to_owned()
        };
        let (status, _, body) = get(&format!("{url}/nobody"), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_id(&body), "InvalidReceiverError");
        let (status, _, _) = get(&format!("{url}/shop/extra"), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&format!("{url}/.well-known/open-payments"), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&format!("{url}/shop?amount=5"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, body) = get(&format!("{url}/shop"), &[("accept", "text/html")]).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(error_id(&body), "NotAcceptableError");
        let (status, _, _) = get(
            &format!("{url}/shop"),
            &[("accept", "application/spsp4+json;q=0, text/html")],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        let (status, _, body) = get(
            &format!("{url}/shop"),
            &[("receipt-nonce", "BAUEBAUEBAUEBAUEBAUEBA==")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_id(&body), "InvalidReceiptHeadersError");
        let (status, _, _) = get(
            &format!("{url}/shop"),
            &[("receipt-nonce", "short"), ("receipt-secret", "short")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, _) = http_request(
            false,
            Method::POST,
            &format!("{url}/shop"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = http_request(
            false,
            Method::OPTIONS,
            &format!("{url}/shop"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    });
}

#[test]
fn no_credentials_before_the_node_knows_its_address() {
    run(|| async {
        let (socket, addr) = listener().await;
        let mut accounts = SpspAccounts::default();
        accounts.accounts.insert(
            "shop".to_owned(),
            ilp_actors::spsp_server::SpspAccount {
                segment: "shop".to_owned(),
                asset_code: "EUR".to_owned(),
                asset_scale: 2,
            },
        );
        let server = SpspServer::serve(
            socket,
            &options(),
            Receivers::new(&[1; 32]),
            NodeAddress::new(None),
            accounts.clone(),
            0,
        )
        .unwrap();
        let (status, _, _) = get(&format!("http://{addr}/shop"), &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // A reload that removes the account: 404 from then on.
        server.set_accounts(SpspAccounts::default());
        let (status, _, _) = get(&format!("http://{addr}/shop"), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}

#[test]
fn credentials_over_tls_with_http2_and_http1_by_alpn() {
    run(|| async {
        let pki = common::Pki::new(
            &format!("ilp-spsp-tls-{}", std::process::id()),
            "spsp test CA",
            Some("spsp"),
        );
        let server_leaf = pki.leaf("server", &["127.0.0.1"]);
        let text = format!(
            "{}[accounts.shop]\nrelation = \"child\"\nlink = {{ type = \"local\" }}\n\
             [listeners.spsp]\nbind = \"127.0.0.1:0\"\n\
             [listeners.spsp.tls]\nenabled = true\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
            node_base("node"),
            common::p(&server_leaf.cert),
            common::p(&server_leaf.key),
        );
        let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (node, wallet, _) =
            start_wallet_node(&config, BTreeMap::new(), Clock::starting_at(START_MS));
        let server = SpspServer::start(config.listeners.spsp.as_ref().unwrap(), &node, &config)
            .await
            .unwrap();
        assert_eq!(server.scheme(), "https");
        let url = format!("https://127.0.0.1:{}/shop", server.local_addr().port());
        let trust = ilp::config::ClientTlsConfig {
            ca_path: Some(pki.ca_path()),
            ..Default::default()
        };
        for h2 in [true, false] {
            let tls = ilp_actors::tls::client_config(&trust, "test").unwrap();
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only();
            let connector = if h2 {
                builder.enable_http2().build()
            } else {
                builder.enable_http1().build()
            };
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .http2_only(h2)
                    .build(connector);
            let request = hyper::Request::get(&url)
                .header("accept", "application/spsp4+json")
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let expected = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            assert_eq!(response.version(), expected);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let credentials = SpspResponse::decode(&body).unwrap();
            pay(&wallet, stream_prepare(&credentials, 1, 10))
                .await
                .expect("fulfilled");
        }
        assert_eq!(common::balance(&node, "shop").await, -20);
    });
}
