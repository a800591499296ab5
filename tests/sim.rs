//! Simulation: hundreds of connector nodes in one process, over in-memory links, on virtual time.
//!
//! A seeded random topology (tier-1 peers in a full mesh, tier-2 children with a few peerings
//! among them, tier-3 children below), four assets with different scales and static rates. Each
//! node has a `wallet` child account whose far end is a test actor that pays out of and receives
//! into it. CCP has to converge before random payments between random pairs succeed; then faults
//! are injected while traffic flows. After every scenario the books are checked:
//! - every pair of peers agrees on its mutual balance (one is the negative of the other);
//! - nothing is left pending in any balance;
//! - every payment was answered, and no wallet was paid twice for one payment;
//! - each wallet account's balance is exactly what the driver saw fulfilled from it minus what
//!   its wallet accepted, so no value was created or lost on any link or wallet.
//!
//! The seed is printed on failure (`ILP_SIM_SEED=<seed>` reproduces a run); `ILP_SIM_NODES`
//! changes the size.

#![allow(clippy::unwrap_used)] // test harness: a failed lock or build is a test bug

use actix::prelude::*;
use futures::future::join_all;
use ilp::config::Config;
use ilp::packet::{Address, ErrorCode, Fulfill, FulfillBuilder, PrepareBuilder, Reject};
use ilp_actors::clock::Clock;
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{
    AccountId, ApplySettlement, Crash, GetBalance, IncomingPrepare, PacketResult, Reply,
    SettlementDirection,
};
use ilp_actors::node::{Node, NodeOptions};
use ilp_actors::store::memory::MemoryStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Virtual start time: 2030-01-01T00:00:00Z.
const EPOCH_MS: u64 = 1_893_456_000_000;
const ASSETS: [(&str, u8); 4] = [("USD", 9), ("EUR", 6), ("XRP", 6), ("JPY", 3)];
const RATES: &str = "USD = \"1\"\nEUR = \"0.9\"\nXRP = \"2.5\"\nJPY = \"150\"\n";
/// The same rates in tenths, to size balance limits to equal value on every link.
const RATE_TENTHS: [i64; 4] = [10, 9, 25, 1500];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Parent,
    Peer,
    Child,
}

impl Relation {
    fn as_str(self) -> &'static str {
        match self {
            Relation::Parent => "parent",
            Relation::Peer => "peer",
            Relation::Child => "child",
        }
    }
}

/// One end of a link between two nodes, as node `node` sees it.
#[derive(Debug, Clone)]
struct AccountSpec {
    id: String,
    relation: Relation,
    asset: usize,
    /// The other node and the id of its account for us.
    remote: (usize, String),
    link: usize,
}

#[derive(Debug, Clone)]
struct NodeSpec {
    address: String,
    /// Learn the address from this parent account over IL-DCP instead of configuring it.
    inherit_from: Option<String>,
    asset: usize,
    accounts: Vec<AccountSpec>,
}

struct Topology {
    nodes: Vec<NodeSpec>,
    /// Per link: the two ends' (node, account id).
    links: Vec<[(usize, String); 2]>,
}

fn generate(n: usize, rng: &mut SmallRng) -> Topology {
    let tier1 = (n / 25).max(3);
    let tier2 = ((n - tier1) / 4).max(1);
    let mut nodes: Vec<NodeSpec> = Vec::with_capacity(n);
    let mut links = Vec::new();
    let mut connect = |nodes: &mut Vec<NodeSpec>, a: usize, b: usize, rel_a: Relation| {
        let link = links.len();
        // `rel_a` is what b is to a.
        let rel_b = match rel_a {
            Relation::Child => Relation::Parent,
            Relation::Parent => Relation::Child,
            Relation::Peer => Relation::Peer,
        };
        let asset = if rel_a == Relation::Child {
            nodes[a].asset
        } else {
            nodes[a.min(b)].asset
        };
        let id_at_a = format!("n{b}");
        let id_at_b = format!("n{a}");
        nodes[a].accounts.push(AccountSpec {
            id: id_at_a.clone(),
            relation: rel_a,
            asset,
            remote: (b, id_at_b.clone()),
            link,
        });
        nodes[b].accounts.push(AccountSpec {
            id: id_at_b.clone(),
            relation: rel_b,
            asset,
            remote: (a, id_at_a.clone()),
            link,
        });
        links.push([(a, id_at_a), (b, id_at_b)]);
    };
    for i in 0..tier1 {
        nodes.push(NodeSpec {
            address: format!("test.t{i}"),
            inherit_from: None,
            asset: rng.gen_range(0..ASSETS.len()),
            accounts: Vec::new(),
        });
    }
    for a in 0..tier1 {
        for b in a + 1..tier1 {
            connect(&mut nodes, a, b, Relation::Peer);
        }
    }
    for i in tier1..n {
        let parent = if i < tier1 + tier2 {
            rng.gen_range(0..tier1)
        } else {
            rng.gen_range(tier1..tier1 + tier2)
        };
        let address = format!("{}.n{i}", nodes[parent].address);
        // Tier-3 nodes learn their address from their parent (IL-DCP).
        let inherit_from = (i >= tier1 + tier2).then(|| format!("n{parent}"));
        nodes.push(NodeSpec {
            address,
            inherit_from,
            asset: rng.gen_range(0..ASSETS.len()),
            accounts: Vec::new(),
        });
        connect(&mut nodes, parent, i, Relation::Child);
    }
    // A few peerings among tier-2 nodes under different parents.
    for _ in 0..tier2 / 4 {
        let a = rng.gen_range(tier1..tier1 + tier2);
        let b = rng.gen_range(tier1..tier1 + tier2);
        let already = nodes[a].accounts.iter().any(|x| x.remote.0 == b);
        if a != b && !already {
            connect(&mut nodes, a, b, Relation::Peer);
        }
    }
    Topology { nodes, links }
}

/// Limits: 1000 USD worth in each direction, wide enough that routine traffic never hits them,
/// and a settle threshold of 2 USD worth so that settlement runs during the simulation (every
/// node-to-node account settles bilaterally: one operator runs the whole network).
fn balance_table(asset: usize) -> String {
    let unit = 10i64.pow(u32::from(ASSETS[asset].1)) * RATE_TENTHS[asset] / 10;
    format!(
        "minimum = {}\nmaximum = {}\nsettle_threshold = {}\nsettle_to = 0\n",
        -1_000 * unit,
        1_000 * unit,
        -2 * unit
    )
}

fn config_for(node: &NodeSpec) -> String {
    let (code, scale) = ASSETS[node.asset];
    let mut t = String::new();
    let _ = write!(
        t,
        "[node]\n{}asset_code = \"{code}\"\nasset_scale = {scale}\n\
         spread = \"0.001\"\n\n[rates]\nbackend = \"static\"\n\n[rates.static]\n{RATES}\n\
         [broadcast]\ninterval_ms = 5000\nroute_expiry_ms = 20000\n\n[store]\nbackend = \"memory\"\n\n",
        match &node.inherit_from {
            Some(parent) => format!("ilp_address_inherit_from = \"{parent}\"\n"),
            None => format!("ilp_address = \"{}\"\n", node.address),
        }
    );
    let _ = write!(
        t,
        "[accounts.wallet]\nrelation = \"child\"\n[accounts.wallet.link]\ntype = \"memory\"\n\
         [accounts.wallet.balance]\nminimum = -9000000000000000000\nmaximum = 9000000000000000000\n\
         [accounts.wallet.rate_limit]\nenabled = false\n\n"
    );
    for a in &node.accounts {
        let (acode, ascale) = ASSETS[a.asset];
        let _ = write!(
            t,
            "[accounts.{id}]\nrelation = \"{rel}\"\nasset_code = \"{acode}\"\nasset_scale = {ascale}\n\
             [accounts.{id}.link]\ntype = \"memory\"\n[accounts.{id}.balance]\n{bal}\
             [accounts.{id}.rate_limit]\nenabled = false\n\
             [accounts.{id}.settlement]\nbilateral = true\n\n",
            id = a.id,
            rel = a.relation.as_str(),
            bal = balance_table(a.asset),
        );
    }
    t
}

// ---- wallets --------------------------------------------------------------------------------

/// What the driver and the wallets saw, in base units of each wallet's node asset.
#[derive(Debug, Default)]
struct Ledger {
    /// Per node: sum of source amounts of payments the sender saw fulfilled.
    sent_fulfilled: HashMap<usize, u128>,
    /// Per node: sum of amounts its wallet accepted (fulfilled correctly).
    delivered: HashMap<usize, u128>,
    /// Payment id -> deliveries to a wallet (must never exceed one).
    deliveries: HashMap<u64, u32>,
    /// Outcomes of payments by code ("fulfilled" or the reject code).
    outcomes: BTreeMap<String, u64>,
}

/// The far end of a node's `wallet` account: fulfills payments addressed to it whose data holds
/// the preimage of the condition, unless told to answer with a wrong fulfillment.
struct Wallet {
    node: usize,
    ledger: Arc<Mutex<Ledger>>,
    wrong_fulfillment: Arc<AtomicBool>,
}

impl Actor for Wallet {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Wallet {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let p = msg.prepare;
        let data = p.data();
        let reject = |code: ErrorCode| Err(Reject::new(code, None, "wallet refused"));
        if data.len() != 40 {
            return Reply::ready(reject(ErrorCode::F06_UNEXPECTED_PAYMENT));
        }
        let mut preimage = [0u8; 32];
        preimage.copy_from_slice(&data[..32]);
        let id = u64::from_be_bytes(data[32..40].try_into().unwrap_or([0; 8]));
        if Sha256::digest(preimage).as_slice() != p.execution_condition() {
            return Reply::ready(reject(ErrorCode::F05_WRONG_CONDITION));
        }
        if self.wrong_fulfillment.load(Ordering::SeqCst) {
            return Reply::ready(Ok(fulfill(&[0xEE; 32])));
        }
        let mut ledger = self.ledger.lock().unwrap();
        *ledger.delivered.entry(self.node).or_default() += u128::from(p.amount());
        *ledger.deliveries.entry(id).or_default() += 1;
        Reply::ready(Ok(fulfill(&preimage)))
    }
}

fn fulfill(preimage: &[u8; 32]) -> Fulfill {
    FulfillBuilder {
        fulfillment: preimage,
        data: &[],
    }
    .build()
    .unwrap()
}

// ---- the simulated network --------------------------------------------------------------------

struct Sim {
    seed: u64,
    topo: Topology,
    nodes: Vec<Node>,
    links: Vec<(MemoryLink, MemoryLink)>,
    wallets: Vec<MemoryLink>,
    stores: Vec<MemoryStore>,
    wrong: Vec<Arc<AtomicBool>>,
    ledger: Arc<Mutex<Ledger>>,
    clock: Clock,
    rng: SmallRng,
    next_payment: u64,
    /// Faults injected and maybe not fired yet.
    faults: Vec<tokio::task::JoinHandle<()>>,
}

impl Sim {
    fn start(seed: u64, n: usize) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let topo = generate(n, &mut rng);
        let clock = Clock::starting_at(EPOCH_MS);
        let links: Vec<(MemoryLink, MemoryLink)> =
            topo.links.iter().map(|_| MemoryLink::pair()).collect();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut nodes = Vec::new();
        let mut wallets = Vec::new();
        let mut wrong = Vec::new();
        let mut stores = Vec::new();
        for (i, spec) in topo.nodes.iter().enumerate() {
            let config = Config::from_toml_str(&config_for(spec))
                .unwrap_or_else(|e| panic!("seed {seed}: node {i} config:\n{e}"));
            let mut node_links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
            for a in &spec.accounts {
                let pair = &links[a.link];
                let end = if topo.links[a.link][0].0 == i {
                    pair.0.clone()
                } else {
                    pair.1.clone()
                };
                node_links.insert(Arc::from(a.id.as_str()), Arc::new(end));
            }
            let (node_end, wallet_end) = MemoryLink::pair();
            node_links.insert(Arc::from("wallet"), Arc::new(node_end));
            let flag = Arc::new(AtomicBool::new(false));
            let wallet = Wallet {
                node: i,
                ledger: ledger.clone(),
                wrong_fulfillment: flag.clone(),
            }
            .start();
            wallet_end.attach(wallet.recipient());
            let store = MemoryStore::new();
            stores.push(store.clone());
            let node = Node::start(
                &config,
                NodeOptions {
                    clock,
                    store: Arc::new(store),
                    seed: seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    links: node_links,
                    metrics: None,
                },
            )
            .unwrap_or_else(|e| panic!("seed {seed}: node {i} start: {e}"));
            nodes.push(node);
            wallets.push(wallet_end);
            wrong.push(flag);
        }
        Sim {
            seed,
            topo,
            nodes,
            links,
            wallets,
            stores,
            wrong,
            ledger,
            clock,
            rng,
            next_payment: 1,
            faults: Vec::new(),
        }
    }

    /// Nodes without a configured address ask their parent over IL-DCP; the address each gets
    /// must be the one the topology planned.
    async fn inherit_addresses(&self) {
        let mut asks = Vec::new();
        for (i, spec) in self.topo.nodes.iter().enumerate() {
            if let Some(parent) = &spec.inherit_from {
                let node = &self.nodes[i];
                asks.push(async move { (i, node.inherit_address(parent, self.clock).await) });
            }
        }
        for (i, result) in join_all(asks).await {
            let got = result.unwrap_or_else(|e| panic!("seed {}: node {i}: {e}", self.seed));
            assert_eq!(
                got.client_address.as_str(),
                self.topo.nodes[i].address,
                "seed {}: node {i} got the wrong address over IL-DCP",
                self.seed
            );
        }
    }

    /// Sends one payment of `amount` (sender's base units) from `from`'s wallet to `to`'s wallet.
    fn pay(
        &mut self,
        from: usize,
        to: usize,
        amount: u64,
    ) -> impl std::future::Future<Output = (usize, u64, PacketResult)> {
        let id = self.next_payment;
        self.next_payment += 1;
        let mut preimage = [0u8; 32];
        self.rng.fill(&mut preimage);
        let condition: [u8; 32] = Sha256::digest(preimage).into();
        let mut data = preimage.to_vec();
        data.extend_from_slice(&id.to_be_bytes());
        let dest = Address::try_from(format!("{}.wallet", self.topo.nodes[to].address)).unwrap();
        let prepare = PrepareBuilder {
            amount,
            expires_at: self.clock.now().checked_add_millis(30_000).unwrap(),
            execution_condition: &condition,
            destination: &dest,
            data: &data,
        }
        .build()
        .unwrap();
        let send = self.wallets[from].send_prepare(prepare);
        async move {
            let result = match send.await {
                Ok(r) => r,
                Err(e) => Err(Reject::new(
                    ErrorCode::T01_PEER_UNREACHABLE,
                    None,
                    &e.to_string(),
                )),
            };
            (from, amount, result)
        }
    }

    /// Sends `count` random payments, `concurrency` at a time, and books their outcomes.
    async fn traffic(&mut self, count: usize, concurrency: usize) -> BTreeMap<String, u64> {
        let n = self.nodes.len();
        let mut outcomes = BTreeMap::new();
        let mut left = count;
        while left > 0 {
            let batch = left.min(concurrency);
            left -= batch;
            let mut futures = Vec::with_capacity(batch);
            for _ in 0..batch {
                let from = self.rng.gen_range(0..n);
                let mut to = self.rng.gen_range(0..n);
                if to == from {
                    to = (to + 1) % n;
                }
                let scale = ASSETS[self.topo.nodes[from].asset].1;
                let amount =
                    self.rng.gen_range(1..=1_000) * 10u64.pow(u32::from(scale.saturating_sub(3)));
                futures.push(self.pay(from, to, amount));
            }
            for (from, amount, result) in join_all(futures).await {
                let key = match &result {
                    Ok(_) => "fulfilled".to_owned(),
                    Err(r) => r.code().to_string(),
                };
                *outcomes.entry(key).or_insert(0u64) += 1;
                if result.is_ok() {
                    let mut ledger = self.ledger.lock().unwrap();
                    *ledger.sent_fulfilled.entry(from).or_default() += u128::from(amount);
                }
            }
        }
        let mut ledger = self.ledger.lock().unwrap();
        for (k, v) in &outcomes {
            *ledger.outcomes.entry(k.clone()).or_default() += v;
        }
        outcomes
    }

    /// Runs `fault` after a random number of scheduler turns, so that it lands while the
    /// packets of the current batch are in flight.
    fn inject(&mut self, fault: impl FnOnce() + 'static) {
        let turns = self.rng.gen_range(0..300);
        self.faults.push(actix::spawn(async move {
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
            fault();
        }));
    }

    /// Waits until every fault injected so far has fired (traffic may finish in fewer
    /// scheduler turns than a fault waits).
    async fn faults_fired(&mut self) {
        for fault in std::mem::take(&mut self.faults) {
            let _ = fault.await;
        }
    }

    /// Settlements applied (received) across all nodes so far.
    fn settlements(&self) -> usize {
        self.stores
            .iter()
            .map(|s| s.count_records(b"settle/"))
            .sum()
    }

    /// Lets virtual time run so that every packet resolves, retries and settlements finish.
    async fn settle_down(&self) {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }

    async fn balance(&self, node: usize, account: &str) -> ilp_actors::messages::BalanceSnapshot {
        self.nodes[node]
            .balance
            .send(GetBalance {
                account: Arc::from(account),
            })
            .await
            .unwrap_or_else(|e| panic!("seed {}: balance keeper of node {node}: {e}", self.seed))
            .unwrap_or_else(|| {
                panic!(
                    "seed {}: node {node} has no balance for {account}",
                    self.seed
                )
            })
    }

    /// Checks every invariant; returns a list of violations (empty when the books are right).
    async fn check(&self, scenario: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for [(a, ida), (b, idb)] in &self.topo.links {
            let x = self.balance(*a, ida).await;
            let y = self.balance(*b, idb).await;
            if x.balance != -y.balance {
                problems.push(format!(
                    "{scenario}: link n{a}/{ida} <-> n{b}/{idb}: balances {} and {} do not mirror",
                    x.balance, y.balance
                ));
            }
            for (node, id, s) in [(a, ida, x), (b, idb, y)] {
                if s.pending_incoming != 0 || s.pending_outgoing != 0 {
                    problems.push(format!("{scenario}: n{node}/{id} still has pending {s:?}"));
                }
            }
        }
        let expected: Vec<(usize, i128)> = {
            let ledger = self.ledger.lock().unwrap();
            for (id, count) in &ledger.deliveries {
                if *count > 1 {
                    problems.push(format!("{scenario}: payment {id} delivered {count} times"));
                }
            }
            (0..self.nodes.len())
                .map(|i| {
                    let sent = ledger.sent_fulfilled.get(&i).copied().unwrap_or(0) as i128;
                    let got = ledger.delivered.get(&i).copied().unwrap_or(0) as i128;
                    (i, sent - got)
                })
                .collect()
        };
        for (i, want) in expected {
            let s = self.balance(i, "wallet").await;
            if i128::from(s.balance) != want {
                problems.push(format!(
                    "{scenario}: wallet of n{i}: balance {} but the driver saw {want}",
                    s.balance
                ));
            }
            if s.pending_incoming != 0 || s.pending_outgoing != 0 {
                problems.push(format!(
                    "{scenario}: wallet of n{i} still has pending {s:?}"
                ));
            }
        }
        problems
    }
}

fn seed() -> u64 {
    std::env::var("ILP_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}

fn node_count() -> usize {
    std::env::var("ILP_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

fn fail(seed: u64, problems: &[String]) -> ! {
    panic!(
        "simulation failed; reproduce with ILP_SIM_SEED={seed}\n{}",
        problems.join("\n")
    )
}

#[test]
fn simulation_of_hundreds_of_nodes() {
    let seed = seed();
    let n = node_count();
    println!("simulation seed {seed} ({n} nodes); reproduce with ILP_SIM_SEED={seed}");
    ilp_actors::test_support::run(async move {
        let mut sim = Sim::start(seed, n);

        sim.inherit_addresses().await;

        // 1. CCP converges: after a few broadcast rounds, random payments all succeed.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let outcomes = sim.traffic(400, 50).await;
        println!("converged traffic: {outcomes:?}");
        sim.settle_down().await;
        let mut problems = sim.check("converged").await;
        let fulfilled = outcomes.get("fulfilled").copied().unwrap_or(0);
        if fulfilled != 400 {
            problems.push(format!(
                "converged: only {fulfilled} of 400 payments fulfilled: {outcomes:?}"
            ));
        }
        if !problems.is_empty() {
            fail(seed, &problems);
        }

        // 2. Crash actors of random nodes while traffic flows; supervisors bring them back.
        let mut crashes = Vec::new();
        for _ in 0..10 {
            let i = sim.rng.gen_range(0..n);
            let node = &sim.nodes[i];
            match sim.rng.gen_range(0..3) {
                0 => {
                    let k = sim.rng.gen_range(0..node.accounts.len());
                    let Some(account) = node.accounts.values().nth(k).cloned() else {
                        continue;
                    };
                    crashes.push(format!("n{i} account {k}"));
                    sim.inject(move || account.do_send(Crash));
                }
                1 => {
                    let router = node.router.clone();
                    crashes.push(format!("n{i} router"));
                    sim.inject(move || router.do_send(Crash));
                }
                _ => {
                    let keeper = node.balance.clone();
                    crashes.push(format!("n{i} balance keeper"));
                    sim.inject(move || keeper.do_send(Crash));
                }
            }
        }
        let outcomes = sim.traffic(300, 50).await;
        println!("traffic with crashes ({crashes:?}): {outcomes:?}");
        sim.settle_down().await;
        let after = sim.traffic(100, 50).await;
        if after.get("fulfilled").copied().unwrap_or(0) != 100 {
            fail(seed, &[format!("after crashes: payments fail: {after:?}")]);
        }
        sim.settle_down().await;
        let problems = sim.check("crashes").await;
        if !problems.is_empty() {
            fail(seed, &problems);
        }

        // 3. Drop links and bring them back; a slow peer makes packets expire (R00). The
        //    faulty links are tier-3 uplinks, the only path out of a tier-3 node, so payments from
        //    those nodes must fail with exactly T01 (link down) and R00 (expired on the way).
        let uplinks: Vec<usize> = (0..sim.links.len())
            .filter(|l| {
                sim.topo.nodes[sim.topo.links[*l][1].0]
                    .inherit_from
                    .is_some()
            })
            .collect();
        let pick = |sim: &mut Sim| uplinks[sim.rng.gen_range(0..uplinks.len())];
        let mut dropped: Vec<usize> = (0..5).map(|_| pick(&mut sim)).collect();
        dropped.sort_unstable();
        dropped.dedup();
        let slow = loop {
            let l = pick(&mut sim);
            if !dropped.contains(&l) {
                break l;
            }
        };
        for l in &dropped {
            let end = sim.links[*l].0.clone();
            sim.inject(move || end.set_up(false));
        }
        sim.links[slow].0.set_delay(Duration::from_secs(60));
        sim.links[slow].1.set_delay(Duration::from_secs(60));
        let outcomes = sim.traffic(300, 50).await;
        println!("traffic with dropped links {dropped:?} and slow link {slow}: {outcomes:?}");
        // Targeted: from behind each faulty uplink to the node above it.
        sim.faults_fired().await;
        let mut futures = Vec::new();
        for l in dropped.iter().chain([&slow]) {
            let [(parent, _), (child, _)] = sim.topo.links[*l].clone();
            futures.push(sim.pay(child, parent, 1_000));
        }
        let results = join_all(futures).await;
        for (k, (_, _, result)) in results.into_iter().enumerate() {
            let want = if k < dropped.len() {
                ErrorCode::T01_PEER_UNREACHABLE
            } else {
                ErrorCode::R00_TRANSFER_TIMED_OUT
            };
            match result {
                Err(r) if r.code() == want => {}
                other => fail(
                    seed,
                    &[format!("faulty uplink: expected {want}, got {other:?}")],
                ),
            }
        }
        sim.settle_down().await;
        for l in &dropped {
            sim.links[*l].0.set_up(true);
        }
        sim.links[slow].0.set_delay(Duration::ZERO);
        sim.links[slow].1.set_delay(Duration::ZERO);
        sim.settle_down().await;
        let problems = sim.check("links").await;
        if !problems.is_empty() {
            fail(seed, &problems);
        }

        // 4. A receiver that answers with wrong fulfillments: its node rejects them (F05) and
        //    nobody pays for them.
        let liar = sim.rng.gen_range(0..n);
        sim.wrong[liar].store(true, Ordering::SeqCst);
        let mut futures = Vec::new();
        for k in 0..20 {
            let from = (liar + 1 + k) % n;
            futures.push(sim.pay(from, liar, 1_000));
        }
        for (_, _, result) in join_all(futures).await {
            match result {
                Err(r) if r.code() == ErrorCode::F05_WRONG_CONDITION => {}
                other => fail(
                    seed,
                    &[format!("wrong fulfillment: expected F05, got {other:?}")],
                ),
            }
        }
        sim.wrong[liar].store(false, Ordering::SeqCst);
        sim.settle_down().await;
        let problems = sim.check("wrong fulfillment").await;
        if !problems.is_empty() {
            fail(seed, &problems);
        }

        // 5. Back to normal: everything works again.
        let outcomes = sim.traffic(200, 50).await;
        println!("final traffic: {outcomes:?}");
        if outcomes.get("fulfilled").copied().unwrap_or(0) != 200 {
            fail(seed, &[format!("final: payments fail: {outcomes:?}")]);
        }
        sim.settle_down().await;
        let problems = sim.check("final").await;
        if !problems.is_empty() {
            fail(seed, &problems);
        }
        let settlements = sim.settlements();
        let outcomes = sim.ledger.lock().unwrap().outcomes.clone();
        println!("all outcomes: {outcomes:?}; settlements applied: {settlements}");
        if settlements == 0 {
            fail(
                seed,
                &["no settlement ran: thresholds never crossed".to_owned()],
            );
        }

        // 6. The checker itself: a settlement booked on one side only must be caught.
        let [(a, ida), _] = sim.topo.links[0].clone();
        let applied = sim.nodes[a]
            .balance
            .send(ApplySettlement {
                account: Arc::from(ida.as_str()),
                settlement_id: [0xAB; 16],
                amount: 1,
                direction: SettlementDirection::Sent,
                also: Vec::new(),
            })
            .await;
        assert!(matches!(applied, Ok(Ok(true))), "{applied:?}");
        let problems = sim.check("one-sided").await;
        assert!(
            problems.iter().any(|p| p.contains("do not mirror")),
            "the checker missed a one-sided balance change: {problems:?}"
        );
    });
}
