//! Arbitrary text into the registration point-file parser and the config parsers (robot,
//! registration, scenario): errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = stylet_registration::parse_points::<stylet_core::frame::Ct>("fuzz.txt", s);
        let path = std::path::Path::new("fuzz.toml");
        let _ = stylet_core::config::RobotConfig::from_toml_str(path, s);
        let _ = stylet_registration::RegistrationConfig::from_toml_str(path, s);
        let _ = stylet_sim::scenario::Scenario::from_toml_str(path, s);
    }
});
