//! The settlement API (`[listeners.settlement]`): the connector side of RFC 38 that our
//! settlement engines call (see [`ilp::rfc38`]).
//!
//! | endpoint | what it does |
//! |---|---|
//! | `POST /accounts/<id>/settlements` `{"amount", "scale"}` with `Idempotency-Key` | credits a settlement the peer paid: 201 `RECEIVED`; the same key and quantity again: the same answer; the same key with another quantity: 409; no such engine account: 404 |
//! | `POST /accounts/<id>/messages` (octet-stream) | sends the bytes to the peer's engine as a `peer.settle` Prepare: 201 with the reply; 502 when the peer rejects it |
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge). With `listeners.settlement.token`, every request
//! needs `Authorization: Bearer <token>` (401 otherwise). Errors are RFC 7807 problem JSON,
//! as interledger-rs answers them. The SettlementEngine actor does the work.

use crate::http_serve::{self, ServeOptions};
use crate::settlement_engine::{ApiAnswer, CreditSettlement, SendEngineMessage, SettlementEngine};
use actix::Addr;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use ilp::config::SettlementListenerConfig;
use ilp::rfc38::Quantity;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Largest request body taken: a message must fit an ILP packet's data.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A running settlement API. Dropping it stops accepting and closes its connections.
pub struct SettlementApi {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

struct State {
    engine: Addr<SettlementEngine>,
    token: Option<[u8; 32]>,
}

impl SettlementApi {
    /// Serves the settlement API of `engine` on `listener` as `config` says. Needs a tokio
    /// runtime.
    pub fn serve(
        listener: TcpListener,
        config: &SettlementListenerConfig,
        engine: Addr<SettlementEngine>,
    ) -> std::io::Result<SettlementApi> {
        let local_addr = listener.local_addr()?;
        let state = Arc::new(State {
            engine,
            token: config
                .token
                .as_ref()
                .map(|t| http_serve::token_digest(t.expose())),
        });
        let options = ServeOptions {
            h2: true,
            header_timeout: Duration::from_secs(10),
            tls: None,
            max_connections: 256,
        };
        let task = http_serve::serve(listener, &options, move |request, _peer| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(serve(&state, request).await) }
        });
        Ok(SettlementApi { local_addr, task })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for SettlementApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for SettlementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettlementApi")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

enum Endpoint {
    Settlements(String),
    Messages(String),
}

fn parse(path: &str) -> Option<Endpoint> {
    match account_path(path)? {
        (id, Some("settlements")) => Some(Endpoint::Settlements(id)),
        (id, Some("messages")) => Some(Endpoint::Messages(id)),
        _ => None,
    }
}

/// Reads an RFC 38 path `/accounts/<id>` or `/accounts/<id>/<what>`: the account id,
/// percent-decoded and not empty, and `what`.
pub fn account_path(path: &str) -> Option<(String, Option<&str>)> {
    let rest = path.strip_prefix("/accounts/")?;
    let (id, what) = match rest.split_once('/') {
        Some((id, what)) => (id, Some(what)),
        None => (rest, None),
    };
    let id = percent_decode(id)?;
    (!id.is_empty()).then_some((id, what))
}

fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Refuses what a web page could make a browser send to a loopback API: a request with an
/// `Origin` header (browsers add one to every cross-site POST, and to same-site ones, so DNS
/// rebinding is refused too; engines and connectors send none), and a body whose
/// `Content-Type` is not `expected` (a page may send `text/plain` or a form without asking
/// first, not JSON or octet-stream; `""` for a request without a body).
pub fn refuse_browser(headers: &hyper::HeaderMap, expected: &str) -> Option<ApiAnswer> {
    if headers.contains_key(hyper::header::ORIGIN) {
        return Some(ApiAnswer::problem(
            403,
            "Forbidden",
            "requests from web pages are refused",
        ));
    }
    let given = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if !expected.is_empty() && !essence.eq_ignore_ascii_case(expected) {
        return Some(ApiAnswer::problem(
            415,
            "Unsupported Media Type",
            &format!("the body must be sent as Content-Type: {expected}"),
        ));
    }
    None
}

/// A request's body, at most 64 KiB (413 beyond: an engine message must fit an ILP packet).
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiAnswer> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(ApiAnswer::problem(
            413,
            "Payload Too Large",
            &format!("the body must be at most {MAX_BODY_BYTES} bytes"),
        )),
    }
}

/// The HTTP response of an [`ApiAnswer`].
pub fn answer(a: ApiAnswer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(a.body));
    *response.status_mut() =
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    response
}

fn problem(status: u16, title: &str, detail: &str) -> Response<Full<Bytes>> {
    answer(ApiAnswer::problem(status, title, detail))
}

async fn serve(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(endpoint) = parse(request.uri().path()) else {
        return problem(404, "Not Found", "no such endpoint");
    };
    if request.method() != Method::POST {
        let mut r = problem(405, "Method Not Allowed", "only POST is served");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if let Some(expected) = &state.token {
        if !http_serve::bearer_matches(request.headers(), expected) {
            let mut r = problem(401, "Unauthorized", "missing or wrong bearer token");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let expected = match endpoint {
        Endpoint::Settlements(_) => "application/json",
        Endpoint::Messages(_) => "application/octet-stream",
    };
    if let Some(refused) = refuse_browser(request.headers(), expected) {
        return answer(refused);
    }
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match read_body(request.into_body()).await {
        Ok(b) => b,
        Err(a) => return answer(a),
    };
    let sent = match endpoint {
        Endpoint::Settlements(account) => {
            let quantity: Quantity = match serde_json::from_slice(&body) {
                Ok(q) => q,
                Err(e) => {
                    return problem(
                        400,
                        "Bad quantity",
                        &format!(
                        "the body must be {{\"amount\": \"<digits>\", \"scale\": <0-255>}}: {e}"
                    ),
                    )
                }
            };
            state
                .engine
                .send(CreditSettlement {
                    account,
                    idempotency_key,
                    quantity,
                })
                .await
        }
        Endpoint::Messages(account) => {
            state
                .engine
                .send(SendEngineMessage {
                    account,
                    message: body,
                })
                .await
        }
    };
    match sent {
        Ok(a) => answer(a),
        Err(_) => problem(
            503,
            "Service Unavailable",
            "the settlement engine actor is restarting; try again",
        ),
    }
}
