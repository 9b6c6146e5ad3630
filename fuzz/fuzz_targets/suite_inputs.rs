//! Arbitrary bytes into what the CT suite's devices hand Stylet: a DICOM association's PDUs
//! (dicom-ul's reader, as the node reads them), a DIMSE command set (the node's parser) and an
//! instance's data set (the length check, then dicom-rs, as the node stores it), the
//! site config (config/site.toml), and the respiratory sensor's clock mapping: errors, never
//! panics; mapped sample times never go back and never pass their arrival.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dicom_ul::pdu::read_pdu(data, 16_384, false);
    let _ = dicom_ul::pdu::read_pdu(data, 16_384, true);
    let _ = stylet_dicom_node::parse_command(data);
    // An instance's data set as the node reads it: the length check, then dicom-rs on what
    // comes before the top-level Pixel Data (and on the whole, as a folder's file is read).
    for ts in ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"] {
        if let Ok(head) = stylet_imaging::dicom_lengths::pixel_data_offset(data, ts) {
            assert!(head <= data.len());
            use dicom_encoding::TransferSyntaxIndex as _;
            if let Some(syntax) = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(ts) {
                let _ = dicom_object::InMemDicomObject::read_dataset_with_ts(&data[..head], syntax);
                let _ = dicom_object::InMemDicomObject::read_dataset_with_ts(data, syntax);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = stylet_suite::Site::parse(s, std::path::Path::new("/etc/stylet/site.toml"));
    }
    // Pairs of f32s as (sensor time, arrival delay).
    let mut sync = stylet_suite::ClockSync::new(2.0);
    let (mut arrival, mut last) = (0.0_f64, f64::NEG_INFINITY);
    for c in data.chunks_exact(8) {
        let sensor = f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let delay = f64::from(f32::from_le_bytes([c[4], c[5], c[6], c[7]]));
        if !(sensor.is_finite() && delay.is_finite()) || delay.abs() > 1e6 || sensor.abs() > 1e9 {
            continue;
        }
        arrival += 0.001;
        let arrived = arrival + delay.abs();
        match sync.map(sensor, arrived) {
            stylet_suite::respiration::Mapped::At(t) | stylet_suite::respiration::Mapped::Resynchronised(t) => {
                assert!(t > last && t <= arrived + 1e-6 * arrived.abs().max(1.0), "{t} after {last}, arrived {arrived}");
                last = t;
            }
            stylet_suite::respiration::Mapped::Dropped => {}
        }
    }
});
