//! Stateless receiving credentials: what an SPSP server hands a sender (a destination address
//! and a shared secret), and how the node that fulfills the sender's packets finds that secret
//! again from the destination alone, without remembering anything per connection.
//!
//! The last segment of the destination is a *token*: the connection's parameters (protocol,
//! the receipt nonce and secret the sender asked for, an optional tag, when it was issued),
//! sealed with AES-256-GCM under a key bound to the receiving account, then base64url without
//! padding (the characters an ILP address segment allows). The shared secret is an HMAC of the
//! token under a generator derived from the node's receiver secret, so it never travels sealed
//! and cannot be recomputed without that secret. RFC 39 requires a receipt secret carried in
//! the address to be encrypted; it is.
//!
//! Keys, all from the node's 32-byte receiver secret `rs`:
//! - sealing: `HMAC(HMAC(rs, "ilp_connector_receiver_token"), account id)`, one per account, so a
//!   token issued for one account opens for no other;
//! - STREAM shared secrets: `HMAC(HMAC(rs, "ilp_stream_shared_secret"), token)` (the generator
//!   string of interledger-rs's STREAM server; only this node needs to agree with itself);
//! - PSK2 shared secrets: the same with `"ilp_psk2_generation"` (ilp-protocol-psk2's receiver).
//!
//! The IV of each seal is synthetic: the first 12 bytes of an HMAC, under the account's sealing
//! key, of the caller's randomness and the plaintext. Fresh randomness (the OS's) makes IVs
//! unique for billions of tokens under one key; should the randomness ever repeat, two tokens
//! still share an IV only if they seal the same plaintext, which reveals nothing (they are the
//! same token), instead of exposing the receipt secrets of both.

use super::crypto::{hmac_sha256, sha256, StreamKeys, IV_LEN};
use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{Address, AddressError};
use crate::spsp::ReceiptSetup;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::fmt;
use thiserror::Error;

/// Version byte of the token's plaintext.
const TOKEN_VERSION: u8 = 1;
/// Longest tag a token carries, in bytes.
pub const MAX_TAG_LEN: usize = 64;

const FLAG_PSK2: u8 = 1;
const FLAG_RECEIPTS: u8 = 2;
const FLAG_TAG: u8 = 4;

/// The protocol a sender was given credentials for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Stream,
    Psk2,
}

/// What a connection is issued with, besides its account.
#[derive(Debug, Clone, Default)]
pub struct IssueOptions<'a> {
    pub psk2: bool,
    /// The receipt nonce and secret the sender sent with its SPSP query.
    pub receipts: Option<ReceiptSetup>,
    /// Names the connection in the receiving account's payment notifications (an invoice id).
    pub tag: Option<&'a str>,
}

/// A sender's credentials: pay `destination` with STREAM (or PSK2) keyed by `shared_secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub destination: Address,
    pub shared_secret: [u8; 32],
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// A connection found from a Prepare's destination.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    pub protocol: Protocol,
    pub shared_secret: [u8; 32],
    /// Names the connection in records and notifications: the first 16 bytes of the token's
    /// SHA-256.
    pub id: [u8; 16],
    pub receipts: Option<ReceiptSetup>,
    pub tag: Option<String>,
    /// Unix seconds.
    pub issued_at: u32,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("protocol", &self.protocol)
            .field("id", &self.id)
            .field("receipts", &self.receipts.is_some())
            .field("tag", &self.tag)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be issued, or a destination names no connection of ours.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("the tag is {0} bytes long; at most {MAX_TAG_LEN}")]
    TagTooLong(usize),
    #[error("the receiver's address with a token is not an ILP address: {0}")]
    Address(#[from] AddressError),
    #[error("the destination has no connection token")]
    NoToken,
    #[error("the connection token is not base64url")]
    Encoding,
    #[error("the connection token was not issued here for this account")]
    Foreign,
    #[error("the connection token is of version {0}, not {TOKEN_VERSION}")]
    Version(u8),
    #[error("the connection token is malformed: {0}")]
    Malformed(#[from] OerError),
}

/// The keys of one node's receivers.
pub struct ReceiverKeys {
    token: [u8; 32],
    stream: [u8; 32],
    psk2: [u8; 32],
}

impl fmt::Debug for ReceiverKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReceiverKeys(..)")
    }
}

impl ReceiverKeys {
    /// Derives every key from the node's receiver secret.
    pub fn new(receiver_secret: &[u8; 32]) -> Self {
        ReceiverKeys {
            token: hmac_sha256(receiver_secret, b"ilp_connector_receiver_token"),
            stream: hmac_sha256(receiver_secret, b"ilp_stream_shared_secret"),
            psk2: hmac_sha256(receiver_secret, b"ilp_psk2_generation"),
        }
    }

    fn sealing_key(&self, account: &str) -> [u8; 32] {
        hmac_sha256(&self.token, account.as_bytes())
    }

    /// The AEAD of `account`'s tokens (its fulfillment half is unused).
    fn sealer(&self, account: &str) -> StreamKeys {
        let key = self.sealing_key(account);
        StreamKeys::from_keys(&key, &key)
    }

    fn shared_secret(&self, protocol: Protocol, token: &str) -> [u8; 32] {
        let generator = match protocol {
            Protocol::Stream => &self.stream,
            Protocol::Psk2 => &self.psk2,
        };
        hmac_sha256(generator, token.as_bytes())
    }

    /// Credentials for a new connection to `account`, whose address is `receiver`: the
    /// destination is `receiver` plus a token segment. `random` must be fresh randomness from
    /// the OS; the IV is derived from it and the token's contents.
    pub fn issue(
        &self,
        account: &str,
        receiver: &Address,
        options: &IssueOptions<'_>,
        issued_at: u32,
        random: &[u8; IV_LEN],
    ) -> Result<Credentials, TokenError> {
        let mut flags = 0;
        let mut plaintext = Vec::with_capacity(6 + 48 + 1 + MAX_TAG_LEN);
        if options.psk2 {
            flags |= FLAG_PSK2;
        }
        if options.receipts.is_some() {
            flags |= FLAG_RECEIPTS;
        }
        if let Some(tag) = options.tag {
            if tag.len() > MAX_TAG_LEN {
                return Err(TokenError::TagTooLong(tag.len()));
            }
            flags |= FLAG_TAG;
        }
        plaintext.push(TOKEN_VERSION);
        plaintext.push(flags);
        plaintext.extend_from_slice(&issued_at.to_be_bytes());
        if let Some(receipts) = &options.receipts {
            plaintext.extend_from_slice(&receipts.nonce);
            plaintext.extend_from_slice(&receipts.secret);
        }
        if let Some(tag) = options.tag {
            plaintext.put_var_octet_string(tag.as_bytes());
        }
        let mut mac_input = Vec::with_capacity(IV_LEN + plaintext.len());
        mac_input.extend_from_slice(random);
        mac_input.extend_from_slice(&plaintext);
        let mut iv = [0; IV_LEN];
        iv.copy_from_slice(&hmac_sha256(&self.sealing_key(account), &mac_input)[..IV_LEN]);
        // Sealing fails only past STREAM's plaintext limit (about 32 KB); a token's plaintext
        // is at most 119 bytes (196 characters sealed and encoded).
        let sealed = self
            .sealer(account)
            .encrypt(&iv, &plaintext)
            .expect("a token's plaintext is far below the sealing limit");
        let token = URL_SAFE_NO_PAD.encode(sealed);
        let destination = Address::try_from(format!("{receiver}.{token}"))?;
        let protocol = if options.psk2 {
            Protocol::Psk2
        } else {
            Protocol::Stream
        };
        Ok(Credentials {
            destination,
            shared_secret: self.shared_secret(protocol, &token),
        })
    }

    /// The connection that `destination` names, for a Prepare that reached `account`: read
    /// from the destination's last segment, so that a segment a sender inserts before the
    /// token (`@interledger/pay` probes `<receiver>._.<token>`) does not matter.
    pub fn open(&self, account: &str, destination: &str) -> Result<Connection, TokenError> {
        let token = destination
            .rsplit_once('.')
            .map(|(_, last)| last)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::NoToken)?;
        let sealed = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Encoding)?;
        let plaintext = self
            .sealer(account)
            .decrypt(&sealed)
            .map_err(|_| TokenError::Foreign)?;
        let mut r = Reader::new(&plaintext);
        let version = r.read_u8()?;
        if version != TOKEN_VERSION {
            return Err(TokenError::Version(version));
        }
        let flags = r.read_u8()?;
        let issued_at = r.read_u32()?;
        let receipts = if flags & FLAG_RECEIPTS != 0 {
            let nonce = *r.read_array::<16>()?;
            let secret = *r.read_array::<32>()?;
            Some(ReceiptSetup { nonce, secret })
        } else {
            None
        };
        let tag = if flags & FLAG_TAG != 0 {
            Some(r.read_var_str()?.to_owned())
        } else {
            None
        };
        r.finish()?;
        let protocol = if flags & FLAG_PSK2 != 0 {
            Protocol::Psk2
        } else {
            Protocol::Stream
        };
        let digest = sha256(token.as_bytes());
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(Connection {
            protocol,
            shared_secret: self.shared_secret(protocol, token),
            id,
            receipts,
            tag,
            issued_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8) -> ReceiverKeys {
        ReceiverKeys::new(&[byte; 32])
    }

    fn receiver() -> Address {
        Address::try_from("test.node.alice").unwrap()
    }

    fn options(tag: Option<&str>) -> IssueOptions<'_> {
        IssueOptions {
            psk2: false,
            receipts: Some(ReceiptSetup {
                nonce: [3; 16],
                secret: [4; 32],
            }),
            tag,
        }
    }

    #[test]
    fn issued_credentials_open_to_the_same_secret_and_parameters() {
        let k = keys(1);
        let issued = k
            .issue(
                "alice",
                &receiver(),
                &options(Some("inv-7")),
                1_700_000_000,
                &[9; 12],
            )
            .unwrap();
        let destination = issued.destination.as_str();
        let token = destination.strip_prefix("test.node.alice.").unwrap();
        assert!(!token.contains('.'));
        // @interledger/pay treats 24-character tokens apart; ours are never that short.
        assert!(token.len() > 24);
        let opened = k.open("alice", destination).unwrap();
        assert_eq!(opened.shared_secret, issued.shared_secret);
        assert_eq!(opened.protocol, Protocol::Stream);
        assert_eq!(opened.tag.as_deref(), Some("inv-7"));
        assert_eq!(opened.issued_at, 1_700_000_000);
        let receipts = opened.receipts.unwrap();
        assert_eq!((receipts.nonce, receipts.secret), ([3; 16], [4; 32]));
        assert_eq!(&opened.id[..], &sha256(token.as_bytes())[..16]);
        // The secret is the documented derivation, from the token alone.
        let generator = hmac_sha256(&[1; 32], b"ilp_stream_shared_secret");
        assert_eq!(
            issued.shared_secret,
            hmac_sha256(&generator, token.as_bytes())
        );
        // A probe that appends a segment before the token reaches the same connection.
        let probe = format!("test.node.alice._.{token}");
        assert_eq!(
            k.open("alice", &probe).unwrap().shared_secret,
            issued.shared_secret
        );
    }

    #[test]
    fn the_protocol_changes_the_secret_and_plain_tokens_are_short() {
        let k = keys(1);
        let plain = IssueOptions::default();
        let psk2 = IssueOptions {
            psk2: true,
            ..IssueOptions::default()
        };
        let stream = k.issue("alice", &receiver(), &plain, 5, &[1; 12]).unwrap();
        let psk2 = k.issue("alice", &receiver(), &psk2, 5, &[2; 12]).unwrap();
        assert_eq!(
            k.open("alice", psk2.destination.as_str()).unwrap().protocol,
            Protocol::Psk2
        );
        assert_ne!(stream.shared_secret, psk2.shared_secret);
        let opened = k.open("alice", stream.destination.as_str()).unwrap();
        assert_eq!((opened.receipts, opened.tag), (None, None));
        // 12 IV + 16 tag + 6 plaintext bytes, base64url: 46 characters, the shortest token.
        let token = stream.destination.as_str().rsplit('.').next().unwrap();
        assert_eq!(token.len(), 46);
        // The longest: receipts and a 64-byte tag, 147 bytes sealed into 196 characters.
        let tag = "x".repeat(MAX_TAG_LEN);
        let longest = k
            .issue("alice", &receiver(), &options(Some(&tag)), 5, &[3; 12])
            .unwrap();
        let token = longest.destination.as_str().rsplit('.').next().unwrap();
        assert_eq!(token.len(), 196);
    }

    #[test]
    fn a_token_opens_for_no_other_account_or_node_and_tampering_is_caught() {
        let k = keys(1);
        let issued = k
            .issue("alice", &receiver(), &options(None), 5, &[9; 12])
            .unwrap();
        let destination = issued.destination.as_str();
        assert_eq!(k.open("bob", destination), Err(TokenError::Foreign));
        assert_eq!(keys(2).open("alice", destination), Err(TokenError::Foreign));
        let token = destination.rsplit('.').next().unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("test.node.alice.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(k.open("alice", &tampered), Err(TokenError::Foreign));
        assert_eq!(
            k.open("alice", "test.node.alice.a+b"),
            Err(TokenError::Encoding)
        );
        assert_eq!(
            k.open("alice", "test.node.alice."),
            Err(TokenError::NoToken)
        );
        assert_eq!(k.open("alice", "alice"), Err(TokenError::NoToken));
        // Too short to hold an IV and a tag.
        assert_eq!(
            k.open("alice", "test.node.alice.AAAA"),
            Err(TokenError::Foreign)
        );
    }

    #[test]
    fn a_sealed_plaintext_of_another_version_or_shape_is_refused() {
        let k = keys(1);
        let seal = |plaintext: &[u8]| {
            let sealed = k.sealer("alice").encrypt(&[5; 12], plaintext).unwrap();
            format!("test.node.alice.{}", URL_SAFE_NO_PAD.encode(sealed))
        };
        assert_eq!(
            k.open("alice", &seal(&[2, 0, 0, 0, 0, 0])),
            Err(TokenError::Version(2))
        );
        assert_eq!(
            k.open("alice", &seal(&[1, FLAG_RECEIPTS, 0, 0, 0, 0, 1, 2])),
            Err(TokenError::Malformed(OerError::UnexpectedEnd))
        );
        assert!(matches!(
            k.open("alice", &seal(&[1, 0, 0, 0, 0, 0, 7])),
            Err(TokenError::Malformed(_))
        ));
        assert!(k.open("alice", &seal(&[1, 0, 0, 0, 0, 0])).is_ok());
    }

    /// The same randomness with other contents (a misbehaving RNG) still gives another IV.
    #[test]
    fn the_iv_depends_on_the_contents_too() {
        let k = keys(1);
        let iv_of = |tag| {
            let issued = k
                .issue("alice", &receiver(), &options(Some(tag)), 5, &[9; 12])
                .unwrap();
            let token = issued
                .destination
                .as_str()
                .rsplit('.')
                .next()
                .unwrap()
                .to_owned();
            URL_SAFE_NO_PAD.decode(token).unwrap()[..IV_LEN].to_vec()
        };
        assert_ne!(iv_of("a"), iv_of("b"));
        assert_eq!(iv_of("a"), iv_of("a"));
        assert_ne!(iv_of("a"), vec![9; IV_LEN]);
    }

    #[test]
    fn a_long_tag_is_refused_at_issue() {
        let long = "x".repeat(MAX_TAG_LEN + 1);
        assert_eq!(
            keys(1).issue("alice", &receiver(), &options(Some(&long)), 5, &[9; 12]),
            Err(TokenError::TagTooLong(MAX_TAG_LEN + 1))
        );
        let longest = "x".repeat(MAX_TAG_LEN);
        let issued = keys(1)
            .issue("alice", &receiver(), &options(Some(&longest)), 5, &[9; 12])
            .unwrap();
        let opened = keys(1).open("alice", issued.destination.as_str()).unwrap();
        assert_eq!(opened.tag.as_deref(), Some(longest.as_str()));
    }
}
