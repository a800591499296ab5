//! Harness shared by the socket tests: actix System runners, bounded waits, test nodes with a
//! fulfilling wallet, Prepare builders, TOML config pieces, rcgen certificates and raw clients.
//! Each test file uses a subset.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test harness: helpers unwrap what a correct run never fails

pub mod chain;
pub mod clients;
pub mod connector;
pub mod process;

use actix::prelude::*;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ilp::btp::frame::TYPE_RESPONSE;
use ilp::btp::Frame;
use ilp::config::Config;
use ilp::packet::{Address, ErrorCode, Fulfill, FulfillBuilder, Prepare, PrepareBuilder, Reject};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{links_for_config, BtpLinks, BtpOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::Link;
use ilp_actors::messages::{AccountId, GetBalance, IncomingPrepare, PacketResult, Reply};
use ilp_actors::node::{Node, NodeOptions};
use ilp_actors::store::memory::MemoryStore;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The preimage of every BTP test payment's condition.
pub const PREIMAGE: [u8; 32] = [7; 32];
/// Bound on each wait of the BTP tests.
pub const BTP_WAIT: Duration = Duration::from_secs(10);
/// Bound on each HTTP/TLS test (and its waits).
pub const HTTP_WAIT: Duration = Duration::from_secs(20);

// ---- runners and waits -----------------------------------------------------------------------

fn system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Real sockets want real time: actors on the System's thread, I/O on a multi-thread pool.
pub fn block_on<F: Future>(f: F) -> F::Output {
    system().block_on(f)
}

/// Runs `test` in an actix System on a multi-thread tokio runtime (real time), bounded by
/// [`HTTP_WAIT`].
pub fn run<F: Future<Output = ()> + 'static>(test: impl FnOnce() -> F) {
    system().block_on(async move {
        timeout(HTTP_WAIT, test())
            .await
            .expect("test did not finish in time");
    });
}

/// Polls `cond` every few milliseconds, for at most `wait` (for states no event announces).
pub async fn eventually(wait: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let polled = timeout(wait, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

/// Polls `cond` every few milliseconds until it holds; fails the test after `bound`.
pub async fn wait_until(what: &str, bound: Duration, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + bound;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A test setting from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// GET `path` of the admin API at `admin`, as JSON; `None` when it cannot be read (the node is
/// down, restarting, or answers something else) within 2 s.
pub async fn admin_get(admin: Option<SocketAddr>, path: &str) -> Option<serde_json::Value> {
    let url = format!("http://{}{path}", admin?);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = timeout(Duration::from_secs(2), client.get(url.parse().ok()?))
        .await
        .ok()?
        .ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// What the node keeps for `account`: balance and amounts pending.
pub async fn snapshot(node: &Node, account: &str) -> ilp_actors::messages::BalanceSnapshot {
    node.balance
        .send(GetBalance {
            account: Arc::from(account),
        })
        .await
        .unwrap()
        .unwrap()
}

/// The balance the node keeps for `account`.
pub async fn balance(node: &Node, account: &str) -> i64 {
    snapshot(node, account).await.balance
}

/// A payment of `amount` source units to `to` (a payment pointer or SPSP URL).
pub fn payment_request(to: &str, amount: u64) -> ilp_actors::payer::PaymentRequest {
    ilp_actors::payer::PaymentRequest {
        to: Some(to.to_string()),
        quote_id: None,
        amount: Some(amount),
        deliver: None,
        slippage: None,
        max_packet: None,
        destination_asset: None,
    }
}

/// Follows alice's payment `id` until it ends (bounded: 20 s).
pub async fn finished(node: &Node, id: &str) -> serde_json::Value {
    for _ in 0..2_000 {
        let view = node.payer.get("alice", id).await.unwrap();
        if matches!(
            view["status"].as_str(),
            Some("completed" | "failed" | "interrupted")
        ) {
            return view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("payment {id} did not end");
}

// ---- packets ---------------------------------------------------------------------------------

pub fn condition() -> [u8; 32] {
    Sha256::digest(PREIMAGE).into()
}

/// A Fulfill of [`PREIMAGE`] carrying `data`.
pub fn fulfill_with(data: &[u8]) -> Fulfill {
    FulfillBuilder {
        fulfillment: &PREIMAGE,
        data,
    }
    .build()
    .unwrap()
}

/// A Prepare to `to` with the condition of [`PREIMAGE`] and data `hello <n>`, `n` counting the
/// calls: each call is a payment of its own (a node treats two Prepares with the same amount,
/// condition, destination and data as one payment, whatever their expiries). Repeat one payment
/// by sending the same Prepare again.
pub fn prepare(to: &str, amount: u64, expires_in_ms: u64) -> Prepare {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = format!("hello {n}");
    let destination = Address::try_from(to).unwrap();
    PrepareBuilder {
        amount,
        expires_at: Clock::system()
            .now()
            .checked_add_millis(expires_in_ms)
            .unwrap(),
        execution_condition: &condition(),
        destination: &destination,
        data: data.as_bytes(),
    }
    .build()
    .unwrap()
}

/// A Prepare to `destination` whose preimage is `[seed; 32]`, in its data, expiring
/// `expiry_ms` from now.
pub fn payment(destination: &str, amount: u64, expiry_ms: u64, seed: u8) -> Prepare {
    let preimage = [seed; 32];
    let condition: [u8; 32] = Sha256::digest(preimage).into();
    PrepareBuilder {
        amount,
        expires_at: Clock::system().now().checked_add_millis(expiry_ms).unwrap(),
        execution_condition: &condition,
        destination: &Address::try_from(destination).unwrap(),
        data: &preimage,
    }
    .build()
    .unwrap()
}

/// A sender's fulfillable STREAM Prepare to one of our receivers: `amount` on stream 1 of the
/// connection at `destination` keyed by `secret`, packet number `sequence`, expiring `expires_at`.
pub fn stream_payment(
    destination: &Address,
    secret: &[u8; 32],
    sequence: u64,
    amount: u64,
    expires_at: ilp::packet::Timestamp,
) -> Prepare {
    let keys = ilp::stream::StreamKeys::new(secret);
    let packet = ilp::stream::StreamPacket {
        packet_type: ilp::packet::PacketType::Prepare,
        sequence,
        prepare_amount: 0,
        frames: vec![ilp::stream::Frame::StreamMoney {
            stream_id: 1,
            shares: 1,
        }],
    };
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&sequence.to_be_bytes());
    let data = keys.encrypt_packet(&iv, &packet).unwrap();
    PrepareBuilder {
        amount,
        expires_at,
        execution_condition: &keys.condition(&data),
        destination,
        data: &data,
    }
    .build()
    .unwrap()
}

pub fn fulfilled(result: PacketResult) -> Fulfill {
    result.unwrap_or_else(|r| panic!("rejected {} {}", r.code(), r.message()))
}

pub fn rejected(result: PacketResult, code: ErrorCode) -> Reject {
    let reject = result.expect_err("expected a Reject");
    assert_eq!(reject.code(), code, "message: {}", reject.message());
    reject
}

// ---- accounts' far ends ----------------------------------------------------------------------

/// Fulfills every Prepare whose condition is SHA-256 of [`PREIMAGE`], with `data`.
pub struct Receiver {
    pub data: Vec<u8>,
}

impl Actor for Receiver {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Receiver {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        if msg.prepare.execution_condition() != &condition() {
            return Reply::ready(Err(Reject::new(
                ErrorCode::F05_WRONG_CONDITION,
                None,
                "wrong condition",
            )));
        }
        Reply::ready(Ok(fulfill_with(&self.data)))
    }
}

/// The far end of a node's `wallet` account: fulfills Prepares whose data is the preimage of
/// their condition, and counts them.
pub struct Wallet {
    pub received: Arc<AtomicUsize>,
}

impl Actor for Wallet {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Wallet {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        self.received.fetch_add(1, Ordering::SeqCst);
        let p = msg.prepare;
        let Ok(preimage) = <[u8; 32]>::try_from(p.data()) else {
            return Reply::ready(Err(Reject::new(
                ErrorCode::F06_UNEXPECTED_PAYMENT,
                None,
                "no preimage",
            )));
        };
        if Sha256::digest(preimage).as_slice() != p.execution_condition() {
            return Reply::ready(Err(Reject::new(
                ErrorCode::F05_WRONG_CONDITION,
                None,
                "wrong condition",
            )));
        }
        Reply::ready(Ok(FulfillBuilder {
            fulfillment: &preimage,
            data: b"",
        }
        .build()
        .unwrap()))
    }
}

/// A PeerAccount stand-in that rejects every Prepare T99 (so an accepted request is
/// recognizable), and counts them.
pub struct Counter {
    pub calls: Arc<AtomicUsize>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Counter {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, _: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Reply::ready(Err(Reject::new(
            ErrorCode::T99_APPLICATION_ERROR,
            None,
            "counted",
        )))
    }
}

// ---- nodes -----------------------------------------------------------------------------------

/// Starts the node of `config` (store in memory, seed 7) over `links` plus a memory `wallet`
/// whose far end is a [`Wallet`]; returns the node, the wallet's end and its delivery count.
pub fn start_wallet_node(
    config: &Config,
    mut links: BTreeMap<AccountId, Arc<dyn Link>>,
    clock: Clock,
) -> (Node, MemoryLink, Arc<AtomicUsize>) {
    let (node_end, wallet) = MemoryLink::pair();
    let received = Arc::new(AtomicUsize::new(0));
    wallet.attach(
        Wallet {
            received: received.clone(),
        }
        .start()
        .recipient(),
    );
    links.insert(Arc::from("wallet"), Arc::new(node_end));
    let node = Node::start(
        config,
        NodeOptions {
            clock,
            store: Arc::new(MemoryStore::new()),
            seed: 7,
            links,
            metrics: None,
        },
    )
    .unwrap();
    (node, wallet, received)
}

/// A node with BTP links from its config and a memory `wallet` whose far end is a
/// [`Receiver`].
pub struct BtpNode {
    pub node: Node,
    pub wallet: MemoryLink,
    pub btp: BtpLinks,
}

impl BtpNode {
    /// Starts the node of `config`; its wallet fulfills with `data`.
    pub async fn start(config: &Config, options: BtpOptions, data: &[u8]) -> BtpNode {
        let btp = links_for_config(config, options).await.unwrap();
        BtpNode::with_links(config, btp, data)
    }

    /// Starts a node whose BTP listener takes over an address another listener just released:
    /// the old accept task may hold the socket a moment longer, so binding is retried (bounded).
    pub async fn start_on_released_address(
        config: &Config,
        options: BtpOptions,
        data: &[u8],
    ) -> BtpNode {
        let deadline = tokio::time::Instant::now() + BTP_WAIT;
        loop {
            match links_for_config(config, options.clone()).await {
                Ok(btp) => return BtpNode::with_links(config, btp, data),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the released address never became free: {e}"),
            }
        }
    }

    fn with_links(config: &Config, btp: BtpLinks, data: &[u8]) -> BtpNode {
        let mut links = btp.links.clone();
        let (node_end, wallet) = MemoryLink::pair();
        links.insert(Arc::from("wallet"), Arc::new(node_end));
        wallet.attach(
            Receiver {
                data: data.to_vec(),
            }
            .start()
            .recipient(),
        );
        let node = Node::start(
            config,
            NodeOptions {
                clock: Clock::system(),
                store: Arc::new(MemoryStore::new()),
                seed: 1,
                links,
                metrics: None,
            },
        )
        .unwrap();
        BtpNode { node, wallet, btp }
    }

    pub fn btp_addr(&self) -> SocketAddr {
        self.btp.server.as_ref().unwrap().local_addr()
    }

    pub fn link(&self, id: &str) -> Arc<dyn Link> {
        self.btp.links.get(id).unwrap().clone()
    }

    pub async fn pay(&self, to: &str, amount: u64, expires_in_ms: u64) -> PacketResult {
        let p = prepare(to, amount, expires_in_ms);
        timeout(BTP_WAIT, self.wallet.send_prepare(p))
            .await
            .expect("payment answered in time")
            .expect("wallet link up")
    }

    pub async fn balance(&self, account: &str) -> i64 {
        balance(&self.node, account).await
    }
}

// ---- configs ---------------------------------------------------------------------------------

/// Node `address` with a memory `wallet` child, a BTP listener on port 0 when `btp_listener`,
/// and `accounts`.
pub fn btp_config(address: &str, accounts: &str, btp_listener: bool) -> Config {
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

fn idempotent_line(idempotent: Option<bool>) -> String {
    idempotent
        .map(|i| format!("btp_idempotent = {i}\n"))
        .unwrap_or_default()
}

/// A child account `id` on our BTP listener; `btp_idempotent` set when given.
pub fn btp_server_account(id: &str, token: &str, idempotent: Option<bool>) -> String {
    let idempotent = idempotent_line(idempotent);
    format!(
        "[accounts.{id}]\nrelation = \"child\"\n{idempotent}\
         [accounts.{id}.link]\ntype = \"btp-server\"\n\
         auth_username = \"{id}\"\nauth_token = \"{token}\"\n\
         [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
         [accounts.{id}.rate_limit]\nenabled = false\n\n"
    )
}

/// A parent account `id` dialing `url`; `btp_idempotent` set when given.
pub fn btp_client_account(
    id: &str,
    url: &str,
    username: &str,
    token: &str,
    idempotent: Option<bool>,
) -> String {
    let idempotent = idempotent_line(idempotent);
    format!(
        "[accounts.{id}]\nrelation = \"parent\"\n{idempotent}\
         [accounts.{id}.link]\ntype = \"btp-client\"\n\
         url = \"{url}\"\nauth_username = \"{username}\"\nauth_token = \"{token}\"\n\
         [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
         [accounts.{id}.rate_limit]\nenabled = false\n\n"
    )
}

/// `[node]`, `[broadcast]`, `[store]` and a memory `wallet` child for node `test.<name>`.
pub fn node_base(name: &str) -> String {
    format!(
        r#"
[node]
ilp_address = "test.{name}"
spread = "0"
min_message_window_ms = 500
[broadcast]
enabled = false
[store]
backend = "memory"
[accounts.wallet]
relation = "child"
link = {{ type = "memory" }}
[accounts.wallet.balance]
minimum = -1000000000000
maximum = 1000000000000
[accounts.wallet.rate_limit]
enabled = false
"#
    )
}

/// Balance limits of ±1000000 and no rate limit for account `id`.
pub fn account_tail(id: &str) -> String {
    format!(
        "[accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
         [accounts.{id}.rate_limit]\nenabled = false\n"
    )
}

/// A static route sending `test.<peer>` to account `peer`, and no default route.
pub fn route_to(peer: &str) -> String {
    format!(
        "[routing]\ndefault_route = \"\"\n\
         static_routes = [{{ prefix = \"test.{peer}\", account = \"{peer}\" }}]\n"
    )
}

// ---- certificates ----------------------------------------------------------------------------

/// A CA whose certificates are written as PEM files to a directory removed on drop.
pub struct Pki {
    dir: PathBuf,
    /// Appended to leaf common names as ` (<tag>)` when given.
    tag: Option<String>,
    ca: Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A CA named `ca_name`, its files in the temp directory `dir_name`.
    pub fn new(dir_name: &str, ca_name: &str, tag: Option<&str>) -> Pki {
        let dir = std::env::temp_dir().join(dir_name);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, ca_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            tag: tag.map(str::to_owned),
            ca,
            ca_key,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses), good for servers and clients.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        let cn = match &self.tag {
            Some(tag) => format!("{file} ({tag})"),
            None => file.to_owned(),
        };
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn p(path: &Path) -> String {
    path.display().to_string()
}

// ---- raw clients -----------------------------------------------------------------------------

/// Sends one request with a plain hyper client (HTTP/2 only when `h2`); returns status,
/// version and body.
pub async fn http_request(
    h2: bool,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, Version, Bytes) {
    http_request_as(h2, method, url, "application/octet-stream", headers, body).await
}

/// [`http_request`] with the body sent as `content_type`.
pub async fn http_request_as(
    h2: bool,
    method: Method,
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, Version, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(HttpConnector::new());
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let version = response.version();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, version, body)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn raw_connect(addr: SocketAddr) -> Ws {
    let (ws, _) = timeout(
        BTP_WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}")),
    )
    .await
    .unwrap()
    .unwrap();
    ws
}

/// The next BTP frame's raw bytes; pings and pongs are skipped.
pub async fn next_frame<S>(ws: &mut WebSocketStream<S>) -> Option<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match timeout(BTP_WAIT, ws.next()).await.expect("frame in time") {
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | Some(Err(_)) | None => return None,
        }
    }
}

pub async fn send_bytes<S>(ws: &mut WebSocketStream<S>, bytes: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::Binary(bytes.to_vec().into()))
        .await
        .unwrap();
}

/// Authenticates a raw client and checks the server's Response to the auth Message.
pub async fn raw_authenticated(addr: SocketAddr, user: &str, token: &str) -> Ws {
    let mut ws = raw_connect(addr).await;
    send_bytes(&mut ws, &Frame::auth(1, user, token).encode()).await;
    let reply = next_frame(&mut ws).await.expect("auth answered");
    assert_eq!(reply[0], TYPE_RESPONSE);
    assert_eq!(Frame::decode(&reply).unwrap().request_id, 1);
    ws
}
