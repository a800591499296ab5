//! STREAM receipts, version 1 (RFC 39): a receiver's signed statement of how much has arrived
//! on one stream, created with a secret it shares with a verifier and checked by that verifier.
//!
//! The layout is fixed at 58 bytes: version (1), nonce (16), stream id (`UInt8`), total
//! received (`UInt64`), then HMAC-SHA256 over the first 26 bytes. The stream id is a single
//! byte, as RFC 39's table, its ASN.1 module and the JS implementation all have it (the JS
//! fixture `frame:stream_receipt` confirms it); a connection therefore cannot sign receipts
//! for streams above 255.

use subtle::ConstantTimeEq;
use thiserror::Error;

use super::crypto::hmac_sha256;

pub const RECEIPT_VERSION: u8 = 1;
pub const RECEIPT_LEN: usize = 58;
pub const RECEIPT_NONCE_LEN: usize = 16;
pub const RECEIPT_SECRET_LEN: usize = 32;
/// The HMAC covers everything before it.
const SIGNED_LEN: usize = RECEIPT_LEN - 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReceiptError {
    #[error("receipt is {0} bytes; version 1 receipts are exactly 58")]
    WrongLength(usize),
    #[error("unsupported receipt version {0}")]
    UnsupportedVersion(u8),
    #[error("receipt HMAC does not match")]
    InvalidHmac,
    #[error("stream id {0} does not fit the receipt's one-byte field")]
    StreamIdTooLarge(u64),
}

/// The signed fields of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub nonce: [u8; RECEIPT_NONCE_LEN],
    pub stream_id: u8,
    pub total_received: u64,
}

impl Receipt {
    /// A receipt for a STREAM stream id, which is a `u64` on the STREAM wire.
    pub fn new(
        nonce: [u8; RECEIPT_NONCE_LEN],
        stream_id: u64,
        total_received: u64,
    ) -> Result<Receipt, ReceiptError> {
        let stream_id =
            u8::try_from(stream_id).map_err(|_| ReceiptError::StreamIdTooLarge(stream_id))?;
        Ok(Receipt {
            nonce,
            stream_id,
            total_received,
        })
    }

    fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        out[0] = RECEIPT_VERSION;
        out[1..17].copy_from_slice(&self.nonce);
        out[17] = self.stream_id;
        out[18..].copy_from_slice(&self.total_received.to_be_bytes());
        out
    }

    /// Signs and encodes the receipt.
    pub fn encode(&self, secret: &[u8; RECEIPT_SECRET_LEN]) -> [u8; RECEIPT_LEN] {
        let signed = self.signed_bytes();
        let mut out = [0u8; RECEIPT_LEN];
        out[..SIGNED_LEN].copy_from_slice(&signed);
        out[SIGNED_LEN..].copy_from_slice(&hmac_sha256(secret, &signed));
        out
    }

    /// Decodes a receipt without checking its HMAC, which is returned alongside. For callers
    /// that pick the secret by nonce (a stateless verifier) before calling
    /// [`Receipt::verify`].
    pub fn decode(bytes: &[u8]) -> Result<(Receipt, [u8; 32]), ReceiptError> {
        let bytes: &[u8; RECEIPT_LEN] = bytes
            .try_into()
            .map_err(|_| ReceiptError::WrongLength(bytes.len()))?;
        // Fixed offsets into a fixed-size array: none of these can be out of bounds.
        let version = bytes[0];
        if version != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion(version));
        }
        let mut nonce = [0u8; RECEIPT_NONCE_LEN];
        nonce.copy_from_slice(&bytes[1..17]);
        let mut total = [0u8; 8];
        total.copy_from_slice(&bytes[18..SIGNED_LEN]);
        let mut hmac = [0u8; 32];
        hmac.copy_from_slice(&bytes[SIGNED_LEN..]);
        let receipt = Receipt {
            nonce,
            stream_id: bytes[17],
            total_received: u64::from_be_bytes(total),
        };
        Ok((receipt, hmac))
    }

    /// Decodes a receipt and checks its HMAC in constant time.
    pub fn verify(
        bytes: &[u8],
        secret: &[u8; RECEIPT_SECRET_LEN],
    ) -> Result<Receipt, ReceiptError> {
        let (receipt, hmac) = Receipt::decode(bytes)?;
        let expected = hmac_sha256(secret, &receipt.signed_bytes());
        if bool::from(expected.ct_eq(&hmac)) {
            Ok(receipt)
        } else {
            Err(ReceiptError::InvalidHmac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/stream/receipt_vectors.json"
    ));

    fn b64(v: &Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn vectors_both_ways() {
        let cases: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
        assert!(cases.len() >= 3);
        for case in &cases {
            let receipt = Receipt {
                nonce: b64(&case["nonce"]).try_into().unwrap(),
                stream_id: u8::try_from(case["stream_id"].as_u64().unwrap()).unwrap(),
                total_received: case["total_received"].as_str().unwrap().parse().unwrap(),
            };
            let secret: [u8; 32] = b64(&case["secret"]).try_into().unwrap();
            let bytes = b64(&case["receipt"]);
            assert_eq!(receipt.encode(&secret).to_vec(), bytes, "{case}");
            assert_eq!(Receipt::verify(&bytes, &secret), Ok(receipt), "{case}");
            let (decoded, hmac) = Receipt::decode(&bytes).unwrap();
            assert_eq!(decoded, receipt);
            assert_eq!(&hmac[..], &bytes[26..]);
        }
    }

    #[test]
    fn receipt_in_js_packet_fixture_verifies() {
        // The receipt inside the `frame:stream_receipt` fixture, signed with 32 zero bytes.
        let fixture = base64::engine::general_purpose::STANDARD
            .decode(
                "AQAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAfTBIvoCUt67Zy1ZGCP3EOmVFtZzhc85fah8yPnoyL9RMA==",
            )
            .unwrap();
        let receipt = Receipt::verify(&fixture, &[0; 32]).unwrap();
        assert_eq!(
            receipt,
            Receipt {
                nonce: [0; 16],
                stream_id: 1,
                total_received: 500
            }
        );
    }

    #[test]
    fn errors() {
        let secret = [5u8; 32];
        let good = Receipt::new([1; 16], 3, 1000).unwrap().encode(&secret);

        assert_eq!(Receipt::decode(&[]), Err(ReceiptError::WrongLength(0)));
        assert_eq!(
            Receipt::verify(&good[..57], &secret),
            Err(ReceiptError::WrongLength(57))
        );
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            Receipt::verify(&long, &secret),
            Err(ReceiptError::WrongLength(59))
        );
        assert_eq!(
            Receipt::verify(&[0; 58], &secret),
            Err(ReceiptError::UnsupportedVersion(0))
        );
        let mut v2 = good;
        v2[0] = 2;
        assert_eq!(
            Receipt::decode(&v2),
            Err(ReceiptError::UnsupportedVersion(2))
        );
        assert_eq!(
            Receipt::verify(&good, &[6; 32]),
            Err(ReceiptError::InvalidHmac)
        );
        for i in 1..RECEIPT_LEN {
            let mut bad = good;
            bad[i] ^= 0x80;
            assert_eq!(
                Receipt::verify(&bad, &secret),
                Err(ReceiptError::InvalidHmac),
                "byte {i}"
            );
        }
        assert_eq!(
            Receipt::new([0; 16], 256, 1),
            Err(ReceiptError::StreamIdTooLarge(256))
        );
        assert_eq!(Receipt::new([0; 16], 255, 1).map(|r| r.stream_id), Ok(255));
    }

    /// Mostly arbitrary lengths, plus full-length candidates with the right version byte so
    /// the HMAC check is reached often.
    fn receipt_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..70),
            proptest::collection::vec(any::<u8>(), RECEIPT_LEN - 1).prop_map(|mut v| {
                v.insert(0, RECEIPT_VERSION);
                v
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            nonce: [u8; 16],
            stream_id: u8,
            total_received: u64,
            secret: [u8; 32],
            other_secret: [u8; 32],
        ) {
            prop_assume!(secret != other_secret);
            let receipt = Receipt { nonce, stream_id, total_received };
            let bytes = receipt.encode(&secret);
            prop_assert_eq!(Receipt::verify(&bytes, &secret), Ok(receipt));
            prop_assert_eq!(Receipt::decode(&bytes), Ok((receipt, bytes[26..].try_into().unwrap())));
            prop_assert_eq!(
                Receipt::verify(&bytes, &other_secret),
                Err(ReceiptError::InvalidHmac)
            );
        }

        #[test]
        fn decode_and_verify_give_the_exact_outcome(bytes in receipt_like_bytes(), secret: [u8; 32]) {
            let verified = Receipt::verify(&bytes, &secret);
            if bytes.len() != RECEIPT_LEN {
                prop_assert_eq!(Receipt::decode(&bytes), Err(ReceiptError::WrongLength(bytes.len())));
                prop_assert_eq!(verified, Err(ReceiptError::WrongLength(bytes.len())));
            } else if bytes[0] != RECEIPT_VERSION {
                prop_assert_eq!(Receipt::decode(&bytes), Err(ReceiptError::UnsupportedVersion(bytes[0])));
                prop_assert_eq!(verified, Err(ReceiptError::UnsupportedVersion(bytes[0])));
            } else {
                let (receipt, hmac) = Receipt::decode(&bytes).unwrap();
                prop_assert_eq!(&hmac[..], &bytes[26..]);
                // The signed fields re-encode to the same bytes; only a matching HMAC verifies.
                let resigned = receipt.encode(&secret);
                prop_assert_eq!(&resigned[..26], &bytes[..26]);
                if resigned[..] == bytes[..] {
                    prop_assert_eq!(verified, Ok(receipt));
                } else {
                    prop_assert_eq!(verified, Err(ReceiptError::InvalidHmac));
                }
                prop_assert_eq!(Receipt::verify(&resigned, &secret), Ok(receipt));
            }
        }
    }
}
