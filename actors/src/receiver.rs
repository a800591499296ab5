//! Receiving accounts (`link.type = "local"`): money held on this node, paid with STREAM or
//! PSK2 by senders who got credentials for them (over SPSP).
//!
//! The Router routes a Prepare to a local account like to any child; instead of sending it over
//! a link it asks the account's [`Receiver`] what to do ([`Receiver::answer`]):
//! - a packet that moves no money here (unreadable: F06; a rate probe or an amount below the
//!   sender's minimum: F99 with an encrypted reply; a zero amount: a Fulfill) is answered at
//!   once, with no balance reserved, so probes cost no keeper round trip and never hit a limit;
//! - money that arrived is reserved like a forwarded packet (the sender's account incoming,
//!   the local account outgoing: a receiver's balance falls as it is paid), and the Fulfill
//!   leaves only once the credit is durable. A receiver at its `maximum` refuses with F99 and
//!   the room it has left ([`Acceptance::refuse`]).
//!
//! Each connection's stream totals (told back in `StreamMaxMoney` and signed in receipts) are
//! kept in memory per account, for the most recent [`MAX_CONNECTIONS`] connections; a receipt
//! connection's are also written with every credit ([`crate::payment_log`]), and one this
//! process has not seen yet starts from its stored totals, so its receipts never go back, not
//! even across a restart.

use crate::messages::AccountId;
use crate::payment_log::{decode_totals, merge_totals, totals_key, Received};
use crate::store::{read_off_thread, Store};
use ilp::packet::{Address, ErrorCode, Fulfill, Prepare, Reject, Timestamp};
use ilp::psk2;
use ilp::stream::credentials::{Connection, Protocol, ReceiverKeys};
use ilp::stream::receiver::{self as stream_receiver, Incoming};
use ilp::stream::IV_LEN;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Connections whose totals one account remembers; past it the least recently paid are
/// forgotten first.
pub const MAX_CONNECTIONS: usize = 100_000;

/// Every receiving account's keys and connection totals; the Router hands each local account
/// its own ([`Receivers::account`]), so a reload keeps the totals.
#[derive(Clone)]
pub struct Receivers {
    keys: Arc<ReceiverKeys>,
    accounts: Arc<Mutex<HashMap<AccountId, Arc<Mutex<Totals>>>>>,
    /// Where the connections' totals are kept (`None`: in memory only, for tests).
    store: Option<Arc<dyn Store>>,
}

impl std::fmt::Debug for Receivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receivers").finish_non_exhaustive()
    }
}

impl Receivers {
    /// Receivers whose credentials derive from `secret` (`node.receiver_secret`).
    pub fn new(secret: &[u8; 32]) -> Self {
        Receivers {
            keys: Arc::new(ReceiverKeys::new(secret)),
            accounts: Arc::default(),
            store: None,
        }
    }

    /// Connections seen before this process started take their totals from `store`.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The keys credentials are issued with.
    pub fn keys(&self) -> &Arc<ReceiverKeys> {
        &self.keys
    }

    /// The receiver of local account `id` at `address` (ours plus its segment; `None` while
    /// we have no address), in `asset` (code, scale), `bounded` when it has a maximum.
    pub fn account(
        &self,
        id: &AccountId,
        address: Option<Address>,
        asset: (&str, u8),
        bounded: bool,
    ) -> Receiver {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Receiver {
            account: id.clone(),
            address,
            asset_code: asset.0.to_owned(),
            asset_scale: asset.1,
            keys: self.keys.clone(),
            totals: accounts.entry(id.clone()).or_default().clone(),
            store: self.store.clone(),
            bounded,
        }
    }
}

/// Each connection's stream totals, by connection id.
#[derive(Default)]
struct Totals {
    connections: HashMap<[u8; 16], Streams>,
    /// Counts credits, to tell which connection was paid least recently.
    clock: u64,
}

#[derive(Default)]
struct Streams {
    /// (stream id, total received), by stream id.
    totals: Vec<(u64, u64)>,
    last_paid: u64,
}

impl Totals {
    /// Adds `amounts` (stream id, amount) to `connection`'s totals; returns every stream's total.
    fn add(&mut self, connection: [u8; 16], amounts: &[(u64, u64)]) -> Vec<(u64, u64)> {
        if self.connections.len() >= MAX_CONNECTIONS && !self.connections.contains_key(&connection)
        {
            self.forget_oldest();
        }
        self.clock += 1;
        let streams = self.connections.entry(connection).or_default();
        streams.last_paid = self.clock;
        merge_totals(&mut streams.totals, amounts, u64::saturating_add);
        streams.totals.clone()
    }

    /// Takes back what [`Totals::add`] added, when the credit could not be recorded.
    fn undo(&mut self, connection: [u8; 16], amounts: &[(u64, u64)]) {
        let Some(streams) = self.connections.get_mut(&connection) else {
            return;
        };
        // Only streams still known: a connection forgotten meanwhile gets nothing back.
        for &(id, amount) in amounts {
            if let Ok(i) = streams.totals.binary_search_by_key(&id, |(i, _)| *i) {
                streams.totals[i].1 = streams.totals[i].1.saturating_sub(amount);
            }
        }
    }

    /// Takes `stored` (read from the store) as `connection`'s totals so far, unless a credit
    /// this process made is higher.
    fn recall(&mut self, connection: [u8; 16], stored: &[(u64, u64)]) {
        self.clock += 1;
        let clock = self.clock;
        let streams = self
            .connections
            .entry(connection)
            .or_insert_with(|| Streams {
                totals: Vec::new(),
                last_paid: clock,
            });
        merge_totals(&mut streams.totals, stored, u64::max);
    }

    fn get(&self, connection: &[u8; 16]) -> Vec<(u64, u64)> {
        self.connections
            .get(connection)
            .map(|s| s.totals.clone())
            .unwrap_or_default()
    }

    /// Forgets the least recently paid tenth of the connections.
    fn forget_oldest(&mut self) {
        let mut ages: Vec<u64> = self.connections.values().map(|s| s.last_paid).collect();
        let cut = ages.len() / 10;
        let (_, &mut oldest_kept, _) = ages.select_nth_unstable(cut);
        self.connections.retain(|_, s| s.last_paid >= oldest_kept);
    }
}

/// One local account's receiver.
#[derive(Clone)]
pub struct Receiver {
    account: AccountId,
    /// The Rejects' `triggered_by`; `None` until the node knows its address.
    address: Option<Address>,
    asset_code: String,
    asset_scale: u8,
    keys: Arc<ReceiverKeys>,
    totals: Arc<Mutex<Totals>>,
    store: Option<Arc<dyn Store>>,
    bounded: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("account", &self.account)
            .field("bounded", &self.bounded)
            .finish_non_exhaustive()
    }
}

/// What a receiver does with a Prepare.
pub enum Answer {
    /// Answer with this now: nothing is credited.
    Now(Result<Fulfill, Reject>),
    /// Answer with this now, nothing credited; the sender closed the connection with it, which
    /// is recorded as an event ([`Closing::received`]).
    Closing(Result<Fulfill, Reject>, Closing),
    /// Credit [`Acceptance::amount`], then answer [`Acceptance::fulfill`].
    Credit(Acceptance),
}

/// A connection its sender closed with a packet that moved no money.
pub struct Closing {
    account: AccountId,
    connection: Connection,
    totals: Vec<(u64, u64)>,
}

impl Closing {
    /// The event of the close: no amount, the connection's totals so far.
    pub fn received(&self, from: &AccountId, at: Timestamp) -> Received {
        event(
            &self.account,
            &self.connection,
            from,
            0,
            &self.totals,
            true,
            at,
        )
    }
}

/// The record of `amount` credited to `account` on `connection` from `from` at `at`, with the
/// connection's totals after it.
fn event(
    account: &AccountId,
    connection: &Connection,
    from: &AccountId,
    amount: u64,
    totals: &[(u64, u64)],
    closed: bool,
    at: Timestamp,
) -> Received {
    Received {
        account: account.clone(),
        from: from.clone(),
        amount,
        connection: connection.id,
        protocol: match connection.protocol {
            Protocol::Stream => "stream",
            Protocol::Psk2 => "psk2",
        },
        tag: connection.tag.clone(),
        totals: totals.to_vec(),
        receipts: connection.receipts.is_some(),
        closed,
        at,
    }
}

/// A Prepare whose money the receiver takes once it is credited.
pub struct Acceptance {
    account: AccountId,
    totals: Arc<Mutex<Totals>>,
    store: Option<Arc<dyn Store>>,
    connection: Connection,
    accepted: Accepted,
    /// The receiver's address: the Rejects' `triggered_by`.
    address: Address,
}

enum Accepted {
    Stream(Box<stream_receiver::Accepted>),
    Psk2(Box<psk2::Accepted>),
}

/// What [`Acceptance::fulfill`] added to the totals, to record with the credit or take back if
/// the credit fails.
pub struct Credited {
    account: AccountId,
    totals: Arc<Mutex<Totals>>,
    connection: Connection,
    /// What each stream received with this packet.
    streams: Vec<(u64, u64)>,
    /// Every stream's total after it.
    after: Vec<(u64, u64)>,
    closed: bool,
}

impl Credited {
    /// Takes the credit back out of the connection's totals.
    pub fn undo(self) {
        lock(&self.totals).undo(self.connection.id, &self.streams);
    }

    /// The record of this credit, from account `from` at `at`.
    pub fn received(&self, from: &AccountId, at: Timestamp) -> Received {
        // The streams' shares add up to what was credited.
        let amount = self.streams.iter().map(|(_, a)| a).sum();
        event(
            &self.account,
            &self.connection,
            from,
            amount,
            &self.after,
            self.closed,
            at,
        )
    }
}

fn lock(totals: &Mutex<Totals>) -> MutexGuard<'_, Totals> {
    // Nothing panics while holding the lock; the totals stay consistent.
    totals.lock().unwrap_or_else(|e| e.into_inner())
}

impl Receiver {
    /// The answer to `prepare`, of which `arrived` reached the account (in its units). `iv`
    /// (fresh randomness) encrypts an immediate answer.
    pub fn answer(&self, prepare: &Prepare, arrived: u64, iv: &[u8; IV_LEN]) -> Answer {
        let Some(address) = &self.address else {
            return Answer::Now(Err(Reject::new(
                ErrorCode::F02_UNREACHABLE,
                None,
                "the node does not know its address yet",
            )));
        };
        let connection = match self.keys.open(&self.account, prepare.destination_str()) {
            Ok(connection) => connection,
            Err(e) => {
                return Answer::Now(Err(Reject::new(
                    ErrorCode::F06_UNEXPECTED_PAYMENT,
                    Some(address),
                    &e.to_string(),
                )))
            }
        };
        let accepted = match connection.protocol {
            Protocol::Stream => {
                let incoming = Incoming {
                    prepare,
                    arrived,
                    asset_code: &self.asset_code,
                    asset_scale: self.asset_scale,
                    bounded: self.bounded,
                    address,
                };
                match stream_receiver::decide_and_close(&connection, &incoming, iv) {
                    (stream_receiver::Decision::Answer(answer), true) => {
                        let totals = lock(&self.totals).get(&connection.id);
                        let closing = Closing {
                            account: self.account.clone(),
                            connection,
                            totals,
                        };
                        return Answer::Closing(answer, closing);
                    }
                    (stream_receiver::Decision::Answer(answer), false) => {
                        return Answer::Now(answer)
                    }
                    (stream_receiver::Decision::Accept(accepted), _) => Accepted::Stream(accepted),
                }
            }
            Protocol::Psk2 => {
                match psk2::decide(&connection.shared_secret, prepare, arrived, address, iv) {
                    psk2::Decision::Answer(answer) => return Answer::Now(answer),
                    psk2::Decision::Accept(accepted) => Accepted::Psk2(accepted),
                }
            }
        };
        Answer::Credit(Acceptance {
            account: self.account.clone(),
            totals: self.totals.clone(),
            store: self.store.clone(),
            connection,
            accepted,
            address: address.clone(),
        })
    }
}

impl Acceptance {
    /// What to credit.
    pub fn amount(&self) -> u64 {
        match &self.accepted {
            Accepted::Stream(a) => a.amount(),
            Accepted::Psk2(a) => a.amount(),
        }
    }

    /// Brings a receipt connection's totals from the store when this process has not seen the
    /// connection yet (it was paid before a restart, or forgotten), so its receipts never go
    /// back. (Connections without receipts keep no stored totals.)
    pub async fn recall(&self) {
        if self.connection.receipts.is_none() {
            return;
        }
        let id = self.connection.id;
        let Some(store) = self.store.clone() else {
            return;
        };
        if lock(&self.totals).connections.contains_key(&id) {
            return;
        }
        let key = totals_key(&id);
        let stored = read_off_thread(store, move |s| s.get_record(&key)).await;
        // An unreadable record counts from 0, as a new connection does.
        let stored = stored.ok().flatten().and_then(|b| decode_totals(&b));
        lock(&self.totals).recall(id, &stored.unwrap_or_default());
    }

    /// The Fulfill, once the amount is reserved for the account: the connection's totals
    /// include it from now on (and its receipts sign them), unless [`Credited::undo`].
    pub fn fulfill(self, iv: &[u8; IV_LEN]) -> (Fulfill, Credited) {
        let id = self.connection.id;
        let (fulfill, streams, after, closed) = match self.accepted {
            Accepted::Stream(accepted) => {
                let streams = accepted.streams.clone();
                let closed = accepted.closes;
                let after = lock(&self.totals).add(id, &streams);
                let fulfill = accepted.fulfill(&after, self.connection.receipts.as_ref(), iv);
                (fulfill, streams, after, closed)
            }
            Accepted::Psk2(accepted) => {
                let streams = vec![(0, accepted.amount())];
                let after = lock(&self.totals).add(id, &streams);
                (accepted.fulfill(iv), streams, after, false)
            }
        };
        let credited = Credited {
            account: self.account,
            totals: self.totals,
            connection: self.connection,
            streams,
            after,
            closed,
        };
        (fulfill, credited)
    }

    /// The answer when the account has only `room` left (its maximum reached).
    pub fn refuse(self, room: u64, iv: &[u8; IV_LEN]) -> Reject {
        match self.accepted {
            Accepted::Stream(accepted) => {
                let totals = lock(&self.totals).get(&self.connection.id);
                accepted.refuse(room, &totals, &self.address, iv)
            }
            Accepted::Psk2(accepted) => accepted.refuse(&self.address, iv),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_undo_and_forget_the_least_recently_paid() {
        let mut totals = Totals::default();
        assert_eq!(totals.add([1; 16], &[(3, 5), (1, 2)]), vec![(1, 2), (3, 5)]);
        assert_eq!(totals.add([1; 16], &[(1, 10)]), vec![(1, 12), (3, 5)]);
        totals.undo([1; 16], &[(1, 10)]);
        assert_eq!(totals.get(&[1; 16]), vec![(1, 2), (3, 5)]);
        assert_eq!(totals.get(&[2; 16]), Vec::new());
        for i in 0..MAX_CONNECTIONS as u64 {
            let mut id = [0; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            id[8] = 7;
            totals.add(id, &[(1, 1)]);
        }
        // [1; 16] was paid first: among the tenth forgotten.
        assert_eq!(totals.get(&[1; 16]), Vec::new());
        assert!(totals.connections.len() <= MAX_CONNECTIONS);
        assert!(totals.connections.len() >= MAX_CONNECTIONS * 9 / 10);
    }
}
