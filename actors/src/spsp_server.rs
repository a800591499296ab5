//! The SPSP server (`[listeners.spsp]`, RFC 9): hands out payment credentials for the node's
//! local accounts. `GET /<account id>` (and `GET /.well-known/pay`, the configured default
//! account, what a payment pointer `$host` names) answers a destination address under the
//! account's and a shared secret, both derived from the node's receiver secret and a fresh
//! token ([`ilp::stream::credentials`]): issuing costs no memory and touches no actor.
//!
//! A request is checked in this order: `OPTIONS` → 204 with the CORS headers; not `GET` or
//! `HEAD` → 405; a query string → 400 (RFC 9); a path that names no local account → 404
//! `InvalidReceiverError`; an `Accept` that allows neither SPSP type → 406; one receipt header
//! without the other, or one that is not base64 of the right length → 400; our address not
//! known yet (a parent has not told us) → 503. Then 200 with `application/spsp4+json` (STREAM;
//! `receipts_enabled` when the request set up receipts) or `application/spsp+json` (PSK2, for
//! an `Accept` that names only it, with `asset_info`). Every error body is SPSP's JSON
//! `{"id", "message"}`.

use crate::http_serve::{self, ServeOptions};
use crate::node::Node;
use crate::peer_account::NodeAddress;
use crate::receiver::Receivers;
use crate::tls;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use ilp::config::{Config, SpspListenerConfig};
use ilp::spsp::{
    self, AssetInfo, Negotiated, ReceiptSetup, SpspErrorBody, SpspResponse, RECEIPT_NONCE_HEADER,
    RECEIPT_SECRET_HEADER,
};
use ilp::stream::credentials::IssueOptions;
use rand::RngCore;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The path of the default account (RFC 26: a payment pointer without a path).
pub const WELL_KNOWN_PAY: &str = "/.well-known/pay";

/// What the server knows of one local account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpspAccount {
    /// The segment its address adds to ours.
    pub segment: String,
    pub asset_code: String,
    pub asset_scale: u8,
}

/// The local accounts served, by id, and the default one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpspAccounts {
    pub accounts: HashMap<String, SpspAccount>,
    pub default_account: Option<String>,
}

impl SpspAccounts {
    /// The local accounts of `config`, with `[listeners.spsp] default_account`.
    pub fn from_config(config: &Config) -> Self {
        let accounts = config
            .accounts
            .iter()
            .filter(|(_, a)| a.is_local())
            .filter_map(|(id, a)| {
                let segment = a.child_segment(id)?.to_owned();
                Some((
                    id.clone(),
                    SpspAccount {
                        segment,
                        asset_code: a.asset_code.clone(),
                        asset_scale: a.asset_scale,
                    },
                ))
            })
            .collect();
        SpspAccounts {
            accounts,
            default_account: config
                .listeners
                .spsp
                .as_ref()
                .and_then(|l| l.default_account.clone()),
        }
    }
}

struct State {
    receivers: Receivers,
    node: NodeAddress,
    accounts: RwLock<Arc<SpspAccounts>>,
    /// `Cache-Control` of a 200 without receipts.
    cache_control: HeaderValue,
}

/// A running SPSP server; dropping it stops accepting and closes its connections.
pub struct SpspServer {
    local_addr: SocketAddr,
    scheme: &'static str,
    /// `listeners.spsp.public_url`: where payers reach this server.
    public_url: Option<url::Url>,
    task: JoinHandle<()>,
    state: Arc<State>,
}

impl std::fmt::Debug for SpspServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpspServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SpspServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SpspServer {
    /// Serves `accounts` on `listener`, issuing credentials with `receivers` under the node's
    /// address `node`. `cache_max_age_s` goes in `Cache-Control` (0: `no-cache`).
    pub fn serve(
        listener: TcpListener,
        options: &ServeOptions,
        receivers: Receivers,
        node: NodeAddress,
        accounts: SpspAccounts,
        cache_max_age_s: u64,
    ) -> std::io::Result<SpspServer> {
        let local_addr = listener.local_addr()?;
        let cache_control = if cache_max_age_s == 0 {
            HeaderValue::from_static("no-cache")
        } else {
            HeaderValue::from_str(&format!("max-age={cache_max_age_s}"))
                .unwrap_or(HeaderValue::from_static("no-cache"))
        };
        let state = Arc::new(State {
            receivers,
            node,
            accounts: RwLock::new(Arc::new(accounts)),
            cache_control,
        });
        let handler_state = state.clone();
        let task = http_serve::serve(listener, options, move |req, _peer| {
            let state = handler_state.clone();
            async move { Ok::<_, Infallible>(handle(&state, &req)) }
        });
        Ok(SpspServer {
            local_addr,
            scheme: if options.tls.is_some() {
                "https"
            } else {
                "http"
            },
            public_url: None,
            task,
            state,
        })
    }

    /// Binds `[listeners.spsp]` as `listener` says and serves the local accounts of `config`
    /// for `node`. Errors name the key at fault.
    pub async fn start(
        listener: &SpspListenerConfig,
        node: &Node,
        config: &Config,
    ) -> Result<SpspServer, String> {
        let alpn = if listener.h2 {
            tls::ALPN_H2_HTTP1
        } else {
            tls::ALPN_HTTP1
        };
        let server_tls = tls::server_tls(&listener.tls, "listeners.spsp.tls", alpn)
            .map_err(|e| e.to_string())?;
        let bound = TcpListener::bind(listener.bind)
            .await
            .map_err(|e| format!("listeners.spsp.bind {}: {e}", listener.bind))?;
        let options = ServeOptions {
            h2: listener.h2,
            header_timeout: Duration::from_secs(10),
            tls: server_tls,
            max_connections: 1024,
        };
        SpspServer::serve(
            bound,
            &options,
            node.receivers.clone(),
            node.address.clone(),
            SpspAccounts::from_config(config),
            listener.cache_max_age_s,
        )
        .map(|mut server| {
            server.public_url = listener.public_url.clone();
            server
        })
        .map_err(|e| format!("listeners.spsp.bind {}: {e}", listener.bind))
    }

    /// Where payers reach this server: its `public_url`, else the address it bound.
    pub fn base_url(&self) -> Option<url::Url> {
        self.public_url
            .clone()
            .or_else(|| url::Url::parse(&format!("{}://{}/", self.scheme, self.local_addr)).ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Serves `accounts` from now on (a reload).
    pub fn set_accounts(&self, accounts: SpspAccounts) {
        let mut current = self
            .state
            .accounts
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(accounts);
    }
}

fn cors(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("access-control-allow-origin"),
        HeaderValue::from_static("*"),
    );
    headers.insert(
        HeaderName::from_static("access-control-allow-methods"),
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        HeaderName::from_static("access-control-allow-headers"),
        HeaderValue::from_static("accept, receipt-nonce, receipt-secret, web-monetization-id"),
    );
}

fn json(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    cors(&mut response);
    response
}

fn error(status: StatusCode, id: &str, message: &str) -> Response<Full<Bytes>> {
    let body = SpspErrorBody {
        id: id.to_owned(),
        message: message.to_owned(),
    };
    json(
        status,
        "application/json",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn handle(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() == Method::OPTIONS {
        let mut response = json(StatusCode::NO_CONTENT, "application/json", Vec::new());
        response.headers_mut().remove(CONTENT_TYPE);
        return response;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedError",
            "SPSP is queried with GET",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        return response;
    }
    if req.uri().query().is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestError",
            "an SPSP query has no query string",
        );
    }
    let accounts = state
        .accounts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let path = req.uri().path();
    let id = if path == WELL_KNOWN_PAY {
        accounts.default_account.as_deref()
    } else {
        path.strip_prefix('/').filter(|id| !id.contains('/'))
    };
    let Some((id, account)) = id.and_then(|id| Some((id, accounts.accounts.get(id)?))) else {
        let body = SpspErrorBody::invalid_receiver();
        return error(StatusCode::NOT_FOUND, &body.id, &body.message);
    };
    let psk2 = match spsp::negotiate(header(req, ACCEPT.as_str())) {
        Negotiated::Stream => false,
        Negotiated::Psk2 => true,
        Negotiated::NotAcceptable => {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                "NotAcceptableError",
                "this server answers application/spsp4+json or application/spsp+json",
            )
        }
    };
    let receipts = if psk2 {
        None
    } else {
        match ReceiptSetup::from_headers(
            header(req, RECEIPT_NONCE_HEADER),
            header(req, RECEIPT_SECRET_HEADER),
        ) {
            Ok(receipts) => receipts,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidReceiptHeadersError",
                    &e.to_string(),
                )
            }
        }
    };
    let Some(receiver) = state
        .node
        .get()
        .and_then(|node| node.with_suffix(&account.segment).ok())
    else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UnavailableError",
            "the node does not know its address yet",
        );
    };
    let mut random = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let options = IssueOptions {
        psk2,
        receipts,
        tag: None,
    };
    let receipts_enabled = options.receipts.is_some();
    let credentials = match state
        .receivers
        .keys()
        .issue(id, &receiver, &options, issued_at, &random)
    {
        Ok(credentials) => credentials,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            )
        }
    };
    let body = SpspResponse {
        destination_account: credentials.destination,
        shared_secret: credentials.shared_secret,
        receipts_enabled: receipts_enabled.then_some(true),
        balance: None,
        asset_info: psk2.then(|| AssetInfo {
            code: account.asset_code.clone(),
            scale: account.asset_scale,
        }),
        receiver_info: None,
    };
    let content_type = if psk2 {
        spsp::CONTENT_TYPE_PSK2
    } else {
        spsp::CONTENT_TYPE
    };
    let mut response = json(StatusCode::OK, content_type, body.encode());
    // Credentials tied to one requester's receipt secret are for that requester only.
    let cache = if receipts_enabled {
        HeaderValue::from_static("no-store")
    } else {
        state.cache_control.clone()
    };
    response.headers_mut().insert(CACHE_CONTROL, cache);
    response
}
