//! IL-DCP, the Interledger Dynamic Configuration Protocol (RFC 31): a child asks its parent for
//! its ILP address and asset with a zero-amount Prepare to `peer.config`, and the parent answers
//! with a Fulfill whose data carries the configuration.
//!
//! Also home of the peer-protocol condition and fulfillment shared by every `peer.*` protocol
//! (IL-DCP, CCP, `peer.balance`): the fulfillment is 32 zero bytes and the condition its SHA-256,
//! so a peer-protocol exchange never moves money and anybody can "fulfill" it.

use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{Address, AddressError};
use thiserror::Error;

/// Fulfillment of every peer-protocol request: 32 zero bytes.
pub const PEER_PROTOCOL_FULFILLMENT: [u8; 32] = [0; 32];

/// Condition of every peer-protocol request: SHA-256 of [`PEER_PROTOCOL_FULFILLMENT`].
pub const PEER_PROTOCOL_CONDITION: [u8; 32] = [
    0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77, 0x6c, 0x8f, 0xc1, 0x8b, 0x8e, 0x9f, 0x8e, 0x20,
    0x08, 0x97, 0x14, 0x85, 0x6e, 0xe2, 0x33, 0xb3, 0x90, 0x2a, 0x59, 0x1d, 0x0d, 0x5f, 0x29, 0x25,
];

/// How far in the future the JS reference implementations set a peer-protocol request's expiry.
pub const PEER_PROTOCOL_EXPIRY_DURATION_MS: u64 = 60_000;

/// Destination address of an IL-DCP request.
pub const ILDCP_DESTINATION: &str = "peer.config";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IldcpError {
    #[error("malformed IL-DCP response: {0}")]
    Oer(#[from] OerError),
    #[error("IL-DCP client address is invalid: {0}")]
    InvalidAddress(AddressError),
}

/// The configuration a parent hands its child (the Fulfill data of an IL-DCP response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IldcpResponse {
    pub client_address: Address,
    pub asset_scale: u8,
    pub asset_code: String,
}

impl IldcpResponse {
    /// Decodes the Fulfill data: address (var string), scale (u8), asset code (var string).
    pub fn decode(bytes: &[u8]) -> Result<Self, IldcpError> {
        let mut r = Reader::new(bytes);
        let address = r.read_var_octet_string()?;
        let client_address = Address::try_from(address).map_err(IldcpError::InvalidAddress)?;
        let asset_scale = r.read_u8()?;
        let asset_code = r.read_var_str()?.to_owned();
        r.finish()?;
        Ok(IldcpResponse {
            client_address,
            asset_scale,
            asset_code,
        })
    }

    pub fn encode_to(&self, buf: &mut impl bytes::BufMut) {
        buf.put_var_octet_string(self.client_address.as_bytes());
        buf.put_u8(self.asset_scale);
        buf.put_var_octet_string(self.asset_code.as_bytes());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/data/ildcp/vectors.json")).unwrap()
    }

    fn hex_of(v: &serde_json::Value, key: &str) -> Vec<u8> {
        hex::decode(v[key].as_str().unwrap()).unwrap()
    }

    #[test]
    fn peer_protocol_condition_is_hash_of_fulfillment() {
        let hash: [u8; 32] = Sha256::digest(PEER_PROTOCOL_FULFILLMENT).into();
        assert_eq!(hash, PEER_PROTOCOL_CONDITION);
        assert_eq!(
            hex::encode(PEER_PROTOCOL_CONDITION),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn response_data_golden() {
        let v = vectors();
        let data = hex_of(&v, "response_data");
        let resp = IldcpResponse::decode(&data).unwrap();
        assert_eq!(resp.client_address.as_str(), v["client_address"]);
        assert_eq!(
            u64::from(resp.asset_scale),
            v["asset_scale"].as_u64().unwrap()
        );
        assert_eq!(resp.asset_code, v["asset_code"]);
        assert_eq!(resp.encode(), data);
    }

    #[test]
    fn response_data_errors() {
        let good = hex_of(&vectors(), "response_data");
        // every truncation fails with UnexpectedEnd
        for n in 0..good.len() {
            assert_eq!(
                IldcpResponse::decode(&good[..n]),
                Err(IldcpError::Oer(OerError::UnexpectedEnd)),
                "prefix of {n} bytes"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            IldcpResponse::decode(&trailing),
            Err(IldcpError::Oer(OerError::TrailingBytes(1)))
        );
        // address "example" has no segment
        let mut bad_addr = vec![7];
        bad_addr.extend_from_slice(b"example");
        bad_addr.extend_from_slice(&[9, 3, b'U', b'S', b'D']);
        assert_eq!(
            IldcpResponse::decode(&bad_addr),
            Err(IldcpError::InvalidAddress(AddressError::NoSegments))
        );
        // asset code not UTF-8
        let mut bad_code = vec![5];
        bad_code.extend_from_slice(b"g.abc");
        bad_code.extend_from_slice(&[9, 2, 0xff, 0xfe]);
        assert_eq!(
            IldcpResponse::decode(&bad_code),
            Err(IldcpError::Oer(OerError::InvalidUtf8))
        );
        // non-canonical length prefix of the address
        let mut long_form = vec![0x81, 5];
        long_form.extend_from_slice(b"g.abc");
        long_form.extend_from_slice(&[9, 0]);
        assert_eq!(
            IldcpResponse::decode(&long_form),
            Err(IldcpError::Oer(OerError::NonCanonicalLength))
        );
        // length prefix longer than the input
        assert_eq!(
            IldcpResponse::decode(&[0x84, 0x7f, 0xff, 0xff, 0xff]),
            Err(IldcpError::Oer(OerError::UnexpectedEnd))
        );
    }

    pub(crate) fn arb_address() -> impl Strategy<Value = Address> {
        (
            "(g|test|example|private)",
            "[a-zA-Z0-9_~-]{1,12}(\\.[a-z0-9]{1,8}){0,3}",
        )
            .prop_map(|(s, rest)| Address::try_from(format!("{s}.{rest}").as_str()).unwrap())
    }

    proptest! {
        #[test]
        fn response_round_trip(
            client_address in arb_address(),
            asset_scale: u8,
            asset_code in "\\PC{0,20}",
        ) {
            let resp = IldcpResponse { client_address, asset_scale, asset_code };
            prop_assert_eq!(IldcpResponse::decode(&resp.encode()), Ok(resp));
        }

        #[test]
        fn response_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = IldcpResponse::decode(&data);
        }
    }
}
