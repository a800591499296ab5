//! ILP over HTTP (RFC 35). Each Prepare is the body of a POST to the peer's endpoint.
//!
//! - Sync mode (HTTP-OER-SYNC, draft 2): the Fulfill or Reject is the body of the 200 response.
//! - Async mode (HTTP-OER-ASYNC, as issue 4 defines it; `mode = "async"` with our
//!   `callback_url`): the POST carries `Callback-Url: <our callback_url>` and `Request-Id: <a
//!   fresh UUID-like id>`; the peer answers 202 Accepted at once and later POSTs the Fulfill or
//!   Reject (OER, `application/octet-stream`) to the callback URL with the same Request-Id and
//!   its bearer token. The first callback for an id resolves the send; a repeat, an unknown id
//!   or one whose Prepare has expired gets 400.
//!
//! - [`HttpLink`] (in [`client`]) is the outgoing half of one `http` account: it POSTs Prepares
//!   to the account's `outgoing_url` over a pooled connection (HTTP/1.1, or HTTP/2 with prior
//!   knowledge) and turns HTTP failures into ILP answers; in async mode it keeps the table of
//!   Prepares awaiting a callback ([`pending`]).
//! - [`HttpServer`] (in [`server`]) is the `[listeners.http]` socket: it serves every `http`
//!   account's `incoming_path` (and, in async mode, the path of its `callback_url`), checks the
//!   account's bearer token and hands the Prepare to the PeerAccount the account's
//!   [`HttpLink`] was attached to. A Prepare that comes with a `Callback-Url` is answered
//!   asynchronously whatever the account's own mode; one without is answered synchronously
//!   (so an async account still serves a sync peer).
//!
//! TLS (rustls, [`crate::tls`]): `https://` outgoing URLs, and `[listeners.http.tls]` on the
//! server, which offers ALPN `h2` and `http/1.1`. With client certificates on the listener a
//! certificate that names the account authenticates its requests (the rule is in [`server`]).

pub mod client;
pub mod pending;
pub mod server;

pub use client::{CallbackOutcome, HttpLink, HttpLinkOptions};
pub use server::{HttpServer, HttpServerError, HttpServerOptions, RequestCounts};

use crate::clock::Clock;
use crate::messages::AccountId;
use crate::tls::TlsError;
use ilp::config::Config;
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

/// Largest request or response body accepted (an ILP packet is at most ~32.8 KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The media type of every ILP packet body.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Async mode: where the answering peer POSTs the Fulfill or Reject.
pub const CALLBACK_URL: &str = "callback-url";

/// Async mode: names the Prepare a callback answers.
pub const REQUEST_ID: &str = "request-id";

/// Why an account's HTTP link cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpLinkError {
    #[error("account {0}: link.type is not \"http\"")]
    NotHttp(String),
    #[error("account {0}: mode = \"async\" needs callback_url (where the peer POSTs its answers)")]
    MissingCallbackUrl(String),
    #[error("account {account}: callback_url {url}: {reason}")]
    CallbackUrl {
        account: String,
        url: String,
        reason: String,
    },
    #[error("account {account}: outgoing_url {url}: {reason}")]
    OutgoingUrl {
        account: String,
        url: String,
        reason: String,
    },
    #[error("account {0}: outgoing_auth_token is not a valid HTTP header value")]
    InvalidToken(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("accounts.{0}.link.tls: applies only to an https:// outgoing_url")]
    TlsOnPlainUrl(String),
}

/// The [`HttpLink`] of every `http` account of `config`, by account id (other accounts are
/// skipped). Each link must be attached to its PeerAccount (`Node::start` does it) and served
/// by an [`HttpServer`] on the same links.
pub fn links_from_config(
    config: &Config,
    clock: Clock,
    options: &HttpLinkOptions,
) -> Result<BTreeMap<AccountId, HttpLink>, HttpLinkError> {
    let mut links = BTreeMap::new();
    for (id, account) in &config.accounts {
        if account.http_incoming_path(id).is_none() {
            continue;
        }
        let link = HttpLink::from_config(id, account, clock, options)?;
        links.insert(Arc::from(id.as_str()), link);
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ilp::config::LinkConfig;

    fn config(link: &str) -> Config {
        let text = format!(
            "[node]\nilp_address = \"test.a\"\n[listeners.http]\nbind = \"127.0.0.1:7769\"\n\
             [accounts.p]\nrelation = \"peer\"\nlink = {link}\n\
             [accounts.m]\nrelation = \"peer\"\nlink = {{ type = \"memory\" }}\n"
        );
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn build(c: &Config, id: &str) -> Result<HttpLink, HttpLinkError> {
        HttpLink::from_config(
            id,
            &c.accounts[id],
            Clock::starting_at(0),
            &HttpLinkOptions::default(),
        )
    }

    #[test]
    fn builds_links_for_http_accounts_only() {
        let c = config(
            r#"{ type = "http", outgoing_url = "http://127.0.0.1:1/ilp", incoming_auth_token = "t" }"#,
        );
        let links =
            links_from_config(&c, Clock::starting_at(0), &HttpLinkOptions::default()).unwrap();
        assert_eq!(links.keys().map(|k| &**k).collect::<Vec<_>>(), ["p"]);
        assert_eq!(links["p"].incoming_path(), "/accounts/p/ilp");
        assert_eq!(
            build(&c, "m").unwrap_err(),
            HttpLinkError::NotHttp("m".into())
        );
    }

    #[test]
    fn async_mode_needs_a_callback_url_served_at_its_path() {
        let c = config(
            r#"{ type = "http", outgoing_url = "http://x/ilp", mode = "async", callback_url = "http://me:9/peers/p/cb" }"#,
        );
        assert_eq!(build(&c, "p").unwrap().callback_path(), Some("/peers/p/cb"));
        // The config validation refuses these already; a hand-built config gets the same.
        let options = HttpLinkOptions::default();
        let with = |url: Option<&str>| {
            let mut account = c.accounts["p"].clone();
            if let LinkConfig::Http { callback_url, .. } = &mut account.link {
                *callback_url = url.map(|u| url::Url::parse(u).unwrap());
            }
            HttpLink::from_config("p", &account, Clock::starting_at(0), &options)
        };
        assert_eq!(
            with(None).unwrap_err(),
            HttpLinkError::MissingCallbackUrl("p".into())
        );
        assert!(matches!(
            with(Some("ftp://me/cb")).unwrap_err(),
            HttpLinkError::CallbackUrl { .. }
        ));
        // Sync mode serves no callback path.
        let c = config(r#"{ type = "http", outgoing_url = "http://x/ilp" }"#);
        assert_eq!(build(&c, "p").unwrap().callback_path(), None);
    }

    #[test]
    fn refuses_bad_tokens_and_bad_tls() {
        let c = config(
            r#"{ type = "http", outgoing_url = "https://x/ilp", tls = { ca_path = "/nonexistent/ca.pem" } }"#,
        );
        let e = build(&c, "p").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("accounts.p.link.tls.ca_path = /nonexistent/ca.pem: cannot read"),
            "{e}"
        );
        let c = config(
            r#"{ type = "http", outgoing_url = "http://x/ilp", tls = { ca_path = "/ca.pem" } }"#,
        );
        assert_eq!(
            build(&c, "p").unwrap_err(),
            HttpLinkError::TlsOnPlainUrl("p".into())
        );
        let c = config(
            r#"{ type = "http", outgoing_url = "http://x/ilp", outgoing_auth_token = "a\nb" }"#,
        );
        assert_eq!(
            build(&c, "p").unwrap_err(),
            HttpLinkError::InvalidToken("p".into())
        );
    }
}
