//! The (decrypted) STREAM packet (RFC 29 §5.2): version, the ILP packet type it must ride on,
//! sequence, prepare amount and frames.
//!
//! Junk after the frames is ignored on decode. The RFC requires it ("Extra bytes that MUST be
//! ignored"): senders pad packets with zero bytes to hide their size, and later versions may
//! append fields there. This is the one place this crate accepts trailing bytes; they are
//! covered by the AES-GCM tag, so a third party cannot use them to make two packets of one.
//! Frames themselves are strict (see [`super::frame`]).

use bytes::BufMut;
use thiserror::Error;

use super::frame::{Frame, FrameError};
use crate::oer::{self, OerError, OerWrite, Reader};
use crate::packet::PacketType;

/// The only STREAM version there is.
pub const STREAM_VERSION: u8 = 1;

/// A STREAM packet in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPacket {
    /// The ILP packet this must ride in. A receiver drops a STREAM packet that arrives in a
    /// different type than it names, so intermediaries cannot swap the data fields of a
    /// Fulfill and a Reject.
    pub packet_type: PacketType,
    pub sequence: u64,
    /// On a Prepare: the least the receiver should accept. On a Fulfill or Reject: what arrived.
    pub prepare_amount: u64,
    pub frames: Vec<Frame>,
}

/// Everything that can be wrong with a decrypted STREAM packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamPacketError {
    #[error("malformed STREAM packet header: {0}")]
    Oer(#[from] OerError),
    #[error("unsupported STREAM version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown ILP packet type {0} in STREAM packet")]
    UnknownPacketType(u8),
    #[error("STREAM frame {index}: {source}")]
    Frame { index: usize, source: FrameError },
}

/// Smallest possible frame: type byte plus an empty length prefix.
const MIN_FRAME_LEN: usize = 2;

impl StreamPacket {
    /// Decodes a decrypted STREAM packet. Bytes after the last frame are ignored (see the
    /// module docs); every other deviation is an error.
    pub fn decode(bytes: &[u8]) -> Result<StreamPacket, StreamPacketError> {
        let mut r = Reader::new(bytes);
        let version = r.read_u8()?;
        if version != STREAM_VERSION {
            return Err(StreamPacketError::UnsupportedVersion(version));
        }
        let type_byte = r.read_u8()?;
        let packet_type = PacketType::try_from(type_byte)
            .map_err(|_| StreamPacketError::UnknownPacketType(type_byte))?;
        let sequence = r.read_var_uint()?;
        let prepare_amount = r.read_var_uint()?;
        // The count is peer-controlled: a count the remaining bytes cannot hold is refused
        // before allocating. This bounds only the count; bytes after the frames stay legal.
        let count = r.read_count(MIN_FRAME_LEN)?;
        let mut frames = Vec::with_capacity(count);
        for index in 0..count {
            let frame =
                Frame::read(&mut r).map_err(|source| StreamPacketError::Frame { index, source })?;
            frames.push(frame);
        }
        Ok(StreamPacket {
            packet_type,
            sequence,
            prepare_amount,
            frames,
        })
    }

    /// Length of [`StreamPacket::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        2 + oer::var_uint_size(self.sequence)
            + oer::var_uint_size(self.prepare_amount)
            + oer::var_uint_size(self.frames.len() as u64)
            + self.frames.iter().map(Frame::encoded_len).sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }

    /// Encodes, then appends zero bytes until the output is at least `min_len` long, as the JS
    /// implementation does to make every packet of a connection the same size.
    pub fn encode_padded(&self, min_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len().max(min_len));
        self.encode_to(&mut out);
        if out.len() < min_len {
            out.resize(min_len, 0);
        }
        out
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_u8(STREAM_VERSION);
        buf.put_u8(self.packet_type as u8);
        buf.put_var_uint(self.sequence);
        buf.put_var_uint(self.prepare_amount);
        buf.put_var_uint(self.frames.len() as u64);
        for frame in &self.frames {
            frame.encode_to(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::frame::{tests::frame, ErrorCode};
    use base64::Engine;
    use proptest::prelude::*;
    use serde_json::Value;

    const FIXTURES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/stream/StreamPacketFixtures.json"
    ));

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn num(v: &Value, key: &str) -> u64 {
        v[key].as_str().unwrap().parse().unwrap()
    }

    fn int(v: &Value, key: &str) -> u8 {
        u8::try_from(v[key].as_u64().unwrap()).unwrap()
    }

    fn text(v: &Value, key: &str) -> String {
        v[key].as_str().unwrap().to_owned()
    }

    /// Builds the frame a fixture describes, by the fixture's own field names.
    fn fixture_frame(v: &Value) -> Frame {
        let frame = match v["name"].as_str().unwrap() {
            "ConnectionClose" => Frame::ConnectionClose {
                code: ErrorCode(int(v, "errorCode")),
                message: text(v, "errorMessage"),
            },
            "ConnectionNewAddress" => Frame::ConnectionNewAddress {
                source_account: text(v, "sourceAccount"),
            },
            "ConnectionAssetDetails" => Frame::ConnectionAssetDetails {
                source_asset_code: text(v, "sourceAssetCode"),
                source_asset_scale: int(v, "sourceAssetScale"),
            },
            "ConnectionMaxData" => Frame::ConnectionMaxData {
                max_offset: num(v, "maxOffset"),
            },
            "ConnectionDataBlocked" => Frame::ConnectionDataBlocked {
                max_offset: num(v, "maxOffset"),
            },
            "ConnectionMaxStreamId" => Frame::ConnectionMaxStreamId {
                max_stream_id: num(v, "maxStreamId"),
            },
            "ConnectionStreamIdBlocked" => Frame::ConnectionStreamIdBlocked {
                max_stream_id: num(v, "maxStreamId"),
            },
            "StreamClose" => Frame::StreamClose {
                stream_id: num(v, "streamId"),
                code: ErrorCode(int(v, "errorCode")),
                message: text(v, "errorMessage"),
            },
            "StreamMoney" => Frame::StreamMoney {
                stream_id: num(v, "streamId"),
                shares: num(v, "shares"),
            },
            "StreamMaxMoney" => Frame::StreamMaxMoney {
                stream_id: num(v, "streamId"),
                receive_max: num(v, "receiveMax"),
                total_received: num(v, "totalReceived"),
            },
            "StreamMoneyBlocked" => Frame::StreamMoneyBlocked {
                stream_id: num(v, "streamId"),
                send_max: num(v, "sendMax"),
                total_sent: num(v, "totalSent"),
            },
            "StreamData" => Frame::StreamData {
                stream_id: num(v, "streamId"),
                offset: num(v, "offset"),
                data: b64(v["data"].as_str().unwrap()),
            },
            "StreamMaxData" => Frame::StreamMaxData {
                stream_id: num(v, "streamId"),
                max_offset: num(v, "maxOffset"),
            },
            "StreamDataBlocked" => Frame::StreamDataBlocked {
                stream_id: num(v, "streamId"),
                max_offset: num(v, "maxOffset"),
            },
            "StreamReceipt" => Frame::StreamReceipt {
                stream_id: num(v, "streamId"),
                receipt: b64(v["receipt"].as_str().unwrap()),
            },
            other => panic!("fixture names unknown frame {other}"),
        };
        assert_eq!(u64::from(frame.frame_type()), v["type"].as_u64().unwrap());
        frame
    }

    #[test]
    fn js_fixtures_decode_and_encode() {
        let fixtures: Vec<Value> = serde_json::from_str(FIXTURES).unwrap();
        assert_eq!(fixtures.len(), 53);
        let mut encoded = 0;
        for fixture in &fixtures {
            let name = fixture["name"].as_str().unwrap();
            let p = &fixture["packet"];
            let want = StreamPacket {
                packet_type: PacketType::try_from(int(p, "packetType")).unwrap(),
                sequence: num(p, "sequence"),
                prepare_amount: num(p, "amount"),
                frames: p["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(fixture_frame)
                    .collect(),
            };
            let buffer = b64(fixture["buffer"].as_str().unwrap());
            assert_eq!(StreamPacket::decode(&buffer), Ok(want.clone()), "{name}");
            if fixture["decode_only"].as_bool() == Some(true) {
                // Saturated to u64::MAX, which re-encodes in eight bytes rather than nine.
                assert!(name.ends_with(":too_big"), "{name}");
                continue;
            }
            assert_eq!(want.encode(), buffer, "{name}");
            assert_eq!(want.encoded_len(), buffer.len(), "{name}");
            encoded += 1;
        }
        assert_eq!(encoded, 51);
    }

    fn money_packet() -> StreamPacket {
        StreamPacket {
            packet_type: PacketType::Reject,
            sequence: 0,
            prepare_amount: 5,
            frames: vec![
                Frame::StreamMoney {
                    stream_id: 1,
                    shares: 1,
                },
                Frame::StreamMoney {
                    stream_id: 2,
                    shares: 2,
                },
            ],
        }
    }

    #[test]
    fn junk_after_frames_is_ignored() {
        let packet = money_packet();
        let mut bytes = packet.encode();
        // A frame beyond the announced count is junk too.
        bytes.extend_from_slice(
            &Frame::StreamMoney {
                stream_id: 3,
                shares: 3,
            }
            .encode(),
        );
        bytes.extend_from_slice(&[0xff; 5]);
        assert_eq!(StreamPacket::decode(&bytes), Ok(packet.clone()));

        let padded = packet.encode_padded(100);
        assert_eq!(padded.len(), 100);
        assert!(padded[packet.encoded_len()..].iter().all(|b| *b == 0));
        assert_eq!(StreamPacket::decode(&padded), Ok(packet.clone()));
        // Padding never truncates.
        assert_eq!(packet.encode_padded(1), packet.encode());
    }

    #[test]
    fn count_bound_is_only_about_the_remaining_bytes() {
        // Exactly two minimal frames: the bound admits them.
        let bytes = [1, 12, 1, 0, 1, 0, 1, 2, 0xff, 0, 0xfe, 0];
        let p = StreamPacket::decode(&bytes).unwrap();
        assert_eq!(p.frames.len(), 2);
        // A count of one over many bytes of junk: the junk is still tolerated.
        let mut bytes = vec![1, 12, 1, 0, 1, 0, 1, 1, 0xff, 0];
        bytes.extend_from_slice(&[0xab; 64]);
        assert_eq!(StreamPacket::decode(&bytes).unwrap().frames.len(), 1);
    }

    #[test]
    fn unknown_frames_are_kept_in_order() {
        // As in the JS tests: a count of 5 over two known, an unknown, a known, an unknown.
        let unknown = Frame::Unknown {
            frame_type: 0xff,
            contents: vec![0x0f; 47],
        };
        let mut packet = money_packet();
        packet.frames.push(unknown.clone());
        packet.frames.push(Frame::StreamMoney {
            stream_id: 3,
            shares: 3,
        });
        packet.frames.push(unknown);
        let bytes = packet.encode();
        let decoded = StreamPacket::decode(&bytes).unwrap();
        assert_eq!(decoded, packet);
        let known: Vec<_> = decoded
            .frames
            .iter()
            .filter(|f| !matches!(f, Frame::Unknown { .. }))
            .collect();
        assert_eq!(known.len(), 3);
        assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn decode_errors() {
        let good = money_packet().encode();
        let cases: Vec<(Vec<u8>, StreamPacketError)> = vec![
            (vec![], StreamPacketError::Oer(OerError::UnexpectedEnd)),
            (vec![1], StreamPacketError::Oer(OerError::UnexpectedEnd)),
            (
                // the JS test's "decrypted" garbage: version 0x9c
                hex::decode("9c4f511dbc865607311609d7559e01e1").unwrap(),
                StreamPacketError::UnsupportedVersion(0x9c),
            ),
            (vec![0, 12], StreamPacketError::UnsupportedVersion(0)),
            (vec![2, 12], StreamPacketError::UnsupportedVersion(2)),
            (
                vec![1, 11, 1, 0, 1, 0, 1, 0],
                StreamPacketError::UnknownPacketType(11),
            ),
            (
                vec![1, 15, 1, 0, 1, 0, 1, 0],
                StreamPacketError::UnknownPacketType(15),
            ),
            (
                vec![1, 12, 1],
                StreamPacketError::Oer(OerError::UnexpectedEnd),
            ),
            (
                vec![1, 12, 2, 0, 1, 1, 0, 1, 0],
                StreamPacketError::Oer(OerError::NonCanonicalVarUint),
            ),
            (
                vec![1, 12, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0],
                StreamPacketError::Oer(OerError::VarUintTooLarge(9)),
            ),
            (
                vec![1, 12, 1, 0, 1, 0],
                StreamPacketError::Oer(OerError::UnexpectedEnd),
            ),
            (
                // announces one frame, has none
                vec![1, 12, 1, 0, 1, 0, 1, 1],
                StreamPacketError::Oer(OerError::CountTooLarge(1)),
            ),
            (
                // an absurd frame count with nothing behind it
                vec![
                    1, 12, 1, 0, 1, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                StreamPacketError::Oer(OerError::CountTooLarge(u64::MAX)),
            ),
            (
                // three frames need at least six bytes; five are left
                vec![1, 12, 1, 0, 1, 0, 1, 3, 0xff, 0, 0xff, 0, 0xff],
                StreamPacketError::Oer(OerError::CountTooLarge(3)),
            ),
            (
                // one frame fits the count bound but is itself cut short
                vec![1, 12, 1, 0, 1, 0, 1, 1, 0xff, 1],
                StreamPacketError::Frame {
                    index: 0,
                    source: FrameError::Oer(OerError::UnexpectedEnd),
                },
            ),
            (
                // oversize length prefix on the first frame
                vec![1, 12, 1, 0, 1, 0, 1, 1, 0x11, 0x84, 0xff, 0xff, 0xff, 0xff],
                StreamPacketError::Frame {
                    index: 0,
                    source: FrameError::Oer(OerError::LengthTooLarge(0xffff_ffff)),
                },
            ),
            (
                // second frame truncated
                good[..good.len() - 1].to_vec(),
                StreamPacketError::Frame {
                    index: 1,
                    source: FrameError::Oer(OerError::UnexpectedEnd),
                },
            ),
            (
                // a frame with a byte too many inside its contents
                vec![1, 12, 1, 0, 1, 0, 1, 1, 0x11, 5, 1, 1, 1, 1, 0],
                StreamPacketError::Frame {
                    index: 0,
                    source: FrameError::TrailingBytes {
                        frame_type: 0x11,
                        count: 1,
                    },
                },
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(StreamPacket::decode(&bytes), Err(err), "{bytes:02x?}");
        }
    }

    fn packet() -> impl Strategy<Value = StreamPacket> {
        (
            prop_oneof![
                Just(PacketType::Prepare),
                Just(PacketType::Fulfill),
                Just(PacketType::Reject)
            ],
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(frame(), 0..6),
        )
            .prop_map(
                |(packet_type, sequence, prepare_amount, frames)| StreamPacket {
                    packet_type,
                    sequence,
                    prepare_amount,
                    frames,
                },
            )
    }

    proptest! {
        #[test]
        fn packet_round_trip(packet in packet()) {
            let bytes = packet.encode();
            prop_assert_eq!(bytes.len(), packet.encoded_len());
            prop_assert_eq!(StreamPacket::decode(&bytes), Ok(packet));
        }

        #[test]
        fn packet_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = StreamPacket::decode(&bytes);
        }

        #[test]
        fn packet_decode_never_panics_with_valid_header(
            tail in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut bytes = vec![1, 12, 1, 0, 1, 0];
            bytes.extend_from_slice(&tail);
            if let Ok(packet) = StreamPacket::decode(&bytes) {
                // Canonical: what decodes re-encodes to the bytes it came from (minus junk),
                // unless an amount saturated.
                let saturated = packet.frames.iter().any(|f| matches!(
                    f,
                    Frame::StreamMaxMoney { receive_max: u64::MAX, .. }
                        | Frame::StreamMoneyBlocked { send_max: u64::MAX, .. }
                ));
                if !saturated {
                    prop_assert!(bytes.starts_with(&packet.encode()));
                }
            }
        }
    }
}
