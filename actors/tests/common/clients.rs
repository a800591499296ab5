//! Clients of a node under test that keep their own books: a payee that fulfills every payment
//! and records what it was paid, and payers that retry each payment with identical bytes until it
//! is fulfilled or fails for good, recording every Fulfill they receive. Used by the tests that
//! kill nodes and cut links, to compare the nodes' books with what the clients saw.

use actix::prelude::*;
use ilp::packet::{
    Address, ErrorClass, ErrorCode, FulfillBuilder, Prepare, PrepareBuilder, Reject, Timestamp,
};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{BtpClientLink, BtpOptions};
use ilp_actors::link::{Link, LinkError};
use ilp_actors::messages::{IncomingPrepare, PacketResult, Reply};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a payee was paid: every condition it fulfilled, once, with its amount.
#[derive(Default)]
pub struct PayeeBook {
    pub fulfilled: HashMap<[u8; 32], u64>,
    pub deliveries: u64,
}

impl PayeeBook {
    pub fn total(&self) -> u64 {
        self.fulfilled.values().sum()
    }
}

/// Fulfills every payment whose data is its preimage, after `delay`.
pub struct Payee {
    pub book: Arc<Mutex<PayeeBook>>,
    pub delay: Duration,
}

impl Actor for Payee {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for Payee {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        let answer = self.answer(msg.prepare);
        let delay = self.delay;
        Reply::later(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            answer
        })
    }
}

impl Payee {
    fn answer(&self, prepare: Prepare) -> PacketResult {
        let Ok(preimage) = <[u8; 32]>::try_from(prepare.data()) else {
            return Err(Reject::new(
                ErrorCode::F06_UNEXPECTED_PAYMENT,
                None,
                "no preimage",
            ));
        };
        let mut book = self.book.lock().unwrap();
        book.deliveries += 1;
        let previous = book
            .fulfilled
            .insert(*prepare.execution_condition(), prepare.amount());
        assert!(
            previous.is_none_or(|a| a == prepare.amount()),
            "the same payment arrived with two amounts"
        );
        Ok(FulfillBuilder {
            fulfillment: &preimage,
            data: b"",
        }
        .build()
        .unwrap())
    }
}

/// What a payer saw.
#[derive(Default)]
pub struct PayerBook {
    /// Fulfilled payments by index, with their amounts.
    pub fulfilled: BTreeMap<u64, u64>,
    /// Every final outcome that is not a Fulfill (must stay empty).
    pub failures: Vec<String>,
    /// Payments not resolved yet: attempts so far, the last outcome (or the attempt in flight)
    /// and when that attempt started; printed if a drain times out, to show where they are.
    pub unresolved: BTreeMap<u64, (u64, String, Instant)>,
}

impl PayerBook {
    pub fn total(&self) -> u64 {
        self.fulfilled.values().sum()
    }

    /// The first `n` unresolved payments, for a failure message.
    pub fn stuck(&self, n: usize) -> Vec<(u64, u64, String, Duration)> {
        self.unresolved
            .iter()
            .take(n)
            .map(|(index, (attempts, last, since))| {
                (*index, *attempts, last.clone(), since.elapsed())
            })
            .collect()
    }
}

/// Payment `index` of a payer seeded `seed`: its preimage is the payment's data, so a [`Payee`]
/// can fulfill it; amounts 1 to 997.
pub fn payment(seed: u64, index: u64, destination: &Address, expires_at: Timestamp) -> Prepare {
    let preimage: [u8; 32] =
        Sha256::digest([seed.to_be_bytes(), index.to_be_bytes()].concat()).into();
    let condition: [u8; 32] = Sha256::digest(preimage).into();
    PrepareBuilder {
        amount: 1 + index % 997,
        expires_at,
        execution_condition: &condition,
        destination,
        data: &preimage,
    }
    .build()
    .unwrap()
}

/// One payer: its link, where it pays, and its book.
pub struct Payer {
    pub link: Arc<dyn Link>,
    pub destination: Address,
    pub seed: u64,
    /// Each payment's Prepare expires this long after it is first sent.
    pub expiry_ms: u64,
    pub next: AtomicU64,
    pub stop: AtomicBool,
    pub book: Mutex<PayerBook>,
    /// Payments started.
    pub sent: AtomicU64,
    /// Identical Prepares sent again because the link was down or the answer temporary.
    pub resent: AtomicU64,
    /// `Some`: STREAM packets on the connection at `destination` keyed by this secret (packet
    /// `index` has sequence `index + 1`), for a receiver of the node; else preimage payments.
    pub stream: Option<[u8; 32]>,
}

impl Payer {
    pub fn new(link: Arc<dyn Link>, destination: &str, seed: u64, expiry_ms: u64) -> Arc<Payer> {
        Arc::new(Payer {
            link,
            destination: Address::try_from(destination).unwrap(),
            seed,
            expiry_ms,
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            book: Mutex::new(PayerBook::default()),
            sent: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            stream: None,
        })
    }

    /// A payer of STREAM packets to the receiver connection at `destination` keyed by `secret`.
    pub fn streaming(
        link: Arc<dyn Link>,
        destination: &Address,
        secret: [u8; 32],
        seed: u64,
        expiry_ms: u64,
    ) -> Arc<Payer> {
        let mut payer = Arc::try_unwrap(Payer::new(link, destination.as_str(), seed, expiry_ms))
            .unwrap_or_else(|_| unreachable!("a new Arc has one owner"));
        payer.stream = Some(secret);
        Arc::new(payer)
    }

    /// Payment `index`: the same bytes every time it is asked for (until `expires_at` moves).
    fn prepare(&self, index: u64, expires_at: Timestamp) -> Prepare {
        match &self.stream {
            Some(secret) => super::stream_payment(
                &self.destination,
                secret,
                index + 1,
                1 + index % 997,
                expires_at,
            ),
            None => payment(self.seed, index, &self.destination, expires_at),
        }
    }

    pub fn fulfilled(&self) -> usize {
        self.book.lock().unwrap().fulfilled.len()
    }

    /// Pays until `stop`, one payment at a time; each payment is retried with identical bytes
    /// until it is fulfilled or fails for good.
    pub async fn run(self: Arc<Self>, clock: Clock) {
        while !self.stop.load(Ordering::SeqCst) {
            let index = self.next.fetch_add(1, Ordering::SeqCst);
            let expires_at = clock.now().checked_add_millis(self.expiry_ms).unwrap();
            let prepare = self.prepare(index, expires_at);
            self.sent.fetch_add(1, Ordering::SeqCst);
            let outcome = self.pay(index, &prepare, expires_at, clock).await;
            let mut book = self.book.lock().unwrap();
            book.unresolved.remove(&index);
            match outcome {
                Ok(amount) => {
                    let previous = book.fulfilled.insert(index, amount);
                    assert!(previous.is_none());
                }
                Err(failure) => book.failures.push(failure),
            }
        }
    }

    async fn pay(
        &self,
        index: u64,
        prepare: &Prepare,
        expires_at: Timestamp,
        clock: Clock,
    ) -> Result<u64, String> {
        loop {
            if clock.now() >= expires_at {
                return Err(format!("payment {index} expired unresolved"));
            }
            let attempt_started = Instant::now();
            self.note(index, attempt_started, None);
            let answer = self.link.send_prepare(prepare.clone()).await;
            let outcome = match &answer {
                Ok(Ok(_)) => "fulfilled".to_owned(),
                Ok(Err(reject)) => format!("{} {}", reject.code(), reject.message()),
                Err(e) => format!("link error {e}"),
            };
            self.note(index, attempt_started, Some(outcome));
            match answer {
                Ok(Ok(fulfill)) => {
                    let hash: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
                    if &hash == prepare.execution_condition() {
                        return Ok(prepare.amount());
                    }
                    return Err(format!("payment {index}: wrong fulfillment"));
                }
                Ok(Err(reject)) if reject.code().class() != ErrorClass::Final => {
                    // Not forwarded (a link down) or not answered in time: the same bytes again
                    // are the same payment.
                }
                Ok(Err(reject)) => {
                    return Err(format!(
                        "payment {index}: {} {}",
                        reject.code(),
                        reject.message()
                    ))
                }
                Err(LinkError::Down) => {}
                Err(e) => return Err(format!("payment {index}: link error {e}")),
            }
            self.resent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records an attempt of payment `index` starting (`outcome` None) or ending.
    fn note(&self, index: u64, started: Instant, outcome: Option<String>) {
        let mut book = self.book.lock().unwrap();
        let entry = book
            .unresolved
            .entry(index)
            .or_insert((0, String::new(), started));
        match outcome {
            None => {
                entry.1 = format!("attempt {} in flight", entry.0 + 1);
                entry.2 = started;
            }
            Some(outcome) => {
                entry.0 += 1;
                entry.1 = format!("{outcome} after {:?}", started.elapsed());
            }
        }
    }
}

/// A child account `id` on a node's BTP listener speaking BTP/2.0-I, with room for any traffic
/// (config lines).
pub fn btp_child(id: &str) -> String {
    format!(
        r#"
[accounts.{id}]
relation = "child"
btp_idempotent = true
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
}

/// Client links that reconnect within 200 ms.
pub fn btp_options() -> BtpOptions {
    BtpOptions {
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(200),
        ..BtpOptions::default()
    }
}

/// The clients of the node at `btp` (its [`btp_child`] accounts `payer` and `payee`): a payer
/// paying `destination` (Prepares expiring `expiry_ms` after they are first sent), and a payee.
pub fn btp_clients(
    btp: SocketAddr,
    destination: &str,
    seed: u64,
    expiry_ms: u64,
) -> (Arc<Payer>, Arc<Mutex<PayeeBook>>) {
    let url = format!("ws://{btp}");
    let connect = |id: &str| {
        BtpClientLink::connect_with_tls(&url, id, &format!("{id}-token"), None, true, btp_options())
    };
    let payee_link = connect("payee");
    let payee = Arc::new(Mutex::new(PayeeBook::default()));
    payee_link.attach(
        Payee {
            book: payee.clone(),
            delay: Duration::ZERO,
        }
        .start()
        .recipient(),
    );
    // The link lives as long as the payee actor's recipient is attached: keep it.
    std::mem::forget(payee_link);
    let payer_link: Arc<dyn Link> = Arc::new(connect("payer"));
    (Payer::new(payer_link, destination, seed, expiry_ms), payee)
}
