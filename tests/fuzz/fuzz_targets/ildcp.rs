//! Fuzzes the peer protocols carried in ILP packet data: IL-DCP responses, echo and
//! peer.balance. Whatever decodes must re-encode to the same bytes.
#![no_main]

use ilp::echo::EchoMessage;
use ilp::ildcp::IldcpResponse;
use ilp::peer_balance::BalanceResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(r) = IldcpResponse::decode(input) {
        assert_eq!(r.encode(), input, "IL-DCP re-encoding differs");
    }
    if let Ok(m) = EchoMessage::decode(input) {
        assert_eq!(m.encode(), input, "echo re-encoding differs");
    }
    if let Ok(b) = BalanceResponse::decode(input) {
        assert_eq!(b.encode(), input, "peer.balance re-encoding differs");
    }
});
