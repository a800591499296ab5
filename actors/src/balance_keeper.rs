//! The BalanceKeeper actor: one balance per account (limits from `[accounts.<id>.balance]`, none
//! when it is absent).
//! It reserves a forwarded packet's effect on both accounts at once (T04 at a limit), commits it
//! durably on a Fulfill before answering (so the Fulfill is relayed only once its balance effect
//! is in the store), releases it on a Reject, applies settlements exactly once per id, and tells
//! the settlement engine when an account's balance falls below its settle threshold.
//!
//! Committed balances live in the [`Store`]; reservations are volatile. After a restart the
//! keeper reloads the committed balances, and a packet reserved before the restart is still
//! committed from the amounts its `ResolvePacket` carries (or forgotten when it is rejected).
//!
//! Sign convention (the JS connector's): positive means the peer owes us. A fulfilled incoming
//! packet raises the balance, a fulfilled outgoing packet lowers it, a settlement we sent raises
//! it and one we received lowers it.

use crate::clock::Clock;
use crate::messages::{
    AccountId, AdjustBalance, AdjustBalanceError, ApplySettlement, BalanceSnapshot, Crash,
    ExpireToken, GetBalance, GetTokens, ReckonSettlement, RecordReceived, RecordSent, RefundToken,
    Reply, ReservationId, ReservePacket, ResolvePacket, SettleThresholdCrossed,
    SettlementDirection, SpendToken, TokenBalance, TokenSpendError,
};
use crate::payment_log::{PaymentEvent, PaymentFeed, PaymentLog, Received};
use crate::replay;
use crate::store::{read_off_thread, Store, StoreError, StoreOp};
use crate::supervise::Backoff;
use actix::prelude::*;
use futures::future::{self, BoxFuture, FutureExt, Shared};
use ilp::policy::balance::{Balance, BalanceError, BalanceLimits};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A store commit several waiters may await (the request that made it, a repeated settlement,
/// a restart that must not reload before it lands).
type Commit = Shared<BoxFuture<'static, Result<(), StoreError>>>;

#[derive(Debug, Clone)]
struct Account {
    limits: BalanceLimits,
    committed: i64,
    pending_incoming: u64,
    pending_outgoing: u64,
    /// A [`SettleThresholdCrossed`] went out and no settlement we sent was applied since. Kept
    /// across restarts of the actor (the settlement engine keeps its in-flight settlement too),
    /// so one shortfall is never settled twice.
    settle_requested: bool,
    /// The last settlement we sent that was applied to this account since the keeper started.
    last_sent: Option<[u8; 16]>,
}

impl Account {
    fn new(limits: BalanceLimits) -> Self {
        Account {
            limits,
            committed: 0,
            pending_incoming: 0,
            pending_outgoing: 0,
            settle_requested: false,
            last_sent: None,
        }
    }

    /// Incoming: committed + pending incoming + amount must stay at or below the maximum.
    fn reserve_incoming(&mut self, amount: u64) -> Result<(), BalanceError> {
        let current = add(self.committed, i128::from(self.pending_incoming))?;
        Balance::new(current).reserve_incoming(&self.limits, amount)?;
        self.pending_incoming = self
            .pending_incoming
            .checked_add(amount)
            .ok_or(BalanceError::Overflow)?;
        Ok(())
    }

    /// Outgoing: committed - pending outgoing - amount must stay at or above the minimum.
    fn reserve_outgoing(&mut self, amount: u64) -> Result<(), BalanceError> {
        let held = Balance {
            balance: self.committed,
            pending_outgoing: self.pending_outgoing,
        }
        .reserve_outgoing(&self.limits, amount)?;
        self.pending_outgoing = held.pending_outgoing;
        Ok(())
    }

    fn snapshot(&self) -> BalanceSnapshot {
        BalanceSnapshot {
            balance: self.committed,
            pending_incoming: self.pending_incoming,
            pending_outgoing: self.pending_outgoing,
        }
    }

    /// The settlement to ask for now, if the balance is below the threshold and none is asked
    /// for yet (marks it asked for).
    fn settlement_due(&mut self, id: &AccountId) -> Option<SettleThresholdCrossed> {
        if self.settle_requested {
            return None;
        }
        let amount = Balance::new(self.committed).settle_amount(&self.limits)?;
        self.settle_requested = true;
        Some(SettleThresholdCrossed {
            account: id.clone(),
            amount,
            after: self.last_sent,
        })
    }
}

/// `balance + delta`, refusing what does not fit in an `i64`.
fn add(balance: i64, delta: i128) -> Result<i64, BalanceError> {
    i64::try_from(i128::from(balance) + delta).map_err(|_| BalanceError::Overflow)
}

fn overflow(account: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "balance of account {account} would overflow a signed 64-bit integer"
    ))
}

/// The tracked accounts a reservation touched, with their amounts.
#[derive(Debug, Clone, Default)]
struct Reservation {
    incoming: Option<(AccountId, u64)>,
    outgoing: Option<(AccountId, u64)>,
}

pub struct BalanceKeeper {
    accounts: BTreeMap<AccountId, Account>,
    store: Arc<dyn Store>,
    settlement: Option<Recipient<SettleThresholdCrossed>>,
    reservations: foldhash::HashMap<ReservationId, Reservation>,
    next_reservation: u64,
    /// First reservation id of this incarnation: an unknown id below it was made before a
    /// restart (commit it from the message); one at or above it was already resolved.
    incarnation_start: u64,
    /// Store commits not yet known to have landed; a restart waits for them before reloading.
    commits: Vec<Commit>,
    /// `commits` is pruned of landed commits when it reaches this length (then twice what is
    /// left): amortized constant work per packet instead of a scan of everything in flight.
    prune_at: usize,
    /// Settlements whose commit is in flight, so a repeat waits for the first to be durable.
    settlements: HashMap<[u8; 16], Commit>,
    /// Set when a commit failed: the in-memory balances may be ahead of the store until the
    /// restart that failure triggers reloads them, so nothing more is committed from them.
    poisoned: Arc<AtomicBool>,
    /// Drops expired fulfill records ([`crate::replay`]) periodically, by this clock.
    record_gc: Option<Clock>,
    backoff: Backoff,
    /// This actor's address, made once per start (each commit may need it to crash itself).
    me: Option<Arc<Addr<Self>>>,
    /// Fulfilled packets resolved since the last store commit (`Some` while a flush is due).
    batch: Option<Batch>,
    /// Numbers the local accounts' payment events; loaded with the balances.
    log: PaymentLog,
    /// Where durable payment events are announced (the admin API's live streams).
    feed: Option<PaymentFeed>,
}

/// The balance effects of fulfilled packets the keeper has applied and not yet handed to the
/// store. They go as one commit once the keeper has handled every message ready now (an item
/// actix polls right after the mailbox), so a burst of packets costs one store request, one
/// waiting task and one wake-up from the writer thread, not one of each per packet.
#[derive(Default)]
struct Batch {
    ops: Vec<StoreOp>,
    records: replay::RecordGroup,
    /// The payment events and connection totals of local accounts ([`crate::payment_log`]).
    received: Vec<StoreOp>,
    /// The events among them, announced after the commit.
    announce: Vec<Arc<PaymentEvent>>,
    events: Vec<SettleThresholdCrossed>,
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

impl Batch {
    /// Sets `account`'s balance in the batch: the entry already there, if any, takes the new
    /// value (the store keeps only the last anyway). Looked up among the first few entries
    /// only, so a batch across very many accounts costs no quadratic scan; the writer
    /// thread folds the rest.
    fn set_balance(&mut self, account: AccountId, balance: i64) {
        const SCAN: usize = 16;
        for op in self.ops.iter_mut().take(SCAN) {
            if let StoreOp::SetBalance {
                account: staged,
                balance: value,
            } = op
            {
                if Arc::ptr_eq(staged, &account) || *staged == account {
                    *value = balance;
                    return;
                }
            }
        }
        self.ops.push(StoreOp::SetBalance { account, balance });
    }
}

/// The balances one fulfilled packet moved: its incoming and outgoing accounts, when tracked.
type Moved = [Option<(AccountId, i64)>; 2];

/// Hands the open [`Batch`] to the store (sent to itself, handled after the mailbox).
#[derive(Message)]
#[rtype(result = "()")]
struct FlushBatch;

/// Smallest length at which the list of commits in flight is pruned.
const MIN_PRUNE_AT: usize = 64;

/// How often expired fulfill records are deleted (one range delete each time).
pub const RECORD_GC_PERIOD: Duration = Duration::from_secs(10);

impl BalanceKeeper {
    /// `accounts`: the balance limits of every account that keeps a balance (the node passes
    /// every configured account; an account missing here passes untracked).
    /// `settlement`: where to report balances that fell below their settle threshold.
    pub fn new(
        accounts: BTreeMap<AccountId, BalanceLimits>,
        store: Arc<dyn Store>,
        settlement: Option<Recipient<SettleThresholdCrossed>>,
    ) -> Self {
        BalanceKeeper {
            accounts: accounts
                .into_iter()
                .map(|(id, limits)| (id, Account::new(limits)))
                .collect(),
            store,
            settlement,
            reservations: foldhash::HashMap::default(),
            next_reservation: 0,
            incarnation_start: 0,
            commits: Vec::new(),
            prune_at: MIN_PRUNE_AT,
            settlements: HashMap::new(),
            poisoned: Arc::new(AtomicBool::new(false)),
            record_gc: None,
            backoff: Backoff::default(),
            me: None,
            batch: None,
            log: PaymentLog::default(),
            feed: None,
        }
    }

    /// Announces every payment event on `feed` once its commit landed.
    pub fn with_feed(mut self, feed: PaymentFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Deletes the fulfill records of expired Prepares at start and every
    /// [`RECORD_GC_PERIOD`], so they do not pile up in the store.
    pub fn expire_fulfill_records(mut self, clock: Clock) -> Self {
        self.record_gc = Some(clock);
        self
    }

    fn collect_records(&self, ctx: &mut Context<Self>) {
        let Some(clock) = self.record_gc else {
            return;
        };
        // Best effort: a failed delete is retried by the next round.
        let commit = self.store.commit(vec![replay::expired_before(clock.now())]);
        ctx.spawn(actix::fut::wrap_future(commit).map(|_, _, _| ()));
    }

    /// Reloads committed balances from the store; volatile state starts empty.
    /// Starts from the committed balances `loaded` (read off the actor thread).
    fn reload(
        &mut self,
        loaded: Result<(BTreeMap<String, i64>, PaymentLog), StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let stored = match loaded {
            Ok((stored, log)) => {
                self.log = log;
                stored
            }
            Err(_) => {
                // Serving from unknown balances would break limits; fail and retry after backoff.
                ctx.stop();
                return;
            }
        };
        self.reservations.clear();
        self.incarnation_start = self.next_reservation;
        self.poisoned.store(false, Ordering::SeqCst);
        let mut events = Vec::new();
        for (id, acc) in &mut self.accounts {
            acc.committed = stored.get(&**id).copied().unwrap_or(0);
            acc.pending_incoming = 0;
            acc.pending_outgoing = 0;
            // A balance left below the threshold (e.g. the node stopped mid-settlement) would
            // otherwise wait for the next packet, which its minimum may refuse.
            if self.settlement.is_some() {
                if let Some(crossed) = acc.settlement_due(id) {
                    events.push(crossed);
                }
            }
        }
        if let Some(settlement) = &self.settlement {
            for e in events {
                settlement.do_send(e);
            }
        }
    }

    fn reserve(&mut self, msg: &ReservePacket) -> Result<ReservationId, BalanceError> {
        // Check both accounts on copies and write back only when both pass, so a refusal
        // leaves nothing reserved. The same account may be on both sides: its outgoing check
        // starts from the copy the incoming side reserved on.
        let incoming = match &msg.incoming {
            Some((id, amount)) => match self.accounts.get(id) {
                Some(acc) => {
                    let mut acc = acc.clone();
                    acc.reserve_incoming(*amount)?;
                    Some((id, *amount, acc))
                }
                None => None,
            },
            None => None,
        };
        let outgoing = match &msg.outgoing {
            Some((id, amount)) => {
                let base = match &incoming {
                    Some((same, _, acc)) if *same == id => Some(acc.clone()),
                    _ => self.accounts.get(id).cloned(),
                };
                match base {
                    Some(mut acc) => {
                        acc.reserve_outgoing(*amount)?;
                        Some((id, *amount, acc))
                    }
                    None => None,
                }
            }
            None => None,
        };
        let id = ReservationId(self.next_reservation);
        self.next_reservation = self
            .next_reservation
            .checked_add(1)
            .ok_or(BalanceError::Overflow)?;
        let mut reservation = Reservation::default();
        // Outgoing last: on a shared account its copy holds both reservations.
        if let Some((account, amount, acc)) = incoming {
            self.write_back(account, acc);
            reservation.incoming = Some((account.clone(), amount));
        }
        if let Some((account, amount, acc)) = outgoing {
            self.write_back(account, acc);
            reservation.outgoing = Some((account.clone(), amount));
        }
        if reservation.incoming.is_some() || reservation.outgoing.is_some() {
            self.reservations.insert(id, reservation);
        }
        Ok(id)
    }

    /// Replaces a tracked account's state with a checked copy.
    fn write_back(&mut self, id: &AccountId, acc: Account) {
        if let Some(slot) = self.accounts.get_mut(id) {
            *slot = acc;
        }
    }

    fn release(&mut self, r: &Reservation) {
        // Amounts we recorded ourselves at reserve time: they are always still pending.
        if let Some((id, amount)) = &r.incoming {
            if let Some(acc) = self.accounts.get_mut(id) {
                acc.pending_incoming = acc.pending_incoming.saturating_sub(*amount);
            }
        }
        if let Some((id, amount)) = &r.outgoing {
            if let Some(acc) = self.accounts.get_mut(id) {
                acc.pending_outgoing = acc.pending_outgoing.saturating_sub(*amount);
            }
        }
    }

    /// Applies a fulfilled packet to the committed balances; the balances to persist (one per
    /// tracked account it moved) and the settlements now due.
    fn commit_packet(
        &mut self,
        r: &Reservation,
    ) -> Result<(Moved, Vec<SettleThresholdCrossed>), StoreError> {
        // The net change per tracked account (one entry when both sides are the same account),
        // checked on copies before anything is written back.
        let mut staged: [Option<(&AccountId, Account)>; 2] = [None, None];
        let sides = [
            r.incoming.as_ref().map(|(id, a)| (id, i128::from(*a))),
            r.outgoing.as_ref().map(|(id, a)| (id, -i128::from(*a))),
        ];
        for (id, delta) in sides.into_iter().flatten() {
            let slot = match &mut staged {
                [Some((same, acc)), _] if *same == id => acc,
                [first, second] => {
                    let Some(acc) = self.accounts.get(id) else {
                        continue;
                    };
                    let free = if first.is_none() { first } else { second };
                    &mut free.insert((id, acc.clone())).1
                }
            };
            slot.committed = add(slot.committed, delta).map_err(|_| overflow(id))?;
        }
        let mut moved: Moved = [None, None];
        let mut events = Vec::new();
        for (slot, (id, mut acc)) in moved.iter_mut().zip(staged.into_iter().flatten()) {
            *slot = Some((id.clone(), acc.committed));
            if self.settlement.is_some() {
                if let Some(crossed) = acc.settlement_due(id) {
                    events.push(crossed);
                }
            }
            self.write_back(id, acc);
        }
        Ok((moved, events))
    }

    /// Commits `ops` after the open batch: every op sets an absolute balance, so they must
    /// reach the store in the order the keeper computed them.
    fn persist(&mut self, ops: Vec<StoreOp>) -> Commit {
        self.flush_batch();
        self.persist_now(ops)
    }

    fn persist_now(&mut self, ops: Vec<StoreOp>) -> Commit {
        if self.commits.len() >= self.prune_at {
            self.commits.retain(|c| c.peek().is_none());
            self.prune_at = (self.commits.len() * 2).max(MIN_PRUNE_AT);
        }
        let commit = self.store.commit(ops).shared();
        self.commits.push(commit.clone());
        commit
    }

    /// Adds a fulfilled packet's ops to the open batch (opening one, and scheduling its flush,
    /// if none is); resolves with the batch's commit.
    fn stage(
        &mut self,
        moved: Moved,
        events: Vec<SettleThresholdCrossed>,
        record: Option<replay::FulfillRecord>,
        received: Option<Received>,
        sent: Option<(AccountId, u64)>,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let batch = self.batch.get_or_insert_with(|| {
            ctx.notify(FlushBatch);
            Batch::default()
        });
        for (account, balance) in moved.into_iter().flatten() {
            batch.set_balance(account, balance);
        }
        if let Some(record) = record {
            batch.records.push(record);
        }
        if let Some(received) = &received {
            let event = self.log.stage(received, &mut batch.received);
            if self.feed.is_some() {
                batch.announce.push(event);
            }
        }
        if let Some((payment, amount)) = &sent {
            self.log.add_sent(self.store.as_ref(), payment, *amount);
        }
        batch.events.extend(events);
        let (tx, rx) = oneshot::channel();
        batch.waiters.push(tx);
        async move {
            rx.await.unwrap_or_else(|_| {
                Err(StoreError::Io(
                    "the balance keeper stopped before the commit".into(),
                ))
            })
        }
    }

    /// Commits the open batch, if any, and answers its packets once the commit landed. The
    /// commit is awaited by a task on this actor's arbiter: the store's writer thread wakes
    /// whoever awaits it, and waking a task of a tokio current-thread runtime from another
    /// thread costs a syscall each, while the arbiter's LocalSet takes one coalesced wake-up.
    fn flush_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let mut ops = batch.ops;
        ops.extend(batch.records.into_op());
        ops.extend(batch.received);
        self.log.finish_batch(&mut ops);
        let commit = self.persist_now(ops);
        let done = self.finish(commit, batch.events, ());
        let feed = self.feed.clone().filter(|_| !batch.announce.is_empty());
        actix::spawn(async move {
            let result = done.await;
            for waiter in batch.waiters {
                let _ = waiter.send(result.clone());
            }
            if let (Some(feed), Ok(())) = (feed, &result) {
                for event in batch.announce {
                    // No subscriber is no error.
                    let _ = feed.send(event);
                }
            }
        });
    }

    /// Awaits `commit`; on success sends the settlement events and answers `ok`; on failure
    /// marks the keeper poisoned and crashes it so the restart reloads from the store.
    fn finish<T: Send + 'static>(
        &self,
        commit: Commit,
        events: Vec<SettleThresholdCrossed>,
        ok: T,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static {
        // Cloned only when needed: an actix address clone allocates (twice).
        let settlement = if events.is_empty() {
            None
        } else {
            self.settlement.clone()
        };
        let poisoned = self.poisoned.clone();
        // Set in `started`, before any message is handled.
        let me = self.me.clone();
        async move {
            match commit.await {
                Ok(()) => {
                    if let Some(settlement) = settlement {
                        for e in events {
                            settlement.do_send(e);
                        }
                    }
                    Ok(ok)
                }
                Err(e) => {
                    poisoned.store(true, Ordering::SeqCst);
                    if let Some(me) = me {
                        me.do_send(Crash);
                    }
                    Err(e)
                }
            }
        }
    }

    fn refuse_if_poisoned(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Io(
                "a balance commit failed; the keeper is reloading from the store".into(),
            ));
        }
        Ok(())
    }
}

impl Actor for BalanceKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervise::PACKET_PATH_MAILBOX);
        self.me = Some(Arc::new(ctx.address()));
        let delay = self.backoff.delay();
        // Commits issued before a restart must land before the balances are read back; no
        // message is handled until they are.
        let in_flight: Vec<Commit> = std::mem::take(&mut self.commits);
        let store = self.store.clone();
        ctx.wait(
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                future::join_all(in_flight).await;
                read_off_thread(store, |s| Ok((s.load_balances()?, PaymentLog::load(s)?))).await
            }
            .into_actor(self)
            .map(|loaded, act, ctx| act.reload(loaded, ctx)),
        );
        if self.record_gc.is_some() {
            self.collect_records(ctx);
            ctx.run_interval(RECORD_GC_PERIOD, |act, ctx| act.collect_records(ctx));
        }
    }
}

impl actix::Supervised for BalanceKeeper {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Packets already applied are committed: `started` waits for it before reloading.
        self.flush_batch();
        self.backoff.on_restart();
        self.reservations.clear();
    }
}

impl Handler<ReservePacket> for BalanceKeeper {
    type Result = Result<ReservationId, BalanceError>;

    fn handle(&mut self, msg: ReservePacket, _ctx: &mut Self::Context) -> Self::Result {
        self.reserve(&msg)
    }
}

impl Handler<ResolvePacket> for BalanceKeeper {
    type Result = Reply<Result<(), StoreError>>;

    fn handle(&mut self, msg: ResolvePacket, ctx: &mut Self::Context) -> Self::Result {
        let known = self.reservations.remove(&msg.id);
        if let Some(r) = &known {
            self.release(r);
        }
        if !msg.fulfilled {
            return Reply::ready(Ok(()));
        }
        let reservation = match known {
            Some(r) => r,
            // Reserved before a restart: the reservation is gone but the packet was paid.
            None if msg.id.0 < self.incarnation_start => Reservation {
                incoming: msg.incoming,
                outgoing: msg.outgoing,
            },
            // Already resolved (or never issued): committing again would count it twice.
            None => return Reply::ready(Ok(())),
        };
        if let Err(e) = self.refuse_if_poisoned() {
            return Reply::ready(Err(e));
        }
        let (moved, events) = match self.commit_packet(&reservation) {
            Ok(x) => x,
            Err(e) => return Reply::ready(Err(e)),
        };
        if moved.iter().all(Option::is_none) {
            return Reply::ready(Ok(()));
        }
        Reply::later(self.stage(moved, events, msg.record, msg.received, msg.sent, ctx))
    }
}

impl Handler<RecordReceived> for BalanceKeeper {
    type Result = ();

    fn handle(&mut self, msg: RecordReceived, ctx: &mut Self::Context) {
        if self.refuse_if_poisoned().is_err() {
            return;
        }
        // Nothing waits for it: the event lands with the next batch's commit.
        drop(self.stage([None, None], Vec::new(), None, Some(msg.0), None, ctx));
    }
}

impl Handler<RecordSent> for BalanceKeeper {
    type Result = ();

    fn handle(&mut self, msg: RecordSent, ctx: &mut Self::Context) {
        if self.refuse_if_poisoned().is_err() {
            return;
        }
        let mut msg = msg;
        // What the keeper booked is exact; the payment's own figure may miss packets that were
        // still being answered when it stopped.
        if let Some(total) = self.log.sent_total(&msg.0.summary.id) {
            msg.0.sent = msg.0.sent.max(total);
        }
        // Opens a batch if none is open; nothing waits for it.
        drop(self.stage([None, None], Vec::new(), None, None, None, ctx));
        if let Some(batch) = &mut self.batch {
            let event = self.log.stage_sent(&msg.0, &mut batch.received);
            self.log.payment_ended(&msg.0.summary.id);
            if self.feed.is_some() {
                batch.announce.push(event);
            }
        }
    }
}

impl BalanceKeeper {
    /// The commit of the open batch (opened if none is) as a token operation's answer.
    fn token_answer(
        &mut self,
        ctx: &mut Context<Self>,
        balance: u64,
    ) -> Reply<Result<u64, TokenSpendError>> {
        let commit = self.stage([None, None], Vec::new(), None, None, None, ctx);
        Reply::later(async move {
            commit
                .await
                .map(|()| balance)
                .map_err(|e| TokenSpendError::Store(e.to_string()))
        })
    }
}

impl Handler<SpendToken> for BalanceKeeper {
    type Result = Reply<Result<u64, TokenSpendError>>;

    fn handle(&mut self, msg: SpendToken, ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.refuse_if_poisoned() {
            return Reply::ready(Err(TokenSpendError::Store(e.to_string())));
        }
        match self.log.token_spend(&msg.account, &msg.token, msg.price) {
            Ok(left) => self.token_answer(ctx, left),
            Err(short) => Reply::ready(Err(TokenSpendError::Short {
                balance: short.balance,
            })),
        }
    }
}

impl Handler<RefundToken> for BalanceKeeper {
    type Result = Reply<Result<u64, TokenSpendError>>;

    fn handle(&mut self, msg: RefundToken, ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.refuse_if_poisoned() {
            return Reply::ready(Err(TokenSpendError::Store(e.to_string())));
        }
        let balance = self.log.token_refund(&msg.account, &msg.token, msg.amount);
        self.token_answer(ctx, balance)
    }
}

impl Handler<ExpireToken> for BalanceKeeper {
    type Result = Reply<Result<u64, TokenSpendError>>;

    fn handle(&mut self, msg: ExpireToken, ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.refuse_if_poisoned() {
            return Reply::ready(Err(TokenSpendError::Store(e.to_string())));
        }
        let expired = self.log.token_expire(&msg.account, &msg.token);
        self.token_answer(ctx, expired)
    }
}

impl Handler<TokenBalance> for BalanceKeeper {
    type Result = u64;

    fn handle(&mut self, msg: TokenBalance, _ctx: &mut Self::Context) -> u64 {
        self.log.token_balance(&msg.account, &msg.token)
    }
}

impl Handler<GetTokens> for BalanceKeeper {
    type Result = MessageResult<GetTokens>;

    fn handle(&mut self, msg: GetTokens, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.log.tokens(&msg.account))
    }
}

impl Handler<FlushBatch> for BalanceKeeper {
    type Result = ();

    fn handle(&mut self, _: FlushBatch, _ctx: &mut Self::Context) {
        self.flush_batch();
    }
}

impl Handler<GetBalance> for BalanceKeeper {
    type Result = Option<BalanceSnapshot>;

    fn handle(&mut self, msg: GetBalance, _ctx: &mut Self::Context) -> Self::Result {
        self.accounts.get(&msg.account).map(Account::snapshot)
    }
}

impl Handler<ReckonSettlement> for BalanceKeeper {
    type Result = Option<u64>;

    fn handle(&mut self, msg: ReckonSettlement, _ctx: &mut Self::Context) -> Self::Result {
        let acc = self.accounts.get_mut(&msg.account)?;
        acc.settle_requested = false;
        let amount = if msg.force {
            let short = i128::from(acc.limits.settle_to) - i128::from(acc.committed);
            u64::try_from(short).ok().filter(|a| *a > 0)
        } else {
            Balance::new(acc.committed).settle_amount(&acc.limits)
        };
        acc.settle_requested = amount.is_some();
        amount
    }
}

impl Handler<ApplySettlement> for BalanceKeeper {
    type Result = AtomicResponse<Self, Result<bool, StoreError>>;

    /// The settlement's record is read off the actor thread; the keeper handles no other
    /// message meanwhile, so two copies of one id can never both find it absent.
    fn handle(&mut self, msg: ApplySettlement, _ctx: &mut Self::Context) -> Self::Result {
        self.settlements.retain(|_, c| c.peek().is_none());
        if let Some(first) = self.settlements.get(&msg.settlement_id) {
            // A repeat while the first is being written: answer once it is durable.
            let first = first.clone();
            return AtomicResponse::new(Box::pin(
                async move { first.await.map(|()| false) }.into_actor(self),
            ));
        }
        if let Err(e) = self.refuse_if_poisoned() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let key = ilp::settle::record_key(&msg.settlement_id);
        let read_key = key.clone();
        let read = read_off_thread(self.store.clone(), move |s| s.get_record(&read_key));
        AtomicResponse::new(Box::pin(read.into_actor(self).then(
            move |found, act, _ctx| -> Pin<Box<dyn ActorFuture<Self, Output = _>>> {
                match found {
                    Err(e) => Box::pin(fut::ready(Err(e))),
                    Ok(Some(_)) => {
                        // Applied before (a settlement resumed after a restart): the request
                        // it answered is done all the same.
                        if msg.direction == SettlementDirection::Sent {
                            let asked = act.sent_applied(&msg.account, msg.settlement_id);
                            if let (Some(settlement), Some(asked)) = (&act.settlement, asked) {
                                settlement.do_send(asked);
                            }
                        }
                        Box::pin(fut::ready(Ok(false)))
                    }
                    Ok(None) => Box::pin(act.apply_settlement(msg, key).into_actor(act)),
                }
            },
        )))
    }
}

impl BalanceKeeper {
    /// A settlement we sent to `account` was applied (now, or before the keeper started): the
    /// request it answered is done, and the balance is reckoned again.
    fn sent_applied(
        &mut self,
        account: &AccountId,
        settlement_id: [u8; 16],
    ) -> Option<SettleThresholdCrossed> {
        let settling = self.settlement.is_some();
        let acc = self.accounts.get_mut(account)?;
        acc.settle_requested = false;
        acc.last_sent = Some(settlement_id);
        if settling {
            acc.settlement_due(account)
        } else {
            None
        }
    }

    /// Books a settlement whose id has no record yet, with its record, durably.
    fn apply_settlement(
        &mut self,
        msg: ApplySettlement,
        key: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut value = Vec::with_capacity(9);
        value.push(match msg.direction {
            SettlementDirection::Sent => b'S',
            SettlementDirection::Received => b'R',
        });
        value.extend_from_slice(&msg.amount.to_be_bytes());
        let mut ops = Vec::with_capacity(2);
        let mut events = Vec::new();
        let settling = self.settlement.is_some();
        if let Some(acc) = self.accounts.get_mut(&msg.account) {
            let delta = match msg.direction {
                SettlementDirection::Sent => i128::from(msg.amount),
                SettlementDirection::Received => -i128::from(msg.amount),
            };
            let Ok(committed) = add(acc.committed, delta) else {
                return Box::pin(future::ready(Err(overflow(&msg.account))));
            };
            acc.committed = committed;
            ops.push(StoreOp::SetBalance {
                account: msg.account.clone(),
                balance: committed,
            });
        }
        if msg.direction == SettlementDirection::Sent {
            events.extend(self.sent_applied(&msg.account, msg.settlement_id));
        } else if settling {
            if let Some(acc) = self.accounts.get_mut(&msg.account) {
                events.extend(acc.settlement_due(&msg.account));
            }
        }
        // An account without a balance still records the id, so it is applied once.
        ops.push(StoreOp::PutRecord { key, value });
        ops.extend(msg.also);
        let commit = self.persist(ops);
        self.settlements.insert(msg.settlement_id, commit.clone());
        Box::pin(self.finish(commit, events, true))
    }
}

/// A reload: the balance limits of every account that keeps a balance. An account new to the
/// keeper starts from its committed balance in the store; one left out is no longer tracked
/// (its committed balance stays in the store, and comes back if the account does).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct UpdateLimits(pub BTreeMap<AccountId, BalanceLimits>);

impl Handler<UpdateLimits> for BalanceKeeper {
    type Result = AtomicResponse<Self, Result<(), StoreError>>;

    /// The committed balances of accounts new to the keeper are read off the actor thread;
    /// no packet is handled meanwhile, so none sees such an account before its balance.
    fn handle(&mut self, msg: UpdateLimits, _ctx: &mut Self::Context) -> Self::Result {
        let new_accounts = msg.0.keys().any(|id| !self.accounts.contains_key(id));
        let store = self.store.clone();
        let read = async move {
            if new_accounts {
                read_off_thread(store, |s| s.load_balances()).await
            } else {
                Ok(BTreeMap::new())
            }
        };
        AtomicResponse::new(Box::pin(read.into_actor(self).map(
            move |stored, act, _ctx| {
                let stored = stored?;
                act.accounts.retain(|id, _| msg.0.contains_key(id));
                for (id, limits) in msg.0 {
                    match act.accounts.get_mut(&id) {
                        Some(acc) => acc.limits = limits,
                        None => {
                            let mut acc = Account::new(limits);
                            acc.committed = stored.get(&*id).copied().unwrap_or(0);
                            act.accounts.insert(id, acc);
                        }
                    }
                }
                Ok(())
            },
        )))
    }
}

impl Handler<AdjustBalance> for BalanceKeeper {
    type Result = ResponseFuture<Result<i64, AdjustBalanceError>>;

    /// An operator's correction: moves the committed balance and persists it like a
    /// settlement (answered once durable); may trigger a settlement like any other change.
    fn handle(&mut self, msg: AdjustBalance, _ctx: &mut Self::Context) -> Self::Result {
        let refuse = |e: AdjustBalanceError| -> Self::Result { Box::pin(future::ready(Err(e))) };
        if let Err(e) = self.refuse_if_poisoned() {
            return refuse(e.into());
        }
        let settling = self.settlement.is_some();
        let Some(acc) = self.accounts.get_mut(&msg.account) else {
            return refuse(AdjustBalanceError::UnknownAccount(msg.account));
        };
        let Ok(committed) = add(acc.committed, i128::from(msg.adjust)) else {
            return refuse(AdjustBalanceError::Overflow(msg.account));
        };
        acc.committed = committed;
        let mut events = Vec::new();
        if settling {
            if let Some(crossed) = acc.settlement_due(&msg.account) {
                events.push(crossed);
            }
        }
        let commit = self.persist(vec![StoreOp::SetBalance {
            account: msg.account.clone(),
            balance: committed,
        }]);
        let done = self.finish(commit, events, committed);
        Box::pin(async move { done.await.map_err(AdjustBalanceError::from) })
    }
}

crate::supervise::stop_on_crash!(BalanceKeeper);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::messages::Crash;
    use crate::store::memory::MemoryStore;
    use crate::test_support::run;
    use futures::channel::oneshot;
    use ilp::packet::ErrorCode;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A store that logs every batch, can hold commits until the test releases them, and can
    /// fail commits on demand.
    #[derive(Clone, Default)]
    pub(crate) struct FakeStore {
        pub(crate) inner: MemoryStore,
        gated: Arc<AtomicBool>,
        fail: Arc<AtomicBool>,
        gates: Arc<Mutex<VecDeque<oneshot::Sender<()>>>>,
        batches: Arc<Mutex<Vec<Vec<StoreOp>>>>,
        /// The thread of every read, in order.
        reads: Arc<Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl FakeStore {
        pub(crate) fn gate(&self, on: bool) {
            self.gated.store(on, Ordering::SeqCst);
        }
        pub(crate) fn fail(&self, on: bool) {
            self.fail.store(on, Ordering::SeqCst);
        }
        /// Lets the oldest held commit resolve.
        pub(crate) fn release_one(&self) {
            let tx = self.gates.lock().unwrap().pop_front().unwrap();
            tx.send(()).unwrap();
        }
        pub(crate) fn held(&self) -> usize {
            self.gates.lock().unwrap().len()
        }
        pub(crate) fn batches(&self) -> Vec<Vec<StoreOp>> {
            self.batches.lock().unwrap().clone()
        }
        pub(crate) fn settle_records(&self) -> usize {
            self.batches()
                .iter()
                .flatten()
                .filter(|op| matches!(op, StoreOp::PutRecord { key, .. } if key.starts_with(b"settle/")))
                .count()
        }
    }

    impl Store for FakeStore {
        fn load_balances(&self) -> Result<BTreeMap<String, i64>, StoreError> {
            self.reads.lock().unwrap().push(std::thread::current().id());
            self.inner.load_balances()
        }
        fn get_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.reads.lock().unwrap().push(std::thread::current().id());
            self.inner.get_record(key)
        }
        fn scan_records(
            &self,
            from: &[u8],
            to: &[u8],
        ) -> Result<Vec<crate::store::Record>, StoreError> {
            self.inner.scan_records(from, to)
        }
        fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>> {
            self.batches.lock().unwrap().push(ops.clone());
            if self.fail.load(Ordering::SeqCst) {
                return Box::pin(future::ready(Err(StoreError::Io("injected".into()))));
            }
            if !self.gated.load(Ordering::SeqCst) {
                return self.inner.commit(ops);
            }
            let (tx, rx) = oneshot::channel();
            self.gates.lock().unwrap().push_back(tx);
            let inner = self.inner.clone();
            Box::pin(async move {
                let _ = rx.await;
                inner.commit(ops).await
            })
        }
    }

    /// Collects the settlement requests the keeper sends.
    #[derive(Default)]
    pub(crate) struct Events(pub(crate) Arc<Mutex<Vec<(AccountId, u64)>>>);

    impl Actor for Events {
        type Context = Context<Self>;
    }

    impl Handler<SettleThresholdCrossed> for Events {
        type Result = ();
        fn handle(&mut self, msg: SettleThresholdCrossed, _ctx: &mut Self::Context) {
            self.0.lock().unwrap().push((msg.account, msg.amount));
        }
    }

    pub(crate) fn limits(
        minimum: Option<i64>,
        maximum: Option<i64>,
        settle_threshold: Option<i64>,
        settle_to: i64,
    ) -> BalanceLimits {
        BalanceLimits {
            minimum,
            maximum,
            settle_threshold,
            settle_to,
        }
    }

    pub(crate) fn start(
        store: &FakeStore,
        accounts: &[(&str, BalanceLimits)],
        settlement: Option<Recipient<SettleThresholdCrossed>>,
    ) -> Addr<BalanceKeeper> {
        let accounts: BTreeMap<AccountId, BalanceLimits> = accounts
            .iter()
            .map(|(id, l)| (AccountId::from(*id), *l))
            .collect();
        let store: Arc<dyn Store> = Arc::new(store.clone());
        Supervisor::start(move |_| BalanceKeeper::new(accounts, store, settlement))
    }

    fn acc(id: &str) -> AccountId {
        AccountId::from(id)
    }

    fn reserve(incoming: Option<(&str, u64)>, outgoing: Option<(&str, u64)>) -> ReservePacket {
        ReservePacket {
            incoming: incoming.map(|(a, n)| (acc(a), n)),
            outgoing: outgoing.map(|(a, n)| (acc(a), n)),
        }
    }

    fn resolve(id: ReservationId, r: &ReservePacket, fulfilled: bool) -> ResolvePacket {
        ResolvePacket {
            id,
            incoming: r.incoming.clone(),
            outgoing: r.outgoing.clone(),
            fulfilled,
            record: None,
            received: None,
            sent: None,
        }
    }

    pub(crate) async fn balance(k: &Addr<BalanceKeeper>, id: &str) -> BalanceSnapshot {
        k.send(GetBalance { account: acc(id) })
            .await
            .unwrap()
            .unwrap()
    }

    fn settle(
        id: u8,
        account: &str,
        amount: u64,
        direction: SettlementDirection,
    ) -> ApplySettlement {
        ApplySettlement {
            account: acc(account),
            settlement_id: [id; 16],
            amount,
            direction,
            also: Vec::new(),
        }
    }

    /// Lets queued messages (do_send) be processed.
    async fn settle_down() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// A packet paid on credentials tagged `pt:<token>` credits the token in its batch;
    /// requests spend from it, never more than it holds however many come at once; a refund
    /// gives back; all of it survives a restart; and the balances plus what was spent always
    /// equal what the tagged packets paid.
    #[test]
    fn paid_http_tokens_are_credited_spent_and_refunded_durably() {
        run(async {
            let store = FakeStore::default();
            let k = start(
                &store,
                &[
                    ("payer", limits(None, None, None, 0)),
                    ("api", limits(None, None, None, 0)),
                ],
                None,
            );
            let pay = |amount: u64, tag: &str| {
                let k = k.clone();
                let tag = tag.to_owned();
                async move {
                    let r = reserve(Some(("payer", amount)), Some(("api", amount)));
                    let id = k.send(r.clone()).await.unwrap().unwrap();
                    let mut resolve = resolve(id, &r, true);
                    resolve.received = Some(crate::payment_log::Received {
                        account: acc("api"),
                        from: acc("payer"),
                        amount,
                        connection: [1; 16],
                        protocol: "psk2",
                        tag: Some(tag),
                        totals: vec![],
                        receipts: false,
                        closed: false,
                        at: ilp::packet::Timestamp::from_unix_millis(1_700_000_000_000),
                    });
                    k.send(resolve).await.unwrap().await.unwrap();
                }
            };
            pay(55, "pt:tok1").await;
            pay(7, "invoice-9").await; // not a token's: no token credited
            let spend = |price: u64| {
                k.send(SpendToken {
                    account: acc("api"),
                    token: "tok1".into(),
                    price,
                })
            };
            // Twenty requests of 10 at once against 55: exactly five are served.
            let answers = future::join_all((0..20).map(|_| spend(10))).await;
            let mut served = 0;
            for answer in answers {
                match answer.unwrap().await {
                    Ok(_) => served += 1,
                    Err(TokenSpendError::Short { balance }) => assert!(balance < 10),
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(served, 5);
            let refunded = k
                .send(RefundToken {
                    account: acc("api"),
                    token: "tok1".into(),
                    amount: 10,
                })
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(refunded, 15);
            let (tokens, spent) = k
                .send(GetTokens {
                    account: acc("api"),
                })
                .await
                .unwrap();
            assert_eq!(tokens, vec![("tok1".to_owned(), 15)]);
            assert_eq!(spent, 40);
            let held: u64 = tokens.iter().map(|(_, b)| b).sum();
            assert_eq!(
                held + spent,
                55,
                "balances plus spent are what the tagged packets paid"
            );
            // After a restart, from the store alone.
            drop(k);
            let k = start(
                &store,
                &[
                    ("payer", limits(None, None, None, 0)),
                    ("api", limits(None, None, None, 0)),
                ],
                None,
            );
            let (tokens, spent) = k
                .send(GetTokens {
                    account: acc("api"),
                })
                .await
                .unwrap();
            assert_eq!((tokens, spent), (vec![("tok1".to_owned(), 15)], 40));
            let short = k
                .send(SpendToken {
                    account: acc("api"),
                    token: "tok1".into(),
                    price: 16,
                })
                .await
                .unwrap()
                .await;
            assert_eq!(short, Err(TokenSpendError::Short { balance: 15 }));
            let unknown = k
                .send(SpendToken {
                    account: acc("api"),
                    token: "nobody".into(),
                    price: 1,
                })
                .await
                .unwrap()
                .await;
            assert_eq!(unknown, Err(TokenSpendError::Short { balance: 0 }));
            // An operator expires it: what it held counts as spent, durably.
            let expired = k
                .send(ExpireToken {
                    account: acc("api"),
                    token: "tok1".into(),
                })
                .await
                .unwrap()
                .await;
            assert_eq!(expired, Ok(15));
            drop(k);
            let k = start(&store, &[("api", limits(None, None, None, 0))], None);
            let (tokens, spent) = k
                .send(GetTokens {
                    account: acc("api"),
                })
                .await
                .unwrap();
            assert_eq!((tokens, spent), (vec![], 55));
        });
    }

    #[test]
    fn store_reads_run_off_the_actor_thread() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", limits(None, None, None, 0))], None);
            // Start-up reload.
            balance(&k, "a").await;
            // A settlement's record check.
            let applied = k
                .send(settle(1, "a", 5, SettlementDirection::Received))
                .await
                .unwrap()
                .unwrap();
            assert!(applied);
            // A reload that adds an account.
            k.send(UpdateLimits(BTreeMap::from([
                (acc("a"), limits(None, None, None, 0)),
                (acc("b"), limits(None, None, None, 0)),
            ])))
            .await
            .unwrap()
            .unwrap();
            let actor_thread = std::thread::current().id();
            let reads = store.reads.lock().unwrap().clone();
            assert_eq!(reads.len(), 3, "{reads:?}");
            assert!(
                reads.iter().all(|t| *t != actor_thread),
                "a store read ran on the actor thread"
            );
            assert_eq!(balance(&k, "a").await.balance, -5);
        });
    }

    #[test]
    fn maximum_refuses_with_t04() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", limits(None, Some(100), None, 0))], None);
            k.send(reserve(Some(("a", 60)), None))
                .await
                .unwrap()
                .unwrap();
            let e = k
                .send(reserve(Some(("a", 41)), None))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(
                e,
                BalanceError::ExceedsMaximum {
                    balance: 60,
                    amount: 41,
                    maximum: 100
                }
            );
            assert_eq!(e.code(), ErrorCode::T04_INSUFFICIENT_LIQUIDITY);
            k.send(reserve(Some(("a", 40)), None))
                .await
                .unwrap()
                .unwrap();
            let b = balance(&k, "a").await;
            assert_eq!((b.balance, b.pending_incoming), (0, 100));
        });
    }

    #[test]
    fn minimum_refuses_with_t04() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", limits(Some(-100), None, None, 0))], None);
            k.send(reserve(None, Some(("a", 60))))
                .await
                .unwrap()
                .unwrap();
            // Money still on its way in does not count as available.
            k.send(reserve(Some(("a", 1000)), None))
                .await
                .unwrap()
                .unwrap();
            let e = k
                .send(reserve(None, Some(("a", 41))))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(
                e,
                BalanceError::BelowMinimum {
                    available: -60,
                    amount: 41,
                    minimum: -100
                }
            );
            assert_eq!(e.code(), ErrorCode::T04_INSUFFICIENT_LIQUIDITY);
            k.send(reserve(None, Some(("a", 40))))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(balance(&k, "a").await.pending_outgoing, 100);
        });
    }

    #[test]
    fn overflow_is_t00() {
        run(async {
            let store = FakeStore::default();
            store
                .inner
                .commit(vec![
                    StoreOp::SetBalance {
                        account: "hi".into(),
                        balance: i64::MAX,
                    },
                    StoreOp::SetBalance {
                        account: "lo".into(),
                        balance: i64::MIN,
                    },
                ])
                .await
                .unwrap();
            let open = BalanceLimits::default();
            let k = start(&store, &[("hi", open), ("lo", open), ("z", open)], None);
            for r in [
                reserve(Some(("hi", 1)), None),
                reserve(None, Some(("lo", 1))),
                reserve(Some(("z", u64::MAX)), None),
            ] {
                let e = k.send(r).await.unwrap().unwrap_err();
                assert_eq!(e, BalanceError::Overflow);
                assert_eq!(e.code(), ErrorCode::T00_INTERNAL_ERROR);
            }
            assert_eq!(balance(&k, "hi").await.balance, i64::MAX);
            assert_eq!(balance(&k, "z").await.pending_incoming, 0);
        });
    }

    #[test]
    fn both_accounts_are_checked_atomically() {
        run(async {
            let store = FakeStore::default();
            let k = start(
                &store,
                &[
                    ("a", limits(None, Some(100), None, 0)),
                    ("b", limits(Some(-50), None, None, 0)),
                ],
                None,
            );
            let e = k
                .send(reserve(Some(("a", 10)), Some(("b", 60))))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::T04_INSUFFICIENT_LIQUIDITY);
            assert_eq!(balance(&k, "a").await, BalanceSnapshot::default());
            k.send(reserve(Some(("a", 10)), Some(("b", 50))))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(balance(&k, "a").await.pending_incoming, 10);
            assert_eq!(balance(&k, "b").await.pending_outgoing, 50);
            // An account without limits configured passes untracked.
            k.send(reserve(Some(("nobody", u64::MAX)), None))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                k.send(GetBalance {
                    account: acc("nobody")
                })
                .await
                .unwrap(),
                None
            );
        });
    }

    /// One account on both sides (a payment reflected back to its sender): the outgoing check
    /// sees the incoming reservation, a refusal leaves nothing reserved, and the commit writes
    /// the net change once.
    #[test]
    fn one_account_on_both_sides_reserves_and_commits_net() {
        run(async {
            let store = FakeStore::default();
            let k = start(
                &store,
                &[("a", limits(Some(-50), Some(1000), None, 0))],
                None,
            );
            let refused = reserve(Some(("a", 100)), Some(("a", 60)));
            assert!(k.send(refused).await.unwrap().is_err());
            assert_eq!(balance(&k, "a").await, BalanceSnapshot::default());
            let both = reserve(Some(("a", 100)), Some(("a", 30)));
            let id = k.send(both.clone()).await.unwrap().unwrap();
            let held = balance(&k, "a").await;
            assert_eq!((held.pending_incoming, held.pending_outgoing), (100, 30));
            k.send(resolve(id, &both, true))
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(
                balance(&k, "a").await,
                BalanceSnapshot {
                    balance: 70,
                    pending_incoming: 0,
                    pending_outgoing: 0
                }
            );
            assert_eq!(
                store.batches(),
                vec![vec![StoreOp::SetBalance {
                    account: "a".into(),
                    balance: 70
                }]]
            );
        });
    }

    #[test]
    fn a_batch_keeps_one_balance_per_account_among_its_first_entries() {
        let mut batch = Batch::default();
        let ids: Vec<AccountId> = (0..20)
            .map(|n| AccountId::from(format!("acc{n}")))
            .collect();
        for (n, id) in ids.iter().enumerate() {
            batch.set_balance(id.clone(), n as i64);
        }
        // Equal ids need not be the same allocation.
        batch.set_balance(AccountId::from("acc3"), -3);
        batch.set_balance(ids[18].clone(), -18);
        let entries: Vec<(String, i64)> = batch
            .ops
            .iter()
            .map(|op| match op {
                StoreOp::SetBalance { account, balance } => (account.to_string(), *balance),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(entries.len(), 21);
        assert_eq!(entries[3], ("acc3".into(), -3));
        // Past the scanned entries an update is appended: the last value still wins.
        assert_eq!(entries[18], ("acc18".into(), 18));
        assert_eq!(entries[20], ("acc18".into(), -18));
    }

    /// Packets resolved in one go share a store commit; a settlement handled between them
    /// splits the batch, so the absolute balances reach the store in the order computed.
    #[test]
    fn resolves_handled_together_share_a_commit_in_order_with_a_settlement() {
        run(async {
            let store = FakeStore::default();
            let none = || limits(None, None, None, 0);
            let k = start(&store, &[("a", none()), ("b", none())], None);
            let pay = reserve(Some(("a", 10)), Some(("b", 10)));
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(k.send(pay.clone()).await.unwrap().unwrap());
            }
            // Queued before the keeper runs again: handled in one pass of its mailbox.
            let first = k.send(resolve(ids[0], &pay, true));
            let second = k.send(resolve(ids[1], &pay, true));
            let settlement = k.send(settle(1, "a", 5, SettlementDirection::Received));
            let third = k.send(resolve(ids[2], &pay, true));
            let (first, second, settlement, third) =
                futures::join!(first, second, settlement, third);
            let (first, second, third) = (first.unwrap(), second.unwrap(), third.unwrap());
            assert_eq!(settlement.unwrap(), Ok(true));
            let (first, second, third) = futures::join!(first, second, third);
            assert_eq!((first, second, third), (Ok(()), Ok(()), Ok(())));
            let balance_ops = |batch: &Vec<StoreOp>| -> Vec<(String, i64)> {
                batch
                    .iter()
                    .filter_map(|op| match op {
                        StoreOp::SetBalance { account, balance } => {
                            Some((account.to_string(), *balance))
                        }
                        _ => None,
                    })
                    .collect()
            };
            let batches: Vec<Vec<(String, i64)>> =
                store.batches().iter().map(balance_ops).collect();
            assert_eq!(
                batches,
                vec![
                    // One entry per account: the batch keeps each account's latest balance.
                    vec![("a".into(), 20), ("b".into(), -20)],
                    vec![("a".into(), 15)],
                    vec![("a".into(), 25), ("b".into(), -30)],
                ]
            );
            assert_eq!(
                store.load_balances().unwrap(),
                BTreeMap::from([("a".to_owned(), 25), ("b".to_owned(), -30)])
            );
        });
    }

    #[test]
    fn fulfill_is_answered_only_once_durable() {
        run(async {
            let store = FakeStore::default();
            let events = Events::default();
            let seen = events.0.clone();
            let ev = events.start();
            let k = start(
                &store,
                &[
                    ("a", limits(None, Some(1000), None, 0)),
                    ("b", limits(Some(-1000), None, Some(-50), 0)),
                ],
                Some(ev.recipient()),
            );
            let r = reserve(Some(("a", 100)), Some(("b", 90)));
            let id = k.send(r.clone()).await.unwrap().unwrap();
            store.gate(true);
            let reply = actix::spawn(k.send(resolve(id, &r, true)).map(|r| r.unwrap()).flatten());
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(!reply.is_finished());
            // No settlement request either before the balance is durable.
            assert!(seen.lock().unwrap().is_empty());
            assert_eq!(store.held(), 1);
            assert_eq!(
                store.batches(),
                vec![vec![
                    StoreOp::SetBalance {
                        account: "a".into(),
                        balance: 100
                    },
                    StoreOp::SetBalance {
                        account: "b".into(),
                        balance: -90
                    },
                ]]
            );
            assert_eq!(store.load_balances().unwrap().get("a"), None);
            store.release_one();
            reply.await.unwrap().unwrap();
            let stored = store.load_balances().unwrap();
            assert_eq!((stored["a"], stored["b"]), (100, -90));
            // Incoming raises (a owes us), outgoing lowers (we owe b).
            assert_eq!(
                balance(&k, "a").await,
                BalanceSnapshot {
                    balance: 100,
                    ..Default::default()
                }
            );
            assert_eq!(balance(&k, "b").await.balance, -90);
            settle_down().await;
            assert_eq!(*seen.lock().unwrap(), vec![(acc("b"), 90)]);
        });
    }

    #[test]
    fn reject_rolls_back() {
        run(async {
            let store = FakeStore::default();
            let k = start(
                &store,
                &[
                    ("a", limits(None, Some(100), None, 0)),
                    ("b", limits(Some(-100), None, None, 0)),
                ],
                None,
            );
            let r = reserve(Some(("a", 100)), Some(("b", 100)));
            let id = k.send(r.clone()).await.unwrap().unwrap();
            k.send(resolve(id, &r, false)).await.unwrap().await.unwrap();
            assert_eq!(balance(&k, "a").await, BalanceSnapshot::default());
            assert_eq!(balance(&k, "b").await, BalanceSnapshot::default());
            assert!(store.batches().is_empty());
            // The limits are free again.
            k.send(r).await.unwrap().unwrap();
        });
    }

    #[test]
    fn resolving_twice_commits_once() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            let r = reserve(Some(("a", 7)), None);
            let id = k.send(r.clone()).await.unwrap().unwrap();
            k.send(resolve(id, &r, true)).await.unwrap().await.unwrap();
            k.send(resolve(id, &r, true)).await.unwrap().await.unwrap();
            assert_eq!(balance(&k, "a").await.balance, 7);
            assert_eq!(store.batches().len(), 1);
        });
    }

    #[test]
    fn unknown_reservation_after_restart() {
        run(async {
            let store = FakeStore::default();
            let k = start(
                &store,
                &[
                    ("a", limits(None, Some(1000), None, 0)),
                    ("b", limits(Some(-1000), None, None, 0)),
                ],
                None,
            );
            let paid = reserve(Some(("a", 100)), Some(("b", 90)));
            let refused = reserve(Some(("a", 5)), Some(("b", 4)));
            let id1 = k.send(paid.clone()).await.unwrap().unwrap();
            let id2 = k.send(refused.clone()).await.unwrap().unwrap();
            k.send(Crash).await.unwrap();
            // Volatile reservations are gone after the restart.
            assert_eq!(balance(&k, "a").await, BalanceSnapshot::default());
            k.send(resolve(id1, &paid, true))
                .await
                .unwrap()
                .await
                .unwrap();
            k.send(resolve(id2, &refused, false))
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(balance(&k, "a").await.balance, 100);
            assert_eq!(balance(&k, "b").await.balance, -90);
            assert_eq!(balance(&k, "a").await.pending_incoming, 0);
            let stored = store.load_balances().unwrap();
            assert_eq!((stored["a"], stored["b"]), (100, -90));
            // Ids stay unique across restarts.
            let id3 = k.send(refused.clone()).await.unwrap().unwrap();
            assert!(id3 > id2);
        });
    }

    #[test]
    fn restart_reloads_committed_balances() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            let r = reserve(Some(("a", 42)), None);
            let id = k.send(r.clone()).await.unwrap().unwrap();
            k.send(resolve(id, &r, true)).await.unwrap().await.unwrap();
            store
                .inner
                .commit(vec![StoreOp::SetBalance {
                    account: "a".into(),
                    balance: -8,
                }])
                .await
                .unwrap();
            assert_eq!(balance(&k, "a").await.balance, 42);
            k.send(Crash).await.unwrap();
            assert_eq!(balance(&k, "a").await.balance, -8);
        });
    }

    #[test]
    fn restart_waits_for_commits_in_flight() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            let r = reserve(Some(("a", 42)), None);
            let id = k.send(r.clone()).await.unwrap().unwrap();
            store.gate(true);
            let reply = actix::spawn(k.send(resolve(id, &r, true)).map(|r| r.unwrap()).flatten());
            settle_down().await;
            k.do_send(Crash);
            let snapshot = actix::spawn(k.send(GetBalance { account: acc("a") }));
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(!snapshot.is_finished());
            store.release_one();
            reply.await.unwrap().unwrap();
            assert_eq!(snapshot.await.unwrap().unwrap().unwrap().balance, 42);
        });
    }

    #[test]
    fn threshold_crossing_requests_settlement_once() {
        run(async {
            let store = FakeStore::default();
            let events = Events::default();
            let seen = events.0.clone();
            let k = start(
                &store,
                &[("a", limits(Some(-1000), None, Some(-100), 0))],
                Some(events.start().recipient()),
            );
            let pay = |n| reserve(None, Some(("a", n)));
            for n in [50, 50] {
                let id = k.send(pay(n)).await.unwrap().unwrap();
                k.send(resolve(id, &pay(n), true))
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            settle_down().await;
            // -100 is not below the threshold of -100.
            assert!(seen.lock().unwrap().is_empty());
            for n in [50, 120] {
                let id = k.send(pay(n)).await.unwrap().unwrap();
                k.send(resolve(id, &pay(n), true))
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            settle_down().await;
            // Asked once, for settle_to - balance at the crossing.
            assert_eq!(*seen.lock().unwrap(), vec![(acc("a"), 150)]);
            assert_eq!(balance(&k, "a").await.balance, -270);
            let applied = k
                .send(settle(1, "a", 150, SettlementDirection::Sent))
                .await
                .unwrap();
            assert_eq!(applied, Ok(true));
            settle_down().await;
            // Still below after the settlement: asked again for what is left.
            assert_eq!(
                *seen.lock().unwrap(),
                vec![(acc("a"), 150), (acc("a"), 120)]
            );
            let applied = k
                .send(settle(2, "a", 120, SettlementDirection::Sent))
                .await
                .unwrap();
            assert_eq!(applied, Ok(true));
            settle_down().await;
            assert_eq!(seen.lock().unwrap().len(), 2);
            assert_eq!(balance(&k, "a").await.balance, 0);
        });
    }

    #[test]
    fn settlement_applies_once_per_id() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            let sent = settle(1, "a", 100, SettlementDirection::Sent);
            let received = settle(2, "a", 30, SettlementDirection::Received);
            assert_eq!(k.send(sent.clone()).await.unwrap(), Ok(true));
            assert_eq!(balance(&k, "a").await.balance, 100);
            assert_eq!(k.send(sent.clone()).await.unwrap(), Ok(false));
            assert_eq!(k.send(received.clone()).await.unwrap(), Ok(true));
            assert_eq!(balance(&k, "a").await.balance, 70);
            assert_eq!(
                store.batches()[0],
                vec![
                    StoreOp::SetBalance {
                        account: "a".into(),
                        balance: 100
                    },
                    StoreOp::PutRecord {
                        key: format!("settle/{}", "01".repeat(16)).into_bytes(),
                        value: [&b"S"[..], &100u64.to_be_bytes()].concat(),
                    },
                ]
            );
            k.send(Crash).await.unwrap();
            assert_eq!(k.send(sent).await.unwrap(), Ok(false));
            assert_eq!(k.send(received).await.unwrap(), Ok(false));
            assert_eq!(balance(&k, "a").await.balance, 70);
            assert_eq!(store.settle_records(), 2);
            // An account without a balance still applies each id once.
            let other = settle(3, "nobody", 5, SettlementDirection::Received);
            assert_eq!(k.send(other.clone()).await.unwrap(), Ok(true));
            assert_eq!(k.send(other).await.unwrap(), Ok(false));
        });
    }

    #[test]
    fn repeated_settlement_waits_for_the_first_commit() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            store.gate(true);
            let m = settle(9, "a", 10, SettlementDirection::Received);
            let first = actix::spawn(k.send(m.clone()));
            let second = actix::spawn(k.send(m));
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(!first.is_finished() && !second.is_finished());
            store.release_one();
            assert_eq!(first.await.unwrap().unwrap(), Ok(true));
            assert_eq!(second.await.unwrap().unwrap(), Ok(false));
            assert_eq!(store.batches().len(), 1);
            assert_eq!(balance(&k, "a").await.balance, -10);
        });
    }

    #[test]
    fn settlement_overflow_is_refused() {
        run(async {
            let store = FakeStore::default();
            store
                .inner
                .commit(vec![StoreOp::SetBalance {
                    account: "a".into(),
                    balance: i64::MAX,
                }])
                .await
                .unwrap();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            let r = k
                .send(settle(1, "a", 1, SettlementDirection::Sent))
                .await
                .unwrap();
            assert!(matches!(r, Err(StoreError::Corrupt(_))));
            assert_eq!(balance(&k, "a").await.balance, i64::MAX);
            assert!(store.batches().is_empty());
        });
    }

    #[test]
    fn store_failure_is_reported_and_balances_reload() {
        run(async {
            let store = FakeStore::default();
            let k = start(&store, &[("a", BalanceLimits::default())], None);
            let r = reserve(Some(("a", 5)), None);
            let id = k.send(r.clone()).await.unwrap().unwrap();
            store.fail(true);
            let e = k
                .send(resolve(id, &r, true))
                .await
                .unwrap()
                .await
                .unwrap_err();
            assert_eq!(e, StoreError::Io("injected".into()));
            let e = k
                .send(settle(1, "a", 5, SettlementDirection::Sent))
                .await
                .unwrap();
            assert!(e.is_err());
            store.fail(false);
            settle_down().await;
            // The keeper restarted and serves the store's balance again.
            assert_eq!(balance(&k, "a").await.balance, 0);
            assert_eq!(
                k.send(settle(1, "a", 5, SettlementDirection::Sent))
                    .await
                    .unwrap(),
                Ok(true)
            );
            assert_eq!(balance(&k, "a").await.balance, 5);
        });
    }

    #[test]
    fn adjust_balance_is_durable_and_checked() {
        run(async {
            let store = FakeStore::default();
            let (events, log) = {
                let e = Events::default();
                let log = e.0.clone();
                (e.start(), log)
            };
            let k = start(
                &store,
                &[("a", limits(None, None, Some(-100), 0))],
                Some(events.recipient()),
            );
            let adjust = |account: &str, adjust| AdjustBalance {
                account: acc(account),
                adjust,
            };
            assert_eq!(k.send(adjust("a", 40)).await.unwrap(), Ok(40));
            assert_eq!(k.send(adjust("a", -150)).await.unwrap(), Ok(-110));
            assert_eq!(
                store.inner.load_balances().unwrap(),
                BTreeMap::from([("a".to_owned(), -110)])
            );
            settle_down().await;
            // Below the settle threshold: a settlement of 110 brings it back to 0.
            assert_eq!(*log.lock().unwrap(), vec![(acc("a"), 110)]);
            assert_eq!(
                k.send(adjust("nobody", 1)).await.unwrap(),
                Err(AdjustBalanceError::UnknownAccount(acc("nobody")))
            );
            assert_eq!(
                k.send(adjust("a", i64::MIN)).await.unwrap(),
                Err(AdjustBalanceError::Overflow(acc("a")))
            );
            assert_eq!(balance(&k, "a").await.balance, -110);
            // Survives a restart: it was committed.
            k.send(Crash).await.unwrap();
            assert_eq!(balance(&k, "a").await.balance, -110);
        });
    }
}
