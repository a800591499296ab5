//! The engine: what it keeps, how it pays, how it watches the chain.
//!
//! Paying: a settlement the connector asks for (`POST /accounts/<id>/settlements`) is converted
//! to wei and queued as a payment, durably and in one batch with the answer its idempotency key
//! gets, before the engine acknowledges it. The payer signs each payment once it knows the
//! peer's address: nonce, signed bytes and hash are written (with the next nonce) before the
//! transaction is first broadcast, so a restart broadcasts the very same transaction again and
//! the chain takes it at most once. A payment is done once its receipt has the configured
//! confirmations; one that failed on chain, or whose nonce another transaction took, is signed
//! again with a new nonce: retried, never refunded to the connector.
//!
//! Being paid: the watcher reads every block once it has its confirmations, and records each
//! transfer to our address from a peer's address as a credit, in one batch with the number of
//! the block read, so a restart neither reads a block twice nor skips one. Each credit is sent
//! to the connector with the idempotency key `eth:<transaction hash>` until it acknowledges, so
//! the connector books it once whatever happens. A transfer from an address not known (yet) is
//! kept aside and credited when that address becomes a peer's.
//!
//! Addresses: the engines of two peers tell each other their addresses with RFC 38 messages
//! (`{"type": "address", "address": "0x..."}`, answered the same way), sent through the
//! connectors until the peer's engine answers.

use crate::config::EngineConfig;
use crate::eth::{self, Address, LegacyTx, Wallet};
use crate::rpc::{Rpc, RpcError};
use ilp::rfc38::{self, Quantity};
use ilp_actors::engine_client::EngineClient;
use ilp_actors::settlement_engine::{keyed_check, ApiAnswer, Keyed};
use ilp_actors::store::{read_off_thread, Store, StoreError, StoreOp};
use num_traits::ToPrimitive;
use serde::{Deserialize, Serialize};
use slog::{info, warn, Logger};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify};
use url::Url;

/// Wei have 18 decimals: the scale of every amount the engine credits.
pub const WEI_SCALE: u8 = 18;

/// Blocks read per round of the watcher (it catches up over several rounds).
const BLOCKS_PER_ROUND: u64 = 256;

/// Longest pause between two attempts at telling a peer's engine our address.
const MESSAGE_RETRY_CAP_MS: u64 = 30_000;

mod keys {
    pub const ACCOUNT: &str = "eth/account/";
    pub const ANSWER: &str = "eth/answer/";
    pub const LEFTOVER: &str = "eth/leftover/";
    pub const PAY: &str = "eth/pay/";
    pub const PAID: &str = "eth/paid/";
    pub const CREDIT: &str = "eth/credit/";
    pub const CREDITED: &str = "eth/credited/";
    pub const ORPHAN: &str = "eth/orphan/";
    pub const NONCE: &[u8] = b"eth/nonce";
    pub const SEQ: &[u8] = b"eth/seq";
    pub const SCAN: &[u8] = b"eth/scan";

    pub use ilp::rfc38::keys::range;

    pub fn of(prefix: &str, part: &[u8]) -> Vec<u8> {
        let mut key = prefix.as_bytes().to_vec();
        key.extend_from_slice(hex::encode(part).as_bytes());
        key
    }

    /// Payments sort by their sequence number.
    pub fn seq(prefix: &str, seq: u64) -> Vec<u8> {
        format!("{prefix}{seq:020}").into_bytes()
    }
}

/// An account the connector told us about, and what we learned of its peer's engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountRecord {
    /// The peer engine's address, once it told us.
    peer: Option<String>,
}

/// A settlement to pay on chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub seq: u64,
    pub account: String,
    /// Decimal wei.
    pub wei: String,
    /// The connector's idempotency key it came with.
    pub key: String,
    /// The transaction paying it, once signed.
    pub tx: Option<SignedPayment>,
    /// Transactions that failed on chain or were displaced, before this one.
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedPayment {
    pub nonce: u64,
    pub to: String,
    /// The signed transaction, hex.
    pub raw: String,
    pub hash: String,
}

/// A payment the chain confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paid {
    pub seq: u64,
    pub account: String,
    pub wei: String,
    pub hash: String,
    pub block: u64,
}

/// A transfer a peer made to us: under `eth/credit/` until the connector has booked it, then
/// under `eth/credited/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credit {
    pub account: String,
    pub wei: String,
    pub hash: String,
    pub block: u64,
}

/// A transfer to us from an address that is no peer's (yet).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Orphan {
    from: String,
    wei: String,
    hash: String,
    block: u64,
}

/// The message two engines exchange: an engine that does not know its peer's address sends its
/// own (no proof); the answer carries the peer's address and a proof that its owner answered
/// this very engine: a signature with the address's key over [`proof_hash`]. Only a proven
/// answer teaches an address, so a peer cannot claim an address it does not own (ours, another
/// peer's, the wallet that funds us) and have its transfers counted as its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Address {
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
    },
}

/// What an address proof signs: the chain, the address proven, and the engine it answers.
pub fn proof_hash(chain_id: u64, proven: &Address, asker: &Address) -> eth::H256 {
    let mut data = b"ilp-eth-engine address proof v1".to_vec();
    data.extend_from_slice(&chain_id.to_be_bytes());
    data.extend_from_slice(proven);
    data.extend_from_slice(asker);
    eth::keccak256(&data)
}

/// Why an address was not taken as a peer's.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the address is ours")]
    Ours,
    #[error("the address is the peer of account {0:?}")]
    Taken(String),
    #[error("account {0:?} already pays {1}; DELETE the account to change it")]
    Settled(String, String),
    #[error("no account {0:?}")]
    Unknown(String),
    #[error("the configuration pins this account's peer to {0}")]
    NotPinned(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn read<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

struct State {
    accounts: BTreeMap<String, AccountRecord>,
    next_seq: u64,
    /// The nonce of our next transaction; `None`: read again (store and chain).
    next_nonce: Option<u64>,
    /// The chain head when each transaction (by hash) was first found without a receipt
    /// though its nonce was taken.
    absent: HashMap<String, u64>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    rpc: Rpc,
    wallet: Wallet,
    chain_id: u64,
    connector: EngineClient,
    connector_url: Url,
    confirmations: u64,
    poll: Duration,
    gas_price: Option<u128>,
    gas_limit: u64,
    state: Mutex<State>,
    /// Peer addresses the operator fixed in the configuration (`[peers]`).
    pinned: BTreeMap<String, Address>,
    /// Woken when a payment is queued or a peer's address is learned.
    wake_payer: Notify,
    log: Logger,
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("ethereum node: {0}")]
    Rpc(#[from] RpcError),
}

impl Engine {
    /// Reads what the store holds and checks the chain; the tasks start with [`Engine::run`].
    pub async fn open(
        config: &EngineConfig,
        store: Arc<dyn Store>,
        connector: EngineClient,
        log: Logger,
    ) -> Result<Arc<Engine>, StartError> {
        let wallet = Wallet::from_hex(config.ethereum.private_key.expose())
            .map_err(|e| StartError::Config(format!("ethereum.private_key: {e}")))?;
        let poll = Duration::from_millis(config.ethereum.poll_interval_ms);
        let rpc = Rpc::new(config.ethereum.rpc_url.clone(), Duration::from_secs(10))?;
        let chain_id = loop {
            match rpc.chain_id().await {
                Ok(id) => break id,
                Err(e) if e.is_transport() => {
                    warn!(log, "waiting for the ethereum node"; "error" => %e);
                    tokio::time::sleep(poll.max(Duration::from_millis(500))).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(expected) = config.ethereum.chain_id {
            if expected != chain_id {
                return Err(StartError::Config(format!(
                    "ethereum.chain_id: {expected}, but the node at ethereum.rpc_url is on chain \
                     {chain_id}"
                )));
            }
        }
        let mut accounts = BTreeMap::new();
        let (from, to) = keys::range(keys::ACCOUNT);
        for (key, value) in store.scan_records(&from, &to)? {
            let id = hex::decode(&key[keys::ACCOUNT.len()..])
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| StoreError::Corrupt("account key".into()))?;
            accounts.insert(id, read::<AccountRecord>(&value)?);
        }
        let next_seq = match store.get_record(keys::SEQ)? {
            Some(v) => read::<u64>(&v)?,
            None => 0,
        };
        // At the first start, blocks before now hold nothing for us: no peer knew our address.
        if store.get_record(keys::SCAN)?.is_none() {
            let head = rpc.block_number().await?;
            store
                .commit(vec![StoreOp::PutRecord {
                    key: keys::SCAN.to_vec(),
                    value: json(&head),
                }])
                .await?;
        }
        let connector_url = config.engine.connector_url.clone();
        Ok(Arc::new(Engine {
            store,
            rpc,
            wallet,
            chain_id,
            connector,
            connector_url,
            confirmations: config.ethereum.confirmations,
            poll,
            gas_price: config.ethereum.gas_price,
            gas_limit: config.ethereum.gas_limit,
            state: Mutex::new(State {
                accounts,
                next_seq,
                next_nonce: None,
                absent: HashMap::new(),
            }),
            wake_payer: Notify::new(),
            pinned: config.peers.clone(),
            log,
        }))
    }

    pub fn address(&self) -> Address {
        self.wallet.address()
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Starts the payer, the watcher, and an address exchange for each account whose peer is
    /// not known yet.
    pub async fn run(self: &Arc<Self>) {
        let unknown: Vec<String> = {
            let state = self.state.lock().await;
            state
                .accounts
                .iter()
                .filter(|(_, a)| a.peer.is_none())
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in unknown {
            self.spawn_exchange(id);
        }
        match self.pending() {
            Ok(p) if !p.is_empty() => {
                info!(self.log, "unconfirmed payments at start"; "count" => p.len());
            }
            Ok(_) => {}
            Err(e) => warn!(self.log, "payments unreadable"; "error" => %e),
        }
        let payer = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = payer.pay_round().await {
                    warn!(payer.log, "paying"; "error" => %e);
                }
                tokio::select! {
                    () = payer.wake_payer.notified() => {}
                    () = tokio::time::sleep(payer.poll) => {}
                }
            }
        });
        let watcher = self.clone();
        tokio::spawn(async move {
            let mut retry = HashMap::new();
            loop {
                if let Err(e) = watcher.watch_round().await {
                    warn!(watcher.log, "watching the chain"; "error" => %e);
                }
                for failure in watcher.deliver_credits(&mut retry).await {
                    warn!(watcher.log, "crediting the connector"; "error" => failure);
                }
                tokio::time::sleep(watcher.poll).await;
            }
        });
    }

    // ---- the API the connector calls ---------------------------------------------------------

    /// `POST /accounts` `{"id"}`.
    pub async fn create_account(self: &Arc<Self>, id: &str) -> ApiAnswer {
        let new = {
            let mut state = self.state.lock().await;
            if state.accounts.contains_key(id) {
                false
            } else {
                let put = StoreOp::PutRecord {
                    key: keys::of(keys::ACCOUNT, id.as_bytes()),
                    value: json(&AccountRecord::default()),
                };
                if let Err(e) = self.store.commit(vec![put]).await {
                    return problem(500, &e);
                }
                state
                    .accounts
                    .insert(id.to_owned(), AccountRecord::default());
                true
            }
        };
        if new {
            info!(self.log, "account created"; "account" => id);
            self.spawn_exchange(id.to_owned());
        }
        ApiAnswer {
            status: 201,
            body: json(&serde_json::json!({ "id": id })).into(),
            content_type: "application/json",
        }
    }

    /// `DELETE /accounts/<id>`: forgets the account and its peer's address (how an operator
    /// changes it); payments queued for it wait until it is created and its peer's address
    /// proven again.
    pub async fn delete_account(&self, id: &str) -> ApiAnswer {
        let mut state = self.state.lock().await;
        let delete = StoreOp::DeleteRecord {
            key: keys::of(keys::ACCOUNT, id.as_bytes()),
        };
        if let Err(e) = self.store.commit(vec![delete]).await {
            return problem(500, &e);
        }
        state.accounts.remove(id);
        ApiAnswer {
            status: 204,
            body: Default::default(),
            content_type: "text/plain",
        }
    }

    /// `POST /accounts/<id>/settlements`: queues the payment, once per idempotency key.
    pub async fn settle(&self, id: &str, key: Option<&str>, quantity: &Quantity) -> ApiAnswer {
        let (key, amount) = match keyed_check(key, quantity) {
            Ok(checked) => checked,
            Err(refused) => return refused,
        };
        // One settlement at a time: a repeat never finds its key new while the first is
        // being written, and an account's leftover is read and written in turn.
        let mut state = self.state.lock().await;
        if !state.accounts.contains_key(id) {
            return ApiAnswer::problem(404, "Unknown account", &format!("no account {id:?}"));
        }
        let digest = rfc38::digest(&[b"eth-settle", id.as_bytes(), key.as_bytes()]);
        let keyed = Keyed {
            answer_key: keys::of(keys::ANSWER, &digest),
            leftover_key: keys::of(keys::LEFTOVER, id.as_bytes()),
            input_hash: rfc38::credit_input_hash(id, &amount, quantity.scale),
            body: json(quantity),
            content_type: "application/json",
            at_ms: now_ms(),
        };
        let converted = match keyed
            .convert(self.store.clone(), &amount, quantity.scale, WEI_SCALE)
            .await
        {
            Ok(c) => c,
            Err(answer) => {
                if answer.status < 300 {
                    info!(self.log, "settlement repeated"; "account" => id, "key" => &key);
                }
                return answer;
            }
        };
        let Some(wei) = converted.amount.amount.to_u128() else {
            return ApiAnswer::problem(400, "Bad quantity", "more wei than 128 bits hold");
        };
        let mut ops = converted.ops;
        let seq = state.next_seq;
        if wei > 0 {
            let payment = Payment {
                seq,
                account: id.to_owned(),
                wei: wei.to_string(),
                key: key.clone(),
                tx: None,
                attempts: 0,
            };
            ops.push(StoreOp::PutRecord {
                key: keys::seq(keys::PAY, seq),
                value: json(&payment),
            });
            ops.push(StoreOp::PutRecord {
                key: keys::SEQ.to_vec(),
                value: json(&(seq + 1)),
            });
        }
        if let Err(e) = self.store.commit(ops).await {
            return problem(500, &e);
        }
        if wei > 0 {
            state.next_seq = seq + 1;
            info!(self.log, "settlement queued"; "account" => id, "wei" => wei, "key" => &key);
            self.wake_payer.notify_one();
        }
        converted.answer
    }

    /// `POST /accounts/<id>/messages`: a message from the peer's engine, asking for our address:
    /// answered with it and its proof for the asker.
    pub async fn message(self: &Arc<Self>, id: &str, body: &[u8]) -> ApiAnswer {
        let message: Message = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                return ApiAnswer::problem(
                    400,
                    "Unknown message",
                    &format!("expected {{\"type\": \"address\", \"address\": \"0x...\"}}: {e}"),
                )
            }
        };
        let Message::Address { address, .. } = message;
        if !self.state.lock().await.accounts.contains_key(id) {
            // Proofs are given for accounts our connector told us about only.
            return ApiAnswer::problem(404, "Unknown account", &format!("no account {id:?}"));
        }
        let asker = match eth::parse_address(&address) {
            Ok(a) => a,
            Err(e) => return ApiAnswer::problem(400, "Bad address", &e.to_string()),
        };
        let hash = proof_hash(self.chain_id, &self.address(), &asker);
        let proof = match self.wallet.sign_hash(&hash) {
            Ok(p) => p,
            Err(e) => return problem(500, &e),
        };
        info!(self.log, "address asked"; "account" => id, "by" => address);
        let reply = Message::Address {
            address: eth::format_address(&self.address()),
            proof: Some(hex::encode(proof)),
        };
        ApiAnswer {
            status: 201,
            body: json(&reply).into(),
            content_type: "application/octet-stream",
        }
    }

    /// The peer's address in its engine's answer to our ask, once its proof checks.
    fn proven_address(&self, reply: &[u8]) -> Result<Address, String> {
        let Message::Address { address, proof } =
            serde_json::from_slice(reply).map_err(|e| format!("unreadable answer: {e}"))?;
        let peer = eth::parse_address(&address).map_err(|e| e.to_string())?;
        let proof = proof.ok_or("the answer carries no proof")?;
        let signature: [u8; 65] = hex::decode(proof.trim_start_matches("0x"))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the proof is not 65 bytes of hex")?;
        let hash = proof_hash(self.chain_id, &peer, &self.address());
        match eth::recover_address(&hash, &signature) {
            Ok(signer) if signer == peer => Ok(peer),
            Ok(_) => Err(format!("the proof was not made by {address}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Records `peer` (proven) as the address of `id`'s peer engine, and credits what it sent
    /// before we knew it. An address is not taken when it is ours or another account's peer,
    /// nor when the account already has another (the operator deletes the account to change it).
    async fn learn_peer(&self, id: &str, peer: Address) -> Result<(), PeerError> {
        let mut state = self.state.lock().await;
        let text = eth::format_address(&peer);
        if peer == self.address() {
            return Err(PeerError::Ours);
        }
        if let Some((other, _)) = state
            .accounts
            .iter()
            .find(|(other, a)| *other != id && a.peer.as_deref() == Some(text.as_str()))
        {
            return Err(PeerError::Taken(other.clone()));
        }
        let Some(account) = state.accounts.get(id) else {
            // Deleted while its peer was asked: the operator's deletion stands.
            return Err(PeerError::Unknown(id.to_owned()));
        };
        match account.peer.as_deref() {
            Some(known) if known == text => return Ok(()),
            Some(known) => return Err(PeerError::Settled(id.to_owned(), known.to_owned())),
            None => {}
        }
        if let Some(pinned) = self.pinned.get(id) {
            if *pinned != peer {
                return Err(PeerError::NotPinned(eth::format_address(pinned)));
            }
        }
        let record = AccountRecord {
            peer: Some(text.clone()),
        };
        let mut ops = vec![StoreOp::PutRecord {
            key: keys::of(keys::ACCOUNT, id.as_bytes()),
            value: json(&record),
        }];
        // Transfers it made before we knew its address become its credits.
        let (from, to) = keys::range(keys::ORPHAN);
        for (key, value) in self.store.scan_records(&from, &to)? {
            let orphan: Orphan = read(&value)?;
            if orphan.from == text {
                ops.push(StoreOp::DeleteRecord { key });
                let credit = Credit {
                    account: id.to_owned(),
                    wei: orphan.wei,
                    hash: orphan.hash.clone(),
                    block: orphan.block,
                };
                ops.push(StoreOp::PutRecord {
                    key: keys::of(keys::CREDIT, orphan.hash.as_bytes()),
                    value: json(&credit),
                });
            }
        }
        self.store.commit(ops).await?;
        state.accounts.insert(id.to_owned(), record);
        info!(self.log, "peer address learned"; "account" => id, "address" => text);
        self.wake_payer.notify_one();
        Ok(())
    }

    /// Tells `id`'s peer engine our address until it answers with its own.
    fn spawn_exchange(self: &Arc<Self>, id: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            let hello = json(&Message::Address {
                address: eth::format_address(&engine.address()),
                proof: None,
            });
            let mut attempt = 0u32;
            loop {
                let known = engine
                    .state
                    .lock()
                    .await
                    .accounts
                    .get(&id)
                    .is_none_or(|a| a.peer.is_some());
                if known {
                    return;
                }
                let sent = engine
                    .connector
                    .message(&engine.connector_url, &id, hello.clone().into())
                    .await;
                match sent.map(|reply| engine.proven_address(&reply)) {
                    Ok(Ok(peer)) => match engine.learn_peer(&id, peer).await {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(engine.log, "peer address refused"; "account" => &id, "error" => %e)
                        }
                    },
                    Ok(Err(e)) => {
                        warn!(engine.log, "peer's answer refused"; "account" => &id, "error" => e)
                    }
                    Err(e) => {
                        warn!(engine.log, "peer engine not reached yet"; "account" => &id, "error" => %e)
                    }
                }
                let ms = rfc38::backoff_ms(attempt, 500, MESSAGE_RETRY_CAP_MS, rand::random());
                tokio::time::sleep(Duration::from_millis(ms)).await;
                attempt = attempt.saturating_add(1);
            }
        });
    }

    // ---- paying ------------------------------------------------------------------------------

    async fn pay_round(&self) -> Result<(), RoundError> {
        let (from, to) = keys::range(keys::PAY);
        let records =
            read_off_thread(self.store.clone(), move |s| s.scan_records(&from, &to)).await?;
        if records.is_empty() {
            return Ok(());
        }
        let head = self.rpc.block_number().await?;
        let confirmed_nonce = self
            .rpc
            .transaction_count(&self.address(), "latest")
            .await?;
        for (_, value) in records {
            let mut payment: Payment = read(&value)?;
            let Some(tx) = payment.tx.clone() else {
                self.sign_and_send(payment).await?;
                continue;
            };
            let hash = eth::parse_h256(&tx.hash).map_err(|e| RoundError::Other(e.to_string()))?;
            match self.rpc.receipt(&hash).await? {
                Some(r) if head + 1 >= r.block_number + self.confirmations => {
                    if r.success {
                        self.finish(payment, r.block_number).await?;
                    } else {
                        warn!(self.log, "payment failed on chain; paying again";
                            "seq" => payment.seq, "hash" => &tx.hash);
                        payment.tx = None;
                        payment.attempts += 1;
                        self.put_payment(&payment, Vec::new()).await?;
                    }
                }
                Some(_) => {
                    // Mined, not yet confirmed.
                    self.state.lock().await.absent.remove(&tx.hash);
                }
                None if confirmed_nonce > tx.nonce => {
                    if !self.absent_long_enough(&tx.hash, head).await {
                        // A node behind a load balancer may not have the receipt yet.
                        continue;
                    }
                    // Its nonce went to another transaction: this one can never be mined.
                    warn!(self.log, "payment displaced; paying again"; "seq" => payment.seq,
                        "nonce" => tx.nonce);
                    payment.tx = None;
                    payment.attempts += 1;
                    self.put_payment(&payment, Vec::new()).await?;
                    self.state.lock().await.next_nonce = None;
                }
                None => self.broadcast(&payment, &tx).await,
            }
        }
        Ok(())
    }

    /// Whether transaction `hash` has been without a receipt, though its nonce was taken, for
    /// more blocks than its confirmations and two since it was first found so (`head` now).
    async fn absent_long_enough(&self, hash: &str, head: u64) -> bool {
        let mut state = self.state.lock().await;
        let since = *state.absent.entry(hash.to_owned()).or_insert(head);
        if head > since + self.confirmations + 2 {
            state.absent.remove(hash);
            true
        } else {
            false
        }
    }

    async fn sign_and_send(&self, mut payment: Payment) -> Result<(), RoundError> {
        let peer = {
            let state = self.state.lock().await;
            state
                .accounts
                .get(&payment.account)
                .and_then(|a| a.peer.clone())
        };
        // Waits until the peer's engine told us where to pay.
        let Some(peer) = peer else {
            return Ok(());
        };
        let to = eth::parse_address(&peer).map_err(|e| RoundError::Other(e.to_string()))?;
        let value: u128 = payment
            .wei
            .parse()
            .map_err(|_| RoundError::Other(format!("payment {} amount", payment.seq)))?;
        let gas_price = match self.gas_price {
            Some(p) => p,
            None => self.rpc.gas_price().await?,
        };
        let nonce = self.next_nonce().await?;
        let signed = LegacyTx {
            nonce,
            gas_price,
            gas: self.gas_limit,
            to,
            value,
            data: Vec::new(),
            chain_id: self.chain_id,
        }
        .sign(&self.wallet)
        .map_err(|e| RoundError::Other(e.to_string()))?;
        let tx = SignedPayment {
            nonce,
            to: peer,
            raw: hex::encode(&signed.raw),
            hash: eth::format_h256(&signed.hash),
        };
        payment.tx = Some(tx.clone());
        // Written before it is first broadcast: after a crash the same bytes go out again.
        let bump = vec![StoreOp::PutRecord {
            key: keys::NONCE.to_vec(),
            value: json(&(nonce + 1)),
        }];
        self.put_payment(&payment, bump).await?;
        self.state.lock().await.next_nonce = Some(nonce + 1);
        info!(self.log, "paying"; "seq" => payment.seq, "account" => &payment.account,
            "wei" => &payment.wei, "nonce" => nonce, "hash" => &tx.hash);
        self.broadcast(&payment, &tx).await;
        Ok(())
    }

    /// Sends the signed transaction (again); what the node says is only logged, since the
    /// receipt decides.
    async fn broadcast(&self, payment: &Payment, tx: &SignedPayment) {
        let Ok(raw) = hex::decode(&tx.raw) else {
            return;
        };
        if let Err(e) = self.rpc.send_raw_transaction(&raw).await {
            warn!(self.log, "broadcast"; "seq" => payment.seq, "hash" => &tx.hash, "error" => %e);
        }
    }

    async fn next_nonce(&self) -> Result<u64, RoundError> {
        if let Some(n) = self.state.lock().await.next_nonce {
            return Ok(n);
        }
        let stored = match self.store.get_record(keys::NONCE)? {
            Some(v) => read::<u64>(&v)?,
            None => 0,
        };
        let chain = self
            .rpc
            .transaction_count(&self.address(), "pending")
            .await?;
        Ok(stored.max(chain))
    }

    async fn put_payment(
        &self,
        payment: &Payment,
        mut ops: Vec<StoreOp>,
    ) -> Result<(), StoreError> {
        ops.push(StoreOp::PutRecord {
            key: keys::seq(keys::PAY, payment.seq),
            value: json(payment),
        });
        self.store.commit(ops).await
    }

    async fn finish(&self, payment: Payment, block: u64) -> Result<(), StoreError> {
        let hash = payment
            .tx
            .as_ref()
            .map(|t| t.hash.clone())
            .unwrap_or_default();
        info!(self.log, "paid"; "seq" => payment.seq, "account" => &payment.account,
            "wei" => &payment.wei, "hash" => &hash, "block" => block);
        let paid = Paid {
            seq: payment.seq,
            account: payment.account,
            wei: payment.wei,
            hash,
            block,
        };
        self.store
            .commit(vec![
                StoreOp::DeleteRecord {
                    key: keys::seq(keys::PAY, payment.seq),
                },
                StoreOp::PutRecord {
                    key: keys::seq(keys::PAID, payment.seq),
                    value: json(&paid),
                },
            ])
            .await
    }

    // ---- being paid --------------------------------------------------------------------------

    async fn watch_round(&self) -> Result<(), RoundError> {
        let head = self.rpc.block_number().await?;
        let Some(last_ready) = (head + 1).checked_sub(self.confirmations) else {
            return Ok(());
        };
        let scanned = match self.store.get_record(keys::SCAN)? {
            Some(v) => read::<u64>(&v)?,
            None => head,
        };
        let ours = self.address();
        let end = last_ready.min(scanned + BLOCKS_PER_ROUND);
        for number in scanned + 1..=end {
            let Some(block) = self.rpc.block_with_transactions(number).await? else {
                break;
            };
            let mut received = Vec::new();
            for tx in &block.transactions {
                if tx.to != Some(ours) || tx.value == 0 {
                    continue;
                }
                // A transfer to an account can only fail if it is a contract; ours is not,
                // but the receipt is what says the value moved.
                if self.rpc.receipt(&tx.hash).await?.is_some_and(|r| r.success) {
                    received.push(tx);
                }
            }
            // Sorted by the peers known at the commit, under the lock learning a peer takes:
            // a transfer from an address learned meanwhile is its credit or an orphan that
            // learning converts, never an orphan left behind.
            let state = self.state.lock().await;
            let mut ops = Vec::new();
            for tx in received {
                let from = eth::format_address(&tx.from);
                let hash = eth::format_h256(&tx.hash);
                let account = state
                    .accounts
                    .iter()
                    .find(|(_, a)| a.peer.as_deref() == Some(from.as_str()))
                    .map(|(id, _)| id.clone());
                match account {
                    Some(account) => {
                        info!(self.log, "payment received"; "account" => &account,
                            "wei" => tx.value, "hash" => &hash, "block" => number);
                        let credit = Credit {
                            account,
                            wei: tx.value.to_string(),
                            hash: hash.clone(),
                            block: number,
                        };
                        ops.push(StoreOp::PutRecord {
                            key: keys::of(keys::CREDIT, hash.as_bytes()),
                            value: json(&credit),
                        });
                    }
                    None => {
                        let orphan = Orphan {
                            from,
                            wei: tx.value.to_string(),
                            hash: hash.clone(),
                            block: number,
                        };
                        ops.push(StoreOp::PutRecord {
                            key: keys::of(keys::ORPHAN, hash.as_bytes()),
                            value: json(&orphan),
                        });
                    }
                }
            }
            ops.push(StoreOp::PutRecord {
                key: keys::SCAN.to_vec(),
                value: json(&number),
            });
            self.store.commit(ops).await?;
            drop(state);
        }
        Ok(())
    }

    /// Sends every credit the connector has not acknowledged, with its idempotency key; one
    /// refused waits longer after each refusal (`retry` keeps when) without holding up the
    /// others. A credit taken moves to the credited ones. Returns what failed.
    async fn deliver_credits(&self, retry: &mut HashMap<String, (u32, Instant)>) -> Vec<String> {
        let (from, to) = keys::range(keys::CREDIT);
        let records =
            match read_off_thread(self.store.clone(), move |s| s.scan_records(&from, &to)).await {
                Ok(r) => r,
                Err(e) => return vec![e.to_string()],
            };
        let mut failures = Vec::new();
        let now = Instant::now();
        for (key, value) in records {
            let credit: Credit = match read(&value) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            if retry.get(&credit.hash).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            let quantity = Quantity::new(&credit.wei, WEI_SCALE);
            let idempotency_key = format!("eth:{}", credit.hash);
            let taken = self
                .connector
                .settle(
                    &self.connector_url,
                    &credit.account,
                    &idempotency_key,
                    &quantity,
                )
                .await;
            match taken {
                Ok(()) => {
                    retry.remove(&credit.hash);
                    let moved = self
                        .store
                        .commit(vec![
                            StoreOp::DeleteRecord { key },
                            StoreOp::PutRecord {
                                key: keys::of(keys::CREDITED, credit.hash.as_bytes()),
                                value: json(&credit),
                            },
                        ])
                        .await;
                    if let Err(e) = moved {
                        failures.push(e.to_string());
                    }
                    info!(self.log, "credited"; "account" => &credit.account,
                        "wei" => &credit.wei, "hash" => &credit.hash);
                }
                Err(e) => {
                    let attempt = retry.get(&credit.hash).map_or(0, |(a, _)| *a);
                    let ms = rfc38::backoff_ms(attempt, 500, 60_000, rand::random());
                    retry.insert(
                        credit.hash.clone(),
                        (attempt.saturating_add(1), now + Duration::from_millis(ms)),
                    );
                    failures.push(format!(
                        "credit {} of {} wei to {} not taken yet: {e}",
                        credit.hash, credit.wei, credit.account
                    ));
                }
            }
        }
        failures
    }

    /// Payments not yet confirmed.
    fn pending(&self) -> Result<Vec<Payment>, StoreError> {
        let (from, to) = keys::range(keys::PAY);
        self.store
            .scan_records(&from, &to)?
            .iter()
            .map(|(_, v)| read(v))
            .collect()
    }
}

/// What stopped one round of the payer or the watcher (the next round tries again).
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("ethereum node: {0}")]
    Rpc(#[from] RpcError),
    #[error("{0}")]
    Other(String),
}

fn problem(status: u16, e: &dyn std::fmt::Display) -> ApiAnswer {
    ApiAnswer::problem(status, "Engine error", &e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
