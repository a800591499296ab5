//! The node as a sender across a path of three real nodes in one process: `test.a`'s local
//! account `alice` (USD/2) pays `test.c`'s local account `shop` (XRP/9) through `test.b`, which
//! holds USD/2 toward A and EUR/6 toward C; the nodes are linked by in-memory links and route
//! with static routes, B and C convert with static rates and take a spread. The quote's rate
//! bounds contain the rate the payment really delivered, and every pair of books mirrors. When
//! the receiver's connector takes more than the slippage allows, the payment is refused after
//! probing, before any fulfillable Prepare is sent: nothing is paid, nothing arrives. Every wait
//! is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use common::{
    balance, finished, listener, node_base, payment_request as request, run, snapshot,
    start_wallet_node,
};
use ilp::config::Config;
use ilp_actors::clock::Clock;
use ilp_actors::http_serve::ServeOptions;
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{AccountId, AdjustBalance};
use ilp_actors::node::Node;
use ilp_actors::payment_log::{read_events, Direction, PaymentEvent};
use ilp_actors::spsp_server::{SpspAccounts, SpspServer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Units of each asset per unit of the common base, the same table on every node.
const RATES: &str = "[rates]\nbackend = \"static\"\n[rates.static]\n\
                     USD = \"1\"\nEUR = \"0.5\"\nXRP = \"2\"\n";
/// What alice holds, in cents.
const FUNDS: i64 = 1_000_000;
/// What each payment sends, in cents.
const AMOUNT: u64 = 100_000;
/// The largest packet the first test allows: its payment crosses the path in several packets.
const MAX_PACKET: u64 = 25_000;
/// The path's exact rate with a spread of 0.2 % on B and on C, in base units: a cent is
/// 0.005 EUR, less 0.2 %: 4 990 EUR/6 units; each is 0.004 XRP, less 0.2 %: 3 992.008 drops
/// (XRP/9), so a cent delivers 19 920 080 drops, with no rounding at any hop.
const PATH_RATE: u64 = 19_920_080;

/// A peer account `id` of asset `asset` (`asset_code` and `asset_scale` lines) over a memory
/// link, without balance or rate limits.
fn peer(id: &str, asset: &str) -> String {
    format!(
        "[accounts.{id}]\nrelation = \"peer\"\n{asset}\nlink = {{ type = \"memory\" }}\n\
         [accounts.{id}.rate_limit]\nenabled = false\n"
    )
}

/// Static routes of `(prefix, account)`, and no default route.
fn routes(routes: &[(&str, &str)]) -> String {
    let list: Vec<String> = routes
        .iter()
        .map(|(prefix, account)| format!("{{ prefix = \"{prefix}\", account = \"{account}\" }}"))
        .collect();
    format!(
        "[routing]\ndefault_route = \"\"\nstatic_routes = [{}]\n",
        list.join(", ")
    )
}

/// Node `test.<name>` with the rate table, `spread`, and `rest` (routes and accounts).
fn config(name: &str, spread: &str, rest: &str) -> Config {
    let text = format!("{}{RATES}{rest}", node_base(name))
        .replace("spread = \"0\"", &format!("spread = \"{spread}\""));
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const USD2: &str = "asset_code = \"USD\"\nasset_scale = 2";
const EUR6: &str = "asset_code = \"EUR\"\nasset_scale = 6";
const XRP9: &str = "asset_code = \"XRP\"\nasset_scale = 9";

/// A: `alice` (USD/2, local, pays; `alice_extra` added to her account) and `b`; everything
/// in `test` it sends to B.
fn config_a(alice_extra: &str) -> Config {
    let rest = format!(
        "{}[sender]\nallow_http = true\nidle_timeout_ms = 5000\n\
         [accounts.alice]\nrelation = \"child\"\n{USD2}\nlink = {{ type = \"local\" }}\n\
         {alice_extra}[accounts.alice.rate_limit]\nenabled = false\n{}",
        routes(&[("test.b", "b"), ("test.c", "b")]),
        peer("b", USD2),
    );
    config("a", "0", &rest)
}

/// B: `a` (USD/2) and `c` (EUR/6), keeping `spread` of each conversion.
fn config_b(spread: &str) -> Config {
    let rest = format!(
        "{}{}{}",
        routes(&[("test.a", "a"), ("test.c", "c")]),
        peer("a", USD2),
        peer("c", EUR6),
    );
    config("b", spread, &rest)
}

/// C: `b` (EUR/6) and the receiving local account `shop` (XRP/9), keeping `spread`.
fn config_c(spread: &str) -> Config {
    let rest = format!(
        "{}{}[accounts.shop]\nrelation = \"child\"\n{XRP9}\nlink = {{ type = \"local\" }}\n",
        routes(&[("test.a", "b"), ("test.b", "b")]),
        peer("b", EUR6),
    );
    config("c", spread, &rest)
}

/// The three nodes, C's SPSP server and the URL paying `shop`.
struct Path {
    a: Node,
    b: Node,
    c: Node,
    _spsp: SpspServer,
    to: String,
    /// B's end of the link to C (its clones share its state: down here is down for B).
    b_to_c: MemoryLink,
}

/// Starts A, B (spread `spread_b`) and C (spread `spread_c`) linked A–B and B–C by memory
/// links (each node's end is attached to its own PeerAccount as it starts), C's SPSP server,
/// and funds alice with [`FUNDS`].
async fn start(spread_b: &str, spread_c: &str) -> Path {
    start_with(spread_b, spread_c, "").await
}

/// [`start`] with `alice_extra` in alice's account.
async fn start_with(spread_b: &str, spread_c: &str, alice_extra: &str) -> Path {
    let (a_to_b, b_to_a) = MemoryLink::pair();
    let (b_to_c, c_to_b) = MemoryLink::pair();
    let link = |end: MemoryLink| Arc::new(end) as Arc<dyn Link>;
    let clock = Clock::system;
    let (a, _, _) = start_wallet_node(
        &config_a(alice_extra),
        BTreeMap::from([(AccountId::from("b"), link(a_to_b))]),
        clock(),
    );
    let (b, _, _) = start_wallet_node(
        &config_b(spread_b),
        BTreeMap::from([
            (AccountId::from("a"), link(b_to_a)),
            (AccountId::from("c"), link(b_to_c.clone())),
        ]),
        clock(),
    );
    let config_c = config_c(spread_c);
    let (c, _, _) = start_wallet_node(
        &config_c,
        BTreeMap::from([(AccountId::from("b"), link(c_to_b))]),
        clock(),
    );
    let (socket, addr) = listener().await;
    let spsp = SpspServer::serve(
        socket,
        &ServeOptions {
            h2: true,
            header_timeout: Duration::from_secs(5),
            tls: None,
            max_connections: 16,
        },
        c.receivers.clone(),
        c.address.clone(),
        SpspAccounts::from_config(&config_c),
        0,
    )
    .unwrap();
    a.balance
        .send(AdjustBalance {
            account: AccountId::from("alice"),
            adjust: -FUNDS,
        })
        .await
        .unwrap()
        .unwrap();
    Path {
        a,
        b,
        c,
        _spsp: spsp,
        to: format!("http://{addr}/shop"),
        b_to_c,
    }
}

fn amount(v: &Value) -> u64 {
    v["amount"].as_str().unwrap().parse().unwrap()
}

/// An exact rate of the view, `"numerator/denominator"`.
fn fraction(rate: &Value) -> (u128, u128) {
    let exact = rate["exact"].as_str().unwrap();
    let (n, d) = exact.split_once('/').unwrap();
    (n.parse().unwrap(), d.parse().unwrap())
}

/// Whether `a/b <= c/d`, exactly.
fn at_most((a, b): (u128, u128), (c, d): (u128, u128)) -> bool {
    a.checked_mul(d).unwrap() <= c.checked_mul(b).unwrap()
}

/// A's books with B and B's with C are equal and opposite, and nothing is reserved anywhere on
/// the path. Returns A's balance with B and B's with C.
async fn books_mirror(path: &Path) -> (i64, i64) {
    let pairs = [(&path.a, "b", &path.b, "a"), (&path.b, "c", &path.c, "b")];
    let mut ours = Vec::new();
    for (near, near_id, far, far_id) in pairs {
        let n = snapshot(near, near_id).await;
        let f = snapshot(far, far_id).await;
        assert_eq!(n.balance, -f.balance, "{near_id}: {n:?}, {far_id}: {f:?}");
        ours.push(n.balance);
    }
    for (node, id) in [
        (&path.a, "alice"),
        (&path.a, "b"),
        (&path.b, "a"),
        (&path.b, "c"),
        (&path.c, "b"),
        (&path.c, "shop"),
    ] {
        let s = snapshot(node, id).await;
        assert_eq!(
            (s.pending_incoming, s.pending_outgoing),
            (0, 0),
            "{id} has reservations: {s:?}"
        );
    }
    (ours[0], ours[1])
}

/// `account`'s payment events on `node` so far.
fn events(node: &Node, account: &str) -> Vec<PaymentEvent> {
    read_events(node.store.as_ref(), account, 0, 10_000).unwrap()
}

/// shop's incoming events, once what they credit adds up to `delivered` (bounded: an event
/// lands with its keeper's commit).
async fn credited(node: &Node, delivered: u64) -> Vec<PaymentEvent> {
    let sum =
        |e: &[PaymentEvent]| -> u64 { e.iter().map(|e| e.amount.parse::<u64>().unwrap()).sum() };
    for _ in 0..500 {
        let e = events(node, "shop");
        if sum(&e) >= delivered {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = events(node, "shop");
    panic!(
        "shop's events add up to {}, not {delivered}: {e:?}",
        sum(&e)
    );
}

#[test]
fn a_payment_over_two_conversions_delivers_within_the_quoted_rate() {
    run(|| async {
        let path = start("0.002", "0.002").await;
        let a = &path.a;
        // The quote: probes cross both conversions and come back; nothing moves.
        let mut ask = request(&path.to, AMOUNT);
        ask.max_packet = Some(MAX_PACKET);
        let quote = a.payer.start("alice", ask, None, true).await.unwrap();
        assert_eq!(quote["status"], "quoted", "{quote:#}");
        let q = &quote["quote"];
        assert_eq!(q["source"]["code"], "USD");
        assert_eq!(q["source"]["scale"], 2);
        assert_eq!(q["destination"]["code"], "XRP");
        assert_eq!(q["destination"]["scale"], 9);
        assert!(
            q["destination"]["address"]
                .as_str()
                .unwrap()
                .starts_with("test.c.shop."),
            "{q:#}"
        );
        assert_eq!(amount(&q["max_source_amount"]), AMOUNT);
        assert_eq!(amount(&q["max_packet_amount"]), MAX_PACKET);
        let low = fraction(&q["rate"]["low"]);
        let high = fraction(&q["rate"]["high"]);
        let minimum = fraction(&q["rate"]["minimum"]);
        // A's table less the default slippage of 1 %: 2 × 0.99 XRP per USD, in base units.
        assert_eq!(minimum, (19_800_000, 1), "{q:#}");
        assert!(at_most(minimum, low), "{q:#}");
        assert!(at_most(low, high) && low != high, "{q:#}");
        assert_eq!(balance(a, "alice").await, -FUNDS);
        assert_eq!(balance(&path.c, "shop").await, 0);
        assert_eq!(books_mirror(&path).await, (0, 0));

        // Paid.
        let id = quote["id"].as_str().unwrap().to_owned();
        let mut pay = request(&path.to, AMOUNT);
        pay.quote_id = Some(id.clone());
        pay.to = None;
        pay.amount = None;
        a.payer.start("alice", pay, None, false).await.unwrap();
        let view = finished(a, &id).await;
        assert_eq!(view["status"], "completed", "{view:#}");
        let sent = amount(&view["progress"]["sent"]);
        let delivered = amount(&view["progress"]["delivered"]);
        assert_eq!(sent, AMOUNT, "{view:#}");
        assert_eq!(delivered, sent * PATH_RATE, "{view:#}");
        assert!(
            view["progress"]["packets"]["fulfilled"].as_u64().unwrap() >= AMOUNT / MAX_PACKET,
            "{view:#}"
        );
        assert!(delivered >= amount(&q["min_delivery_amount"]), "{view:#}");
        // The real rate, exactly, lies within the quote's bounds and above its minimum.
        let real = (u128::from(delivered), u128::from(sent));
        assert!(
            at_most(low, real) && at_most(real, high),
            "real rate {real:?} outside [{low:?}, {high:?}]"
        );
        assert!(at_most(minimum, real), "{real:?} below {minimum:?}");
        println!(
            "sent {sent}, delivered {delivered}, quote low {} ({}), high {} ({}), minimum {}, \
             max packet {}, packets {}",
            q["rate"]["low"]["exact"],
            q["rate"]["low"]["decimal"],
            q["rate"]["high"]["exact"],
            q["rate"]["high"]["decimal"],
            q["rate"]["minimum"]["exact"],
            q["max_packet_amount"]["amount"],
            view["progress"]["packets"],
        );

        // alice paid exactly what was sent, shop got exactly what was delivered.
        assert_eq!(balance(a, "alice").await, -FUNDS + sent as i64);
        assert_eq!(balance(&path.c, "shop").await, -(delivered as i64));
        let incoming = credited(&path.c, delivered).await;
        assert!(
            incoming
                .iter()
                .all(|e| e.direction == Direction::Incoming && e.from_account == "b"),
            "{incoming:?}"
        );
        let total: u64 = incoming
            .iter()
            .map(|e| e.amount.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, delivered);
        // Every hop's books mirror its neighbour's: A owes B the cents, B owes C the euros.
        let (a_with_b, b_with_c) = books_mirror(&path).await;
        assert_eq!(a_with_b, -(sent as i64));
        assert_eq!(b_with_c, -((sent * 4_990) as i64));
    });
}

#[test]
fn a_hop_that_takes_more_than_the_slippage_gets_no_fulfillable_packet() {
    run(|| async {
        // C keeps 5 %: with B's 0.2 %, the path pays 1.8962 XRP per USD where A's table less
        // 1 % slippage asks for at least 1.98.
        let path = start("0.002", "0.05").await;
        let a = &path.a;
        let started = a
            .payer
            .start("alice", request(&path.to, AMOUNT), None, false)
            .await
            .unwrap();
        let view = finished(a, started["id"].as_str().unwrap()).await;
        assert_eq!(view["status"], "failed", "{view:#}");
        assert_eq!(
            view["error"]["kind"], "InsufficientExchangeRate",
            "{view:#}"
        );
        println!(
            "refused: {}; packets {}",
            view["error"]["message"], view["progress"]["packets"]
        );
        let progress = &view["progress"];
        assert_eq!(amount(&progress["sent"]), 0, "{view:#}");
        assert_eq!(amount(&progress["delivered"]), 0, "{view:#}");
        assert_eq!(progress["packets"]["fulfilled"], 0, "{view:#}");
        // The probes did reach the receiver and came back with what arrived: the refusal is
        // the rate's, not a broken path's.
        assert!(
            progress["packets"]["rejected"]["F99"].as_u64().unwrap_or(0) > 0,
            "{view:#}"
        );
        // Nothing moved anywhere on the path, and nothing reached shop.
        assert_eq!(balance(a, "alice").await, -FUNDS);
        assert_eq!(balance(&path.c, "shop").await, 0);
        assert_eq!(books_mirror(&path).await, (0, 0));
        let incoming = events(&path.c, "shop");
        assert!(incoming.is_empty(), "shop was paid: {incoming:?}");
        // A's log has the failed payment, with nothing sent.
        for _ in 0..500 {
            if !events(a, "alice").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let outgoing = events(a, "alice");
        assert_eq!(outgoing.len(), 1, "{outgoing:?}");
        assert_eq!(outgoing[0].amount, "0");
        assert_eq!(
            outgoing[0].payment.as_ref().unwrap().status.as_str(),
            "failed"
        );
    });
}

/// The receiver goes away in the middle of a payment (B's link to C goes down): the payment
/// stops making progress and fails after the idle timeout, and what it sent is exactly what
/// alice was debited and what the fulfilled packets carried, what it delivered is exactly what
/// shop was credited, and every pair of books on the path mirrors with nothing left reserved.
#[test]
fn a_receiver_that_goes_away_mid_payment_leaves_the_books_equal_to_what_was_fulfilled() {
    run(|| async {
        // 100 000 cents at 20 000 a second: about five seconds, cut off after the first.
        let path = start_with(
            "0.002",
            "0.002",
            "[accounts.alice.throughput]\nincoming_amount_per_second = 20000\n",
        )
        .await;
        let mut request = request(&path.to, AMOUNT);
        request.max_packet = Some(MAX_PACKET);
        let started = path
            .a
            .payer
            .start("alice", request, None, false)
            .await
            .unwrap();
        let id = started["id"].as_str().unwrap().to_owned();
        let mut sent_before = 0;
        for _ in 0..1_000 {
            let view = path.a.payer.get("alice", &id).await.unwrap();
            sent_before = amount(&view["progress"]["sent"]);
            if sent_before > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sent_before > 0, "the payment never got going");
        path.b_to_c.set_up(false);
        let view = finished(&path.a, &id).await;
        assert_eq!(view["status"], "failed", "{view:#}");
        let sent = amount(&view["progress"]["sent"]);
        let delivered = amount(&view["progress"]["delivered"]);
        assert!(
            sent >= sent_before && sent < AMOUNT,
            "sent {sent} of {AMOUNT}"
        );
        assert_eq!(
            delivered,
            sent * PATH_RATE,
            "every fulfilled cent delivered at the path's rate"
        );
        assert_eq!(
            balance(&path.a, "alice").await,
            -FUNDS + i64::try_from(sent).unwrap()
        );
        assert_eq!(
            balance(&path.c, "shop").await,
            -i64::try_from(delivered).unwrap()
        );
        let (a_with_b, _) = books_mirror(&path).await;
        assert_eq!(a_with_b, -i64::try_from(sent).unwrap());
        let credited = credited(&path.c, delivered).await;
        let sum: u64 = credited
            .iter()
            .map(|e| e.amount.parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, delivered);
    });
}
