//! ILP over HTTP (RFC 35, draft 2: synchronous mode). Each Prepare is the body of a POST to the
//! peer's endpoint and the Fulfill or Reject is the body of the 200 response.
//!
//! - [`HttpLink`] (in [`client`]) is the outgoing half of one `http` account: it POSTs Prepares
//!   to the account's `outgoing_url` over a pooled connection (HTTP/1.1, or HTTP/2 with prior
//!   knowledge) and turns HTTP failures into ILP answers.
//! - [`HttpServer`] (in [`server`]) is the `[listeners.http]` socket: it serves every `http`
//!   account's `incoming_path`, checks the account's bearer token and hands the Prepare to the
//!   PeerAccount the account's [`HttpLink`] was attached to.
//!
//! Draft 3's asynchronous mode (`mode = "async"`: Callback-Url, Request-Id, 202 Accepted) is not
//! implemented; such accounts are refused at start with [`HttpLinkError::AsyncMode`].
//!
//! TLS (rustls, [`crate::tls`]): `https://` outgoing URLs, and `[listeners.http.tls]` on the
//! server, which offers ALPN `h2` and `http/1.1`. With client certificates on the listener a
//! certificate that names the account authenticates its requests (the rule is in [`server`]).

pub mod client;
pub mod server;

pub use client::{HttpLink, HttpLinkOptions};
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

/// Why an account's HTTP link cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpLinkError {
    #[error("account {0}: link.type is not \"http\"")]
    NotHttp(String),
    #[error("account {0}: mode = \"async\" (RFC 35 draft 3 callbacks) is not supported yet")]
    AsyncMode(String),
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
    fn refuses_async_mode_bad_tokens_and_bad_tls() {
        let c = config(
            r#"{ type = "http", outgoing_url = "http://x/ilp", mode = "async", callback_url = "http://me/cb" }"#,
        );
        assert_eq!(
            build(&c, "p").unwrap_err(),
            HttpLinkError::AsyncMode("p".into())
        );
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
