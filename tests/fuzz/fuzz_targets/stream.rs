//! Fuzzes the STREAM decoders (packet, frames, AES-GCM envelope, receipts) and the SPSP /
//! payment-pointer parsers. The first input byte picks the decoder. Whatever decodes must
//! survive a round trip.
#![no_main]

use ilp::stream::{Frame, Receipt, StreamKeys, StreamPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Ok(p) = StreamPacket::decode(data) {
                let again = StreamPacket::decode(&p.encode()).expect("re-encoded packet decodes");
                assert_eq!(again, p);
            }
        }
        1 => {
            if let Ok(f) = Frame::decode(data) {
                assert_eq!(Frame::decode(&f.encode()).expect("re-encoded frame decodes"), f);
            }
        }
        2 => {
            // Authentication must fail on arbitrary input, never panic.
            let keys = StreamKeys::new(&[1u8; 32]);
            let _ = keys.decrypt_packet(data);
        }
        3 => {
            let _ = Receipt::decode(data);
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(data) {
                let _ = ilp::payment_pointer::PaymentPointer::parse(s);
                let _ = ilp::spsp::SpspResponse::decode(data);
            }
        }
    }
});
