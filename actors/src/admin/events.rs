//! Live payment events as Server-Sent Events: `GET /accounts/<id>/payments/events` (one local
//! account: first what its log holds after `Last-Event-ID` or `?after=`, then each new event as
//! it becomes durable) and `GET /payments/events` (every local account, from now on).
//!
//! Each event is `id: <account>:<seq>`, `event: payment`, `data: <the event's JSON>` (as
//! `GET /accounts/<id>/payments` shows it). Events of one account arrive in seq order, each
//! once: the stream follows the BalanceKeeper's feed, and reads from the durable log whatever
//! the feed skipped (a subscriber that fell behind, or batches announced out of order), so a
//! client that reconnects with the last id it saw misses nothing. A comment line every
//! [`HEARTBEAT`] keeps proxies from closing an idle stream.

use super::{error, AdminState, Answer};
use crate::payment_log::{read_events, PaymentEvent};
use crate::store::{read_off_thread, Store};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// How often an idle stream sends a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Events read from the log at a time.
const PAGE: usize = 1000;

/// Where a stream is.
struct Follow {
    feed: broadcast::Receiver<Arc<PaymentEvent>>,
    store: Arc<dyn Store>,
    /// `Some`: one account's stream.
    account: Option<String>,
    /// The last seq sent, per account.
    last: HashMap<String, u64>,
    /// Read from the log, to send before anything else.
    queue: VecDeque<Arc<PaymentEvent>>,
    /// One account's stream still replaying its log.
    replaying: bool,
    heartbeat: tokio::time::Interval,
}

fn frame(event: &PaymentEvent) -> Frame<Bytes> {
    let data = serde_json::to_string(event).unwrap_or_default();
    Frame::data(Bytes::from(format!(
        "id: {}:{}\nevent: payment\ndata: {data}\n\n",
        event.account, event.seq
    )))
}

impl Follow {
    /// `account`'s events after `after` from the log (at most a page).
    async fn read(&self, account: &str, after: u64) -> Vec<Arc<PaymentEvent>> {
        let account = account.to_owned();
        let read = read_off_thread(self.store.clone(), move |s| {
            read_events(s, &account, after, PAGE)
        })
        .await;
        // A log that cannot be read now is read again at the next event or heartbeat.
        read.unwrap_or_default().into_iter().map(Arc::new).collect()
    }

    /// Queues `events` that follow what was sent for their account.
    fn queue_new(&mut self, events: Vec<Arc<PaymentEvent>>) {
        for event in events {
            let last = self.last.entry(event.account.clone()).or_insert(0);
            if event.seq > *last {
                *last = event.seq;
                self.queue.push_back(event);
            }
        }
    }

    /// `event` from the feed: sent when it is the next of its account; a gap is filled from
    /// the log first (which has every event the feed announces).
    async fn take(&mut self, event: Arc<PaymentEvent>) {
        if self.account.as_ref().is_some_and(|a| *a != event.account) {
            return;
        }
        match self.last.get(&event.account).copied() {
            // The every-account stream starts at the first event it sees of an account.
            None if self.account.is_none() => self.queue_new(vec![event]),
            None => {
                let missing = self.read(&event.account, 0).await;
                self.queue_new(missing);
            }
            Some(last) if event.seq <= last => {}
            Some(last) if event.seq == last + 1 => self.queue_new(vec![event]),
            Some(last) => {
                let missing = self.read(&event.account, last).await;
                self.queue_new(missing);
            }
        }
    }

    /// After falling behind the feed: every account this stream follows, from the log.
    async fn catch_up(&mut self) {
        let accounts: Vec<(String, u64)> = self.last.iter().map(|(a, s)| (a.clone(), *s)).collect();
        for (account, last) in accounts {
            let missing = self.read(&account, last).await;
            self.queue_new(missing);
        }
    }

    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Follow)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(frame(&event)), self));
            }
            if self.replaying {
                if let Some(account) = self.account.clone() {
                    let last = self.last.get(&account).copied().unwrap_or(0);
                    let page = self.read(&account, last).await;
                    self.replaying = page.len() == PAGE;
                    self.queue_new(page);
                    continue;
                }
            }
            tokio::select! {
                received = self.feed.recv() => match received {
                    Ok(event) => self.take(event).await,
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => {
                    return Some((Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), self));
                }
            }
        }
    }
}

/// The stream of `account`'s events after `after` (`None`: every local account's, from now).
pub(super) fn stream(state: &AdminState, account: Option<String>, after: u64) -> Answer {
    let Some(feed) = &state.feed else {
        return error(
            StatusCode::NOT_FOUND,
            "this node announces no payment events",
        );
    };
    // Subscribed before the log is read: nothing falls between the two.
    let subscribed = feed.subscribe();
    let mut last = HashMap::new();
    if let Some(account) = &account {
        last.insert(account.clone(), after);
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follow = Follow {
        feed: subscribed,
        store: state.store.clone(),
        replaying: account.is_some(),
        account,
        last,
        queue: VecDeque::new(),
        heartbeat,
    };
    let frames = futures::stream::unfold(follow, Follow::next);
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The seq a client asks to resume after: `Last-Event-ID: <account>:<seq>` (for this account),
/// else `?after=<seq>`, else 0. `Err` names what is malformed.
pub(super) fn resume_after(
    account: &str,
    last_event_id: Option<&str>,
    query: Option<&str>,
) -> Result<u64, String> {
    if let Some(id) = last_event_id {
        let seq = id
            .rsplit_once(':')
            .filter(|(a, _)| *a == account)
            .and_then(|(_, seq)| seq.parse().ok());
        return seq.ok_or_else(|| format!("Last-Event-ID {id:?} is not {account}:<seq>"));
    }
    let mut after = 0;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("after", value)) => {
                after = value
                    .parse()
                    .map_err(|_| format!("after: {value:?} is not a sequence number"))?;
            }
            _ => return Err(format!("{pair}: unknown parameter (after)")),
        }
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::resume_after;

    #[test]
    fn resume_points() {
        assert_eq!(resume_after("shop", None, None), Ok(0));
        assert_eq!(resume_after("shop", Some("shop:7"), Some("after=2")), Ok(7));
        assert_eq!(resume_after("shop", None, Some("after=2")), Ok(2));
        assert!(resume_after("shop", Some("cafe:7"), None).is_err());
        assert!(resume_after("shop", Some("shop:x"), None).is_err());
        assert!(resume_after("shop", None, Some("limit=2")).is_err());
        assert!(resume_after("shop", None, Some("after=-1")).is_err());
    }
}
