//! Criterion benchmarks of the STREAM hot path (`cargo bench -p ilp --bench stream`): a typical
//! payment packet (one StreamMoney and one StreamMaxMoney frame in a Prepare), encrypted with
//! AES-256-GCM as a sender would, then decrypted and decoded as a receiver does; plus the
//! fulfillment derivation a receiver runs for every Prepare.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ilp::packet::PacketType;
use ilp::stream::crypto::StreamKeys;
use ilp::stream::frame::Frame;
use ilp::stream::packet::StreamPacket;

fn bench(c: &mut Criterion) {
    let keys = StreamKeys::new(&[7u8; 32]);
    let packet = StreamPacket {
        packet_type: PacketType::Prepare,
        sequence: 42,
        prepare_amount: 9_990,
        frames: vec![
            Frame::StreamMoney {
                stream_id: 1,
                shares: 10_000,
            },
            Frame::StreamMaxMoney {
                stream_id: 1,
                receive_max: 1_000_000_000,
                total_received: 420_000,
            },
        ],
    };
    let plaintext = packet.encode();
    let ciphertext = keys.encrypt(&[3u8; 12], &plaintext).expect("encrypt");

    c.bench_function("stream_decrypt_decode_payment", |b| {
        b.iter(|| keys.decrypt_packet(black_box(&ciphertext)))
    });
    c.bench_function("stream_encode_encrypt_payment", |b| {
        b.iter(|| keys.encrypt(&[3u8; 12], &black_box(&packet).encode()))
    });
    c.bench_function("stream_decode_plaintext", |b| {
        b.iter(|| StreamPacket::decode(black_box(&plaintext)))
    });
    c.bench_function("stream_fulfillment_and_condition", |b| {
        b.iter(|| keys.condition(black_box(&ciphertext)))
    });
    c.bench_function("stream_key_derivation", |b| {
        b.iter(|| StreamKeys::new(black_box(&[9u8; 32])))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
