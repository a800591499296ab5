//! Criterion benchmarks of the ILPv4 codec hot path (`cargo bench -p ilp --bench packets`).
//! Inputs: the RFC 27 example Prepare/Fulfill (tests/data/ilp-packet) and a STREAM-sized
//! Prepare (a 40-byte address and 150 bytes of data).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ilp::packet::{Address, Fulfill, Prepare, PrepareBuilder, Reject, Timestamp};

fn vector(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/data/ilp-packet/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vector file")).expect("json");
    Bytes::from(hex::decode(v["binary"].as_str().expect("binary")).expect("hex"))
}

fn bench(c: &mut Criterion) {
    let prepare = vector("ilp_prepare_example01.json");
    let fulfill = vector("ilp_fulfill_example01.json");
    let reject = vector("ilp_reject_example01.json");
    let parsed = Prepare::parse(prepare.clone()).expect("prepare");
    let dest = parsed.destination();

    c.bench_function("prepare_parse", |b| {
        b.iter(|| Prepare::parse(black_box(prepare.clone())))
    });
    c.bench_function("prepare_serialize", |b| {
        b.iter(|| {
            PrepareBuilder {
                amount: black_box(parsed.amount()),
                expires_at: parsed.expires_at(),
                execution_condition: parsed.execution_condition(),
                destination: &dest,
                data: parsed.data(),
            }
            .build()
        })
    });
    c.bench_function("fulfill_parse", |b| {
        b.iter(|| Fulfill::parse(black_box(fulfill.clone())))
    });
    c.bench_function("reject_parse", |b| {
        b.iter(|| Reject::parse(black_box(reject.clone())))
    });

    let long_dest =
        Address::try_from("g.us.acme.connector.bob.receiver~8f2a91c3d4").expect("address");
    let data = vec![0x5a; 150];
    let stream_prepare = PrepareBuilder {
        amount: 1_000_000,
        expires_at: Timestamp::from_unix_millis(1_800_000_000_000),
        execution_condition: &[9; 32],
        destination: &long_dest,
        data: &data,
    }
    .build()
    .expect("build");
    let stream_bytes = stream_prepare.as_bytes().clone();
    c.bench_function("prepare_parse_stream_sized", |b| {
        b.iter(|| Prepare::parse(black_box(stream_bytes.clone())))
    });
    c.bench_function("prepare_forward_rewrite", |b| {
        b.iter(|| {
            stream_prepare.with_amount_and_expiry(black_box(999), Timestamp::from_unix_millis(1))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
