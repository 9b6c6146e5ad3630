//! NIfTI-1 volumes (`.nii`, `.nii.gz`): label maps from 3D Slicer and TotalSegmentator, CT.
//!
//! NIfTI's world frame is RAS; Stylet's CT frame is DICOM's LPS. The conversion is the one
//! `stylet_core::frame::ct_from_slicer` defines (x and y negated), applied to the voxel-to-world
//! affine once, here. The affine comes from the sform when its code is set, else the qform, else
//! the voxel sizes alone.

use std::io::Read;
use std::path::Path;

use nalgebra::{Matrix3, Matrix4, UnitQuaternion, Vector3, Vector4};
use stylet_core::frame::Point;

use crate::volume::Volume;

/// Why a NIfTI file could not be read. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum NiftiError {
    /// cannot read {path}: {reason}
    Io {
        /// The file.
        path: String,
        /// The error.
        reason: String,
    },
    /// {path}: {field}: {reason} (a grid with its spacing split off must be a rotation and a translation)
    Affine {
        /// The file.
        path: String,
        /// The header fields the affine came from.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// {path}: not a NIfTI-1 file ({reason})
    NotNifti {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// {path}: data type {code} is not supported
    DataType {
        /// The file.
        path: String,
        /// NIfTI datatype code.
        code: i16,
    },
    /// {path}: {expected} bytes of voxel data expected, {found} present
    Truncated {
        /// The file.
        path: String,
        /// Needed.
        expected: usize,
        /// Present.
        found: usize,
    },
}

struct Header<'a> {
    b: &'a [u8],
    le: bool,
}

impl Header<'_> {
    fn i16(&self, at: usize) -> i16 {
        let x = [self.b[at], self.b[at + 1]];
        if self.le {
            i16::from_le_bytes(x)
        } else {
            i16::from_be_bytes(x)
        }
    }
    fn f32(&self, at: usize) -> f32 {
        let x = [self.b[at], self.b[at + 1], self.b[at + 2], self.b[at + 3]];
        if self.le {
            f32::from_le_bytes(x)
        } else {
            f32::from_be_bytes(x)
        }
    }
}

/// Reads a NIfTI-1 file into a [`Volume`] in LPS (values scaled by `scl_slope`/`scl_inter` when set).
///
/// # Errors
/// A [`NiftiError`] naming the file.
pub fn load_nifti(path: &Path) -> Result<Volume, NiftiError> {
    let name = path.display().to_string();
    let raw = std::fs::read(path).map_err(|e| NiftiError::Io { path: name.clone(), reason: e.to_string() })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| NiftiError::Io { path: name.clone(), reason: format!("gzip: {e}") })?;
        out
    } else {
        raw
    };
    parse_nifti(&name, &bytes)
}

/// Parses NIfTI-1 bytes (`name` names it in errors).
///
/// # Errors
/// A [`NiftiError`].
pub fn parse_nifti(name: &str, bytes: &[u8]) -> Result<Volume, NiftiError> {
    let not = |reason: &str| NiftiError::NotNifti { path: name.into(), reason: reason.into() };
    if bytes.len() < 352 {
        return Err(not("shorter than a header"));
    }
    let le = match (
        i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
    ) {
        (348, _) => true,
        (_, 348) => false,
        _ => return Err(not("sizeof_hdr is not 348 (NIfTI-2 is not supported)")),
    };
    if &bytes[344..347] != b"n+1" && &bytes[344..347] != b"ni1" {
        return Err(not("no n+1 magic"));
    }
    let h = Header { b: bytes, le };
    let ndim = h.i16(40);
    if !(1..=7).contains(&ndim) {
        return Err(not("dim[0] outside 1..7"));
    }
    let dim = |k: usize| if (k as i16) <= ndim { h.i16(40 + 2 * k).max(1) as usize } else { 1 };
    let dims = [dim(1), dim(2), dim(3)];
    if (4..=ndim as usize).any(|k| dim(k) > 1) {
        return Err(not("more than three dimensions with extent > 1"));
    }
    let datatype = h.i16(70);
    let pixdim = |k: usize| f64::from(h.f32(76 + 4 * k));
    let vox_offset = h.f32(108).max(352.0) as usize;
    let (slope, inter) = (h.f32(112), h.f32(116));
    let n = dims.iter().product::<usize>();
    let size = match datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 => 8,
        code => return Err(NiftiError::DataType { path: name.into(), code }),
    };
    // Checked: a header may declare more than the address space (found by the fuzzer).
    let need = n.checked_mul(size).and_then(|d| d.checked_add(vox_offset)).unwrap_or(usize::MAX);
    if bytes.len() < need {
        return Err(NiftiError::Truncated { path: name.into(), expected: need, found: bytes.len() });
    }
    let d = &bytes[vox_offset..need];
    let get = |i: usize| -> f64 {
        let b = &d[i * size..(i + 1) * size];
        macro_rules! num {
            ($t:ty, $n:expr) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(b);
                (if le { <$t>::from_le_bytes(a) } else { <$t>::from_be_bytes(a) }) as f64
            }};
        }
        match datatype {
            2 => f64::from(b[0]),
            256 => f64::from(b[0] as i8),
            4 => num!(i16, 2),
            512 => num!(u16, 2),
            8 => num!(i32, 4),
            768 => num!(u32, 4),
            16 => num!(f32, 4),
            _ => num!(f64, 8),
        }
    };
    let scale = slope != 0.0 && slope.is_finite() && (slope != 1.0 || inter != 0.0);
    let voxels: Vec<f32> = (0..n)
        .map(|i| {
            let v = get(i);
            (if scale { v * f64::from(slope) + f64::from(inter) } else { v }) as f32
        })
        .collect();
    // Voxel -> RAS affine.
    let (qform_code, sform_code) = (h.i16(252), h.i16(254));
    let field = match (sform_code > 0, qform_code > 0) {
        (true, _) => "sform (srow_x, srow_y, srow_z)",
        (false, true) => "qform (quatern_b/c/d, qoffset, pixdim)",
        (false, false) => "pixdim",
    };
    let ras: Matrix4<f64> = if sform_code > 0 {
        let row = |at: usize| {
            Vector4::new(
                f64::from(h.f32(at)),
                f64::from(h.f32(at + 4)),
                f64::from(h.f32(at + 8)),
                f64::from(h.f32(at + 12)),
            )
        };
        Matrix4::from_rows(&[
            row(280).transpose(),
            row(296).transpose(),
            row(312).transpose(),
            Vector4::new(0.0, 0.0, 0.0, 1.0).transpose(),
        ])
    } else if qform_code > 0 {
        let (b, c, dq) = (f64::from(h.f32(256)), f64::from(h.f32(260)), f64::from(h.f32(264)));
        let a = (1.0 - (b * b + c * c + dq * dq)).max(0.0).sqrt();
        let r =
            UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(a, b, c, dq)).to_rotation_matrix().into_inner();
        let qfac = if pixdim(0) < 0.0 { -1.0 } else { 1.0 };
        let s = Matrix3::from_diagonal(&Vector3::new(pixdim(1), pixdim(2), pixdim(3) * qfac));
        let m = r * s;
        let mut a4 = Matrix4::identity();
        a4.fixed_slice_mut::<3, 3>(0, 0).copy_from(&m);
        a4[(0, 3)] = f64::from(h.f32(268));
        a4[(1, 3)] = f64::from(h.f32(272));
        a4[(2, 3)] = f64::from(h.f32(276));
        a4
    } else {
        Matrix4::from_diagonal(&Vector4::new(pixdim(1), pixdim(2), pixdim(3), 1.0))
    };
    // RAS -> LPS, once.
    let lps = stylet_core::frame::ct_from_slicer().to_nalgebra().to_homogeneous() * ras;
    let cols: Vec<Vector3<f64>> = (0..3).map(|k| Vector3::new(lps[(0, k)], lps[(1, k)], lps[(2, k)])).collect();
    let spacing = [cols[0].norm(), cols[1].norm(), cols[2].norm()];
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(not("degenerate voxel-to-world affine"));
    }
    let origin = Vector3::new(lps[(0, 3)], lps[(1, 3)], lps[(2, 3)]);
    let direction = Matrix3::from_columns(&[cols[0] / spacing[0], cols[1] / spacing[1], cols[2] / spacing[2]]);
    crate::volume::check_rigid_grid(&direction, &origin).map_err(|e| NiftiError::Affine {
        path: name.into(),
        field,
        reason: e.to_string(),
    })?;
    Ok(Volume { dims, spacing_mm: spacing, origin: Point::from_coords(origin), direction, voxels })
}

/// Writes a volume as NIfTI-1 float32 (`.nii`, or gzip-compressed when the name ends in `.gz`),
/// with its LPS geometry converted to the file's RAS sform.
///
/// # Errors
/// [`NiftiError::Io`] naming the file.
pub fn write_nifti(v: &Volume, path: &Path) -> Result<(), NiftiError> {
    let name = path.display().to_string();
    let mut b = vec![0u8; 352];
    b[0..4].copy_from_slice(&348i32.to_le_bytes());
    b[40..42].copy_from_slice(&3i16.to_le_bytes());
    for (k, d) in v.dims.iter().enumerate() {
        let d = i16::try_from(*d).map_err(|_| NiftiError::Io {
            path: name.clone(),
            reason: format!("dimension {d} exceeds NIfTI-1's 32767"),
        })?;
        b[42 + 2 * k..44 + 2 * k].copy_from_slice(&d.to_le_bytes());
    }
    b[70..72].copy_from_slice(&16i16.to_le_bytes()); // float32
    b[72..74].copy_from_slice(&32i16.to_le_bytes());
    b[76..80].copy_from_slice(&1f32.to_le_bytes());
    for (k, s) in v.spacing_mm.iter().enumerate() {
        b[80 + 4 * k..84 + 4 * k].copy_from_slice(&(*s as f32).to_le_bytes());
    }
    b[108..112].copy_from_slice(&352f32.to_le_bytes());
    b[112..116].copy_from_slice(&1f32.to_le_bytes());
    b[123] = 2; // xyzt_units: mm
    b[254..256].copy_from_slice(&2i16.to_le_bytes()); // sform_code: aligned
                                                      // LPS -> RAS for the sform rows.
    for r in 0..3 {
        let flip = if r < 2 { -1.0 } else { 1.0 };
        for c in 0..3 {
            let val = flip * v.direction[(r, c)] * v.spacing_mm[c];
            let at = 280 + 16 * r + 4 * c;
            b[at..at + 4].copy_from_slice(&(val as f32).to_le_bytes());
        }
        let at = 280 + 16 * r + 12;
        b[at..at + 4].copy_from_slice(&((flip * v.origin.to_array()[r]) as f32).to_le_bytes());
    }
    b[344..348].copy_from_slice(b"n+1\0");
    b.reserve(v.voxels.len() * 4);
    for x in &v.voxels {
        b.extend_from_slice(&x.to_le_bytes());
    }
    let io = |e: std::io::Error| NiftiError::Io { path: name.clone(), reason: e.to_string() };
    if name.ends_with(".gz") {
        let f = std::fs::File::create(path).map_err(io)?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b).map_err(io)?;
        gz.finish().map_err(io)?;
    } else {
        std::fs::write(path, &b).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian NIfTI-1 header + int16 data with the given sform rows (RAS).
    fn file(dims: [i16; 3], srow: [[f32; 4]; 3], data: &[i16], datatype: i16) -> Vec<u8> {
        let mut b = vec![0u8; 352];
        b[0..4].copy_from_slice(&348i32.to_le_bytes());
        b[40..42].copy_from_slice(&3i16.to_le_bytes());
        for (k, d) in dims.iter().enumerate() {
            b[42 + 2 * k..44 + 2 * k].copy_from_slice(&d.to_le_bytes());
        }
        b[70..72].copy_from_slice(&datatype.to_le_bytes());
        b[72..74].copy_from_slice(&16i16.to_le_bytes());
        b[108..112].copy_from_slice(&352f32.to_le_bytes());
        b[254..256].copy_from_slice(&1i16.to_le_bytes());
        for (r, row) in srow.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let at = 280 + 16 * r + 4 * c;
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        b[344..348].copy_from_slice(b"n+1\0");
        for v in data {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn ras_affine_becomes_lps_once() {
        // 2 mm voxels, RAS origin (10, 20, 30): voxel (1, 0, 0) is 2 mm to the right (RAS +x).
        let srow = [[2.0, 0.0, 0.0, 10.0], [0.0, 2.0, 0.0, 20.0], [0.0, 0.0, 2.0, 30.0]];
        let v = parse_nifti("t.nii", &file([2, 2, 2], srow, &[0, 1, 2, 3, 4, 5, 6, 7], 4)).unwrap();
        let p0 = v.ct_from_index(0.0, 0.0, 0.0).to_array();
        assert_eq!(p0, [-10.0, -20.0, 30.0], "LPS = (-R, -A, S)");
        let p1 = v.ct_from_index(1.0, 0.0, 0.0).to_array();
        assert_eq!(p1, [-12.0, -20.0, 30.0]);
        // The same point through the one defined conversion.
        let ras = stylet_core::frame::Point::<stylet_core::frame::Slicer>::new(12.0, 20.0, 30.0);
        let lps = stylet_core::frame::ct_from_slicer() * ras;
        assert!(lps.distance_mm(v.ct_from_index(1.0, 0.0, 0.0)) < 1e-9);
        assert_eq!(v.get(1, 1, 1), Some(7.0));
        assert_eq!(v.sample_nearest(v.ct_from_index(1.0, 0.0, 1.0)), Some(5.0));
    }

    #[test]
    fn written_files_read_back_with_the_same_lps_geometry() {
        let v = Volume {
            dims: [3, 2, 2],
            spacing_mm: [0.8, 0.9, 1.25],
            origin: Point::new(-10.0, 20.0, -300.0),
            direction: Matrix3::identity(),
            voxels: (0..12).map(|x| x as f32 * 1.5 - 3.0).collect(),
        };
        for name in ["t.nii", "t.nii.gz"] {
            let p = std::env::temp_dir().join(format!("stylet-nifti-{}-{name}", std::process::id()));
            write_nifti(&v, &p).unwrap();
            let back = load_nifti(&p).unwrap();
            let _ = std::fs::remove_file(&p);
            assert_eq!(back.dims, v.dims);
            assert_eq!(back.voxels, v.voxels);
            assert!(back.origin.distance_mm(v.origin) < 1e-4);
            assert!((back.direction - v.direction).norm() < 1e-6);
            for (a, b) in back.spacing_mm.iter().zip(v.spacing_mm) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bad_files_are_named() {
        let srow = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
        let good = file([2, 2, 2], srow, &[0; 8], 4);
        let e = parse_nifti("x.nii", &good[..good.len() - 3]).unwrap_err().to_string();
        assert!(e.contains("x.nii") && e.contains("bytes"), "{e}");
        let e = parse_nifti("x.nii", &file([2, 2, 2], srow, &[0; 8], 128)).unwrap_err().to_string();
        assert!(e.contains("data type 128"), "{e}");
        let e = parse_nifti("x.nii", &good[..100]).unwrap_err().to_string();
        assert!(e.contains("not a NIfTI-1"), "{e}");
        // A vox_offset past the address space (the fuzzer's first find): refused, no overflow.
        let mut far = good.clone();
        far[108..112].copy_from_slice(&1e30f32.to_le_bytes());
        let e = parse_nifti("x.nii", &far).unwrap_err().to_string();
        assert!(e.contains("x.nii"), "{e}");
    }

    #[test]
    fn a_sheared_affine_is_refused_and_a_mirrored_slice_order_is_not() {
        // Slices stepping 0.5 mm sideways per 2 mm: a shear that no rigid placement explains.
        let sheared = [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]];
        let e = parse_nifti("s.nii", &file([2, 2, 2], sheared, &[0; 8], 4)).unwrap_err().to_string();
        assert!(e.starts_with("s.nii: sform") && e.contains("not a rigid transform"), "{e}");
        // Slices stored foot to head or head to foot: both are the same patient.
        let mirrored = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -2.0, 0.0]];
        let v = parse_nifti("m.nii", &file([2, 2, 2], mirrored, &[0; 8], 4)).unwrap();
        assert_eq!(v.spacing_mm, [1.0, 1.0, 2.0]);
    }

    proptest::proptest! {
        #[test]
        fn damaged_headers_are_errors_never_panics(edits in proptest::collection::vec((0usize..368, 0u8..=255), 1..12)) {
            let srow = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
            let mut b = file([2, 2, 2], srow, &[0; 8], 4);
            for (at, v) in edits {
                b[at] = v;
            }
            if let Ok(v) = parse_nifti("p.nii", &b) {
                proptest::prop_assert_eq!(v.voxels.len(), v.dims.iter().product::<usize>());
            }
        }
    }
}
