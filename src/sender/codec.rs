//! What the sender writes in a Prepare's data and reads from the answers, for STREAM (RFC 29)
//! and PSK2 (the older request/response protocol): one interface, two wire formats.

use crate::packet::PacketType;
use crate::psk2::{self, Psk2Packet};
use crate::stream::credentials::Protocol;
use crate::stream::crypto::{StreamKeys, IV_LEN};
use crate::stream::frame::Frame;
use crate::stream::packet::StreamPacket;

/// A readable answer from the receiver: it decrypted under the shared secret, names the
/// packet it answers and rides the ILP packet it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What arrived at the receiver, in its units.
    pub arrived: u64,
    /// STREAM frames (none for PSK2).
    pub frames: Vec<Frame>,
}

/// The keys and format of one connection.
#[derive(Debug)]
pub struct Codec {
    protocol: Protocol,
    keys: StreamKeys,
    /// What each PSK2 request carries for the receiver's application.
    psk2_data: Vec<u8>,
}

impl Codec {
    pub fn new(protocol: Protocol, shared_secret: &[u8; 32], psk2_data: Vec<u8>) -> Codec {
        let keys = match protocol {
            Protocol::Stream => StreamKeys::new(shared_secret),
            Protocol::Psk2 => psk2::keys(shared_secret),
        };
        Codec {
            protocol,
            keys,
            psk2_data,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The data of the Prepare numbered `sequence` asking for at least `least` to arrive,
    /// with `frames` (STREAM only). `None` only if encryption fails, which it cannot for the
    /// few frames a sender writes.
    pub fn prepare_data(
        &self,
        sequence: u64,
        least: u64,
        frames: Vec<Frame>,
        iv: &[u8; IV_LEN],
    ) -> Option<Vec<u8>> {
        match self.protocol {
            Protocol::Stream => {
                let packet = StreamPacket {
                    packet_type: PacketType::Prepare,
                    sequence,
                    prepare_amount: least,
                    frames,
                };
                self.keys.encrypt_packet(iv, &packet).ok()
            }
            Protocol::Psk2 => {
                let packet = Psk2Packet::Request {
                    packet_type: psk2::TYPE_REQUEST,
                    request_id: u32::try_from(sequence).ok()?,
                    amount: least,
                    data: self.psk2_data.clone(),
                };
                self.keys.encrypt(iv, &packet.encode()).ok()
            }
        }
    }

    /// The condition that makes a Prepare with `data` fulfillable by the receiver.
    pub fn condition(&self, data: &[u8]) -> [u8; 32] {
        self.keys.condition(data)
    }

    /// Reads the answer to the Prepare numbered `sequence`, carried in a Fulfill (`fulfilled`)
    /// or a Reject; `None` when it is not an authentic answer to that Prepare.
    pub fn read_answer(&self, sequence: u64, fulfilled: bool, data: &[u8]) -> Option<Answer> {
        if data.is_empty() {
            return None;
        }
        match self.protocol {
            Protocol::Stream => {
                let packet = self.keys.decrypt_packet(data).ok()?;
                let want = if fulfilled {
                    PacketType::Fulfill
                } else {
                    PacketType::Reject
                };
                (packet.packet_type == want && packet.sequence == sequence).then_some(Answer {
                    arrived: packet.prepare_amount,
                    frames: packet.frames,
                })
            }
            Protocol::Psk2 => {
                let plaintext = self.keys.decrypt(data).ok()?;
                let Psk2Packet::Request {
                    packet_type,
                    request_id,
                    amount,
                    ..
                } = Psk2Packet::decode(&plaintext)?
                else {
                    return None;
                };
                let want = if fulfilled {
                    psk2::TYPE_RESPONSE
                } else {
                    psk2::TYPE_ERROR
                };
                (packet_type == want && u64::from(request_id) == sequence).then_some(Answer {
                    arrived: amount,
                    frames: Vec::new(),
                })
            }
        }
    }
}
