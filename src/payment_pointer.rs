//! Payment pointers (RFC 26): `$host[/path]` and its resolution to the https URL of the SPSP
//! endpoint, plus [`resolve`] for clients that also accept a raw endpoint URL (RFC 9).
//!
//! The pointer syntax is a strict profile of a URL: a host, no userinfo, no port, no query, no
//! fragment, ASCII only. Those rules exist to keep a pointer from looking like one receiver
//! while naming another, so anything outside them is rejected rather than repaired. Host
//! syntax itself is checked by the `url` crate (WHATWG rules), which also lowercases it.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use url::Url;

/// Path used when the pointer has none (or just `/`).
pub const WELL_KNOWN_PATH: &str = "/.well-known/pay";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PaymentPointerError {
    #[error("a payment pointer starts with '$'")]
    MissingDollar,
    #[error("payment pointer has no host")]
    MissingHost,
    #[error("payment pointer contains a non-ASCII character")]
    NonAscii,
    #[error("payment pointer contains {0:?}, which it may not")]
    InvalidCharacter(char),
    #[error("payment pointer has a malformed percent escape")]
    InvalidPercentEncoding,
    #[error("payment pointer may not contain userinfo ('@' before the path)")]
    UserInfo,
    #[error("payment pointer may not contain a port")]
    Port,
    #[error("payment pointer may not contain a query")]
    Query,
    #[error("payment pointer may not contain a fragment")]
    Fragment,
    #[error("payment pointer path may not contain '.' or '..' segments")]
    DotSegment,
    #[error("invalid host: {0}")]
    InvalidHost(url::ParseError),
    #[error("invalid URL: {0}")]
    InvalidUrl(url::ParseError),
    #[error("SPSP endpoint URLs must use https")]
    NotHttps,
}

/// A valid payment pointer, held as its resolved endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentPointer {
    url: Url,
    /// The pointer had no path, so the endpoint is [`WELL_KNOWN_PATH`].
    default_path: bool,
}

/// RFC 3986 `unreserved` and `sub-delims`, plus ':' and '@' (allowed in path segments).
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// Characters allowed in the host part: `reg-name` characters, or an IP literal's brackets
/// and colons. ':' outside brackets and '@' are allowed here only to be reported precisely.
fn is_host_char(b: u8) -> bool {
    is_pchar(b) || b == b'[' || b == b']'
}

fn check_percent_escapes(s: &str) -> Result<(), PaymentPointerError> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(PaymentPointerError::InvalidPercentEncoding)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(PaymentPointerError::InvalidPercentEncoding);
            }
        }
    }
    Ok(())
}

fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
    )
}

/// Whether the authority has a ':' outside an IP literal's brackets.
/// An unterminated literal is left for the URL parser to reject as a bad host.
fn has_port(authority: &str) -> bool {
    match authority.strip_prefix('[') {
        Some(literal) => literal
            .split_once(']')
            .is_some_and(|(_, after)| after.contains(':')),
        None => authority.contains(':'),
    }
}

impl PaymentPointer {
    /// Parses `$host[/path]`.
    pub fn parse(s: &str) -> Result<PaymentPointer, PaymentPointerError> {
        let rest = s
            .strip_prefix('$')
            .ok_or(PaymentPointerError::MissingDollar)?;
        if !rest.is_ascii() {
            return Err(PaymentPointerError::NonAscii);
        }
        if rest.contains('?') {
            return Err(PaymentPointerError::Query);
        }
        if rest.contains('#') {
            return Err(PaymentPointerError::Fragment);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(PaymentPointerError::MissingHost);
        }
        if let Some(c) = authority.bytes().find(|b| *b != b'%' && !is_host_char(*b)) {
            return Err(PaymentPointerError::InvalidCharacter(char::from(c)));
        }
        if let Some(c) = path
            .bytes()
            .find(|b| *b != b'%' && *b != b'/' && !is_pchar(*b))
        {
            return Err(PaymentPointerError::InvalidCharacter(char::from(c)));
        }
        if authority.contains('@') {
            return Err(PaymentPointerError::UserInfo);
        }
        if has_port(authority) {
            return Err(PaymentPointerError::Port);
        }
        check_percent_escapes(rest)?;
        if path.split('/').any(is_dot_segment) {
            return Err(PaymentPointerError::DotSegment);
        }
        let default_path = path.is_empty() || path == "/";
        let path = if default_path { WELL_KNOWN_PATH } else { path };
        // An https URL always has a non-empty host: the parser refuses an authority that is
        // empty after percent-decoding and IDNA mapping (`EmptyHost`), so no check follows.
        let url = Url::parse(&format!("https://{authority}{path}"))
            .map_err(PaymentPointerError::InvalidHost)?;
        Ok(PaymentPointer { url, default_path })
    }

    /// The pointer that resolves to the SPSP endpoint `url`, when there is one: an https URL
    /// without a port, credentials, query or fragment (`https://pay.example/alice` is
    /// `$pay.example/alice`; `https://pay.example/.well-known/pay` is `$pay.example`). An
    /// operator's endpoint on another port or over http has no pointer: senders take its URL.
    pub fn for_endpoint(url: &Url) -> Option<PaymentPointer> {
        if url.scheme() != "https"
            || url.port().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        let host = url.host_str()?;
        let path = match url.path() {
            WELL_KNOWN_PATH => "",
            path => path,
        };
        let pointer = PaymentPointer::parse(&format!("${host}{path}")).ok()?;
        (pointer.endpoint() == url).then_some(pointer)
    }

    /// The SPSP endpoint this pointer resolves to.
    pub fn endpoint(&self) -> &Url {
        &self.url
    }

    /// The (normalized, lowercase) host.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The path as written, or `None` when the pointer uses the well-known path.
    pub fn path(&self) -> Option<&str> {
        (!self.default_path).then(|| self.url.path())
    }
}

impl FromStr for PaymentPointer {
    type Err = PaymentPointerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentPointer::parse(s)
    }
}

impl TryFrom<&str> for PaymentPointer {
    type Error = PaymentPointerError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        PaymentPointer::parse(s)
    }
}

impl fmt::Display for PaymentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}{}", self.host(), self.path().unwrap_or_default())
    }
}

impl serde::Serialize for PaymentPointer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PaymentPointer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PaymentPointer::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Resolves what a user typed to an SPSP endpoint: a payment pointer, or a raw `https://` URL
/// (which RFC 9 says clients should still accept). Raw URLs may carry a port, but no userinfo,
/// query (RFC 9 forbids sending one) or fragment.
pub fn resolve(input: &str) -> Result<Url, PaymentPointerError> {
    resolve_allowing_http(input, false)
}

/// As [`resolve`], and with `allow_http` a plain `http://` URL under the same rules too (for
/// tests and closed networks: the shared secret then travels in the clear).
pub fn resolve_allowing_http(input: &str, allow_http: bool) -> Result<Url, PaymentPointerError> {
    if input.starts_with('$') {
        return PaymentPointer::parse(input).map(|p| p.url);
    }
    if !input.is_ascii() {
        return Err(PaymentPointerError::NonAscii);
    }
    if let Some(c) = input.chars().find(|c| c.is_ascii_control() || *c == ' ') {
        return Err(PaymentPointerError::InvalidCharacter(c));
    }
    let url = Url::parse(input).map_err(PaymentPointerError::InvalidUrl)?;
    // Being https, the URL has a non-empty host (the parser refuses one without); so has an
    // http one.
    if url.scheme() != "https" && !(allow_http && url.scheme() == "http") {
        return Err(PaymentPointerError::NotHttps);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(PaymentPointerError::UserInfo);
    }
    if url.query().is_some() {
        return Err(PaymentPointerError::Query);
    }
    if url.fragment().is_some() {
        return Err(PaymentPointerError::Fragment);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_https_endpoint_without_port_has_a_pointer_that_resolves_back() {
        let pointer = |u: &str| PaymentPointer::for_endpoint(&Url::parse(u).unwrap());
        let alice = pointer("https://pay.example/alice").unwrap();
        assert_eq!(alice.to_string(), "$pay.example/alice");
        assert_eq!(alice.endpoint().as_str(), "https://pay.example/alice");
        let default = pointer("https://Pay.Example/.well-known/pay").unwrap();
        assert_eq!(default.to_string(), "$pay.example");
        for none in [
            "http://pay.example/alice",
            "https://pay.example:8443/alice",
            "https://user@pay.example/alice",
            "https://pay.example/alice?x=1",
            "https://pay.example/alice#top",
        ] {
            assert_eq!(pointer(none), None, "{none}");
        }
    }

    #[test]
    fn rfc_examples() {
        for (pointer, url) in [
            ("$example.com", "https://example.com/.well-known/pay"),
            (
                "$example.com/invoices/12345",
                "https://example.com/invoices/12345",
            ),
            (
                "$bob.example.com",
                "https://bob.example.com/.well-known/pay",
            ),
            ("$example.com/bob", "https://example.com/bob"),
        ] {
            let p = PaymentPointer::parse(pointer).unwrap();
            assert_eq!(p.endpoint().as_str(), url);
            assert_eq!(p.to_string(), pointer);
            assert_eq!(resolve(pointer).unwrap().as_str(), url);
        }
    }

    #[test]
    fn forms_and_normalization() {
        let p = PaymentPointer::parse("$example.com/").unwrap();
        assert_eq!(p.endpoint().as_str(), "https://example.com/.well-known/pay");
        assert_eq!(p.to_string(), "$example.com");
        assert_eq!(p.path(), None);

        let p: PaymentPointer = "$Example.COM/Alice".parse().unwrap();
        assert_eq!(p.host(), "example.com");
        assert_eq!(p.path(), Some("/Alice"));
        assert_eq!(p.to_string(), "$example.com/Alice");

        let p = PaymentPointer::try_from("$example.com/bob/").unwrap();
        assert_eq!(p.endpoint().as_str(), "https://example.com/bob/");

        let p = PaymentPointer::parse("$example.com/.well-known/pay").unwrap();
        assert_eq!(p.to_string(), "$example.com/.well-known/pay");

        let p = PaymentPointer::parse("$127.0.0.1/x").unwrap();
        assert_eq!(p.endpoint().as_str(), "https://127.0.0.1/x");
        let p = PaymentPointer::parse("$[::1]").unwrap();
        assert_eq!(p.endpoint().as_str(), "https://[::1]/.well-known/pay");
        assert_eq!(p.to_string(), "$[::1]");

        let p = PaymentPointer::parse("$example.com/a%20b/c:d@e").unwrap();
        assert_eq!(p.endpoint().as_str(), "https://example.com/a%20b/c:d@e");

        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"$example.com/a%20b/c:d@e\"");
        assert_eq!(serde_json::from_str::<PaymentPointer>(&json).unwrap(), p);
        assert!(serde_json::from_str::<PaymentPointer>("\"example.com\"").is_err());
    }

    #[test]
    fn invalid_pointers() {
        use PaymentPointerError::*;
        let cases: &[(&str, PaymentPointerError)] = &[
            ("example.com", MissingDollar),
            ("", MissingDollar),
            ("https://example.com", MissingDollar),
            ("$", MissingHost),
            ("$/alice", MissingHost),
            ("$exämple.com", NonAscii),
            ("$example.com/ä", NonAscii),
            ("$alice@example.com", UserInfo),
            ("$alice:pw@example.com/x", UserInfo),
            ("$example.com:443", Port),
            ("$example.com:8080/alice", Port),
            ("$[::1]:443", Port),
            ("$example.com?x=1", Query),
            ("$example.com/a?", Query),
            ("$example.com#frag", Fragment),
            ("$example.com/a#", Fragment),
            ("$exa mple.com", InvalidCharacter(' ')),
            ("$example.com/a b", InvalidCharacter(' ')),
            ("$example.com\\alice", InvalidCharacter('\\')),
            ("$example.com/a\\b", InvalidCharacter('\\')),
            ("$example.com/a\"b", InvalidCharacter('"')),
            ("$example.com/a<b", InvalidCharacter('<')),
            ("$example.com\t", InvalidCharacter('\t')),
            (" $example.com", MissingDollar),
            ("$example.com/%zz", InvalidPercentEncoding),
            ("$example.com/%2", InvalidPercentEncoding),
            ("$example.com/..", DotSegment),
            ("$example.com/a/../b", DotSegment),
            ("$example.com/./b", DotSegment),
            ("$example.com/%2E%2e", DotSegment),
            ("$example.com/.%2e/x", DotSegment),
        ];
        for (input, err) in cases {
            assert_eq!(PaymentPointer::parse(input), Err(*err), "{input:?}");
        }
        // Hosts the url crate refuses, each for its own reason.
        let refused: &[(&str, url::ParseError)] = &[
            ("$[::1", url::ParseError::InvalidIpv6Address),
            ("$[zz]", url::ParseError::InvalidIpv6Address),
            ("$exa%00mple.com", url::ParseError::IdnaError),
            ("$xn--a", url::ParseError::IdnaError),
            // A soft hyphen maps to nothing under IDNA: the host is empty only after mapping.
            ("$%C2%AD", url::ParseError::EmptyHost),
            ("$%C2%AD/alice", url::ParseError::EmptyHost),
        ];
        for (input, err) in refused {
            assert_eq!(
                PaymentPointer::parse(input),
                Err(InvalidHost(*err)),
                "{input:?}"
            );
        }
        assert_eq!(PaymentPointer::parse("$a..b%"), Err(InvalidPercentEncoding));
    }

    #[test]
    fn http_only_when_allowed_and_under_the_same_rules() {
        let http = "http://127.0.0.1:8080/shop";
        assert_eq!(resolve(http), Err(PaymentPointerError::NotHttps));
        let url = resolve_allowing_http(http, true).unwrap();
        assert_eq!(url.as_str(), http);
        assert_eq!(
            resolve_allowing_http("ftp://example.com/x", true),
            Err(PaymentPointerError::NotHttps)
        );
        assert_eq!(
            resolve_allowing_http("http://u:p@example.com/x", true),
            Err(PaymentPointerError::UserInfo)
        );
        assert_eq!(
            resolve_allowing_http("http://example.com/x?a=1", true),
            Err(PaymentPointerError::Query)
        );
        // Pointers stay https whatever the flag.
        let pointer = resolve_allowing_http("$example.com/bob", true).unwrap();
        assert_eq!(pointer.scheme(), "https");
    }

    #[test]
    fn raw_urls() {
        use PaymentPointerError::*;
        assert_eq!(
            resolve("https://example.com/spsp/alice").unwrap().as_str(),
            "https://example.com/spsp/alice"
        );
        assert_eq!(
            resolve("https://localhost:8443/spsp").unwrap().as_str(),
            "https://localhost:8443/spsp"
        );
        let cases: &[(&str, PaymentPointerError)] = &[
            ("http://example.com/alice", NotHttps),
            ("ftp://example.com", NotHttps),
            ("mailto:alice@example.com", NotHttps),
            ("https://user@example.com/", UserInfo),
            ("https://user:pw@example.com/", UserInfo),
            ("https://example.com/?a=1", Query),
            ("https://example.com/#x", Fragment),
            ("https://exämple.com/", NonAscii),
            ("https://example.com/a b", InvalidCharacter(' ')),
            ("https://example.com/\n", InvalidCharacter('\n')),
            (
                "example.com/alice",
                InvalidUrl(url::ParseError::RelativeUrlWithoutBase),
            ),
            ("https://", InvalidUrl(url::ParseError::EmptyHost)),
            ("https:///", InvalidUrl(url::ParseError::EmptyHost)),
            ("https://%C2%AD/", InvalidUrl(url::ParseError::EmptyHost)),
            ("$example.com:1", Port),
        ];
        for (input, err) in cases {
            assert_eq!(resolve(input), Err(*err), "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trip(
            // Hyphens are left out: labels such as "xn--a" are (correctly) refused by IDNA.
            labels in proptest::collection::vec("[a-z0-9]{1,12}", 1..4),
            tld in "[a-z]{2,6}",
            segments in proptest::collection::vec("[A-Za-z0-9_~!$&'()*+,;=:@-]{1,12}", 0..4),
        ) {
            let host = format!("{}.{tld}", labels.join("."));
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            let text = format!("${host}{path}");
            let p = PaymentPointer::parse(&text).unwrap();
            prop_assert_eq!(p.to_string(), text.clone());
            prop_assert_eq!(PaymentPointer::parse(&p.to_string()), Ok(p.clone()));
            let want = if path.is_empty() { WELL_KNOWN_PATH.to_owned() } else { path };
            prop_assert_eq!(p.endpoint().path(), want.as_str());
            prop_assert_eq!(p.endpoint().scheme(), "https");
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = PaymentPointer::parse(&s);
            let _ = PaymentPointer::parse(&format!("${s}"));
            let _ = resolve(&s);
            let _ = resolve(&format!("https://{s}"));
        }

        #[test]
        fn parsed_pointers_are_strict(s in "[ -~]{0,30}") {
            if let Ok(p) = PaymentPointer::parse(&format!("${s}")) {
                let url = p.endpoint();
                prop_assert_eq!(url.scheme(), "https");
                prop_assert!(url.port().is_none());
                prop_assert!(url.username().is_empty() && url.password().is_none());
                prop_assert!(url.query().is_none() && url.fragment().is_none());
                prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()));
            }
            // Raw URLs rely on the same parser guarantee for their host.
            if let Ok(url) = resolve(&format!("https://{s}")) {
                prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()));
            }
        }
    }
}
