//! Writing a volume as a DICOM CT series (Explicit VR Little Endian, int16 with a rescale
//! intercept), one file per slice, with the geometry in ImagePositionPatient /
//! ImageOrientationPatient / PixelSpacing. Used by the phantom generator.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::volume::Volume;

/// Why a series could not be written. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum WriteError {
    /// cannot write {path}: {reason}
    Io {
        /// The file or folder.
        path: String,
        /// The error.
        reason: String,
    },
    /// the volume is sheared (gantry tilt {tilt_deg:.3} deg): this writer writes orthogonal grids only
    Sheared {
        /// Tilt.
        tilt_deg: f64,
    },
}

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::from(values.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join("\\").as_str())
}

/// Writes `v` (HU) as `dir/slice_0000.dcm`, ... with the given series UID, study UID and
/// description. Values are rounded to int16 with RescaleIntercept -1024, RescaleSlope 1.
///
/// # Errors
/// A [`WriteError`].
pub fn write_series(
    v: &Volume,
    dir: &Path,
    study_uid: &str,
    series_uid: &str,
    description: &str,
) -> Result<Vec<PathBuf>, WriteError> {
    if v.tilt_deg() > 1e-6 {
        return Err(WriteError::Sheared { tilt_deg: v.tilt_deg() });
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| WriteError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
    let [nx, ny, nz] = v.dims;
    let d = v.direction;
    let iop = [d[(0, 0)], d[(1, 0)], d[(2, 0)], d[(0, 1)], d[(1, 1)], d[(2, 1)]];
    let mut paths = Vec::with_capacity(nz);
    for k in 0..nz {
        let p = v.ct_from_index(0.0, 0.0, k as f64).to_array();
        let sop_uid = format!("{series_uid}.{}", k + 1);
        let mut bytes = Vec::with_capacity(nx * ny * 2);
        for &hu in &v.voxels[k * nx * ny..(k + 1) * nx * ny] {
            let stored = (f64::from(hu) + 1024.0).round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            bytes.extend_from_slice(&stored.to_le_bytes());
        }
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(uids::CT_IMAGE_STORAGE)),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop_uid.as_str())),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from(study_uid)),
            DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from(series_uid)),
            DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")),
            DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, PrimitiveValue::from(description)),
            // Deliberately not the slice step: readers must take geometry from the positions.
            DataElement::new(tags::SLICE_THICKNESS, VR::DS, ds(&[v.spacing_mm[2] * 1.5])),
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from(format!("{}", nz - k).as_str())),
            DataElement::new(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&p)),
            DataElement::new(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(&iop)),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from([1u16])),
            DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from("MONOCHROME2")),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from([ny as u16])),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from([nx as u16])),
            DataElement::new(tags::PIXEL_SPACING, VR::DS, ds(&[v.spacing_mm[1], v.spacing_mm[0]])),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from([16u16])),
            DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from([16u16])),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from([15u16])),
            DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from([1u16])),
            DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, ds(&[-1024.0])),
            DataElement::new(tags::RESCALE_SLOPE, VR::DS, ds(&[1.0])),
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(bytes)),
        ]);
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .map_err(|e| WriteError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
        // File names in reverse order of position: a reader that sorts by name is wrong.
        let path = dir.join(format!("slice_{:04}.dcm", nz - 1 - k));
        file.write_to_file(&path)
            .map_err(|e| WriteError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        paths.push(path);
    }
    Ok(paths)
}
