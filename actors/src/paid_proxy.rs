//! The paid HTTP proxy (`[paid_http]`, HTTP-ILP): puts an existing HTTP API behind Interledger
//! payments without changing it. Requests are forwarded to the upstream; a request with a
//! price (by method and path prefix, [`ilp::paid_http::PriceTable`]) is forwarded only after
//! its `Pay-Token` has paid for it.
//!
//! - `OPTIONS` with a `Pay-Token`: `204` with `Pay` and `Pay-Balance` (the draft's preflight).
//! - A priced request whose token holds less than the price: `402` with `Pay` (credentials of
//!   the receiving account issued for this token, and the price) and `Pay-Balance`. Without a
//!   token: `402` without `Pay`, as koa-ilp answers (there is no token to credit).
//! - A priced request the token can pay: the price is taken from the token's balance (durably,
//!   by the BalanceKeeper, never below zero however many requests share the token), the
//!   request is forwarded, and the response streamed back with `Pay-Balance`. An upstream that
//!   cannot be reached or does not answer in time gives the price back: `502` / `504`, no charge.
//!
//! Money reaches a token through the credentials in `Pay`: they are issued for the receiving
//! account with the tag `pt:<token id>`, and every STREAM or PSK2 packet paid on them credits
//! that token in the same store batch as the account ([`crate::payment_log`]). `Pay` names
//! PSK2 (`interledger-psk2`, what the draft and koa-ilp use, with the price) unless the request
//! sends `Pay-Accept: interledger-stream` (ilp-fetch's STREAM method, credentials for STREAM).

use crate::messages::{AccountId, RefundToken, SpendToken, TokenBalance, TokenSpendError};
use crate::peer_account::NodeAddress;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ilp::paid_http::{
    canonical_path, Pay, PayMethod, PayToken, PriceTable, PAY_BALANCE_HEADER, PAY_HEADER,
    PAY_TOKEN_HEADER,
};
use ilp::stream::credentials::IssueOptions;
use ilp::stream::credentials::ReceiverKeys;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The body of every answer: the upstream's, streamed, or one of ours.
pub type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Request header a client sends to be offered STREAM credentials instead of PSK2 ones.
pub const PAY_ACCEPT_HEADER: &str = "Pay-Accept";

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the proxy needs of the node.
pub struct ProxyState {
    /// Replaced whole by a reload ([`PaidProxy::set_prices`]); a request reads it once.
    pub prices: std::sync::RwLock<Arc<PriceTable>>,
    /// Requests go to this URL with the request's path (and query) appended to its path.
    pub upstream: url::Url,
    pub upstream_timeout: Duration,
    /// The receiving account, and its address segment under ours.
    pub account: AccountId,
    pub segment: String,
    pub node: NodeAddress,
    pub keys: Arc<ReceiverKeys>,
    pub spend: actix::Recipient<SpendToken>,
    pub refund: actix::Recipient<RefundToken>,
    pub balance: actix::Recipient<TokenBalance>,
    pub client: Client<HttpsConnector<HttpConnector>, Incoming>,
}

fn body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

fn answer(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(body(serde_json::json!({ "error": message }).to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn set(response: &mut Response<ProxyBody>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}

impl ProxyState {
    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let method = request.method().clone();
        let prices = self
            .prices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Priced and forwarded in one form, so that no spelling of a path reaches the upstream
        // as another path than the one priced.
        let Some(path) = canonical_path(request.uri().path()) else {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                "the path has an empty, . or .. segment, or a malformed escape",
            ));
        };
        let token = match request.headers().get(PAY_TOKEN_HEADER).map(|v| v.to_str()) {
            None => None,
            Some(Ok(value)) => match PayToken::parse(value) {
                Ok(token) => Some(token),
                Err(e) => return Ok(answer(StatusCode::BAD_REQUEST, &e.to_string())),
            },
            Some(Err(_)) => {
                return Ok(answer(StatusCode::BAD_REQUEST, "Pay-Token is not text"));
            }
        };
        let method_for_stream = request
            .headers()
            .get(PAY_ACCEPT_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|m| m.trim() == PayMethod::Stream.as_str()));
        let pay_method = if method_for_stream {
            PayMethod::Stream
        } else {
            PayMethod::Psk2
        };
        if method == Method::OPTIONS && prices.highest_price(&path) > 0 {
            if let Some(token) = &token {
                // The preflight: what the request the client means to make would cost.
                let intended = request
                    .headers()
                    .get("access-control-request-method")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let price = match intended {
                    Some(m) => prices.price(&m, &path),
                    None => prices.highest_price(&path),
                };
                let balance = self.token_balance(token).await;
                let mut response = Response::new(body(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                return Ok(self.with_pay(response, token, pay_method, price, balance));
            }
        }
        // No address, no credentials: a 402 without Pay would break a paying client.
        if self.node.get().is_none() && prices.highest_price(&path) > 0 {
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node does not know its address yet",
            ));
        }
        let price = prices.price(method.as_str(), &path);
        if price == 0 {
            return Ok(self.forward(request, &path, None).await.0);
        }
        let Some(token) = token else {
            return Ok(answer(
                StatusCode::PAYMENT_REQUIRED,
                "this request has a price: send a Pay-Token header (OPTIONS with it tells how to pay)",
            ));
        };
        let spent = ask_token(
            &self.spend,
            SpendToken {
                account: self.account.clone(),
                token: token.id(),
                price,
            },
        )
        .await;
        match spent {
            Ok(left) => {
                let (mut response, served) =
                    self.forward(request, &path, Some((&token, price))).await;
                if served {
                    set(&mut response, PAY_BALANCE_HEADER, &left.to_string());
                }
                Ok(response)
            }
            Err(TokenSpendError::Short { balance }) => {
                let response = answer(
                    StatusCode::PAYMENT_REQUIRED,
                    &format!("the token holds {balance}; this request costs {price}"),
                );
                Ok(self.with_pay(response, &token, pay_method, price, balance))
            }
            Err(e) => Ok(answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
        }
    }

    async fn token_balance(&self, token: &PayToken) -> u64 {
        self.balance
            .send(TokenBalance {
                account: self.account.clone(),
                token: token.id(),
            })
            .await
            .unwrap_or(0)
    }

    /// Adds `Pay` (credentials for `token`, and `price`) and `Pay-Balance`.
    fn with_pay(
        &self,
        mut response: Response<ProxyBody>,
        token: &PayToken,
        method: PayMethod,
        price: u64,
        balance: u64,
    ) -> Response<ProxyBody> {
        if let Some(pay) = self.pay(token, method, price) {
            set(&mut response, PAY_HEADER, &pay.header_value());
        }
        set(&mut response, PAY_BALANCE_HEADER, &balance.to_string());
        expose_pay_headers(&mut response);
        response
    }

    /// Credentials of the receiving account for `token`: whatever is paid on them is the
    /// token's. `None` while the node has no address.
    fn pay(&self, token: &PayToken, method: PayMethod, price: u64) -> Option<Pay> {
        let receiver = self.node.get()?.with_suffix(&self.segment).ok()?;
        let tag = format!("{}{}", crate::payment_log::TOKEN_TAG_PREFIX, token.id());
        let options = IssueOptions {
            psk2: method == PayMethod::Psk2,
            receipts: None,
            tag: Some(&tag),
        };
        let issued_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let credentials = self
            .keys
            .issue(
                &self.account,
                &receiver,
                &options,
                issued_at,
                &rand::random(),
            )
            .ok()?;
        Some(Pay {
            method,
            destination: credentials.destination,
            shared_secret: credentials.shared_secret,
            price: Some(price),
        })
    }

    /// Sends `request` upstream at `path` (canonical) and streams the answer back, and whether
    /// the upstream answered. `paid`: the token and price taken for it, given back when the
    /// request never reached the upstream (that answer carries the balance after the refund);
    /// once it was sent, the upstream may have acted on it, and the price stays taken.
    async fn forward(
        &self,
        request: Request<Incoming>,
        path: &str,
        paid: Option<(&PayToken, u64)>,
    ) -> (Response<ProxyBody>, bool) {
        let (mut parts, incoming) = request.into_parts();
        let uri = match self.upstream_uri(path, parts.uri.query()) {
            Some(uri) => uri,
            None => {
                let response = answer(
                    StatusCode::BAD_REQUEST,
                    "the request's path cannot be forwarded",
                );
                return (self.refunded(response, paid).await, false);
            }
        };
        parts.uri = uri;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(HOST);
        // The token is the client's key to its balance: the upstream has no use for it.
        parts.headers.remove(PAY_TOKEN_HEADER);
        parts.version = hyper::Version::HTTP_11;
        let outgoing = Request::from_parts(parts, incoming);
        let sent = tokio::time::timeout(self.upstream_timeout, self.client.request(outgoing)).await;
        let failed = match sent {
            Ok(Ok(response)) => {
                let (mut parts, upstream_body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body: ProxyBody = upstream_body.map_err(|e| e.into()).boxed();
                return (Response::from_parts(parts, body), true);
            }
            Ok(Err(e)) if e.is_connect() => (
                StatusCode::BAD_GATEWAY,
                format!("the upstream could not be reached: {e}"),
                true,
            ),
            Ok(Err(e)) => (
                StatusCode::BAD_GATEWAY,
                format!("the upstream failed after the request was sent: {e}"),
                false,
            ),
            Err(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream did not answer in time".to_owned(),
                false,
            ),
        };
        let (status, message, never_sent) = failed;
        let response = answer(status, &message);
        if never_sent {
            (self.refunded(response, paid).await, false)
        } else {
            (response, false)
        }
    }

    /// Gives the price back to the token (`paid`) of a request that was not served; `response`
    /// then carries the token's balance.
    async fn refunded(
        &self,
        mut response: Response<ProxyBody>,
        paid: Option<(&PayToken, u64)>,
    ) -> Response<ProxyBody> {
        if let Some((token, price)) = paid {
            let refunded = ask_token(
                &self.refund,
                RefundToken {
                    account: self.account.clone(),
                    token: token.id(),
                    amount: price,
                },
            )
            .await;
            if let Ok(balance) = refunded {
                set(&mut response, PAY_BALANCE_HEADER, &balance.to_string());
            }
        }
        response
    }

    /// The upstream's URL for `path` and `query`: the upstream's path, then the request's.
    fn upstream_uri(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let base = self.upstream.as_str().trim_end_matches('/');
        match query {
            Some(query) => format!("{base}{path}?{query}"),
            None => format!("{base}{path}"),
        }
        .parse()
        .ok()
    }
}

/// Drops the hop-by-hop headers, those the `Connection` header names included.
fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

/// Lets a browser's script read the payment headers of a cross-origin answer.
fn expose_pay_headers(response: &mut Response<ProxyBody>) {
    response.headers_mut().insert(
        "access-control-expose-headers",
        HeaderValue::from_static("Pay, Pay-Balance"),
    );
}

/// Asks the keeper for a token operation; a keeper that is gone is a store error.
async fn ask_token<M>(to: &actix::Recipient<M>, msg: M) -> Result<u64, TokenSpendError>
where
    M: actix::Message<Result = crate::messages::Reply<Result<u64, TokenSpendError>>>
        + Send
        + 'static,
    M::Result: Send,
{
    match to.send(msg).await {
        Ok(reply) => reply.await,
        Err(e) => Err(TokenSpendError::Store(format!(
            "balance keeper unavailable: {e}"
        ))),
    }
}

/// A running paid proxy. Dropping it stops accepting and closes its connections.
pub struct PaidProxy {
    local_addr: std::net::SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PaidProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PaidProxy {
    /// Serves `[paid_http]` of `config` for `node` on `listener` (already bound), with `tls`
    /// (`None`: plain TCP). Errors name the key at fault.
    pub fn serve(
        listener: tokio::net::TcpListener,
        tls: Option<crate::tls::ServerTls>,
        config: &ilp::config::Config,
        node: &crate::node::Node,
    ) -> Result<PaidProxy, String> {
        let Some(paid) = &config.paid_http else {
            return Err("paid_http: not configured".into());
        };
        let segment = config
            .accounts
            .get(&paid.account)
            .and_then(|a| a.child_segment(&paid.account).map(str::to_owned))
            .ok_or_else(|| format!("paid_http.account: no local account {}", paid.account))?;
        let client = crate::link::http::client::https_client(
            crate::tls::client_config(&Default::default(), "paid_http")
                .map_err(|e| e.to_string())?,
            Duration::from_millis(paid.upstream_timeout_ms),
            false,
        );
        let state = Arc::new(ProxyState {
            prices: std::sync::RwLock::new(Arc::new(paid.price_table())),
            upstream: paid.upstream.clone(),
            upstream_timeout: Duration::from_millis(paid.upstream_timeout_ms),
            account: AccountId::from(paid.account.as_str()),
            segment,
            node: node.address.clone(),
            keys: node.receivers.keys().clone(),
            spend: node.balance.clone().recipient(),
            refund: node.balance.clone().recipient(),
            balance: node.balance.clone().recipient(),
            client,
        });
        let local_addr = listener
            .local_addr()
            .map_err(|e| format!("paid_http.bind: {e}"))?;
        let options = crate::http_serve::ServeOptions {
            h2: true,
            header_timeout: Duration::from_secs(10),
            tls,
            max_connections: 1024,
        };
        let served = state.clone();
        let task = crate::http_serve::serve(listener, &options, move |request, _peer| {
            // On a task of its own: a client that goes away after its token paid does not
            // abandon the request half way (the spend and the forward complete, or the refund).
            let handled = tokio::spawn(served.clone().handle(request));
            async move {
                Ok(handled
                    .await
                    .unwrap_or_else(|_| {
                        Ok(answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the request failed",
                        ))
                    })
                    .unwrap_or_else(|never| match never {}))
            }
        });
        Ok(PaidProxy {
            local_addr,
            state,
            task,
        })
    }

    /// Binds `[paid_http]` (with its TLS) and serves it.
    pub async fn start(
        config: &ilp::config::Config,
        node: &crate::node::Node,
    ) -> Result<Option<PaidProxy>, String> {
        let Some(paid) = &config.paid_http else {
            return Ok(None);
        };
        let tls = crate::tls::server_tls(&paid.tls, "paid_http.tls", crate::tls::ALPN_H2_HTTP1)
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(paid.bind)
            .await
            .map_err(|e| format!("paid_http.bind {}: {e}", paid.bind))?;
        PaidProxy::serve(listener, tls, config, node).map(Some)
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// New prices (a reload): requests that arrive from now on pay them.
    pub fn set_prices(&self, prices: PriceTable) {
        *self.state.prices.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(prices);
    }
}
