//! The `config.toml` schema and its validation.
//!
//! [`Config::from_toml_str`] reports every problem at once, each with its key path
//! (`accounts.alice.max_packet_amount: must be greater than 0`): syntax errors, values of the
//! wrong type, unknown keys, and broken relationships between keys. To get past the first type
//! error, each section and each account is deserialized on its own, and a key whose value is
//! rejected is dropped and the piece tried again, so later keys are still checked.
//!
//! The reference configuration, with every key and its default, is `config.toml` at the root of
//! the repository.

mod account;
mod changes;
mod sections;
mod validate;

pub use account::{
    AccountConfig, BalanceConfig, ClientTlsConfig, DedupConfig, HttpMode, LinkConfig, LinkType,
    RateLimitConfig, ReceiverConfig, Relation, ThroughputConfig, WebhookConfig,
};
pub use changes::ConfigChanges;
pub use sections::{
    AdminListenerConfig, BroadcastConfig, BtpListenerConfig, HttpListenerConfig, ListenersConfig,
    LogConfig, LogDirectives, LogFormat, LogLevel, NodeConfig, PaidHttpConfig, PaidRouteConfig,
    RateBackendKind, RatesConfig, RoutingConfig, Secret32, SecretString, SenderConfig,
    ServerTlsConfig, SettlementListenerConfig, SpspListenerConfig, StaticRoute, StoreBackend,
    StoreConfig,
};

use crate::rates::{Exchange, RateBackend, RateError, StaticRates};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    pub node: NodeConfig,
    pub rates: RatesConfig,
    pub routing: RoutingConfig,
    pub broadcast: BroadcastConfig,
    pub listeners: ListenersConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub sender: SenderConfig,
    pub paid_http: Option<PaidHttpConfig>,
    /// By account id.
    pub accounts: BTreeMap<String, AccountConfig>,
}

/// One problem, at one key path (`""` for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in the order found.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Whether some problem is reported at exactly `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn ignored_path(path: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            ignored_path(parent, out);
            out.push(Seg::Index(*index));
        }
        Path::Map { parent, key } => {
            ignored_path(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent, out),
    }
}

fn error_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Removes the value at `path`; false when there is nothing there to remove.
fn remove_at(value: &mut toml::Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Seg::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Seg::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match (last, cur) {
        (Seg::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        (Seg::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// The name in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// Collects problems while pieces are parsed; remembers which paths failed so later checks
/// do not pile derived complaints on them.
#[derive(Default)]
struct Collector {
    errors: Vec<ConfigError>,
    failed: BTreeSet<String>,
}

impl Collector {
    fn push(&mut self, path: String, message: impl Into<String>) {
        self.failed.insert(path.clone());
        self.errors.push(ConfigError::new(path, message));
    }

    /// Deserializes `value` (found at `prefix`) as `T`, reporting every unknown key and every
    /// rejected value, dropping each rejected key and retrying so the rest is still checked.
    fn parse<T: DeserializeOwned>(&mut self, mut value: toml::Value, prefix: &[Seg]) -> Option<T> {
        let mut unknown: BTreeSet<Vec<Seg>> = BTreeSet::new();
        let mut removed: Vec<Vec<Seg>> = Vec::new();
        let full = |p: &[Seg]| {
            let mut v = prefix.to_vec();
            v.extend_from_slice(p);
            v
        };
        // Each retry removes one key, so the number of keys bounds the loop; the cap only
        // guards against a deserializer that keeps failing at a path it cannot remove.
        for _ in 0..256 {
            let mut seen = Vec::new();
            let result = {
                let mut record = |p: serde_ignored::Path<'_>| {
                    let mut segs = Vec::new();
                    ignored_path(&p, &mut segs);
                    seen.push(segs);
                };
                let de = serde_ignored::Deserializer::new(value.clone(), &mut record);
                serde_path_to_error::deserialize::<_, T>(de)
            };
            unknown.extend(seen);
            match result {
                Ok(parsed) => {
                    for p in &unknown {
                        self.push(render(&full(p)), "unknown key");
                    }
                    return Some(parsed);
                }
                Err(err) => {
                    let at = error_path(err.path());
                    let full_message = err.into_inner().to_string();
                    // toml appends "\nin `key`"; the path already says where.
                    let message = full_message
                        .split("\nin `")
                        .next()
                        .unwrap_or(&full_message)
                        .trim_end()
                        .to_string();
                    if let Some(field) = missing_field(&message) {
                        let mut key = at.clone();
                        key.push(Seg::Key(field.to_string()));
                        if !removed.contains(&key) {
                            self.push(render(&full(&key)), "required key is missing");
                        }
                        break;
                    }
                    self.push(render(&full(&at)), message);
                    if !remove_at(&mut value, &at) {
                        break;
                    }
                    removed.push(at);
                }
            }
        }
        for p in &unknown {
            self.push(render(&full(p)), "unknown key");
        }
        None
    }
}

const SECTIONS: [&str; 10] = [
    "node",
    "rates",
    "routing",
    "broadcast",
    "listeners",
    "store",
    "log",
    "sender",
    "paid_http",
    "accounts",
];

fn take_section<T: DeserializeOwned + Default>(
    c: &mut Collector,
    table: &mut toml::Table,
    name: &str,
) -> T {
    match table.remove(name) {
        None => T::default(),
        Some(v) => c
            .parse(v, &[Seg::Key(name.to_string())])
            .unwrap_or_default(),
    }
}

impl Config {
    /// The settlement engines' API to serve, if any: `[listeners.settlement]`, or its defaults
    /// when an account names a settlement engine and the table is absent.
    pub fn settlement_listener(&self) -> Option<SettlementListenerConfig> {
        self.listeners.settlement.clone().or_else(|| {
            self.accounts
                .values()
                .any(|a| a.settlement_engine_url.is_some())
                .then(SettlementListenerConfig::default)
        })
    }

    /// Parses and validates a configuration file's text, reporting every problem found.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                return Err(ConfigErrors(vec![ConfigError::new(
                    "",
                    format!("TOML syntax error: {}", msg.trim_end()),
                )]));
            }
        };
        let mut c = Collector::default();
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !SECTIONS.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            table.remove(&k);
            c.push(k, "unknown key");
        }
        let mut config = Config {
            node: take_section(&mut c, &mut table, "node"),
            rates: take_section(&mut c, &mut table, "rates"),
            routing: take_section(&mut c, &mut table, "routing"),
            broadcast: take_section(&mut c, &mut table, "broadcast"),
            listeners: take_section(&mut c, &mut table, "listeners"),
            store: take_section(&mut c, &mut table, "store"),
            log: take_section(&mut c, &mut table, "log"),
            sender: take_section(&mut c, &mut table, "sender"),
            paid_http: take_section(&mut c, &mut table, "paid_http"),
            accounts: BTreeMap::new(),
        };
        let mut failed_accounts = BTreeSet::new();
        match table.remove("accounts") {
            None => {}
            Some(toml::Value::Table(accounts)) => {
                for (id, value) in accounts {
                    let path = [Seg::Key("accounts".into()), Seg::Key(id.clone())];
                    let value = match value {
                        toml::Value::Table(mut t) => {
                            // Accounts inherit the node's asset unless they name their own.
                            t.entry("asset_code")
                                .or_insert_with(|| config.node.asset_code.clone().into());
                            t.entry("asset_scale")
                                .or_insert_with(|| i64::from(config.node.asset_scale).into());
                            toml::Value::Table(t)
                        }
                        other => {
                            c.push(
                                render(&path),
                                format!("expected a table, found {}", other.type_str()),
                            );
                            failed_accounts.insert(id);
                            continue;
                        }
                    };
                    match c.parse::<AccountConfig>(value, &path) {
                        Some(account) => {
                            config.accounts.insert(id, account);
                        }
                        None => {
                            failed_accounts.insert(id);
                        }
                    }
                }
            }
            Some(other) => c.push(
                "accounts".into(),
                format!("expected a table, found {}", other.type_str()),
            ),
        }

        let semantic = validate::check(&config, &failed_accounts);
        let Collector { mut errors, failed } = c;
        errors.extend(semantic.into_iter().filter(|e| {
            // A key whose value was already rejected reads as its default here; complaints
            // about that default would only repeat the first error.
            !failed.iter().any(|f| {
                e.path == *f
                    || e.path.starts_with(&format!("{f}."))
                    || e.path.starts_with(&format!("{f}["))
            })
        }));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Checks the relationships between keys of an already-built configuration (one assembled
    /// in code, or edited at run time): every problem, each with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let errors = validate::check(self, &BTreeSet::new());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The rate backend and spread the node converts amounts with.
    pub fn exchange(&self) -> Result<Exchange, RateError> {
        let backend = match self.rates.backend {
            RateBackendKind::OneToOne => RateBackend::OneToOne,
            RateBackendKind::Static => RateBackend::Static(StaticRates::new(
                self.rates
                    .static_rates
                    .iter()
                    .map(|(code, rate)| (code.clone(), *rate)),
            )?),
        };
        Ok(Exchange {
            backend,
            spread: self.node.spread,
        })
    }

    /// The account the default route points at: `routing.default_route`, where `"auto"` is the
    /// first parent by id and `""` is none.
    pub fn default_route_account(&self) -> Option<&str> {
        match self.routing.default_route.as_str() {
            "" => None,
            "auto" => self
                .accounts
                .iter()
                .find(|(_, a)| a.relation == Relation::Parent)
                .map(|(id, _)| id.as_str()),
            id => Some(id),
        }
    }

    /// With no configured address, the parent account to learn it from over IL-DCP.
    pub fn address_parent(&self) -> Option<&str> {
        if self.node.ilp_address.is_some() {
            return None;
        }
        match &self.node.ilp_address_inherit_from {
            Some(id) => Some(id.as_str()),
            None => self
                .accounts
                .iter()
                .find(|(_, a)| a.relation == Relation::Parent)
                .map(|(id, _)| id.as_str()),
        }
    }
}

#[cfg(test)]
mod tests;
