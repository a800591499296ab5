//! What a reload (SIGHUP) may apply: the difference between the running configuration and the
//! one just read, sorted into what the node can change in place and what needs a restart.

use super::{Config, PaidHttpConfig};
use std::collections::BTreeSet;

/// The difference between two valid configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Accounts only the new configuration has.
    pub added: BTreeSet<String>,
    /// Accounts only the old configuration has.
    pub removed: BTreeSet<String>,
    /// Accounts in both whose link (type, address, credentials, TLS, BTP/2.0-I) changed: their
    /// link is replaced, their balance stays.
    pub relinked: BTreeSet<String>,
    /// Accounts in both whose other settings (limits, relation, asset, routing flags) changed.
    pub updated: BTreeSet<String>,
    /// `[node]`, `[rates]`, `[routing]` or `[broadcast]` changed: the Router and the route
    /// broadcaster take the new settings.
    pub routing: bool,
    /// Top-level sections that changed but are only read at start (listeners, paid_http but
    /// its prices, store, log): they take effect at the next restart.
    pub needs_restart: Vec<&'static str>,
}

impl ConfigChanges {
    pub fn between(old: &Config, new: &Config) -> ConfigChanges {
        let mut changes = ConfigChanges::default();
        for (id, account) in &new.accounts {
            match old.accounts.get(id) {
                None => {
                    changes.added.insert(id.clone());
                }
                Some(before) => {
                    if before.link != account.link
                        || before.btp_idempotent != account.btp_idempotent
                    {
                        changes.relinked.insert(id.clone());
                    }
                    let mut same_link = account.clone();
                    same_link.link = before.link.clone();
                    same_link.btp_idempotent = before.btp_idempotent;
                    if &same_link != before {
                        changes.updated.insert(id.clone());
                    }
                }
            }
        }
        changes.removed = old
            .accounts
            .keys()
            .filter(|id| !new.accounts.contains_key(*id))
            .cloned()
            .collect();
        // The runtime's threads are made at start; everything else in [node] applies at once.
        let mut old_node = old.node.clone();
        old_node.io_threads = new.node.io_threads;
        changes.routing = old_node != new.node
            || old.rates != new.rates
            || old.routing != new.routing
            || old.broadcast != new.broadcast;
        let sections = [
            (
                "node.io_threads",
                old.node.io_threads != new.node.io_threads,
            ),
            ("listeners", old.listeners != new.listeners),
            // Its prices are applied live (a reload sets them); the rest waits for a restart.
            (
                "paid_http",
                old.paid_http.as_ref().map(PaidHttpConfig::without_prices)
                    != new.paid_http.as_ref().map(PaidHttpConfig::without_prices),
            ),
            ("store", old.store != new.store),
            ("log", old.log != new.log),
        ];
        changes.needs_restart = sections
            .into_iter()
            .filter_map(|(name, changed)| changed.then_some(name))
            .collect();
        changes
    }

    /// Nothing to apply (sections that need a restart aside).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.relinked.is_empty()
            && self.updated.is_empty()
            && !self.routing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(accounts: &str, extra: &str) -> Config {
        let text = format!(
            "[node]\nilp_address = \"test.a\"\n{extra}\n[store]\nbackend = \"memory\"\n{accounts}"
        );
        Config::from_toml_str(&text).unwrap()
    }

    const ALICE: &str = "[accounts.alice]\nrelation = \"child\"\nlink = { type = \"memory\" }\n";
    const BOB: &str = "[accounts.bob]\nrelation = \"peer\"\nlink = { type = \"memory\" }\n";

    #[test]
    fn identical_configurations_have_no_changes() {
        let c = config(ALICE, "");
        let changes = ConfigChanges::between(&c, &c.clone());
        assert!(changes.is_empty());
        assert_eq!(changes, ConfigChanges::default());
    }

    #[test]
    fn accounts_added_removed_updated_and_relinked() {
        let old = config(&format!("{ALICE}{BOB}"), "");
        let new = config(
            "[accounts.alice]\nrelation = \"child\"\nmax_packet_amount = 5\nlink = { type = \"memory\" }\n\
             [accounts.bob]\nrelation = \"peer\"\n\
             link = { type = \"btp-client\", url = \"ws://127.0.0.1:9\", auth_token = \"t\" }\n\
             [accounts.carol]\nrelation = \"child\"\nlink = { type = \"memory\" }\n",
            "",
        );
        let changes = ConfigChanges::between(&old, &new);
        assert_eq!(changes.added, BTreeSet::from(["carol".to_owned()]));
        assert!(changes.removed.is_empty());
        assert_eq!(changes.updated, BTreeSet::from(["alice".to_owned()]));
        assert_eq!(changes.relinked, BTreeSet::from(["bob".to_owned()]));
        assert!(!changes.routing);
        assert!(changes.needs_restart.is_empty());

        let back = ConfigChanges::between(&new, &old);
        assert_eq!(back.removed, BTreeSet::from(["carol".to_owned()]));
        assert!(back.added.is_empty());
    }

    #[test]
    fn routing_and_start_only_sections() {
        let old = config(ALICE, "");
        let new = config(
            ALICE,
            "spread = \"0.01\"\n[routing]\ndefault_route = \"alice\"\n[log]\nlevel = \"debug\"\n\
             [listeners.admin]\nenabled = false\n\
             [paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n\
             account = \"shop\"\n\
             [accounts.shop]\nrelation = \"child\"\nlink = { type = \"local\" }\n",
        );
        let changes = ConfigChanges::between(&old, &new);
        assert!(changes.routing);
        assert_eq!(changes.needs_restart, vec!["listeners", "paid_http", "log"]);
        assert!(!changes.is_empty());
    }

    #[test]
    fn paid_http_prices_change_in_place() {
        let paid = |price: u64, upstream: &str| {
            config(
                ALICE,
                &format!(
                    "[paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\
                     account = \"shop\"\ndefault_price = {price}\n\
                     [[paid_http.routes]]\npath_prefix = \"/upload\"\nprice = {price}\n\
                     [accounts.shop]\nrelation = \"child\"\nlink = {{ type = \"local\" }}\n"
                ),
            )
        };
        let old = paid(10, "http://127.0.0.1:1");
        let prices = ConfigChanges::between(&old, &paid(15, "http://127.0.0.1:1"));
        assert!(prices.needs_restart.is_empty(), "{prices:?}");
        let upstream = ConfigChanges::between(&old, &paid(10, "http://127.0.0.1:2"));
        assert_eq!(upstream.needs_restart, vec!["paid_http"]);
    }
}
