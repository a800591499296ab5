//! Crash test: the real binary under load, killed with SIGKILL at seeded moments and restarted
//! on the same RocksDB directory each time. A payer client sends payments over BTP/2.0-I and
//! records every Fulfill it receives; a payee client fulfills them and records what it was
//! paid. Afterwards the books must match what the clients saw exactly: the payer's balance is
//! the sum of the Fulfills it received, the payee's is minus that, with no unit created or lost.
//!
//! `ILP_CRASH_KILLS` (default 20) and `ILP_CRASH_SEED` (default 1) set the run; `ILP_CRASH_K`
//! the packets in flight (default 32). The figures are printed at the end (`--nocapture`).

#![allow(clippy::unwrap_used)] // test harness: a failed spawn, lock or build is a test bug

mod common;

use actix::prelude::*;
use common::clients::{self, Payee, PayeeBook, Payer};
use common::connector::{Connector, START_BOUND};
use common::{block_on, env_u64};
use ilp::packet::{Address, ErrorCode, Prepare, Timestamp};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{BtpClientLink, BtpOptions};
use ilp_actors::link::Link;
use ilp_actors::store::rocks::RocksStore;
use ilp_actors::store::Store;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The whole test, kills and drain included, must end within this.
const TEST_BOUND: Duration = Duration::from_secs(300);
/// After the last restart, every payment must be resolved within this.
const DRAIN_BOUND: Duration = Duration::from_secs(60);
/// Prepares expire this long after they are first sent: longer than any restart, so a payment
/// interrupted by a crash is retried, not lost to its expiry.
const PAYMENT_EXPIRY_MS: u64 = 90_000;

fn config(port: u16, data: &Path) -> String {
    format!(
        r#"
[node]
ilp_address = "test.crash"
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "127.0.0.1:{port}"
[listeners.admin]
enabled = false
[store]
backend = "rocksdb"
path = "{data}"
[accounts.payer]
relation = "child"
btp_idempotent = true
max_packet_amount = 1000000
[accounts.payer.link]
type = "btp-server"
auth_username = "payer"
auth_token = "payer-token"
[accounts.payer.balance]
maximum = 1000000000000000
[accounts.payer.rate_limit]
enabled = false
[accounts.payee]
relation = "child"
[accounts.payee.link]
type = "btp-server"
auth_username = "payee"
auth_token = "payee-token"
[accounts.payee.balance]
minimum = -1000000000000000
maximum = 1000000000000000
[accounts.payee.rate_limit]
enabled = false
"#,
        data = data.display()
    )
}

/// A payment to the crash test's payee.
fn payment(seed: u64, index: u64, expires_at: Timestamp) -> Prepare {
    clients::payment(seed, index, &payee_address(), expires_at)
}

fn payee_address() -> Address {
    Address::try_from("test.crash.payee").unwrap()
}

fn btp_options() -> BtpOptions {
    BtpOptions {
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(100),
        ..BtpOptions::default()
    }
}

async fn wait_until(what: &str, bound: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A first run of the binary in a fresh directory, and where it keeps its things.
struct Started {
    dir: tempfile::TempDir,
    data: PathBuf,
    config_path: PathBuf,
    log: PathBuf,
    first: Connector,
    btp: std::net::SocketAddr,
}

/// Starts the binary on `config(port, data)`: the first run picks a free BTP port, and the
/// file is rewritten with it so that every restart takes the same one (the clients' reconnects
/// find it).
fn start_first(config: fn(u16, &Path) -> String) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("config.toml");
    let log = dir.path().join("connector.log");
    std::fs::write(&config_path, config(0, &data)).unwrap();
    let first = Connector::start(&config_path, &log);
    let btp = first.btp;
    std::fs::write(&config_path, config(btp.port(), &data)).unwrap();
    Started {
        dir,
        data,
        config_path,
        log,
        first,
        btp,
    }
}

#[test]
fn kill_9_under_load_loses_and_creates_nothing() {
    let kills = env_u64("ILP_CRASH_KILLS", 20);
    let seed = env_u64("ILP_CRASH_SEED", 1);
    let in_flight = env_u64("ILP_CRASH_K", 32);
    let Started {
        dir,
        data,
        config_path,
        log,
        first,
        btp,
    } = start_first(config);

    let started = Instant::now();
    let result = block_on(async move {
        tokio::time::timeout(
            TEST_BOUND,
            run(
                first,
                config_path,
                log,
                btp,
                kills,
                seed,
                in_flight,
                Target::Payee,
            ),
        )
        .await
        .expect("the crash test did not finish in time")
    });
    let Figures {
        payments,
        resent,
        amount,
        deliveries,
    } = result;

    // The books, read from the data directory after the final clean exit.
    let store = RocksStore::open(&data).unwrap();
    let balances = store.load_balances().unwrap();
    let payer = balances.get("payer").copied().unwrap_or(0);
    let payee = balances.get("payee").copied().unwrap_or(0);
    println!(
        "crash test: seed {seed}, {kills} kill -9s, {in_flight} in flight, {payments} payments \
         fulfilled ({amount} units), {resent} resends, {deliveries} deliveries to the payee, \
         {:.1} s; balances payer {payer} payee {payee}; drift payer {} payee {}",
        started.elapsed().as_secs_f64(),
        i128::from(payer) - i128::from(amount),
        i128::from(payee) + i128::from(amount),
    );
    assert_eq!(
        i128::from(payer),
        i128::from(amount),
        "payer balance != fulfilled"
    );
    assert_eq!(
        i128::from(payee),
        -i128::from(amount),
        "payee balance != paid"
    );
    assert_eq!(balances.len(), 2, "{balances:?}");
    dir.close().unwrap();
}

struct Figures {
    payments: u64,
    resent: u64,
    amount: u64,
    deliveries: u64,
}

/// Where the payer pays: the payee client (preimage payments), or a local account of the node
/// (STREAM packets on these credentials).
enum Target {
    Payee,
    Receiver(Address, [u8; 32]),
}

#[allow(clippy::too_many_arguments)] // the test's knobs, spelled out at its two call sites
async fn run(
    first: Connector,
    config_path: PathBuf,
    log: PathBuf,
    btp: std::net::SocketAddr,
    kills: u64,
    seed: u64,
    in_flight: u64,
    target: Target,
) -> Figures {
    let clock = Clock::system();
    let url = format!("ws://{btp}");
    let payer_link: Arc<dyn Link> = Arc::new(BtpClientLink::connect_with_tls(
        &url,
        "payer",
        "payer-token",
        None,
        true,
        btp_options(),
    ));
    let payee_link =
        BtpClientLink::connect_with_tls(&url, "payee", "payee-token", None, false, btp_options());
    let payee_book = Arc::new(Mutex::new(PayeeBook::default()));
    payee_link.attach(
        Payee {
            book: payee_book.clone(),
            delay: Duration::ZERO,
        }
        .start()
        .recipient(),
    );

    let payer = match &target {
        Target::Payee => Payer::new(payer_link, "test.crash.payee", seed, PAYMENT_EXPIRY_MS),
        Target::Receiver(destination, secret) => {
            Payer::streaming(payer_link, destination, *secret, seed, PAYMENT_EXPIRY_MS)
        }
    };
    let to_payee = matches!(target, Target::Payee);
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        tasks.push(tokio::spawn(payer.clone().run(clock)));
    }

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut connector = first;
    for kill in 0..kills {
        // Load must be flowing before the kill: wait for a few new Fulfills.
        let before = payer.fulfilled();
        wait_until("payments flow", START_BOUND, || {
            payer.fulfilled() >= before + 5
        })
        .await;
        let pause = Duration::from_millis(rng.gen_range(20..400));
        tokio::time::sleep(pause).await;
        let fulfilled = payer.fulfilled();
        eprintln!(
            "kill {}: after {pause:?}, {fulfilled} fulfilled so far",
            kill + 1
        );
        connector.kill_9();
        // Sometimes the node stays down a while, so retries pile up against a closed port.
        if rng.gen_bool(0.3) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
        }
        let (path, log) = (config_path.clone(), log.clone());
        connector = tokio::task::spawn_blocking(move || Connector::start(&path, &log))
            .await
            .unwrap();
    }
    // Let the last incarnation carry some load, then stop issuing and drain. Fulfills replayed
    // from the store's records reach the payer without the payee: deliveries to the payee show
    // that this incarnation forwards.
    let before = payer.fulfilled();
    let delivered_before = payee_book.lock().unwrap().deliveries;
    wait_until("payments flow after the last restart", START_BOUND, || {
        payer.fulfilled() >= before + 5
            && (!to_payee || payee_book.lock().unwrap().deliveries >= delivered_before + 5)
    })
    .await;
    payer.stop.store(true, Ordering::SeqCst);
    let drained = tokio::time::timeout(DRAIN_BOUND, futures::future::join_all(tasks)).await;
    let Ok(drained) = drained else {
        // Copied out, so the panic does not poison the book for the payer tasks still running.
        let (count, stuck) = {
            let book = payer.book.lock().unwrap();
            (book.unresolved.len(), book.stuck(20))
        };
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = logged.lines().rev().take(40).collect();
        panic!(
            "payments unresolved {DRAIN_BOUND:?} after the last restart: {count} of them, first \
             (index, attempts, last outcome or attempt in flight, since): {stuck:?}\n\
             connector log, last lines first:\n{}",
            tail.join("\n")
        );
    };
    drained.into_iter().for_each(|t| t.unwrap());

    let status = tokio::task::spawn_blocking(move || connector.terminate())
        .await
        .unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status}");

    let sent = payer.sent.load(Ordering::SeqCst);
    let resent = payer.resent.load(Ordering::SeqCst);
    let issued = payer.next.load(Ordering::SeqCst);
    let payer = payer.book.lock().unwrap();
    assert!(payer.failures.is_empty(), "failures: {:?}", payer.failures);
    assert_eq!(
        u64::try_from(payer.fulfilled.len()).unwrap(),
        sent,
        "every payment sent was fulfilled"
    );
    assert!(issued >= sent);
    let amount = payer.total();
    // The payee was paid for exactly the payments the payer saw fulfilled.
    let payee = payee_book.lock().unwrap();
    if to_payee {
        assert_eq!(payee.fulfilled.len(), payer.fulfilled.len());
        assert_eq!(payee.total(), amount);
    }
    Figures {
        payments: u64::try_from(payer.fulfilled.len()).unwrap(),
        resent,
        amount,
        deliveries: payee.deliveries,
    }
}

/// The crash test's node with a local account `shop` and an SPSP server (port 0: credentials are
/// asked for once, and the receiver secret kept in the store keeps them valid after restarts).
fn receiving_config(port: u16, data: &Path) -> String {
    format!(
        "{}[listeners.spsp]\nbind = \"127.0.0.1:0\"\n\
         [accounts.shop]\nrelation = \"child\"\n[accounts.shop.link]\ntype = \"local\"\n",
        config(port, data)
    )
}

/// Kills under load while a local account is paid with STREAM packets (with receipts): the
/// account is credited exactly what the payer saw fulfilled, once per packet, with exactly one
/// payment event per packet, and its receipt totals end at that amount.
#[test]
fn kill_9_while_a_local_account_is_paid_credits_exactly_what_was_fulfilled() {
    let kills = env_u64("ILP_CRASH_RECEIVE_KILLS", 10);
    let seed = env_u64("ILP_CRASH_SEED", 1);
    let in_flight = env_u64("ILP_CRASH_K", 32);
    let Started {
        dir,
        data,
        config_path,
        log,
        first,
        btp,
    } = start_first(receiving_config);
    let spsp = first.spsp.expect("the SPSP server's address");
    let receipts = ilp::spsp::ReceiptSetup {
        nonce: [7; 16],
        secret: [8; 32],
    };
    let started = Instant::now();
    let figures = block_on(async move {
        let [(nonce_name, nonce), (secret_name, secret)] = receipts.to_headers();
        let (status, _, body) = common::http_request(
            false,
            hyper::Method::GET,
            &format!("http://{spsp}/shop"),
            &[
                ("accept", "application/spsp4+json"),
                (nonce_name, nonce.as_str()),
                (secret_name, secret.as_str()),
            ],
            bytes::Bytes::new(),
        )
        .await;
        assert_eq!(status, hyper::StatusCode::OK);
        let credentials = ilp::spsp::SpspResponse::decode(&body).unwrap();
        assert_eq!(credentials.receipts_enabled, Some(true));
        let target = Target::Receiver(credentials.destination_account, credentials.shared_secret);
        tokio::time::timeout(
            TEST_BOUND,
            run(first, config_path, log, btp, kills, seed, in_flight, target),
        )
        .await
        .expect("the crash test did not finish in time")
    });
    let Figures {
        payments, amount, ..
    } = figures;

    let store = RocksStore::open(&data).unwrap();
    let balances = store.load_balances().unwrap();
    let payer = balances.get("payer").copied().unwrap_or(0);
    let shop = balances.get("shop").copied().unwrap_or(0);
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |e: &ilp_actors::payment_log::PaymentEvent| e.seq);
        let page = ilp_actors::payment_log::read_events(&store, "shop", after, 1000).unwrap();
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    let evented: u64 = events
        .iter()
        .map(|e| e.amount.parse::<u64>().unwrap())
        .sum();
    let totals = store
        .get_record(&ilp_actors::payment_log::totals_key(
            &events.first().map_or([0; 16], |e| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&hex::decode(&e.connection_id).unwrap());
                id
            }),
        ))
        .unwrap()
        .and_then(|t| ilp_actors::payment_log::decode_totals(&t));
    println!(
        "crash test, receiving: seed {seed}, {kills} kill -9s, {in_flight} in flight, {payments} \
         payments fulfilled ({amount} units), {:.1} s; balances payer {payer} shop {shop}; {} \
         events ({evented} units); receipt totals {totals:?}",
        started.elapsed().as_secs_f64(),
        events.len(),
    );
    assert_eq!(
        i128::from(payer),
        i128::from(amount),
        "payer balance != fulfilled"
    );
    assert_eq!(
        i128::from(shop),
        -i128::from(amount),
        "shop credit != fulfilled"
    );
    assert_eq!(
        u64::try_from(events.len()).unwrap(),
        payments,
        "one event per packet"
    );
    assert_eq!(evented, amount, "the events add up to the credit");
    assert!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "seqs without gaps"
    );
    assert_eq!(
        totals,
        Some(vec![(1, amount)]),
        "the connection's receipt total"
    );
    dir.close().unwrap();
}

/// SIGTERM while payments are in flight: they still complete (and are booked), a payment sent
/// during the drain is turned away T03, and the process exits 0.
#[test]
fn sigterm_drains_packets_in_flight_then_exits_0() {
    const IN_FLIGHT: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("config.toml");
    let log = dir.path().join("connector.log");
    std::fs::write(&config_path, config(0, &data)).unwrap();
    let connector = Connector::start(&config_path, &log);
    let url = format!("ws://{}", connector.btp);
    let (paid, status) = block_on(async move {
        tokio::time::timeout(TEST_BOUND, async move {
            let clock = Clock::system();
            let payer = BtpClientLink::connect_with_tls(
                &url,
                "payer",
                "payer-token",
                None,
                true,
                btp_options(),
            );
            let payee = BtpClientLink::connect_with_tls(
                &url,
                "payee",
                "payee-token",
                None,
                false,
                btp_options(),
            );
            let book = Arc::new(Mutex::new(PayeeBook::default()));
            payee.attach(
                Payee {
                    book: book.clone(),
                    delay: Duration::from_millis(800),
                }
                .start()
                .recipient(),
            );
            wait_until("both clients connect", START_BOUND, || {
                payer.is_up() && payee.is_up()
            })
            .await;
            // The connector may see the payee's auth a moment after the payee does.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let expires_at = clock.now().checked_add_millis(PAYMENT_EXPIRY_MS).unwrap();
            let payments: Vec<_> = (0..IN_FLIGHT)
                .map(|i| payer.send_prepare(payment(9, i, expires_at)))
                .collect();
            let answers = tokio::spawn(futures::future::join_all(payments));
            wait_until("every payment reaches the payee", START_BOUND, || {
                book.lock().unwrap().deliveries == IN_FLIGHT
            })
            .await;
            connector.sigterm();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let late = payer
                .send_prepare(payment(9, IN_FLIGHT, expires_at))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(
                late.code(),
                ErrorCode::T03_CONNECTOR_BUSY,
                "{}",
                late.message()
            );
            let mut paid = 0;
            for (i, answer) in answers.await.unwrap().into_iter().enumerate() {
                let fulfill = answer
                    .unwrap()
                    .unwrap_or_else(|r| panic!("payment {i}: {} {}", r.code(), r.message()));
                let hash: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
                let i = u64::try_from(i).unwrap();
                assert_eq!(&hash, payment(9, i, expires_at).execution_condition());
                paid += payment(9, i, expires_at).amount();
            }
            let status = tokio::task::spawn_blocking(move || connector.wait_exit())
                .await
                .unwrap();
            (paid, status)
        })
        .await
        .expect("the shutdown test did not finish in time")
    });
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("ilp-connector stopped"), "{logged}");
    let balances = RocksStore::open(&data).unwrap().load_balances().unwrap();
    assert_eq!(
        balances.get("payer").copied(),
        Some(i64::try_from(paid).unwrap())
    );
    assert_eq!(
        balances.get("payee").copied(),
        Some(-i64::try_from(paid).unwrap())
    );
}

fn paying_config(data: &Path) -> String {
    format!(
        r#"
[node]
ilp_address = "test.crash"
asset_code = "USD"
asset_scale = 2
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "127.0.0.1:0"
[listeners.admin]
bind = "127.0.0.1:0"
[listeners.spsp]
bind = "127.0.0.1:0"
[store]
backend = "rocksdb"
path = "{}"
[sender]
allow_http = true
[accounts.wallet]
relation = "child"
[accounts.wallet.link]
type = "local"
[accounts.wallet.rate_limit]
enabled = false
[accounts.wallet.throughput]
incoming_amount_per_second = 100000
[accounts.shop]
relation = "child"
[accounts.shop.link]
type = "local"
"#,
        common::p(data)
    )
}

/// One admin API call on a running binary: status and JSON.
async fn admin(
    addr: std::net::SocketAddr,
    method: hyper::Method,
    path: &str,
    body: &str,
) -> (hyper::StatusCode, serde_json::Value) {
    let (status, _, bytes) = common::http_request(
        false,
        method,
        &format!("http://{addr}{path}"),
        &[("content-type", "application/json")],
        bytes::Bytes::from(body.to_owned()),
    )
    .await;
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// `kill -9` in the middle of one of the node's own payments: after the restart the payment is
/// `interrupted` and says exactly what it sent (kept with each debit), the wallet was debited
/// exactly that, the receiving account credited exactly that, and the wallet's event log holds
/// the payment.
#[test]
fn kill_9_in_the_middle_of_a_payment_leaves_it_interrupted_with_exactly_what_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("config.toml");
    let log = dir.path().join("connector.log");
    std::fs::write(&config_path, paying_config(&data)).unwrap();
    let first = Connector::start(&config_path, &log);
    let admin_addr = first.admin.expect("the admin API's address");
    let spsp = first.spsp.expect("the SPSP server's address");
    const FUNDS: i64 = 10_000_000;
    let (id, seen) = block_on(async move {
        let (status, funded) = admin(
            admin_addr,
            hyper::Method::POST,
            "/accounts/wallet/balance",
            &format!("{{\"adjust\": -{FUNDS}}}"),
        )
        .await;
        assert_eq!(status, hyper::StatusCode::OK, "{funded}");
        // 1 000 000 at 100 000 a second: about ten seconds, cut off after two tenths of it.
        let (status, started) = admin(
            admin_addr,
            hyper::Method::POST,
            "/accounts/wallet/payments",
            &format!("{{\"to\": \"http://{spsp}/shop\", \"amount\": 1000000}}"),
        )
        .await;
        assert_eq!(status, hyper::StatusCode::CREATED, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, view) = admin(
                admin_addr,
                hyper::Method::GET,
                &format!("/accounts/wallet/payments/{id}"),
                "",
            )
            .await;
            let sent: u64 = view["progress"]["sent"]["amount"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap();
            assert_eq!(view["status"], "paying", "{view}");
            if sent >= 200_000 {
                return (id, sent);
            }
            assert!(
                Instant::now() < deadline,
                "the payment never got going: {view}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    first.kill_9();
    let second = Connector::start(&config_path, &log);
    let admin_addr = second.admin.expect("the admin API's address");
    let (view, wallet, shop, events) = block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        let view = loop {
            let (_, view) = admin(
                admin_addr,
                hyper::Method::GET,
                &format!("/accounts/wallet/payments/{id}"),
                "",
            )
            .await;
            if view["status"] == "interrupted" {
                break view;
            }
            assert!(
                Instant::now() < deadline,
                "never marked interrupted: {view}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (_, wallet) = admin(admin_addr, hyper::Method::GET, "/accounts/wallet", "").await;
        let (_, shop) = admin(admin_addr, hyper::Method::GET, "/accounts/shop", "").await;
        let events = loop {
            let (_, page) = admin(
                admin_addr,
                hyper::Method::GET,
                "/accounts/wallet/payments?after=0",
                "",
            )
            .await;
            if page["payments"].as_array().is_some_and(|e| !e.is_empty()) {
                break page;
            }
            assert!(
                Instant::now() < deadline,
                "no event for the payment: {page}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        (view, wallet, shop, events)
    });
    second.terminate();
    let sent: i64 = view["progress"]["sent"]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wallet = wallet["balance"].as_i64().unwrap();
    let shop = shop["balance"].as_i64().unwrap();
    println!(
        "crash test, paying: {seen} seen sent before the kill; after it the record says {sent}, \
         wallet debited {}, shop credited {}",
        wallet + FUNDS,
        -shop
    );
    assert!(sent >= i64::try_from(seen).unwrap(), "{view}");
    assert_eq!(
        wallet + FUNDS,
        sent,
        "the wallet was debited what the payment says it sent"
    );
    assert_eq!(
        -shop, sent,
        "the shop was credited what was sent (one asset, no spread)"
    );
    assert_eq!(view["progress"]["in_flight_source"]["amount"], "0");
    let event = &events["payments"][0];
    assert_eq!(event["direction"], "outgoing", "{events}");
    assert_eq!(event["amount"], sent.to_string(), "{events}");
    assert_eq!(event["payment"]["status"], "interrupted", "{events}");
    dir.close().unwrap();
}
