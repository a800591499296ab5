//! Flood test: the real binary, one peer sending Prepares as fast as it can over BTP to a
//! receiver that never answers (every packet stays in flight until it expires). The node must
//! stop reading that peer's socket once it carries its limit of Prepares in flight, so its
//! resident memory stays bounded, and the other accounts are still served meanwhile.

#![allow(clippy::unwrap_used)] // test harness: a failed spawn, lock or build is a test bug

mod common;

use actix::prelude::*;
use common::connector::Connector;
use common::{block_on, raw_authenticated, send_bytes, BTP_WAIT};
use ilp::btp::Frame;
use ilp::packet::{Address, FulfillBuilder, PrepareBuilder};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{BtpClientLink, BtpOptions};
use ilp_actors::link::Link;
use ilp_actors::messages::{IncomingPrepare, PacketResult, Reply};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the flood runs before the node's memory is read again.
const FLOOD: Duration = Duration::from_secs(8);
/// Growth of the node's resident memory allowed during the flood. Every Prepare in flight
/// costs about 7.5 KiB in the debug build (exchange, reservation, pending send): at the limit
/// of 2 048 per connection the node grew by 30–40 MiB here, while without the limit it took
/// some 98 000 Prepares in 8 s and grew by 720 MiB, serving 5 payments of the other accounts
/// instead of 130.
const RSS_GROWTH_BOUND_KIB: u64 = 96 * 1024;

fn config(data: &std::path::Path) -> String {
    let account = |id: &str, extra: &str| {
        format!(
            r#"
[accounts.{id}]
relation = "child"
{extra}
[accounts.{id}.link]
type = "btp-server"
auth_username = "{id}"
auth_token = "{id}-token"
[accounts.{id}.balance]
minimum = -1000000000000000
maximum = 1000000000000000
[accounts.{id}.rate_limit]
enabled = false
"#
        )
    };
    format!(
        r#"
[node]
ilp_address = "test.flood"
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "127.0.0.1:0"
[listeners.admin]
enabled = false
[store]
backend = "rocksdb"
path = "{data}"
{}{}{}{}"#,
        account("flooder", ""),
        account("sink", ""),
        account("payer", ""),
        account("payee", ""),
        data = data.display()
    )
}

/// The node's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Never answers: every Prepare sent to it stays in flight until it expires.
struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Sink {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, _: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        Reply::later(std::future::pending())
    }
}

/// Fulfills Prepares whose data is their preimage.
struct Payee;

impl Actor for Payee {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Payee {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let preimage: [u8; 32] = msg.prepare.data().try_into().unwrap();
        Reply::ready(Ok(FulfillBuilder {
            fulfillment: &preimage,
            data: b"",
        }
        .build()
        .unwrap()))
    }
}

fn payment(to: &str, n: u64, expires_in: Duration) -> ilp::packet::Prepare {
    let mut preimage = [0u8; 32];
    preimage[..8].copy_from_slice(&n.to_be_bytes());
    let condition: [u8; 32] = Sha256::digest(preimage).into();
    let expires_at = Clock::system()
        .now()
        .checked_add_millis(u64::try_from(expires_in.as_millis()).unwrap())
        .unwrap();
    PrepareBuilder {
        amount: 1,
        expires_at,
        execution_condition: &condition,
        destination: &Address::try_from(to).unwrap(),
        data: &preimage,
    }
    .build()
    .unwrap()
}

async fn client(url: &str, id: &str) -> BtpClientLink {
    let link = BtpClientLink::connect_with_tls(
        url,
        id,
        &format!("{id}-token"),
        None,
        false,
        BtpOptions::default(),
    );
    common::eventually(BTP_WAIT, "the client is up", || link.is_up()).await;
    link
}

#[test]
fn a_flooding_peer_is_slowed_down_and_the_others_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config(&dir.path().join("data"))).unwrap();
    let connector = Connector::start(&config_path, &dir.path().join("connector.log"));
    let addr = connector.btp;
    let pid = connector.pid();
    let url = format!("ws://{addr}");

    let (before, after, flooded, paid) = block_on(async move {
        let sink = client(&url, "sink").await;
        sink.attach(Sink.start().recipient());
        let payee = client(&url, "payee").await;
        payee.attach(Payee.start().recipient());
        let payer = client(&url, "payer").await;
        // Warm up the paths the flood and the payments take.
        let result = payer
            .send_prepare(payment("test.flood.payee", 0, Duration::from_secs(30)))
            .await
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        let before = rss_kib(pid);

        // The flood: Prepares to the sink, as fast as the socket takes them.
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let mut ws = raw_authenticated(addr, "flooder", "flooder-token").await;
        let flood = tokio::spawn(async move {
            for n in 1u64.. {
                let p = payment("test.flood.sink", n, Duration::from_secs(60));
                let id = u32::try_from(n % u64::from(u32::MAX)).unwrap();
                send_bytes(
                    &mut ws,
                    &Frame::ilp_message(id, p.as_bytes().clone()).encode(),
                )
                .await;
                counter.store(n, Ordering::Relaxed);
            }
        });

        // Meanwhile the payer is still served: payments one after the other, each bounded.
        let started = Instant::now();
        let mut paid = 0u64;
        while started.elapsed() < FLOOD {
            paid += 1;
            let answer = tokio::time::timeout(
                BTP_WAIT,
                payer.send_prepare(payment(
                    "test.flood.payee",
                    1 << 40 | paid,
                    Duration::from_secs(30),
                )),
            )
            .await
            .expect("a payment answered within the bound during the flood")
            .unwrap();
            assert!(answer.is_ok(), "payment {paid}: {answer:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = rss_kib(pid);
        flood.abort();
        (before, after, sent.load(Ordering::Relaxed), paid)
    });
    println!(
        "flood: {flooded} Prepares written by the flooder in {} s, {paid} payments served \
         meanwhile; node RSS {before} KiB before, {after} KiB after",
        FLOOD.as_secs()
    );
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_BOUND_KIB,
        "resident memory grew from {before} to {after} KiB under the flood"
    );
    drop(connector);
}
