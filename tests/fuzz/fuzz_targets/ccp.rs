//! Fuzzes CCP: route control and route update decoders (what decodes re-encodes to the same
//! bytes), and a receiver fed every update that decodes, which must never panic and never keep
//! a route whose path contains our own address.
#![no_main]

use ilp::ccp::{CcpReceiver, ImportFilter, RouteControlRequest, RouteUpdateRequest};
use ilp::packet::Address;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(control) = RouteControlRequest::decode(input) {
        assert_eq!(control.encode(), input, "route control re-encoding differs");
    }
    let Ok(own) = Address::try_from("test.own") else {
        return;
    };
    let mut receiver = CcpReceiver::new(0, 30_000, 1_000);
    // Several updates may be packed back to back, separated by 0xfe 0xfe 0xfe.
    let mut now = 0u64;
    for chunk in input.split(|b| *b == 0xfe).filter(|c| c.len() > 8) {
        now += 1_000;
        if let Ok(update) = RouteUpdateRequest::decode(chunk) {
            assert_eq!(update.encode(), chunk, "route update re-encoding differs");
            let filter = ImportFilter {
                own_address: &own,
                global_prefix: "test",
            };
            let _ = receiver.handle_route_update(now, &update, filter);
            let _ = receiver.poll(now);
            for prefix in receiver.prefixes() {
                let route = receiver.get(prefix).expect("listed prefix is present");
                assert!(!route.path.iter().any(|hop| hop == own.as_str()), "loop kept");
            }
        }
    }
});
