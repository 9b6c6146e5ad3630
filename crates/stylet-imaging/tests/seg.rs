//! A DICOM Segmentation written on a CT series (issue 19, item 1) and read back by third-party
//! readers: highdicom (segments, codes, frames by source instance) and pydicom (the raw frames by
//! position) give the same masks slice by slice; dciodvfy (Debian's dicom3tools) reports no
//! error. Odd grid sizes, so frames do not start on a byte (the bit stream is continuous). With
//! CI set a missing reader fails the test; elsewhere it skips with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use nalgebra::Matrix3;
use serde_json::Value;
use stylet_core::frame::Point;
use stylet_imaging::derived::DerivedSeries;
use stylet_imaging::seg::{write_seg, Algorithm, Code, SegSource, SegmentSpec};
use stylet_imaging::{load_series, write_series_with, PixelEncoding, SeriesMeta, Volume};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stylet-seg-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ct() -> Volume {
    let (nx, ny, nz) = (37, 29, 11);
    Volume {
        dims: [nx, ny, nz],
        spacing_mm: [0.8, 0.8, 1.25],
        origin: Point::new(-14.4, -11.2, -6.25),
        direction: Matrix3::identity(),
        voxels: (0..nx * ny * nz).map(|i| ((i * 7919) % 400) as f32 - 200.0).collect(),
    }
}

/// The voxels within the ellipsoid of `half_mm` around `centre` (LPS mm).
fn ellipsoid(v: &Volume, centre: [f64; 3], half_mm: [f64; 3]) -> Vec<bool> {
    let [nx, ny, nz] = v.dims;
    let mut m = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let p = v.ct_from_index(i as f64, j as f64, k as f64).to_array();
                let r: f64 = (0..3).map(|a| ((p[a] - centre[a]) / half_mm[a]).powi(2)).sum();
                m.push(r <= 1.0);
            }
        }
    }
    m
}

/// Per slice: voxels set and the first (row-major index in the slice), as read_seg.py gives them.
fn per_slice(v: &Volume, mask: &[bool]) -> Vec<(u64, i64)> {
    let n = v.dims[0] * v.dims[1];
    mask.chunks(n)
        .map(|s| (s.iter().filter(|b| **b).count() as u64, s.iter().position(|b| *b).map_or(-1, |p| p as i64)))
        .collect()
}

/// The SEG's own series and instance (`series_uid` and it with `.1`).
fn derived(series_uid: &str, description: &str, series_number: u32) -> DerivedSeries {
    DerivedSeries {
        series_uid: series_uid.into(),
        sop_instance_uid: format!("{series_uid}.1"),
        description: description.into(),
        series_number,
        content_date_time: ("20261207".into(), "120000".into()),
        software_version: "stylet test".into(),
    }
}

fn peer(script: &str, args: &[&str]) -> Option<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("python3").arg(root.join("tests/peers").join(script)).args(args).output().unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn a_segmentation_on_a_ct_series_reads_back_in_highdicom_pydicom_and_dciodvfy() {
    let dir = tmp("series");
    let meta =
        SeriesMeta::phantom("1.2.826.0.1.3680043.10.1299.7.1", "1.2.826.0.1.3680043.10.1299.7.1.2", "planning CT");
    write_series_with(&ct(), &dir, &meta, PixelEncoding::Uncompressed).unwrap();
    let (grid, report) = load_series(&dir, None).unwrap();
    assert_eq!(report.instances.len(), grid.dims[2]);
    // The writer says which instances it wrote (what the demo's SEG references).
    assert_eq!(meta.written_instances(grid.dims[2]), report.instances);
    let tumour = ellipsoid(&grid, [0.5, 0.3, 0.4], [4.0, 4.0, 3.0]);
    let zone = ellipsoid(&grid, [1.0, 0.0, 0.0], [9.0, 7.0, 4.0]);
    let verified = vec![false; tumour.len()];
    let segments = [
        SegmentSpec {
            label: "Tumour",
            category: Code::new("49755003", "SCT", "Morphologically Altered Structure"),
            property: Code::new("108369006", "SCT", "Neoplasm"),
            algorithm: Algorithm::Manual,
            mask: &tumour,
        },
        SegmentSpec {
            label: "Planned ablation zone",
            category: Code::new("49755003", "SCT", "Morphologically Altered Structure"),
            property: stylet_imaging::seg::ablation_zone(),
            algorithm: Algorithm::Automatic,
            mask: &zone,
        },
        SegmentSpec {
            label: "Verified ablation zone (none yet)",
            category: Code::new("49755003", "SCT", "Morphologically Altered Structure"),
            property: stylet_imaging::seg::ablation_zone(),
            algorithm: Algorithm::Automatic,
            mask: &verified,
        },
    ];
    let seg_meta = derived("1.2.826.0.1.3680043.10.1299.7.1.9", "Stylet plan", 900);
    let path = dir.join("seg").join("plan.seg.dcm");
    let source = SegSource { grid: &grid, meta: &meta, instances: &report.instances };
    let written = write_seg(&path, source, &seg_meta, &segments).unwrap();
    let expected: Vec<Vec<(u64, i64)>> = segments.iter().map(|s| per_slice(&grid, s.mask)).collect();
    let frames: usize = expected.iter().flatten().filter(|(n, _)| *n > 0).count();
    assert_eq!(written.frames, frames);
    assert_eq!(written.voxels[2], 0);
    assert!(written.voxels[0] > 50 && written.voxels[1] > written.voxels[0], "{written:?}");

    let uids: Vec<&str> = report.instances.iter().map(|i| i.sop_instance_uid.as_str()).collect();
    let mut args = vec![path.to_str().unwrap()];
    args.extend(&uids);
    if let Some(r) = peer("read_seg.py", &args) {
        assert_eq!(r["sop_class"], "1.2.840.10008.5.1.4.1.1.66.4", "{r}");
        assert_eq!(r["modality"], "SEG");
        assert_eq!(r["study"], meta.study_uid.as_str());
        assert_eq!(r["frame_of_reference"], meta.frame_of_reference_uid.as_str());
        assert_eq!(r["segmentation_type"], "BINARY");
        assert_eq!(r["frames"].as_u64().unwrap() as usize, frames);
        assert_eq!(r["source_instances"].as_u64().unwrap() as usize, uids.len(), "{r}");
        let segs = r["segments"].as_array().unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[0]["label"], "Tumour");
        assert_eq!(segs[0]["algorithm"], "MANUAL");
        assert_eq!(segs[0]["property"], "Neoplasm");
        assert_eq!(segs[1]["algorithm"], "AUTOMATIC");
        for (n, want) in expected.iter().enumerate() {
            // highdicom, frame by source instance: every slice, empty ones included.
            let got = &r["by_instance"][(n + 1).to_string()];
            for (k, (count, first)) in want.iter().enumerate() {
                let g = &got[uids[k]];
                assert_eq!(
                    (g[0].as_u64().unwrap(), g[1].as_i64().unwrap()),
                    (*count, *first),
                    "segment {} slice {k}",
                    n + 1
                );
            }
            // pydicom, the raw frames: only the slices holding any, at their positions.
            let frames = r["by_position"][(n + 1).to_string()].as_array().cloned().unwrap_or_default();
            let slices: Vec<usize> = (0..want.len()).filter(|k| want[*k].0 > 0).collect();
            assert_eq!(frames.len(), slices.len(), "segment {}", n + 1);
            for (f, k) in frames.iter().zip(slices) {
                let p = grid.ct_from_index(0.0, 0.0, k as f64).to_array();
                for a in 0..3 {
                    assert!((f["position"][a].as_f64().unwrap() - p[a]).abs() < 1e-4, "{f} vs {p:?}");
                }
                assert_eq!((f["on"][0].as_u64().unwrap(), f["on"][1].as_i64().unwrap()), want[k]);
            }
        }
    }
    // dicom3tools' IOD checker: no errors (warnings are printed for the record).
    match Command::new("dciodvfy").arg(&path).output() {
        Ok(o) => {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            eprintln!("dciodvfy:\n{text}");
            let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("Error")).collect();
            assert!(errors.is_empty(), "dciodvfy found errors:\n{}", errors.join("\n"));
        }
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "dciodvfy: {e} (apt install dicom3tools)");
            eprintln!("SKIPPED: dciodvfy: {e} (apt install dicom3tools)");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_mask_of_the_wrong_size_or_instances_not_one_per_slice_are_refused() {
    let dir = tmp("refused");
    let grid = ct();
    let meta = SeriesMeta::phantom("1.2.3", "1.2.3.4", "ct");
    let seg_meta = derived("1.2.3.5", "x", 1);
    let short = vec![true; 10];
    let spec = |mask| SegmentSpec {
        label: "x",
        category: Code::new("49755003", "SCT", "Morphologically Altered Structure"),
        property: Code::new("108369006", "SCT", "Neoplasm"),
        algorithm: Algorithm::Automatic,
        mask,
    };
    let source = SegSource { grid: &grid, meta: &meta, instances: &[] };
    let e = write_seg(&dir.join("a.dcm"), source, &seg_meta, &[spec(&short)]).unwrap_err().to_string();
    assert!(e.contains("10 mask voxels") && e.contains("37 x 29 x 11"), "{e}");
    let full = vec![false; 37 * 29 * 11];
    let one = [stylet_imaging::SourceInstance::default()];
    let source = SegSource { grid: &grid, meta: &meta, instances: &one };
    let e = write_seg(&dir.join("b.dcm"), source, &seg_meta, &[spec(&full)]).unwrap_err().to_string();
    assert!(e.contains("1 source instances for 11 slices"), "{e}");
    assert!(!dir.join("a.dcm").exists() && !dir.join("b.dcm").exists());
}
