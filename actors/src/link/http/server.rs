//! The ILP-over-HTTP server (`[listeners.http]`): one socket for every `http` account, each
//! served at its `incoming_path`. HTTP/1.1 and HTTP/2 with prior knowledge (h2c) share the
//! socket; hyper-util's auto builder tells them apart by the connection preface. With TLS
//! ([`HttpServerOptions::tls`]) the server offers ALPN `h2` and `http/1.1` (only `http/1.1`
//! when `h2` is off) and the same builder serves what the client picked.
//!
//! Accounts can be added and removed while the server runs (a config reload):
//! [`HttpServer::add_account`] and [`HttpServer::remove_account`] swap the path table; a request
//! looks its path up once, so one already past the lookup finishes with its account's route.
//!
//! Authentication depends on the listener's client-certificate setting. A certificate "names"
//! an account when one of its DNS subject alternative names equals the account id
//! ([`crate::tls::cert_names_account`]); it has already been verified against
//! `client_ca_path` by the TLS handshake.
//! - no `client_ca_path` (or no TLS): the bearer token, `Authorization: Bearer
//!   <incoming_auth_token>` (compared in constant time; an account without a token, or with an
//!   empty one, accepts nothing).
//! - `client_ca_path` without `require_client_cert`: a certificate that names the account
//!   *instead of* the bearer token; without such a certificate, the bearer token.
//! - `require_client_cert = true`: the certificate must name the account (else 403), *and* when
//!   the account has an `incoming_auth_token` the bearer token must match it too (so turning on
//!   mTLS only ever adds a check; an account without a token is authenticated by its
//!   certificate alone).
//!
//! A request is checked in this order, each failure answered with a short text body and never
//! reaching the account: unknown path → 404; not POST → 405; certificate required but not
//! naming the account → 403; not authenticated as above → 401; body over [`MAX_BODY_BYTES`] →
//! 413; body not complete within [`HttpServerOptions::body_timeout`] → 408. Then, by path:
//!
//! - `incoming_path`: a `Callback-Url` that is not an absolute http(s) URL, or one without a
//!   usable `Request-Id` → 400; body not an ILP Prepare → 400; account not attached to a
//!   PeerAccount yet → 503. Without a Callback-Url (sync) the Prepare goes to the account's
//!   PeerAccount and its Fulfill or Reject is the 200 response (503 if its mailbox is gone).
//!   With one (async) the answer is 202 at once; the Fulfill or Reject is then POSTed to the
//!   Callback-Url with the same Request-Id and the account's outgoing bearer token, and
//!   re-POSTed with backoff after a 5xx, a connection failure or an attempt timeout, until a
//!   2xx or a 4xx or the Prepare's expiry. The Callback-Url comes from an authenticated peer
//!   and must name the host of that peer's configured `outgoing_url` (else 400), so a peer
//!   cannot point our requests and token at another machine.
//! - the path of an async account's `callback_url`: no usable `Request-Id` → 400; body not a
//!   Fulfill or Reject → 400; no outgoing Prepare awaits the id (unknown, already answered, or
//!   its Prepare expired) → 400; else the waiting send gets the packet → 200.
//!
//! The request's Content-Type is not checked: the body is parsed either way, and a wrong
//! header on a good packet is no reason to drop a payment.

use super::pending::Delivery;
use super::{HttpLink, CALLBACK_URL, MAX_BODY_BYTES, OCTET_STREAM, REQUEST_ID};
use crate::messages::{ask, AccountId, IncomingPrepare, PacketResult};
use crate::tls::{self, ClientCerts, ServerTls};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use ilp::packet::{ErrorCode, Packet, Prepare};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Longest Request-Id accepted (a UUID is 36 characters).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

#[derive(Debug, Error)]
pub enum HttpServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("accounts {first} and {second} both use incoming path {path}")]
    DuplicatePath {
        path: String,
        first: String,
        second: String,
    },
}

/// Server settings (`[listeners.http]`).
#[derive(Debug, Clone)]
pub struct HttpServerOptions {
    /// Accept HTTP/2 with prior knowledge besides HTTP/1.1 (`listeners.http.h2`).
    pub h2: bool,
    /// Longest an HTTP/1.1 client may take to send its request head.
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// TLS on the socket (`[listeners.http.tls]`, built by [`crate::tls::server_tls`] with
    /// [`crate::tls::ALPN_H2_HTTP1`]); `None`: plain TCP. The TLS handshake must complete within
    /// `header_timeout`.
    pub tls: Option<ServerTls>,
    /// Connections served at once; more are closed at accept (each HTTP/2 connection carries
    /// at most hyper's 200 concurrent requests, each HTTP/1.1 one a request at a time).
    pub max_connections: usize,
}

impl Default for HttpServerOptions {
    fn default() -> Self {
        HttpServerOptions {
            h2: true,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            tls: None,
            max_connections: 1024,
        }
    }
}

/// A running server. Accounts can be added and removed while it runs
/// ([`HttpServer::add_account`], [`HttpServer::remove_account`]). Dropping it stops accepting
/// and closes its connections.
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
    routes: Arc<Routes>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("local_addr", &self.local_addr)
            .field("accounts", &self.accounts())
            .finish()
    }
}

/// Requests the server received, by HTTP version (whatever their outcome).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub http1: u64,
    pub http2: u64,
}

#[derive(Debug, Default)]
struct Counts {
    http1: AtomicU64,
    http2: AtomicU64,
}

/// What a path serves.
#[derive(Clone)]
enum Route {
    /// The account's Prepares (`incoming_path`).
    Prepares(HttpLink),
    /// The account's callbacks (the path of its `callback_url`, async mode).
    Callbacks(HttpLink),
}

impl Route {
    fn link(&self) -> &HttpLink {
        match self {
            Route::Prepares(link) | Route::Callbacks(link) => link,
        }
    }
}

/// Path -> route. A change replaces the whole map, so a request looks its path up in one
/// consistent snapshot and keeps its route to the end even if the account is removed meanwhile.
type PathTable = HashMap<String, Route>;

struct Routes {
    by_path: RwLock<Arc<PathTable>>,
    body_timeout: Duration,
    client_certs: ClientCerts,
    counts: Arc<Counts>,
}

impl HttpServer {
    /// Listens on `addr` and serves `accounts` with default options. Needs a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        accounts: impl IntoIterator<Item = HttpLink>,
    ) -> Result<HttpServer, HttpServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpServerError::Bind { addr, source })?;
        HttpServer::serve(listener, accounts, HttpServerOptions::default())
    }

    /// Serves `accounts` on an already bound `listener` (so a caller can learn the port before
    /// it builds the links, e.g. two nodes that point at each other).
    pub fn serve(
        listener: TcpListener,
        accounts: impl IntoIterator<Item = HttpLink>,
        options: HttpServerOptions,
    ) -> Result<HttpServer, HttpServerError> {
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpServerError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        let routes = Arc::new(Routes {
            by_path: RwLock::default(),
            body_timeout: options.body_timeout,
            client_certs: options
                .tls
                .as_ref()
                .map_or(ClientCerts::Ignored, |t| t.client_certs),
            counts: Arc::default(),
        });
        for link in accounts {
            routes.add(link)?;
        }
        let serve_options = crate::http_serve::ServeOptions {
            h2: options.h2,
            header_timeout: options.header_timeout,
            tls: options.tls.clone(),
            max_connections: options.max_connections,
        };
        let handler_routes = routes.clone();
        let task = crate::http_serve::serve(listener, &serve_options, move |req, peer| {
            handle(handler_routes.clone(), peer, req)
        });
        Ok(HttpServer {
            local_addr,
            task,
            routes,
        })
    }

    /// Serves `link`'s account from now on (its `incoming_path`, and its callback path in
    /// async mode), replacing the routes of an account with the same id. A path another account
    /// serves is refused with [`HttpServerError::DuplicatePath`], as by
    /// [`HttpServer::serve`], and nothing changes. Other accounts' requests are untouched.
    pub fn add_account(&self, link: HttpLink) -> Result<(), HttpServerError> {
        self.routes.add(link)
    }

    /// Stops serving account `id`: its paths answer 404 like any unknown path from now on;
    /// requests already past the path lookup finish. False when `id` was not served.
    pub fn remove_account(&self, id: &str) -> bool {
        self.routes.remove(id)
    }

    /// The accounts served now, sorted.
    pub fn accounts(&self) -> Vec<AccountId> {
        let mut ids: Vec<AccountId> = self
            .routes
            .snapshot()
            .values()
            .map(|r| r.link().account().clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Requests received so far, by HTTP version.
    pub fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            http1: self.routes.counts.http1.load(Ordering::Relaxed),
            http2: self.routes.counts.http2.load(Ordering::Relaxed),
        }
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Routes {
    fn snapshot(&self) -> Arc<PathTable> {
        self.by_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes a copy of the table with `link`'s routes in place of its account's old ones;
    /// on a path clash the table stays as it was.
    fn add(&self, link: HttpLink) -> Result<(), HttpServerError> {
        let mut current = self.by_path.write().unwrap_or_else(|p| p.into_inner());
        let mut next: PathTable = current
            .iter()
            .filter(|(_, route)| route.link().account() != link.account())
            .map(|(path, route)| (path.clone(), route.clone()))
            .collect();
        let mut routes = vec![(
            link.incoming_path().to_owned(),
            Route::Prepares(link.clone()),
        )];
        if let Some(path) = link.callback_path() {
            routes.push((path.to_owned(), Route::Callbacks(link.clone())));
        }
        for (path, route) in routes {
            if let Some(first) = next.get(&path) {
                return Err(HttpServerError::DuplicatePath {
                    path,
                    first: first.link().account().to_string(),
                    second: link.account().to_string(),
                });
            }
            next.insert(path, route);
        }
        *current = Arc::new(next);
        Ok(())
    }

    fn remove(&self, id: &str) -> bool {
        let mut current = self.by_path.write().unwrap_or_else(|p| p.into_inner());
        if !current.values().any(|r| &**r.link().account() == id) {
            return false;
        }
        let next: PathTable = current
            .iter()
            .filter(|(_, route)| &**route.link().account() != id)
            .map(|(path, route)| (path.clone(), route.clone()))
            .collect();
        *current = Arc::new(next);
        true
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // The connections live in the accept loop's JoinSet, which aborts them as it drops.
        self.task.abort();
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether `header` (the request's Authorization) is `Bearer <expected>`. The scheme is
/// case-insensitive (RFC 7235); the token is compared in constant time.
fn authorized(header: Option<&HeaderValue>, expected: &str) -> bool {
    let Some(value) = header.filter(|_| !expected.is_empty()) else {
        return false;
    };
    let Some((scheme, token)) = value.as_bytes().split_first_chunk::<7>() else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ")
        && bool::from(token.trim_ascii().ct_eq(expected.as_bytes()))
}

/// Whether the request is authenticated for `link`'s account (the rules in the module doc):
/// `None` if it is, else the refusal to send.
fn authenticate(
    client_certs: ClientCerts,
    link: &HttpLink,
    peer_names: &[String],
    header: Option<&HeaderValue>,
) -> Option<Response<Full<Bytes>>> {
    let named = tls::cert_names_account(peer_names, link.account());
    let token = link.incoming_token();
    let bearer_ok = || token.is_some_and(|t| authorized(header, t.expose()));
    let ok = match client_certs {
        ClientCerts::Ignored => bearer_ok(),
        ClientCerts::Optional => named || bearer_ok(),
        ClientCerts::Required => {
            if !named {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    "the client certificate does not name this account",
                ));
            }
            token.is_none() || bearer_ok()
        }
    };
    if ok {
        return None;
    }
    let mut response = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    response
        .headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    Some(response)
}

async fn handle(
    routes: Arc<Routes>,
    peer_names: Arc<[String]>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let counter = if req.version() == Version::HTTP_2 {
        &routes.counts.http2
    } else {
        &routes.counts.http1
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let Some(route) = routes.snapshot().get(req.uri().path()).cloned() else {
        return Ok(text(StatusCode::NOT_FOUND, "no ILP endpoint at this path"));
    };
    let link = route.link();
    if req.method() != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(response);
    }
    if let Some(refusal) = authenticate(
        routes.client_certs,
        link,
        &peer_names,
        req.headers().get(AUTHORIZATION),
    ) {
        return Ok(refusal);
    }
    let (head, body) = req.into_parts();
    let body = match read_body(&head.headers, body, routes.body_timeout).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    Ok(match &route {
        Route::Prepares(link) => prepare(link, &head.headers, body).await,
        Route::Callbacks(link) => callback(link, &head.headers, body),
    })
}

/// The request body, or the refusal to send (413, 408, 400).
async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    timeout: Duration,
) -> Result<Bytes, Response<Full<Bytes>>> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let body = Limited::new(body, MAX_BODY_BYTES).collect();
    match tokio::time::timeout(timeout, body).await {
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(text(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the request body: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The async-mode headers of a Prepare: `None` without a Callback-Url (a sync request), else
/// the callback and the Request-Id; why they are unusable (a 400) otherwise.
fn async_request(headers: &HeaderMap) -> Result<Option<(Uri, HeaderValue)>, &'static str> {
    let Some(callback) = headers.get(CALLBACK_URL) else {
        return Ok(None);
    };
    let Some(callback) = callback
        .to_str()
        .ok()
        .and_then(|c| c.parse::<Uri>().ok())
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
    else {
        return Err("Callback-Url is not an absolute http:// or https:// URL");
    };
    let Some(request_id) = headers.get(REQUEST_ID).filter(|id| valid_request_id(id)) else {
        return Err(
            "a request with a Callback-Url needs a Request-Id (1 to 128 visible ASCII characters)",
        );
    };
    Ok(Some((callback, request_id.clone())))
}

fn valid_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_REQUEST_ID_BYTES).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
}

/// A Prepare for `link`'s account: answered in the response (sync), or accepted with 202 and
/// answered by a callback (async, when the request names a Callback-Url).
async fn prepare(link: &HttpLink, headers: &HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
    let callback = match async_request(headers) {
        Ok(callback) => callback,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let prepare = match Prepare::parse(body) {
        Ok(p) => p,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("the body is not an ILP Prepare: {e}"),
            )
        }
    };
    let Some(account) = link.local() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the account is not running yet",
        );
    };
    if let Some((uri, _)) = &callback {
        if !link.callback_allowed(uri) {
            return text(
                StatusCode::BAD_REQUEST,
                "Callback-Url must name the host of this peer's configured outgoing_url",
            );
        }
    }
    let Some((callback, request_id)) = callback else {
        let answer = match crate::link::deliver(&account, prepare).await {
            Ok(answer) => answer,
            Err(_) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the account is not running",
                )
            }
        };
        let mut response = Response::new(Full::new(packet_bytes(answer)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        return response;
    };
    let expires = link.expiry(&prepare);
    let link = link.clone();
    // The answer outlives this request; the task ends by the Prepare's expiry at the latest
    // (the PeerAccount answers by then, and the callback's retries stop then).
    tokio::spawn(async move {
        let answer = match ask(&account, IncomingPrepare { prepare }).await {
            Ok(answer) => answer,
            Err(_) => {
                Err(link.reject(ErrorCode::T00_INTERNAL_ERROR, "the account is not running."))
            }
        };
        link.post_callback(callback, request_id, packet_bytes(answer), expires)
            .await
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// A callback for `link`'s account: the Fulfill or Reject of one of our outgoing Prepares.
fn callback(link: &HttpLink, headers: &HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
    let Some(request_id) = headers
        .get(REQUEST_ID)
        .filter(|id| valid_request_id(id))
        .and_then(|id| id.to_str().ok())
    else {
        return text(StatusCode::BAD_REQUEST, "a callback needs a Request-Id");
    };
    let packet = match Packet::parse(body) {
        Ok(Packet::Fulfill(f)) => Ok(f),
        Ok(Packet::Reject(r)) => Err(r),
        Ok(Packet::Prepare(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "a callback carries a Fulfill or Reject, not a Prepare",
            )
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("the body is not an ILP packet: {e}"),
            )
        }
    };
    match link.deliver(request_id, packet) {
        Delivery::Resolved => text(StatusCode::OK, "delivered"),
        Delivery::Unknown => text(
            StatusCode::BAD_REQUEST,
            "no packet awaits this Request-Id (unknown, already answered or expired)",
        ),
    }
}

fn packet_bytes(answer: PacketResult) -> Bytes {
    match answer {
        Ok(fulfill) => Bytes::from(fulfill),
        Err(reject) => Bytes::from(reject),
    }
}

fn too_large() -> Response<Full<Bytes>> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn link(token: Option<&str>) -> HttpLink {
        let token = token
            .map(|t| format!(", incoming_auth_token = \"{t}\""))
            .unwrap_or_default();
        let text = format!(
            "[node]\nilp_address = \"test.a\"\n[listeners.http]\nbind = \"127.0.0.1:0\"\n\
             [accounts.alice]\nrelation = \"peer\"\n\
             link = {{ type = \"http\", outgoing_url = \"http://127.0.0.1:1/\"{token} }}\n"
        );
        let config = ilp::config::Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
        HttpLink::from_config(
            "alice",
            &config.accounts["alice"],
            crate::clock::Clock::starting_at(0),
            &super::super::HttpLinkOptions::default(),
        )
        .unwrap()
    }

    /// The status of the refusal, or 200 when authenticated.
    fn auth(mode: ClientCerts, link: &HttpLink, names: &[&str], bearer: Option<&str>) -> u16 {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let header = bearer.map(|t| header(&format!("Bearer {t}")));
        authenticate(mode, link, &names, header.as_ref()).map_or(200, |r| r.status().as_u16())
    }

    #[test]
    fn client_certificate_rules_per_listener_mode() {
        let with_token = link(Some("tok"));
        let without = link(None);
        // No client CA: the bearer token only; a certificate name counts for nothing.
        assert_eq!(
            auth(ClientCerts::Ignored, &with_token, &[], Some("tok")),
            200
        );
        assert_eq!(
            auth(ClientCerts::Ignored, &with_token, &["alice"], None),
            401
        );
        assert_eq!(auth(ClientCerts::Ignored, &without, &["alice"], None), 401);
        // Optional: a certificate naming the account, or the token.
        assert_eq!(
            auth(ClientCerts::Optional, &with_token, &["alice"], None),
            200
        );
        assert_eq!(auth(ClientCerts::Optional, &without, &["ALICE"], None), 200);
        assert_eq!(
            auth(ClientCerts::Optional, &with_token, &[], Some("tok")),
            200
        );
        assert_eq!(
            auth(ClientCerts::Optional, &with_token, &["bob"], None),
            401
        );
        assert_eq!(
            auth(ClientCerts::Optional, &with_token, &["bob"], Some("x")),
            401
        );
        // Required: the certificate must name the account, and a configured token must match.
        assert_eq!(auth(ClientCerts::Required, &without, &["alice"], None), 200);
        assert_eq!(
            auth(ClientCerts::Required, &with_token, &["alice"], Some("tok")),
            200
        );
        assert_eq!(
            auth(ClientCerts::Required, &with_token, &["alice"], None),
            401
        );
        assert_eq!(
            auth(ClientCerts::Required, &with_token, &["bob"], Some("tok")),
            403
        );
        assert_eq!(auth(ClientCerts::Required, &without, &[], None), 403);
    }

    #[test]
    fn bearer_token_must_match_exactly_with_any_scheme_case() {
        for ok in ["Bearer tok", "bearer tok", "BEARER tok", "Bearer  tok "] {
            assert!(authorized(Some(&header(ok)), "tok"), "{ok}");
        }
        for bad in [
            "Bearer to",
            "Bearer tok2",
            "Bearer Tok",
            "Basic tok",
            "tok",
            "Bearer",
            "",
        ] {
            assert!(!authorized(Some(&header(bad)), "tok"), "{bad}");
        }
        assert!(!authorized(None, "tok"));
        assert!(
            !authorized(Some(&header("Bearer ")), ""),
            "an empty token is no token"
        );
    }
}
