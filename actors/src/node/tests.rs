//! Node-level tests on memory links and virtual time: reloading a configuration, which accounts
//! settle, where the routing secret comes from.

use super::*;
use crate::link::memory::MemoryLink;
use crate::messages::{GetBalance, IncomingPrepare, PacketResult, Reply};
use crate::store::memory::MemoryStore;
use crate::test_support::{run, PreimagePayee};
use ilp::packet::{Address, FulfillBuilder, PacketType, Prepare, PrepareBuilder};
use ilp::peer_protocol::peer_response;
use ilp::settle::SettleRequest;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};

const START_MS: u64 = 1_700_000_000_000;

fn account(id: &str, extra: &str) -> String {
    format!(
        "[accounts.{id}]\nrelation = \"child\"\nlink = {{ type = \"memory\" }}\n{extra}\n\
         [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n"
    )
}

fn config(accounts: &str, routing: &str) -> Config {
    let text = format!(
        "[node]\nilp_address = \"test.node\"\nspread = \"0\"\n[broadcast]\nenabled = false\n\
         {routing}\n{accounts}"
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A memory link for the node; the far end fulfills (and counts) what it is given.
fn far_end() -> (Arc<dyn Link>, MemoryLink, Arc<AtomicUsize>) {
    let (node_end, far) = MemoryLink::pair();
    let delivered = Arc::new(AtomicUsize::new(0));
    far.attach(
        PreimagePayee {
            delivered: delivered.clone(),
        }
        .start()
        .recipient(),
    );
    (Arc::new(node_end), far, delivered)
}

fn payment(destination: &str, amount: u64, seed: u8) -> Prepare {
    let preimage = [seed; 32];
    let condition: [u8; 32] = Sha256::digest(preimage).into();
    PrepareBuilder {
        amount,
        expires_at: Timestamp::from_unix_millis(START_MS + 30_000),
        execution_condition: &condition,
        destination: &Address::try_from(destination).unwrap(),
        data: &preimage,
    }
    .build()
    .unwrap()
}

async fn pay(from: &MemoryLink, destination: &str, amount: u64, seed: u8) -> Result<(), ErrorCode> {
    match from
        .send_prepare(payment(destination, amount, seed))
        .await
        .unwrap()
    {
        Ok(fulfill) => {
            assert_eq!(fulfill.as_bytes()[0], PacketType::Fulfill as u8);
            Ok(())
        }
        Err(reject) => Err(reject.code()),
    }
}

async fn balance(node: &Node, id: &str) -> Option<i64> {
    node.balance
        .send(GetBalance {
            account: AccountId::from(id),
        })
        .await
        .unwrap()
        .map(|b| b.balance)
}

#[test]
fn reload_updates_adds_and_removes_accounts_and_routes_keeping_unchanged_links() {
    run(async {
        let clock = Clock::starting_at(START_MS);
        let store = Arc::new(MemoryStore::new());
        let v1 = config(
            &format!(
                "{}{}{}",
                account("payer", "max_packet_amount = 1000"),
                account("payee", ""),
                account("gone", "")
            ),
            "",
        );
        let (payer_link, payer, _) = far_end();
        let (payee_link, _payee, payee_count) = far_end();
        let (gone_link, gone, _) = far_end();
        let links = BTreeMap::from([
            (AccountId::from("payer"), payer_link),
            (AccountId::from("payee"), payee_link),
            (AccountId::from("gone"), gone_link),
        ]);
        let mut node = Node::start(
            &v1,
            NodeOptions {
                clock,
                store: store.clone(),
                seed: 3,
                links,
                metrics: None,
            },
        )
        .unwrap();
        assert_eq!(pay(&payer, "test.node.payee", 500, 1).await, Ok(()));
        assert_eq!(
            pay(&payer, "test.elsewhere.x", 5, 2).await,
            Err(ErrorCode::F02_UNREACHABLE)
        );

        // v2: a smaller max packet amount for payer, carol added (with a static route), gone
        // removed.
        let v2 = config(
            &format!(
                "{}{}{}",
                account("payer", "max_packet_amount = 100"),
                account("payee", ""),
                account("carol", "")
            ),
            "[[routing.static_routes]]\nprefix = \"test.elsewhere\"\naccount = \"carol\"\n",
        );
        let changes = ConfigChanges::between(&v1, &v2);
        let (carol_link, _carol, carol_count) = far_end();
        node.reload(
            &v2,
            &changes,
            BTreeMap::from([(AccountId::from("carol"), carol_link)]),
        )
        .await
        .unwrap();

        assert_eq!(
            pay(&payer, "test.node.payee", 500, 3).await,
            Err(ErrorCode::F08_AMOUNT_TOO_LARGE)
        );
        // The payee's link is the one from before the reload.
        assert_eq!(pay(&payer, "test.node.payee", 50, 4).await, Ok(()));
        assert_eq!(payee_count.load(Ordering::SeqCst), 2);
        assert_eq!(pay(&payer, "test.elsewhere.x", 40, 5).await, Ok(()));
        assert_eq!(pay(&payer, "test.node.carol", 10, 6).await, Ok(()));
        assert_eq!(carol_count.load(Ordering::SeqCst), 2);
        assert_eq!(balance(&node, "carol").await, Some(-50));
        assert_eq!(balance(&node, "payer").await, Some(600));
        assert_eq!(balance(&node, "payee").await, Some(-550));
        // The removed account is neither reachable nor able to send.
        assert_eq!(
            pay(&payer, "test.node.gone", 5, 7).await,
            Err(ErrorCode::F02_UNREACHABLE)
        );
        assert_eq!(
            pay(&gone, "test.node.payee", 5, 8).await,
            Err(ErrorCode::F00_BAD_REQUEST)
        );
        assert_eq!(balance(&node, "gone").await, None);
        assert!(!node.accounts.contains_key("gone"));

        // v3 brings gone back: its committed balance (0 here) and a fresh link.
        let changes = ConfigChanges::between(&v2, &v1);
        assert!(changes.added.contains("gone") && changes.removed.contains("carol"));
        let (gone_link, gone, gone_count) = far_end();
        node.reload(
            &v1,
            &changes,
            BTreeMap::from([(AccountId::from("gone"), gone_link)]),
        )
        .await
        .unwrap();
        assert_eq!(pay(&payer, "test.node.gone", 5, 9).await, Ok(()));
        assert_eq!(gone_count.load(Ordering::SeqCst), 1);
        assert_eq!(pay(&gone, "test.node.payee", 5, 10).await, Ok(()));
        assert_eq!(
            pay(&payer, "test.elsewhere.x", 5, 11).await,
            Err(ErrorCode::F02_UNREACHABLE)
        );
        // carol's balance stays in the store after it is removed.
        assert_eq!(store.load_balances().unwrap().get("carol"), Some(&-50));
    });
}

#[test]
fn reload_without_a_link_for_an_added_account_changes_nothing() {
    run(async {
        let clock = Clock::starting_at(START_MS);
        let v1 = config(&account("payer", ""), "");
        let (payer_link, payer, _) = far_end();
        let mut node = Node::start(
            &v1,
            NodeOptions {
                clock,
                store: Arc::new(MemoryStore::new()),
                seed: 3,
                links: BTreeMap::from([(AccountId::from("payer"), payer_link)]),
                metrics: None,
            },
        )
        .unwrap();
        let v2 = config(
            &format!("{}{}", account("payer", ""), account("carol", "")),
            "",
        );
        let changes = ConfigChanges::between(&v1, &v2);
        let result = node.reload(&v2, &changes, BTreeMap::new()).await;
        assert!(matches!(result, Err(NodeError::MissingLink(id)) if id == "carol"));
        assert!(!node.accounts.contains_key("carol"));
        assert_eq!(
            pay(&payer, "test.node.carol", 5, 1).await,
            Err(ErrorCode::F02_UNREACHABLE)
        );
    });
}

/// A peer's end of a link: fulfills payments whose data is their preimage, and `peer.settle`
/// requests as a peer that applied them would, recording the latter.
struct SettlingPeer {
    settlements: Arc<Mutex<Vec<SettleRequest>>>,
}

impl Actor for SettlingPeer {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for SettlingPeer {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let p = msg.prepare;
        if p.destination_str() == "peer.settle" {
            let request = SettleRequest::decode(p.data()).unwrap();
            self.settlements.lock().unwrap().push(request);
            return Reply::ready(Ok(peer_response(&[]).unwrap()));
        }
        let preimage = <[u8; 32]>::try_from(p.data()).unwrap();
        let fulfill = FulfillBuilder {
            fulfillment: &preimage,
            data: &[],
        }
        .build()
        .unwrap();
        Reply::ready(Ok(fulfill))
    }
}

/// A `peer.settle` claim: "I paid you `amount`", under a fresh id.
fn settle_claim(id: u8, amount: u64) -> Prepare {
    SettleRequest {
        settlement_id: [id; 16],
        amount,
    }
    .to_prepare(Timestamp::from_unix_millis(START_MS + 30_000))
    .unwrap()
}

async fn claim(from: &MemoryLink, id: u8, amount: u64) -> Result<(), ErrorCode> {
    match from.send_prepare(settle_claim(id, amount)).await.unwrap() {
        Ok(fulfill) => {
            assert_eq!(ilp::settle::check_response(&fulfill), Ok(()));
            Ok(())
        }
        Err(reject) => Err(reject.code()),
    }
}

fn settle_records(store: &MemoryStore) -> usize {
    store.count_records(ilp::settle::RECORD_PREFIX.as_bytes())
}

#[test]
fn a_settle_claim_moves_the_balance_only_of_an_account_that_settles_bilaterally() {
    run(async {
        let clock = Clock::starting_at(START_MS);
        let store = Arc::new(MemoryStore::new());
        let bilateral = "settlement = { bilateral = true }";
        let v1 = config(
            &format!("{}{}", account("kid", ""), account("twin", bilateral)),
            "",
        );
        let (kid_link, kid, _) = far_end();
        let (twin_link, twin, _) = far_end();
        let links = BTreeMap::from([
            (AccountId::from("kid"), kid_link),
            (AccountId::from("twin"), twin_link),
        ]);
        let mut node = Node::start(
            &v1,
            NodeOptions {
                clock,
                store: store.clone(),
                seed: 5,
                links,
                metrics: None,
            },
        )
        .unwrap();
        // The probe of issue #12: a child with default settings claims it paid 5 000.
        assert_eq!(claim(&kid, 1, 5_000).await, Err(ErrorCode::F00_BAD_REQUEST));
        assert_eq!(balance(&node, "kid").await, Some(0));
        assert_eq!(settle_records(&store), 0);
        assert_eq!(store.load_balances().unwrap().get("kid"), None);
        // The same claim from an account configured to settle bilaterally is booked.
        assert_eq!(claim(&twin, 2, 5_000).await, Ok(()));
        assert_eq!(balance(&node, "twin").await, Some(-5_000));
        assert_eq!(settle_records(&store), 1);

        // A reload turns it on for kid and off for twin.
        let v2 = config(
            &format!("{}{}", account("kid", bilateral), account("twin", "")),
            "",
        );
        let changes = ConfigChanges::between(&v1, &v2);
        node.reload(&v2, &changes, BTreeMap::new()).await.unwrap();
        assert_eq!(
            claim(&twin, 3, 5_000).await,
            Err(ErrorCode::F00_BAD_REQUEST)
        );
        assert_eq!(balance(&node, "twin").await, Some(-5_000));
        assert_eq!(claim(&kid, 4, 700).await, Ok(()));
        assert_eq!(balance(&node, "kid").await, Some(-700));
        assert_eq!(settle_records(&store), 2);
    });
}

#[test]
fn settlements_are_sent_only_to_accounts_that_settle_bilaterally() {
    run(async {
        let clock = Clock::starting_at(START_MS);
        let store = Arc::new(MemoryStore::new());
        let owed = |id: &str, extra: &str| {
            format!(
                "[accounts.{id}]\nrelation = \"child\"\nlink = {{ type = \"memory\" }}\n{extra}\n\
                 [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
                 settle_threshold = -100\nsettle_to = 0\n"
            )
        };
        let v1 = config(
            &format!(
                "{}{}{}",
                account("payer", ""),
                owed("kid", ""),
                owed("twin", "settlement = { bilateral = true }")
            ),
            "",
        );
        let (payer_link, payer, _) = far_end();
        let mut peers = Vec::new();
        let mut links = BTreeMap::from([(AccountId::from("payer"), payer_link)]);
        for id in ["kid", "twin"] {
            let (node_end, far) = MemoryLink::pair();
            let settlements = Arc::new(Mutex::new(Vec::new()));
            far.attach(
                SettlingPeer {
                    settlements: settlements.clone(),
                }
                .start()
                .recipient(),
            );
            links.insert(AccountId::from(id), Arc::new(node_end) as Arc<dyn Link>);
            peers.push((far, settlements));
        }
        let node = Node::start(
            &v1,
            NodeOptions {
                clock,
                store: store.clone(),
                seed: 6,
                links,
                metrics: None,
            },
        )
        .unwrap();
        // We owe each 500, below the threshold of -100.
        assert_eq!(pay(&payer, "test.node.kid", 500, 1).await, Ok(()));
        assert_eq!(pay(&payer, "test.node.twin", 500, 2).await, Ok(()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let sent = |i: usize| peers[i].1.lock().unwrap().clone();
        assert!(sent(0).is_empty(), "kid was sent {:?}", sent(0));
        assert_eq!(balance(&node, "kid").await, Some(-500));
        let twin = sent(1);
        assert_eq!(twin.len(), 1);
        assert_eq!(twin[0].amount, 500);
        assert_eq!(balance(&node, "twin").await, Some(0));
        assert_eq!(settle_records(&store), 1);
    });
}

#[test]
fn the_binary_draws_the_routing_secret_and_seed_from_the_os() {
    run(async {
        let a = NodeRandomness::from_os().unwrap();
        let b = NodeRandomness::from_os().unwrap();
        assert_ne!(a.routing_secret, b.routing_secret);
        assert_ne!(a.seed, b.seed);
        let shown = format!("{a:?}");
        assert!(shown.contains("***"));
        assert!(!shown.contains(&format!("{:?}", a.routing_secret)));
        // Not a function of the seed, as the secret derived from a time-based seed was.
        let derived = |seed: u64| {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            secret
        };
        assert_ne!(a.routing_secret, derived(a.seed));
        // Two nodes started as the binary starts them, without node.routing_secret.
        let v1 = config(&account("kid", ""), "");
        let start = |config: &Config, r: NodeRandomness| {
            let (link, _, _) = far_end();
            Node::start_with_routing_secret(
                config,
                NodeOptions {
                    clock: Clock::starting_at(START_MS),
                    store: Arc::new(MemoryStore::new()),
                    seed: r.seed,
                    links: BTreeMap::from([(AccountId::from("kid"), link)]),
                    metrics: None,
                },
                r.routing_secret,
            )
            .unwrap()
        };
        let first = start(&v1, a);
        let second = start(&v1, b);
        assert_eq!(first.routing_secret, a.routing_secret);
        assert_eq!(second.routing_secret, b.routing_secret);
        assert_ne!(first.routing_secret, second.routing_secret);
        // A configured secret wins over the drawn one.
        let text = format!(
            "[node]\nilp_address = \"test.node\"\nrouting_secret = \"{}\"\n{}",
            "ab".repeat(32),
            account("kid", "")
        );
        let configured = Config::from_toml_str(&text).unwrap();
        assert_eq!(start(&configured, a).routing_secret, [0xab; 32]);
    });
}

/// An account without `[accounts.<id>.balance]` keeps a balance all the same, durable and
/// visible, with no limit on either side; one added by a reload too.
#[test]
fn accounts_without_a_balance_table_keep_a_balance_with_no_limits() {
    run(async {
        let clock = Clock::starting_at(START_MS);
        let store = Arc::new(MemoryStore::new());
        let plain = |id: &str| {
            format!("[accounts.{id}]\nrelation = \"child\"\nlink = {{ type = \"memory\" }}\n")
        };
        let v1 = config(&format!("{}{}", plain("payer"), plain("payee")), "");
        assert!(v1.accounts.values().all(|a| a.balance.is_none()));
        let (payer_link, payer, _) = far_end();
        let (payee_link, _payee, _) = far_end();
        let mut node = Node::start(
            &v1,
            NodeOptions {
                clock,
                store: store.clone(),
                seed: 3,
                links: BTreeMap::from([
                    (AccountId::from("payer"), payer_link),
                    (AccountId::from("payee"), payee_link),
                ]),
                metrics: None,
            },
        )
        .unwrap();
        assert_eq!(pay(&payer, "test.node.payee", 500, 1).await, Ok(()));
        // Far past any limit a [balance] table would set: no limit applies.
        let big = 4_000_000_000_000_000_000;
        assert_eq!(pay(&payer, "test.node.payee", big, 2).await, Ok(()));
        let moved = i64::try_from(big + 500).unwrap();
        assert_eq!(balance(&node, "payer").await, Some(moved));
        assert_eq!(balance(&node, "payee").await, Some(-moved));
        let stored = store.load_balances().unwrap();
        assert_eq!(stored.get("payer"), Some(&moved));
        assert_eq!(stored.get("payee"), Some(&-moved));

        let v2 = config(
            &format!("{}{}{}", plain("payer"), plain("payee"), plain("carol")),
            "",
        );
        let changes = ConfigChanges::between(&v1, &v2);
        let (carol_link, _carol, _) = far_end();
        node.reload(
            &v2,
            &changes,
            BTreeMap::from([(AccountId::from("carol"), carol_link)]),
        )
        .await
        .unwrap();
        assert_eq!(balance(&node, "carol").await, Some(0));
        assert_eq!(pay(&payer, "test.node.carol", 7, 3).await, Ok(()));
        assert_eq!(balance(&node, "carol").await, Some(-7));
    });
}
