//! The admin API (`[listeners.admin]`): JSON over HTTP/1.1 for operators and their tools.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | 200 while the process serves (no token needed) |
//! | `GET /ready` | 200 once the node has its address, else 503 (no token needed) |
//! | `GET /accounts`, `GET /accounts/<id>` | id, relation, asset, link state, balance, pending amounts; a local account's `receiver`: SPSP URL, payment pointer, received, maximum |
//! | `POST /accounts/<id>/balance` `{"adjust": i64}` | durable balance correction; the new balance |
//! | `GET /accounts/<id>/payments?after=<seq>&limit=<n>` | a local account's payment events after `seq` (each packet received, `direction: incoming`; each of its own payments that ended, `outgoing`), and the `next` seq |
//! | `POST /accounts/<id>/payments` `{"to", "amount" \| "deliver", "slippage"?, "max_packet"?, "destination_asset"?}` or `{"quote_id"}`, optional `Idempotency-Key` header | starts a payment from a local account ([`crate::payer`]): 201 with its state; the same key and body again return the same payment, another body 409 |
//! | `GET /accounts/<id>/payments/<payment>`, `DELETE` the same | a payment's state (quote, progress in both assets, receipt, error with ILP code and hop); DELETE cancels it |
//! | `POST /accounts/<id>/quotes` (the same body as a payment) | probes the path and answers the quote (201), or why it cannot be paid (422); pay it with `{"quote_id"}` before it expires |
//! | `GET /accounts/<id>/payments/events`, `GET /payments/events` | live payment events as Server-Sent Events ([`events`]): one account's (resuming after `Last-Event-ID` or `?after=`), or every local account's from now |
//! | `GET /routes` | the Router's table: prefix, account, kind (default, static, child, learned) |
//! | `PUT /routes/static/<prefix>` `{"account": id}`, `DELETE /routes/static/<prefix>` | static routes at run time |
//! | `GET /stats` | packets by direction and outcome, uptime, accounts |
//! | `GET /metrics` | Prometheus text, OpenMetrics when asked (balances read from the BalanceKeeper per scrape) |
//! | `POST /snapshot` | a RocksDB checkpoint under `<store.path>/snapshots/<unix-ms>`; its path |
//! | `POST /ping` `{"destination": address}` | echo round trip: `{"rtt_ms": ...}`, or 502 with the Reject |
//! | `GET /accounts/<id>/tokens` | the paid HTTP tokens of local account `id` ([`crate::paid_proxy`]): each with its balance, and what they spent |
//! | `DELETE /accounts/<id>/tokens/<token>` | expires a token: what it held counts as spent |
//! | `POST /accounts/<id>/http` `{"url", "method"?, "headers"?, "body"? \| "body_base64"?, "max_price"?, "timeout_ms"?}` | fetches `url` for local account `id`, paying what a paid HTTP server asks within `max_price` ([`crate::paid_client`]): the response (status, headers, body) with the payments made, or 402 (not paid: no maximum, or the price above it), 502 (server unreachable, payment failed, or a server that did not credit it), 504 (out of time; a payment under way goes on) |
//! | `GET /accounts/<id>/settlement` | how the account settles (`engine`, `bilateral`, `none`); for an RFC 38 engine account its URL, `settled_out`, `settled_in`, `pending` (decimal strings, account units) and the last error with its time |
//! | `POST /accounts/<id>/settlement` `{"amount"?}` | settles now: `amount`, or what brings the balance up to `settle_to`; 202 `started` with the amount, or `queued` behind a settlement in progress; 409 when nothing is due |
//! | `POST /circular` `{"via", "amount", "return_via"?, "min_return"?, "timeout_ms"?}` | a circular payment ([`ilp::circular`]): out through `via`, back to us; both amounts with their assets, expiries, the path's rate, or 502 with the Reject that ended it |
//!
//! With `listeners.admin.token` every other endpoint needs `Authorization: Bearer <token>`,
//! compared in constant time (401 otherwise). Every error is JSON `{"error": "<message>"}`.
//! The operator commands of the binary ([`cli`]) are clients of this API.

pub mod cli;
mod events;

use crate::link::Link;
use crate::messages::{
    AccountId, AdjustBalance, AdjustBalanceError, CircularError, CircularReport, ExpireToken,
    GetBalance, GetRoutes, GetTokens, SendCircular, SendPing, SetStaticRoute, StaticRouteError,
};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::peer_account::NodeAddress;
use crate::settlement_engine::{GetSettlementStats, TriggerError, TriggerSettlement};
use crate::store::{read_off_thread, Store, StoreError};
use actix::Recipient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ilp::config::{Config, StoreBackend};
use ilp::packet::Address;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest request body of `POST /accounts/<id>/http` (the request it sends is inside).
pub const MAX_FETCH_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Longest a `POST /accounts/<id>/http` may take when it does not say, and at most.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 30_000;
pub const MAX_FETCH_TIMEOUT_MS: u64 = 60_000;
/// Content type of `GET /metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of `GET /metrics` for a client that accepts OpenMetrics (Prometheus does).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest a ping waits for its answer unless the request says otherwise.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request head or body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API shows of one account.
struct AccountInfo {
    relation: &'static str,
    asset_code: String,
    asset_scale: u8,
    link: Option<Arc<dyn Link>>,
    /// A local account: paid through the SPSP server.
    receiver: Option<ReceiverInfo>,
    /// How the balance is settled: "engine", "bilateral" or "none".
    settlement: &'static str,
    /// The RFC 38 engine's URL, for an account settled through one.
    settlement_engine: Option<String>,
}

struct ReceiverInfo {
    maximum: Option<u64>,
    /// Its path on the SPSP server.
    path: String,
    /// Whether `/.well-known/pay` answers for it too.
    default: bool,
}

type AccountTable = BTreeMap<AccountId, AccountInfo>;

fn account_table(node: &Node, config: &Config) -> AccountTable {
    config
        .accounts
        .iter()
        .map(|(id, a)| {
            let id = AccountId::from(id.as_str());
            let info = AccountInfo {
                relation: match a.relation {
                    ilp::config::Relation::Parent => "parent",
                    ilp::config::Relation::Peer => "peer",
                    ilp::config::Relation::Child => "child",
                },
                asset_code: a.asset_code.clone(),
                asset_scale: a.asset_scale,
                link: node.links.get(&id).cloned(),
                receiver: a.is_local().then(|| ReceiverInfo {
                    maximum: a.receiver_maximum(),
                    path: format!("/{id}"),
                    default: config
                        .listeners
                        .spsp
                        .as_ref()
                        .and_then(|l| l.default_account.as_deref())
                        == Some(&*id),
                }),
                settlement: if a.settles_with_engine() {
                    "engine"
                } else if a.settles_bilaterally() {
                    "bilateral"
                } else {
                    "none"
                },
                settlement_engine: a.settlement_engine_url.as_ref().map(|u| u.to_string()),
            };
            (id, info)
        })
        .collect()
}

/// Everything the API reads and the actors it asks.
pub struct AdminState {
    address: NodeAddress,
    /// Replaced whole on a reload; requests read a snapshot.
    accounts: std::sync::RwLock<Arc<AccountTable>>,
    get_balance: Recipient<GetBalance>,
    adjust_balance: Recipient<AdjustBalance>,
    get_routes: Recipient<GetRoutes>,
    set_route: Recipient<SetStaticRoute>,
    ping: Recipient<SendPing>,
    circular: Recipient<SendCircular>,
    tokens: Recipient<GetTokens>,
    expire_token: Recipient<ExpireToken>,
    settlement_stats: Recipient<GetSettlementStats>,
    trigger_settlement: Recipient<TriggerSettlement>,
    store: Arc<dyn Store>,
    /// `<store.path>/snapshots` for a RocksDB store; `None`: the store cannot snapshot.
    snapshots: Option<PathBuf>,
    metrics: Option<Arc<Metrics>>,
    /// SHA-256 of the bearer token, so the comparison takes the same time whatever its length.
    token: Option<[u8; 32]>,
    started: Instant,
    /// Where payers reach the SPSP server (`listeners.spsp.public_url`, else its bound
    /// address); `None` without one.
    spsp_base: Option<url::Url>,
    /// Durable payment events as the BalanceKeeper announces them.
    feed: Option<crate::payment_log::PaymentFeed>,
    /// The node's outgoing payments.
    payer: Option<crate::payer::Payer>,
    /// Fetches paid HTTP resources for local accounts.
    http: Option<crate::paid_client::PaidHttpClient>,
}

impl AdminState {
    /// The API of `node`, started from `config` (`listeners.admin.token`, `store`).
    pub fn new(node: &Node, config: &Config) -> Self {
        let accounts = std::sync::RwLock::new(Arc::new(account_table(node, config)));
        let snapshots = match config.store.backend {
            StoreBackend::Rocksdb => Some(config.store.path.join("snapshots")),
            StoreBackend::Memory => None,
        };
        AdminState {
            address: node.address.clone(),
            accounts,
            get_balance: node.balance.clone().recipient(),
            adjust_balance: node.balance.clone().recipient(),
            get_routes: node.router.clone().recipient(),
            set_route: node.router.clone().recipient(),
            ping: node.router.clone().recipient(),
            circular: node.router.clone().recipient(),
            tokens: node.balance.clone().recipient(),
            expire_token: node.balance.clone().recipient(),
            settlement_stats: node.settlement.clone().recipient(),
            trigger_settlement: node.settlement.clone().recipient(),
            store: node.store.clone(),
            snapshots,
            metrics: node.metrics.clone(),
            token: config
                .listeners
                .admin
                .token
                .as_ref()
                .map(|t| crate::http_serve::token_digest(t.expose())),
            spsp_base: None,
            feed: Some(node.payment_feed.clone()),
            payer: Some(node.payer.clone()),
            http: Some(node.http_client.clone()),
            started: Instant::now(),
        }
    }

    /// Payers reach the SPSP server at `base` (its public URL, or the address it bound).
    pub fn with_spsp_base(mut self, base: url::Url) -> Self {
        self.spsp_base = Some(base);
        self
    }

    /// The accounts as of now (a reload replaces the table).
    fn accounts(&self) -> Arc<AccountTable> {
        match self.accounts.read() {
            Ok(table) => table.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        match &self.token {
            Some(expected) => crate::http_serve::bearer_matches(request.headers(), expected),
            None => true,
        }
    }
}

/// A running admin API. Dropping it stops accepting and closes its connections.
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
    state: Arc<AdminState>,
}

impl AdminServer {
    /// Serves `state` on `listener`. Needs a tokio runtime.
    pub fn serve(listener: TcpListener, state: AdminState) -> std::io::Result<AdminServer> {
        let local_addr = listener.local_addr()?;
        let state = Arc::new(state);
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(AdminServer {
            local_addr,
            task,
            state,
        })
    }

    /// After a reload: the accounts of `config`, with their links as `node` has them now.
    pub fn reload(&self, node: &Node, config: &Config) {
        let table = Arc::new(account_table(node, config));
        match self.state.accounts.write() {
            Ok(mut current) => *current = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    /// The address the API listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<AdminState>) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT);
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let builder = builder.clone();
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| serve(state.clone(), req));
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A response body: whole (JSON, metrics) or streamed (the live payment events).
type AnswerBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;
type Answer = Response<AnswerBody>;

fn whole(bytes: impl Into<Bytes>) -> AnswerBody {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(status: StatusCode, body: &Value) -> Answer {
    let mut response = Response::new(whole(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> Answer {
    json_response(status, &json!({ "error": message }))
}

fn ok(body: &Value) -> Answer {
    json_response(StatusCode::OK, body)
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Health,
    Ready,
    Accounts,
    Account(String),
    AccountBalance(String),
    AccountPayments(String),
    AccountPayment(String, String),
    AccountQuotes(String),
    AccountPaymentEvents(String),
    PaymentEvents,
    Routes,
    StaticRoute(String),
    Stats,
    Metrics,
    Snapshot,
    Ping,
    Circular,
    AccountTokens(String),
    AccountToken(String, String),
    AccountHttp(String),
    AccountSettlement(String),
}

impl Endpoint {
    fn parse(path: &str) -> Option<Endpoint> {
        let path = path.strip_prefix('/')?;
        let segments: Vec<&str> = path.split('/').collect();
        Some(match segments.as_slice() {
            ["health"] => Endpoint::Health,
            ["ready"] => Endpoint::Ready,
            ["accounts"] => Endpoint::Accounts,
            ["accounts", id] if !id.is_empty() => Endpoint::Account((*id).to_owned()),
            ["accounts", id, "balance"] if !id.is_empty() => {
                Endpoint::AccountBalance((*id).to_owned())
            }
            ["accounts", id, "payments"] if !id.is_empty() => {
                Endpoint::AccountPayments((*id).to_owned())
            }
            ["accounts", id, "payments", "events"] if !id.is_empty() => {
                Endpoint::AccountPaymentEvents((*id).to_owned())
            }
            ["accounts", id, "payments", payment] if !id.is_empty() && !payment.is_empty() => {
                Endpoint::AccountPayment((*id).to_owned(), (*payment).to_owned())
            }
            ["accounts", id, "tokens"] if !id.is_empty() => {
                Endpoint::AccountTokens((*id).to_owned())
            }
            ["accounts", id, "tokens", token] if !id.is_empty() && !token.is_empty() => {
                Endpoint::AccountToken((*id).to_owned(), (*token).to_owned())
            }
            ["accounts", id, "http"] if !id.is_empty() => Endpoint::AccountHttp((*id).to_owned()),
            ["accounts", id, "settlement"] if !id.is_empty() => {
                Endpoint::AccountSettlement((*id).to_owned())
            }
            ["accounts", id, "quotes"] if !id.is_empty() => {
                Endpoint::AccountQuotes((*id).to_owned())
            }
            ["payments", "events"] => Endpoint::PaymentEvents,
            ["routes"] => Endpoint::Routes,
            ["routes", "static", prefix] => Endpoint::StaticRoute((*prefix).to_owned()),
            ["stats"] => Endpoint::Stats,
            ["metrics"] => Endpoint::Metrics,
            ["snapshot"] => Endpoint::Snapshot,
            ["ping"] => Endpoint::Ping,
            ["circular"] => Endpoint::Circular,
            _ => return None,
        })
    }

    fn methods(&self) -> &'static [Method] {
        match self {
            Endpoint::AccountBalance(_)
            | Endpoint::AccountQuotes(_)
            | Endpoint::Snapshot
            | Endpoint::Ping
            | Endpoint::AccountHttp(_)
            | Endpoint::Circular => &[Method::POST],
            Endpoint::AccountPayments(_) | Endpoint::AccountSettlement(_) => {
                &[Method::GET, Method::POST]
            }
            Endpoint::AccountPayment(..) => &[Method::GET, Method::DELETE],
            Endpoint::AccountToken(..) => &[Method::DELETE],
            Endpoint::StaticRoute(_) => &[Method::PUT, Method::DELETE],
            _ => &[Method::GET],
        }
    }

    fn needs_token(&self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Ready)
    }
}

async fn serve(state: Arc<AdminState>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let Some(endpoint) = Endpoint::parse(request.uri().path()) else {
        return Ok(error(StatusCode::NOT_FOUND, "no such endpoint"));
    };
    let methods = endpoint.methods();
    if !methods.contains(request.method()) {
        let mut answer = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            answer.headers_mut().insert(ALLOW, v);
        }
        return Ok(answer);
    }
    if endpoint.needs_token() && !state.authorized(&request) {
        let mut answer = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        answer
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(answer);
    }
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Prometheus asks for OpenMetrics first; the text is the same, only the label differs.
    let openmetrics = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let limit = match endpoint {
        Endpoint::AccountHttp(_) => MAX_FETCH_BODY_BYTES,
        _ => MAX_BODY_BYTES,
    };
    let body = match read_body(request, limit).await {
        Ok(body) => body,
        Err(answer) => return Ok(*answer),
    };
    Ok(match endpoint {
        Endpoint::Health => ok(&json!({ "status": "ok" })),
        Endpoint::Ready => match state.address.get() {
            Some(address) => ok(&json!({ "status": "ready", "address": address.as_str() })),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node has no ILP address yet",
            ),
        },
        Endpoint::Accounts => {
            let accounts = state.accounts();
            let mut list = Vec::with_capacity(accounts.len());
            for (id, info) in accounts.iter() {
                list.push(account_json(&state, id, info).await);
            }
            ok(&Value::Array(list))
        }
        Endpoint::Account(id) => match state.accounts().get_key_value(id.as_str()) {
            Some((id, info)) => ok(&account_json(&state, id, info).await),
            None => error(StatusCode::NOT_FOUND, &format!("no account {id}")),
        },
        Endpoint::AccountBalance(id) => adjust_balance(&state, &id, &body).await,
        Endpoint::AccountPayments(id) if method == Method::POST => {
            pay(&state, &id, &body, idempotency_key.as_deref(), false).await
        }
        Endpoint::AccountPayments(id) => payments(&state, &id, query.as_deref()).await,
        Endpoint::AccountQuotes(id) => pay(&state, &id, &body, None, true).await,
        Endpoint::AccountPayment(id, payment) => {
            outgoing_payment(&state, &id, &payment, method == Method::DELETE).await
        }
        Endpoint::AccountPaymentEvents(id) => {
            let accounts = state.accounts();
            match accounts.get(id.as_str()) {
                Some(info) if info.receiver.is_some() => {
                    match events::resume_after(&id, last_event_id.as_deref(), query.as_deref()) {
                        Ok(after) => events::stream(&state, Some(id), after),
                        Err(message) => error(StatusCode::BAD_REQUEST, &message),
                    }
                }
                Some(_) => error(
                    StatusCode::NOT_FOUND,
                    &format!("account {id} is not a local account: it receives no payments here"),
                ),
                None => error(StatusCode::NOT_FOUND, &format!("no account {id}")),
            }
        }
        Endpoint::PaymentEvents => events::stream(&state, None, 0),
        Endpoint::Routes => match state.get_routes.send(GetRoutes).await {
            Ok(routes) => ok(&Value::Array(
                routes
                    .into_iter()
                    .map(|r| {
                        json!({
                            "prefix": r.prefix,
                            "account": &*r.account,
                            "kind": r.kind.as_str(),
                        })
                    })
                    .collect(),
            )),
            Err(e) => unavailable("router", &e),
        },
        Endpoint::StaticRoute(prefix) => static_route(&state, method, prefix, &body).await,
        Endpoint::Stats => stats(&state),
        Endpoint::Metrics => metrics(&state, openmetrics).await,
        Endpoint::Snapshot => snapshot(&state).await,
        Endpoint::Ping => ping(&state, &body).await,
        Endpoint::Circular => circular(&state, &body).await,
        Endpoint::AccountTokens(id) => tokens(&state, &id).await,
        Endpoint::AccountToken(id, token) => expire_token(&state, &id, &token).await,
        Endpoint::AccountHttp(id) => fetch(&state, &id, &body).await,
        Endpoint::AccountSettlement(id) if method == Method::POST => {
            trigger_settlement(&state, &id, &body).await
        }
        Endpoint::AccountSettlement(id) => settlement(&state, &id).await,
    })
}

/// `GET /accounts/<id>/settlement`: how the account settles, and for an RFC 38 engine account
/// what was settled each way, what is pending, and the last error.
async fn settlement(state: &AdminState, id: &str) -> Answer {
    let accounts = state.accounts();
    let Some((id, info)) = accounts.get_key_value(id) else {
        return error(StatusCode::NOT_FOUND, &format!("no account {id}"));
    };
    let mut body = json!({ "id": &**id, "kind": info.settlement });
    if let Some(engine) = &info.settlement_engine {
        body["engine"] = json!(engine);
        let all = match state.settlement_stats.send(GetSettlementStats).await {
            Ok(all) => all,
            Err(e) => return unavailable("settlement engine", &e),
        };
        let stats = all.get(id).cloned().unwrap_or_default();
        body["settled_out"] = json!(stats.settled_out.to_string());
        body["settled_in"] = json!(stats.settled_in.to_string());
        body["pending"] = json!(stats.pending.to_string());
        body["last_error"] = json!(stats.last_error);
        body["last_error_at_ms"] = json!(stats.last_error_at_ms);
    }
    ok(&body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default, with = "crate::payer::opt_u64_string")]
    amount: Option<u64>,
}

/// `POST /accounts/<id>/settlement` `{"amount"?}`: settle now (without an amount: what brings
/// the balance up to `settle_to`).
async fn trigger_settlement(state: &AdminState, id: &str, body: &[u8]) -> Answer {
    let accounts = state.accounts();
    let Some((id, _)) = accounts.get_key_value(id) else {
        return error(StatusCode::NOT_FOUND, &format!("no account {id}"));
    };
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody { amount: None }
    } else {
        match parse_json(body) {
            Ok(b) => b,
            Err(m) => return error(StatusCode::BAD_REQUEST, &m),
        }
    };
    let message = TriggerSettlement {
        account: id.clone(),
        amount: body.amount,
    };
    match state.trigger_settlement.send(message).await {
        Ok(Ok(outcome)) => {
            let mut answer = ok(&json!({ "id": &**id, "settlement": outcome }));
            *answer.status_mut() = StatusCode::ACCEPTED;
            answer
        }
        Ok(Err(e @ TriggerError::Zero)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => unavailable("settlement engine", &e),
    }
}

/// The request of `POST /accounts/<id>/http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchBody {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: FetchHeaders,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default, with = "crate::payer::opt_u64_string")]
    max_price: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Request headers as `{"Name": "value"}` or `[["Name", "value"], ...]` (names may repeat).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum FetchHeaders {
    #[default]
    None,
    Map(BTreeMap<String, String>),
    List(Vec<(String, String)>),
}

/// `POST /accounts/<id>/http`.
async fn fetch(state: &AdminState, id: &str, body: &[u8]) -> Answer {
    use crate::paid_client::{FetchError, FetchRequest};
    use crate::payer::StartError;
    use base64::Engine as _;
    let accounts = state.accounts();
    let Some(info) = accounts.get(id) else {
        return error(StatusCode::NOT_FOUND, &format!("no account {id}"));
    };
    let (Some(client), true) = (&state.http, info.receiver.is_some()) else {
        return error(
            StatusCode::CONFLICT,
            &StartError::NotLocal(id.to_string()).to_string(),
        );
    };
    let request: FetchBody = match parse_json(body) {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let bad = |m: String| error(StatusCode::BAD_REQUEST, &m);
    let url = match url::Url::parse(&request.url) {
        Ok(url) => url,
        Err(e) => return bad(format!("url {:?}: {e}", request.url)),
    };
    let method_name = request.method.as_deref().unwrap_or("GET");
    let Ok(method) = Method::from_bytes(method_name.to_ascii_uppercase().as_bytes()) else {
        return bad(format!("method {method_name:?}"));
    };
    let payload = match (request.body, request.body_base64) {
        (Some(_), Some(_)) => return bad("give body or body_base64, not both".into()),
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => return bad(format!("body_base64: {e}")),
        },
        (None, None) => Bytes::new(),
    };
    let timeout_ms = request.timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_FETCH_TIMEOUT_MS {
        return bad(format!(
            "timeout_ms must be 1 to {MAX_FETCH_TIMEOUT_MS}, not {timeout_ms}"
        ));
    }
    let headers = match request.headers {
        FetchHeaders::None => Vec::new(),
        FetchHeaders::Map(map) => map.into_iter().collect(),
        FetchHeaders::List(list) => list,
    };
    let fetch = FetchRequest {
        method,
        url,
        headers,
        body: payload,
        max_price: request.max_price,
        timeout: Duration::from_millis(timeout_ms),
    };
    let payments_json = |payments: &[crate::payer::PaymentView]| {
        Value::Array(payments.iter().map(|p| p.to_json()).collect())
    };
    match client.fetch(id, fetch).await {
        Ok(fetched) => {
            let mut answer = json!({
                "status": fetched.status.as_u16(),
                "headers": fetched.headers,
                "token": fetched.token,
                "paid": fetched.paid().to_string(),
                "payments": payments_json(&fetched.payments),
            });
            match std::str::from_utf8(&fetched.body) {
                Ok(text) => answer["body"] = json!(text),
                Err(_) => {
                    answer["body_base64"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(&fetched.body))
                }
            }
            ok(&answer)
        }
        Err(e) => {
            let status = match &e {
                FetchError::BadRequest(_) => StatusCode::BAD_REQUEST,
                FetchError::Start(StartError::NoAccount(_)) => StatusCode::NOT_FOUND,
                FetchError::Start(StartError::NotLocal(_)) => StatusCode::CONFLICT,
                FetchError::Start(StartError::TooMany(_)) => StatusCode::TOO_MANY_REQUESTS,
                FetchError::Start(StartError::Store(_)) => StatusCode::INTERNAL_SERVER_ERROR,
                FetchError::Start(_) => StatusCode::UNPROCESSABLE_ENTITY,
                FetchError::Http { .. }
                | FetchError::TooLarge(_)
                | FetchError::BadPay { .. }
                | FetchError::AfterPaying { .. }
                | FetchError::PaymentFailed { .. } => StatusCode::BAD_GATEWAY,
                FetchError::PriceNotAllowed { .. } => StatusCode::PAYMENT_REQUIRED,
                FetchError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            };
            let paid: u64 = e.payments().iter().map(|p| p.progress.sent).sum();
            let message = match paid {
                0 => e.to_string(),
                paid => format!("{e} ({paid} paid on the way, kept by the server for the token)"),
            };
            let mut body = json!({
                "error": message,
                "paid": paid.to_string(),
                "payments": payments_json(e.payments()),
            });
            if let FetchError::PriceNotAllowed { asked, balance, .. } = &e {
                body["asked"] = json!(asked.to_string());
                body["balance"] = json!(balance.to_string());
            }
            json_response(status, &body)
        }
    }
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, Box<Answer>> {
    let limited = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(REQUEST_TIMEOUT, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ))),
        Ok(Err(_)) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "cannot read the request body",
        ))),
        Err(_) => Err(Box::new(error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        ))),
    }
}

/// The body as `T`, or the message of the 400 to answer.
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad JSON body: {e}"))
}

fn unavailable(actor: &str, e: &actix::MailboxError) -> Answer {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the {actor} is unavailable: {e}"),
    )
}

async fn account_json(state: &AdminState, id: &AccountId, info: &AccountInfo) -> Value {
    let snapshot = state
        .get_balance
        .send(GetBalance {
            account: id.clone(),
        })
        .await
        .ok()
        .flatten();
    if let (Some(metrics), Some(s)) = (&state.metrics, &snapshot) {
        metrics.set_balance(id, s);
    }
    let mut account = json!({
        "id": &**id,
        "relation": info.relation,
        "asset_code": info.asset_code,
        "asset_scale": info.asset_scale,
        "link_up": info.link.as_ref().is_some_and(|l| l.is_up()),
        "balance": snapshot.map(|s| s.balance),
        "pending_incoming": snapshot.map(|s| s.pending_incoming),
        "pending_outgoing": snapshot.map(|s| s.pending_outgoing),
    });
    if let (Some(receiver), Some(fields)) = (&info.receiver, account.as_object_mut()) {
        let balance = snapshot.map(|s| s.balance);
        fields.insert("receiver".into(), receiver_json(state, receiver, balance));
    }
    account
}

/// The most events one `GET /accounts/<id>/payments` returns.
pub const MAX_PAYMENTS_PAGE: usize = 1000;

/// `GET /accounts/<id>/payments?after=<seq>&limit=<n>`: a local account's payment events after
/// seq `after` (default 0), at most `limit` (default and most [`MAX_PAYMENTS_PAGE`]), with the
/// seq to ask after next.
async fn payments(state: &AdminState, id: &str, query: Option<&str>) -> Answer {
    let accounts = state.accounts();
    let Some((id, info)) = accounts.get_key_value(id) else {
        return error(StatusCode::NOT_FOUND, &format!("no account {id}"));
    };
    if info.receiver.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("account {id} is not a local account: it receives no payments here"),
        );
    }
    let mut after = 0u64;
    let mut limit = MAX_PAYMENTS_PAGE;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| error(StatusCode::BAD_REQUEST, &format!("{key}: {what}"));
        match key {
            "after" => match value.parse() {
                Ok(v) => after = v,
                Err(_) => return bad("not a sequence number"),
            },
            "limit" => match value.parse::<usize>() {
                Ok(v) if (1..=MAX_PAYMENTS_PAGE).contains(&v) => limit = v,
                _ => return bad(&format!("must be from 1 to {MAX_PAYMENTS_PAGE}")),
            },
            _ => return bad("unknown parameter (after, limit)"),
        }
    }
    let account = id.to_string();
    let read = read_off_thread(state.store.clone(), move |s| {
        crate::payment_log::read_events(s, &account, after, limit)
    })
    .await;
    match read {
        Ok(events) => {
            let next = events.last().map_or(after, |e| e.seq);
            ok(&json!({ "payments": events, "next": next }))
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the store could not be read: {e}"),
        ),
    }
}

/// The `receiver` part of a local account's JSON: where it is paid, what it received.
fn receiver_json(state: &AdminState, info: &ReceiverInfo, balance: Option<i64>) -> Value {
    let url = state.spsp_base.as_ref().and_then(|base| {
        let path = if info.default {
            crate::spsp_server::WELL_KNOWN_PAY
        } else {
            &info.path
        };
        base.join(path.trim_start_matches('/')).ok()
    });
    let pointer = url
        .as_ref()
        .and_then(ilp::payment_pointer::PaymentPointer::for_endpoint);
    json!({
        "spsp_url": url.as_ref().map(url::Url::as_str),
        "payment_pointer": pointer.map(|p| p.to_string()),
        "received": balance.map(|b| i128::from(b).saturating_neg().to_string()),
        "maximum": info.maximum,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    adjust: i64,
}

/// `POST /accounts/<id>/payments` and `POST /accounts/<id>/quotes`.
async fn pay(
    state: &AdminState,
    id: &str,
    body: &[u8],
    key: Option<&str>,
    quote_only: bool,
) -> Answer {
    use crate::payer::StartError;
    let accounts = state.accounts();
    let Some(info) = accounts.get(id) else {
        return error(StatusCode::NOT_FOUND, &format!("no account {id}"));
    };
    let (Some(payer), true) = (&state.payer, info.receiver.is_some()) else {
        return error(
            StatusCode::CONFLICT,
            &StartError::NotLocal(id.to_string()).to_string(),
        );
    };
    let request: crate::payer::PaymentRequest = match parse_json(body) {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    match payer.start(id, request, key, quote_only).await {
        Ok(view) => {
            let failed = view["status"] == json!("failed");
            let status = if quote_only && failed {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CREATED
            };
            json_response(status, &view)
        }
        Err(e) => {
            let status = match &e {
                StartError::NoAccount(_) | StartError::NoQuote(_) => StatusCode::NOT_FOUND,
                StartError::NotLocal(_) | StartError::KeyReused => StatusCode::CONFLICT,
                StartError::BadRequest(_) => StatusCode::BAD_REQUEST,
                StartError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
                StartError::Spsp(_) => StatusCode::BAD_GATEWAY,
                StartError::Payment(_) => StatusCode::UNPROCESSABLE_ENTITY,
                StartError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut body = json!({ "error": e.to_string() });
            if let StartError::Payment(p) = &e {
                body["payment_error"] = crate::payer::error_json(p);
            }
            json_response(status, &body)
        }
    }
}

/// `GET` (and `DELETE`: cancel) `/accounts/<id>/payments/<payment>`.
async fn outgoing_payment(state: &AdminState, id: &str, payment: &str, cancel: bool) -> Answer {
    let Some(payer) = &state.payer else {
        return error(StatusCode::NOT_FOUND, "this node sends no payments");
    };
    if cancel && !payer.cancel(id, payment) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no running payment {payment} from {id}"),
        );
    }
    match payer.get(id, payment).await {
        Some(view) => ok(&view),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no payment {payment} from {id}"),
        ),
    }
}

async fn adjust_balance(state: &AdminState, id: &str, body: &[u8]) -> Answer {
    let accounts = state.accounts();
    let Some((id, _)) = accounts.get_key_value(id) else {
        return error(StatusCode::NOT_FOUND, &format!("no account {id}"));
    };
    let body: AdjustBody = match parse_json(body) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let message = AdjustBalance {
        account: id.clone(),
        adjust: body.adjust,
    };
    match state.adjust_balance.send(message).await {
        Ok(Ok(balance)) => ok(&json!({ "id": &**id, "balance": balance })),
        Ok(Err(e @ AdjustBalanceError::UnknownAccount(_))) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Ok(Err(e @ AdjustBalanceError::Overflow(_))) => {
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Ok(Err(e @ AdjustBalanceError::Store(_))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Err(e) => unavailable("balance keeper", &e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    account: String,
}

async fn static_route(state: &AdminState, method: Method, prefix: String, body: &[u8]) -> Answer {
    let account = if method == Method::PUT {
        match parse_json::<RouteBody>(body) {
            Ok(b) => Some(AccountId::from(b.account)),
            Err(m) => return error(StatusCode::BAD_REQUEST, &m),
        }
    } else {
        None
    };
    let set = account.is_some();
    let message = SetStaticRoute {
        prefix: prefix.clone(),
        account: account.clone(),
    };
    match state.set_route.send(message).await {
        Ok(Ok(())) if set => ok(&json!({
            "prefix": prefix,
            "account": account.as_deref(),
            "kind": "static",
        })),
        Ok(Ok(())) => ok(&json!({ "prefix": prefix, "deleted": true })),
        Ok(Err(e @ StaticRouteError::NotFound(_))) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => unavailable("router", &e),
    }
}

fn stats(state: &AdminState) -> Answer {
    let totals = state
        .metrics
        .as_ref()
        .map(|m| m.totals())
        .unwrap_or_default();
    let links_up = state
        .accounts()
        .values()
        .filter(|a| a.link.as_ref().is_some_and(|l| l.is_up()))
        .count();
    let address = state.address.get();
    ok(&json!({
        "address": address.as_ref().map(Address::as_str),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "accounts": state.accounts().len(),
        "links_up": links_up,
        "metrics": state.metrics.is_some(),
        "packets": {
            "incoming": {
                "fulfilled": totals.incoming_fulfilled,
                "rejected": totals.incoming_rejected,
            },
            "outgoing": {
                "fulfilled": totals.outgoing_fulfilled,
                "rejected": totals.outgoing_rejected,
            },
        },
    }))
}

async fn metrics(state: &AdminState, openmetrics: bool) -> Answer {
    let Some(metrics) = &state.metrics else {
        return error(StatusCode::NOT_FOUND, "this node keeps no metrics");
    };
    for id in state.accounts().keys() {
        let asked = state.get_balance.send(GetBalance {
            account: id.clone(),
        });
        if let Ok(Some(snapshot)) = asked.await {
            metrics.set_balance(id, &snapshot);
        }
    }
    if let Ok(all) = state.settlement_stats.send(GetSettlementStats).await {
        for (id, stats) in &all {
            metrics.set_settlement(id, stats);
        }
    }
    let mut response = Response::new(whole(metrics.encode()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if openmetrics {
            OPENMETRICS_CONTENT_TYPE
        } else {
            METRICS_CONTENT_TYPE
        }),
    );
    response
}

async fn snapshot(state: &AdminState) -> Answer {
    let no_snapshots = |message: &str| error(StatusCode::CONFLICT, message);
    let Some(root) = state.snapshots.clone() else {
        return no_snapshots("the memory store has no snapshots");
    };
    let store = state.store.clone();
    let made = tokio::task::spawn_blocking(move || -> Result<PathBuf, StoreError> {
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", root.display())))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // Two snapshots in one millisecond get a suffix rather than fail.
        let mut dir = root.join(now_ms.to_string());
        let mut n = 1u32;
        while dir.exists() {
            dir = root.join(format!("{now_ms}-{n}"));
            n = n.saturating_add(1);
        }
        store.checkpoint(&dir)?;
        Ok(dir)
    })
    .await;
    match made {
        Ok(Ok(dir)) => ok(&json!({ "path": dir.display().to_string() })),
        Ok(Err(StoreError::NoSnapshots(message))) => no_snapshots(message),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the snapshot task failed: {e}"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingBody {
    destination: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

async fn ping(state: &AdminState, body: &[u8]) -> Answer {
    let body: PingBody = match parse_json(body) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let destination = match Address::try_from(body.destination.as_str()) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("destination {:?}: {e}", body.destination),
            )
        }
    };
    let timeout = body
        .timeout_ms
        .map_or(DEFAULT_PING_TIMEOUT, Duration::from_millis);
    let message = SendPing {
        destination: destination.clone(),
        timeout,
    };
    match state.ping.send(message).await {
        Ok(Ok(rtt)) => ok(&json!({
            "destination": destination.as_str(),
            "rtt_ms": rtt.as_secs_f64() * 1000.0,
        })),
        Ok(Err(reject)) => rejected(&reject),
        Err(e) => unavailable("router", &e),
    }
}

/// Whether `id` is one of our local accounts.
fn is_local(state: &AdminState, id: &str) -> bool {
    state
        .accounts()
        .get(id)
        .is_some_and(|a| a.receiver.is_some())
}

/// A local account's paid HTTP tokens.
async fn tokens(state: &AdminState, id: &str) -> Answer {
    if !is_local(state, id) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no local account {id}: only local accounts are paid for requests"),
        );
    }
    match state
        .tokens
        .send(GetTokens {
            account: AccountId::from(id),
        })
        .await
    {
        Ok((tokens, spent)) => ok(&json!({
            "account": id,
            "tokens": tokens
                .iter()
                .map(|(token, balance)| json!({ "token": token, "balance": balance.to_string() }))
                .collect::<Vec<_>>(),
            "spent": spent.to_string(),
        })),
        Err(e) => unavailable("balance keeper", &e),
    }
}

/// Expires one of a local account's paid HTTP tokens.
async fn expire_token(state: &AdminState, id: &str, token: &str) -> Answer {
    if !is_local(state, id) {
        return error(StatusCode::NOT_FOUND, &format!("no local account {id}"));
    }
    let message = ExpireToken {
        account: AccountId::from(id),
        token: token.to_owned(),
    };
    match state.expire_token.send(message).await {
        Ok(reply) => match reply.await {
            Ok(0) => error(
                StatusCode::NOT_FOUND,
                &format!("no token {token} with a balance on {id}"),
            ),
            Ok(expired) => ok(&json!({ "token": token, "expired": expired.to_string() })),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => unavailable("balance keeper", &e),
    }
}

/// 502 with the Reject that ended an exchange the node started.
fn rejected(reject: &ilp::packet::Reject) -> Answer {
    json_response(
        StatusCode::BAD_GATEWAY,
        &json!({
            "error": format!("rejected {}: {}", reject.code().as_str(), reject.message()),
            "code": reject.code().as_str(),
            "message": reject.message(),
            "triggered_by": reject.triggered_by().map(|a| a.as_str().to_owned()),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CircularBody {
    via: String,
    #[serde(default, with = "crate::payer::opt_u64_string")]
    amount: Option<u64>,
    #[serde(default)]
    return_via: Option<String>,
    #[serde(default, with = "crate::payer::opt_u64_string")]
    min_return: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Longest a circular payment may take unless the request says otherwise: below the 30 s the
/// JS connector (and ours, by default) holds a packet at most.
pub const DEFAULT_CIRCULAR_TIMEOUT: Duration = Duration::from_secs(20);
/// The most `timeout_ms` may ask for (below the CLI's bound on one admin request).
pub const MAX_CIRCULAR_TIMEOUT_MS: u64 = 60_000;

async fn circular(state: &AdminState, body: &[u8]) -> Answer {
    let body: CircularBody = match parse_json(body) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let Some(amount) = body.amount else {
        return error(StatusCode::BAD_REQUEST, "amount is required");
    };
    if body
        .timeout_ms
        .is_some_and(|t| t == 0 || t > MAX_CIRCULAR_TIMEOUT_MS)
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("timeout_ms must be between 1 and {MAX_CIRCULAR_TIMEOUT_MS}"),
        );
    }
    // A minimum is in the returning account's units: it must be known.
    if body.min_return.is_some() && body.return_via.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "min_return is in the returning account's units: name it with return_via",
        );
    }
    let message = SendCircular {
        via: AccountId::from(body.via.as_str()),
        amount,
        return_via: body.return_via.as_deref().map(AccountId::from),
        min_return: body.min_return.unwrap_or(0),
        timeout: body
            .timeout_ms
            .map_or(DEFAULT_CIRCULAR_TIMEOUT, Duration::from_millis),
    };
    match state.circular.send(message).await {
        Ok(Ok(report)) => ok(&circular_json(&report)),
        Ok(Err(e)) => match &e {
            CircularError::UnknownAccount(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
            CircularError::LocalAccount(_) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            CircularError::NoAddress => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            CircularError::Rejected(reject) => rejected(reject),
        },
        Err(e) => unavailable("router", &e),
    }
}

/// A circular payment's report: what left through which account, what came back through which,
/// their expiries, and what came back per unit sent.
fn circular_json(r: &CircularReport) -> Value {
    use crate::payer::amount_json;
    let rate = ilp::circular::rate(
        r.sent,
        r.sent_asset.scale,
        r.returned,
        r.returned_asset.scale,
    );
    json!({
        "id": hex::encode(r.id),
        "destination": r.destination.as_str(),
        "path": [&*r.via, &*r.returned_via],
        "sent": {
            "via": &*r.via,
            "amount": amount_json(r.sent, &r.sent_asset),
            "expires_at": r.expires_at.to_rfc3339(),
        },
        "returned": {
            "via": &*r.returned_via,
            "amount": amount_json(r.returned, &r.returned_asset),
            "expires_at": r.returned_expires_at.to_rfc3339(),
        },
        "rate": rate.map(|r| format!("{r:.9}")),
        "round_trip_ms": r.round_trip.as_secs_f64() * 1000.0,
        "first_hop": match &r.first_hop_rejected {
            None => json!("fulfilled"),
            Some(reject) => json!({
                "code": reject.code().as_str(),
                "message": reject.message(),
            }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_endpoints() {
        let e = |p: &str| Endpoint::parse(p);
        assert_eq!(e("/health"), Some(Endpoint::Health));
        assert_eq!(e("/accounts"), Some(Endpoint::Accounts));
        assert_eq!(e("/accounts/bob"), Some(Endpoint::Account("bob".into())));
        assert_eq!(
            e("/accounts/bob/balance"),
            Some(Endpoint::AccountBalance("bob".into()))
        );
        assert_eq!(
            e("/routes/static/g.x"),
            Some(Endpoint::StaticRoute("g.x".into()))
        );
        assert_eq!(e("/accounts/"), None);
        assert_eq!(e("/accounts//balance"), None);
        assert_eq!(e("/nope"), None);
        assert_eq!(e("/"), None);
        assert_eq!(e(""), None);
        assert!(!Endpoint::Health.needs_token());
        assert!(!Endpoint::Ready.needs_token());
        assert!(Endpoint::Metrics.needs_token());
        assert_eq!(Endpoint::Ping.methods(), &[Method::POST]);
    }
}
