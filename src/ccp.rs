//! CCP, the Connector-to-Connector Protocol that exchanges routes between peers. It has no RFC;
//! the JS `ilp-protocol-ccp` codec and `ilp-connector` routing code are the de-facto spec.
//!
//! - [`messages`]: route control and route update requests (the Prepare data) and their codecs.
//! - [`table`]: the forwarding routing table we advertise, with its id, epochs and update log.
//! - [`sender`]: per peer, what we still owe that peer and when to send it.
//! - [`receiver`]: per peer, the routes that peer advertised to us and its epoch.
//! - [`broadcaster`]: route selection across peers and the glue that drives senders and
//!   receivers, sans-IO: callers pass `now` (unix milliseconds) and apply the returned actions.

pub mod broadcaster;
pub mod messages;
pub mod receiver;
pub mod sender;
pub mod table;

pub use broadcaster::{BroadcasterConfig, CcpAction, Relation, RouteBroadcaster, RouteChange};
pub use messages::{
    CcpError, Mode, Route, RouteControlRequest, RouteProp, RoutePropValue, RouteUpdateRequest,
    RoutingTableId,
};
pub use receiver::{CcpReceiver, ReceiverOutcome};
pub use sender::{CcpSender, SenderConfig};
pub use table::{ForwardingRoute, ForwardingTable, LogEntry};

/// Destination of a route control request.
pub const CCP_CONTROL_DESTINATION: &str = "peer.route.control";
/// Destination of a route update request.
pub const CCP_UPDATE_DESTINATION: &str = "peer.route.update";
