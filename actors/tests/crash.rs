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
use common::block_on;
use common::connector::{Connector, START_BOUND};
use ilp::packet::{
    Address, ErrorClass, ErrorCode, FulfillBuilder, Prepare, PrepareBuilder, Reject, Timestamp,
};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{BtpClientLink, BtpOptions};
use ilp_actors::link::{Link, LinkError};
use ilp_actors::messages::{IncomingPrepare, PacketResult, Reply};
use ilp_actors::store::rocks::RocksStore;
use ilp_actors::store::Store;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The whole test, kills and drain included, must end within this.
const TEST_BOUND: Duration = Duration::from_secs(300);
/// After the last restart, every payment must be resolved within this.
const DRAIN_BOUND: Duration = Duration::from_secs(60);
/// Prepares expire this long after they are first sent: longer than any restart, so a payment
/// interrupted by a crash is retried, not lost to its expiry.
const PAYMENT_EXPIRY_MS: u64 = 90_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

/// What the payee was paid: every condition it fulfilled, once, with its amount.
#[derive(Default)]
struct PayeeBook {
    fulfilled: HashMap<[u8; 32], u64>,
    deliveries: u64,
}

/// Fulfills every payment, after `delay`.
struct Payee {
    book: Arc<Mutex<PayeeBook>>,
    delay: Duration,
}

impl Actor for Payee {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Payee {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let answer = self.answer(msg.prepare);
        let delay = self.delay;
        Reply::later(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            answer
        })
    }
}

impl Payee {
    fn answer(&self, prepare: Prepare) -> PacketResult {
        let Ok(preimage) = <[u8; 32]>::try_from(prepare.data()) else {
            return Err(Reject::new(
                ErrorCode::F06_UNEXPECTED_PAYMENT,
                None,
                "no preimage",
            ));
        };
        let mut book = self.book.lock().unwrap();
        book.deliveries += 1;
        let previous = book
            .fulfilled
            .insert(*prepare.execution_condition(), prepare.amount());
        assert!(
            previous.is_none_or(|a| a == prepare.amount()),
            "the same payment arrived with two amounts"
        );
        Ok(FulfillBuilder {
            fulfillment: &preimage,
            data: b"",
        }
        .build()
        .unwrap())
    }
}

/// What the payer saw.
#[derive(Default)]
struct PayerBook {
    /// Fulfilled payments by index, with their amounts.
    fulfilled: BTreeMap<u64, u64>,
    /// Every final outcome that is not a Fulfill (must stay empty).
    failures: Vec<String>,
    /// Payments not resolved yet: attempts so far, the last outcome (or the attempt in flight)
    /// and when that attempt started; printed if the drain times out, to show where they are
    /// stuck.
    unresolved: BTreeMap<u64, (u64, String, Instant)>,
}

fn payment(seed: u64, index: u64, expires_at: Timestamp) -> Prepare {
    let preimage: [u8; 32] =
        Sha256::digest([seed.to_be_bytes(), index.to_be_bytes()].concat()).into();
    let condition: [u8; 32] = Sha256::digest(preimage).into();
    PrepareBuilder {
        amount: 1 + index % 997,
        expires_at,
        execution_condition: &condition,
        destination: &Address::try_from("test.crash.payee").unwrap(),
        data: &preimage,
    }
    .build()
    .unwrap()
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    /// Identical Prepares sent again because the link was down or the answer temporary.
    resent: AtomicU64,
}

/// Pays until `stop`, one payment at a time; each payment is retried with identical bytes
/// until it is fulfilled or fails for good.
async fn payer_task(
    link: Arc<BtpClientLink>,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    book: Arc<Mutex<PayerBook>>,
    counters: Arc<Counters>,
    seed: u64,
    clock: Clock,
) {
    while !stop.load(Ordering::SeqCst) {
        let index = next.fetch_add(1, Ordering::SeqCst);
        let expires_at = clock.now().checked_add_millis(PAYMENT_EXPIRY_MS).unwrap();
        let prepare = payment(seed, index, expires_at);
        counters.sent.fetch_add(1, Ordering::SeqCst);
        let outcome = loop {
            if clock.now() >= expires_at {
                break Err(format!("payment {index} expired unresolved"));
            }
            let attempt_started = Instant::now();
            {
                let mut book = book.lock().unwrap();
                let entry =
                    book.unresolved
                        .entry(index)
                        .or_insert((0, String::new(), attempt_started));
                entry.1 = format!("attempt {} in flight", entry.0 + 1);
                entry.2 = attempt_started;
            }
            let answer = link.send_prepare(prepare.clone()).await;
            {
                let mut book = book.lock().unwrap();
                let entry =
                    book.unresolved
                        .entry(index)
                        .or_insert((0, String::new(), attempt_started));
                entry.0 += 1;
                let outcome = match &answer {
                    Ok(Ok(_)) => "fulfilled".to_owned(),
                    Ok(Err(reject)) => format!("{} {}", reject.code(), reject.message()),
                    Err(e) => format!("link error {e}"),
                };
                entry.1 = format!("{outcome} after {:?}", attempt_started.elapsed());
            }
            match answer {
                Ok(Ok(fulfill)) => {
                    let hash: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
                    if &hash == prepare.execution_condition() {
                        break Ok(prepare.amount());
                    }
                    break Err(format!("payment {index}: wrong fulfillment"));
                }
                Ok(Err(reject)) if reject.code().class() != ErrorClass::Final => {
                    // Not forwarded (T01: the payee is not connected yet) or not answered in
                    // time: the same bytes again are the same payment.
                }
                Ok(Err(reject)) => {
                    break Err(format!(
                        "payment {index}: {} {}",
                        reject.code(),
                        reject.message()
                    ))
                }
                Err(LinkError::Down) => {}
                Err(e) => break Err(format!("payment {index}: link error {e}")),
            }
            counters.resent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut book = book.lock().unwrap();
        book.unresolved.remove(&index);
        match outcome {
            Ok(amount) => {
                let previous = book.fulfilled.insert(index, amount);
                assert!(previous.is_none());
            }
            Err(failure) => book.failures.push(failure),
        }
    }
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

#[test]
fn kill_9_under_load_loses_and_creates_nothing() {
    let kills = env_u64("ILP_CRASH_KILLS", 20);
    let seed = env_u64("ILP_CRASH_SEED", 1);
    let in_flight = env_u64("ILP_CRASH_K", 32);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("config.toml");
    let log = dir.path().join("connector.log");
    std::fs::write(&config_path, config(0, &data)).unwrap();
    // The first run picks a free port; every restart takes the same one, so the clients'
    // reconnects find it.
    let first = Connector::start(&config_path, &log);
    let btp = first.btp;
    std::fs::write(&config_path, config(btp.port(), &data)).unwrap();

    let started = Instant::now();
    let result = block_on(async move {
        tokio::time::timeout(
            TEST_BOUND,
            run(first, config_path, log, btp, kills, seed, in_flight),
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

async fn run(
    first: Connector,
    config_path: PathBuf,
    log: PathBuf,
    btp: std::net::SocketAddr,
    kills: u64,
    seed: u64,
    in_flight: u64,
) -> Figures {
    let clock = Clock::system();
    let url = format!("ws://{btp}");
    let payer_link = Arc::new(BtpClientLink::connect_with_tls(
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

    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payer_book = Arc::new(Mutex::new(PayerBook::default()));
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        tasks.push(tokio::spawn(payer_task(
            payer_link.clone(),
            next.clone(),
            stop.clone(),
            payer_book.clone(),
            counters.clone(),
            seed,
            clock,
        )));
    }

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut connector = first;
    for kill in 0..kills {
        // Load must be flowing before the kill: wait for a few new Fulfills.
        let before = payer_book.lock().unwrap().fulfilled.len();
        wait_until("payments flow", START_BOUND, || {
            payer_book.lock().unwrap().fulfilled.len() >= before + 5
        })
        .await;
        let pause = Duration::from_millis(rng.gen_range(20..400));
        tokio::time::sleep(pause).await;
        let fulfilled = payer_book.lock().unwrap().fulfilled.len();
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
    let before = payer_book.lock().unwrap().fulfilled.len();
    let delivered_before = payee_book.lock().unwrap().deliveries;
    wait_until("payments flow after the last restart", START_BOUND, || {
        payer_book.lock().unwrap().fulfilled.len() >= before + 5
            && payee_book.lock().unwrap().deliveries >= delivered_before + 5
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let drained = tokio::time::timeout(DRAIN_BOUND, futures::future::join_all(tasks)).await;
    let Ok(drained) = drained else {
        // Copied out, so the panic does not poison the book for the payer tasks still running.
        let (count, stuck) = {
            let book = payer_book.lock().unwrap();
            let stuck: Vec<_> = book
                .unresolved
                .iter()
                .take(20)
                .map(|(index, (attempts, last, since))| {
                    (*index, *attempts, last.clone(), since.elapsed())
                })
                .collect();
            (book.unresolved.len(), stuck)
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

    let payer = payer_book.lock().unwrap();
    assert!(payer.failures.is_empty(), "failures: {:?}", payer.failures);
    let issued = next.load(Ordering::SeqCst);
    assert_eq!(
        u64::try_from(payer.fulfilled.len()).unwrap(),
        counters.sent.load(Ordering::SeqCst),
        "every payment sent was fulfilled"
    );
    assert!(issued >= counters.sent.load(Ordering::SeqCst));
    let amount: u64 = payer.fulfilled.values().sum();
    // The payee was paid for exactly the payments the payer saw fulfilled.
    let payee = payee_book.lock().unwrap();
    let paid: u64 = payee.fulfilled.values().sum();
    assert_eq!(payee.fulfilled.len(), payer.fulfilled.len());
    assert_eq!(paid, amount);
    Figures {
        payments: u64::try_from(payer.fulfilled.len()).unwrap(),
        resent: counters.resent.load(Ordering::SeqCst),
        amount,
        deliveries: payee.deliveries,
    }
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
