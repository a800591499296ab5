//! BTP/2.0 over WebSocket on real sockets (127.0.0.1, ephemeral ports): two nodes paying each
//! other over a BTP client -> server link, and raw-frame peers that check the wire contract
//! (a Prepare in a Message is answered by a Response), bad credentials, dropped connections,
//! keepalive and a misbehaving client next to a good one. Every wait is bounded.

#![allow(clippy::unwrap_used)] // test harness: helpers unwrap what a correct run never fails

mod common;

use common::{
    block_on as run, btp_config, btp_server_account as server_account, raw_authenticated,
    raw_connect, BtpNode, BTP_WAIT as WAIT, PREIMAGE,
};
use futures::SinkExt;
use ilp::btp::frame::{TYPE_ERROR, TYPE_MESSAGE, TYPE_RESPONSE};
use ilp::btp::{BtpErrorCode, Frame, Payload, ProtocolData};
use ilp::config::Config;
use ilp::packet::{ErrorCode, Fulfill, Packet, Reject};
use ilp_actors::link::btp_ws::BtpOptions;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

use common::Ws;

fn config(address: &str, accounts: &str, btp_listener: bool) -> Config {
    btp_config(address, accounts, btp_listener)
}

fn btp_server_account(id: &str, token: &str) -> String {
    server_account(id, token, None)
}

fn btp_client_account(id: &str, url: &str, username: &str, token: &str) -> String {
    common::btp_client_account(id, url, username, token, None)
}

fn fulfill() -> Fulfill {
    common::fulfill_with(&[])
}

fn prepare(to: &str, amount: u64, expires_in_ms: u64) -> ilp::packet::Prepare {
    common::prepare(to, amount, expires_in_ms)
}

/// A [`BtpNode`] whose wallet fulfills with empty data.
struct TestNode;

impl TestNode {
    async fn start(config: &Config, options: BtpOptions) -> BtpNode {
        BtpNode::start(config, options, &[]).await
    }

    async fn start_on_released_address(config: &Config, options: BtpOptions) -> BtpNode {
        BtpNode::start_on_released_address(config, options, &[]).await
    }
}

async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    common::eventually(WAIT, what, cond).await
}

async fn next_frame(ws: &mut Ws) -> Option<Vec<u8>> {
    common::next_frame(ws).await
}

async fn send_frame(ws: &mut Ws, frame: &Frame) {
    common::send_bytes(ws, &frame.encode()).await
}

/// The connection ends (a Close frame, an error, or EOF) before any other BTP frame arrives.
async fn assert_closed(ws: &mut Ws) {
    assert_eq!(next_frame(ws).await, None, "connection should be closed");
}

fn fast_options() -> BtpOptions {
    BtpOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..BtpOptions::default()
    }
}

#[test]
fn payment_crosses_two_nodes_over_btp_and_balances_mirror() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            fast_options(),
        )
        .await;
        let url = format!("ws://{}", a.btp_addr());
        let b = TestNode::start(
            &config(
                "test.a.b",
                &btp_client_account("a", &url, "b", "b-token"),
                false,
            ),
            fast_options(),
        )
        .await;
        let (a_link, b_link) = (a.link("b"), b.link("a"));
        eventually("both ends of the link are up", || {
            a_link.is_up() && b_link.is_up()
        })
        .await;

        // Child to parent (client -> server) ...
        let up = b.pay("test.a.wallet", 1_000, 30_000).await;
        assert_eq!(up.unwrap().fulfillment(), &PREIMAGE);
        // ... and parent to child (server -> client).
        let down = a.pay("test.a.b.wallet", 300, 30_000).await;
        assert_eq!(down.unwrap().fulfillment(), &PREIMAGE);

        assert_eq!(b.balance("a").await, -700);
        assert_eq!(a.balance("b").await, 700);
        assert_eq!(a.balance("b").await, -b.balance("a").await);
    });
}

#[test]
fn raw_prepare_in_a_message_is_answered_with_a_response_frame() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            fast_options(),
        )
        .await;
        let mut ws = raw_authenticated(a.btp_addr(), "b", "b-token").await;

        let p = prepare("test.a.wallet", 10, 30_000);
        send_frame(&mut ws, &Frame::ilp_message(42, p.as_bytes().clone())).await;
        let reply = next_frame(&mut ws).await.expect("answered");
        // Type 1 (Response), never 6 (Message): JS peers match answers by type.
        assert_eq!(reply[0], TYPE_RESPONSE);
        let frame = Frame::decode(&reply).unwrap();
        assert_eq!(frame.request_id, 42);
        let ilp = frame.protocol_data().ilp().unwrap().clone();
        match Packet::parse(ilp).unwrap() {
            Packet::Fulfill(f) => assert_eq!(f.fulfillment(), &PREIMAGE),
            other => panic!("expected a Fulfill, got {other:?}"),
        }

        // A payment to nowhere comes back as a Reject, still inside a Response.
        let p = prepare("test.nowhere", 10, 30_000);
        send_frame(&mut ws, &Frame::ilp_message(43, p.as_bytes().clone())).await;
        let reply = next_frame(&mut ws).await.expect("answered");
        assert_eq!(reply[0], TYPE_RESPONSE);
        let frame = Frame::decode(&reply).unwrap();
        assert_eq!(frame.request_id, 43);
        let ilp = frame.protocol_data().ilp().unwrap().clone();
        match Packet::parse(ilp).unwrap() {
            Packet::Reject(r) => assert_eq!(r.code(), ErrorCode::F02_UNREACHABLE),
            other => panic!("expected a Reject, got {other:?}"),
        }
        assert_eq!(a.balance("b").await, 10);
    });
}

#[test]
fn wrong_or_missing_credentials_get_an_error_frame_then_close() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            fast_options(),
        )
        .await;
        for (user, token) in [("b", "wrong"), ("c", "b-token"), ("b", "")] {
            let mut ws = raw_connect(a.btp_addr()).await;
            send_frame(&mut ws, &Frame::auth(5, user, token)).await;
            let reply = next_frame(&mut ws).await.expect("an Error frame");
            assert_eq!(reply[0], TYPE_ERROR);
            let frame = Frame::decode(&reply).unwrap();
            assert_eq!(frame.request_id, 5);
            match frame.payload {
                Payload::Error(e) => assert_eq!(e.code, BtpErrorCode::F00_NOT_ACCEPTED),
                other => panic!("expected an Error, got {other:?}"),
            }
            assert_closed(&mut ws).await;
        }
        // A Prepare instead of the auth Message: refused the same way.
        let mut ws = raw_connect(a.btp_addr()).await;
        let p = prepare("test.a.wallet", 10, 30_000);
        send_frame(&mut ws, &Frame::ilp_message(9, p.as_bytes().clone())).await;
        let reply = next_frame(&mut ws).await.expect("an Error frame");
        assert_eq!(reply[0], TYPE_ERROR);
        assert_closed(&mut ws).await;
        assert!(!a.link("b").is_up());
        assert_eq!(a.balance("b").await, 0);
    });
}

#[test]
fn prepare_while_the_link_is_down_is_rejected_t01_at_once() {
    run(async {
        // A port nobody listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", free.local_addr().unwrap());
        drop(free);
        let b = TestNode::start(
            &config("test.a.b", &btp_client_account("a", &url, "b", "t"), false),
            fast_options(),
        )
        .await;
        assert!(!b.link("a").is_up());
        let started = std::time::Instant::now();
        let reject = b.pay("test.a.wallet", 10, 30_000).await.unwrap_err();
        assert_eq!(reject.code(), ErrorCode::T01_PEER_UNREACHABLE);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(b.balance("a").await, 0);
    });
}

#[test]
fn peer_disconnecting_mid_flight_rejects_the_pending_prepare_before_expiry() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            fast_options(),
        )
        .await;
        let mut ws = raw_authenticated(a.btp_addr(), "b", "b-token").await;
        assert!(a.link("b").is_up());

        let started = std::time::Instant::now();
        let payment = a.pay("test.a.b.x", 50, 30_000);
        let peer = async {
            // The Prepare reaches the peer as a Message; the peer vanishes without answering.
            let frame = next_frame(&mut ws).await.expect("the Prepare arrives");
            assert_eq!(frame[0], TYPE_MESSAGE);
            drop(ws);
        };
        let (result, ()) = tokio::join!(payment, peer);
        let reject = result.unwrap_err();
        assert!(
            [
                ErrorCode::T01_PEER_UNREACHABLE,
                ErrorCode::T00_INTERNAL_ERROR
            ]
            .contains(&reject.code()),
            "got {}",
            reject.code().as_str()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!a.link("b").is_up());
        assert_eq!(a.balance("b").await, 0);
    });
}

#[test]
fn server_keeps_serving_one_account_while_another_misbehaves() {
    run(async {
        let accounts = btp_server_account("b", "b-token") + &btp_server_account("c", "c-token");
        let a = TestNode::start(&config("test.a", &accounts, true), fast_options()).await;
        let mut good = raw_authenticated(a.btp_addr(), "b", "b-token").await;

        // c: a malformed frame closes its connection.
        let mut bad = raw_authenticated(a.btp_addr(), "c", "c-token").await;
        bad.send(Message::Binary(vec![6, 0, 0, 0, 1, 0x80].into()))
            .await
            .unwrap();
        assert_closed(&mut bad).await;
        // c: an oversize message (over 64 KiB) closes its connection too.
        let mut big = raw_authenticated(a.btp_addr(), "c", "c-token").await;
        let _ = big
            .send(Message::Binary(vec![0u8; 100 * 1024].into()))
            .await;
        assert_closed(&mut big).await;
        // c: a text message is no BTP frame either.
        let mut text = raw_authenticated(a.btp_addr(), "c", "c-token").await;
        text.send(Message::text("hello")).await.unwrap();
        assert_closed(&mut text).await;
        // A small flood of connections that never authenticate.
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(raw_connect(a.btp_addr()).await);
        }

        // b still works, in both directions.
        let p = prepare("test.a.wallet", 10, 30_000);
        send_frame(&mut good, &Frame::ilp_message(7, p.as_bytes().clone())).await;
        let reply = next_frame(&mut good).await.expect("answered");
        assert_eq!(reply[0], TYPE_RESPONSE);
        assert_eq!(Frame::decode(&reply).unwrap().request_id, 7);
        assert!(a.link("b").is_up());
        let payment = a.pay("test.a.b.x", 5, 30_000);
        let peer = async {
            let frame = Frame::decode(&next_frame(&mut good).await.unwrap()).unwrap();
            assert!(matches!(frame.payload, Payload::Message(_)));
            let reject = Reject::new(ErrorCode::F99_APPLICATION_ERROR, None, "no thanks");
            send_frame(
                &mut good,
                &Frame {
                    request_id: frame.request_id,
                    payload: Payload::Response(ProtocolData::ilp_packet(reject.as_bytes().clone())),
                },
            )
            .await;
        };
        let (result, ()) = tokio::join!(payment, peer);
        assert_eq!(result.unwrap_err().code(), ErrorCode::F99_APPLICATION_ERROR);
        assert_eq!(a.balance("b").await, 10);
        assert_eq!(a.balance("c").await, 0);
    });
}

#[test]
fn silent_peer_is_closed_by_keepalive_and_a_new_connection_replaces_the_old() {
    run(async {
        let options = BtpOptions {
            ping_interval: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(300),
            ..fast_options()
        };
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            options,
        )
        .await;
        let link = a.link("b");
        // First connection, then a second one for the same account: the first is closed.
        let mut first = raw_authenticated(a.btp_addr(), "b", "b-token").await;
        let second = raw_authenticated(a.btp_addr(), "b", "b-token").await;
        assert_closed(&mut first).await;
        assert!(link.is_up());
        // The second never reads again, so it never answers pings: closed as idle.
        eventually("the silent connection is closed", || !link.is_up()).await;
        drop(second);
    });
}

#[test]
fn client_link_reconnects_after_the_server_goes_away() {
    run(async {
        let cfg_a = config("test.a", &btp_server_account("b", "b-token"), true);
        let a = TestNode::start(&cfg_a, fast_options()).await;
        let addr = a.btp_addr();
        let b = TestNode::start(
            &config(
                "test.a.b",
                &btp_client_account("a", &format!("ws://{addr}"), "b", "b-token"),
                false,
            ),
            fast_options(),
        )
        .await;
        let b_link = b.link("a");
        eventually("the client is up", || b_link.is_up()).await;

        // The server goes away: the client is down, and its packets are rejected T01.
        drop(a);
        eventually("the client sees the server gone", || !b_link.is_up()).await;
        let reject = b.pay("test.a.wallet", 10, 30_000).await.unwrap_err();
        assert_eq!(reject.code(), ErrorCode::T01_PEER_UNREACHABLE);

        // A server comes back on the same address; the client redials and pays again.
        let text = format!(
            "[node]\nilp_address = \"test.a\"\nasset_code = \"USD\"\nasset_scale = 9\nspread = \"0\"\n\
             [rates]\nbackend = \"static\"\n[rates.static]\nUSD = \"1\"\n[store]\nbackend = \"memory\"\n\
             [listeners.btp]\nbind = \"{addr}\"\n\
             [accounts.wallet]\nrelation = \"child\"\n[accounts.wallet.link]\ntype = \"memory\"\n\
             [accounts.wallet.rate_limit]\nenabled = false\n\n{}",
            btp_server_account("b", "b-token")
        );
        let a2 = TestNode::start_on_released_address(
            &Config::from_toml_str(&text).unwrap(),
            fast_options(),
        )
        .await;
        let a2_link = a2.link("b");
        eventually("the client reconnected", || {
            b_link.is_up() && a2_link.is_up()
        })
        .await;
        let paid = b.pay("test.a.wallet", 10, 30_000).await;
        assert_eq!(paid.unwrap().fulfillment(), &PREIMAGE);
    });
}

#[test]
fn client_with_a_wrong_token_stays_down_and_its_packets_are_rejected_t01() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            fast_options(),
        )
        .await;
        let url = format!("ws://{}", a.btp_addr());
        let b = TestNode::start(
            &config(
                "test.a.b",
                &btp_client_account("a", &url, "b", "nope"),
                false,
            ),
            fast_options(),
        )
        .await;
        // Let it try (and be refused) a few times.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!b.link("a").is_up());
        assert!(!a.link("b").is_up());
        let reject = b.pay("test.a.wallet", 10, 30_000).await.unwrap_err();
        assert_eq!(reject.code(), ErrorCode::T01_PEER_UNREACHABLE);
    });
}

#[test]
fn requests_that_carry_no_prepare_get_answers_not_deliveries() {
    run(async {
        let a = TestNode::start(
            &config("test.a", &btp_server_account("b", "b-token"), true),
            fast_options(),
        )
        .await;
        let mut ws = raw_authenticated(a.btp_addr(), "b", "b-token").await;
        // A Message with a sub-protocol we do not speak: an empty Response.
        let custom = Frame {
            request_id: 11,
            payload: Payload::Message(ProtocolData(vec![ilp::btp::ProtocolDataEntry::new(
                "custom",
                ilp::btp::ContentType::OCTET_STREAM,
                bytes::Bytes::from_static(b"x"),
            )
            .unwrap()])),
        };
        send_frame(&mut ws, &custom).await;
        let reply = Frame::decode(&next_frame(&mut ws).await.unwrap()).unwrap();
        assert_eq!(reply.request_id, 11);
        assert_eq!(reply.payload, Payload::Response(ProtocolData::new()));
        // `ilp` data that is not a Prepare: an F00 Error, and the connection stays open.
        send_frame(
            &mut ws,
            &Frame::ilp_message(12, fulfill().as_bytes().clone()),
        )
        .await;
        let reply = Frame::decode(&next_frame(&mut ws).await.unwrap()).unwrap();
        assert_eq!(reply.request_id, 12);
        assert!(
            matches!(reply.payload, Payload::Error(e) if e.code == BtpErrorCode::F00_NOT_ACCEPTED)
        );
        // A Transfer: refused with F00 (no BTP settlement here).
        let transfer = Frame {
            request_id: 13,
            payload: Payload::Transfer {
                amount: 100,
                protocol_data: ProtocolData::new(),
            },
        };
        send_frame(&mut ws, &transfer).await;
        let reply = Frame::decode(&next_frame(&mut ws).await.unwrap()).unwrap();
        assert_eq!(reply.request_id, 13);
        assert!(
            matches!(reply.payload, Payload::Error(e) if e.code == BtpErrorCode::F00_NOT_ACCEPTED)
        );
        assert!(a.link("b").is_up());
        assert_eq!(a.balance("b").await, 0);
    });
}
