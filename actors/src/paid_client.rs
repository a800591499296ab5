//! The paying HTTP client (HTTP-ILP, the client half): fetches a URL for a local account, and
//! when the server answers `402 Payment Required` with a `Pay` header, pays it through the
//! node's sender and asks again.
//!
//! - **Tokens**: one random 16-byte `Pay-Token` per account and server (`host:port`), kept in
//!   the store (`http/t/<account>\0<host:port>`), so that money a server holds for it is
//!   found again by the next request, after a restart too. 16 bytes is what koa-ilp reads from
//!   PSK2 data and what ilp-fetch sends; the draft's 32-byte HMAC would not be credited there.
//! - **Paying**: the request goes first with the token (as ilp-fetch does; no preflight). On a
//!   402 with `Pay`, the client pays what the price lacks of the token's `Pay-Balance`: a
//!   payment that delivers at least that many of the server's units to the `Pay` credentials
//!   (PSK2 requests carry the token's bytes as their data; STREAM credentials name the token
//!   themselves), debited at most what is left of `max_price`, in the paying account's units.
//!   The server's asset is not named in `Pay`, so the node's rate table cannot judge the
//!   path: the probed rate less the slippage is the floor, and `max_price` the protection.
//!   Without `max_price`, nothing is paid. Then the request is sent again; a server that asks
//!   again (its price rose) is paid again within the same `max_price`, at most
//!   [`MAX_PAYMENTS`] times.
//! - **Timeouts**: the whole fetch ends within its timeout. A payment still running then goes
//!   on: what it delivers stays on the token, and the next request to that server uses it.

use crate::link::http::client::{error_chain, https_client};
use crate::payer::{DirectPayment, Payer, PaymentView, StartError, Status};
use crate::store::{Store, StoreOp};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ilp::paid_http::{Pay, PayMethod, PayToken, PAY_BALANCE_HEADER, PAY_HEADER, PAY_TOKEN_HEADER};
use ilp::stream::credentials::Protocol;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// Payments one fetch makes at most (a first, and again while the server's price rises).
pub const MAX_PAYMENTS: usize = 3;
/// Bytes of a token the client makes.
pub const TOKEN_BYTES: usize = 16;
const TOKEN_PREFIX: &[u8] = b"http/t/";

/// A request to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The most the fetch may debit the account, in its base units (`None`: pays nothing).
    pub max_price: Option<u64>,
    /// The whole fetch, payments included.
    pub timeout: Duration,
}

/// What the server finally answered, and what it cost.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The token the requests carried.
    pub token: String,
    /// The payments made for it, in order.
    pub payments: Vec<PaymentView>,
}

impl Fetched {
    /// What the payments debited the account.
    pub fn paid(&self) -> u64 {
        self.payments.iter().map(|p| p.progress.sent).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Start(StartError),
    /// The server could not be reached, or broke off.
    #[error("the request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    /// The server wants more than the fetch may pay.
    #[error("the server asks {asked} of its units (its token holds {balance}); {reason}")]
    PriceNotAllowed {
        asked: u64,
        balance: u64,
        reason: String,
        payments: Vec<PaymentView>,
    },
    #[error("{reason}")]
    BadPay {
        reason: String,
        payments: Vec<PaymentView>,
    },
    /// Something failed after money was paid (the server went away, answered too much, ...):
    /// what was paid stays on the token.
    #[error("{reason}")]
    AfterPaying {
        reason: String,
        payments: Vec<PaymentView>,
    },
    #[error("the payment failed: {}", .payment.error.as_ref().map(|e| e.to_string()).unwrap_or_else(|| .payment.status.as_str().to_owned()))]
    PaymentFailed {
        payment: Box<PaymentView>,
        payments: Vec<PaymentView>,
    },
    /// Out of time; a payment still running goes on, and what it delivers stays on the token.
    #[error("no answer within {} ms{}", .timeout.as_millis(), if *.paying { "; the payment goes on and what it delivers stays on the token" } else { "" })]
    Timeout {
        timeout: Duration,
        paying: bool,
        payments: Vec<PaymentView>,
    },
}

impl FetchError {
    /// The payments made before the error.
    pub fn payments(&self) -> &[PaymentView] {
        match self {
            FetchError::PriceNotAllowed { payments, .. }
            | FetchError::BadPay { payments, .. }
            | FetchError::AfterPaying { payments, .. }
            | FetchError::PaymentFailed { payments, .. }
            | FetchError::Timeout { payments, .. } => payments,
            _ => &[],
        }
    }
}

/// Fetches and pays for the node's local accounts. Cloning shares the connection pool.
#[derive(Clone)]
pub struct PaidHttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    store: Arc<dyn Store>,
    payer: Payer,
    /// Tokens by store key, read or made once; locked while one is made, so that two first
    /// requests to a server share it.
    tokens: Arc<tokio::sync::Mutex<std::collections::HashMap<Vec<u8>, PayToken>>>,
    max_body: usize,
}

/// `host:port` of `url`: what a token is kept for.
fn server_of(url: &Url) -> Result<String, FetchError> {
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::BadRequest(format!("{url} has no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadRequest(format!("{url}: no port for its scheme")))?;
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}

fn token_key(account: &str, server: &str) -> Vec<u8> {
    [TOKEN_PREFIX, account.as_bytes(), b"\0", server.as_bytes()].concat()
}

/// The token's balance a 402 says (`Pay-Balance`, a decimal integer; koa-ilp writes a JS
/// number). Anything else, or none, counts as nothing held.
fn pay_balance(headers: &hyper::HeaderMap) -> u64 {
    headers
        .get(PAY_BALANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The first `Pay` this client can pay (every `Pay` header, and comma-separated offers in one).
fn pay_offer(headers: &hyper::HeaderMap) -> Result<Option<Pay>, String> {
    let mut last_error = None;
    for value in headers.get_all(PAY_HEADER) {
        let Ok(value) = value.to_str() else {
            last_error = Some("a Pay header is not text".to_owned());
            continue;
        };
        for offer in value.split(',') {
            match Pay::parse(offer.trim()) {
                Ok(pay) => return Ok(Some(pay)),
                Err(e) => last_error = Some(format!("Pay {offer:?}: {e}")),
            }
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

impl PaidHttpClient {
    /// A client verifying https servers with `tls`; bodies over `max_body` bytes are refused.
    pub fn new(
        tls: rustls::ClientConfig,
        store: Arc<dyn Store>,
        payer: Payer,
        max_body: usize,
    ) -> PaidHttpClient {
        PaidHttpClient {
            client: https_client(tls, Duration::from_secs(10), false),
            store,
            payer,
            tokens: Arc::default(),
            max_body,
        }
    }

    /// The token `account` uses with the server of `url`, made and kept the first time.
    pub async fn token(&self, account: &str, url: &Url) -> Result<PayToken, FetchError> {
        let key = token_key(account, &server_of(url)?);
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(&key) {
            return Ok(token.clone());
        }
        let read_key = key.clone();
        let stored =
            crate::store::read_off_thread(self.store.clone(), move |s| s.get_record(&read_key))
                .await
                .map_err(|e| FetchError::Start(StartError::Store(e.to_string())))?;
        let token = match stored.map(PayToken::from_bytes) {
            Some(Ok(token)) => token,
            _ => {
                let bytes: [u8; TOKEN_BYTES] = rand::random();
                self.store
                    .commit(vec![StoreOp::PutRecord {
                        key: key.clone(),
                        value: bytes.to_vec(),
                    }])
                    .await
                    .map_err(|e| FetchError::Start(StartError::Store(e.to_string())))?;
                PayToken::from_bytes(bytes.to_vec())
                    .map_err(|e| FetchError::BadRequest(e.to_string()))?
            }
        };
        tokens.insert(key, token.clone());
        Ok(token)
    }

    /// Sends `request` for `account`, paying what the server asks within `max_price`.
    pub async fn fetch(&self, account: &str, request: FetchRequest) -> Result<Fetched, FetchError> {
        match request.url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(FetchError::BadRequest(format!(
                    "{other}: only http and https URLs"
                )))
            }
        }
        let deadline = Instant::now() + request.timeout;
        let token = self.token(account, &request.url).await?;
        let mut payments: Vec<PaymentView> = Vec::new();
        // After a payment: the price it was for, and the least the token must hold now.
        let mut credited: Option<(u64, u64)> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = match tokio::time::timeout(left, self.send(&request, &token)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) if payments.is_empty() => return Err(e),
                Ok(Err(e)) => {
                    return Err(FetchError::AfterPaying {
                        reason: e.to_string(),
                        payments,
                    })
                }
                Err(_) => {
                    return Err(FetchError::Timeout {
                        timeout: request.timeout,
                        paying: false,
                        payments,
                    })
                }
            };
            let (status, headers, body) = answer;
            let done = |payments| Fetched {
                status,
                headers: header_list(&headers),
                body: body.clone(),
                token: token.id(),
                payments,
            };
            if status != StatusCode::PAYMENT_REQUIRED || payments.len() >= MAX_PAYMENTS {
                return Ok(done(payments));
            }
            let pay = match pay_offer(&headers) {
                // A 402 without a way to pay is the server's answer to show.
                Ok(None) => return Ok(done(payments)),
                Ok(Some(pay)) => pay,
                Err(reason) => return Err(FetchError::BadPay { reason, payments }),
            };
            let balance = pay_balance(&headers);
            let Some(price) = pay.price else {
                return Err(FetchError::BadPay {
                    reason: "the Pay header names no price (a streaming payment, not supported)"
                        .into(),
                    payments,
                });
            };
            if let Some((paid_for, least)) = credited {
                // Asked again at the same price without the payment on the token: a server
                // that keeps the money is not paid again.
                if price <= paid_for && balance < least {
                    return Err(FetchError::BadPay {
                        reason: format!(
                            "the server asks again for {price} and says the token holds {balance}, \
                             not the {least} just paid in"
                        ),
                        payments,
                    });
                }
            }
            let lacking = price.saturating_sub(balance);
            if lacking == 0 {
                // It holds enough by its own word and still refuses: nothing to pay for.
                return Ok(done(payments));
            }
            let spent: u64 = payments.iter().map(|p| p.progress.sent).sum();
            let Some(max_price) = request.max_price else {
                return Err(FetchError::PriceNotAllowed {
                    asked: price,
                    balance,
                    reason: "no maximum price was given, so nothing is paid".into(),
                    payments,
                });
            };
            if spent >= max_price {
                return Err(FetchError::PriceNotAllowed {
                    asked: price,
                    balance,
                    reason: format!("{spent} was paid already, the maximum is {max_price}"),
                    payments,
                });
            }
            let mut shown = request.url.clone();
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            shown.set_query(None);
            let payment = DirectPayment {
                to: shown.to_string(),
                destination: pay.destination.clone(),
                shared_secret: pay.shared_secret,
                protocol: match pay.method {
                    PayMethod::Psk2 => Protocol::Psk2,
                    PayMethod::Stream => Protocol::Stream,
                },
                deliver: lacking,
                max_source: max_price - spent,
                psk2_data: token.as_bytes().to_vec(),
            };
            // Started on its own task: a fetch dropped or out of time leaves it running.
            let payer = self.payer.clone();
            let from = account.to_owned();
            let starting = tokio::spawn(async move { payer.start_direct(&from, payment).await });
            let left = deadline.saturating_duration_since(Instant::now());
            let running = match tokio::time::timeout(left, starting).await {
                Ok(Ok(Ok(running))) => running,
                Ok(Ok(Err(e))) if payments.is_empty() => return Err(FetchError::Start(e)),
                Ok(Ok(Err(e))) => {
                    return Err(FetchError::AfterPaying {
                        reason: e.to_string(),
                        payments,
                    })
                }
                Ok(Err(e)) => {
                    return Err(FetchError::Start(StartError::Store(format!(
                        "the payment task ended: {e}"
                    ))))
                }
                Err(_) => {
                    return Err(FetchError::Timeout {
                        timeout: request.timeout,
                        paying: true,
                        payments,
                    })
                }
            };
            // Waiting for its end does not hold it up: out of time, it runs on without us.
            let shown = running.view();
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(view) = tokio::time::timeout(left, running.finished()).await else {
                // What it shows now (its id, what it sent so far) is reported.
                payments.push(shown.now());
                return Err(FetchError::Timeout {
                    timeout: request.timeout,
                    paying: true,
                    payments,
                });
            };
            let completed = view.status == Status::Completed;
            credited = Some((price, balance.saturating_add(view.progress.delivered)));
            payments.push(view.clone());
            if !completed {
                let refused_quote = matches!(
                    view.error,
                    Some(ilp::sender::PayError::MaxSourceExceeded { .. })
                );
                if refused_quote {
                    return Err(FetchError::PriceNotAllowed {
                        asked: price,
                        balance,
                        reason: view.error.map(|e| e.to_string()).unwrap_or_default(),
                        payments,
                    });
                }
                return Err(FetchError::PaymentFailed {
                    payment: Box::new(view),
                    payments,
                });
            }
        }
    }

    /// One request with the token; the whole body read (within the size limit).
    async fn send(
        &self,
        request: &FetchRequest,
        token: &PayToken,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), FetchError> {
        let failed = |reason: String| FetchError::Http {
            url: request.url.to_string(),
            reason,
        };
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(request.url.as_str());
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| FetchError::BadRequest(format!("header name {name:?}")))?;
            // The body's framing is the client's own; the token is set below.
            if name == HOST
                || name == CONTENT_LENGTH
                || name == TRANSFER_ENCODING
                || name == CONNECTION
                || name.as_str().eq_ignore_ascii_case(PAY_TOKEN_HEADER)
            {
                continue;
            }
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| FetchError::BadRequest(format!("header {name}: value {value:?}")))?;
            builder = builder.header(name, value);
        }
        builder = builder.header(PAY_TOKEN_HEADER, token.header_value());
        let http_request = builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| FetchError::BadRequest(e.to_string()))?;
        let response = self
            .client
            .request(http_request)
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return Err(FetchError::TooLarge(self.max_body))
            }
            Err(e) => return Err(failed(format!("reading the body: {}", error_chain(&*e)))),
        };
        Ok((status, parts.headers, body))
    }
}

fn header_list(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_kept_per_account_and_server() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            server_of(&url("https://API.example/x")).unwrap(),
            "api.example:443"
        );
        assert_eq!(
            server_of(&url("http://a.example:8080/")).unwrap(),
            "a.example:8080"
        );
        assert_eq!(
            token_key("alice", "a.example:80"),
            b"http/t/alice\0a.example:80".to_vec()
        );
    }

    #[test]
    fn pay_balance_and_offers_are_read_leniently() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(pay_balance(&headers), 0);
        headers.insert(PAY_BALANCE_HEADER, HeaderValue::from_static(" 85 "));
        assert_eq!(pay_balance(&headers), 85);
        headers.insert(PAY_BALANCE_HEADER, HeaderValue::from_static("-3"));
        assert_eq!(pay_balance(&headers), 0);
        assert_eq!(pay_offer(&headers), Ok(None));
        let secret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        headers.append(
            PAY_HEADER,
            HeaderValue::from_static("interledger-psk1 1 test.x AAAA"),
        );
        assert!(pay_offer(&headers).is_err());
        headers.append(
            PAY_HEADER,
            HeaderValue::from_str(&format!(
                "bogus, interledger-psk2 test.shop.abc {secret} 10"
            ))
            .unwrap(),
        );
        let pay = pay_offer(&headers).unwrap().unwrap();
        assert_eq!(pay.method, PayMethod::Psk2);
        assert_eq!(pay.price, Some(10));
    }
}
