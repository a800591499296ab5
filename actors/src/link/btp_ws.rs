//! BTP/2.0 links over WebSocket, `ws://` or `wss://` (rustls, see [`crate::tls`]): [`BtpServer`]
//! serves every `btp-server` account on one listener (TLS when `[listeners.btp.tls]` is
//! enabled) and hands each authenticated connection to that account's [`BtpServerLink`];
//! [`BtpClientLink`] dials a peer's server, authenticates, and reconnects with jittered
//! exponential backoff whenever the socket drops (a failed TLS handshake counts as a failed dial).
//!
//! The server's accounts can change while it runs (a config reload): [`BtpServer::add_account`]
//! and [`BtpServer::remove_account`] swap its account table, which a connection reads when its
//! auth Message arrives. A removed account's link (or the old link of an account whose
//! credentials were replaced) is retired: its connection is closed and none is installed on it
//! again. Other accounts' connections never notice.
//!
//! Client certificates on the listener are verified by the TLS handshake against
//! `client_ca_path`. With `require_client_cert = true` the account the BTP auth Message
//! authenticates as must also be named by the certificate (a DNS subject alternative name equal
//! to the account id, [`crate::tls::cert_names_account`]): certificate *and* token. With an
//! optional client certificate the account is chosen by the auth token alone.
//!
//! The protocol itself (auth handshake, request ids, matching answers, timeouts) is the sans-IO
//! [`ilp::btp::Session`]; [`connection`] only carries out its actions on a socket. Both sides
//! send Prepares as BTP Messages and answer the peer's Prepares with BTP Responses.
//!
//! BTP/2.0-I is chosen per account (`btp_idempotent`): a client account's sessions are built
//! with it; the server switches it on once the auth Message names such an account. The memory
//! of answered requests ([`ReplayCache`]) belongs to the account's link, not to one socket, so
//! a request the peer repeats on a new connection after a drop is answered from memory rather
//! than delivered again. Request ids key that memory, so it assumes, as BTP/2.0-I senders do,
//! that a peer does not reuse an id for a different request while the old one is remembered
//! (if it does, the session's digest check keeps the old answer from being replayed).

mod connection;

use crate::clock::Clock;
use crate::link::{Link, LinkError};
use crate::messages::{AccountId, IncomingPrepare, PacketResult};
use crate::tls::{self, ClientCerts, ServerTls, TlsError};
use actix::Recipient;
use connection::{Command, Handle, Role, Sent, ServerAccount};
use futures::future::BoxFuture;
use ilp::btp::{
    AuthCredentials, Frame, IdempotencyConfig, Payload, ReplayCache, Reply, SessionConfig,
};
use ilp::config::{AccountConfig, Config, LinkConfig};
use ilp::packet::Prepare;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes read from a socket at once (many frames under load).
const READ_BUFFER: usize = 16 * 1024;

/// Timeouts and limits of BTP connections, on both sides.
#[derive(Debug, Clone)]
pub struct BtpOptions {
    /// Request and auth timeouts (and BTP/2.0-I for every account, when set) of each
    /// connection's session.
    pub session: SessionConfig,
    /// BTP/2.0-I parameters (retry interval, memory size) of the accounts that use it.
    pub idempotency: IdempotencyConfig,
    /// A WebSocket ping goes out this often.
    pub ping_interval: Duration,
    /// A connection on which nothing (not even a pong) arrived for this long is closed, and so
    /// is one whose writes stall this long (a half-open socket).
    pub idle_timeout: Duration,
    /// Largest WebSocket message and frame accepted; a larger one closes the connection.
    pub max_message_size: usize,
    /// TCP connect plus WebSocket handshake, on either side.
    pub handshake_timeout: Duration,
    /// First and largest pause between reconnection attempts of a client.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Connections the server holds at once (authenticated or not); more are dropped at accept.
    pub max_connections: usize,
    /// Prepares from the peer a connection carries at once; at this many it stops reading
    /// the socket until one is answered (TCP then slows the peer down).
    pub max_incoming_in_flight: usize,
    /// The node's clock: the sessions' `now` and Prepare expiries are read on it.
    pub clock: Clock,
}

impl Default for BtpOptions {
    fn default() -> Self {
        BtpOptions {
            session: SessionConfig::default(),
            idempotency: IdempotencyConfig::default(),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
            max_connections: 1024,
            max_incoming_in_flight: 2048,
            clock: Clock::system(),
        }
    }
}

impl BtpOptions {
    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
            // tungstenite zero-fills this much before every socket read; BTP frames are a few
            // hundred bytes, and the 128 KiB default cost more than the read (profiled).
            .read_buffer_size(READ_BUFFER)
    }
}

/// What a `btp-server` account's client must present in its auth Message.
#[derive(Clone, PartialEq, Eq)]
pub struct BtpCredentials {
    /// When set, `auth_username` must equal it; when not, any username is accepted.
    pub username: Option<String>,
    pub token: String,
    /// The account speaks BTP/2.0-I (`btp_idempotent`).
    pub idempotent: bool,
}

impl std::fmt::Debug for BtpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtpCredentials")
            .field("username", &self.username)
            .field("token", &"***")
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

/// The state a link shares with whichever connection currently carries it.
pub(crate) struct LinkShared {
    conn: Mutex<Option<Handle>>,
    /// The id of the connection installed last (0: none yet); bumped on retirement too, so
    /// requests waiting for the next connection ([`LinkShared::next_sender`]) look again.
    installed: watch::Sender<u64>,
    /// Set (under the `conn` lock) once a server account is removed or its credentials are
    /// replaced: no connection is installed on this link any more.
    retired: AtomicBool,
    /// Shared, not cloned per packet: cloning an actix `Recipient` allocates.
    account: RwLock<Option<Arc<Recipient<IncomingPrepare>>>>,
    /// `Some` when the account speaks BTP/2.0-I.
    pub(crate) idempotency: Option<IdempotencyConfig>,
    /// The account's BTP/2.0-I memory, shared by its connections over time (present exactly
    /// when `idempotency` is), and by the link that replaces this one when the account's
    /// credentials change.
    pub(crate) replay: Option<Arc<Mutex<ReplayCache>>>,
    /// BTP/2.0-I requests refused (T03) because the memory was full of requests in progress.
    pub(crate) busy: AtomicU64,
}

impl LinkShared {
    fn new(idempotency: Option<IdempotencyConfig>) -> Arc<Self> {
        LinkShared::succeeding(idempotency, None)
    }

    /// A link that takes over `previous`'s BTP/2.0-I memory when both speak it, so the peer's
    /// repeats of requests answered before its credentials changed are answered from it (and
    /// answers still arriving on the old connection land there too).
    fn succeeding(
        idempotency: Option<IdempotencyConfig>,
        previous: Option<&LinkShared>,
    ) -> Arc<Self> {
        let replay = idempotency.map(|c| {
            previous
                .and_then(|p| p.replay.clone())
                .unwrap_or_else(|| Arc::new(Mutex::new(ReplayCache::new(c.max_entries))))
        });
        Arc::new(LinkShared {
            conn: Mutex::new(None),
            installed: watch::Sender::new(0),
            retired: AtomicBool::new(false),
            account: RwLock::new(None),
            idempotency,
            replay,
            // A successor keeps counting where its predecessor stopped (a metrics counter).
            busy: AtomicU64::new(previous.map_or(0, |p| p.busy.load(Ordering::Relaxed))),
        })
    }

    /// Records the answer to a request whose connection closed before the answer came: the
    /// peer's repeat on the next connection gets it from memory. Nothing is sent, since a
    /// new connection's request ids are not this one's.
    pub(crate) fn remember_answer(&self, answer: connection::Answer, now: u64) {
        let (Some(replay), Some(config), Some(digest)) =
            (&self.replay, self.idempotency, answer.digest)
        else {
            return;
        };
        let payload = match answer.reply {
            Reply::Response(pd) => Payload::Response(pd),
            Reply::Error(e) => Payload::Error(e),
        };
        let bytes = Frame {
            request_id: answer.request_id,
            payload,
        }
        .encode();
        let until = answer
            .until
            .unwrap_or_else(|| now.saturating_add(config.remember_ms));
        replay.lock().unwrap_or_else(|p| p.into_inner()).complete(
            answer.request_id,
            &digest,
            bytes.into(),
            until,
        );
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Option<Handle>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `handle` the link's connection; the one it replaces is told to close. False (and
    /// nothing installed) once the link is retired.
    fn install(&self, handle: Handle) -> bool {
        let mut conn = self.lock_conn();
        if self.retired.load(Ordering::Acquire) {
            return false;
        }
        let id = handle.id;
        if let Some(old) = conn.replace(handle) {
            old.close();
        }
        self.installed.send_replace(id);
        true
    }

    /// Retires the link for good: its connection (if any) is told to close, which fails its
    /// pending requests as any disconnect does, and no later connection is installed.
    fn retire(&self) {
        let mut conn = self.lock_conn();
        self.retired.store(true, Ordering::Release);
        if let Some(old) = conn.take() {
            old.close();
        }
        self.installed.send_modify(|_| {});
    }

    /// Forgets connection `id` if it is still the current one.
    fn remove(&self, id: u64) {
        let mut conn = self.lock_conn();
        if conn.as_ref().is_some_and(|h| h.id == id) {
            *conn = None;
        }
    }

    /// The current connection's id and command queue, if it is open.
    fn sender(&self) -> Option<(u64, mpsc::Sender<Command>)> {
        self.lock_conn()
            .as_ref()
            .filter(|h| !h.tx.is_closed())
            .map(|h| (h.id, h.tx.clone()))
    }

    /// Waits for an open connection other than `previous`; `None` once the link is retired.
    async fn next_sender(&self, previous: u64) -> Option<(u64, mpsc::Sender<Command>)> {
        let mut installed = self.installed.subscribe();
        loop {
            if self.retired.load(Ordering::Acquire) {
                return None;
            }
            if let Some((id, tx)) = self.sender().filter(|(id, _)| *id != previous) {
                return Some((id, tx));
            }
            installed.changed().await.ok()?;
        }
    }

    fn account(&self) -> Option<Arc<Recipient<IncomingPrepare>>> {
        self.account.read().ok().and_then(|a| a.clone())
    }

    fn attach(&self, account: Recipient<IncomingPrepare>) {
        if let Ok(mut slot) = self.account.write() {
            *slot = Some(Arc::new(account));
        }
    }

    fn is_up(&self) -> bool {
        self.sender().is_some()
    }

    /// Sends `prepare` on the current connection. BTP/2.0-I: when that connection closes
    /// before the answer, the request is repeated on the next one (same id, same bytes) until
    /// it is answered; the account's timer at the Prepare's expiry bounds the wait. Otherwise the
    /// send fails with the connection.
    fn send_prepare(
        self: &Arc<Self>,
        prepare: Prepare,
    ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
        let Some((mut conn, mut tx)) = self.sender() else {
            return Box::pin(async { Err(LinkError::Down) });
        };
        if self.idempotency.is_none() {
            return Box::pin(async move {
                let (reply, answer) = oneshot::channel();
                let command = Command::Prepare {
                    prepare,
                    request_id: None,
                    reply,
                };
                tx.send(command).await.map_err(|_| LinkError::Down)?;
                match answer.await {
                    Ok(Sent::Answered(result)) => result,
                    // The connection closed first, or dropped the command unsent.
                    Ok(Sent::Interrupted(_)) | Err(_) => Err(LinkError::Down),
                }
            });
        }
        let link = self.clone();
        Box::pin(async move {
            let mut request_id = None;
            loop {
                let (reply, answer) = oneshot::channel();
                let command = Command::Prepare {
                    prepare: prepare.clone(),
                    request_id,
                    reply,
                };
                // A command the connection never took, or dropped unsent, was not sent: it
                // goes to the next connection as it is.
                let sent = match tx.send(command).await {
                    Ok(()) => answer.await.ok(),
                    Err(_) => None,
                };
                match sent {
                    Some(Sent::Answered(result)) => return result,
                    Some(Sent::Interrupted(id)) => request_id = Some(id),
                    None => {}
                }
                (conn, tx) = link.next_sender(conn).await.ok_or(LinkError::Down)?;
            }
        })
    }
}

/// The link of one `btp-server` account: up while a client that authenticated as this account
/// is connected to the [`BtpServer`]; a newer connection replaces an older one.
#[derive(Clone)]
pub struct BtpServerLink {
    shared: Arc<LinkShared>,
}

impl Link for BtpServerLink {
    fn send_prepare(
        &self,
        prepare: Prepare,
    ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
        self.shared.send_prepare(prepare)
    }

    fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    fn busy_refusals(&self) -> u64 {
        self.shared.busy.load(Ordering::Relaxed)
    }

    fn attach(&self, account: Recipient<IncomingPrepare>) {
        self.shared.attach(account);
    }
}

/// The accounts a [`BtpServer`] serves. A change replaces the whole table, so an auth check
/// reads one consistent snapshot without holding the lock while it compares tokens.
#[derive(Default)]
pub(crate) struct AccountTable {
    current: RwLock<Arc<Vec<ServerAccount>>>,
}

impl AccountTable {
    pub(crate) fn snapshot(&self) -> Arc<Vec<ServerAccount>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies `change` to a copy of the table and publishes the copy; writers are serialized
    /// by the write lock.
    fn update<R>(&self, change: impl FnOnce(&mut Vec<ServerAccount>) -> R) -> R {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<ServerAccount> = current.iter().cloned().collect();
        let result = change(&mut next);
        *current = Arc::new(next);
        result
    }
}

/// The BTP listener: one socket for every `btp-server` account. Accounts can be added and
/// removed while it runs ([`BtpServer::add_account`], [`BtpServer::remove_account`]) without
/// touching the other accounts' connections. Dropping it stops accepting and closes every
/// connection it accepted.
pub struct BtpServer {
    local_addr: SocketAddr,
    accounts: Arc<AccountTable>,
    idempotency: IdempotencyConfig,
    _stop: watch::Sender<()>,
}

fn server_account(
    id: AccountId,
    credentials: BtpCredentials,
    idempotency: IdempotencyConfig,
    previous: Option<&LinkShared>,
) -> ServerAccount {
    ServerAccount {
        id,
        username: credentials.username,
        token_digest: Sha256::digest(credentials.token.as_bytes()).into(),
        link: LinkShared::succeeding(credentials.idempotent.then_some(idempotency), previous),
    }
}

impl BtpServer {
    /// Binds `addr` and serves `accounts` (account id -> the credentials its client presents)
    /// over plain WebSocket. Must be called inside a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        accounts: BTreeMap<AccountId, BtpCredentials>,
        options: BtpOptions,
    ) -> std::io::Result<BtpServer> {
        BtpServer::bind_tls(addr, accounts, None, options).await
    }

    /// As [`BtpServer::bind`]; with `tls`, every connection must complete a TLS handshake
    /// (within `handshake_timeout`, like the WebSocket one) before its WebSocket upgrade.
    pub async fn bind_tls(
        addr: SocketAddr,
        accounts: BTreeMap<AccountId, BtpCredentials>,
        tls: Option<ServerTls>,
        options: BtpOptions,
    ) -> std::io::Result<BtpServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(());
        let server = BtpServer {
            local_addr,
            accounts: Arc::new(AccountTable::default()),
            idempotency: options.idempotency,
            _stop: stop,
        };
        for (id, credentials) in accounts {
            server.add_account(id, credentials);
        }
        tokio::spawn(accept_loop(
            listener,
            server.accounts.clone(),
            tls,
            Arc::new(options),
            stop_rx,
        ));
        Ok(server)
    }

    /// Serves account `id` from now on and returns its link (to attach to the account's
    /// PeerAccount). When `id` is served already, its credentials are replaced: its current
    /// connection is closed (its pending requests fail as on any disconnect), its old link stays
    /// down for good, and only the new credentials authenticate. A BTP/2.0-I account that stays
    /// one keeps its memory of answered requests on the new link. Other accounts' connections
    /// are untouched.
    pub fn add_account(&self, id: AccountId, credentials: BtpCredentials) -> BtpServerLink {
        let (shared, old) =
            self.accounts
                .update(|table| match table.iter_mut().find(|a| a.id == id) {
                    Some(slot) => {
                        let account =
                            server_account(id, credentials, self.idempotency, Some(&slot.link));
                        let shared = account.link.clone();
                        (shared, Some(std::mem::replace(slot, account)))
                    }
                    None => {
                        let account = server_account(id, credentials, self.idempotency, None);
                        let shared = account.link.clone();
                        table.push(account);
                        (shared, None)
                    }
                });
        if let Some(old) = old {
            old.link.retire();
        }
        BtpServerLink { shared }
    }

    /// Stops serving account `id`: later auth Messages with its credentials are refused like
    /// unknown ones, and its open connection is closed now (its pending requests fail as on a
    /// disconnect; its link stays down for good). Other accounts' connections are untouched.
    /// False when `id` was not served.
    pub fn remove_account(&self, id: &str) -> bool {
        let removed = self.accounts.update(|table| {
            let i = table.iter().position(|a| &*a.id == id)?;
            Some(table.remove(i))
        });
        match removed {
            Some(account) => {
                account.link.retire();
                true
            }
            None => false,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The link of account `id`, to hand to the node.
    pub fn link(&self, id: &str) -> Option<BtpServerLink> {
        self.accounts
            .snapshot()
            .iter()
            .find(|a| &*a.id == id)
            .map(|a| BtpServerLink {
                shared: a.link.clone(),
            })
    }

    /// Every account's link, by account id, as of now.
    pub fn links(&self) -> BTreeMap<AccountId, BtpServerLink> {
        self.accounts
            .snapshot()
            .iter()
            .map(|a| {
                let link = BtpServerLink {
                    shared: a.link.clone(),
                };
                (a.id.clone(), link)
            })
            .collect()
    }
}

/// The account whose credentials these are (and, when `cert_names` is given, which the client's
/// certificate names). Every account's token digest is compared in constant time (digests, so
/// the token's length does not leak either) and the scan never stops early.
pub(crate) fn find_account(
    accounts: &[ServerAccount],
    presented: &AuthCredentials,
    cert_names: Option<&[String]>,
) -> Option<Arc<LinkShared>> {
    let digest: [u8; 32] = Sha256::digest(presented.token.as_bytes()).into();
    let mut found = None;
    for account in accounts {
        let token_ok: bool = account.token_digest.ct_eq(&digest).into();
        let user_ok = match (&account.username, &presented.username) {
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let cert_ok = cert_names.is_none_or(|names| tls::cert_names_account(names, &account.id));
        if token_ok && user_ok && cert_ok && found.is_none() {
            found = Some(account.link.clone());
        }
    }
    found
}

async fn accept_loop(
    listener: TcpListener,
    accounts: Arc<AccountTable>,
    server_tls: Option<ServerTls>,
    options: Arc<BtpOptions>,
    mut stop: watch::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _peer)) = accepted else {
            // Out of descriptors or a connection reset before accept: keep serving.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let accounts = accounts.clone();
        let options = options.clone();
        let stop = stop.clone();
        let server_tls = server_tls.clone();
        tokio::spawn(async move {
            let first_id = rand::thread_rng().gen();
            let ws_config = Some(options.ws_config());
            match server_tls {
                None => {
                    let handshake = tokio_tungstenite::accept_async_with_config(tcp, ws_config);
                    if let Ok(Ok(ws)) =
                        tokio::time::timeout(options.handshake_timeout, handshake).await
                    {
                        let role = Role::Server(accounts, None);
                        connection::serve(ws, role, &options, first_id, stop).await;
                    }
                }
                Some(server_tls) => {
                    let acceptor = server_tls.acceptor();
                    let required = server_tls.client_certs == ClientCerts::Required;
                    // One deadline for both handshakes, so a client stalling the TLS one cannot
                    // hold a connection slot longer than a plain one could.
                    let handshake = async {
                        let stream = acceptor.accept(tcp).await.ok()?;
                        // Only a certificate the handshake verified is ever present here.
                        let names: Option<Arc<[String]>> = required.then(|| {
                            stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(tls::cert_dns_names)
                                .unwrap_or_default()
                                .into()
                        });
                        tokio_tungstenite::accept_async_with_config(stream, ws_config)
                            .await
                            .ok()
                            .map(|ws| (ws, names))
                    };
                    if let Ok(Some((ws, names))) =
                        tokio::time::timeout(options.handshake_timeout, handshake).await
                    {
                        let role = Role::Server(accounts, names);
                        connection::serve(ws, role, &options, first_id, stop).await;
                    }
                }
            }
            drop(permit);
        });
    }
}

/// A link to a peer's BTP server: dials `url`, authenticates, and redials with jittered
/// exponential backoff when the connection drops. Down (every send fails at once) until
/// authenticated. Dropping the last clone stops it.
pub struct BtpClientLink {
    shared: Arc<LinkShared>,
    _stop: watch::Sender<()>,
}

impl BtpClientLink {
    /// Starts connecting in the background; must be called inside a tokio runtime. A `wss://`
    /// URL is verified against the system roots (see [`BtpClientLink::connect_with_tls`]).
    pub fn connect(url: &str, username: &str, token: &str, options: BtpOptions) -> BtpClientLink {
        let tls = is_tls_url(url)
            .then(|| tls::client_config(&Default::default(), "btp client").ok())
            .flatten()
            .map(Arc::new);
        BtpClientLink::connect_with_tls(url, username, token, tls, false, options)
    }

    /// As [`BtpClientLink::connect`], with the TLS client config a `wss://` URL is dialled with
    /// (a `wss://` URL without one never connects), and BTP/2.0-I when `idempotent` (with
    /// `options.idempotency`). `btp+ws://` and `btp+wss://` URLs are read as `ws://` and
    /// `wss://`.
    pub fn connect_with_tls(
        url: &str,
        username: &str,
        token: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        idempotent: bool,
        options: BtpOptions,
    ) -> BtpClientLink {
        let shared = LinkShared::new(idempotent.then_some(options.idempotency));
        let (stop, stop_rx) = watch::channel(());
        let tls = tls.map(|config| {
            // A WebSocket upgrade is HTTP/1.1; the caller's config stays as it is.
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            TlsConnector::from(Arc::new(config))
        });
        tokio::spawn(client_loop(
            shared.clone(),
            websocket_url(url).to_owned(),
            username.to_owned(),
            token.to_owned(),
            tls,
            Arc::new(options),
            stop_rx,
        ));
        BtpClientLink {
            shared,
            _stop: stop,
        }
    }
}

impl Link for BtpClientLink {
    fn send_prepare(
        &self,
        prepare: Prepare,
    ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
        self.shared.send_prepare(prepare)
    }

    fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    fn busy_refusals(&self) -> u64 {
        self.shared.busy.load(Ordering::Relaxed)
    }

    fn attach(&self, account: Recipient<IncomingPrepare>) {
        self.shared.attach(account);
    }
}

/// Full jitter on the upper half: a pause in `[d/2, d]`, so many clients of one restarted
/// server do not redial in lockstep.
fn jittered(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

/// `btp+ws://` and `btp+wss://` (ilp-plugin-btp's spelling) are `ws://` and `wss://`.
fn websocket_url(url: &str) -> &str {
    url.strip_prefix("btp+").unwrap_or(url)
}

fn is_tls_url(url: &str) -> bool {
    websocket_url(url)
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
}

/// TCP connect, TLS handshake (checking the server's certificate against the URL's host) and
/// WebSocket handshake to a `wss://` URL.
async fn dial_tls(
    url: &str,
    connector: &TlsConnector,
    options: &BtpOptions,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, String>
{
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("the URL has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let name = tls::server_name(host)?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(options.ws_config()))
            .await
            .map_err(|e| e.to_string())?;
    Ok(ws)
}

async fn client_loop(
    shared: Arc<LinkShared>,
    url: String,
    username: String,
    token: String,
    tls: Option<TlsConnector>,
    options: Arc<BtpOptions>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = options.reconnect_min;
    let wants_tls = is_tls_url(&url);
    loop {
        let conn_stop = stop.clone();
        let attempt = async {
            let role = Role::Client {
                link: shared.clone(),
                username: &username,
                token: &token,
            };
            let first_id = rand::thread_rng().gen();
            let timeout = options.handshake_timeout;
            match (&tls, wants_tls) {
                (Some(connector), true) => {
                    match tokio::time::timeout(timeout, dial_tls(&url, connector, &options)).await {
                        Ok(Ok(ws)) => {
                            connection::serve(ws, role, &options, first_id, conn_stop).await
                        }
                        _ => false,
                    }
                }
                // wss:// without a TLS config cannot be dialled.
                (None, true) => false,
                (_, false) => {
                    let dial = tokio_tungstenite::connect_async_with_config(
                        url.as_str(),
                        Some(options.ws_config()),
                        true,
                    );
                    match tokio::time::timeout(timeout, dial).await {
                        Ok(Ok((ws, _response))) => {
                            connection::serve(ws, role, &options, first_id, conn_stop).await
                        }
                        _ => false,
                    }
                }
            }
        };
        let was_up = tokio::select! {
            was_up = attempt => was_up,
            _ = stop.changed() => return,
        };
        if was_up {
            backoff = options.reconnect_min;
        }
        tokio::select! {
            () = tokio::time::sleep(jittered(backoff)) => {}
            _ = stop.changed() => return,
        }
        backoff = backoff.saturating_mul(2).min(options.reconnect_max);
    }
}

/// Why the BTP links of a configuration could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BtpSetupError {
    #[error("accounts.{0}: a btp-server link needs [listeners.btp]")]
    NoListener(String),
    #[error("listeners.btp: cannot bind: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("accounts.{0}.link.tls: applies only to a wss:// url")]
    TlsOnPlainUrl(String),
}

/// The BTP side of a node: the listener (when any account is `btp-server`) and the link of
/// every `btp-server` and `btp-client` account.
pub struct BtpLinks {
    /// Keep it alive as long as the node runs: dropping it closes the listener.
    pub server: Option<BtpServer>,
    pub links: BTreeMap<AccountId, Arc<dyn Link>>,
}

/// What the client of `btp-server` account `account` must present; `None` when the account is
/// not `btp-server`.
pub fn btp_server_credentials(account: &AccountConfig) -> Option<BtpCredentials> {
    match &account.link {
        LinkConfig::BtpServer {
            auth_username,
            auth_token,
        } => Some(BtpCredentials {
            username: auth_username.clone(),
            token: auth_token.expose().to_owned(),
            idempotent: account.btp_idempotent,
        }),
        _ => None,
    }
}

/// Starts dialling for `btp-client` account `id` (see [`BtpClientLink`]); `None` when the
/// account is not `btp-client`. Must be called inside a tokio runtime.
pub fn btp_client_link(
    id: &str,
    account: &AccountConfig,
    options: &BtpOptions,
) -> Result<Option<BtpClientLink>, BtpSetupError> {
    let LinkConfig::BtpClient {
        url,
        auth_username,
        auth_token,
        tls,
    } = &account.link
    else {
        return Ok(None);
    };
    let client_tls = if is_tls_url(url.as_str()) {
        let key = format!("accounts.{id}.link.tls");
        Some(Arc::new(tls::client_config(tls, &key)?))
    } else if tls::client_tls_is_set(tls) {
        return Err(BtpSetupError::TlsOnPlainUrl(id.to_owned()));
    } else {
        None
    };
    Ok(Some(BtpClientLink::connect_with_tls(
        url.as_str(),
        auth_username.as_deref().unwrap_or(""),
        auth_token.expose(),
        client_tls,
        account.btp_idempotent,
        options.clone(),
    )))
}

/// Opens the BTP links `config` asks for: binds `[listeners.btp]` for the `btp-server`
/// accounts and starts dialling for the `btp-client` ones. Must be called inside a tokio
/// runtime.
pub async fn links_for_config(
    config: &Config,
    options: BtpOptions,
) -> Result<BtpLinks, BtpSetupError> {
    let mut served = BTreeMap::new();
    let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
    for (id, account) in &config.accounts {
        if let Some(credentials) = btp_server_credentials(account) {
            served.insert(AccountId::from(id.as_str()), credentials);
        } else if let Some(link) = btp_client_link(id, account, &options)? {
            links.insert(AccountId::from(id.as_str()), Arc::new(link));
        }
    }
    // A configured listener is bound even with no btp-server account yet: a reload may add one.
    let server = match (&config.listeners.btp, served.keys().next()) {
        (None, None) => None,
        (None, Some(id)) => return Err(BtpSetupError::NoListener(id.to_string())),
        (Some(listener), _) => {
            let server_tls = tls::server_tls(&listener.tls, "listeners.btp.tls", tls::ALPN_HTTP1)?;
            let server = BtpServer::bind_tls(listener.bind, served, server_tls, options).await?;
            for (id, link) in server.links() {
                links.insert(id, Arc::new(link));
            }
            Some(server)
        }
    };
    Ok(BtpLinks { server, links })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(username: Option<&str>, token: &str) -> (ServerAccount, Arc<LinkShared>) {
        let link = LinkShared::new(None);
        (
            ServerAccount {
                id: AccountId::from(username.unwrap_or("anonymous")),
                username: username.map(str::to_owned),
                token_digest: Sha256::digest(token.as_bytes()).into(),
                link: link.clone(),
            },
            link,
        )
    }

    fn creds(username: Option<&str>, token: &str) -> AuthCredentials {
        AuthCredentials {
            username: username.map(str::to_owned),
            token: token.to_owned(),
        }
    }

    #[test]
    fn credentials_select_the_account() {
        let (a, link_a) = account(Some("alice"), "ta");
        let (b, link_b) = account(None, "tb");
        let table = vec![a, b];
        let found = find_account(&table, &creds(Some("alice"), "ta"), None).unwrap();
        assert!(Arc::ptr_eq(&found, &link_a));
        let found = find_account(&table, &creds(Some("whoever"), "tb"), None).unwrap();
        assert!(Arc::ptr_eq(&found, &link_b));
        // An account without a username takes its token under any username.
        let found = find_account(&table, &creds(Some("alice"), "tb"), None).unwrap();
        assert!(Arc::ptr_eq(&found, &link_b));
        assert!(find_account(&table, &creds(Some("alice"), "tc"), None).is_none());
        assert!(find_account(&table, &creds(Some("bob"), "ta"), None).is_none());
        assert!(find_account(&table, &creds(None, "ta"), None).is_none());
        assert!(find_account(&table, &creds(Some("alice"), ""), None).is_none());
    }

    #[test]
    fn a_required_certificate_must_also_name_the_account() {
        let (a, link_a) = account(Some("alice"), "ta");
        let (b, _) = account(Some("bob"), "tb");
        let table = vec![a, b];
        let names = ["alice".to_owned()];
        let found = find_account(&table, &creds(Some("alice"), "ta"), Some(&names)).unwrap();
        assert!(Arc::ptr_eq(&found, &link_a));
        // Bob's own token, but the certificate names alice.
        assert!(find_account(&table, &creds(Some("bob"), "tb"), Some(&names)).is_none());
        assert!(find_account(&table, &creds(Some("alice"), "ta"), Some(&[])).is_none());
        // Alice's certificate does not stand in for her token.
        assert!(find_account(&table, &creds(Some("alice"), "x"), Some(&names)).is_none());
    }

    #[test]
    fn a_successor_link_shares_the_btp_2_0_i_memory_and_a_retired_link_stays_down() {
        let config = IdempotencyConfig::default();
        let old = LinkShared::new(Some(config));
        let next = LinkShared::succeeding(Some(config), Some(&old));
        assert!(Arc::ptr_eq(
            old.replay.as_ref().unwrap(),
            next.replay.as_ref().unwrap()
        ));
        // Not idempotent any more: no memory. Idempotent now, from a plain link: a fresh one.
        assert!(LinkShared::succeeding(None, Some(&old)).replay.is_none());
        let plain = LinkShared::new(None);
        assert!(LinkShared::succeeding(Some(config), Some(&plain))
            .replay
            .is_some());

        let (tx, _rx) = mpsc::channel(1);
        let close = Arc::new(tokio::sync::Notify::new());
        let handle = |id| Handle {
            id,
            tx: tx.clone(),
            close: close.clone(),
        };
        assert!(old.install(handle(1)));
        assert!(old.is_up());
        old.retire();
        assert!(!old.is_up());
        assert!(
            !old.install(handle(2)),
            "nothing is installed on a retired link"
        );
        assert!(!old.is_up());
    }

    /// Bound on each wait of the test below.
    const WAIT: Duration = Duration::from_secs(10);

    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let waited = tokio::time::timeout(WAIT, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }

    /// A Prepare whose sender took its place in a connection's queue before the connection
    /// ended, and wrote it there after the queue was dropped, stayed in the queue for good: the
    /// sender keeps a handle on the queue, so nothing dropped it, and its send never returned
    /// (the crash test's drain hang, a new payment sent at the instant of a kill). Now the
    /// connection drains its queue to the end, so the link hears that it was not sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prepare_queued_as_the_connection_ends_is_handed_back_unsent() {
        let credentials = BtpCredentials {
            username: None,
            token: "t".into(),
            idempotent: true,
        };
        let accounts = BTreeMap::from([(AccountId::from("a"), credentials)]);
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = BtpServer::bind(any_port, accounts, BtpOptions::default())
            .await
            .unwrap();
        let url = format!("ws://{}", server.local_addr());
        let client =
            BtpClientLink::connect_with_tls(&url, "a", "t", None, true, BtpOptions::default());
        wait_for("the client connects", || client.is_up()).await;
        let (_, tx) = client.shared.sender().unwrap();
        // A place in the queue, taken while the connection is open...
        let permit = tx.reserve().await.unwrap();
        // ...which then ends (dropping the server closes its connections) and closes its queue.
        drop(server);
        wait_for("the connection closes its queue", || tx.is_closed()).await;
        let prepare = ilp::packet::PrepareBuilder {
            amount: 1,
            expires_at: Clock::system().now().checked_add_millis(30_000).unwrap(),
            execution_condition: &[0; 32],
            destination: &ilp::packet::Address::try_from("test.a").unwrap(),
            data: b"",
        }
        .build()
        .unwrap();
        let (reply, answer) = oneshot::channel();
        permit.send(Command::Prepare {
            prepare,
            request_id: None,
            reply,
        });
        // Handed back unsent (its reply dropped): the link sends it on the next connection.
        let handed_back = tokio::time::timeout(WAIT, answer).await;
        assert!(
            matches!(handed_back, Ok(Err(_))),
            "the Prepare stayed in the queue of a closed connection"
        );
    }

    #[test]
    fn btp_url_spellings() {
        assert_eq!(websocket_url("btp+wss://h/x"), "wss://h/x");
        assert_eq!(websocket_url("ws://h"), "ws://h");
        assert!(is_tls_url("btp+wss://h") && is_tls_url("WSS://h") && is_tls_url("wss://h"));
        assert!(!is_tls_url("ws://h") && !is_tls_url("btp+ws://h") && !is_tls_url("wss"));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(800));
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        }
        assert!(jittered(Duration::ZERO) <= Duration::from_millis(1));
    }
}
