//! STREAM cryptography (RFC 29 §5.1 and §6): key derivation from the shared secret, the
//! AES-256-GCM envelope (`iv (12) | tag (16) | ciphertext`, the JS layout) and the
//! fulfillment/condition derivation.
//!
//! [`StreamKeys`] derives everything once per connection and keeps the AES key schedule and
//! the keyed HMAC state, so the per-packet work is one AES-GCM pass and one HMAC.
//! Randomness is the caller's: the IV is a parameter.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::packet::StreamPacket;

pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes the envelope adds to a plaintext.
pub const ENCRYPTION_OVERHEAD: usize = IV_LEN + TAG_LEN;
/// Longest plaintext [`StreamKeys::encrypt`] accepts: its envelope must fit the data field of
/// an ILP packet, the only place STREAM ever puts one. (AES-GCM's own limit, about 64 GB, is
/// far beyond this.)
pub const MAX_PLAINTEXT_LEN: usize = crate::packet::MAX_DATA_LEN - ENCRYPTION_OVERHEAD;

const ENCRYPTION_KEY_STRING: &[u8] = b"ilp_stream_encryption";
const FULFILLMENT_KEY_STRING: &[u8] = b"ilp_stream_fulfillment";

/// Errors from the encryption envelope. Deliberately coarse: a receiver answers every one of
/// them the same way (F06), and telling "wrong key" from "tampered" apart is impossible anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("encrypted data is {0} bytes, shorter than the 28-byte IV and tag")]
    TooShort(usize),
    #[error("decryption failed: wrong key or corrupted data")]
    DecryptionFailed,
    #[error("plaintext is {0} bytes; encrypted it would not fit an ILP packet's data field")]
    PlaintextTooLong(usize),
}

/// HMAC-SHA256 keyed with `key`, built without the fallible constructor: a key longer than
/// the 64-byte block is hashed first and a shorter one zero-padded, exactly as HMAC defines.
pub(crate) fn keyed_hmac(key: &[u8]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <Hmac<Sha256> as KeyInit>::new(GenericArray::from_slice(&block))
}

/// HMAC-SHA256(key, message).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    finish(keyed_hmac(key), message)
}

fn finish(mut mac: Hmac<Sha256>, message: &[u8]) -> [u8; 32] {
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// SHA-256(preimage): the condition for a fulfillment.
pub fn sha256(preimage: &[u8]) -> [u8; 32] {
    Sha256::digest(preimage).into()
}

/// The AES-256-GCM key for a connection: HMAC-SHA256(shared_secret, "ilp_stream_encryption").
pub fn encryption_key(shared_secret: &[u8]) -> [u8; 32] {
    hmac_sha256(shared_secret, ENCRYPTION_KEY_STRING)
}

/// The fulfillment HMAC key: HMAC-SHA256(shared_secret, "ilp_stream_fulfillment").
pub fn fulfillment_key(shared_secret: &[u8]) -> [u8; 32] {
    hmac_sha256(shared_secret, FULFILLMENT_KEY_STRING)
}

/// Errors from [`StreamKeys::decrypt_packet`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecryptPacketError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Packet(#[from] super::packet::StreamPacketError),
}

/// Per-connection key material, derived once from the shared secret.
#[derive(Clone)]
pub struct StreamKeys {
    cipher: Aes256Gcm,
    fulfillment: Hmac<Sha256>,
}

impl std::fmt::Debug for StreamKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKeys { .. }")
    }
}

impl StreamKeys {
    /// Derives the keys for a connection. RFC 29 recommends 32-byte secrets; any length works.
    pub fn new(shared_secret: &[u8]) -> Self {
        StreamKeys::from_keys(
            &encryption_key(shared_secret),
            &fulfillment_key(shared_secret),
        )
    }

    /// From already derived keys (for callers that store those instead of the secret).
    pub fn from_keys(encryption_key: &[u8; 32], fulfillment_key: &[u8; 32]) -> Self {
        StreamKeys {
            cipher: Aes256Gcm::new(GenericArray::from_slice(encryption_key)),
            fulfillment: keyed_hmac(fulfillment_key),
        }
    }

    /// Encrypts `plaintext` with the caller's random `iv`; returns `iv | tag | ciphertext`.
    /// Never reuse an IV with the same keys.
    /// [`CryptoError::PlaintextTooLong`] beyond [`MAX_PLAINTEXT_LEN`] bytes.
    pub fn encrypt(&self, iv: &[u8; IV_LEN], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::PlaintextTooLong(plaintext.len()));
        }
        let mut out = Vec::with_capacity(ENCRYPTION_OVERHEAD + plaintext.len());
        out.extend_from_slice(iv);
        out.extend_from_slice(&[0u8; TAG_LEN]);
        out.extend_from_slice(plaintext);
        let (head, body) = out.split_at_mut(ENCRYPTION_OVERHEAD);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(iv), &[], body)
            // Only AES-GCM's 64 GB limit can fail here, and the check above is far stricter.
            .map_err(|_| CryptoError::PlaintextTooLong(plaintext.len()))?;
        head[IV_LEN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Encodes and encrypts a packet.
    pub fn encrypt_packet(
        &self,
        iv: &[u8; IV_LEN],
        packet: &StreamPacket,
    ) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(iv, &packet.encode())
    }

    /// Decrypts `iv | tag | ciphertext` into a new buffer.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        self.decrypt_into(data, &mut out)?;
        Ok(out)
    }

    /// Decrypts into `out` (cleared first), so a caller can reuse one buffer across packets.
    /// On error `out` is left empty: no unauthenticated plaintext escapes.
    pub fn decrypt_into(&self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        out.clear();
        if data.len() < ENCRYPTION_OVERHEAD {
            return Err(CryptoError::TooShort(data.len()));
        }
        let (iv, rest) = data.split_at(IV_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        out.extend_from_slice(ciphertext);
        let result = self.cipher.decrypt_in_place_detached(
            Nonce::from_slice(iv),
            &[],
            out,
            Tag::from_slice(tag),
        );
        if result.is_err() {
            out.clear();
            return Err(CryptoError::DecryptionFailed);
        }
        Ok(())
    }

    /// Decrypts and decodes a STREAM packet: the receive hot path.
    pub fn decrypt_packet(&self, data: &[u8]) -> Result<StreamPacket, DecryptPacketError> {
        let plaintext = self.decrypt(data)?;
        Ok(StreamPacket::decode(&plaintext)?)
    }

    /// The fulfillment for a Prepare whose data field is `prepare_data` (the encrypted packet).
    pub fn fulfillment(&self, prepare_data: &[u8]) -> [u8; 32] {
        finish(self.fulfillment.clone(), prepare_data)
    }

    /// The execution condition a sender puts on a fulfillable Prepare carrying `prepare_data`.
    pub fn condition(&self, prepare_data: &[u8]) -> [u8; 32] {
        sha256(&self.fulfillment(prepare_data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketType;
    use crate::stream::frame::Frame;
    use crate::stream::packet::StreamPacketError;
    use base64::Engine;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/stream/crypto_vectors.json"
    ));

    fn b64(v: &Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    fn arr32(v: &Value) -> [u8; 32] {
        b64(v).try_into().unwrap()
    }

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    #[test]
    fn key_derivation_vectors() {
        let v = vectors();
        for case in v["keys"].as_array().unwrap() {
            let secret = b64(&case["shared_secret"]);
            assert_eq!(
                encryption_key(&secret),
                arr32(&case["encryption_key"]),
                "{case}"
            );
            assert_eq!(
                fulfillment_key(&secret),
                arr32(&case["fulfillment_key"]),
                "{case}"
            );
        }
    }

    #[test]
    fn fulfillment_and_condition_vectors() {
        let v = vectors();
        for case in v["fulfillments"].as_array().unwrap() {
            let key = arr32(&case["fulfillment_key"]);
            let data = b64(&case["data"]);
            let want = arr32(&case["fulfillment"]);
            assert_eq!(hmac_sha256(&key, &data), want);
            let keys = StreamKeys::from_keys(&[0; 32], &key);
            assert_eq!(keys.fulfillment(&data), want);
            if let Some(condition) = case.get("condition") {
                assert_eq!(keys.condition(&data), arr32(condition));
            }
        }
        for case in v["conditions"].as_array().unwrap() {
            assert_eq!(
                sha256(&b64(&case["fulfillment"])),
                arr32(&case["condition"])
            );
        }
        for case in v["from_shared_secret"].as_array().unwrap() {
            let keys = StreamKeys::new(&b64(&case["shared_secret"]));
            let data = b64(&case["data"]);
            assert_eq!(keys.fulfillment(&data), arr32(&case["fulfillment"]));
            assert_eq!(keys.condition(&data), arr32(&case["condition"]));
        }
    }

    #[test]
    fn envelope_vectors() {
        let v = vectors();
        for case in v["decrypt"].as_array().unwrap() {
            let key = arr32(&case["encryption_key"]);
            let keys = StreamKeys::from_keys(&key, &[0; 32]);
            let envelope = b64(&case["envelope"]);
            let plaintext = b64(&case["plaintext"]);
            assert_eq!(keys.decrypt(&envelope), Ok(plaintext.clone()), "{case}");
            if let Some(iv) = case.get("iv") {
                let iv: [u8; IV_LEN] = b64(iv).try_into().unwrap();
                assert_eq!(keys.encrypt(&iv, &plaintext), Ok(envelope), "{case}");
            }
        }
    }

    #[test]
    fn stream_packet_vector() {
        let v = vectors();
        let case = &v["packet"];
        let keys = StreamKeys::new(&b64(&case["shared_secret"]));
        let envelope = b64(&case["envelope"]);
        let plaintext = b64(&case["plaintext"]);
        let packet = StreamPacket {
            packet_type: PacketType::Prepare,
            sequence: 1,
            prepare_amount: 1000,
            frames: vec![
                Frame::StreamMoney {
                    stream_id: 1,
                    shares: 1,
                },
                Frame::StreamMaxMoney {
                    stream_id: 1,
                    receive_max: u64::MAX,
                    total_received: 0,
                },
            ],
        };
        assert_eq!(packet.encode(), plaintext);
        assert_eq!(keys.decrypt_packet(&envelope), Ok(packet.clone()));
        let iv: [u8; IV_LEN] = b64(&case["iv"]).try_into().unwrap();
        assert_eq!(keys.encrypt_packet(&iv, &packet), Ok(envelope.clone()));
        assert_eq!(keys.fulfillment(&envelope), arr32(&case["fulfillment"]));
        assert_eq!(keys.condition(&envelope), arr32(&case["condition"]));
    }

    fn typical_packet() -> StreamPacket {
        StreamPacket {
            packet_type: PacketType::Prepare,
            sequence: 17,
            prepare_amount: 99_000,
            frames: vec![
                Frame::StreamMoney {
                    stream_id: 1,
                    shares: 1,
                },
                Frame::StreamMaxMoney {
                    stream_id: 1,
                    receive_max: u64::MAX,
                    total_received: 1_234_567,
                },
            ],
        }
    }

    #[test]
    fn decrypt_errors() {
        let keys = StreamKeys::new(b"secret");
        let envelope = keys
            .encrypt_packet(&[7; IV_LEN], &typical_packet())
            .unwrap();

        assert_eq!(keys.decrypt(&[]), Err(CryptoError::TooShort(0)));
        assert_eq!(
            keys.decrypt(&envelope[..ENCRYPTION_OVERHEAD - 1]),
            Err(CryptoError::TooShort(27))
        );
        // Dropping ciphertext bytes breaks the tag.
        assert_eq!(
            keys.decrypt(&envelope[..ENCRYPTION_OVERHEAD]),
            Err(CryptoError::DecryptionFailed)
        );
        // the JS test's 32 bytes of garbage under an all-zero key
        let garbage =
            hex::decode("9c4f511dbc865607311609d7559e01e1fd22f985292539e1f5d8f3eb0832060f")
                .unwrap();
        assert_eq!(
            StreamKeys::from_keys(&[0; 32], &[0; 32]).decrypt_packet(&garbage),
            Err(DecryptPacketError::Crypto(CryptoError::DecryptionFailed))
        );
        // wrong key
        assert_eq!(
            StreamKeys::new(b"other secret").decrypt_packet(&envelope),
            Err(DecryptPacketError::Crypto(CryptoError::DecryptionFailed))
        );
        // tampered IV, tag and ciphertext, one bit each
        for i in [0, IV_LEN, IV_LEN + TAG_LEN - 1, envelope.len() - 1] {
            let mut bad = envelope.clone();
            bad[i] ^= 1;
            let mut out = vec![1, 2, 3];
            assert_eq!(
                keys.decrypt_into(&bad, &mut out),
                Err(CryptoError::DecryptionFailed),
                "byte {i}"
            );
            assert!(out.is_empty());
        }
        // authentic ciphertext of something that is not a STREAM packet
        let not_a_packet = keys
            .encrypt(&[1; IV_LEN], &[2, 12, 1, 0, 1, 0, 1, 0])
            .unwrap();
        assert_eq!(
            keys.decrypt_packet(&not_a_packet),
            Err(DecryptPacketError::Packet(
                StreamPacketError::UnsupportedVersion(2)
            ))
        );
    }

    #[test]
    fn plaintext_is_bounded_by_the_ilp_data_field() {
        let keys = StreamKeys::new(&[9; 32]);
        let largest = vec![0u8; MAX_PLAINTEXT_LEN];
        let envelope = keys.encrypt(&[3; IV_LEN], &largest).unwrap();
        assert_eq!(envelope.len(), crate::packet::MAX_DATA_LEN);
        assert_eq!(keys.decrypt(&envelope).unwrap(), largest);
        assert_eq!(
            keys.encrypt(&[3; IV_LEN], &vec![0u8; MAX_PLAINTEXT_LEN + 1]),
            Err(CryptoError::PlaintextTooLong(MAX_PLAINTEXT_LEN + 1))
        );
    }

    #[test]
    fn decrypt_into_reuses_buffer() {
        let keys = StreamKeys::new(&[9; 32]);
        let envelope = keys.encrypt(&[3; IV_LEN], b"foo bar").unwrap();
        let mut out = b"stale contents that are longer".to_vec();
        keys.decrypt_into(&envelope, &mut out).unwrap();
        assert_eq!(out, b"foo bar");
        assert_eq!(envelope.len(), ENCRYPTION_OVERHEAD + 7);
        assert_eq!(&envelope[..IV_LEN], &[3; IV_LEN]);
    }

    #[test]
    fn long_keys_are_hashed_like_hmac_does() {
        // RFC 4231 test case 6: a 131-byte key.
        let key = [0xaa; 131];
        let msg = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(
            hex::encode(hmac_sha256(&key, msg)),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // RFC 4231 test case 2: a 4-byte key.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // exactly one block
        let block_key = [0x11; 64];
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&block_key).unwrap();
        reference.update(b"m");
        assert_eq!(
            hmac_sha256(&block_key, b"m"),
            <[u8; 32]>::from(reference.finalize().into_bytes())
        );
    }

    proptest! {
        #[test]
        fn encrypt_decrypt_round_trip(
            secret in proptest::collection::vec(any::<u8>(), 0..80),
            iv: [u8; IV_LEN],
            plaintext in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let keys = StreamKeys::new(&secret);
            let envelope = keys.encrypt(&iv, &plaintext).unwrap();
            prop_assert_eq!(envelope.len(), plaintext.len() + ENCRYPTION_OVERHEAD);
            prop_assert_eq!(keys.decrypt(&envelope), Ok(plaintext));
        }

        #[test]
        fn decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let keys = StreamKeys::new(b"secret");
            prop_assert!(keys.decrypt_packet(&data).is_err());
        }
    }
}
