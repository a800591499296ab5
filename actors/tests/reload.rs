//! SIGHUP on the real binary: config.toml is edited (a limit lowered, an account removed, one
//! added with a static route to it) and reloaded; the unchanged accounts keep their very
//! connections, the removed one is disconnected, the added one is served; a broken file is
//! refused and the node keeps running on what it had.

#![allow(clippy::unwrap_used)] // test harness: a failed spawn, write or build is a test bug

mod common;

use actix::prelude::*;
use common::connector::{line_count, signal, Connector, START_BOUND};
use common::{block_on, next_frame, payment, raw_authenticated, send_bytes, Ws};
use ilp::btp::frame::TYPE_RESPONSE;
use ilp::btp::Frame;
use ilp::packet::{ErrorCode, Packet};
use ilp_actors::link::btp_ws::{BtpClientLink, BtpOptions};
use ilp_actors::link::Link;
use ilp_actors::loadgen::PreimagePayee;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn account(id: &str, token: &str, extra: &str) -> String {
    format!(
        "[accounts.{id}]\nrelation = \"child\"\n{extra}\n\
         [accounts.{id}.link]\ntype = \"btp-server\"\nauth_username = \"{id}\"\nauth_token = \"{token}\"\n\
         [accounts.{id}.balance]\nminimum = -1000000\nmaximum = 1000000\n\
         [accounts.{id}.rate_limit]\nenabled = false\n"
    )
}

fn config(port: u16, accounts: &[String], routing: &str) -> String {
    format!(
        "[node]\nilp_address = \"test.reload\"\nspread = \"0\"\n[broadcast]\nenabled = false\n\
         [listeners.btp]\nbind = \"127.0.0.1:{port}\"\n[listeners.admin]\nenabled = false\n\
         [store]\nbackend = \"memory\"\n{routing}\n{}",
        accounts.join("\n")
    )
}

/// Sends a payment as BTP Message `id` on `ws`; the code of the answer (`None`: fulfilled).
async fn pay(ws: &mut Ws, id: u32, to: &str, amount: u64) -> Option<ErrorCode> {
    let p = payment(to, amount, 30_000, u8::try_from(id % 256).unwrap());
    send_bytes(ws, &Frame::ilp_message(id, p.as_bytes().clone()).encode()).await;
    let reply = next_frame(ws).await.expect("an answer on the same socket");
    assert_eq!(reply[0], TYPE_RESPONSE, "a Response, not an Error frame");
    let frame = Frame::decode(&reply).unwrap();
    assert_eq!(frame.request_id, id);
    match Packet::parse(frame.protocol_data().ilp().unwrap().clone()).unwrap() {
        Packet::Fulfill(_) => None,
        Packet::Reject(r) => Some(r.code()),
        Packet::Prepare(_) => panic!("a Prepare in a Response"),
    }
}

/// A client for account `id` whose far end fulfills; returns it and its delivery count.
fn fulfilling_client(
    url: &str,
    id: &str,
    token: &str,
) -> (
    BtpClientLink,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let link = BtpClientLink::connect_with_tls(url, id, token, None, false, BtpOptions::default());
    let fulfiller = PreimagePayee::default();
    let count = fulfiller.delivered.clone();
    link.attach(fulfiller.start().recipient());
    (link, count)
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + START_BOUND;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `text` to `path`, sends SIGHUP to `pid` and returns the line reporting the outcome
/// (on a blocking thread: it polls the log file).
async fn reload(pid: u32, log: &Path, path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    let log = log.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let before = line_count(&log);
        signal(pid, "HUP");
        reload_outcome(&log, before)
    })
    .await
    .unwrap()
}

/// The line reporting the outcome of the reload that started after line `before`.
fn reload_outcome(log: &Path, before: usize) -> String {
    let deadline = Instant::now() + START_BOUND;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .skip(before)
            .find(|l| l.starts_with("reloaded ") || l.starts_with("SIGHUP: "))
        {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no reload outcome in:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_limits_accounts_and_routes_keeping_unchanged_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let log = dir.path().join("connector.log");
    let payer = account("payer", "p-token", "max_packet_amount = 1000");
    let payee_account = account("payee", "q-token", "");
    let gone = account("gone", "g-token", "");
    std::fs::write(
        &path,
        config(0, &[payer.clone(), payee_account.clone(), gone], ""),
    )
    .unwrap();
    let connector = Connector::start(&path, &log);
    let addr = connector.btp;
    // Later versions name the port the first run got: [listeners] differs (port 0 before), which
    // the reload reports as waiting for a restart while the node keeps its listener.
    let v2 = config(
        addr.port(),
        &[
            account("payer", "p-token", "max_packet_amount = 100"),
            payee_account.clone(),
            account("carol", "c-token", ""),
        ],
        "[[routing.static_routes]]\nprefix = \"test.elsewhere\"\naccount = \"carol\"\n",
    );
    let status = block_on(async move {
        tokio::time::timeout(Duration::from_secs(120), async move {
            let url = format!("ws://{addr}");
            let mut payer = raw_authenticated(addr, "payer", "p-token").await;
            let mut gone = raw_authenticated(addr, "gone", "g-token").await;
            let (payee, payee_count) = fulfilling_client(&url, "payee", "q-token");
            until("the payee connects", || payee.is_up()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(pay(&mut payer, 1, "test.reload.payee", 500).await, None);
            assert_eq!(pay(&mut gone, 1, "test.reload.payee", 5).await, None);
            assert_eq!(
                pay(&mut payer, 2, "test.elsewhere.x", 5).await,
                Some(ErrorCode::F02_UNREACHABLE)
            );

            let pid = connector.pid();
            let reloaded = reload(pid, &log, &path, &v2).await;
            assert!(
                reloaded.contains(
                    "added [carol] removed [gone] relinked [] updated [payer] routing changed; \
                 waiting for a restart: [listeners]"
                ),
                "{reloaded}"
            );

            // The same payer socket: the new limit applies, and payments still flow.
            assert_eq!(
                pay(&mut payer, 3, "test.reload.payee", 500).await,
                Some(ErrorCode::F08_AMOUNT_TOO_LARGE)
            );
            assert_eq!(pay(&mut payer, 4, "test.reload.payee", 50).await, None);
            assert_eq!(
                payee_count.load(Ordering::SeqCst),
                3,
                "the payee kept its link"
            );
            // The removed account was disconnected.
            assert_eq!(next_frame(&mut gone).await, None);
            // The added account is served, and the static route leads to it.
            let (carol, carol_count) = fulfilling_client(&url, "carol", "c-token");
            until("carol connects", || carol.is_up()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(pay(&mut payer, 5, "test.elsewhere.x", 40).await, None);
            assert_eq!(carol_count.load(Ordering::SeqCst), 1);

            // A broken file is refused; the node serves on with what it had.
            let refused = reload(pid, &log, &path, "[node\nbroken").await;
            assert!(refused.contains("not reloaded"), "{refused}");
            assert_eq!(pay(&mut payer, 6, "test.elsewhere.y", 40).await, None);
            assert_eq!(
                pay(&mut payer, 7, "test.reload.payee", 500).await,
                Some(ErrorCode::F08_AMOUNT_TOO_LARGE)
            );
            tokio::task::spawn_blocking(move || connector.terminate())
                .await
                .unwrap()
        })
        .await
        .expect("the reload test did not finish in time")
    });
    assert_eq!(status.code(), Some(0));
}
