//! SIGHUP: applies a re-read `config.toml` to the running node. Accounts added get their links
//! (a new account on the BTP or HTTP listener, or a client link); accounts removed lose theirs;
//! accounts whose link settings changed get a new one; everything else (limits, policies,
//! routes, rates, broadcast settings) goes to the actors through [`Node::reload`]. Links of
//! accounts whose link settings did not change are not touched, so their connections stay up.
//! Sections read only at start (`[listeners]`, `[store]`, `[log]`) keep their running values
//! and are reported as waiting for a restart.

use crate::clock::Clock;
use crate::link::btp_ws::{
    btp_client_link, btp_server_credentials, BtpLinks, BtpOptions, BtpSetupError,
};
use crate::link::http::{HttpLink, HttpLinkError, HttpLinkOptions, HttpServer, HttpServerError};
use crate::link::{Link, UnconnectedLink};
use crate::messages::AccountId;
use crate::node::{Node, NodeError};
use ilp::config::{Config, ConfigChanges, LinkConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("accounts.{0}: a btp-server link needs [listeners.btp] at start (restart to add it)")]
    NoBtpListener(String),
    #[error("accounts.{0}: an http link needs [listeners.http] at start (restart to add it)")]
    NoHttpListener(String),
    #[error(transparent)]
    Btp(#[from] BtpSetupError),
    #[error(transparent)]
    Http(#[from] HttpLinkError),
    #[error(transparent)]
    HttpServer(#[from] HttpServerError),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// The node's links and listeners, as `run` keeps them.
pub struct LinkSet<'a> {
    pub btp: &'a mut BtpLinks,
    pub http: Option<&'a HttpServer>,
    pub clock: Clock,
    pub btp_options: &'a BtpOptions,
}

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// The configuration now in force: the new one, with the start-only sections of the old.
    pub config: Config,
    pub changes: ConfigChanges,
}

/// Applies `new` over `current`. On an error nothing has been applied to the actors; links of
/// accounts being added may have been prepared (they carry no traffic until attached).
pub async fn apply(
    current: &Config,
    new: Config,
    node: &mut Node,
    links: LinkSet<'_>,
) -> Result<Reloaded, ReloadError> {
    let changes = ConfigChanges::between(current, &new);
    let mut effective = new;
    effective.listeners = current.listeners.clone();
    effective.store = current.store.clone();
    effective.log = current.log.clone();
    // The paid proxy takes new prices; the rest of its section waits for a restart.
    effective.paid_http = match (&current.paid_http, &effective.paid_http) {
        (Some(running), Some(read)) => Some(ilp::config::PaidHttpConfig {
            routes: read.routes.clone(),
            default_price: read.default_price,
            ..running.clone()
        }),
        _ => current.paid_http.clone(),
    };
    // The runtime's threads were made at start.
    effective.node.io_threads = current.node.io_threads;
    let LinkSet {
        btp,
        http,
        clock,
        btp_options,
    } = links;

    // Checks and client-side links first: they change nothing outside this function.
    let incoming: Vec<&String> = changes.added.iter().chain(&changes.relinked).collect();
    let mut new_links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
    let mut served_btp = Vec::new();
    let mut served_http = Vec::new();
    for id in &incoming {
        let Some(account) = effective.accounts.get(id.as_str()) else {
            continue;
        };
        let key: AccountId = Arc::from(id.as_str());
        match &account.link {
            LinkConfig::BtpServer { .. } => {
                if btp.server.is_none() {
                    return Err(ReloadError::NoBtpListener((*id).clone()));
                }
                if let Some(credentials) = btp_server_credentials(account) {
                    served_btp.push((key, credentials));
                }
            }
            LinkConfig::BtpClient { .. } => {
                if let Some(link) = btp_client_link(id, account, btp_options)? {
                    new_links.insert(key, Arc::new(link));
                }
            }
            LinkConfig::Http { .. } => {
                let link = HttpLink::from_config(id, account, clock, &HttpLinkOptions::default())?;
                link.set_node_address(node.address.clone());
                if account.http_incoming_path(id).is_some() {
                    if http.is_none() {
                        return Err(ReloadError::NoHttpListener((*id).clone()));
                    }
                    served_http.push(link.clone());
                }
                new_links.insert(key, Arc::new(link));
            }
            // A local account's packets are answered by the Router; its link never carries one.
            LinkConfig::Memory | LinkConfig::Local => {
                new_links.insert(key, Arc::new(UnconnectedLink));
            }
        }
    }

    // The listeners: accounts that left or changed their link stop being served there.
    for id in changes.removed.iter().chain(&changes.relinked) {
        let Some(before) = current.accounts.get(id) else {
            continue;
        };
        match &before.link {
            LinkConfig::BtpServer { .. } => {
                // A btp-server account that stays one is replaced by `add_account` below.
                let stays = effective
                    .accounts
                    .get(id)
                    .is_some_and(|a| matches!(a.link, LinkConfig::BtpServer { .. }));
                if !stays {
                    if let Some(server) = &btp.server {
                        server.remove_account(id);
                    }
                }
            }
            LinkConfig::Http { .. } => {
                if let Some(server) = http {
                    server.remove_account(id);
                }
            }
            LinkConfig::BtpClient { .. } | LinkConfig::Memory | LinkConfig::Local => {}
        }
        btp.links.remove(id.as_str());
    }
    for link in served_http {
        if let Some(server) = http {
            server.add_account(link)?;
        }
    }
    if let Some(server) = &btp.server {
        for (id, credentials) in served_btp {
            let link: Arc<dyn Link> = Arc::new(server.add_account(id.clone(), credentials));
            btp.links.insert(id.clone(), link.clone());
            new_links.insert(id, link);
        }
    }

    node.reload(&effective, &changes, new_links).await?;
    Ok(Reloaded {
        config: effective,
        changes,
    })
}
