//! Fuzzes the ILPv4 packet parser: any input either fails with a typed error or parses into a
//! packet whose re-encoding is byte-identical (the codec is canonical).
#![no_main]

use bytes::Bytes;
use ilp::packet::{FulfillBuilder, Packet, PrepareBuilder, RejectBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok(packet) = Packet::parse(input.clone()) else {
        return;
    };
    let rebuilt = match &packet {
        Packet::Prepare(p) => {
            let dest = p.destination();
            PrepareBuilder {
                amount: p.amount(),
                expires_at: p.expires_at(),
                execution_condition: p.execution_condition(),
                destination: &dest,
                data: p.data(),
            }
            .build()
            .map(Packet::Prepare)
        }
        Packet::Fulfill(f) => FulfillBuilder {
            fulfillment: f.fulfillment(),
            data: f.data(),
        }
        .build()
        .map(Packet::Fulfill),
        Packet::Reject(r) => {
            let by = r.triggered_by();
            RejectBuilder {
                code: r.code(),
                triggered_by: by.as_ref(),
                message: r.message(),
                data: r.data(),
            }
            .build()
            .map(Packet::Reject)
        }
    };
    let rebuilt = rebuilt.expect("a parsed packet re-encodes");
    assert_eq!(rebuilt.as_bytes(), &input, "re-encoding differs");
    assert_eq!(rebuilt, packet);
});
