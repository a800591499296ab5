//! The node-wide sections of `config.toml`: `[node]`, `[rates]`, `[routing]`, `[broadcast]`,
//! `[listeners]`, `[store]` and `[log]`, with their defaults (those of the JS connector where it
//! has one).

use crate::packet::Address;
use crate::rates::{Rate, Spread};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A string that must not end up in logs: `Debug` prints `"***"`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A 32-byte secret written as 64 hex digits or as standard base64.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl Secret32 {
    /// Parses 64 hex digits or base64 (standard alphabet, padded or not) of exactly 32 bytes.
    pub fn parse(s: &str) -> Result<Secret32, String> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut out = [0u8; 32];
            for (i, chunk) in s.as_bytes().chunks_exact(2).enumerate() {
                let hi = (chunk[0] as char).to_digit(16).unwrap_or(0);
                let lo = (chunk[1] as char).to_digit(16).unwrap_or(0);
                if let Some(slot) = out.get_mut(i) {
                    *slot = (hi * 16 + lo) as u8;
                }
            }
            return Ok(Secret32(out));
        }
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(s)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
            .map_err(|_| "expected 64 hex digits or base64 of 32 bytes".to_string())?;
        <[u8; 32]>::try_from(decoded.as_slice())
            .map(Secret32)
            .map_err(|_| format!("decodes to {} bytes; expected 32", decoded.len()))
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(***)")
    }
}

impl Serialize for Secret32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for Secret32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Secret32::parse(&s).map_err(serde::de::Error::custom)
    }
}

pub(super) fn default_asset_code() -> String {
    "USD".to_string()
}
pub(super) fn default_asset_scale() -> u8 {
    9
}
fn default_spread() -> Spread {
    // 0.002 is the JS connector's default; 1/500 is exact.
    Spread::new(Rate::new(1, 500).unwrap_or(Rate::ZERO)).unwrap_or(Spread::ZERO)
}
fn default_true() -> bool {
    true
}

/// `[node]`: who this connector is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Our ILP address. Absent: learned from a parent over IL-DCP at start-up.
    #[serde(default)]
    pub ilp_address: Option<Address>,
    /// With no `ilp_address` and several parents: the parent account to ask. Default: the only
    /// parent.
    #[serde(default)]
    pub ilp_address_inherit_from: Option<String>,
    /// Asset of the node itself (its own STREAM receiver and echo); accounts default to it.
    #[serde(default = "default_asset_code")]
    pub asset_code: String,
    /// Scale of `asset_code`.
    #[serde(default = "default_asset_scale")]
    pub asset_scale: u8,
    /// Seed for route-broadcast auth values; absent: generated at start.
    #[serde(default)]
    pub routing_secret: Option<Secret32>,
    /// Seed of every receiving account's payment credentials (32 bytes, hex or base64): the
    /// shared secrets handed out over SPSP are derived from it and a token in the address, so
    /// changing it invalidates every credential given out. Absent: drawn once and kept in the
    /// store.
    #[serde(default)]
    pub receiver_secret: Option<Secret32>,
    /// Fraction taken off every conversion, as a decimal string.
    #[serde(default = "default_spread")]
    pub spread: Spread,
    /// Time budgeted per hop to pass a Fulfill back upstream (ms).
    #[serde(default = "NodeConfig::default_min_message_window_ms")]
    pub min_message_window_ms: u64,
    /// Longest time we hold funds for an outgoing Prepare (ms).
    #[serde(default = "NodeConfig::default_max_hold_time_ms")]
    pub max_hold_time_ms: u64,
    /// Whether a packet may be routed back to the account it came from.
    #[serde(default = "default_true")]
    pub reflect_payments: bool,
    /// How long start-up waits for accounts to connect before going on (ms).
    #[serde(default = "NodeConfig::default_initial_connect_timeout_ms")]
    pub initial_connect_timeout_ms: u64,
    /// Threads for the links' socket I/O beside the actors' thread; 0 runs the links on the
    /// actors' thread too (no hand-offs between threads per packet). Read at start only.
    #[serde(default)]
    pub io_threads: u16,
}

impl NodeConfig {
    fn default_min_message_window_ms() -> u64 {
        1_000
    }
    fn default_max_hold_time_ms() -> u64 {
        30_000
    }
    fn default_initial_connect_timeout_ms() -> u64 {
        10_000
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            ilp_address: None,
            ilp_address_inherit_from: None,
            asset_code: default_asset_code(),
            asset_scale: default_asset_scale(),
            routing_secret: None,
            receiver_secret: None,
            spread: default_spread(),
            min_message_window_ms: Self::default_min_message_window_ms(),
            max_hold_time_ms: Self::default_max_hold_time_ms(),
            reflect_payments: true,
            initial_connect_timeout_ms: Self::default_initial_connect_timeout_ms(),
            io_threads: 0,
        }
    }
}

/// Which rate backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RateBackendKind {
    /// Rate 1 between every pair of assets (scales and spread still apply).
    #[default]
    OneToOne,
    /// The `[rates.static]` table.
    Static,
}

/// `[rates]`: where exchange rates come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RatesConfig {
    #[serde(default)]
    pub backend: RateBackendKind,
    /// Units of each asset per unit of a common base asset, as decimal strings.
    #[serde(default, rename = "static")]
    pub static_rates: BTreeMap<String, Rate>,
}

/// One configured route: destinations under `prefix` go to `account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    pub prefix: String,
    pub account: String,
}

/// `[routing]`: routes that do not come from broadcasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingConfig {
    /// Account for destinations no other route covers: `"auto"` (the first parent, by account
    /// id order), `""` (none), or an account id.
    #[serde(default = "RoutingConfig::default_default_route")]
    pub default_route: String,
    /// Routes that beat learned ones for the same or shorter prefixes.
    #[serde(default)]
    pub static_routes: Vec<StaticRoute>,
}

impl RoutingConfig {
    fn default_default_route() -> String {
        "auto".to_string()
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            default_route: Self::default_default_route(),
            static_routes: Vec::new(),
        }
    }
}

/// `[broadcast]`: the route broadcast protocol (CCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastConfig {
    /// Whether to send and accept route updates at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Time between route update rounds (ms).
    #[serde(default = "BroadcastConfig::default_interval_ms")]
    pub interval_ms: u64,
    /// How long a learned route lives without being refreshed (ms).
    #[serde(default = "BroadcastConfig::default_route_expiry_ms")]
    pub route_expiry_ms: u64,
    /// Most routing-table epochs sent in one update message.
    #[serde(default = "BroadcastConfig::default_max_epochs_per_update")]
    pub max_epochs_per_update: u32,
}

impl BroadcastConfig {
    fn default_interval_ms() -> u64 {
        30_000
    }
    fn default_route_expiry_ms() -> u64 {
        45_000
    }
    fn default_max_epochs_per_update() -> u32 {
        50
    }
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        BroadcastConfig {
            enabled: true,
            interval_ms: Self::default_interval_ms(),
            route_expiry_ms: Self::default_route_expiry_ms(),
            max_epochs_per_update: Self::default_max_epochs_per_update(),
        }
    }
}

/// Server-side TLS of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServerTlsConfig {
    #[serde(default)]
    pub enabled: bool,
    /// PEM certificate chain; required when enabled.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    /// PEM private key; required when enabled.
    #[serde(default)]
    pub key_path: Option<PathBuf>,
    /// PEM CA bundle that client certificates must chain to.
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
    /// Refuse clients without a certificate from `client_ca_path`.
    #[serde(default)]
    pub require_client_cert: bool,
}

/// `[listeners.btp]`: the BTP-over-WebSocket server for `btp-server` accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtpListenerConfig {
    pub bind: SocketAddr,
    #[serde(default)]
    pub tls: ServerTlsConfig,
}

/// `[listeners.http]`: the ILP-over-HTTP server for `http` accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpListenerConfig {
    pub bind: SocketAddr,
    #[serde(default)]
    pub tls: ServerTlsConfig,
    /// Offer HTTP/2 (ALPN `h2` under TLS, prior knowledge in clear text).
    #[serde(default = "default_true")]
    pub h2: bool,
}

/// `[listeners.admin]`: the admin API (status, accounts, balances, routes, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminListenerConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "AdminListenerConfig::default_bind")]
    pub bind: SocketAddr,
    /// Bearer token the API requires; required when `bind` is not a loopback address.
    #[serde(default)]
    pub token: Option<SecretString>,
}

impl AdminListenerConfig {
    fn default_bind() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7770))
    }
}

impl Default for AdminListenerConfig {
    fn default() -> Self {
        AdminListenerConfig {
            enabled: true,
            bind: Self::default_bind(),
            token: None,
        }
    }
}

/// `[listeners.spsp]`: the SPSP server handing out payment credentials for local accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpspListenerConfig {
    pub bind: SocketAddr,
    #[serde(default)]
    pub tls: ServerTlsConfig,
    /// Offer HTTP/2 (ALPN `h2` under TLS, prior knowledge in clear text).
    #[serde(default = "default_true")]
    pub h2: bool,
    /// The local account `GET /.well-known/pay` answers for (a payment pointer with no path).
    #[serde(default)]
    pub default_account: Option<String>,
    /// `Cache-Control: max-age` of an answer without receipts, in seconds; 0: `no-cache`.
    #[serde(default = "SpspListenerConfig::default_cache_max_age_s")]
    pub cache_max_age_s: u64,
    /// Where payers reach this server (behind a proxy or TLS terminator), e.g.
    /// `https://pay.example.com`: the admin API shows each account's SPSP URL and payment
    /// pointer under it. Absent: the bound address.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::account::opt_url_serde"
    )]
    pub public_url: Option<url::Url>,
}

impl SpspListenerConfig {
    fn default_cache_max_age_s() -> u64 {
        60
    }
}

/// `[listeners]`: sockets the node serves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ListenersConfig {
    #[serde(default)]
    pub btp: Option<BtpListenerConfig>,
    #[serde(default)]
    pub http: Option<HttpListenerConfig>,
    #[serde(default)]
    pub spsp: Option<SpspListenerConfig>,
    #[serde(default)]
    pub admin: AdminListenerConfig,
    /// The API our RFC 38 settlement engines call; served when this table is present or any
    /// account names a `settlement_engine_url` (then on the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementListenerConfig>,
}

/// `[listeners.settlement]`: the connector side of RFC 38 (the "accounting system" API) that
/// settlement engines call to credit incoming settlements and to message their peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementListenerConfig {
    #[serde(default = "SettlementListenerConfig::default_bind")]
    pub bind: SocketAddr,
    /// Bearer token engines must send; required when `bind` is not a loopback address.
    #[serde(default)]
    pub token: Option<SecretString>,
}

impl SettlementListenerConfig {
    /// interledger-rs serves the same API on this address.
    fn default_bind() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7771))
    }
}

impl Default for SettlementListenerConfig {
    fn default() -> Self {
        SettlementListenerConfig {
            bind: Self::default_bind(),
            token: None,
        }
    }
}

/// Which store keeps balances and idempotency records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// Nothing survives a restart.
    Memory,
    /// RocksDB under `path`.
    #[default]
    Rocksdb,
}

/// `[store]`: persistence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: StoreBackend,
    /// Data directory (RocksDB files).
    #[serde(default = "StoreConfig::default_path")]
    pub path: PathBuf,
    /// fsync each committed batch before answering (a Fulfill is relayed only after its
    /// balance effect is durable).
    #[serde(default = "default_true")]
    pub sync: bool,
    /// Most writes group-committed in one batch.
    #[serde(default = "StoreConfig::default_max_batch")]
    pub group_commit_max_batch: u32,
    /// Longest a write waits for companions before its batch is committed (microseconds).
    #[serde(default)]
    pub group_commit_max_delay_us: u64,
}

impl StoreConfig {
    fn default_path() -> PathBuf {
        PathBuf::from("./data")
    }
    fn default_max_batch() -> u32 {
        256
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::default(),
            path: Self::default_path(),
            sync: true,
            group_commit_max_batch: Self::default_max_batch(),
            group_commit_max_delay_us: 0,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Terminal,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A level (`error` `warn` `info` `debug` `trace`) or directives like `info,ilp=debug`.
    #[serde(default = "LogConfig::default_level")]
    pub level: String,
}

impl LogConfig {
    fn default_level() -> String {
        "info".to_string()
    }

    /// `level` read as directives: the level without a module (the last one wins; `info` when
    /// none), and `(module, level)` pairs. Validation has checked every level name; an
    /// unknown one here reads as `info`.
    pub fn directives(&self) -> LogDirectives {
        let mut directives = LogDirectives {
            default: LogLevel::Info,
            modules: Vec::new(),
        };
        for directive in self.level.split(',').map(str::trim) {
            if directive.is_empty() {
                continue;
            }
            match directive.split_once('=') {
                Some((module, level)) => directives
                    .modules
                    .push((module.trim().to_owned(), LogLevel::parse(level))),
                None => directives.default = LogLevel::parse(directive),
            }
        }
        // Longest module first, so the most specific directive decides.
        directives
            .modules
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        directives
    }
}

/// A log level of `[log] level`; `Off` logs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn parse(name: &str) -> LogLevel {
        match name.trim().to_ascii_lowercase().as_str() {
            "off" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => LogLevel::Info,
        }
    }
}

/// Parsed `[log] level`: a default and per-module levels (longest module first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirectives {
    pub default: LogLevel,
    pub modules: Vec<(String, LogLevel)>,
}

impl LogDirectives {
    /// The most verbose level logged for a record from `module` (a Rust module path such as
    /// `ilp_actors::router`): the longest directive naming it or one of its parents.
    pub fn level_for(&self, module: &str) -> LogLevel {
        for (prefix, level) in &self.modules {
            let matches = module
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
            if matches {
                return *level;
            }
        }
        self.default
    }

    /// The most verbose level any directive allows (a cheap first filter).
    pub fn max_level(&self) -> LogLevel {
        self.modules
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, std::cmp::Ord::max)
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: Self::default_level(),
        }
    }
}

/// `[paid_http]`: a paid reverse proxy (HTTP-ILP): requests to `bind` are forwarded to
/// `upstream`, those with a price only once the client's `Pay-Token` has paid for them, in
/// the local account `account`'s asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaidHttpConfig {
    pub bind: SocketAddr,
    #[serde(default)]
    pub tls: ServerTlsConfig,
    /// Where requests go: `http://` or `https://`, a path prefix allowed.
    #[serde(with = "super::account::url_serde")]
    pub upstream: url::Url,
    /// The local account paid for the requests.
    pub account: String,
    /// The price of a request no route matches (base units of `account`). Default 0: free.
    #[serde(default)]
    pub default_price: u64,
    /// Longest wait for the upstream's response head (ms). Default 30000.
    #[serde(default = "PaidHttpConfig::default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// Prices by method and path prefix: the longest matching prefix wins.
    #[serde(default)]
    pub routes: Vec<PaidRouteConfig>,
}

impl PaidHttpConfig {
    fn default_upstream_timeout_ms() -> u64 {
        30_000
    }

    /// The section with its prices cleared: what a reload cannot change in place.
    pub fn without_prices(&self) -> PaidHttpConfig {
        PaidHttpConfig {
            routes: Vec::new(),
            default_price: 0,
            ..self.clone()
        }
    }

    /// The prices as the proxy reads them.
    pub fn price_table(&self) -> crate::paid_http::PriceTable {
        crate::paid_http::PriceTable {
            routes: self
                .routes
                .iter()
                .map(|r| crate::paid_http::Route {
                    method: r.method.clone(),
                    path_prefix: r.path_prefix.clone(),
                    price: r.price,
                })
                .collect(),
            default_price: self.default_price,
        }
    }
}

/// `[[paid_http.routes]]`: `price` base units for requests with `method` (any when absent)
/// whose path starts with `path_prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaidRouteConfig {
    #[serde(default)]
    pub method: Option<String>,
    pub path_prefix: String,
    pub price: u64,
}

/// `[sender]`: payments the node sends from its local accounts (the admin API's `payments`
/// and `quotes`, the CLI's `pay`). A reload applies to payments started after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// How much worse than the node's own rate table a path may be, when a payment does not
    /// say (a fraction: "0.01" is 1 %).
    #[serde(default = "SenderConfig::default_slippage")]
    pub default_slippage: Spread,
    /// Expiry of each Prepare sent (ms from sending); below the usual 30 s hold time of
    /// connectors, so that every hop can keep its margin.
    #[serde(default = "SenderConfig::default_packet_expiry_ms")]
    pub packet_expiry_ms: u64,
    /// A payment with no Fulfill for this long fails (ms).
    #[serde(default = "SenderConfig::default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// The longest the rate probe may take (ms).
    #[serde(default = "SenderConfig::default_probe_timeout_ms")]
    pub probe_timeout_ms: u64,
    /// How long a quote may be paid after it was made (ms).
    #[serde(default = "SenderConfig::default_quote_ttl_ms")]
    pub quote_ttl_ms: u64,
    /// Packets in flight per payment at the start, and at most.
    #[serde(default = "SenderConfig::default_initial_in_flight")]
    pub initial_in_flight: u32,
    #[serde(default = "SenderConfig::default_max_in_flight")]
    pub max_in_flight: u32,
    /// Payments running at once; more are refused (HTTP 429).
    #[serde(default = "SenderConfig::default_max_payments")]
    pub max_payments: usize,
    /// The SPSP query's timeout (ms).
    #[serde(default = "SenderConfig::default_spsp_timeout_ms")]
    pub spsp_timeout_ms: u64,
    /// Whether plain `http://` SPSP URLs are accepted (tests and closed networks only: the
    /// shared secret travels in the clear).
    #[serde(default)]
    pub allow_http: bool,
}

impl SenderConfig {
    fn default_slippage() -> Spread {
        Spread::new(Rate::new(1, 100).unwrap_or(Rate::ZERO)).unwrap_or(Spread::ZERO)
    }
    fn default_packet_expiry_ms() -> u64 {
        20_000
    }
    fn default_idle_timeout_ms() -> u64 {
        30_000
    }
    fn default_probe_timeout_ms() -> u64 {
        10_000
    }
    fn default_quote_ttl_ms() -> u64 {
        60_000
    }
    fn default_initial_in_flight() -> u32 {
        10
    }
    fn default_max_in_flight() -> u32 {
        100
    }
    fn default_max_payments() -> usize {
        1_000
    }
    fn default_spsp_timeout_ms() -> u64 {
        5_000
    }
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            default_slippage: Self::default_slippage(),
            packet_expiry_ms: Self::default_packet_expiry_ms(),
            idle_timeout_ms: Self::default_idle_timeout_ms(),
            probe_timeout_ms: Self::default_probe_timeout_ms(),
            quote_ttl_ms: Self::default_quote_ttl_ms(),
            initial_in_flight: Self::default_initial_in_flight(),
            max_in_flight: Self::default_max_in_flight(),
            max_payments: Self::default_max_payments(),
            spsp_timeout_ms: Self::default_spsp_timeout_ms(),
            allow_http: false,
        }
    }
}
