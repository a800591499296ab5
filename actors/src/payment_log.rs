//! The durable record of local accounts' payments: one event per fulfilled packet received,
//! numbered per account, written by the BalanceKeeper in the same store batch as the balance it
//! credits (so an event exists exactly when the credit does); one event per outgoing payment
//! when it ends ([`Sent`], `direction: "outgoing"`), on the same numbering; and each
//! connection's stream totals, which its receipts sign and which must never go back, not even
//! across a restart.
//!
//! Store records:
//! - `ptok/<account>\0<token>`: a paid HTTP API's token balance (u64 BE, the account's base
//!   units): credited in the batch of every packet paid on credentials issued with the tag
//!   `pt:<token>` ([`TOKEN_TAG_PREFIX`]), debited by the requests it pays for
//!   ([`PaymentLog::token_spend`]); `ptsp/<account>`: what the account's tokens have spent, so
//!   that the token balances plus the spent total always equal what tagged packets paid;
//! - `pay/t/<payment id>`: what one of the node's own payments has sent so far (u64 BE, source
//!   units), rewritten in the batch of each of its debits, so a payment cut off by a crash
//!   knows exactly what it sent;
//! - `rcv/ev/<account>\0<seq: u64 BE>`: a [`PaymentEvent`] as JSON; `seq` counts from 1 per
//!   account, so a reader pages with "after seq N";
//! - `rcv/seq/<account>`: the account's last seq (u64 BE), once per store batch, read at the
//!   keeper's start;
//! - `rcv/tot/<connection id: 16 bytes>`: a receipt connection's totals, `(stream id u64 BE,
//!   total u64 BE)*`; a later write never lowers a stream's total ([`PaymentLog::stage`] merges
//!   with the highest written so far). Connections without receipts have none: only a receipt
//!   binds us to a total, and after a restart their `StreamMaxMoney` totals count from 0 again
//!   (senders keep the highest they were told).

use crate::messages::AccountId;
use crate::store::{Store, StoreError, StoreOp};
use ilp::packet::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

pub const EVENT_PREFIX: &[u8] = b"rcv/ev/";
pub const SEQ_PREFIX: &[u8] = b"rcv/seq/";
pub const TOTALS_PREFIX: &[u8] = b"rcv/tot/";
pub const SENT_PREFIX: &[u8] = b"pay/t/";
pub const TOKEN_PREFIX: &[u8] = b"ptok/";
pub const TOKEN_SPENT_PREFIX: &[u8] = b"ptsp/";
/// The credentials tag that credits a paid HTTP API's token: `pt:<token id>`.
pub const TOKEN_TAG_PREFIX: &str = "pt:";

fn token_key(account: &str, token: &str) -> Vec<u8> {
    [TOKEN_PREFIX, account.as_bytes(), b"\0", token.as_bytes()].concat()
}

fn token_spent_key(account: &str) -> Vec<u8> {
    [TOKEN_SPENT_PREFIX, account.as_bytes()].concat()
}

/// A token's balance did not cover a request's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenShort {
    pub balance: u64,
}

/// The key of a payment's sent total.
pub fn sent_key(payment: &str) -> Vec<u8> {
    [SENT_PREFIX, payment.as_bytes()].concat()
}

/// Connections whose last written totals the keeper remembers, to merge late writes with.
const MERGE_MEMORY: usize = 100_000;

/// Money a local account received with one fulfilled packet (sent by the Router with the
/// packet's commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub account: AccountId,
    /// The account the packet came from.
    pub from: AccountId,
    pub amount: u64,
    pub connection: [u8; 16],
    pub protocol: &'static str,
    /// The tag the credentials were issued with (an invoice id).
    pub tag: Option<String>,
    /// Every stream's total on the connection after this packet, by stream id.
    pub totals: Vec<(u64, u64)>,
    pub receipts: bool,
    /// The sender closed the connection with this packet.
    pub closed: bool,
    pub at: Timestamp,
}

/// An outgoing payment of a local account that ended (sent by the Payer): its event follows the
/// account's incoming ones. What it debited was booked packet by packet before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub account: AccountId,
    pub summary: OutgoingPayment,
    /// Source units fulfilled.
    pub sent: u64,
    pub protocol: &'static str,
    pub receipt: bool,
    pub at: Timestamp,
}

/// Which way an event's money went, from the account's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received: one event per fulfilled packet.
    #[default]
    Incoming,
    /// Paid by the account: one event per payment, when it ends.
    Outgoing,
}

/// What an outgoing payment's event says beyond the common fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingPayment {
    /// The payment's id (`GET /accounts/<account>/payments/<id>`).
    pub id: String,
    /// The pointer or URL paid.
    pub to: String,
    /// completed, failed or interrupted.
    pub status: String,
    /// Destination units the receiver said arrived.
    pub delivered: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_scale: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The ILP code of the Reject that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// One payment of a local account, as stored and as the admin API shows it: a fulfilled
/// packet received (`direction: "incoming"`), or an outgoing payment that ended (`"outgoing"`:
/// `amount` is what it sent, `from_account` the account itself, `payment` the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// Events stored before outgoing ones existed have none: incoming.
    #[serde(default)]
    pub direction: Direction,
    pub account: String,
    pub seq: u64,
    pub amount: String,
    pub from_account: String,
    pub protocol: String,
    /// Hex of the 16-byte connection id.
    pub connection_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `[stream id, total received]` after this payment (as strings: u64 does not fit a JSON
    /// number everywhere).
    pub streams: Vec<(String, String)>,
    pub receipts: bool,
    pub connection_closed: bool,
    /// Unix milliseconds.
    pub time_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<OutgoingPayment>,
}

/// The first key after every key that starts with `prefix` (its last byte is not 0xff).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// The key of `account`'s event `seq`.
pub fn event_key(account: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(EVENT_PREFIX.len() + account.len() + 9);
    key.extend_from_slice(EVENT_PREFIX);
    key.extend_from_slice(account.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_key(account: &str) -> Vec<u8> {
    [SEQ_PREFIX, account.as_bytes()].concat()
}

/// The key of a connection's totals.
pub fn totals_key(connection: &[u8; 16]) -> Vec<u8> {
    [TOTALS_PREFIX, connection.as_slice()].concat()
}

/// Encodes totals as stored.
pub fn encode_totals(totals: &[(u64, u64)]) -> Vec<u8> {
    totals
        .iter()
        .flat_map(|(id, total)| id.to_be_bytes().into_iter().chain(total.to_be_bytes()))
        .collect()
}

/// Decodes stored totals; `None` when the bytes are not a whole number of pairs.
pub fn decode_totals(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    if bytes.len() % 16 != 0 {
        return None;
    }
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_be_bytes(w)
    };
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| (word(&c[..8]), word(&c[8..])))
            .collect(),
    )
}

/// Folds `other` (stream id, value) into `into` (sorted by stream id): a stream in both takes
/// `combine(theirs, other's)`, a new one is inserted in order.
pub fn merge_totals(
    into: &mut Vec<(u64, u64)>,
    other: &[(u64, u64)],
    combine: impl Fn(u64, u64) -> u64,
) {
    for &(id, value) in other {
        match into.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(i) => into[i].1 = combine(into[i].1, value),
            Err(i) => into.insert(i, (id, value)),
        }
    }
}

/// The keeper's side of the log: the next seq of each account, and the totals written last.
#[derive(Default)]
pub struct PaymentLog {
    seqs: HashMap<AccountId, u64>,
    written: HashMap<[u8; 16], Vec<(u64, u64)>>,
    /// Accounts with events staged since the last [`PaymentLog::finish_batch`].
    dirty: Vec<AccountId>,
    /// What each running payment has sent, as written last.
    sent: HashMap<AccountId, u64>,
    /// Payments whose total changed since the last batch.
    sent_dirty: Vec<AccountId>,
    /// Payments that ended: their totals are forgotten after this batch.
    ended: Vec<AccountId>,
    /// Paid HTTP tokens' balances, by account and token id.
    tokens: HashMap<(AccountId, String), u64>,
    /// What each account's tokens have spent.
    token_spent: HashMap<AccountId, u64>,
    /// Token balances and spent totals changed since the last batch.
    tokens_dirty: Vec<(AccountId, String)>,
    spent_dirty: Vec<AccountId>,
    /// Tokens expired since the last batch: their records are deleted.
    tokens_expired: Vec<(AccountId, String)>,
}

impl PaymentLog {
    /// Reads every account's last seq from `store`.
    pub fn load(store: &dyn Store) -> Result<PaymentLog, StoreError> {
        let mut seqs = HashMap::new();
        for (key, value) in store.scan_records(SEQ_PREFIX, &prefix_end(SEQ_PREFIX))? {
            let Ok(account) = std::str::from_utf8(&key[SEQ_PREFIX.len()..]) else {
                continue;
            };
            let Ok(seq) = <[u8; 8]>::try_from(value.as_slice()) else {
                continue;
            };
            seqs.insert(AccountId::from(account), u64::from_be_bytes(seq));
        }
        let word = |v: &[u8]| <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes);
        let mut tokens = HashMap::new();
        for (key, value) in store.scan_records(TOKEN_PREFIX, &prefix_end(TOKEN_PREFIX))? {
            let rest = &key[TOKEN_PREFIX.len()..];
            let Some(split) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let (Ok(account), Ok(token), Some(balance)) = (
                std::str::from_utf8(&rest[..split]),
                std::str::from_utf8(&rest[split + 1..]),
                word(&value),
            ) else {
                continue;
            };
            tokens.insert((AccountId::from(account), token.to_owned()), balance);
        }
        let mut token_spent = HashMap::new();
        for (key, value) in
            store.scan_records(TOKEN_SPENT_PREFIX, &prefix_end(TOKEN_SPENT_PREFIX))?
        {
            let (Ok(account), Some(spent)) = (
                std::str::from_utf8(&key[TOKEN_SPENT_PREFIX.len()..]),
                word(&value),
            ) else {
                continue;
            };
            token_spent.insert(AccountId::from(account), spent);
        }
        Ok(PaymentLog {
            seqs,
            tokens,
            token_spent,
            ..PaymentLog::default()
        })
    }

    /// The ops that record `received` (to commit with its credit): its event and, for a
    /// receipt connection, its totals merged with the highest written before. The account's
    /// seq follows with [`PaymentLog::finish_batch`]. Returns the event, to announce once the
    /// commit landed.
    pub fn stage(&mut self, received: &Received, ops: &mut Vec<StoreOp>) -> Arc<PaymentEvent> {
        let event = self.stage_event(&received.account, ops, |seq| PaymentEvent {
            direction: Direction::Incoming,
            account: received.account.to_string(),
            seq,
            amount: received.amount.to_string(),
            from_account: received.from.to_string(),
            protocol: received.protocol.to_owned(),
            connection_id: hex::encode(received.connection),
            tag: received.tag.clone(),
            streams: received
                .totals
                .iter()
                .map(|(id, total)| (id.to_string(), total.to_string()))
                .collect(),
            receipts: received.receipts,
            connection_closed: received.closed,
            time_ms: received.at.unix_millis(),
            payment: None,
        });
        // A packet that moved no money (a connection's close) makes no token.
        let token = received
            .tag
            .as_deref()
            .and_then(|t| t.strip_prefix(TOKEN_TAG_PREFIX));
        if let (Some(token), true) = (token, received.amount > 0) {
            self.token_credit(&received.account, token, received.amount);
        }
        if !received.receipts {
            return event;
        }
        if self.written.len() >= MERGE_MEMORY && !self.written.contains_key(&received.connection) {
            // Rarely: forgetting only risks a late write lowering a total until the next one.
            self.written.clear();
        }
        let written = self.written.entry(received.connection).or_default();
        merge_totals(written, &received.totals, u64::max);
        ops.push(StoreOp::PutRecord {
            key: totals_key(&received.connection),
            value: encode_totals(written),
        });
        event
    }

    /// The op that records an outgoing payment's end, numbered after the account's events so
    /// far. Returns the event, to announce once the commit landed.
    pub fn stage_sent(&mut self, sent: &Sent, ops: &mut Vec<StoreOp>) -> Arc<PaymentEvent> {
        self.stage_event(&sent.account, ops, |seq| PaymentEvent {
            direction: Direction::Outgoing,
            account: sent.account.to_string(),
            seq,
            amount: sent.sent.to_string(),
            from_account: sent.account.to_string(),
            protocol: sent.protocol.to_owned(),
            connection_id: String::new(),
            tag: None,
            streams: Vec::new(),
            receipts: sent.receipt,
            connection_closed: true,
            time_ms: sent.at.unix_millis(),
            payment: Some(sent.summary.clone()),
        })
    }

    /// Numbers `account`'s next event, built by `event` from its seq, and stages its record.
    fn stage_event(
        &mut self,
        account: &AccountId,
        ops: &mut Vec<StoreOp>,
        event: impl FnOnce(u64) -> PaymentEvent,
    ) -> Arc<PaymentEvent> {
        let seq = self.seqs.entry(account.clone()).or_insert(0);
        *seq += 1;
        let event = event(*seq);
        ops.push(StoreOp::PutRecord {
            key: event_key(account, event.seq),
            value: serde_json::to_vec(&event).unwrap_or_default(),
        });
        if !self.dirty.contains(account) {
            self.dirty.push(account.clone());
        }
        Arc::new(event)
    }

    /// Adds `amount` to what `payment` has sent; its total is written with the batch. The first
    /// packet of a payment this keeper has not seen reads the total written before (none for a
    /// new payment; the one before a keeper restart otherwise).
    pub fn add_sent(&mut self, store: &dyn Store, payment: &AccountId, amount: u64) {
        let total = match self.sent.get_mut(payment) {
            Some(total) => total,
            None => match stored_u64(store, &sent_key(payment)) {
                Ok(before) => self.sent.entry(payment.clone()).or_insert(before),
                // Never write a total lower than the stored one: the next packet reads again.
                Err(_) => return,
            },
        };
        *total = total.saturating_add(amount);
        if !self.sent_dirty.contains(payment) {
            self.sent_dirty.push(payment.clone());
        }
    }

    fn token_credit(&mut self, account: &AccountId, token: &str, amount: u64) {
        let key = (account.clone(), token.to_owned());
        // Money for a token expired in this batch makes it live again: not deleted after all.
        self.tokens_expired.retain(|k| k != &key);
        let balance = self.tokens.entry(key.clone()).or_insert(0);
        *balance = balance.saturating_add(amount);
        if !self.tokens_dirty.contains(&key) {
            self.tokens_dirty.push(key);
        }
    }

    /// A token's balance (0 for a token never paid for).
    pub fn token_balance(&self, account: &AccountId, token: &str) -> u64 {
        self.tokens
            .get(&(account.clone(), token.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Takes `price` from the token's balance, written with the batch: the balance left, or
    /// the balance that falls short (nothing taken).
    pub fn token_spend(
        &mut self,
        account: &AccountId,
        token: &str,
        price: u64,
    ) -> Result<u64, TokenShort> {
        let key = (account.clone(), token.to_owned());
        let balance = self.tokens.get(&key).copied().unwrap_or(0);
        let Some(left) = balance.checked_sub(price) else {
            return Err(TokenShort { balance });
        };
        if price == 0 {
            return Ok(left);
        }
        self.tokens.insert(key.clone(), left);
        if !self.tokens_dirty.contains(&key) {
            self.tokens_dirty.push(key);
        }
        self.add_token_spent(account, price, true);
        Ok(left)
    }

    /// Gives back `amount` a token spent on a request that was not served; the balance now.
    pub fn token_refund(&mut self, account: &AccountId, token: &str, amount: u64) -> u64 {
        self.token_credit(account, token, amount);
        self.add_token_spent(account, amount, false);
        self.token_balance(account, token)
    }

    fn add_token_spent(&mut self, account: &AccountId, amount: u64, spend: bool) {
        let spent = self.token_spent.entry(account.clone()).or_insert(0);
        *spent = if spend {
            spent.saturating_add(amount)
        } else {
            spent.saturating_sub(amount)
        };
        if !self.spent_dirty.contains(account) {
            self.spent_dirty.push(account.clone());
        }
    }

    /// An operator expires a token: its balance counts as spent from now on (the money stays
    /// with the account) and the token is forgotten. Returns what it held.
    pub fn token_expire(&mut self, account: &AccountId, token: &str) -> u64 {
        let key = (account.clone(), token.to_owned());
        let Some(balance) = self.tokens.remove(&key) else {
            return 0;
        };
        self.tokens_dirty.retain(|k| k != &key);
        self.tokens_expired.push(key);
        self.add_token_spent(account, balance, true);
        balance
    }

    /// `account`'s tokens with their balances, and what its tokens have spent.
    pub fn tokens(&self, account: &AccountId) -> (Vec<(String, u64)>, u64) {
        let mut list: Vec<(String, u64)> = self
            .tokens
            .iter()
            .filter(|((a, _), _)| a == account)
            .map(|((_, t), b)| (t.clone(), *b))
            .collect();
        list.sort();
        let spent = self.token_spent.get(account).copied().unwrap_or(0);
        (list, spent)
    }

    /// What `payment` has sent, as this keeper counted it (with the total it found stored).
    pub fn sent_total(&self, payment: &str) -> Option<u64> {
        self.sent.get(payment).copied()
    }

    /// `payment` ended: its total is written with this batch if it changed, then forgotten.
    pub fn payment_ended(&mut self, payment: &str) {
        self.ended.push(AccountId::from(payment));
    }

    /// The seq records of the accounts staged since the last call (one per account per batch)
    /// and the changed payment totals.
    pub fn finish_batch(&mut self, ops: &mut Vec<StoreOp>) {
        // Deletions first: a token put in the same batch is live (see token_credit).
        for (account, token) in self.tokens_expired.drain(..) {
            ops.push(StoreOp::DeleteRecord {
                key: token_key(&account, &token),
            });
        }
        for (account, token) in self.tokens_dirty.drain(..) {
            let balance = self
                .tokens
                .get(&(account.clone(), token.clone()))
                .copied()
                .unwrap_or(0);
            ops.push(StoreOp::PutRecord {
                key: token_key(&account, &token),
                value: balance.to_be_bytes().to_vec(),
            });
        }
        for account in self.spent_dirty.drain(..) {
            let spent = self.token_spent.get(&account).copied().unwrap_or(0);
            ops.push(StoreOp::PutRecord {
                key: token_spent_key(&account),
                value: spent.to_be_bytes().to_vec(),
            });
        }
        for payment in self.sent_dirty.drain(..) {
            if let Some(total) = self.sent.get(&payment) {
                ops.push(StoreOp::PutRecord {
                    key: sent_key(&payment),
                    value: total.to_be_bytes().to_vec(),
                });
            }
        }
        for payment in self.ended.drain(..) {
            self.sent.remove(&payment);
        }
        for account in self.dirty.drain(..) {
            let seq = self.seqs.get(&account).copied().unwrap_or(0);
            ops.push(StoreOp::PutRecord {
                key: seq_key(&account),
                value: seq.to_be_bytes().to_vec(),
            });
        }
    }
}

/// Where the BalanceKeeper announces payment events once they are durable; every live stream
/// of the admin API subscribes. A subscriber that falls behind (more than [`FEED_CAPACITY`]
/// events) or sees a gap in an account's seqs reads the missing ones from the log, which has
/// them before they are announced.
pub type PaymentFeed = tokio::sync::broadcast::Sender<Arc<PaymentEvent>>;

/// Events a live stream may fall behind by before it reads from the log instead.
pub const FEED_CAPACITY: usize = 4096;

/// A feed with no subscriber yet.
pub fn payment_feed() -> PaymentFeed {
    tokio::sync::broadcast::channel(FEED_CAPACITY).0
}

/// A u64 (BE) record such as a seq or a cursor; 0 when absent (or not 8 bytes).
pub fn stored_u64(store: &dyn Store, key: &[u8]) -> Result<u64, StoreError> {
    Ok(store
        .get_record(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// The account's last seq as stored (0 before its first event).
pub fn last_seq(store: &dyn Store, account: &str) -> Result<u64, StoreError> {
    stored_u64(store, &seq_key(account))
}

/// The deletion that leaves `account` its latest `keep` events (0: keep all) and every event
/// after `delivered` (its webhook's cursor, when it has one): `None` when nothing is to go.
pub fn prune(account: &str, last: u64, keep: u64, delivered: Option<u64>) -> Option<StoreOp> {
    if keep == 0 {
        return None;
    }
    let mut cut = last.checked_sub(keep)?;
    if let Some(delivered) = delivered {
        cut = cut.min(delivered);
    }
    (cut > 0).then(|| StoreOp::DeleteRange {
        from: event_key(account, 1),
        to: event_key(account, cut + 1),
    })
}

/// Up to `limit` events of `account` after seq `after`, in order.
pub fn read_events(
    store: &dyn Store,
    account: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<PaymentEvent>, StoreError> {
    let from = event_key(account, after.saturating_add(1));
    let to = event_key(account, u64::MAX);
    let records = store.scan_records(&from, &to)?;
    Ok(records
        .iter()
        .take(limit)
        .filter_map(|(_, value)| serde_json::from_slice(value).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn received(account: &str, connection: u8, amount: u64, totals: Vec<(u64, u64)>) -> Received {
        Received {
            account: AccountId::from(account),
            from: AccountId::from("payer"),
            amount,
            connection: [connection; 16],
            protocol: "stream",
            tag: None,
            totals,
            receipts: true,
            closed: false,
            at: Timestamp::from_unix_millis(1_700_000_000_000),
        }
    }

    /// A payment's total is written once per batch with what it sent so far, continues from
    /// the stored one after a keeper restart, and is forgotten once the payment ended.
    #[tokio::test]
    async fn payment_totals_are_written_per_batch_and_resume_from_the_store() {
        let store = MemoryStore::new();
        let p = AccountId::from("p1");
        let mut log = PaymentLog::default();
        let mut ops = Vec::new();
        log.add_sent(&store, &p, 10);
        log.add_sent(&store, &p, 5);
        log.finish_batch(&mut ops);
        assert_eq!(ops.len(), 1, "one write per batch");
        store.commit(ops).await.unwrap();
        assert_eq!(stored_u64(&store, &sent_key("p1")).unwrap(), 15);
        // A new keeper (after a restart) carries on from the stored total.
        let mut log = PaymentLog::default();
        let mut ops = Vec::new();
        log.add_sent(&store, &p, 7);
        log.payment_ended("p1");
        log.finish_batch(&mut ops);
        store.commit(ops).await.unwrap();
        assert_eq!(stored_u64(&store, &sent_key("p1")).unwrap(), 22);
        assert!(log.sent.is_empty(), "an ended payment's total is forgotten");
        let mut ops = Vec::new();
        log.finish_batch(&mut ops);
        assert!(ops.is_empty());
    }

    /// A refund (or a payment) for a token expired in the same batch keeps the token, on disk
    /// as in memory; a packet that moved no money makes no token.
    #[tokio::test]
    async fn a_token_expired_and_credited_in_one_batch_stays_and_closes_make_none() {
        let store = MemoryStore::new();
        let api = AccountId::from("api");
        let mut log = PaymentLog::default();
        let mut ops = Vec::new();
        let mut paid = received("api", 1, 30, vec![]);
        paid.tag = Some("pt:T".into());
        log.stage(&paid, &mut ops);
        let mut close = received("api", 2, 0, vec![]);
        close.tag = Some("pt:Z".into());
        log.stage(&close, &mut ops);
        log.finish_batch(&mut ops);
        store.commit(ops).await.unwrap();
        let mut ops = Vec::new();
        assert_eq!(log.token_spend(&api, "T", 10), Ok(20));
        assert_eq!(log.token_expire(&api, "T"), 20);
        assert_eq!(log.token_refund(&api, "T", 10), 10);
        log.finish_batch(&mut ops);
        store.commit(ops).await.unwrap();
        let reloaded = PaymentLog::load(&store).unwrap();
        assert_eq!(reloaded.tokens(&api), log.tokens(&api));
        let (tokens, spent) = reloaded.tokens(&api);
        assert_eq!(tokens, vec![("T".to_owned(), 10)]);
        assert_eq!(spent, 20);
        let held: u64 = tokens.iter().map(|(_, b)| b).sum();
        assert_eq!(
            held + spent,
            30,
            "held plus spent is what the tagged packets paid"
        );
    }

    /// Events stored before outgoing ones existed read as incoming; outgoing events share the
    /// account's numbering.
    #[test]
    fn old_events_are_incoming_and_outgoing_ones_share_the_numbering() {
        let old = r#"{"account":"shop","seq":3,"amount":"5","from_account":"payer","protocol":"stream","connection_id":"00","streams":[],"receipts":false,"connection_closed":false,"time_ms":1}"#;
        let event: PaymentEvent = serde_json::from_str(old).unwrap();
        assert_eq!(event.direction, Direction::Incoming);
        assert_eq!(event.payment, None);
        let mut log = PaymentLog::default();
        let mut ops = Vec::new();
        log.stage(&received("shop", 1, 10, vec![(1, 10)]), &mut ops);
        let sent = Sent {
            account: AccountId::from("shop"),
            summary: OutgoingPayment {
                id: "p1".into(),
                to: "$x.example".into(),
                status: "completed".into(),
                delivered: "9".into(),
                destination_code: Some("EUR".into()),
                destination_scale: Some(2),
                error: None,
                error_code: None,
            },
            sent: 10,
            protocol: "stream",
            receipt: false,
            at: Timestamp::from_unix_millis(1_700_000_000_000),
        };
        let event = log.stage_sent(&sent, &mut ops);
        assert_eq!((event.seq, event.direction), (2, Direction::Outgoing));
        let json = serde_json::to_value(&*event).unwrap();
        assert_eq!(json["direction"], "outgoing");
        assert_eq!(json["payment"]["delivered"], "9");
        assert_eq!(json["amount"], "10");
    }

    #[tokio::test]
    async fn events_are_numbered_per_account_and_survive_a_reload() {
        let store = MemoryStore::new();
        let mut log = PaymentLog::load(&store).unwrap();
        let mut ops = Vec::new();
        log.stage(&received("shop", 1, 10, vec![(1, 10)]), &mut ops);
        log.stage(&received("shop", 1, 5, vec![(1, 15)]), &mut ops);
        log.stage(&received("cafe", 2, 7, vec![(1, 7)]), &mut ops);
        log.finish_batch(&mut ops);
        // One seq record per account per batch.
        assert_eq!(
            ops.iter()
                .filter(
                    |op| matches!(op, StoreOp::PutRecord { key, .. } if key.starts_with(SEQ_PREFIX))
                )
                .count(),
            2
        );
        store.commit(ops).await.unwrap();
        let shop = read_events(&store, "shop", 0, 10).unwrap();
        assert_eq!(
            shop.iter()
                .map(|e| (e.seq, e.amount.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "10"), (2, "5")]
        );
        assert_eq!(shop[1].streams, vec![("1".to_owned(), "15".to_owned())]);
        assert_eq!(read_events(&store, "shop", 1, 10).unwrap().len(), 1);
        assert_eq!(read_events(&store, "shop", 0, 1).unwrap().len(), 1);
        // "sho" is a prefix of "shop": its events are its own.
        assert!(read_events(&store, "sho", 0, 10).unwrap().is_empty());
        assert_eq!(read_events(&store, "cafe", 0, 10).unwrap()[0].seq, 1);

        // A restarted keeper goes on from the last seq.
        let mut log = PaymentLog::load(&store).unwrap();
        let mut ops = Vec::new();
        log.stage(&received("shop", 3, 1, vec![(1, 1)]), &mut ops);
        log.finish_batch(&mut ops);
        store.commit(ops).await.unwrap();
        assert_eq!(read_events(&store, "shop", 2, 10).unwrap()[0].seq, 3);
    }

    #[tokio::test]
    async fn pruning_keeps_the_latest_and_the_undelivered() {
        assert_eq!(prune("shop", 10, 0, None), None);
        assert_eq!(prune("shop", 10, 10, None), None);
        assert_eq!(prune("shop", 10, 20, None), None);
        assert_eq!(prune("shop", 10, 4, Some(0)), None);
        let store = MemoryStore::new();
        let mut log = PaymentLog::default();
        let mut ops = Vec::new();
        for seq in 1..=10u64 {
            log.stage(&received("shop", 1, seq, vec![(1, seq)]), &mut ops);
        }
        log.stage(&received("shopkeeper", 2, 1, vec![(1, 1)]), &mut ops);
        log.finish_batch(&mut ops);
        store.commit(ops).await.unwrap();
        assert_eq!(last_seq(&store, "shop").unwrap(), 10);
        assert_eq!(last_seq(&store, "nobody").unwrap(), 0);
        // Keep 4, but the webhook delivered only up to 5: events 1..=5 go.
        let op = prune("shop", 10, 4, Some(5)).unwrap();
        store.commit(vec![op]).await.unwrap();
        let left: Vec<u64> = read_events(&store, "shop", 0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, (6..=10).collect::<Vec<_>>());
        // Another account whose id extends this one's is untouched.
        assert_eq!(read_events(&store, "shopkeeper", 0, 10).unwrap().len(), 1);
        store
            .commit(vec![prune("shop", 10, 4, None).unwrap()])
            .await
            .unwrap();
        assert_eq!(read_events(&store, "shop", 0, 100).unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_late_write_never_lowers_a_connections_totals() {
        let store = MemoryStore::new();
        let mut log = PaymentLog::default();
        let mut ops = Vec::new();
        log.stage(&received("shop", 1, 20, vec![(1, 30), (3, 4)]), &mut ops);
        // Committed after, computed before: lower totals.
        log.stage(&received("shop", 1, 10, vec![(1, 10), (5, 1)]), &mut ops);
        // A connection without receipts keeps no totals.
        let mut plain = received("shop", 2, 5, vec![(1, 5)]);
        plain.receipts = false;
        log.stage(&plain, &mut ops);
        store.commit(ops).await.unwrap();
        assert_eq!(store.get_record(&totals_key(&[2; 16])).unwrap(), None);
        let stored = store.get_record(&totals_key(&[1; 16])).unwrap().unwrap();
        assert_eq!(decode_totals(&stored), Some(vec![(1, 30), (3, 4), (5, 1)]));
        assert_eq!(decode_totals(&[0; 15]), None);
        assert_eq!(
            decode_totals(&encode_totals(&[(u64::MAX, 1)])),
            Some(vec![(u64::MAX, 1)])
        );
    }
}
