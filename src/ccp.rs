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

pub use broadcaster::{
    forwarded_auth, is_under, route_auth, BroadcastError, BroadcasterConfig, CcpAction, Relation,
    RouteBroadcaster, RouteChange, SelectedRoute,
};
pub use messages::{
    CcpError, Mode, Route, RouteControlRequest, RouteProp, RoutePropValue, RouteUpdateRequest,
    RoutingTableId,
};
pub use receiver::{
    CcpReceiver, ImportFilter, IncomingRoute, ReceiverOutcome, DEFAULT_MAX_ROUTES_PER_PEER,
    MAX_HOPS,
};
pub use sender::{CcpSender, SenderConfig};
pub use table::{ForwardingRoute, ForwardingTable, LogEntry, DEFAULT_LOG_LIMIT};

use crate::packet::Fulfill;
use crate::peer_protocol::{check_peer_response, peer_response};

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
mod tests {
    use super::*;
    use crate::peer_protocol::PeerProtocolError;
    use bytes::Bytes;

    fn packet(key: &str) -> Bytes {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/ccp/vectors.json")).unwrap();
        Bytes::from(hex::decode(v["response"][key].as_str().unwrap()).unwrap())
    }

    use crate::packet::Address;
    use proptest::prelude::*;
    use receiver::ImportFilter;

    #[derive(Debug, Clone)]
    enum Step {
        /// Change the route for prefix `n` (None withdraws it).
        Change(u8, Option<u8>),
        /// The next due update reaches the receiver and is acknowledged.
        Deliver,
        /// The next due update is lost.
        Lose,
        /// The receiver's answer to an update is lost after it applied it.
        LoseAck,
        /// The peer asks again from what it holds (reconnect).
        Reconnect,
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..8, proptest::option::of(0u8..3)).prop_map(|(p, h)| Step::Change(p, h)),
            3 => Just(Step::Deliver),
            1 => Just(Step::Lose),
            1 => Just(Step::LoseAck),
            1 => Just(Step::Reconnect),
        ]
    }

    proptest! {
        /// Whatever is lost on the way, once deliveries succeed again the receiver holds
        /// exactly the routes the sender exports.
        #[test]
        fn sender_and_receiver_converge(steps in proptest::collection::vec(arb_step(), 0..60)) {
            let me = Address::try_from("g.me").unwrap();
            let bob = Address::try_from("g.bob").unwrap();
            let hops = ["carl", "bob", "dave"];
            let config = SenderConfig { max_epochs_per_update: 3, ..SenderConfig::default() };
            let mut table = ForwardingTable::new(RoutingTableId([1; 16]));
            let mut tx = CcpSender::new("bob".to_string(), Relation::Peer, config);
            let mut rx = CcpReceiver::new(0, 45_000, 30_000);
            let filter = ImportFilter { own_address: &bob, global_prefix: "g" };
            tx.handle_route_control(&rx.route_control_request(), &table);
            let mut now = 0u64;
            let deliver = |tx: &mut CcpSender<String>, rx: &mut CcpReceiver,
                               table: &ForwardingTable<String>, now: u64, ack: bool| {
                if let Some(update) = tx.poll(now, table, &me) {
                    let out = rx.handle_route_update(now, &update, filter);
                    if ack { tx.update_acknowledged() } else { tx.update_failed() }
                    if let Some(ctl) = out.route_control {
                        tx.handle_route_control(&ctl, table);
                    }
                }
            };
            for step in steps {
                now += 1_000;
                match step {
                    Step::Change(p, hop) => {
                        let route = hop.map(|h| ForwardingRoute {
                            next_hop: Some(hops[h as usize].to_string()),
                            relation: Relation::Peer,
                            path: vec!["g.me".into(), format!("g.{}", hops[h as usize])],
                            auth: [h; 32],
                        });
                        table.set(&format!("g.p{p}"), route);
                    }
                    Step::Deliver => deliver(&mut tx, &mut rx, &table, now, true),
                    Step::LoseAck => deliver(&mut tx, &mut rx, &table, now, false),
                    Step::Lose => {
                        if tx.poll(now, &table, &me).is_some() {
                            tx.update_failed();
                        }
                    }
                    Step::Reconnect => tx.handle_route_control(&rx.route_control_request(), &table),
                }
            }
            for _ in 0..20 {
                now += 60_000;
                deliver(&mut tx, &mut rx, &table, now, true);
            }
            let expected: Vec<(String, Vec<String>)> = table
                .routes()
                .filter(|(_, r)| r.next_hop.as_deref() != Some("bob"))
                .map(|(p, r)| (p.to_string(), r.path.clone()))
                .collect();
            let held: Vec<(String, Vec<String>)> = rx
                .prefixes()
                .map(|p| (p.to_string(), rx.get(p).unwrap().path.clone()))
                .collect();
            prop_assert_eq!(held, expected);
            prop_assert_eq!(rx.epoch(), table.current_epoch());
        }
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
