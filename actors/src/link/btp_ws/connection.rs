//! One BTP connection on a WebSocket: feeds received frames, timers and outgoing Prepares to
//! the sans-IO [`Session`] and carries out its actions (write a frame, authenticate, deliver a
//! Prepare to the account, complete a pending send, close). Also owns what the session does not:
//! WebSocket keepalive, the idle and stalled-write timeouts, binding the connection to its
//! account's link once authenticated, and (BTP/2.0-I) lending the session the link's memory of
//! answered requests around every call, so that memory outlives the socket.

use super::{find_account, AccountTable, BtpOptions, LinkShared};
use crate::link::LinkError;
use crate::messages::{ask, IncomingPrepare, PacketResult};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use ilp::btp::{
    Action, BtpErrorCode, ErrorPayload, GeneralizedTime, Outcome, ProtocolData, Reply, Request,
    Session, SessionConfig,
};
use ilp::packet::{ErrorCode, Packet, Prepare, Reject, Timestamp};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Outgoing Prepares waiting for room in a connection's queue make their senders wait.
const COMMAND_QUEUE: usize = 256;
/// Most frames fed before a flush, so a steady stream of ready events cannot hold frames back.
const MAX_UNFLUSHED: usize = 64;
/// Longest wait, once a connection ended, for sends into its queues already under way.
const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// What a link asks of its current connection.
pub(crate) enum Command {
    Prepare {
        prepare: Prepare,
        /// BTP/2.0-I: the request id it had on an earlier connection, to repeat it under.
        request_id: Option<u32>,
        reply: oneshot::Sender<Sent>,
    },
}

/// How a Prepare sent on a connection ended there.
pub(crate) enum Sent {
    Answered(Result<PacketResult, LinkError>),
    /// BTP/2.0-I: the connection closed with the request (this id) unanswered; the link repeats
    /// it on the next connection.
    Interrupted(u32),
}

/// A link's way to reach the connection that carries it.
pub(crate) struct Handle {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<Command>,
    /// Closes the connection (a newer one took over the link, or the account was removed or
    /// its credentials replaced). Apart from the command queue so a full queue cannot delay it;
    /// a notification given before the connection waits on it is kept.
    pub(crate) close: Arc<Notify>,
}

impl Handle {
    pub(crate) fn close(&self) {
        self.close.notify_one();
    }
}

/// One `btp-server` account as the server's auth check sees it.
#[derive(Clone)]
pub(crate) struct ServerAccount {
    pub(crate) id: crate::messages::AccountId,
    pub(crate) username: Option<String>,
    pub(crate) token_digest: [u8; 32],
    pub(crate) link: Arc<LinkShared>,
}

pub(crate) enum Role<'a> {
    Client {
        link: Arc<LinkShared>,
        username: &'a str,
        token: &'a str,
    },
    /// The accounts served (read when the auth Message arrives, so accounts added or removed
    /// since the connection opened count), and the DNS names of the client's certificate when
    /// the listener requires one (the account authenticated must then be named by it).
    Server(Arc<AccountTable>, Option<Arc<[String]>>),
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The application's reply to a delivered request.
pub(crate) struct Answer {
    pub(crate) request_id: u32,
    /// BTP/2.0-I: the digest of the request answered ([`Action::Deliver`]).
    pub(crate) digest: Option<[u8; 32]>,
    pub(crate) reply: Reply,
    /// Until when BTP/2.0-I remembers it (the Prepare's expiry, after which the peer stops
    /// repeating; `None`: the session's default).
    pub(crate) until: Option<u64>,
}

enum Event {
    Received(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Command(Option<Command>),
    Answered(Option<Answer>),
    Timer,
    Tick,
    Stop,
}

struct Conn<'a, S> {
    ws: WebSocketStream<S>,
    session: Session,
    options: &'a BtpOptions,
    accounts: Option<Arc<AccountTable>>,
    cert_names: Option<Arc<[String]>>,
    /// The link this connection carries (client: from the start; server: once authenticated).
    link: Option<Arc<LinkShared>>,
    id: u64,
    tx: mpsc::Sender<Command>,
    close: Arc<Notify>,
    pending: foldhash::HashMap<u32, oneshot::Sender<Sent>>,
    answers: mpsc::UnboundedSender<Answer>,
    /// Where the exchanges of the Prepares the peer sends run: one task per connection
    /// ([`run_exchanges`]) instead of one spawned per packet.
    exchanges: mpsc::UnboundedSender<BoxFuture<'static, ()>>,
    /// When the peer last sent anything (clock milliseconds).
    last_seen_ms: u64,
    /// Requests of the peer delivered and not answered yet; at the options' limit the socket
    /// is not read.
    incoming_in_flight: usize,
    authenticated: bool,
    /// Frames written since the last flush.
    unflushed: usize,
    /// The clock, read once per run of events handled without waiting (at most
    /// `MAX_UNFLUSHED` of them, a fraction of a millisecond under load): forgotten whenever
    /// the connection waits, for the peer, a timer or a stalled write.
    now_ms: Option<u64>,
}

/// Runs one connection until it closes. Returns whether it got authenticated (a client resets
/// its reconnection backoff after a connection that worked).
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    role: Role<'_>,
    options: &BtpOptions,
    first_request_id: u32,
    mut stop: watch::Receiver<()>,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let now = options.clock.now_ms();
    let (session, initial, link, accounts, cert_names) = match role {
        Role::Client {
            link,
            username,
            token,
        } => {
            let config = SessionConfig {
                idempotency: link.idempotency.or(options.session.idempotency),
                ..options.session.clone()
            };
            let (s, actions) = Session::client(config, username, token, first_request_id, now);
            (s, actions, Some(link), None, None)
        }
        Role::Server(accounts, cert_names) => (
            Session::server(options.session.clone(), first_request_id, now),
            Vec::new(),
            None,
            Some(accounts),
            cert_names,
        ),
    };
    let (tx, mut commands) = mpsc::channel(COMMAND_QUEUE);
    let (answers, mut answered) = mpsc::unbounded_channel();
    let (exchanges, incoming) = mpsc::unbounded_channel();
    // Exempt from tokio's per-poll budget: one task carries every exchange of the connection,
    // and forced yields of it showed up as latency (p99 +0.5 ms); it only runs what is ready.
    tokio::spawn(tokio::task::unconstrained(run_exchanges(incoming)));
    let mut conn = Conn {
        ws,
        session,
        options,
        accounts,
        cert_names,
        link,
        id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        tx,
        close: Arc::new(Notify::new()),
        pending: foldhash::HashMap::default(),
        answers,
        exchanges,
        last_seen_ms: options.clock.now_ms(),
        incoming_in_flight: 0,
        now_ms: None,
        authenticated: false,
        unflushed: 0,
    };
    let mut ticks = tokio::time::interval(options.ping_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let close = conn.close.clone();
    // The futures the loop waits on live as long as the loop: made afresh for every event,
    // each would register its waker (a lock) and a timer (a wheel insertion) again.
    let closed = close.notified();
    tokio::pin!(closed);
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let session_timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(session_timer);
    let mut armed: Option<Instant> = None;
    let mut open = conn.apply(initial).await;
    while open {
        // Frames are fed, not flushed: under load, everything ready now goes out in one
        // write. Once nothing more is ready (or after a bounded run), flush.
        if conn.unflushed > 0 {
            let ready = if conn.unflushed < MAX_UNFLUSHED {
                let read = conn.may_read();
                ready_event(&mut conn.ws, read, &mut commands, &mut answered)
            } else {
                None
            };
            open = match ready {
                Some(event) => conn.on_event(event).await,
                None => conn.flush().await,
            };
            continue;
        }
        let timer = conn
            .session
            .next_timeout()
            .map(|t| options.clock.instant_at(Timestamp::from_unix_millis(t)));
        if timer != armed {
            if let Some(at) = timer {
                session_timer.as_mut().reset(at);
            }
            armed = timer;
        }
        conn.now_ms = None;
        let read = conn.may_read();
        let event = tokio::select! {
            m = conn.ws.next(), if read => Event::Received(m),
            c = commands.recv() => Event::Command(c),
            a = answered.recv() => Event::Answered(a),
            () = &mut session_timer, if armed.is_some() => {
                // Fired: re-armed (even for the same instant) before it is awaited again.
                armed = None;
                Event::Timer
            }
            _ = ticks.tick() => Event::Tick,
            _ = &mut stopped => Event::Stop,
            () = &mut closed => Event::Stop,
        };
        open = conn.on_event(event).await;
    }
    conn.finish().await;
    // Closed, then received to the end: a send that took its place before the close and
    // writes after it is still received (tokio's `recv` waits for it), where dropping a
    // receiver leaves such a message, and every one queued behind it, in the channel for as
    // long as a sender lives, and its sender waited for an answer that never came.
    answered.close();
    commands.close();
    let drain = async {
        // Answers still on their way go to the link's memory, for the peer's repeats on the
        // next connection; from now on the delivery tasks do that themselves.
        while let Some(answer) = answered.recv().await {
            if let Some(link) = &conn.link {
                link.remember_answer(answer, options.clock.now_ms());
            }
        }
        // Prepares still queued were not sent on this connection: dropping each one's reply
        // tells its sender so (BTP/2.0-I sends it on the next connection; otherwise it fails).
        while let Some(command) = commands.recv().await {
            drop(command);
        }
    };
    // Those sends finish within microseconds; the bound only keeps the wait finite.
    let _ = tokio::time::timeout(DRAIN_BOUND, drain).await;
    conn.authenticated
}

/// Runs the exchanges a connection hands over, concurrently, each to its end: after the
/// connection is gone (its sender dropped) too, so no peer hanging up cancels one half-way.
async fn run_exchanges(mut incoming: mpsc::UnboundedReceiver<BoxFuture<'static, ()>>) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = incoming.recv() => match next {
                Some(exchange) => running.push(exchange),
                None => break,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    while running.next().await.is_some() {}
}

/// An event that is ready without waiting: a queued Prepare or answer, or a frame the socket
/// already holds.
fn ready_event<S>(
    ws: &mut WebSocketStream<S>,
    read: bool,
    commands: &mut mpsc::Receiver<Command>,
    answered: &mut mpsc::UnboundedReceiver<Answer>,
) -> Option<Event>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Ok(answer) = answered.try_recv() {
        return Some(Event::Answered(Some(answer)));
    }
    if let Ok(command) = commands.try_recv() {
        return Some(Event::Command(Some(command)));
    }
    if !read {
        return None;
    }
    // Reading a message is cancel safe: a partial one stays buffered in the stream.
    ws.next().now_or_never().map(Event::Received)
}

/// What [`within`] got: the output (`None` past the limit), and whether it had to wait.
#[derive(Debug, PartialEq, Eq)]
struct Bounded<T> {
    output: Option<T>,
    waited: bool,
}

/// Awaits `fut` for at most `limit`. The clock is read and a timer armed only if `fut` is not
/// ready at once: a write into a socket buffer with room, the usual case, costs neither.
async fn within<F: std::future::Future>(limit: Duration, fut: F) -> Bounded<F::Output> {
    let mut fut = std::pin::pin!(fut);
    if let Some(out) = fut.as_mut().now_or_never() {
        return Bounded {
            output: Some(out),
            waited: false,
        };
    }
    Bounded {
        output: tokio::time::timeout(limit, fut).await.ok(),
        waited: true,
    }
}

impl<S> Conn<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Whether the socket may be read: not while the peer's requests in flight are at the
    /// limit (memory stays bounded however fast the peer sends).
    fn may_read(&self) -> bool {
        self.incoming_in_flight < self.options.max_incoming_in_flight
    }

    fn now(&mut self) -> u64 {
        *self
            .now_ms
            .get_or_insert_with(|| self.options.clock.now_ms())
    }

    /// Handles one event; false once the connection must close.
    async fn on_event(&mut self, event: Event) -> bool {
        let now = self.now();
        match event {
            Event::Received(Some(Ok(message))) => {
                self.last_seen_ms = now;
                match message {
                    Message::Binary(bytes) => {
                        let actions = self.with_session(|s| s.handle_frame(bytes, now));
                        self.apply(actions).await
                    }
                    // BTP is binary; tungstenite answers pings by itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => true,
                    Message::Text(_) | Message::Close(_) => false,
                }
            }
            // A read error includes an oversize message or frame.
            Event::Received(_) | Event::Stop => false,
            Event::Command(Some(Command::Prepare {
                prepare,
                request_id,
                reply,
            })) => {
                let request =
                    Request::Message(ProtocolData::ilp_packet(prepare.as_bytes().clone()));
                let deadline = Some(prepare.expires_at().unix_millis());
                match self
                    .session
                    .send_request(request_id, request, deadline, now)
                {
                    Ok((id, actions)) => {
                        self.pending.insert(id, reply);
                        self.apply(actions).await
                    }
                    Err(_) => {
                        let _ = reply.send(Sent::Answered(Err(LinkError::Down)));
                        true
                    }
                }
            }
            Event::Command(None) => false,
            Event::Answered(Some(a)) => {
                self.incoming_in_flight = self.incoming_in_flight.saturating_sub(1);
                let actions =
                    self.with_session(|s| s.respond(a.request_id, a.digest, a.reply, a.until, now));
                self.apply(actions).await
            }
            Event::Answered(None) => true,
            Event::Timer => {
                let actions = self.with_session(|s| s.handle_timeout(now));
                self.apply(actions).await
            }
            Event::Tick => {
                let idle = Duration::from_millis(now.saturating_sub(self.last_seen_ms));
                // Not reading is our choice, not the peer's silence.
                if idle >= self.options.idle_timeout && self.may_read() {
                    return false;
                }
                self.write(Message::Ping(Bytes::new())).await
            }
        }
    }

    /// Runs `f` on the session with the link's BTP/2.0-I memory swapped in (when the account
    /// has one), and puts it back after. The lock is never held across an await.
    fn with_session<R>(&mut self, f: impl FnOnce(&mut Session) -> R) -> R {
        let link = self.link.clone();
        let Some(replay) = link.as_ref().and_then(|l| l.replay.as_ref()) else {
            return f(&mut self.session);
        };
        let mut memory = replay.lock().unwrap_or_else(|p| p.into_inner());
        let lent = self.session.swap_replay_cache(&mut memory);
        let result = f(&mut self.session);
        if lent {
            self.session.swap_replay_cache(&mut memory);
        }
        result
    }

    /// Writes one WebSocket message; a write that stalls past the idle timeout (the peer stopped
    /// reading, or the socket is half open) fails the connection.
    async fn write(&mut self, message: Message) -> bool {
        let fed = within(self.options.idle_timeout, self.ws.feed(message)).await;
        self.unflushed += 1;
        if fed.waited {
            self.now_ms = None;
        }
        matches!(fed.output, Some(Ok(())))
    }

    /// Sends what [`Conn::write`] fed; the same stall bound applies.
    async fn flush(&mut self) -> bool {
        self.unflushed = 0;
        let flushed = within(self.options.idle_timeout, self.ws.flush()).await;
        // The end of a run of events.
        self.now_ms = None;
        matches!(flushed.output, Some(Ok(())))
    }

    /// Carries out the session's actions in order; false once the connection must close.
    async fn apply(&mut self, actions: Vec<Action>) -> bool {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(bytes) => {
                    if !self.write(Message::Binary(bytes)).await {
                        return false;
                    }
                }
                Action::Authenticate { credentials, .. } => {
                    let now = self.now();
                    let found = self.accounts.as_ref().and_then(|accounts| {
                        find_account(
                            &accounts.snapshot(),
                            &credentials,
                            self.cert_names.as_deref(),
                        )
                    });
                    let more = match found {
                        Some(link) => {
                            if let Some(config) = link.idempotency {
                                // Before the account is known nothing was delivered, so the
                                // session accepts the switch; an error cannot happen here.
                                let _ = self.session.set_idempotency(Some(config));
                            }
                            self.link = Some(link);
                            self.with_session(|s| s.accept_auth(now))
                        }
                        None => self
                            .session
                            .reject_auth("invalid auth_username or auth_token", now),
                    };
                    // Bind the link before the peer reads that it is authenticated, so a
                    // Prepare sent to it right after already finds the connection.
                    let (first, rest): (Vec<_>, Vec<_>) = more
                        .unwrap_or_default()
                        .into_iter()
                        .partition(|a| matches!(a, Action::Authenticated));
                    for a in first.into_iter().chain(rest).rev() {
                        queue.push_front(a);
                    }
                }
                Action::Authenticated => {
                    self.authenticated = true;
                    if let Some(link) = &self.link {
                        let installed = link.install(Handle {
                            id: self.id,
                            tx: self.tx.clone(),
                            close: self.close.clone(),
                        });
                        // The account was removed (or its credentials replaced) between the
                        // auth check and now: close before the peer hears it is in.
                        if !installed {
                            return false;
                        }
                    }
                }
                Action::Deliver {
                    request_id,
                    request,
                    digest,
                } => self.deliver(request_id, request, digest),
                Action::Busy { .. } => {
                    if let Some(link) = &self.link {
                        link.busy.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Action::Complete {
                    request_id,
                    outcome,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Sent::Answered(packet_result(outcome)));
                    }
                }
                // RFC 23: never answer an answer.
                Action::UnexpectedResponse { .. } => {}
                Action::Close(_) => return false,
            }
        }
        true
    }

    /// Hands a Prepare from the peer to the account; its answer comes back on `answers` and
    /// goes out as the Response to `request_id`.
    fn deliver(&mut self, request_id: u32, request: Request, digest: Option<[u8; 32]>) {
        // Every delivery ends with one answer on `answers`.
        self.incoming_in_flight += 1;
        let now = self.now();
        let answer = |reply| Answer {
            request_id,
            digest,
            reply,
            until: None,
        };
        let refuse = |message: &str| {
            Reply::Error(ErrorPayload::new(
                BtpErrorCode::F00_NOT_ACCEPTED,
                GeneralizedTime::from_unix_millis_saturating(now),
                Bytes::copy_from_slice(message.as_bytes()),
            ))
        };
        let prepare = match &request {
            Request::Message(pd) => match pd.ilp() {
                Some(bytes) => match Packet::parse(bytes.clone()) {
                    Ok(Packet::Prepare(p)) => p,
                    _ => {
                        let _ = self
                            .answers
                            .send(answer(refuse("the ilp data is not an ILP Prepare")));
                        return;
                    }
                },
                // Sub-protocols we do not speak get an empty Response, as ilp-plugin-btp does.
                None => {
                    let _ = self
                        .answers
                        .send(answer(Reply::Response(ProtocolData::new())));
                    return;
                }
            },
            Request::Transfer { .. } => {
                let _ = self
                    .answers
                    .send(answer(refuse("BTP transfers are not supported")));
                return;
            }
        };
        let account = self.link.as_ref().and_then(|l| l.account());
        let answers = self.answers.clone();
        let link = self.link.clone();
        let clock = self.options.clock;
        let until = Some(prepare.expires_at().unix_millis());
        let exchange = Box::pin(async move {
            let result = match account {
                Some(account) => ask(&account, IncomingPrepare { prepare })
                    .await
                    .unwrap_or_else(|_| Err(internal_reject("account unavailable"))),
                None => Err(internal_reject("account not started")),
            };
            let packet = match &result {
                Ok(fulfill) => fulfill.as_bytes().clone(),
                Err(reject) => reject.as_bytes().clone(),
            };
            let reply = Reply::Response(ProtocolData::ilp_packet(packet));
            let answer = Answer {
                request_id,
                digest,
                reply,
                until,
            };
            if let Err(mpsc::error::SendError(answer)) = answers.send(answer) {
                // The connection is gone: keep the answer for the peer's repeat elsewhere.
                if let Some(link) = link {
                    link.remember_answer(answer, clock.now_ms());
                }
            }
        });
        if let Err(mpsc::error::SendError(exchange)) = self.exchanges.send(exchange) {
            // The exchanges' task is gone (it ends only after this connection): run it alone.
            tokio::spawn(exchange);
        }
    }

    /// Unbinds from the link, fails what is pending and says goodbye.
    async fn finish(&mut self) {
        // Down first, so whoever sees a pending Prepare fail also sees the link down.
        if let Some(link) = &self.link {
            link.remove(self.id);
        }
        // BTP/2.0-I: a request the peer may have answered is repeated on the next connection,
        // not failed; the link does that.
        let repeat = self.link.as_ref().is_some_and(|l| l.idempotency.is_some());
        let interrupted = |request_id| {
            if repeat {
                Sent::Interrupted(request_id)
            } else {
                Sent::Answered(Err(LinkError::Down))
            }
        };
        for action in self.session.close() {
            if let Action::Complete {
                request_id,
                outcome,
            } = action
            {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let sent = match outcome {
                        Outcome::Closed => interrupted(request_id),
                        outcome => Sent::Answered(packet_result(outcome)),
                    };
                    let _ = reply.send(sent);
                }
            }
        }
        for (request_id, reply) in self.pending.drain() {
            let _ = reply.send(interrupted(request_id));
        }
        let _ = tokio::time::timeout(self.options.handshake_timeout, self.ws.close(None)).await;
    }
}

fn internal_reject(message: &str) -> Reject {
    Reject::new(ErrorCode::T00_INTERNAL_ERROR, None, message)
}

/// What the answer to one of our Prepares means to the link's caller.
fn packet_result(outcome: Outcome) -> Result<PacketResult, LinkError> {
    match outcome {
        Outcome::Response(pd) => match pd.ilp().map(|b| Packet::parse(b.clone())) {
            Some(Ok(Packet::Fulfill(f))) => Ok(Ok(f)),
            Some(Ok(Packet::Reject(r))) => Ok(Err(r)),
            Some(_) => Err(LinkError::Protocol(
                "the Response holds no ILP Fulfill or Reject".into(),
            )),
            None => Err(LinkError::Protocol("the Response has no ilp data".into())),
        },
        Outcome::Error(e) => Err(LinkError::Protocol(format!(
            "BTP Error {} {}",
            e.code,
            e.name()
        ))),
        Outcome::TimedOut | Outcome::Closed => Err(LinkError::Down),
    }
}

#[cfg(test)]
mod tests {
    use super::{within, Bounded};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn within_answers_a_ready_future_and_bounds_a_stalled_one() {
        let limit = Duration::from_secs(60);
        let bounded = |output, waited| Bounded { output, waited };
        assert_eq!(within(limit, async { 7 }).await, bounded(Some(7), false));
        let start = tokio::time::Instant::now();
        // Pending at the first poll, done before the limit: its output, when it is done.
        let late = within(limit, async {
            tokio::time::sleep(Duration::from_secs(59)).await;
            8
        });
        assert_eq!(late.await, bounded(Some(8), true));
        assert_eq!(start.elapsed(), Duration::from_secs(59));
        // Never done: given up at the limit.
        let stalled = within(limit, std::future::pending::<()>());
        assert_eq!(
            stalled.await,
            Bounded {
                output: None,
                waited: true
            }
        );
        assert_eq!(start.elapsed(), Duration::from_secs(119));
    }
}
