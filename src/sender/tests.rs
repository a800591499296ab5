//! The sender against a simulated path: hops that convert (flooring) and cap packets, and the
//! node's real STREAM and PSK2 receivers at the end.

use super::*;
use crate::packet::{FulfillBuilder, PacketType, RejectBuilder};
use crate::psk2;
use crate::rates::StaticRates;
use crate::spsp::ReceiptSetup;
use crate::stream::credentials::Connection;
use crate::stream::crypto::StreamKeys;
use crate::stream::packet::StreamPacket;
use crate::stream::receiver::{self, Decision, Incoming};
use proptest::prelude::*;

const SECRET: [u8; 32] = [7; 32];
const SETUP: ReceiptSetup = ReceiptSetup {
    nonce: [3; 16],
    secret: [4; 32],
};

fn addr(s: &str) -> Address {
    Address::try_from(s).unwrap()
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn rate(s: &str) -> Rate {
    Rate::parse(s).unwrap()
}

/// One connector on the path: converts at `rate` (flooring) after refusing packets above
/// `max_packet` (in the units it receives).
#[derive(Clone)]
struct Hop {
    rate: Rate,
    max_packet: Option<u64>,
    address: Address,
}

fn hop(name: &str, r: &str, max_packet: Option<u64>) -> Hop {
    Hop {
        rate: rate(r),
        max_packet,
        address: addr(&format!("test.{name}")),
    }
}

/// The path and the receiver at its end, with failures to inject.
struct Path {
    hops: Vec<Hop>,
    protocol: Protocol,
    asset: (&'static str, u8),
    /// The receiver's limit, when bounded.
    maximum: Option<u64>,
    received: u64,
    /// Fulfilled packets so far, and what each sent and delivered.
    fulfilled: Vec<(u64, u64)>,
    fulfillable_seen: u64,
    /// After this many Fulfills, the next hop answers F02 to everything.
    gone_after: Option<u64>,
    /// After this many Fulfills, the first hop's max packet becomes this.
    shrink: Option<(u64, u64)>,
    /// Every n-th fulfillable Prepare gets T04 from the first hop.
    liquidity_every: Option<u64>,
    /// After this many Fulfills, the receiver claims one unit less than the packet asked.
    lie_after: Option<u64>,
    /// The ids of the Prepares it lied about.
    lied: Vec<u64>,
    /// Every answer is this temporary code.
    always: Option<ErrorCode>,
    /// The application data of each PSK2 request the receiver accepted.
    psk2_data: Vec<Vec<u8>>,
}

impl Path {
    fn new(protocol: Protocol, hops: Vec<Hop>) -> Path {
        Path {
            hops,
            protocol,
            asset: ("XYZ", 0),
            maximum: None,
            received: 0,
            fulfilled: Vec::new(),
            fulfillable_seen: 0,
            gone_after: None,
            shrink: None,
            liquidity_every: None,
            lie_after: None,
            lied: Vec::new(),
            always: None,
            psk2_data: Vec::new(),
        }
    }

    fn destination(&self) -> Address {
        addr("test.receiver.token")
    }

    fn answer(&mut self, out: &Outgoing) -> Result<Fulfill, Reject> {
        let prepare = &out.prepare;
        if out.fulfillable {
            self.fulfillable_seen += 1;
        }
        let done = self.fulfilled.len() as u64;
        if let Some(code) = self.always {
            return Err(Reject::new(code, Some(&self.hops[0].address), "busy"));
        }
        if self.gone_after.is_some_and(|n| done >= n) {
            return Err(Reject::new(
                ErrorCode::F02_UNREACHABLE,
                Some(&self.hops[0].address),
                "no route",
            ));
        }
        if let Some((n, max)) = self.shrink {
            if done >= n {
                self.hops[0].max_packet = Some(max);
            }
        }
        if out.fulfillable
            && self
                .liquidity_every
                .is_some_and(|n| self.fulfillable_seen % n == 0)
        {
            return Err(Reject::new(
                ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
                Some(&self.hops[0].address),
                "",
            ));
        }
        let mut amount = prepare.amount();
        for hop in &self.hops {
            if let Some(max) = hop.max_packet {
                if amount > max {
                    let data = MaxPacketAmountDetails {
                        amount_received: amount,
                        max_amount: max,
                    }
                    .encode();
                    return Err(RejectBuilder {
                        code: ErrorCode::F08_AMOUNT_TOO_LARGE,
                        triggered_by: Some(&hop.address),
                        message: "",
                        data: &data,
                    }
                    .build()
                    .unwrap());
                }
            }
            amount = ratio::floor_mul(amount, hop.rate);
        }
        let address = self.destination();
        let lie = self.lie_after.is_some_and(|n| done >= n);
        if lie && out.fulfillable {
            self.lied.push(out.id);
        }
        let result = match self.protocol {
            Protocol::Stream => self.stream_receiver(prepare, amount, &address, lie),
            Protocol::Psk2 => self.psk2_receiver(prepare, amount, &address),
        };
        if result.is_ok() {
            self.fulfilled.push((prepare.amount(), amount));
        }
        result
    }

    fn stream_receiver(
        &mut self,
        prepare: &Prepare,
        arrived: u64,
        address: &Address,
        lie: bool,
    ) -> Result<Fulfill, Reject> {
        let connection = Connection {
            protocol: Protocol::Stream,
            shared_secret: SECRET,
            id: [1; 16],
            receipts: Some(SETUP),
            tag: None,
            issued_at: 0,
        };
        let incoming = Incoming {
            prepare,
            arrived,
            asset_code: self.asset.0,
            asset_scale: self.asset.1,
            bounded: self.maximum.is_some(),
            address,
        };
        match receiver::decide(&connection, &incoming, &[9; 12]) {
            Decision::Answer(result) => result,
            Decision::Accept(accepted) => {
                let room = self.maximum.map(|m| m - self.received);
                if room.is_some_and(|room| accepted.amount() > room) {
                    let totals = [(1, self.received)];
                    return Err(accepted.refuse(room.unwrap_or(0), &totals, address, &[9; 12]));
                }
                if lie {
                    // Credits it, and says less arrived than the packet asked for.
                    let keys = StreamKeys::new(&SECRET);
                    let sent = keys.decrypt_packet(prepare.data()).unwrap();
                    let claim = StreamPacket {
                        packet_type: PacketType::Fulfill,
                        sequence: sent.sequence,
                        prepare_amount: sent.prepare_amount - 1,
                        frames: vec![],
                    };
                    let data = keys.encrypt_packet(&[9; 12], &claim).unwrap();
                    self.received += arrived;
                    return Ok(FulfillBuilder {
                        fulfillment: &keys.fulfillment(prepare.data()),
                        data: &data,
                    }
                    .build()
                    .unwrap());
                }
                self.received += accepted.amount();
                let totals = [(1, self.received)];
                Ok(accepted.fulfill(&totals, Some(&SETUP), &[9; 12]))
            }
        }
    }

    fn psk2_receiver(
        &mut self,
        prepare: &Prepare,
        arrived: u64,
        address: &Address,
    ) -> Result<Fulfill, Reject> {
        match psk2::decide(&SECRET, prepare, arrived, address, &[9; 12]) {
            Decision::Answer(result) => result,
            Decision::Accept(accepted) => {
                self.received += accepted.amount();
                self.psk2_data.push(accepted.data().to_vec());
                Ok(accepted.fulfill(&[9; 12]))
            }
        }
    }
}

fn params(protocol: Protocol, target: Target) -> Params {
    Params {
        destination: addr("test.receiver.token"),
        shared_secret: SECRET,
        protocol,
        source: Asset {
            code: "ABC".into(),
            scale: 0,
        },
        destination_asset: None,
        target,
        slippage: Spread::parse_decimal("0.01").unwrap(),
        // One ABC buys two XYZ.
        rates: RateBackend::Static(
            StaticRates::from_decimal_strings([("ABC", "1"), ("XYZ", "2")]).unwrap(),
        ),
        max_packet: None,
        available: 1_000_000_000,
        limits: Limits::default(),
        floor: RateFloor::RateTable,
        max_source: None,
        psk2_data: Vec::new(),
    }
}

/// What a run saw.
struct Run {
    outcome: Outcome,
    quote: Option<Quote>,
    sent: Vec<Outgoing>,
    now: Timestamp,
    /// Sends and answers in order: (id, whether it was the answer).
    log: Vec<(u64, bool)>,
}

/// Drives `sender` against `path` until it is done (or quoted, when `stop_at_quote`),
/// answering the oldest Prepare in flight whenever the sender waits.
fn drive(sender: &mut Sender, path: &mut Path, mut now: Timestamp, stop_at_quote: bool) -> Run {
    let mut n = 0u8;
    let mut entropy = move || {
        n = n.wrapping_add(1);
        Entropy {
            iv: [n; 12],
            condition: [n; 32],
        }
    };
    let mut pending: std::collections::VecDeque<Outgoing> = Default::default();
    let mut sent = Vec::new();
    let mut quote = None;
    let mut log = Vec::new();
    for _ in 0..2_000_000 {
        match sender.poll(now, &mut entropy) {
            Next::Send(out) => {
                log.push((out.id, false));
                sent.push(out.clone());
                pending.push_back(out);
            }
            Next::Quoted(q) => {
                quote = Some(*q);
                if stop_at_quote {
                    return Run {
                        outcome: Outcome {
                            result: Ok(()),
                            progress: sender.progress().clone(),
                            quote: quote.clone(),
                        },
                        quote,
                        sent,
                        now,
                        log,
                    };
                }
            }
            Next::Wait(until) => match pending.pop_front() {
                Some(out) => {
                    now = at(now.unix_millis() + 1);
                    let reply = path.answer(&out);
                    log.push((out.id, true));
                    sender.on_reply(now, out.id, &reply);
                }
                None => now = until.expect("waiting with nothing in flight and no timer"),
            },
            Next::Done(outcome) => {
                return Run {
                    outcome: *outcome,
                    quote,
                    sent,
                    now,
                    log,
                }
            }
        }
    }
    panic!("the sender did not finish");
}

fn fulfillable(run: &Run) -> Vec<&Outgoing> {
    run.sent.iter().filter(|o| o.fulfillable).collect()
}

/// Source and delivered amounts agree with the path's books.
fn books_agree(run: &Run, path: &Path) {
    let sent: u64 = path.fulfilled.iter().map(|(s, _)| s).sum();
    let delivered: u64 = path.fulfilled.iter().map(|(_, d)| d).sum();
    assert_eq!(run.outcome.progress.sent, sent, "sent = what was fulfilled");
    assert_eq!(path.received, delivered);
    assert_eq!(run.outcome.progress.in_flight_source, 0);
    assert_eq!(run.outcome.progress.in_flight_destination, 0);
}

#[test]
fn pays_a_fixed_source_amount_over_two_conversions_within_the_quote() {
    // ABC → (×3, less 0.2 %) → (×0.667, less 0.2 %) → XYZ: about 1.994 XYZ per ABC; the
    // table says 2, so 1 % slippage allows down to 1.98.
    let hops = vec![hop("a", "2.994", Some(100_000)), hop("b", "0.666", None)];
    let mut path = Path::new(Protocol::Stream, hops);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(10_000_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1_000), false);
    assert_eq!(run.outcome.result, Ok(()));
    books_agree(&run, &path);
    let quote = run.quote.clone().unwrap();
    assert_eq!(quote.max_packet, 100_000, "learned from F08 data");
    assert_eq!(
        quote.destination,
        Asset {
            code: "XYZ".into(),
            scale: 0
        }
    );
    assert_eq!(quote.minimum, rate("1.98"));
    let progress = &run.outcome.progress;
    assert_eq!(progress.sent + progress.undelivered_source, 10_000_000);
    assert!(progress.delivered >= quote.min_delivery);
    // Every full-size packet was delivered at a rate inside the quote's bounds.
    for &(s, d) in &path.fulfilled {
        assert!(s <= 100_000);
        if s == quote.max_packet {
            let r = ratio::of(d, s);
            assert_ne!(ratio::cmp(r, quote.low), Ordering::Less);
            assert_eq!(ratio::cmp(r, quote.high), Ordering::Less);
        }
    }
    for out in fulfillable(&run) {
        assert!(out.least >= ratio::ceil_mul(out.prepare.amount(), quote.minimum) - 1);
    }
    // The receipt is the receiver's signature of everything it got.
    let receipt = progress.receipt.as_ref().expect("a receipt");
    let (decoded, _) = Receipt::decode(receipt).unwrap();
    assert_eq!(decoded.total_received, path.received);
}

#[test]
fn a_hop_that_takes_more_than_the_slippage_is_refused_before_any_money_moves() {
    // 1.9 XYZ per ABC where the table says 2 less 1 %.
    let hops = vec![hop("a", "1.9", None)];
    let mut path = Path::new(Protocol::Stream, hops);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(1_000_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    match run.outcome.result {
        Err(PayError::InsufficientExchangeRate { probed, minimum }) => {
            assert_eq!(probed, rate("1.9"));
            assert_eq!(minimum, rate("1.98"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(path.fulfillable_seen, 0, "no fulfillable Prepare was sent");
    assert_eq!(run.outcome.progress.sent, 0);
    assert_eq!(path.received, 0);
}

#[test]
fn pays_a_fixed_delivery_amount() {
    let hops = vec![hop("a", "1.999", Some(1_000))];
    let mut path = Path::new(Protocol::Stream, hops);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Delivery(123_457)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Ok(()));
    books_agree(&run, &path);
    let quote = run.quote.unwrap();
    assert!(run.outcome.progress.delivered >= 123_457);
    assert!(run.outcome.progress.sent <= quote.max_source);
    // Not much more than needed: at most one packet's rounding over.
    assert!(run.outcome.progress.delivered < 123_457 + 2 * 1_000);
}

#[test]
fn a_max_packet_that_shrinks_mid_payment_is_followed() {
    let hops = vec![hop("a", "2", Some(10_000))];
    let mut path = Path::new(Protocol::Stream, hops);
    path.shrink = Some((20, 1_000));
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(1_000_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Ok(()));
    books_agree(&run, &path);
    assert_eq!(run.outcome.progress.sent, 1_000_000);
    assert!(path.fulfilled[25..].iter().all(|(s, _)| *s <= 1_000));
    assert!(run.outcome.progress.rejected.contains_key("F08"));
}

#[test]
fn liquidity_errors_slow_it_down_and_it_still_completes() {
    let hops = vec![hop("a", "2", Some(10_000))];
    let mut path = Path::new(Protocol::Stream, hops);
    path.liquidity_every = Some(3);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(500_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Ok(()));
    books_agree(&run, &path);
    assert_eq!(run.outcome.progress.sent, 500_000);
    assert!(run.outcome.progress.rejected["T04"] > 0);
}

#[test]
fn a_receiver_that_goes_away_stops_the_payment_with_the_code_and_hop() {
    let hops = vec![hop("a", "2", Some(10_000))];
    let mut path = Path::new(Protocol::Stream, hops);
    path.gone_after = Some(10);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(1_000_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    match &run.outcome.result {
        Err(PayError::ConnectorError(reject)) => {
            assert_eq!(reject.code, ErrorCode::F02_UNREACHABLE);
            assert_eq!(reject.triggered_by, Some(addr("test.a")));
        }
        other => panic!("{other:?}"),
    }
    books_agree(&run, &path);
    assert_eq!(run.outcome.progress.sent, 100_000);
}

#[test]
fn a_receiver_that_claims_less_than_asked_stops_the_payment_at_that_packet() {
    let hops = vec![hop("a", "2", Some(10_000))];
    let mut path = Path::new(Protocol::Stream, hops);
    path.lie_after = Some(5);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(1_000_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert!(
        matches!(
            run.outcome.result,
            Err(PayError::ReceiverProtocolViolation(_))
        ),
        "{:?}",
        run.outcome.result
    );
    // Packets already in flight were answered (and lied about) too, but no money was sent
    // after the first lie was read.
    books_agree(&run, &path);
    let first_lie = path.lied[0];
    let read_at = run
        .log
        .iter()
        .position(|&e| e == (first_lie, true))
        .unwrap();
    let paying: Vec<u64> = fulfillable(&run).iter().map(|o| o.id).collect();
    assert!(run.log[read_at..]
        .iter()
        .all(|(id, answer)| *answer || !paying.contains(id)));
    assert!(run.outcome.progress.sent < 1_000_000);
}

#[test]
fn an_expired_quote_is_not_paid() {
    let hops = vec![hop("a", "2", None)];
    let mut path = Path::new(Protocol::Stream, hops);
    let mut sender = Sender::quote(params(Protocol::Stream, Target::Source(1_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), true);
    let quote = run.quote.unwrap();
    let late = at(quote.expires_at.unix_millis() + 1);
    assert_eq!(sender.pay(late), Err(PayError::QuoteExpired));
    let run = drive(&mut sender, &mut path, late, false);
    assert_eq!(run.outcome.result, Err(PayError::QuoteExpired));
    assert_eq!(path.fulfillable_seen, 0);
}

#[test]
fn a_quote_paid_in_time_is_paid() {
    let hops = vec![hop("a", "2", None)];
    let mut path = Path::new(Protocol::Stream, hops);
    let mut sender = Sender::quote(params(Protocol::Stream, Target::Source(1_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), true);
    assert_eq!(path.fulfillable_seen, 0, "a quote sends no money");
    sender.pay(run.now).unwrap();
    let run = drive(&mut sender, &mut path, run.now, false);
    assert_eq!(run.outcome.result, Ok(()));
    assert_eq!(path.received, 2_000);
}

#[test]
fn pays_a_psk2_receiver_with_the_asset_given() {
    let hops = vec![hop("a", "2", Some(5_000))];
    let mut path = Path::new(Protocol::Psk2, hops);
    let mut p = params(Protocol::Psk2, Target::Source(100_000));
    p.destination_asset = Some(Asset {
        code: "XYZ".into(),
        scale: 0,
    });
    let mut sender = Sender::pay_now(p, at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Ok(()));
    books_agree(&run, &path);
    assert_eq!(run.outcome.progress.delivered, 200_000);
    assert_eq!(run.quote.unwrap().max_packet, 5_000);
}

#[test]
fn a_psk2_receiver_without_a_known_asset_cannot_be_quoted() {
    let mut path = Path::new(Protocol::Psk2, vec![hop("a", "2", None)]);
    let mut sender = Sender::pay_now(params(Protocol::Psk2, Target::Source(100)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Err(PayError::UnknownDestinationAsset));
    assert_eq!(path.fulfillable_seen, 0);
}

#[test]
fn a_psk2_receiver_of_unknown_asset_is_paid_at_the_probed_rate_less_the_slippage() {
    // A paid HTTP server's Pay header: a price in units nobody names, a token as PSK2 data.
    let mut path = Path::new(Protocol::Psk2, vec![hop("a", "2", Some(1_000))]);
    let mut p = params(Protocol::Psk2, Target::Delivery(150));
    p.floor = RateFloor::Probed;
    p.max_source = Some(80);
    p.psk2_data = (0u8..16).collect();
    let mut sender = Sender::pay_now(p, at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Ok(()));
    books_agree(&run, &path);
    let quote = run.quote.unwrap();
    assert_eq!(quote.destination, Asset::unknown());
    // The path delivers 2 for 1: at 1 % slippage the payment may cost ceil(150 / 1.98).
    assert_eq!(quote.minimum, rate("1.98"));
    assert_eq!(quote.max_source, 76);
    assert!(run.outcome.progress.delivered >= 150);
    assert!(run.outcome.progress.sent <= 76);
    assert!(!path.psk2_data.is_empty());
    assert!(path
        .psk2_data
        .iter()
        .all(|d| *d == (0u8..16).collect::<Vec<u8>>()));
}

#[test]
fn a_payment_that_may_cost_more_than_its_max_source_sends_nothing_fulfillable() {
    let mut path = Path::new(Protocol::Psk2, vec![hop("a", "2", None)]);
    let mut p = params(Protocol::Psk2, Target::Delivery(150));
    p.floor = RateFloor::Probed;
    p.max_source = Some(75);
    let mut sender = Sender::pay_now(p, at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(
        run.outcome.result,
        Err(PayError::MaxSourceExceeded {
            needed: 76,
            max: 75
        })
    );
    assert_eq!(path.fulfillable_seen, 0);
    assert_eq!(path.received, 0);
}

#[test]
fn a_conflicting_asset_is_refused() {
    let mut path = Path::new(Protocol::Stream, vec![hop("a", "2", None)]);
    let mut p = params(Protocol::Stream, Target::Source(100));
    p.destination_asset = Some(Asset {
        code: "XYZ".into(),
        scale: 2,
    });
    let mut sender = Sender::pay_now(p, at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert!(matches!(
        run.outcome.result,
        Err(PayError::DestinationAssetConflict { .. })
    ));
}

#[test]
fn a_bounded_receiver_takes_what_fits_then_the_payment_stops() {
    let mut path = Path::new(Protocol::Stream, vec![hop("a", "2", Some(1_000))]);
    path.maximum = Some(50_001);
    let mut sender =
        Sender::pay_now(params(Protocol::Stream, Target::Source(100_000)), at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert!(
        matches!(
            run.outcome.result,
            Err(PayError::IncompatibleReceiveMax { .. }) | Err(PayError::ClosedByReceiver { .. })
        ),
        "{:?}",
        run.outcome.result
    );
    books_agree(&run, &path);
    assert!(path.received <= 50_001);
    assert!(
        path.received >= 48_000,
        "it filled the room: {}",
        path.received
    );
}

#[test]
fn temporary_errors_forever_end_in_an_idle_timeout_or_fail_fast() {
    let mut path = Path::new(Protocol::Stream, vec![hop("a", "2", None)]);
    let mut sender = Sender::pay_now(params(Protocol::Stream, Target::Source(100)), at(0)).unwrap();
    // Probing works, then every packet is refused T01.
    let run = drive(&mut sender, &mut path, at(1), true);
    assert!(run.quote.is_some());
    path.always = Some(ErrorCode::T01_PEER_UNREACHABLE);
    let run = drive(&mut sender, &mut path, run.now, false);
    assert!(
        matches!(
            run.outcome.result,
            Err(PayError::IdleTimeout(30_000)) | Err(PayError::FailFast(_))
        ),
        "{:?}",
        run.outcome.result
    );
    assert_eq!(run.outcome.progress.sent, 0);
}

#[test]
fn too_little_money_is_refused_before_sending() {
    let mut p = params(Protocol::Stream, Target::Source(2_000));
    p.available = 1_000;
    assert_eq!(
        Sender::pay_now(p, at(0)).unwrap_err(),
        PayError::InsufficientFunds {
            needed: 2_000,
            available: 1_000
        }
    );
    // Fixed delivery: known once the rate is.
    let mut path = Path::new(Protocol::Stream, vec![hop("a", "2", None)]);
    let mut p = params(Protocol::Stream, Target::Delivery(10_000));
    p.available = 1_000;
    let mut sender = Sender::pay_now(p, at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert!(matches!(
        run.outcome.result,
        Err(PayError::InsufficientFunds { .. })
    ));
    assert_eq!(path.fulfillable_seen, 0);
}

#[test]
fn probes_never_exceed_what_the_account_may_spend() {
    let mut path = Path::new(Protocol::Stream, vec![hop("a", "2", None)]);
    let mut p = params(Protocol::Stream, Target::Source(700));
    p.available = 5_000;
    let mut sender = Sender::pay_now(p, at(0)).unwrap();
    let run = drive(&mut sender, &mut path, at(1), false);
    assert_eq!(run.outcome.result, Ok(()));
    assert!(run.sent.iter().all(|o| o.prepare.amount() <= 700));
    assert_eq!(run.quote.unwrap().max_packet, 700);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any path at or above the minimum rate: a fixed source amount is sent whole (less dust
    /// that could not deliver a unit), every packet keeps the minimum rate but for the one
    /// allowed unit on the last, and the books agree.
    #[test]
    fn fixed_source_payments_complete_and_keep_the_minimum(
        (max_packet, target) in (1u64..200_000).prop_flat_map(|m| (Just(m), 1..m * 300)),
        // Path rates between 1.981 and 2 XYZ per ABC, as two hops (the first up to 1.25).
        first in 1_000u64..1_250,
        second in 1_981u64..2_000,
    ) {
        let hops = vec![
            hop("a", &format!("{first}/1000"), Some(max_packet)),
            hop("b", &format!("{second}/{first}"), None),
        ];
        let mut path = Path::new(Protocol::Stream, hops);
        let mut sender = Sender::pay_now(params(Protocol::Stream, Target::Source(target)), at(0)).unwrap();
        let run = drive(&mut sender, &mut path, at(1), false);
        books_agree(&run, &path);
        let progress = &run.outcome.progress;
        match &run.outcome.result {
            Ok(()) => {
                prop_assert_eq!(progress.sent + progress.undelivered_source, target);
                let quote = run.quote.clone().unwrap();
                prop_assert!(progress.undelivered_source < quote.max_packet.min(1_000));
                prop_assert!(progress.delivered >= quote.min_delivery);
                let shortfalls = fulfillable(&run)
                    .iter()
                    .filter(|o| o.least < ratio::ceil_mul(o.prepare.amount(), quote.minimum))
                    .count();
                prop_assert!(shortfalls <= 1);
            }
            // Packets too small for the rate's rounding: refused before paying.
            Err(PayError::ExchangeRateRoundingError { .. }) => {
                prop_assert_eq!(path.fulfillable_seen, 0);
            }
            // A path whose rate clears the minimum by less than two hops' rounding on the
            // packets it takes: refused, at the quote or at the last packets (every packet
            // fulfilled still kept its minimum, which books_agree and the receiver checked).
            Err(PayError::InsufficientExchangeRate { .. }) => {
                let gap = second as f64 / 1000.0 - 1.98;
                prop_assert!(
                    (target.min(max_packet) as f64) * gap < 8.0,
                    "refused a path with room: gap {gap}"
                );
            }
            Err(e) => prop_assert!(false, "{e:?}"),
        }
        prop_assert!(fulfillable(&run).iter().all(|o| o.prepare.amount() > 0));
    }
}
