//! `peer.balance`: a peer asks for its balance with a zero-amount peer-protocol Prepare to
//! `peer.balance`; the answer is a Fulfill whose data is the balance as a signed 64-bit
//! big-endian integer (OER `Int64`, fixed size, no length prefix), positive when the balance is
//! in the requester's favour.

use crate::oer::{OerError, Reader};
use crate::packet::{Fulfill, Prepare, Timestamp};
use crate::peer_protocol::{
    check_peer_request, check_peer_response, peer_request, peer_response, PeerProtocolError,
};
use bytes::BufMut;
use thiserror::Error;

/// Destination address of a balance request.
pub const PEER_BALANCE_DESTINATION: &str = "peer.balance";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerBalanceError {
    #[error("malformed balance response: {0}")]
    Oer(#[from] OerError),
    #[error("peer.balance: {0}")]
    PeerProtocol(#[from] PeerProtocolError),
}

/// The balance request Prepare (empty data).
pub fn request(expires_at: Timestamp) -> Result<Prepare, PeerBalanceError> {
    Ok(peer_request(PEER_BALANCE_DESTINATION, expires_at, &[])?)
}

/// Validates an incoming balance request received at `now`.
pub fn check_request(prepare: &Prepare, now: Timestamp) -> Result<(), PeerBalanceError> {
    Ok(check_peer_request(prepare, PEER_BALANCE_DESTINATION, now)?)
}

/// The Fulfill data of a `peer.balance` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceResponse {
    /// Positive: we owe the requester; negative: the requester owes us.
    pub balance: i64,
}

impl BalanceResponse {
    pub fn decode(bytes: &[u8]) -> Result<Self, PeerBalanceError> {
        let mut r = Reader::new(bytes);
        let balance = r.read_i64()?;
        r.finish()?;
        Ok(BalanceResponse { balance })
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_i64(self.balance);
    }

    pub fn encode(&self) -> Vec<u8> {
        self.balance.to_be_bytes().to_vec()
    }

    pub fn to_fulfill(&self) -> Result<Fulfill, PeerBalanceError> {
        Ok(peer_response(&self.encode())?)
    }

    pub fn from_fulfill(fulfill: &Fulfill) -> Result<Self, PeerBalanceError> {
        check_peer_response(fulfill)?;
        Self::decode(fulfill.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden() {
        let cases: [(i64, &str); 4] = [
            (0, "0000000000000000"),
            (1000, "00000000000003e8"),
            (-1, "ffffffffffffffff"),
            (i64::MIN, "8000000000000000"),
        ];
        for (balance, hex) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(
                BalanceResponse::decode(&bytes),
                Ok(BalanceResponse { balance })
            );
            assert_eq!(BalanceResponse { balance }.encode(), bytes);
            let mut via_buf = Vec::new();
            BalanceResponse { balance }.encode_to(&mut via_buf);
            assert_eq!(via_buf, bytes);
        }
    }

    #[test]
    fn errors() {
        for n in 0..8 {
            assert_eq!(
                BalanceResponse::decode(&[0; 8][..n]),
                Err(PeerBalanceError::Oer(OerError::UnexpectedEnd))
            );
        }
        assert_eq!(
            BalanceResponse::decode(&[0; 9]),
            Err(PeerBalanceError::Oer(OerError::TrailingBytes(1)))
        );
    }

    #[test]
    fn request_and_response_packets() {
        let expires = Timestamp::from_unix_millis(1_434_412_860_000);
        let p = request(expires).unwrap();
        // same layout as the IL-DCP request vector, with destination "peer.balance"
        assert_eq!(
            hex::encode(p.as_bytes()),
            "0c470000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f29250c706565722e62616c616e636500"
        );
        let now = Timestamp::from_unix_millis(1_434_412_800_000);
        assert_eq!(check_request(&p, now), Ok(()));
        assert_eq!(
            check_request(&p, expires.checked_add_millis(1).unwrap()),
            Err(PeerBalanceError::PeerProtocol(PeerProtocolError::Expired))
        );
        let ildcp = crate::ildcp::request(expires).unwrap();
        assert_eq!(
            check_request(&ildcp, now),
            Err(PeerBalanceError::PeerProtocol(
                PeerProtocolError::WrongDestination(PEER_BALANCE_DESTINATION)
            ))
        );

        let resp = BalanceResponse { balance: -5 };
        let f = resp.to_fulfill().unwrap();
        assert_eq!(
            hex::encode(f.as_bytes()),
            "0d290000000000000000000000000000000000000000000000000000000000000000".to_owned()
                + "08fffffffffffffffb"
        );
        assert_eq!(BalanceResponse::from_fulfill(&f), Ok(resp));
        let wrong = crate::packet::FulfillBuilder {
            fulfillment: &[1; 32],
            data: &resp.encode(),
        }
        .build()
        .unwrap();
        assert_eq!(
            BalanceResponse::from_fulfill(&wrong),
            Err(PeerBalanceError::PeerProtocol(
                PeerProtocolError::WrongFulfillment
            ))
        );
        let empty = peer_response(&[]).unwrap();
        assert_eq!(
            BalanceResponse::from_fulfill(&empty),
            Err(PeerBalanceError::Oer(OerError::UnexpectedEnd))
        );
    }

    proptest! {
        #[test]
        fn round_trip(balance: i64) {
            let r = BalanceResponse { balance };
            prop_assert_eq!(BalanceResponse::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(resp) = BalanceResponse::decode(&data) {
                prop_assert_eq!(resp.encode(), data);
            }
        }
    }
}
