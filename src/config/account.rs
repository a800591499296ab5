//! `[accounts.<id>]`: one counterparty each: its relation, asset, link (how packets travel) and
//! policy (balance limits, packet size, rate limit, throughput, routes, dedup).

use super::sections::SecretString;
use crate::policy::{BalanceLimits, TokenBucketParams};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;
use url::Url;

/// `Url` written as a string, without needing the `url` crate's serde feature.
pub(crate) mod url_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid URL {s:?}: {e}")))
    }
}

/// `Option<Url>` as an optional string.
pub(crate) mod opt_url_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
        match url {
            Some(u) => s.serialize_some(u.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                Url::parse(&s)
                    .map_err(|e| serde::de::Error::custom(format!("invalid URL {s:?}: {e}")))
            })
            .transpose()
    }
}

/// What the counterparty is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// Upstream provider: gives us our address (IL-DCP) and the default route.
    Parent,
    /// Equal: routes are exchanged both ways.
    Peer,
    /// Customer: gets an address under ours.
    Child,
}

/// Whether ILP-over-HTTP replies come in the response (draft 2) or by callback (draft 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HttpMode {
    #[default]
    Sync,
    Async,
}

/// Client-side TLS for outgoing connections (custom CA, client certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientTlsConfig {
    /// PEM CA bundle to trust instead of the system roots.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate chain; needs `key_path`.
    pub cert_path: Option<PathBuf>,
    /// PEM key of `cert_path`.
    pub key_path: Option<PathBuf>,
}

impl ClientTlsConfig {
    fn is_empty(&self) -> bool {
        self.ca_path.is_none() && self.cert_path.is_none() && self.key_path.is_none()
    }
}

/// How packets travel to and from the account (`link.type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LinkConfig {
    /// The peer connects to our `[listeners.btp]` and authenticates with these credentials.
    BtpServer {
        #[serde(skip_serializing_if = "Option::is_none")]
        auth_username: Option<String>,
        auth_token: SecretString,
    },
    /// We connect to the peer's BTP server at `url` (`ws://` or `wss://`).
    BtpClient {
        #[serde(with = "url_serde")]
        url: Url,
        #[serde(skip_serializing_if = "Option::is_none")]
        auth_username: Option<String>,
        auth_token: SecretString,
        #[serde(skip_serializing_if = "ClientTlsConfig::is_empty")]
        tls: ClientTlsConfig,
    },
    /// ILP over HTTP: the peer POSTs to our `[listeners.http]` at `incoming_path`; we POST to
    /// `outgoing_url`.
    Http {
        #[serde(skip_serializing_if = "Option::is_none")]
        incoming_path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        incoming_auth_token: Option<SecretString>,
        #[serde(with = "url_serde")]
        outgoing_url: Url,
        #[serde(skip_serializing_if = "Option::is_none")]
        outgoing_auth_token: Option<SecretString>,
        mode: HttpMode,
        #[serde(skip_serializing_if = "Option::is_none", with = "opt_url_serde")]
        callback_url: Option<Url>,
        #[serde(skip_serializing_if = "ClientTlsConfig::is_empty")]
        tls: ClientTlsConfig,
        /// Over `http://`: send with HTTP/2 prior knowledge (h2c) instead of HTTP/1.1. Over
        /// `https://` the version is negotiated (ALPN) either way.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        http2: bool,
    },
    /// An in-process link (tests, simulation).
    Memory,
    /// No link: the money is held on this node (a wallet, a merchant, a paid API). The node
    /// itself answers the packets addressed to the account ([`ReceiverConfig`]).
    Local,
}

/// The kind of link, as written in `link.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkType {
    BtpServer,
    BtpClient,
    Http,
    Memory,
    Local,
}

impl LinkType {
    fn name(self) -> &'static str {
        match self {
            LinkType::BtpServer => "btp-server",
            LinkType::BtpClient => "btp-client",
            LinkType::Http => "http",
            LinkType::Memory => "memory",
            LinkType::Local => "local",
        }
    }
}

/// Every `link` key of every type, so unknown keys are reported by path and keys of the wrong
/// type are reported together with what is missing.
#[derive(Deserialize)]
struct RawLink {
    #[serde(rename = "type")]
    kind: LinkType,
    #[serde(default, with = "opt_url_serde")]
    url: Option<Url>,
    auth_username: Option<String>,
    auth_token: Option<SecretString>,
    incoming_path: Option<String>,
    incoming_auth_token: Option<SecretString>,
    #[serde(default, with = "opt_url_serde")]
    outgoing_url: Option<Url>,
    outgoing_auth_token: Option<SecretString>,
    mode: Option<HttpMode>,
    #[serde(default, with = "opt_url_serde")]
    callback_url: Option<Url>,
    tls: Option<ClientTlsConfig>,
    http2: Option<bool>,
}

impl RawLink {
    fn into_link(self) -> Result<LinkConfig, String> {
        let kind = self.kind;
        let mut problems = Vec::new();
        let mut not_for = |present: bool, key: &str| {
            if present {
                problems.push(format!(
                    "`{key}` does not apply to type \"{}\"",
                    kind.name()
                ));
            }
        };
        match kind {
            LinkType::BtpServer | LinkType::Memory | LinkType::Local => {
                not_for(self.url.is_some(), "url");
                not_for(self.tls.is_some(), "tls");
            }
            LinkType::BtpClient | LinkType::Http => {}
        }
        match kind {
            LinkType::Http => {
                not_for(self.url.is_some(), "url");
                not_for(self.auth_username.is_some(), "auth_username");
                not_for(self.auth_token.is_some(), "auth_token");
            }
            _ => {
                not_for(self.incoming_path.is_some(), "incoming_path");
                not_for(self.incoming_auth_token.is_some(), "incoming_auth_token");
                not_for(self.outgoing_url.is_some(), "outgoing_url");
                not_for(self.outgoing_auth_token.is_some(), "outgoing_auth_token");
                not_for(self.mode.is_some(), "mode");
                not_for(self.callback_url.is_some(), "callback_url");
                not_for(self.http2.is_some(), "http2");
            }
        }
        if matches!(kind, LinkType::Memory | LinkType::Local) {
            not_for(self.auth_username.is_some(), "auth_username");
            not_for(self.auth_token.is_some(), "auth_token");
        }
        let mut missing = |present: bool, key: &str| {
            if !present {
                problems.push(format!("type \"{}\" needs `{key}`", kind.name()));
            }
        };
        match kind {
            LinkType::BtpServer => missing(self.auth_token.is_some(), "auth_token"),
            LinkType::BtpClient => {
                missing(self.url.is_some(), "url");
                missing(self.auth_token.is_some(), "auth_token");
            }
            LinkType::Http => missing(self.outgoing_url.is_some(), "outgoing_url"),
            LinkType::Memory | LinkType::Local => {}
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let missing = || "internal: required link key vanished".to_string();
        Ok(match kind {
            LinkType::BtpServer => LinkConfig::BtpServer {
                auth_username: self.auth_username,
                auth_token: self.auth_token.ok_or_else(missing)?,
            },
            LinkType::BtpClient => LinkConfig::BtpClient {
                url: self.url.ok_or_else(missing)?,
                auth_username: self.auth_username,
                auth_token: self.auth_token.ok_or_else(missing)?,
                tls: self.tls.unwrap_or_default(),
            },
            LinkType::Http => LinkConfig::Http {
                incoming_path: self.incoming_path,
                incoming_auth_token: self.incoming_auth_token,
                outgoing_url: self.outgoing_url.ok_or_else(missing)?,
                outgoing_auth_token: self.outgoing_auth_token,
                mode: self.mode.unwrap_or_default(),
                callback_url: self.callback_url,
                tls: self.tls.unwrap_or_default(),
                http2: self.http2.unwrap_or(false),
            },
            LinkType::Memory => LinkConfig::Memory,
            LinkType::Local => LinkConfig::Local,
        })
    }
}

impl<'de> Deserialize<'de> for LinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawLink::deserialize(d)?
            .into_link()
            .map_err(serde::de::Error::custom)
    }
}

impl LinkConfig {
    /// The `link.type` of this link.
    pub fn link_type(&self) -> LinkType {
        match self {
            LinkConfig::BtpServer { .. } => LinkType::BtpServer,
            LinkConfig::BtpClient { .. } => LinkType::BtpClient,
            LinkConfig::Http { .. } => LinkType::Http,
            LinkConfig::Memory => LinkType::Memory,
            LinkConfig::Local => LinkType::Local,
        }
    }

    /// Whether this is a BTP link (server or client side).
    pub fn is_btp(&self) -> bool {
        matches!(
            self,
            LinkConfig::BtpServer { .. } | LinkConfig::BtpClient { .. }
        )
    }
}

/// `[accounts.<id>.balance]`: limits in the account's base units, from the connector's point of
/// view (positive: the counterparty owes us). See [`crate::policy::balance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceConfig {
    /// Lowest balance outgoing packets may reach; absent: unbounded.
    #[serde(default)]
    pub minimum: Option<i64>,
    /// Highest balance incoming packets may reach (required, as in the JS connector).
    pub maximum: i64,
    /// Settle when the balance falls below this; absent: never settle.
    #[serde(default)]
    pub settle_threshold: Option<i64>,
    /// Balance a settlement brings the account back to.
    #[serde(default)]
    pub settle_to: i64,
}

impl BalanceConfig {
    /// The limits as the policy module takes them.
    pub fn limits(&self) -> BalanceLimits {
        BalanceLimits {
            minimum: self.minimum,
            maximum: Some(self.maximum),
            settle_threshold: self.settle_threshold,
            settle_to: self.settle_to,
        }
    }
}

/// `[accounts.<id>.rate_limit]`: incoming packets per interval (JS defaults: 10 000 a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// ms per `refill_count` tokens.
    #[serde(default = "RateLimitConfig::default_refill_period_ms")]
    pub refill_period_ms: u64,
    #[serde(default = "RateLimitConfig::default_refill_count")]
    pub refill_count: u64,
    /// Burst size; absent: `refill_count`.
    #[serde(default)]
    pub capacity: Option<u64>,
}

fn default_true() -> bool {
    true
}

impl RateLimitConfig {
    fn default_refill_period_ms() -> u64 {
        TokenBucketParams::RATE_LIMIT_DEFAULT.refill_period_ms
    }
    fn default_refill_count() -> u64 {
        TokenBucketParams::RATE_LIMIT_DEFAULT.refill_count
    }

    /// The token bucket this describes, or `None` when disabled.
    pub fn bucket(&self) -> Option<TokenBucketParams> {
        self.enabled.then_some(TokenBucketParams {
            refill_period_ms: self.refill_period_ms,
            refill_count: self.refill_count,
            capacity: self.capacity.unwrap_or(self.refill_count),
        })
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            refill_period_ms: Self::default_refill_period_ms(),
            refill_count: Self::default_refill_count(),
            capacity: None,
        }
    }
}

/// `[accounts.<id>.throughput]`: amount per second, each direction; absent: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThroughputConfig {
    #[serde(default)]
    pub incoming_amount_per_second: Option<u64>,
    #[serde(default)]
    pub outgoing_amount_per_second: Option<u64>,
}

impl ThroughputConfig {
    /// Bucket for incoming Prepares, when limited.
    pub fn incoming_bucket(&self) -> Option<TokenBucketParams> {
        self.incoming_amount_per_second.map(|a| {
            TokenBucketParams::throughput(a, TokenBucketParams::THROUGHPUT_REFILL_PERIOD_MS)
        })
    }
    /// Bucket for outgoing Prepares, when limited.
    pub fn outgoing_bucket(&self) -> Option<TokenBucketParams> {
        self.outgoing_amount_per_second.map(|a| {
            TokenBucketParams::throughput(a, TokenBucketParams::THROUGHPUT_REFILL_PERIOD_MS)
        })
    }
}

/// `[accounts.<id>.dedup]`: as a next hop, identical Prepares from different accounts share one
/// send while in flight, and a copy of one already paid is refused. Nothing to tune but on/off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { enabled: true }
    }
}

/// `[accounts.<id>.settlement]`: how the balance with this account is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SettlementConfig {
    /// The built-in bilateral settlement over the link itself (`peer.settle`): when the
    /// balance falls below `balance.settle_threshold` we tell the peer we paid it, and we book
    /// what the peer tells us it paid us. Nothing moves money outside the books, so each side
    /// takes the other's word: only for two nodes run by the same operator. Default false: the
    /// account's `peer.settle` requests are rejected and we never send it one.
    #[serde(default)]
    pub bilateral: bool,
}

/// `[accounts.<id>.receiver]`: how a `local` account is paid. Every `local` account receives;
/// the table only changes the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverConfig {
    /// The most the account may have received and not paid out (the balance may fall to
    /// `-maximum`); past it senders get a Reject their STREAM library understands. Absent:
    /// unbounded. Not together with `balance.minimum`, which says the same.
    #[serde(default)]
    pub maximum: Option<u64>,
    /// How many of its latest payment events the account's log keeps (older ones are deleted,
    /// but never one its webhook has not delivered yet); 0 keeps them all.
    #[serde(default = "ReceiverConfig::default_keep_events")]
    pub keep_events: u64,
    /// Where every payment event of the account is POSTed, signed ([`WebhookConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

impl ReceiverConfig {
    fn default_keep_events() -> u64 {
        1_000_000
    }
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            maximum: None,
            keep_events: Self::default_keep_events(),
            webhook: None,
        }
    }
}

/// `[accounts.<id>.receiver.webhook]`: the account's payment events are POSTed to `url` as a
/// JSON array, in order, each at least once (a durable cursor moves on at a 2xx; anything else
/// is retried with backoff), signed with `secret`: `Ilp-Signature: t=<unix seconds>,v1=<hex
/// HMAC-SHA256(secret, "<t>.<body>")>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    #[serde(
        serialize_with = "url_serde::serialize",
        deserialize_with = "deserialize_url"
    )]
    pub url: Url,
    pub secret: SecretString,
}

fn deserialize_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let s = String::deserialize(d)?;
    Url::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid URL {s:?}: {e}")))
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountConfig {
    pub relation: Relation,
    /// Asset code for the rate backend; absent in the file: the node's. (The serde default is
    /// only a stand-in: the loader fills in the node's before deserializing.)
    #[serde(default = "super::sections::default_asset_code")]
    pub asset_code: String,
    /// Asset scale; absent in the file: the node's.
    #[serde(default = "super::sections::default_asset_scale")]
    pub asset_scale: u8,
    /// Children only: the segment appended to our address; absent: the account id.
    #[serde(default)]
    pub ilp_address_segment: Option<String>,
    pub link: LinkConfig,
    /// Limits of the account's balance. Absent: the balance is kept all the same (durable,
    /// shown by the admin API), with no limit on either side and no settlement.
    #[serde(default)]
    pub balance: Option<BalanceConfig>,
    /// Largest incoming Prepare amount (F08 above it); absent: unlimited.
    #[serde(default)]
    pub max_packet_amount: Option<u64>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub throughput: ThroughputConfig,
    /// Broadcast our routes to this account; absent: not to children, to everyone else.
    #[serde(default)]
    pub send_routes: Option<bool>,
    /// Accept route broadcasts from this account; absent: not from children, from others.
    #[serde(default)]
    pub receive_routes: Option<bool>,
    /// BTP links only: retry unanswered requests with the same id (BTP/2.0-I).
    #[serde(default)]
    pub btp_idempotent: bool,
    #[serde(default)]
    pub dedup: DedupConfig,
    /// How the balance is settled; default: not at all.
    #[serde(default)]
    pub settlement: SettlementConfig,
    /// The RFC 38 settlement engine that settles with this account (e.g.
    /// `http://127.0.0.1:3000`): we ask it to pay when the balance falls below
    /// `balance.settle_threshold`, and it credits what the peer paid through
    /// `[listeners.settlement]`. Not with `settlement.bilateral`.
    #[serde(default, with = "opt_url_serde")]
    pub settlement_engine_url: Option<Url>,
    /// `local` accounts only: how they are paid; absent: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<ReceiverConfig>,
}

impl AccountConfig {
    /// Whether routes are broadcast to this account (default by relation, as the JS connector).
    pub fn sends_routes(&self) -> bool {
        self.send_routes.unwrap_or(self.relation != Relation::Child)
    }

    /// Whether route broadcasts from this account are processed.
    pub fn receives_routes(&self) -> bool {
        self.receive_routes
            .unwrap_or(self.relation != Relation::Child)
    }

    /// The address segment of a child account (its id unless set); `None` for others.
    pub fn child_segment<'a>(&'a self, id: &'a str) -> Option<&'a str> {
        (self.relation == Relation::Child)
            .then(|| self.ilp_address_segment.as_deref().unwrap_or(id))
    }

    /// Whether an RFC 38 settlement engine settles with this account.
    pub fn settles_with_engine(&self) -> bool {
        self.settlement_engine_url.is_some()
    }

    /// Whether `peer.settle` (the built-in bilateral settlement) runs with this account.
    pub fn settles_bilaterally(&self) -> bool {
        self.settlement.bilateral
    }

    /// Balance limits; none at all (and no settlement) without a `[balance]` table. A
    /// receiver's `maximum` is its balance's minimum: money received lowers the balance.
    pub fn balance_limits(&self) -> BalanceLimits {
        let mut limits = self
            .balance
            .as_ref()
            .map_or_else(BalanceLimits::default, BalanceConfig::limits);
        if let Some(maximum) = self.receiver_maximum() {
            limits.minimum = Some(i64::try_from(maximum).map_or(i64::MIN, |m| -m));
        }
        // A local account's money is what it received (its balance below zero): it may pay
        // that much and no more, unless its [balance] says otherwise.
        if self.is_local() && limits.maximum.is_none() {
            limits.maximum = Some(0);
        }
        limits
    }

    /// Whether the node itself holds this account's money and answers its packets.
    pub fn is_local(&self) -> bool {
        matches!(self.link, LinkConfig::Local)
    }

    /// How many payment events a local account keeps (0: all).
    pub fn keep_events(&self) -> u64 {
        self.receiver
            .as_ref()
            .map_or(ReceiverConfig::default().keep_events, |r| r.keep_events)
    }

    /// A receiver's `maximum`, when it has one.
    pub fn receiver_maximum(&self) -> Option<u64> {
        self.receiver.as_ref().and_then(|r| r.maximum)
    }

    /// The HTTP path an `http` account's peer POSTs to: `incoming_path`, or
    /// `/accounts/<id>/ilp`.
    pub fn http_incoming_path(&self, id: &str) -> Option<String> {
        match &self.link {
            LinkConfig::Http { incoming_path, .. } => Some(
                incoming_path
                    .clone()
                    .unwrap_or_else(|| format!("/accounts/{id}/ilp")),
            ),
            _ => None,
        }
    }
}
