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

use crate::ildcp::{check_peer_response, peer_response};
use crate::packet::Fulfill;

/// Destination of a route control request.
pub const CCP_CONTROL_DESTINATION: &str = "peer.route.control";
/// Destination of a route update request.
pub const CCP_UPDATE_DESTINATION: &str = "peer.route.update";

/// The Fulfill acknowledging a route control or route update request.
pub fn response() -> Result<Fulfill, CcpError> {
    Ok(peer_response(&[])?)
}

/// Checks a peer's acknowledgement. Its data is ignored, as the JS implementation does.
pub fn check_response(fulfill: &Fulfill) -> Result<(), CcpError> {
    check_peer_response(fulfill).map_err(CcpError::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ildcp::PeerProtocolError;
    use bytes::Bytes;

    fn packet(key: &str) -> Bytes {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/ccp/vectors.json")).unwrap();
        Bytes::from(hex::decode(v["response"][key].as_str().unwrap()).unwrap())
    }

    #[test]
    fn response_golden() {
        assert_eq!(response().unwrap().as_bytes(), &packet("fulfill"));
        let f = Fulfill::parse(packet("fulfill_with_data")).unwrap();
        assert_eq!(check_response(&f), Ok(()));
        let wrong = Fulfill::parse(packet("fulfill_wrong_fulfillment")).unwrap();
        assert_eq!(
            check_response(&wrong),
            Err(CcpError::PeerProtocol(PeerProtocolError::WrongFulfillment))
        );
    }
}
