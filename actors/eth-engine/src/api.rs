//! The RFC 38 API the connector calls (HTTP/1.1 and HTTP/2 with prior knowledge, loopback):
//!
//! | endpoint | what it does |
//! |---|---|
//! | `POST /accounts` `{"id"}` | tells the engine about an account (201, also when it knew it); it then asks the peer's engine for its address |
//! | `DELETE /accounts/<id>` | forgets the account (204); payments already queued are still made |
//! | `POST /accounts/<id>/settlements` `{"amount","scale"}` + `Idempotency-Key` | queues a payment to the peer (201 with the quantity); the same key again: the same answer; another quantity under it: 409 |
//! | `POST /accounts/<id>/messages` | a message from the peer's engine: `{"type":"address","address":"0x..."}`, answered with ours |

use crate::engine::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request};
use ilp::rfc38::Quantity;
use ilp_actors::http_serve::{self, ServeOptions};
use ilp_actors::settlement_api::{account_path, answer, read_body, refuse_browser};
use ilp_actors::settlement_engine::ApiAnswer;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves `engine`'s API on `listener` until the task is aborted.
pub fn serve(listener: TcpListener, engine: Arc<Engine>) -> JoinHandle<()> {
    let options = ServeOptions {
        h2: true,
        header_timeout: Duration::from_secs(10),
        tls: None,
        max_connections: 64,
    };
    http_serve::serve(listener, &options, move |request, _peer| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(answer(route(&engine, request).await)) }
    })
}

#[derive(Deserialize)]
struct NewAccount {
    id: String,
}

async fn route(engine: &Arc<Engine>, request: Request<Incoming>) -> ApiAnswer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let expected = match method {
        Method::POST if path.ends_with("/messages") => "application/octet-stream",
        Method::POST => "application/json",
        // Nothing to check of a body; a browser's Origin is still refused.
        _ => "",
    };
    if let Some(refused) = refuse_browser(request.headers(), expected) {
        return refused;
    }
    let key = request
        .headers()
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match read_body(request.into_body()).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let not_allowed = || ApiAnswer::problem(405, "Method Not Allowed", "see the API table");
    if path == "/accounts" {
        if method != Method::POST {
            return not_allowed();
        }
        return match serde_json::from_slice::<NewAccount>(&body) {
            Ok(a) if !a.id.is_empty() => engine.create_account(&a.id).await,
            _ => ApiAnswer::problem(400, "Bad account", "the body must be {\"id\": \"<id>\"}"),
        };
    }
    let Some((id, what)) = account_path(&path) else {
        return ApiAnswer::problem(404, "Not Found", "no such endpoint");
    };
    match (what, method) {
        (None, Method::DELETE) => engine.delete_account(&id).await,
        (Some("settlements"), Method::POST) => match serde_json::from_slice::<Quantity>(&body) {
            Ok(q) => engine.settle(&id, key.as_deref(), &q).await,
            Err(e) => ApiAnswer::problem(400, "Bad quantity", &e.to_string()),
        },
        (Some("messages"), Method::POST) => engine.message(&id, &body).await,
        (None | Some("settlements") | Some("messages"), _) => not_allowed(),
        _ => ApiAnswer::problem(404, "Not Found", "no such endpoint"),
    }
}
