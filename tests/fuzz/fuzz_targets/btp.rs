//! Fuzzes BTP: the frame decoder (whatever decodes must re-encode to the same bytes) and a
//! server session with BTP/2.0-I on, fed the input split into frames, that must never panic
//! whatever arrives in whatever state.
#![no_main]

use bytes::Bytes;
use ilp::btp::session::{IdempotencyConfig, Reply, Session, SessionConfig};
use ilp::btp::{Frame, ProtocolData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(frame) = Frame::decode(input) {
        assert_eq!(frame.encode(), input, "re-encoding differs");
        let shared = Frame::decode_bytes(&Bytes::copy_from_slice(input)).expect("decodes twice");
        assert_eq!(shared, frame);
    }

    // Session: chunks separated by 0xff 0xff are frames; each one advances the clock.
    let config = SessionConfig {
        idempotency: Some(IdempotencyConfig {
            retry_interval_ms: 10,
            max_entries: 8,
            remember_ms: 1_000,
        }),
        ..SessionConfig::default()
    };
    let mut session = Session::server(config, 1, 0);
    let mut now = 0u64;
    for chunk in input.split(|b| *b == 0xff).filter(|c| !c.is_empty()) {
        now += u64::from(chunk[0]);
        for action in session.handle_frame(Bytes::copy_from_slice(chunk), now) {
            use ilp::btp::session::Action;
            match action {
                Action::Authenticate { .. } => {
                    let _ = session.accept_auth(now);
                }
                Action::Deliver {
                    request_id, digest, ..
                } => {
                    let _ = session.respond(
                        request_id,
                        digest,
                        Reply::Response(ProtocolData::default()),
                        Some(now + 100),
                        now,
                    );
                }
                _ => {}
            }
        }
        let _ = session.handle_timeout(now);
    }
});
