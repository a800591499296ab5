//! Tests of the configuration schema, defaults, and error reporting.

use super::*;
use crate::rates::{Asset, Rate, Spread};
use std::net::SocketAddr;
use std::path::PathBuf;

fn errors(text: &str) -> ConfigErrors {
    match Config::from_toml_str(text) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e,
    }
}

fn paths(e: &ConfigErrors) -> Vec<&str> {
    e.errors().iter().map(|x| x.path.as_str()).collect()
}

fn assert_error(e: &ConfigErrors, path: &str, needle: &str) {
    assert!(
        e.errors()
            .iter()
            .any(|x| x.path == path && x.message.contains(needle)),
        "no error at {path:?} containing {needle:?} in:\n{e}"
    );
}

#[test]
fn reference_config_validates_with_expected_values() {
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
    let c = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.node.ilp_address.as_ref().map(|a| a.as_str()),
        Some("test.ilp-connector")
    );
    assert_eq!(c.node.asset_code, "USD");
    assert_eq!(c.node.asset_scale, 9);
    assert_eq!(c.node.spread, Spread::parse_decimal("0.002").unwrap());
    assert_eq!(c.node.min_message_window_ms, 1_000);
    assert_eq!(c.node.max_hold_time_ms, 30_000);
    assert!(c.node.reflect_payments);
    assert_eq!(c.node.routing_secret, None);
    assert_eq!(c.rates.backend, RateBackendKind::OneToOne);
    assert_eq!(c.routing.default_route, "auto");
    assert!(c.routing.static_routes.is_empty());
    assert_eq!(c.broadcast, BroadcastConfig::default());
    let btp = c.listeners.btp.as_ref().unwrap();
    assert_eq!(btp.bind, "127.0.0.1:7768".parse::<SocketAddr>().unwrap());
    assert!(!btp.tls.enabled);
    assert!(c.listeners.http.is_none());
    assert_eq!(
        c.listeners.admin.bind,
        "127.0.0.1:7770".parse::<SocketAddr>().unwrap()
    );
    assert!(c.listeners.admin.enabled);
    assert_eq!(c.store.backend, StoreBackend::Rocksdb);
    assert_eq!(c.store.path, PathBuf::from("./data"));
    assert!(c.store.sync);
    assert_eq!(c.log.format, LogFormat::Terminal);
    assert_eq!(c.log.level, "info");

    assert_eq!(c.sender, SenderConfig::default());
    assert_eq!(c.accounts.len(), 3);
    let wallet = &c.accounts["wallet"];
    assert!(wallet.is_local());
    // A local account pays what it holds: its balance may rise to 0.
    assert_eq!(wallet.balance_limits().maximum, Some(0));
    assert_eq!(wallet.balance_limits().minimum, None);
    let shop = &c.accounts["shop"];
    assert!(shop.is_local());
    assert_eq!((shop.asset_code.as_str(), shop.asset_scale), ("USD", 9));
    assert_eq!(shop.receiver_maximum(), None);
    let spsp = c.listeners.spsp.as_ref().unwrap();
    assert_eq!(spsp.bind, "127.0.0.1:7772".parse::<SocketAddr>().unwrap());
    assert_eq!(spsp.default_account.as_deref(), Some("shop"));
    let alice = &c.accounts["alice"];
    assert_eq!(alice.relation, Relation::Child);
    assert_eq!(alice.asset_code, "USD");
    assert_eq!(alice.asset_scale, 9);
    assert_eq!(alice.child_segment("alice"), Some("alice"));
    assert_eq!(alice.max_packet_amount, Some(1_000_000_000));
    assert!(!alice.sends_routes());
    assert!(!alice.receives_routes());
    assert_eq!(
        alice.link,
        LinkConfig::BtpServer {
            auth_username: None,
            auth_token: SecretString::new("alice-secret-token"),
        }
    );
    let limits = alice.balance_limits();
    assert_eq!(limits.minimum, Some(-1_000_000_000));
    assert_eq!(limits.maximum, Some(10_000_000_000));
    assert_eq!(limits.settle_threshold, None);
    assert_eq!(limits.settle_to, 0);
    assert_eq!(
        alice.rate_limit.bucket(),
        Some(crate::policy::TokenBucketParams::RATE_LIMIT_DEFAULT)
    );
    assert_eq!(alice.throughput.incoming_bucket(), None);
    assert_eq!(alice.dedup, DedupConfig::default());
    assert!(c.validate().is_ok());
    assert_eq!(c.default_route_account(), None);
    assert_eq!(c.address_parent(), None);
}

#[test]
fn empty_file_needs_an_address_only() {
    let e = errors("");
    assert_eq!(paths(&e), vec!["node.ilp_address"]);
    let c = Config::from_toml_str("[node]\nilp_address = \"g.me\"\n").unwrap();
    assert_eq!(
        c.node,
        NodeConfig {
            ilp_address: Some("g.me".try_into().unwrap()),
            ..NodeConfig::default()
        }
    );
    assert_eq!(c.store, StoreConfig::default());
    assert_eq!(c.listeners, ListenersConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.routing, RoutingConfig::default());
}

#[test]
fn reports_every_error_at_once_with_paths() {
    let text = r#"
[node]
ilp_address = "nope.x"
asset_code = ""
spread = "1.5"
min_message_window_ms = 0
max_hold_time_ms = -5

[rates]
backend = "static"

[routing]
default_route = "nobody"
static_routes = [
  { prefix = "g.x.", account = "alice" },
  { prefix = "g.y", account = "ghost" },
]

[broadcast]
interval_ms = 50000
route_expiry_ms = 40000

[listeners.btp]
bind = "127.0.0.1:7768"
tls = { enabled = true }

[listeners.admin]
bind = "0.0.0.0:7770"

[store]
group_commit_max_batch = 0

[log]
level = "loud"
format = "xml"

[accounts.alice]
relation = "child"
asset_scale = 300
max_packet_amount = 0
ilp_address_segment = "bad seg"
link = { type = "btp-server", auth_token = "t" }
balance = { minimum = 10, maximum = 5, settle_threshold = 0, settle_to = 20 }
rate_limit = { refill_period_ms = 0 }
throughput = { incoming_amount_per_second = 0 }

[accounts.bob]
relation = "friend"
link = { type = "memory" }

[accounts.carol]
relation = "peer"
ilp_address_segment = "carol"
btp_idempotent = true
link = { type = "http", outgoing_url = "ftp://x", mode = "async" }

[accounts.dave]
relation = "child"
ilp_address_segment = "alice2"
link = { type = "btp-client", url = "http://not-ws", auth_token = "t", tls = { cert_path = "c" } }

[accounts.erin]
relation = "child"
ilp_address_segment = "alice2"
link = { type = "btp-server", auth_token = "t" }
"#;
    let e = errors(text);
    let expected = [
        ("node.ilp_address", "unknown scheme"),
        ("node.asset_code", "must not be empty"),
        ("node.spread", "below 1"),
        ("node.min_message_window_ms", "greater than 0"),
        ("node.max_hold_time_ms", "invalid value"),
        ("rates.static", "at least one rate"),
        ("routing.default_route", "no account \"nobody\""),
        (
            "routing.static_routes[0].prefix",
            "not a valid address prefix",
        ),
        ("routing.static_routes[1].account", "no account \"ghost\""),
        (
            "broadcast.route_expiry_ms",
            "longer than broadcast.interval_ms",
        ),
        ("listeners.btp.tls.cert_path", "required when tls.enabled"),
        ("listeners.btp.tls.key_path", "required when tls.enabled"),
        ("listeners.admin.token", "not a loopback"),
        ("store.group_commit_max_batch", "greater than 0"),
        ("log.level", "level must be one of"),
        ("log.format", "unknown variant"),
        ("accounts.alice.asset_scale", "invalid value"),
        ("accounts.alice.max_packet_amount", "greater than 0"),
        (
            "accounts.alice.ilp_address_segment",
            "not a valid address segment",
        ),
        ("accounts.alice.balance.maximum", "greater than minimum"),
        (
            "accounts.alice.balance.settle_threshold",
            "at least minimum",
        ),
        ("accounts.alice.balance.settle_to", "at most maximum"),
        (
            "accounts.alice.rate_limit.refill_period_ms",
            "greater than 0",
        ),
        (
            "accounts.alice.throughput.incoming_amount_per_second",
            "greater than 0",
        ),
        ("accounts.bob.relation", "unknown variant `friend`"),
        (
            "accounts.carol.ilp_address_segment",
            "only to accounts with relation = \"child\"",
        ),
        (
            "accounts.carol.btp_idempotent",
            "only to btp-server and btp-client",
        ),
        (
            "accounts.carol.link.type",
            "needs a [listeners.http] section",
        ),
        ("accounts.carol.link.outgoing_url", "http:// or https://"),
        (
            "accounts.carol.link.callback_url",
            "required when mode = \"async\"",
        ),
        ("accounts.dave.link.url", "ws:// or wss://"),
        ("accounts.dave.link.tls", "set both or neither"),
        (
            "accounts.erin.ilp_address_segment",
            "already used by account \"dave\"",
        ),
        (
            "accounts.erin.link.auth_token",
            "same BTP credentials as account \"alice\"",
        ),
    ];
    for (path, needle) in expected {
        assert_error(&e, path, needle);
    }
    // Nothing beyond the listed problems: no derived complaints about rejected keys.
    assert_eq!(e.errors().len(), expected.len(), "\n{e}");
    // One line per error, `path: message`.
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), expected.len());
    assert!(shown
        .lines()
        .any(|l| l == "accounts.alice.max_packet_amount: must be greater than 0"));
}

#[test]
fn unknown_keys_reported_at_every_depth() {
    let text = r#"
colour = "blue"
[node]
ilp_address = "test.a"
asset_kode = "USD"
[listeners.btp]
bind = "127.0.0.1:1"
tls = { enabled = false, sert_path = "x" }
[listeners.admin]
port = 1
[routing]
static_routes = [{ prefix = "test.b", account = "p", weight = 3 }]
[accounts.p]
relation = "peer"
surprise = true
link = { type = "btp-client", url = "ws://127.0.0.1:1", auth_token = "t", mystery = 1, tls = { ca_pth = "x" } }
balance = { maximum = 10, extra = 1 }
rate_limit = { capacity = 1, burst = 2 }
"#;
    let e = errors(text);
    for path in [
        "colour",
        "node.asset_kode",
        "listeners.btp.tls.sert_path",
        "listeners.admin.port",
        "routing.static_routes[0].weight",
        "accounts.p.surprise",
        "accounts.p.link.mystery",
        "accounts.p.link.tls.ca_pth",
        "accounts.p.balance.extra",
        "accounts.p.rate_limit.burst",
    ] {
        assert_error(&e, path, "unknown key");
    }
    assert_eq!(e.errors().len(), 10, "\n{e}");
}

#[test]
fn several_type_errors_in_one_account_all_reported() {
    let text = r#"
[node]
ilp_address = "test.a"
[accounts.x]
relation = "child"
asset_scale = "nine"
max_packet_amount = -1
send_routes = "yes"
link = { type = "memory" }
dedup = { enabled = 1 }
"#;
    let e = errors(text);
    for path in [
        "accounts.x.asset_scale",
        "accounts.x.max_packet_amount",
        "accounts.x.send_routes",
        "accounts.x.dedup.enabled",
    ] {
        assert!(e.has_path(path), "missing {path}:\n{e}");
    }
    assert_eq!(e.errors().len(), 4, "\n{e}");
}

#[test]
fn missing_required_keys() {
    let text = r#"
[node]
ilp_address = "test.a"
[accounts.x]
link = { type = "btp-client" }
[accounts.y]
relation = "peer"
[accounts.z]
relation = "peer"
link = { type = "memory" }
balance = { minimum = 0 }
[listeners.btp]
"#;
    let e = errors(text);
    assert_error(&e, "accounts.x.relation", "required key is missing");
    assert_error(
        &e,
        "accounts.x.link",
        "type \"btp-client\" needs `url`; type \"btp-client\" needs `auth_token`",
    );
    assert_error(&e, "accounts.y.link", "required key is missing");
    assert_error(&e, "accounts.z.balance.maximum", "required key is missing");
    assert_error(&e, "listeners.btp.bind", "required key is missing");
    assert_eq!(e.errors().len(), 5, "\n{e}");
}

#[test]
fn link_keys_checked_against_type() {
    let text = r#"
[node]
ilp_address = "test.a"
[accounts.x]
relation = "peer"
link = { type = "btp-client", auth_token = "t", mode = "sync" }
[accounts.y]
relation = "peer"
link = { type = "memory", url = "ws://a" }
[accounts.z]
relation = "peer"
link = { type = "carrier-pigeon" }
"#;
    let e = errors(text);
    assert_error(
        &e,
        "accounts.x.link",
        "`mode` does not apply to type \"btp-client\"",
    );
    assert_error(&e, "accounts.x.link", "type \"btp-client\" needs `url`");
    assert_error(
        &e,
        "accounts.y.link",
        "`url` does not apply to type \"memory\"",
    );
    assert_error(
        &e,
        "accounts.z.link.type",
        "unknown variant `carrier-pigeon`",
    );
    assert_eq!(e.errors().len(), 3, "\n{e}");
}

#[test]
fn syntax_error_is_one_line_with_position() {
    let e = errors("[node\nilp_address = 1");
    assert_eq!(e.errors().len(), 1);
    assert_eq!(e.errors()[0].path, "");
    assert!(e.to_string().starts_with("TOML syntax error"), "{e}");
    assert!(e.to_string().contains("line 1"), "{e}");
    let e = errors("[node]\na = 1\na = 2\n");
    assert!(e.to_string().contains("duplicate"), "{e}");
}

#[test]
fn non_table_sections_and_accounts() {
    let e = errors("node = 5\naccounts = 3\n");
    assert_error(&e, "node", "invalid type");
    assert_error(&e, "accounts", "expected a table");
    let e = errors("[node]\nilp_address = \"test.a\"\n[accounts]\nx = 1\n");
    assert_error(&e, "accounts.x", "expected a table, found integer");
}

#[test]
fn address_inherited_from_parent() {
    let parent = |id: &str| {
        format!(
            "[accounts.{id}]\nrelation = \"parent\"\nlink = {{ type = \"btp-client\", url = \"wss://up.example/btp\", auth_token = \"t\" }}\n"
        )
    };
    let one = Config::from_toml_str(&parent("up")).unwrap();
    assert_eq!(one.address_parent(), Some("up"));
    assert_eq!(one.default_route_account(), Some("up"));
    assert!(one.accounts["up"].sends_routes());
    assert!(one.accounts["up"].receives_routes());

    let two = format!("{}{}", parent("a"), parent("b"));
    let e = errors(&two);
    assert_error(
        &e,
        "node.ilp_address_inherit_from",
        "several parents (a, b)",
    );
    let chosen = format!("[node]\nilp_address_inherit_from = \"b\"\n{two}");
    assert_eq!(
        Config::from_toml_str(&chosen).unwrap().address_parent(),
        Some("b")
    );

    let wrong = "[node]\nilp_address_inherit_from = \"c\"\n[accounts.c]\nrelation = \"peer\"\nlink = { type = \"memory\" }\n";
    assert_error(
        &errors(wrong),
        "node.ilp_address_inherit_from",
        "not a parent",
    );
    let both = "[node]\nilp_address = \"test.a\"\nilp_address_inherit_from = \"c\"\n[accounts.c]\nrelation = \"parent\"\nlink = { type = \"memory\" }\n";
    assert_error(&errors(both), "node.ilp_address_inherit_from", "no effect");
}

#[test]
fn static_rates_backend() {
    let text = r#"
[node]
ilp_address = "test.a"
asset_code = "EUR"
asset_scale = 2
[rates]
backend = "static"
[rates.static]
EUR = "1"
USD = "1.25"
[accounts.u]
relation = "peer"
asset_code = "USD"
asset_scale = 6
link = { type = "memory" }
[accounts.g]
relation = "peer"
asset_code = "GBP"
link = { type = "memory" }
"#;
    let e = errors(text);
    assert_error(&e, "accounts.g.asset_code", "no rate for \"GBP\"");
    assert_eq!(e.errors().len(), 1, "\n{e}");

    let ok = text.replace("GBP", "EUR");
    let c = Config::from_toml_str(&ok).unwrap();
    assert_eq!(c.accounts["g"].asset_scale, 2, "inherits the node's scale");
    let ex = c.exchange().unwrap();
    let eur = Asset {
        code: "EUR",
        scale: 2,
    };
    let usd = Asset {
        code: "USD",
        scale: 6,
    };
    // 100 EUR cents -> 1.25 USD at scale 6, less 0.2 %: 1_247_500.
    assert_eq!(ex.convert(100, eur, usd), Ok(1_247_500));
    assert_eq!(c.rates.static_rates["USD"], Rate::new(5, 4).unwrap());

    let bad = text.replace("\"1.25\"", "\"1,25\"");
    assert_error(&errors(&bad), "rates.static.USD", "invalid decimal");
    let zero = text.replace("\"1.25\"", "\"0\"");
    assert_error(&errors(&zero), "rates.static.USD", "greater than 0");
}

#[test]
fn http_links_and_listener() {
    let text = r#"
[node]
ilp_address = "test.a"
[listeners.http]
bind = "127.0.0.1:7769"
[listeners.http.tls]
require_client_cert = true
[accounts.h1]
relation = "peer"
link = { type = "http", outgoing_url = "https://peer/ilp", outgoing_auth_token = "o", incoming_auth_token = "i", mode = "async", callback_url = "https://me/cb" }
[accounts.h2]
relation = "peer"
link = { type = "http", outgoing_url = "http://peer2/ilp", incoming_path = "/accounts/h1/ilp" }
[accounts.h3]
relation = "peer"
link = { type = "http", outgoing_url = "http://peer3/ilp", incoming_path = "no-slash", callback_url = "https://x" }
"#;
    let e = errors(text);
    assert_error(
        &e,
        "listeners.http.tls.client_ca_path",
        "require_client_cert",
    );
    assert_error(
        &e,
        "accounts.h2.link.incoming_path",
        "already used by account \"h1\"",
    );
    assert_error(&e, "accounts.h3.link.incoming_path", "must start with '/'");
    assert_error(
        &e,
        "accounts.h3.link.callback_url",
        "only when mode = \"async\"",
    );
    assert_eq!(e.errors().len(), 4, "\n{e}");

    let fixed = text
        .replace("require_client_cert = true", "h2_unused = 0")
        .replace("h2_unused = 0", "")
        .replace("/accounts/h1/ilp", "/h2")
        .replace("no-slash", "/h3")
        .replace(", callback_url = \"https://x\"", "");
    let c = Config::from_toml_str(&fixed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.accounts["h1"].http_incoming_path("h1").as_deref(),
        Some("/accounts/h1/ilp")
    );
    match &c.accounts["h1"].link {
        LinkConfig::Http {
            mode,
            callback_url,
            outgoing_auth_token,
            ..
        } => {
            assert_eq!(*mode, HttpMode::Async);
            assert_eq!(
                callback_url.as_ref().map(|u| u.as_str()),
                Some("https://me/cb")
            );
            assert_eq!(outgoing_auth_token.as_ref().map(|t| t.expose()), Some("o"));
        }
        other => panic!("{other:?}"),
    }
    assert!(c.listeners.http.as_ref().unwrap().h2);
}

#[test]
fn routing_secret_hex_or_base64() {
    let hex = "[node]\nilp_address = \"test.a\"\nrouting_secret = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n";
    let c = Config::from_toml_str(hex).unwrap();
    let expected: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(c.node.routing_secret, Some(Secret32(expected)));
    assert_eq!(
        format!("{:?}", c.node.routing_secret),
        "Some(Secret32(***))"
    );
    let b64 = "[node]\nilp_address = \"test.a\"\nrouting_secret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n";
    assert_eq!(
        Config::from_toml_str(b64).unwrap().node.routing_secret,
        Some(Secret32(expected))
    );
    let short = "[node]\nilp_address = \"test.a\"\nrouting_secret = \"AAEC\"\n";
    assert_error(&errors(short), "node.routing_secret", "expected 32");
    let junk = "[node]\nilp_address = \"test.a\"\nrouting_secret = \"!!\"\n";
    assert_error(&errors(junk), "node.routing_secret", "64 hex digits");
}

#[test]
fn secrets_are_not_debug_printed() {
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
    let c = Config::from_toml_str(text).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("alice-secret-token"));
    assert!(debug.contains("***"));
}

#[test]
fn serializes_back_to_an_equal_config() {
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
    let c = Config::from_toml_str(text).unwrap();
    let again = toml::to_string(&c).unwrap();
    assert_eq!(Config::from_toml_str(&again), Ok(c));
}

#[test]
fn validate_on_built_config() {
    let mut c = Config::default();
    assert!(c.validate().unwrap_err().has_path("node.ilp_address"));
    c.node.ilp_address = Some("test.n".try_into().unwrap());
    c.broadcast.interval_ms = 0;
    let e = c.validate().unwrap_err();
    assert_eq!(paths(&e), vec!["broadcast.interval_ms"]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn reference() -> &'static str {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
    }

    #[test]
    fn listeners_may_share_port_zero_but_not_a_fixed_port() {
        let text = |port: u16| {
            format!(
                "[node]\nilp_address = \"g.me\"\n[listeners.btp]\nbind = \"127.0.0.1:{port}\"\n\
                 [listeners.http]\nbind = \"127.0.0.1:{port}\"\n[listeners.admin]\n\
                 bind = \"127.0.0.1:{port}\"\n"
            )
        };
        assert!(Config::from_toml_str(&text(0)).is_ok());
        let errors = Config::from_toml_str(&text(7000)).unwrap_err();
        assert!(errors.has_path("listeners.http.bind"), "{errors}");
        assert!(errors.has_path("listeners.admin.bind"), "{errors}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            if let Err(e) = Config::from_toml_str(&text) {
                prop_assert!(!e.errors().is_empty());
            }
        }

        #[test]
        fn any_single_line_edit_of_the_reference_never_panics(
            line in 0usize..200, value in prop_oneof![
                Just("-1".to_string()), Just("\"\"".to_string()), Just("true".to_string()),
                Just("[1, 2]".to_string()), Just("{ a = 1 }".to_string()), "[a-z0-9.]{0,12}",
            ],
        ) {
            let lines: Vec<String> = reference()
                .lines()
                .enumerate()
                .map(|(i, l)| match l.split_once(" = ") {
                    Some((k, _)) if i == line && !l.starts_with('#') => format!("{k} = {value}"),
                    _ => l.to_string(),
                })
                .collect();
            let text = lines.join("\n");
            match Config::from_toml_str(&text) {
                Ok(c) => prop_assert!(c.validate().is_ok()),
                Err(e) => prop_assert!(e.errors().iter().all(|x| !x.message.is_empty())),
            }
        }
    }
}

#[test]
fn log_directives_pick_the_most_specific_module() {
    use crate::config::{LogConfig, LogLevel};
    let config = LogConfig {
        level: "warn, ilp_actors=debug,ilp_actors::link::btp_ws=trace,ilp=off".into(),
        ..LogConfig::default()
    };
    let d = config.directives();
    assert_eq!(d.default, LogLevel::Warn);
    assert_eq!(d.level_for("ilp_actors::router"), LogLevel::Debug);
    assert_eq!(d.level_for("ilp_actors"), LogLevel::Debug);
    assert_eq!(
        d.level_for("ilp_actors::link::btp_ws::connection"),
        LogLevel::Trace
    );
    assert_eq!(d.level_for("ilp_actors::link::http"), LogLevel::Debug);
    assert_eq!(d.level_for("ilp::ccp"), LogLevel::Off);
    // A prefix of a segment is not its parent.
    assert_eq!(d.level_for("ilp_actorsx"), LogLevel::Warn);
    assert_eq!(d.level_for("other"), LogLevel::Warn);
    assert_eq!(d.max_level(), LogLevel::Trace);
    let plain = LogConfig::default().directives();
    assert_eq!(plain.default, LogLevel::Info);
    assert!(plain.modules.is_empty());
    assert_eq!(plain.max_level(), LogLevel::Info);
}

#[test]
fn io_threads_default_zero_bounded_and_start_only() {
    let base = "[node]\nilp_address = \"test.a\"\n";
    let c = Config::from_toml_str(base).unwrap();
    assert_eq!(c.node.io_threads, 0);
    let four = Config::from_toml_str(&format!("{base}io_threads = 4\n")).unwrap();
    assert_eq!(four.node.io_threads, 4);
    let errors = Config::from_toml_str(&format!("{base}io_threads = 1000\n")).unwrap_err();
    assert_eq!(errors.errors()[0].path, "node.io_threads");
    let changes = crate::config::ConfigChanges::between(&c, &four);
    assert_eq!(changes.needs_restart, vec!["node.io_threads"]);
    assert!(!changes.routing);
}

#[test]
fn http2_is_an_http_link_key() {
    let base = "[node]\nilp_address = \"test.a\"\n[listeners.http]\nbind = \"127.0.0.1:0\"\n[accounts.p]\nrelation = \"peer\"\n";
    let c = Config::from_toml_str(&format!(
        "{base}link = {{ type = \"http\", outgoing_url = \"http://127.0.0.1:9/\", http2 = true }}\n"
    ))
    .unwrap();
    assert!(matches!(
        &c.accounts["p"].link,
        crate::config::LinkConfig::Http { http2: true, .. }
    ));
    let errors = Config::from_toml_str(&format!(
        "{base}link = {{ type = \"btp-server\", auth_token = \"t\", http2 = true }}\n"
    ))
    .unwrap_err();
    assert!(
        errors.to_string().contains("`http2` does not apply"),
        "{errors}"
    );
}

#[test]
fn bilateral_settlement_is_off_unless_the_account_says_so() {
    let reference = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
    let c = Config::from_toml_str(reference).unwrap();
    assert!(!c.accounts["alice"].settles_bilaterally());
    assert!(c.accounts.values().all(|a| !a.settles_bilaterally()));

    let base = "[node]\nilp_address = \"test.a\"\n[accounts.p]\nrelation = \"peer\"\nlink = { type = \"memory\" }\n";
    let plain = Config::from_toml_str(base).unwrap();
    assert!(!plain.accounts["p"].settles_bilaterally());
    let on =
        Config::from_toml_str(&format!("{base}settlement = {{ bilateral = true }}\n")).unwrap();
    assert!(on.accounts["p"].settles_bilaterally());
    let off =
        Config::from_toml_str(&format!("{base}settlement = {{ bilateral = false }}\n")).unwrap();
    assert!(!off.accounts["p"].settles_bilaterally());
    // Printed back (check-config) and read again: the same.
    let again = toml::to_string(&on).unwrap();
    assert_eq!(Config::from_toml_str(&again), Ok(on.clone()));
    // Turning it on is a change a reload applies to the account.
    let changes = crate::config::ConfigChanges::between(&plain, &on);
    assert!(changes.updated.contains("p"), "{changes:?}");

    let e = errors(&format!("{base}settlement = {{ bilateral = \"yes\" }}\n"));
    assert_eq!(paths(&e), vec!["accounts.p.settlement.bilateral"]);
    let e = errors(&format!("{base}settlement = {{ bilatral = true }}\n"));
    assert_error(&e, "accounts.p.settlement.bilatral", "unknown key");
}

#[test]
fn settlement_engines_per_account_and_the_listener_they_call() {
    let base = "[node]\nilp_address = \"test.a\"\n[accounts.p]\nrelation = \"peer\"\n\
                link = { type = \"memory\" }\n";
    let plain = Config::from_toml_str(base).unwrap();
    assert_eq!(plain.settlement_listener(), None);
    let with = format!("{base}settlement_engine_url = \"http://127.0.0.1:3000/se\"\n");
    let c = Config::from_toml_str(&with).unwrap();
    assert!(c.accounts["p"].settles_with_engine());
    assert!(!c.accounts["p"].settles_bilaterally());
    assert_eq!(
        c.accounts["p"]
            .settlement_engine_url
            .as_ref()
            .map(|u| u.as_str()),
        Some("http://127.0.0.1:3000/se")
    );
    // An account with an engine brings the engines' API up on its defaults.
    let listener = c.settlement_listener().unwrap();
    assert_eq!(listener.bind, "127.0.0.1:7771".parse().unwrap());
    assert_eq!(listener.token, None);
    // Printed back (check-config) and read again: the same; adding an engine is an update.
    let again = toml::to_string(&c).unwrap();
    assert_eq!(Config::from_toml_str(&again), Ok(c.clone()));
    let changes = crate::config::ConfigChanges::between(&plain, &c);
    assert!(changes.updated.contains("p"), "{changes:?}");
    // The table alone serves it too (engines configured later by a reload).
    let table = Config::from_toml_str(&format!(
        "{base}[listeners.settlement]\nbind = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n"
    ))
    .unwrap();
    let listener = table.settlement_listener().unwrap();
    assert_eq!(listener.bind.port(), 0);
    assert!(listener.token.is_some());

    let e = errors(&format!(
        "{base}settlement_engine_url = \"ftp://127.0.0.1:3000\"\n"
    ));
    assert_error(
        &e,
        "accounts.p.settlement_engine_url",
        "http:// or https://",
    );
    let e = errors(&format!(
        "{base}settlement_engine_url = \"http://u:p@e/\"\n"
    ));
    assert_error(&e, "accounts.p.settlement_engine_url", "credentials");
    let e = errors(&format!(
        "{base}settlement_engine_url = \"http://e/?x=1\"\n"
    ));
    assert_error(&e, "accounts.p.settlement_engine_url", "without a query");
    let e = errors(&format!(
        "{base}settlement_engine_url = \"http://127.0.0.1:3000\"\nsettlement = {{ bilateral = true }}\n"
    ));
    assert_eq!(paths(&e), vec!["accounts.p.settlement_engine_url"]);
    assert_error(&e, "accounts.p.settlement_engine_url", "not both");
    let e = errors(&format!(
        "{with}[listeners.settlement]\nbind = \"0.0.0.0:7771\"\n"
    ));
    assert_eq!(paths(&e), vec!["listeners.settlement.token"]);
    let e = errors(&format!(
        "{with}[listeners.admin]\nbind = \"127.0.0.1:7771\"\n"
    ));
    assert_error(
        &e,
        "listeners.settlement.bind",
        "is also listeners.admin.bind",
    );
    let e = errors(&format!(
        "{with}[listeners.settlement]\nbnid = \"127.0.0.1:1\"\n"
    ));
    assert_error(&e, "listeners.settlement.bnid", "unknown key");
    let local = "[node]\nilp_address = \"test.a\"\n[accounts.l]\nrelation = \"child\"\n\
                 link = { type = \"local\" }\nsettlement_engine_url = \"http://127.0.0.1:3000\"\n";
    let e = errors(local);
    assert_error(&e, "accounts.l.settlement_engine_url", "no peer");
}

#[test]
fn local_accounts_and_their_receiver_table() {
    let ok = r#"
[node]
ilp_address = "test.a"
receiver_secret = "0808080808080808080808080808080808080808080808080808080808080808"
[accounts.shop]
relation = "child"
link = { type = "local" }
[accounts.shop.receiver]
maximum = 5000
[accounts.wallet]
relation = "child"
link = { type = "local" }
"#;
    let c = Config::from_toml_str(ok).unwrap();
    assert_eq!(c.node.receiver_secret, Some(Secret32([8; 32])));
    let shop = &c.accounts["shop"];
    assert!(shop.is_local());
    assert_eq!(shop.receiver_maximum(), Some(5000));
    // The maximum received is the balance's floor: money received lowers the balance.
    assert_eq!(shop.balance_limits().minimum, Some(-5000));
    assert_eq!(shop.keep_events(), 1_000_000);
    let wallet = &c.accounts["wallet"];
    assert!(wallet.is_local() && wallet.receiver.is_none());
    assert_eq!(wallet.keep_events(), 1_000_000);
    assert_eq!(wallet.balance_limits().minimum, None);

    let bad = r#"
[node]
ilp_address = "test.a"
[accounts.shop]
relation = "peer"
link = { type = "local", auth_token = "x" }
[accounts.shop.receiver]
maximum = 0
colour = "red"
[accounts.both]
relation = "child"
link = { type = "local" }
settlement = { bilateral = true }
[accounts.both.balance]
minimum = -10
maximum = 10
[accounts.both.receiver]
maximum = 10
[accounts.linked]
relation = "child"
link = { type = "memory" }
[accounts.linked.receiver]
"#;
    let e = errors(bad);
    assert_error(
        &e,
        "accounts.shop.link",
        "`auth_token` does not apply to type \"local\"",
    );
    assert_error(&e, "accounts.shop.receiver.colour", "unknown key");
    let text = bad
        .replace(", auth_token = \"x\"", "")
        .replace("colour = \"red\"\n", "");
    let e = errors(&text);
    assert_error(&e, "accounts.shop.relation", "must be \"child\"");
    assert_error(&e, "accounts.shop.receiver.maximum", "between 1 and");
    assert_error(&e, "accounts.both.receiver.maximum", "balance.minimum");
    assert_error(
        &e,
        "accounts.both.settlement.bilateral",
        "no link to settle over",
    );
    assert_error(&e, "accounts.linked.receiver", "link.type = \"local\"");
    assert_eq!(e.errors().len(), 5, "\n{e}");
}

#[test]
fn spsp_listener_keys_and_their_checks() {
    let ok = r#"
[node]
ilp_address = "test.a"
[listeners.spsp]
bind = "127.0.0.1:7772"
default_account = "shop"
[accounts.shop]
relation = "child"
link = { type = "local" }
"#;
    let c = Config::from_toml_str(ok).unwrap();
    let spsp = c.listeners.spsp.as_ref().unwrap();
    assert_eq!(spsp.default_account.as_deref(), Some("shop"));
    assert_eq!(spsp.cache_max_age_s, 60);
    assert!(spsp.h2);
    assert!(!spsp.tls.enabled);

    let bad = r#"
[node]
ilp_address = "test.a"
[listeners.admin]
bind = "127.0.0.1:7772"
[listeners.spsp]
bind = "127.0.0.1:7772"
default_account = "kid"
[listeners.spsp.tls]
enabled = true
[accounts.kid]
relation = "child"
link = { type = "memory" }
"#;
    let e = errors(bad);
    assert_error(&e, "listeners.spsp.bind", "is also listeners.admin.bind");
    assert_error(
        &e,
        "listeners.spsp.default_account",
        "link.type = \"local\"",
    );
    assert!(
        paths(&e)
            .iter()
            .any(|p| p.starts_with("listeners.spsp.tls")),
        "\n{e}"
    );
}

#[test]
fn receiver_webhooks_and_their_checks() {
    let text = r#"
[node]
ilp_address = "test.a"
[accounts.shop]
relation = "child"
link = { type = "local" }
[accounts.shop.receiver]
keep_events = 0
[accounts.shop.receiver.webhook]
url = "https://shop.example/hook"
secret = "s"
"#;
    let c = Config::from_toml_str(text).unwrap();
    assert_eq!(c.accounts["shop"].keep_events(), 0);
    let hook = c.accounts["shop"]
        .receiver
        .as_ref()
        .and_then(|r| r.webhook.as_ref())
        .unwrap();
    assert_eq!(hook.url.as_str(), "https://shop.example/hook");
    assert_eq!(hook.secret.expose(), "s");
    let e = errors(
        &text
            .replace("https://shop.example/hook", "ftp://shop.example/hook")
            .replace("secret = \"s\"", "secret = \"\""),
    );
    assert_error(
        &e,
        "accounts.shop.receiver.webhook.url",
        "http:// or https://",
    );
    assert_error(
        &e,
        "accounts.shop.receiver.webhook.secret",
        "must not be empty",
    );
    let e = errors(&text.replace("secret = \"s\"\n", ""));
    assert!(
        paths(&e)
            .iter()
            .any(|p| p.starts_with("accounts.shop.receiver.webhook")),
        "\n{e}"
    );
}

#[test]
fn sender_settings_are_checked_with_their_keys() {
    let e = errors(
        "[node]\nilp_address = \"test.a\"\n[sender]\ndefault_slippage = \"1\"\n\
         initial_in_flight = 20\nmax_in_flight = 10\npacket_expiry_ms = 0\nmax_payments = 0\n",
    );
    assert_error(&e, "sender.default_slippage", "below 1");
    assert_error(
        &e,
        "sender.max_in_flight",
        "at least sender.initial_in_flight",
    );
    assert_error(&e, "sender.packet_expiry_ms", "greater than 0");
    assert_error(&e, "sender.max_payments", "greater than 0");
    let e = errors("[node]\nilp_address = \"test.a\"\n[sender]\nslipage = \"0.1\"\n");
    assert!(paths(&e).iter().any(|p| p.starts_with("sender")), "{e}");
    let c = Config::from_toml_str(
        "[node]\nilp_address = \"test.a\"\n[sender]\ndefault_slippage = \"0.05\"\nallow_http = true\n",
    )
    .unwrap();
    assert_eq!(
        c.sender.default_slippage,
        Spread::parse_decimal("0.05").unwrap()
    );
    assert!(c.sender.allow_http);
    assert_eq!(c.sender.max_in_flight, 100);
}

#[test]
fn paid_http_proxy_and_its_prices() {
    let base = "[node]\nilp_address = \"test.n\"\n\
                [accounts.api]\nrelation = \"child\"\n[accounts.api.link]\ntype = \"local\"\n\
                [accounts.peer]\nrelation = \"peer\"\n[accounts.peer.link]\ntype = \"memory\"\n";
    let good = format!(
        "{base}[paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:3000/v1\"\n\
         account = \"api\"\n\
         [[paid_http.routes]]\nmethod = \"POST\"\npath_prefix = \"/upload\"\nprice = 10\n\
         [[paid_http.routes]]\npath_prefix = \"/\"\nprice = 0\n"
    );
    let c = Config::from_toml_str(&good).unwrap();
    let paid = c.paid_http.as_ref().unwrap();
    assert_eq!(paid.upstream.as_str(), "http://127.0.0.1:3000/v1");
    assert_eq!(paid.upstream_timeout_ms, 30_000);
    let table = paid.price_table();
    assert_eq!(table.price("POST", "/upload/a"), 10);
    assert_eq!(table.price("GET", "/upload/a"), 0);
    assert_eq!(Config::from_toml_str(base).unwrap().paid_http, None);
    let bad = format!(
        "{base}[paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"ftp://x/?q=1\"\n\
         account = \"peer\"\nupstream_timeout_ms = 0\n\
         [[paid_http.routes]]\nmethod = \"PO ST\"\npath_prefix = \"upload\"\nprice = 10\n"
    );
    let e = errors(&bad);
    assert_error(&e, "paid_http.upstream", "http:// or https://");
    assert_error(&e, "paid_http.account", "link.type = \"local\"");
    assert_error(&e, "paid_http.upstream_timeout_ms", "");
    assert_error(&e, "paid_http.routes[0].path_prefix", "must start with /");
    assert_error(&e, "paid_http.routes[0].method", "HTTP method");
    let twice = format!(
        "{base}[paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"http://x\"\naccount = \"api\"\n\
         [[paid_http.routes]]\nmethod = \"post\"\npath_prefix = \"/a\"\nprice = 1\n\
         [[paid_http.routes]]\nmethod = \"POST\"\npath_prefix = \"/a\"\nprice = 2\n"
    );
    assert_error(
        &errors(&twice),
        "paid_http.routes[1]",
        "paid_http.routes[0]",
    );
    let e = errors(&format!("{base}[paid_http]\nbind = \"127.0.0.1:0\"\n"));
    assert_error(&e, "paid_http.upstream", "required key is missing");
}
