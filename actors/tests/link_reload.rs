//! Accounts added and removed at run time on the BTP and HTTP listeners (a SIGHUP reload): a new
//! account is served at once, a removed one is refused and its connection closed, replaced
//! credentials close the old connection and only the new token authenticates, and through all of
//! it another account's connection stays up on the very same socket. Real sockets on 127.0.0.1;
//! every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: a failed bind or build is a test bug

mod common;

use actix::prelude::*;
use bytes::Bytes;
use common::{
    http_request, listener, node_base, payment, raw_authenticated, raw_connect, run, send_bytes,
    Counter, Receiver, Ws, PREIMAGE,
};
use hyper::{Method, StatusCode};
use ilp::btp::frame::{TYPE_ERROR, TYPE_MESSAGE, TYPE_RESPONSE};
use ilp::btp::{BtpErrorCode, Frame, Payload};
use ilp::config::Config;
use ilp::packet::{ErrorCode, Packet};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{
    btp_client_link, btp_server_credentials, BtpCredentials, BtpOptions, BtpServer, BtpServerLink,
};
use ilp_actors::link::http::{HttpLink, HttpLinkOptions, HttpServer, HttpServerError};
use ilp_actors::link::{Link, LinkError};
use ilp_actors::messages::AccountId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---- BTP -------------------------------------------------------------------------------------

fn creds(user: &str, token: &str) -> BtpCredentials {
    BtpCredentials {
        username: Some(user.to_owned()),
        token: token.to_owned(),
        idempotent: false,
    }
}

/// Attaches `link` to a [`Receiver`] (fulfills every Prepare of [`PREIMAGE`]'s condition).
fn attach_receiver(link: &BtpServerLink) {
    link.attach(Receiver { data: Vec::new() }.start().recipient());
}

async fn next_frame(ws: &mut Ws) -> Option<Vec<u8>> {
    common::next_frame(ws).await
}

/// Sends a Prepare as BTP Message `id` and checks it comes back fulfilled in a Response on the
/// same socket.
async fn assert_served(ws: &mut Ws, id: u32) {
    let p = payment("test.x", 10, 30_000, 7);
    send_bytes(ws, &Frame::ilp_message(id, p.as_bytes().clone()).encode()).await;
    let reply = next_frame(ws).await.expect("a Response on the same socket");
    assert_eq!(reply[0], TYPE_RESPONSE);
    let frame = Frame::decode(&reply).unwrap();
    assert_eq!(frame.request_id, id);
    let ilp = frame.protocol_data().ilp().unwrap().clone();
    match Packet::parse(ilp).unwrap() {
        Packet::Fulfill(f) => assert_eq!(f.fulfillment(), &PREIMAGE),
        other => panic!("expected a Fulfill, got {other:?}"),
    }
}

/// Auth with these credentials is answered with an Error frame and the connection closes.
async fn assert_auth_refused(addr: SocketAddr, user: &str, token: &str) {
    let mut ws = raw_connect(addr).await;
    send_bytes(&mut ws, &Frame::auth(5, user, token).encode()).await;
    let reply = next_frame(&mut ws).await.expect("an Error frame");
    assert_eq!(
        reply[0], TYPE_ERROR,
        "auth of {user}/{token} should be refused"
    );
    match Frame::decode(&reply).unwrap().payload {
        Payload::Error(e) => assert_eq!(e.code, BtpErrorCode::F00_NOT_ACCEPTED),
        other => panic!("expected an Error, got {other:?}"),
    }
    assert_closed(&mut ws).await;
}

async fn assert_closed(ws: &mut Ws) {
    assert_eq!(next_frame(ws).await, None, "connection should be closed");
}

async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    common::eventually(common::BTP_WAIT, what, cond).await
}

/// The server sends a Prepare to the raw client on `link`; the client answers it with a
/// Fulfill in a Response and the send resolves with it.
async fn assert_prepare_reaches(link: &BtpServerLink, ws: &mut Ws) {
    let p = payment("test.peer", 5, 30_000, 7);
    let sent = tokio::spawn(link.send_prepare(p));
    let message = next_frame(ws).await.expect("the server's Message");
    assert_eq!(message[0], TYPE_MESSAGE);
    let frame = Frame::decode(&message).unwrap();
    let fulfill = common::fulfill_with(b"");
    send_bytes(
        ws,
        &Frame::ilp_response(frame.request_id, fulfill.as_bytes().clone()).encode(),
    )
    .await;
    let answer = sent.await.unwrap().unwrap();
    assert_eq!(answer.unwrap().fulfillment(), &PREIMAGE);
}

async fn server_with_alice() -> (BtpServer, Ws) {
    let mut accounts = BTreeMap::new();
    accounts.insert(AccountId::from("alice"), creds("alice", "a-token"));
    let server = BtpServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        accounts,
        BtpOptions::default(),
    )
    .await
    .unwrap();
    attach_receiver(&server.link("alice").unwrap());
    let mut alice = raw_authenticated(server.local_addr(), "alice", "a-token").await;
    assert_served(&mut alice, 100).await;
    (server, alice)
}

#[test]
fn btp_account_added_then_removed_while_another_stays_connected() {
    run(|| async {
        let (server, mut alice) = server_with_alice().await;
        let addr = server.local_addr();
        let alice_link = server.link("alice").unwrap();

        // Not known yet: refused like any wrong credentials.
        assert_auth_refused(addr, "bob", "b-token").await;
        assert!(server.link("bob").is_none());

        // A socket opened before bob was added authenticates as bob after: the table is read
        // when the auth Message arrives, not when the socket was accepted.
        let mut early = raw_connect(addr).await;
        let bob_link = server.add_account(AccountId::from("bob"), creds("bob", "b-token"));
        attach_receiver(&bob_link);
        assert_eq!(
            server.links().keys().map(|k| &**k).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        send_bytes(&mut early, &Frame::auth(1, "bob", "b-token").encode()).await;
        let reply = next_frame(&mut early).await.expect("auth answered");
        assert_eq!(reply[0], TYPE_RESPONSE, "bob's auth should be accepted");
        eventually("bob's link is up", || bob_link.is_up()).await;
        assert_served(&mut early, 1).await;
        // A newer connection of bob's takes over from the early one.
        let mut bob = raw_authenticated(addr, "bob", "b-token").await;
        assert_closed(&mut early).await;
        eventually("bob's link is up", || bob_link.is_up()).await;
        // Both ways: bob -> node, node -> bob.
        assert_served(&mut bob, 2).await;
        assert_prepare_reaches(&bob_link, &mut bob).await;
        assert_served(&mut alice, 101).await;

        // A Prepare to bob still waiting for his answer when he is removed fails as on a
        // disconnect.
        let pending = tokio::spawn(bob_link.send_prepare(payment("test.peer", 5, 30_000, 7)));
        let message = next_frame(&mut bob).await.expect("the server's Message");
        assert_eq!(message[0], TYPE_MESSAGE);
        assert!(server.remove_account("bob"));
        assert!(!server.remove_account("bob"), "already removed");
        assert_eq!(pending.await.unwrap().unwrap_err(), LinkError::Down);
        assert_closed(&mut bob).await;
        assert!(!bob_link.is_up());
        assert!(server.link("bob").is_none());
        assert_eq!(
            server.links().keys().map(|k| &**k).collect::<Vec<_>>(),
            ["alice"]
        );
        assert_auth_refused(addr, "bob", "b-token").await;
        // The removed link stays down even if someone tried to send on it.
        let late = bob_link
            .send_prepare(payment("test.peer", 5, 30_000, 7))
            .await;
        assert_eq!(late.unwrap_err(), LinkError::Down);

        // Alice's socket never noticed.
        assert!(alice_link.is_up());
        assert_served(&mut alice, 102).await;
        assert_prepare_reaches(&alice_link, &mut alice).await;
    });
}

#[test]
fn btp_replaced_credentials_close_the_old_connection_and_accept_only_the_new_token() {
    run(|| async {
        let (server, mut alice) = server_with_alice().await;
        let addr = server.local_addr();

        let old_link = server.add_account(AccountId::from("bob"), creds("bob", "old"));
        attach_receiver(&old_link);
        let mut bob_old = raw_authenticated(addr, "bob", "old").await;
        eventually("bob's first link is up", || old_link.is_up()).await;
        assert_served(&mut bob_old, 1).await;

        let new_link = server.add_account(AccountId::from("bob"), creds("bob", "new"));
        assert_closed(&mut bob_old).await;
        assert!(!old_link.is_up());
        assert_eq!(server.links().len(), 2);
        assert_auth_refused(addr, "bob", "old").await;

        attach_receiver(&new_link);
        let mut bob_new = raw_authenticated(addr, "bob", "new").await;
        eventually("bob's new link is up", || new_link.is_up()).await;
        assert_served(&mut bob_new, 2).await;
        assert_prepare_reaches(&new_link, &mut bob_new).await;
        // The old link does not come back with the new connection.
        assert!(!old_link.is_up());

        // Replacing alice's own entry with the same credentials also drops her connection; bob
        // is left alone.
        assert_served(&mut alice, 103).await;
        let alice_link = server.add_account(AccountId::from("alice"), creds("alice", "a-token"));
        assert_closed(&mut alice).await;
        attach_receiver(&alice_link);
        let mut alice = raw_authenticated(addr, "alice", "a-token").await;
        assert_served(&mut alice, 104).await;
        assert_served(&mut bob_new, 3).await;
    });
}

#[test]
fn btp_account_helpers_read_the_config() {
    run(|| async {
        let text = format!(
            "{}[listeners.btp]\nbind = \"127.0.0.1:0\"\n\
             [accounts.s]\nrelation = \"peer\"\n\
             link = {{ type = \"btp-server\", auth_username = \"su\", auth_token = \"st\" }}\n\
             btp_idempotent = true\n\
             [accounts.c]\nrelation = \"peer\"\n\
             link = {{ type = \"btp-client\", url = \"ws://127.0.0.1:1\", auth_token = \"ct\" }}\n\
             [accounts.bad]\nrelation = \"peer\"\n\
             link = {{ type = \"btp-client\", url = \"ws://127.0.0.1:1\", auth_token = \"ct\", \
             tls = {{ ca_path = \"/ca.pem\" }} }}\n",
            node_base("a")
        );
        let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let options = BtpOptions::default();
        assert_eq!(
            btp_server_credentials(&config.accounts["s"]),
            Some(BtpCredentials {
                username: Some("su".into()),
                token: "st".into(),
                idempotent: true,
            })
        );
        assert_eq!(btp_server_credentials(&config.accounts["c"]), None);
        assert!(btp_client_link("s", &config.accounts["s"], &options)
            .unwrap()
            .is_none());
        let client = btp_client_link("c", &config.accounts["c"], &options)
            .unwrap()
            .expect("a client link");
        assert!(!client.is_up());
        let Err(e) = btp_client_link("bad", &config.accounts["bad"], &options) else {
            panic!("tls on a ws:// url should be refused");
        };
        assert_eq!(
            e.to_string(),
            "accounts.bad.link.tls: applies only to a wss:// url"
        );
    });
}

// ---- HTTP ------------------------------------------------------------------------------------

/// An `http` account `id` with incoming token `<id>-token` (and, with `path`, that
/// incoming_path).
fn http_account(id: &str, path: Option<&str>) -> String {
    let path = path
        .map(|p| format!(", incoming_path = \"{p}\""))
        .unwrap_or_default();
    format!(
        "[accounts.{id}]\nrelation = \"peer\"\nlink = {{ type = \"http\", \
         outgoing_url = \"http://127.0.0.1:1/\", incoming_auth_token = \"{id}-token\"{path} }}\n"
    )
}

/// The link of account `id` of a config holding just that account, attached to a [`Counter`]
/// (which rejects T99 and counts).
fn http_link(id: &str, path: Option<&str>, calls: &Arc<AtomicUsize>) -> HttpLink {
    let text = format!(
        "{}[listeners.http]\nbind = \"127.0.0.1:0\"\n{}",
        node_base("s"),
        http_account(id, path)
    );
    let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let link = HttpLink::from_config(
        id,
        &config.accounts[id],
        Clock::system(),
        &HttpLinkOptions::default(),
    )
    .unwrap();
    link.attach(
        Counter {
            calls: calls.clone(),
        }
        .start()
        .recipient(),
    );
    link
}

/// POSTs a Prepare to `path` with `token`; returns the status and body.
async fn post(addr: SocketAddr, path: &str, token: &str) -> (StatusCode, Bytes) {
    let auth = format!("Bearer {token}");
    let body = payment("test.s.x", 1, 5_000, 4).as_bytes().clone();
    let url = format!("http://{addr}{path}");
    let (status, _, body) = http_request(
        false,
        Method::POST,
        &url,
        &[("authorization", auth.as_str())],
        body,
    )
    .await;
    (status, body)
}

/// The account's Counter got the Prepare: a T99 Reject in a 200.
async fn assert_http_served(addr: SocketAddr, path: &str, token: &str) {
    let (status, body) = post(addr, path, token).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
    match Packet::parse(body).unwrap() {
        Packet::Reject(r) => assert_eq!(r.code(), ErrorCode::T99_APPLICATION_ERROR),
        other => panic!("expected the Counter's Reject, got {other:?}"),
    }
}

#[test]
fn http_account_added_then_removed_at_run_time() {
    run(|| async {
        let (l, addr) = listener().await;
        let (alice_calls, bob_calls) = (Arc::default(), Arc::default());
        let server = HttpServer::serve(
            l,
            [http_link("alice", None, &alice_calls)],
            Default::default(),
        )
        .unwrap();
        assert_http_served(addr, "/accounts/alice/ilp", "alice-token").await;

        // Before bob exists: the unknown-path answer, which is what bob gets after removal too.
        let (status, unknown_body) = post(addr, "/accounts/bob/ilp", "bob-token").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(unknown_body, "no ILP endpoint at this path\n");

        server
            .add_account(http_link("bob", None, &bob_calls))
            .unwrap();
        assert_eq!(
            server.accounts().iter().map(|a| &**a).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_http_served(addr, "/accounts/bob/ilp", "bob-token").await;
        let (status, _) = post(addr, "/accounts/bob/ilp", "alice-token").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "bob's path wants bob's token"
        );
        assert_http_served(addr, "/accounts/alice/ilp", "alice-token").await;
        assert_eq!(bob_calls.load(Ordering::SeqCst), 1);

        // A path another account serves: refused, and nothing changes.
        let clash = http_link("carol", Some("/accounts/bob/ilp"), &Arc::default());
        match server.add_account(clash).unwrap_err() {
            HttpServerError::DuplicatePath {
                path,
                first,
                second,
            } => {
                assert_eq!(path, "/accounts/bob/ilp");
                assert_eq!((first.as_str(), second.as_str()), ("bob", "carol"));
            }
            other => panic!("expected DuplicatePath, got {other}"),
        }
        assert_eq!(server.accounts().len(), 2);
        assert_http_served(addr, "/accounts/bob/ilp", "bob-token").await;

        // Replacing bob's account moves his path; the old one answers 404.
        server
            .add_account(http_link("bob", Some("/bob2"), &bob_calls))
            .unwrap();
        assert_http_served(addr, "/bob2", "bob-token").await;
        let (status, body) = post(addr, "/accounts/bob/ilp", "bob-token").await;
        assert_eq!((status, &body), (StatusCode::NOT_FOUND, &unknown_body));

        assert!(server.remove_account("bob"));
        assert!(!server.remove_account("bob"));
        let (status, body) = post(addr, "/bob2", "bob-token").await;
        assert_eq!((status, &body), (StatusCode::NOT_FOUND, &unknown_body));
        assert_eq!(bob_calls.load(Ordering::SeqCst), 3);
        assert_http_served(addr, "/accounts/alice/ilp", "alice-token").await;
        assert_eq!(alice_calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            server.accounts().iter().map(|a| &**a).collect::<Vec<_>>(),
            ["alice"]
        );
    });
}

/// A request already being handled when its account is removed still gets its answer.
#[test]
fn http_request_in_flight_finishes_after_its_account_is_removed() {
    /// Answers after a pause, so the removal happens while the request is inside the account.
    struct Slow;
    impl Actor for Slow {
        type Context = Context<Self>;
    }
    impl Handler<ilp_actors::messages::IncomingPrepare> for Slow {
        type Result = ilp_actors::messages::Reply<ilp_actors::messages::PacketResult>;
        fn handle(
            &mut self,
            _: ilp_actors::messages::IncomingPrepare,
            _: &mut Context<Self>,
        ) -> Self::Result {
            ilp_actors::messages::Reply::later(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(ilp::packet::Reject::new(
                    ErrorCode::T99_APPLICATION_ERROR,
                    None,
                    "slow",
                ))
            })
        }
    }
    run(|| async {
        let (l, addr) = listener().await;
        let link = http_link("bob", None, &Arc::default());
        link.attach(Slow.start().recipient());
        let server = HttpServer::serve(l, [link], Default::default()).unwrap();
        let request = tokio::spawn(post(addr, "/accounts/bob/ilp", "bob-token"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(server.remove_account("bob"));
        let (status, body) = request.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        match Packet::parse(body).unwrap() {
            Packet::Reject(r) => assert_eq!(r.message(), "slow"),
            other => panic!("expected the slow Reject, got {other:?}"),
        }
        let (status, _) = post(addr, "/accounts/bob/ilp", "bob-token").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}
