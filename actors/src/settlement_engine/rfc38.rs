//! The SettlementEngine's accounts that settle through an RFC 38 settlement engine
//! (`settlement_engine_url`), see [`ilp::rfc38`].
//!
//! Paying the peer: when the BalanceKeeper reports an account below its settle threshold, the
//! actor books the settlement first, as the RFC requires: one batch moves the balance, writes
//! the settlement's id (a version-4 UUID, its idempotency key) with the request, and adds it to
//! the account's settlement ledger. Only then does it ask the engine, with that key, again and
//! again (doubling pauses with jitter, up to a minute) until the engine acknowledges it, across
//! restarts (the request is read back from the store at start), and deletes the request. A
//! settlement the engine could not make on its ledger is the engine's to retry: it is never
//! refunded to the balance. One settlement per account is asked for at a time; one more
//! shortfall reported meanwhile is reckoned again on the balance of the moment once the first
//! is acknowledged, so while an engine is down the balance keeps moving toward its limit and
//! packets beyond it are rejected (T04) by the keeper.
//!
//! Being paid: the engine credits what the peer paid through the settlement API
//! ([`crate::settlement_api`]) with [`CreditSettlement`]. Each credit is booked once per account
//! and idempotency key, in one batch with its answer (replayed to a repeat, 409 to the same key
//! with another quantity), the ledger entry and the leftover below one unit of the account.
//!
//! Messages: the engine's messages to its peer go out as `peer.settle` Prepares
//! ([`SendEngineMessage`]); those that come in from an engine account are handed to our engine
//! and answered with its reply, as interledger-rs does.

use super::SettlementEngine;
use crate::clock::Clock;
use crate::engine_client::{EngineCallError, EngineClient};
use crate::messages::{
    ask, AccountId, ApplySettlement, PacketResult, ReckonSettlement, SendPrepare,
    SettlementDirection,
};
use crate::store::{read_off_thread, Store, StoreError, StoreOp};
use actix::prelude::*;
use bytes::Bytes;
use ilp::packet::{Address, ErrorCode, Prepare, Reject, RejectBuilder, MAX_DATA_LEN};
use ilp::rfc38::{
    self, check_message, credit_digest, credit_input_hash, engine_failure_code, keys,
    message_fulfill, message_prepare, Direction, IdempotentAnswer, LedgerEntry, Leftover,
    OutgoingSettlement, Quantity, Repeat,
};
use ilp::settle::SETTLE_DESTINATION;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// First pause before asking an engine again, doubled per attempt up to [`RETRY_CAP_MS`].
const RETRY_BASE_MS: u64 = 500;
/// Longest pause between two attempts (the RFC allows up to an hour).
const RETRY_CAP_MS: u64 = 60_000;

/// An account settled through an engine.
#[derive(Clone)]
pub struct EngineAccount {
    /// The engine's base URL.
    pub url: Url,
    /// The account's asset scale: what we settle in, and what credits are converted to.
    pub scale: u8,
    /// The account's PeerAccount, which carries the engine's messages to the peer.
    pub peer: Recipient<SendPrepare>,
}

/// What the admin API and `/metrics` show of an account's settlements, in the account's units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SettlementStats {
    /// Settlements the engine acknowledged (it pays them, retrying on its ledger as needed).
    pub settled_out: u128,
    /// Booked (the balance moved) and not yet acknowledged by the engine.
    pub pending: u128,
    /// Settlements the engine credited to us.
    pub settled_in: u128,
    /// The latest failure to reach the engine or to have it accept a request, and when (Unix
    /// ms); kept after later successes, with its time.
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<u64>,
}

/// One settlement asked of the engine: booked yet or not.
#[derive(Debug, Clone)]
struct Outgoing {
    settlement: OutgoingSettlement,
    booked: bool,
}

/// What to do once the settlement being sent is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// Settle what the balance is short of then (`force`: down to `settle_to` at all).
    Reckon { force: bool },
    /// Settle this amount (an operator's request).
    Amount(u64),
}

/// An engine account's settlements.
#[derive(Default)]
pub(super) struct Book {
    /// Booked or about to be, oldest first; the first is the one being driven (several only
    /// when a crash left more than one behind).
    outgoing: VecDeque<Outgoing>,
    queued: Option<Queued>,
    /// A task drives the first of `outgoing`, or the keeper is being asked for an amount.
    busy: bool,
    /// The engine has acknowledged `POST /accounts` for this account since we started.
    created: Arc<AtomicBool>,
    /// A task is telling the engine about the account.
    creating: bool,
    stats: Arc<Mutex<SettlementStats>>,
}

/// The RFC 38 part of the SettlementEngine's state.
#[derive(Default)]
pub(super) struct Engines {
    pub(super) accounts: BTreeMap<AccountId, EngineAccount>,
    pub(super) books: BTreeMap<AccountId, Book>,
    client: Option<EngineClient>,
    reckon: Option<Recipient<ReckonSettlement>>,
    /// The settlements left in the store were read.
    loaded: bool,
    /// Settlement ids drawn by this process (mixed into each new id).
    drawn: u64,
}

/// What one step of an outgoing settlement ended with.
enum Step {
    /// Booked (now, or by an earlier run that a restart interrupted).
    Booked,
    /// The id belongs to an earlier settlement: draw another.
    IdTaken,
    /// The engine acknowledged it and the request is deleted.
    Acknowledged,
}

fn lock(stats: &Mutex<SettlementStats>) -> std::sync::MutexGuard<'_, SettlementStats> {
    match stats.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn note_error(stats: &Mutex<SettlementStats>, clock: &Clock, error: &str) {
    let mut s = lock(stats);
    s.last_error = Some(error.to_owned());
    s.last_error_at_ms = Some(clock.now_ms());
}

impl Engines {
    pub(super) fn new(
        accounts: BTreeMap<AccountId, EngineAccount>,
        client: EngineClient,
        reckon: Recipient<ReckonSettlement>,
    ) -> Self {
        Engines {
            accounts,
            client: Some(client),
            reckon: Some(reckon),
            ..Engines::default()
        }
    }

    pub(super) fn serves(&self, account: &str) -> bool {
        self.accounts.contains_key(account)
    }

    /// Reads the settlements a previous run left unacknowledged, and the ledger's totals.
    fn load(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let (from, to) = keys::range(keys::OUTGOING);
        for (_, value) in store.scan_records(&from, &to)? {
            // A record this version cannot read is left alone rather than guessed at.
            let Ok(settlement) = OutgoingSettlement::decode(&value) else {
                continue;
            };
            let book = self
                .books
                .entry(AccountId::from(settlement.account.as_str()))
                .or_default();
            lock(&book.stats).pending += u128::from(settlement.amount);
            book.outgoing.push_back(Outgoing {
                settlement,
                booked: true,
            });
        }
        let (from, to) = keys::range(keys::LOG);
        for (key, value) in store.scan_records(&from, &to)? {
            let (Some(account), Some(entry)) = (log_account(&key), LedgerEntry::decode(&value))
            else {
                continue;
            };
            let book = self
                .books
                .entry(AccountId::from(account.as_str()))
                .or_default();
            let mut stats = lock(&book.stats);
            match entry.direction {
                Direction::Out => stats.settled_out += u128::from(entry.amount),
                Direction::In => stats.settled_in += u128::from(entry.amount),
            }
        }
        // What is still pending was counted as settled by its ledger entry.
        for book in self.books.values() {
            let mut stats = lock(&book.stats);
            stats.settled_out = stats.settled_out.saturating_sub(stats.pending);
        }
        self.loaded = true;
        Ok(())
    }

    /// The stats of every engine account (configured now, or with settlements on record).
    pub(super) fn stats(&self) -> BTreeMap<AccountId, SettlementStats> {
        let mut out: BTreeMap<AccountId, SettlementStats> = self
            .books
            .iter()
            .map(|(id, b)| (id.clone(), lock(&b.stats).clone()))
            .collect();
        for id in self.accounts.keys() {
            out.entry(id.clone()).or_default();
        }
        out
    }
}

/// The account of a ledger key `rfc38-log/<hex account>/<hex id>`.
fn log_account(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(keys::LOG.as_bytes())?;
    let hex_account = rest.split(|b| *b == b'/').next()?;
    String::from_utf8(hex::decode(hex_account).ok()?).ok()
}

impl SettlementEngine {
    /// Sets up the RFC 38 accounts at start: reads what the store holds once, then resumes
    /// every unacknowledged settlement and tells each engine about its accounts.
    pub(super) fn start_engines(&mut self, ctx: &mut Context<Self>) -> Result<(), StoreError> {
        if !self.engines.loaded {
            self.engines.load(self.store.as_ref())?;
        }
        for book in self.engines.books.values_mut() {
            book.busy = false;
            book.creating = false;
        }
        let accounts: Vec<AccountId> = self.engines.books.keys().cloned().collect();
        for account in accounts {
            self.drive_engine(account, ctx);
        }
        let configured: Vec<AccountId> = self.engines.accounts.keys().cloned().collect();
        for account in configured {
            self.resync_engine(account, ctx);
        }
        self.create_engine_accounts(ctx);
        Ok(())
    }

    /// Starts telling each engine about its accounts that it has not acknowledged yet (a
    /// settlement being sent tells it too, first: telling it twice is harmless).
    fn create_engine_accounts(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.engines.client.clone() else {
            return;
        };
        for (id, account) in &self.engines.accounts {
            let book = self.engines.books.entry(id.clone()).or_default();
            if book.created.load(Ordering::Relaxed) || book.creating {
                continue;
            }
            book.creating = true;
            let work = create_account(
                client.clone(),
                account.url.clone(),
                id.clone(),
                book.created.clone(),
                book.stats.clone(),
                self.clock,
            );
            let id = id.clone();
            ctx.spawn(work.into_actor(self).map(move |(), act, _ctx| {
                if let Some(book) = act.engines.books.get_mut(&id) {
                    book.creating = false;
                }
            }));
        }
    }

    /// A fresh settlement id: random, mixed with the clock and a count of ids drawn, so a
    /// node restarted on the same seed (a simulation) still never repeats one.
    fn draw_settlement_id(&mut self) -> [u8; 16] {
        let mut random = [0u8; 16];
        self.rng.fill_bytes(&mut random);
        self.engines.drawn += 1;
        let mut h = Sha256::new();
        h.update(random);
        h.update(self.clock.now_ms().to_be_bytes());
        h.update(self.engines.drawn.to_be_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        rfc38::uuid_v4(id)
    }

    /// The keeper reported `amount` short on engine account `account`.
    pub(super) fn engine_shortfall(
        &mut self,
        account: AccountId,
        amount: u64,
        ctx: &mut Context<Self>,
    ) {
        let book = self.engines.books.entry(account.clone()).or_default();
        if book.busy || !book.outgoing.is_empty() {
            // Reckoned again once the one in progress is acknowledged.
            if book.queued.is_none() {
                book.queued = Some(Queued::Reckon { force: false });
            }
            return;
        }
        self.queue_engine_settlement(account, amount, ctx);
    }

    fn queue_engine_settlement(
        &mut self,
        account: AccountId,
        amount: u64,
        ctx: &mut Context<Self>,
    ) {
        let Some((scale, url)) = self
            .engines
            .accounts
            .get(&account)
            .map(|a| (a.scale, a.url.clone()))
        else {
            return;
        };
        let id = self.draw_settlement_id();
        let book = self.engines.books.entry(account.clone()).or_default();
        book.outgoing.push_back(Outgoing {
            settlement: OutgoingSettlement {
                id,
                account: account.to_string(),
                amount,
                scale,
                engine: url.to_string(),
            },
            booked: false,
        });
        self.drive_engine(account, ctx);
    }

    /// Runs the next step of the first settlement of `account`, unless a task already does. A
    /// booked settlement is asked of the engine it was booked for, configured or not (that
    /// engine may have paid it); one not booked yet is dropped when the account no longer has
    /// an engine (nothing moved). With nothing left, what was queued starts.
    fn drive_engine(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let configured_url = self.engines.accounts.get(&account).map(|a| a.url.clone());
        let configured = configured_url.is_some();
        let (Some(client), Some(book)) = (
            self.engines.client.clone(),
            self.engines.books.get_mut(&account),
        ) else {
            return;
        };
        if book.busy {
            return;
        }
        while book
            .outgoing
            .front()
            .is_some_and(|f| !f.booked && !configured)
        {
            book.outgoing.pop_front();
        }
        let Some(first) = book.outgoing.front().cloned() else {
            self.engine_idle(account, ctx);
            return;
        };
        let Ok(url) = Url::parse(&first.settlement.engine) else {
            // Written by this version from a parsed URL: never seen, but never guessed at.
            return;
        };
        // Whether the engine knows the account is known for the configured engine only; a
        // settlement booked with another tells that one on its own.
        let created = if configured_url.as_ref() == Some(&url) {
            book.created.clone()
        } else {
            Arc::new(AtomicBool::new(false))
        };
        book.busy = true;
        let task = OutgoingTask {
            account: account.clone(),
            settlement: first.settlement,
            keeper: self.balance.clone(),
            store: self.store.clone(),
            client,
            url,
            created,
            stats: book.stats.clone(),
            clock: self.clock,
        };
        let work: futures::future::BoxFuture<'static, Step> = if first.booked {
            Box::pin(task.send())
        } else {
            Box::pin(task.book())
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |step, act, ctx| act.engine_step_done(account, step, ctx)),
        );
    }

    fn engine_step_done(&mut self, account: AccountId, step: Step, ctx: &mut Context<Self>) {
        let Some(book) = self.engines.books.get_mut(&account) else {
            return;
        };
        book.busy = false;
        match step {
            Step::Booked => {
                if let Some(first) = book.outgoing.front_mut() {
                    first.booked = true;
                    lock(&book.stats).pending += u128::from(first.settlement.amount);
                }
            }
            Step::IdTaken => {
                let id = self.draw_settlement_id();
                if let Some(first) = self
                    .engines
                    .books
                    .get_mut(&account)
                    .and_then(|b| b.outgoing.front_mut())
                {
                    first.settlement.id = id;
                }
            }
            Step::Acknowledged => {
                if let Some(done) = book.outgoing.pop_front() {
                    let mut stats = lock(&book.stats);
                    let amount = u128::from(done.settlement.amount);
                    stats.pending = stats.pending.saturating_sub(amount);
                    stats.settled_out += amount;
                }
            }
        }
        self.drive_engine(account, ctx);
    }

    /// Nothing is being settled with `account`: what was queued meanwhile starts.
    fn engine_idle(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let Some(book) = self.engines.books.get_mut(&account) else {
            return;
        };
        if book.busy || !book.outgoing.is_empty() {
            return;
        }
        let queued = book.queued.take();
        if !self.engines.serves(&account) {
            // The account settles no more through an engine (a reload): nothing to ask.
            return;
        }
        match queued {
            Some(Queued::Amount(amount)) => self.queue_engine_settlement(account, amount, ctx),
            Some(Queued::Reckon { force }) => self.reckon_engine_settlement(account, force, ctx),
            None => {}
        }
    }

    /// After a start or a reload: the keeper may have reported a shortfall whose handling died
    /// with a task, and it reports no other until asked; so it is asked (now, or after the
    /// settlement in progress).
    fn resync_engine(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let book = self.engines.books.entry(account.clone()).or_default();
        if book.queued.is_none() {
            book.queued = Some(Queued::Reckon { force: false });
        }
        self.engine_idle(account, ctx);
    }

    /// Asks the keeper what `account` is short of now, and settles that.
    fn reckon_engine_settlement(
        &mut self,
        account: AccountId,
        force: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(reckon) = self.engines.reckon.clone() else {
            return;
        };
        if let Some(book) = self.engines.books.get_mut(&account) {
            book.busy = true;
        }
        let ask = ReckonSettlement {
            account: account.clone(),
            force,
        };
        ctx.spawn(
            async move { reckon.send(ask).await.ok().flatten() }
                .into_actor(self)
                .map(move |amount, act, ctx| {
                    if let Some(book) = act.engines.books.get_mut(&account) {
                        book.busy = false;
                    }
                    match amount {
                        // A reload may have made it a bilateral account meanwhile: the amount
                        // the keeper now counts as asked for is settled that way.
                        Some(amount) if !act.engines.serves(&account) => {
                            if act.accounts.contains_key(&account) {
                                act.start_settlement(account, amount, ctx);
                            }
                        }
                        Some(amount) => act.queue_engine_settlement(account, amount, ctx),
                        // A shortfall reported while the keeper was asked is asked again
                        // (once it answers nothing is due, it reports the next one afresh).
                        None => act.engine_idle(account, ctx),
                    }
                }),
        );
    }

    /// A reload: the engine accounts now configured. Settlements booked keep going to the
    /// engine they were booked for (the debit is in the balance already), whatever the account
    /// is now; unbooked ones of an account without an engine are dropped.
    pub(super) fn update_engines(
        &mut self,
        accounts: BTreeMap<AccountId, EngineAccount>,
        ctx: &mut Context<Self>,
    ) {
        for (id, account) in &accounts {
            let changed = self
                .engines
                .accounts
                .get(id)
                .is_none_or(|old| old.url != account.url);
            if changed {
                if let Some(book) = self.engines.books.get(id) {
                    book.created.store(false, Ordering::Relaxed);
                }
            }
        }
        self.engines.accounts = accounts;
        let ids: Vec<AccountId> = self.engines.books.keys().cloned().collect();
        for id in ids {
            self.drive_engine(id, ctx);
        }
        let configured: Vec<AccountId> = self.engines.accounts.keys().cloned().collect();
        for account in configured {
            self.resync_engine(account, ctx);
        }
        self.create_engine_accounts(ctx);
    }

    /// A `peer.settle` Prepare from an engine account: our engine's reply, as a Fulfill.
    pub(super) fn engine_message_from_peer(
        &self,
        account: AccountId,
        prepare: Prepare,
    ) -> ResponseFuture<PacketResult> {
        let settle_address = Address::try_from(SETTLE_DESTINATION).ok();
        let reject = move |code: ErrorCode, message: &str, data: &[u8]| -> Reject {
            RejectBuilder {
                code,
                triggered_by: settle_address.as_ref(),
                message,
                data,
            }
            .build()
            .unwrap_or_else(|_| Reject::new(code, settle_address.as_ref(), message))
        };
        if let Err(e) = check_message(&prepare, self.clock.now()) {
            let r = reject(e.code(), &e.to_string(), &[]);
            return Box::pin(futures::future::ready(Err(r)));
        }
        let (Some(engine), Some(client)) = (
            self.engines.accounts.get(&account).cloned(),
            self.engines.client.clone(),
        ) else {
            let r = reject(ErrorCode::T00_INTERNAL_ERROR, "no settlement engine", &[]);
            return Box::pin(futures::future::ready(Err(r)));
        };
        // Our engine must answer before the peer gives up on the Prepare.
        let expires_at = self.clock.instant_at(prepare.expires_at());
        let data = Bytes::copy_from_slice(prepare.data());
        Box::pin(async move {
            let call = client.message(&engine.url, &account, data);
            let answer = match tokio::time::timeout_at(expires_at, call).await {
                Ok(answer) => answer,
                Err(_) => Err(EngineCallError::Transport(
                    "no answer before the message expired".into(),
                )),
            };
            match answer {
                Ok(reply) => message_fulfill(&reply).map_err(|_| {
                    reject(
                        ErrorCode::T00_INTERNAL_ERROR,
                        "the settlement engine's reply does not fit in a Fulfill",
                        &[],
                    )
                }),
                Err(e) => {
                    let data: &[u8] = match &e {
                        EngineCallError::Status { body, .. } => body,
                        EngineCallError::Transport(_) => &[],
                    };
                    let data = &data[..data.len().min(MAX_DATA_LEN)];
                    let message = format!("settlement engine: {e}");
                    Err(reject(engine_failure_code(e.status()), &message, data))
                }
            }
        })
    }
}

/// Tells the engine about `account` until it acknowledges.
async fn create_account(
    client: EngineClient,
    url: Url,
    account: AccountId,
    created: Arc<AtomicBool>,
    stats: Arc<Mutex<SettlementStats>>,
    clock: Clock,
) {
    let mut attempt = 0u32;
    while !created.load(Ordering::Relaxed) {
        match client.create_account(&url, &account).await {
            Ok(()) => created.store(true, Ordering::Relaxed),
            Err(e) => {
                note_error(&stats, &clock, &format!("engine POST /accounts: {e}"));
                pause(attempt).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

async fn pause(attempt: u32) {
    let random = rand::random::<u64>();
    let ms = rfc38::backoff_ms(attempt, RETRY_BASE_MS, RETRY_CAP_MS, random);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Everything one step of an outgoing settlement needs, owned by its task.
struct OutgoingTask {
    account: AccountId,
    settlement: OutgoingSettlement,
    keeper: Recipient<ApplySettlement>,
    store: Arc<dyn Store>,
    client: EngineClient,
    url: Url,
    created: Arc<AtomicBool>,
    stats: Arc<Mutex<SettlementStats>>,
    clock: Clock,
}

impl OutgoingTask {
    /// Books the settlement: the balance moves, and the request and its ledger entry are
    /// written, in one batch. Repeated until the keeper answers; a repeat after a lost answer
    /// finds the request written (booked) or an older settlement's id (drawn again).
    async fn book(self) -> Step {
        let s = &self.settlement;
        let entry = LedgerEntry {
            direction: Direction::Out,
            amount: s.amount,
            at_ms: self.clock.now_ms(),
        };
        let apply = ApplySettlement {
            account: self.account.clone(),
            settlement_id: s.id,
            amount: s.amount,
            direction: SettlementDirection::Sent,
            also: vec![
                StoreOp::PutRecord {
                    key: s.key(),
                    value: s.encode(),
                },
                StoreOp::PutRecord {
                    key: keys::log(&s.account, &s.id),
                    value: entry.encode(),
                },
            ],
        };
        let mut attempt = 0u32;
        loop {
            match self.keeper.send(apply.clone()).await {
                Ok(Ok(true)) => return Step::Booked,
                Ok(Ok(false)) => {
                    let key = s.key();
                    match read_off_thread(self.store.clone(), move |st| st.get_record(&key)).await {
                        Ok(Some(_)) => return Step::Booked,
                        Ok(None) => return Step::IdTaken,
                        Err(e) => note_error(&self.stats, &self.clock, &e.to_string()),
                    }
                }
                Ok(Err(e)) => note_error(&self.stats, &self.clock, &e.to_string()),
                Err(e) => note_error(&self.stats, &self.clock, &e.to_string()),
            }
            pause(attempt).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// Asks the engine to pay, with the settlement's key, until it acknowledges; then deletes
    /// the request.
    async fn send(self) -> Step {
        let s = &self.settlement;
        let key = s.idempotency_key();
        let quantity = s.quantity();
        let mut attempt = 0u32;
        loop {
            if !self.created.load(Ordering::Relaxed) {
                match self.client.create_account(&self.url, &self.account).await {
                    Ok(()) => self.created.store(true, Ordering::Relaxed),
                    Err(e) => {
                        note_error(
                            &self.stats,
                            &self.clock,
                            &format!("engine POST /accounts: {e}"),
                        );
                        pause(attempt).await;
                        attempt = attempt.saturating_add(1);
                        continue;
                    }
                }
            }
            match self
                .client
                .settle(&self.url, &self.account, &key, &quantity)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    // An engine that lost the account is told about it again first.
                    if e.status() == Some(404) {
                        self.created.store(false, Ordering::Relaxed);
                    }
                    note_error(
                        &self.stats,
                        &self.clock,
                        &format!("engine settlement {key} of {}: {e}", s.amount),
                    );
                }
            }
            pause(attempt).await;
            attempt = attempt.saturating_add(1);
        }
        let mut attempt = 0u32;
        while self
            .store
            .commit(vec![StoreOp::DeleteRecord { key: s.key() }])
            .await
            .is_err()
        {
            pause(attempt).await;
            attempt = attempt.saturating_add(1);
        }
        Step::Acknowledged
    }
}

/// An answer of the settlement API: status, body, and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Bytes,
    pub content_type: &'static str,
}

impl ApiAnswer {
    pub fn ok(status: u16, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        ApiAnswer {
            status,
            body: body.into(),
            content_type,
        }
    }

    /// An RFC 7807 problem, as interledger-rs answers errors.
    pub fn problem(status: u16, title: &str, detail: &str) -> Self {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
        });
        ApiAnswer {
            status,
            body: Bytes::from(body.to_string()),
            content_type: "application/problem+json",
        }
    }
}

/// Checks what every keyed amount request (a credit here, a settlement at an engine) must
/// carry: an `Idempotency-Key`, and an amount in decimal digits. Returns both.
pub fn keyed_check(
    idempotency_key: Option<&str>,
    quantity: &Quantity,
) -> Result<(String, rfc38::BigUint), ApiAnswer> {
    let Some(key) = idempotency_key else {
        return Err(ApiAnswer::problem(
            400,
            "Missing Idempotency-Key",
            "a settlement must carry an Idempotency-Key header",
        ));
    };
    rfc38::check_idempotency_key(key)
        .map_err(|e| ApiAnswer::problem(400, "Bad Idempotency-Key", e))?;
    let amount = quantity
        .parse_amount()
        .map_err(|e| ApiAnswer::problem(400, "Bad quantity", &e.to_string()))?;
    Ok((key.to_owned(), amount))
}

/// A keyed amount request as the store sees it: where its key's answer and the account's
/// leftover are kept, the request's hash, and the answer it gets the first time.
pub struct Keyed {
    pub answer_key: Vec<u8>,
    pub leftover_key: Vec<u8>,
    pub input_hash: [u8; 32],
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub at_ms: u64,
}

/// A keyed request seen for the first time: the amount at the scale it was converted to, the
/// records to write in the batch that books it (its answer, the account's new leftover), and
/// the answer to give once that batch is durable.
pub struct Converted {
    pub amount: rfc38::Rescaled,
    pub ops: Vec<StoreOp>,
    pub answer: ApiAnswer,
}

impl Keyed {
    /// Reads the key's answer and the leftover: a key seen before gets its answer again (409
    /// for another request under it); a new one is converted from scale `from` to `to` with
    /// the leftover. The caller serializes requests of one account.
    pub async fn convert(
        self,
        store: Arc<dyn Store>,
        amount: &rfc38::BigUint,
        from: u8,
        to: u8,
    ) -> Result<Converted, ApiAnswer> {
        let internal =
            |e: &dyn std::fmt::Display| ApiAnswer::problem(500, "Not recorded", &e.to_string());
        let read = (self.answer_key.clone(), self.leftover_key.clone());
        let (prior, leftover) = read_off_thread(store, move |s| {
            Ok((s.get_record(&read.0)?, s.get_record(&read.1)?))
        })
        .await
        .map_err(|e| internal(&e))?;
        if let Some(prior) = prior {
            return Err(
                match IdempotentAnswer::decode(&prior).map(|p| p.repeat(&self.input_hash)) {
                    Ok(Repeat::Same { status, body }) => {
                        ApiAnswer::ok(status, body, self.content_type)
                    }
                    Ok(Repeat::Conflict) => ApiAnswer::problem(
                        409,
                        "Idempotency key reused",
                        "this Idempotency-Key was used for another settlement",
                    ),
                    Err(e) => internal(&e),
                },
            );
        }
        let leftover = leftover
            .map(|l| Leftover::decode(&l))
            .transpose()
            .map_err(|e| internal(&e))?
            .unwrap_or_default();
        let rescaled = rfc38::rescale(amount, from, &leftover, to);
        let answer = IdempotentAnswer {
            input_hash: self.input_hash,
            status: 201,
            body: self.body.clone(),
            at_ms: self.at_ms,
        };
        let leftover_op = if rescaled.leftover.is_zero() {
            StoreOp::DeleteRecord {
                key: self.leftover_key,
            }
        } else {
            StoreOp::PutRecord {
                key: self.leftover_key,
                value: rescaled.leftover.encode(),
            }
        };
        Ok(Converted {
            amount: rescaled,
            ops: vec![
                StoreOp::PutRecord {
                    key: self.answer_key,
                    value: answer.encode(),
                },
                leftover_op,
            ],
            answer: ApiAnswer::ok(201, self.body, self.content_type),
        })
    }
}

/// The engine of `account` credits an incoming settlement (`POST
/// /accounts/<account>/settlements` of the settlement API).
#[derive(Debug, Clone, Message)]
#[rtype(result = "ApiAnswer")]
pub struct CreditSettlement {
    pub account: String,
    pub idempotency_key: Option<String>,
    pub quantity: Quantity,
}

/// The engine of `account` sends its peer's engine a message (`POST
/// /accounts/<account>/messages`); the answer carries the reply.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ApiAnswer")]
pub struct SendEngineMessage {
    pub account: String,
    pub message: Bytes,
}

/// The settlement stats of every engine account.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "BTreeMap<AccountId, SettlementStats>")]
pub struct GetSettlementStats;

/// An operator asks to settle with `account` now: `amount`, or what brings the balance up to
/// `settle_to`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<TriggerOutcome, TriggerError>")]
pub struct TriggerSettlement {
    pub account: AccountId,
    pub amount: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TriggerOutcome {
    /// The settlement is being booked and sent.
    Started { amount: u64 },
    /// Another is in progress: this one follows it.
    Queued,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("account {0} settles neither through an engine nor bilaterally")]
    NotSettled(AccountId),
    #[error("the balance with {0} is at or above its settle_to: nothing to settle")]
    NothingDue(AccountId),
    #[error("a settlement with {0} is in flight; try again once it is done")]
    Busy(AccountId),
    #[error("the amount to settle must be positive")]
    Zero,
}

impl Handler<GetSettlementStats> for SettlementEngine {
    type Result = MessageResult<GetSettlementStats>;

    fn handle(&mut self, _msg: GetSettlementStats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.engines.stats())
    }
}

impl Handler<TriggerSettlement> for SettlementEngine {
    type Result = ResponseActFuture<Self, Result<TriggerOutcome, TriggerError>>;

    fn handle(&mut self, msg: TriggerSettlement, ctx: &mut Self::Context) -> Self::Result {
        let account = msg.account;
        if msg.amount == Some(0) {
            return Box::pin(fut::ready(Err(TriggerError::Zero)));
        }
        let engine = self.engines.serves(&account);
        if !engine && !self.accounts.contains_key(&account) {
            return Box::pin(fut::ready(Err(TriggerError::NotSettled(account))));
        }
        if engine {
            let book = self.engines.books.entry(account.clone()).or_default();
            if book.busy || !book.outgoing.is_empty() {
                // One request waits at a time; an operator's amount is never replaced unseen.
                if matches!(book.queued, Some(Queued::Amount(_))) {
                    return Box::pin(fut::ready(Err(TriggerError::Busy(account))));
                }
                book.queued = Some(match msg.amount {
                    Some(a) => Queued::Amount(a),
                    None => Queued::Reckon { force: true },
                });
                return Box::pin(fut::ready(Ok(TriggerOutcome::Queued)));
            }
        } else if self.in_flight.contains_key(&account) {
            return Box::pin(fut::ready(Err(TriggerError::Busy(account))));
        }
        if let Some(amount) = msg.amount {
            self.settle_now(account, amount, engine, ctx);
            return Box::pin(fut::ready(Ok(TriggerOutcome::Started { amount })));
        }
        let Some(reckon) = self.engines.reckon.clone() else {
            return Box::pin(fut::ready(Err(TriggerError::NotSettled(account))));
        };
        if engine {
            if let Some(book) = self.engines.books.get_mut(&account) {
                book.busy = true;
            }
        }
        let ask = ReckonSettlement {
            account: account.clone(),
            force: true,
        };
        Box::pin(
            async move { reckon.send(ask).await.ok().flatten() }
                .into_actor(self)
                .map(move |amount, act, ctx| {
                    if engine {
                        if let Some(book) = act.engines.books.get_mut(&account) {
                            book.busy = false;
                        }
                    }
                    let Some(amount) = amount else {
                        // What was queued meanwhile still runs.
                        act.engine_idle(account.clone(), ctx);
                        return Err(TriggerError::NothingDue(account));
                    };
                    act.settle_now(account, amount, engine, ctx);
                    Ok(TriggerOutcome::Started { amount })
                }),
        )
    }
}

impl SettlementEngine {
    fn settle_now(
        &mut self,
        account: AccountId,
        amount: u64,
        engine: bool,
        ctx: &mut Context<Self>,
    ) {
        if engine {
            self.queue_engine_settlement(account, amount, ctx);
        } else {
            self.start_settlement(account, amount, ctx);
        }
    }
}

impl Handler<CreditSettlement> for SettlementEngine {
    type Result = AtomicResponse<Self, ApiAnswer>;

    /// Handled one at a time (the actor takes no other message meanwhile), so two repeats of
    /// one key never both find it new and an account's leftover is read and written in turn.
    fn handle(&mut self, msg: CreditSettlement, _ctx: &mut Self::Context) -> Self::Result {
        let done = |a: ApiAnswer| AtomicResponse::new(Box::pin(fut::ready(a)));
        let Some(engine) = self.engines.accounts.get(msg.account.as_str()) else {
            return done(ApiAnswer::problem(
                404,
                "Unknown account",
                &format!(
                    "no account {:?} settles through a settlement engine",
                    msg.account
                ),
            ));
        };
        let (key, amount) = match keyed_check(msg.idempotency_key.as_deref(), &msg.quantity) {
            Ok(checked) => checked,
            Err(refused) => return done(refused),
        };
        let scale = msg.quantity.scale;
        let account_scale = engine.scale;
        let account = AccountId::from(msg.account.as_str());
        let digest = credit_digest(&msg.account, &key);
        let input_hash = credit_input_hash(&msg.account, &amount, scale);
        let store = self.store.clone();
        let keeper = self.balance.clone();
        let stats = self
            .engines
            .books
            .entry(account.clone())
            .or_default()
            .stats
            .clone();
        let now_ms = self.clock.now_ms();
        let work = async move {
            let internal = |e: &dyn std::fmt::Display| {
                ApiAnswer::problem(500, "Credit not recorded", &e.to_string())
            };
            let keyed = Keyed {
                answer_key: keys::incoming(&digest),
                leftover_key: keys::leftover(&account),
                input_hash,
                body: b"RECEIVED".to_vec(),
                content_type: "text/plain; charset=utf-8",
                at_ms: now_ms,
            };
            let converted = match keyed.convert(store, &amount, scale, account_scale).await {
                Ok(c) => c,
                Err(answer) => return answer,
            };
            let units = match converted.amount.amount_u64(account_scale) {
                Ok(u) => u,
                Err(e) => return ApiAnswer::problem(400, "Bad quantity", &e.to_string()),
            };
            let mut id = [0u8; 16];
            id.copy_from_slice(&digest[..16]);
            let entry = LedgerEntry {
                direction: Direction::In,
                amount: units,
                at_ms: now_ms,
            };
            let mut also = converted.ops;
            also.push(StoreOp::PutRecord {
                key: keys::log(&account, &id),
                value: entry.encode(),
            });
            let apply = ApplySettlement {
                account: account.clone(),
                settlement_id: id,
                amount: units,
                direction: SettlementDirection::Received,
                also,
            };
            match keeper.send(apply).await {
                Ok(Ok(applied)) => {
                    if applied {
                        lock(&stats).settled_in += u128::from(units);
                    }
                    converted.answer
                }
                Ok(Err(e)) => internal(&e),
                Err(e) => internal(&e),
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

impl Handler<SendEngineMessage> for SettlementEngine {
    type Result = ResponseFuture<ApiAnswer>;

    fn handle(&mut self, msg: SendEngineMessage, _ctx: &mut Self::Context) -> Self::Result {
        let Some(engine) = self.engines.accounts.get(msg.account.as_str()) else {
            let a = ApiAnswer::problem(
                404,
                "Unknown account",
                &format!(
                    "no account {:?} settles through a settlement engine",
                    msg.account
                ),
            );
            return Box::pin(futures::future::ready(a));
        };
        if msg.message.len() > MAX_DATA_LEN {
            let a = ApiAnswer::problem(
                413,
                "Message too long",
                &format!(
                    "a message is carried in an ILP packet's data: at most {MAX_DATA_LEN} bytes"
                ),
            );
            return Box::pin(futures::future::ready(a));
        }
        let peer = engine.peer.clone();
        let clock = self.clock;
        Box::pin(async move {
            let Some(expires_at) = clock.now().checked_add_millis(rfc38::MESSAGE_EXPIRY_MS) else {
                return ApiAnswer::problem(500, "No expiry", "the clock is out of range");
            };
            let prepare = match message_prepare(&msg.message, expires_at) {
                Ok(p) => p,
                Err(e) => return ApiAnswer::problem(500, "Message not sent", &e.to_string()),
            };
            // The PeerAccount rejects at expiry; this bounds one that never answers.
            let sent = tokio::time::timeout_at(
                clock.instant_at(expires_at),
                ask(&peer, SendPrepare { prepare }),
            )
            .await;
            match sent {
                Ok(Ok(Ok(fulfill))) => ApiAnswer::ok(
                    201,
                    Bytes::copy_from_slice(fulfill.data()),
                    "application/octet-stream",
                ),
                Ok(Ok(Err(reject))) => ApiAnswer::problem(
                    502,
                    "Message rejected",
                    &format!(
                        "Error sending message to peer settlement engine. Packet rejected with \
                         code: {}, message: {}",
                        reject.code(),
                        reject.message()
                    ),
                ),
                Ok(Err(e)) => ApiAnswer::problem(502, "Message not sent", &e.to_string()),
                Err(_) => ApiAnswer::problem(
                    504,
                    "No answer",
                    "the peer did not answer before the message expired",
                ),
            }
        })
    }
}
