//! SPSP (RFC 9): the JSON body an SPSP endpoint returns, its content type, and the
//! `Receipt-Nonce` / `Receipt-Secret` request headers a receipt verifier adds (RFC 39 §SPSP).
//!
//! Parsing validates what a STREAM sender relies on: `destination_account` is an ILP address
//! and `shared_secret` is 32 bytes. The secret is written as standard padded base64, as RFC 9
//! asks, but read leniently (standard or URL-safe alphabet, padding optional) because servers
//! in the wild differ and the JS client accepts all of them. Unknown fields are ignored so newer
//! servers stay readable.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::packet::{Address, AddressError};

/// The response content type; it also says the payment runs over STREAM.
pub const CONTENT_TYPE: &str = "application/spsp4+json";
/// What a client sends in `Accept`.
pub const ACCEPT: &str = "application/spsp4+json, application/spsp+json";
/// Request header carrying the base64 16-byte receipt nonce (RFC 39).
pub const RECEIPT_NONCE_HEADER: &str = "Receipt-Nonce";
/// Request header carrying the base64 32-byte receipt secret (RFC 39).
pub const RECEIPT_SECRET_HEADER: &str = "Receipt-Secret";

pub const SHARED_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpspError {
    #[error("invalid SPSP JSON: {0}")]
    Json(String),
    #[error("invalid destination_account: {0}")]
    InvalidDestination(#[from] AddressError),
    #[error("{0} is not valid base64")]
    NotBase64(&'static str),
    #[error("shared_secret is {0} bytes; it must be 32")]
    SharedSecretLength(usize),
    #[error("balance.{0} is not an integer string")]
    InvalidAmount(&'static str),
    #[error("{0} header without {1} header")]
    MissingReceiptHeader(&'static str, &'static str),
    #[error("receipt nonce is {0} bytes; it must be 16")]
    ReceiptNonceLength(usize),
    #[error("receipt secret is {0} bytes; it must be 32")]
    ReceiptSecretLength(usize),
}

/// A successful SPSP response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawResponse", into = "RawResponse")]
pub struct SpspResponse {
    pub destination_account: Address,
    pub shared_secret: [u8; SHARED_SECRET_LEN],
    /// `Some(true)` when the receiver will attach STREAM receipts (RFC 39).
    pub receipts_enabled: Option<bool>,
    /// For invoices and pull payments.
    pub balance: Option<SpspBalance>,
    pub asset_info: Option<AssetInfo>,
    /// Free-form by the RFC; kept as JSON.
    pub receiver_info: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Invoice or pull-payment balance. Negative amounts mean the client may push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpspBalance {
    pub maximum: i128,
    pub current: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetInfo {
    pub code: String,
    pub scale: u8,
}

/// The body of an SPSP error response, e.g. `InvalidReceiverError` with a 404.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpspErrorBody {
    pub id: String,
    pub message: String,
}

impl SpspErrorBody {
    /// The 404 body RFC 9 gives for an unknown receiver.
    pub fn invalid_receiver() -> Self {
        SpspErrorBody {
            id: "InvalidReceiverError".into(),
            message: "Invalid receiver ID".into(),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct RawResponse {
    destination_account: String,
    shared_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receipts_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    balance: Option<RawBalance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asset_info: Option<AssetInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiver_info: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct RawBalance {
    maximum: String,
    current: String,
}

/// Decodes base64 in either alphabet, with or without padding.
fn decode_base64(field: &'static str, s: &str) -> Result<Vec<u8>, SpspError> {
    lenient_base64(s).ok_or(SpspError::NotBase64(field))
}

/// Base64 in either alphabet (standard or URL-safe), padding optional: what servers and
/// clients in the wild write for secrets and tokens.
pub fn lenient_base64(s: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(s))
        .ok()
}

/// An RFC 9 "Integer String": optional minus sign and decimal digits, nothing else.
fn parse_amount(field: &'static str, s: &str) -> Result<i128, SpspError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpspError::InvalidAmount(field));
    }
    s.parse().map_err(|_| SpspError::InvalidAmount(field))
}

impl TryFrom<RawResponse> for SpspResponse {
    type Error = SpspError;

    fn try_from(raw: RawResponse) -> Result<Self, SpspError> {
        let destination_account = Address::try_from(raw.destination_account)?;
        let secret = decode_base64("shared_secret", &raw.shared_secret)?;
        let shared_secret = <[u8; SHARED_SECRET_LEN]>::try_from(secret.as_slice())
            .map_err(|_| SpspError::SharedSecretLength(secret.len()))?;
        let balance = match raw.balance {
            Some(b) => Some(SpspBalance {
                maximum: parse_amount("maximum", &b.maximum)?,
                current: parse_amount("current", &b.current)?,
            }),
            None => None,
        };
        Ok(SpspResponse {
            destination_account,
            shared_secret,
            receipts_enabled: raw.receipts_enabled,
            balance,
            asset_info: raw.asset_info,
            receiver_info: raw.receiver_info,
        })
    }
}

impl From<SpspResponse> for RawResponse {
    fn from(r: SpspResponse) -> Self {
        RawResponse {
            destination_account: r.destination_account.as_str().to_owned(),
            shared_secret: STANDARD.encode(r.shared_secret),
            receipts_enabled: r.receipts_enabled,
            balance: r.balance.map(|b| RawBalance {
                maximum: b.maximum.to_string(),
                current: b.current.to_string(),
            }),
            asset_info: r.asset_info,
            receiver_info: r.receiver_info,
        }
    }
}

impl SpspResponse {
    /// A plain push-payment response.
    pub fn new(destination_account: Address, shared_secret: [u8; SHARED_SECRET_LEN]) -> Self {
        SpspResponse {
            destination_account,
            shared_secret,
            receipts_enabled: None,
            balance: None,
            asset_info: None,
            receiver_info: None,
        }
    }

    /// Parses and validates a response body, keeping the validation error typed.
    pub fn decode(json: &[u8]) -> Result<Self, SpspError> {
        let raw: RawResponse =
            serde_json::from_slice(json).map_err(|e| SpspError::Json(e.to_string()))?;
        SpspResponse::try_from(raw)
    }

    /// The JSON body.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings, bools and maps into a Vec cannot fail.
        serde_json::to_vec(&RawResponse::from(self.clone())).unwrap_or_default()
    }
}

/// Receipt parameters a verifier passes to the receiver alongside the SPSP query.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiptSetup {
    pub nonce: [u8; 16],
    pub secret: [u8; 32],
}

impl std::fmt::Debug for ReceiptSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSetup")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl ReceiptSetup {
    /// Reads the two receipt headers. Neither present means receipts are off; only one
    /// present is an error (a server answers 400).
    pub fn from_headers(
        nonce: Option<&str>,
        secret: Option<&str>,
    ) -> Result<Option<ReceiptSetup>, SpspError> {
        let (nonce, secret) = match (nonce, secret) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(SpspError::MissingReceiptHeader(
                    RECEIPT_NONCE_HEADER,
                    RECEIPT_SECRET_HEADER,
                ))
            }
            (None, Some(_)) => {
                return Err(SpspError::MissingReceiptHeader(
                    RECEIPT_SECRET_HEADER,
                    RECEIPT_NONCE_HEADER,
                ))
            }
            (Some(n), Some(s)) => (n.trim(), s.trim()),
        };
        let nonce = decode_base64(RECEIPT_NONCE_HEADER, nonce)?;
        let secret = decode_base64(RECEIPT_SECRET_HEADER, secret)?;
        Ok(Some(ReceiptSetup {
            nonce: nonce
                .as_slice()
                .try_into()
                .map_err(|_| SpspError::ReceiptNonceLength(nonce.len()))?,
            secret: secret
                .as_slice()
                .try_into()
                .map_err(|_| SpspError::ReceiptSecretLength(secret.len()))?,
        }))
    }

    /// `(name, value)` pairs for the two headers.
    pub fn to_headers(&self) -> [(&'static str, String); 2] {
        [
            (RECEIPT_NONCE_HEADER, STANDARD.encode(self.nonce)),
            (RECEIPT_SECRET_HEADER, STANDARD.encode(self.secret)),
        ]
    }
}

/// The content type of a PSK2 SPSP response (the draft before STREAM).
pub const CONTENT_TYPE_PSK2: &str = "application/spsp+json";

/// What an SPSP server answers a query with, by its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// `application/spsp4+json`: STREAM credentials.
    Stream,
    /// `application/spsp+json`: PSK2 credentials.
    Psk2,
    /// Nothing the server can send (HTTP 406).
    NotAcceptable,
}

/// The media ranges of an `Accept` value, lower-cased, each with whether it is acceptable (a
/// `q` of zero is a refusal).
fn ranges(accept: &str) -> Vec<(String, bool)> {
    accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|param| {
                let (name, value) = param.split_once('=').unwrap_or((param, ""));
                name.trim().eq_ignore_ascii_case("q")
                    && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            });
            (!media.is_empty()).then_some((media, !refused))
        })
        .collect()
}

/// The response to a query whose `Accept` header is `accept` (`None`: absent). STREAM when
/// `application/spsp4+json` is named (as `@interledger/pay`, `ilp-protocol-spsp` and Rafiki's
/// clients send it), else PSK2 when `application/spsp+json` is (the PSK2 clients), else STREAM
/// for a wildcard, `application/json` or no header (an empty one too), else nothing. A type
/// the client refuses by name (`q=0`) is not sent for a wildcard either.
pub fn negotiate(accept: Option<&str>) -> Negotiated {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Negotiated::Stream;
    };
    let ranges = ranges(accept);
    let named = |media: &str| ranges.iter().any(|(r, ok)| r == media && *ok);
    let refused = |media: &str| ranges.iter().any(|(r, ok)| r == media && !*ok);
    let wildcard = ["*/*", "application/*", "application/json"]
        .iter()
        .any(|m| named(m));
    if named(CONTENT_TYPE) || (wildcard && !refused(CONTENT_TYPE)) {
        Negotiated::Stream
    } else if named(CONTENT_TYPE_PSK2) || (wildcard && !refused(CONTENT_TYPE_PSK2)) {
        Negotiated::Psk2
    } else {
        Negotiated::NotAcceptable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn negotiation_follows_what_the_clients_send() {
        let cases = [
            // @interledger/pay 0.2.2 (open-payments.js)
            (
                Some("application/ilp-stream+json, application/spsp4+json"),
                Negotiated::Stream,
            ),
            // ilp-protocol-spsp 2.2.0, as ilp-spsp 1.2.0 runs it
            (
                Some("application/spsp4+json, application/spsp+json"),
                Negotiated::Stream,
            ),
            (Some("application/spsp+json"), Negotiated::Psk2),
            (Some("Application/SPSP+JSON; q=0.9"), Negotiated::Psk2),
            (
                Some("application/spsp4+json;q=0, application/spsp+json"),
                Negotiated::Psk2,
            ),
            (Some("*/*"), Negotiated::Stream),
            (Some("application/json"), Negotiated::Stream),
            (None, Negotiated::Stream),
            (Some("text/html"), Negotiated::NotAcceptable),
            (
                Some("application/spsp4+json; q=0"),
                Negotiated::NotAcceptable,
            ),
            (Some("application/spsp4+json;q=0, */*"), Negotiated::Psk2),
            (
                Some("application/spsp4+json;q=0, application/spsp+json;q=0, */*"),
                Negotiated::NotAcceptable,
            ),
            (Some(""), Negotiated::Stream),
            (Some(",;,"), Negotiated::NotAcceptable),
        ];
        for (accept, expected) in cases {
            assert_eq!(negotiate(accept), expected, "{accept:?}");
        }
    }

    const RFC_EXAMPLE: &str = r#"{
        "destination_account": "example.ilpdemo.red.bob",
        "shared_secret": "6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs="
    }"#;

    fn secret() -> [u8; 32] {
        STANDARD
            .decode("6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=")
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn rfc_example_both_ways() {
        let r = SpspResponse::decode(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.destination_account.as_str(), "example.ilpdemo.red.bob");
        assert_eq!(r.shared_secret, secret());
        assert_eq!(r.receipts_enabled, None);
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"destination_account":"example.ilpdemo.red.bob","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs="}"#
        );
        // the serde impls agree with decode/encode
        let via_serde: SpspResponse = serde_json::from_str(RFC_EXAMPLE).unwrap();
        assert_eq!(via_serde, r);
        assert_eq!(serde_json::to_vec(&r).unwrap(), r.encode());
    }

    #[test]
    fn invoice_example_and_receipts() {
        let json = r#"{
            "destination_account": "example.ilpdemo.red~invoice123",
            "shared_secret": "6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=",
            "receipts_enabled": true,
            "balance": { "maximum": "-10000", "current": "-5360" },
            "asset_info": { "code": "USD", "scale": 2 },
            "receiver_info": { "name": "XYZ Store", "image_url": "https://red.ilpdemo.org/logo.jpg" },
            "frequency_info": { "type": "MONTH", "interval": 1 }
        }"#;
        let r = SpspResponse::decode(json.as_bytes()).unwrap();
        assert_eq!(r.receipts_enabled, Some(true));
        assert_eq!(
            r.balance,
            Some(SpspBalance {
                maximum: -10000,
                current: -5360
            })
        );
        assert_eq!(
            r.asset_info,
            Some(AssetInfo {
                code: "USD".into(),
                scale: 2
            })
        );
        assert_eq!(
            r.receiver_info.as_ref().unwrap()["name"],
            serde_json::json!("XYZ Store")
        );
        assert_eq!(SpspResponse::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn lenient_base64() {
        let url_safe_unpadded = r#"{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C-YB5X9FhSOUPCL_5nha5Vs"}"#;
        let r = SpspResponse::decode(url_safe_unpadded.as_bytes()).unwrap();
        assert_eq!(r.shared_secret, secret());
    }

    #[test]
    fn errors() {
        let cases: &[(&str, SpspError)] = &[
            (
                r#"{"destination_account":"bogus","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs="}"#,
                SpspError::InvalidDestination(Address::try_from("bogus").unwrap_err()),
            ),
            (
                r#"{"destination_account":"g.x","shared_secret":"not base64!"}"#,
                SpspError::NotBase64("shared_secret"),
            ),
            (
                r#"{"destination_account":"g.x","shared_secret":"AAAA"}"#,
                SpspError::SharedSecretLength(3),
            ),
            (
                r#"{"destination_account":"g.x","shared_secret":""}"#,
                SpspError::SharedSecretLength(0),
            ),
            (
                r#"{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=","balance":{"maximum":"1e3","current":"0"}}"#,
                SpspError::InvalidAmount("maximum"),
            ),
            (
                r#"{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=","balance":{"maximum":"1","current":"+1"}}"#,
                SpspError::InvalidAmount("current"),
            ),
            (
                r#"{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=","balance":{"maximum":"-","current":"1"}}"#,
                SpspError::InvalidAmount("maximum"),
            ),
        ];
        for (json, err) in cases {
            assert_eq!(
                SpspResponse::decode(json.as_bytes()).as_ref(),
                Err(err),
                "{json}"
            );
            // serde's path reports the same problem, as a string
            let serde_err = serde_json::from_str::<SpspResponse>(json).unwrap_err();
            assert!(
                serde_err.to_string().contains(&err.to_string()),
                "{serde_err}"
            );
        }
        for json in [
            "",
            "[]",
            r#"{"shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs="}"#,
            r#"{"destination_account":"g.x"}"#,
            r#"{"destination_account":1,"shared_secret":"AAAA"}"#,
            r#"{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=","receipts_enabled":"yes"}"#,
            r#"{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=","asset_info":{"code":"USD","scale":256}}"#,
        ] {
            assert!(
                matches!(
                    SpspResponse::decode(json.as_bytes()),
                    Err(SpspError::Json(_))
                ),
                "{json}"
            );
        }
    }

    #[test]
    fn receipt_headers() {
        let setup = ReceiptSetup {
            nonce: [1; 16],
            secret: [2; 32],
        };
        let [(n_name, n), (s_name, s)] = setup.to_headers();
        assert_eq!(n_name, "Receipt-Nonce");
        assert_eq!(s_name, "Receipt-Secret");
        assert_eq!(n, "AQEBAQEBAQEBAQEBAQEBAQ==");
        assert_eq!(
            ReceiptSetup::from_headers(Some(&n), Some(&s)),
            Ok(Some(setup.clone()))
        );
        assert_eq!(ReceiptSetup::from_headers(None, None), Ok(None));
        assert_eq!(
            ReceiptSetup::from_headers(Some(&n), None),
            Err(SpspError::MissingReceiptHeader(
                "Receipt-Nonce",
                "Receipt-Secret"
            ))
        );
        assert_eq!(
            ReceiptSetup::from_headers(None, Some(&s)),
            Err(SpspError::MissingReceiptHeader(
                "Receipt-Secret",
                "Receipt-Nonce"
            ))
        );
        let short = STANDARD.encode([0u8; 15]);
        assert_eq!(
            ReceiptSetup::from_headers(Some(&short), Some(&s)),
            Err(SpspError::ReceiptNonceLength(15))
        );
        assert_eq!(
            ReceiptSetup::from_headers(Some(&n), Some(&short)),
            Err(SpspError::ReceiptSecretLength(15))
        );
        assert_eq!(
            ReceiptSetup::from_headers(Some("%%"), Some(&s)),
            Err(SpspError::NotBase64("Receipt-Nonce"))
        );
        assert!(!format!("{setup:?}").contains("secret: "));
    }

    #[test]
    fn accept_header() {
        assert_eq!(negotiate(Some(ACCEPT)), Negotiated::Stream);
        assert_eq!(
            negotiate(Some("Application/SPSP4+JSON")),
            Negotiated::Stream
        );
        assert_eq!(CONTENT_TYPE, "application/spsp4+json");
    }

    #[test]
    fn error_body() {
        assert_eq!(
            serde_json::to_string(&SpspErrorBody::invalid_receiver()).unwrap(),
            r#"{"id":"InvalidReceiverError","message":"Invalid receiver ID"}"#
        );
    }

    #[test]
    fn balances_outside_i128_are_invalid_amounts() {
        let body = |max: &str, cur: &str| {
            format!(
                r#"{{"destination_account":"g.x","shared_secret":"6jR5iNIVRvqeasJeCty6C+YB5X9FhSOUPCL/5nha5Vs=","balance":{{"maximum":"{max}","current":"{cur}"}}}}"#
            )
        };
        let max = i128::MAX.to_string();
        let min = i128::MIN.to_string();
        let r = SpspResponse::decode(body(&max, &min).as_bytes()).unwrap();
        assert_eq!(
            r.balance,
            Some(SpspBalance {
                maximum: i128::MAX,
                current: i128::MIN
            })
        );
        // One past each end.
        assert_eq!(
            SpspResponse::decode(body("170141183460469231731687303715884105728", "0").as_bytes()),
            Err(SpspError::InvalidAmount("maximum"))
        );
        assert_eq!(
            SpspResponse::decode(body("0", "-170141183460469231731687303715884105729").as_bytes()),
            Err(SpspError::InvalidAmount("current"))
        );
        assert_eq!(
            SpspResponse::decode(body(&"9".repeat(60), "0").as_bytes()),
            Err(SpspError::InvalidAmount("maximum"))
        );
    }

    fn arb_json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_receiver_info() -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
        proptest::collection::btree_map(".{0,10}", arb_json_value(), 0..5)
            .prop_map(|m| m.into_iter().collect())
    }

    /// JSON bodies close enough to valid that decoding often succeeds.
    fn plausible_body() -> impl Strategy<Value = Vec<u8>> {
        (
            "(g|test|example)\\.[a-z~]{1,8}",
            "[A-Za-z0-9]{43}=?",
            "-?[0-9]{0,41}",
            "-?[0-9]{0,41}",
            any::<bool>(),
        )
            .prop_map(|(dest, secret, max, cur, with_balance)| {
                let balance = if with_balance {
                    format!(r#","balance":{{"maximum":"{max}","current":"{cur}"}}"#)
                } else {
                    String::new()
                };
                format!(r#"{{"destination_account":"{dest}","shared_secret":"{secret}"{balance}}}"#)
                    .into_bytes()
            })
    }

    proptest! {
        #[test]
        fn round_trip(
            segment in "[a-z0-9~_-]{1,20}",
            shared_secret: [u8; 32],
            receipts_enabled: Option<bool>,
            balance: Option<(i128, i128)>,
            asset_info in proptest::option::of((".{0,10}", any::<u8>())),
            receiver_info in proptest::option::of(arb_receiver_info()),
        ) {
            let mut r = SpspResponse::new(
                Address::try_from(format!("g.{segment}")).unwrap(),
                shared_secret,
            );
            r.receipts_enabled = receipts_enabled;
            r.balance = balance.map(|(maximum, current)| SpspBalance { maximum, current });
            r.asset_info = asset_info.map(|(code, scale)| AssetInfo { code, scale });
            r.receiver_info = receiver_info;
            prop_assert_eq!(SpspResponse::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn receipt_setup_headers_round_trip(nonce: [u8; 16], secret: [u8; 32]) {
            let setup = ReceiptSetup { nonce, secret };
            let [(_, n), (_, s)] = setup.to_headers();
            prop_assert_eq!(ReceiptSetup::from_headers(Some(&n), Some(&s)), Ok(Some(setup)));
        }

        #[test]
        fn whatever_decodes_re_encodes_to_the_same_value(
            bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..200), plausible_body()],
        ) {
            if let Ok(r) = SpspResponse::decode(&bytes) {
                prop_assert_eq!(SpspResponse::decode(&r.encode()), Ok(r));
            }
        }

        #[test]
        fn headers_never_panic(a in ".{0,50}", b in ".{0,60}") {
            if let Ok(Some(setup)) = ReceiptSetup::from_headers(Some(&a), Some(&b)) {
                let [(_, n), (_, s)] = setup.to_headers();
                prop_assert_eq!(ReceiptSetup::from_headers(Some(&n), Some(&s)), Ok(Some(setup)));
            }
            let _ = negotiate(Some(&a));
        }
    }
}
