//! Settlement that moves real money: two of our nodes, `test.a` and `test.b`, peered over BTP,
//! each with our Ethereum settlement engine (`ilp-eth-engine`), both engines on one local
//! ganache chain. Each node has a payer and a payee client; the payers take turns, so the
//! balance between the nodes crosses its settle threshold again and again, one way and then the
//! other. Every crossing is settled by an on-chain transfer between the engines' addresses.
//!
//! At the end: each node's balance with the other mirrors the other's and is within the settle
//! threshold; each is exactly the traffic across the link plus the settlements; and the wei
//! that moved on the chain each way equals, to the wei, what both nodes' settlement ledgers
//! say was settled that way (× 10^9: the accounts' scale is 9). The second test `kill -9`s the
//! nodes and the engines at seeded moments, one at a time, during the traffic and the
//! settlements: a transfer made twice, a credit booked twice or a settlement lost would break
//! one of those equalities.
//!
//! `ILP_ETH_SEED` (default 1) and `ILP_ETH_PHASES` (default 8) set the run.

#![allow(clippy::unwrap_used)] // test harness: a failed spawn, lock or build is a test bug

mod common;

use common::chain::{free_port, transfers, EthEngine, Ganache, KEYS};
use common::clients::{btp_child as child, btp_clients, PayeeBook, Payer};
use common::connector::{Connector, START_BOUND};
use common::process::mentions;
use common::{admin_get, block_on, env_u64, wait_until};
use ilp_actors::clock::Clock;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The whole test must end within this.
const TEST_BOUND: Duration = Duration::from_secs(420);
/// After the traffic, every settlement must be paid and credited within this.
const SETTLE_BOUND: Duration = Duration::from_secs(150);
/// Units (scale 9) a node may owe its peer before it settles.
const THRESHOLD: i64 = 10_000;
/// Payments each phase makes (amounts 1 to 997 units: about 6 thresholds' worth).
const PER_PHASE: usize = 120;
/// Payer tasks in flight during a phase.
const IN_FLIGHT: usize = 4;
/// Wei per unit of the accounts (scale 9).
const WEI_PER_UNIT: u128 = 1_000_000_000;

/// The ports a node's configuration names, chosen by the OS at its first start.
#[derive(Clone, Copy)]
struct Ports {
    btp: u16,
    settlement: u16,
}

/// Node `test.<name>` with its payer and payee, and peer account `<peer>` settled through the
/// engine listening on `engine_port`.
fn node_config(
    name: &str,
    ports: Ports,
    data: &Path,
    peer: &str,
    peer_link: &str,
    engine_port: u16,
) -> String {
    format!(
        r#"
[node]
ilp_address = "test.{name}"
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "127.0.0.1:{btp}"
[listeners.admin]
bind = "127.0.0.1:0"
[listeners.settlement]
bind = "127.0.0.1:{settlement}"
[store]
backend = "rocksdb"
path = "{data}"
[[routing.static_routes]]
prefix = "test.{peer}"
account = "{peer}"
{payer}{payee}
[accounts.{peer}]
relation = "peer"
btp_idempotent = true
settlement_engine_url = "http://127.0.0.1:{engine_port}"
[accounts.{peer}.link]
{peer_link}
[accounts.{peer}.balance]
minimum = -100000
maximum = 100000
settle_threshold = -{THRESHOLD}
settle_to = 0
[accounts.{peer}.rate_limit]
enabled = false
"#,
        btp = ports.btp,
        settlement = ports.settlement,
        data = data.display(),
        payer = child("payer"),
        payee = child("payee"),
    )
}

/// The engine's configuration; `poll_ms`: how often it reads the chain (a payment stays
/// unconfirmed in its store that long after it is broadcast).
fn engine_config(
    port: u16,
    connector: u16,
    chain: &str,
    key: &str,
    data: &Path,
    poll_ms: u64,
) -> String {
    format!(
        "[engine]\nbind = \"127.0.0.1:{port}\"\nconnector_url = \"http://127.0.0.1:{connector}\"\n\
         [ethereum]\nrpc_url = \"{chain}\"\nprivate_key = \"{key}\"\npoll_interval_ms = {poll_ms}\n\
         [store]\npath = \"{}\"\n",
        data.display()
    )
}

/// One node with its engine, files and clients.
struct Side {
    name: &'static str,
    dir: PathBuf,
    connector: Option<Connector>,
    engine: Option<EthEngine>,
    address: String,
    payer: Arc<Payer>,
    payee: Arc<Mutex<PayeeBook>>,
}

impl Side {
    fn file(&self, f: &str) -> PathBuf {
        self.dir.join(format!("{}-{f}", self.name))
    }

    fn admin(&self) -> Option<SocketAddr> {
        self.connector.as_ref().and_then(|c| c.admin)
    }
}

/// What a node's settlement ledger says of its peer account: (settled out, settled in,
/// pending), in units.
async fn ledger(side: &Side, peer: &str) -> Option<(u128, u128, u128)> {
    let v = admin_get(side.admin(), &format!("/accounts/{peer}/settlement")).await?;
    let n = |k: &str| v[k].as_str()?.parse::<u128>().ok();
    Some((n("settled_out")?, n("settled_in")?, n("pending")?))
}

async fn balance(side: &Side, peer: &str) -> Option<i64> {
    admin_get(side.admin(), &format!("/accounts/{peer}")).await?["balance"].as_i64()
}

/// Starts a node with ports the OS picks, then rewrites its configuration with them so every
/// restart takes the same ones.
fn first_start(write: &dyn Fn(Ports) -> String, config: &Path, log: &Path) -> Connector {
    std::fs::write(
        config,
        write(Ports {
            btp: 0,
            settlement: 0,
        }),
    )
    .unwrap();
    let connector = Connector::start(config, log);
    let ports = Ports {
        btp: connector.btp.port(),
        settlement: connector.settlement.expect("a settlement API").port(),
    };
    std::fs::write(config, write(ports)).unwrap();
    connector
}

#[test]
fn two_nodes_settle_on_chain_and_the_chain_matches_the_ledgers() {
    eth_pair(false);
}

#[test]
fn nodes_and_engines_killed_mid_settlement_pay_and_credit_exactly_once() {
    eth_pair(true);
}

fn eth_pair(kills: bool) {
    let seed = env_u64("ILP_ETH_SEED", 1);
    let phases = env_u64("ILP_ETH_PHASES", 8);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    block_on(async move {
        tokio::time::timeout(TEST_BOUND, run(dir, seed, phases, kills))
            .await
            .expect("the chain settlement test did not finish in time");
    });
}

async fn run(dir: PathBuf, seed: u64, phases: u64, kills: bool) {
    let path = |f: &str| dir.join(f);
    let chain = tokio::task::spawn_blocking({
        let log = path("ganache.log");
        move || Ganache::start(&log)
    })
    .await
    .unwrap();
    let chain_url = chain.url();

    // b first: a dials its BTP listener.
    let b_engine_port = free_port();
    let b_data = path("b-data");
    let b_write = move |ports: Ports| {
        let link = "type = \"btp-server\"\nauth_username = \"a\"\nauth_token = \"a-token\"";
        node_config("b", ports, &b_data, "a", link, b_engine_port)
    };
    let b_connector = first_start(&b_write, &path("b-node.toml"), &path("b-node.log"));
    let b_btp = b_connector.btp;
    let a_engine_port = free_port();
    let a_data = path("a-data");
    let a_write = move |ports: Ports| {
        let link = format!(
            "type = \"btp-client\"\nurl = \"ws://{b_btp}\"\nauth_username = \"a\"\nauth_token = \"a-token\""
        );
        node_config("a", ports, &a_data, "b", &link, a_engine_port)
    };
    let a_connector = first_start(&a_write, &path("a-node.toml"), &path("a-node.log"));
    for (name, engine_port, connector, key) in [
        ("a", a_engine_port, &a_connector, KEYS[0]),
        ("b", b_engine_port, &b_connector, KEYS[1]),
    ] {
        let settlement = connector.settlement.unwrap().port();
        let text = engine_config(
            engine_port,
            settlement,
            &chain_url,
            key,
            &path(&format!("{name}-engine-data")),
            if kills { 300 } else { 100 },
        );
        std::fs::write(path(&format!("{name}-engine.toml")), text).unwrap();
    }
    let a_engine = EthEngine::start(&path("a-engine.toml"), &path("a-engine.log"));
    let b_engine = EthEngine::start(&path("b-engine.toml"), &path("b-engine.log"));
    let (a_payer, a_payee) = btp_clients(a_connector.btp, "test.b.payee", seed << 1, 30_000);
    let (b_payer, b_payee) = btp_clients(b_btp, "test.a.payee", seed << 1 | 1, 30_000);
    let mut a = Side {
        name: "a",
        dir: dir.clone(),
        connector: Some(a_connector),
        address: a_engine.address.clone(),
        engine: Some(a_engine),
        payer: a_payer,
        payee: a_payee,
    };
    let mut b = Side {
        name: "b",
        dir: dir.clone(),
        connector: Some(b_connector),
        address: b_engine.address.clone(),
        engine: Some(b_engine),
        payer: b_payer,
        payee: b_payee,
    };

    let clock = Clock::system();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut events = Vec::new();
    for phase in 0..phases {
        // The payers take turns: a pays b, then b pays a, ...
        let (payer, name) = if phase % 2 == 0 {
            (a.payer.clone(), "a")
        } else {
            (b.payer.clone(), "b")
        };
        payer.stop.store(false, Ordering::SeqCst);
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| tokio::spawn(payer.clone().run(clock)))
            .collect();
        let target = payer.fulfilled() + PER_PHASE;
        if kills {
            // Once the phase is under way (a settlement or two in progress), kill one of the
            // four processes and bring it back after a pause.
            let at = payer.fulfilled() + rng.gen_range(10..PER_PHASE / 2);
            wait_until("payments flow", START_BOUND, || payer.fulfilled() >= at).await;
            let pause = Duration::from_millis(rng.gen_range(0..1500));
            let which = rng.gen_range(0..4);
            let side = if which % 2 == 0 { &mut a } else { &mut b };
            let what = if which < 2 { "node" } else { "engine" };
            // The moment: just as a settlement reaches the process killed. The paying side's
            // engine has taken its node's request (kill the node) or is broadcasting the
            // transfer (kill the engine); the other side's engine has seen it arrive and is
            // about to credit it (kill either).
            let needle = match (which < 2, side.name == name) {
                (true, true) => "settlement queued",
                (false, true) => "INFO paying",
                (_, false) => "payment received",
            };
            let log = side.file("engine.log");
            let seen = mentions(&log, needle);
            let moment = Instant::now() + Duration::from_secs(20);
            while mentions(&log, needle) == seen && Instant::now() < moment {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            eprintln!(
                "phase {phase} ({name} pays): kill -9 {}'s {what}, back after {pause:?}",
                side.name
            );
            events.push(format!("{}-{what}", side.name));
            if which < 2 {
                if let Some(c) = side.connector.take() {
                    c.kill_9();
                }
            } else if let Some(e) = side.engine.take() {
                e.kill_9();
            }
            tokio::time::sleep(pause).await;
            let (config, log) = if which < 2 {
                (side.file("node.toml"), side.file("node.log"))
            } else {
                (side.file("engine.toml"), side.file("engine.log"))
            };
            if which < 2 {
                let c = tokio::task::spawn_blocking(move || Connector::start(&config, &log));
                side.connector = Some(c.await.unwrap());
            } else {
                let e = tokio::task::spawn_blocking(move || EthEngine::start(&config, &log));
                side.engine = Some(e.await.unwrap());
            }
        }
        wait_until("the phase's payments", START_BOUND * 3, || {
            payer.fulfilled() >= target
        })
        .await;
        payer.stop.store(true, Ordering::SeqCst);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("payer tasks end")
                .unwrap();
        }
    }

    // Every settlement paid on chain and credited on the other side: the chain and both
    // ledgers agree, and nothing is pending.
    let deadline = Instant::now() + SETTLE_BOUND;
    let (a_to_b, b_to_a, a_ledger, b_ledger) = loop {
        let a_to_b = transfers(&chain_url, &a.address, &b.address).await;
        let b_to_a = transfers(&chain_url, &b.address, &a.address).await;
        let (al, bl) = (ledger(&a, "b").await, ledger(&b, "a").await);
        if let (Some(al), Some(bl)) = (al, bl) {
            let agree = al.2 == 0
                && bl.2 == 0
                && al.0 * WEI_PER_UNIT == a_to_b.0
                && bl.1 * WEI_PER_UNIT == a_to_b.0
                && bl.0 * WEI_PER_UNIT == b_to_a.0
                && al.1 * WEI_PER_UNIT == b_to_a.0;
            if agree {
                break (a_to_b, b_to_a, al, bl);
            }
            assert!(
                Instant::now() < deadline,
                "chain and ledgers never agreed: a→b {a_to_b:?} wei, b→a {b_to_a:?} wei, \
                 a's ledger (out, in, pending) {al:?}, b's {bl:?}"
            );
        }
        assert!(Instant::now() < deadline, "ledgers unreadable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (a_bal, b_bal) = (
        balance(&a, "b").await.unwrap(),
        balance(&b, "a").await.unwrap(),
    );
    let paid = |side: &Side| {
        let book = side.payer.book.lock().unwrap();
        assert!(
            book.failures.is_empty(),
            "{}: {:?}",
            side.name,
            book.failures
        );
        i64::try_from(book.total()).unwrap()
    };
    let (a_paid, b_paid) = (paid(&a), paid(&b));
    let units = |v: u128| i64::try_from(v).unwrap();
    println!(
        "eth settlement: seed {seed}, {phases} phases, kills {events:?}; a paid {a_paid}, b paid \
         {b_paid} units; on chain a→b {} transfers, {} wei; b→a {} transfers, {} wei; \
         balances a {a_bal}, b {b_bal}",
        a_to_b.1, a_to_b.0, b_to_a.1, b_to_a.0
    );
    // What the restarts left the engines to finish (read from their logs).
    let both =
        |what: &str| mentions(&path("a-engine.log"), what) + mentions(&path("b-engine.log"), what);
    println!(
        "engines: {} settlement requests repeated by a restarted node, {} starts found payments \
         unconfirmed, {} credits were taken by the connector only on a later try, {} transfers \
         were made again (failed or displaced)",
        both("settlement repeated"),
        both("unconfirmed payments at start"),
        both("not taken yet"),
        both("paying again")
    );
    // Thresholds crossed again and again, both ways.
    assert!(
        a_to_b.1 >= 2 && b_to_a.1 >= 2,
        "too few settlements: {a_to_b:?} {b_to_a:?}"
    );
    // The books mirror each other, stay within the threshold, and are the traffic plus the
    // settlements.
    assert_eq!(a_bal, -b_bal, "a's balance with b mirrors b's with a");
    assert!(
        a_bal >= -THRESHOLD && b_bal >= -THRESHOLD,
        "{a_bal} {b_bal}"
    );
    assert_eq!(
        a_bal,
        b_paid - a_paid + units(a_ledger.0) - units(a_ledger.1),
        "a's balance: traffic and settlements"
    );
    assert_eq!(
        b_bal,
        a_paid - b_paid + units(b_ledger.0) - units(b_ledger.1),
        "b's balance: traffic and settlements"
    );
    let received = |side: &Side| i64::try_from(side.payee.lock().unwrap().total()).unwrap();
    assert_eq!(received(&a), b_paid, "a's payee");
    assert_eq!(received(&b), a_paid, "b's payee");
    drop(chain);
}
