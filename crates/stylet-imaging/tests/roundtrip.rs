//! A volume written as a DICOM series reads back with the same geometry and HU (to the int16
//! quantum), even with file names and InstanceNumber in reverse order and a SliceThickness that
//! does not match the step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nalgebra::{Matrix3, UnitQuaternion};
use stylet_core::frame::Point;
use stylet_imaging::{load_series, write_series, write_series_encoded, PixelEncoding, Volume};

#[test]
fn dicom_series_round_trip_keeps_geometry_and_hu() {
    let (nx, ny, nz) = (24, 20, 7);
    let rot = UnitQuaternion::from_euler_angles(0.1, -0.05, 0.3).to_rotation_matrix().into_inner();
    let v = Volume {
        dims: [nx, ny, nz],
        spacing_mm: [0.7, 0.8, 1.25],
        origin: Point::new(-100.0, 35.5, -420.0),
        direction: Matrix3::from_columns(&[
            rot.column(0).into_owned(),
            rot.column(1).into_owned(),
            rot.column(2).into_owned(),
        ]),
        voxels: (0..nx * ny * nz).map(|i| ((i * 37) % 3000) as f32 - 1000.0).collect(),
    };
    let dir = std::env::temp_dir().join(format!("stylet-rt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_series(&v, &dir, "1.2.826.0.1.3680043.10.1", "1.2.826.0.1.3680043.10.1.2", "round trip").unwrap();
    let (back, report) = load_series(&dir, None).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(back.dims, v.dims);
    assert_eq!(report.slices, nz);
    assert!((report.slice_spacing_mm - 1.25).abs() < 1e-4, "{report:?}");
    assert!(back.origin.distance_mm(v.origin) < 1e-4);
    assert!((back.direction - v.direction).norm() < 1e-5);
    for (a, b) in back.spacing_mm.iter().zip(v.spacing_mm) {
        assert!((a - b).abs() < 1e-5);
    }
    assert!(report.oblique);
    assert_eq!(back.voxels, v.voxels);
}

#[test]
fn jpeg2000_lossless_series_reads_back_bit_exact() {
    let (nx, ny, nz) = (40, 33, 5); // odd sizes: the codestream has no power-of-two shortcut
    let v = Volume {
        dims: [nx, ny, nz],
        spacing_mm: [0.75, 0.75, 2.0],
        origin: Point::new(-15.0, -12.0, 30.0),
        direction: Matrix3::identity(),
        // Full HU range, noise-like, including air and dense metal.
        voxels: (0..nx * ny * nz).map(|i| ((i * 7919) % 5000) as f32 - 1024.0).collect(),
    };
    let dir = std::env::temp_dir().join(format!("stylet-j2k-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = write_series_encoded(&v, &dir, "1.2.3", "1.2.3.5", "j2k", PixelEncoding::Jpeg2000Lossless).unwrap();
    let ts = dicom_object::open_file(&files[0]).unwrap().meta().transfer_syntax().trim_end_matches('\0').to_string();
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "tmp"))
        .count();
    let (back, report) = load_series(&dir, None).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ts, "1.2.840.10008.1.2.4.90");
    assert_eq!(leftovers, 0, "scratch files left behind");
    assert_eq!(report.slices, nz);
    assert_eq!(back.dims, v.dims);
    assert_eq!(back.voxels, v.voxels, "JPEG 2000 lossless must be lossless");
}

#[test]
fn an_unsupported_transfer_syntax_is_named() {
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{open_file, FileMetaTableBuilder};
    let v = Volume {
        dims: [8, 8, 3],
        spacing_mm: [1.0, 1.0, 1.0],
        origin: Point::origin(),
        direction: Matrix3::identity(),
        voxels: vec![0.0; 8 * 8 * 3],
    };
    let dir = std::env::temp_dir().join(format!("stylet-jls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = write_series(&v, &dir, "1.2.3", "1.2.3.4", "jpeg-ls").unwrap();
    // Re-label every slice as JPEG-LS with an encapsulated (dummy) fragment: no decoder for it here.
    for f in &files {
        let obj = open_file(f).unwrap();
        let mut ds = obj.into_inner();
        ds.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(vec![], vec![vec![0xFF, 0xD8, 0xFF, 0xF7, 0, 0]])),
        ));
        let out = ds.with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.4.80")).unwrap();
        out.write_to_file(f).unwrap();
    }
    let e = load_series(&dir, None).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(e.contains("1.2.840.10008.1.2.4.80") && e.contains("JPEG-LS"), "{e}");
}

/// Loads `tests/data/{name}` alone in a fresh folder, as `slice.dcm`; the error's text.
fn load_error(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("stylet-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")), dir.join("slice.dcm")).unwrap();
    let e = load_series(&dir, None).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(e.contains("slice.dcm"), "{name}: the error names the file: {e}");
    e
}

// The files below were found by the `ct_inputs` fuzz target (docs/protocol.md).

#[test]
fn a_damaged_rle_slice_is_an_error_not_a_crash() {
    // A mutated RLE Lossless file whose segments disagree with its image size makes
    // dicom-pixeldata 0.10's RLE decoder index out of bounds (its fragment length was then set to
    // fit the file, so the length check lets it through to the decoder).
    let e = load_error("rle_damaged.dcm");
    assert!(e.contains("1.2.840.10008.1.2.5"), "{e}");
}

#[test]
fn an_element_longer_than_its_file_is_refused_before_it_is_read() {
    // Small files declaring values of 3.5-4 GB, which dicom-parser 0.10 would allocate and fill
    // before noticing the end of the file: an RLE file, a big-endian data set, an explicit-VR
    // one where an unknown VR carries a 4-byte length, and one whose file meta group ends where
    // its group length says rather than where its elements do.
    for name in [
        "overlong_element.dcm",
        "overlong_big_endian.dcm",
        "overlong_in_unknown_vr.dcm",
        "overlong_after_meta_mismatch.dcm",
    ] {
        let e = load_error(name);
        assert!(e.contains("declares") && e.contains("remain"), "{name}: {e}");
    }
}

#[test]
fn an_unusable_image_size_is_named_not_a_crash() {
    // A shuffled RLE file whose Rows/Columns no longer parse made the slice decoding split the
    // volume into chunks of zero pixels (a panic).
    let e = load_error("bad_rows.dcm");
    assert!(e.contains("Rows") || e.contains("Columns"), "{e}");
}

#[test]
fn zero_bits_stored_is_named_not_a_crash() {
    // BitsStored 0 trips an assertion in dicom-pixeldata's Modality LUT.
    let e = load_error("bits_stored_zero.dcm");
    assert!(e.contains("BitsStored"), "{e}");
}

#[test]
fn a_series_reads_back_with_its_identity_and_a_slice_of_another_patient_is_refused() {
    let v = Volume {
        dims: [8, 6, 4],
        spacing_mm: [1.0, 1.0, 2.0],
        origin: Point::origin(),
        direction: Matrix3::identity(),
        voxels: vec![40.0; 8 * 6 * 4],
    };
    let dir = std::env::temp_dir().join(format!("stylet-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = stylet_imaging::SeriesMeta {
        acquisition_datetime: Some("20261202185200.5+0100".into()),
        patient_id: "P-7".into(),
        ..stylet_imaging::SeriesMeta::phantom("1.2.3", "1.2.3.4", "identity")
    };
    let files = stylet_imaging::write_series_with(&v, &dir, &meta, PixelEncoding::Uncompressed).unwrap();
    let (_, report) = load_series(&dir, None).unwrap();
    let id = &report.identity;
    assert_eq!((id.patient_id.as_str(), id.study_uid.as_str()), ("P-7", "1.2.3"));
    assert_eq!(id.frame_of_reference_uid, "1.2.3.1");
    assert_eq!(id.acquisition_datetime.as_deref(), Some("20261202185200.5+0100"));
    assert_eq!(id.differs_from(id), None);
    let other = stylet_imaging::SeriesIdentity { patient_id: "P-8".into(), ..id.clone() };
    assert!(other.differs_from(id).unwrap().contains("another patient"));
    let moved = stylet_imaging::SeriesIdentity { frame_of_reference_uid: "1.2.3.9".into(), ..id.clone() };
    assert!(moved.differs_from(id).unwrap().contains("another frame of reference"));
    // One slice of another patient in the folder: not one volume.
    let stray = stylet_imaging::SeriesMeta { patient_id: "P-8".into(), ..meta.clone() };
    let tmp = dir.join("stray");
    let written = stylet_imaging::write_series_with(&v, &tmp, &stray, PixelEncoding::Uncompressed).unwrap();
    std::fs::rename(&written[0], &files[0]).unwrap();
    let err = load_series(&dir, None).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(err.contains("PatientID \"P-8\"") && err.contains("\"P-7\""), "{err}");
}
