//! What every HTTP listener of the node shares (ILP over HTTP, SPSP): one socket serving
//! HTTP/1.1 and HTTP/2 (prior knowledge in clear text, ALPN under TLS) through hyper-util's auto
//! builder, with a cap on connections and a deadline on the TLS handshake.

use crate::tls::{self, ServerTls};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How a listener serves connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Accept HTTP/2 besides HTTP/1.1.
    pub h2: bool,
    /// Longest an HTTP/1.1 client may take to send its request head, and a TLS handshake.
    pub header_timeout: Duration,
    /// TLS on the socket; `None`: plain TCP.
    pub tls: Option<ServerTls>,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
}

/// Serves `listener` with `handler` (any response body: whole, or streamed as a proxy does)
/// until the returned task is aborted (which closes every
/// connection). `handler` gets each request and the DNS names of the client's verified
/// certificate (empty without one).
pub fn serve<H, F, B>(listener: TcpListener, options: &ServeOptions, handler: H) -> JoinHandle<()>
where
    H: Fn(Request<Incoming>, Arc<[String]>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = if options.h2 {
        builder
    } else {
        builder.http1_only()
    };
    let tls = options
        .tls
        .as_ref()
        .map(|t| (t.acceptor(), options.header_timeout));
    tokio::spawn(accept_loop(
        listener,
        Arc::new(builder),
        tls,
        options.max_connections,
        handler,
    ))
}

async fn accept_loop<H, F, B>(
    listener: TcpListener,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
    max_connections: usize,
    handler: H,
) where
    H: Fn(Request<Incoming>, Arc<[String]>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Finished connections are reaped below, so `len` counts live ones.
                if connections.len() >= max_connections {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                let handler = handler.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    // A connection error (TLS handshake included) concerns that client only.
                    let Some((acceptor, timeout)) = tls else {
                        let peer: Arc<[String]> = Arc::from([]);
                        let service = service_fn(move |req| handler(req, peer.clone()));
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        return;
                    };
                    let Ok(Ok(stream)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    // Only a certificate the handshake verified is ever present here.
                    let peer: Arc<[String]> = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(tls::cert_dns_names)
                        .unwrap_or_default()
                        .into();
                    let service = service_fn(move |req| handler(req, peer.clone()));
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// SHA-256 of a bearer token, kept instead of the token so comparing costs the same whatever
/// its length.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Whether `headers` carry `Authorization: Bearer <token>` whose digest is `expected`
/// (compared in constant time).
pub fn bearer_matches(headers: &hyper::HeaderMap, expected: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(token_digest(given).ct_eq(expected))
}
