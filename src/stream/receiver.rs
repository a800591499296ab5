//! The STREAM receiver's answer to one Prepare, without I/O or state: decrypt, check, decide.
//!
//! A Prepare for one of our receivers ends here in one of three ways:
//! - **answered at once**, moving nothing: F06 when its data is not a STREAM Prepare under
//!   the connection's secret (RFC 29 §5.1: no data, the sender cannot read anything else);
//!   F99 with an encrypted reply when it cannot or must not be fulfilled (a rate probe whose
//!   condition is not ours, less arrived than the sender's minimum, money with no stream to
//!   carry it, shares past a u64, a connection past 2^31 packets); a Fulfill when no money
//!   arrived (zero amounts);
//! - **accepted**: money arrived for streams of the connection. The caller credits
//!   [`Accepted::amount`] durably, then answers [`Accepted::fulfill`] with each stream's total
//!   after the credit (the receipts sign those), or [`Accepted::refuse`] when the account
//!   could not take it.
//!
//! Every F99 and Fulfill carries an encrypted reply with the same sequence and the amount that
//! arrived, since the JS sender decrypts every F99 and gives up on one it cannot read. A reply
//! answers `ConnectionNewAddress` (even an empty one) with the account's asset. A Fulfill
//! advertises no limit (`StreamMaxMoney` of `u64::MAX`, with each stream's total) unless the
//! receiver is bounded: a limit once advertised may not be lowered (RFC 29 §4.4.4), and room
//! shared by every connection of an account can only shrink. A bounded receiver says how much
//! room is left only when it refuses an amount ([`Accepted::refuse`]).

use super::credentials::Connection;
use super::crypto::{StreamKeys, IV_LEN};
use super::frame::{ErrorCode as StreamError, Frame};
use super::packet::StreamPacket;
use super::receipt::Receipt;
use crate::packet::{
    Address, ErrorCode, Fulfill, FulfillBuilder, PacketType, Prepare, Reject, RejectBuilder,
};
use crate::spsp::ReceiptSetup;
use std::cell::Cell;

/// The most packets one connection may send (RFC 29 §5.1.3: the sender must close before).
pub const MAX_SEQUENCE: u64 = 1 << 31;

/// The most streams one packet may pay. Senders use a few (the JS library accepts 20 open
/// streams by default); thousands of tiny `StreamMoney` frames would only cost us CPU.
pub const MAX_STREAMS_PER_PACKET: usize = 64;

/// A Prepare that reached one of our receivers, and what the receiver is.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub prepare: &'a Prepare,
    /// What arrived, in the receiving account's units (after the node's conversion).
    pub arrived: u64,
    /// The receiving account's asset, told to senders that ask.
    pub asset_code: &'a str,
    pub asset_scale: u8,
    /// Whether the account has a maximum (then no receive limit is advertised).
    pub bounded: bool,
    /// Our address, as the Rejects' `triggered_by`.
    pub address: &'a Address,
}

/// What to do with the Prepare (`A`: what a receiver keeps of a Prepare it takes; STREAM's
/// [`Accepted`] by default, PSK2's in [`crate::psk2`]).
#[derive(Debug)]
pub enum Decision<A = Accepted> {
    /// Answer with this now: nothing is credited.
    Answer(Result<Fulfill, Reject>),
    /// Money arrived: credit it, then answer with the acceptance's Fulfill. Boxed: it holds
    /// the connection's expanded AES key.
    Accept(Box<A>),
}

/// A Prepare whose money the receiver takes once it is credited.
#[derive(Debug)]
pub struct Accepted {
    keys: StreamKeys,
    sequence: u64,
    /// What the Prepare carried, and what of it arrived here.
    sent: u64,
    arrived: u64,
    fulfillment: [u8; 32],
    /// Frames every answer carries (the asset details a sender asked for).
    frames: Vec<Frame>,
    bounded: bool,
    /// What each stream receives of it, by stream id (ascending).
    pub streams: Vec<(u64, u64)>,
    /// The sender closed the connection with this packet (its last money).
    pub closes: bool,
}

/// The Reject a receiver refuses with (STREAM's here, PSK2's too): F99 with an encrypted reply
/// or F06 without data, triggered by the receiver.
pub(crate) fn reject(code: ErrorCode, address: &Address, message: &str, data: &[u8]) -> Reject {
    RejectBuilder {
        code,
        triggered_by: Some(address),
        message,
        data,
    }
    .build()
    // Replies are a few dozen bytes; the only failure is data over 32 KB.
    .unwrap_or_else(|_| Reject::new(code, Some(address), message))
}

/// Encrypts a reply of `packet_type` (Fulfill or Reject) to the Prepare with `sequence`.
fn reply(
    keys: &StreamKeys,
    packet_type: PacketType,
    sequence: u64,
    arrived: u64,
    frames: Vec<Frame>,
    iv: &[u8; IV_LEN],
) -> Vec<u8> {
    let packet = StreamPacket {
        packet_type,
        sequence,
        prepare_amount: arrived,
        frames,
    };
    // A reply of a few frames is far below the plaintext limit.
    keys.encrypt_packet(iv, &packet).unwrap_or_default()
}

/// Splits `amount` among `shares` (stream id, shares) in proportion, rounded down; what the
/// rounding leaves goes to the lowest stream id (RFC 29 §5.3.8). Ids repeated are summed, in
/// O(n log n) for the thousands of frames a Prepare can hold. `None` when the shares add up to
/// more than a u64 (the JS receiver refuses those too).
fn split(amount: u64, shares: &[(u64, u64)]) -> Option<Vec<(u64, u64)>> {
    let mut sorted: Vec<(u64, u64)> = shares.iter().copied().filter(|(_, s)| *s > 0).collect();
    sorted.sort_unstable_by_key(|(id, _)| *id);
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    let mut all: u64 = 0;
    for (id, s) in sorted {
        all = all.checked_add(s)?;
        match merged.last_mut() {
            // At most `all`, which fits.
            Some((last, total)) if *last == id => *total += s,
            _ => merged.push((id, s)),
        }
    }
    if all == 0 {
        return Some(Vec::new());
    }
    let mut out: Vec<(u64, u64)> = merged
        .iter()
        .map(|&(id, s)| {
            // s <= all, so the share of `amount` fits in a u64.
            let part = u128::from(amount) * u128::from(s) / u128::from(all);
            (id, u64::try_from(part).unwrap_or(u64::MAX))
        })
        .collect();
    let given: u64 = out.iter().map(|(_, a)| a).sum();
    if let Some(first) = out.first_mut() {
        first.1 += amount - given;
    }
    Some(out)
}

/// Decides what to do with `incoming`, which reached `connection`. `iv` (fresh randomness)
/// encrypts the reply of an immediate answer.
pub fn decide(connection: &Connection, incoming: &Incoming<'_>, iv: &[u8; IV_LEN]) -> Decision {
    decide_inner(connection, incoming, iv, &Cell::new(false))
}

/// As [`decide`], and whether the packet (readable, of this connection) closes the connection
/// (`ConnectionClose`), whatever the answer: a sender's close usually moves no money (the JS
/// sender's is a zero-amount packet with a condition nobody can fulfill), yet the receiver's
/// owner wants to know.
pub fn decide_and_close(
    connection: &Connection,
    incoming: &Incoming<'_>,
    iv: &[u8; IV_LEN],
) -> (Decision, bool) {
    let closes = Cell::new(false);
    let decision = decide_inner(connection, incoming, iv, &closes);
    (decision, closes.get())
}

fn decide_inner(
    connection: &Connection,
    incoming: &Incoming<'_>,
    iv: &[u8; IV_LEN],
    closed: &Cell<bool>,
) -> Decision {
    let keys = StreamKeys::new(&connection.shared_secret);
    let prepare = incoming.prepare;
    let address = incoming.address;
    let unreadable = || {
        Decision::Answer(Err(reject(
            ErrorCode::F06_UNEXPECTED_PAYMENT,
            address,
            "not a STREAM packet of this connection",
            &[],
        )))
    };
    let Ok(packet) = keys.decrypt_packet(prepare.data()) else {
        return unreadable();
    };
    if packet.packet_type != PacketType::Prepare {
        return unreadable();
    }
    let arrived = incoming.arrived;
    let mut frames = Vec::new();
    let mut shares = Vec::new();
    let mut closes = false;
    for frame in &packet.frames {
        match frame {
            // Told once, however many times it is asked in one packet.
            Frame::ConnectionNewAddress { .. }
                if !frames
                    .iter()
                    .any(|f| matches!(f, Frame::ConnectionAssetDetails { .. })) =>
            {
                frames.push(Frame::ConnectionAssetDetails {
                    source_asset_code: incoming.asset_code.to_owned(),
                    source_asset_scale: incoming.asset_scale,
                })
            }
            Frame::StreamMoney {
                stream_id,
                shares: s,
            } => shares.push((*stream_id, *s)),
            Frame::ConnectionClose { .. } => {
                closes = true;
                closed.set(true);
            }
            _ => {}
        }
    }
    let refuse = |frames: Vec<Frame>, message: &str| {
        let data = reply(
            &keys,
            PacketType::Reject,
            packet.sequence,
            arrived,
            frames,
            iv,
        );
        Decision::Answer(Err(reject(
            ErrorCode::F99_APPLICATION_ERROR,
            address,
            message,
            &data,
        )))
    };
    if packet.sequence >= MAX_SEQUENCE {
        frames.push(Frame::ConnectionClose {
            code: StreamError::PROTOCOL_VIOLATION,
            message: "too many packets on one connection".to_owned(),
        });
        return refuse(frames, "too many packets on one connection");
    }
    if arrived < packet.prepare_amount {
        return refuse(frames, "less arrived than the sender's minimum");
    }
    let fulfillment = keys.fulfillment(prepare.data());
    if &super::crypto::sha256(&fulfillment) != prepare.execution_condition() {
        // A rate probe (or a packet not meant to be paid): the sender reads what arrived.
        return refuse(frames, "the condition is not this connection's");
    }
    if arrived == 0 {
        let data = reply(&keys, PacketType::Fulfill, packet.sequence, 0, frames, iv);
        return Decision::Answer(Ok(fulfill_with(&fulfillment, &data)));
    }
    let Some(streams) = split(arrived, &shares) else {
        return refuse(frames, "the streams' shares add up to more than a u64");
    };
    if streams.len() > MAX_STREAMS_PER_PACKET {
        frames.push(Frame::ConnectionClose {
            code: StreamError::STREAM_ID_ERROR,
            message: format!("more than {MAX_STREAMS_PER_PACKET} streams in one packet"),
        });
        return refuse(frames, "too many streams in one packet");
    }
    if streams.is_empty() {
        return refuse(frames, "money for no stream");
    }
    Decision::Accept(Box::new(Accepted {
        keys,
        sequence: packet.sequence,
        sent: prepare.amount(),
        arrived,
        fulfillment,
        frames,
        bounded: incoming.bounded,
        streams,
        closes,
    }))
}

impl Accepted {
    /// What to credit.
    pub fn amount(&self) -> u64 {
        self.arrived
    }

    /// The Fulfill, once [`Accepted::amount`] is credited: `totals` holds each stream's total
    /// received after this packet (sorted by stream id); with `receipts`, a signed receipt of that
    /// total for every stream paid (RFC 39; stream ids above 255 get none: the receipt's field
    /// is one byte).
    pub fn fulfill(
        self,
        totals: &[(u64, u64)],
        receipts: Option<&ReceiptSetup>,
        iv: &[u8; IV_LEN],
    ) -> Fulfill {
        let mut frames = self.frames;
        for &(id, _) in &self.streams {
            let total = total_of(totals, id);
            if !self.bounded {
                frames.push(Frame::StreamMaxMoney {
                    stream_id: id,
                    receive_max: u64::MAX,
                    total_received: total,
                });
            }
            if let Some(setup) = receipts {
                if let Ok(receipt) = Receipt::new(setup.nonce, id, total) {
                    frames.push(Frame::StreamReceipt {
                        stream_id: id,
                        receipt: receipt.encode(&setup.secret).to_vec(),
                    });
                }
            }
        }
        let data = reply(
            &self.keys,
            PacketType::Fulfill,
            self.sequence,
            self.arrived,
            frames,
            iv,
        );
        fulfill_with(&self.fulfillment, &data)
    }

    /// What one unit of the sender's delivers here, rounded up (at least 1).
    fn smallest_delivery(&self) -> u64 {
        if self.sent == 0 {
            return 1;
        }
        self.arrived.div_ceil(self.sent).max(1)
    }

    /// The answer when the account could not take the money: F99, telling each stream how much
    /// more it can receive (`room`, shared by the streams paid), and closing them when even one
    /// unit of the sender's would not fit: a JS sender never lowers a limit it was told once
    /// and retries F99 at once, so a room it cannot fill would keep it sending the same packet.
    /// `totals` are the streams' totals so far.
    pub fn refuse(
        self,
        room: u64,
        totals: &[(u64, u64)],
        address: &Address,
        iv: &[u8; IV_LEN],
    ) -> Reject {
        let smallest = self.smallest_delivery();
        let mut frames = self.frames;
        for &(id, _) in &self.streams {
            let total = total_of(totals, id);
            frames.push(Frame::StreamMaxMoney {
                stream_id: id,
                receive_max: total.saturating_add(room),
                total_received: total,
            });
            if room < smallest {
                frames.push(Frame::StreamClose {
                    stream_id: id,
                    code: StreamError::APPLICATION_ERROR,
                    message: "the receiver is at its maximum".to_owned(),
                });
            }
        }
        let data = reply(
            &self.keys,
            PacketType::Reject,
            self.sequence,
            self.arrived,
            frames,
            iv,
        );
        reject(
            ErrorCode::F99_APPLICATION_ERROR,
            address,
            "the receiver cannot take this amount",
            &data,
        )
    }
}

/// Stream `id`'s total in `totals` (sorted by stream id), 0 when absent.
fn total_of(totals: &[(u64, u64)], id: u64) -> u64 {
    totals
        .binary_search_by_key(&id, |(i, _)| *i)
        .map_or(0, |i| totals[i].1)
}

/// A Fulfill carrying `data`, or none when a sender's thousands of streams made the reply
/// longer than a packet allows (the sender is paid all the same).
pub(crate) fn fulfill_with(fulfillment: &[u8; 32], data: &[u8]) -> Fulfill {
    let build = |data: &[u8]| FulfillBuilder { fulfillment, data }.build();
    build(data)
        .or_else(|_| build(&[]))
        .expect("a Fulfill without data always builds")
}

/// A sender's Prepare to a receiver of ours carrying `data`, with the condition `keys` derive
/// from it when `ours` (else one nobody can fulfill, as a probe has): for the receivers' tests.
#[cfg(test)]
pub(crate) fn sender_prepare(keys: &StreamKeys, data: &[u8], amount: u64, ours: bool) -> Prepare {
    let condition = if ours { keys.condition(data) } else { [0; 32] };
    crate::packet::PrepareBuilder {
        amount,
        expires_at: crate::packet::Timestamp::from_unix_millis(1_000_000),
        execution_condition: &condition,
        destination: &Address::try_from("test.node.alice.token").expect("a valid address"),
        data,
    }
    .build()
    .expect("a Prepare of a test's data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PrepareBuilder, Timestamp};
    use crate::stream::credentials::Protocol;

    const SECRET: [u8; 32] = [5; 32];
    const SETUP: ReceiptSetup = ReceiptSetup {
        nonce: [3; 16],
        secret: [4; 32],
    };

    fn connection() -> Connection {
        Connection {
            protocol: Protocol::Stream,
            shared_secret: SECRET,
            id: [1; 16],
            receipts: Some(SETUP),
            tag: None,
            issued_at: 0,
        }
    }

    fn address() -> Address {
        Address::try_from("test.node.alice").unwrap()
    }

    /// A sender's Prepare of `amount` carrying `packet`, encrypted under `secret`; its
    /// condition is the connection's unless `probe`.
    fn prepare(secret: &[u8; 32], amount: u64, packet: &StreamPacket, probe: bool) -> Prepare {
        let keys = StreamKeys::new(secret);
        let data = keys.encrypt_packet(&[8; 12], packet).unwrap();
        sender_prepare(&keys, &data, amount, !probe)
    }

    fn sent(sequence: u64, min: u64, frames: Vec<Frame>) -> StreamPacket {
        StreamPacket {
            packet_type: PacketType::Prepare,
            sequence,
            prepare_amount: min,
            frames,
        }
    }

    fn money(stream_id: u64, shares: u64) -> Frame {
        Frame::StreamMoney { stream_id, shares }
    }

    fn decide_on(prepare: &Prepare, arrived: u64, bounded: bool) -> Decision {
        let address = address();
        let incoming = Incoming {
            prepare,
            arrived,
            asset_code: "USD",
            asset_scale: 2,
            bounded,
            address: &address,
        };
        decide(&connection(), &incoming, &[9; 12])
    }

    /// The reply a sender reads from an answer's data.
    fn read(data: &[u8]) -> StreamPacket {
        StreamKeys::new(&SECRET).decrypt_packet(data).unwrap()
    }

    fn rejected(decision: Decision) -> Reject {
        match decision {
            Decision::Answer(Err(reject)) => reject,
            other => panic!("expected a Reject, got {other:?}"),
        }
    }

    fn accepted(decision: Decision) -> Accepted {
        match decision {
            Decision::Accept(accepted) => *accepted,
            other => panic!("expected money, got {other:?}"),
        }
    }

    #[test]
    fn a_packet_paying_too_many_streams_is_refused_and_closes_the_connection() {
        let frames: Vec<Frame> = (0..=MAX_STREAMS_PER_PACKET as u64)
            .map(|i| money(2 * i + 1, 1))
            .collect();
        let p = prepare(&SECRET, 1_000, &sent(4, 0, frames), false);
        let Decision::Answer(Err(reject)) = decide_on(&p, 1_000, false) else {
            panic!("refused");
        };
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert!(read(reject.data()).frames.iter().any(|f| matches!(
            f,
            Frame::ConnectionClose { code, .. } if *code == StreamError::STREAM_ID_ERROR
        )));
        // As many as allowed are fine.
        let frames: Vec<Frame> = (0..MAX_STREAMS_PER_PACKET as u64)
            .map(|i| money(2 * i + 1, 1))
            .collect();
        let p = prepare(&SECRET, 1_000, &sent(5, 0, frames), false);
        assert_eq!(
            accepted(decide_on(&p, 1_000, false)).streams.len(),
            MAX_STREAMS_PER_PACKET
        );
    }

    #[test]
    fn money_is_split_by_shares_and_fulfilled_with_totals_and_receipts() {
        let p = prepare(
            &SECRET,
            10,
            &sent(3, 10, vec![money(1, 1), money(2, 2)]),
            false,
        );
        let accepted = accepted(decide_on(&p, 10, false));
        assert_eq!(accepted.amount(), 10);
        assert_eq!(accepted.streams, vec![(1, 4), (2, 6)]);
        assert!(!accepted.closes);
        let fulfill = accepted.fulfill(&[(1, 14), (2, 6)], Some(&SETUP), &[7; 12]);
        assert_eq!(
            &crate::stream::crypto::sha256(fulfill.fulfillment()),
            p.execution_condition()
        );
        let reply = read(fulfill.data());
        assert_eq!(reply.packet_type, PacketType::Fulfill);
        assert_eq!((reply.sequence, reply.prepare_amount), (3, 10));
        let receipt_of = |id: u64| {
            reply.frames.iter().find_map(|f| match f {
                Frame::StreamReceipt { stream_id, receipt } if *stream_id == id => {
                    Some(Receipt::verify(receipt, &SETUP.secret).unwrap())
                }
                _ => None,
            })
        };
        assert_eq!(receipt_of(1).unwrap().total_received, 14);
        assert_eq!(receipt_of(2).unwrap().total_received, 6);
        assert_eq!(receipt_of(1).unwrap().nonce, SETUP.nonce);
        assert!(reply.frames.contains(&Frame::StreamMaxMoney {
            stream_id: 1,
            receive_max: u64::MAX,
            total_received: 14
        }));
    }

    #[test]
    fn an_empty_new_address_gets_the_asset_and_zero_amounts_are_fulfilled_at_once() {
        // @interledger/pay's first packet: an empty address, its stream, nothing to send.
        let frames = vec![
            Frame::ConnectionNewAddress {
                source_account: String::new(),
            },
            Frame::StreamMaxMoney {
                stream_id: 1,
                receive_max: 0,
                total_received: 0,
            },
            Frame::ConnectionMaxData { max_offset: 0 },
            Frame::ConnectionMaxStreamId { max_stream_id: 1 },
        ];
        let p = prepare(&SECRET, 0, &sent(1, 0, frames), false);
        let Decision::Answer(Ok(fulfill)) = decide_on(&p, 0, false) else {
            panic!("a zero amount is fulfilled at once");
        };
        let reply = read(fulfill.data());
        assert_eq!(reply.packet_type, PacketType::Fulfill);
        assert_eq!(
            reply.frames,
            vec![Frame::ConnectionAssetDetails {
                source_asset_code: "USD".to_owned(),
                source_asset_scale: 2
            }]
        );
    }

    #[test]
    fn what_is_not_ours_is_f06_without_data() {
        let packet = sent(1, 0, vec![money(1, 1)]);
        let foreign = prepare(&[6; 32], 10, &packet, false);
        let reply_type = StreamPacket {
            packet_type: PacketType::Fulfill,
            ..packet.clone()
        };
        let swapped = prepare(&SECRET, 10, &reply_type, false);
        let mut short = prepare(&SECRET, 10, &packet, false).data().to_vec();
        short.truncate(20);
        let truncated = PrepareBuilder {
            amount: 10,
            expires_at: Timestamp::from_unix_millis(1_000_000),
            execution_condition: &[0; 32],
            destination: &address(),
            data: &short,
        }
        .build()
        .unwrap();
        for p in [foreign, swapped, truncated] {
            let reject = rejected(decide_on(&p, 10, false));
            assert_eq!(reject.code(), ErrorCode::F06_UNEXPECTED_PAYMENT);
            assert!(reject.data().is_empty());
            assert_eq!(reject.triggered_by(), Some(address()));
        }
    }

    #[test]
    fn refusals_are_f99_with_a_reply_the_sender_can_read() {
        let frames = || {
            vec![
                Frame::ConnectionNewAddress {
                    source_account: "test.bob".to_owned(),
                },
                money(1, 1),
            ]
        };
        // A rate probe: what arrived comes back; the asset is told.
        let probe = prepare(&SECRET, 1_000, &sent(1, 0, frames()), true);
        let reject = rejected(decide_on(&probe, 870, false));
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        let reply = read(reject.data());
        assert_eq!(reply.packet_type, PacketType::Reject);
        assert_eq!((reply.sequence, reply.prepare_amount), (1, 870));
        assert!(reply
            .frames
            .iter()
            .any(|f| matches!(f, Frame::ConnectionAssetDetails { .. })));
        // Less than the sender's minimum arrived.
        let short = prepare(&SECRET, 1_000, &sent(2, 900, frames()), false);
        let reply = read(rejected(decide_on(&short, 870, false)).data());
        assert_eq!(reply.prepare_amount, 870);
        // Money for no stream (the JS receiver credits the connection; no JS sender sends it).
        let nowhere = prepare(&SECRET, 10, &sent(3, 0, vec![]), false);
        let reject = rejected(decide_on(&nowhere, 10, false));
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        let reply = read(reject.data());
        assert_eq!(
            (reply.packet_type, reply.sequence, reply.prepare_amount),
            (PacketType::Reject, 3, 10)
        );
        // Asked many times in one packet, the asset is told once.
        let asking = vec![
            Frame::ConnectionNewAddress {
                source_account: String::new()
            };
            50
        ];
        let p = prepare(&SECRET, 0, &sent(4, 0, asking), false);
        let Decision::Answer(Ok(fulfill)) = decide_on(&p, 0, false) else {
            panic!("a zero amount is fulfilled");
        };
        assert_eq!(read(fulfill.data()).frames.len(), 1);
        // Past the packets a connection may send.
        let late = prepare(&SECRET, 10, &sent(MAX_SEQUENCE, 0, frames()), false);
        let reply = read(rejected(decide_on(&late, 10, false)).data());
        assert!(reply.frames.iter().any(|f| matches!(
            f,
            Frame::ConnectionClose { code, .. } if *code == StreamError::PROTOCOL_VIOLATION
        )));
    }

    #[test]
    fn a_bounded_receiver_advertises_room_only_when_it_refuses() {
        let p = prepare(&SECRET, 50, &sent(4, 0, vec![money(1, 1)]), false);
        let fulfill = accepted(decide_on(&p, 50, true)).fulfill(&[(1, 50)], None, &[7; 12]);
        let frames = read(fulfill.data()).frames;
        assert!(frames.is_empty(), "{frames:?}");

        let some_room =
            accepted(decide_on(&p, 50, true)).refuse(30, &[(1, 70)], &address(), &[7; 12]);
        assert_eq!(some_room.code(), ErrorCode::F99_APPLICATION_ERROR);
        let reply = read(some_room.data());
        assert_eq!(reply.prepare_amount, 50);
        assert_eq!(
            reply.frames,
            vec![Frame::StreamMaxMoney {
                stream_id: 1,
                receive_max: 100,
                total_received: 70
            }]
        );
        // One unit of the sender's delivers 3 here: a room of 2 cannot take even that.
        let tripled = prepare(&SECRET, 50, &sent(5, 0, vec![money(1, 1)]), false);
        let overshoot =
            accepted(decide_on(&tripled, 150, true)).refuse(2, &[(1, 98)], &address(), &[7; 12]);
        assert!(read(overshoot.data())
            .frames
            .iter()
            .any(|f| matches!(f, Frame::StreamClose { .. })));
        let fits =
            accepted(decide_on(&tripled, 150, true)).refuse(3, &[(1, 97)], &address(), &[7; 12]);
        assert!(!read(fits.data())
            .frames
            .iter()
            .any(|f| matches!(f, Frame::StreamClose { .. })));
        let full = accepted(decide_on(&p, 50, true)).refuse(0, &[(1, 100)], &address(), &[7; 12]);
        let reply = read(full.data());
        assert!(reply.frames.iter().any(|f| matches!(
            f,
            Frame::StreamClose { stream_id: 1, code, .. } if *code == StreamError::APPLICATION_ERROR
        )));
    }

    #[test]
    fn a_closing_packet_still_pays() {
        let frames = vec![
            money(1, 1),
            Frame::ConnectionClose {
                code: StreamError::NO_ERROR,
                message: String::new(),
            },
        ];
        let p = prepare(&SECRET, 5, &sent(9, 0, frames), false);
        let accepted = accepted(decide_on(&p, 5, false));
        assert!(accepted.closes);
        assert_eq!(accepted.streams, vec![(1, 5)]);
    }

    /// Prepares as ilp-protocol-stream 2.7.2-alpha.3 builds a client's packets
    /// (tests/data/stream/js_client_packets.json, from scripts/interop/gen-stream-vectors.js).
    #[test]
    fn packets_of_the_js_client_are_decided_as_it_expects() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let file: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/stream/js_client_packets.json"
        )))
        .unwrap();
        let b64 = |v: &serde_json::Value| STANDARD.decode(v.as_str().unwrap()).unwrap();
        assert_eq!(b64(&file["shared_secret"]), SECRET);
        let decided: Vec<(String, Prepare, Decision)> = file["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let amount: u64 = v["amount"].as_str().unwrap().parse().unwrap();
                let condition: [u8; 32] = b64(&v["condition"]).try_into().unwrap();
                let p = PrepareBuilder {
                    amount,
                    expires_at: Timestamp::from_unix_millis(1_000_000),
                    execution_condition: &condition,
                    destination: &Address::try_from("test.node.alice.token").unwrap(),
                    data: &b64(&v["data"]),
                }
                .build()
                .unwrap();
                let decision = decide_on(&p, amount, false);
                (v["name"].as_str().unwrap().to_owned(), p, decision)
            })
            .collect();
        let mut names = Vec::new();
        for (name, p, decision) in decided {
            match (name.as_str(), decision) {
                ("pay establishment", Decision::Answer(Ok(fulfill))) => {
                    assert_eq!(
                        &crate::stream::crypto::sha256(fulfill.fulfillment()),
                        p.execution_condition()
                    );
                    let reply = read(fulfill.data());
                    assert_eq!(reply.sequence, 1);
                    assert_eq!(
                        reply.frames,
                        vec![Frame::ConnectionAssetDetails {
                            source_asset_code: "USD".to_owned(),
                            source_asset_scale: 2
                        }]
                    );
                }
                ("money on two streams", Decision::Accept(accepted)) => {
                    assert_eq!(accepted.streams, vec![(1, 34), (3, 66)]);
                    let fulfill = accepted.fulfill(&[(1, 34), (3, 66)], None, &[7; 12]);
                    assert_eq!(read(fulfill.data()).prepare_amount, 100);
                }
                ("rate probe", Decision::Answer(Err(reject))) => {
                    assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
                    let reply = read(reject.data());
                    assert_eq!((reply.sequence, reply.prepare_amount), (3, 1_000));
                }
                ("closing with money", Decision::Accept(accepted)) => {
                    assert!(accepted.closes);
                    assert_eq!(accepted.streams, vec![(1, 10)]);
                }
                (name, other) => panic!("{name}: {other:?}"),
            }
            names.push(name);
        }
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn split_rounds_down_and_gives_the_rest_to_the_lowest_stream() {
        let split = |amount, shares: &[(u64, u64)]| split(amount, shares).unwrap();
        assert_eq!(
            split(10, &[(3, 1), (1, 1), (2, 1)]),
            vec![(1, 4), (2, 3), (3, 3)]
        );
        assert_eq!(split(10, &[(1, 1), (1, 1), (2, 2)]), vec![(1, 5), (2, 5)]);
        assert_eq!(split(10, &[(1, 0), (2, 3)]), vec![(2, 10)]);
        assert_eq!(split(10, &[(1, 0)]), vec![]);
        assert_eq!(
            split(u64::MAX, &[(1, u64::MAX / 2), (2, u64::MAX / 2 + 1)]),
            vec![(1, u64::MAX / 2), (2, u64::MAX / 2 + 1)]
        );
        let many: Vec<(u64, u64)> = (1..=7).map(|id| (id, id)).collect();
        let parts = split(1_000_003, &many);
        assert_eq!(parts.iter().map(|(_, a)| a).sum::<u64>(), 1_000_003);
        // Thousands of frames of one stream merge into one part.
        let repeated = vec![(1, 1); 8_000];
        assert_eq!(split(u64::MAX, &repeated), vec![(1, u64::MAX)]);
    }

    /// Shares that add up past a u64 (repeated ids included) are refused, not wrapped.
    #[test]
    fn shares_past_a_u64_are_refused_f99() {
        assert_eq!(super::split(5, &[(1, u64::MAX), (1, 1)]), None);
        let p = prepare(
            &SECRET,
            1 << 63,
            &sent(5, 0, vec![money(1, u64::MAX), money(1, u64::MAX)]),
            false,
        );
        let reject = rejected(decide_on(&p, 1 << 63, false));
        assert_eq!(reject.code(), ErrorCode::F99_APPLICATION_ERROR);
        assert_eq!(read(reject.data()).prepare_amount, 1 << 63);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::stream::credentials::Protocol;
    use crate::stream::frame::tests::frame;
    use proptest::prelude::*;

    fn connection() -> Connection {
        Connection {
            protocol: Protocol::Stream,
            shared_secret: [5; 32],
            id: [1; 16],
            receipts: Some(ReceiptSetup {
                nonce: [3; 16],
                secret: [4; 32],
            }),
            tag: None,
            issued_at: 0,
        }
    }

    /// A Prepare with `data`, fulfillable when `ours` (the condition of the connection).
    fn prepare_with(data: &[u8], amount: u64, ours: bool) -> Prepare {
        super::sender_prepare(&StreamKeys::new(&[5; 32]), data, amount, ours)
    }

    /// Every answer is one the sender can act on: F06 without data, or a reply that decrypts,
    /// with the Prepare's sequence and what arrived; money credited is exactly what arrived.
    fn check(prepare: &Prepare, arrived: u64, bounded: bool) -> Result<(), TestCaseError> {
        let address = Address::try_from("test.node.alice").unwrap();
        let incoming = Incoming {
            prepare,
            arrived,
            asset_code: "USD",
            asset_scale: 2,
            bounded,
            address: &address,
        };
        let keys = StreamKeys::new(&[5; 32]);
        let sent = keys.decrypt_packet(prepare.data()).ok();
        let read = |data: &[u8]| keys.decrypt_packet(data);
        match decide(&connection(), &incoming, &[9; 12]) {
            Decision::Answer(Err(reject)) if reject.code() == ErrorCode::F06_UNEXPECTED_PAYMENT => {
                prop_assert!(reject.data().is_empty());
            }
            Decision::Answer(Err(reject)) => {
                let reply = read(reject.data());
                prop_assert!(reply.is_ok(), "{reply:?}");
                let reply = reply.unwrap();
                prop_assert_eq!(reply.packet_type, PacketType::Reject);
                prop_assert_eq!(Some(reply.sequence), sent.map(|p| p.sequence));
                prop_assert_eq!(reply.prepare_amount, arrived);
            }
            Decision::Answer(Ok(fulfill)) => {
                prop_assert_eq!(arrived, 0);
                prop_assert_eq!(
                    read(fulfill.data()).unwrap().packet_type,
                    PacketType::Fulfill
                );
            }
            Decision::Accept(accepted) => {
                prop_assert_eq!(accepted.amount(), arrived);
                let credited: u128 = accepted.streams.iter().map(|(_, a)| u128::from(*a)).sum();
                prop_assert_eq!(credited, u128::from(arrived));
                let totals = accepted.streams.clone();
                let fulfill = accepted.fulfill(&totals, connection().receipts.as_ref(), &[7; 12]);
                let reply = read(fulfill.data()).unwrap();
                prop_assert_eq!(reply.packet_type, PacketType::Fulfill);
                prop_assert_eq!(reply.prepare_amount, arrived);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_packet_of_the_connection_gets_an_answer_the_sender_can_read(
            sequence in 0u64..(1 << 32),
            min in any::<u64>(),
            frames in proptest::collection::vec(frame(), 0..12),
            arrived in prop_oneof![Just(0u64), any::<u64>(), 0u64..1_000],
            ours in any::<bool>(),
            bounded in any::<bool>(),
        ) {
            let packet = StreamPacket { packet_type: PacketType::Prepare, sequence, prepare_amount: min, frames };
            let data = StreamKeys::new(&[5; 32]).encrypt_packet(&[8; 12], &packet).unwrap();
            check(&prepare_with(&data, arrived, ours), arrived, bounded)?;
        }

        #[test]
        fn any_bytes_are_answered_without_panicking(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            arrived in any::<u64>(),
        ) {
            check(&prepare_with(&data, arrived, true), arrived, false)?;
        }
    }
}
