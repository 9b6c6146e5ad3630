//! Arbitrary bytes, in arbitrary chunks, into the OpenIGTLink stream decoder: it must never panic
//! nor hold more than a header plus its body limit plus one chunk, and every message it accepts
//! must re-encode to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stylet_igtl::{Decoder, HEADER_SIZE};

const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(MAX_BODY);
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 97);
    for part in data.chunks(chunk) {
        d.push(part);
        assert!(d.buffered() <= HEADER_SIZE + MAX_BODY + chunk);
        while let Some(r) = d.next_message() {
            if let Ok(m) = r {
                if let Ok(bytes) = m.encode() {
                    let mut again = Decoder::new(usize::MAX);
                    again.push(&bytes);
                    assert_eq!(again.next_message(), Some(Ok(m)));
                }
            }
        }
    }
});
