//! BTP/2.0-I per account on real sockets (127.0.0.1, ephemeral ports): a raw client repeating
//! a request to an idempotent account gets the remembered answer and the account sees the
//! Prepare once, also when the repeat comes on a new connection after a drop; a non-idempotent
//! account delivers every copy; our client link repeats an unanswered request until a raw
//! server answers; two nodes with `btp_idempotent` on both ends pay each other. Every wait is
//! bounded.

#![allow(clippy::unwrap_used)] // test harness: helpers unwrap what a correct run never fails

use actix::prelude::*;
use futures::{SinkExt, StreamExt};
use ilp::btp::frame::TYPE_RESPONSE;
use ilp::btp::{Frame, IdempotencyConfig, Payload, ProtocolData};
use ilp::config::Config;
use ilp::packet::{
    Address, ErrorCode, Fulfill, FulfillBuilder, Packet, Prepare, PrepareBuilder, Reject,
};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{links_for_config, BtpClientLink, BtpLinks, BtpOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{GetBalance, IncomingPrepare, PacketResult};
use ilp_actors::node::{Node, NodeOptions};
use ilp_actors::store::memory::MemoryStore;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PREIMAGE: [u8; 32] = [7; 32];
const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Real sockets want real time: actors on the System's thread, I/O on a multi-thread pool.
fn run<F: Future>(f: F) -> F::Output {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
    .block_on(f)
}

fn config(address: &str, accounts: &str, btp_listener: bool) -> Config {
    let listener = if btp_listener {
        "[listeners.btp]\nbind = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let text = format!(
        "[node]\nilp_address = \"{address}\"\nasset_code = \"USD\"\nasset_scale = 9\nspread = \"0\"\n\
         [rates]\nbackend = \"static\"\n[rates.static]\nUSD = \"1\"\n[store]\nbackend = \"memory\"\n\
         {listener}\n\
         [accounts.wallet]\nrelation = \"child\"\n[accounts.wallet.link]\ntype = \"memory\"\n\
         [accounts.wallet.balance]\nminimum = -1000000000\nmaximum = 1000000000\n\
         [accounts.wallet.rate_limit]\nenabled = false\n\n{accounts}"
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config:\n{e}\n{text}"))
}

fn btp_server_account(id: &str, token: &str, idempotent: bool) -> String {
    format!(
        "[accounts.{id}]\nrelation = \"child\"\nbtp_idempotent = {idempotent}\n\
         [accounts.{id}.link]\ntype = \"btp-server\"\n\
         auth_username = \"{id}\"\nauth_token = \"{token}\"\n\
         [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
         [accounts.{id}.rate_limit]\nenabled = false\n\n"
    )
}

fn btp_client_account(id: &str, url: &str, username: &str, token: &str) -> String {
    format!(
        "[accounts.{id}]\nrelation = \"parent\"\nbtp_idempotent = true\n\
         [accounts.{id}.link]\ntype = \"btp-client\"\n\
         url = \"{url}\"\nauth_username = \"{username}\"\nauth_token = \"{token}\"\n\
         [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
         [accounts.{id}.rate_limit]\nenabled = false\n\n"
    )
}

/// Fast BTP/2.0-I repeats, so a lost request is repeated well within a test's wait.
fn fast_options() -> BtpOptions {
    BtpOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        idempotency: IdempotencyConfig {
            retry_interval_ms: 50,
            ..IdempotencyConfig::default()
        },
        ..BtpOptions::default()
    }
}

fn condition() -> [u8; 32] {
    Sha256::digest(PREIMAGE).into()
}

/// A Fulfill whose data tells which delivery produced it, so a replayed answer is told apart
/// from a second delivery's answer.
fn fulfill(delivery: usize) -> Fulfill {
    FulfillBuilder {
        fulfillment: &PREIMAGE,
        data: format!("delivery {delivery}").as_bytes(),
    }
    .build()
    .unwrap()
}

fn prepare(to: &str, amount: u64, expires_in_ms: u64) -> Prepare {
    let destination = Address::try_from(to).unwrap();
    PrepareBuilder {
        amount,
        expires_at: Clock::system()
            .now()
            .checked_add_millis(expires_in_ms)
            .unwrap(),
        execution_condition: &condition(),
        destination: &destination,
        data: b"hello",
    }
    .build()
    .unwrap()
}

/// Stands in for the PeerAccount: counts the Prepares delivered to it and fulfills each; with
/// a gate, each answer waits for one `notify_one`.
struct Counting {
    deliveries: Arc<AtomicUsize>,
    gate: Option<Arc<Notify>>,
}

impl Actor for Counting {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Counting {
    type Result = ResponseFuture<PacketResult>;

    fn handle(&mut self, _: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let n = self.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(fulfill(n))
        })
    }
}

fn counting(link: &Arc<dyn Link>, gate: Option<Arc<Notify>>) -> Arc<AtomicUsize> {
    let deliveries = Arc::new(AtomicUsize::new(0));
    link.attach(
        Counting {
            deliveries: deliveries.clone(),
            gate,
        }
        .start()
        .recipient(),
    );
    deliveries
}

/// Polls `cond` every few milliseconds, for at most [`WAIT`] (for states no event announces).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let polled = timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

async fn raw_connect(addr: SocketAddr) -> Ws {
    let (ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}")),
    )
    .await
    .unwrap()
    .unwrap();
    ws
}

/// The next BTP frame's raw bytes; pings and pongs are skipped.
async fn next_frame<S>(ws: &mut WebSocketStream<S>) -> Option<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match timeout(WAIT, ws.next()).await.expect("frame in time") {
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | Some(Err(_)) | None => return None,
        }
    }
}

async fn send_bytes<S>(ws: &mut WebSocketStream<S>, bytes: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::Binary(bytes.to_vec().into()))
        .await
        .unwrap();
}

/// Authenticates a raw client and checks the server's Response to the auth Message.
async fn raw_authenticated(addr: SocketAddr, user: &str, token: &str) -> Ws {
    let mut ws = raw_connect(addr).await;
    send_bytes(&mut ws, &Frame::auth(1, user, token).encode()).await;
    let reply = next_frame(&mut ws).await.expect("auth answered");
    assert_eq!(reply[0], TYPE_RESPONSE);
    assert_eq!(Frame::decode(&reply).unwrap().request_id, 1);
    ws
}

/// Sends `request` and returns the answer's bytes.
async fn ask(ws: &mut Ws, request: &[u8]) -> Vec<u8> {
    send_bytes(ws, request).await;
    next_frame(ws).await.expect("answered")
}

/// Sends `request` every 50 ms, as a BTP/2.0-I sender does, until an answer arrives.
async fn ask_repeatedly(ws: &mut Ws, request: &[u8]) -> Vec<u8> {
    timeout(WAIT, async {
        loop {
            send_bytes(ws, request).await;
            match timeout(Duration::from_millis(50), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => return b.to_vec(),
                Ok(Some(Ok(_))) | Err(_) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("answered in time")
}

/// The Fulfill inside a Response frame to `request_id`.
fn fulfill_in(answer: &[u8], request_id: u32) -> Fulfill {
    assert_eq!(answer[0], TYPE_RESPONSE);
    let frame = Frame::decode(answer).unwrap();
    assert_eq!(frame.request_id, request_id);
    match Packet::parse(frame.protocol_data().ilp().unwrap().clone()).unwrap() {
        Packet::Fulfill(f) => f,
        other => panic!("expected a Fulfill, got {other:?}"),
    }
}

async fn server_links(options: BtpOptions) -> BtpLinks {
    let accounts = format!(
        "{}{}",
        btp_server_account("b", "b-token", true),
        btp_server_account("c", "c-token", false)
    );
    links_for_config(&config("test.a", &accounts, true), options)
        .await
        .unwrap()
}

fn addr_of(links: &BtpLinks) -> SocketAddr {
    links.server.as_ref().unwrap().local_addr()
}

#[test]
fn idempotent_account_answers_a_repeat_from_memory_and_delivers_once() {
    run(async {
        let btp = server_links(fast_options()).await;
        let deliveries = counting(&btp.links["b"], None);
        let mut ws = raw_authenticated(addr_of(&btp), "b", "b-token").await;

        let request =
            Frame::ilp_message(42, prepare("test.a.b", 10, 30_000).as_bytes().clone()).encode();
        let first = ask(&mut ws, &request).await;
        let second = ask(&mut ws, &request).await;
        assert_eq!(
            first, second,
            "the repeat gets the identical Response bytes"
        );
        assert_eq!(fulfill_in(&first, 42).data(), b"delivery 1");
        assert_eq!(deliveries.load(Ordering::SeqCst), 1);

        // Same id, different bytes: a new request, delivered and answered anew.
        let other =
            Frame::ilp_message(42, prepare("test.a.b", 11, 30_000).as_bytes().clone()).encode();
        let third = ask(&mut ws, &other).await;
        assert_eq!(fulfill_in(&third, 42).data(), b"delivery 2");
        assert_eq!(deliveries.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn non_idempotent_account_delivers_every_copy() {
    run(async {
        let btp = server_links(fast_options()).await;
        let deliveries = counting(&btp.links["c"], None);
        let mut ws = raw_authenticated(addr_of(&btp), "c", "c-token").await;

        let request =
            Frame::ilp_message(42, prepare("test.a.c", 10, 30_000).as_bytes().clone()).encode();
        let first = ask(&mut ws, &request).await;
        let second = ask(&mut ws, &request).await;
        assert_eq!(fulfill_in(&first, 42).data(), b"delivery 1");
        assert_eq!(fulfill_in(&second, 42).data(), b"delivery 2");
        assert_eq!(deliveries.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_repeat_on_a_new_connection_after_a_drop_is_answered_from_memory() {
    run(async {
        let btp = server_links(fast_options()).await;
        let gate = Arc::new(Notify::new());
        let link = btp.links["b"].clone();
        let deliveries = counting(&link, Some(gate.clone()));
        let addr = addr_of(&btp);
        let request =
            Frame::ilp_message(7, prepare("test.a.b", 10, 30_000).as_bytes().clone()).encode();

        // Delivered on a first connection, which drops before the answer is ready.
        let mut first = raw_authenticated(addr, "b", "b-token").await;
        send_bytes(&mut first, &request).await;
        eventually("the Prepare is delivered", || {
            deliveries.load(Ordering::SeqCst) == 1
        })
        .await;
        drop(first);
        eventually("the link sees the drop", || !link.is_up()).await;
        gate.notify_one();

        // The peer repeats on a new connection: the answer comes from the link's memory.
        let mut second = raw_authenticated(addr, "b", "b-token").await;
        let answer = ask_repeatedly(&mut second, &request).await;
        assert_eq!(fulfill_in(&answer, 7).data(), b"delivery 1");
        assert_eq!(deliveries.load(Ordering::SeqCst), 1);

        // And once more on a third connection, byte for byte.
        drop(second);
        let mut third = raw_authenticated(addr, "b", "b-token").await;
        assert_eq!(ask(&mut third, &request).await, answer);
        assert_eq!(deliveries.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn client_link_repeats_an_unanswered_request_until_answered() {
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        // A raw server that answers the auth Message, ignores the first copy of each request
        // and answers the second, checking it is the same bytes.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut first_copy: Option<Vec<u8>> = None;
            loop {
                let bytes = next_frame(&mut ws).await.expect("a frame");
                let frame = Frame::decode(&bytes).unwrap();
                if frame.protocol_data().get("auth").is_some() {
                    let ok = Frame {
                        request_id: frame.request_id,
                        payload: Payload::Response(ProtocolData::new()),
                    };
                    send_bytes(&mut ws, &ok.encode()).await;
                    continue;
                }
                let Some(first) = &first_copy else {
                    first_copy = Some(bytes);
                    continue;
                };
                assert_eq!(first, &bytes, "a repeat is byte-identical");
                let answer = Frame::ilp_response(frame.request_id, fulfill(1).as_bytes().clone());
                send_bytes(&mut ws, &answer.encode()).await;
                // Keep the socket open until the client has read the answer.
                let _ = timeout(WAIT, ws.next()).await;
                return bytes;
            }
        });

        let link = BtpClientLink::connect_with_tls(&url, "b", "tok", None, true, fast_options());
        eventually("the client is up", || link.is_up()).await;
        let p = prepare("test.a", 10, 30_000);
        let result = timeout(WAIT, link.send_prepare(p.clone()))
            .await
            .expect("answered in time")
            .expect("link up");
        assert_eq!(result.unwrap().fulfillment(), &PREIMAGE);
        drop(link);
        let repeated = timeout(WAIT, server).await.unwrap().unwrap();
        let frame = Frame::decode(&repeated).unwrap();
        assert_eq!(frame.protocol_data().ilp().unwrap(), p.as_bytes());
    });
}

/// Fulfills every Prepare whose condition is SHA-256 of [`PREIMAGE`].
struct Receiver;

impl Actor for Receiver {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Receiver {
    type Result = MessageResult<IncomingPrepare>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        if msg.prepare.execution_condition() != &condition() {
            return MessageResult(Err(Reject::new(
                ErrorCode::F05_WRONG_CONDITION,
                None,
                "wrong condition",
            )));
        }
        MessageResult(Ok(fulfill(0)))
    }
}

struct TestNode {
    node: Node,
    wallet: MemoryLink,
    btp: BtpLinks,
}

impl TestNode {
    async fn start(config: &Config, options: BtpOptions) -> TestNode {
        let btp = links_for_config(config, options).await.unwrap();
        let mut links = btp.links.clone();
        let (node_end, wallet) = MemoryLink::pair();
        links.insert(Arc::from("wallet"), Arc::new(node_end));
        wallet.attach(Receiver.start().recipient());
        let node = Node::start(
            config,
            NodeOptions {
                clock: Clock::system(),
                store: Arc::new(MemoryStore::new()),
                seed: 1,
                links,
            },
        )
        .unwrap();
        TestNode { node, wallet, btp }
    }

    async fn pay(&self, to: &str, amount: u64) -> PacketResult {
        timeout(WAIT, self.wallet.send_prepare(prepare(to, amount, 30_000)))
            .await
            .expect("payment answered in time")
            .expect("wallet link up")
    }

    async fn balance(&self, account: &str) -> i64 {
        self.node
            .balance
            .send(GetBalance {
                account: Arc::from(account),
            })
            .await
            .unwrap()
            .unwrap()
            .balance
    }
}

#[test]
fn two_idempotent_nodes_pay_each_other_and_balances_mirror() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token", true), true),
            fast_options(),
        )
        .await;
        let url = format!("ws://{}", a.btp.server.as_ref().unwrap().local_addr());
        let b = TestNode::start(
            &config(
                "test.a.b",
                &btp_client_account("a", &url, "b", "b-token"),
                false,
            ),
            fast_options(),
        )
        .await;
        let (a_link, b_link) = (a.btp.links["b"].clone(), b.btp.links["a"].clone());
        eventually("both ends of the link are up", || {
            a_link.is_up() && b_link.is_up()
        })
        .await;

        for _ in 0..3 {
            let up = b.pay("test.a.wallet", 1_000).await;
            assert_eq!(up.unwrap().fulfillment(), &PREIMAGE);
            let down = a.pay("test.a.b.wallet", 300).await;
            assert_eq!(down.unwrap().fulfillment(), &PREIMAGE);
        }
        assert_eq!(b.balance("a").await, -2_100);
        assert_eq!(a.balance("b").await, 2_100);
    });
}
