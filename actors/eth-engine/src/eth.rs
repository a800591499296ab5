//! Ethereum primitives: Keccak-256, secp256k1 keys and their addresses, EIP-155 signing of
//! legacy transactions, and the hex forms JSON-RPC uses (addresses, hashes, QUANTITY, DATA).

use k256::ecdsa::SigningKey;
use k256::elliptic_curve::zeroize::Zeroize;
use rlp::RlpStream;
use sha3::{Digest, Keccak256};

/// A 20-byte account address.
pub type Address = [u8; 20];
/// A 32-byte hash (transaction, block).
pub type H256 = [u8; 32];

/// Longest part of an input quoted in an error message.
const QUOTED_INPUT_CHARS: usize = 80;

/// Why a value could not be parsed, a key loaded or a transaction signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// A hex string that must start with `0x` does not.
    #[error("{what} {input:?} does not start with 0x")]
    MissingPrefix { what: &'static str, input: String },
    /// Not hex, or an odd number of hex digits.
    #[error("{what} {input:?} is not valid hex")]
    BadHex { what: &'static str, input: String },
    /// Valid hex of the wrong length.
    #[error("{what} must be {expected} bytes, not {got}")]
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// Not a JSON-RPC QUANTITY that fits 128 bits.
    #[error("invalid quantity {input:?}: {reason}")]
    BadQuantity { input: String, reason: &'static str },
    /// The private key is unusable (the message never quotes the key).
    #[error("invalid private key: {0}")]
    BadKey(&'static str),
    /// The signer failed (practically never happens).
    #[error("cannot sign the transaction: {0}")]
    Signing(String),
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
}

/// Keccak-256 (Ethereum's hash, not NIST SHA3-256).
pub fn keccak256(data: &[u8]) -> H256 {
    Keccak256::digest(data).into()
}

/// A secp256k1 private key and its address. `Debug` shows only the address.
#[derive(Clone)]
pub struct Wallet {
    key: SigningKey,
    address: Address,
}

impl Wallet {
    /// The wallet of a 32-byte secret written as 64 hex digits, `0x` optional, surrounding
    /// whitespace ignored.
    pub fn from_hex(key: &str) -> Result<Wallet, EthError> {
        let key = key.trim();
        let digits = strip_0x(key).unwrap_or(key);
        if digits.len() != 64 {
            return Err(EthError::BadKey("expected 32 bytes (64 hex digits)"));
        }
        let mut secret = [0u8; 32];
        let decoded = hex::decode_to_slice(digits, &mut secret);
        let key = decoded
            .map_err(|_| EthError::BadKey("not valid hex"))
            .and_then(|()| {
                SigningKey::from_slice(&secret)
                    .map_err(|_| EthError::BadKey("zero or not below the secp256k1 group order"))
            });
        secret.zeroize();
        let key = key?;
        let address = address_of(key.verifying_key());
        Ok(Wallet { key, address })
    }

    /// The account address: the last 20 bytes of the Keccak-256 of the public key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// A recoverable signature of `hash`: `r ‖ s ‖ v` with `v` the recovery id (0 or 1).
    pub fn sign_hash(&self, hash: &H256) -> Result<[u8; 65], EthError> {
        let (signature, recovery) = self
            .key
            .sign_prehash_recoverable(hash)
            .map_err(|e| EthError::Signing(e.to_string()))?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = recovery.to_byte();
        Ok(out)
    }
}

fn address_of(key: &k256::ecdsa::VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // The uncompressed point is 0x04 || x || y; the address hashes x || y.
    let hash = keccak256(point.as_bytes().get(1..).unwrap_or_default());
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

/// The address whose key made `signature` (as [`Wallet::sign_hash`] makes them) of `hash`.
pub fn recover_address(hash: &H256, signature: &[u8; 65]) -> Result<Address, EthError> {
    let bad = |_| EthError::BadSignature("not a valid secp256k1 signature");
    let sig = k256::ecdsa::Signature::from_slice(&signature[..64]).map_err(bad)?;
    let recovery = k256::ecdsa::RecoveryId::from_byte(signature[64])
        .ok_or(EthError::BadSignature("the recovery id is not 0 or 1"))?;
    let key = k256::ecdsa::VerifyingKey::recover_from_prehash(hash, &sig, recovery).map_err(bad)?;
    Ok(address_of(&key))
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &format_address(&self.address))
            .finish_non_exhaustive()
    }
}

/// A legacy (type 0) transaction, signed with EIP-155 replay protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTx {
    pub nonce: u64,
    /// Wei per gas.
    pub gas_price: u128,
    /// Gas limit.
    pub gas: u64,
    pub to: Address,
    /// Wei.
    pub value: u128,
    pub data: Vec<u8>,
    pub chain_id: u64,
}

/// A signed transaction: the bytes for `eth_sendRawTransaction` and the transaction hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub raw: Vec<u8>,
    pub hash: H256,
}

impl LegacyTx {
    /// EIP-155 signing: the signature covers
    /// `keccak(rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0]))` (deterministic
    /// RFC 6979 nonce, low S); `v = chainId * 2 + 35 + y parity`; the result is
    /// `rlp([nonce, gasPrice, gas, to, value, data, v, r, s])` and its hash.
    pub fn sign(&self, wallet: &Wallet) -> Result<SignedTx, EthError> {
        let sighash = keccak256(&self.signing_payload());
        let (signature, recovery) = wallet
            .key
            .sign_prehash_recoverable(&sighash)
            .map_err(|e| EthError::Signing(e.to_string()))?;
        if recovery.is_x_reduced() {
            // v has no room for this case (probability about 2^-128).
            return Err(EthError::Signing("unrepresentable recovery id".into()));
        }
        let v = u128::from(self.chain_id) * 2 + 35 + u128::from(recovery.is_y_odd());
        let (r, s) = signature.split_bytes();
        let mut stream = RlpStream::new_list(9);
        self.append_fields(&mut stream);
        stream
            .append(&v)
            .append(&trim_leading_zeros(&r))
            .append(&trim_leading_zeros(&s));
        let raw = stream.out().to_vec();
        let hash = keccak256(&raw);
        Ok(SignedTx { raw, hash })
    }

    /// The RLP whose hash is signed: the six fields, then chainId, 0, 0.
    fn signing_payload(&self) -> Vec<u8> {
        let mut stream = RlpStream::new_list(9);
        self.append_fields(&mut stream);
        stream.append(&self.chain_id).append(&0u8).append(&0u8);
        stream.out().to_vec()
    }

    /// Appends nonce, gasPrice, gas, to, value and data (integers as minimal big-endian
    /// strings, 0 as the empty string).
    fn append_fields(&self, stream: &mut RlpStream) {
        stream
            .append(&self.nonce)
            .append(&self.gas_price)
            .append(&self.gas)
            .append(&self.to.as_slice())
            .append(&self.value)
            .append(&self.data);
    }
}

/// A big-endian integer's bytes without leading zeros (RLP's form of an integer).
fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// `0x` followed by 40 lowercase hex digits.
pub fn format_address(a: &Address) -> String {
    format_data(a)
}

/// An address as 40 hex digits in any case (the EIP-55 checksum is not checked), `0x`
/// optional.
pub fn parse_address(s: &str) -> Result<Address, EthError> {
    parse_fixed(s, "address")
}

/// `0x` followed by 64 lowercase hex digits.
pub fn format_h256(h: &H256) -> String {
    format_data(h)
}

/// A hash as 64 hex digits in any case, `0x` optional.
pub fn parse_h256(s: &str) -> Result<H256, EthError> {
    parse_fixed(s, "hash")
}

/// A JSON-RPC QUANTITY: `0x` and the value in lowercase hex without leading zeros (`0x0`,
/// `0x1a`).
pub fn format_quantity(v: u128) -> String {
    format!("{v:#x}")
}

/// A JSON-RPC QUANTITY: `0x` and at least one hex digit (leading zeros tolerated), at most
/// `u128::MAX`.
pub fn parse_quantity(s: &str) -> Result<u128, EthError> {
    let bad = |reason| EthError::BadQuantity {
        input: quoted(s),
        reason,
    };
    let digits = strip_0x(s).ok_or_else(|| bad("no 0x prefix"))?;
    if digits.is_empty() {
        return Err(bad("no digits"));
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("not hex"));
    }
    u128::from_str_radix(digits, 16).map_err(|_| bad("more than 128 bits"))
}

/// JSON-RPC DATA: `0x` and two lowercase hex digits per byte (`0x` alone when empty).
pub fn format_data(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// JSON-RPC DATA: `0x` (required) and two hex digits per byte, in any case.
pub fn parse_data(s: &str) -> Result<Vec<u8>, EthError> {
    let digits = strip_0x(s).ok_or_else(|| EthError::MissingPrefix {
        what: "data",
        input: quoted(s),
    })?;
    decode_hex(digits, "data", s)
}

/// `N` bytes as hex, `0x` optional.
fn parse_fixed<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], EthError> {
    let bytes = decode_hex(strip_0x(s).unwrap_or(s), what, s)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| EthError::BadLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

/// Decodes `digits` (the part of `input` after any `0x`).
fn decode_hex(digits: &str, what: &'static str, input: &str) -> Result<Vec<u8>, EthError> {
    hex::decode(digits).map_err(|_| EthError::BadHex {
        what,
        input: quoted(input),
    })
}

fn strip_0x(s: &str) -> Option<&str> {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))
}

/// The start of an input, for an error message.
fn quoted(s: &str) -> String {
    if s.chars().count() <= QUOTED_INPUT_CHARS {
        return s.to_owned();
    }
    let mut short: String = s.chars().take(QUOTED_INPUT_CHARS).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

    const GANACHE_KEY_0: &str =
        "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
    const GANACHE_KEY_1: &str =
        "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The example of EIP-155.
    fn eip155_tx() -> LegacyTx {
        LegacyTx {
            nonce: 9,
            gas_price: 20_000_000_000,
            gas: 21_000,
            to: [0x35; 20],
            value: 1_000_000_000_000_000_000,
            data: Vec::new(),
            chain_id: 1,
        }
    }

    #[test]
    fn keccak_of_nothing() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn ganache_addresses() {
        let w0 = Wallet::from_hex(GANACHE_KEY_0).unwrap();
        assert_eq!(
            format_address(&w0.address()),
            "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1"
        );
        let w1 = Wallet::from_hex(GANACHE_KEY_1).unwrap();
        assert_eq!(
            format_address(&w1.address()),
            "0xffcf8fdee72ac11b5c542428b35eef5769c409f0"
        );
    }

    #[test]
    fn key_forms() {
        let address = Wallet::from_hex(GANACHE_KEY_0).unwrap().address();
        let bare = GANACHE_KEY_0.trim_start_matches("0x");
        for form in [
            bare.to_owned(),
            bare.to_uppercase(),
            format!("0X{bare}"),
            format!("  {GANACHE_KEY_0}\n"),
        ] {
            assert_eq!(
                Wallet::from_hex(&form).unwrap().address(),
                address,
                "{form}"
            );
        }
    }

    #[test]
    fn bad_keys() {
        let short = &GANACHE_KEY_0[..64];
        assert!(matches!(Wallet::from_hex(short), Err(EthError::BadKey(_))));
        let not_hex = format!("0x{}", "zz".repeat(32));
        assert!(matches!(
            Wallet::from_hex(&not_hex),
            Err(EthError::BadKey(_))
        ));
        let zero = "00".repeat(32);
        assert!(matches!(Wallet::from_hex(&zero), Err(EthError::BadKey(_))));
        // The group order n itself is out of range.
        let order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        assert!(matches!(Wallet::from_hex(order), Err(EthError::BadKey(_))));
        assert!(matches!(Wallet::from_hex(""), Err(EthError::BadKey(_))));
    }

    #[test]
    fn debug_hides_the_key() {
        let w = Wallet::from_hex(GANACHE_KEY_0).unwrap();
        let shown = format!("{w:?}");
        assert!(
            shown.contains("0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1"),
            "{shown}"
        );
        assert!(!shown.contains("4f3edf98"), "{shown}");
    }

    #[test]
    fn eip155_signing_payload_and_hash() {
        let payload = eip155_tx().signing_payload();
        assert_eq!(
            hex::encode(&payload),
            concat!(
                "ec098504a817c800825208943535353535353535353535353535353535353535",
                "880de0b6b3a764000080018080"
            )
        );
        assert_eq!(
            hex::encode(keccak256(&payload)),
            "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
        );
    }

    #[test]
    fn eip155_signed_transaction() {
        let wallet = Wallet::from_hex(&"46".repeat(32)).unwrap();
        let signed = eip155_tx().sign(&wallet).unwrap();
        let expected = concat!(
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a7640000",
            "8025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f",
            "761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83",
        );
        assert_eq!(hex::encode(signed.raw.as_slice()), expected);
        assert_eq!(signed.hash, keccak256(&unhex(expected)));
        assert_eq!(
            format_h256(&signed.hash),
            "0x33469b22e9f636356c4160a87eb19df52b7412e8eac32a4a55ffe88ea8350788"
        );
    }

    #[test]
    fn zero_fields_encode_as_empty_strings() {
        let tx = LegacyTx {
            nonce: 0,
            gas_price: 1,
            gas: 21_000,
            to: [0x11; 20],
            value: 0,
            data: vec![0xde, 0xad],
            chain_id: 1337,
        };
        assert_eq!(
            hex::encode(tx.signing_payload()),
            "e380018252089411111111111111111111111111111111111111118082dead8205398080"
        );
    }

    #[test]
    fn signature_recovers_to_the_signer_on_a_multi_byte_chain_id() {
        let wallet = Wallet::from_hex(GANACHE_KEY_1).unwrap();
        let tx = LegacyTx {
            nonce: 3,
            gas_price: 2_000_000_000,
            gas: 21_000,
            to: Wallet::from_hex(GANACHE_KEY_0).unwrap().address(),
            value: 123_456_789,
            data: Vec::new(),
            chain_id: 1337,
        };
        let signed = tx.sign(&wallet).unwrap();
        assert_eq!(signed.hash, keccak256(&signed.raw));
        let rlp = rlp::Rlp::new(&signed.raw);
        assert_eq!(rlp.item_count().unwrap(), 9);
        assert_eq!(rlp.val_at::<u64>(0).unwrap(), 3);
        assert_eq!(rlp.val_at::<u128>(4).unwrap(), 123_456_789);
        let v: u64 = rlp.val_at(6).unwrap();
        assert!(v == 1337 * 2 + 35 || v == 1337 * 2 + 36, "v = {v}");
        let mut rs = [0u8; 64];
        let r: Vec<u8> = rlp.val_at(7).unwrap();
        let s: Vec<u8> = rlp.val_at(8).unwrap();
        assert!(r.first() != Some(&0) && s.first() != Some(&0));
        rs[32 - r.len()..32].copy_from_slice(&r);
        rs[64 - s.len()..].copy_from_slice(&s);
        let signature = Signature::from_slice(&rs).unwrap();
        assert!(signature.normalize_s().is_none(), "s must be low");
        let recovery = RecoveryId::from_byte(u8::try_from(v - 1337 * 2 - 35).unwrap()).unwrap();
        let recovered = VerifyingKey::recover_from_prehash(
            &keccak256(&tx.signing_payload()),
            &signature,
            recovery,
        )
        .unwrap();
        assert_eq!(&recovered, wallet.key.verifying_key());
    }

    #[test]
    fn hash_signatures_recover_to_the_signer_only() {
        let wallet =
            Wallet::from_hex("0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d")
                .unwrap();
        let hash = keccak256(b"proof");
        let sig = wallet.sign_hash(&hash).unwrap();
        assert_eq!(recover_address(&hash, &sig).unwrap(), wallet.address());
        // Another message, or a tampered signature, names someone else or nobody.
        let other = keccak256(b"other");
        assert_ne!(recover_address(&other, &sig).ok(), Some(wallet.address()));
        let mut bad = sig;
        bad[64] = 7;
        assert!(recover_address(&hash, &bad).is_err());
        bad = sig;
        bad[..32].copy_from_slice(&[0; 32]);
        assert!(recover_address(&hash, &bad).is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(format_quantity(0), "0x0");
        assert_eq!(format_quantity(26), "0x1a");
        assert_eq!(format_quantity(u128::MAX), format!("0x{}", "f".repeat(32)));
        for v in [
            0,
            1,
            26,
            1_000_000_000_000_000_000,
            u128::from(u64::MAX),
            u128::MAX,
        ] {
            assert_eq!(parse_quantity(&format_quantity(v)).unwrap(), v);
        }
        assert_eq!(parse_quantity("0x00ff").unwrap(), 255);
        assert_eq!(
            parse_quantity("0xDE0B6B3A7640000").unwrap(),
            1_000_000_000_000_000_000
        );
        for bad in ["", "0x", "1a", "0xg", "0x+1", "0x-1", " 0x1", "0x1 "] {
            assert!(
                matches!(parse_quantity(bad), Err(EthError::BadQuantity { .. })),
                "{bad:?}"
            );
        }
        let too_big = format!("0x1{}", "0".repeat(32));
        let error = parse_quantity(&too_big).unwrap_err();
        assert_eq!(
            error,
            EthError::BadQuantity {
                input: too_big,
                reason: "more than 128 bits"
            }
        );
    }

    #[test]
    fn addresses() {
        let a = parse_address("0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1").unwrap();
        assert_eq!(
            format_address(&a),
            "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1"
        );
        assert_eq!(
            parse_address("0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1").unwrap(),
            a
        );
        assert_eq!(
            parse_address("90f8bf6a479f320ead074411a4b0e7944ea8c9c1").unwrap(),
            a
        );
        assert_eq!(
            parse_address("0x90f8bf6a479f320ead074411a4b0e7944ea8c9"),
            Err(EthError::BadLength {
                what: "address",
                expected: 20,
                got: 19
            })
        );
        assert!(matches!(
            parse_address("0x90f8bf6a479f320ead074411a4b0e7944ea8c9c"),
            Err(EthError::BadHex { .. })
        ));
        assert!(matches!(
            parse_address("0xz0f8bf6a479f320ead074411a4b0e7944ea8c9c1"),
            Err(EthError::BadHex { .. })
        ));
        assert!(parse_address("").is_err());
    }

    #[test]
    fn hashes() {
        let h = keccak256(b"");
        let text = format_h256(&h);
        assert_eq!(text.len(), 66);
        assert_eq!(parse_h256(&text).unwrap(), h);
        assert_eq!(
            parse_h256(&text.to_uppercase().replacen("0X", "0x", 1)).unwrap(),
            h
        );
        assert!(matches!(
            parse_h256(&text[..64]),
            Err(EthError::BadLength { what: "hash", .. })
        ));
    }

    #[test]
    fn data() {
        assert_eq!(format_data(&[]), "0x");
        assert!(parse_data("0x").unwrap().is_empty());
        assert_eq!(format_data(&[0xde, 0xad, 0xbe, 0xef]), "0xdeadbeef");
        assert_eq!(
            parse_data("0xDEADbeef").unwrap(),
            [0xde_u8, 0xad, 0xbe, 0xef]
        );
        assert!(matches!(
            parse_data("deadbeef"),
            Err(EthError::MissingPrefix { .. })
        ));
        assert!(matches!(parse_data("0xabc"), Err(EthError::BadHex { .. })));
    }

    #[test]
    fn long_inputs_are_shortened_in_errors() {
        let long = format!("0x{}", "g".repeat(500));
        let message = parse_data(&long).unwrap_err().to_string();
        assert!(message.len() < 150, "{message}");
    }
}
