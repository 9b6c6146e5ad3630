//! Arbitrary text into the simulator's fault-spec parser: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = stylet_sim::FaultSpec::parse(s);
    }
});
