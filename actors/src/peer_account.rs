//! PeerAccount: the actor of one account, between its link and the Router. It owns the
//! account's per-packet policy state (rate limit, incoming and outgoing throughput buckets).
//!
//! Incoming ([`IncomingPrepare`], from the link): rate limit (T05) → max packet amount (F08
//! with received/maximum data) → incoming throughput (T04) → [`ForwardPrepare`] to the Router,
//! whose answer goes back to the link. The order is the JS connector's middleware order.
//!
//! Outgoing ([`SendPrepare`], from the Router, which already joined identical Prepares in
//! flight, [`crate::payments`]): outgoing throughput (T04) → expired already (R00, not sent) → link down (T01, not sent) → send, racing a timer at the Prepare's expiry (R00; a
//! late answer is dropped) → a Fulfill is relayed only if it matches the condition (F05).
//! The codes are decided in [`ilp::policy::outgoing`].
//!
//! Handlers decide at once and answer with a [`Reply`]: the rest of the exchange (the Router's
//! answer, the link's) runs in the sender's task, so a packet in flight neither blocks the
//! account nor dies with it when it crashes and restarts.

use crate::clock::Clock;
use crate::link::{Link, LinkError};
use crate::messages::{
    ask, AccountId, ForwardPrepare, IncomingPrepare, OriginatePrepare, PacketResult, Reply,
    SendPrepare, SetNodeAddress,
};
use crate::metrics::{AccountMetrics, Direction};
use crate::supervise::Backoff;
use actix::{Actor, AsyncContext, Context, Handler, Recipient, Supervised};
use ilp::config::AccountConfig;
use ilp::packet::{
    Address, ErrorCode, MaxPacketAmountDetails, Prepare, Reject, RejectBuilder, Timestamp,
};
use ilp::policy::outgoing::{check_fulfillment, check_not_expired};
use ilp::policy::{
    check_max_packet_amount, OutgoingError, RateLimiter, ThroughputLimiter, TokenBucketParams,
};
use std::sync::{Arc, RwLock};

/// The node's ILP address, shared by every account (and whoever learns it, e.g. IL-DCP), so
/// Rejects name the node as `triggered_by` once it is known. `None` until then: Rejects are
/// sent with an empty `triggered_by`.
#[derive(Debug, Clone, Default)]
pub struct NodeAddress(Arc<RwLock<Option<Address>>>);

impl NodeAddress {
    pub fn new(address: Option<Address>) -> Self {
        NodeAddress(Arc::new(RwLock::new(address)))
    }

    pub fn get(&self) -> Option<Address> {
        // A writer cannot leave the value half-written, so a poisoned lock is still usable.
        match self.0.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, address: Address) {
        match self.0.write() {
            Ok(mut a) => *a = Some(address),
            Err(poisoned) => *poisoned.into_inner() = Some(address),
        }
    }

    /// A Reject triggered by this node.
    fn reject(&self, code: ErrorCode, message: &str) -> Reject {
        Reject::new(code, self.get().as_ref(), message)
    }
}

/// What a PeerAccount enforces.
#[derive(Debug, Clone)]
pub struct PeerAccountSettings {
    /// Largest incoming Prepare amount (F08 above it); `None`: unlimited.
    pub max_packet_amount: Option<u64>,
    /// Incoming packets per interval (T05); `None`: not limited.
    pub rate_limit: Option<TokenBucketParams>,
    /// Incoming amount per interval (T04); `None`: not limited.
    pub incoming_throughput: Option<TokenBucketParams>,
    /// Outgoing amount per interval (T04); `None`: not limited.
    pub outgoing_throughput: Option<TokenBucketParams>,
    /// `triggered_by` of the Rejects this account makes.
    pub node_address: NodeAddress,
}

impl PeerAccountSettings {
    /// The settings of `[accounts.<id>]`.
    pub fn from_config(config: &AccountConfig, node_address: NodeAddress) -> Self {
        PeerAccountSettings {
            max_packet_amount: config.max_packet_amount,
            rate_limit: config.rate_limit.bucket(),
            incoming_throughput: config.throughput.incoming_bucket(),
            outgoing_throughput: config.throughput.outgoing_bucket(),
            node_address,
        }
    }

    /// No limits.
    pub fn unlimited(node_address: NodeAddress) -> Self {
        PeerAccountSettings {
            max_packet_amount: None,
            rate_limit: None,
            incoming_throughput: None,
            outgoing_throughput: None,
            node_address,
        }
    }
}

/// Token-bucket state; rebuilt full on restart.
struct Buckets {
    rate: Option<RateLimiter>,
    incoming: Option<ThroughputLimiter>,
    outgoing: Option<ThroughputLimiter>,
}

/// Validated config never has a zero refill period; one built by hand that does is treated
/// as 1 ms rather than silently dropping the limit.
fn sane(params: TokenBucketParams) -> TokenBucketParams {
    TokenBucketParams {
        refill_period_ms: params.refill_period_ms.max(1),
        ..params
    }
}

impl Buckets {
    fn new(settings: &PeerAccountSettings, now_ms: u64) -> Self {
        let throughput = |p: Option<TokenBucketParams>| {
            p.and_then(|p| ThroughputLimiter::new(sane(p), now_ms).ok())
        };
        Buckets {
            rate: settings
                .rate_limit
                .and_then(|p| RateLimiter::new(sane(p), now_ms).ok()),
            incoming: throughput(settings.incoming_throughput),
            outgoing: throughput(settings.outgoing_throughput),
        }
    }
}

pub struct PeerAccount {
    id: AccountId,
    settings: PeerAccountSettings,
    link: Arc<dyn Link>,
    /// Shared with the packets in flight (cloning an actix `Recipient` allocates).
    router: Arc<Recipient<ForwardPrepare>>,
    clock: Clock,
    buckets: Buckets,
    /// The account was removed from the configuration: it sends and accepts nothing more.
    retired: bool,
    backoff: Backoff,
    /// Where this account's packets are counted, when the node keeps metrics.
    metrics: Option<Arc<AccountMetrics>>,
}

impl PeerAccount {
    pub fn new(
        id: AccountId,
        settings: PeerAccountSettings,
        link: Arc<dyn Link>,
        router: Recipient<ForwardPrepare>,
        clock: Clock,
    ) -> Self {
        let buckets = Buckets::new(&settings, clock.now_ms());
        PeerAccount {
            id,
            settings,
            link,
            router: Arc::new(router),
            clock,
            buckets,
            retired: false,
            backoff: Backoff::default(),
            metrics: None,
        }
    }

    /// Counts this account's packets in `metrics` (both directions, incoming latency).
    pub fn with_metrics(mut self, metrics: Option<Arc<AccountMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts an outgoing Prepare answered without reaching the link.
    fn count_outgoing(&self, amount: u64, result: &PacketResult) {
        if let Some(m) = &self.metrics {
            m.record(Direction::Outgoing, amount, result);
        }
    }

    /// Applies the incoming policies; `Err` is the Reject to answer with.
    fn check_incoming(&mut self, prepare: &Prepare) -> Result<(), Reject> {
        let now = self.clock.now_ms();
        let address = &self.settings.node_address;
        if let Some(rate) = &mut self.buckets.rate {
            rate.check(now)
                .map_err(|t| address.reject(t.code(), &t.to_string()))?;
        }
        check_max_packet_amount(prepare.amount(), self.settings.max_packet_amount).map_err(
            |e| {
                let data = MaxPacketAmountDetails {
                    amount_received: e.received,
                    max_amount: e.maximum,
                }
                .encode();
                let node = address.get();
                let message = e.to_string();
                RejectBuilder {
                    code: ErrorCode::F08_AMOUNT_TOO_LARGE,
                    triggered_by: node.as_ref(),
                    message: &message,
                    data: &data,
                }
                .build()
                // 16 bytes of data always fit; keep the code if that ever changes.
                .unwrap_or_else(|_| address.reject(ErrorCode::F08_AMOUNT_TOO_LARGE, &message))
            },
        )?;
        if let Some(incoming) = &mut self.buckets.incoming {
            incoming
                .check(prepare.amount(), now)
                .map_err(|t| address.reject(t.code(), &t.to_string()))?;
        }
        Ok(())
    }
}

impl Actor for PeerAccount {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervise::PACKET_PATH_MAILBOX);
        let delay = self.backoff.delay();
        if !delay.is_zero() {
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
        }
    }
}

impl Supervised for PeerAccount {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.backoff.on_restart();
        // Buckets restart full; in-flight packets are tasks of their own.
        self.buckets = Buckets::new(&self.settings, self.clock.now_ms());
    }
}

fn ready(result: PacketResult) -> Reply<PacketResult> {
    Reply::ready(result)
}

impl Handler<IncomingPrepare> for PeerAccount {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _ctx: &mut Self::Context) -> Self::Result {
        self.incoming(msg.prepare, None)
    }
}

impl Handler<OriginatePrepare> for PeerAccount {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: OriginatePrepare, _ctx: &mut Self::Context) -> Self::Result {
        self.incoming(msg.prepare, Some(msg.payment))
    }
}

impl PeerAccount {
    /// A Prepare from the account's side (its link, or one of our payments from a local
    /// account: `origin`): the account's policies, then the Router.
    fn incoming(&mut self, prepare: Prepare, origin: Option<AccountId>) -> Reply<PacketResult> {
        if self.retired {
            let reject = self.settings.node_address.reject(
                ErrorCode::F00_BAD_REQUEST,
                "this account is no longer configured at the connector",
            );
            return ready(Err(reject));
        }
        // The clock is read for the latency histogram only: not at all without metrics.
        let metrics = self
            .metrics
            .clone()
            .map(|m| (m, tokio::time::Instant::now()));
        let amount = prepare.amount();
        if let Err(reject) = self.check_incoming(&prepare) {
            let result = Err(reject);
            if let Some((m, started)) = &metrics {
                m.record(Direction::Incoming, amount, &result);
                m.observe_incoming(started.elapsed());
            }
            return ready(result);
        }
        let router = self.router.clone();
        let address = self.settings.node_address.clone();
        let forward = ForwardPrepare {
            from: self.id.clone(),
            prepare,
            origin,
        };
        Reply::later(async move {
            let result = ask(&router, forward).await.unwrap_or_else(|_| {
                Err(address.reject(ErrorCode::T00_INTERNAL_ERROR, "router unavailable."))
            });
            if let Some((m, started)) = &metrics {
                m.record(Direction::Incoming, amount, &result);
                m.observe_incoming(started.elapsed());
            }
            result
        })
    }
}

/// Sends `prepare` on `link` and turns the outcome into the answer to relay upstream.
async fn send_on_link(
    link: Arc<dyn Link>,
    clock: Clock,
    address: NodeAddress,
    prepare: Prepare,
    metrics: Option<Arc<AccountMetrics>>,
) -> PacketResult {
    let amount = prepare.amount();
    let result = send_and_check(link, clock, address, prepare).await;
    if let Some(m) = &metrics {
        m.record(Direction::Outgoing, amount, &result);
    }
    result
}

async fn send_and_check(
    link: Arc<dyn Link>,
    clock: Clock,
    address: NodeAddress,
    prepare: Prepare,
) -> PacketResult {
    let reject = |e: OutgoingError| address.reject(e.code(), &e.to_string());
    let condition = *prepare.execution_condition();
    let deadline = clock.instant_at(prepare.expires_at());
    let answer = tokio::select! {
        // An answer and the expiry ready together: the answer came in time.
        biased;
        answer = link.send_prepare(prepare) => answer,
        () = tokio::time::sleep_until(deadline) => return Err(reject(OutgoingError::TimedOut)),
    };
    match answer {
        Ok(Ok(fulfill)) => match check_fulfillment(&condition, fulfill.fulfillment()) {
            Ok(()) => Ok(fulfill),
            Err(e) => Err(reject(e)),
        },
        Ok(Err(peer_reject)) => Err(peer_reject),
        Err(LinkError::Down) => Err(reject(OutgoingError::PeerUnreachable)),
        Err(LinkError::Protocol(_)) => Err(reject(OutgoingError::InvalidResponse)),
    }
}

impl Handler<SendPrepare> for PeerAccount {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: SendPrepare, _ctx: &mut Self::Context) -> Self::Result {
        let prepare = msg.prepare;
        let address = self.settings.node_address.clone();
        if self.retired {
            return ready(Err(address.reject(
                ErrorCode::T01_PEER_UNREACHABLE,
                "the account is no longer configured at the connector",
            )));
        }
        let now = self.clock.now_ms();
        let amount = prepare.amount();
        let refuse = |this: &Self, reject: Reject| {
            let result = Err(reject);
            this.count_outgoing(amount, &result);
            ready(result)
        };
        if let Some(outgoing) = &mut self.buckets.outgoing {
            if let Err(t) = outgoing.check(prepare.amount(), now) {
                return refuse(self, address.reject(t.code(), &t.to_string()));
            }
        }
        if let Err(e) = check_not_expired(prepare.expires_at(), Timestamp::from_unix_millis(now)) {
            return refuse(self, address.reject(e.code(), &e.to_string()));
        }
        if !self.link.is_up() {
            let e = OutgoingError::PeerUnreachable;
            return refuse(self, address.reject(e.code(), &e.to_string()));
        }
        Reply::later(send_on_link(
            self.link.clone(),
            self.clock,
            address,
            prepare,
            self.metrics.clone(),
        ))
    }
}

impl Handler<SetNodeAddress> for PeerAccount {
    type Result = ();

    fn handle(&mut self, msg: SetNodeAddress, _ctx: &mut Self::Context) {
        self.settings.node_address.set(msg.address);
    }
}

/// A reload changed the account's limits or policies. Its token buckets start over (full) under
/// the new parameters; packets in flight are not affected.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct UpdateSettings(pub PeerAccountSettings);

impl Handler<UpdateSettings> for PeerAccount {
    type Result = ();

    fn handle(&mut self, msg: UpdateSettings, _ctx: &mut Self::Context) {
        self.settings = msg.0;
        self.buckets = Buckets::new(&self.settings, self.clock.now_ms());
    }
}

/// A reload changed the account's link: new packets go out over `0`, which delivers what it
/// receives to this account. Packets in flight on the old link finish there.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct ReplaceLink(pub Arc<dyn Link>);

impl Handler<ReplaceLink> for PeerAccount {
    type Result = ();

    fn handle(&mut self, msg: ReplaceLink, ctx: &mut Self::Context) {
        msg.0.attach(ctx.address().recipient());
        self.link = msg.0;
    }
}

/// A reload removed the account: from now on it refuses what comes in (F00) and what the
/// Router would send (T01; the Router no longer routes to it).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for PeerAccount {
    type Result = ();

    fn handle(&mut self, _msg: Retire, _ctx: &mut Self::Context) {
        self.retired = true;
        // Letting go of the link lets a client link stop once nobody else holds it.
        self.link = Arc::new(crate::link::UnconnectedLink);
    }
}

crate::supervise::stop_on_crash!(PeerAccount);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::memory::MemoryLink;
    use crate::messages::Crash;
    use crate::test_support::run;
    use actix::{Addr, Supervisor};
    use futures::future::BoxFuture;
    use ilp::packet::{Fulfill, FulfillBuilder, PrepareBuilder, Timestamp};
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    const START_MS: u64 = 1_700_000_000_000;
    const EXPIRY_MS: u64 = 30_000;
    const FULFILLMENT: [u8; 32] = [7; 32];

    fn node() -> Address {
        Address::try_from("test.node").unwrap()
    }

    fn condition() -> [u8; 32] {
        Sha256::digest(FULFILLMENT).into()
    }

    fn fulfill(fulfillment: &[u8; 32]) -> Fulfill {
        FulfillBuilder {
            fulfillment,
            data: b"thanks",
        }
        .build()
        .unwrap()
    }

    fn prepare_at(amount: u64, expires_at: Timestamp, data: &[u8]) -> Prepare {
        PrepareBuilder {
            amount,
            expires_at,
            execution_condition: &condition(),
            destination: &Address::try_from("test.peer.bob").unwrap(),
            data,
        }
        .build()
        .unwrap()
    }

    /// A Prepare expiring `EXPIRY_MS` after `clock`'s now.
    fn prepare(clock: &Clock, amount: u64, data: &[u8]) -> Prepare {
        let expires_at = Timestamp::from_unix_millis(clock.now_ms() + EXPIRY_MS);
        prepare_at(amount, expires_at, data)
    }

    fn settings() -> PeerAccountSettings {
        PeerAccountSettings::unlimited(NodeAddress::new(Some(node())))
    }

    fn bucket(period: u64, count: u64) -> Option<TokenBucketParams> {
        Some(TokenBucketParams {
            refill_period_ms: period,
            refill_count: count,
            capacity: count,
        })
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Fulfill,
        WrongFulfillment,
        Reject,
        Never,
        /// `is_up` is false.
        Down,
        /// `is_up` is true but the send finds the link gone.
        DropsOut,
        Garbage,
    }

    /// A link whose peer answers as told, after `delay`, counting sends.
    struct FakeLink {
        answer: Answer,
        delay: Duration,
        sends: Arc<AtomicUsize>,
    }

    impl FakeLink {
        fn with(answer: Answer, delay_ms: u64) -> (Arc<dyn Link>, Arc<AtomicUsize>) {
            let sends = Arc::new(AtomicUsize::new(0));
            let link = FakeLink {
                answer,
                delay: Duration::from_millis(delay_ms),
                sends: sends.clone(),
            };
            (Arc::new(link), sends)
        }
    }

    impl Link for FakeLink {
        fn send_prepare(
            &self,
            _prepare: Prepare,
        ) -> BoxFuture<'static, Result<PacketResult, LinkError>> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer;
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                match answer {
                    Answer::Fulfill => Ok(Ok(fulfill(&FULFILLMENT))),
                    Answer::WrongFulfillment => Ok(Ok(fulfill(&[8; 32]))),
                    Answer::Reject => Ok(Err(Reject::new(
                        ErrorCode::F99_APPLICATION_ERROR,
                        Some(&Address::try_from("test.peer").unwrap()),
                        "peer says no",
                    ))),
                    Answer::Never => std::future::pending().await,
                    Answer::Down | Answer::DropsOut => Err(LinkError::Down),
                    Answer::Garbage => Err(LinkError::Protocol("not a packet".into())),
                }
            })
        }

        fn is_up(&self) -> bool {
            self.answer != Answer::Down
        }
    }

    /// Records what it is asked to route and fulfills everything.
    struct FakeRouter {
        seen: Arc<Mutex<Vec<(AccountId, u64)>>>,
    }

    impl Actor for FakeRouter {
        type Context = Context<Self>;
    }

    impl Handler<ForwardPrepare> for FakeRouter {
        type Result = Reply<PacketResult>;

        fn handle(&mut self, msg: ForwardPrepare, _ctx: &mut Self::Context) -> Self::Result {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push((msg.from, msg.prepare.amount()));
            }
            Reply::ready(Ok(fulfill(&FULFILLMENT)))
        }
    }

    type Seen = Arc<Mutex<Vec<(AccountId, u64)>>>;

    fn router() -> (Recipient<ForwardPrepare>, Seen) {
        let seen = Seen::default();
        let addr = FakeRouter { seen: seen.clone() }.start();
        (addr.recipient(), seen)
    }

    fn start(
        id: &str,
        settings: PeerAccountSettings,
        link: Arc<dyn Link>,
        clock: Clock,
    ) -> (Addr<PeerAccount>, Seen) {
        let (router, seen) = router();
        let id: AccountId = id.into();
        let addr = Supervisor::start(move |_| PeerAccount::new(id, settings, link, router, clock));
        (addr, seen)
    }

    /// The Reject, asserting its code and that this node triggered it.
    fn rejected(result: PacketResult, code: ErrorCode) -> Reject {
        let reject = result.unwrap_err();
        assert_eq!(reject.code(), code, "{reject:?}");
        assert_eq!(reject.triggered_by(), Some(node()));
        reject
    }

    async fn incoming(account: &Addr<PeerAccount>, prepare: Prepare) -> PacketResult {
        account
            .send(IncomingPrepare { prepare })
            .await
            .unwrap()
            .await
    }

    async fn outgoing(account: &Addr<PeerAccount>, prepare: Prepare) -> PacketResult {
        account.send(SendPrepare { prepare }).await.unwrap().await
    }

    #[test]
    fn incoming_is_forwarded_to_the_router_from_this_account() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, 0);
            let (account, seen) = start("alice", settings(), link, clock);
            let result = incoming(&account, prepare(&clock, 10, b"")).await;
            assert_eq!(result.unwrap().fulfillment(), &FULFILLMENT);
            assert_eq!(*seen.lock().unwrap(), vec![("alice".into(), 10)]);
        });
    }

    #[test]
    fn incoming_rate_limit_rejects_t05() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, 0);
            let s = PeerAccountSettings {
                rate_limit: bucket(1_000, 2),
                ..settings()
            };
            let (account, seen) = start("alice", s, link, clock);
            assert!(incoming(&account, prepare(&clock, 1, b"")).await.is_ok());
            assert!(incoming(&account, prepare(&clock, 1, b"")).await.is_ok());
            let r = incoming(&account, prepare(&clock, 1, b"")).await;
            let reject = rejected(r, ErrorCode::T05_RATE_LIMITED);
            assert_eq!(reject.message(), "too many requests, throttling.");
            assert_eq!(seen.lock().unwrap().len(), 2);
            // Half a period refills one token.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(incoming(&account, prepare(&clock, 1, b"")).await.is_ok());
        });
    }

    #[test]
    fn incoming_max_packet_amount_rejects_f08_with_amounts() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, 0);
            let s = PeerAccountSettings {
                max_packet_amount: Some(100),
                ..settings()
            };
            let (account, seen) = start("alice", s, link, clock);
            assert!(incoming(&account, prepare(&clock, 100, b"")).await.is_ok());
            let r = incoming(&account, prepare(&clock, 101, b"")).await;
            let reject = rejected(r, ErrorCode::F08_AMOUNT_TOO_LARGE);
            assert_eq!(
                reject.data(),
                &[0, 0, 0, 0, 0, 0, 0, 101, 0, 0, 0, 0, 0, 0, 0, 100]
            );
            assert_eq!(
                reject.message(),
                "packet amount 101 exceeds the maximum of 100"
            );
            assert_eq!(seen.lock().unwrap().len(), 1);
        });
    }

    #[test]
    fn incoming_throughput_rejects_t04() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, 0);
            let s = PeerAccountSettings {
                incoming_throughput: bucket(1_000, 100),
                ..settings()
            };
            let (account, seen) = start("alice", s, link, clock);
            assert!(incoming(&account, prepare(&clock, 60, b"")).await.is_ok());
            let r = incoming(&account, prepare(&clock, 41, b"")).await;
            let reject = rejected(r, ErrorCode::T04_INSUFFICIENT_LIQUIDITY);
            assert_eq!(reject.message(), "exceeded money bandwidth, throttling.");
            assert!(incoming(&account, prepare(&clock, 40, b"")).await.is_ok());
            assert_eq!(seen.lock().unwrap().len(), 2);
        });
    }

    #[test]
    fn incoming_checks_run_in_js_order() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, 0);
            // Rate limit before max packet amount: an oversize packet uses a token.
            let s = PeerAccountSettings {
                rate_limit: bucket(60_000, 1),
                max_packet_amount: Some(100),
                ..settings()
            };
            let (account, _) = start("a", s, link.clone(), clock);
            let r = incoming(&account, prepare(&clock, 101, b"")).await;
            rejected(r, ErrorCode::F08_AMOUNT_TOO_LARGE);
            let r = incoming(&account, prepare(&clock, 1, b"")).await;
            rejected(r, ErrorCode::T05_RATE_LIMITED);
            // Max packet amount before throughput: an oversize packet takes no throughput.
            let s = PeerAccountSettings {
                max_packet_amount: Some(120),
                incoming_throughput: bucket(1_000, 100),
                ..settings()
            };
            let (account, _) = start("b", s, link, clock);
            let r = incoming(&account, prepare(&clock, 150, b"")).await;
            rejected(r, ErrorCode::F08_AMOUNT_TOO_LARGE);
            assert!(incoming(&account, prepare(&clock, 100, b"")).await.is_ok());
        });
    }

    #[test]
    fn incoming_with_router_gone_rejects_t00() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, 0);
            let ctx = Context::<FakeRouter>::new();
            let dead: Recipient<ForwardPrepare> = ctx.address().recipient();
            drop(ctx);
            let account = Supervisor::start(move |_| {
                PeerAccount::new("alice".into(), settings(), link, dead, clock)
            });
            let r = incoming(&account, prepare(&clock, 1, b"")).await;
            rejected(r, ErrorCode::T00_INTERNAL_ERROR);
        });
    }

    #[test]
    fn outgoing_fulfill_and_peer_reject_are_relayed() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, sends) = FakeLink::with(Answer::Fulfill, 5);
            let (account, _) = start("bob", settings(), link, clock);
            let f = outgoing(&account, prepare(&clock, 5, b"")).await.unwrap();
            assert_eq!(f, fulfill(&FULFILLMENT));
            assert_eq!(sends.load(Ordering::SeqCst), 1);

            let (link, _) = FakeLink::with(Answer::Reject, 5);
            let (account, _) = start("carl", settings(), link, clock);
            let reject = outgoing(&account, prepare(&clock, 5, b""))
                .await
                .unwrap_err();
            assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
            assert_eq!(reject.message(), "peer says no");
            assert_eq!(reject.triggered_by().unwrap().as_str(), "test.peer");
        });
    }

    #[test]
    fn outgoing_throughput_rejects_t04_without_sending() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, sends) = FakeLink::with(Answer::Fulfill, 0);
            let s = PeerAccountSettings {
                outgoing_throughput: bucket(1_000, 100),
                ..settings()
            };
            let (account, _) = start("bob", s, link, clock);
            assert!(outgoing(&account, prepare(&clock, 60, b"a")).await.is_ok());
            let r = outgoing(&account, prepare(&clock, 50, b"b")).await;
            let reject = rejected(r, ErrorCode::T04_INSUFFICIENT_LIQUIDITY);
            assert_eq!(reject.message(), "exceeded money bandwidth, throttling.");
            assert_eq!(sends.load(Ordering::SeqCst), 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(outgoing(&account, prepare(&clock, 50, b"c")).await.is_ok());
        });
    }

    #[test]
    fn outgoing_on_a_down_link_rejects_t01_at_once() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, sends) = FakeLink::with(Answer::Down, 0);
            let (account, _) = start("bob", settings(), link, clock);
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            rejected(r, ErrorCode::T01_PEER_UNREACHABLE);
            assert_eq!(sends.load(Ordering::SeqCst), 0);
            assert_eq!(clock.now_ms(), START_MS);

            // Up when checked, gone when sent.
            let (link, sends) = FakeLink::with(Answer::DropsOut, 0);
            let (account, _) = start("carl", settings(), link, clock);
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            rejected(r, ErrorCode::T01_PEER_UNREACHABLE);
            assert_eq!(sends.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn outgoing_unanswered_rejects_r00_at_expiry() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, sends) = FakeLink::with(Answer::Never, 0);
            let (account, _) = start("bob", settings(), link, clock);
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            let reject = rejected(r, ErrorCode::R00_TRANSFER_TIMED_OUT);
            assert_eq!(reject.message(), "transfer timed out.");
            assert_eq!(clock.now_ms(), START_MS + EXPIRY_MS);
            assert_eq!(sends.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn outgoing_late_fulfill_is_dropped_for_r00() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Fulfill, EXPIRY_MS + 1);
            let (account, _) = start("bob", settings(), link, clock);
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            rejected(r, ErrorCode::R00_TRANSFER_TIMED_OUT);
            assert_eq!(clock.now_ms(), START_MS + EXPIRY_MS);
        });
    }

    #[test]
    fn outgoing_already_expired_rejects_r00_without_sending() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, sends) = FakeLink::with(Answer::Fulfill, 0);
            let (account, _) = start("bob", settings(), link, clock);
            for expires_at in [START_MS, START_MS - 1] {
                let p = prepare_at(5, Timestamp::from_unix_millis(expires_at), b"");
                let r = outgoing(&account, p).await;
                let reject = rejected(r, ErrorCode::R00_TRANSFER_TIMED_OUT);
                assert_eq!(reject.message(), "packet expired before it could be sent.");
            }
            assert_eq!(sends.load(Ordering::SeqCst), 0);
        });
    }

    #[test]
    fn outgoing_wrong_fulfillment_rejects_f05() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::WrongFulfillment, 0);
            let (account, _) = start("bob", settings(), link, clock);
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            let reject = rejected(r, ErrorCode::F05_WRONG_CONDITION);
            assert_eq!(
                reject.message(),
                "fulfillment did not match expected value."
            );
        });
    }

    #[test]
    fn outgoing_invalid_peer_response_rejects_t00() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Garbage, 0);
            let (account, _) = start("bob", settings(), link, clock);
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            rejected(r, ErrorCode::T00_INTERNAL_ERROR);
        });
    }

    #[test]
    fn node_address_learned_late_names_the_node() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, _) = FakeLink::with(Answer::Down, 0);
            let s = PeerAccountSettings::unlimited(NodeAddress::new(None));
            let (account, _) = start("bob", s, link, clock);
            let reject = outgoing(&account, prepare(&clock, 5, b""))
                .await
                .unwrap_err();
            assert_eq!(reject.code(), ErrorCode::T01_PEER_UNREACHABLE);
            assert_eq!(reject.triggered_by(), None);
            account
                .send(SetNodeAddress { address: node() })
                .await
                .unwrap();
            let r = outgoing(&account, prepare(&clock, 5, b"")).await;
            rejected(r, ErrorCode::T01_PEER_UNREACHABLE);
        });
    }

    #[test]
    fn a_crashed_account_does_not_affect_another() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link_a, _) = FakeLink::with(Answer::Fulfill, 0);
            let (link_b, _) = FakeLink::with(Answer::Fulfill, 0);
            let (a, _) = start("a", settings(), link_a, clock);
            let (b, seen_b) = start("b", settings(), link_b, clock);
            a.send(Crash).await.unwrap();
            assert!(incoming(&b, prepare(&clock, 1, b"")).await.is_ok());
            assert!(outgoing(&b, prepare(&clock, 1, b"")).await.is_ok());
            assert_eq!(seen_b.lock().unwrap().len(), 1);
            // The same Addr reaches the restarted account.
            assert!(incoming(&a, prepare(&clock, 1, b"")).await.is_ok());
        });
    }

    #[test]
    fn restart_keeps_the_addr_refills_buckets_and_in_flight_packets_complete() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (link, sends) = FakeLink::with(Answer::Fulfill, 1_000);
            let s = PeerAccountSettings {
                rate_limit: bucket(60_000, 1),
                ..settings()
            };
            let (account, _) = start("bob", s, link, clock);
            assert!(incoming(&account, prepare(&clock, 1, b"")).await.is_ok());
            let r = incoming(&account, prepare(&clock, 1, b"")).await;
            rejected(r, ErrorCode::T05_RATE_LIMITED);

            let p = prepare(&clock, 5, b"in flight");
            let in_flight = account.send(SendPrepare { prepare: p.clone() });
            tokio::task::yield_now().await;
            account.send(Crash).await.unwrap();
            assert_eq!(in_flight.await.unwrap().await, Ok(fulfill(&FULFILLMENT)));
            assert_eq!(sends.load(Ordering::SeqCst), 1);

            // Restarted: the rate-limit bucket is full again; crash twice more for backoff.
            assert!(incoming(&account, prepare(&clock, 1, b"")).await.is_ok());
            account.send(Crash).await.unwrap();
            account.send(Crash).await.unwrap();
            assert!(incoming(&account, prepare(&clock, 1, b"")).await.is_ok());
        });
    }

    #[test]
    fn memory_link_pair_carries_packets_between_accounts() {
        run(async {
            let clock = Clock::starting_at(START_MS);
            let (end_a, end_b) = MemoryLink::pair();
            let (a, _) = start("to-b", settings(), Arc::new(end_a.clone()), clock);
            let (b, seen_b) = start("to-a", settings(), Arc::new(end_b.clone()), clock);
            end_a.attach(a.clone().recipient());
            end_b.attach(b.clone().recipient());

            let f = outgoing(&a, prepare(&clock, 7, b"")).await.unwrap();
            assert_eq!(f.fulfillment(), &FULFILLMENT);
            assert_eq!(*seen_b.lock().unwrap(), vec![("to-a".into(), 7)]);

            end_a.set_up(false);
            let r = outgoing(&a, prepare(&clock, 7, b"x")).await;
            rejected(r, ErrorCode::T01_PEER_UNREACHABLE);
            // A policy of the receiving account answers through the link.
            end_a.set_up(true);
            let s = PeerAccountSettings {
                max_packet_amount: Some(5),
                ..settings()
            };
            let (strict_b, _) = start("strict", s, Arc::new(end_b.clone()), clock);
            end_b.attach(strict_b.recipient());
            let r = outgoing(&a, prepare(&clock, 7, b"y")).await;
            rejected(r, ErrorCode::F08_AMOUNT_TOO_LARGE);
        });
    }

    #[test]
    fn settings_from_config() {
        let config: AccountConfig = toml::from_str(
            r#"
            relation = "peer"
            link = { type = "memory" }
            max_packet_amount = 1000
            rate_limit = { refill_period_ms = 1000, refill_count = 50, capacity = 70 }
            throughput = { incoming_amount_per_second = 10, outgoing_amount_per_second = 20 }
            dedup = { enabled = false }
            "#,
        )
        .unwrap();
        let s = PeerAccountSettings::from_config(&config, NodeAddress::new(Some(node())));
        assert_eq!(s.max_packet_amount, Some(1000));
        assert_eq!(
            s.rate_limit,
            Some(TokenBucketParams {
                refill_period_ms: 1000,
                refill_count: 50,
                capacity: 70
            })
        );
        assert_eq!(s.incoming_throughput, bucket(1_000, 10));
        assert_eq!(s.outgoing_throughput, bucket(1_000, 20));
        assert_eq!(s.node_address.get(), Some(node()));

        let config: AccountConfig =
            toml::from_str("relation = \"child\"\nlink = { type = \"memory\" }\n").unwrap();
        let s = PeerAccountSettings::from_config(&config, NodeAddress::default());
        assert_eq!(s.max_packet_amount, None);
        assert_eq!(s.rate_limit, Some(TokenBucketParams::RATE_LIMIT_DEFAULT));
        assert_eq!(s.incoming_throughput, None);
        assert_eq!(s.outgoing_throughput, None);
        assert_eq!(s.node_address.get(), None);
    }
}
