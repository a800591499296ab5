//! The SPSP client (RFC 9): turns what a payer typed, a payment pointer (`$host/path`) or an
//! `https://` endpoint URL, into the credentials the node's STREAM or PSK2 sender pays with.
//!
//! One query is a GET with `Accept: application/spsp4+json, application/spsp+json` (and the
//! RFC 39 `Receipt-Nonce` / `Receipt-Secret` headers when the payer wants receipts). The
//! answer's content type says the protocol: `application/spsp4+json` is STREAM,
//! `application/spsp+json` a PSK2 receiver (which also says its asset). Anything else is an
//! error rather than a guess: paying a receiver over the wrong protocol loses the money.
//!
//! Limits, because the server is a stranger: the whole query, redirects and body included,
//! ends within [`SpspClientOptions::timeout`]; at most [`MAX_REDIRECTS`] redirects are
//! followed, never from https down to plain http (unless the client allows http, for tests and
//! local setups); a body over [`MAX_BODY_BYTES`] is refused unread.

use crate::link::http::client::{error_chain, https_client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use hyper::{Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ilp::packet::Address;
use ilp::payment_pointer::{self, PaymentPointerError};
use ilp::spsp::{self, ReceiptSetup, SpspResponse};
use ilp::stream::credentials::Protocol;
use std::time::Duration;
use url::Url;

/// Redirects followed at most in one query.
pub const MAX_REDIRECTS: usize = 3;
/// Largest response body read; an SPSP answer is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest part of an error response's body kept in [`SpspClientError::Status`].
const QUOTED_BODY_CHARS: usize = 200;

/// How the client queries.
#[derive(Debug, Clone)]
pub struct SpspClientOptions {
    /// Longest a whole query may take: connecting, redirects and reading the body.
    pub timeout: Duration,
    /// Also accept `http://` URLs, as input and as redirect targets. For tests and local
    /// setups: over plain http anyone on the path can read the shared secret.
    pub allow_http: bool,
    /// How https servers are verified (roots, protocol versions).
    pub tls: rustls::ClientConfig,
}

/// A pooled HTTP client for SPSP queries. Cloning shares the pool.
#[derive(Clone)]
pub struct SpspClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    allow_http: bool,
}

impl std::fmt::Debug for SpspClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpspClient")
            .field("timeout", &self.timeout)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// The credentials one query gave.
#[derive(Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The URL that answered (after redirects).
    pub url: Url,
    /// STREAM for `application/spsp4+json`, PSK2 for `application/spsp+json`.
    pub protocol: Protocol,
    pub destination: Address,
    pub shared_secret: [u8; 32],
    /// The receiver's asset (code, scale), when the body says it (PSK2 servers do).
    pub asset: Option<(String, u8)>,
    /// The receiver will attach STREAM receipts (`receipts_enabled`).
    pub receipts: bool,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("url", &self.url.as_str())
            .field("protocol", &self.protocol)
            .field("destination", &self.destination)
            .field("asset", &self.asset)
            .field("receipts", &self.receipts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpspClientError {
    #[error("not a payment pointer or https URL: {0}")]
    BadInput(#[from] PaymentPointerError),
    /// No answer: connect failure, timeout, broken connection, a refused redirect.
    #[error("SPSP query failed: {0}")]
    Http(String),
    /// A non-2xx answer; `body` is its start.
    #[error("{}", describe_status(*status, body))]
    Status { status: u16, body: String },
    #[error(
        "the SPSP server answered {0}, neither application/spsp4+json nor application/spsp+json"
    )]
    ContentType(String),
    #[error("invalid SPSP response: {0}")]
    Body(String),
    #[error("the SPSP server redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects,
}

/// The message of [`SpspClientError::Status`]: the SPSP error body's `id` and `message` when
/// the body is one (a 404 `InvalidReceiverError` says the receiver does not exist), else the
/// body as text.
fn describe_status(status: u16, body: &str) -> String {
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let mut text = match field("id").as_deref() {
        Some("InvalidReceiverError") => {
            format!("no such receiver: the SPSP server answered HTTP {status} InvalidReceiverError")
        }
        Some(id) => format!("the SPSP server answered HTTP {status} {id}"),
        None => format!("the SPSP server answered HTTP {status}"),
    };
    let detail = match field("id") {
        Some(_) => field("message").unwrap_or_default(),
        None => body.trim().to_owned(),
    };
    if !detail.is_empty() {
        text.push_str(": ");
        text.push_str(&detail);
    }
    text
}

/// Whether a redirect from `from` to `to` may be followed: to https always, to http only when
/// http is allowed (so never from https down to http otherwise), to nothing else.
fn redirect_allowed(from: &Url, to: &Url, allow_http: bool) -> bool {
    match to.scheme() {
        "https" => true,
        "http" => allow_http || from.scheme() == "http",
        _ => false,
    }
}

/// The protocol a response's `Content-Type` says, its parameters (`; charset=utf-8`) ignored.
fn protocol_of(content_type: &str) -> Option<Protocol> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case(spsp::CONTENT_TYPE) {
        Some(Protocol::Stream)
    } else if media.eq_ignore_ascii_case(spsp::CONTENT_TYPE_PSK2) {
        Some(Protocol::Psk2)
    } else {
        None
    }
}

/// Reads at most [`MAX_BODY_BYTES`] of `response`'s body.
async fn read_body(response: Response<Incoming>) -> Result<Bytes, SpspClientError> {
    match Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(SpspClientError::Body(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes"
        ))),
        Err(e) => Err(SpspClientError::Http(format!(
            "reading the response body: {}",
            error_chain(&*e)
        ))),
    }
}

impl SpspClient {
    /// A client verifying https servers with `options.tls`. Connections are pooled and reused
    /// across queries (and clones).
    pub fn new(options: SpspClientOptions) -> SpspClient {
        SpspClient {
            client: https_client(options.tls, options.timeout, false),
            timeout: options.timeout,
            allow_http: options.allow_http,
        }
    }

    /// Queries the SPSP endpoint of `input` (a payment pointer, an `https://` URL, or with
    /// `allow_http` an `http://` URL) for credentials. `receipts`: `Some(setup)` sends the
    /// Receipt-Nonce / Receipt-Secret headers (RFC 39).
    pub async fn resolve(
        &self,
        input: &str,
        receipts: Option<&ReceiptSetup>,
    ) -> Result<Resolved, SpspClientError> {
        let url = self.endpoint(input)?;
        let shown = url.to_string();
        match tokio::time::timeout(self.timeout, self.query(url, receipts)).await {
            Ok(resolved) => resolved,
            Err(_) => Err(SpspClientError::Http(format!(
                "GET {shown}: no complete answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    fn endpoint(&self, input: &str) -> Result<Url, PaymentPointerError> {
        payment_pointer::resolve_allowing_http(input, self.allow_http)
    }

    /// The query and its redirects, without the time limit.
    async fn query(
        &self,
        mut url: Url,
        receipts: Option<&ReceiptSetup>,
    ) -> Result<Resolved, SpspClientError> {
        let mut redirects = 0;
        loop {
            let mut request =
                Request::get(url.as_str()).header(ACCEPT, HeaderValue::from_static(spsp::ACCEPT));
            if let Some(setup) = receipts {
                for (name, value) in setup.to_headers() {
                    request = request.header(name, value);
                }
            }
            let request = request
                .body(Full::new(Bytes::new()))
                .map_err(|e| SpspClientError::Http(format!("GET {url}: {e}")))?;
            let response =
                self.client.request(request).await.map_err(|e| {
                    SpspClientError::Http(format!("GET {url}: {}", error_chain(&e)))
                })?;
            let status = response.status();
            let redirect = matches!(
                status,
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            );
            // A redirect without a Location has nowhere to go: it is reported as its status.
            if let (true, Some(location)) = (redirect, response.headers().get(LOCATION)) {
                if redirects == MAX_REDIRECTS {
                    return Err(SpspClientError::TooManyRedirects);
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|location| url.join(location).ok())
                    .ok_or_else(|| {
                        SpspClientError::Http(format!(
                            "{url} redirected to an invalid Location: {location:?}"
                        ))
                    })?;
                if !redirect_allowed(&url, &next, self.allow_http) {
                    return Err(SpspClientError::Http(format!(
                        "{url} redirected to {next}, which is not https"
                    )));
                }
                redirects += 1;
                url = next;
                url.set_fragment(None);
                continue;
            }
            if !status.is_success() {
                // The body only explains the status: one that cannot be read is left out.
                let body = read_body(response).await.unwrap_or_default();
                let body: String = String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(QUOTED_BODY_CHARS)
                    .collect();
                return Err(SpspClientError::Status {
                    status: status.as_u16(),
                    body,
                });
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let Some(protocol) = content_type.as_deref().and_then(protocol_of) else {
                return Err(SpspClientError::ContentType(
                    content_type.unwrap_or_else(|| "no content type".to_owned()),
                ));
            };
            let body = read_body(response).await?;
            let answer =
                SpspResponse::decode(&body).map_err(|e| SpspClientError::Body(e.to_string()))?;
            return Ok(Resolved {
                url,
                protocol,
                destination: answer.destination_account,
                shared_secret: answer.shared_secret,
                asset: answer.asset_info.map(|a| (a.code, a.scale)),
                receipts: answer.receipts_enabled == Some(true),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_serve::{self, ServeOptions};
    use crate::peer_account::NodeAddress;
    use crate::receiver::Receivers;
    use crate::spsp_server::{SpspAccount, SpspAccounts, SpspServer};
    use ilp::spsp::AssetInfo;
    use std::convert::Infallible;
    use std::time::Instant;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// Bounds every await of a test that the client's own timeout might not.
    const TEST_WAIT: Duration = Duration::from_secs(10);

    fn client(allow_http: bool, timeout: Duration) -> SpspClient {
        SpspClient::new(SpspClientOptions {
            timeout,
            allow_http,
            tls: crate::tls::trust_nothing_client_config().unwrap(),
        })
    }

    fn serve_options() -> ServeOptions {
        ServeOptions {
            h2: true,
            header_timeout: Duration::from_secs(5),
            tls: None,
            max_connections: 16,
        }
    }

    async fn resolve(
        client: &SpspClient,
        input: &str,
        receipts: Option<&ReceiptSetup>,
    ) -> Result<Resolved, SpspClientError> {
        tokio::time::timeout(TEST_WAIT, client.resolve(input, receipts))
            .await
            .expect("the client's timeout bounds a query")
    }

    /// The node's SPSP server for one account, `shop`, under `test.node`; its base URL.
    async fn node_server() -> (SpspServer, Receivers, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut accounts = SpspAccounts::default();
        accounts.accounts.insert(
            "shop".to_owned(),
            SpspAccount {
                segment: "shop".to_owned(),
                asset_code: "EUR".to_owned(),
                asset_scale: 2,
            },
        );
        let receivers = Receivers::new(&[1; 32]);
        let server = SpspServer::serve(
            listener,
            &serve_options(),
            receivers.clone(),
            NodeAddress::new(Some(Address::try_from("test.node").unwrap())),
            accounts,
            0,
        )
        .unwrap();
        let base = format!("http://{}", server.local_addr());
        (server, receivers, base)
    }

    fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body.into()))
            .unwrap()
    }

    fn redirect(status: u16, location: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header(LOCATION, location)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    fn stream_answer() -> Vec<u8> {
        SpspResponse::new(Address::try_from("example.receiver.abc").unwrap(), [7; 32]).encode()
    }

    /// Canned answers by path, for what the node's own server never says.
    fn canned(base: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if let Some(n) = path.strip_prefix("/hop/") {
            // `/hop/N` redirects N times (relative Locations, then an absolute path) to
            // `/stream`, with each of the four redirect statuses in turn.
            let n: u16 = n.parse().unwrap_or(1);
            let status = [301, 302, 307, 308][usize::from(n % 4)];
            let next = if n > 1 {
                (n - 1).to_string()
            } else {
                "/stream".to_owned()
            };
            return redirect(status, &next);
        }
        match path {
            "/stream" => {
                let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                if accept != Some(spsp::ACCEPT) {
                    return reply(406, "text/plain", "bad Accept");
                }
                reply(
                    200,
                    "application/spsp4+json; charset=utf-8",
                    stream_answer(),
                )
            }
            "/psk2" => {
                let mut answer =
                    SpspResponse::new(Address::try_from("example.psk2.xyz").unwrap(), [9; 32]);
                answer.asset_info = Some(AssetInfo {
                    code: "XRP".to_owned(),
                    scale: 9,
                });
                reply(200, "Application/SPSP+JSON", answer.encode())
            }
            "/html" => reply(200, "text/html; charset=utf-8", "<html></html>"),
            "/big" => reply(200, spsp::CONTENT_TYPE, vec![b' '; MAX_BODY_BYTES + 1]),
            "/short-secret" => reply(
                200,
                spsp::CONTENT_TYPE,
                r#"{"destination_account":"example.x","shared_secret":"AAAA"}"#,
            ),
            "/absolute" => redirect(307, &format!("{base}/stream")),
            "/no-location" => reply(302, "text/plain", ""),
            "/to-ftp" => redirect(301, "ftp://127.0.0.1/stream"),
            "/busy" => reply(503, "text/plain", "x".repeat(1000)),
            _ => reply(404, "text/plain", "not here"),
        }
    }

    async fn canned_server() -> (JoinHandle<()>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handler_base = base.clone();
        let task = http_serve::serve(listener, &serve_options(), move |req, _| {
            let response = canned(&handler_base, &req);
            async move { Ok::<_, Infallible>(response) }
        });
        (task, base)
    }

    #[tokio::test]
    async fn stream_credentials_from_the_nodes_own_server() {
        let (_server, receivers, base) = node_server().await;
        let client = client(true, TEST_WAIT);
        let resolved = resolve(&client, &format!("{base}/shop"), None)
            .await
            .unwrap();
        assert_eq!(resolved.url.as_str(), format!("{base}/shop"));
        assert_eq!(resolved.protocol, Protocol::Stream);
        assert!(resolved.destination.as_str().starts_with("test.node.shop."));
        assert_eq!((resolved.asset.clone(), resolved.receipts), (None, false));
        // The secret is the one the node fulfills that destination's packets with.
        let connection = receivers
            .keys()
            .open("shop", resolved.destination.as_str())
            .unwrap();
        assert_eq!(connection.shared_secret, resolved.shared_secret);
        assert_eq!(connection.protocol, Protocol::Stream);
        assert!(!format!("{resolved:?}").contains("shared_secret"));

        let setup = ReceiptSetup {
            nonce: [4; 16],
            secret: [6; 32],
        };
        let with_receipts = resolve(&client, &format!("{base}/shop"), Some(&setup))
            .await
            .unwrap();
        assert!(with_receipts.receipts);
        assert_ne!(with_receipts.shared_secret, resolved.shared_secret);
        let connection = receivers
            .keys()
            .open("shop", with_receipts.destination.as_str())
            .unwrap();
        assert_eq!(connection.receipts, Some(setup));
        // A clone shares the pool and answers the same way.
        let again = resolve(&client.clone(), &format!("{base}/shop"), None)
            .await
            .unwrap();
        assert_eq!(again.protocol, Protocol::Stream);
    }

    #[tokio::test]
    async fn psk2_answers_and_content_type_parameters() {
        let (_task, base) = canned_server().await;
        let client = client(true, TEST_WAIT);
        let psk2 = resolve(&client, &format!("{base}/psk2"), None)
            .await
            .unwrap();
        assert_eq!(psk2.protocol, Protocol::Psk2);
        assert_eq!(psk2.asset, Some(("XRP".to_owned(), 9)));
        assert_eq!(psk2.destination.as_str(), "example.psk2.xyz");
        assert_eq!(psk2.shared_secret, [9; 32]);
        // `; charset=utf-8` does not hide the type; the canned server also checks our Accept.
        let stream = resolve(&client, &format!("{base}/stream"), None)
            .await
            .unwrap();
        assert_eq!(stream.protocol, Protocol::Stream);
        assert_eq!(stream.shared_secret, [7; 32]);
        assert_eq!(stream.asset, None);
    }

    #[tokio::test]
    async fn inputs_that_are_refused_before_any_query() {
        use PaymentPointerError::*;
        let strict = client(false, TEST_WAIT);
        let lax = client(true, TEST_WAIT);
        let cases: &[(&SpspClient, &str, PaymentPointerError)] = &[
            (&strict, "http://127.0.0.1:1/shop", NotHttps),
            (
                &strict,
                "example.com/alice",
                InvalidUrl(url::ParseError::RelativeUrlWithoutBase),
            ),
            (&strict, "$", MissingHost),
            (&strict, "$example.com:443", Port),
            (&strict, "$alice@example.com", UserInfo),
            (&strict, "$example.com/a?b", Query),
            (&strict, "$example.com/a b", InvalidCharacter(' ')),
            (&lax, "http://user@127.0.0.1:1/shop", UserInfo),
            (&lax, "http://127.0.0.1:1/shop?x=1", Query),
            (&lax, "http://127.0.0.1:1/shop#x", Fragment),
            (&lax, "http://127.0.0.1:1/a b", InvalidCharacter(' ')),
            (&lax, "http://", InvalidUrl(url::ParseError::EmptyHost)),
            (&lax, "ftp://127.0.0.1/shop", NotHttps),
        ];
        for (client, input, expected) in cases {
            match resolve(client, input, None).await {
                Err(SpspClientError::BadInput(e)) => assert_eq!(e, *expected, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let e = resolve(&strict, "$example.com:443", None)
            .await
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("not a payment pointer or https URL: "));
    }

    #[tokio::test]
    async fn refusals_and_redirects() {
        let (_server, _receivers, node) = node_server().await;
        let (_task, base) = canned_server().await;
        let client = client(true, TEST_WAIT);

        let e = resolve(&client, &format!("{node}/nobody"), None)
            .await
            .unwrap_err();
        let SpspClientError::Status { status, body } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*status, 404);
        assert!(body.contains("InvalidReceiverError"), "{body}");
        assert_eq!(
            e.to_string(),
            "no such receiver: the SPSP server answered HTTP 404 InvalidReceiverError: \
             Invalid receiver ID"
        );
        match resolve(&client, &format!("{base}/busy"), None).await {
            Err(SpspClientError::Status { status: 503, body }) => {
                assert_eq!(body, "x".repeat(QUOTED_BODY_CHARS));
            }
            other => panic!("{other:?}"),
        }
        match resolve(&client, &format!("{base}/html"), None).await {
            Err(SpspClientError::ContentType(t)) => assert_eq!(t, "text/html; charset=utf-8"),
            other => panic!("{other:?}"),
        }
        for path in ["/big", "/short-secret"] {
            match resolve(&client, &format!("{base}{path}"), None).await {
                Err(SpspClientError::Body(_)) => {}
                other => panic!("{path}: {other:?}"),
            }
        }

        for (path, redirects) in [("/hop/1", 1), ("/absolute", 1), ("/hop/3", 3)] {
            let resolved = resolve(&client, &format!("{base}{path}"), None)
                .await
                .unwrap_or_else(|e| panic!("{path} ({redirects} redirects): {e}"));
            assert_eq!(resolved.url.as_str(), format!("{base}/stream"));
            assert_eq!(resolved.shared_secret, [7; 32]);
        }
        match resolve(&client, &format!("{base}/hop/4"), None).await {
            Err(SpspClientError::TooManyRedirects) => {}
            other => panic!("{other:?}"),
        }
        match resolve(&client, &format!("{base}/no-location"), None).await {
            Err(SpspClientError::Status { status: 302, .. }) => {}
            other => panic!("{other:?}"),
        }
        match resolve(&client, &format!("{base}/to-ftp"), None).await {
            Err(SpspClientError::Http(message)) => assert!(message.contains("ftp://"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_from_https_down_to_http_unless_allowed() {
        let url = |s: &str| Url::parse(s).unwrap();
        let https = url("https://a.example/x");
        let http = url("http://b.example/x");
        assert!(redirect_allowed(&https, &url("https://c.example/"), false));
        assert!(!redirect_allowed(&https, &http, false));
        assert!(redirect_allowed(&https, &http, true));
        assert!(redirect_allowed(&http, &https, false));
        assert!(!redirect_allowed(&https, &url("ftp://c.example/"), true));
        assert_eq!(
            protocol_of("application/spsp4+json;charset=utf-8"),
            Some(Protocol::Stream)
        );
        assert_eq!(protocol_of(" application/spsp+json "), Some(Protocol::Psk2));
        assert_eq!(protocol_of("application/json"), None);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // Connections complete in the kernel's backlog; nothing ever reads or answers them.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/shop", silent.local_addr().unwrap());
        let client = client(true, Duration::from_millis(300));
        let started = Instant::now();
        match resolve(&client, &url, None).await {
            Err(SpspClientError::Http(message)) => {
                assert!(message.contains("300 ms"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(silent);
    }
}
