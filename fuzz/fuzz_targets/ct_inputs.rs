//! Arbitrary bytes into the CT-side decoders: the NIfTI-1 and NRRD readers (label maps, CT volumes), one
//! file as a DICOM series (dicom-rs parsing, then this crate's tag, geometry and pixel checks),
//! and the URDF reader: errors, never panics, never an allocation beyond what the bytes describe.
//!
//! Seed it with real files (a DICOM slice or two, a small .nii); see docs/protocol.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// dicom-pixeldata's decoders can panic on damaged data; stylet-imaging catches those panics
/// and reports an error. libfuzzer-sys aborts on every panic from its hook, before any
/// catch_unwind runs: let the third-party decoders' panics unwind to that catch, keep aborting
/// on every other.
fn tolerate_caught_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_decoder = info.location().is_some_and(|l| {
                l.file().contains("dicom-transfer-syntax-registry") || l.file().contains("dicom-pixeldata")
            });
            if !in_decoder {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_caught_decoder_panics();
    let _ = stylet_imaging::parse_nifti("fuzz.nii", data);
    let _ = stylet_imaging::parse_nrrd("fuzz.nrrd", data);
    let _ = stylet_imaging::nrrd::segments("fuzz.seg.nrrd", data);
    let dir = std::env::temp_dir().join(format!("stylet-fuzz-dicom-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(dir.join("slice.dcm"), data).is_ok() {
        let _ = stylet_imaging::load_series(&dir, None);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = stylet_kinematics::Arm::from_urdf_str("fuzz.urdf", s, "base_link", "tool0");
    }
});
