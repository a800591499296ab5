//! IL-DCP, the Interledger Dynamic Configuration Protocol (RFC 31): a child asks its parent for
//! its ILP address and asset with a zero-amount Prepare to `peer.config`, and the parent answers
//! with a Fulfill whose data carries the configuration.
//!
//! The Prepare and Fulfill framing it shares with the other `peer.*` protocols lives in
//! [`crate::peer_protocol`].

use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{
    Address, AddressError, ErrorCode, Fulfill, Prepare, Reject, RejectBuilder, Timestamp,
};
use crate::peer_protocol::{
    check_peer_request, check_peer_response, peer_request, peer_response, PeerProtocolError,
};
use thiserror::Error;

/// Destination address of an IL-DCP request.
pub const ILDCP_DESTINATION: &str = "peer.config";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IldcpError {
    #[error("malformed IL-DCP response: {0}")]
    Oer(#[from] OerError),
    #[error("IL-DCP client address is invalid: {0}")]
    InvalidAddress(AddressError),
    #[error("IL-DCP: {0}")]
    PeerProtocol(#[from] PeerProtocolError),
}

/// The IL-DCP request Prepare (empty data; the JS client expires it 60 s after sending).
pub fn request(expires_at: Timestamp) -> Result<Prepare, IldcpError> {
    Ok(peer_request(ILDCP_DESTINATION, expires_at, &[])?)
}

/// Validates an incoming IL-DCP request. Its data is ignored: it carries no parameters yet.
pub fn check_request(prepare: &Prepare, now: Timestamp) -> Result<(), IldcpError> {
    Ok(check_peer_request(prepare, ILDCP_DESTINATION, now)?)
}

/// The F00 Reject a server sends when it cannot answer an IL-DCP request, as the JS `serve`
/// builds it.
pub fn reject(server_address: &Address, message: &str) -> Result<Reject, IldcpError> {
    Ok(RejectBuilder {
        code: ErrorCode::F00_BAD_REQUEST,
        triggered_by: Some(server_address),
        message,
        data: &[],
    }
    .build()
    .map_err(PeerProtocolError::from)?)
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

    /// The Fulfill a parent answers an IL-DCP request with.
    pub fn to_fulfill(&self) -> Result<Fulfill, IldcpError> {
        Ok(peer_response(&self.encode())?)
    }

    /// Reads the configuration out of the parent's Fulfill.
    pub fn from_fulfill(fulfill: &Fulfill) -> Result<Self, IldcpError> {
        check_peer_response(fulfill)?;
        Self::decode(fulfill.data())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/data/ildcp/vectors.json")).unwrap()
    }

    fn hex_of(v: &serde_json::Value, key: &str) -> Vec<u8> {
        hex::decode(v[key].as_str().unwrap()).unwrap()
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
        // length prefix beyond what OER allows at all
        assert_eq!(
            IldcpResponse::decode(&[0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(IldcpError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
    }

    fn packet(v: &serde_json::Value, key: &str) -> bytes::Bytes {
        bytes::Bytes::from(hex_of(v, key))
    }

    fn ms(v: &serde_json::Value, key: &str) -> Timestamp {
        Timestamp::from_unix_millis(v[key].as_u64().unwrap())
    }

    #[test]
    fn request_golden() {
        let v = vectors();
        let p = request(ms(&v, "request_expires_at_ms")).unwrap();
        assert_eq!(p.as_bytes(), &packet(&v, "request"));
        let custom = request(ms(&v, "request_custom_expiry_ms")).unwrap();
        assert_eq!(custom.as_bytes(), &packet(&v, "request_custom_expiry"));

        let parsed = Prepare::parse(packet(&v, "request")).unwrap();
        assert_eq!(check_request(&parsed, ms(&v, "now_ms")), Ok(()));
        assert_eq!(parsed.expires_at(), ms(&v, "request_expires_at_ms"));
        assert_eq!(parsed.data(), b"");
        // still valid at the expiry instant, expired one millisecond later
        assert_eq!(check_request(&parsed, parsed.expires_at()), Ok(()));
        assert_eq!(
            check_request(&parsed, parsed.expires_at().checked_add_millis(1).unwrap()),
            Err(IldcpError::PeerProtocol(PeerProtocolError::Expired))
        );
    }

    #[test]
    fn request_errors() {
        let v = vectors();
        let now = ms(&v, "now_ms");
        let check = |key: &str| check_request(&Prepare::parse(packet(&v, key)).unwrap(), now);
        assert_eq!(
            check("request_wrong_destination"),
            Err(IldcpError::PeerProtocol(
                PeerProtocolError::WrongDestination(ILDCP_DESTINATION)
            ))
        );
        assert_eq!(
            check("request_wrong_condition"),
            Err(IldcpError::PeerProtocol(PeerProtocolError::WrongCondition))
        );
        assert_eq!(
            check("request_expired"),
            Err(IldcpError::PeerProtocol(PeerProtocolError::Expired))
        );
    }

    #[test]
    fn response_fulfill_golden() {
        let v = vectors();
        let resp = IldcpResponse {
            client_address: Address::try_from("example.client").unwrap(),
            asset_scale: 13,
            asset_code: "XAM".into(),
        };
        assert_eq!(
            resp.to_fulfill().unwrap().as_bytes(),
            &packet(&v, "response")
        );
        let f = Fulfill::parse(packet(&v, "response")).unwrap();
        assert_eq!(IldcpResponse::from_fulfill(&f), Ok(resp));
        let wrong = Fulfill::parse(packet(&v, "response_wrong_fulfillment")).unwrap();
        assert_eq!(
            IldcpResponse::from_fulfill(&wrong),
            Err(IldcpError::PeerProtocol(
                PeerProtocolError::WrongFulfillment
            ))
        );
        let empty = peer_response(&[]).unwrap();
        assert_eq!(
            IldcpResponse::from_fulfill(&empty),
            Err(IldcpError::Oer(OerError::UnexpectedEnd))
        );
    }

    #[test]
    fn reject_golden() {
        let v = vectors();
        let server = Address::try_from(v["server_address"].as_str().unwrap()).unwrap();
        let r = reject(&server, v["reject_handler_error_message"].as_str().unwrap()).unwrap();
        assert_eq!(r.as_bytes(), &packet(&v, "reject_handler_error"));
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
            if let Ok(resp) = IldcpResponse::decode(&data) {
                prop_assert_eq!(resp.encode(), data);
            }
        }
    }
}
