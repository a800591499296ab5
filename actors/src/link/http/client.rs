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

use super::{HttpLinkError, MAX_BODY_BYTES, OCTET_STREAM};
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
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// How long after a Prepare's expiry the link gives up on its own (see the module table).
pub const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// Longest part of a 4xx body quoted in the F00 message.
const QUOTED_BODY_CHARS: usize = 100;

/// Client settings shared by the `http` accounts of a node.
#[derive(Debug, Clone)]
pub struct HttpLinkOptions {
    /// Over plain `http://`: speak HTTP/2 without negotiation (h2c prior knowledge); otherwise
    /// HTTP/1.1. (Over `https://` the version is negotiated by ALPN.)
    pub http2_prior_knowledge: bool,
    /// How long the link reports down after a failed connect (see the module doc).
    pub retry_after_connect_failure: Duration,
    /// Longest a TCP connect may take before it counts as a connect failure.
    pub connect_timeout: Duration,
}

impl Default for HttpLinkOptions {
    fn default() -> Self {
        HttpLinkOptions {
            http2_prior_knowledge: false,
            retry_after_connect_failure: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
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
    /// Stamps the Rejects this link makes up; the node's address when set.
    node_address: RwLock<Option<NodeAddress>>,
    /// This end's PeerAccount, where the server delivers the peer's Prepares.
    local: RwLock<Option<Recipient<IncomingPrepare>>>,
    /// Set by a failed connect: the link reports down until then.
    down_until: Mutex<Option<Instant>>,
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
            tls: client_tls,
            ..
        } = &account.link
        else {
            return Err(HttpLinkError::NotHttp(id.to_owned()));
        };
        if *mode == HttpMode::Async {
            return Err(HttpLinkError::AsyncMode(id.to_owned()));
        }
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
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.connect_timeout));
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
        let client = Client::builder(TokioExecutor::new())
            .http2_only(options.http2_prior_knowledge && !https)
            .pool_timer(TokioTimer::new())
            .build(connector);
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
                node_address: RwLock::new(None),
                local: RwLock::new(None),
                down_until: Mutex::new(None),
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
    pub(super) fn local(&self) -> Option<Recipient<IncomingPrepare>> {
        match self.inner.local.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
        let deadline = self.clock.instant_at(prepare.expires_at()) + EXPIRY_GRACE;
        let mut request = Request::post(self.outgoing_uri.clone())
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(ACCEPT, OCTET_STREAM);
        if let Some(auth) = &self.outgoing_auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(Full::new(prepare.as_bytes().clone()))
            .map_err(|e| LinkError::Protocol(format!("cannot build the request: {e}")))?;
        match tokio::time::timeout_at(deadline, self.exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Ok(Err(self.reject(
                ErrorCode::T00_INTERNAL_ERROR,
                "the peer did not answer before the packet expired.",
            ))),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<PacketResult, LinkError> {
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                self.set_down_until(Some(Instant::now() + self.retry_after_connect_failure));
                return Err(LinkError::Down);
            }
            Err(e) => {
                return Ok(Err(self.reject(
                    ErrorCode::T00_INTERNAL_ERROR,
                    &format!("HTTP request to the peer failed: {}", error_chain(&e)),
                )));
            }
        };
        self.set_down_until(None);
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes());
        if status == StatusCode::OK {
            let body = body
                .map_err(|e| LinkError::Protocol(format!("cannot read the response body: {e}")))?;
            return match Packet::parse(body) {
                Ok(Packet::Fulfill(f)) => Ok(Ok(f)),
                Ok(Packet::Reject(r)) => Ok(Err(r)),
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
        Ok(Err(self.reject(code, &message)))
    }
}

/// An error and its causes on one line (hyper's top-level messages are terse).
fn error_chain(e: &dyn std::error::Error) -> String {
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
        match self.inner.local.write() {
            Ok(mut slot) => *slot = Some(account),
            Err(poisoned) => *poisoned.into_inner() = Some(account),
        }
    }
}
