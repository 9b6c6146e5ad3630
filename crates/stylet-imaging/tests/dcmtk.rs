//! Compressed series as scanners and PACS send them, made by a real third-party encoder: DCMTK
//! (Debian's `dcmtk`) recompresses an uncompressed series to JPEG Lossless (process 14, first-order
//! prediction, 1.2.840.10008.1.2.4.70), JPEG Lossless process 14 with another predictor
//! (1.2.840.10008.1.2.4.57) and RLE Lossless (1.2.840.10008.1.2.5); each must read back voxel for
//! voxel with the same geometry. With CI set a missing DCMTK fails the test; elsewhere it skips
//! with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use nalgebra::Matrix3;
use stylet_core::frame::Point;
use stylet_imaging::{load_series, write_series, Volume};

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} not found: apt install dcmtk");
        eprintln!("SKIPPED: {tool} not found (apt install dcmtk)");
    }
    found
}

fn volume() -> Volume {
    let (nx, ny, nz) = (37, 29, 6); // odd sizes on purpose
    Volume {
        dims: [nx, ny, nz],
        spacing_mm: [0.78, 0.78, 1.5],
        origin: Point::new(-14.5, -11.0, -310.0),
        direction: Matrix3::identity(),
        // Air to dense metal, noise-like (worst case for the predictors and the run lengths),
        // with a flat block so RLE has runs to find.
        voxels: (0..nx * ny * nz)
            .map(|i| if (i / nx) % ny < 8 { -1000.0 } else { ((i * 7919) % 5000) as f32 - 1024.0 })
            .collect(),
    }
}

/// Runs `tool args.. in out` on every slice of `src` into a new folder.
fn recompress(src: &[PathBuf], dst: &Path, tool: &str, args: &[&str]) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for f in src {
        let out = dst.join(f.file_name().unwrap());
        let o = Command::new(tool).args(args).arg(f).arg(&out).output().unwrap();
        assert!(o.status.success(), "{tool} {args:?} {}: {}", f.display(), String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn jpeg_lossless_and_rle_from_dcmtk_read_back_voxel_for_voxel() {
    if !(have("dcmcjpeg") && have("dcmcrle")) {
        return;
    }
    let v = volume();
    let root = std::env::temp_dir().join(format!("stylet-dcmtk-{}", std::process::id()));
    let plain = root.join("plain");
    let _ = std::fs::remove_dir_all(&root);
    let files = write_series(&v, &plain, "1.2.826.0.1.3680043.10.9", "1.2.826.0.1.3680043.10.9.1", "dcmtk").unwrap();
    let cases: [(&str, &str, &[&str], &str); 3] = [
        // --encode-lossless-sv1 (DCMTK's default lossless mode), --true-lossless keeps the int16 bits.
        ("jpeg-sv1", "dcmcjpeg", &["--encode-lossless-sv1", "--true-lossless"], "1.2.840.10008.1.2.4.70"),
        // Process 14 with predictor 6 (Ra + (Rb - Rc)/2).
        (
            "jpeg-p14",
            "dcmcjpeg",
            &["--encode-lossless", "--selection-value", "6", "--true-lossless"],
            "1.2.840.10008.1.2.4.57",
        ),
        ("rle", "dcmcrle", &[], "1.2.840.10008.1.2.5"),
    ];
    for (name, tool, args, uid) in cases {
        let dir = root.join(name);
        recompress(&files, &dir, tool, args);
        let (back, report) = load_series(&dir, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(report.transfer_syntax.starts_with(uid), "{name}: {}", report.transfer_syntax);
        assert_eq!(report.slices, v.dims[2], "{name}");
        assert_eq!(back.dims, v.dims, "{name}");
        assert!(back.origin.distance_mm(v.origin) < 1e-4, "{name}");
        assert!((report.slice_spacing_mm - 1.5).abs() < 1e-4, "{name}");
        assert_eq!(back.voxels, v.voxels, "{name}: lossless must be lossless");
    }
    let _ = std::fs::remove_dir_all(&root);
}
