//! `peer.balance`: a peer asks for its balance with a zero-amount peer-protocol Prepare to
//! `peer.balance`; the answer is a Fulfill whose data is the balance as a signed 64-bit
//! big-endian integer (OER `Int64`, fixed size, no length prefix), positive when the balance is
//! in the requester's favour.

use crate::oer::{OerError, Reader};
use bytes::BufMut;
use thiserror::Error;

/// Destination address of a balance request.
pub const PEER_BALANCE_DESTINATION: &str = "peer.balance";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerBalanceError {
    #[error("malformed balance response: {0}")]
    Oer(#[from] OerError),
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    proptest! {
        #[test]
        fn round_trip(balance: i64) {
            let r = BalanceResponse { balance };
            prop_assert_eq!(BalanceResponse::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = BalanceResponse::decode(&data);
        }
    }
}
