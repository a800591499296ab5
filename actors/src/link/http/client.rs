//! The outgoing half of an ILP-over-HTTP account: [`HttpLink`] POSTs each Prepare to the peer
//! and reads the Fulfill or Reject from the 200 response. It also carries what the account's
//! incoming side needs (path, expected token, the attached PeerAccount), which the
//! [`super::HttpServer`] reads.
//!
//! How failures become answers (RFC 35 asks for T00 on server errors):
//!
//! | what happened                                   | answer                                 |
//! |-------------------------------------------------|----------------------------------------|
//! | TCP connect failed (refused, unreachable, DNS)  | [`LinkError::Down`]: the PeerAccount rejects T01 |
//! | other transport failure (reset, h2 error)       | Reject T00, the error in the message   |
//! | 5xx, or any status other than 200 and 4xx       | Reject T00 with the status             |
//! | 4xx                                             | Reject F00 with the status and the start of the body |
//! | 200 whose body is not a Fulfill or Reject       | [`LinkError::Protocol`]: the PeerAccount rejects T00 |
//! | no answer by the Prepare's expiry               | the PeerAccount's timer rejects R00; the link's own backstop, [`EXPIRY_GRACE`] later, rejects T00 for callers that do not race it |
//!
//! Async mode (`mode = "async"`): the POST also carries `Callback-Url` (the account's
//! `callback_url`) and a fresh `Request-Id`, registered in a bounded table first (full: Reject
//! T03, nothing sent). A 202 means the answer comes by callback: the send waits for the
//! [`super::HttpServer`] to hand it the first callback with that id; a 200 with a packet (a peer
//! that answers at once) and every failure above are taken as in sync mode. However the send
//! ends, even dropped by the PeerAccount's expiry timer, its id leaves the table, so a later
//! callback finds nothing (400).
//!
//! The answering side's callbacks also go out through this link's client, with its outgoing
//! bearer token: 2xx or 4xx ends them; a 5xx, a connection failure or no answer within
//! [`HttpLinkOptions::callback_attempt_timeout`] is retried after a pause that doubles from
//! `callback_first_backoff` to `callback_max_backoff`, until the Prepare's expiry.
//!
//! An unparsable 200 is T00 rather than F00: the peer accepted the request, so the fault is
//! more likely a transient one on its side than a bad Prepare of ours.
//!
//! TLS: an `https://` outgoing URL is dialled with rustls (the account's `link.tls`: `ca_path`
//! instead of the system roots, `cert_path`/`key_path` for a client certificate) and offers
//! ALPN `h2` and `http/1.1`; hyper speaks whichever the server picks over the pooled
//! connections (HTTP/2 multiplexes concurrent Prepares on one connection). A failed TLS
//! handshake (for instance an untrusted server certificate) is a connect failure: T01.
//!
//! `is_up`: HTTP is connectionless, so the link is up unless the last attempt failed to
//! connect; it then reports down for [`HttpLinkOptions::retry_after_connect_failure`] (packets
//! are rejected T01 at once instead of each waiting for a connect to fail) and after that the
//! next Prepare tries again. A successful exchange clears the mark.

use super::pending::{Delivery, PendingReplies, TableFull};
use super::{HttpLinkError, CALLBACK_URL, MAX_BODY_BYTES, OCTET_STREAM, REQUEST_ID};
use crate::clock::Clock;
use crate::link::{Link, LinkError};
use crate::messages::{AccountId, IncomingPrepare, PacketResult};
use crate::peer_account::NodeAddress;
use crate::tls;
use actix::Recipient;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ilp::config::{AccountConfig, HttpMode, LinkConfig, SecretString};
use ilp::packet::{ErrorCode, Packet, Prepare, Reject};
use rand::Rng;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// A pooled HTTP client for `http://` and `https://` URLs (TLS by `tls_config`, HTTP/1.1 or
/// HTTP/2 by ALPN; `h2c`: HTTP/2 with prior knowledge over `http://`), connecting within
/// `connect_timeout`.
pub fn https_client<B>(
    tls_config: rustls::ClientConfig,
    connect_timeout: Duration,
    h2c: bool,
) -> Client<HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    // The TLS layer wraps the TCP connector, so https URLs must pass through it.
    connector.enforce_http(false);
    // hyper-rustls sets the config's ALPN itself from these two calls.
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    // The timer lets the pool close connections idle for longer than its idle timeout.
    Client::builder(TokioExecutor::new())
        .http2_only(h2c)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// How long after a Prepare's expiry the link gives up on its own (see the module table).
pub const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// Longest part of a 4xx body quoted in the F00 message.
const QUOTED_BODY_CHARS: usize = 100;

/// Client settings shared by the `http` accounts of a node.
#[derive(Debug, Clone)]
pub struct HttpLinkOptions {
    /// Async mode: most outgoing Prepares awaiting a callback at once; beyond it a Prepare is
    /// rejected T03 without being sent.
    pub max_pending_callbacks: usize,
    /// Async mode, answering side: first pause before re-POSTing a failed callback (it doubles
    /// up to `callback_max_backoff`).
    pub callback_first_backoff: Duration,
    pub callback_max_backoff: Duration,
    /// Async mode, answering side: longest one callback POST may take before it counts as
    /// failed and is retried.
    pub callback_attempt_timeout: Duration,
    /// Over plain `http://`: speak HTTP/2 without negotiation (h2c prior knowledge); otherwise
    /// HTTP/1.1. (Over `https://` the version is negotiated by ALPN.)
    pub http2_prior_knowledge: bool,
    /// How long the link reports down after a failed connect (see the module doc).
    pub retry_after_connect_failure: Duration,
    /// Longest a TCP connect may take before it counts as a connect failure.
    pub connect_timeout: Duration,
    /// Async mode: an accepted Prepare whose callback has not come after this long is POSTed
    /// again (same Request-Id, same bytes), and again after each such pause, until the callback
    /// comes or the Prepare expires: the peer may have lost it (a crash) or its callback may
    /// have failed, and a repeat is answered from the peer's memory, never paid twice.
    pub async_repeat_interval: Duration,
}

impl Default for HttpLinkOptions {
    fn default() -> Self {
        HttpLinkOptions {
            max_pending_callbacks: 10_000,
            callback_first_backoff: Duration::from_millis(50),
            callback_max_backoff: Duration::from_secs(2),
            callback_attempt_timeout: Duration::from_secs(5),
            http2_prior_knowledge: false,
            retry_after_connect_failure: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            async_repeat_interval: Duration::from_secs(1),
        }
    }
}

struct Inner {
    account: AccountId,
    incoming_path: String,
    incoming_token: Option<SecretString>,
    outgoing_uri: Uri,
    outgoing_auth: Option<HeaderValue>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    clock: Clock,
    retry_after_connect_failure: Duration,
    async_repeat_interval: Duration,
    /// Stamps the Rejects this link makes up; the node's address when set.
    node_address: RwLock<Option<NodeAddress>>,
    /// This end's PeerAccount, where the server delivers the peer's Prepares.
    local: RwLock<Option<Arc<Recipient<IncomingPrepare>>>>,
    /// Set by a failed connect: the link reports down until then.
    down_until: Mutex<Option<Instant>>,
    /// Async mode: our callback URL (sent as `Callback-Url`) and the path it is served at.
    callback: Option<(HeaderValue, String)>,
    /// Async mode: outgoing Prepares awaiting their callback.
    pending: Mutex<PendingReplies>,
    /// Answering side of async mode: how callbacks are retried.
    retry: CallbackRetry,
}

/// How the answering side retries a callback POST.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallbackRetry {
    pub(super) first_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) attempt_timeout: Duration,
}

/// One `http` account's link. Cloning shares it.
#[derive(Clone)]
pub struct HttpLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLink")
            .field("account", &self.inner.account)
            .field("incoming_path", &self.inner.incoming_path)
            .field("outgoing_uri", &self.inner.outgoing_uri)
            .finish_non_exhaustive()
    }
}

impl HttpLink {
    /// The link of account `id`, whose `link.type` must be `"http"` in sync mode with an
    /// `http://` or `https://` outgoing URL (`link.tls` applies only to `https://`).
    pub fn from_config(
        id: &str,
        account: &AccountConfig,
        clock: Clock,
        options: &HttpLinkOptions,
    ) -> Result<HttpLink, HttpLinkError> {
        let LinkConfig::Http {
            incoming_auth_token,
            outgoing_url,
            outgoing_auth_token,
            mode,
            callback_url,
            tls: client_tls,
            http2,
            ..
        } = &account.link
        else {
            return Err(HttpLinkError::NotHttp(id.to_owned()));
        };
        let callback = match (mode, callback_url) {
            (HttpMode::Sync, _) => None,
            (HttpMode::Async, None) => {
                return Err(HttpLinkError::MissingCallbackUrl(id.to_owned()))
            }
            (HttpMode::Async, Some(url)) => {
                let bad = |reason: &str| HttpLinkError::CallbackUrl {
                    account: id.to_owned(),
                    url: url.to_string(),
                    reason: reason.to_owned(),
                };
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(bad("must be http:// or https://"));
                }
                let value = HeaderValue::from_str(url.as_str())
                    .map_err(|_| bad("not a valid HTTP header value"))?;
                Some((value, url.path().to_owned()))
            }
        };
        let url_error = |reason: &str| HttpLinkError::OutgoingUrl {
            account: id.to_owned(),
            url: outgoing_url.to_string(),
            reason: reason.to_owned(),
        };
        let https = match outgoing_url.scheme() {
            "https" => true,
            "http" if tls::client_tls_is_set(client_tls) => {
                return Err(HttpLinkError::TlsOnPlainUrl(id.to_owned()))
            }
            "http" => false,
            _ => return Err(url_error("must be http:// or https://")),
        };
        let outgoing_uri: Uri = outgoing_url
            .as_str()
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| url_error(&e.to_string()))?;
        let outgoing_auth = outgoing_auth_token
            .as_ref()
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                    .map_err(|_| HttpLinkError::InvalidToken(id.to_owned()))?;
                v.set_sensitive(true);
                Ok::<_, HttpLinkError>(v)
            })
            .transpose()?;
        let incoming_path = account
            .http_incoming_path(id)
            .ok_or_else(|| HttpLinkError::NotHttp(id.to_owned()))?;
        let tls_config = if https {
            tls::client_config(client_tls, &format!("accounts.{id}.link.tls"))?
        } else {
            tls::trust_nothing_client_config()?
        };
        let client = https_client(
            tls_config,
            options.connect_timeout,
            (options.http2_prior_knowledge || *http2) && !https,
        );
        Ok(HttpLink {
            inner: Arc::new(Inner {
                account: Arc::from(id),
                incoming_path,
                incoming_token: incoming_auth_token.clone(),
                outgoing_uri,
                outgoing_auth,
                client,
                clock,
                retry_after_connect_failure: options.retry_after_connect_failure,
                async_repeat_interval: options.async_repeat_interval,
                node_address: RwLock::new(None),
                local: RwLock::new(None),
                down_until: Mutex::new(None),
                callback,
                pending: Mutex::new(PendingReplies::new(options.max_pending_callbacks)),
                retry: CallbackRetry {
                    first_backoff: options.callback_first_backoff,
                    max_backoff: options.callback_max_backoff,
                    attempt_timeout: options.callback_attempt_timeout,
                },
            }),
        })
    }

    /// The account this link belongs to.
    pub fn account(&self) -> &AccountId {
        &self.inner.account
    }

    /// The path the peer POSTs to.
    pub fn incoming_path(&self) -> &str {
        &self.inner.incoming_path
    }

    /// The token the peer must present; `None` means no request is accepted (there is no
    /// other authentication yet, and an open endpoint would let anyone spend the account).
    pub(super) fn incoming_token(&self) -> Option<&SecretString> {
        self.inner.incoming_token.as_ref()
    }

    /// The PeerAccount this link was attached to, if any yet.
    /// Whether an async reply may be POSTed to `callback`: only to the host of this peer's
    /// configured `outgoing_url` (any port), so an authenticated peer cannot make us send
    /// requests, and its bearer token, to some other machine or service.
    pub(super) fn callback_allowed(&self, callback: &Uri) -> bool {
        match (callback.host(), self.inner.outgoing_uri.host()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }

    pub(super) fn local(&self) -> Option<Arc<Recipient<IncomingPrepare>>> {
        match self.inner.local.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A Reject made up by this link (triggered by the node's address when known).
    pub(super) fn reject(&self, code: ErrorCode, message: &str) -> Reject {
        self.inner.reject(code, message)
    }

    /// Async mode: the path our listener serves this account's callbacks at.
    pub fn callback_path(&self) -> Option<&str> {
        self.inner.callback.as_ref().map(|(_, path)| path.as_str())
    }

    /// Outgoing Prepares awaiting a callback (async mode).
    pub fn pending_callbacks(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Hands a callback's packet to the outgoing Prepare sent as `request_id`, if it still
    /// waits (the first callback wins; a repeat, unknown or expired id is
    /// [`Delivery::Unknown`]).
    pub(super) fn deliver(&self, request_id: &str, packet: PacketResult) -> Delivery {
        lock(&self.inner.pending).deliver(request_id, packet, Instant::now())
    }

    /// When `prepare` expires, on this link's clock.
    pub(super) fn expiry(&self, prepare: &Prepare) -> Instant {
        self.inner.clock.instant_at(prepare.expires_at())
    }

    /// The answering side of async mode: POSTs `packet` (our Fulfill or Reject) to the
    /// peer's `callback` with `request_id`, retrying as the module doc says until `expires`.
    pub(super) async fn post_callback(
        &self,
        callback: Uri,
        request_id: HeaderValue,
        packet: Bytes,
        expires: Instant,
    ) -> CallbackOutcome {
        self.inner
            .post_callback(callback, request_id, packet, expires)
            .await
    }

    /// Rejects this link makes up are triggered by `address` (the node's, shared, so one learned
    /// later over IL-DCP is used too). Until set they carry no address.
    pub fn set_node_address(&self, address: NodeAddress) {
        match self.inner.node_address.write() {
            Ok(mut slot) => *slot = Some(address),
            Err(poisoned) => *poisoned.into_inner() = Some(address),
        }
    }
}

impl Inner {
    fn reject(&self, code: ErrorCode, message: &str) -> Reject {
        let address = match self.node_address.read() {
            Ok(slot) => slot.as_ref().and_then(NodeAddress::get),
            Err(poisoned) => poisoned.into_inner().as_ref().and_then(NodeAddress::get),
        };
        Reject::new(code, address.as_ref(), message)
    }

    fn set_down_until(&self, until: Option<Instant>) {
        match self.down_until.lock() {
            Ok(mut slot) => *slot = until,
            Err(poisoned) => *poisoned.into_inner() = until,
        }
    }

    fn is_up(&self) -> bool {
        let until = match self.down_until.lock() {
            Ok(slot) => *slot,
            Err(poisoned) => *poisoned.into_inner(),
        };
        until.is_none_or(|t| Instant::now() >= t)
    }

    async fn send(self: Arc<Self>, prepare: Prepare) -> Result<PacketResult, LinkError> {
        let expires = self.clock.instant_at(prepare.expires_at());
        let deadline = expires + EXPIRY_GRACE;
        let mut waiting = None;
        // Async mode: registered before the POST, since the callback may beat the 202.
        let mut request_id = None;
        if self.callback.is_some() {
            let id = new_request_id();
            let receiver = match lock(&self.pending).insert(id.clone(), expires, Instant::now()) {
                Ok(r) => r,
                Err(TableFull) => {
                    return Ok(Err(self.reject(
                        ErrorCode::T03_CONNECTOR_BUSY,
                        "too many packets await the peer's callback.",
                    )))
                }
            };
            request_id = Some(id.clone());
            waiting = Some((receiver, Forget { inner: &self, id }));
        }
        let build = || {
            let mut request = Request::post(self.outgoing_uri.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(ACCEPT, OCTET_STREAM);
            if let Some(auth) = &self.outgoing_auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            if let (Some((callback, _)), Some(id)) = (&self.callback, &request_id) {
                request = request
                    .header(CALLBACK_URL, callback.clone())
                    .header(REQUEST_ID, id.as_str());
            }
            request
                .body(Full::new(prepare.as_bytes().clone()))
                .map_err(|e| LinkError::Protocol(format!("cannot build the request: {e}")))
        };
        let flow = async {
            let Some((mut receiver, _forget)) = waiting.take() else {
                return match self.exchange(build()?, false).await? {
                    Exchanged::Answer(answer) => Ok(answer),
                    Exchanged::Accepted | Exchanged::Lost => {
                        Err(LinkError::Protocol("unexpected 202 Accepted".into()))
                    }
                };
            };
            // Async: POSTed until the callback comes. The first POST decides whether the peer
            // may have the Prepare at all; after that, repeats only help it answer.
            let mut delivered = false;
            loop {
                match self.exchange(build()?, true).await {
                    Ok(Exchanged::Accepted) => delivered = true,
                    // A packet in the response is an answer, whenever it comes.
                    Ok(Exchanged::Answer(Ok(fulfill))) => return Ok(Ok(fulfill)),
                    Ok(Exchanged::Answer(Err(reject))) if !delivered => return Ok(Err(reject)),
                    Err(e) if !delivered => return Err(e),
                    Ok(Exchanged::Lost) => delivered = true,
                    // A repeat refused or failed: the first may still be answered.
                    Ok(Exchanged::Answer(Err(_))) | Err(_) => {}
                }
                let repeat = tokio::time::sleep(self.async_repeat_interval);
                tokio::select! {
                    answer = &mut receiver => {
                        return answer.map_err(|_| {
                            LinkError::Protocol("the callback table dropped the request".into())
                        });
                    }
                    () = repeat => {}
                }
            }
        };
        match tokio::time::timeout_at(deadline, flow).await {
            Ok(answer) => answer,
            Err(_) => Ok(Err(self.reject(
                ErrorCode::T00_INTERNAL_ERROR,
                "the peer did not answer before the packet expired.",
            ))),
        }
    }

    /// POSTs one callback, then retries it with backoff while it fails transiently.
    async fn post_callback(
        &self,
        callback: Uri,
        request_id: HeaderValue,
        packet: Bytes,
        expires: Instant,
    ) -> CallbackOutcome {
        let mut backoff = self.retry.first_backoff;
        loop {
            let mut request = Request::post(callback.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(REQUEST_ID, request_id.clone());
            if let Some(auth) = &self.outgoing_auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let Ok(request) = request.body(Full::new(packet.clone())) else {
                return CallbackOutcome::Unsendable;
            };
            let attempt_deadline = expires.min(Instant::now() + self.retry.attempt_timeout);
            let attempt = async {
                let response = self.client.request(request).await.ok()?;
                let status = response.status();
                // Drains the body so the pooled connection can be reused.
                let _ = Limited::new(response.into_body(), MAX_BODY_BYTES)
                    .collect()
                    .await;
                Some(status)
            };
            if let Ok(Some(status)) = tokio::time::timeout_at(attempt_deadline, attempt).await {
                if status.is_success() {
                    return CallbackOutcome::Delivered;
                }
                if status.is_client_error() {
                    return CallbackOutcome::Refused(status);
                }
            }
            let now = Instant::now();
            if now >= expires {
                return CallbackOutcome::Expired;
            }
            tokio::time::sleep_until(expires.min(now + backoff)).await;
            if Instant::now() >= expires {
                return CallbackOutcome::Expired;
            }
            backoff = backoff.saturating_mul(2).min(self.retry.max_backoff);
        }
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        callback_expected: bool,
    ) -> Result<Exchanged, LinkError> {
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                self.set_down_until(Some(Instant::now() + self.retry_after_connect_failure));
                return Err(LinkError::Down);
            }
            Err(e) => {
                let reject = self.reject(
                    ErrorCode::T00_INTERNAL_ERROR,
                    &format!("HTTP request to the peer failed: {}", error_chain(&e)),
                );
                if callback_expected {
                    return Ok(Exchanged::Lost);
                }
                return Ok(Exchanged::Answer(Err(reject)));
            }
        };
        self.set_down_until(None);
        let status = response.status();
        if status == StatusCode::ACCEPTED && callback_expected {
            return Ok(Exchanged::Accepted);
        }
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes());
        if status == StatusCode::OK {
            let body = body
                .map_err(|e| LinkError::Protocol(format!("cannot read the response body: {e}")))?;
            // Also in async mode: a peer may answer at once instead of calling back.
            return match Packet::parse(body) {
                Ok(Packet::Fulfill(f)) => Ok(Exchanged::Answer(Ok(f))),
                Ok(Packet::Reject(r)) => Ok(Exchanged::Answer(Err(r))),
                Ok(Packet::Prepare(_)) => Err(LinkError::Protocol(
                    "the peer answered with a Prepare".into(),
                )),
                Err(e) => Err(LinkError::Protocol(format!(
                    "the response body is not an ILP packet: {e}"
                ))),
            };
        }
        let (code, what) = if status.is_client_error() {
            (ErrorCode::F00_BAD_REQUEST, "refused the packet")
        } else {
            (ErrorCode::T00_INTERNAL_ERROR, "failed")
        };
        let mut message = format!("the peer {what}: HTTP {status}");
        if let Ok(body) = body {
            let text: String = String::from_utf8_lossy(&body)
                .chars()
                .take(QUOTED_BODY_CHARS)
                .collect();
            let text = text.trim();
            if !text.is_empty() {
                message.push_str(": ");
                message.push_str(text);
            }
        }
        Ok(Exchanged::Answer(Err(self.reject(code, &message))))
    }
}

/// What one POST of a Prepare gave.
enum Exchanged {
    /// The Fulfill or Reject (from the response, or made up from an HTTP failure).
    Answer(PacketResult),
    /// 202: the answer comes by callback.
    Accepted,
    /// Async mode: the request was sent but no response came (the connection failed after
    /// connecting): the peer may have it, so its callback may still come.
    Lost,
}

/// How a callback POST ended (answering side of async mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// A 2xx: the peer has the packet.
    Delivered,
    /// A 4xx: the peer will never take it (repeats would get the same).
    Refused(StatusCode),
    /// Still failing at the Prepare's expiry, when the answer is worthless to the peer.
    Expired,
    /// The request could not be built (a header the peer sent was unusable).
    Unsendable,
}

/// Removes a request from the callback table when its send ends in any way (answered,
/// failed, timed out, or dropped by the PeerAccount's expiry timer), so a later callback for
/// it gets 400.
struct Forget<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A fresh Request-Id: 128 random bits (from the thread's CSPRNG, so ids cannot be guessed)
/// written like a version-4 UUID.
fn new_request_id() -> String {
    let bits: u128 = rand::thread_rng().gen();
    let bits = (bits & !(0xf_u128 << 76) | (0x4_u128 << 76)) & !(0x3_u128 << 62) | (0x2_u128 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 64) & 0xffff,
        (bits >> 48) & 0xffff,
        bits & 0xffff_ffff_ffff
    )
}

/// An error and its causes on one line (hyper's top-level messages are terse).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Link for HttpLink {
    fn send_prepare(
        &self,
        prepare: Prepare,
    ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
        Box::pin(self.inner.clone().send(prepare))
    }

    fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    /// Prepares the peer POSTs to this account's path go to `account`.
    fn attach(&self, account: Recipient<IncomingPrepare>) {
        let account = Arc::new(account);
        match self.inner.local.write() {
            Ok(mut slot) => *slot = Some(account),
            Err(poisoned) => *poisoned.into_inner() = Some(account),
        }
    }
}
