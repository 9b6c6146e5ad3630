//! Arbitrary text into the respiration decoders (Krilavicius and plain CSV traces, live sensor
//! lines, respiration.toml), and every sensor line that parses into the processor: errors,
//! never panics, and the gate never opens on a non-finite prediction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stylet_respiration::{parse_csv, parse_krilavicius, parse_sensor_line, Respiration, RespirationConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_krilavicius("fuzz.csv", s);
        let _ = parse_csv("fuzz.csv", s);
        let _ = RespirationConfig::from_toml_str(std::path::Path::new("fuzz.toml"), s);
        let mut r = Respiration::new(RespirationConfig { warmup_s: 0.5, ..RespirationConfig::default() });
        r.set_reference(0.0);
        for line in s.lines() {
            if let Ok(Some(sample)) = parse_sensor_line(line) {
                let _ = r.push(sample);
                let d = r.decide(sample.t_s);
                assert!(!d.open || d.predicted_mm.is_finite());
            }
        }
    }
});
