//! The node as a sender: a local account pays a payment pointer served by the node's own SPSP
//! server (127.0.0.1, port 0), through the Router and the BalanceKeeper like any packet. The
//! payer's debit always equals what was sent and fulfilled, the receiver's credit what it
//! said arrived. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use common::{
    balance, finished, listener, node_base, payment_request as request, run, start_wallet_node,
};
use ilp::config::Config;
use ilp_actors::clock::Clock;
use ilp_actors::http_serve::ServeOptions;
use ilp_actors::messages::{AccountId, AdjustBalance};
use ilp_actors::node::Node;
use ilp_actors::payer::StartError;
use ilp_actors::payment_log::{read_events, Direction, PaymentEvent};
use ilp_actors::spsp_server::{SpspAccounts, SpspServer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A node with the local accounts `alice` (USD/2, pays) and `shop` (`shop_asset`, receives),
/// static rates USD = 1, EUR = 0.5, and `spread`.
fn config(spread: &str, shop_asset: &str) -> Config {
    parse(&config_text(spread, shop_asset))
}

fn parse(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The text of [`config`].
fn config_text(spread: &str, shop_asset: &str) -> String {
    format!(
        "{}[rates]\nbackend = \"static\"\n[rates.static]\nUSD = \"1\"\nEUR = \"0.5\"\n\
         [sender]\nallow_http = true\nidle_timeout_ms = 5000\n\
         [accounts.alice]\nrelation = \"child\"\nasset_code = \"USD\"\nasset_scale = 2\n\
         link = {{ type = \"local\" }}\n\
         [accounts.alice.rate_limit]\nenabled = false\n\
         [accounts.shop]\nrelation = \"child\"\n{shop_asset}\nlink = {{ type = \"local\" }}\n",
        node_base("node")
    )
    .replace("spread = \"0\"", &format!("spread = \"{spread}\""))
}

const USD: &str = "asset_code = \"USD\"\nasset_scale = 2";
const EUR: &str = "asset_code = \"EUR\"\nasset_scale = 2";

/// The node, its SPSP server, and `alice` funded with `funds`.
async fn start(config: &Config, funds: i64) -> (Node, SpspServer, String) {
    let (node, _wallet, _) = start_wallet_node(
        config,
        BTreeMap::new(),
        Clock::starting_at(1_700_000_000_000),
    );
    let (socket, addr) = listener().await;
    let server = SpspServer::serve(
        socket,
        &ServeOptions {
            h2: true,
            header_timeout: Duration::from_secs(5),
            tls: None,
            max_connections: 16,
        },
        node.receivers.clone(),
        node.address.clone(),
        SpspAccounts::from_config(config),
        0,
    )
    .unwrap();
    node.balance
        .send(AdjustBalance {
            account: AccountId::from("alice"),
            adjust: -funds,
        })
        .await
        .unwrap()
        .unwrap();
    (node, server, format!("http://{addr}/shop"))
}

/// Pays `amount` from alice to `to` and follows the payment to its end.
async fn pay(node: &Node, to: &str, amount: u64) -> Value {
    let started = node
        .payer
        .start("alice", request(to, amount), None, false)
        .await
        .unwrap();
    finished(node, started["id"].as_str().unwrap()).await
}

/// `account`'s events once there are `n` (bounded: an outgoing payment's event lands with the
/// keeper's next commit after the payment ended).
async fn events(node: &Node, account: &str, n: usize) -> Vec<PaymentEvent> {
    for _ in 0..500 {
        let events = read_events(node.store.as_ref(), account, 0, 100).unwrap();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{account} never had {n} events");
}

fn amount(v: &Value) -> i64 {
    v["amount"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_local_account_pays_another_through_the_node_and_the_books_mirror() {
    run(|| async {
        let config = config("0", USD);
        let (node, _server, to) = start(&config, 1_000_000).await;
        let started = node
            .payer
            .start("alice", request(&to, 250_000), Some("k1"), false)
            .await
            .unwrap();
        let id = started["id"].as_str().unwrap().to_owned();
        let view = finished(&node, &id).await;
        assert_eq!(view["status"], "completed", "{view:#}");
        let sent = amount(&view["progress"]["sent"]);
        let delivered = amount(&view["progress"]["delivered"]);
        assert_eq!(sent, 250_000);
        assert_eq!(delivered, 250_000, "same asset, no spread");
        assert_eq!(balance(&node, "alice").await, -1_000_000 + sent);
        assert_eq!(balance(&node, "shop").await, -delivered);
        assert_eq!(view["quote"]["destination"]["code"], "USD");
        // The payment is in alice's event log, as shop's packets are in shop's.
        let outgoing = events(&node, "alice", 1).await;
        assert_eq!(outgoing.len(), 1, "{outgoing:?}");
        let event = &outgoing[0];
        assert_eq!(event.direction, Direction::Outgoing);
        assert_eq!((event.seq, event.amount.as_str()), (1, "250000"));
        assert_eq!(event.protocol, "stream");
        let summary = event.payment.as_ref().unwrap();
        assert_eq!(summary.id, id);
        assert_eq!(summary.to, to);
        assert_eq!(summary.status, "completed");
        assert_eq!(summary.delivered, delivered.to_string());
        assert_eq!(summary.destination_code.as_deref(), Some("USD"));
        assert_eq!(summary.error_code, None);
        let incoming = events(&node, "shop", 1).await;
        assert!(incoming.iter().all(|e| e.direction == Direction::Incoming
            && e.payment.is_none()
            && e.from_account == "alice"));
        let credited: u64 = incoming
            .iter()
            .map(|e| e.amount.parse::<u64>().unwrap())
            .sum();
        assert_eq!(credited, 250_000);
        // The same key and request: the same payment, nothing paid again.
        let again = node
            .payer
            .start("alice", request(&to, 250_000), Some("k1"), false)
            .await
            .unwrap();
        assert_eq!(again["id"], started["id"]);
        assert_eq!(balance(&node, "alice").await, -750_000);
        // The same key with another request is refused.
        assert_eq!(
            node.payer
                .start("alice", request(&to, 1), Some("k1"), false)
                .await
                .unwrap_err(),
            StartError::KeyReused
        );
    });
}

#[test]
fn a_conversion_within_the_slippage_is_paid_and_one_beyond_it_is_refused_unpaid() {
    run(|| async {
        // 1 USD buys 0.5 EUR; the node keeps 0.2 %: within 1 % slippage.
        let config_ok = config("0.002", EUR);
        let (node, _server, to) = start(&config_ok, 1_000_000).await;
        let view = pay(&node, &to, 100_000).await;
        assert_eq!(view["status"], "completed", "{view:#}");
        let delivered = amount(&view["progress"]["delivered"]);
        assert!((49_500..=49_900).contains(&delivered), "{delivered}");
        assert_eq!(balance(&node, "alice").await, -900_000);
        assert_eq!(balance(&node, "shop").await, -delivered);
        let low: f64 = view["quote"]["rate"]["low"]["decimal"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let real = delivered as f64 / 100_000.0;
        assert!(
            low <= real + 1e-9,
            "the quote's low end {low} is below the real rate {real}"
        );
        drop(node);

        // The node keeps 5 %: refused before any money moves.
        let config_steal = config("0.05", EUR);
        let (node, _server, to) = start(&config_steal, 1_000_000).await;
        let view = pay(&node, &to, 100_000).await;
        assert_eq!(view["status"], "failed");
        assert_eq!(
            view["error"]["kind"], "InsufficientExchangeRate",
            "{view:#}"
        );
        assert_eq!(amount(&view["progress"]["sent"]), 0);
        assert_eq!(balance(&node, "alice").await, -1_000_000);
        assert_eq!(balance(&node, "shop").await, 0);
        // A failed payment is in the log too, with why.
        let failed = events(&node, "alice", 1).await;
        let summary = failed[0].payment.as_ref().unwrap();
        assert_eq!(
            (failed[0].amount.as_str(), summary.status.as_str()),
            ("0", "failed")
        );
        assert!(
            summary
                .error
                .as_deref()
                .unwrap()
                .starts_with("InsufficientExchangeRate"),
            "{summary:?}"
        );
    });
}

#[test]
fn a_payment_larger_than_the_funds_is_refused_before_sending() {
    run(|| async {
        let config = config("0", USD);
        let (node, _server, to) = start(&config, 1_000).await;
        let err = node
            .payer
            .start("alice", request(&to, 5_000), None, false)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StartError::Payment(ilp::sender::PayError::InsufficientFunds {
                    needed: 5_000,
                    available: 1_000
                })
            ),
            "{err:?}"
        );
        // Not a local account, or no such account.
        assert!(matches!(
            node.payer
                .start("wallet", request(&to, 1), None, false)
                .await,
            Err(StartError::NoAccount(_))
        ));
        assert_eq!(balance(&node, "alice").await, -1_000);
    });
}

#[test]
fn a_quote_names_both_assets_and_sends_no_money_until_paid() {
    run(|| async {
        let config = config("0.002", EUR);
        let (node, _server, to) = start(&config, 1_000_000).await;
        let quote = node
            .payer
            .start("alice", request(&to, 10_000), None, true)
            .await
            .unwrap();
        assert_eq!(quote["status"], "quoted", "{quote:#}");
        assert_eq!(quote["quote"]["source"]["code"], "USD");
        assert_eq!(quote["quote"]["destination"]["code"], "EUR");
        assert_eq!(quote["quote"]["max_source_amount"]["amount"], "10000");
        assert_eq!(balance(&node, "alice").await, -1_000_000);
        assert_eq!(balance(&node, "shop").await, 0);
        let id = quote["id"].as_str().unwrap().to_owned();
        let mut pay = request(&to, 10_000);
        pay.quote_id = Some(id.clone());
        pay.to = None;
        pay.amount = None;
        node.payer.start("alice", pay, None, false).await.unwrap();
        let view = finished(&node, &id).await;
        assert_eq!(view["status"], "completed", "{view:#}");
        assert_eq!(balance(&node, "alice").await, -990_000);
        // A paid quote is one payment in the log.
        let logged = events(&node, "alice", 1).await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].payment.as_ref().unwrap().id, id);
        assert_eq!(logged[0].amount, "10000");
    });
}

/// alice may send 100 000 units a second: the node answers T04 beyond, the sender slows down
/// and completes, and the books are what was fulfilled, not what was tried.
#[test]
fn a_throughput_limit_slows_the_payment_and_it_completes() {
    run(|| async {
        let config = parse(&config_text("0", USD).replace(
            "[accounts.alice.rate_limit]\n",
            "[accounts.alice.throughput]\nincoming_amount_per_second = 100000\n\
             [accounts.alice.rate_limit]\n",
        ));
        let (node, _server, to) = start(&config, 1_000_000).await;
        let view = pay(&node, &to, 250_000).await;
        assert_eq!(view["status"], "completed", "{view:#}");
        let t04 = view["progress"]["packets"]["rejected"]["T04"]
            .as_u64()
            .unwrap_or(0);
        assert!(t04 > 0, "the limit was never hit: {view:#}");
        let sent = amount(&view["progress"]["sent"]);
        let delivered = amount(&view["progress"]["delivered"]);
        assert_eq!((sent, delivered), (250_000, 250_000));
        assert_eq!(balance(&node, "alice").await, -1_000_000 + sent);
        assert_eq!(balance(&node, "shop").await, -delivered);
    });
}

/// A quote paid after it expired sends nothing.
#[test]
fn a_quote_paid_after_it_expired_sends_nothing() {
    run(|| async {
        let config =
            parse(&config_text("0", USD).replace("[sender]\n", "[sender]\nquote_ttl_ms = 300\n"));
        let (node, _server, to) = start(&config, 1_000_000).await;
        let quote = node
            .payer
            .start("alice", request(&to, 10_000), None, true)
            .await
            .unwrap();
        assert_eq!(quote["status"], "quoted", "{quote:#}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut pay = request(&to, 10_000);
        pay.quote_id = Some(quote["id"].as_str().unwrap().to_owned());
        pay.to = None;
        pay.amount = None;
        let err = node
            .payer
            .start("alice", pay, None, false)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StartError::NoQuote(_) | StartError::Payment(ilp::sender::PayError::QuoteExpired)
            ),
            "{err:?}"
        );
        assert_eq!(balance(&node, "alice").await, -1_000_000);
        assert_eq!(balance(&node, "shop").await, 0);
    });
}
