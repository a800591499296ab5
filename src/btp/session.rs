//! The per-connection BTP/2.0 state machine, sans-IO: the caller feeds it received frames,
//! application decisions and the current time (`now`, unix milliseconds), and carries out the
//! [`Action`]s it returns (write bytes, hand a request to the application, complete a
//! pending request, close the socket).
//!
//! It owns:
//! - the auth handshake (RFC 23 "Authentication"): a client sends the auth Message first and
//!   waits for its Response; a server accepts nothing but that Message first, hands the
//!   credentials to the caller, and answers anything else with an F00 NotAcceptedError Error
//!   frame and a close;
//! - outgoing request ids (caller-chosen, or a counter from a caller-supplied random start),
//!   matching Responses/Errors to pending requests, and request timeouts;
//! - BTP/2.0-I when [`SessionConfig::idempotency`] is set: unanswered requests are repeated
//!   byte for byte every retry interval until answered or their deadline, and repeats received
//!   from the peer are answered from a [`ReplayCache`] instead of being delivered twice.
//!
//! Unreadable frames close the connection without a reply, and answers nobody asked for are
//! reported but never answered: RFC 23 forbids replying to either, to avoid feedback loops.
//! Both sides must agree on BTP/2.0-I out of band, since a plain BTP/2.0 peer would act on
//! every repeat.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

use super::frame::{BtpErrorCode, ErrorPayload, Frame, FrameError, Payload};
use super::generalized_time::GeneralizedTime;
use super::idempotency::{digest, Lookup, ReplayCache};
use super::protocol_data::{AuthCredentials, AuthError, ProtocolData};

/// Timeouts and the optional BTP/2.0-I behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long an outgoing request waits for its answer when the caller gives no deadline.
    /// Default 35 s, ilp-plugin-btp's response timeout.
    pub request_timeout_ms: u64,
    /// Server: how long a new connection may take to authenticate (including the caller's
    /// decision). Client: how long to wait for the answer to the auth Message.
    pub auth_timeout_ms: u64,
    /// `Some` turns on BTP/2.0-I on this connection.
    pub idempotency: Option<IdempotencyConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            request_timeout_ms: 35_000,
            auth_timeout_ms: 10_000,
            idempotency: None,
        }
    }
}

/// BTP/2.0-I parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// Pause between repeats of an unanswered request (at least 1 ms).
    pub retry_interval_ms: u64,
    /// Most incoming requests remembered at once.
    pub max_entries: usize,
    /// How long an incoming request is remembered when the caller names no deadline: while it
    /// is processed, and after answering unless [`Session::respond`] gets one.
    pub remember_ms: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            retry_interval_ms: 1_000,
            max_entries: 10_000,
            remember_ms: 35_000,
        }
    }
}

/// A request the application sends or receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Message(ProtocolData),
    Transfer {
        amount: u64,
        protocol_data: ProtocolData,
    },
}

/// The application's answer to a delivered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Response(ProtocolData),
    Error(ErrorPayload),
}

/// How an outgoing request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response(ProtocolData),
    Error(ErrorPayload),
    /// No answer before the deadline.
    TimedOut,
    /// The connection closed first.
    Closed,
}

/// Why the session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`Session::close`] was called.
    Local,
    /// The peer sent bytes that are not a BTP/2.0 frame.
    Malformed(FrameError),
    /// Authentication did not finish in time.
    AuthTimeout,
    /// Server: the first frame was not a usable auth Message.
    AuthInvalid(AuthError),
    /// Server: the application refused the credentials.
    AuthRefused,
    /// Client: the server answered the auth Message with an Error.
    AuthFailed(ErrorPayload),
    /// Server: the peer sent something else while the auth decision was pending.
    Unauthenticated,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes as one binary WebSocket message.
    Send(Bytes),
    /// Server: check these credentials, then call [`Session::accept_auth`] or
    /// [`Session::reject_auth`].
    Authenticate {
        request_id: u32,
        credentials: AuthCredentials,
    },
    /// The handshake succeeded; the connection carries traffic now.
    Authenticated,
    /// Hand this request to the application; answer with [`Session::respond`].
    Deliver { request_id: u32, request: Request },
    /// An outgoing request ended.
    Complete { request_id: u32, outcome: Outcome },
    /// A Response or Error matched no pending request; it was dropped.
    UnexpectedResponse { request_id: u32 },
    /// Close the socket. Always the last action of a batch.
    Close(CloseReason),
}

/// Misuse of the session by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error("the session is not open yet (authentication has not completed)")]
    NotOpen,
    #[error("the session is closed")]
    Closed,
    #[error("request id {0} is already in flight")]
    DuplicateRequestId(u32),
    #[error("no authentication decision is pending")]
    NoAuthPending,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Client: auth Message sent, waiting for its answer.
    ClientAuthenticating,
    /// Server: waiting for the auth Message.
    ServerAwaitingAuth,
    /// Server: auth Message received, waiting for the caller's decision.
    ServerAuthPending,
    Open,
    Closed,
}

#[derive(Debug, Clone)]
enum State {
    ClientAuthenticating,
    ServerAwaitingAuth {
        deadline: u64,
    },
    ServerAuthPending {
        request_id: u32,
        digest: [u8; 32],
        deadline: u64,
    },
    Open,
    Closed,
}

#[derive(Debug, Clone)]
struct Pending {
    bytes: Bytes,
    timeout_at: u64,
    /// The key of this request's entry in `Session::timers`.
    timer_at: u64,
    is_auth: bool,
}

/// One BTP connection, client or server side.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    next_request_id: u32,
    pending: BTreeMap<u32, Pending>,
    /// `(when, request_id)`: the next retry or timeout of each pending request.
    timers: BTreeSet<(u64, u32)>,
    replay: Option<ReplayCache>,
}

impl Session {
    fn new(config: SessionConfig, state: State, first_request_id: u32) -> Self {
        let replay = config.idempotency.map(|c| ReplayCache::new(c.max_entries));
        Session {
            config,
            state,
            next_request_id: first_request_id,
            pending: BTreeMap::new(),
            timers: BTreeSet::new(),
            replay,
        }
    }

    /// A client session; the returned actions send the auth Message (request id
    /// `first_request_id`, which should be random).
    pub fn client(
        config: SessionConfig,
        username: &str,
        token: &str,
        first_request_id: u32,
        now: u64,
    ) -> (Self, Vec<Action>) {
        let mut s = Session::new(config, State::ClientAuthenticating, first_request_id);
        let id = s.allocate_request_id();
        let bytes = Bytes::from(Frame::auth(id, username, token).encode());
        let timeout_at = now.saturating_add(s.config.auth_timeout_ms);
        s.track(id, bytes.clone(), timeout_at, true, now);
        (s, vec![Action::Send(bytes)])
    }

    /// A server session for a freshly accepted connection. `first_request_id` (random) seeds
    /// the ids of the requests this side sends.
    pub fn server(config: SessionConfig, first_request_id: u32, now: u64) -> Self {
        let deadline = now.saturating_add(config.auth_timeout_ms);
        Session::new(
            config,
            State::ServerAwaitingAuth { deadline },
            first_request_id,
        )
    }

    pub fn state(&self) -> SessionState {
        match self.state {
            State::ClientAuthenticating => SessionState::ClientAuthenticating,
            State::ServerAwaitingAuth { .. } => SessionState::ServerAwaitingAuth,
            State::ServerAuthPending { .. } => SessionState::ServerAuthPending,
            State::Open => SessionState::Open,
            State::Closed => SessionState::Closed,
        }
    }

    /// Outgoing requests still waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Incoming requests remembered for BTP/2.0-I.
    pub fn remembered_requests(&self) -> usize {
        self.replay.as_ref().map_or(0, ReplayCache::len)
    }

    /// When [`Session::handle_timeout`] next has work to do.
    pub fn next_timeout(&self) -> Option<u64> {
        let auth = match self.state {
            State::ServerAwaitingAuth { deadline } | State::ServerAuthPending { deadline, .. } => {
                Some(deadline)
            }
            _ => None,
        };
        let timer = self.timers.first().map(|&(at, _)| at);
        match (auth, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Sends a request. `request_id` is the caller's choice or `None` for the next free id
    /// of the counter; `deadline` (e.g. the ILP Prepare's expiry) replaces the default
    /// timeout, and bounds BTP/2.0-I repeats.
    pub fn send_request(
        &mut self,
        request_id: Option<u32>,
        request: Request,
        deadline: Option<u64>,
        now: u64,
    ) -> Result<(u32, Vec<Action>), SessionError> {
        match self.state {
            State::Open => {}
            State::Closed => return Err(SessionError::Closed),
            _ => return Err(SessionError::NotOpen),
        }
        let id = match request_id {
            Some(id) if self.pending.contains_key(&id) => {
                return Err(SessionError::DuplicateRequestId(id))
            }
            Some(id) => id,
            None => self.allocate_request_id(),
        };
        let payload = match request {
            Request::Message(pd) => Payload::Message(pd),
            Request::Transfer {
                amount,
                protocol_data,
            } => Payload::Transfer {
                amount,
                protocol_data,
            },
        };
        let bytes = Bytes::from(
            Frame {
                request_id: id,
                payload,
            }
            .encode(),
        );
        let timeout_at =
            deadline.unwrap_or_else(|| now.saturating_add(self.config.request_timeout_ms));
        self.track(id, bytes.clone(), timeout_at, false, now);
        Ok((id, vec![Action::Send(bytes)]))
    }

    /// Answers a delivered request. With BTP/2.0-I the reply is remembered until
    /// `remember_until` (the request's ILP expiry, normally) so repeats get it again.
    pub fn respond(
        &mut self,
        request_id: u32,
        reply: Reply,
        remember_until: Option<u64>,
        now: u64,
    ) -> Vec<Action> {
        if matches!(self.state, State::Closed) {
            return Vec::new();
        }
        let payload = match reply {
            Reply::Response(pd) => Payload::Response(pd),
            Reply::Error(e) => Payload::Error(e),
        };
        let bytes = Bytes::from(
            Frame {
                request_id,
                payload,
            }
            .encode(),
        );
        let default_until = self.remember_until(now);
        if let Some(cache) = &mut self.replay {
            cache.complete(
                request_id,
                bytes.clone(),
                remember_until.unwrap_or(default_until),
            );
        }
        vec![Action::Send(bytes)]
    }

    /// Server: the credentials are good; open the connection.
    pub fn accept_auth(&mut self, now: u64) -> Result<Vec<Action>, SessionError> {
        let State::ServerAuthPending {
            request_id, digest, ..
        } = self.state
        else {
            return Err(SessionError::NoAuthPending);
        };
        let bytes = Bytes::from(
            Frame {
                request_id,
                payload: Payload::Response(ProtocolData::new()),
            }
            .encode(),
        );
        let until = self.remember_until(now);
        if let Some(cache) = &mut self.replay {
            // A repeated auth Message gets the same Response rather than a delivery.
            cache.remember(request_id, digest, bytes.clone(), until, now);
        }
        self.state = State::Open;
        Ok(vec![Action::Send(bytes), Action::Authenticated])
    }

    /// Server: the credentials are bad; answer F00 NotAcceptedError and close.
    pub fn reject_auth(&mut self, message: &str, now: u64) -> Result<Vec<Action>, SessionError> {
        let State::ServerAuthPending { request_id, .. } = self.state else {
            return Err(SessionError::NoAuthPending);
        };
        let mut out = vec![Action::Send(error_frame(
            request_id,
            BtpErrorCode::F00_NOT_ACCEPTED,
            message,
            now,
        ))];
        out.extend(self.shut_down(CloseReason::AuthRefused));
        Ok(out)
    }

    /// Closes the connection from this side; pending requests complete as
    /// [`Outcome::Closed`].
    pub fn close(&mut self) -> Vec<Action> {
        self.shut_down(CloseReason::Local)
    }

    /// Handles one received WebSocket binary message.
    pub fn handle_frame(&mut self, bytes: Bytes, now: u64) -> Vec<Action> {
        if matches!(self.state, State::Closed) {
            return Vec::new();
        }
        let frame = match Frame::decode_bytes(&bytes) {
            Ok(f) => f,
            Err(e) => return self.shut_down(CloseReason::Malformed(e)),
        };
        match self.state {
            State::ServerAwaitingAuth { deadline } => {
                self.on_auth_frame(frame, &bytes, deadline, now)
            }
            State::ServerAuthPending {
                request_id,
                digest: auth_digest,
                ..
            } => {
                if frame.request_id == request_id && digest(&bytes) == auth_digest {
                    // The client repeating its auth Message (BTP/2.0-I): the answer follows.
                    return Vec::new();
                }
                self.refuse(
                    &frame,
                    CloseReason::Unauthenticated,
                    "not authenticated",
                    now,
                )
            }
            _ => self.on_frame(frame, &bytes, now),
        }
    }

    /// Fires due retries and timeouts; call at [`Session::next_timeout`].
    pub fn handle_timeout(&mut self, now: u64) -> Vec<Action> {
        match self.state {
            State::Closed => return Vec::new(),
            State::ServerAwaitingAuth { deadline } | State::ServerAuthPending { deadline, .. }
                if now >= deadline =>
            {
                return self.shut_down(CloseReason::AuthTimeout)
            }
            _ => {}
        }
        if let Some(cache) = &mut self.replay {
            cache.expire(now);
        }
        let retry_interval = self.config.idempotency.map(|c| c.retry_interval_ms.max(1));
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            match retry_interval {
                Some(interval) if now < p.timeout_at => {
                    out.push(Action::Send(p.bytes.clone()));
                    p.timer_at = now.saturating_add(interval).min(p.timeout_at);
                    self.timers.insert((p.timer_at, id));
                }
                _ => {
                    let is_auth = self.pending.remove(&id).is_some_and(|p| p.is_auth);
                    if is_auth {
                        out.extend(self.shut_down(CloseReason::AuthTimeout));
                        return out;
                    }
                    out.push(Action::Complete {
                        request_id: id,
                        outcome: Outcome::TimedOut,
                    });
                }
            }
        }
        out
    }

    fn remember_until(&self, now: u64) -> u64 {
        let ms = self.config.idempotency.map_or(0, |c| c.remember_ms);
        now.saturating_add(ms)
    }

    /// The next counter value not in flight. Ids wrap: they only need to be unique among
    /// pending requests.
    fn allocate_request_id(&mut self) -> u32 {
        loop {
            let id = self.next_request_id;
            self.next_request_id = id.wrapping_add(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn track(&mut self, id: u32, bytes: Bytes, timeout_at: u64, is_auth: bool, now: u64) {
        let timer_at = match self.config.idempotency {
            Some(c) => now
                .saturating_add(c.retry_interval_ms.max(1))
                .min(timeout_at),
            None => timeout_at,
        };
        self.pending.insert(
            id,
            Pending {
                bytes,
                timeout_at,
                timer_at,
                is_auth,
            },
        );
        self.timers.insert((timer_at, id));
    }

    fn on_auth_frame(
        &mut self,
        frame: Frame,
        bytes: &[u8],
        deadline: u64,
        now: u64,
    ) -> Vec<Action> {
        let credentials = match &frame.payload {
            Payload::Message(pd) => AuthCredentials::from_protocol_data(pd),
            _ => Err(AuthError::NotAMessage),
        };
        match credentials {
            Ok(credentials) => {
                self.state = State::ServerAuthPending {
                    request_id: frame.request_id,
                    digest: digest(bytes),
                    deadline,
                };
                vec![Action::Authenticate {
                    request_id: frame.request_id,
                    credentials,
                }]
            }
            Err(e) => {
                let message = e.to_string();
                self.refuse(&frame, CloseReason::AuthInvalid(e), &message, now)
            }
        }
    }

    /// Answers an unauthenticated request with F00 NotAcceptedError, then closes. Responses
    /// are never answered (RFC 23: no replies to unexpected answers).
    fn refuse(
        &mut self,
        frame: &Frame,
        reason: CloseReason,
        message: &str,
        now: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if frame.is_request() {
            out.push(Action::Send(error_frame(
                frame.request_id,
                BtpErrorCode::F00_NOT_ACCEPTED,
                message,
                now,
            )));
        }
        out.extend(self.shut_down(reason));
        out
    }

    fn on_frame(&mut self, frame: Frame, bytes: &[u8], now: u64) -> Vec<Action> {
        let id = frame.request_id;
        match frame.payload {
            Payload::Response(pd) => self.on_answer(id, Outcome::Response(pd)),
            Payload::Error(e) => self.on_answer(id, Outcome::Error(e)),
            Payload::Message(pd) => self.on_request(id, Request::Message(pd), bytes, now),
            Payload::Transfer {
                amount,
                protocol_data,
            } => self.on_request(
                id,
                Request::Transfer {
                    amount,
                    protocol_data,
                },
                bytes,
                now,
            ),
        }
    }

    fn on_answer(&mut self, id: u32, outcome: Outcome) -> Vec<Action> {
        let Some(p) = self.pending.remove(&id) else {
            return vec![Action::UnexpectedResponse { request_id: id }];
        };
        self.timers.remove(&(p.timer_at, id));
        if !p.is_auth {
            return vec![Action::Complete {
                request_id: id,
                outcome,
            }];
        }
        if let Outcome::Error(e) = outcome {
            return self.shut_down(CloseReason::AuthFailed(e));
        }
        self.state = State::Open;
        vec![Action::Authenticated]
    }

    fn on_request(&mut self, id: u32, request: Request, bytes: &[u8], now: u64) -> Vec<Action> {
        let until = self.remember_until(now);
        if let Some(cache) = &mut self.replay {
            let d = digest(bytes);
            match cache.check(id, &d, now) {
                Lookup::New => {
                    cache.begin(id, d, until, now);
                }
                Lookup::InProgress => return Vec::new(),
                Lookup::Answered(reply) => return vec![Action::Send(reply)],
                Lookup::Conflict => {
                    return vec![Action::Send(error_frame(
                        id,
                        BtpErrorCode::F05_DUPLICATE_ID,
                        "request id reused while the earlier request is in flight",
                        now,
                    ))]
                }
            }
        }
        vec![Action::Deliver {
            request_id: id,
            request,
        }]
    }

    fn shut_down(&mut self, reason: CloseReason) -> Vec<Action> {
        if matches!(self.state, State::Closed) {
            return Vec::new();
        }
        self.state = State::Closed;
        self.timers.clear();
        self.replay = None;
        let mut out: Vec<Action> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, p)| !p.is_auth)
            .map(|(request_id, _)| Action::Complete {
                request_id,
                outcome: Outcome::Closed,
            })
            .collect();
        out.push(Action::Close(reason));
        out
    }
}

fn error_frame(request_id: u32, code: BtpErrorCode, message: &str, now: u64) -> Bytes {
    let error = ErrorPayload::new(
        code,
        GeneralizedTime::from_unix_millis_saturating(now),
        Bytes::copy_from_slice(message.as_bytes()),
    );
    Bytes::from(
        Frame {
            request_id,
            payload: Payload::Error(error),
        }
        .encode(),
    )
}
