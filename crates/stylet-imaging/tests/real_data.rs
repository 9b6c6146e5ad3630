//! The real TotalSegmentator abdomen CT (JPEG 2000 DICOM) and its NIfTI CT and label map, and
//! malformed variants of the series.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::open_file;
use stylet_imaging::{load_nifti, load_series, DicomError};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ct/totalsegmentator-abdomen")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-3
}

#[test]
fn the_jpeg2000_series_loads_with_geometry_from_positions_not_slice_thickness() {
    let (v, r) = load_series(&data().join("dicom"), None).unwrap();
    assert_eq!(r.slices, 20);
    assert_eq!(v.dims, [512, 512, 20]);
    assert!(r.transfer_syntax.contains("JPEG 2000 Lossless"), "{}", r.transfer_syntax);
    // SliceThickness says 3 mm; ImagePositionPatient steps 2 mm: geometry follows the positions.
    assert_eq!(r.slice_thickness_tag_mm, Some(3.0));
    assert!(close(r.slice_spacing_mm, 2.0) && close(v.spacing_mm[2], 2.0));
    assert!(close(v.spacing_mm[0], 0.9765625) && close(v.spacing_mm[1], 0.9765625));
    assert!(r.tilt_deg < 1e-6 && !r.oblique);
    // LPS bounds of the voxel centres.
    let (lo, hi) = v.bounds();
    for (got, want) in lo.to_array().iter().zip([-249.51171875, -437.51171875, -804.5]) {
        assert!(close(*got, want), "min {lo:?}");
    }
    for (got, want) in hi.to_array().iter().zip([249.51171875, 61.51171875, -766.5]) {
        assert!(close(*got, want), "max {hi:?}");
    }
    // Rescale -1024 / 1 applied: air at -1024 HU.
    let (min, max) = v.value_range();
    assert_eq!(min, -1024.0);
    assert!(max > 1000.0, "bone or contrast above 1000 HU: {max}");
}

#[test]
fn the_label_map_matches_the_ct_geometry_and_lands_on_the_liver() {
    let ct = load_nifti(&data().join("example_ct_sm.nii.gz")).unwrap();
    let seg = load_nifti(&data().join("example_seg.nii.gz")).unwrap();
    assert_eq!(ct.dims, [122, 101, 30]);
    assert_eq!(
        (seg.dims, seg.spacing_mm, seg.origin, seg.direction),
        (ct.dims, ct.spacing_mm, ct.origin, ct.direction)
    );
    assert_eq!(ct.spacing_mm, [3.0, 3.0, 3.0]);
    // The file's affine is RAS with +x, +y: in LPS the first two axes point the other way.
    assert_eq!(ct.direction[(0, 0)], -1.0);
    assert_eq!(ct.direction[(1, 1)], -1.0);
    assert_eq!(ct.direction[(2, 2)], 1.0);
    let mut liver = (0.0, 0usize);
    for k in 0..seg.dims[2] {
        for j in 0..seg.dims[1] {
            for i in 0..seg.dims[0] {
                let hu = f64::from(ct.get(i, j, k).unwrap());
                if seg.get(i, j, k) == Some(5.0) {
                    liver = (liver.0 + hu, liver.1 + 1);
                }
            }
        }
    }
    let liver_hu = liver.0 / liver.1 as f64;
    assert!(liver.1 > 10_000, "{} liver voxels", liver.1);
    assert!((20.0..=120.0).contains(&liver_hu), "mean HU under label 5: {liver_hu}");
    assert!(ct.sample_nearest(seg.ct_from_index(0.0, 0.0, 0.0)).is_some());
}

/// A copy of the series in a temp folder, with `edit` applied to the copy of file `index`.
fn variant(tag: &str, index: usize, edit: impl FnOnce(&Path, &Path)) -> PathBuf {
    let mut edit = Some(edit);
    let dir = std::env::temp_dir().join(format!("stylet-dicom-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data().join("dicom")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for (k, f) in files.iter().enumerate() {
        let to = dir.join(f.file_name().unwrap());
        if k == index {
            if let Some(edit) = edit.take() {
                edit(f, &to);
            }
        } else {
            std::fs::copy(f, &to).unwrap();
        }
    }
    dir
}

#[test]
fn malformed_series_give_clear_errors() {
    // Truncated file.
    let dir = variant("truncated", 5, |from, to| {
        let b = std::fs::read(from).unwrap();
        std::fs::write(to, &b[..b.len() / 3]).unwrap();
    });
    let e = load_series(&dir, None).unwrap_err();
    assert!(matches!(e, DicomError::Io { .. } | DicomError::PixelData { .. }), "{e}");
    assert!(e.to_string().contains("16578"), "names the file: {e}");

    // Missing ImagePositionPatient.
    let dir = variant("nopos", 3, |from, to| {
        let mut o = open_file(from).unwrap();
        o.remove_element(tags::IMAGE_POSITION_PATIENT);
        o.write_to_file(to).unwrap();
    });
    let e = load_series(&dir, None).unwrap_err().to_string();
    assert!(e.contains("ImagePositionPatient") && e.contains("16576"), "{e}");

    // A second series mixed in.
    let dir = variant("mixed", 7, |from, to| {
        let mut o = open_file(from).unwrap();
        o.put(InMemElement::new(
            tags::SERIES_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from("1.2.3.4"),
        ));
        o.write_to_file(to).unwrap();
    });
    match load_series(&dir, None) {
        Err(DicomError::SeveralSeries { count: 2, list, .. }) => assert!(list.contains("1.2.3.4"), "{list}"),
        other => panic!("expected several series, got {other:?}"),
    }
    let (v, _) = load_series(&dir, Some("1.2.3.4")).unwrap();
    assert_eq!(v.dims[2], 1);

    // A missing slice (a gap) and a shifted slice (non-uniform spacing).
    let dir = variant("gap", 10, |_, _| {});
    let e = load_series(&dir, None).unwrap_err();
    assert!(matches!(e, DicomError::MissingSlices { .. }), "{e}");
    let dir = variant("shifted", 10, |from, to| {
        let mut o = open_file(from).unwrap();
        let p = o.element(tags::IMAGE_POSITION_PATIENT).unwrap().to_multi_float64().unwrap();
        let moved = format!("{}\\{}\\{}", p[0], p[1], p[2] + 0.5);
        o.put(InMemElement::new(
            tags::IMAGE_POSITION_PATIENT,
            dicom_core::VR::DS,
            dicom_core::PrimitiveValue::from(moved.as_str()),
        ));
        o.write_to_file(to).unwrap();
    });
    let e = load_series(&dir, None).unwrap_err();
    assert!(matches!(e, DicomError::NonUniformSpacing { .. }), "{e}");
    let e = load_series(Path::new("/nonexistent-dir"), None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent-dir"), "{e}");
    for tag in ["truncated", "nopos", "mixed", "gap", "shifted"] {
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join(format!("stylet-dicom-{}-{tag}", std::process::id())));
    }
}
