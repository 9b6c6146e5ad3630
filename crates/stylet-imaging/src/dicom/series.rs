//! A CT series from a folder: the series chosen, its geometry checked slice by slice, the slices
//! in order along their normal with uniform spacing, the pixels decoded on every core.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::Point;

use super::SPACING_TOLERANCE_MM;
use super::{
    decode_slice, read_dir, syntax_name, tag_f64s, tag_str, DicomError, SeriesIdentity, SeriesReport, Slice,
    SourceInstance,
};
use crate::volume::Volume;

type Files = Vec<(PathBuf, DefaultDicomObject)>;

/// What every slice must share with the first: orientation, pixel spacing, rows and columns.
struct Grid {
    iop: Vec<f64>,
    pixel_spacing: Vec<f64>,
    rows: String,
    columns: String,
}

/// The slices in order along their normal, with the slice direction and spacing.
struct Stack {
    slices: Vec<Slice>,
    row_dir: Vector3<f64>,
    col_dir: Vector3<f64>,
    k_dir: Vector3<f64>,
    k_spacing: f64,
}

/// Loads a CT series from a folder (`series`: its SeriesInstanceUID, needed when several are there).
///
/// # Errors
/// A [`DicomError`] naming the file and what is wrong.
pub fn load_series(dir: &Path, series: Option<&str>) -> Result<(Volume, SeriesReport), DicomError> {
    let chosen = choose(dir, read_dir(dir)?, series)?;
    let grid = first_slice_grid(&chosen)?;
    check_pixels_and_identity(&chosen)?;
    let identity = SeriesIdentity::of(&chosen[0].1);
    let Stack { slices, row_dir, col_dir, k_dir, k_spacing } = stack(chosen, &grid)?;
    // Pixels, in HU (the Modality LUT: RescaleSlope / RescaleIntercept).
    let nx: usize = grid.columns.trim().parse().unwrap_or(1);
    let ny: usize = grid.rows.trim().parse().unwrap_or(1);
    let syntax = syntax_name(slices[0].obj.meta().transfer_syntax());
    let voxels = decode_all(&slices, nx, ny)?;
    let thickness = slices[0].obj.element(tags::SLICE_THICKNESS).ok().and_then(|e| e.to_float64().ok());
    let axis_aligned = |v: &Vector3<f64>| v.iter().filter(|x| x.abs() > 1e-6).count() == 1;
    let volume = Volume {
        dims: [nx, ny, slices.len()],
        spacing_mm: [grid.pixel_spacing[1], grid.pixel_spacing[0], k_spacing],
        origin: Point::from_coords(slices[0].position),
        direction: Matrix3::from_columns(&[row_dir, col_dir, k_dir]),
        voxels,
    };
    let report = SeriesReport {
        series_uid: tag_str(&slices[0].obj, tags::SERIES_INSTANCE_UID),
        description: tag_str(&slices[0].obj, tags::SERIES_DESCRIPTION),
        identity,
        transfer_syntax: syntax,
        slices: slices.len(),
        slice_spacing_mm: k_spacing,
        slice_thickness_tag_mm: thickness,
        tilt_deg: volume.tilt_deg(),
        oblique: !(axis_aligned(&row_dir) && axis_aligned(&col_dir)),
        instances: slices
            .iter()
            .map(|s| SourceInstance {
                sop_class_uid: tag_str(&s.obj, tags::SOP_CLASS_UID),
                sop_instance_uid: tag_str(&s.obj, tags::SOP_INSTANCE_UID),
            })
            .collect(),
    };
    Ok((volume, report))
}

/// The files of the series asked for, or of the only series there.
fn choose(dir: &Path, files: Files, series: Option<&str>) -> Result<Files, DicomError> {
    let mut by_series: BTreeMap<String, Vec<(PathBuf, DefaultDicomObject)>> = BTreeMap::new();
    for (p, o) in files {
        by_series.entry(tag_str(&o, tags::SERIES_INSTANCE_UID)).or_default().push((p, o));
    }
    match series {
        Some(uid) => by_series
            .remove(uid)
            .ok_or_else(|| DicomError::NoSuchSeries { dir: dir.display().to_string(), uid: uid.into() }),
        None if by_series.len() == 1 => Ok(by_series.into_values().next().unwrap_or_default()),
        None => {
            let list = by_series
                .iter()
                .map(|(uid, v)| {
                    format!(
                        "{uid} \"{}\" ({} files)",
                        v.first().map(|(_, o)| tag_str(o, tags::SERIES_DESCRIPTION)).unwrap_or_default(),
                        v.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            Err(DicomError::SeveralSeries { dir: dir.display().to_string(), count: by_series.len(), list })
        }
    }
}

/// The first slice's orientation, pixel spacing, rows and columns, checked.
fn first_slice_grid(chosen: &[(PathBuf, DefaultDicomObject)]) -> Result<Grid, DicomError> {
    let first_iop =
        tag_f64s(&chosen[0].1, &chosen[0].0, tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient (0020,0037)")?;
    let first_ps = tag_f64s(&chosen[0].1, &chosen[0].0, tags::PIXEL_SPACING, "PixelSpacing (0028,0030)")?;
    if first_iop.len() != 6 || first_ps.len() != 2 {
        return Err(DicomError::MissingTag {
            file: chosen[0].0.display().to_string(),
            tag: "ImageOrientationPatient / PixelSpacing values".into(),
        });
    }
    let bad = |tag: &str, value: String, reason: &str| DicomError::BadValue {
        file: chosen[0].0.display().to_string(),
        tag: tag.into(),
        value,
        reason: reason.into(),
    };
    let (u, v) = (
        Vector3::new(first_iop[0], first_iop[1], first_iop[2]),
        Vector3::new(first_iop[3], first_iop[4], first_iop[5]),
    );
    if !(u.iter().chain(v.iter()).all(|x| x.is_finite())
        && (u.norm() - 1.0).abs() < 0.01
        && (v.norm() - 1.0).abs() < 0.01
        && u.dot(&v).abs() < 0.01)
    {
        return Err(bad(
            "ImageOrientationPatient (0020,0037)",
            format!("{first_iop:?}"),
            "two orthogonal unit vectors",
        ));
    }
    if !first_ps.iter().all(|x| x.is_finite() && *x > 0.0) {
        return Err(bad("PixelSpacing (0028,0030)", format!("{first_ps:?}"), "two positive sizes in mm"));
    }
    let rows0 = tag_str(&chosen[0].1, tags::ROWS);
    let cols0 = tag_str(&chosen[0].1, tags::COLUMNS);
    for (tag, value) in [("Rows (0028,0010)", &rows0), ("Columns (0028,0011)", &cols0)] {
        if !value.trim().parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(bad(tag, format!("{value:?}"), "a pixel count from 1 to 65535"));
        }
    }
    Ok(Grid { iop: first_iop, pixel_spacing: first_ps, rows: rows0, columns: cols0 })
}

/// Every slice's bit depths (dicom-pixeldata asserts on them), and one patient and one frame of
/// reference: a slice of another is not part of this volume.
fn check_pixels_and_identity(chosen: &[(PathBuf, DefaultDicomObject)]) -> Result<(), DicomError> {
    // dicom-pixeldata asserts on these (a zero BitsStored panicked in its LUT).
    for (path, obj) in chosen {
        let int = |t| obj.element(t).ok().and_then(|e| e.to_int::<i64>().ok());
        let (allocated, stored) = (int(tags::BITS_ALLOCATED), int(tags::BITS_STORED));
        let ok = matches!(allocated, Some(8 | 16 | 32)) && stored.is_some_and(|b| b >= 1 && Some(b) <= allocated);
        if !ok {
            return Err(DicomError::BadValue {
                file: path.display().to_string(),
                tag: "BitsAllocated / BitsStored (0028,0100 / 0028,0101)".into(),
                value: format!("{allocated:?} / {stored:?}"),
                reason: "8, 16 or 32 bits allocated, 1 to that many stored".into(),
            });
        }
    }
    // One patient, one frame of reference: a slice of another is not part of this volume.
    let identity = SeriesIdentity::of(&chosen[0].1);
    for (path, obj) in chosen {
        let other = SeriesIdentity::of(obj);
        for (what, a, b) in [
            ("PatientID", &other.patient_id, &identity.patient_id),
            ("FrameOfReferenceUID", &other.frame_of_reference_uid, &identity.frame_of_reference_uid),
        ] {
            if a != b {
                return Err(DicomError::Inconsistent {
                    file: path.display().to_string(),
                    what: format!("{what} {a:?}"),
                    first: format!("{b:?}"),
                });
            }
        }
    }
    Ok(())
}

/// The slices, each consistent with the first, in order along the normal, with no duplicate
/// position, no gap and uniform spacing; the slice direction is the actual step between
/// positions (sheared under gantry tilt).
fn stack(chosen: Files, grid: &Grid) -> Result<Stack, DicomError> {
    let (first_iop, first_ps, rows0, cols0) = (&grid.iop, &grid.pixel_spacing, &grid.rows, &grid.columns);
    let mut slices = Vec::with_capacity(chosen.len());
    for (path, obj) in chosen {
        let f = |t, n| tag_f64s(&obj, &path, t, n);
        let ipp = f(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient (0020,0032)")?;
        let iop = f(tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient (0020,0037)")?;
        let ps = f(tags::PIXEL_SPACING, "PixelSpacing (0028,0030)")?;
        if ipp.len() != 3 || !ipp.iter().all(|x| x.is_finite()) {
            return Err(DicomError::MissingTag {
                file: path.display().to_string(),
                tag: "ImagePositionPatient (3 values)".into(),
            });
        }
        let same = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
        if !same(&iop, first_iop) {
            return Err(DicomError::Inconsistent {
                file: path.display().to_string(),
                what: format!("ImageOrientationPatient {iop:?}"),
                first: format!("{first_iop:?}"),
            });
        }
        if !same(&ps, first_ps) {
            return Err(DicomError::Inconsistent {
                file: path.display().to_string(),
                what: format!("PixelSpacing {ps:?}"),
                first: format!("{first_ps:?}"),
            });
        }
        let (r, c) = (tag_str(&obj, tags::ROWS), tag_str(&obj, tags::COLUMNS));
        if &r != rows0 || &c != cols0 {
            return Err(DicomError::Inconsistent {
                file: path.display().to_string(),
                what: format!("Rows x Columns {r} x {c}"),
                first: format!("{rows0} x {cols0}"),
            });
        }
        slices.push(Slice { path, obj, position: Vector3::new(ipp[0], ipp[1], ipp[2]) });
    }
    let row_dir = Vector3::new(first_iop[0], first_iop[1], first_iop[2]).normalize();
    let col_dir = Vector3::new(first_iop[3], first_iop[4], first_iop[5]).normalize();
    let normal = row_dir.cross(&col_dir).normalize();
    slices.sort_by(|a, b| a.position.dot(&normal).total_cmp(&b.position.dot(&normal)));
    let along: Vec<f64> = slices.iter().map(|s| s.position.dot(&normal)).collect();
    let steps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    for (w, st) in slices.windows(2).zip(&steps) {
        if *st < 1e-6 {
            return Err(DicomError::DuplicatePosition {
                position_mm: w[0].position.dot(&normal),
                a: w[0].path.display().to_string(),
                b: w[1].path.display().to_string(),
            });
        }
    }
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(1.0);
    for (i, st) in steps.iter().enumerate() {
        if *st > 1.5 * median {
            return Err(DicomError::MissingSlices { gap_mm: *st, after_mm: along[i], median_mm: median });
        }
    }
    if let (Some(lo), Some(hi)) = (sorted.first(), sorted.last()) {
        if hi - lo > SPACING_TOLERANCE_MM {
            return Err(DicomError::NonUniformSpacing { min_mm: *lo, max_mm: *hi, median_mm: median });
        }
    }
    // The slice direction: the actual step between positions (sheared under gantry tilt).
    let (k_dir, k_spacing) = if slices.len() > 1 {
        let d = (slices[slices.len() - 1].position - slices[0].position) / (slices.len() - 1) as f64;
        (d.normalize(), d.norm())
    } else {
        (normal, 1.0)
    };
    Ok(Stack { slices, row_dir, col_dir, k_dir, k_spacing })
}

/// Decodes the slices on every core; each thread fills its own part of the volume.
fn decode_all(slices: &[Slice], nx: usize, ny: usize) -> Result<Vec<f32>, DicomError> {
    // Decode the slices on every core; each thread fills its own part of the volume.
    let mut voxels = vec![0f32; nx * ny * slices.len()];
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 8);
    let per = slices.len().div_ceil(workers).max(1);
    let results: Vec<Result<(), DicomError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = slices
            .chunks(per)
            .zip(voxels.chunks_mut(per * nx * ny))
            .map(|(chunk, out)| {
                scope.spawn(move || {
                    for (s, dst) in chunk.iter().zip(out.chunks_mut(nx * ny)) {
                        decode_slice(s, nx, ny, dst)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DicomError::Io { path: String::new(), reason: "decoder thread panicked".into() })
                })
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(voxels)
}
