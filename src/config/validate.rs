//! Checks between keys that types alone cannot express; each problem with its key path.

use super::{AccountConfig, Config, ConfigError, LinkConfig, RateBackendKind, Relation};
use super::{HttpMode, ServerTlsConfig};
use crate::packet::{validate_address, validate_segment};
use std::collections::{BTreeMap, BTreeSet};

struct Errors(Vec<ConfigError>);

impl Errors {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }
    fn positive(&mut self, path: impl Into<String>, value: u64) {
        if value == 0 {
            self.at(path, "must be greater than 0");
        }
    }
}

/// More I/O threads than this only adds hand-offs.
const MAX_IO_THREADS: u16 = 256;

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Whether `s` is a usable account id: address-segment characters plus `.`.
fn valid_account_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-' | b'.'))
}

/// A route prefix: whole segments, none empty, no trailing `.`; a bare scheme (`g`) is allowed.
fn valid_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty (use routing.default_route for a default)".into());
    }
    for seg in prefix.split('.') {
        if validate_segment(seg).is_err() {
            return Err(format!(
                "{prefix:?} is not a valid address prefix (segments of A-Z a-z 0-9 _ ~ -, no empty segment)"
            ));
        }
    }
    Ok(())
}

fn check_server_tls(e: &mut Errors, path: &str, tls: &ServerTlsConfig) {
    if tls.enabled {
        if tls.cert_path.is_none() {
            e.at(
                format!("{path}.cert_path"),
                "required when tls.enabled = true",
            );
        }
        if tls.key_path.is_none() {
            e.at(
                format!("{path}.key_path"),
                "required when tls.enabled = true",
            );
        }
    }
    if tls.require_client_cert && tls.client_ca_path.is_none() {
        e.at(
            format!("{path}.client_ca_path"),
            "required when require_client_cert = true",
        );
    }
}

/// All problems of `config`. `failed_accounts` were present in the file but did not parse:
/// they still count as existing for references to them.
pub(super) fn check(config: &Config, failed_accounts: &BTreeSet<String>) -> Vec<ConfigError> {
    let mut e = Errors(Vec::new());
    let account_exists =
        |id: &str| config.accounts.contains_key(id) || failed_accounts.contains(id);

    // [node]
    let node = &config.node;
    if node.asset_code.is_empty() {
        e.at("node.asset_code", "must not be empty");
    }
    e.positive("node.min_message_window_ms", node.min_message_window_ms);
    e.positive("node.max_hold_time_ms", node.max_hold_time_ms);
    e.positive(
        "node.initial_connect_timeout_ms",
        node.initial_connect_timeout_ms,
    );
    if node.io_threads > MAX_IO_THREADS {
        e.at(
            "node.io_threads",
            format!("at most {MAX_IO_THREADS} (0 runs the links on the actors' thread)"),
        );
    }
    let parents: Vec<&str> = config
        .accounts
        .iter()
        .filter(|(_, a)| a.relation == Relation::Parent)
        .map(|(id, _)| id.as_str())
        .collect();
    if let Some(from) = &node.ilp_address_inherit_from {
        match config.accounts.get(from) {
            Some(a) if a.relation == Relation::Parent => {}
            Some(_) => e.at(
                "node.ilp_address_inherit_from",
                format!("account {from:?} is not a parent"),
            ),
            None if failed_accounts.contains(from) => {}
            None => e.at(
                "node.ilp_address_inherit_from",
                format!("no account {from:?}"),
            ),
        }
        if node.ilp_address.is_some() {
            e.at(
                "node.ilp_address_inherit_from",
                "has no effect when node.ilp_address is set",
            );
        }
    } else if node.ilp_address.is_none() {
        if parents.is_empty() && failed_accounts.is_empty() {
            e.at(
                "node.ilp_address",
                "required when no account has relation = \"parent\" to learn it from",
            );
        } else if parents.len() > 1 {
            e.at(
                "node.ilp_address_inherit_from",
                format!(
                    "required without node.ilp_address when there are several parents ({})",
                    parents.join(", ")
                ),
            );
        }
    }

    // [rates]
    if config.rates.backend == RateBackendKind::Static {
        if config.rates.static_rates.is_empty() {
            e.at(
                "rates.static",
                "must list at least one rate when backend = \"static\"",
            );
        }
        for (code, rate) in &config.rates.static_rates {
            if rate.is_zero() {
                e.at(format!("rates.static.{code}"), "must be greater than 0");
            }
        }
        let known = |code: &str| config.rates.static_rates.contains_key(code);
        if !config.rates.static_rates.is_empty() {
            if !known(&node.asset_code) {
                e.at(
                    "node.asset_code",
                    format!("no rate for {:?} in rates.static", node.asset_code),
                );
            }
            for (id, a) in &config.accounts {
                if !known(&a.asset_code) && a.asset_code != node.asset_code {
                    e.at(
                        format!("accounts.{id}.asset_code"),
                        format!("no rate for {:?} in rates.static", a.asset_code),
                    );
                }
            }
        }
    }

    // [routing]
    let default_route = config.routing.default_route.as_str();
    if !matches!(default_route, "" | "auto") && !account_exists(default_route) {
        e.at(
            "routing.default_route",
            format!("must be \"auto\", \"\" or an account id; no account {default_route:?}"),
        );
    }
    let mut prefixes = BTreeSet::new();
    for (i, route) in config.routing.static_routes.iter().enumerate() {
        let path = format!("routing.static_routes[{i}]");
        if let Err(msg) = valid_prefix(&route.prefix) {
            e.at(format!("{path}.prefix"), msg);
        } else if !prefixes.insert(route.prefix.as_str()) {
            e.at(
                format!("{path}.prefix"),
                format!("{:?} is routed twice", route.prefix),
            );
        }
        if !account_exists(&route.account) {
            e.at(
                format!("{path}.account"),
                format!("no account {:?}", route.account),
            );
        }
    }

    // [broadcast]
    let b = &config.broadcast;
    e.positive("broadcast.interval_ms", b.interval_ms);
    e.positive("broadcast.route_expiry_ms", b.route_expiry_ms);
    e.positive(
        "broadcast.max_epochs_per_update",
        u64::from(b.max_epochs_per_update),
    );
    if b.interval_ms > 0 && b.route_expiry_ms > 0 && b.route_expiry_ms <= b.interval_ms {
        e.at(
            "broadcast.route_expiry_ms",
            format!(
                "must be longer than broadcast.interval_ms ({}), or routes lapse between updates",
                b.interval_ms
            ),
        );
    }

    // [listeners]
    let l = &config.listeners;
    if let Some(btp) = &l.btp {
        check_server_tls(&mut e, "listeners.btp.tls", &btp.tls);
    }
    if let Some(http) = &l.http {
        check_server_tls(&mut e, "listeners.http.tls", &http.tls);
    }
    if let (Some(btp), Some(http)) = (&l.btp, &l.http) {
        if btp.bind == http.bind && btp.bind.port() != 0 {
            e.at(
                "listeners.http.bind",
                format!("{} is also listeners.btp.bind", http.bind),
            );
        }
    }
    if let Some(spsp) = &l.spsp {
        check_server_tls(&mut e, "listeners.spsp.tls", &spsp.tls);
        // Port 0 asks the OS for a free port each time, so it can never clash.
        for (name, bind) in [
            ("btp", l.btp.as_ref().map(|x| x.bind)),
            ("http", l.http.as_ref().map(|x| x.bind)),
            ("admin", l.admin.enabled.then_some(l.admin.bind)),
        ] {
            if bind == Some(spsp.bind) && spsp.bind.port() != 0 {
                e.at(
                    "listeners.spsp.bind",
                    format!("{} is also listeners.{name}.bind", spsp.bind),
                );
            }
        }
        if let Some(url) = &spsp.public_url {
            if !matches!(url.scheme(), "http" | "https")
                || url.query().is_some()
                || url.fragment().is_some()
            {
                e.at(
                    "listeners.spsp.public_url",
                    "must be an http:// or https:// URL without a query or fragment",
                );
            }
        }
        if let Some(id) = &spsp.default_account {
            if !config.accounts.get(id).is_some_and(|a| a.is_local()) {
                e.at(
                    "listeners.spsp.default_account",
                    format!("{id:?} is not an account with link.type = \"local\""),
                );
            }
        }
    }
    if let Some(settlement) = config.settlement_listener() {
        if !settlement.bind.ip().is_loopback() && settlement.token.is_none() {
            e.at(
                "listeners.settlement.token",
                "required when listeners.settlement.bind is not a loopback address",
            );
        }
        for (name, bind) in [
            ("btp", l.btp.as_ref().map(|x| x.bind)),
            ("http", l.http.as_ref().map(|x| x.bind)),
            ("spsp", l.spsp.as_ref().map(|x| x.bind)),
            ("admin", l.admin.enabled.then_some(l.admin.bind)),
        ] {
            if bind == Some(settlement.bind) && settlement.bind.port() != 0 {
                e.at(
                    "listeners.settlement.bind",
                    format!("{} is also listeners.{name}.bind", settlement.bind),
                );
            }
        }
    }
    if l.admin.enabled {
        if !l.admin.bind.ip().is_loopback() && l.admin.token.is_none() {
            e.at(
                "listeners.admin.token",
                "required when listeners.admin.bind is not a loopback address",
            );
        }
        for (name, bind) in [
            ("btp", l.btp.as_ref().map(|x| x.bind)),
            ("http", l.http.as_ref().map(|x| x.bind)),
        ] {
            // Port 0 asks the OS for a free port each time, so it can never clash.
            if bind == Some(l.admin.bind) && l.admin.bind.port() != 0 {
                e.at(
                    "listeners.admin.bind",
                    format!("{} is also listeners.{name}.bind", l.admin.bind),
                );
            }
        }
    }

    // [store]
    e.positive(
        "store.group_commit_max_batch",
        u64::from(config.store.group_commit_max_batch),
    );
    if config.store.path.as_os_str().is_empty() {
        e.at("store.path", "must not be empty");
    }

    // [log]
    for directive in config.log.level.split(',') {
        let level = directive.rsplit('=').next().unwrap_or(directive).trim();
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            e.at(
                "log.level",
                format!(
                    "{directive:?}: level must be one of {}",
                    LOG_LEVELS.join(", ")
                ),
            );
        }
    }

    // [sender]
    let sender = &config.sender;
    if sender.default_slippage.as_rate().numerator()
        >= sender.default_slippage.as_rate().denominator()
    {
        e.at("sender.default_slippage", "must be below 1");
    }
    e.positive("sender.packet_expiry_ms", sender.packet_expiry_ms);
    e.positive("sender.idle_timeout_ms", sender.idle_timeout_ms);
    e.positive("sender.probe_timeout_ms", sender.probe_timeout_ms);
    e.positive("sender.quote_ttl_ms", sender.quote_ttl_ms);
    e.positive("sender.spsp_timeout_ms", sender.spsp_timeout_ms);
    e.positive("sender.max_payments", sender.max_payments as u64);
    if sender.initial_in_flight == 0 {
        e.at("sender.initial_in_flight", "must be at least 1");
    }
    if sender.max_in_flight < sender.initial_in_flight {
        e.at(
            "sender.max_in_flight",
            "must be at least sender.initial_in_flight",
        );
    }

    // [paid_http]
    if let Some(paid) = &config.paid_http {
        check_server_tls(&mut e, "paid_http.tls", &paid.tls);
        if !matches!(paid.upstream.scheme(), "http" | "https")
            || paid.upstream.query().is_some()
            || paid.upstream.fragment().is_some()
        {
            e.at(
                "paid_http.upstream",
                "must be an http:// or https:// URL without a query or fragment",
            );
        }
        if !config
            .accounts
            .get(&paid.account)
            .is_some_and(|a| a.is_local())
        {
            e.at(
                "paid_http.account",
                format!(
                    "{:?} is not an account with link.type = \"local\"",
                    paid.account
                ),
            );
        }
        e.positive("paid_http.upstream_timeout_ms", paid.upstream_timeout_ms);
        for (i, route) in paid.routes.iter().enumerate() {
            let same = |other: &crate::config::PaidRouteConfig| {
                other.path_prefix == route.path_prefix
                    && other.method.as_deref().map(str::to_ascii_uppercase)
                        == route.method.as_deref().map(str::to_ascii_uppercase)
            };
            if let Some(first) = paid.routes[..i].iter().position(same) {
                e.at(
                    format!("paid_http.routes[{i}]"),
                    format!("the same method and path_prefix as paid_http.routes[{first}]"),
                );
            }
            if !route.path_prefix.starts_with('/') {
                e.at(
                    format!("paid_http.routes[{i}].path_prefix"),
                    "must start with /",
                );
            }
            if let Some(method) = &route.method {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                    e.at(
                        format!("paid_http.routes[{i}].method"),
                        "must be an HTTP method such as GET or POST",
                    );
                }
            }
        }
    }

    // [accounts]
    let mut segments: BTreeMap<&str, &str> = BTreeMap::new();
    let mut btp_tokens: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    let mut http_paths: BTreeMap<String, &str> = BTreeMap::new();
    for (id, a) in &config.accounts {
        let p = format!("accounts.{id}");
        if !valid_account_id(id) {
            e.at(
                p.clone(),
                "account id must be non-empty and use only A-Z a-z 0-9 _ ~ - .",
            );
        }
        check_account(&mut e, &p, id, a, config);
        if let Some(seg) = a.child_segment(id) {
            if let Some(other) = segments.insert(seg, id) {
                e.at(
                    format!("{p}.ilp_address_segment"),
                    format!("segment {seg:?} is already used by account {other:?}"),
                );
            }
        }
        match &a.link {
            LinkConfig::BtpServer {
                auth_username,
                auth_token,
            } => {
                let key = (auth_username.as_deref().unwrap_or(""), auth_token.expose());
                if let Some(other) = btp_tokens.insert(key, id) {
                    e.at(
                        format!("{p}.link.auth_token"),
                        format!("same BTP credentials as account {other:?}; the server could not tell them apart"),
                    );
                }
            }
            LinkConfig::Http { .. } => {
                if let Some(path) = a.http_incoming_path(id) {
                    let dup = http_paths.get(&path).copied();
                    if let Some(other) = dup {
                        e.at(
                            format!("{p}.link.incoming_path"),
                            format!("{path:?} is already used by account {other:?}"),
                        );
                    } else {
                        http_paths.insert(path, id);
                    }
                }
            }
            _ => {}
        }
    }
    e.0
}

fn check_account(e: &mut Errors, p: &str, id: &str, a: &AccountConfig, config: &Config) {
    // An empty code inherited from [node] is reported there once.
    if a.asset_code.is_empty() && !config.node.asset_code.is_empty() {
        e.at(format!("{p}.asset_code"), "must not be empty");
    }
    if a.ilp_address_segment.is_some() && a.relation != Relation::Child {
        e.at(
            format!("{p}.ilp_address_segment"),
            "applies only to accounts with relation = \"child\"",
        );
    }
    if let Some(seg) = a.child_segment(id) {
        if validate_segment(seg).is_err() {
            let key = if a.ilp_address_segment.is_some() {
                format!("{p}.ilp_address_segment")
            } else {
                p.to_string()
            };
            e.at(
                key,
                format!("{seg:?} is not a valid address segment (A-Z a-z 0-9 _ ~ -)"),
            );
        } else if let Some(node) = &config.node.ilp_address {
            let child = format!("{}.{seg}", node.as_str());
            if validate_address(child.as_bytes()).is_err() {
                e.at(
                    format!("{p}.ilp_address_segment"),
                    format!("child address {child:?} would be invalid (too long?)"),
                );
            }
        }
    }
    if let Some(max) = a.max_packet_amount {
        e.positive(format!("{p}.max_packet_amount"), max);
    }
    if let Some(balance) = &a.balance {
        for v in balance.limits().violations() {
            e.at(format!("{p}.balance.{}", v.field), v.message);
        }
    }
    let rl = &a.rate_limit;
    e.positive(
        format!("{p}.rate_limit.refill_period_ms"),
        rl.refill_period_ms,
    );
    e.positive(format!("{p}.rate_limit.refill_count"), rl.refill_count);
    if let Some(t) = a.throughput.incoming_amount_per_second {
        e.positive(format!("{p}.throughput.incoming_amount_per_second"), t);
    }
    if let Some(t) = a.throughput.outgoing_amount_per_second {
        e.positive(format!("{p}.throughput.outgoing_amount_per_second"), t);
    }
    if a.btp_idempotent && !a.link.is_btp() {
        e.at(
            format!("{p}.btp_idempotent"),
            "applies only to btp-server and btp-client links",
        );
    }
    if let Some(url) = &a.settlement_engine_url {
        if !matches!(url.scheme(), "http" | "https")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            e.at(
                format!("{p}.settlement_engine_url"),
                "must be an http:// or https:// URL without a query or fragment",
            );
        } else if !url.username().is_empty() || url.password().is_some() {
            e.at(
                format!("{p}.settlement_engine_url"),
                "credentials in the URL are not sent to the engine; keep the engine on loopback",
            );
        } else if a.settles_bilaterally() {
            e.at(
                format!("{p}.settlement_engine_url"),
                "an account settles either through an engine or bilaterally \
                 (settlement.bilateral = true), not both",
            );
        } else if a.is_local() {
            e.at(
                format!("{p}.settlement_engine_url"),
                "a local account has no peer to settle with",
            );
        }
    }
    check_link(e, &format!("{p}.link"), &a.link, config);
    check_local(e, p, a);
}

/// A `local` account: the node holds its money under an address of ours, and nothing crosses a
/// link, so link-only settings make no sense for it.
fn check_local(e: &mut Errors, p: &str, a: &AccountConfig) {
    if !a.is_local() {
        if a.receiver.is_some() {
            e.at(
                format!("{p}.receiver"),
                "applies only to accounts with link.type = \"local\"",
            );
        }
        return;
    }
    if a.relation != Relation::Child {
        e.at(
            format!("{p}.relation"),
            "a local account's address is under ours: relation must be \"child\"",
        );
    }
    if a.settles_bilaterally() {
        e.at(
            format!("{p}.settlement.bilateral"),
            "a local account has no link to settle over",
        );
    }
    if let Some(hook) = a.receiver.as_ref().and_then(|r| r.webhook.as_ref()) {
        if !matches!(hook.url.scheme(), "http" | "https") {
            e.at(
                format!("{p}.receiver.webhook.url"),
                "must be an http:// or https:// URL",
            );
        }
        if hook.secret.expose().is_empty() {
            e.at(format!("{p}.receiver.webhook.secret"), "must not be empty");
        }
    }
    if let Some(maximum) = a.receiver_maximum() {
        if maximum == 0 || i64::try_from(maximum).is_err() {
            e.at(
                format!("{p}.receiver.maximum"),
                format!("must be between 1 and {}", i64::MAX),
            );
        }
        if a.balance.as_ref().is_some_and(|b| b.minimum.is_some()) {
            e.at(
                format!("{p}.receiver.maximum"),
                "says the same as balance.minimum (its negative): set one of them",
            );
        }
    }
}

fn check_link(e: &mut Errors, p: &str, link: &LinkConfig, config: &Config) {
    let client_tls = |e: &mut Errors, tls: &super::ClientTlsConfig| {
        if tls.cert_path.is_some() != tls.key_path.is_some() {
            e.at(
                format!("{p}.tls"),
                "cert_path and key_path go together: set both or neither",
            );
        }
    };
    match link {
        LinkConfig::BtpServer { auth_token, .. } => {
            if config.listeners.btp.is_none() {
                e.at(
                    format!("{p}.type"),
                    "\"btp-server\" needs a [listeners.btp] section",
                );
            }
            if auth_token.expose().is_empty() {
                e.at(format!("{p}.auth_token"), "must not be empty");
            }
        }
        LinkConfig::BtpClient { url, tls, .. } => {
            if !matches!(url.scheme(), "ws" | "wss" | "btp+ws" | "btp+wss") {
                e.at(format!("{p}.url"), "must be a ws:// or wss:// URL");
            }
            client_tls(e, tls);
        }
        LinkConfig::Http {
            incoming_path,
            outgoing_url,
            mode,
            callback_url,
            tls,
            ..
        } => {
            if config.listeners.http.is_none() {
                e.at(
                    format!("{p}.type"),
                    "\"http\" needs a [listeners.http] section",
                );
            }
            if let Some(path) = incoming_path {
                if !path.starts_with('/') {
                    e.at(format!("{p}.incoming_path"), "must start with '/'");
                }
            }
            if !matches!(outgoing_url.scheme(), "http" | "https") {
                e.at(
                    format!("{p}.outgoing_url"),
                    "must be an http:// or https:// URL",
                );
            }
            match (mode, callback_url) {
                (HttpMode::Async, None) => e.at(
                    format!("{p}.callback_url"),
                    "required when mode = \"async\"",
                ),
                (HttpMode::Sync, Some(_)) => e.at(
                    format!("{p}.callback_url"),
                    "applies only when mode = \"async\"",
                ),
                (_, Some(url)) if !matches!(url.scheme(), "http" | "https") => e.at(
                    format!("{p}.callback_url"),
                    "must be an http:// or https:// URL",
                ),
                _ => {}
            }
            client_tls(e, tls);
        }
        LinkConfig::Memory | LinkConfig::Local => {}
    }
}
