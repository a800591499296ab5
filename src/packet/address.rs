//! ILP addresses (RFC 15): validated, immutable, cheap to clone (`Bytes`-backed so a Prepare's
//! destination can be handed out without copying).
//!
//! Grammar: `scheme ( "." segment )+`, scheme one of `g private example peer self test test1
//! test2 test3 local`, segments of `[A-Za-z0-9_~-]+`, at most 1023 bytes in all. The check is a
//! hand-written byte loop: a regex costs more than the whole rest of a Prepare parse.

use bytes::Bytes;
use std::fmt;
use thiserror::Error;

/// Longest address RFC 15 allows, in bytes.
pub const MAX_ADDRESS_LEN: usize = 1023;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is {0} bytes; the maximum is 1023")]
    TooLong(usize),
    #[error("address has an unknown scheme")]
    UnknownScheme,
    #[error("address needs at least one segment after the scheme")]
    NoSegments,
    #[error("address has an empty segment")]
    EmptySegment,
    #[error("address has an invalid character at byte {0}")]
    InvalidCharacter(usize),
}

const SCHEMES: [&[u8]; 10] = [
    b"g", b"private", b"example", b"peer", b"self", b"test", b"test1", b"test2", b"test3", b"local",
];

/// Byte classes for validation: 0 invalid, 1 segment character, 2 separator.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() || b == b'_' || b == b'~' || b == b'-' {
            1
        } else if b == b'.' {
            2
        } else {
            0
        };
        i += 1;
    }
    t
};

#[inline]
const fn is_segment_byte(b: u8) -> bool {
    CLASS[b as usize] == 1
}

/// Checks `bytes` against RFC 15.
#[inline]
pub fn validate_address(bytes: &[u8]) -> Result<(), AddressError> {
    if bytes.is_empty() {
        return Err(AddressError::Empty);
    }
    if bytes.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong(bytes.len()));
    }
    let scheme_end = bytes.iter().position(|b| *b == b'.').unwrap_or(bytes.len());
    if !SCHEMES.contains(&&bytes[..scheme_end]) {
        return Err(AddressError::UnknownScheme);
    }
    if scheme_end == bytes.len() {
        return Err(AddressError::NoSegments);
    }
    // One pass over the rest: `prev` is the class of the previous byte, starting as a separator
    // (the dot after the scheme), so an empty segment is two separators in a row.
    let mut prev = 2u8;
    let mut bad = false;
    for b in &bytes[scheme_end + 1..] {
        let c = CLASS[*b as usize];
        bad |= c == 0 || (c == 2 && prev == 2);
        prev = c;
    }
    if bad || prev == 2 {
        // Slow path only for invalid input: find what exactly is wrong.
        let mut prev = 2u8;
        for (i, b) in bytes.iter().enumerate().skip(scheme_end + 1) {
            match CLASS[*b as usize] {
                0 => return Err(AddressError::InvalidCharacter(i)),
                2 if prev == 2 => return Err(AddressError::EmptySegment),
                c => prev = c,
            }
        }
        return Err(AddressError::EmptySegment);
    }
    Ok(())
}

/// Checks one address segment (as appended for a child account).
pub fn validate_segment(segment: &str) -> Result<(), AddressError> {
    if segment.is_empty() {
        return Err(AddressError::EmptySegment);
    }
    match segment.bytes().position(|b| !is_segment_byte(b)) {
        Some(i) => Err(AddressError::InvalidCharacter(i)),
        None => Ok(()),
    }
}

/// A valid ILP address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(Bytes);

impl Address {
    /// Validates and wraps `bytes` without copying.
    #[inline]
    pub fn from_bytes(bytes: Bytes) -> Result<Self, AddressError> {
        validate_address(&bytes)?;
        Ok(Address(bytes))
    }

    /// For bytes already validated by the caller (a packet parser that ran
    /// [`validate_address`] on the same slice).
    #[inline]
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        Address(bytes)
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // Validation admits only ASCII, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scheme (first segment), e.g. `g` or `test`.
    pub fn scheme(&self) -> &str {
        self.as_str().split('.').next().unwrap_or_default()
    }

    /// All dot-separated segments, scheme first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.as_str().split('.')
    }

    /// `self` with `.segment` appended.
    pub fn with_suffix(&self, segment: &str) -> Result<Address, AddressError> {
        validate_segment(segment)?;
        let mut s = String::with_capacity(self.len() + 1 + segment.len());
        s.push_str(self.as_str());
        s.push('.');
        s.push_str(segment);
        Address::try_from(s)
    }

    /// True when `self` equals `prefix` or starts with `prefix` followed by a `.`.
    pub fn starts_with_segment_prefix(&self, prefix: &str) -> bool {
        let s = self.as_str();
        s == prefix
            || (s.len() > prefix.len()
                && s.as_bytes()[prefix.len()] == b'.'
                && s.starts_with(prefix))
    }

    /// The underlying bytes (cheap clone).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl TryFrom<&str> for Address {
    type Error = AddressError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        validate_address(s.as_bytes())?;
        Ok(Address(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate_address(s.as_bytes())?;
        Ok(Address(Bytes::from(s)))
    }
}

impl TryFrom<&[u8]> for Address {
    type Error = AddressError;
    fn try_from(s: &[u8]) -> Result<Self, Self::Error> {
        validate_address(s)?;
        Ok(Address(Bytes::copy_from_slice(s)))
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::try_from(s)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Address {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:?})", self.as_str())
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::try_from(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_addresses() {
        for a in [
            "g.acme.bob",
            "test.x",
            "test1.x",
            "test3.a-b_c~d.E9",
            "peer.config",
            "private.a",
            "example.us.bob",
            "self.x",
            "local.x",
        ] {
            let addr = Address::try_from(a).unwrap();
            assert_eq!(addr.as_str(), a);
        }
        let long = format!("g.{}", "a".repeat(1021));
        assert_eq!(long.len(), 1023);
        assert!(Address::try_from(long.as_str()).is_ok());
    }

    #[test]
    fn invalid_addresses() {
        let cases: &[(&str, AddressError)] = &[
            ("", AddressError::Empty),
            ("g", AddressError::NoSegments),
            ("x", AddressError::UnknownScheme),
            ("test4.x", AddressError::UnknownScheme),
            ("G.x", AddressError::UnknownScheme),
            ("g.", AddressError::EmptySegment),
            ("g..x", AddressError::EmptySegment),
            ("g.x.", AddressError::EmptySegment),
            ("g.a b", AddressError::InvalidCharacter(3)),
            ("g.a/b", AddressError::InvalidCharacter(3)),
            ("g.é", AddressError::InvalidCharacter(2)),
        ];
        for (a, e) in cases {
            assert_eq!(Address::try_from(*a), Err(*e), "{a:?}");
        }
        let long = format!("g.{}", "a".repeat(1022));
        assert_eq!(
            Address::try_from(long.as_str()),
            Err(AddressError::TooLong(1024))
        );
    }

    #[test]
    fn helpers() {
        let a = Address::try_from("g.us.acme").unwrap();
        assert_eq!(a.scheme(), "g");
        assert_eq!(a.segments().collect::<Vec<_>>(), ["g", "us", "acme"]);
        assert_eq!(a.with_suffix("bob").unwrap().as_str(), "g.us.acme.bob");
        assert_eq!(a.with_suffix("b.c"), Err(AddressError::InvalidCharacter(1)));
        assert!(a.starts_with_segment_prefix("g.us"));
        assert!(a.starts_with_segment_prefix("g.us.acme"));
        assert!(!a.starts_with_segment_prefix("g.u"));
        assert!(!a.starts_with_segment_prefix("g.us.acme.x"));
    }

    proptest! {
        #[test]
        fn generated_addresses_validate(
            scheme in prop::sample::select(&["g", "test", "private", "example", "peer"][..]),
            segs in prop::collection::vec("[A-Za-z0-9_~-]{1,12}", 1..6)
        ) {
            let s = format!("{scheme}.{}", segs.join("."));
            prop_assert!(Address::try_from(s.as_str()).is_ok());
        }

        #[test]
        fn validation_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = validate_address(&bytes);
        }
    }
}
