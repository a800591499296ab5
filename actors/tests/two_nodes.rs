//! Two of our nodes, `test.a` and `test.b`, peered over BTP/2.0-I through a TCP proxy in this
//! test, each with a payer and a payee client; the payer on each side pays the payee on the
//! other, so traffic crosses the link both ways. At seeded moments the proxy cuts the link (every
//! connection closed, new ones refused) and restores it, or one of the nodes is `kill -9`ed and
//! restarted on its data directory. After a drain both nodes are stopped and their books read:
//! the two nodes' balances with each other are equal and opposite to the unit, and each equals
//! what the clients saw fulfilled.
//!
//! `ILP_TWO_NODES_SEED` (default 1), `ILP_TWO_NODES_EVENTS` (default 12) and
//! `ILP_TWO_NODES_K` (payments in flight per payer, default 8) set the run; the seed and the
//! figures are printed (`--nocapture`), and a seed replays its schedule of events.
//!
//! The third run, over BTP, gives its payments 90 s: beyond the nodes' maximum hold time, so the
//! node a payer is on forwards them with an expiry computed from its clock, and a payment the
//! payer repeats after that node was killed reaches the other node with other bytes (another
//! expiry). The other node must still see the same payment.

#![allow(clippy::unwrap_used)] // test harness: a failed spawn, lock or build is a test bug

mod common;

use common::clients::{btp_child as child, btp_clients as clients, PayeeBook, Payer};
use common::connector::{Connector, START_BOUND};
use common::{admin_get, block_on, env_u64, wait_until};
use ilp_actors::clock::Clock;
use ilp_actors::store::rocks::RocksStore;
use ilp_actors::store::Store;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The whole test, events and drain included, must end within this.
const TEST_BOUND: Duration = Duration::from_secs(300);
/// After the last event, every payment must be resolved within this.
const DRAIN_BOUND: Duration = Duration::from_secs(60);
/// Prepares expire this long after they are first sent. Within the nodes' maximum hold time
/// (30 s), each hop's outgoing expiry is its incoming one minus the message window, so a payment
/// repeated after a crash crosses the link with the same bytes, and the next node answers it from
/// its memory instead of paying it again.
const PAYMENT_EXPIRY_MS: u64 = 30_000;
/// Beyond the maximum hold time: a repeat crosses the link with another expiry.
const LONG_EXPIRY_MS: u64 = 90_000;

/// Node `test.<name>` with its payer and payee, and its peer account `<peer>` (whose `link`
/// table is `peer_link`), routing `test.<peer>` to it; `http`: its ILP-over-HTTP listener's port.
fn config(
    name: &str,
    port: u16,
    http: Option<u16>,
    data: &Path,
    peer: &str,
    peer_link: &str,
) -> String {
    let http = http.map_or(String::new(), |p| {
        format!("[listeners.http]\nbind = \"127.0.0.1:{p}\"\n")
    });
    format!(
        r#"
[node]
ilp_address = "test.{name}"
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "127.0.0.1:{port}"
{http}[listeners.admin]
bind = "127.0.0.1:0"
[store]
backend = "rocksdb"
path = "{data}"
[[routing.static_routes]]
prefix = "test.{peer}"
account = "{peer}"
{payer}{payee}
[accounts.{peer}]
relation = "peer"
btp_idempotent = {btp}
[accounts.{peer}.link]
{peer_link}
[accounts.{peer}.settlement]
bilateral = true
[accounts.{peer}.balance]
minimum = -1000000000000000
maximum = 1000000000000000
settle_threshold = -{SETTLE_THRESHOLD}
settle_to = 0
[accounts.{peer}.rate_limit]
enabled = false
"#,
        data = data.display(),
        btp = http.is_empty(),
        payer = child("payer"),
        payee = child("payee"),
    )
}

/// A node that owes its peer more than this settles (built-in bilateral settlement over the
/// link), so settlements run throughout the test.
const SETTLE_THRESHOLD: u64 = 5_000;

/// A TCP proxy between the two nodes that can cut the link: while cut, every connection is
/// closed and new ones are refused.
struct Proxy {
    addr: SocketAddr,
    /// Where connections go; `None` until the node behind it has started.
    target: Arc<Mutex<Option<SocketAddr>>>,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: Option<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let cut = cut.clone();
            let connections = connections.clone();
            let target = target.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let to = *target.lock().unwrap();
                    let Some(to) = to.filter(|_| !cut.load(Ordering::SeqCst)) else {
                        continue;
                    };
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut live = connections.lock().unwrap();
                    live.retain(|c| !c.is_finished());
                    live.push(relay);
                }
            })
        };
        Proxy {
            addr,
            target,
            cut,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn set_target(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = Some(to);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// How the two nodes are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// A dials B's BTP listener; both accounts speak BTP/2.0-I.
    Btp,
    /// Asynchronous ILP over HTTP both ways, answers POSTed to each node's callback path.
    HttpAsync,
}

/// The `link` table of `me`'s account for `peer` over async HTTP: requests go to the peer
/// through `to_peer`, answers come back through `to_me`.
fn http_link(me: &str, peer: &str, to_peer: SocketAddr, to_me: SocketAddr) -> String {
    format!(
        "type = \"http\"\nmode = \"async\"\n\
         outgoing_url = \"http://{to_peer}/accounts/{me}/ilp\"\n\
         outgoing_auth_token = \"{me}-secret\"\nincoming_auth_token = \"{peer}-secret\"\n\
         callback_url = \"http://{to_me}/accounts/{peer}/callback\""
    )
}

/// One node: its process, files and clients.
struct Side {
    name: &'static str,
    config: PathBuf,
    log: PathBuf,
    data: PathBuf,
    connector: Option<Connector>,
    payer: Arc<Payer>,
    payee: Arc<Mutex<PayeeBook>>,
}

impl Side {
    fn stop(&mut self) {
        if let Some(c) = self.connector.take() {
            let status = c.terminate();
            assert!(
                status.success(),
                "{}: clean exit after SIGTERM: {status}",
                self.name
            );
        }
    }
}

/// The address of the admin API of `side`'s running node: it binds a port of the OS's choice at
/// every start, read from what the node prints.
fn admin_of(side: &Side) -> Option<SocketAddr> {
    side.connector.as_ref().and_then(|c| c.admin)
}

/// The settlements booked in `store`: id → (direction byte, amount).
fn settlements(store: &RocksStore) -> BTreeMap<Vec<u8>, (u8, u64)> {
    store
        .scan_records(b"settle/", b"settle0")
        .unwrap()
        .into_iter()
        .map(|(key, value)| {
            let amount = u64::from_be_bytes(value[1..9].try_into().unwrap());
            (key[b"settle/".len()..].to_vec(), (value[0], amount))
        })
        .collect()
}

/// The ports a node's configuration names: its BTP and ILP-over-HTTP listeners'.
#[derive(Clone, Copy)]
struct Ports {
    btp: u16,
    http: u16,
}

/// Starts a node on `config_path` with ports the OS picks, then rewrites its configuration
/// with those ports so every restart takes the same ones.
fn first_start(
    write: &dyn Fn(Ports) -> String,
    config_path: &Path,
    log: &Path,
) -> (Connector, SocketAddr) {
    std::fs::write(config_path, write(Ports { btp: 0, http: 0 })).unwrap();
    let connector = Connector::start(config_path, log);
    let btp = connector.btp;
    let http = connector.http.map_or(0, |a| a.port());
    std::fs::write(
        config_path,
        write(Ports {
            btp: btp.port(),
            http,
        }),
    )
    .unwrap();
    (connector, btp)
}

#[test]
fn two_nodes_over_btp_under_link_cuts_and_kills_keep_mirrored_books() {
    two_nodes(Transport::Btp, PAYMENT_EXPIRY_MS);
}

#[test]
fn two_nodes_over_async_http_under_link_cuts_and_kills_keep_mirrored_books() {
    two_nodes(Transport::HttpAsync, PAYMENT_EXPIRY_MS);
}

#[test]
fn two_nodes_with_expiries_beyond_the_hold_time_keep_mirrored_books() {
    two_nodes(Transport::Btp, LONG_EXPIRY_MS);
}

fn two_nodes(transport: Transport, expiry_ms: u64) {
    let seed = env_u64("ILP_TWO_NODES_SEED", 1);
    let events = env_u64("ILP_TWO_NODES_EVENTS", 12);
    let in_flight = env_u64("ILP_TWO_NODES_K", 8);
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f);
    let (a_data, b_data) = (path("a-data"), path("b-data"));

    let (figures, a_side, b_side) = block_on(async {
        tokio::time::timeout(TEST_BOUND, async {
            // Every connection between the nodes crosses a proxy, so a cut is total. B starts
            // first: over BTP, A dials it.
            type Write = Box<dyn Fn(Ports) -> String + Send>;
            let (proxies, a_config, (b_connector, b_btp)): (Vec<Proxy>, Write, _) = match transport
            {
                Transport::Btp => {
                    let data = b_data.clone();
                    let b_config = move |ports: Ports| {
                        let link = "type = \"btp-server\"\nauth_username = \"a\"\n\
                                        auth_token = \"a-token\"";
                        config("b", ports.btp, None, &data, "a", link)
                    };
                    let b = first_start(&b_config, &path("b.toml"), &path("b.log"));
                    let proxy = Proxy::start(Some(b.1)).await;
                    let url = format!("ws://{}", proxy.addr);
                    let data = a_data.clone();
                    let a_config = move |ports: Ports| {
                        let link = format!(
                            "type = \"btp-client\"\nurl = \"{url}\"\n\
                                 auth_username = \"a\"\nauth_token = \"a-token\""
                        );
                        config("a", ports.btp, None, &data, "b", &link)
                    };
                    (vec![proxy], Box::new(a_config), b)
                }
                Transport::HttpAsync => {
                    // Each node's HTTP listener takes a port of the OS's choice at its first
                    // start; the proxy in front of it learns it then.
                    let to_a = Proxy::start(None).await;
                    let to_b = Proxy::start(None).await;
                    let (to_a_addr, to_b_addr) = (to_a.addr, to_b.addr);
                    let data = b_data.clone();
                    let b_config = move |ports: Ports| {
                        let link = http_link("b", "a", to_a_addr, to_b_addr);
                        config("b", ports.btp, Some(ports.http), &data, "a", &link)
                    };
                    let b = first_start(&b_config, &path("b.toml"), &path("b.log"));
                    to_b.set_target(b.0.http.expect("b serves ILP over HTTP"));
                    let data = a_data.clone();
                    let a_config = move |ports: Ports| {
                        let link = http_link("a", "b", to_b_addr, to_a_addr);
                        config("a", ports.btp, Some(ports.http), &data, "b", &link)
                    };
                    (vec![to_a, to_b], Box::new(a_config), b)
                }
            };
            let (a_connector, a_btp) = first_start(&*a_config, &path("a.toml"), &path("a.log"));
            if let Some(http) = a_connector.http {
                // Over HTTP the first proxy is the one in front of A.
                proxies[0].set_target(http);
            }
            let (a_payer, a_payee) = clients(a_btp, "test.b.payee", seed << 1, expiry_ms);
            let (b_payer, b_payee) = clients(b_btp, "test.a.payee", seed << 1 | 1, expiry_ms);
            let mut a = Side {
                name: "a",
                config: path("a.toml"),
                log: path("a.log"),
                data: a_data.clone(),
                connector: Some(a_connector),
                payer: a_payer,
                payee: a_payee,
            };
            let mut b = Side {
                name: "b",
                config: path("b.toml"),
                log: path("b.log"),
                data: b_data.clone(),
                connector: Some(b_connector),
                payer: b_payer,
                payee: b_payee,
            };
            let clock = Clock::system();
            let mut tasks = Vec::new();
            for payer in [&a.payer, &b.payer] {
                for _ in 0..in_flight {
                    tasks.push(tokio::spawn(payer.clone().run(clock)));
                }
            }

            let mut rng = SmallRng::seed_from_u64(seed);
            let (mut cuts, mut kills) = (0, 0);
            for event in 0..events {
                // Payments must flow both ways before each event.
                let (fa, fb) = (a.payer.fulfilled(), b.payer.fulfilled());
                wait_until("payments flow both ways", START_BOUND, || {
                    a.payer.fulfilled() >= fa + 3 && b.payer.fulfilled() >= fb + 3
                })
                .await;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..500))).await;
                let pause = Duration::from_millis(rng.gen_range(0..800));
                match rng.gen_range(0..3) {
                    0 => {
                        eprintln!("event {}: link cut for {pause:?}", event + 1);
                        cuts += 1;
                        proxies.iter().for_each(Proxy::cut);
                        tokio::time::sleep(pause).await;
                        proxies.iter().for_each(Proxy::restore);
                    }
                    which => {
                        let side = if which == 1 { &mut a } else { &mut b };
                        eprintln!("event {}: kill -9 {}", event + 1, side.name);
                        kills += 1;
                        if let Some(c) = side.connector.take() {
                            c.kill_9();
                        }
                        tokio::time::sleep(pause).await;
                        let (config, log) = (side.config.clone(), side.log.clone());
                        side.connector = Some(
                            tokio::task::spawn_blocking(move || Connector::start(&config, &log))
                                .await
                                .unwrap(),
                        );
                    }
                }
            }
            // Traffic after the last event, then drain.
            let (fa, fb) = (a.payer.fulfilled(), b.payer.fulfilled());
            wait_until("payments flow after the last event", START_BOUND, || {
                a.payer.fulfilled() >= fa + 3 && b.payer.fulfilled() >= fb + 3
            })
            .await;
            for payer in [&a.payer, &b.payer] {
                payer.stop.store(true, Ordering::SeqCst);
            }
            let drained = tokio::time::timeout(DRAIN_BOUND, futures::future::join_all(tasks)).await;
            let Ok(drained) = drained else {
                let stuck = |p: &Payer| p.book.lock().unwrap().stuck(10);
                panic!(
                    "payments unresolved {DRAIN_BOUND:?} after the last event: a's {:?}, b's {:?}",
                    stuck(&a.payer),
                    stuck(&b.payer)
                );
            };
            drained.into_iter().for_each(|t| t.unwrap());
            // Settlements still under way finish: both nodes' balances with each other agree
            // on a few reads in a row.
            let mut agreed = 0;
            let quiet = tokio::time::timeout(DRAIN_BOUND, async {
                while agreed < 5 {
                    let a_with_b = admin_get(admin_of(&a), "/accounts/b")
                        .await
                        .and_then(|v| v["balance"].as_i64());
                    let b_with_a = admin_get(admin_of(&b), "/accounts/a")
                        .await
                        .and_then(|v| v["balance"].as_i64());
                    agreed = if a_with_b.is_some() && a_with_b == b_with_a.map(|v| -v) {
                        agreed + 1
                    } else {
                        0
                    };
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await;
            assert!(
                quiet.is_ok(),
                "the nodes' balances with each other never agreed"
            );
            let (a, b) = tokio::task::spawn_blocking(move || {
                a.stop();
                b.stop();
                (a, b)
            })
            .await
            .unwrap();
            drop(proxies);
            ((cuts, kills), a, b)
        })
        .await
        .expect("the two-node test did not finish in time")
    });

    let (a_store, b_store) = (
        RocksStore::open(&a_side.data).unwrap(),
        RocksStore::open(&b_side.data).unwrap(),
    );
    let (a_books, b_books) = (
        a_store.load_balances().unwrap(),
        b_store.load_balances().unwrap(),
    );
    // Every settlement one node sent, the other received: same id, same amount, once each.
    let (a_settled, b_settled) = (settlements(&a_store), settlements(&b_store));
    let flipped = |records: &BTreeMap<Vec<u8>, (u8, u64)>| -> BTreeMap<Vec<u8>, (u8, u64)> {
        records
            .iter()
            .map(|(id, (dir, amount))| {
                let other = if *dir == b'S' { b'R' } else { b'S' };
                (id.clone(), (other, *amount))
            })
            .collect()
    };
    assert_eq!(flipped(&a_settled), b_settled, "settlement records differ");
    let net_sent = |records: &BTreeMap<Vec<u8>, (u8, u64)>| -> i64 {
        records
            .values()
            .map(|(dir, amount)| {
                let amount = i64::try_from(*amount).unwrap();
                if *dir == b'S' {
                    amount
                } else {
                    -amount
                }
            })
            .sum()
    };
    let a_net_settled = net_sent(&a_settled);
    let total = |side: &Side| {
        let book = side.payer.book.lock().unwrap();
        assert!(
            book.failures.is_empty(),
            "{}: {:?}",
            side.name,
            book.failures
        );
        (book.fulfilled.len(), i64::try_from(book.total()).unwrap())
    };
    let (a_payments, a_paid) = total(&a_side);
    let (b_payments, b_paid) = total(&b_side);
    let payee_total = |side: &Side| i64::try_from(side.payee.lock().unwrap().total()).unwrap();
    let balance = |books: &BTreeMap<String, i64>, id: &str| books.get(id).copied().unwrap_or(0);
    println!(
        "two nodes over {transport:?}: seed {seed}, {} link cuts, {} kill -9s, {in_flight} in flight per payer; \
         a's payer {a_payments} payments ({a_paid} units), b's payer {b_payments} payments \
         ({b_paid} units); {} settlements ({a_net_settled} net from a to b); a's books \
         {a_books:?}, b's books {b_books:?}",
        figures.0,
        figures.1,
        a_settled.len()
    );
    // Each payer is charged what it saw fulfilled; each payee credited what it was paid.
    assert_eq!(balance(&a_books, "payer"), a_paid, "a's payer");
    assert_eq!(balance(&b_books, "payer"), b_paid, "b's payer");
    assert_eq!(balance(&a_books, "payee"), -b_paid, "a's payee");
    assert_eq!(balance(&b_books, "payee"), -a_paid, "b's payee");
    assert_eq!(payee_total(&a_side), b_paid, "a's payee client");
    assert_eq!(payee_total(&b_side), a_paid, "b's payee client");
    // The peers' books mirror each other, and each equals the traffic across the link.
    assert_eq!(
        balance(&a_books, "b"),
        -balance(&b_books, "a"),
        "a's balance with b mirrors b's with a"
    );
    assert_eq!(
        balance(&a_books, "b"),
        b_paid - a_paid + a_net_settled,
        "a's balance with b: the traffic across the link and the settlements"
    );
}
