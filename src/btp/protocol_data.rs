//! BTP sub-protocol data (RFC 23 "ProtocolData"): the named, typed entries every BTP frame
//! carries, their OER form, and the two well-known uses: ILP packets under `ilp`, and the
//! `auth` / `auth_username` / `auth_token` handshake that opens a connection.
//!
//! Duplicate protocol names are not a decoding error (the JS codec keeps them), but the auth
//! handshake refuses them, as RFC 23 asks.

use bytes::{BufMut, Bytes};
use std::fmt;
use thiserror::Error;

use super::frame::FrameError;
use crate::oer::{var_octet_string_size, var_uint_size, OerWrite, Reader};

/// Reserved name for ILP packets.
pub const PROTOCOL_ILP: &str = "ilp";
/// Primary entry of the auth Message (empty octet-stream).
pub const PROTOCOL_AUTH: &str = "auth";
/// Account name in the auth Message (UTF-8 text).
pub const PROTOCOL_AUTH_USERNAME: &str = "auth_username";
/// Shared secret in the auth Message (UTF-8 text).
pub const PROTOCOL_AUTH_TOKEN: &str = "auth_token";

/// Smallest encoded entry: empty name, content type, empty data.
const MIN_ENTRY_LEN: usize = 3;

/// The content-type byte of an entry. Any value 0..=255 is legal on the wire; the named ones
/// only tell debug tools how to display the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentType(pub u8);

impl ContentType {
    pub const OCTET_STREAM: ContentType = ContentType(0);
    pub const TEXT_PLAIN_UTF8: ContentType = ContentType(1);
    pub const APPLICATION_JSON: ContentType = ContentType(2);
}

/// One sub-protocol entry. The name is private because it must be ASCII (IA5String): the
/// decoder refuses anything else, so [`ProtocolDataEntry::new`] does too, and the encoder can
/// never write a frame we would not read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolDataEntry {
    protocol_name: String,
    pub content_type: ContentType,
    pub data: Bytes,
}

impl ProtocolDataEntry {
    /// An entry; [`FrameError::NonAscii`] if `protocol_name` is not ASCII.
    pub fn new(
        protocol_name: impl Into<String>,
        content_type: ContentType,
        data: impl Into<Bytes>,
    ) -> Result<Self, FrameError> {
        let protocol_name = protocol_name.into();
        if !protocol_name.is_ascii() {
            return Err(FrameError::NonAscii("protocolName"));
        }
        Ok(Self::known(protocol_name, content_type, data.into()))
    }

    /// For the names this module defines, which are ASCII by construction.
    fn known(protocol_name: impl Into<String>, content_type: ContentType, data: Bytes) -> Self {
        ProtocolDataEntry {
            protocol_name: protocol_name.into(),
            content_type,
            data,
        }
    }

    pub fn protocol_name(&self) -> &str {
        &self.protocol_name
    }

    fn encoded_len(&self) -> usize {
        var_octet_string_size(self.protocol_name.len()) + 1 + var_octet_string_size(self.data.len())
    }
}

/// The ordered list of entries. The first one is the primary sub-protocol: it decides what
/// the request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolData(pub Vec<ProtocolDataEntry>);

impl ProtocolData {
    pub fn new() -> Self {
        ProtocolData(Vec::new())
    }

    /// The entry that decides what a request asks for.
    pub fn primary(&self) -> Option<&ProtocolDataEntry> {
        self.0.first()
    }

    /// The first entry with this name.
    pub fn get(&self, protocol_name: &str) -> Option<&ProtocolDataEntry> {
        self.0.iter().find(|e| e.protocol_name == protocol_name)
    }

    /// The ILP packet bytes, if an `ilp` entry is present.
    pub fn ilp(&self) -> Option<&Bytes> {
        self.get(PROTOCOL_ILP).map(|e| &e.data)
    }

    pub fn push(&mut self, entry: ProtocolDataEntry) {
        self.0.push(entry);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ProtocolDataEntry> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A single `ilp` entry, octet-stream, as ilp-plugin-btp sends ILP packets.
    pub fn ilp_packet(packet: impl Into<Bytes>) -> Self {
        ProtocolData(vec![ProtocolDataEntry::known(
            PROTOCOL_ILP,
            ContentType::OCTET_STREAM,
            packet.into(),
        )])
    }

    /// The client's auth entries in ilp-plugin-btp's order: `auth` (empty octet-stream), then
    /// `auth_username` and `auth_token` as UTF-8 text. The username entry is always present
    /// (possibly empty), exactly like the JS client.
    pub fn auth(username: &str, token: &str) -> Self {
        ProtocolData(vec![
            ProtocolDataEntry::known(PROTOCOL_AUTH, ContentType::OCTET_STREAM, Bytes::new()),
            ProtocolDataEntry::known(
                PROTOCOL_AUTH_USERNAME,
                ContentType::TEXT_PLAIN_UTF8,
                Bytes::copy_from_slice(username.as_bytes()),
            ),
            ProtocolDataEntry::known(
                PROTOCOL_AUTH_TOKEN,
                ContentType::TEXT_PLAIN_UTF8,
                Bytes::copy_from_slice(token.as_bytes()),
            ),
        ])
    }

    pub(crate) fn encoded_len(&self) -> usize {
        var_uint_size(self.0.len() as u64)
            + self
                .0
                .iter()
                .map(ProtocolDataEntry::encoded_len)
                .sum::<usize>()
    }

    pub(crate) fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_var_uint(self.0.len() as u64);
        for e in &self.0 {
            buf.put_var_octet_string(e.protocol_name.as_bytes());
            buf.put_u8(e.content_type.0);
            buf.put_var_octet_string(&e.data);
        }
    }

    /// Reads the count and entries; `share` turns a borrowed slice into `Bytes` (a copy, or a
    /// zero-copy slice of the frame buffer).
    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
        share: &dyn Fn(&[u8]) -> Bytes,
    ) -> Result<Self, FrameError> {
        // Each entry takes at least three bytes (two empty strings and the content type), so
        // a larger count cannot be honest; refusing it early keeps the allocation bounded.
        let count = r.read_count(MIN_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let protocol_name = read_ia5(r, "protocolName")?;
            let content_type = ContentType(r.read_u8()?);
            let data = share(r.read_var_octet_string()?);
            entries.push(ProtocolDataEntry {
                protocol_name,
                content_type,
                data,
            });
        }
        Ok(ProtocolData(entries))
    }
}

impl From<Vec<ProtocolDataEntry>> for ProtocolData {
    fn from(entries: Vec<ProtocolDataEntry>) -> Self {
        ProtocolData(entries)
    }
}

impl<'a> IntoIterator for &'a ProtocolData {
    type Item = &'a ProtocolDataEntry;
    type IntoIter = std::slice::Iter<'a, ProtocolDataEntry>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Reads a length-prefixed IA5String (7-bit ASCII).
pub(crate) fn read_ia5(r: &mut Reader<'_>, field: &'static str) -> Result<String, FrameError> {
    let bytes = r.read_var_octet_string()?;
    if !bytes.is_ascii() {
        return Err(FrameError::NonAscii(field));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Why an auth Message was refused (before the application even sees the credentials).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("the first frame on a BTP connection must be the auth Message")]
    NotAMessage,
    #[error("the primary sub-protocol of the auth Message must be 'auth'")]
    MissingAuth,
    #[error("the auth Message has no 'auth_token' entry")]
    MissingToken,
    #[error("sub-protocol '{0}' appears more than once")]
    DuplicateProtocol(String),
    #[error("'{0}' is not valid UTF-8")]
    NotUtf8(&'static str),
}

/// Credentials the client presented; the application decides whether they are good (compare
/// the token in constant time, e.g. with `subtle`).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCredentials {
    /// `auth_username`, when present (ilp-plugin-btp always sends it, possibly empty).
    pub username: Option<String>,
    pub token: String,
}

impl AuthCredentials {
    /// Extracts the credentials of an auth Message's protocol data.
    pub fn from_protocol_data(pd: &ProtocolData) -> Result<Self, AuthError> {
        match pd.primary() {
            Some(e) if e.protocol_name == PROTOCOL_AUTH => {}
            _ => return Err(AuthError::MissingAuth),
        }
        for (i, e) in pd.iter().enumerate() {
            if pd.0[..i].iter().any(|p| p.protocol_name == e.protocol_name) {
                return Err(AuthError::DuplicateProtocol(e.protocol_name.clone()));
            }
        }
        let token = pd.get(PROTOCOL_AUTH_TOKEN).ok_or(AuthError::MissingToken)?;
        let token = std::str::from_utf8(&token.data)
            .map_err(|_| AuthError::NotUtf8(PROTOCOL_AUTH_TOKEN))?
            .to_owned();
        let username = match pd.get(PROTOCOL_AUTH_USERNAME) {
            Some(e) => Some(
                std::str::from_utf8(&e.data)
                    .map_err(|_| AuthError::NotUtf8(PROTOCOL_AUTH_USERNAME))?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(AuthCredentials { username, token })
    }
}

impl fmt::Debug for AuthCredentials {
    // The token is a secret; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCredentials")
            .field("username", &self.username)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oer::OerError;

    fn decode(bytes: &[u8]) -> Result<ProtocolData, FrameError> {
        let mut r = Reader::new(bytes);
        let pd = ProtocolData::decode_from(&mut r, &Bytes::copy_from_slice)?;
        r.finish()?;
        Ok(pd)
    }

    fn encode(pd: &ProtocolData) -> Vec<u8> {
        let mut v = Vec::new();
        pd.encode_to(&mut v);
        assert_eq!(v.len(), pd.encoded_len());
        v
    }

    #[test]
    fn empty_list_is_count_zero() {
        assert_eq!(encode(&ProtocolData::new()), [1, 0]);
        assert_eq!(decode(&[1, 0]).unwrap(), ProtocolData::new());
    }

    #[test]
    fn lookups() {
        let pd = ProtocolData(vec![
            ProtocolDataEntry::new("ilp", ContentType::OCTET_STREAM, &b"\x0c"[..]).unwrap(),
            ProtocolDataEntry::new("foo", ContentType(9), &b"a"[..]).unwrap(),
            ProtocolDataEntry::new("foo", ContentType(9), &b"b"[..]).unwrap(),
        ]);
        assert_eq!(pd.primary().unwrap().protocol_name(), "ilp");
        assert_eq!(pd.ilp().unwrap().as_ref(), b"\x0c");
        assert_eq!(pd.get("foo").unwrap().data.as_ref(), b"a");
        assert!(pd.get("bar").is_none());
        assert_eq!(pd.len(), 3);
        assert_eq!((&pd).into_iter().count(), 3);
        assert_eq!(decode(&encode(&pd)).unwrap(), pd);
    }

    #[test]
    fn decode_errors() {
        assert_eq!(decode(&[]), Err(FrameError::Oer(OerError::UnexpectedEnd)));
        assert_eq!(
            decode(&[2, 0, 1]),
            Err(FrameError::Oer(OerError::NonCanonicalVarUint))
        );
        assert_eq!(
            decode(&[1, 1]),
            Err(FrameError::Oer(OerError::CountTooLarge(1)))
        );
        // Two entries need at least six bytes; five are left.
        assert_eq!(
            decode(&[1, 2, 1, b'a', 0, 0, 0]),
            Err(FrameError::Oer(OerError::CountTooLarge(2)))
        );
        // A count that does not fit in 64 bits is refused before any allocation.
        assert_eq!(
            decode(&[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::Oer(OerError::CountTooLarge(u64::MAX)))
        );
        // Exactly enough bytes for the minimum entries is accepted.
        assert_eq!(decode(&[1, 2, 0, 0, 0, 0, 0, 0]).unwrap().len(), 2);
        assert_eq!(
            decode(&[1, 1, 1, 0xc3, 0, 0]),
            Err(FrameError::NonAscii("protocolName"))
        );
        assert_eq!(
            decode(&[1, 1, 1, b'a', 0, 2, 0]),
            Err(FrameError::Oer(OerError::UnexpectedEnd))
        );
        assert_eq!(
            decode(&[1, 1, 1, b'a', 0, 0, 9]),
            Err(FrameError::Oer(OerError::TrailingBytes(1)))
        );
    }

    #[test]
    fn non_ascii_names_are_unrepresentable() {
        assert_eq!(
            ProtocolDataEntry::new("caf\u{e9}", ContentType(0), Bytes::new()),
            Err(FrameError::NonAscii("protocolName"))
        );
        // Whatever can be built, the decoder reads back.
        let e = ProtocolDataEntry::new("\x7f~ ", ContentType(0), Bytes::new()).unwrap();
        let pd = ProtocolData(vec![e]);
        assert_eq!(decode(&encode(&pd)).unwrap(), pd);
    }

    #[test]
    fn auth_round_trip() {
        let pd = ProtocolData::auth("alice", "secret");
        let names: Vec<_> = pd.iter().map(ProtocolDataEntry::protocol_name).collect();
        assert_eq!(names, ["auth", "auth_username", "auth_token"]);
        assert_eq!(pd.0[0].content_type, ContentType::OCTET_STREAM);
        assert_eq!(pd.0[1].content_type, ContentType::TEXT_PLAIN_UTF8);
        assert_eq!(pd.0[2].content_type, ContentType::TEXT_PLAIN_UTF8);
        let creds = AuthCredentials::from_protocol_data(&pd).unwrap();
        assert_eq!(creds.username.as_deref(), Some("alice"));
        assert_eq!(creds.token, "secret");
        assert!(!format!("{creds:?}").contains("secret"));
    }

    #[test]
    fn auth_errors() {
        let entry =
            |n: &str, d: &'static [u8]| ProtocolDataEntry::new(n, ContentType(1), d).unwrap();
        let no_auth = ProtocolData(vec![entry("auth_token", b"x")]);
        assert_eq!(
            AuthCredentials::from_protocol_data(&no_auth),
            Err(AuthError::MissingAuth)
        );
        assert_eq!(
            AuthCredentials::from_protocol_data(&ProtocolData::new()),
            Err(AuthError::MissingAuth)
        );
        let no_token = ProtocolData(vec![entry("auth", b""), entry("auth_username", b"a")]);
        assert_eq!(
            AuthCredentials::from_protocol_data(&no_token),
            Err(AuthError::MissingToken)
        );
        let dup = ProtocolData(vec![
            entry("auth", b""),
            entry("auth_token", b"a"),
            entry("auth_token", b"b"),
        ]);
        assert_eq!(
            AuthCredentials::from_protocol_data(&dup),
            Err(AuthError::DuplicateProtocol("auth_token".into()))
        );
        let bad_token = ProtocolData(vec![entry("auth", b""), entry("auth_token", b"\xff")]);
        assert_eq!(
            AuthCredentials::from_protocol_data(&bad_token),
            Err(AuthError::NotUtf8("auth_token"))
        );
        let bad_user = ProtocolData(vec![
            entry("auth", b""),
            entry("auth_token", b""),
            entry("auth_username", b"\xff"),
        ]);
        assert_eq!(
            AuthCredentials::from_protocol_data(&bad_user),
            Err(AuthError::NotUtf8("auth_username"))
        );
        // No username is fine: RFC 23 only requires the token.
        let token_only = ProtocolData(vec![entry("auth", b""), entry("auth_token", b"")]);
        let creds = AuthCredentials::from_protocol_data(&token_only).unwrap();
        assert_eq!(creds.username, None);
        assert_eq!(creds.token, "");
    }
}
