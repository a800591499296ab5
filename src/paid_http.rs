//! Paid HTTP APIs (HTTP-ILP, RFC 14 draft 3, and what koa-ilp and ilp-fetch do): the headers a
//! paid API and its clients exchange, and the price table of a paid proxy. No I/O.
//!
//! - `Pay-Token: <base64>`: the client's token. The draft derives 32 bytes as
//!   HMAC-SHA256(client_secret, hostname) ([`draft_token`]); ilp-fetch and superagent-ilp send
//!   16 random bytes. Either is accepted, in either base64 alphabet, padded or not; a token is
//!   named by its bytes in unpadded base64url ([`PayToken::id`]).
//! - `Pay: interledger-psk2 <destination> <shared secret> <price>` (draft 3, koa-ilp), or
//!   `interledger-stream <destination> <shared secret> [price]` (ilp-fetch's STREAM method, in
//!   no RFC). The price is in the receiving account's base units. The secret is written as
//!   standard padded base64 (as koa-ilp writes it; ilp-fetch reads either alphabet).
//! - `Pay-Balance: <integer>`: what the token has left, in the same units.

use crate::packet::{Address, AddressError};
use crate::spsp::lenient_base64;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use thiserror::Error;

pub const PAY_TOKEN_HEADER: &str = "Pay-Token";
pub const PAY_HEADER: &str = "Pay";
pub const PAY_BALANCE_HEADER: &str = "Pay-Balance";

/// The shortest and longest token accepted, in bytes. The longest keeps the token's id (60
/// base64url characters) within the tag a STREAM or PSK2 credential carries, which names the
/// token the money is for.
pub const TOKEN_MIN_BYTES: usize = 16;
pub const TOKEN_MAX_BYTES: usize = 45;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PaidHttpError {
    #[error("Pay-Token is not base64")]
    TokenNotBase64,
    #[error("Pay-Token is {0} bytes; {TOKEN_MIN_BYTES} to {TOKEN_MAX_BYTES} are accepted")]
    TokenLength(usize),
    #[error("Pay header is empty")]
    EmptyPay,
    #[error("Pay method {0:?} is not interledger-psk2 or interledger-stream")]
    UnknownMethod(String),
    #[error("Pay header has {0} fields after its method; expected 2 or 3")]
    PayFields(usize),
    #[error("Pay destination: {0}")]
    Destination(#[from] AddressError),
    #[error("Pay shared secret is not 32 bytes of base64")]
    Secret,
    #[error("Pay price {0:?} is not a non-negative integer")]
    Price(String),
    #[error("interledger-psk2 needs a price")]
    MissingPrice,
}

/// A client's token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PayToken(Vec<u8>);

impl PayToken {
    /// From a `Pay-Token` header value.
    pub fn parse(value: &str) -> Result<PayToken, PaidHttpError> {
        let bytes = lenient_base64(value.trim()).ok_or(PaidHttpError::TokenNotBase64)?;
        PayToken::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<PayToken, PaidHttpError> {
        if !(TOKEN_MIN_BYTES..=TOKEN_MAX_BYTES).contains(&bytes.len()) {
            return Err(PaidHttpError::TokenLength(bytes.len()));
        }
        Ok(PayToken(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its name: the bytes in unpadded base64url, the same whichever way the client wrote it.
    pub fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// The header value a client sends: unpadded base64url, as ilp-fetch and the draft do.
    pub fn header_value(&self) -> String {
        self.id()
    }
}

/// The draft's token for `hostname`: HMAC-SHA256(client_secret, hostname).
pub fn draft_token(client_secret: &[u8; 32], hostname: &str) -> PayToken {
    PayToken(crate::stream::crypto::hmac_sha256(client_secret, hostname.as_bytes()).to_vec())
}

/// How a `Pay` header asks to be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMethod {
    Psk2,
    Stream,
}

impl PayMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PayMethod::Psk2 => "interledger-psk2",
            PayMethod::Stream => "interledger-stream",
        }
    }
}

/// A `Pay` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pay {
    pub method: PayMethod,
    pub destination: Address,
    pub shared_secret: [u8; 32],
    /// The price of the request, in the receiver's base units (required for PSK2).
    pub price: Option<u64>,
}

impl Pay {
    pub fn parse(value: &str) -> Result<Pay, PaidHttpError> {
        let mut fields = value.split_whitespace();
        let method = match fields.next() {
            None => return Err(PaidHttpError::EmptyPay),
            Some("interledger-psk2") => PayMethod::Psk2,
            Some("interledger-stream") => PayMethod::Stream,
            Some(other) => return Err(PaidHttpError::UnknownMethod(other.to_owned())),
        };
        let rest: Vec<&str> = fields.collect();
        let (destination, secret, price) = match rest.as_slice() {
            [d, s] => (*d, *s, None),
            [d, s, p] => (*d, *s, Some(*p)),
            other => return Err(PaidHttpError::PayFields(other.len())),
        };
        let destination = Address::try_from(destination)?;
        let shared_secret: [u8; 32] = lenient_base64(secret)
            .and_then(|b| b.try_into().ok())
            .ok_or(PaidHttpError::Secret)?;
        let price = price
            .map(|p| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    p.parse::<u64>().ok()
                } else {
                    None
                }
                .ok_or_else(|| PaidHttpError::Price(p.to_owned()))
            })
            .transpose()?;
        if method == PayMethod::Psk2 && price.is_none() {
            return Err(PaidHttpError::MissingPrice);
        }
        Ok(Pay {
            method,
            destination,
            shared_secret,
            price,
        })
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        let mut value = format!(
            "{} {} {}",
            self.method.as_str(),
            self.destination.as_str(),
            STANDARD.encode(self.shared_secret)
        );
        if let Some(price) = self.price {
            value.push(' ');
            value.push_str(&price.to_string());
        }
        value
    }
}

/// One priced route of a paid API: requests whose method matches (`None`: any) and whose path
/// starts with `path_prefix` cost `price` base units (0: free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Option<String>,
    pub path_prefix: String,
    pub price: u64,
}

/// A paid API's prices: the route with the longest matching prefix wins, a route naming the
/// method over one for any method; a request no route matches costs `default_price`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriceTable {
    pub routes: Vec<Route>,
    pub default_price: u64,
}

/// `path` in the one form a request is priced and forwarded by: escapes of unreserved
/// characters decoded (`%75` is `u`), other escapes upper-cased; `None` for an empty segment
/// (`//`), a `.` or `..` segment, or a malformed escape, which a server behind could resolve
/// to another path than the one priced.
pub fn canonical_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let mut out = String::with_capacity(path.len());
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        out.push('/');
        if segment.is_empty() && i != last {
            return None;
        }
        let mut decoded = String::with_capacity(segment.len());
        let bytes = segment.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] == b'%' {
                let hex = segment.get(j + 1..j + 3)?;
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    decoded.push(char::from(byte));
                } else {
                    decoded.push('%');
                    decoded.push_str(&hex.to_ascii_uppercase());
                }
                j += 3;
            } else {
                decoded.push(char::from(bytes[j]));
                j += 1;
            }
        }
        if decoded == "." || decoded == ".." {
            return None;
        }
        out.push_str(&decoded);
    }
    Some(out)
}

impl PriceTable {
    /// The price of a request with `method` to `path` (canonical, [`canonical_path`]); path
    /// prefixes match without regard to case, so a server that ignores case is not a way
    /// around a price. HEAD costs what GET costs, if more: servers answer it by running GET.
    pub fn price(&self, method: &str, path: &str) -> u64 {
        let price = self.route_price(method, path);
        if method.eq_ignore_ascii_case("HEAD") {
            price.max(self.route_price("GET", path))
        } else {
            price
        }
    }

    fn route_price(&self, method: &str, path: &str) -> u64 {
        let lower = path.to_ascii_lowercase();
        self.routes
            .iter()
            .filter(|r| lower.starts_with(&r.path_prefix.to_ascii_lowercase()))
            .filter(|r| {
                r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
            })
            .max_by_key(|r| (r.path_prefix.len(), r.method.is_some()))
            .map_or(self.default_price, |r| r.price)
    }

    /// The most a request to `path` can cost, whatever its method (a preflight that does not
    /// say which request it is for is told this).
    pub fn highest_price(&self, path: &str) -> u64 {
        let mut methods: Vec<&str> = self
            .routes
            .iter()
            .filter_map(|r| r.method.as_deref())
            .collect();
        methods.push("");
        methods
            .into_iter()
            .map(|m| self.price(m, path))
            .max()
            .unwrap_or(self.default_price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address::try_from("test.node.api.~pt").unwrap()
    }

    #[test]
    fn tokens_of_the_draft_and_of_the_implementations() {
        // ilp-fetch: 16 random bytes, unpadded base64url (22 characters).
        let t = PayToken::parse("AAECAwQFBgcICQoLDA0ODw").unwrap();
        assert_eq!(t.as_bytes(), &(0u8..16).collect::<Vec<_>>()[..]);
        assert_eq!(t.id(), "AAECAwQFBgcICQoLDA0ODw");
        // The same bytes padded or in the standard alphabet are the same token.
        assert_eq!(PayToken::parse("AAECAwQFBgcICQoLDA0ODw==").unwrap(), t);
        let odd = PayToken::from_bytes(vec![0xfb; 16]).unwrap();
        assert_eq!(odd.id(), "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(PayToken::parse("+/v7+/v7+/v7+/v7+/v7+w==").unwrap(), odd);
        // The draft's example token: 43 characters, 32 bytes.
        let draft = PayToken::parse("7y0SfeN7lCuq0GFF5UsMYZofIjJ7LrvPvsePVWSv450").unwrap();
        assert_eq!(draft.as_bytes().len(), 32);
        assert_eq!(
            draft_token(&[1; 32], "myservice.example").as_bytes().len(),
            32
        );
        assert_ne!(
            draft_token(&[1; 32], "myservice.example"),
            draft_token(&[1; 32], "other.example")
        );
        assert_eq!(PayToken::parse("AAEC"), Err(PaidHttpError::TokenLength(3)));
        assert_eq!(
            PayToken::parse("not base64!"),
            Err(PaidHttpError::TokenNotBase64)
        );
        assert_eq!(
            PayToken::from_bytes(vec![0; 46]),
            Err(PaidHttpError::TokenLength(46))
        );
    }

    #[test]
    fn pay_headers_round_trip_and_read_what_koa_ilp_writes() {
        let pay = Pay {
            method: PayMethod::Psk2,
            destination: addr(),
            shared_secret: [0xfb; 32],
            price: Some(10),
        };
        let value = pay.header_value();
        assert_eq!(
            value,
            format!(
                "interledger-psk2 test.node.api.~pt {} 10",
                STANDARD.encode([0xfb; 32])
            )
        );
        assert_eq!(Pay::parse(&value).unwrap(), pay);
        // URL-safe, unpadded, extra spaces: the same header.
        let loose = format!(
            "  interledger-psk2   test.node.api.~pt  {}   10 ",
            URL_SAFE_NO_PAD.encode([0xfb; 32])
        );
        assert_eq!(Pay::parse(&loose).unwrap(), pay);
        let stream = Pay {
            method: PayMethod::Stream,
            price: None,
            ..pay.clone()
        };
        assert_eq!(Pay::parse(&stream.header_value()).unwrap(), stream);
    }

    #[test]
    fn bad_pay_headers_say_what_is_wrong() {
        let secret = STANDARD.encode([1u8; 32]);
        let cases = [
            ("".to_owned(), PaidHttpError::EmptyPay),
            (
                format!("interledger-psk test.x {secret} 10"),
                PaidHttpError::UnknownMethod("interledger-psk".into()),
            ),
            (
                "interledger-psk2 test.x".to_owned(),
                PaidHttpError::PayFields(1),
            ),
            (
                format!("interledger-psk2 test.x {secret} 10 extra"),
                PaidHttpError::PayFields(4),
            ),
            (
                format!("interledger-psk2 test.x {secret}"),
                PaidHttpError::MissingPrice,
            ),
            (
                "interledger-psk2 test.x c2hvcnQ 10".to_owned(),
                PaidHttpError::Secret,
            ),
            (
                format!("interledger-psk2 test.x {secret} -5"),
                PaidHttpError::Price("-5".into()),
            ),
            (
                format!("interledger-psk2 test.x {secret} 99999999999999999999"),
                PaidHttpError::Price("99999999999999999999".into()),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(Pay::parse(&value), Err(expected), "{value:?}");
        }
        assert!(matches!(
            Pay::parse(&format!("interledger-psk2 bad..address {secret} 1")),
            Err(PaidHttpError::Destination(_))
        ));
    }

    #[test]
    fn the_longest_matching_route_sets_the_price() {
        let route = |method: Option<&str>, prefix: &str, price| Route {
            method: method.map(str::to_owned),
            path_prefix: prefix.to_owned(),
            price,
        };
        let table = PriceTable {
            routes: vec![
                route(Some("POST"), "/upload", 10),
                route(None, "/upload", 3),
                route(None, "/upload/free", 0),
                route(Some("GET"), "/", 1),
            ],
            default_price: 0,
        };
        assert_eq!(table.price("POST", "/upload"), 10);
        assert_eq!(table.price("post", "/upload/x"), 10);
        assert_eq!(table.price("PUT", "/upload"), 3);
        assert_eq!(table.price("POST", "/upload/free/x"), 0);
        assert_eq!(table.price("GET", "/anything"), 1);
        assert_eq!(table.price("DELETE", "/anything"), 0);
        assert_eq!(table.highest_price("/upload/x"), 10);
        assert_eq!(table.highest_price("/upload/free/x"), 0);
        assert_eq!(table.highest_price("/other"), 1);
        assert_eq!(
            table.price("POST", "/UPLOAD"),
            10,
            "case does not dodge a price"
        );
        assert_eq!(table.price("HEAD", "/x"), 1, "HEAD costs what GET costs");
    }

    #[test]
    fn paths_are_priced_in_one_canonical_form() {
        assert_eq!(canonical_path("/%75pload").as_deref(), Some("/upload"));
        assert_eq!(canonical_path("/a%2fb").as_deref(), Some("/a%2Fb"));
        assert_eq!(canonical_path("/a b/").as_deref(), Some("/a b/"));
        assert_eq!(canonical_path("/").as_deref(), Some("/"));
        for bad in [
            "//upload",
            "/x/../upload",
            "/./upload",
            "/%2e%2e/upload",
            "/a%2",
            "x",
        ] {
            assert_eq!(canonical_path(bad), None, "{bad}");
        }
    }
}
