//! Webhooks on real sockets (127.0.0.1, port 0): a local account's payment events reach an
//! HTTP endpoint that fails at first, in order, signed, each acknowledged one once; the cursor
//! survives a restart of the node, so what was acknowledged is not sent again. Every wait is
//! bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use bytes::Bytes;
use common::{eventually, listener, node_base};
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use ilp::config::Config;
use ilp::stream::credentials::{Credentials, IssueOptions};
use ilp_actors::clock::Clock;
use ilp_actors::http_serve::{self, ServeOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::AccountId;
use ilp_actors::node::{Node, NodeOptions};
use ilp_actors::store::memory::MemoryStore;
use ilp_actors::store::Store;
use serde_json::Value;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "hook-s3cret";

/// One request the endpoint got: its id header, signature header, body, and whether it was
/// acknowledged.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    signature: String,
    body: Bytes,
    acknowledged: bool,
}

/// An endpoint answering 500 to its first `failures` requests, then 200.
async fn endpoint(
    failures: usize,
) -> (
    SocketAddr,
    Arc<Mutex<Vec<Delivery>>>,
    tokio::task::JoinHandle<()>,
) {
    let (socket, addr) = listener().await;
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let options = ServeOptions {
        h2: false,
        header_timeout: Duration::from_secs(5),
        tls: None,
        max_connections: 16,
    };
    let record = got.clone();
    let task = http_serve::serve(socket, &options, move |req, _| {
        let record = record.clone();
        let count = count.clone();
        async move {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (id, signature) = (header("ilp-webhook-id"), header("ilp-signature"));
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let acknowledged = count.fetch_add(1, Ordering::SeqCst) >= failures;
            record.lock().unwrap().push(Delivery {
                id,
                signature,
                body,
                acknowledged,
            });
            let mut response = Response::new(Full::new(Bytes::new()));
            if !acknowledged {
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            Ok::<_, Infallible>(response)
        }
    });
    (addr, got, task)
}

fn config(hook: SocketAddr) -> Config {
    let text = format!(
        "{}[accounts.shop]\nrelation = \"child\"\nlink = {{ type = \"local\" }}\n\
         [accounts.shop.receiver.webhook]\nurl = \"http://{hook}/hook\"\nsecret = \"{SECRET}\"\n",
        node_base("a")
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn start(config: &Config, store: Arc<MemoryStore>) -> (Node, MemoryLink) {
    let (node_end, wallet) = MemoryLink::pair();
    let links = BTreeMap::from([(
        AccountId::from("wallet"),
        Arc::new(node_end) as Arc<dyn Link>,
    )]);
    let node = Node::start(
        config,
        NodeOptions {
            clock: Clock::system(),
            store,
            seed: 1,
            links,
            metrics: None,
        },
    )
    .unwrap();
    (node, wallet)
}

async fn pay(wallet: &MemoryLink, credentials: &Credentials, sequence: u64, amount: u64) {
    let expires = Clock::system().now().checked_add_millis(30_000).unwrap();
    let prepare = common::stream_payment(
        &credentials.destination,
        &credentials.shared_secret,
        sequence,
        amount,
        expires,
    );
    wallet
        .send_prepare(prepare)
        .await
        .unwrap()
        .expect("fulfilled");
}

/// Checks `delivery`'s signature with the core's HMAC: `t=<t>,v1=<hex HMAC(secret, "t.body")>`.
fn signed(delivery: &Delivery) -> bool {
    let Some((t, v1)) = delivery
        .signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&delivery.body);
    let mac = ilp::stream::hmac_sha256(SECRET.as_bytes(), &message);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    hex == v1
}

/// The (seq, amount) of every event the endpoint acknowledged, in the order it got them.
fn acknowledged(got: &Mutex<Vec<Delivery>>) -> Vec<(u64, String)> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|d| d.acknowledged)
        .flat_map(|d| {
            let events: Vec<Value> = serde_json::from_slice(&d.body).unwrap();
            events
                .into_iter()
                .map(|e| {
                    (
                        e["seq"].as_u64().unwrap(),
                        e["amount"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn payment_events_reach_the_webhook_in_order_signed_and_once_past_a_restart() {
    common::run(|| async {
        let (hook, got, _server) = endpoint(1).await;
        let config = config(hook);
        let store = Arc::new(MemoryStore::new());
        let credentials = {
            let (node, wallet) = start(&config, store.clone());
            let shop = ilp::packet::Address::try_from("test.a.shop").unwrap();
            let credentials = node
                .receivers
                .keys()
                .issue("shop", &shop, &IssueOptions::default(), 0, &[3; 12])
                .unwrap();
            for (sequence, amount) in [(1, 10), (2, 20), (3, 30)] {
                pay(&wallet, &credentials, sequence, amount).await;
            }
            eventually(Duration::from_secs(8), "three events acknowledged", || {
                acknowledged(&got).len() >= 3
            })
            .await;
            eventually(Duration::from_secs(5), "the cursor saved", || {
                store.get_record(b"rcv/hook/shop").unwrap() == Some(3u64.to_be_bytes().to_vec())
            })
            .await;
            credentials
        };
        {
            let deliveries = got.lock().unwrap().clone();
            // The first attempt failed and was sent again.
            assert!(!deliveries[0].acknowledged);
            assert!(deliveries.len() >= 2);
            assert!(deliveries.iter().all(signed), "{deliveries:?}");
            // However many events the first attempt carried, it began at the first.
            assert!(deliveries[0].id.starts_with("shop:1-"), "{deliveries:?}");
        }
        assert_eq!(
            acknowledged(&got),
            vec![(1, "10".into()), (2, "20".into()), (3, "30".into())]
        );

        // A new node on the same store goes on after the cursor.
        let (_node, wallet) = start(&config, store.clone());
        pay(&wallet, &credentials, 4, 40).await;
        eventually(
            Duration::from_secs(8),
            "the fourth event acknowledged",
            || acknowledged(&got).len() >= 4,
        )
        .await;
        assert_eq!(
            acknowledged(&got),
            vec![
                (1, "10".into()),
                (2, "20".into()),
                (3, "30".into()),
                (4, "40".into())
            ]
        );
        let last = got.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.id, "shop:4-4");
        assert!(signed(&last));
    });
}
