//! The node's Prometheus metrics, built on `prometheus-client`: packets by account, direction,
//! outcome and ILP error code; fulfilled amounts; the latency of incoming packets; balances and
//! link state per account. One [`Metrics`] is shared (`Arc`) by every PeerAccount and the admin
//! API, which serves [`Metrics::encode`] at `GET /metrics`.
//!
//! Labels stay low-cardinality on purpose: account ids come from the configuration, and an
//! error code a peer made up (not one of the ILPv4 codes) is counted as `other`. Destination
//! addresses are never labels. Each account's handles are created once ([`Metrics::account`]),
//! so recording a packet touches atomics and, for a Reject, one read-locked map lookup keyed by
//! cheap clones: no allocation per packet.

use crate::link::Link;
use crate::messages::{AccountId, BalanceSnapshot, PacketResult};
use ilp::packet::ErrorCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the incoming latency buckets: 50 µs to 30 s, roughly 1-2.5-5 steps.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

/// Which way a packet crossed an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer sent us the Prepare.
    Incoming,
    /// We sent the Prepare to the peer.
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Fulfilled,
    Rejected,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Outcome::Fulfilled => "fulfilled",
            Outcome::Rejected => "rejected",
        })
    }
}

/// An ILP error code as a label: the code when it is one of ILPv4's, `other` when a peer
/// invented it (so a peer cannot grow the label set), empty for a Fulfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeLabel {
    /// A Fulfill.
    None,
    Known(ErrorCode),
    /// Every code ILPv4 does not define shares this one label value.
    Other,
}

impl CodeLabel {
    fn of(code: ErrorCode) -> Self {
        match code.name() {
            Some(_) => CodeLabel::Known(code),
            None => CodeLabel::Other,
        }
    }
}

impl EncodeLabelValue for CodeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            CodeLabel::None => Ok(()),
            CodeLabel::Known(code) => encoder.write_str(code.as_str()),
            CodeLabel::Other => encoder.write_str("other"),
        }
    }
}

/// An account id as a label value (`Arc<str>` is not one by itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountValue(pub AccountId);

impl EncodeLabelValue for AccountValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PacketLabels {
    pub account: AccountValue,
    pub direction: Direction,
    pub outcome: Outcome,
    pub code: CodeLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabels {
    pub account: AccountValue,
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AccountLabel {
    pub account: AccountValue,
}

type HistogramFamily = Family<AccountLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Node-wide packet counts, for `GET /stats`.
#[derive(Debug, Default)]
struct Totals {
    /// By direction (incoming, outgoing), then outcome (fulfilled, rejected).
    packets: [[AtomicU64; 2]; 2],
}

/// Node-wide packet counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketTotals {
    pub incoming_fulfilled: u64,
    pub incoming_rejected: u64,
    pub outgoing_fulfilled: u64,
    pub outgoing_rejected: u64,
}

/// The node's metrics registry and the families in it.
pub struct Metrics {
    registry: Registry,
    packets: Family<PacketLabels, Counter>,
    amounts: Family<DirectionLabels, Counter>,
    latency: HistogramFamily,
    balance: Family<AccountLabel, Gauge>,
    pending_incoming: Family<AccountLabel, Gauge>,
    pending_outgoing: Family<AccountLabel, Gauge>,
    link_up: Family<AccountLabel, Gauge>,
    busy_refusals: Family<AccountLabel, Counter>,
    settled_out: Family<AccountLabel, Gauge>,
    settled_in: Family<AccountLabel, Gauge>,
    settlement_pending: Family<AccountLabel, Gauge>,
    settlement_error_time: Family<AccountLabel, Gauge>,
    payments_remembered: Gauge,
    payments_memory: Gauge,
    /// The Router's memory of paid Prepares, read into the two gauges above by `encode`.
    payments: Mutex<Option<(crate::payments::Payments, crate::clock::Clock)>>,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Links whose state `encode` reads into `link_up`.
    links: Mutex<Vec<(AccountId, Arc<dyn Link>)>>,
    totals: Arc<Totals>,
    started: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ilp");
        let packets = Family::<PacketLabels, Counter>::default();
        registry.register(
            "packets",
            "ILP Prepares answered, by account, direction, outcome and error code",
            packets.clone(),
        );
        let amounts = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "fulfilled_amount",
            "Sum of fulfilled Prepare amounts in the account's base units",
            amounts.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "incoming_packet_duration_seconds",
            "Time from an incoming Prepare to its Fulfill or Reject",
            latency.clone(),
        );
        let balance = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "account_balance",
            "Committed balance in base units; positive when the peer owes us",
            balance.clone(),
        );
        let pending_incoming = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "account_pending_incoming",
            "Incoming amounts reserved and not yet resolved",
            pending_incoming.clone(),
        );
        let pending_outgoing = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "account_pending_outgoing",
            "Outgoing amounts reserved and not yet resolved",
            pending_outgoing.clone(),
        );
        let link_up = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "link_up",
            "1 when the account's link can send packets, else 0",
            link_up.clone(),
        );
        let busy_refusals = Family::<AccountLabel, Counter>::default();
        registry.register(
            "btp_busy_refusals",
            "BTP/2.0-I requests refused T03 because the account's memory of requests was full of requests in progress",
            busy_refusals.clone(),
        );
        let settled_out = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "settlement_settled_out",
            "Settlements to the peer its RFC 38 engine acknowledged, in the account's base units",
            settled_out.clone(),
        );
        let settled_in = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "settlement_settled_in",
            "Settlements from the peer the RFC 38 engine credited, in the account's base units",
            settled_in.clone(),
        );
        let settlement_pending = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "settlement_pending",
            "Settlements booked (the balance moved) that the RFC 38 engine has not acknowledged",
            settlement_pending.clone(),
        );
        let settlement_error_time = Family::<AccountLabel, Gauge>::default();
        registry.register(
            "settlement_last_error_timestamp_seconds",
            "Unix time of the latest failure to reach the account's RFC 38 engine (0: none)",
            settlement_error_time.clone(),
        );
        let payments_remembered = Gauge::default();
        registry.register(
            "paid_prepares_remembered",
            "Paid Prepares whose Fulfill is kept until they expire, to answer identical copies",
            payments_remembered.clone(),
        );
        let payments_memory = Gauge::default();
        registry.register(
            "paid_prepares_memory_bytes",
            "Approximate heap bytes of the memory of paid Prepares",
            payments_memory.clone(),
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "uptime_seconds",
            "Seconds since the node started",
            uptime.clone(),
        );
        Metrics {
            registry,
            packets,
            amounts,
            latency,
            balance,
            pending_incoming,
            pending_outgoing,
            link_up,
            busy_refusals,
            settled_out,
            settled_in,
            settlement_pending,
            settlement_error_time,
            payments_remembered,
            payments_memory,
            payments: Mutex::new(None),
            uptime,
            links: Mutex::new(Vec::new()),
            totals: Arc::default(),
            started: Instant::now(),
        }
    }

    /// The handles of account `id`, created now so recording never has to.
    pub fn account(&self, id: &AccountId) -> AccountMetrics {
        let fulfilled = |direction| {
            self.packets
                .get_or_create(&PacketLabels {
                    account: AccountValue(id.clone()),
                    direction,
                    outcome: Outcome::Fulfilled,
                    code: CodeLabel::None,
                })
                .clone()
        };
        let amount = |direction| {
            self.amounts
                .get_or_create(&DirectionLabels {
                    account: AccountValue(id.clone()),
                    direction,
                })
                .clone()
        };
        AccountMetrics {
            id: id.clone(),
            fulfilled: [
                fulfilled(Direction::Incoming),
                fulfilled(Direction::Outgoing),
            ],
            amounts: [amount(Direction::Incoming), amount(Direction::Outgoing)],
            latency: self
                .latency
                .get_or_create(&AccountLabel {
                    account: AccountValue(id.clone()),
                })
                .clone(),
            packets: self.packets.clone(),
            totals: self.totals.clone(),
        }
    }

    /// `encode` reports `link`'s state as account `id`'s `ilp_link_up` (replacing the link
    /// watched for `id` before, if any).
    pub fn watch_link(&self, id: &AccountId, link: Arc<dyn Link>) {
        let mut links = match self.links.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        links.retain(|(watched, _)| watched != id);
        links.push((id.clone(), link));
    }

    /// Stops reporting account `id`'s link (the account was removed).
    pub fn forget_link(&self, id: &str) {
        let mut links = match self.links.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        links.retain(|(watched, _)| &**watched != id);
    }

    /// `encode` reports the size of `payments` (the Router's memory of paid Prepares).
    pub fn watch_payments(&self, payments: crate::payments::Payments, clock: crate::clock::Clock) {
        let mut slot = self.payments.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((payments, clock));
    }

    /// Sets account `id`'s balance gauges (the admin API reads the BalanceKeeper per scrape).
    pub fn set_balance(&self, id: &AccountId, snapshot: &BalanceSnapshot) {
        let label = AccountLabel {
            account: AccountValue(id.clone()),
        };
        self.balance.get_or_create(&label).set(snapshot.balance);
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pending_incoming
            .get_or_create(&label)
            .set(clamp(snapshot.pending_incoming));
        self.pending_outgoing
            .get_or_create(&label)
            .set(clamp(snapshot.pending_outgoing));
    }

    /// Sets account `id`'s settlement gauges (the admin API reads the SettlementEngine per
    /// scrape).
    pub fn set_settlement(
        &self,
        id: &AccountId,
        stats: &crate::settlement_engine::SettlementStats,
    ) {
        let label = AccountLabel {
            account: AccountValue(id.clone()),
        };
        let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
        self.settled_out
            .get_or_create(&label)
            .set(clamp(stats.settled_out));
        self.settled_in
            .get_or_create(&label)
            .set(clamp(stats.settled_in));
        self.settlement_pending
            .get_or_create(&label)
            .set(clamp(stats.pending));
        let at = stats.last_error_at_ms.map_or(0, |ms| ms / 1000);
        self.settlement_error_time
            .get_or_create(&label)
            .set(i64::try_from(at).unwrap_or(i64::MAX));
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn totals(&self) -> PacketTotals {
        let get = |d: usize, o: usize| {
            self.totals
                .packets
                .get(d)
                .and_then(|row| row.get(o))
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        PacketTotals {
            incoming_fulfilled: get(0, 0),
            incoming_rejected: get(0, 1),
            outgoing_fulfilled: get(1, 0),
            outgoing_rejected: get(1, 1),
        }
    }

    /// The text exposition of every metric (link states and uptime read now). The format is
    /// OpenMetrics text, which Prometheus' text parser reads; it ends with `# EOF`.
    pub fn encode(&self) -> String {
        {
            let links = match self.links.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (id, link) in links.iter() {
                let label = AccountLabel {
                    account: AccountValue(id.clone()),
                };
                self.link_up
                    .get_or_create(&label)
                    .set(i64::from(link.is_up()));
                let refused = link.busy_refusals();
                if refused > 0 {
                    let counter = self.busy_refusals.get_or_create(&label);
                    counter.inc_by(refused.saturating_sub(counter.get()));
                }
            }
        }
        let payments = self
            .payments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(payments, clock)| payments.stats(clock.now()));
        if let Some(stats) = payments {
            let clamp = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
            self.payments_remembered.set(clamp(stats.paid));
            self.payments_memory.set(clamp(stats.paid_bytes));
        }
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; keep what was written if it ever does.
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

/// One account's handles, held by its PeerAccount.
#[derive(Debug, Clone)]
pub struct AccountMetrics {
    id: AccountId,
    /// By direction: incoming, outgoing.
    fulfilled: [Counter; 2],
    amounts: [Counter; 2],
    latency: Histogram,
    packets: Family<PacketLabels, Counter>,
    totals: Arc<Totals>,
}

impl AccountMetrics {
    /// Counts one answered Prepare of `amount` (the amount on this account's side).
    pub fn record(&self, direction: Direction, amount: u64, result: &PacketResult) {
        let d = match direction {
            Direction::Incoming => 0,
            Direction::Outgoing => 1,
        };
        let (o, outcome) = match result {
            Ok(_) => (0, Outcome::Fulfilled),
            Err(_) => (1, Outcome::Rejected),
        };
        if let Some(c) = self.totals.packets.get(d).and_then(|row| row.get(o)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(_) => {
                if let Some(c) = self.fulfilled.get(d) {
                    c.inc();
                }
                if let Some(c) = self.amounts.get(d) {
                    c.inc_by(amount);
                }
            }
            Err(reject) => {
                self.packets
                    .get_or_create(&PacketLabels {
                        account: AccountValue(self.id.clone()),
                        direction,
                        outcome,
                        code: CodeLabel::of(reject.code()),
                    })
                    .inc();
            }
        }
    }

    /// Records the time an incoming Prepare took to answer.
    pub fn observe_incoming(&self, elapsed: Duration) {
        self.latency.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::UnconnectedLink;
    use ilp::packet::{FulfillBuilder, Reject};

    fn fulfill() -> PacketResult {
        Ok(FulfillBuilder {
            fulfillment: &[0; 32],
            data: b"",
        }
        .build()
        .unwrap())
    }

    fn reject(code: &[u8; 3]) -> PacketResult {
        Err(Reject::new(ErrorCode::new(*code).unwrap(), None, "no"))
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counts_packets_amounts_and_codes() {
        let metrics = Metrics::new();
        let alice = metrics.account(&AccountId::from("alice"));
        alice.record(Direction::Incoming, 10, &fulfill());
        alice.record(Direction::Incoming, 5, &fulfill());
        alice.record(Direction::Incoming, 7, &reject(b"F02"));
        alice.record(Direction::Outgoing, 3, &reject(b"T04"));
        alice.record(Direction::Outgoing, 3, &reject(b"X42"));
        alice.record(Direction::Outgoing, 3, &reject(b"Y01"));
        alice.observe_incoming(Duration::from_micros(70));
        let text = metrics.encode();
        let has = |l: &str| assert!(text.lines().any(|x| x == l), "missing {l} in\n{text}");
        has(
            r#"ilp_packets_total{account="alice",direction="incoming",outcome="fulfilled",code=""} 2"#,
        );
        has(
            r#"ilp_packets_total{account="alice",direction="incoming",outcome="rejected",code="F02"} 1"#,
        );
        has(
            r#"ilp_packets_total{account="alice",direction="outgoing",outcome="rejected",code="T04"} 1"#,
        );
        has(
            r#"ilp_packets_total{account="alice",direction="outgoing",outcome="rejected",code="other"} 2"#,
        );
        has(
            r#"ilp_packets_total{account="alice",direction="outgoing",outcome="fulfilled",code=""} 0"#,
        );
        has(r#"ilp_fulfilled_amount_total{account="alice",direction="incoming"} 15"#);
        has(r#"ilp_incoming_packet_duration_seconds_count{account="alice"} 1"#);
        has(r#"ilp_incoming_packet_duration_seconds_bucket{le="0.00005",account="alice"} 0"#);
        has(r#"ilp_incoming_packet_duration_seconds_bucket{le="0.0001",account="alice"} 1"#);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            metrics.totals(),
            PacketTotals {
                incoming_fulfilled: 2,
                incoming_rejected: 1,
                outgoing_fulfilled: 0,
                outgoing_rejected: 3,
            }
        );
    }

    #[test]
    fn balances_and_links() {
        let metrics = Metrics::new();
        let bob = AccountId::from("bob");
        metrics.watch_link(&bob, Arc::new(UnconnectedLink));
        metrics.set_balance(
            &bob,
            &BalanceSnapshot {
                balance: -42,
                pending_incoming: 5,
                pending_outgoing: u64::MAX,
            },
        );
        let text = metrics.encode();
        assert_eq!(
            line(&text, "ilp_account_balance{"),
            Some(r#"ilp_account_balance{account="bob"} -42"#)
        );
        assert_eq!(
            line(&text, "ilp_account_pending_outgoing{"),
            Some(r#"ilp_account_pending_outgoing{account="bob"} 9223372036854775807"#)
        );
        assert_eq!(
            line(&text, "ilp_link_up{"),
            Some(r#"ilp_link_up{account="bob"} 0"#)
        );
        assert!(line(&text, "ilp_uptime_seconds ").is_some());
    }

    /// A link whose BTP/2.0-I memory refused `0` requests.
    struct Busy(std::sync::atomic::AtomicU64);

    impl Link for Busy {
        fn send_prepare(
            &self,
            _prepare: ilp::packet::Prepare,
        ) -> futures::future::BoxFuture<'static, Result<PacketResult, crate::link::LinkError>>
        {
            Box::pin(async { Err(crate::link::LinkError::Down) })
        }

        fn is_up(&self) -> bool {
            true
        }

        fn busy_refusals(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn busy_refusals_are_counted_per_account() {
        let metrics = Metrics::new();
        let link = Arc::new(Busy(AtomicU64::new(0)));
        metrics.watch_link(&AccountId::from("bob"), link.clone());
        assert_eq!(
            line(&metrics.encode(), "ilp_btp_busy_refusals_total{"),
            None
        );
        link.0.store(3, Ordering::Relaxed);
        assert_eq!(
            line(&metrics.encode(), "ilp_btp_busy_refusals_total{"),
            Some(r#"ilp_btp_busy_refusals_total{account="bob"} 3"#)
        );
        link.0.store(5, Ordering::Relaxed);
        assert_eq!(
            line(&metrics.encode(), "ilp_btp_busy_refusals_total{"),
            Some(r#"ilp_btp_busy_refusals_total{account="bob"} 5"#)
        );
    }

    #[test]
    fn the_memory_of_paid_prepares_is_reported() {
        let metrics = Metrics::new();
        let payments = crate::payments::Payments::new();
        let clock = crate::clock::Clock::starting_at(1_000);
        metrics.watch_payments(payments.clone(), clock);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "ilp_paid_prepares_remembered "),
            Some("ilp_paid_prepares_remembered 0")
        );
        let expires = ilp::packet::Timestamp::from_unix_millis(9_000);
        let Ok(fulfill) = fulfill() else {
            panic!("a Fulfill");
        };
        payments.remember_paid(
            &AccountId::from("bob"),
            &[1; 32],
            expires,
            clock.now(),
            &fulfill,
        );
        let text = metrics.encode();
        assert_eq!(
            line(&text, "ilp_paid_prepares_remembered "),
            Some("ilp_paid_prepares_remembered 1")
        );
        let bytes: u64 = line(&text, "ilp_paid_prepares_memory_bytes ")
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(bytes >= fulfill.as_bytes().len() as u64, "{bytes}");
    }
}
