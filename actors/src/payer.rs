//! Payments the node sends: one [`PaymentActor`] per payment drives the core's sender
//! ([`ilp::sender`]) from a local account, and the [`Payer`] starts them, keeps what they show
//! and answers the admin API.
//!
//! A payment's Prepares enter the node exactly as a child's would: through the local account's
//! PeerAccount (its rate limit, max packet amount and throughput apply), then the Router (routes,
//! rates, expiry) and the BalanceKeeper, which reserves each Prepare against the account's
//! balance and books it durably before the Fulfill reaches the sender. The account pays what it
//! holds: its balance may rise to its `maximum` (0 unless `[balance]` says otherwise), and the
//! payment is sized to that before the first probe.
//!
//! Idempotency: a payment started with an `Idempotency-Key` has the key recorded durably, with
//! a digest of its request, before anything is sent; the same key again returns the same
//! payment (after a restart too), the same key with another request is refused. Records
//! (`pay/...`) keep each payment's last state; one found unfinished at start-up was cut short
//! by a crash or a stop and is marked `interrupted` (never resumed by itself: its Prepares
//! were booked or not, and its sender's state is gone).

use crate::clock::Clock;
use crate::messages::{ask, AccountId, GetBalance, OriginatePrepare, PacketResult, RecordSent};
use crate::spsp_client::{Resolved, SpspClient};
use crate::store::{Store, StoreOp};
use actix::prelude::*;
use ilp::packet::{ErrorCode, Reject, Timestamp};
use ilp::rates::{RateBackend, Spread};
use ilp::sender::{
    Asset, Entropy, Limits, Next, Outcome, Params, PayError, Progress, Quote, RateFloor, Sender,
    Target,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What the Payer knows of a local account.
#[derive(Clone)]
pub struct PayingAccount {
    pub asset: Asset,
    /// The account's PeerAccount: where its payments' Prepares enter the node.
    pub send: Recipient<OriginatePrepare>,
    /// The most its balance may reach.
    pub maximum: i64,
}

/// The `[sender]` settings a payment starts with.
#[derive(Debug, Clone)]
pub struct PayerSettings {
    pub limits: Limits,
    pub default_slippage: Spread,
    pub max_payments: usize,
    pub rates: RateBackend,
}

impl PayerSettings {
    pub fn from_config(config: &ilp::config::Config) -> Self {
        let s = &config.sender;
        PayerSettings {
            limits: Limits {
                packet_expiry_ms: s.packet_expiry_ms,
                idle_timeout_ms: s.idle_timeout_ms,
                probe_timeout_ms: s.probe_timeout_ms,
                quote_ttl_ms: s.quote_ttl_ms,
                initial_in_flight: s.initial_in_flight,
                max_in_flight: s.max_in_flight,
            },
            default_slippage: s.default_slippage,
            max_payments: s.max_payments,
            rates: config
                .exchange()
                .map(|e| e.backend)
                .unwrap_or(RateBackend::OneToOne),
        }
    }
}

/// What a payment asks for (the admin API's request body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// A payment pointer or SPSP URL; or `quote_id`.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub quote_id: Option<String>,
    /// Source units to send (base units, as a decimal string or number).
    #[serde(default, with = "opt_u64_string")]
    pub amount: Option<u64>,
    /// Destination units to deliver.
    #[serde(default, with = "opt_u64_string")]
    pub deliver: Option<u64>,
    #[serde(default)]
    pub slippage: Option<String>,
    #[serde(default, with = "opt_u64_string")]
    pub max_packet: Option<u64>,
    /// `CODE:SCALE`, for receivers that do not say their asset (PSK2 without asset_info).
    #[serde(default)]
    pub destination_asset: Option<String>,
}

/// An optional amount as a decimal string or a JSON number (`with = ...` in a serde field).
pub(crate) mod opt_u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum N {
            S(String),
            U(u64),
        }
        match Option::<N>::deserialize(d)? {
            None => Ok(None),
            Some(N::U(n)) => Ok(Some(n)),
            Some(N::S(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an amount"))),
        }
    }
}

/// Why a payment could not be started (the admin API's 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("no account {0}")]
    NoAccount(String),
    #[error("account {0} is not a local account: only the node's own accounts pay")]
    NotLocal(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the Idempotency-Key was used for another request")]
    KeyReused,
    #[error("{0} payments are running; try again later")]
    TooMany(usize),
    #[error("no quote {0} (quotes are kept until they expire)")]
    NoQuote(String),
    #[error("the SPSP query failed: {0}")]
    Spsp(String),
    #[error("{0}")]
    Payment(PayError),
    #[error("the store failed: {0}")]
    Store(String),
}

/// A payment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Quoting,
    Quoted,
    Paying,
    Completed,
    Failed,
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Quoting => "quoting",
            Status::Quoted => "quoted",
            Status::Paying => "paying",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Interrupted
        )
    }
}

/// What a payment shows: read by the admin API without a round trip to its actor.
#[derive(Debug, Clone)]
pub struct PaymentView {
    pub id: String,
    pub account: String,
    pub to: String,
    pub status: Status,
    pub source: Asset,
    pub destination: Option<Asset>,
    pub destination_address: Option<String>,
    pub quote: Option<Quote>,
    pub progress: Progress,
    pub error: Option<PayError>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// "stream" or "psk2".
    pub protocol: &'static str,
    /// It was a payment, not only a quote: it may have moved money.
    pub paying: bool,
}

/// A payment record left unfinished by a crash, rewritten as interrupted: what it sent is the
/// durable total of its debits, and nothing is in flight any more.
fn interrupted(value: &mut Value, sent: u64, now: Timestamp) {
    value["status"] = json!(Status::Interrupted.as_str());
    let progress = &mut value["progress"];
    let asset_of = |v: &Value| Asset {
        code: v["code"].as_str().unwrap_or_default().to_owned(),
        scale: v["scale"]
            .as_u64()
            .and_then(|s| u8::try_from(s).ok())
            .unwrap_or(0),
    };
    let source = asset_of(&progress["sent"]);
    let destination = asset_of(&progress["in_flight_destination"]);
    progress["sent"] = amount_json(sent, &source);
    progress["in_flight_source"] = amount_json(0, &source);
    progress["in_flight_destination"] = amount_json(0, &destination);
    value["finished_at"] = json!(now.to_rfc3339());
    value["error"] = json!({
        "kind": "Interrupted",
        "message": INTERRUPTED,
    });
}

const INTERRUPTED: &str = "the node stopped while it was paying";

/// The account's event for a payment found interrupted at start-up: `delivered` is the last
/// figure its record kept (the receiver's claims are known to the sender only).
fn interrupted_event(value: &Value, sent: u64, now: Timestamp) -> Option<crate::payment_log::Sent> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let delivered = &value["progress"]["delivered"];
    Some(crate::payment_log::Sent {
        account: AccountId::from(value["account"].as_str()?),
        summary: crate::payment_log::OutgoingPayment {
            id: text(&value["id"])?,
            to: text(&value["to"]).unwrap_or_default(),
            status: Status::Interrupted.as_str().to_owned(),
            delivered: text(&delivered["amount"]).unwrap_or_else(|| "0".into()),
            destination_code: text(&delivered["code"]).filter(|c| !c.is_empty()),
            destination_scale: delivered["scale"]
                .as_u64()
                .and_then(|s| u8::try_from(s).ok())
                .filter(|_| delivered["code"].as_str().is_some_and(|c| !c.is_empty())),
            error: Some(format!("Interrupted: {INTERRUPTED}")),
            error_code: None,
        },
        sent,
        protocol: if value["protocol"] == json!("psk2") {
            "psk2"
        } else {
            "stream"
        },
        receipt: !value["receipt"].is_null(),
        at: now,
    })
}

/// The account's event for a payment that ended.
fn sent_event(view: &PaymentView, now: Timestamp) -> crate::payment_log::Sent {
    let reject = view.error.as_ref().and_then(PayError::reject);
    crate::payment_log::Sent {
        account: AccountId::from(view.account.as_str()),
        summary: crate::payment_log::OutgoingPayment {
            id: view.id.clone(),
            to: view.to.clone(),
            status: view.status.as_str().to_owned(),
            delivered: view.progress.delivered.to_string(),
            destination_code: view.destination.as_ref().map(|a| a.code.clone()),
            destination_scale: view.destination.as_ref().map(|a| a.scale),
            error: view.error.as_ref().map(|e| format!("{}: {e}", e.kind())),
            error_code: reject.map(|r| r.code.as_str().to_owned()),
        },
        sent: view.progress.sent,
        protocol: view.protocol,
        receipt: view.progress.receipt.is_some(),
        at: view.finished_at.unwrap_or(now),
    }
}

/// `{"amount": "1234", "code": "USD", "scale": 2, "value": "12.34"}`.
pub fn amount_json(amount: u64, asset: &Asset) -> Value {
    json!({
        "amount": amount.to_string(),
        "code": asset.code,
        "scale": asset.scale,
        "value": decimal(amount, asset.scale),
    })
}

fn decimal(amount: u64, scale: u8) -> String {
    let digits = amount.to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{int}.{frac}")
}

fn rate_json(rate: ilp::rates::Rate) -> Value {
    json!({
        "exact": format!("{}/{}", rate.numerator(), rate.denominator()),
        "decimal": format!("{:.9}", ilp::sender::ratio::to_f64(rate)),
    })
}

pub fn quote_json(quote: &Quote) -> Value {
    json!({
        "source": {"code": quote.source.code, "scale": quote.source.scale},
        "destination": {
            "address": quote.destination_address.as_str(),
            "code": quote.destination.code,
            "scale": quote.destination.scale,
        },
        "rate": {
            "low": rate_json(quote.low),
            "high": rate_json(quote.high),
            "minimum": rate_json(quote.minimum),
        },
        "max_packet_amount": amount_json(quote.max_packet, &quote.source),
        "max_source_amount": amount_json(quote.max_source, &quote.source),
        "min_delivery_amount": amount_json(quote.min_delivery, &quote.destination),
        "estimated_packets": quote.estimated_packets,
        "expires_at": quote.expires_at.to_rfc3339(),
    })
}

pub fn error_json(error: &PayError) -> Value {
    let mut out = json!({ "kind": error.kind(), "message": error.to_string() });
    if let Some(reject) = error.reject() {
        out["code"] = json!(reject.code.as_str());
        out["triggered_by"] = json!(reject.triggered_by.as_ref().map(|a| a.as_str().to_owned()));
        out["reject_message"] = json!(reject.message);
    }
    out
}

impl PaymentView {
    pub fn to_json(&self) -> Value {
        let p = &self.progress;
        let destination = self.destination.clone().unwrap_or(Asset {
            code: String::new(),
            scale: 0,
        });
        let rate = (p.sent > 0).then(|| {
            let r = ilp::sender::ratio::of(p.delivered, p.sent);
            rate_json(r)
        });
        json!({
            "id": self.id,
            "account": self.account,
            "to": self.to,
            "protocol": self.protocol,
            "status": self.status.as_str(),
            "destination": self.destination.as_ref().map(|d| json!({
                "address": self.destination_address,
                "code": d.code,
                "scale": d.scale,
            })),
            "quote": self.quote.as_ref().map(quote_json),
            "progress": {
                "sent": amount_json(p.sent, &self.source),
                "delivered": amount_json(p.delivered, &destination),
                "in_flight_source": amount_json(p.in_flight_source, &self.source),
                "in_flight_destination": amount_json(p.in_flight_destination, &destination),
                "undelivered_source": amount_json(p.undelivered_source, &self.source),
                "packets": {
                    "sent": p.packets,
                    "fulfilled": p.fulfilled,
                    "rejected": p.rejected,
                },
                "rate": rate,
            },
            "receipt": p.receipt.as_ref().map(|r| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(r)
            }),
            "error": self.error.as_ref().map(error_json),
            "created_at": self.created_at.to_rfc3339(),
            "finished_at": self.finished_at.map(|t| t.to_rfc3339()),
        })
    }
}

type View = Arc<Mutex<PaymentView>>;

fn lock(view: &View) -> std::sync::MutexGuard<'_, PaymentView> {
    view.lock().unwrap_or_else(|e| e.into_inner())
}

/// One payment: drives its [`Sender`] with the node's answers.
pub struct PaymentActor {
    sender: Sender,
    /// The payment's id: its packets carry it, so that what it sent is kept with each debit.
    payment: AccountId,
    send: Recipient<OriginatePrepare>,
    clock: Clock,
    view: View,
    /// The pending wake-up, replaced by each wait.
    timer: Option<SpawnHandle>,
    /// Called once with the final view.
    on_done: Option<Box<dyn FnOnce(PaymentView) + Send>>,
    /// Told once the quote is in (or the payment ended before it).
    on_quoted: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Pays a quoted payment.
#[derive(Message)]
#[rtype(result = "Result<(), PayError>")]
pub struct PayQuote;

/// Stops sending; the packets in flight are still answered and booked.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelPayment;

fn entropy() -> Entropy {
    Entropy {
        iv: rand::random(),
        condition: rand::random(),
    }
}

impl PaymentActor {
    fn drive(&mut self, ctx: &mut Context<Self>) {
        loop {
            let now = self.clock.now();
            match self.sender.poll(now, &mut entropy) {
                Next::Send(out) => {
                    let id = out.id;
                    let send = self.send.clone();
                    let msg = OriginatePrepare {
                        prepare: out.prepare,
                        payment: self.payment.clone(),
                    };
                    let answer = async move {
                        ask(&send, msg).await.unwrap_or_else(|e| {
                            Err(Reject::new(
                                ErrorCode::T00_INTERNAL_ERROR,
                                None,
                                &format!("the paying account is unavailable: {e}"),
                            ))
                        })
                    };
                    ctx.spawn(answer.into_actor(self).map(
                        move |result: PacketResult, act, ctx| {
                            let now = act.clock.now();
                            act.sender.on_reply(now, id, &result);
                            act.show();
                            act.drive(ctx);
                        },
                    ));
                }
                Next::Wait(until) => {
                    if let Some(handle) = self.timer.take() {
                        ctx.cancel_future(handle);
                    }
                    if let Some(at) = until {
                        let delay = Duration::from_millis(now.millis_until(at).max(1));
                        self.timer = Some(ctx.run_later(delay, |act, ctx| {
                            act.timer = None;
                            act.drive(ctx);
                        }));
                    }
                    self.show();
                    return;
                }
                Next::Quoted(quote) => {
                    if let Some(tx) = self.on_quoted.take() {
                        let _ = tx.send(());
                    }
                    let mut view = lock(&self.view);
                    view.destination = Some(quote.destination.clone());
                    view.quote = Some(*quote);
                    view.status = if view.status == Status::Quoting {
                        Status::Quoted
                    } else {
                        Status::Paying
                    };
                }
                Next::Done(outcome) => {
                    self.finish(*outcome);
                    ctx.stop();
                    return;
                }
            }
        }
    }

    /// Copies the sender's progress into the view.
    fn show(&self) {
        let mut view = lock(&self.view);
        view.progress = self.sender.progress().clone();
        if view.destination.is_none() {
            view.destination = self.sender.destination_asset().cloned();
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        let final_view = {
            let mut view = lock(&self.view);
            view.progress = outcome.progress;
            if outcome.quote.is_some() {
                view.quote = outcome.quote;
            }
            view.status = match &outcome.result {
                Ok(()) => Status::Completed,
                Err(_) => Status::Failed,
            };
            view.error = outcome.result.err();
            view.finished_at = Some(self.clock.now());
            view.clone()
        };
        if let Some(done) = self.on_done.take() {
            done(final_view);
        }
        if let Some(tx) = self.on_quoted.take() {
            let _ = tx.send(());
        }
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.drive(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Stopped from outside (the node shutting down) before its outcome.
        if self.on_done.is_some() {
            let view = {
                let mut view = lock(&self.view);
                view.status = Status::Interrupted;
                view.progress = self.sender.progress().clone();
                view.clone()
            };
            if let Some(done) = self.on_done.take() {
                done(view);
            }
        }
    }
}

impl Handler<PayQuote> for PaymentActor {
    type Result = Result<(), PayError>;

    fn handle(&mut self, _: PayQuote, ctx: &mut Self::Context) -> Self::Result {
        let result = self.sender.pay(self.clock.now());
        if result.is_ok() {
            let mut view = lock(&self.view);
            view.status = Status::Paying;
            view.paying = true;
        }
        self.drive(ctx);
        result
    }
}

impl Handler<CancelPayment> for PaymentActor {
    type Result = ();

    fn handle(&mut self, _: CancelPayment, ctx: &mut Self::Context) {
        self.sender.cancel();
        self.drive(ctx);
    }
}

/// A payment just started.
struct Launched {
    view: View,
    /// Told once the quote is in (or the payment ended before it).
    quoted: tokio::sync::oneshot::Receiver<()>,
    /// The final view.
    done: tokio::sync::oneshot::Receiver<PaymentView>,
}

/// A payment to credentials the caller holds ([`Payer::pay_direct`]).
#[derive(Debug, Clone)]
pub struct DirectPayment {
    /// What the payment's record names as its receiver (the paid URL).
    pub to: String,
    pub destination: ilp::packet::Address,
    pub shared_secret: [u8; 32],
    pub protocol: ilp::stream::credentials::Protocol,
    /// Destination units to deliver at least.
    pub deliver: u64,
    /// Source units to be debited at most.
    pub max_source: u64,
    /// Application data of each PSK2 request.
    pub psk2_data: Vec<u8>,
}

/// A payment started by [`Payer::start_direct`].
pub struct DirectRunning {
    view: View,
    done: tokio::sync::oneshot::Receiver<PaymentView>,
}

/// What a [`DirectRunning`] payment shows, while it runs and after.
#[derive(Clone)]
pub struct DirectView(View);

impl DirectView {
    pub fn now(&self) -> PaymentView {
        lock(&self.0).clone()
    }
}

impl DirectRunning {
    /// A handle on what it shows, kept after [`DirectRunning::finished`] takes it.
    pub fn view(&self) -> DirectView {
        DirectView(self.view.clone())
    }

    /// Its final view, once it has ended.
    pub async fn finished(self) -> PaymentView {
        match self.done.await {
            Ok(view) => view,
            // The actor went without a word: the node is stopping.
            Err(_) => lock(&self.view).clone(),
        }
    }
}

/// A running or remembered payment.
struct Entry {
    view: View,
    actor: Option<Addr<PaymentActor>>,
}

struct Inner {
    clock: Clock,
    store: Arc<dyn Store>,
    spsp: SpspClient,
    get_balance: Recipient<GetBalance>,
    /// Where a finished payment's event goes (the BalanceKeeper).
    record: Recipient<RecordSent>,
    arbiter: actix::ArbiterHandle,
    settings: RwLock<PayerSettings>,
    accounts: RwLock<BTreeMap<AccountId, PayingAccount>>,
    payments: Mutex<HashMap<String, Entry>>,
    /// Idempotency keys being started, so that two requests with one key start one payment.
    starting: tokio::sync::Mutex<()>,
    /// True once the records the last run left unfinished are marked interrupted: a payment
    /// starts only after that, so that the scan never takes a new payment for an old one.
    scanned: tokio::sync::watch::Receiver<bool>,
}

/// Starts and tracks the node's outgoing payments.
#[derive(Clone)]
pub struct Payer {
    inner: Arc<Inner>,
}

/// Store keys.
const PAYMENT_PREFIX: &[u8] = b"pay/p/";
const KEY_PREFIX: &[u8] = b"pay/k/";

fn payment_key(id: &str) -> Vec<u8> {
    [PAYMENT_PREFIX, id.as_bytes()].concat()
}

fn idempotency_key(account: &str, key: &str) -> Vec<u8> {
    [KEY_PREFIX, account.as_bytes(), b"\0", key.as_bytes()].concat()
}

fn new_id(prefix: char) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Parses `CODE:SCALE`.
fn parse_asset(s: &str) -> Result<Asset, StartError> {
    let bad = || StartError::BadRequest(format!("destination_asset {s:?}: expected CODE:SCALE"));
    let (code, scale) = s.split_once(':').ok_or_else(bad)?;
    let scale = scale.parse::<u8>().map_err(|_| bad())?;
    if code.is_empty() {
        return Err(bad());
    }
    Ok(Asset {
        code: code.to_string(),
        scale,
    })
}

impl Payer {
    /// A payer for the node whose BalanceKeeper answers `get_balance` and records each
    /// payment that ends in its account's event log (`record`); payment actors run on the
    /// current arbiter (call it from the node's actor thread).
    pub fn new(
        clock: Clock,
        store: Arc<dyn Store>,
        spsp: SpspClient,
        get_balance: Recipient<GetBalance>,
        record: Recipient<RecordSent>,
        settings: PayerSettings,
        accounts: BTreeMap<AccountId, PayingAccount>,
    ) -> Payer {
        let (scan_done, scanned) = tokio::sync::watch::channel(false);
        let payer = Payer {
            inner: Arc::new(Inner {
                clock,
                store,
                spsp,
                get_balance,
                record,
                arbiter: actix::Arbiter::current(),
                settings: RwLock::new(settings),
                accounts: RwLock::new(accounts),
                payments: Mutex::new(HashMap::new()),
                starting: tokio::sync::Mutex::new(()),
                scanned,
            }),
        };
        payer.mark_interrupted(scan_done);
        payer
    }

    /// New settings and accounts after a reload: for payments started from now on.
    pub fn reconfigure(
        &self,
        settings: PayerSettings,
        accounts: BTreeMap<AccountId, PayingAccount>,
    ) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = settings;
        *self
            .inner
            .accounts
            .write()
            .unwrap_or_else(|e| e.into_inner()) = accounts;
    }

    /// Records left unfinished by the last run become `interrupted`, with what each sent as
    /// kept with its debits (`pay/t/<id>`); one that sent money, or was paying, joins its
    /// account's event log as a payment that ended.
    fn mark_interrupted(&self, done: tokio::sync::watch::Sender<bool>) {
        // The scan runs off the actor thread, like every other store read at start-up; a
        // lookup before it lands still reads the old status of a payment that cannot be running.
        let store = self.inner.store.clone();
        let record = self.inner.record.clone();
        let now = self.inner.clock.now();
        actix::spawn(async move {
            let scan = crate::store::read_off_thread(store.clone(), move |s| {
                let end = [PAYMENT_PREFIX, &[0xff]].concat();
                let mut unfinished = Vec::new();
                for (key, value) in s.scan_records(PAYMENT_PREFIX, &end)? {
                    let Ok(value) = serde_json::from_slice::<Value>(&value) else {
                        continue;
                    };
                    let status = value["status"].as_str().unwrap_or_default();
                    if !matches!(status, "quoting" | "quoted" | "paying") {
                        continue;
                    }
                    let id = value["id"].as_str().unwrap_or_default().to_owned();
                    let key_sent = crate::payment_log::sent_key(&id);
                    let sent = crate::payment_log::stored_u64(s, &key_sent)?;
                    unfinished.push((key, value, sent));
                }
                Ok(unfinished)
            });
            let Ok(unfinished) = scan.await else {
                let _ = done.send(true);
                return;
            };
            let mut ops = Vec::new();
            for (key, mut value, sent) in unfinished {
                let was_paying = value["status"] == json!("paying") || sent > 0;
                interrupted(&mut value, sent, now);
                if was_paying {
                    if let Some(event) = interrupted_event(&value, sent, now) {
                        record.do_send(RecordSent(event));
                    }
                }
                if let Ok(bytes) = serde_json::to_vec(&value) {
                    ops.push(StoreOp::PutRecord { key, value: bytes });
                }
            }
            if !ops.is_empty() {
                let _ = store.commit(ops).await;
            }
            let _ = done.send(true);
        });
    }

    /// Payments running now.
    pub fn running(&self) -> usize {
        let payments = self
            .inner
            .payments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        payments.values().filter(|e| e.actor.is_some()).count()
    }

    /// A payment's view as JSON: a running or recent one from memory, else its record.
    pub async fn get(&self, account: &str, id: &str) -> Option<Value> {
        {
            let payments = self
                .inner
                .payments
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = payments.get(id) {
                let view = lock(&entry.view);
                return (view.account == account).then(|| view.to_json());
            }
        }
        let key = payment_key(id);
        let record =
            crate::store::read_off_thread(self.inner.store.clone(), move |s| s.get_record(&key))
                .await
                .ok()
                .flatten()?;
        let value: Value = serde_json::from_slice(&record).ok()?;
        (value["account"] == json!(account)).then_some(value)
    }

    /// Cancels a running payment; `false` when there is none by that id.
    pub fn cancel(&self, account: &str, id: &str) -> bool {
        let payments = self
            .inner
            .payments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match payments.get(id) {
            Some(entry) if lock(&entry.view).account == account => match &entry.actor {
                Some(actor) => {
                    actor.do_send(CancelPayment);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Starts a payment (or only its quote, when `quote_only`) from `account`. With `key`, the
    /// same key and request return the payment started first.
    pub async fn start(
        &self,
        account: &str,
        request: PaymentRequest,
        key: Option<&str>,
        quote_only: bool,
    ) -> Result<Value, StartError> {
        // Not before the last run's unfinished payments are marked (a dropped sender: the
        // scan task is gone, and nothing will mark them).
        let _ = self.inner.scanned.clone().wait_for(|done| *done).await;
        let paying = self.paying_account(account)?;
        let _guard = match key {
            Some(_) => Some(self.inner.starting.lock().await),
            None => None,
        };
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&request).unwrap_or_default(),
        ));
        if let Some(key) = key {
            let k = idempotency_key(account, key);
            let existing =
                crate::store::read_off_thread(self.inner.store.clone(), move |s| s.get_record(&k))
                    .await
                    .map_err(|e| StartError::Store(e.to_string()))?;
            if let Some(existing) = existing {
                let value: Value = serde_json::from_slice(&existing).unwrap_or_default();
                if value["request"] != json!(digest) {
                    return Err(StartError::KeyReused);
                }
                let id = value["payment"].as_str().unwrap_or_default().to_string();
                return self
                    .get(account, &id)
                    .await
                    .ok_or_else(|| StartError::Store(format!("payment {id} has no record")));
            }
        }
        if let Some(quote_id) = &request.quote_id {
            return self.pay_quote(account, quote_id).await;
        }
        let settings = self.settings_for_new_payment()?;
        let target = match (request.amount, request.deliver) {
            (Some(n), None) => Target::Source(n),
            (None, Some(n)) => Target::Delivery(n),
            _ => {
                return Err(StartError::BadRequest(
                    "give either amount (source units) or deliver (destination units)".into(),
                ))
            }
        };
        let to = request
            .to
            .clone()
            .ok_or_else(|| StartError::BadRequest("to: a payment pointer or SPSP URL".into()))?;
        let slippage = match &request.slippage {
            Some(s) => Spread::parse_decimal(s)
                .map_err(|e| StartError::BadRequest(format!("slippage {s:?}: {e}")))?,
            None => settings.default_slippage,
        };
        let hint = request
            .destination_asset
            .as_deref()
            .map(parse_asset)
            .transpose()?;
        let resolved: Resolved = self
            .inner
            .spsp
            .resolve(&to, None)
            .await
            .map_err(|e| StartError::Spsp(e.to_string()))?;
        let hint = hint.or_else(|| {
            resolved
                .asset
                .clone()
                .map(|(code, scale)| Asset { code, scale })
        });
        let available = self.available(account, &paying).await;
        let params = Params {
            destination: resolved.destination.clone(),
            shared_secret: resolved.shared_secret,
            protocol: resolved.protocol,
            source: paying.asset.clone(),
            destination_asset: hint,
            target,
            slippage,
            rates: settings.rates.clone(),
            max_packet: request.max_packet,
            available,
            limits: settings.limits,
            floor: RateFloor::RateTable,
            max_source: None,
            psk2_data: Vec::new(),
        };
        let key = key.map(|key| (key, digest));
        let launched = self
            .launch(account, paying, to, params, quote_only, key)
            .await?;
        if quote_only {
            // A quote answers once probing is over.
            let _ = launched.quoted.await;
        }
        let out = lock(&launched.view).to_json();
        Ok(out)
    }

    /// What `account` may still spend: up to its maximum, less its balance and what is
    /// reserved.
    async fn available(&self, account: &str, paying: &PayingAccount) -> u64 {
        let snapshot = self
            .inner
            .get_balance
            .send(GetBalance {
                account: AccountId::from(account),
            })
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let headroom = i128::from(paying.maximum)
            - i128::from(snapshot.balance)
            - i128::from(snapshot.pending_incoming);
        u64::try_from(headroom.max(0)).unwrap_or(u64::MAX)
    }

    /// Makes a payment's record (and its idempotency key's) durable, then starts its actor.
    async fn launch(
        &self,
        account: &str,
        paying: PayingAccount,
        to: String,
        params: Params,
        quote_only: bool,
        key: Option<(&str, String)>,
    ) -> Result<Launched, StartError> {
        let now = self.inner.clock.now();
        let destination_address = params.destination.as_str().to_string();
        let protocol = match params.protocol {
            ilp::stream::credentials::Protocol::Stream => "stream",
            ilp::stream::credentials::Protocol::Psk2 => "psk2",
        };
        let sender = if quote_only {
            Sender::quote(params, now)
        } else {
            Sender::pay_now(params, now)
        }
        .map_err(StartError::Payment)?;
        let id = new_id(if quote_only { 'q' } else { 'p' });
        let view = PaymentView {
            id: id.clone(),
            account: account.to_string(),
            to,
            status: if quote_only {
                Status::Quoting
            } else {
                Status::Paying
            },
            source: paying.asset.clone(),
            destination: None,
            destination_address: Some(destination_address),
            quote: None,
            progress: Progress::default(),
            error: None,
            created_at: now,
            finished_at: None,
            protocol,
            paying: !quote_only,
        };
        // The key and the payment's first record are durable before anything is sent.
        let mut ops = vec![StoreOp::PutRecord {
            key: payment_key(&id),
            value: serde_json::to_vec(&view.to_json()).unwrap_or_default(),
        }];
        if let Some((key, digest)) = key {
            ops.push(StoreOp::PutRecord {
                key: idempotency_key(account, key),
                value: serde_json::to_vec(&json!({"payment": id, "request": digest}))
                    .unwrap_or_default(),
            });
        }
        self.inner
            .store
            .commit(ops)
            .await
            .map_err(|e| StartError::Store(e.to_string()))?;
        let view = Arc::new(Mutex::new(view));
        let (quoted_tx, quoted) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel::<PaymentView>();
        self.spawn(
            id.clone(),
            view.clone(),
            sender,
            paying.send,
            quoted_tx,
            done_tx,
        );
        Ok(Launched { view, quoted, done })
    }

    /// [`Payer::start_direct`], answered when the payment has ended.
    pub async fn pay_direct(
        &self,
        account: &str,
        payment: DirectPayment,
    ) -> Result<PaymentView, StartError> {
        Ok(self.start_direct(account, payment).await?.finished().await)
    }

    /// Starts paying credentials the caller already holds (a paid HTTP server's `Pay` header)
    /// from the local `account`: the payment delivers at least `payment.deliver` and is debited
    /// at most `payment.max_source`, or sends nothing fulfillable. Recorded and logged like any
    /// other payment; it runs to its end whether or not the caller waits for it.
    pub async fn start_direct(
        &self,
        account: &str,
        payment: DirectPayment,
    ) -> Result<DirectRunning, StartError> {
        let _ = self.inner.scanned.clone().wait_for(|done| *done).await;
        let paying = self.paying_account(account)?;
        let settings = self.settings_for_new_payment()?;
        if settings.default_slippage.as_rate().is_zero() {
            // The probed rate is the floor: without a slippage no packet could be sent.
            return Err(StartError::BadRequest(
                "[sender] default_slippage is 0: paying a receiver of unknown asset needs room \
                 below the probed rate"
                    .into(),
            ));
        }
        let available = self.available(account, &paying).await;
        let params = Params {
            destination: payment.destination,
            shared_secret: payment.shared_secret,
            protocol: payment.protocol,
            source: paying.asset.clone(),
            destination_asset: None,
            target: Target::Delivery(payment.deliver),
            slippage: settings.default_slippage,
            rates: settings.rates.clone(),
            max_packet: None,
            available,
            limits: settings.limits,
            floor: RateFloor::Probed,
            max_source: Some(payment.max_source),
            psk2_data: payment.psk2_data,
        };
        let launched = self
            .launch(account, paying, payment.to, params, false, None)
            .await?;
        Ok(DirectRunning {
            view: launched.view,
            done: launched.done,
        })
    }

    /// The settings a payment starts with, unless as many payments as allowed are running.
    fn settings_for_new_payment(&self) -> Result<PayerSettings, StartError> {
        let settings = self
            .inner
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if self.running() >= settings.max_payments {
            return Err(StartError::TooMany(settings.max_payments));
        }
        Ok(settings)
    }

    fn paying_account(&self, account: &str) -> Result<PayingAccount, StartError> {
        let accounts = self
            .inner
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner());
        accounts
            .get(account)
            .cloned()
            .ok_or_else(|| StartError::NoAccount(account.to_string()))
    }

    fn spawn(
        &self,
        id: String,
        view: View,
        sender: Sender,
        send: Recipient<OriginatePrepare>,
        on_quoted: tokio::sync::oneshot::Sender<()>,
        on_end: tokio::sync::oneshot::Sender<PaymentView>,
    ) {
        let payer = self.clone();
        let done_id = id.clone();
        let clock = self.inner.clock;
        let actor_view = view.clone();
        let on_done: Box<dyn FnOnce(PaymentView) + Send> = Box::new(move |final_view| {
            payer.finished(&done_id, final_view.clone());
            let _ = on_end.send(final_view);
        });
        let payment = AccountId::from(id.as_str());
        let addr = PaymentActor::start_in_arbiter(&self.inner.arbiter, move |_| PaymentActor {
            sender,
            payment,
            send,
            clock,
            view: actor_view,
            timer: None,
            on_done: Some(on_done),
            on_quoted: Some(on_quoted),
        });
        let mut payments = self
            .inner
            .payments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        payments.insert(
            id,
            Entry {
                view,
                actor: Some(addr),
            },
        );
    }

    /// A payment ended: its record is rewritten, its view kept for lookups, and a payment (not
    /// a quote never paid) joins its account's event log.
    fn finished(&self, id: &str, view: PaymentView) {
        let value = view.to_json();
        if view.paying {
            let event = sent_event(&view, self.inner.clock.now());
            self.inner.record.do_send(RecordSent(event));
        }
        {
            let mut payments = self
                .inner
                .payments
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = payments.get_mut(id) {
                entry.actor = None;
            }
            // Finished payments stay in memory for a while; older ones are read from the store.
            let finished: Vec<(String, Timestamp)> = payments
                .iter()
                .filter_map(|(id, e)| lock(&e.view).finished_at.map(|t| (id.clone(), t)))
                .collect();
            if finished.len() > 1_000 {
                let mut finished = finished;
                finished.sort_by_key(|(_, t)| *t);
                for (id, _) in finished.iter().take(finished.len() - 1_000) {
                    payments.remove(id);
                }
            }
        }
        let commit = self.inner.store.commit(vec![StoreOp::PutRecord {
            key: payment_key(id),
            value: serde_json::to_vec(&value).unwrap_or_default(),
        }]);
        actix::spawn(async move {
            let _ = commit.await;
        });
    }

    /// Pays a quote made by [`Payer::start`] with `quote_only`.
    async fn pay_quote(&self, account: &str, quote_id: &str) -> Result<Value, StartError> {
        let (actor, view) = {
            let payments = self
                .inner
                .payments
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match payments.get(quote_id) {
                Some(entry) if lock(&entry.view).account == account => {
                    (entry.actor.clone(), entry.view.clone())
                }
                _ => return Err(StartError::NoQuote(quote_id.to_string())),
            }
        };
        let Some(actor) = actor else {
            return Err(StartError::NoQuote(quote_id.to_string()));
        };
        match actor.send(PayQuote).await {
            Ok(Ok(())) => Ok(lock(&view).to_json()),
            Ok(Err(e)) => Err(StartError::Payment(e)),
            Err(_) => Err(StartError::NoQuote(quote_id.to_string())),
        }
    }
}

/// The local accounts of `config` that can pay, with their PeerAccounts from `peers`.
pub fn paying_accounts(
    config: &ilp::config::Config,
    peers: &BTreeMap<AccountId, Addr<crate::peer_account::PeerAccount>>,
) -> BTreeMap<AccountId, PayingAccount> {
    config
        .accounts
        .iter()
        .filter(|(_, a)| a.is_local())
        .filter_map(|(id, a)| {
            let peer = peers.get(id.as_str())?;
            Some((
                AccountId::from(id.as_str()),
                PayingAccount {
                    asset: Asset {
                        code: a.asset_code.clone(),
                        scale: a.asset_scale,
                    },
                    send: peer.clone().recipient(),
                    maximum: a.balance_limits().maximum.unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// The SPSP client of `config`'s `[sender]`: the system's roots for https.
pub fn spsp_client(config: &ilp::config::Config) -> Result<SpspClient, crate::tls::TlsError> {
    let tls = crate::tls::client_config(&ilp::config::ClientTlsConfig::default(), "sender")?;
    Ok(SpspClient::new(crate::spsp_client::SpspClientOptions {
        timeout: Duration::from_millis(config.sender.spsp_timeout_ms),
        allow_http: config.sender.allow_http,
        tls,
    }))
}
