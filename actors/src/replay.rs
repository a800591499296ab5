//! Durable fulfill records: what lets a node that crashed answer a repeated Prepare it had
//! already been paid for, instead of forwarding (and charging) it a second time.
//!
//! The BalanceKeeper commits a fulfilled packet's balances and, in the same atomic batch, a
//! record `fulfilled/<expiry ms, 8 bytes BE><payment digest><account id>` whose value holds the
//! Fulfill; the payment digest is the SHA-256 of the Prepare without its expiry
//! ([`ilp::policy::outgoing::payment_digest`]). A crash can fall between that commit and the Fulfill reaching the
//! sender; the sender then repeats the identical Prepare (a BTP/2.0-I retry, an HTTP retry).
//! While the node runs, [`Payments`] remembers what it was paid for; after a restart
//! [`load_paid`] fills it again from the records whose Prepare has not expired yet, so the
//! Router answers a matching Prepare from the same account with the stored Fulfill.
//!
//! The keeper commits the packets it resolved in one mailbox pass as one batch, and their
//! records as one [`RecordGroup`]: a single store record, keyed like the record of its
//! latest-expiring packet, whose value lists every packet's tag and Fulfill. One record per
//! batch instead of one per packet: the store sorts, flushes and compacts some fifty times
//! fewer entries at full load.
//!
//! Records are keyed by expiry first, so dropping the expired ones is one range delete
//! ([`expired_before`]), which the BalanceKeeper issues periodically; a group goes once its
//! last packet expired.
//!
//! Records written before payments were keyed without their expiry (single-packet records, and
//! groups marked 1) hold digests of whole Prepares, which no Prepare is looked up by any more:
//! they are skipped, with a warning. They live only as long as their Prepares (seconds), and a
//! node stopped cleanly has answered every packet it was paid for before it exits.

use crate::messages::AccountId;
use crate::payments::Payments;
use crate::store::{Store, StoreError, StoreOp};
use bytes::{BufMut, Bytes};
use ilp::oer::{OerError, OerWrite, Reader};
use ilp::packet::{Fulfill, Timestamp};

/// Prefix of every fulfill record key.
pub const PREFIX: &[u8] = b"fulfilled/";

const DIGEST_LEN: usize = 32;
const EXPIRY_LEN: usize = 8;

/// Identifies one incoming Prepare: the account it came from, its payment digest and its
/// expiry (which bounds how long the record is worth keeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTag {
    pub account: AccountId,
    pub digest: [u8; 32],
    pub expires_at: Timestamp,
}

impl ReplayTag {
    pub fn key(&self) -> Vec<u8> {
        let mut key =
            Vec::with_capacity(PREFIX.len() + EXPIRY_LEN + DIGEST_LEN + self.account.len());
        key.extend_from_slice(PREFIX);
        key.extend_from_slice(&self.expires_at.unix_millis().to_be_bytes());
        key.extend_from_slice(&self.digest);
        key.extend_from_slice(self.account.as_bytes());
        key
    }

    fn parse(key: &[u8]) -> Option<ReplayTag> {
        let rest = key.strip_prefix(PREFIX)?;
        let (expiry, rest) = rest.split_first_chunk::<EXPIRY_LEN>()?;
        let (digest, account) = rest.split_first_chunk::<DIGEST_LEN>()?;
        let account = std::str::from_utf8(account).ok()?;
        Some(ReplayTag {
            account: AccountId::from(account),
            digest: *digest,
            expires_at: Timestamp::from_unix_millis(u64::from_be_bytes(*expiry)),
        })
    }
}

/// A fulfilled packet's record, on its way to the keeper's [`RecordGroup`].
#[derive(Debug, Clone)]
pub struct FulfillRecord {
    pub tag: ReplayTag,
    pub fulfill: Fulfill,
}

/// First byte of a group's value.
const GROUP_MARK: u8 = 2;
/// First byte of a group of the older layout, whose digests covered the whole Prepare.
const OLDER_GROUP_MARK: u8 = 1;
/// First byte of a one-packet record of the oldest layout: the Fulfill itself (its type, 13).
const OLDER_SINGLE_MARK: u8 = 13;

/// The fulfill records of one store commit, built into one record: the value is
/// [`GROUP_MARK`], then per packet, in OER: its expiry (u64), its payment digest (32 bytes), its account id and its Fulfill (variable-length octet strings).
#[derive(Debug, Default)]
pub struct RecordGroup {
    /// The tag of the packet that expires last: the group's key, so it lives as long.
    latest: Option<ReplayTag>,
    value: Vec<u8>,
}

impl RecordGroup {
    pub fn push(&mut self, record: FulfillRecord) {
        let FulfillRecord { tag, fulfill } = record;
        if self.value.is_empty() {
            // Room for a few dozen packets of a busy batch without regrowing from zero.
            self.value.reserve(64 * 128);
            self.value.push(GROUP_MARK);
        }
        self.value.put_u64(tag.expires_at.unix_millis());
        self.value.put_slice(&tag.digest);
        self.value.put_var_octet_string(tag.account.as_bytes());
        self.value.put_var_octet_string(fulfill.as_bytes());
        match &self.latest {
            Some(latest) if latest.expires_at >= tag.expires_at => {}
            _ => self.latest = Some(tag),
        }
    }

    /// The store write of the whole group; `None` when no packet was pushed.
    pub fn into_op(self) -> Option<StoreOp> {
        let latest = self.latest?;
        Some(StoreOp::PutRecord {
            key: latest.key(),
            value: self.value,
        })
    }
}

/// The packets of one stored record; `None` for a record of an older layout.
fn parse_record(
    key: &[u8],
    value: Vec<u8>,
) -> Result<Option<Vec<(ReplayTag, Fulfill)>>, StoreError> {
    ReplayTag::parse(key)
        .ok_or_else(|| StoreError::Corrupt(format!("malformed fulfill record key {key:02x?}")))?;
    let not_a_fulfill = |account: &AccountId, e: ilp::packet::PacketError| {
        StoreError::Corrupt(format!(
            "fulfill record of account {account} is not a Fulfill: {e}"
        ))
    };
    match value.first() {
        Some(&GROUP_MARK) => {}
        Some(&OLDER_GROUP_MARK | &OLDER_SINGLE_MARK) => return Ok(None),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "fulfill record {key:02x?} of an unknown layout"
            )))
        }
    }
    let value = Bytes::from(value);
    let corrupt =
        |e: OerError| StoreError::Corrupt(format!("fulfill record group {key:02x?}: {e}"));
    let mut packets = Vec::new();
    let mut reader = Reader::new(&value[1..]);
    while !reader.is_empty() {
        let expiry = reader.read_u64().map_err(corrupt)?;
        let digest = *reader.read_array::<DIGEST_LEN>().map_err(corrupt)?;
        let account = AccountId::from(reader.read_var_str().map_err(corrupt)?);
        let bytes = reader.read_var_octet_string().map_err(corrupt)?;
        let fulfill =
            Fulfill::parse(value.slice_ref(bytes)).map_err(|e| not_a_fulfill(&account, e))?;
        packets.push((
            ReplayTag {
                account,
                digest,
                expires_at: Timestamp::from_unix_millis(expiry),
            },
            fulfill,
        ));
    }
    Ok(Some(packets))
}

fn time_key(at: Timestamp) -> Vec<u8> {
    [PREFIX, &at.unix_millis().to_be_bytes()].concat()
}

/// Deletes every record whose Prepare expired before `now`.
pub fn expired_before(now: Timestamp) -> StoreOp {
    StoreOp::DeleteRange {
        from: PREFIX.to_vec(),
        to: time_key(now),
    }
}

/// Loads the records of Prepares that expire at or after `now` into `payments`, which answers
/// repeats of them from then on; returns how many it loaded. A record that does not parse is
/// reported as corrupt rather than skipped: it may be a payment we owe an answer.
pub fn load_paid(
    store: &dyn Store,
    now: Timestamp,
    payments: &Payments,
) -> Result<usize, StoreError> {
    // Just past every key under the prefix ('0' follows '/').
    let end = b"fulfilled0";
    let (mut loaded, mut older) = (0, 0);
    for (key, value) in store.scan_records(&time_key(now), end)? {
        let Some(packets) = parse_record(&key, value)? else {
            older += 1;
            continue;
        };
        for (tag, fulfill) in packets {
            // A group lives as long as its latest packet; the others may have expired.
            if tag.expires_at >= now {
                payments.remember_paid(&tag.account, &tag.digest, tag.expires_at, now, &fulfill);
                loaded += 1;
            }
        }
    }
    if older > 0 {
        slog::warn!(crate::log::logger(), "fulfill records of an older version skipped";
            "records" => older,
            "why" => "their digests cover whole Prepares; repeats of those packets are not recognized until they expire");
    }
    Ok(loaded)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::payments::{Seen, Side};
    use crate::store::memory::MemoryStore;
    use ilp::packet::FulfillBuilder;

    /// A Fulfill of `[byte; 32]` with data "paid".
    pub(crate) fn fulfill(byte: u8) -> Fulfill {
        FulfillBuilder {
            fulfillment: &[byte; 32],
            data: b"paid",
        }
        .build()
        .unwrap()
    }

    fn tag(account: &str, digest: u8, expires_ms: u64) -> ReplayTag {
        ReplayTag {
            account: AccountId::from(account),
            digest: [digest; 32],
            expires_at: Timestamp::from_unix_millis(expires_ms),
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn keys_round_trip_and_sort_by_expiry() {
        let a = tag("alice.x~y", 7, 1_700_000_000_000);
        assert_eq!(ReplayTag::parse(&a.key()), Some(a.clone()));
        let later = tag("a", 0, 1_700_000_000_001);
        assert!(a.key() < later.key());
        assert_eq!(ReplayTag::parse(b"fulfilled/short"), None);
        assert_eq!(ReplayTag::parse(b"other/"), None);
    }

    /// The one-packet layout written before groups (whole-Prepare digests).
    fn single(tag: &ReplayTag, fulfill: &Fulfill) -> StoreOp {
        StoreOp::PutRecord {
            key: tag.key(),
            value: fulfill.as_bytes().to_vec(),
        }
    }

    /// The group layout whose digests covered whole Prepares.
    fn older_group(tag: &ReplayTag, fulfill: &Fulfill) -> StoreOp {
        let mut value = vec![OLDER_GROUP_MARK];
        value.put_u64(tag.expires_at.unix_millis());
        value.put_slice(&tag.digest);
        value.put_var_octet_string(tag.account.as_bytes());
        value.put_var_octet_string(fulfill.as_bytes());
        StoreOp::PutRecord {
            key: tag.key(),
            value,
        }
    }

    fn group(packets: &[(ReplayTag, Fulfill)]) -> StoreOp {
        let mut group = RecordGroup::default();
        for (tag, fulfill) in packets {
            group.push(FulfillRecord {
                tag: tag.clone(),
                fulfill: fulfill.clone(),
            });
        }
        group.into_op().unwrap()
    }

    #[test]
    fn a_group_is_keyed_by_its_latest_packet_and_lists_every_packet() {
        assert_eq!(RecordGroup::default().into_op(), None);
        let packets = vec![
            (tag("alice", 1, 5_000), fulfill(1)),
            (tag("bob.x~y", 2, 9_000), fulfill(2)),
            (tag("alice", 3, 7_000), fulfill(3)),
        ];
        let StoreOp::PutRecord { key, value } = group(&packets) else {
            panic!("a group is one record");
        };
        assert_eq!(key, tag("bob.x~y", 2, 9_000).key());
        assert_eq!(parse_record(&key, value).unwrap(), Some(packets));
    }

    #[tokio::test]
    async fn load_keeps_unexpired_records_and_answers_per_account() {
        let store = MemoryStore::new();
        store
            .commit(vec![
                group(&[
                    (tag("alice", 1, 1_000), fulfill(1)),
                    (tag("alice", 2, 5_000), fulfill(2)),
                ]),
                group(&[(tag("bob", 2, 9_000), fulfill(3))]),
                group(&[(tag("carol", 6, 9_000), fulfill(6))]),
                // Older layouts: skipped, not loaded and not an error.
                single(&tag("carol", 4, 3_000), &fulfill(4)),
                older_group(&tag("carol", 5, 3_000), &fulfill(5)),
            ])
            .await
            .unwrap();
        let payments = Payments::new();
        let loaded = load_paid(&store, at(2_000), &payments).unwrap();
        assert_eq!(
            loaded, 3,
            "what expired before 2 000 is not loaded, nor a record of an older layout"
        );
        assert_eq!(payments.stats(at(2_000)).paid, 3);
        // The answer to a Prepare from `account` with this digest, seen at `now`.
        let paid = |account: &str, digest: u8, now_ms: u64| {
            let account = payments.account(&AccountId::from(account));
            match account.begin(Side::Incoming, &[digest; 32], at(99_000), at(now_ms)) {
                Seen::Paid(fulfill) => Some(fulfill),
                _ => None,
            }
        };
        assert_eq!(paid("alice", 2, 2_000), Some(fulfill(2)));
        assert_eq!(paid("bob", 2, 2_000), Some(fulfill(3)));
        assert_eq!(paid("carol", 6, 2_000), Some(fulfill(6)));
        assert_eq!(paid("carol", 4, 2_000), None);
        // Another account's digest is another payment.
        assert_eq!(paid("alice", 3, 2_000), None);
        assert_eq!(paid("alice", 1, 2_000), None);
        // A repeat is answered again (the first answer may have been lost too), through the
        // second its first copy expires in.
        assert_eq!(paid("alice", 2, 5_999), Some(fulfill(2)));
        // After that a record answers nothing, and its second is dropped.
        assert_eq!(paid("alice", 2, 6_000), None);
        assert_eq!(payments.stats(at(6_000)).paid, 2);
        assert_eq!(payments.stats(at(10_000)).paid, 0);
    }

    #[tokio::test]
    async fn expired_before_deletes_only_expired_records() {
        let store = MemoryStore::new();
        store
            .commit(vec![
                single(&tag("alice", 1, 1_000), &fulfill(1)),
                group(&[
                    (tag("alice", 2, 2_000), fulfill(2)),
                    (tag("alice", 3, 500), fulfill(3)),
                ]),
                StoreOp::PutRecord {
                    key: b"settle/x".to_vec(),
                    value: b"1".to_vec(),
                },
            ])
            .await
            .unwrap();
        store.commit(vec![expired_before(at(2_000))]).await.unwrap();
        assert_eq!(
            store.count_records(PREFIX),
            1,
            "a group stays while its latest packet has not expired"
        );
        assert_eq!(store.count_records(b"settle/"), 1);
        store.commit(vec![expired_before(at(2_001))]).await.unwrap();
        assert_eq!(store.count_records(PREFIX), 0);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_skipped() {
        let store = MemoryStore::new();
        let corrupt = |value: Vec<u8>| StoreOp::PutRecord {
            key: tag("alice", 1, 5_000).key(),
            value,
        };
        let StoreOp::PutRecord { value: whole, .. } = group(&[
            (tag("alice", 1, 5_000), fulfill(1)),
            (tag("bob", 2, 4_000), fulfill(2)),
        ]) else {
            panic!("a group is one record");
        };
        let mut bad_fulfill = whole.clone();
        // The packet type of the last Fulfill.
        let last = bad_fulfill.len() - fulfill(2).as_bytes().len();
        bad_fulfill[last] = 12;
        let mut bad_account = whole.clone();
        // The first byte of the account id, after its one-byte length.
        bad_account[1 + EXPIRY_LEN + DIGEST_LEN + 1] = 0xff;
        for value in [
            b"not a packet".to_vec(),
            whole[..whole.len() - 1].to_vec(),
            whole[..1 + EXPIRY_LEN + 3].to_vec(),
            bad_fulfill,
            bad_account,
        ] {
            store.commit(vec![corrupt(value.clone())]).await.unwrap();
            assert!(
                matches!(
                    load_paid(&store, at(0), &Payments::new()),
                    Err(StoreError::Corrupt(_))
                ),
                "{value:02x?} loads"
            );
        }
        store.commit(vec![corrupt(whole)]).await.unwrap();
        assert_eq!(load_paid(&store, at(0), &Payments::new()).unwrap(), 2);
        let mut key = tag("alice", 1, 5_000).key();
        key.truncate(PREFIX.len() + EXPIRY_LEN + 3);
        store
            .commit(vec![StoreOp::PutRecord {
                key,
                value: fulfill(1).as_bytes().to_vec(),
            }])
            .await
            .unwrap();
        assert!(matches!(
            load_paid(&store, at(0), &Payments::new()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
