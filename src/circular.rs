//! Circular payments (seed 003): the node sends a Prepare out through one of its accounts,
//! addressed to itself, and fulfills it when it comes back through another. An operator uses
//! one to test a route, to measure what a path delivers, or to move credit from one peer to
//! another: the first hop is paid what was sent, the last hop pays what came back.
//!
//! The Prepare's destination is the node's own address and its data is [`MAGIC`] followed by
//! a 16-byte id, so a node can tell its own circular payment from any other packet to its
//! address. Only the node that drew the fulfillment can fulfill it: a copy arriving anywhere
//! else cannot be claimed. This module is the state of one circular payment, without I/O: the
//! Prepare to send, and the checks a returning Prepare must pass before it is fulfilled.

use crate::packet::{
    Address, ErrorCode, Fulfill, FulfillBuilder, PacketError, Prepare, PrepareBuilder, Timestamp,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The first bytes of a circular payment's data; the version is the last byte.
pub const MAGIC: [u8; 16] = *b"ILPCONNCIRCULAR\x01";
/// The whole data: the magic and the payment's id.
pub const DATA_LEN: usize = MAGIC.len() + 16;

/// The id in a circular payment's data, or `None` when `data` is not one.
pub fn id_of(data: &[u8]) -> Option<[u8; 16]> {
    if data.len() != DATA_LEN || data[..MAGIC.len()] != MAGIC {
        return None;
    }
    data[MAGIC.len()..].try_into().ok()
}

/// True when `data` is a circular payment's.
pub fn is_circular(data: &[u8]) -> bool {
    id_of(data).is_some()
}

/// Why a returning Prepare is not fulfilled. Nothing is booked for any of them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("this circular payment's data carries another id")]
    WrongId,
    #[error("this circular payment already came back")]
    AlreadyReturned,
    #[error("the circular payment was to come back through {expected}, not {came}")]
    WrongAccount { expected: String, came: String },
    #[error(
        "the circular payment came back with {left_ms} ms left, less than the {needed_ms} ms \
         needed to pass the fulfillment back"
    )]
    TooLate { left_ms: u64, needed_ms: u64 },
    #[error("the circular payment came back with {returned}, less than the minimum {minimum}")]
    TooLittle { returned: u64, minimum: u64 },
}

impl Refusal {
    /// The code of the Reject that answers the returning Prepare.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::WrongId | Refusal::AlreadyReturned | Refusal::WrongAccount { .. } => {
                ErrorCode::F06_UNEXPECTED_PAYMENT
            }
            Refusal::TooLate { .. } => ErrorCode::R02_INSUFFICIENT_TIMEOUT,
            Refusal::TooLittle { .. } => ErrorCode::F04_INSUFFICIENT_DESTINATION_AMOUNT,
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    /// The account it came back through.
    pub account: String,
    /// The amount that arrived, in that account's units.
    pub amount: u64,
    pub expires_at: Timestamp,
}

/// One circular payment from the moment its Prepare is built until it has come back (or not).
#[derive(Debug, Clone)]
pub struct Circuit {
    id: [u8; 16],
    fulfillment: [u8; 32],
    condition: [u8; 32],
    /// The first hop, paid `amount` in its units.
    pub via: String,
    /// The account it must come back through; `None`: any.
    pub return_via: Option<String>,
    pub amount: u64,
    /// The least that must come back, in the returning account's units.
    pub min_return: u64,
    pub expires_at: Timestamp,
    returned: Option<Returned>,
}

impl Circuit {
    /// A circular payment of `amount` out through `via`, expiring at `expires_at`, with the
    /// `id` and secret `fulfillment` the caller drew at random.
    pub fn new(
        id: [u8; 16],
        fulfillment: [u8; 32],
        via: &str,
        return_via: Option<&str>,
        amount: u64,
        min_return: u64,
        expires_at: Timestamp,
    ) -> Self {
        Circuit {
            id,
            fulfillment,
            condition: Sha256::digest(fulfillment).into(),
            via: via.to_owned(),
            return_via: return_via.map(str::to_owned),
            amount,
            min_return,
            expires_at,
            returned: None,
        }
    }

    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    pub fn condition(&self) -> &[u8; 32] {
        &self.condition
    }

    /// What came back, once it has.
    pub fn returned(&self) -> Option<&Returned> {
        self.returned.as_ref()
    }

    /// The Prepare to send through `via`, addressed to `own` (our address).
    pub fn prepare(&self, own: &Address) -> Result<Prepare, PacketError> {
        let mut data = [0u8; DATA_LEN];
        data[..MAGIC.len()].copy_from_slice(&MAGIC);
        data[MAGIC.len()..].copy_from_slice(&self.id);
        PrepareBuilder {
            amount: self.amount,
            expires_at: self.expires_at,
            execution_condition: &self.condition,
            destination: own,
            data: &data,
        }
        .build()
    }

    /// Checks `prepare`, which came back through account `from` at `now` with this payment's
    /// condition, and accepts it: the Fulfill to answer with. It needs `window_ms` left before
    /// its expiry to reach the hops before us. Accepted at most once.
    pub fn accept_return(
        &mut self,
        from: &str,
        prepare: &Prepare,
        now: Timestamp,
        window_ms: u64,
    ) -> Result<(Fulfill, Returned), Refusal> {
        if id_of(prepare.data()) != Some(self.id) {
            return Err(Refusal::WrongId);
        }
        if self.returned.is_some() {
            return Err(Refusal::AlreadyReturned);
        }
        if let Some(expected) = self.return_via.as_deref().filter(|e| *e != from) {
            return Err(Refusal::WrongAccount {
                expected: expected.to_owned(),
                came: from.to_owned(),
            });
        }
        let left_ms = if prepare.expires_at() < now {
            0
        } else {
            now.millis_until(prepare.expires_at())
        };
        if left_ms < window_ms {
            return Err(Refusal::TooLate {
                left_ms,
                needed_ms: window_ms,
            });
        }
        if prepare.amount() < self.min_return {
            return Err(Refusal::TooLittle {
                returned: prepare.amount(),
                minimum: self.min_return,
            });
        }
        let fulfill = FulfillBuilder {
            fulfillment: &self.fulfillment,
            data: &[],
        }
        .build()
        .map_err(|_| Refusal::WrongId)?;
        let returned = Returned {
            account: from.to_owned(),
            amount: prepare.amount(),
            expires_at: prepare.expires_at(),
        };
        self.returned = Some(returned.clone());
        Ok((fulfill, returned))
    }
}

/// What came back for each unit sent, in standard units of each side's asset: `returned /
/// 10^returned_scale` over `sent / 10^sent_scale`. `None` when nothing was sent.
pub fn rate(sent: u64, sent_scale: u8, returned: u64, returned_scale: u8) -> Option<f64> {
    if sent == 0 {
        return None;
    }
    let shift = i32::from(sent_scale) - i32::from(returned_scale);
    Some(returned as f64 / sent as f64 * 10f64.powi(shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn own() -> Address {
        Address::try_from("test.node").unwrap()
    }

    fn circuit(return_via: Option<&str>, min_return: u64) -> Circuit {
        Circuit::new(
            [7; 16],
            [9; 32],
            "alice",
            return_via,
            1000,
            min_return,
            Timestamp::from_unix_millis(NOW + 30_000),
        )
    }

    /// The Prepare as the last hop sends it back: the path changes amount and expiry only.
    fn back(c: &Circuit, amount: u64, expires_in_ms: u64) -> Prepare {
        let sent = c.prepare(&own()).unwrap();
        sent.with_amount_and_expiry(amount, Timestamp::from_unix_millis(NOW + expires_in_ms))
    }

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(NOW)
    }

    #[test]
    fn the_prepare_is_to_ourselves_with_the_magic_and_id() {
        let c = circuit(None, 0);
        let p = c.prepare(&own()).unwrap();
        assert_eq!(p.destination_str(), "test.node");
        assert_eq!(p.amount(), 1000);
        assert_eq!(id_of(p.data()), Some([7; 16]));
        assert_eq!(p.execution_condition(), c.condition());
        assert_eq!(c.condition(), &<[u8; 32]>::from(Sha256::digest([9u8; 32])));
        assert!(!is_circular(b"ILPCONNCIRCULAR\x01short"));
        assert!(!is_circular(&[0; DATA_LEN]));
        let mut other_version = p.data().to_vec();
        other_version[15] = 2;
        assert!(!is_circular(&other_version));
    }

    #[test]
    fn a_return_is_fulfilled_once_with_the_secret() {
        let mut c = circuit(Some("bob"), 900);
        let (fulfill, returned) = c
            .accept_return("bob", &back(&c, 950, 20_000), now(), 1000)
            .unwrap();
        assert_eq!(fulfill.fulfillment(), &[9; 32]);
        assert_eq!(returned.account, "bob");
        assert_eq!(returned.amount, 950);
        assert_eq!(c.returned(), Some(&returned));
        assert_eq!(
            c.accept_return("bob", &back(&c, 950, 20_000), now(), 1000),
            Err(Refusal::AlreadyReturned)
        );
    }

    #[test]
    fn returns_that_break_the_rules_are_refused_with_their_codes() {
        let mut c = circuit(Some("bob"), 900);
        let wrong = c
            .accept_return("carol", &back(&c, 950, 20_000), now(), 1000)
            .unwrap_err();
        assert_eq!(wrong.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
        let late = c
            .accept_return("bob", &back(&c, 950, 999), now(), 1000)
            .unwrap_err();
        assert_eq!(
            late,
            Refusal::TooLate {
                left_ms: 999,
                needed_ms: 1000
            }
        );
        assert_eq!(late.code(), ErrorCode::R02_INSUFFICIENT_TIMEOUT);
        let little = c
            .accept_return("bob", &back(&c, 899, 20_000), now(), 1000)
            .unwrap_err();
        assert_eq!(
            little.code(),
            ErrorCode::F04_INSUFFICIENT_DESTINATION_AMOUNT
        );
        let mut other = circuit(None, 0);
        other.id = [8; 16];
        let foreign = back(&other, 950, 20_000);
        assert_eq!(
            c.accept_return("bob", &foreign, now(), 1000),
            Err(Refusal::WrongId)
        );
        assert_eq!(c.returned(), None, "no refusal marks it returned");
        // Any account will do when none was named.
        let mut any = circuit(None, 0);
        assert!(any
            .accept_return("carol", &back(&any, 0, 20_000), now(), 1000)
            .is_ok());
    }

    #[test]
    fn rate_is_in_standard_units() {
        assert_eq!(rate(0, 2, 5, 2), None);
        assert_eq!(rate(100, 2, 50, 2), Some(0.5));
        // 1.00 USD (scale 2) out, 0.9 EUR (scale 6: 900 000) back.
        let r = rate(100, 2, 900_000, 6).unwrap();
        assert!((r - 0.9).abs() < 1e-12, "{r}");
    }
}
