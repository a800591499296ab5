//! Packets the node answers itself rather than forwards: which destinations those are, and the
//! answers that need no other actor (IL-DCP for a child, the `peer.balance` reply). Error codes
//! follow the JS connector: a peer-protocol request that fails its checks gets the code of
//! [`PeerProtocolError::code`] (the one mapping every `peer.*` handler uses), an unknown
//! `peer.*` protocol or a malformed echo message is F01 (its `InvalidPacketError`), IL-DCP from
//! a non-child is F00 (what `ILDCP.serve` answers when the handler fails).

use super::RouterAccount;
use crate::messages::{BalanceSnapshot, PacketResult};
use ilp::echo::EchoMessage;
use ilp::ildcp::{IldcpError, IldcpResponse, ILDCP_DESTINATION};
use ilp::packet::{Address, ErrorCode, Prepare, Reject, Timestamp};
use ilp::peer_balance::{BalanceResponse, PeerBalanceError, PEER_BALANCE_DESTINATION};
use ilp::peer_protocol::PeerProtocolError;

/// Where a Prepare goes before any route is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalDestination {
    /// `peer.config`: IL-DCP.
    Ildcp,
    /// `peer.balance`.
    PeerBalance,
    /// `peer.route` and below: CCP, for the RouteBroadcaster.
    PeerRoute,
    /// `peer.settle` and below: for the SettlementEngine.
    PeerSettle,
    /// Any other `peer.*` address.
    UnknownPeerProtocol,
    /// Our own address with the echo prefix in the data.
    Echo,
    /// Our own address with a circular payment's data ([`ilp::circular`]).
    Circular,
    /// Our own address, anything else.
    OwnAddress,
    /// Not local: route it.
    Forward,
}

fn at_or_below(destination: &str, prefix: &str) -> bool {
    ilp::routing::prefix_matches(prefix, destination)
}

/// Classifies `destination`; `own` is our address when known.
pub fn classify(destination: &str, own: Option<&Address>, data: &[u8]) -> LocalDestination {
    if at_or_below(destination, "peer") {
        return if destination == ILDCP_DESTINATION {
            LocalDestination::Ildcp
        } else if destination == PEER_BALANCE_DESTINATION {
            LocalDestination::PeerBalance
        } else if at_or_below(destination, "peer.route") {
            LocalDestination::PeerRoute
        } else if at_or_below(destination, "peer.settle") {
            LocalDestination::PeerSettle
        } else {
            LocalDestination::UnknownPeerProtocol
        };
    }
    match own {
        Some(own) if own.as_str() == destination => {
            if EchoMessage::has_prefix(data) {
                LocalDestination::Echo
            } else if ilp::circular::is_circular(data) {
                LocalDestination::Circular
            } else {
                LocalDestination::OwnAddress
            }
        }
        _ => LocalDestination::Forward,
    }
}

/// The Reject for a peer-protocol request that failed its checks ([`PeerProtocolError::code`]).
pub fn peer_request_reject(err: &PeerProtocolError, node: Option<&Address>) -> Reject {
    Reject::new(err.code(), node, &err.to_string())
}

/// Answers an IL-DCP request from `account`: a child learns `node.segment` and its asset.
pub fn ildcp_answer(
    prepare: &Prepare,
    now: Timestamp,
    node: Option<&Address>,
    account: &RouterAccount,
) -> PacketResult {
    if let Err(e) = ilp::ildcp::check_request(prepare, now) {
        return Err(match e {
            IldcpError::PeerProtocol(p) => peer_request_reject(&p, node),
            other => Reject::new(ErrorCode::T00_INTERNAL_ERROR, node, &other.to_string()),
        });
    }
    let Some(node) = node else {
        // Temporary: once our parent has told us our address, the child's retry succeeds.
        return Err(Reject::new(
            ErrorCode::T00_INTERNAL_ERROR,
            None,
            "node address is not known yet",
        ));
    };
    let Some(segment) = &account.child_segment else {
        let message = "can only serve IL-DCP to child accounts";
        return Err(ilp::ildcp::reject(node, message)
            .unwrap_or_else(|_| Reject::new(ErrorCode::F00_BAD_REQUEST, Some(node), message)));
    };
    let client_address = node.with_suffix(segment).map_err(|e| {
        Reject::new(
            ErrorCode::F00_BAD_REQUEST,
            Some(node),
            &format!("cannot build child address: {e}"),
        )
    })?;
    IldcpResponse {
        client_address,
        asset_scale: account.asset_scale,
        asset_code: account.asset_code.clone(),
    }
    .to_fulfill()
    .map_err(|e| Reject::new(ErrorCode::T00_INTERNAL_ERROR, Some(node), &e.to_string()))
}

/// Validates a `peer.balance` request.
pub fn check_peer_balance(
    prepare: &Prepare,
    now: Timestamp,
    node: Option<&Address>,
) -> Result<(), Reject> {
    ilp::peer_balance::check_request(prepare, now).map_err(|e| match e {
        PeerBalanceError::PeerProtocol(p) => peer_request_reject(&p, node),
        other => Reject::new(ErrorCode::T00_INTERNAL_ERROR, node, &other.to_string()),
    })
}

/// The `peer.balance` answer for the keeper's snapshot of the requester's account. The keeper
/// counts positive when the peer owes us; the answer counts positive in the requester's favour.
pub fn peer_balance_answer(
    snapshot: Option<BalanceSnapshot>,
    node: Option<&Address>,
) -> PacketResult {
    let Some(snapshot) = snapshot else {
        return Err(Reject::new(
            ErrorCode::F00_BAD_REQUEST,
            node,
            "no balance is kept for this account",
        ));
    };
    let balance = snapshot.balance.checked_neg().unwrap_or(i64::MAX);
    BalanceResponse { balance }
        .to_fulfill()
        .map_err(|e| Reject::new(ErrorCode::T00_INTERNAL_ERROR, node, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocalDestination::*;

    #[test]
    fn classifies_destinations() {
        let own = Address::try_from("test.node").unwrap();
        let own = Some(&own);
        let echo = b"ECHOECHOECHOECHO\x01";
        assert_eq!(classify("peer.config", own, &[]), Ildcp);
        assert_eq!(classify("peer.balance", own, &[]), PeerBalance);
        assert_eq!(classify("peer.route.control", own, &[]), PeerRoute);
        assert_eq!(classify("peer.route.update", own, &[]), PeerRoute);
        assert_eq!(classify("peer.route", own, &[]), PeerRoute);
        assert_eq!(classify("peer.settle", own, &[]), PeerSettle);
        assert_eq!(classify("peer.settle.xrp", own, &[]), PeerSettle);
        assert_eq!(classify("peer.config.x", own, &[]), UnknownPeerProtocol);
        assert_eq!(classify("peer.routes", own, &[]), UnknownPeerProtocol);
        assert_eq!(classify("peer", own, &[]), UnknownPeerProtocol);
        assert_eq!(classify("peers.x", own, &[]), Forward);
        assert_eq!(classify("test.node", own, echo), Echo);
        assert_eq!(classify("test.node", own, b"hello"), OwnAddress);
        assert_eq!(classify("test.node.alice", own, echo), Forward);
        assert_eq!(classify("test.node", None, echo), Forward);
        let mut circular = ilp::circular::MAGIC.to_vec();
        circular.extend_from_slice(&[5; 16]);
        assert_eq!(classify("test.node", own, &circular), Circular);
        assert_eq!(classify("test.node.alice", own, &circular), Forward);
        assert_eq!(classify("test.node", own, &circular[..20]), OwnAddress);
    }

    #[test]
    fn balance_answer_flips_sign_and_saturates() {
        let answer = |b| {
            let f = peer_balance_answer(
                Some(BalanceSnapshot {
                    balance: b,
                    ..Default::default()
                }),
                None,
            )
            .unwrap();
            BalanceResponse::from_fulfill(&f).unwrap().balance
        };
        assert_eq!(answer(42), -42);
        assert_eq!(answer(-7), 7);
        assert_eq!(answer(i64::MIN), i64::MAX);
        let r = peer_balance_answer(None, None).unwrap_err();
        assert_eq!(r.code(), ErrorCode::F00_BAD_REQUEST);
    }

    #[test]
    fn peer_request_errors_map_to_codes() {
        let code = |e| peer_request_reject(&e, None).code();
        assert_eq!(
            code(PeerProtocolError::WrongCondition),
            ErrorCode::F01_INVALID_PACKET
        );
        assert_eq!(
            code(PeerProtocolError::WrongDestination(ILDCP_DESTINATION)),
            ErrorCode::F01_INVALID_PACKET
        );
        assert_eq!(
            code(PeerProtocolError::Expired),
            ErrorCode::R02_INSUFFICIENT_TIMEOUT
        );
        assert_eq!(
            code(PeerProtocolError::WrongFulfillment),
            ErrorCode::F05_WRONG_CONDITION
        );
    }
}
