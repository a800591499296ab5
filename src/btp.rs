//! BTP/2.0 (RFC 23), the WebSocket link between peers, and its idempotent variant BTP/2.0-I.
//!
//! - [`frame`]: the wire format (envelope, Response/Error/Message/Transfer bodies);
//! - [`protocol_data`]: sub-protocol entries, the `ilp` payload and the `auth` handshake;
//! - [`generalized_time`]: the Error frame's `triggeredAt`;
//! - [`session`]: the per-connection state machine (auth, request ids, matching, timeouts,
//!   retries);
//! - [`idempotency`]: the BTP/2.0-I receiver memory that answers repeated requests.
//!
//! Everything here is sans-IO: the caller feeds received bytes and the current unix time in
//! milliseconds, and carries out the returned actions.

pub mod frame;
pub mod generalized_time;
pub mod idempotency;
pub mod protocol_data;
pub mod session;

pub use frame::{BtpErrorCode, ErrorPayload, Frame, FrameError, Payload};
pub use generalized_time::{GeneralizedTime, TimeError};
pub use idempotency::{Lookup, MemoryFull, ReplayCache};
pub use protocol_data::{
    AuthCredentials, AuthError, ContentType, ProtocolData, ProtocolDataEntry, PROTOCOL_AUTH,
    PROTOCOL_AUTH_TOKEN, PROTOCOL_AUTH_USERNAME, PROTOCOL_ILP,
};
pub use session::{
    Action, CloseReason, IdempotencyConfig, Outcome, Reply, Request, Session, SessionConfig,
    SessionError, SessionState,
};
