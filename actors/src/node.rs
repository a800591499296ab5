//! A node: starts and supervises every actor of one connector from a [`Config`] and wires them
//! together:
//!
//! ```text
//! link ─► PeerAccount ─ForwardPrepare─► Router ─SendPrepare─► PeerAccount ─► link
//!                                        │  ▲ ApplyRouteUpdate
//!        Reserve/ResolvePacket, GetBalance│  └── RouteBroadcaster ◄─ peer.route.*
//!                                        ▼
//!                                 BalanceKeeper ─SettleThresholdCrossed─► SettlementEngine ◄─ peer.settle
//! ```
//!
//! The Router and the PeerAccounts need each other's addresses, as do the BalanceKeeper and the
//! SettlementEngine; each pair is built inside the first one's supervisor closure, where its
//! address already exists. Every actor is started under an actix `Supervisor`, so a stop
//! (`Crash`, or a failure) restarts it with its address unchanged.

use crate::balance_keeper::{BalanceKeeper, UpdateLimits};
use crate::clock::Clock;
use crate::engine_client::EngineClient;
use crate::link::Link;
use crate::messages::{AccountId, ForwardPrepare, SendPrepare, SetNodeAddress};
use crate::metrics::Metrics;
use crate::payments::Payments;
use crate::peer_account::{
    NodeAddress, PeerAccount, PeerAccountSettings, ReplaceLink, Retire, UpdateSettings,
};
use crate::receiver::Receivers;
use crate::route_broadcaster::{
    BroadcastSettings, Reconfigure as BroadcasterReconfigure, RouteBroadcasterActor,
};
use crate::router::{
    PeerProtocolHandlers, Reconfigure as RouterReconfigure, Router, RouterAccount, RouterBalance,
    RouterSettings,
};
use crate::settlement_engine::{EngineAccount, SettlementEngine, UpdateAccounts, UpdateEngines};
use crate::shutdown::PacketGate;
use crate::store::{Store, StoreError};
use actix::prelude::*;
use ilp::config::{AccountConfig, Config, ConfigChanges};
use ilp::ildcp::{self, IldcpResponse};
use ilp::packet::{Address, ErrorClass, ErrorCode, Timestamp};
use ilp::peer_protocol::PEER_PROTOCOL_EXPIRY_DURATION_MS;
use ilp::policy::balance::BalanceLimits;
use ilp::rates::RateError;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("account {0} has no link")]
    MissingLink(String),
    #[error("rates: {0}")]
    Rates(#[from] RateError),
    #[error("the parent refused to give us an address over IL-DCP ({0})")]
    AddressRefused(ErrorCode),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(String),
}

#[derive(Debug)]
enum AddressRequestError {
    /// The parent (or its link) rejected the request with this code.
    Refused(ErrorCode),
    /// The account's mailbox is gone or the answer is not an IL-DCP response.
    Failed,
}

/// One IL-DCP request through the parent's PeerAccount.
async fn request_address(
    account: &Addr<PeerAccount>,
    clock: Clock,
) -> Result<IldcpResponse, AddressRequestError> {
    let expires_at = clock
        .now()
        .checked_add_millis(PEER_PROTOCOL_EXPIRY_DURATION_MS)
        .unwrap_or(Timestamp::MAX);
    let prepare = ildcp::request(expires_at).map_err(|_| AddressRequestError::Failed)?;
    let answer = match account.send(SendPrepare { prepare }).await {
        Ok(reply) => reply.await,
        Err(_) => return Err(AddressRequestError::Failed),
    };
    match answer {
        Ok(fulfill) => {
            IldcpResponse::from_fulfill(&fulfill).map_err(|_| AddressRequestError::Failed)
        }
        Err(reject) => Err(AddressRequestError::Refused(reject.code())),
    }
}

/// A real node's randomness, drawn from the operating system's RNG: the seed of its random
/// choices and the routing secret it uses when `node.routing_secret` is not configured. The
/// core takes randomness as a parameter; this is where the binary gets it. (A seed read from
/// the clock, as before, let anybody who knew roughly when a node started guess its secret;
/// and a secret derived from a 64-bit seed has at most 64 bits, whatever its length.)
#[derive(Clone, Copy)]
pub struct NodeRandomness {
    pub seed: u64,
    pub routing_secret: [u8; 32],
}

impl NodeRandomness {
    pub fn from_os() -> Result<Self, rand::Error> {
        let mut os = rand::rngs::OsRng;
        let mut routing_secret = [0u8; 32];
        os.try_fill_bytes(&mut routing_secret)?;
        let mut seed = [0u8; 8];
        os.try_fill_bytes(&mut seed)?;
        Ok(NodeRandomness {
            seed: u64::from_be_bytes(seed),
            routing_secret,
        })
    }
}

impl std::fmt::Debug for NodeRandomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRandomness")
            .field("seed", &self.seed)
            .field("routing_secret", &"***")
            .finish()
    }
}

/// What a node needs beside its configuration.
pub struct NodeOptions {
    pub clock: Clock,
    pub store: Arc<dyn Store>,
    /// Seeds every random choice (routing table ids, settlement ids, and, with
    /// [`Node::start`], the routing secret when the config has none), so a simulation replays
    /// exactly.
    pub seed: u64,
    /// The link of every account, by account id.
    pub links: BTreeMap<AccountId, Arc<dyn Link>>,
    /// Where the accounts count their packets (the admin API serves them); `None`: no metrics.
    pub metrics: Option<Arc<Metrics>>,
}

/// The running actors of one node.
pub struct Node {
    clock: Clock,
    /// The routing secret drawn at start when the configuration has none; kept for reloads.
    routing_secret: [u8; 32],
    pub address: NodeAddress,
    /// Every packet the Router handles passes here; closing it drains the node.
    pub gate: Arc<PacketGate>,
    pub router: Addr<Router>,
    pub accounts: BTreeMap<AccountId, Addr<PeerAccount>>,
    pub balance: Addr<BalanceKeeper>,
    pub settlement: Addr<SettlementEngine>,
    pub broadcaster: Addr<RouteBroadcasterActor>,
    /// The store the BalanceKeeper commits to (the admin API snapshots it).
    pub store: Arc<dyn Store>,
    /// The local accounts' receivers: their keys issue payment credentials.
    pub receivers: Receivers,
    /// Payment events, announced once durable (the admin API's live streams subscribe).
    pub payment_feed: crate::payment_log::PaymentFeed,
    /// The local accounts' webhook tasks.
    pub webhooks: crate::webhooks::Webhooks,
    /// Payments sent from the local accounts.
    pub payer: crate::payer::Payer,
    /// Fetches paid HTTP resources for local accounts, paying through `payer`.
    pub http_client: crate::paid_client::PaidHttpClient,
    /// Every account's link, by account id.
    pub links: BTreeMap<AccountId, Arc<dyn Link>>,
    pub metrics: Option<Arc<Metrics>>,
}

impl Node {
    /// Starts every actor of the node described by `config` in the current actix System. A
    /// routing secret the configuration lacks is derived from `options.seed` (simulations and
    /// tests, which replay from a seed); the binary uses [`Node::start_with_routing_secret`].
    pub fn start(config: &Config, options: NodeOptions) -> Result<Node, NodeError> {
        Self::start_inner(config, options, None)
    }

    /// As [`Node::start`], with `routing_secret` (drawn from the OS RNG, see
    /// [`NodeRandomness`]) used when the configuration has none.
    pub fn start_with_routing_secret(
        config: &Config,
        options: NodeOptions,
        routing_secret: [u8; 32],
    ) -> Result<Node, NodeError> {
        Self::start_inner(config, options, Some(routing_secret))
    }

    fn start_inner(
        config: &Config,
        options: NodeOptions,
        routing_secret: Option<[u8; 32]>,
    ) -> Result<Node, NodeError> {
        let NodeOptions {
            clock,
            store,
            seed,
            links,
            metrics,
        } = options;
        // The binary passes the routing secret it drew from the OS; simulations replay a seed.
        let from_os = routing_secret.is_some();
        // A local account has no link; the Router answers its packets.
        let mut links = links;
        for (id, account) in &config.accounts {
            if account.is_local() {
                links
                    .entry(Arc::from(id.as_str()))
                    .or_insert_with(|| Arc::new(crate::link::UnconnectedLink));
            } else if !links.contains_key(id.as_str()) {
                return Err(NodeError::MissingLink(id.clone()));
            }
        }
        // Paid packets whose Fulfill a crash may have kept from their sender.
        let payments = Payments::new();
        crate::replay::load_paid(store.as_ref(), clock.now(), &payments)?;
        if let Some(metrics) = &metrics {
            metrics.watch_payments(payments.clone(), clock);
        }
        let gate = PacketGate::new();
        let router_gate = gate.clone();
        let mut rng = SmallRng::seed_from_u64(seed);
        let router_settings = RouterSettings::from_config(config)?;
        // Drawn even when not used, so the seeds below stay those of earlier versions.
        let mut derived_secret = [0u8; 32];
        rng.fill_bytes(&mut derived_secret);
        let secret = routing_secret.unwrap_or(derived_secret);
        let broadcast_settings = BroadcastSettings::from_config(config, secret);
        let routing_secret = broadcast_settings.routing_secret;
        let broadcaster_seed = rng.next_u64();
        let settlement_seed = rng.next_u64();
        let address = NodeAddress::new(config.node.ilp_address.clone());
        let receivers =
            Receivers::new(&receiver_secret(config, store.as_ref(), from_os, &mut rng)?)
                .with_store(store.clone());
        let router_receivers = receivers.clone();
        let payment_feed = crate::payment_log::payment_feed();
        let keeper_feed = payment_feed.clone();
        let mut webhooks = crate::webhooks::Webhooks::new(store.clone(), payment_feed.clone());
        webhooks.apply(config);

        let engine_tls = crate::tls::client_config(
            &ilp::config::ClientTlsConfig::default(),
            "settlement_engine_url",
        )
        .map_err(|e| NodeError::Tls(e.to_string()))?;
        let engine_client = EngineClient::new(engine_tls, ENGINE_CALL_TIMEOUT);

        // Supervisor closures must own what they use; the results come back through `slot`,
        // filled before `Supervisor::start` returns (it runs its closure synchronously).
        let slot: Arc<Mutex<Option<Started>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let account_configs = config.accounts.clone();
        let limits = balance_limits(config);
        let node_address = address.clone();
        let node_store = store.clone();
        let node_links = links.clone();
        let node_metrics = metrics.clone();
        let router = Supervisor::start(move |ctx: &mut Context<Router>| {
            let router_addr = ctx.address();
            let mut accounts = BTreeMap::new();
            for (id, account) in &account_configs {
                let id: AccountId = Arc::from(id.as_str());
                let Some(link) = links.get(&id).cloned() else {
                    continue;
                };
                let peer = start_account(AccountStart {
                    id: &id,
                    config: account,
                    link,
                    node_address: &node_address,
                    router: router_addr.clone().recipient(),
                    clock,
                    metrics: metrics.as_ref(),
                });
                accounts.insert(id, peer);
            }
            let sends: BTreeMap<AccountId, Recipient<SendPrepare>> = accounts
                .iter()
                .map(|(id, a)| (id.clone(), a.clone().recipient()))
                .collect();

            let engine_slot: Arc<Mutex<Option<Addr<SettlementEngine>>>> = Arc::default();
            let engine_out = engine_slot.clone();
            let engine_address = node_address.clone();
            let engine_sends = bilateral(&account_configs, &sends);
            let engine_accounts = engine_accounts(&account_configs, &sends);
            let engine_store = store.clone();
            let balance = Supervisor::start(move |ctx: &mut Context<BalanceKeeper>| {
                let keeper = ctx.address().recipient();
                let reckon = ctx.address().recipient();
                let engine = Supervisor::start(move |_| {
                    SettlementEngine::new(
                        engine_address,
                        engine_sends,
                        keeper,
                        engine_store,
                        clock,
                        settlement_seed,
                    )
                    .with_engines(engine_accounts, engine_client, reckon)
                });
                put(&engine_out, engine.clone());
                BalanceKeeper::new(limits, store, Some(engine.recipient()))
                    .expire_fulfill_records(clock)
                    .with_feed(keeper_feed)
            });
            let engine = take(&engine_slot);
            let broadcaster_sends = sends.clone();
            let to_router = router_addr.clone().recipient();
            let broadcaster = Supervisor::start(move |_| {
                RouteBroadcasterActor::new(
                    broadcast_settings,
                    broadcaster_sends,
                    to_router,
                    clock,
                    broadcaster_seed,
                )
            });
            let router_accounts = router_accounts(&account_configs, &sends);
            let handlers = PeerProtocolHandlers {
                ccp: Some(broadcaster.clone().recipient()),
                settle: Some(engine.clone().recipient()),
            };
            let balance_recipients = RouterBalance {
                reserve: balance.clone().recipient(),
                resolve: balance.clone().recipient(),
                get: balance.clone().recipient(),
                record: Some(balance.clone().recipient()),
            };
            put(
                &out,
                Started {
                    accounts,
                    balance,
                    settlement: engine,
                    broadcaster,
                },
            );
            Router::new(
                router_settings,
                router_accounts,
                balance_recipients,
                handlers,
                clock,
            )
            .with_payments(payments)
            .with_receivers(router_receivers)
            .with_gate(router_gate)
        });
        let Started {
            accounts,
            balance,
            settlement,
            broadcaster,
        } = take(&slot);
        let spsp = crate::payer::spsp_client(config).map_err(|e| NodeError::Tls(e.to_string()))?;
        let payer = crate::payer::Payer::new(
            clock,
            node_store.clone(),
            spsp,
            balance.clone().recipient(),
            balance.clone().recipient(),
            crate::payer::PayerSettings::from_config(config),
            crate::payer::paying_accounts(config, &accounts),
        );
        let http_tls =
            crate::tls::client_config(&ilp::config::ClientTlsConfig::default(), "paid HTTP client")
                .map_err(|e| NodeError::Tls(e.to_string()))?;
        let http_client = crate::paid_client::PaidHttpClient::new(
            http_tls,
            node_store.clone(),
            payer.clone(),
            crate::admin::MAX_FETCH_BODY_BYTES,
        );
        Ok(Node {
            clock,
            routing_secret,
            address,
            gate,
            router,
            accounts,
            balance,
            settlement,
            broadcaster,
            store: node_store,
            receivers,
            payment_feed,
            webhooks,
            payer,
            http_client,
            links: node_links,
            metrics: node_metrics,
        })
    }

    /// Asks the parent account `parent` for our address over IL-DCP (RFC 31) until it answers,
    /// retrying with doubling pauses (100 ms up to 30 s), then makes every actor use it.
    /// Returns the configuration the parent gave.
    pub async fn inherit_address(
        &self,
        parent: &str,
        clock: Clock,
    ) -> Result<IldcpResponse, NodeError> {
        let account = self
            .accounts
            .get(parent)
            .cloned()
            .ok_or_else(|| NodeError::MissingLink(parent.to_owned()))?;
        let mut pause = Duration::from_millis(100);
        loop {
            match request_address(&account, clock).await {
                Ok(response) => {
                    self.set_address(response.client_address.clone());
                    return Ok(response);
                }
                Err(AddressRequestError::Refused(code)) if code.class() == ErrorClass::Final => {
                    return Err(NodeError::AddressRefused(code));
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Applies a reloaded configuration (SIGHUP): `changes` says what differs from the running
    /// one, `links` holds the new link of every added or relinked account. Accounts removed
    /// are retired (they refuse every packet; their balances stay in the store); added ones
    /// start; the Router, the BalanceKeeper, the RouteBroadcaster and the SettlementEngine take
    /// the new accounts and settings. Links of unchanged accounts are not touched. Nothing is
    /// changed when the configuration cannot be applied (a rate table that does not build, a
    /// link missing).
    pub async fn reload(
        &mut self,
        config: &Config,
        changes: &ConfigChanges,
        mut links: BTreeMap<AccountId, Arc<dyn Link>>,
    ) -> Result<(), NodeError> {
        let router_settings = RouterSettings::from_config(config)?;
        for id in changes.added.iter().chain(&changes.relinked) {
            if !links.contains_key(id.as_str()) {
                return Err(NodeError::MissingLink(id.clone()));
            }
        }
        for id in &changes.removed {
            self.links.remove(id.as_str());
            if let Some(metrics) = &self.metrics {
                metrics.forget_link(id);
            }
            if let Some(account) = self.accounts.remove(id.as_str()) {
                account.do_send(Retire);
            }
        }
        for id in &changes.relinked {
            if let (Some(account), Some(link)) =
                (self.accounts.get(id.as_str()), links.remove(id.as_str()))
            {
                let id: AccountId = Arc::from(id.as_str());
                if let Some(metrics) = &self.metrics {
                    metrics.watch_link(&id, link.clone());
                }
                self.links.insert(id, link.clone());
                account.do_send(ReplaceLink(link));
            }
        }
        for id in &changes.added {
            let (Some(account), Some(link)) = (config.accounts.get(id), links.remove(id.as_str()))
            else {
                continue;
            };
            let id: AccountId = Arc::from(id.as_str());
            let peer = start_account(AccountStart {
                id: &id,
                config: account,
                link: link.clone(),
                node_address: &self.address,
                router: self.router.clone().recipient(),
                clock: self.clock,
                metrics: self.metrics.as_ref(),
            });
            self.links.insert(id.clone(), link);
            self.accounts.insert(id, peer);
        }
        for id in &changes.updated {
            if let (Some(peer), Some(account)) =
                (self.accounts.get(id.as_str()), config.accounts.get(id))
            {
                let settings = PeerAccountSettings::from_config(account, self.address.clone());
                peer.do_send(UpdateSettings(settings));
            }
        }
        let sends: BTreeMap<AccountId, Recipient<SendPrepare>> = self
            .accounts
            .iter()
            .map(|(id, a)| (id.clone(), a.clone().recipient()))
            .collect();
        let router_accounts = router_accounts(&config.accounts, &sends);
        // Awaited, so the routes the broadcaster pushes next land on the new accounts.
        let _ = self
            .router
            .send(RouterReconfigure {
                settings: router_settings,
                accounts: router_accounts,
            })
            .await;
        if let Ok(result) = self
            .balance
            .send(UpdateLimits(balance_limits(config)))
            .await
        {
            result?;
        }
        self.payer.reconfigure(
            crate::payer::PayerSettings::from_config(config),
            crate::payer::paying_accounts(config, &self.accounts),
        );
        self.broadcaster.do_send(BroadcasterReconfigure {
            settings: BroadcastSettings::from_config(config, self.routing_secret),
            accounts: sends.clone(),
        });
        self.settlement
            .do_send(UpdateAccounts(bilateral(&config.accounts, &sends)));
        self.settlement
            .do_send(UpdateEngines(engine_accounts(&config.accounts, &sends)));
        self.webhooks.apply(config);
        if let Some(address) = &config.node.ilp_address {
            if self.address.get().as_ref() != Some(address) {
                self.set_address(address.clone());
            }
        }
        Ok(())
    }

    /// Tells every actor that needs it the node's address (learned over IL-DCP, or changed).
    pub fn set_address(&self, address: Address) {
        self.address.set(address.clone());
        self.router.do_send(SetNodeAddress {
            address: address.clone(),
        });
        self.broadcaster.do_send(SetNodeAddress {
            address: address.clone(),
        });
        for account in self.accounts.values() {
            account.do_send(SetNodeAddress {
                address: address.clone(),
            });
        }
    }
}

/// Longest a call to a settlement engine may take (then it is retried, or the message it
/// carried is rejected T00).
pub const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What starting one account's PeerAccount takes.
struct AccountStart<'a> {
    id: &'a AccountId,
    config: &'a AccountConfig,
    link: Arc<dyn Link>,
    node_address: &'a NodeAddress,
    router: Recipient<ForwardPrepare>,
    clock: Clock,
    metrics: Option<&'a Arc<Metrics>>,
}

/// Starts the supervised PeerAccount of one account and attaches its link to it (and, with
/// metrics, has its packets counted and its link watched).
fn start_account(start: AccountStart<'_>) -> Addr<PeerAccount> {
    let AccountStart {
        id,
        config,
        link,
        node_address,
        router,
        clock,
        metrics,
    } = start;
    let settings = PeerAccountSettings::from_config(config, node_address.clone());
    let account_metrics = metrics.map(|m| {
        m.watch_link(id, link.clone());
        Arc::new(m.account(id))
    });
    let (actor_id, actor_link) = (id.clone(), link.clone());
    let peer = Supervisor::start(move |_| {
        PeerAccount::new(actor_id, settings, actor_link, router, clock)
            .with_metrics(account_metrics)
    });
    link.attach(peer.clone().recipient());
    peer
}

/// What the Router knows of each configured account that has a PeerAccount.
/// Where the receiver secret drawn by a node whose configuration names none is kept.
pub const RECEIVER_SECRET_KEY: &[u8] = b"node/receiver_secret";

/// The secret the receivers' credentials derive from: `node.receiver_secret`, else the one kept
/// in the store, else a new one, drawn from the OS (`from_os`) or `rng` (simulations) and
/// stored before the node serves anything, so credentials given out survive restarts.
fn receiver_secret(
    config: &Config,
    store: &dyn Store,
    from_os: bool,
    rng: &mut SmallRng,
) -> Result<[u8; 32], StoreError> {
    if let Some(secret) = &config.node.receiver_secret {
        return Ok(secret.0);
    }
    if let Some(kept) = store.get_record(RECEIVER_SECRET_KEY)? {
        if let Ok(secret) = <[u8; 32]>::try_from(kept.as_slice()) {
            return Ok(secret);
        }
    }
    let mut secret = [0u8; 32];
    if from_os {
        rand::rngs::OsRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| StoreError::Io(format!("no randomness for the receiver secret: {e}")))?;
    } else {
        rng.fill_bytes(&mut secret);
    }
    // The store's writer runs on its own thread: waiting here needs no runtime.
    futures::executor::block_on(store.commit(vec![crate::store::StoreOp::PutRecord {
        key: RECEIVER_SECRET_KEY.to_vec(),
        value: secret.to_vec(),
    }]))?;
    Ok(secret)
}

fn router_accounts(
    configs: &BTreeMap<String, AccountConfig>,
    sends: &BTreeMap<AccountId, Recipient<SendPrepare>>,
) -> BTreeMap<AccountId, RouterAccount> {
    configs
        .iter()
        .filter_map(|(id, a)| {
            let send = sends.get(id.as_str())?.clone();
            Some((
                Arc::from(id.as_str()),
                RouterAccount::from_config(id, a, send),
            ))
        })
        .collect()
}

/// The PeerAccounts of the accounts that settle bilaterally (`settlement.bilateral = true`):
/// the only ones the SettlementEngine sends `peer.settle` to or takes it from.
fn bilateral(
    configs: &BTreeMap<String, AccountConfig>,
    sends: &BTreeMap<AccountId, Recipient<SendPrepare>>,
) -> BTreeMap<AccountId, Recipient<SendPrepare>> {
    sends
        .iter()
        .filter(|(id, _)| {
            configs
                .get(&***id)
                .is_some_and(AccountConfig::settles_bilaterally)
        })
        .map(|(id, send)| (id.clone(), send.clone()))
        .collect()
}

/// The accounts settled through an RFC 38 engine (`settlement_engine_url`), with their
/// PeerAccounts (which carry the engines' messages).
fn engine_accounts(
    configs: &BTreeMap<String, AccountConfig>,
    sends: &BTreeMap<AccountId, Recipient<SendPrepare>>,
) -> BTreeMap<AccountId, EngineAccount> {
    configs
        .iter()
        .filter_map(|(id, a)| {
            let url = a.settlement_engine_url.clone()?;
            let peer = sends.get(id.as_str())?.clone();
            Some((
                Arc::from(id.as_str()),
                EngineAccount {
                    url,
                    scale: a.asset_scale,
                    peer,
                },
            ))
        })
        .collect()
}

/// The balance limits of every account: each keeps a balance, without limits when its
/// `[balance]` table is absent. An account that settles neither bilaterally nor through an
/// engine has no way to settle, so its settle threshold is left out: the keeper never asks to
/// settle it (and asks once its balance next moves when a reload turns settlement on).
fn balance_limits(config: &Config) -> BTreeMap<AccountId, BalanceLimits> {
    config
        .accounts
        .iter()
        .map(|(id, a)| {
            let mut limits = a.balance_limits();
            if !a.settles_bilaterally() && !a.settles_with_engine() {
                limits.settle_threshold = None;
            }
            (Arc::from(id.as_str()), limits)
        })
        .collect()
}

/// The actors built inside the Router's supervisor closure.
struct Started {
    accounts: BTreeMap<AccountId, Addr<PeerAccount>>,
    balance: Addr<BalanceKeeper>,
    settlement: Addr<SettlementEngine>,
    broadcaster: Addr<RouteBroadcasterActor>,
}

fn put<T>(slot: &Mutex<Option<T>>, value: T) {
    match slot.lock() {
        Ok(mut guard) => *guard = Some(value),
        Err(poisoned) => *poisoned.into_inner() = Some(value),
    }
}

/// Takes what a supervisor closure left in `slot`. `Supervisor::start` runs its closure
/// synchronously, so the value is always there; if actix ever changed that, starting a node
/// could not continue, which is a programming error rather than a runtime condition.
#[allow(clippy::panic)]
fn take<T>(slot: &Mutex<Option<T>>) -> T {
    let value = match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    match value {
        Some(v) => v,
        None => panic!("actix Supervisor::start did not run the node's construction closure"),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod receiving_tests;
