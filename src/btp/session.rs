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
    /// Hand this request to the application; answer with [`Session::respond`], passing
    /// `digest` back (BTP/2.0-I: it names the request the answer belongs to).
    Deliver {
        request_id: u32,
        request: Request,
        digest: Option<[u8; 32]>,
    },
    /// BTP/2.0-I: the memory of requests is full of requests still in progress, so this one
    /// was refused (T03 for an ILP Prepare, a BTP T00 Error otherwise) and not delivered. The
    /// sender repeats it later; count it.
    Busy { request_id: u32 },
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
    #[error("BTP/2.0-I can only be switched before the connection opens")]
    TooLateForIdempotency,
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

    /// Server: switches BTP/2.0-I on or off for this connection, once authentication tells
    /// which account connects (the two sides agree on it per account, out of band). Only
    /// before the connection opens, so no request was delivered or sent under the old rules.
    pub fn set_idempotency(
        &mut self,
        idempotency: Option<IdempotencyConfig>,
    ) -> Result<(), SessionError> {
        if !matches!(
            self.state,
            State::ServerAwaitingAuth { .. } | State::ServerAuthPending { .. }
        ) {
            return Err(SessionError::TooLateForIdempotency);
        }
        self.replay = idempotency.map(|c| ReplayCache::new(c.max_entries));
        self.config.idempotency = idempotency;
        Ok(())
    }

    /// Whether BTP/2.0-I is on.
    pub fn is_idempotent(&self) -> bool {
        self.config.idempotency.is_some()
    }

    /// Exchanges this session's BTP/2.0-I memory with `other` (returns false, changing
    /// nothing, when BTP/2.0-I is off). A caller keeping one memory per account across
    /// reconnects swaps it in around each call and back out after, so a request repeated on
    /// a new connection is still answered from memory. The memory survives [`Session::close`].
    pub fn swap_replay_cache(&mut self, other: &mut ReplayCache) -> bool {
        match &mut self.replay {
            Some(mine) => {
                std::mem::swap(mine, other);
                true
            }
            None => false,
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

    /// Answers a delivered request (`digest` as [`Action::Deliver`] gave it). With BTP/2.0-I
    /// the reply is remembered until `remember_until` (the request's ILP expiry, normally) so
    /// repeats get it again, provided the memory still holds that very request.
    pub fn respond(
        &mut self,
        request_id: u32,
        digest: Option<[u8; 32]>,
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
        if let (Some(cache), Some(digest)) = (&mut self.replay, digest) {
            cache.complete(
                request_id,
                &digest,
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
        let mut delivered_digest = None;
        // A Prepare is remembered while its sender may repeat it: until it expires.
        let until = ilp_expiry(&request).unwrap_or_else(|| self.remember_until(now));
        if let Some(cache) = &mut self.replay {
            let d = digest(bytes);
            match cache.check(id, &d, now) {
                Lookup::New => {
                    if cache.begin(id, d, until, now).is_err() {
                        return vec![
                            Action::Busy { request_id: id },
                            busy_frame(id, &request, now),
                        ];
                    }
                    delivered_digest = Some(d);
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
            digest: delivered_digest,
        }]
    }

    fn shut_down(&mut self, reason: CloseReason) -> Vec<Action> {
        if matches!(self.state, State::Closed) {
            return Vec::new();
        }
        self.state = State::Closed;
        self.timers.clear();
        // The replay memory stays: the caller may keep it for the account's next connection.
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

/// The expiry of the ILP Prepare a request carries, in unix milliseconds.
fn ilp_expiry(request: &Request) -> Option<u64> {
    let Request::Message(pd) = request else {
        return None;
    };
    let prepare = crate::packet::Prepare::parse(pd.ilp()?.clone()).ok()?;
    Some(prepare.expires_at().unix_millis())
}

/// The answer to a request refused because the BTP/2.0-I memory is full: a temporary one, so
/// the sender's repeat is delivered once there is room.
fn busy_frame(request_id: u32, request: &Request, now: u64) -> Action {
    const BUSY: &str = "too many requests in progress on this BTP/2.0-I account; try again";
    let carries_ilp = matches!(request, Request::Message(pd) if pd.ilp().is_some());
    if !carries_ilp {
        return Action::Send(error_frame(
            request_id,
            BtpErrorCode::T00_UNREACHABLE,
            BUSY,
            now,
        ));
    }
    let reject =
        crate::packet::Reject::new(crate::packet::ErrorCode::T03_CONNECTOR_BUSY, None, BUSY);
    Action::Send(Bytes::from(
        Frame {
            request_id,
            payload: Payload::Response(ProtocolData::ilp_packet(reject.as_bytes().clone())),
        }
        .encode(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btp::protocol_data::{ContentType, ProtocolDataEntry};
    use crate::oer::OerError;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;

    fn idempotent() -> SessionConfig {
        SessionConfig {
            idempotency: Some(IdempotencyConfig {
                retry_interval_ms: 100,
                max_entries: 4,
                remember_ms: 5_000,
            }),
            ..SessionConfig::default()
        }
    }

    fn sent(actions: &[Action]) -> Vec<Bytes> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    fn only_send(actions: Vec<Action>) -> Bytes {
        match actions.as_slice() {
            [Action::Send(b)] => b.clone(),
            other => panic!("expected one Send, got {other:?}"),
        }
    }

    fn decode(b: &Bytes) -> Frame {
        Frame::decode(b).unwrap()
    }

    fn ilp(data: &'static [u8]) -> Request {
        Request::Message(ProtocolData::ilp_packet(data))
    }

    /// A client and a server that completed the handshake.
    fn open_pair(config: SessionConfig) -> (Session, Session) {
        let (mut client, actions) = Session::client(config.clone(), "alice", "s3cret", 100, T0);
        let mut server = Session::server(config, 5_000, T0);
        let auth = only_send(actions);
        let actions = server.handle_frame(auth, T0);
        assert!(matches!(
            actions.as_slice(),
            [Action::Authenticate { request_id: 100, credentials }]
                if credentials.token == "s3cret" && credentials.username.as_deref() == Some("alice")
        ));
        assert_eq!(server.state(), SessionState::ServerAuthPending);
        let actions = server.accept_auth(T0).unwrap();
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[1], Action::Authenticated);
        let reply = sent(&actions).remove(0);
        assert_eq!(client.handle_frame(reply, T0), vec![Action::Authenticated]);
        assert_eq!(client.state(), SessionState::Open);
        assert_eq!(server.state(), SessionState::Open);
        (client, server)
    }

    fn error_of(b: &Bytes) -> ErrorPayload {
        match decode(b).payload {
            Payload::Error(e) => e,
            p => panic!("expected an Error frame, got {p:?}"),
        }
    }

    #[test]
    fn client_sends_the_js_auth_message_first() {
        let (client, actions) = Session::client(SessionConfig::default(), "alice", "tok", 7, T0);
        assert_eq!(
            only_send(actions).as_ref(),
            Frame::auth(7, "alice", "tok").encode()
        );
        assert_eq!(client.state(), SessionState::ClientAuthenticating);
        assert_eq!(client.next_timeout(), Some(T0 + 10_000));
    }

    #[test]
    fn auth_success_both_sides() {
        let (client, server) = open_pair(SessionConfig::default());
        assert_eq!(client.pending_requests(), 0);
        assert_eq!(server.next_timeout(), None);
    }

    #[test]
    fn client_cannot_send_before_auth_completes() {
        let (mut client, _) = Session::client(SessionConfig::default(), "a", "t", 1, T0);
        assert_eq!(
            client.send_request(None, ilp(b"x"), None, T0),
            Err(SessionError::NotOpen)
        );
    }

    #[test]
    fn client_auth_refused_by_server_closes() {
        let (mut client, _) = Session::client(SessionConfig::default(), "a", "bad", 1, T0);
        let mut server = Session::server(SessionConfig::default(), 9, T0);
        let auth = Frame::auth(1, "a", "bad").encode().into();
        assert_eq!(server.handle_frame(auth, T0).len(), 1);
        let actions = server.reject_auth("invalid auth_token", T0 + 5).unwrap();
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[1], Action::Close(CloseReason::AuthRefused));
        let err_bytes = sent(&actions).remove(0);
        let e = error_of(&err_bytes);
        assert_eq!(decode(&err_bytes).request_id, 1);
        assert_eq!(e.code, BtpErrorCode::F00_NOT_ACCEPTED);
        assert_eq!(e.name(), "NotAcceptedError");
        assert_eq!(e.data().as_ref(), b"invalid auth_token");
        assert_eq!(e.triggered_at.unix_millis(), Some(T0 + 5));
        assert_eq!(server.state(), SessionState::Closed);

        let actions = client.handle_frame(err_bytes, T0 + 6);
        assert_eq!(actions, vec![Action::Close(CloseReason::AuthFailed(e))]);
        assert_eq!(client.state(), SessionState::Closed);
        assert_eq!(
            client.send_request(None, ilp(b"x"), None, T0),
            Err(SessionError::Closed)
        );
    }

    #[test]
    fn client_auth_times_out() {
        let (mut client, _) = Session::client(SessionConfig::default(), "a", "t", 1, T0);
        assert!(client.handle_timeout(T0 + 9_999).is_empty());
        assert_eq!(
            client.handle_timeout(T0 + 10_000),
            vec![Action::Close(CloseReason::AuthTimeout)]
        );
    }

    #[test]
    fn server_refuses_a_first_frame_that_is_not_auth() {
        // A Transfer first: F00 and close.
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        let transfer = Frame {
            request_id: 3,
            payload: Payload::Transfer {
                amount: 5,
                protocol_data: ProtocolData::new(),
            },
        };
        let actions = s.handle_frame(transfer.encode().into(), T0);
        assert_eq!(
            actions.last(),
            Some(&Action::Close(CloseReason::AuthInvalid(
                AuthError::NotAMessage
            )))
        );
        let e = error_of(&sent(&actions)[0]);
        assert_eq!(e.code, BtpErrorCode::F00_NOT_ACCEPTED);

        // An ILP Message first.
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        let actions = s.handle_frame(Frame::ilp_message(4, &b"p"[..]).encode().into(), T0);
        assert_eq!(sent(&actions).len(), 1);
        assert_eq!(decode(&sent(&actions)[0]).request_id, 4);
        assert_eq!(
            actions.last(),
            Some(&Action::Close(CloseReason::AuthInvalid(
                AuthError::MissingAuth
            )))
        );

        // An auth Message without a token.
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        let no_token = Frame {
            request_id: 5,
            payload: Payload::Message(ProtocolData(vec![ProtocolDataEntry::new(
                "auth",
                ContentType::OCTET_STREAM,
                Bytes::new(),
            )
            .unwrap()])),
        };
        let actions = s.handle_frame(no_token.encode().into(), T0);
        assert_eq!(sent(&actions).len(), 1);
        assert_eq!(
            actions.last(),
            Some(&Action::Close(CloseReason::AuthInvalid(
                AuthError::MissingToken
            )))
        );

        // A Response first is never answered.
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        let actions = s.handle_frame(Frame::ilp_response(6, &b"p"[..]).encode().into(), T0);
        assert_eq!(
            actions,
            vec![Action::Close(CloseReason::AuthInvalid(
                AuthError::NotAMessage
            ))]
        );
    }

    #[test]
    fn malformed_frames_close_without_a_reply() {
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        assert_eq!(
            s.handle_frame(Bytes::from_static(&[3, 0, 0, 0, 1, 0]), T0),
            vec![Action::Close(CloseReason::Malformed(
                FrameError::DeprecatedType {
                    type_id: 3,
                    request_id: 1
                }
            ))]
        );
        // Closed sessions ignore everything.
        assert!(s
            .handle_frame(Frame::auth(1, "a", "b").encode().into(), T0)
            .is_empty());
        assert!(s.handle_timeout(T0 + 1_000_000).is_empty());
        assert!(s.close().is_empty());
        assert!(s
            .respond(1, None, Reply::Response(ProtocolData::new()), None, T0)
            .is_empty());

        let (mut client, _) = open_pair(SessionConfig::default());
        let (_, _) = client.send_request(None, ilp(b"x"), None, T0).unwrap();
        let actions = client.handle_frame(Bytes::from_static(&[9]), T0);
        assert!(matches!(
            actions.as_slice(),
            [
                Action::Complete {
                    outcome: Outcome::Closed,
                    ..
                },
                Action::Close(CloseReason::Malformed(FrameError::Oer(
                    OerError::UnexpectedEnd
                )))
            ]
        ));
    }

    #[test]
    fn server_refuses_traffic_while_the_auth_decision_is_pending() {
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        let auth: Bytes = Frame::auth(1, "a", "t").encode().into();
        s.handle_frame(auth.clone(), T0);
        // The same auth bytes again (a BTP/2.0-I repeat) are ignored.
        assert!(s.handle_frame(auth, T0 + 1).is_empty());
        let actions = s.handle_frame(Frame::ilp_message(2, &b"p"[..]).encode().into(), T0 + 2);
        assert_eq!(actions.len(), 2);
        assert_eq!(decode(&sent(&actions)[0]).request_id, 2);
        assert_eq!(actions[1], Action::Close(CloseReason::Unauthenticated));
        assert_eq!(s.accept_auth(T0), Err(SessionError::NoAuthPending));
        assert_eq!(s.reject_auth("x", T0), Err(SessionError::NoAuthPending));
    }

    #[test]
    fn server_auth_times_out_waiting_or_deciding() {
        let mut s = Session::server(SessionConfig::default(), 0, T0);
        assert_eq!(s.next_timeout(), Some(T0 + 10_000));
        assert!(s.handle_timeout(T0 + 9_999).is_empty());
        assert_eq!(
            s.handle_timeout(T0 + 10_000),
            vec![Action::Close(CloseReason::AuthTimeout)]
        );

        let mut s = Session::server(SessionConfig::default(), 0, T0);
        s.handle_frame(Frame::auth(1, "a", "t").encode().into(), T0 + 9_000);
        assert_eq!(s.next_timeout(), Some(T0 + 10_000));
        assert_eq!(
            s.handle_timeout(T0 + 10_000),
            vec![Action::Close(CloseReason::AuthTimeout)]
        );
    }

    #[test]
    fn request_response_matching() {
        let (mut client, mut server) = open_pair(SessionConfig::default());
        let (id, actions) = client
            .send_request(None, ilp(b"prepare"), None, T0)
            .unwrap();
        assert_eq!(id, 101, "the counter continues after the auth request");
        let delivered = server.handle_frame(only_send(actions), T0);
        assert_eq!(
            delivered,
            vec![Action::Deliver {
                request_id: id,
                request: ilp(b"prepare"),
                digest: None,
            }]
        );
        let reply = only_send(server.respond(
            id,
            None,
            Reply::Response(ProtocolData::ilp_packet(&b"fulfill"[..])),
            None,
            T0,
        ));
        assert_eq!(
            reply.as_ref(),
            Frame::ilp_response(id, &b"fulfill"[..]).encode()
        );
        assert_eq!(
            client.handle_frame(reply.clone(), T0),
            vec![Action::Complete {
                request_id: id,
                outcome: Outcome::Response(ProtocolData::ilp_packet(&b"fulfill"[..]))
            }]
        );
        assert_eq!(client.pending_requests(), 0);
        // The same answer again is unexpected now: reported, not answered.
        assert_eq!(
            client.handle_frame(reply, T0),
            vec![Action::UnexpectedResponse { request_id: id }]
        );
    }

    #[test]
    fn error_answers_and_transfers() {
        let (mut client, mut server) = open_pair(SessionConfig::default());
        let transfer = Request::Transfer {
            amount: u64::MAX,
            protocol_data: ProtocolData::new(),
        };
        let (id, actions) = client
            .send_request(Some(77), transfer.clone(), None, T0)
            .unwrap();
        assert_eq!(id, 77);
        assert_eq!(
            server.handle_frame(only_send(actions), T0),
            vec![Action::Deliver {
                request_id: 77,
                request: transfer,
                digest: None,
            }]
        );
        let err = ErrorPayload::new(
            BtpErrorCode::T00_UNREACHABLE,
            GeneralizedTime::from_unix_millis(T0).unwrap(),
            &b"busy"[..],
        );
        let reply = only_send(server.respond(77, None, Reply::Error(err.clone()), None, T0));
        assert_eq!(
            client.handle_frame(reply, T0),
            vec![Action::Complete {
                request_id: 77,
                outcome: Outcome::Error(err)
            }]
        );
    }

    #[test]
    fn unknown_response_ids_are_reported_and_ignored() {
        let (mut client, _) = open_pair(SessionConfig::default());
        let err = Frame {
            request_id: 999,
            payload: Payload::Error(ErrorPayload::new(
                BtpErrorCode::F00_NOT_ACCEPTED,
                GeneralizedTime::from_unix_millis(T0).unwrap(),
                Bytes::new(),
            )),
        };
        assert_eq!(
            client.handle_frame(err.encode().into(), T0),
            vec![Action::UnexpectedResponse { request_id: 999 }]
        );
        assert_eq!(client.state(), SessionState::Open);
    }

    #[test]
    fn request_ids_are_unique_among_pending_and_wrap() {
        let config = SessionConfig::default();
        let (mut client, actions) = Session::client(config.clone(), "a", "t", u32::MAX - 1, T0);
        let auth_id = decode(&only_send(actions)).request_id;
        assert_eq!(auth_id, u32::MAX - 1);
        let reply = Frame {
            request_id: auth_id,
            payload: Payload::Response(ProtocolData::new()),
        };
        client.handle_frame(reply.encode().into(), T0);
        // The caller takes id 0 explicitly; the counter must skip it after wrapping.
        client.send_request(Some(0), ilp(b"a"), None, T0).unwrap();
        assert_eq!(
            client.send_request(Some(0), ilp(b"b"), None, T0),
            Err(SessionError::DuplicateRequestId(0))
        );
        let ids: Vec<u32> = (0..3)
            .map(|_| client.send_request(None, ilp(b"c"), None, T0).unwrap().0)
            .collect();
        assert_eq!(ids, [u32::MAX, 1, 2]);
        assert_eq!(client.pending_requests(), 4);
    }

    #[test]
    fn requests_time_out_and_late_answers_are_unexpected() {
        let (mut client, _) = open_pair(SessionConfig::default());
        let (a, _) = client.send_request(None, ilp(b"a"), None, T0).unwrap();
        let (b, _) = client
            .send_request(None, ilp(b"b"), Some(T0 + 500), T0)
            .unwrap();
        assert_eq!(client.next_timeout(), Some(T0 + 500));
        assert!(client.handle_timeout(T0 + 499).is_empty());
        assert_eq!(
            client.handle_timeout(T0 + 500),
            vec![Action::Complete {
                request_id: b,
                outcome: Outcome::TimedOut
            }]
        );
        assert_eq!(client.next_timeout(), Some(T0 + 35_000));
        // Plain BTP/2.0 never repeats a request.
        assert_eq!(
            client.handle_timeout(T0 + 35_000),
            vec![Action::Complete {
                request_id: a,
                outcome: Outcome::TimedOut
            }]
        );
        assert_eq!(client.next_timeout(), None);
        let late = Frame::ilp_response(a, &b"f"[..]);
        assert_eq!(
            client.handle_frame(late.encode().into(), T0 + 35_001),
            vec![Action::UnexpectedResponse { request_id: a }]
        );
    }

    #[test]
    fn local_close_completes_pending_requests() {
        let (mut client, _) = open_pair(SessionConfig::default());
        let (a, _) = client.send_request(None, ilp(b"a"), None, T0).unwrap();
        let (b, _) = client.send_request(None, ilp(b"b"), None, T0).unwrap();
        assert_eq!(
            client.close(),
            vec![
                Action::Complete {
                    request_id: a,
                    outcome: Outcome::Closed
                },
                Action::Complete {
                    request_id: b,
                    outcome: Outcome::Closed
                },
                Action::Close(CloseReason::Local),
            ]
        );
        assert_eq!(client.next_timeout(), None);
    }

    #[test]
    fn idempotent_sender_repeats_until_answered() {
        let (mut client, mut server) = open_pair(idempotent());
        let (id, actions) = client
            .send_request(None, ilp(b"p"), Some(T0 + 1_000), T0)
            .unwrap();
        let original = only_send(actions);
        assert_eq!(client.next_timeout(), Some(T0 + 100));
        assert!(client.handle_timeout(T0 + 99).is_empty());
        let repeat = only_send(client.handle_timeout(T0 + 100));
        assert_eq!(repeat, original, "a repeat is byte-identical");
        assert_eq!(client.next_timeout(), Some(T0 + 200));
        // Late polling repeats once, then schedules from `now`.
        assert_eq!(only_send(client.handle_timeout(T0 + 350)), original);
        assert_eq!(client.next_timeout(), Some(T0 + 450));

        // The server sees the first copy, then ignores repeats until it answers.
        assert_eq!(server.handle_frame(original.clone(), T0 + 1).len(), 1);
        assert!(server.handle_frame(repeat, T0 + 101).is_empty());
        let reply = only_send(server.respond(
            id,
            Some(digest(&original)),
            Reply::Response(ProtocolData::ilp_packet(&b"f"[..])),
            Some(T0 + 1_000),
            T0 + 400,
        ));
        assert!(matches!(
            client.handle_frame(reply, T0 + 400).as_slice(),
            [Action::Complete {
                outcome: Outcome::Response(_),
                ..
            }]
        ));
        assert!(client.handle_timeout(T0 + 450).is_empty());
        assert_eq!(client.next_timeout(), None);
    }

    #[test]
    fn idempotent_sender_gives_up_at_the_deadline() {
        let (mut client, _) = open_pair(idempotent());
        let (id, _) = client
            .send_request(None, ilp(b"p"), Some(T0 + 250), T0)
            .unwrap();
        assert_eq!(sent(&client.handle_timeout(T0 + 100)).len(), 1);
        assert_eq!(sent(&client.handle_timeout(T0 + 200)).len(), 1);
        assert_eq!(client.next_timeout(), Some(T0 + 250));
        assert_eq!(
            client.handle_timeout(T0 + 250),
            vec![Action::Complete {
                request_id: id,
                outcome: Outcome::TimedOut
            }]
        );
    }

    #[test]
    fn idempotent_client_repeats_auth_and_server_replays_its_answer() {
        let config = idempotent();
        let (mut client, actions) = Session::client(config.clone(), "a", "t", 1, T0);
        let auth = only_send(actions);
        let mut server = Session::server(config, 0, T0);
        server.handle_frame(auth.clone(), T0);
        let accept = server.accept_auth(T0).unwrap();
        let answer = sent(&accept).remove(0);
        // The first answer was lost; the client repeats and gets the same Response.
        assert_eq!(only_send(client.handle_timeout(T0 + 100)), auth);
        assert_eq!(only_send(server.handle_frame(auth, T0 + 100)), answer);
        assert_eq!(
            client.handle_frame(answer, T0 + 101),
            vec![Action::Authenticated]
        );
    }

    #[test]
    fn receiver_replays_answers_and_tells_requests_apart() {
        let (_, mut server) = open_pair(idempotent());
        let first: Bytes = Frame::ilp_message(10, &b"one"[..]).encode().into();
        assert!(matches!(
            server.handle_frame(first.clone(), T0).as_slice(),
            [Action::Deliver { request_id: 10, .. }]
        ));
        // Repeat while in progress: not delivered again.
        assert!(server.handle_frame(first.clone(), T0 + 1).is_empty());
        // Same id, other content, while in progress: F05, first one unaffected.
        let other: Bytes = Frame::ilp_message(10, &b"two"[..]).encode().into();
        let e = error_of(&only_send(server.handle_frame(other.clone(), T0 + 2)));
        assert_eq!(e.code, BtpErrorCode::F05_DUPLICATE_ID);
        assert_eq!(e.name(), "DuplicateIdError");
        let reply = only_send(server.respond(
            10,
            Some(digest(&first)),
            Reply::Response(ProtocolData::ilp_packet(&b"r1"[..])),
            Some(T0 + 1_000),
            T0 + 3,
        ));
        // Repeat after the answer: the same reply bytes.
        assert_eq!(only_send(server.handle_frame(first.clone(), T0 + 4)), reply);
        // Same id, new content, after the answer: a new request, not the old reply.
        assert!(matches!(
            server.handle_frame(other, T0 + 5).as_slice(),
            [Action::Deliver { request_id: 10, request, .. }]
                if *request == ilp(b"two")
        ));
        // And the old request is forgotten along with it.
        assert_eq!(server.handle_frame(first, T0 + 6).len(), 1);
    }

    #[test]
    fn receiver_forgets_answers_after_their_deadline() {
        let (_, mut server) = open_pair(idempotent());
        let req: Bytes = Frame::ilp_message(10, &b"one"[..]).encode().into();
        server.handle_frame(req.clone(), T0);
        let reply = only_send(server.respond(
            10,
            Some(digest(&req)),
            Reply::Response(ProtocolData::new()),
            Some(T0 + 300),
            T0,
        ));
        assert_eq!(only_send(server.handle_frame(req.clone(), T0 + 299)), reply);
        assert!(server.remembered_requests() >= 1);
        server.handle_timeout(T0 + 300);
        assert!(matches!(
            server.handle_frame(req, T0 + 300).as_slice(),
            [Action::Deliver { .. }]
        ));
    }

    #[test]
    fn unanswered_requests_are_remembered_for_remember_ms() {
        let (_, mut server) = open_pair(idempotent());
        let req: Bytes = Frame::ilp_message(10, &b"one"[..]).encode().into();
        server.handle_frame(req.clone(), T0);
        assert!(server.handle_frame(req.clone(), T0 + 4_999).is_empty());
        assert_eq!(server.handle_frame(req, T0 + 5_000).len(), 1);
    }

    /// A Prepare expiring at `expires_ms`, as a BTP Message with request id `id`.
    fn prepare_frame(id: u32, expires_ms: u64) -> Bytes {
        let prepare = crate::packet::PrepareBuilder {
            amount: 1,
            expires_at: crate::packet::Timestamp::from_unix_millis(expires_ms),
            execution_condition: &[0; 32],
            destination: &crate::packet::Address::try_from("test.x").unwrap(),
            data: &[],
        }
        .build()
        .unwrap();
        Frame::ilp_message(id, prepare.as_bytes().clone())
            .encode()
            .into()
    }

    #[test]
    fn an_unanswered_prepare_is_remembered_until_it_expires() {
        let (_, mut server) = open_pair(idempotent());
        // remember_ms is 5 s; this Prepare expires after 90 s.
        let req = prepare_frame(10, T0 + 90_000);
        assert_eq!(server.handle_frame(req.clone(), T0).len(), 1);
        server.handle_timeout(T0 + 60_000);
        assert!(
            server.handle_frame(req.clone(), T0 + 89_999).is_empty(),
            "a slow exchange is not delivered twice"
        );
        assert_eq!(server.handle_frame(req, T0 + 90_000).len(), 1);
    }

    #[test]
    fn a_late_answer_is_not_stored_under_a_request_that_reused_its_id() {
        let (_, mut server) = open_pair(idempotent());
        let a: Bytes = Frame::ilp_message(10, &b"a"[..]).encode().into();
        let b: Bytes = Frame::ilp_message(10, &b"b"[..]).encode().into();
        server.handle_frame(a.clone(), T0);
        // A is forgotten after remember_ms; B takes its id.
        assert!(matches!(
            server.handle_frame(b.clone(), T0 + 5_000).as_slice(),
            [Action::Deliver { request_id: 10, .. }]
        ));
        // A's answer arrives late: it is sent, but not remembered as B's.
        let late = server.respond(
            10,
            Some(digest(&a)),
            Reply::Response(ProtocolData::ilp_packet(&b"for a"[..])),
            Some(T0 + 60_000),
            T0 + 5_001,
        );
        assert_eq!(sent(&late).len(), 1);
        assert!(
            server.handle_frame(b.clone(), T0 + 5_002).is_empty(),
            "B is still in progress, not answered with A's reply"
        );
        let answer = only_send(server.respond(
            10,
            Some(digest(&b)),
            Reply::Response(ProtocolData::ilp_packet(&b"for b"[..])),
            Some(T0 + 60_000),
            T0 + 5_003,
        ));
        assert_eq!(only_send(server.handle_frame(b, T0 + 5_004)), answer);
    }

    #[test]
    fn a_full_memory_refuses_new_requests_busy_and_never_forgets_one_in_progress() {
        let (_, mut server) = open_pair(idempotent());
        // max_entries is 4 and the (answered) auth request holds one slot.
        let frames: Vec<Bytes> = (0..4u32)
            .map(|i| prepare_frame(20 + i, T0 + 60_000))
            .collect();
        for (i, f) in frames.iter().enumerate() {
            let actions = server.handle_frame(f.clone(), T0 + i as u64);
            assert!(
                matches!(actions.as_slice(), [Action::Deliver { .. }]),
                "{i}"
            );
        }
        assert_eq!(server.remembered_requests(), 4);
        // Four requests in progress: a fifth is refused T03, not delivered, not remembered.
        let fifth = prepare_frame(24, T0 + 60_000);
        let actions = server.handle_frame(fifth.clone(), T0 + 10);
        let [Action::Busy { request_id: 24 }, Action::Send(reply)] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        let frame = Frame::decode_bytes(reply).unwrap();
        let Payload::Response(pd) = frame.payload else {
            panic!("{frame:?}");
        };
        let reject = crate::packet::Reject::parse(pd.ilp().unwrap().clone()).unwrap();
        assert_eq!(reject.code(), crate::packet::ErrorCode::T03_CONNECTOR_BUSY);
        // Every request in progress is still known: repeats are not delivered again.
        for f in &frames {
            assert!(server.handle_frame(f.clone(), T0 + 11).is_empty());
        }
        // One answer makes room: the fifth's repeat is delivered now.
        server.respond(
            21,
            Some(digest(&frames[1])),
            Reply::Response(ProtocolData::new()),
            Some(T0 + 60_000),
            T0 + 12,
        );
        assert!(matches!(
            server.handle_frame(fifth, T0 + 13).as_slice(),
            [Action::Deliver { request_id: 24, .. }]
        ));
        // A request without ILP data is refused with a BTP T00 Error instead.
        let other: Bytes = Frame {
            request_id: 30,
            payload: Payload::Message(ProtocolData::new()),
        }
        .encode()
        .into();
        let actions = server.handle_frame(other, T0 + 14);
        let [Action::Busy { request_id: 30 }, Action::Send(reply)] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(error_of(reply).code, BtpErrorCode::T00_UNREACHABLE);
    }

    #[test]
    fn server_switches_idempotency_on_once_the_account_is_known() {
        let (mut client, actions) = Session::client(idempotent(), "a", "t", 1, T0);
        let mut server = Session::server(SessionConfig::default(), 0, T0);
        assert!(!server.is_idempotent());
        server.handle_frame(only_send(actions), T0);
        let config = idempotent().idempotency;
        assert_eq!(server.set_idempotency(config), Ok(()));
        assert!(server.is_idempotent());
        let answer = sent(&server.accept_auth(T0).unwrap()).remove(0);
        client.handle_frame(answer, T0);
        // Open now: too late to change the rules.
        assert_eq!(
            server.set_idempotency(None),
            Err(SessionError::TooLateForIdempotency)
        );
        assert_eq!(
            client.set_idempotency(None),
            Err(SessionError::TooLateForIdempotency)
        );
        let req: Bytes = Frame::ilp_message(10, &b"one"[..]).encode().into();
        assert_eq!(server.handle_frame(req.clone(), T0).len(), 1);
        assert!(server.handle_frame(req, T0 + 1).is_empty());
        // And a server can switch it off again before opening.
        let mut plain = Session::server(idempotent(), 0, T0);
        assert_eq!(plain.set_idempotency(None), Ok(()));
        assert!(!plain.is_idempotent());
        let mut holder = ReplayCache::new(1);
        assert!(!plain.swap_replay_cache(&mut holder));
    }

    #[test]
    fn replay_memory_carried_to_the_next_connection_answers_repeats() {
        let (_, mut first) = open_pair(idempotent());
        let req: Bytes = Frame::ilp_message(10, &b"one"[..]).encode().into();
        first.handle_frame(req.clone(), T0);
        let reply = only_send(first.respond(
            10,
            Some(digest(&req)),
            Reply::Response(ProtocolData::ilp_packet(&b"r"[..])),
            Some(T0 + 1_000),
            T0,
        ));
        first.close();
        // The account's memory, kept outside any one connection.
        let mut kept = ReplayCache::new(4);
        assert!(first.swap_replay_cache(&mut kept));
        assert!(!kept.is_empty());

        let (_, mut second) = open_pair(idempotent());
        assert!(second.swap_replay_cache(&mut kept));
        assert_eq!(only_send(second.handle_frame(req, T0 + 10)), reply);
        assert!(second.swap_replay_cache(&mut kept));
        assert!(!kept.is_empty());
    }

    #[test]
    fn plain_btp_delivers_every_copy() {
        let (_, mut server) = open_pair(SessionConfig::default());
        let req: Bytes = Frame::ilp_message(10, &b"one"[..]).encode().into();
        assert_eq!(server.handle_frame(req.clone(), T0).len(), 1);
        assert_eq!(server.handle_frame(req, T0).len(), 1);
        assert_eq!(server.remembered_requests(), 0);
    }

    proptest! {
        #[test]
        fn sessions_never_panic_on_arbitrary_bytes(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..6),
            step in 0u64..200,
        ) {
            let (_, mut server) = open_pair(idempotent());
            let mut fresh = Session::server(SessionConfig::default(), 0, T0);
            let mut now = T0;
            for f in frames {
                now += step;
                let b = Bytes::from(f);
                server.handle_frame(b.clone(), now);
                server.handle_timeout(now);
                fresh.handle_frame(b, now);
            }
        }

        #[test]
        fn answers_always_complete_the_matching_request(ids in proptest::collection::btree_set(any::<u32>(), 1..8)) {
            let (mut client, _) = open_pair(SessionConfig::default());
            for &id in &ids {
                if id != 100 {
                    client.send_request(Some(id), ilp(b"p"), None, T0).unwrap();
                }
            }
            for &id in ids.iter().rev() {
                let actions = client.handle_frame(Frame::ilp_response(id, &b"f"[..]).encode().into(), T0);
                if id == 100 {
                    prop_assert_eq!(actions, vec![Action::UnexpectedResponse { request_id: id }]);
                } else {
                    let completed = matches!(actions.as_slice(), [Action::Complete { request_id, outcome: Outcome::Response(_) }] if *request_id == id);
                    prop_assert!(completed);
                }
            }
            prop_assert_eq!(client.pending_requests(), 0);
        }
    }
}
