//! The sending half of a payment, without I/O: a state machine that takes `now`, randomness
//! and the answers to its Prepares, and says which Prepares to send next.
//!
//! A payment goes through three phases:
//! 1. **Probing**: Prepares that cannot be fulfilled (random conditions) carry a descending
//!    ladder of amounts (10^12 down to 1, capped at what the payer may spend). The receiver
//!    answers each with what arrived (F99 with an encrypted reply), which bounds the path's
//!    rate; F08 data gives the largest packet the path takes; the first packets also ask for
//!    the receiver's asset (`ConnectionNewAddress` → `ConnectionAssetDetails`, STREAM only).
//! 2. **Quoted**: the probed rate at the packet size the payment will use is compared with the
//!    node's own rate table less the caller's slippage; a worse path is refused before any
//!    money can move. The quote names both assets, the rate bounds, the minimum rate, the max
//!    packet amount, the most the payer may be debited and the least the receiver will get.
//! 3. **Paying**: fulfillable Prepares, each asking for at least `ceil(amount × minimum rate)`
//!    at the receiver (so a hop that takes more than the slippage gets the packet refused by
//!    the receiver, not paid), paced by a congestion window; until the source amount is sent
//!    or the delivery amount delivered. Then a `ConnectionClose` (STREAM).
//!
//! Answers: F08 shrinks the packets, T04/T05 and the other temporary codes shrink the window
//! and back off, F99 and R01 are retried, any other code stops the payment and is reported
//! with the hop that sent it. A Fulfill claiming less than its packet's minimum is a receiver
//! error that stops the payment. No Fulfill for `idle_timeout_ms` stops it too. A last
//! packet too small to deliver even one unit is not sent: it is reported as undelivered.

pub mod codec;
pub mod ratio;

use crate::packet::{
    Address, ErrorClass, ErrorCode, Fulfill, MaxPacketAmountDetails, Prepare, PrepareBuilder,
    Reject, Timestamp,
};
use crate::rates::{combined_rate, Rate, RateBackend, Spread};
use crate::stream::credentials::Protocol;
use crate::stream::frame::{ErrorCode as StreamError, Frame};
use crate::stream::receipt::Receipt;
use crate::stream::receiver::MAX_SEQUENCE;
use codec::{Answer, Codec};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// An asset as the sender names it: a code for the rate table and a scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub code: String,
    pub scale: u8,
}

impl Asset {
    /// A receiver's asset that nobody said ([`RateFloor::Probed`]): an empty code, amounts in
    /// its base units.
    pub fn unknown() -> Asset {
        Asset {
            code: String::new(),
            scale: 0,
        }
    }
}

/// What the payment is fixed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Send this much (source units): the receiver gets what the path delivers of it.
    Source(u64),
    /// Deliver at least this much (destination units), sending as little as the rate allows.
    Delivery(u64),
}

/// The sender's knobs (the node's `[sender]` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub packet_expiry_ms: u64,
    pub idle_timeout_ms: u64,
    pub probe_timeout_ms: u64,
    pub quote_ttl_ms: u64,
    pub initial_in_flight: u32,
    pub max_in_flight: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            packet_expiry_ms: 20_000,
            idle_timeout_ms: 30_000,
            probe_timeout_ms: 10_000,
            quote_ttl_ms: 60_000,
            initial_in_flight: 10,
            max_in_flight: 100,
        }
    }
}

/// Everything a payment starts from.
#[derive(Debug, Clone)]
pub struct Params {
    /// The receiver's ILP address and shared secret (from SPSP).
    pub destination: Address,
    pub shared_secret: [u8; 32],
    pub protocol: Protocol,
    /// The paying account's asset.
    pub source: Asset,
    /// The receiver's asset when known beforehand (SPSP's `asset_info`, or the caller's word);
    /// a STREAM receiver's own `ConnectionAssetDetails` must agree with it.
    pub destination_asset: Option<Asset>,
    pub target: Target,
    /// How much worse than the node's rate table the path may be.
    pub slippage: Spread,
    /// The node's rate table.
    pub rates: RateBackend,
    /// The largest packet the caller allows.
    pub max_packet: Option<u64>,
    /// The most the paying account may spend now.
    pub available: u64,
    pub limits: Limits,
    /// Where the least acceptable rate comes from.
    pub floor: RateFloor,
    /// The most the caller lets this payment debit (a paid HTTP client's `--max-price`): a
    /// quote that may need more stops the payment before anything fulfillable is sent.
    pub max_source: Option<u64>,
    /// Application data carried by every PSK2 request (koa-ilp credits the token in its first
    /// 16 bytes). Ignored by STREAM, whose credentials say whom the money is for.
    pub psk2_data: Vec<u8>,
}

/// Where a payment's least acceptable rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateFloor {
    /// The node's rate table between the two assets, less the slippage: the path may not
    /// take more than the slippage beyond what the node itself would charge.
    #[default]
    RateTable,
    /// The probed rate less the slippage, for a receiver whose asset is not known (a PSK2
    /// receiver that does not say it, as a paid HTTP server's `Pay` header does not): nothing
    /// to compare the path with, so the caller's `max_source` is the protection, and every
    /// packet still asks for at least what the probe promised.
    Probed,
}

/// Randomness for one Prepare: the IV that encrypts its data, and a condition for packets that
/// must not be fulfillable.
#[derive(Debug, Clone, Copy)]
pub struct Entropy {
    pub iv: [u8; 12],
    pub condition: [u8; 32],
}

/// What the caller does next.
#[derive(Debug)]
pub enum Next {
    /// Send this Prepare and pass its answer to [`Sender::on_reply`] with its id.
    Send(Outgoing),
    /// Nothing to send until an answer comes, or until this time passes.
    Wait(Option<Timestamp>),
    /// The quote is ready (once): pay it with [`Sender::pay`], or drop the sender.
    Quoted(Box<Quote>),
    /// Finished, with nothing fulfillable in flight.
    Done(Box<Outcome>),
}

/// A Prepare to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: u64,
    pub prepare: Prepare,
    /// Whether its condition is the receiver's (a payment) rather than random (a probe).
    pub fulfillable: bool,
    /// The least it asks to arrive.
    pub least: u64,
}

/// The result of probing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub source: Asset,
    pub destination: Asset,
    pub destination_address: Address,
    /// The path's rate at `max_packet`, in base units: `low <= rate < high`.
    pub low: Rate,
    pub high: Rate,
    /// The least rate any packet may be delivered at: the node's table less the slippage.
    pub minimum: Rate,
    pub max_packet: u64,
    /// The most the payer is debited, and the least the receiver gets.
    pub max_source: u64,
    pub min_delivery: u64,
    pub estimated_packets: u64,
    pub expires_at: Timestamp,
}

/// An ILP Reject as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectInfo {
    pub code: ErrorCode,
    pub message: String,
    pub triggered_by: Option<Address>,
}

impl RejectInfo {
    fn of(reject: &Reject) -> RejectInfo {
        RejectInfo {
            code: reject.code(),
            message: reject.message().to_string(),
            triggered_by: reject.triggered_by(),
        }
    }
}

impl std::fmt::Display for RejectInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(by) = &self.triggered_by {
            write!(f, " from {by}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Why a payment stopped short.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayError {
    #[error("the account may spend {available}, the payment needs up to {needed}")]
    InsufficientFunds { needed: u64, available: u64 },
    #[error("the payment may cost up to {needed}, more than the {max} allowed")]
    MaxSourceExceeded { needed: u64, max: u64 },
    #[error("the receiver did not say its asset and none was given")]
    UnknownDestinationAsset,
    #[error("the receiver's asset {told} differs from {expected}")]
    DestinationAssetConflict { expected: String, told: String },
    #[error("no rate from {0} in the node's rate table")]
    ExternalRateUnavailable(String),
    #[error("the path's rate {probed} is below the minimum {minimum}")]
    InsufficientExchangeRate { probed: Rate, minimum: Rate },
    #[error("packets of at most {max_packet} cannot reach the minimum rate after rounding (need {min_packet})")]
    ExchangeRateRoundingError { max_packet: u64, min_packet: u64 },
    #[error("the rate probe learned nothing{}", last.as_ref().map(|r| format!(" (last answer {r})")).unwrap_or_default())]
    RateProbeFailed { last: Option<RejectInfo> },
    #[error("the receiver can take {room} more, the payment must deliver {needed}")]
    IncompatibleReceiveMax { room: u64, needed: u64 },
    #[error("the receiver closed the connection ({code}{})", if message.is_empty() { String::new() } else { format!(": {message}") })]
    ClosedByReceiver { code: String, message: String },
    #[error("the receiver broke the protocol: {0}")]
    ReceiverProtocolViolation(String),
    #[error("{0}")]
    ConnectorError(RejectInfo),
    #[error("no packet was fulfilled for {0} ms")]
    IdleTimeout(u64),
    #[error("nearly every answer was a failure; last {0}")]
    FailFast(RejectInfo),
    #[error("the connection used up its packet numbers")]
    ExceededMaxSequence,
    #[error("the quote expired")]
    QuoteExpired,
    #[error("cancelled")]
    Cancelled,
    #[error("invalid payment: {0}")]
    Invalid(String),
}

impl PayError {
    /// A stable name for APIs (`InsufficientExchangeRate`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            PayError::InsufficientFunds { .. } => "InsufficientFunds",
            PayError::MaxSourceExceeded { .. } => "MaxSourceExceeded",
            PayError::UnknownDestinationAsset => "UnknownDestinationAsset",
            PayError::DestinationAssetConflict { .. } => "DestinationAssetConflict",
            PayError::ExternalRateUnavailable(_) => "ExternalRateUnavailable",
            PayError::InsufficientExchangeRate { .. } => "InsufficientExchangeRate",
            PayError::ExchangeRateRoundingError { .. } => "ExchangeRateRoundingError",
            PayError::RateProbeFailed { .. } => "RateProbeFailed",
            PayError::IncompatibleReceiveMax { .. } => "IncompatibleReceiveMax",
            PayError::ClosedByReceiver { .. } => "ClosedByReceiver",
            PayError::ReceiverProtocolViolation(_) => "ReceiverProtocolViolation",
            PayError::ConnectorError(_) => "ConnectorError",
            PayError::IdleTimeout(_) => "IdleTimeout",
            PayError::FailFast(_) => "FailFast",
            PayError::ExceededMaxSequence => "ExceededMaxSequence",
            PayError::QuoteExpired => "QuoteExpired",
            PayError::Cancelled => "Cancelled",
            PayError::Invalid(_) => "Invalid",
        }
    }

    /// The ILP Reject behind the error, when there is one.
    pub fn reject(&self) -> Option<&RejectInfo> {
        match self {
            PayError::ConnectorError(r) | PayError::FailFast(r) => Some(r),
            PayError::RateProbeFailed { last } => last.as_ref(),
            _ => None,
        }
    }
}

/// Where a payment stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Source units fulfilled (what the payer was debited).
    pub sent: u64,
    /// Destination units the receiver said arrived in fulfilled packets.
    pub delivered: u64,
    pub in_flight_source: u64,
    /// The least the packets in flight deliver.
    pub in_flight_destination: u64,
    pub fulfilled: u64,
    /// Rejects by code, probes included.
    pub rejected: BTreeMap<String, u64>,
    pub last_reject: Option<RejectInfo>,
    /// The receiver's STREAM receipt with the highest total (RFC 39), as it sent it.
    pub receipt: Option<Vec<u8>>,
    /// A fixed source amount's last units, too few to deliver one unit: not sent.
    pub undelivered_source: u64,
    /// Prepares sent, probes included.
    pub packets: u64,
}

/// How a payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<(), PayError>,
    pub progress: Progress,
    pub quote: Option<Quote>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Probing,
    Quoted,
    Paying,
    /// Stopping: waiting for fulfillable packets in flight, then closing.
    Closing,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    sequence: u64,
    amount: u64,
    least: u64,
    fulfillable: bool,
}

/// The packet size the path takes: an upper bound learned from F08s, and the largest amount
/// an authentic answer has come back for.
#[derive(Debug, Clone, Copy, Default)]
struct MaxPacket {
    ceiling: Option<u64>,
    /// Whether the ceiling came from F08 data (exact), rather than from a bare F08.
    precise: bool,
    verified: u64,
}

impl MaxPacket {
    fn on_f08(&mut self, amount: u64, data: &[u8]) {
        let learned = match MaxPacketAmountDetails::decode(data) {
            // In the rejecting hop's units: scaled back to ours by what reached it.
            Ok(d) if d.amount_received > d.max_amount => {
                self.precise = true;
                let scaled =
                    u128::from(amount) * u128::from(d.max_amount) / u128::from(d.amount_received);
                u64::try_from(scaled).unwrap_or(u64::MAX)
            }
            // Received below the max: the connector is confused; learn only that this
            // amount was too large.
            _ => amount.saturating_sub(1),
        };
        self.ceiling = Some(self.ceiling.map_or(learned, |c| c.min(learned)));
    }

    fn allows(&self, amount: u64) -> bool {
        self.ceiling.is_none_or(|c| amount <= c)
    }
}

/// What the probes and payments have shown of the path's rate.
#[derive(Debug, Clone, Default)]
struct Rates {
    /// Exact answers: what arrived for each amount sent.
    pairs: BTreeMap<u64, u64>,
}

impl Rates {
    fn observe(&mut self, sent: u64, arrived: u64) {
        if sent > 0 {
            self.pairs.insert(sent, arrived);
        }
    }

    /// The bounds at `amount`: from the largest observation at or below it (the rate of
    /// smaller packets is no better, since every hop floors).
    fn bounds_at(&self, amount: u64) -> Option<(u64, Rate, Rate)> {
        let (&sent, &arrived) = self.pairs.range(..=amount).next_back()?;
        let low = ratio::of(arrived, sent);
        let high = ratio::of(arrived.saturating_add(1), sent);
        Some((sent, low, high))
    }

    /// The least that `amount` delivers: the latest answer for that amount, else `low`.
    fn estimate_low(&self, amount: u64, low: Rate) -> u64 {
        match self.pairs.get(&amount) {
            Some(&arrived) => arrived,
            None => ratio::floor_mul(amount, low),
        }
    }
}

/// Additive increase, multiplicative decrease of the packets in flight, with a backoff after
/// temporary errors and an amount window after liquidity errors.
#[derive(Debug, Clone)]
struct Congestion {
    window: f64,
    max: f64,
    slow_start: bool,
    backoff_ms: u64,
    resume_at: Option<Timestamp>,
    /// After a T04: the most source units in flight.
    amount_window: Option<u64>,
}

const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 2_000;

impl Congestion {
    fn new(limits: &Limits) -> Congestion {
        Congestion {
            window: f64::from(limits.initial_in_flight.max(1)),
            max: f64::from(limits.max_in_flight.max(1)),
            slow_start: true,
            backoff_ms: BACKOFF_MIN_MS,
            resume_at: None,
            amount_window: None,
        }
    }

    fn packets(&self) -> usize {
        self.window as usize
    }

    fn on_fulfill(&mut self, max_packet: u64) {
        self.window = if self.slow_start {
            self.window + 1.0
        } else {
            self.window + 1.0 / self.window
        }
        .min(self.max);
        self.backoff_ms = BACKOFF_MIN_MS;
        if let Some(w) = &mut self.amount_window {
            *w = w.saturating_add((max_packet / 10).max(1));
        }
    }

    fn on_congestion(&mut self, now: Timestamp) {
        self.slow_start = false;
        self.window = (self.window / 2.0).max(1.0);
        self.resume_at = now.checked_add_millis(self.backoff_ms);
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
    }

    fn on_liquidity(&mut self, now: Timestamp, in_flight: u64, min_packet: u64) {
        self.on_congestion(now);
        self.amount_window = Some((in_flight / 2).max(min_packet).max(1));
    }

    fn waiting(&mut self, now: Timestamp) -> Option<Timestamp> {
        match self.resume_at {
            Some(t) if t > now => Some(t),
            _ => {
                self.resume_at = None;
                None
            }
        }
    }
}

/// What paying needs of the quote, copied out of it once per packet (the quote's assets and
/// address are not).
#[derive(Debug, Clone, Copy)]
struct Terms {
    max_packet: u64,
    max_source: u64,
    minimum: Rate,
    high: Rate,
}

impl Terms {
    fn of(quote: &Quote) -> Terms {
        Terms {
            max_packet: quote.max_packet,
            max_source: quote.max_source,
            minimum: quote.minimum,
            high: quote.high,
        }
    }
}

/// The amounts the rate probe tries, largest first.
const PROBE_LADDER: [u64; 13] = [
    1_000_000_000_000,
    100_000_000_000,
    10_000_000_000,
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// Answers before fail-fast may judge, and the share of failures it needs.
const FAIL_FAST_MIN_ANSWERS: u64 = 200;

/// One payment.
#[derive(Debug)]
pub struct Sender {
    params: Params,
    codec: Codec,
    phase: Phase,
    started: Timestamp,
    sequence: u64,
    next_id: u64,
    in_flight: HashMap<u64, Flight>,
    /// Probe amounts still to send.
    probes: Vec<u64>,
    probed: Vec<u64>,
    ask_asset: bool,
    told_asset: Option<Asset>,
    rates: Rates,
    max_packet: MaxPacket,
    congestion: Congestion,
    quote: Option<Quote>,
    /// Once quoted: the least packet that keeps the minimum rate after rounding.
    min_packet: u64,
    /// The low end of the path's rate: the quote's, lowered by any refusal that showed less
    /// arriving than a packet asked for.
    low: Rate,
    /// Destination units the receiver can still take, when it said.
    room: Option<u64>,
    last_progress: Timestamp,
    failures: u64,
    answers: u64,
    failure: Option<PayError>,
    closed: bool,
    /// Whether the receiver has answered authentically (then it is told of the close).
    contacted: bool,
    progress: Progress,
    /// A quote to pay as soon as it is made.
    auto_pay: bool,
}

impl Sender {
    /// A payment that stops at its quote ([`Next::Quoted`]) until [`Sender::pay`].
    pub fn quote(params: Params, now: Timestamp) -> Result<Sender, PayError> {
        Sender::new(params, now, false)
    }

    /// A payment that pays its quote at once when it is acceptable.
    pub fn pay_now(params: Params, now: Timestamp) -> Result<Sender, PayError> {
        Sender::new(params, now, true)
    }

    fn new(params: Params, now: Timestamp, auto_pay: bool) -> Result<Sender, PayError> {
        let target = match params.target {
            Target::Source(n) | Target::Delivery(n) => n,
        };
        if target == 0 {
            return Err(PayError::Invalid("the amount must be positive".into()));
        }
        if ratio::cmp(params.slippage.as_rate(), Rate::ONE) != Ordering::Less {
            return Err(PayError::Invalid("the slippage must be below 1".into()));
        }
        if params.max_packet == Some(0) {
            return Err(PayError::Invalid(
                "the max packet amount must be positive".into(),
            ));
        }
        let mut cap = params.available;
        if let Target::Source(n) = params.target {
            if n > params.available {
                return Err(PayError::InsufficientFunds {
                    needed: n,
                    available: params.available,
                });
            }
            cap = cap.min(n);
        }
        if let Some(max) = params.max_packet {
            cap = cap.min(max);
        }
        if cap == 0 {
            return Err(PayError::InsufficientFunds {
                needed: 1,
                available: 0,
            });
        }
        // Largest first, and the cap itself: the packet size the payment can use.
        let mut probes: Vec<u64> = PROBE_LADDER.iter().copied().filter(|&a| a < cap).collect();
        probes.insert(0, cap);
        probes.reverse();
        let codec = Codec::new(
            params.protocol,
            &params.shared_secret,
            params.psk2_data.clone(),
        );
        let congestion = Congestion::new(&params.limits);
        Ok(Sender {
            max_packet: MaxPacket {
                ceiling: params.max_packet,
                precise: false,
                verified: 0,
            },
            codec,
            phase: Phase::Probing,
            started: now,
            sequence: 0,
            next_id: 0,
            in_flight: HashMap::new(),
            probes,
            probed: Vec::new(),
            ask_asset: params.protocol == Protocol::Stream,
            told_asset: None,
            rates: Rates::default(),
            congestion,
            quote: None,
            min_packet: 1,
            low: Rate::ZERO,
            room: None,
            last_progress: now,
            failures: 0,
            answers: 0,
            failure: None,
            closed: false,
            contacted: false,
            progress: Progress::default(),
            auto_pay,
            params,
        })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn quoted(&self) -> Option<&Quote> {
        self.quote.as_ref()
    }

    /// The receiver's asset, once known.
    pub fn destination_asset(&self) -> Option<&Asset> {
        self.told_asset
            .as_ref()
            .or(self.params.destination_asset.as_ref())
    }

    /// Pays the quote [`Next::Quoted`] gave, unless it has expired.
    pub fn pay(&mut self, now: Timestamp) -> Result<(), PayError> {
        match (&self.quote, self.phase) {
            (Some(quote), Phase::Quoted) if now <= quote.expires_at => {
                self.phase = Phase::Paying;
                self.last_progress = now;
                Ok(())
            }
            (Some(_), Phase::Quoted) => {
                self.stop(PayError::QuoteExpired);
                Err(PayError::QuoteExpired)
            }
            _ => Err(PayError::Invalid("there is no quote to pay".into())),
        }
    }

    /// Stops sending; what is in flight still counts.
    pub fn cancel(&mut self) {
        self.stop(PayError::Cancelled);
    }

    fn stop(&mut self, error: PayError) {
        if self.failure.is_none() && self.phase != Phase::Done {
            self.failure = Some(error);
        }
        if matches!(self.phase, Phase::Probing | Phase::Quoted | Phase::Paying) {
            self.phase = Phase::Closing;
        }
    }

    fn fulfillable_in_flight(&self) -> bool {
        self.in_flight.values().any(|f| f.fulfillable)
    }

    /// What to do now. Call it until it says [`Next::Wait`], and again after every answer and
    /// when the time it waits for has come.
    pub fn poll(&mut self, now: Timestamp, entropy: &mut dyn FnMut() -> Entropy) -> Next {
        loop {
            match self.phase {
                Phase::Probing => {
                    if let Some(next) = self.probe(now, entropy) {
                        return next;
                    }
                    // Probing is over: the quote, or a failure (then Closing).
                    if let Some(quote) = self.make_quote(now) {
                        self.phase = Phase::Quoted;
                        if self.auto_pay {
                            self.phase = Phase::Paying;
                            self.last_progress = now;
                        }
                        return Next::Quoted(Box::new(quote));
                    }
                }
                Phase::Quoted => {
                    let expires = self.quote.as_ref().map_or(now, |q| q.expires_at);
                    if now > expires {
                        self.stop(PayError::QuoteExpired);
                        continue;
                    }
                    return Next::Wait(expires.checked_add_millis(1));
                }
                Phase::Paying => {
                    if let Some(next) = self.send_money(now, entropy) {
                        return next;
                    }
                }
                Phase::Closing => {
                    if self.fulfillable_in_flight() {
                        return Next::Wait(None);
                    }
                    self.phase = Phase::Done;
                    if !self.closed && self.contacted && self.codec.protocol() == Protocol::Stream {
                        self.closed = true;
                        if let Some(out) = self.close_packet(now, entropy) {
                            return Next::Send(out);
                        }
                    }
                }
                Phase::Done => {
                    return Next::Done(Box::new(Outcome {
                        result: match &self.failure {
                            Some(e) => Err(e.clone()),
                            None => Ok(()),
                        },
                        progress: self.progress.clone(),
                        quote: self.quote.clone(),
                    }))
                }
            }
        }
    }

    /// The next probe, a wait, or `None` when probing is over.
    fn probe(&mut self, now: Timestamp, entropy: &mut dyn FnMut() -> Entropy) -> Option<Next> {
        let deadline = self
            .started
            .checked_add_millis(self.params.limits.probe_timeout_ms)
            .unwrap_or(now);
        if now >= deadline {
            return None;
        }
        if let Some(at) = self.congestion.waiting(now) {
            return Some(Next::Wait(Some(at.min(deadline))));
        }
        // A bare F08 leaves a gap between what passed and what did not: halve it until the
        // packets are within 1 % of the largest the path takes.
        if self.probes.is_empty() && self.in_flight.is_empty() && !self.max_packet.precise {
            if let Some(ceiling) = self.max_packet.ceiling {
                let verified = self.max_packet.verified;
                if ceiling > verified && ceiling - verified > verified / 100 {
                    let next = verified + (ceiling - verified).div_ceil(2);
                    if !self.probed.contains(&next) {
                        self.probes.push(next);
                    }
                }
            }
        }
        if self.in_flight.len() < self.congestion.packets() {
            while let Some(amount) = self.probes.pop() {
                if self.max_packet.allows(amount) && !self.probed.contains(&amount) {
                    self.probed.push(amount);
                    return Some(self.send_probe(now, amount, entropy));
                }
            }
        }
        if self.in_flight.is_empty() {
            return None;
        }
        Some(Next::Wait(Some(deadline)))
    }

    fn next_sequence(&mut self) -> Option<u64> {
        if self.sequence + 1 >= MAX_SEQUENCE {
            return None;
        }
        self.sequence += 1;
        Some(self.sequence)
    }

    fn send_probe(
        &mut self,
        now: Timestamp,
        amount: u64,
        entropy: &mut dyn FnMut() -> Entropy,
    ) -> Next {
        let Some(sequence) = self.next_sequence() else {
            self.stop(PayError::ExceededMaxSequence);
            return Next::Wait(None);
        };
        let mut frames = Vec::new();
        if self.ask_asset {
            frames.push(Frame::ConnectionNewAddress {
                source_account: String::new(),
            });
            frames.push(Frame::ConnectionMaxStreamId { max_stream_id: 1 });
        }
        let random = entropy();
        self.emit(now, sequence, amount, 0, false, frames, &random)
    }

    /// A Prepare of `amount` asking for `least`, carrying `frames`.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        now: Timestamp,
        sequence: u64,
        amount: u64,
        least: u64,
        fulfillable: bool,
        frames: Vec<Frame>,
        random: &Entropy,
    ) -> Next {
        let built = self
            .codec
            .prepare_data(sequence, least, frames, &random.iv)
            .and_then(|data| {
                let condition = if fulfillable {
                    self.codec.condition(&data)
                } else {
                    random.condition
                };
                let expires_at = now.checked_add_millis(self.params.limits.packet_expiry_ms)?;
                PrepareBuilder {
                    amount,
                    expires_at,
                    execution_condition: &condition,
                    destination: &self.params.destination,
                    data: &data,
                }
                .build()
                .ok()
            });
        let Some(prepare) = built else {
            self.stop(PayError::Invalid("a Prepare could not be built".into()));
            return Next::Wait(None);
        };
        self.next_id += 1;
        let id = self.next_id;
        self.in_flight.insert(
            id,
            Flight {
                sequence,
                amount,
                least,
                fulfillable,
            },
        );
        self.progress.packets += 1;
        if fulfillable {
            self.progress.in_flight_source += amount;
            self.progress.in_flight_destination += least;
        }
        Next::Send(Outgoing {
            id,
            prepare,
            fulfillable,
            least,
        })
    }

    fn close_packet(
        &mut self,
        now: Timestamp,
        entropy: &mut dyn FnMut() -> Entropy,
    ) -> Option<Outgoing> {
        let sequence = self.next_sequence()?;
        let (code, message) = match &self.failure {
            None => (StreamError::NO_ERROR, String::new()),
            Some(e) => (StreamError::APPLICATION_ERROR, e.kind().to_string()),
        };
        let frames = vec![Frame::ConnectionClose { code, message }];
        let random = entropy();
        match self.emit(now, sequence, 0, 0, false, frames, &random) {
            Next::Send(out) => {
                // Fire and forget: its answer is not waited for.
                self.in_flight.remove(&out.id);
                Some(out)
            }
            _ => None,
        }
    }

    /// The quote from what probing learned; `None` after a failure (the phase is Closing).
    fn make_quote(&mut self, now: Timestamp) -> Option<Quote> {
        let quote = self.try_quote(now);
        match quote {
            Ok(quote) => {
                self.low = quote.low;
                self.quote = Some(quote.clone());
                Some(quote)
            }
            Err(e) => {
                self.stop(e);
                None
            }
        }
    }

    fn try_quote(&mut self, now: Timestamp) -> Result<Quote, PayError> {
        let destination = match (&self.params.destination_asset, &self.told_asset) {
            (Some(expected), Some(told)) if expected != told => {
                return Err(PayError::DestinationAssetConflict {
                    expected: format!("{}/{}", expected.code, expected.scale),
                    told: format!("{}/{}", told.code, told.scale),
                })
            }
            (_, Some(asset)) | (Some(asset), None) => asset.clone(),
            (None, None)
                if self.params.floor == RateFloor::Probed && !self.rates.pairs.is_empty() =>
            {
                Asset::unknown()
            }
            (None, None) => {
                if self.rates.pairs.is_empty() {
                    return Err(PayError::RateProbeFailed {
                        last: self.progress.last_reject.clone(),
                    });
                }
                return Err(PayError::UnknownDestinationAsset);
            }
        };
        let source = self.params.source.clone();
        let max_packet = self
            .max_packet
            .ceiling
            .map_or(self.max_packet.verified, |c| {
                c.min(self.max_packet.verified)
            });
        let Some((_, low, high)) = self.rates.bounds_at(max_packet).filter(|_| max_packet > 0)
        else {
            return Err(PayError::RateProbeFailed {
                last: self.progress.last_reject.clone(),
            });
        };
        let minimum = match self.params.floor {
            RateFloor::RateTable => {
                let unavailable = || {
                    PayError::ExternalRateUnavailable(format!(
                        "{} to {}",
                        source.code, destination.code
                    ))
                };
                let table = self
                    .params
                    .rates
                    .rate(&source.code, &destination.code)
                    .map_err(|_| unavailable())?;
                combined_rate(table, self.params.slippage, source.scale, destination.scale)
                    .map_err(|_| unavailable())?
            }
            RateFloor::Probed => low
                .checked_mul(self.params.slippage.keep_factor())
                .map_err(|_| PayError::RateProbeFailed {
                    last: self.progress.last_reject.clone(),
                })?,
        };
        if low.is_zero() || ratio::cmp(low, minimum) != Ordering::Greater {
            return Err(PayError::InsufficientExchangeRate {
                probed: low,
                minimum,
            });
        }
        // The least packet whose rounding cannot take it below the minimum rate:
        // a × (low − minimum) ≥ 1.
        let gap = ratio::to_f64(low) - ratio::to_f64(minimum);
        let min_packet = if gap > 0.0 {
            (1.0 / gap).ceil().min(u64::MAX as f64) as u64
        } else {
            u64::MAX
        };
        self.min_packet = min_packet.max(1);
        if self.min_packet > max_packet {
            return Err(PayError::ExchangeRateRoundingError {
                max_packet,
                min_packet: self.min_packet,
            });
        }
        let (max_source, min_delivery) = match self.params.target {
            Target::Source(n) => (n, ratio::ceil_mul(n, minimum).saturating_sub(1)),
            Target::Delivery(m) => (ratio::ceil_div(m, minimum), m),
        };
        if let Some(max) = self.params.max_source.filter(|&max| max_source > max) {
            return Err(PayError::MaxSourceExceeded {
                needed: max_source,
                max,
            });
        }
        if max_source > self.params.available {
            return Err(PayError::InsufficientFunds {
                needed: max_source,
                available: self.params.available,
            });
        }
        if let Some(room) = self.room {
            let needed = match self.params.target {
                Target::Source(n) => ratio::floor_mul(n, minimum),
                Target::Delivery(m) => m,
            };
            if needed > room {
                return Err(PayError::IncompatibleReceiveMax { room, needed });
            }
        }
        Ok(Quote {
            source,
            destination,
            destination_address: self.params.destination.clone(),
            low,
            high,
            minimum,
            max_packet,
            max_source,
            min_delivery,
            estimated_packets: max_source.div_ceil(max_packet),
            expires_at: now
                .checked_add_millis(self.params.limits.quote_ttl_ms)
                .unwrap_or(now),
        })
    }

    /// The next payment packet, a wait, or `None` when the phase changed.
    fn send_money(&mut self, now: Timestamp, entropy: &mut dyn FnMut() -> Entropy) -> Option<Next> {
        let Some(quote) = self.quote.as_ref().map(Terms::of) else {
            self.stop(PayError::Invalid("paying without a quote".into()));
            return None;
        };
        let idle_at = self
            .last_progress
            .checked_add_millis(self.params.limits.idle_timeout_ms)
            .unwrap_or(now);
        if now >= idle_at {
            self.stop(PayError::IdleTimeout(self.params.limits.idle_timeout_ms));
            return None;
        }
        let in_flight_source = self.progress.in_flight_source;
        let in_flight_least = self.progress.in_flight_destination;
        // What is left to send, in source units.
        let remaining = match self.params.target {
            Target::Source(n) => n
                .saturating_sub(self.progress.sent)
                .saturating_sub(in_flight_source)
                .saturating_sub(self.progress.undelivered_source),
            Target::Delivery(m) => {
                let left = m
                    .saturating_sub(self.progress.delivered)
                    .saturating_sub(in_flight_least);
                let budget = quote
                    .max_source
                    .saturating_sub(self.progress.sent)
                    .saturating_sub(in_flight_source);
                if left == 0 {
                    0
                } else {
                    // Enough that even the low end of the rate delivers what is left, and no
                    // less than the packet that keeps the minimum rate through rounding.
                    ratio::ceil_div(left, self.low)
                        .max(self.min_packet)
                        .min(budget)
                }
            }
        };
        if remaining == 0 {
            if self.in_flight.values().any(|f| f.fulfillable) {
                return Some(Next::Wait(Some(idle_at)));
            }
            let done = match self.params.target {
                Target::Source(_) => true,
                Target::Delivery(m) => self.progress.delivered >= m,
            };
            if done {
                self.phase = Phase::Closing;
            } else {
                self.stop(PayError::InsufficientExchangeRate {
                    probed: ratio::of(self.progress.delivered, self.progress.sent),
                    minimum: quote.minimum,
                });
            }
            return None;
        }
        if let Some(at) = self.congestion.waiting(now) {
            return Some(Next::Wait(Some(at.min(idle_at))));
        }
        let paying = self.in_flight.values().filter(|f| f.fulfillable).count();
        if paying >= self.congestion.packets() {
            return Some(Next::Wait(Some(idle_at)));
        }
        let mut amount = remaining.min(quote.max_packet);
        if let Some(ceiling) = self.max_packet.ceiling {
            amount = amount.min(ceiling);
        }
        if let Some(window) = self.congestion.amount_window {
            let left = window.saturating_sub(in_flight_source);
            if left < amount.min(self.min_packet) {
                return Some(Next::Wait(Some(idle_at)));
            }
            amount = amount.min(left);
        }
        if let Some(room) = self.room {
            // Packets the receiver can take at the high end of the rate.
            let left = room.saturating_sub(in_flight_least);
            let fits = ratio::floor_mul(
                left,
                Rate::new(quote.high.denominator(), quote.high.numerator()).unwrap_or(Rate::ZERO),
            );
            if fits == 0 {
                if self.fulfillable_in_flight() {
                    return Some(Next::Wait(Some(idle_at)));
                }
                let needed = match self.params.target {
                    Target::Source(n) => {
                        ratio::floor_mul(n.saturating_sub(self.progress.sent), quote.minimum)
                    }
                    Target::Delivery(m) => m.saturating_sub(self.progress.delivered),
                };
                self.stop(PayError::IncompatibleReceiveMax { room, needed });
                return None;
            }
            amount = amount.min(fits);
        }
        // Leave no dust: the last two packets share what is left evenly, so that neither is
        // small enough for the hops' rounding to take it below the minimum rate.
        if let Target::Source(_) = self.params.target {
            let after = remaining - amount;
            if after > 0 && after < amount {
                amount = remaining.div_ceil(2).max(remaining.min(self.min_packet));
            }
        }
        let completes = amount == remaining;
        let estimate = self.rates.estimate_low(amount, self.low);
        let mut least = ratio::ceil_mul(amount, quote.minimum);
        if least > estimate {
            if estimate == 0 && completes && matches!(self.params.target, Target::Source(_)) {
                // Not one unit would arrive: keep it.
                self.progress.undelivered_source += amount;
                return None;
            }
            if completes && least - estimate <= 1 {
                // The last packet may round one unit short of the minimum rate.
                least = estimate;
            } else {
                self.stop(PayError::InsufficientExchangeRate {
                    probed: ratio::of(estimate, amount),
                    minimum: quote.minimum,
                });
                return None;
            }
        }
        let Some(sequence) = self.next_sequence() else {
            self.stop(PayError::ExceededMaxSequence);
            return None;
        };
        let frames = match self.codec.protocol() {
            Protocol::Stream => vec![Frame::StreamMoney {
                stream_id: 1,
                shares: 1,
            }],
            Protocol::Psk2 => Vec::new(),
        };
        let random = entropy();
        Some(self.emit(now, sequence, amount, least, true, frames, &random))
    }

    /// The answer to the Prepare `id`. Answers to unknown ids (a close, a repeat) are ignored.
    pub fn on_reply(&mut self, now: Timestamp, id: u64, reply: &Result<Fulfill, Reject>) {
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        if flight.fulfillable {
            self.progress.in_flight_source -= flight.amount;
            self.progress.in_flight_destination -= flight.least;
        }
        self.answers += 1;
        match reply {
            Ok(fulfill) => self.on_fulfill(now, flight, fulfill),
            Err(reject) => self.on_reject(now, flight, reject),
        }
        self.check_fail_fast();
    }

    fn read_frames(&mut self, answer: &Answer) {
        for frame in &answer.frames {
            match frame {
                Frame::ConnectionAssetDetails {
                    source_asset_code,
                    source_asset_scale,
                } => {
                    let told = Asset {
                        code: source_asset_code.clone(),
                        scale: *source_asset_scale,
                    };
                    match &self.told_asset {
                        Some(before) if *before != told => {
                            self.stop(PayError::DestinationAssetConflict {
                                expected: format!("{}/{}", before.code, before.scale),
                                told: format!("{}/{}", told.code, told.scale),
                            });
                        }
                        _ => self.told_asset = Some(told),
                    }
                }
                Frame::StreamMaxMoney {
                    stream_id: 1,
                    receive_max,
                    total_received,
                } if *receive_max != u64::MAX => {
                    self.room = Some(receive_max.saturating_sub(*total_received));
                }
                Frame::ConnectionClose { code, message } => {
                    self.stop(PayError::ClosedByReceiver {
                        code: code.to_string(),
                        message: message.clone(),
                    });
                }
                Frame::StreamClose {
                    stream_id: 1,
                    code,
                    message,
                } if self.phase == Phase::Paying => {
                    self.stop(PayError::ClosedByReceiver {
                        code: code.to_string(),
                        message: message.clone(),
                    });
                }
                Frame::StreamReceipt {
                    stream_id: 1,
                    receipt,
                } => self.keep_receipt(receipt),
                _ => {}
            }
        }
    }

    /// Keeps the receipt with the highest total (an opaque one only when none is readable).
    fn keep_receipt(&mut self, receipt: &[u8]) {
        let total = |bytes: &[u8]| Receipt::decode(bytes).ok().map(|(r, _)| r.total_received);
        let better = match (&self.progress.receipt, total(receipt)) {
            (None, _) => true,
            (Some(kept), Some(new)) => total(kept).is_none_or(|old| new >= old),
            (Some(_), None) => false,
        };
        if better {
            self.progress.receipt = Some(receipt.to_vec());
        }
    }

    fn on_fulfill(&mut self, now: Timestamp, flight: Flight, fulfill: &Fulfill) {
        let answer = self
            .codec
            .read_answer(flight.sequence, true, fulfill.data());
        // The money is gone whatever the data says.
        self.progress.sent += flight.amount;
        self.progress.fulfilled += 1;
        self.last_progress = now;
        let max_packet = self.quote.as_ref().map_or(flight.amount, |q| q.max_packet);
        self.congestion.on_fulfill(max_packet);
        match answer {
            Some(answer) => {
                self.contacted = true;
                self.progress.delivered += answer.arrived;
                self.read_frames(&answer);
                if flight.fulfillable {
                    self.rates.observe(flight.amount, answer.arrived);
                }
                if answer.arrived < flight.least {
                    self.stop(PayError::ReceiverProtocolViolation(format!(
                        "a Fulfill claimed {} arrived, the packet asked for at least {}",
                        answer.arrived, flight.least
                    )));
                }
            }
            None => {
                // No readable claim: the receiver took the packet's terms.
                self.progress.delivered += flight.least;
            }
        }
        if !flight.fulfillable {
            self.stop(PayError::ReceiverProtocolViolation(
                "a packet with a random condition was fulfilled".into(),
            ));
        }
    }

    fn on_reject(&mut self, now: Timestamp, flight: Flight, reject: &Reject) {
        let code = reject.code();
        *self
            .progress
            .rejected
            .entry(code.as_str().to_string())
            .or_default() += 1;
        self.progress.last_reject = Some(RejectInfo::of(reject));
        let answer = self
            .codec
            .read_answer(flight.sequence, false, reject.data());
        if let Some(answer) = &answer {
            self.contacted = true;
            self.ask_asset = false;
            self.read_frames(answer);
            self.rates.observe(flight.amount, answer.arrived);
            if !flight.fulfillable {
                self.max_packet.verified = self.max_packet.verified.max(flight.amount);
            }
        }
        let by_receiver = answer.is_some();
        match code {
            ErrorCode::F08_AMOUNT_TOO_LARGE => {
                self.max_packet.on_f08(flight.amount, reject.data());
                if self.max_packet.ceiling == Some(0) {
                    self.stop(PayError::ConnectorError(RejectInfo::of(reject)));
                } else if self.phase == Phase::Probing {
                    if let Some(c) = self.max_packet.ceiling {
                        if !self.probed.contains(&c) && c > self.max_packet.verified {
                            self.probes.push(c);
                        }
                    }
                }
            }
            _ if by_receiver => {
                // The receiver refused (a probe, too little arrived, no room): the frames said
                // what stops the payment; otherwise slow down and try again.
                if flight.fulfillable {
                    self.congestion.on_congestion(now);
                    if let Some(answer) = answer.as_ref().filter(|a| a.arrived < flight.least) {
                        // The path got worse: later packets are sized and checked at this rate.
                        let shown = ratio::of(answer.arrived, flight.amount);
                        if ratio::cmp(shown, self.low) == Ordering::Less {
                            self.low = shown;
                        }
                    }
                }
                if self.codec.protocol() == Protocol::Psk2
                    && flight.fulfillable
                    && answer.as_ref().is_some_and(|a| a.arrived >= flight.least)
                {
                    // A PSK2 receiver that got enough and still refused: its application said no.
                    self.stop(PayError::ClosedByReceiver {
                        code: code.as_str().to_string(),
                        message: reject.message().to_string(),
                    });
                }
            }
            ErrorCode::F99_APPLICATION_ERROR | ErrorCode::R01_INSUFFICIENT_SOURCE_AMOUNT => {
                self.failures += 1;
                if flight.fulfillable {
                    self.congestion.on_congestion(now);
                }
            }
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY => {
                let in_flight = self.progress.in_flight_source + flight.amount;
                self.congestion
                    .on_liquidity(now, in_flight, self.min_packet);
            }
            _ if code.class() == ErrorClass::Temporary => {
                if matches!(
                    code,
                    ErrorCode::T00_INTERNAL_ERROR | ErrorCode::T01_PEER_UNREACHABLE
                ) {
                    self.failures += 1;
                }
                self.congestion.on_congestion(now);
            }
            _ => self.stop(PayError::ConnectorError(RejectInfo::of(reject))),
        }
    }

    fn check_fail_fast(&mut self) {
        if self.answers >= FAIL_FAST_MIN_ANSWERS
            && self.failures * 100 > self.answers * 99
            && self.failure.is_none()
        {
            if let Some(last) = self.progress.last_reject.clone() {
                self.stop(PayError::FailFast(last));
            }
        }
    }
}

#[cfg(test)]
mod tests;
