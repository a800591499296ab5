#![allow(clippy::unwrap_used)]

use super::*;
use crate::packet::{Address, PrepareBuilder};
use crate::peer_protocol::{PEER_PROTOCOL_CONDITION, PEER_PROTOCOL_FULFILLMENT};
use proptest::prelude::*;

fn big(n: u128) -> BigUint {
    BigUint::from(n)
}

fn left(amount: u128, scale: u8) -> Leftover {
    Leftover {
        amount: big(amount),
        scale,
    }
}

#[test]
fn rescale_matches_the_interledger_rs_vectors() {
    // (amount, from, to) -> (units, leftover at the finer scale)
    let r = rescale(&big(905), 11, &Leftover::default(), 9);
    assert_eq!((r.amount, r.leftover), (big(9), left(5, 11)));
    let r = rescale(&big(8053), 12, &Leftover::default(), 9);
    assert_eq!((r.amount, r.leftover), (big(8), left(53, 12)));
    let r = rescale(&big(1), 6, &Leftover::default(), 9);
    assert_eq!((r.amount, r.leftover), (big(1000), Leftover::default()));
    let r = rescale(&big(42), 9, &Leftover::default(), 9);
    assert_eq!((r.amount, r.leftover), (big(42), Leftover::default()));
}

#[test]
fn leftovers_are_added_to_the_next_amount() {
    let first = rescale(&big(905), 11, &Leftover::default(), 9);
    let second = rescale(&big(95), 11, &first.leftover, 9);
    assert_eq!(second.amount, big(1));
    assert!(second.leftover.is_zero());
    // A leftover at a finer scale than the next amount.
    let r = rescale(&big(7), 12, &left(5, 11), 9);
    assert_eq!((r.amount, r.leftover), (big(0), left(57, 12)));
    // A leftover finer than the amount, the amount coarser than the account.
    let r = rescale(&big(3), 6, &left(999, 12), 9);
    assert_eq!((r.amount, r.leftover), (big(3000), left(999, 12)));
    // Wei to an account at scale 9, with leftovers that add up to a whole unit.
    let r = rescale(&big(1_500_000_000), 18, &left(600_000_000, 18), 9);
    assert_eq!((r.amount, r.leftover), (big(2), left(100_000_000, 18)));
}

proptest! {
    /// Converting amounts one by one, carrying the leftover, books exactly their sum.
    #[test]
    fn rescaling_piecewise_loses_nothing(
        parts in proptest::collection::vec((0u64..1_000_000_000_000, 0u8..24), 1..20),
        to in 0u8..24,
    ) {
        let mut leftover = Leftover::default();
        let mut units = BigUint::zero();
        let mut exact = BigUint::zero(); // at scale 24
        for (amount, scale) in &parts {
            let r = rescale(&big(u128::from(*amount)), *scale, &leftover, to);
            units += &r.amount;
            leftover = r.leftover;
            exact += big(u128::from(*amount)) * pow10(24 - scale);
            if !leftover.is_zero() {
                // A leftover is always below one unit of the target scale.
                prop_assert!(leftover.scale > to);
                prop_assert!(leftover.amount < pow10(leftover.scale - to));
            }
        }
        let booked = units * pow10(24 - to)
            + if leftover.is_zero() { BigUint::zero() } else { leftover.amount * pow10(24 - leftover.scale) };
        prop_assert_eq!(booked, exact);
    }
}

#[test]
fn leftover_round_trips() {
    for l in [Leftover::default(), left(5, 11), left(u128::MAX, 255)] {
        assert_eq!(Leftover::decode(&l.encode()).unwrap(), l);
    }
    assert_eq!(Leftover::decode(&[]), Err(OerError::UnexpectedEnd));
}

#[test]
fn quantity_amounts_are_decimal_digits() {
    let q = |a: &str| Quantity::new(a, 9).parse_amount();
    assert_eq!(q("0").unwrap(), big(0));
    assert_eq!(q("0010").unwrap(), big(10));
    assert_eq!(
        q("340282366920938463463374607431768211456").unwrap(),
        big(u128::MAX) + big(1)
    );
    for bad in ["", "-1", "1.5", " 1", "1e3", "0x10", "١"] {
        assert!(
            matches!(q(bad), Err(QuantityError::NotANumber(_))),
            "{bad:?}"
        );
    }
    assert_eq!(q(&"9".repeat(81)), Err(QuantityError::TooManyDigits(81)));
    assert!(q(&"9".repeat(80)).is_ok());
    let too_big = Rescaled {
        amount: big(u128::from(u64::MAX)) + big(1),
        leftover: Leftover::default(),
    };
    assert!(matches!(
        too_big.amount_u64(9),
        Err(QuantityError::TooLarge { scale: 9, .. })
    ));
}

#[test]
fn quantity_json_is_the_rfc_shape() {
    let q: Quantity = serde_json::from_str(r#"{"amount":"100","scale":9}"#).unwrap();
    assert_eq!(q, Quantity::new(100u64, 9));
    assert_eq!(
        serde_json::to_string(&q).unwrap(),
        r#"{"amount":"100","scale":9}"#
    );
    assert!(serde_json::from_str::<Quantity>(r#"{"amount":"1","scale":256}"#).is_err());
    assert!(serde_json::from_str::<Quantity>(r#"{"amount":1,"scale":2}"#).is_err());
}

#[test]
fn idempotency_keys_are_checked() {
    assert!(check_idempotency_key("5f2d6a66-0c8b-4d4e-9a55-0d6e1f1a2b3c").is_ok());
    assert!(check_idempotency_key("").is_err());
    assert!(check_idempotency_key("a b").is_err());
    assert!(check_idempotency_key(&"k".repeat(257)).is_err());
    assert!(check_idempotency_key(&"k".repeat(256)).is_ok());
}

#[test]
fn answers_repeat_for_the_same_request_only() {
    let hash = credit_input_hash("alice", &big(10), 9);
    assert_eq!(hash, credit_input_hash("alice", &big(10), 9));
    assert_ne!(hash, credit_input_hash("alice", &big(10), 8));
    assert_ne!(hash, credit_input_hash("alice", &big(11), 9));
    assert_ne!(hash, credit_input_hash("alicf", &big(10), 9));
    let answer = IdempotentAnswer {
        input_hash: hash,
        status: 201,
        body: b"RECEIVED".to_vec(),
        at_ms: 1_700_000_000_000,
    };
    assert_eq!(IdempotentAnswer::decode(&answer.encode()).unwrap(), answer);
    assert_eq!(
        answer.repeat(&hash),
        Repeat::Same {
            status: 201,
            body: b"RECEIVED".to_vec()
        }
    );
    assert_eq!(
        answer.repeat(&credit_input_hash("alice", &big(10), 8)),
        Repeat::Conflict
    );
    assert!(IdempotentAnswer::decode(&answer.encode()[..40]).is_err());
}

#[test]
fn digests_do_not_collide_across_part_boundaries() {
    assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    assert_ne!(credit_digest("a", "bc"), credit_digest("ab", "c"));
}

#[test]
fn uuids() {
    let id = uuid_v4([0xff; 16]);
    assert_eq!(format_uuid(&id), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    let id = uuid_v4([0; 16]);
    assert_eq!(format_uuid(&id), "00000000-0000-4000-8000-000000000000");
}

#[test]
fn records_round_trip_and_keys_sort_under_their_prefixes() {
    let out = OutgoingSettlement {
        id: uuid_v4([7; 16]),
        account: "peer/with slash".into(),
        amount: 12_345,
        scale: 9,
        engine: "http://127.0.0.1:3000/".into(),
    };
    assert_eq!(OutgoingSettlement::decode(&out.encode()).unwrap(), out);
    assert_eq!(out.quantity(), Quantity::new(12_345u64, 9));
    assert_eq!(out.idempotency_key(), format_uuid(&out.id));
    let entry = LedgerEntry {
        direction: Direction::In,
        amount: 5,
        at_ms: 9,
    };
    assert_eq!(LedgerEntry::decode(&entry.encode()), Some(entry));
    assert_eq!(LedgerEntry::decode(b"X00000000000000000"), None);
    for (prefix, key) in [
        (keys::OUTGOING, out.key()),
        (keys::INCOMING, keys::incoming(&[1; 32])),
        (keys::LEFTOVER, keys::leftover("a/b")),
        (keys::LOG, keys::log("a/b", &[2; 16])),
    ] {
        let (from, to) = keys::range(prefix);
        assert!(from <= key && key < to, "{prefix}");
    }
    assert_eq!(keys::leftover("a/b"), b"rfc38-left/612f62".to_vec());
    // One account's entries sort together, apart from an account whose id extends it.
    assert!(keys::log("a", &[0xff; 16]) < keys::log("ab", &[0; 16]));
}

fn prepare(amount: u64, destination: &str, condition: &[u8; 32], expires_ms: u64) -> Prepare {
    PrepareBuilder {
        amount,
        expires_at: Timestamp::from_unix_millis(expires_ms),
        execution_condition: condition,
        destination: &Address::try_from(destination).unwrap(),
        data: b"{}",
    }
    .build()
    .unwrap()
}

#[test]
fn messages_travel_as_peer_settle_packets() {
    let expires = Timestamp::from_unix_millis(1_434_412_860_000);
    let p = message_prepare(b"hello", expires).unwrap();
    assert_eq!(p.destination_str(), "peer.settle");
    assert_eq!(p.amount(), 0);
    assert_eq!(p.execution_condition(), &PEER_PROTOCOL_CONDITION);
    assert_eq!(
        hex::encode(PEER_PROTOCOL_CONDITION),
        "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    );
    assert_eq!(p.data(), b"hello");
    let f = message_fulfill(b"reply").unwrap();
    assert_eq!(f.fulfillment(), &PEER_PROTOCOL_FULFILLMENT);
    assert_eq!(f.data(), b"reply");

    let now = Timestamp::from_unix_millis(1_000);
    // The RFC's own condition (SHA-256 of nothing) is taken as well as interledger-rs's.
    let rfc_condition: [u8; 32] =
        hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap()
            .try_into()
            .unwrap();
    assert_eq!(
        check_message(&prepare(0, "peer.settle", &rfc_condition, 2_000), now),
        Ok(())
    );
    assert_eq!(check_message(&p, now), Ok(()));
    let e = check_message(
        &prepare(5, "peer.settle", &PEER_PROTOCOL_CONDITION, 2_000),
        now,
    );
    assert_eq!(e, Err(MessageError::NotZero(5)));
    assert_eq!(e.unwrap_err().code(), ErrorCode::F01_INVALID_PACKET);
    assert_eq!(
        check_message(
            &prepare(0, "peer.settlex", &PEER_PROTOCOL_CONDITION, 2_000),
            now
        ),
        Err(MessageError::WrongDestination)
    );
    let e = check_message(
        &prepare(0, "peer.settle", &PEER_PROTOCOL_CONDITION, 999),
        now,
    );
    assert_eq!(e, Err(MessageError::Expired));
    assert_eq!(e.unwrap_err().code(), ErrorCode::R02_INSUFFICIENT_TIMEOUT);
}

#[test]
fn engine_failures_map_to_ilp_codes() {
    assert_eq!(engine_failure_code(Some(400)), ErrorCode::F00_BAD_REQUEST);
    assert_eq!(engine_failure_code(Some(404)), ErrorCode::F00_BAD_REQUEST);
    assert_eq!(engine_failure_code(Some(499)), ErrorCode::F00_BAD_REQUEST);
    assert_eq!(
        engine_failure_code(Some(500)),
        ErrorCode::T00_INTERNAL_ERROR
    );
    assert_eq!(
        engine_failure_code(Some(503)),
        ErrorCode::T00_INTERNAL_ERROR
    );
    assert_eq!(engine_failure_code(None), ErrorCode::T00_INTERNAL_ERROR);
}

#[test]
fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
    for random in [0, 1, 7, u64::MAX] {
        for attempt in 0..70 {
            let full = (500u64 << attempt.min(20)).min(60_000);
            let d = backoff_ms(attempt, 500, 60_000, random);
            assert!(d >= full / 2 && d <= full, "{attempt} {random} {d}");
        }
    }
    assert_eq!(backoff_ms(0, 500, 60_000, 0), 250);
    assert_eq!(backoff_ms(40, 500, 60_000, 30_000), 60_000);
}
