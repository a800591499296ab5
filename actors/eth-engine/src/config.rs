//! The engine's configuration file (TOML), e.g.:
//!
//! ```toml
//! [engine]
//! bind = "127.0.0.1:3000"                  # the RFC 38 API our connector calls
//! connector_url = "http://127.0.0.1:7771"  # the connector's settlement API
//! connector_token = "..."                  # its listeners.settlement.token, if it has one
//!
//! [ethereum]
//! rpc_url = "http://127.0.0.1:8545"
//! private_key = "0x4f3e..."                # signs our transactions; never the node's accounts
//! confirmations = 1                        # blocks an incoming payment needs before it counts
//! poll_interval_ms = 1000
//!
//! [store]
//! path = "data/eth-engine"
//!
//! [peers]                                  # optional: the address each account's peer must prove
//! bob = "0xffcf8fdee72ac11b5c542428b35eef5769c409f0"
//! ```

use ilp::config::{LogConfig, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub engine: EngineSection,
    pub ethereum: EthereumSection,
    pub store: StoreSection,
    #[serde(default)]
    pub log: LogConfig,
    /// `[peers]` `<account id> = "0x..."`: the address an account's peer engine must prove,
    /// fixed by the operator (learned from the peer's engine when absent).
    #[serde(default, deserialize_with = "peers")]
    pub peers: BTreeMap<String, crate::eth::Address>,
}

fn peers<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<BTreeMap<String, crate::eth::Address>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(de)?;
    raw.into_iter()
        .map(|(id, a)| match crate::eth::parse_address(&a) {
            Ok(a) => Ok((id, a)),
            Err(e) => Err(serde::de::Error::custom(format!("{id}: {e}"))),
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Where the RFC 38 API our connector calls listens (loopback: nothing authenticates it).
    #[serde(default = "EngineSection::default_bind")]
    pub bind: SocketAddr,
    /// The connector's settlement API (`[listeners.settlement]`).
    #[serde(default = "EngineSection::default_connector_url")]
    pub connector_url: Url,
    /// The bearer token the connector's settlement API wants, if any.
    #[serde(default)]
    pub connector_token: Option<SecretString>,
}

impl EngineSection {
    fn default_bind() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 3000))
    }

    fn default_connector_url() -> Url {
        // A constant that parses.
        Url::parse("http://127.0.0.1:7771").unwrap_or_else(|_| unreachable!())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthereumSection {
    /// The JSON-RPC endpoint of any Ethereum node (ganache locally).
    pub rpc_url: Url,
    /// The secret key (32 bytes, hex) that signs our transactions and owns our address.
    pub private_key: SecretString,
    /// The chain id transactions are signed for; absent: asked of the node at start. When
    /// given, a node on another chain is refused.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// Blocks an incoming payment needs (its own included) before it is credited.
    #[serde(default = "EthereumSection::default_confirmations")]
    pub confirmations: u64,
    /// How often the chain is read for new blocks and receipts.
    #[serde(default = "EthereumSection::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Gas price of our transactions in wei; absent: what the node suggests (`eth_gasPrice`).
    #[serde(default)]
    pub gas_price: Option<u128>,
    /// Gas limit of a plain transfer.
    #[serde(default = "EthereumSection::default_gas_limit")]
    pub gas_limit: u64,
}

impl EthereumSection {
    fn default_confirmations() -> u64 {
        1
    }

    fn default_poll_interval_ms() -> u64 {
        1000
    }

    fn default_gas_limit() -> u64 {
        21_000
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The engine's RocksDB directory: nonces, payments, credits, what was learned of peers.
    pub path: PathBuf,
}

/// A problem in the file, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

impl EngineConfig {
    pub fn from_toml_str(text: &str) -> Result<EngineConfig, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: EngineConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            err(&key, e.into_inner().message().to_owned())
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("engine.connector_url", &self.engine.connector_url),
            ("ethereum.rpc_url", &self.ethereum.rpc_url),
        ] {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(err(key, "must be an http:// or https:// URL"));
            }
        }
        if self.ethereum.confirmations == 0 {
            return Err(err(
                "ethereum.confirmations",
                "must be at least 1 (the block holding the payment)",
            ));
        }
        if self.ethereum.poll_interval_ms == 0 {
            return Err(err("ethereum.poll_interval_ms", "must be positive"));
        }
        if self.ethereum.gas_limit < 21_000 {
            return Err(err(
                "ethereum.gas_limit",
                "a transfer needs at least 21000 gas",
            ));
        }
        if let Err(e) = crate::eth::Wallet::from_hex(self.ethereum.private_key.expose()) {
            return Err(err("ethereum.private_key", e.to_string()));
        }
        if !self.engine.bind.ip().is_loopback() {
            return Err(err(
                "engine.bind",
                "must be a loopback address: the API has no authentication, and whoever \
                 reaches it can make the engine pay",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";

    fn text(extra_eth: &str, extra_engine: &str) -> String {
        format!(
            "[engine]\nbind = \"127.0.0.1:0\"\n{extra_engine}\
             [ethereum]\nrpc_url = \"http://127.0.0.1:8545\"\nprivate_key = \"{KEY}\"\n{extra_eth}\
             [store]\npath = \"/tmp/x\"\n"
        )
    }

    #[test]
    fn defaults_and_checks() {
        let c = EngineConfig::from_toml_str(&text("", "")).unwrap();
        assert_eq!(c.ethereum.confirmations, 1);
        assert_eq!(c.ethereum.gas_limit, 21_000);
        assert_eq!(c.engine.connector_url.as_str(), "http://127.0.0.1:7771/");
        assert_eq!(c.ethereum.chain_id, None);
        // The key is never printed.
        assert!(!format!("{c:?}").contains("4f3edf98"));

        let e = |eth: &str, engine: &str| EngineConfig::from_toml_str(&text(eth, engine));
        assert_eq!(
            e("confirmations = 0\n", "").unwrap_err().key,
            "ethereum.confirmations"
        );
        assert_eq!(
            e("gas_limit = 100\n", "").unwrap_err().key,
            "ethereum.gas_limit"
        );
        assert_eq!(
            e("gas_prce = 1\n", "").unwrap_err().key,
            "ethereum.gas_prce"
        );
        assert_eq!(
            e("", "connector_url = \"ftp://x\"\n").unwrap_err().key,
            "engine.connector_url"
        );
        let bad_key = text("", "").replace(KEY, "0x1234");
        assert_eq!(
            EngineConfig::from_toml_str(&bad_key).unwrap_err().key,
            "ethereum.private_key"
        );
        let pinned = format!(
            "{}[peers]\nbob = \"0xffcf8fdee72ac11b5c542428b35eef5769c409f0\"\n",
            text("", "")
        );
        let c = EngineConfig::from_toml_str(&pinned).unwrap();
        assert_eq!(c.peers["bob"][0], 0xff);
        let bad = format!("{}[peers]\nbob = \"0x12\"\n", text("", ""));
        let e = EngineConfig::from_toml_str(&bad).unwrap_err();
        assert_eq!(e.key, "peers");
        assert!(e.message.starts_with("bob: "), "{e}");
        let open = text("", "").replace("127.0.0.1:0", "0.0.0.0:3000");
        assert_eq!(
            EngineConfig::from_toml_str(&open).unwrap_err().key,
            "engine.bind"
        );
    }
}
