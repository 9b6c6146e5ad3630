//! Arbitrary bytes into the streaming frame decoder: it must never panic, and every frame it
//! accepts must re-encode to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stylet_protocol::{encode_frame, FrameDecoder, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    let mut accepted = Vec::new();
    decoder.feed(data, |r| {
        if let Ok(f) = r {
            accepted.push(f);
        }
    });
    for f in accepted {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(f.seq, &f.message, &mut buf).expect("a decoded frame re-encodes");
        let mut again = FrameDecoder::new();
        let mut back = None;
        again.feed(&buf[..n], |r| back = Some(r));
        assert_eq!(back, Some(Ok(f)));
    }
});
