//! BTP/2.0-I per account on real sockets (127.0.0.1, ephemeral ports): a raw client repeating
//! a request to an idempotent account gets the remembered answer and the account sees the
//! Prepare once, also when the repeat comes on a new connection after a drop; a non-idempotent
//! account delivers every copy; our client link repeats an unanswered request until a raw
//! server answers; two nodes with `btp_idempotent` on both ends pay each other. Every wait is
//! bounded.

#![allow(clippy::unwrap_used)] // test harness: helpers unwrap what a correct run never fails

mod common;

use actix::prelude::*;
use common::{
    block_on as run, btp_config as config, next_frame, prepare, raw_authenticated, send_bytes,
    BtpNode, Ws, BTP_WAIT as WAIT, PREIMAGE,
};
use futures::StreamExt;
use ilp::btp::frame::TYPE_RESPONSE;
use ilp::btp::{Frame, IdempotencyConfig, Payload, ProtocolData};
use ilp::packet::{Fulfill, Packet};
use ilp_actors::link::btp_ws::{links_for_config, BtpClientLink, BtpLinks, BtpOptions};
use ilp_actors::link::Link;
use ilp_actors::messages::{IncomingPrepare, PacketResult, Reply};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

fn btp_server_account(id: &str, token: &str, idempotent: bool) -> String {
    common::btp_server_account(id, token, Some(idempotent))
}

fn btp_client_account(id: &str, url: &str, username: &str, token: &str) -> String {
    common::btp_client_account(id, url, username, token, Some(true))
}

/// Fast BTP/2.0-I repeats, so a lost request is repeated well within a test's wait.
fn fast_options() -> BtpOptions {
    BtpOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        idempotency: IdempotencyConfig {
            retry_interval_ms: 50,
            ..IdempotencyConfig::default()
        },
        ..BtpOptions::default()
    }
}

/// A Fulfill whose data tells which delivery produced it, so a replayed answer is told apart
/// from a second delivery's answer.
fn fulfill(delivery: usize) -> Fulfill {
    common::fulfill_with(format!("delivery {delivery}").as_bytes())
}

/// Stands in for the PeerAccount: counts the Prepares delivered to it and fulfills each; with
/// a gate, each answer waits for one `notify_one`.
struct Counting {
    deliveries: Arc<AtomicUsize>,
    gate: Option<Arc<Notify>>,
}

impl Actor for Counting {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Counting {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, _: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let n = self.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = self.gate.clone();
        Reply::later(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(fulfill(n))
        })
    }
}

fn counting(link: &Arc<dyn Link>, gate: Option<Arc<Notify>>) -> Arc<AtomicUsize> {
    let deliveries = Arc::new(AtomicUsize::new(0));
    link.attach(
        Counting {
            deliveries: deliveries.clone(),
            gate,
        }
        .start()
        .recipient(),
    );
    deliveries
}

/// Sends `request` and returns the answer's bytes.
async fn ask(ws: &mut Ws, request: &[u8]) -> Vec<u8> {
    send_bytes(ws, request).await;
    next_frame(ws).await.expect("answered")
}

/// Sends `request` every 50 ms, as a BTP/2.0-I sender does, until an answer arrives.
async fn ask_repeatedly(ws: &mut Ws, request: &[u8]) -> Vec<u8> {
    timeout(WAIT, async {
        loop {
            send_bytes(ws, request).await;
            match timeout(Duration::from_millis(50), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => return b.to_vec(),
                Ok(Some(Ok(_))) | Err(_) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("answered in time")
}

/// The Fulfill inside a Response frame to `request_id`.
fn fulfill_in(answer: &[u8], request_id: u32) -> Fulfill {
    assert_eq!(answer[0], TYPE_RESPONSE);
    let frame = Frame::decode(answer).unwrap();
    assert_eq!(frame.request_id, request_id);
    match Packet::parse(frame.protocol_data().ilp().unwrap().clone()).unwrap() {
        Packet::Fulfill(f) => f,
        other => panic!("expected a Fulfill, got {other:?}"),
    }
}

async fn server_links(options: BtpOptions) -> BtpLinks {
    let accounts = format!(
        "{}{}",
        btp_server_account("b", "b-token", true),
        btp_server_account("c", "c-token", false)
    );
    links_for_config(&config("test.a", &accounts, true), options)
        .await
        .unwrap()
}

fn addr_of(links: &BtpLinks) -> SocketAddr {
    links.server.as_ref().unwrap().local_addr()
}

#[test]
fn idempotent_account_answers_a_repeat_from_memory_and_delivers_once() {
    run(async {
        let btp = server_links(fast_options()).await;
        let deliveries = counting(&btp.links["b"], None);
        let mut ws = raw_authenticated(addr_of(&btp), "b", "b-token").await;

        let request =
            Frame::ilp_message(42, prepare("test.a.b", 10, 30_000).as_bytes().clone()).encode();
        let first = ask(&mut ws, &request).await;
        let second = ask(&mut ws, &request).await;
        assert_eq!(
            first, second,
            "the repeat gets the identical Response bytes"
        );
        assert_eq!(fulfill_in(&first, 42).data(), b"delivery 1");
        assert_eq!(deliveries.load(Ordering::SeqCst), 1);

        // Same id, different bytes: a new request, delivered and answered anew.
        let other =
            Frame::ilp_message(42, prepare("test.a.b", 11, 30_000).as_bytes().clone()).encode();
        let third = ask(&mut ws, &other).await;
        assert_eq!(fulfill_in(&third, 42).data(), b"delivery 2");
        assert_eq!(deliveries.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn non_idempotent_account_delivers_every_copy() {
    run(async {
        let btp = server_links(fast_options()).await;
        let deliveries = counting(&btp.links["c"], None);
        let mut ws = raw_authenticated(addr_of(&btp), "c", "c-token").await;

        let request =
            Frame::ilp_message(42, prepare("test.a.c", 10, 30_000).as_bytes().clone()).encode();
        let first = ask(&mut ws, &request).await;
        let second = ask(&mut ws, &request).await;
        assert_eq!(fulfill_in(&first, 42).data(), b"delivery 1");
        assert_eq!(fulfill_in(&second, 42).data(), b"delivery 2");
        assert_eq!(deliveries.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_repeat_on_a_new_connection_after_a_drop_is_answered_from_memory() {
    run(async {
        let btp = server_links(fast_options()).await;
        let gate = Arc::new(Notify::new());
        let link = btp.links["b"].clone();
        let deliveries = counting(&link, Some(gate.clone()));
        let addr = addr_of(&btp);
        let request =
            Frame::ilp_message(7, prepare("test.a.b", 10, 30_000).as_bytes().clone()).encode();

        // Delivered on a first connection, which drops before the answer is ready.
        let mut first = raw_authenticated(addr, "b", "b-token").await;
        send_bytes(&mut first, &request).await;
        common::eventually(WAIT, "the Prepare is delivered", || {
            deliveries.load(Ordering::SeqCst) == 1
        })
        .await;
        drop(first);
        common::eventually(WAIT, "the link sees the drop", || !link.is_up()).await;
        gate.notify_one();

        // The peer repeats on a new connection: the answer comes from the link's memory.
        let mut second = raw_authenticated(addr, "b", "b-token").await;
        let answer = ask_repeatedly(&mut second, &request).await;
        assert_eq!(fulfill_in(&answer, 7).data(), b"delivery 1");
        assert_eq!(deliveries.load(Ordering::SeqCst), 1);

        // And once more on a third connection, byte for byte.
        drop(second);
        let mut third = raw_authenticated(addr, "b", "b-token").await;
        assert_eq!(ask(&mut third, &request).await, answer);
        assert_eq!(deliveries.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn client_link_repeats_an_unanswered_request_until_answered() {
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        // A raw server that answers the auth Message, ignores the first copy of each request
        // and answers the second, checking it is the same bytes.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut first_copy: Option<Vec<u8>> = None;
            loop {
                let bytes = next_frame(&mut ws).await.expect("a frame");
                let frame = Frame::decode(&bytes).unwrap();
                if frame.protocol_data().get("auth").is_some() {
                    let ok = Frame {
                        request_id: frame.request_id,
                        payload: Payload::Response(ProtocolData::new()),
                    };
                    send_bytes(&mut ws, &ok.encode()).await;
                    continue;
                }
                let Some(first) = &first_copy else {
                    first_copy = Some(bytes);
                    continue;
                };
                assert_eq!(first, &bytes, "a repeat is byte-identical");
                let answer = Frame::ilp_response(frame.request_id, fulfill(1).as_bytes().clone());
                send_bytes(&mut ws, &answer.encode()).await;
                // Keep the socket open until the client has read the answer.
                let _ = timeout(WAIT, ws.next()).await;
                return bytes;
            }
        });

        let link = BtpClientLink::connect_with_tls(&url, "b", "tok", None, true, fast_options());
        common::eventually(WAIT, "the client is up", || link.is_up()).await;
        let p = prepare("test.a", 10, 30_000);
        let result = timeout(WAIT, link.send_prepare(p.clone()))
            .await
            .expect("answered in time")
            .expect("link up");
        assert_eq!(result.unwrap().fulfillment(), &PREIMAGE);
        drop(link);
        let repeated = timeout(WAIT, server).await.unwrap().unwrap();
        let frame = Frame::decode(&repeated).unwrap();
        assert_eq!(frame.protocol_data().ilp().unwrap(), p.as_bytes());
    });
}

#[test]
fn two_idempotent_nodes_pay_each_other_and_balances_mirror() {
    run(async {
        let a = BtpNode::start(
            &config("test.a", &btp_server_account("b", "b-token", true), true),
            fast_options(),
            b"delivery 0",
        )
        .await;
        let url = format!("ws://{}", a.btp.server.as_ref().unwrap().local_addr());
        let b = BtpNode::start(
            &config(
                "test.a.b",
                &btp_client_account("a", &url, "b", "b-token"),
                false,
            ),
            fast_options(),
            b"delivery 0",
        )
        .await;
        let (a_link, b_link) = (a.btp.links["b"].clone(), b.btp.links["a"].clone());
        common::eventually(WAIT, "both ends of the link are up", || {
            a_link.is_up() && b_link.is_up()
        })
        .await;

        for _ in 0..3 {
            let up = b.pay("test.a.wallet", 1_000, 30_000).await;
            assert_eq!(up.unwrap().fulfillment(), &PREIMAGE);
            let down = a.pay("test.a.b.wallet", 300, 30_000).await;
            assert_eq!(down.unwrap().fulfillment(), &PREIMAGE);
        }
        assert_eq!(b.balance("a").await, -2_100);
        assert_eq!(a.balance("b").await, 2_100);
    });
}

/// Answers the auth Message on `ws`; returns the next frame that is not an auth Message.
async fn authenticate_then_next<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let bytes = next_frame(ws).await.expect("a frame");
        let frame = Frame::decode(&bytes).unwrap();
        if frame.protocol_data().get("auth").is_none() {
            return bytes;
        }
        let ok = Frame {
            request_id: frame.request_id,
            payload: Payload::Response(ProtocolData::new()),
        };
        send_bytes(ws, &ok.encode()).await;
    }
}

#[test]
fn client_link_repeats_a_request_on_the_next_connection_after_a_drop() {
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        // A raw server that takes the request on a first connection and drops it unanswered,
        // then answers the request's repeat on the client's next connection.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let first = authenticate_then_next(&mut ws).await;
            drop(ws);
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let repeat = authenticate_then_next(&mut ws).await;
            let frame = Frame::decode(&repeat).unwrap();
            let answer = Frame::ilp_response(frame.request_id, fulfill(1).as_bytes().clone());
            send_bytes(&mut ws, &answer.encode()).await;
            let _ = timeout(WAIT, ws.next()).await;
            (first, repeat)
        });

        let link = BtpClientLink::connect_with_tls(&url, "b", "tok", None, true, fast_options());
        common::eventually(WAIT, "the client is up", || link.is_up()).await;
        let p = prepare("test.a", 10, 30_000);
        let result = timeout(WAIT, link.send_prepare(p.clone()))
            .await
            .expect("answered in time")
            .expect("not failed by the drop");
        assert_eq!(result.unwrap().data(), b"delivery 1");
        drop(link);
        let (first, repeat) = timeout(WAIT, server).await.unwrap().unwrap();
        assert_eq!(first, repeat, "the same id and bytes on the new connection");
        let frame = Frame::decode(&repeat).unwrap();
        assert_eq!(frame.protocol_data().ilp().unwrap(), p.as_bytes());
    });
}

#[test]
fn a_plain_client_link_fails_a_request_when_its_connection_drops() {
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            authenticate_then_next(&mut ws).await;
            drop(ws);
            // Keep the listener until the test is done with the link.
            let _ = timeout(WAIT, listener.accept()).await;
        });
        let link = BtpClientLink::connect_with_tls(&url, "b", "tok", None, false, fast_options());
        common::eventually(WAIT, "the client is up", || link.is_up()).await;
        let result = timeout(WAIT, link.send_prepare(prepare("test.a", 10, 30_000)))
            .await
            .expect("answered in time");
        assert!(matches!(result, Err(ilp_actors::link::LinkError::Down)));
        drop(link);
        server.abort();
    });
}

#[test]
fn a_full_memory_refuses_t03_counts_it_and_never_forgets_a_request_in_progress() {
    run(async {
        let options = BtpOptions {
            idempotency: IdempotencyConfig {
                retry_interval_ms: 50,
                max_entries: 2,
                ..IdempotencyConfig::default()
            },
            ..fast_options()
        };
        let btp = server_links(options).await;
        let gate = Arc::new(Notify::new());
        let link = btp.links["b"].clone();
        let deliveries = counting(&link, Some(gate.clone()));
        let mut ws = raw_authenticated(addr_of(&btp), "b", "b-token").await;
        // Each request's bytes, fixed once: a repeat must be byte-identical.
        let frames: Vec<Vec<u8>> = (1..=3u32)
            .map(|id| {
                let p = prepare("test.a.b", 9 + u64::from(id), 30_000);
                Frame::ilp_message(id, p.as_bytes().clone()).encode()
            })
            .collect();
        let request = |id: u32, _amount: u64| frames[id as usize - 1].clone();
        // Two requests held in progress fill the memory (the auth answer is evicted first).
        send_bytes(&mut ws, &request(1, 10)).await;
        send_bytes(&mut ws, &request(2, 11)).await;
        common::eventually(WAIT, "both delivered", || {
            deliveries.load(Ordering::SeqCst) == 2
        })
        .await;
        // A third is refused T03 at once, without delivery.
        let refused = ask(&mut ws, &request(3, 12)).await;
        let frame = Frame::decode(&refused).unwrap();
        assert_eq!(frame.request_id, 3);
        match Packet::parse(frame.protocol_data().ilp().unwrap().clone()).unwrap() {
            Packet::Reject(r) => assert_eq!(r.code(), ilp::packet::ErrorCode::T03_CONNECTOR_BUSY),
            other => panic!("expected a Reject, got {other:?}"),
        }
        assert_eq!(deliveries.load(Ordering::SeqCst), 2);
        assert_eq!(link.busy_refusals(), 1);
        // Repeats of the two in progress are still recognised, not delivered again.
        send_bytes(&mut ws, &request(1, 10)).await;
        send_bytes(&mut ws, &request(2, 11)).await;
        // Answering them makes room; the third's repeat is delivered then. (A repeat read
        // after its answer is answered again from memory: skip those.)
        gate.notify_one();
        gate.notify_one();
        let mut answered = std::collections::BTreeSet::new();
        while answered.len() < 2 {
            let bytes = next_frame(&mut ws).await.expect("answer");
            answered.insert(
                fulfill_in(&bytes, Frame::decode(&bytes).unwrap().request_id)
                    .data()
                    .to_vec(),
            );
        }
        assert_eq!(deliveries.load(Ordering::SeqCst), 2);
        gate.notify_one();
        send_bytes(&mut ws, &request(3, 12)).await;
        let third = loop {
            let bytes = next_frame(&mut ws).await.expect("answer");
            if Frame::decode(&bytes).unwrap().request_id == 3 {
                break bytes;
            }
        };
        // Third delivery: the repeats of the first two were never delivered again.
        assert_eq!(fulfill_in(&third, 3).data(), b"delivery 3");
        assert_eq!(link.busy_refusals(), 1);
    });
}
