//! The HTTP client a connector talks to its RFC 38 settlement engines with (see [`ilp::rfc38`]):
//! `POST /accounts`, `POST /accounts/<id>/settlements` and `POST /accounts/<id>/messages`
//! under each engine's base URL. Every call is bounded by a timeout; what to do about a failure
//! (retry with the same key, reject a message) is the caller's business.

use crate::link::http::client::{error_chain, https_client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ilp::rfc38::Quantity;
use std::time::Duration;
use thiserror::Error;
use url::Url;

/// Largest engine answer read: a message reply must fit a Fulfill's data anyway.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest part of an engine's error body quoted in an error.
const QUOTED_CHARS: usize = 200;

/// Why a call to an engine (or, from an engine, to its connector) did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineCallError {
    /// The engine answered with a status other than 2xx (its body as it came).
    #[error("answered {status}: {}", quote(*.status, .body))]
    Status { status: u16, body: Bytes },
    /// No answer: connection refused, timeout, a body that could not be read.
    #[error("no answer: {0}")]
    Transport(String),
}

impl EngineCallError {
    /// The HTTP status the engine answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineCallError::Status { status, .. } => Some(*status),
            EngineCallError::Transport(_) => None,
        }
    }
}

/// A pooled client for every engine of the node (HTTP/1.1, or HTTP/2 by ALPN over TLS).
/// The API is the same in the other direction, so an engine calls its connector with it too.
#[derive(Clone)]
pub struct EngineClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// `Authorization: Bearer` value sent with every call, if any.
    bearer: Option<HeaderValue>,
}

impl EngineClient {
    /// `timeout` bounds each call, from connecting to the last byte of the answer.
    pub fn new(tls: rustls::ClientConfig, timeout: Duration) -> Self {
        EngineClient {
            client: https_client(tls, timeout, false),
            timeout,
            bearer: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every call (a connector's
    /// `listeners.settlement.token`). A token that is not a valid header value is refused.
    pub fn with_bearer(mut self, token: &str) -> Result<Self, EngineCallError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            EngineCallError::Transport("the token has characters a header cannot carry".into())
        })?;
        value.set_sensitive(true);
        self.bearer = Some(value);
        Ok(self)
    }

    /// `POST <engine>/accounts` `{"id": account}`: tells the engine about an account.
    pub async fn create_account(&self, engine: &Url, account: &str) -> Result<(), EngineCallError> {
        let body = serde_json::json!({ "id": account }).to_string();
        let request = self.request(
            endpoint(engine, &["accounts"]),
            "application/json",
            None,
            Bytes::from(body),
        )?;
        self.call(request).await.map(drop)
    }

    /// `POST <engine>/accounts/<account>/settlements`: asks the engine to pay `quantity` to
    /// the peer (or, from an engine, asks the connector to credit it), under
    /// `idempotency_key` (the same on every retry).
    pub async fn settle(
        &self,
        engine: &Url,
        account: &str,
        idempotency_key: &str,
        quantity: &Quantity,
    ) -> Result<(), EngineCallError> {
        let body = serde_json::to_vec(quantity)
            .map_err(|e| EngineCallError::Transport(format!("quantity not encoded: {e}")))?;
        let request = self.request(
            endpoint(engine, &["accounts", account, "settlements"]),
            "application/json",
            Some(idempotency_key),
            Bytes::from(body),
        )?;
        self.call(request).await.map(drop)
    }

    /// `POST <engine>/accounts/<account>/messages`: hands the engine a message its peer sent;
    /// its answer is the reply to carry back.
    pub async fn message(
        &self,
        engine: &Url,
        account: &str,
        message: Bytes,
    ) -> Result<Bytes, EngineCallError> {
        let request = self.request(
            endpoint(engine, &["accounts", account, "messages"]),
            "application/octet-stream",
            None,
            message,
        )?;
        self.call(request).await
    }

    fn request(
        &self,
        url: Url,
        content_type: &'static str,
        idempotency_key: Option<&str>,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, EngineCallError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
            .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
            .header(ACCEPT, HeaderValue::from_static(content_type));
        if let Some(key) = idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        if let Some(bearer) = &self.bearer {
            builder = builder.header(hyper::header::AUTHORIZATION, bearer.clone());
        }
        builder
            .body(Full::new(body))
            .map_err(|e| EngineCallError::Transport(format!("request to {url} not built: {e}")))
    }

    async fn call(&self, request: Request<Full<Bytes>>) -> Result<Bytes, EngineCallError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| EngineCallError::Transport(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| EngineCallError::Transport(format!("answer not read: {e}")))?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(EngineCallError::Status {
                    status: status.as_u16(),
                    body,
                })
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(EngineCallError::Transport(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// `base` with `segments` appended as path segments (each percent-encoded as needed).
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// The start of an error body, for messages (the status's reason when it is empty).
fn quote(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(QUOTED_CHARS).collect();
    if text.trim().is_empty() {
        StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_append_to_the_engine_path() {
        let u = |s: &str| Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            endpoint(&u("http://127.0.0.1:3000"), &["accounts"]).as_str(),
            "http://127.0.0.1:3000/accounts"
        );
        assert_eq!(
            endpoint(&u("http://e:1/se/"), &["accounts", "bob", "messages"]).as_str(),
            "http://e:1/se/accounts/bob/messages"
        );
        assert_eq!(
            endpoint(&u("https://e/x"), &["accounts", "a/b c", "settlements"]).as_str(),
            "https://e/x/accounts/a%2Fb%20c/settlements"
        );
    }
}
