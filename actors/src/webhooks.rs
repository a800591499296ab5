//! Webhooks (`[accounts.<id>.receiver.webhook]`): every payment event of a local account is
//! POSTed to the account's URL, in seq order, at least once.
//!
//! One task per account with a webhook reads the durable event log ([`crate::payment_log`])
//! after the account's cursor (`rcv/hook/<account>`, the last seq a 2xx acknowledged), POSTs up
//! to [`BATCH`] events as one JSON array, and moves the cursor on when the answer is a 2xx. Any
//! other answer, a connection failure or [`ATTEMPT_TIMEOUT`] is retried with backoff (1 s,
//! doubling to [`MAX_BACKOFF`], with jitter), for as long as it takes. With nothing to send the
//! task waits for the BalanceKeeper's announcement of a new event (or [`IDLE_CHECK`]). So a
//! crash or a restart repeats at most the batch in flight: receivers deduplicate by `id`
//! (`<account>:<seq>`, also in `Ilp-Webhook-Id: <account>:<first>-<last>`).
//!
//! Each request is signed: `Ilp-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>." + body)>`, so the receiver can check the body came from us and is recent.
//!
//! The same module keeps the logs from growing for ever: every [`PRUNE_EVERY`], each local
//! account's events older than its latest `keep_events` are deleted, but never one its webhook
//! has not delivered yet ([`crate::payment_log::prune`]).

use crate::messages::AccountId;
use crate::payment_log::{read_events, stored_u64, PaymentFeed};
use crate::store::{read_off_thread, Store, StoreOp};
use crate::tls;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ilp::config::{ClientTlsConfig, Config, WebhookConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Events in one request at most.
pub const BATCH: usize = 100;
/// Longest one request may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How often an idle task looks at the log even without an announcement.
pub const IDLE_CHECK: Duration = Duration::from_secs(5);
/// How often old payment events are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The store key of `account`'s cursor.
pub fn cursor_key(account: &str) -> Vec<u8> {
    [b"rcv/hook/".as_slice(), account.as_bytes()].concat()
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The running webhook tasks, by account; dropping it stops them.
pub struct Webhooks {
    store: Arc<dyn Store>,
    feed: PaymentFeed,
    tasks: HashMap<AccountId, (WebhookConfig, JoinHandle<()>)>,
    /// Deletes old events; restarted with each configuration.
    pruner: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("accounts", &self.tasks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
        if let Some(pruner) = &self.pruner {
            pruner.abort();
        }
    }
}

impl Webhooks {
    /// No webhooks yet; [`Webhooks::apply`] starts those of a configuration.
    pub fn new(store: Arc<dyn Store>, feed: PaymentFeed) -> Self {
        Webhooks {
            store,
            feed,
            tasks: HashMap::new(),
            pruner: None,
        }
    }

    /// Runs the webhooks `config` names: new ones start, changed ones restart (from their
    /// cursor), removed ones stop. Needs a tokio runtime.
    pub fn apply(&mut self, config: &Config) {
        let wanted: HashMap<AccountId, WebhookConfig> = config
            .accounts
            .iter()
            .filter(|(_, a)| a.is_local())
            .filter_map(|(id, a)| {
                let hook = a.receiver.as_ref()?.webhook.clone()?;
                Some((AccountId::from(id.as_str()), hook))
            })
            .collect();
        self.tasks.retain(|id, (hook, task)| {
            let keep = wanted.get(id) == Some(hook);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, hook) in wanted {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(deliver(
                id.clone(),
                hook.clone(),
                self.store.clone(),
                self.feed.clone(),
            ));
            self.tasks.insert(id, (hook, task));
        }
        // (account, events kept, whether a webhook holds some back)
        let retention: Vec<(String, u64, bool)> = config
            .accounts
            .iter()
            .filter(|(_, a)| a.is_local())
            .map(|(id, a)| {
                let hooked = a.receiver.as_ref().is_some_and(|r| r.webhook.is_some());
                (id.clone(), a.keep_events(), hooked)
            })
            .collect();
        if let Some(pruner) = self.pruner.take() {
            pruner.abort();
        }
        if retention.iter().any(|(_, keep, _)| *keep > 0) {
            self.pruner = Some(tokio::spawn(prune_loop(self.store.clone(), retention)));
        }
    }
}

/// Every [`PRUNE_EVERY`], each account's events beyond what it keeps, as far as its webhook
/// delivered them.
async fn prune_loop(store: Arc<dyn Store>, retention: Vec<(String, u64, bool)>) {
    let log = crate::log::logger();
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for (account, keep, hooked) in &retention {
            let (name, hooked) = (account.clone(), *hooked);
            let read = read_off_thread(store.clone(), move |s| {
                let last = crate::payment_log::last_seq(s, &name)?;
                let delivered = if hooked {
                    Some(stored_u64(s, &cursor_key(&name))?)
                } else {
                    None
                };
                Ok((last, delivered))
            })
            .await;
            let Ok((last, delivered)) = read else {
                continue;
            };
            if let Some(op) = crate::payment_log::prune(account, last, *keep, delivered) {
                if let Err(e) = store.commit(vec![op]).await {
                    slog::warn!(log, "old payment events not deleted"; "account" => account, "error" => %e);
                }
            }
        }
    }
}

fn client(url: &url::Url) -> Option<HttpsClient> {
    let tls_config = if url.scheme() == "https" {
        tls::client_config(&ClientTlsConfig::default(), "webhook").ok()?
    } else {
        tls::trust_nothing_client_config().ok()?
    };
    Some(crate::link::http::client::https_client(
        tls_config,
        ATTEMPT_TIMEOUT,
        false,
    ))
}

/// The `Ilp-Signature` value of `body` sent at unix second `t`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "t={t},v1={}",
        hex::encode(ilp::stream::hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// One POST of `body`; whether the receiver took it (a 2xx within the time limit).
async fn post(client: &HttpsClient, hook: &WebhookConfig, id: &str, body: Bytes) -> bool {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signed = signature(hook.secret.expose(), t, &body);
    let request = Request::builder()
        .method(Method::POST)
        .uri(hook.url.as_str())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("ilp-webhook-id", id)
        .header("ilp-signature", signed)
        .body(Full::new(body));
    let Ok(request) = request else {
        return false;
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) => response.status().is_success(),
        _ => false,
    }
}

async fn deliver(
    account: AccountId,
    hook: WebhookConfig,
    store: Arc<dyn Store>,
    feed: PaymentFeed,
) {
    let log = crate::log::logger();
    let Some(client) = client(&hook.url) else {
        slog::error!(log, "webhook not started: no TLS configuration"; "account" => %account);
        return;
    };
    let mut announced = feed.subscribe();
    let key = cursor_key(&account);
    let read_key = key.clone();
    let stored = read_off_thread(store.clone(), move |s| stored_u64(s, &read_key)).await;
    let mut cursor = stored.unwrap_or(0);
    let mut backoff = Duration::from_secs(1);
    loop {
        let name = account.to_string();
        let after = cursor;
        let events = read_off_thread(store.clone(), move |s| read_events(s, &name, after, BATCH))
            .await
            .unwrap_or_default();
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            // Nothing new: wait for the keeper's next announcement (any account's; a lagged
            // receiver just looks again), or look anyway after a while.
            let _ = tokio::time::timeout(IDLE_CHECK, announced.recv()).await;
            continue;
        };
        let id = format!("{account}:{}-{}", first.seq, last.seq);
        let last_seq = last.seq;
        let body = Bytes::from(serde_json::to_vec(&events).unwrap_or_default());
        if post(&client, &hook, &id, body).await {
            let committed = store
                .commit(vec![StoreOp::PutRecord {
                    key: key.clone(),
                    value: last_seq.to_be_bytes().to_vec(),
                }])
                .await;
            if let Err(e) = committed {
                // Sent again later: at least once.
                slog::warn!(log, "webhook cursor not saved"; "account" => %account, "error" => %e);
            }
            cursor = last_seq;
            backoff = Duration::from_secs(1);
        } else {
            slog::warn!(log, "webhook delivery failed; retrying";
                "account" => %account, "events" => %id, "retry_in_ms" => backoff.as_millis());
            let jitter = Duration::from_millis(rand::random::<u64>() % 250);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_time_and_the_body() {
        let a = signature("s3cret", 1_700_000_000, b"[]");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature("s3cret", 1_700_000_001, b"[]"));
        assert_ne!(a, signature("s3cret", 1_700_000_000, b"[ ]"));
        assert_ne!(a, signature("other", 1_700_000_000, b"[]"));
        assert_eq!(cursor_key("shop"), b"rcv/hook/shop".to_vec());
    }
}
