//! TLS on real sockets (127.0.0.1, port 0), with a CA and certificates made at test time by
//! rcgen: two nodes pay each other over HTTPS with HTTP/2 negotiated by ALPN and over BTP
//! `wss://`; a client that does not trust the server's CA cannot connect (T01); on a listener
//! that requires client certificates a certificate naming the account is accepted and a missing
//! or other one is refused. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind, build or write is a test bug

mod common;

use actix::prelude::*;
use common::{
    account_tail, fulfilled, listener, node_base, p, rejected, run, Counter, Leaf, Pki,
    HTTP_WAIT as WAIT,
};
use ilp::config::Config;
use ilp::packet::{ErrorCode, Prepare};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{links_for_config, BtpLinks, BtpOptions};
use ilp_actors::link::http::{HttpLink, HttpLinkOptions, HttpServer, HttpServerOptions};
use ilp_actors::link::memory::MemoryLink;
use ilp_actors::link::{Link, LinkError};
use ilp_actors::messages::{AccountId, PacketResult};
use ilp_actors::node::Node;
use ilp_actors::tls;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

fn test_pki(test: &str, name: &str) -> Pki {
    let dir = format!("ilp-tls-{}-{test}-{name}", std::process::id());
    Pki::new(&dir, &format!("{name} test CA"), Some(name))
}

// ---- nodes ------------------------------------------------------------------------------------

fn listener_tls(section: &str, server: &Leaf, client_ca: Option<(&Path, bool)>) -> String {
    let mut text = format!(
        "[listeners.{section}.tls]\nenabled = true\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        p(&server.cert),
        p(&server.key)
    );
    if let Some((ca, required)) = client_ca {
        text.push_str(&format!(
            "client_ca_path = \"{}\"\nrequire_client_cert = {required}\n",
            p(ca)
        ));
    }
    text
}

/// Node `test.<name>` with an `http` peer account `<peer>` served on an HTTPS listener.
#[allow(clippy::too_many_arguments)]
fn https_config(
    name: &str,
    peer: &str,
    listen: SocketAddr,
    server: &Leaf,
    client_ca: Option<(&Path, bool)>,
    peer_url: &str,
    link_tls: &str,
    incoming_token: Option<&str>,
) -> Config {
    let incoming = incoming_token
        .map(|t| format!(", incoming_auth_token = \"{t}\""))
        .unwrap_or_default();
    let text = format!(
        "{}[routing]\ndefault_route = \"\"\n\
         static_routes = [{{ prefix = \"test.{peer}\", account = \"{peer}\" }}]\n\
         [listeners.http]\nbind = \"{listen}\"\n{}\
         [accounts.{peer}]\nrelation = \"peer\"\n\
         link = {{ type = \"http\", outgoing_url = \"{peer_url}\", \
         outgoing_auth_token = \"{name}-to-{peer}\"{incoming}, tls = {{ {link_tls} }} }}\n{}",
        node_base(name),
        listener_tls("http", server, client_ca),
        account_tail(peer)
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config:\n{e}\n{text}"))
}

/// A Prepare to `destination` whose preimage is in its data.
fn payment(destination: &str, amount: u64, seed: u8) -> Prepare {
    common::payment(destination, amount, 10_000, seed)
}

struct TestNode {
    node: Node,
    wallet: MemoryLink,
    received: Arc<AtomicUsize>,
    http_server: Option<HttpServer>,
    btp: Option<BtpLinks>,
}

impl TestNode {
    /// Starts the node of `config` over `links` (plus its wallet).
    fn start(config: &Config, links: BTreeMap<AccountId, Arc<dyn Link>>) -> TestNode {
        let (node, wallet, received) = common::start_wallet_node(config, links, Clock::system());
        TestNode {
            node,
            wallet,
            received,
            http_server: None,
            btp: None,
        }
    }

    /// Starts an HTTPS node: its `peer` account's link from config, served on `listener` with
    /// the config's `[listeners.http.tls]`.
    fn start_https(config: &Config, peer: &str, listener: TcpListener) -> (TestNode, HttpLink) {
        let http = HttpLink::from_config(
            peer,
            &config.accounts[peer],
            Clock::system(),
            &HttpLinkOptions::default(),
        )
        .unwrap();
        let mut links: BTreeMap<AccountId, Arc<dyn Link>> = BTreeMap::new();
        links.insert(Arc::from(peer), Arc::new(http.clone()));
        let mut node = TestNode::start(config, links);
        http.set_node_address(node.node.address.clone());
        node.http_server = Some(serve_https(config, listener, [http.clone()]));
        (node, http)
    }

    async fn pay(&self, prepare: Prepare) -> PacketResult {
        timeout(WAIT, self.wallet.send_prepare(prepare))
            .await
            .expect("payment answered in time")
            .expect("wallet link up")
    }

    async fn balance(&self, account: &str) -> i64 {
        common::balance(&self.node, account).await
    }
}

fn serve_https(
    config: &Config,
    listener: TcpListener,
    links: impl IntoIterator<Item = HttpLink>,
) -> HttpServer {
    let section = config.listeners.http.as_ref().unwrap();
    let server_tls = tls::server_tls(&section.tls, "listeners.http.tls", tls::ALPN_H2_HTTP1)
        .unwrap()
        .expect("tls enabled");
    let options = HttpServerOptions {
        tls: Some(server_tls),
        ..HttpServerOptions::default()
    };
    HttpServer::serve(listener, links, options).unwrap()
}

async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    common::eventually(WAIT, what, cond).await
}

// ---- HTTPS ------------------------------------------------------------------------------------

#[test]
fn two_nodes_pay_each_other_over_https_with_h2_and_balances_mirror() {
    run(|| async {
        let pki = test_pki("https", "main");
        let server = pki.leaf("server", &["localhost", "127.0.0.1"]);
        let ca = format!("ca_path = \"{}\"", p(&pki.ca_path()));
        let (la, addr_a) = listener().await;
        let (lb, addr_b) = listener().await;
        // One side dials the IP address, the other the DNS name: both are in the certificate.
        let url_a = format!("https://localhost:{}/accounts/b/ilp", addr_a.port());
        let url_b = format!("https://{addr_b}/accounts/a/ilp");
        let config_a = https_config("a", "b", addr_a, &server, None, &url_b, &ca, Some("b-to-a"));
        let config_b = https_config("b", "a", addr_b, &server, None, &url_a, &ca, Some("a-to-b"));
        let (a, a_link) = TestNode::start_https(&config_a, "b", la);
        let (b, b_link) = TestNode::start_https(&config_b, "a", lb);

        fulfilled(a.pay(payment("test.b.wallet", 100, 1)).await);
        fulfilled(b.pay(payment("test.a.wallet", 30, 2)).await);
        assert_eq!(a.received.load(Ordering::SeqCst), 1);
        assert_eq!(b.received.load(Ordering::SeqCst), 1);
        assert_eq!(a.balance("b").await, -70);
        assert_eq!(b.balance("a").await, 70);

        // Concurrent payments share the pooled (multiplexed) connections, both ways at once.
        let a_to_b = (0..20u8).map(|i| a.pay(payment("test.b.wallet", 2, 100 + i)));
        let b_to_a = (0..10u8).map(|i| b.pay(payment("test.a.wallet", 1, 200 + i)));
        let (ab, ba) = futures::join!(
            futures::future::join_all(a_to_b),
            futures::future::join_all(b_to_a)
        );
        ab.into_iter().chain(ba).for_each(|r| {
            fulfilled(r);
        });
        assert_eq!(a.balance("b").await, -70 - 40 + 10);
        assert_eq!(b.balance("a").await, 70 + 40 - 10);
        assert_eq!(a.balance("b").await, -b.balance("a").await);
        assert!(a_link.is_up() && b_link.is_up());

        // Every request arrived over HTTP/2, negotiated by ALPN.
        for node in [&a, &b] {
            let counts = node.http_server.as_ref().unwrap().request_counts();
            assert_eq!(counts.http1, 0, "{counts:?}");
            assert!(counts.http2 >= 11, "{counts:?}");
        }

        // The listener offers h2 first: a bare TLS client that offers both gets h2.
        let mut client = tls::client_config(
            &ilp::config::ClientTlsConfig {
                ca_path: Some(pki.ca_path()),
                ..Default::default()
            },
            "test",
        )
        .unwrap();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr_a).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(tls::server_name("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    });
}

#[test]
fn a_client_that_does_not_trust_the_server_ca_cannot_connect_and_rejects_t01() {
    run(|| async {
        let pki = test_pki("untrusted", "main");
        let other = test_pki("untrusted", "other");
        let server = pki.leaf("server", &["localhost", "127.0.0.1"]);
        let (la, addr_a) = listener().await;
        let (lb, addr_b) = listener().await;
        let url_a = format!("https://{addr_a}/accounts/b/ilp");
        let url_b = format!("https://{addr_b}/accounts/a/ilp");
        // a trusts another CA than the one that signed b's certificate.
        let wrong_ca = format!("ca_path = \"{}\"", p(&other.ca_path()));
        let right_ca = format!("ca_path = \"{}\"", p(&pki.ca_path()));
        let config_a = https_config(
            "a",
            "b",
            addr_a,
            &server,
            None,
            &url_b,
            &wrong_ca,
            Some("x"),
        );
        let config_b = https_config(
            "b",
            "a",
            addr_b,
            &server,
            None,
            &url_a,
            &right_ca,
            Some("y"),
        );
        let (a, a_link) = TestNode::start_https(&config_a, "b", la);
        let (b, _b_link) = TestNode::start_https(&config_b, "a", lb);

        let reject = rejected(
            a.pay(payment("test.b.wallet", 100, 1)).await,
            ErrorCode::T01_PEER_UNREACHABLE,
        );
        assert!(!reject.message().is_empty());
        assert!(!a_link.is_up(), "a failed handshake marks the link down");
        assert_eq!(b.received.load(Ordering::SeqCst), 0);
        assert_eq!(
            b.http_server.as_ref().unwrap().request_counts().http2
                + b.http_server.as_ref().unwrap().request_counts().http1,
            0
        );
        assert_eq!(a.balance("b").await, 0);
    });
}

// ---- mutual TLS -------------------------------------------------------------------------------

/// The client link of account `id` towards `url`, presenting `tls` (TOML inline-table body).
fn client_link(id: &str, url: &str, token: Option<&str>, link_tls: &str) -> HttpLink {
    let outgoing = token
        .map(|t| format!(", outgoing_auth_token = \"{t}\""))
        .unwrap_or_default();
    let text = format!(
        "{}[listeners.http]\nbind = \"127.0.0.1:0\"\n[accounts.{id}]\nrelation = \"peer\"\n\
         link = {{ type = \"http\", outgoing_url = \"{url}\"{outgoing}, tls = {{ {link_tls} }} }}\n{}",
        node_base("client"),
        account_tail(id)
    );
    let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config:\n{e}\n{text}"));
    HttpLink::from_config(
        id,
        &config.accounts[id],
        Clock::system(),
        &HttpLinkOptions::default(),
    )
    .unwrap()
}

/// Serves account `alice` (token `alice-token` when `token`) on an HTTPS listener that asks
/// for client certificates from `pki`'s CA (`required` or optional); returns its URL.
async fn mtls_server(
    pki: &Pki,
    required: bool,
    token: bool,
    calls: Arc<AtomicUsize>,
) -> (HttpServer, String) {
    let server = pki.leaf("server", &["127.0.0.1"]);
    let (l, addr) = listener().await;
    let config = https_config(
        "srv",
        "alice",
        addr,
        &server,
        Some((&pki.ca_path(), required)),
        "http://127.0.0.1:1/unused",
        "",
        token.then_some("alice-token"),
    );
    let link = HttpLink::from_config(
        "alice",
        &config.accounts["alice"],
        Clock::system(),
        &HttpLinkOptions::default(),
    )
    .unwrap();
    link.attach(Counter { calls }.start().recipient());
    let server = serve_https(&config, l, [link]);
    (server, format!("https://{addr}/accounts/alice/ilp"))
}

/// Whether the server let the Prepare through to the account (its T99 came back).
fn reached_account(result: Result<PacketResult, LinkError>) -> bool {
    matches!(result, Ok(Err(r)) if r.code() == ErrorCode::T99_APPLICATION_ERROR)
}

#[test]
fn required_client_certificate_must_name_the_account() {
    run(|| async {
        let pki = test_pki("mtls-required", "main");
        let calls = Arc::new(AtomicUsize::new(0));
        let (_server, url) = mtls_server(&pki, true, false, calls.clone()).await;
        let ca = format!("ca_path = \"{}\"", p(&pki.ca_path()));
        let with_cert = |leaf: &Leaf| {
            format!(
                "{ca}, cert_path = \"{}\", key_path = \"{}\"",
                p(&leaf.cert),
                p(&leaf.key)
            )
        };
        let alice = pki.leaf("alice", &["alice"]);
        let mallory = pki.leaf("mallory", &["mallory"]);

        // A certificate naming the account is all it takes (alice has no token).
        let ok = client_link("alice", &url, None, &with_cert(&alice));
        assert!(reached_account(
            ok.send_prepare(payment("test.srv", 1, 1)).await
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A certificate from the right CA that names someone else: 403, answered F00.
        let other = client_link("alice", &url, None, &with_cert(&mallory));
        let reject = other
            .send_prepare(payment("test.srv", 1, 2))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(reject.code(), ErrorCode::F00_BAD_REQUEST);
        assert!(reject.message().contains("403"), "{}", reject.message());

        // No certificate at all: the handshake is refused, nothing reaches the account.
        let none = client_link("alice", &url, Some("alice-token"), &ca);
        assert!(!reached_account(
            none.send_prepare(payment("test.srv", 1, 3)).await
        ));

        // A certificate naming the account but from another CA: refused too.
        let stranger_pki = test_pki("mtls-required", "stranger");
        let stranger = stranger_pki.leaf("alice", &["alice"]);
        let forged = client_link("alice", &url, None, &with_cert(&stranger));
        assert!(!reached_account(
            forged.send_prepare(payment("test.srv", 1, 4)).await
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn optional_client_certificate_replaces_the_bearer_token() {
    run(|| async {
        let pki = test_pki("mtls-optional", "main");
        let calls = Arc::new(AtomicUsize::new(0));
        let (_server, url) = mtls_server(&pki, false, true, calls.clone()).await;
        let ca = format!("ca_path = \"{}\"", p(&pki.ca_path()));
        let alice = pki.leaf("alice", &["alice"]);
        let mallory = pki.leaf("mallory", &["mallory"]);
        let cert = |leaf: &Leaf| {
            format!(
                "{ca}, cert_path = \"{}\", key_path = \"{}\"",
                p(&leaf.cert),
                p(&leaf.key)
            )
        };

        // A certificate naming the account, no token.
        let by_cert = client_link("alice", &url, None, &cert(&alice));
        assert!(reached_account(
            by_cert.send_prepare(payment("test.srv", 1, 1)).await
        ));
        // No certificate, the right token.
        let by_token = client_link("alice", &url, Some("alice-token"), &ca);
        assert!(reached_account(
            by_token.send_prepare(payment("test.srv", 1, 2)).await
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // No certificate and no token, or a certificate naming someone else: 401.
        for link in [
            client_link("alice", &url, None, &ca),
            client_link("alice", &url, None, &cert(&mallory)),
            client_link("alice", &url, Some("wrong"), &ca),
        ] {
            let reject = link
                .send_prepare(payment("test.srv", 1, 3))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(reject.code(), ErrorCode::F00_BAD_REQUEST);
            assert!(reject.message().contains("401"), "{}", reject.message());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    });
}

// ---- BTP over wss:// ---------------------------------------------------------------------------

#[test]
fn payment_crosses_two_nodes_over_btp_wss_and_balances_mirror() {
    run(|| async {
        let pki = test_pki("wss", "main");
        let server = pki.leaf("server", &["localhost", "127.0.0.1"]);
        let parent_text = format!(
            "{}[listeners.btp]\nbind = \"127.0.0.1:0\"\n{}\
             [accounts.b]\nrelation = \"child\"\n\
             link = {{ type = \"btp-server\", auth_username = \"b\", auth_token = \"b-token\" }}\n{}",
            node_base("a"),
            listener_tls("btp", &server, None),
            account_tail("b")
        );
        let parent = Config::from_toml_str(&parent_text).unwrap();
        let btp_a = links_for_config(&parent, BtpOptions::default())
            .await
            .unwrap();
        let port = btp_a.server.as_ref().unwrap().local_addr().port();
        let mut a = TestNode::start(&parent, btp_a.links.clone());

        let child_text = format!(
            "{}[accounts.a]\nrelation = \"parent\"\n\
             link = {{ type = \"btp-client\", url = \"wss://localhost:{port}\", \
             auth_username = \"b\", auth_token = \"b-token\", tls = {{ ca_path = \"{}\" }} }}\n{}",
            node_base("a.b"),
            p(&pki.ca_path()),
            account_tail("a")
        );
        let child = Config::from_toml_str(&child_text).unwrap();
        let btp_b = links_for_config(&child, BtpOptions::default())
            .await
            .unwrap();
        let mut b = TestNode::start(&child, btp_b.links.clone());
        let (a_link, b_link) = (btp_a.links["b"].clone(), btp_b.links["a"].clone());
        a.btp = Some(btp_a);
        b.btp = Some(btp_b);
        eventually("both ends of the wss link are up", || {
            a_link.is_up() && b_link.is_up()
        })
        .await;

        fulfilled(b.pay(payment("test.a.wallet", 1_000, 1)).await);
        fulfilled(a.pay(payment("test.a.b.wallet", 300, 2)).await);
        assert_eq!(b.balance("a").await, -700);
        assert_eq!(a.balance("b").await, 700);
    });
}

#[test]
fn a_wss_client_that_does_not_trust_the_server_ca_stays_down_and_rejects_t01() {
    run(|| async {
        let pki = test_pki("wss-untrusted", "main");
        let other = test_pki("wss-untrusted", "other");
        let server = pki.leaf("server", &["127.0.0.1"]);
        let parent_text = format!(
            "{}[listeners.btp]\nbind = \"127.0.0.1:0\"\n{}\
             [accounts.b]\nrelation = \"child\"\n\
             link = {{ type = \"btp-server\", auth_token = \"b-token\" }}\n{}\
             [accounts.c]\nrelation = \"child\"\n\
             link = {{ type = \"btp-server\", auth_token = \"c-token\" }}\n{}",
            node_base("a"),
            listener_tls("btp", &server, None),
            account_tail("b"),
            account_tail("c")
        );
        let parent = Config::from_toml_str(&parent_text).unwrap();
        let btp_a = links_for_config(&parent, BtpOptions::default())
            .await
            .unwrap();
        let addr = btp_a.server.as_ref().unwrap().local_addr();
        // b trusts another CA than the one that signed the server's certificate; c the right one.
        let child = |name: &str, token: &str, ca: &Path| {
            let text = format!(
                "{}[accounts.a]\nrelation = \"parent\"\n\
                 link = {{ type = \"btp-client\", url = \"wss://{addr}\", \
                 auth_token = \"{token}\", tls = {{ ca_path = \"{}\" }} }}\n{}",
                node_base(&format!("a.{name}")),
                p(ca),
                account_tail("a")
            );
            Config::from_toml_str(&text).unwrap()
        };
        let config_b = child("b", "b-token", &other.ca_path());
        let btp_b = links_for_config(&config_b, BtpOptions::default())
            .await
            .unwrap();
        let b = TestNode::start(&config_b, btp_b.links.clone());
        let config_c = child("c", "c-token", &pki.ca_path());
        let btp_c = links_for_config(&config_c, BtpOptions::default())
            .await
            .unwrap();
        // b dialled first; once c (started after it) is up, b's handshake has had its chance.
        eventually("the client that trusts the CA is up", || {
            btp_c.links["a"].is_up() && btp_a.links["c"].is_up()
        })
        .await;
        assert!(!btp_b.links["a"].is_up());
        assert!(!btp_a.links["b"].is_up());
        rejected(
            b.pay(payment("test.a.wallet", 1, 1)).await,
            ErrorCode::T01_PEER_UNREACHABLE,
        );
        assert_eq!(b.balance("a").await, 0);
    });
}

#[test]
fn btp_listener_requiring_client_certificates_binds_them_to_the_account() {
    run(|| async {
        let pki = test_pki("wss-mtls", "main");
        let server = pki.leaf("server", &["127.0.0.1"]);
        let b_cert = pki.leaf("b", &["b"]);
        let parent_text = format!(
            "{}[listeners.btp]\nbind = \"127.0.0.1:0\"\n{}\
             [accounts.b]\nrelation = \"child\"\n\
             link = {{ type = \"btp-server\", auth_token = \"b-token\" }}\n{}\
             [accounts.c]\nrelation = \"child\"\n\
             link = {{ type = \"btp-server\", auth_token = \"c-token\" }}\n{}",
            node_base("a"),
            listener_tls("btp", &server, Some((&pki.ca_path(), true))),
            account_tail("b"),
            account_tail("c")
        );
        let parent = Config::from_toml_str(&parent_text).unwrap();
        let btp_a = links_for_config(&parent, BtpOptions::default())
            .await
            .unwrap();
        let mut a = TestNode::start(&parent, btp_a.links.clone());
        let addr = btp_a.server.as_ref().unwrap().local_addr();
        let child = |name: &str, token: &str, cert: Option<&Leaf>| {
            let client_cert = cert
                .map(|c| {
                    format!(
                        ", cert_path = \"{}\", key_path = \"{}\"",
                        p(&c.cert),
                        p(&c.key)
                    )
                })
                .unwrap_or_default();
            let text = format!(
                "{}[accounts.a]\nrelation = \"parent\"\n\
                 link = {{ type = \"btp-client\", url = \"wss://{addr}\", \
                 auth_token = \"{token}\", tls = {{ ca_path = \"{}\"{client_cert} }} }}\n{}",
                node_base(&format!("a.{name}")),
                p(&pki.ca_path()),
                account_tail("a")
            );
            Config::from_toml_str(&text).unwrap()
        };
        // c's token under b's certificate, and c's token without a certificate: both refused.
        let as_c_with_b_cert =
            links_for_config(&child("c", "c-token", Some(&b_cert)), BtpOptions::default())
                .await
                .unwrap();
        let without_cert = links_for_config(&child("c", "c-token", None), BtpOptions::default())
            .await
            .unwrap();
        // b's token with b's certificate: accepted.
        let config_b = child("b", "b-token", Some(&b_cert));
        let btp_b = links_for_config(&config_b, BtpOptions::default())
            .await
            .unwrap();
        let mut b = TestNode::start(&config_b, btp_b.links.clone());
        let (a_link, b_link) = (btp_a.links["b"].clone(), btp_b.links["a"].clone());
        eventually(
            "the client whose certificate names its account is up",
            || a_link.is_up() && b_link.is_up(),
        )
        .await;
        fulfilled(b.pay(payment("test.a.wallet", 10, 1)).await);
        assert_eq!(a.balance("b").await, 10);

        assert!(!as_c_with_b_cert.links["a"].is_up());
        assert!(!without_cert.links["a"].is_up());
        assert!(!btp_a.links["c"].is_up());
        a.btp = Some(btp_a);
        b.btp = Some(btp_b);
    });
}
