//! PSK2 (RFC 25), receiving side: the packets inside a Prepare's data and the answer a receiver
//! gives, as `ilp-protocol-psk2` 0.5.0's request-handler receiver does (the RFC's text differs
//! from that implementation in its key strings; the implementation is what senders run).
//!
//! - Envelope: AES-256-GCM, `iv (12) ‖ tag (16) ‖ ciphertext`, key
//!   `HMAC-SHA256(shared secret, "ilp_psk2_encryption")` (constants.js, encoding.js);
//! - fulfillment: `HMAC-SHA256(HMAC-SHA256(shared secret, "ilp_psk2_fulfillment"), data)`
//!   (condition.js): STREAM's envelope and derivation with PSK2's strings;
//! - a *request* packet: type 4, request id (u32), least amount to accept (u64), data
//!   (var-octet string); the answer is a *response* (5, on a Fulfill) or an *error* (6, on a
//!   Reject), carrying what arrived. Bytes after the data are ignored;
//! - the *legacy chunk* format (before requests), still sent by `sendSingleChunk` and by
//!   `ilp-spsp`'s PSK2 path: type 0 (chunk) or 1 (last chunk), payment id (16 bytes), sequence
//!   (u32), payment amount (u64), chunk amount (u64, the least to accept), data, a zero byte;
//!   answered with a *fulfillment* (2) or a *reject* (3) packet of the same layout carrying what
//!   arrived. A packet that is not a request, response or error is read as a legacy one.
//!
//! The amount is checked before the condition, for requests and legacy chunks alike (as
//! ilp-protocol-psk2 0.3 does; 0.5 checks the condition first): less arriving than the packet
//! asks for is F99, then a condition that is not the connection's is F05. Either way the error
//! packet carries what arrived, which is what a quote reads: 0.5's quotes (which ask for 0) get
//! F05, and a quote asking for the RFC's 2^64 - 1 gets F99.

use crate::oer::{OerWrite, Reader};
use crate::packet::{Address, ErrorCode, Fulfill, Prepare, Reject};
use crate::stream::crypto::{hmac_sha256, sha256, StreamKeys, IV_LEN};
use crate::stream::receiver::{fulfill_with, reject};

const TYPE_CHUNK: u8 = 0;
const TYPE_LAST_CHUNK: u8 = 1;
const TYPE_FULFILLMENT: u8 = 2;
const TYPE_REJECT: u8 = 3;
/// A PSK2 request: a sender's packet type.
pub const TYPE_REQUEST: u8 = 4;
/// A PSK2 response: the receiver's answer in a Fulfill.
pub const TYPE_RESPONSE: u8 = 5;
/// A PSK2 error: the receiver's answer in a Reject.
pub const TYPE_ERROR: u8 = 6;

/// The keys of one PSK2 shared secret.
pub fn keys(shared_secret: &[u8; 32]) -> StreamKeys {
    StreamKeys::from_keys(
        &hmac_sha256(shared_secret, b"ilp_psk2_encryption"),
        &hmac_sha256(shared_secret, b"ilp_psk2_fulfillment"),
    )
}

/// A decrypted PSK2 packet a sender puts in a Prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Psk2Packet {
    /// Types 4, 5 and 6.
    Request {
        packet_type: u8,
        request_id: u32,
        amount: u64,
        data: Vec<u8>,
    },
    /// Types 0 to 3.
    Legacy {
        packet_type: u8,
        payment_id: [u8; 16],
        sequence: u32,
        payment_amount: u64,
        chunk_amount: u64,
        data: Vec<u8>,
    },
}

impl Psk2Packet {
    /// Reads a plaintext: as a request, response or error, else as a legacy packet.
    pub fn decode(plaintext: &[u8]) -> Option<Psk2Packet> {
        let request = || {
            let mut r = Reader::new(plaintext);
            let packet_type = r.read_u8().ok()?;
            if !(TYPE_REQUEST..=TYPE_ERROR).contains(&packet_type) {
                return None;
            }
            Some(Psk2Packet::Request {
                packet_type,
                request_id: r.read_u32().ok()?,
                amount: r.read_u64().ok()?,
                data: r.read_var_octet_string().ok()?.to_vec(),
            })
        };
        let legacy = || {
            let mut r = Reader::new(plaintext);
            Some(Psk2Packet::Legacy {
                packet_type: r.read_u8().ok()?,
                payment_id: *r.read_array::<16>().ok()?,
                sequence: r.read_u32().ok()?,
                payment_amount: r.read_u64().ok()?,
                chunk_amount: r.read_u64().ok()?,
                data: r.read_var_octet_string().ok()?.to_vec(),
            })
        };
        request().or_else(legacy)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Psk2Packet::Request {
                packet_type,
                request_id,
                amount,
                data,
            } => {
                out.push(*packet_type);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
                out.put_var_octet_string(data);
            }
            Psk2Packet::Legacy {
                packet_type,
                payment_id,
                sequence,
                payment_amount,
                chunk_amount,
                data,
            } => {
                out.push(*packet_type);
                out.extend_from_slice(payment_id);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(&payment_amount.to_be_bytes());
                out.extend_from_slice(&chunk_amount.to_be_bytes());
                out.put_var_octet_string(data);
                out.push(0);
            }
        }
        out
    }

    /// The answer packet to this one, carrying `arrived`: a response or fulfillment when
    /// `fulfilled`, an error or reject otherwise.
    fn answer(&self, fulfilled: bool, arrived: u64) -> Psk2Packet {
        match self {
            Psk2Packet::Request { request_id, .. } => Psk2Packet::Request {
                packet_type: if fulfilled { TYPE_RESPONSE } else { TYPE_ERROR },
                request_id: *request_id,
                amount: arrived,
                data: Vec::new(),
            },
            Psk2Packet::Legacy {
                payment_id,
                sequence,
                ..
            } => Psk2Packet::Legacy {
                packet_type: if fulfilled {
                    TYPE_FULFILLMENT
                } else {
                    TYPE_REJECT
                },
                payment_id: *payment_id,
                sequence: *sequence,
                payment_amount: 0,
                chunk_amount: arrived,
                data: Vec::new(),
            },
        }
    }
}

/// What a PSK2 receiver does with a Prepare: answer now, or credit the money then answer
/// with [`Accepted::fulfill`].
pub type Decision = crate::stream::receiver::Decision<Accepted>;

/// A Prepare whose money the receiver takes once it is credited.
#[derive(Debug)]
pub struct Accepted {
    keys: StreamKeys,
    packet: Psk2Packet,
    arrived: u64,
    fulfillment: [u8; 32],
}

fn encrypt(keys: &StreamKeys, packet: &Psk2Packet, iv: &[u8; IV_LEN]) -> Vec<u8> {
    // An answer is a few dozen bytes, far below the plaintext limit.
    keys.encrypt(iv, &packet.encode()).unwrap_or_default()
}

/// Decides what to do with `prepare`, of which `arrived` reached the receiver, on a connection
/// keyed by `shared_secret`. `iv` (fresh randomness) encrypts an immediate answer.
pub fn decide(
    shared_secret: &[u8; 32],
    prepare: &Prepare,
    arrived: u64,
    address: &Address,
    iv: &[u8; IV_LEN],
) -> Decision {
    let keys = keys(shared_secret);
    let refuse = |code, message: &str, data: &[u8]| {
        Decision::Answer(Err(reject(code, address, message, data)))
    };
    let Some(packet) = keys
        .decrypt(prepare.data())
        .ok()
        .and_then(|plaintext| Psk2Packet::decode(&plaintext))
    else {
        return refuse(
            ErrorCode::F06_UNEXPECTED_PAYMENT,
            "Unable to parse data",
            &[],
        );
    };
    let fulfillment = keys.fulfillment(prepare.data());
    let ours = &sha256(&fulfillment) == prepare.execution_condition();
    let least = match &packet {
        Psk2Packet::Request {
            packet_type: TYPE_REQUEST,
            amount,
            ..
        } => *amount,
        // A chunk of a payment of a fixed destination amount (`sendDestinationAmount`): its
        // sender measures progress by the payment amount the answers carry, which a receiver
        // of requests (ours, as 0.5.0's) answers 0, so it would send growing chunks until its
        // money ran out. Refused before any money moves, with a final code it stops at.
        Psk2Packet::Legacy {
            packet_type: TYPE_CHUNK | TYPE_LAST_CHUNK,
            payment_amount,
            ..
        } if *payment_amount != u64::MAX => {
            return refuse(
                ErrorCode::F06_UNEXPECTED_PAYMENT,
                "payments of a fixed destination amount in chunks are not supported",
                &[],
            )
        }
        Psk2Packet::Legacy {
            packet_type: TYPE_CHUNK | TYPE_LAST_CHUNK,
            chunk_amount,
            ..
        } => *chunk_amount,
        // The messages are ilp-protocol-psk2's.
        Psk2Packet::Request { .. } => {
            return refuse(
                ErrorCode::F06_UNEXPECTED_PAYMENT,
                "Unexpected packet type",
                &[],
            )
        }
        Psk2Packet::Legacy { .. } => {
            return refuse(ErrorCode::F06_UNEXPECTED_PAYMENT, "Unsupported type", &[])
        }
    };
    // Encrypted only on the paths that send it: otherwise its IV encrypts the Fulfill's answer.
    let error = || encrypt(&keys, &packet.answer(false, arrived), iv);
    let too_little = least > arrived;
    if too_little {
        return refuse(ErrorCode::F99_APPLICATION_ERROR, "", &error());
    }
    if !ours {
        return refuse(
            ErrorCode::F05_WRONG_CONDITION,
            "Condition generated does not match prepare",
            &error(),
        );
    }
    let accepted = Accepted {
        keys,
        packet,
        arrived,
        fulfillment,
    };
    if arrived == 0 {
        return Decision::Answer(Ok(accepted.fulfill(iv)));
    }
    Decision::Accept(Box::new(accepted))
}

impl Accepted {
    /// What to credit.
    /// The application data the request carried (koa-ilp's clients put their Pay-Token's
    /// 16 bytes here).
    pub fn data(&self) -> &[u8] {
        match &self.packet {
            Psk2Packet::Request { data, .. } => data,
            _ => &[],
        }
    }

    pub fn amount(&self) -> u64 {
        self.arrived
    }

    /// The Fulfill, once the amount is credited.
    pub fn fulfill(self, iv: &[u8; IV_LEN]) -> Fulfill {
        let data = encrypt(&self.keys, &self.packet.answer(true, self.arrived), iv);
        fulfill_with(&self.fulfillment, &data)
    }

    /// The answer when the account could not take the money: F99 with an error packet.
    pub fn refuse(self, address: &Address, iv: &[u8; IV_LEN]) -> Reject {
        let data = encrypt(&self.keys, &self.packet.answer(false, self.arrived), iv);
        // ilp-protocol-psk2 refuses with an empty message too.
        reject(ErrorCode::F99_APPLICATION_ERROR, address, "", &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PrepareBuilder, Timestamp};
    use crate::stream::receiver::sender_prepare;

    const SECRET: [u8; 32] = [5; 32];

    fn address() -> Address {
        Address::try_from("test.node.alice").unwrap()
    }

    fn request(amount: u64) -> Psk2Packet {
        Psk2Packet::Request {
            packet_type: TYPE_REQUEST,
            request_id: 77,
            amount,
            data: b"hi".to_vec(),
        }
    }

    fn chunk(chunk_amount: u64) -> Psk2Packet {
        Psk2Packet::Legacy {
            packet_type: TYPE_LAST_CHUNK,
            payment_id: [9; 16],
            sequence: 3,
            // What sendSingleChunk and sendSourceAmount send.
            payment_amount: u64::MAX,
            chunk_amount,
            data: Vec::new(),
        }
    }

    #[test]
    fn a_chunk_of_a_fixed_destination_amount_is_refused_before_money_moves() {
        let mut packet = chunk(5);
        if let Psk2Packet::Legacy { payment_amount, .. } = &mut packet {
            *payment_amount = 10_000;
        }
        let reject = rejected(decide_on(&prepare(&packet.encode(), 1_000, false), 870));
        assert_eq!(reject.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
        assert!(reject.data().is_empty());
    }

    /// A sender's Prepare of `amount` carrying `plaintext`, whose condition is the
    /// connection's unless `quote`.
    fn prepare(plaintext: &[u8], amount: u64, quote: bool) -> Prepare {
        let keys = keys(&SECRET);
        let data = keys.encrypt(&[8; 12], plaintext).unwrap();
        sender_prepare(&keys, &data, amount, !quote)
    }

    fn decide_on(p: &Prepare, arrived: u64) -> Decision {
        decide(&SECRET, p, arrived, &address(), &[2; 12])
    }

    fn read(data: &[u8]) -> Psk2Packet {
        Psk2Packet::decode(&keys(&SECRET).decrypt(data).unwrap()).unwrap()
    }

    fn rejected(decision: Decision) -> Reject {
        match decision {
            Decision::Answer(Err(reject)) => reject,
            other => panic!("expected a Reject, got {other:?}"),
        }
    }

    #[test]
    fn the_layouts_are_ilp_protocol_psk2s() {
        // serializePskPacket: type, requestId, amount, VarOctetString(data).
        assert_eq!(
            hex(&request(0x0102).encode()),
            "040000004d00000000000001020268 69".replace(' ', "")
        );
        // serializeLegacyPskPacket: type, paymentId, sequence, paymentAmount, chunkAmount,
        // VarOctetString(applicationData), UInt8(0).
        assert_eq!(
            hex(&chunk(5).encode()),
            format!(
                "01{}00000003{}{}0000",
                "09".repeat(16),
                "ffffffffffffffff",
                "0000000000000005"
            )
        );
        for p in [request(5), chunk(5)] {
            assert_eq!(Psk2Packet::decode(&p.encode()), Some(p));
        }
        // Bytes after the data are ignored, as the JS reader does.
        let mut longer = request(5).encode();
        longer.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(Psk2Packet::decode(&longer), Some(request(5)));
        assert_eq!(Psk2Packet::decode(&[4, 0, 0]), None);
        // The keys are STREAM's derivations with PSK2's strings.
        let data = keys(&SECRET).encrypt(&[1; 12], b"x").unwrap();
        let fulfillment_key = hmac_sha256(&SECRET, b"ilp_psk2_fulfillment");
        assert_eq!(
            keys(&SECRET).fulfillment(&data),
            hmac_sha256(&fulfillment_key, &data)
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Packets encrypted by ilp-protocol-psk2 0.5.0 itself, with its fulfillments
    /// (tests/data/psk2/vectors.json, from scripts/interop/gen-psk2-vectors.js).
    #[test]
    fn packets_of_ilp_protocol_psk2_decrypt_decode_and_fulfill_alike() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let file: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/psk2/vectors.json"
        )))
        .unwrap();
        let b64 = |v: &serde_json::Value| STANDARD.decode(v.as_str().unwrap()).unwrap();
        let secret: [u8; 32] = b64(&file["shared_secret"]).try_into().unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 5);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let data = b64(&v["data"]);
            let keys = keys(&secret);
            let packet = Psk2Packet::decode(&keys.decrypt(&data).unwrap()).unwrap();
            let p = &v["packet"];
            let number = |key: &str| -> u64 {
                let n = &p[key];
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
                    .unwrap()
            };
            let expected = if name.starts_with("request") {
                Psk2Packet::Request {
                    packet_type: u8::try_from(number("type")).unwrap(),
                    request_id: u32::try_from(number("requestId")).unwrap(),
                    amount: number("amount"),
                    data: b64(&p["data"]),
                }
            } else {
                Psk2Packet::Legacy {
                    packet_type: u8::try_from(number("type")).unwrap(),
                    payment_id: b64(&p["paymentId"]).try_into().unwrap(),
                    sequence: u32::try_from(number("sequence")).unwrap(),
                    payment_amount: number("paymentAmount"),
                    chunk_amount: number("chunkAmount"),
                    data: Vec::new(),
                }
            };
            assert_eq!(packet, expected, "{name}");
            // Their plaintext is ours, byte for byte.
            assert_eq!(keys.decrypt(&data).unwrap(), expected.encode(), "{name}");
            assert_eq!(
                keys.fulfillment(&data).to_vec(),
                b64(&v["fulfillment"]),
                "{name}"
            );
        }
    }

    #[test]
    fn a_request_is_credited_then_answered_with_a_response_of_what_arrived() {
        let p = prepare(&request(90).encode(), 100, false);
        let Decision::Accept(accepted) = decide_on(&p, 95) else {
            panic!("money expected");
        };
        assert_eq!(accepted.amount(), 95);
        let fulfill = accepted.fulfill(&[3; 12]);
        assert_eq!(&sha256(fulfill.fulfillment()), p.execution_condition());
        assert_eq!(
            read(fulfill.data()),
            Psk2Packet::Request {
                packet_type: TYPE_RESPONSE,
                request_id: 77,
                amount: 95,
                data: Vec::new()
            }
        );
    }

    #[test]
    fn the_amount_is_checked_before_the_condition_and_both_answers_tell_what_arrived() {
        let arrived_870 = Psk2Packet::Request {
            packet_type: TYPE_ERROR,
            request_id: 77,
            amount: 870,
            data: Vec::new(),
        };
        let quote = prepare(&request(0).encode(), 1_000, true);
        let reject = rejected(decide_on(&quote, 870));
        assert_eq!(reject.code(), ErrorCode::F05_WRONG_CONDITION);
        assert_eq!(read(reject.data()), arrived_870);
        // A quote asking for more than arrives (the RFC's 2^64 - 1): F99, with the amount.
        let greedy_quote = prepare(&request(5_000).encode(), 1_000, true);
        let reject = rejected(decide_on(&greedy_quote, 870));
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert_eq!(read(reject.data()), arrived_870);
        let short = prepare(&request(900).encode(), 1_000, false);
        let reject = rejected(decide_on(&short, 870));
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert_eq!(reject.message(), "");
    }

    #[test]
    fn a_legacy_chunk_checks_the_amount_first_and_is_fulfilled_with_a_fulfillment_packet() {
        let short_and_foreign = prepare(&chunk(900).encode(), 1_000, true);
        let reject = rejected(decide_on(&short_and_foreign, 870));
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        let Psk2Packet::Legacy {
            packet_type,
            chunk_amount,
            payment_amount,
            ..
        } = read(reject.data())
        else {
            panic!("a legacy answer");
        };
        assert_eq!(
            (packet_type, chunk_amount, payment_amount),
            (TYPE_REJECT, 870, 0)
        );
        let foreign = prepare(&chunk(5).encode(), 1_000, true);
        assert_eq!(
            rejected(decide_on(&foreign, 870)).code(),
            ErrorCode::F05_WRONG_CONDITION
        );
        let good = prepare(&chunk(5).encode(), 1_000, false);
        let Decision::Accept(accepted) = decide_on(&good, 870) else {
            panic!("money expected");
        };
        let Psk2Packet::Legacy {
            packet_type,
            chunk_amount,
            sequence,
            ..
        } = read(accepted.fulfill(&[3; 12]).data())
        else {
            panic!("a legacy answer");
        };
        assert_eq!(
            (packet_type, chunk_amount, sequence),
            (TYPE_FULFILLMENT, 870, 3)
        );
    }

    #[test]
    fn what_cannot_be_read_or_is_not_a_request_is_f06() {
        let foreign_secret = {
            let keys = keys(&[6; 32]);
            let data = keys.encrypt(&[8; 12], &request(1).encode()).unwrap();
            PrepareBuilder {
                amount: 1,
                expires_at: Timestamp::from_unix_millis(1_000_000),
                execution_condition: &keys.condition(&data),
                destination: &address(),
                data: &data,
            }
            .build()
            .unwrap()
        };
        let response = Psk2Packet::Request {
            packet_type: TYPE_RESPONSE,
            request_id: 1,
            amount: 1,
            data: Vec::new(),
        };
        let fulfillment_chunk = Psk2Packet::Legacy {
            packet_type: TYPE_FULFILLMENT,
            payment_id: [0; 16],
            sequence: 0,
            payment_amount: 0,
            chunk_amount: 0,
            data: Vec::new(),
        };
        for p in [
            foreign_secret,
            prepare(&response.encode(), 1, false),
            prepare(&fulfillment_chunk.encode(), 1, false),
            prepare(&[4, 0], 1, false),
        ] {
            let reject = rejected(decide_on(&p, 1));
            assert_eq!(reject.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
            assert!(reject.data().is_empty());
        }
    }

    #[test]
    fn zero_amounts_are_fulfilled_at_once_and_a_refusal_is_f99_with_an_error() {
        let zero = prepare(&request(0).encode(), 0, false);
        let Decision::Answer(Ok(fulfill)) = decide_on(&zero, 0) else {
            panic!("a zero amount is fulfilled at once");
        };
        assert_eq!(&sha256(fulfill.fulfillment()), zero.execution_condition());
        assert_eq!(
            read(fulfill.data()),
            Psk2Packet::Request {
                packet_type: TYPE_RESPONSE,
                request_id: 77,
                amount: 0,
                data: Vec::new()
            }
        );
        let p = prepare(&request(0).encode(), 10, false);
        let Decision::Accept(accepted) = decide_on(&p, 10) else {
            panic!("money expected");
        };
        let reject = accepted.refuse(&address(), &[3; 12]);
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert!(matches!(
            read(reject.data()),
            Psk2Packet::Request {
                packet_type: TYPE_ERROR,
                amount: 10,
                ..
            }
        ));
    }

    fn packet() -> impl proptest::strategy::Strategy<Value = Psk2Packet> {
        use proptest::prelude::*;
        let data = || proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (
                TYPE_REQUEST..=TYPE_ERROR,
                any::<u32>(),
                any::<u64>(),
                data()
            )
                .prop_map(|(packet_type, request_id, amount, data)| {
                    Psk2Packet::Request {
                        packet_type,
                        request_id,
                        amount,
                        data,
                    }
                }),
            (
                TYPE_CHUNK..=TYPE_REJECT,
                any::<[u8; 16]>(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                data()
            )
                .prop_map(
                    |(packet_type, payment_id, sequence, payment_amount, chunk_amount, data)| {
                        Psk2Packet::Legacy {
                            packet_type,
                            payment_id,
                            sequence,
                            payment_amount,
                            chunk_amount,
                            data,
                        }
                    }
                ),
        ]
    }

    proptest::proptest! {
        #[test]
        fn packets_round_trip(p in packet()) {
            proptest::prop_assert_eq!(Psk2Packet::decode(&p.encode()), Some(p));
        }

        /// Whatever a sender puts in a Prepare, the receiver answers without panicking: F06
        /// without data, or an answer packet that decrypts and carries what arrived.
        #[test]
        fn any_plaintext_is_answered(
            plaintext in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            arrived in proptest::prelude::any::<u64>(),
            amount in proptest::prelude::any::<u64>(),
        ) {
            let p = prepare(&plaintext, amount, false);
            match decide_on(&p, arrived) {
                Decision::Answer(Err(reject)) if reject.code() == ErrorCode::F06_UNEXPECTED_PAYMENT => {
                    proptest::prop_assert!(reject.data().is_empty());
                }
                Decision::Answer(Err(reject)) => {
                    let answer = keys(&SECRET).decrypt(reject.data()).ok().and_then(|d| Psk2Packet::decode(&d));
                    proptest::prop_assert!(answer.is_some());
                }
                Decision::Answer(Ok(fulfill)) => proptest::prop_assert_eq!(arrived, 0, "{:?}", fulfill),
                Decision::Accept(accepted) => proptest::prop_assert_eq!(accepted.amount(), arrived),
            }
        }
    }
}
