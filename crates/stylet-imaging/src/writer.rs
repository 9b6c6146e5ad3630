//! Writing a volume as a DICOM CT series (int16 with a rescale intercept), one file per slice,
//! with the geometry in ImagePositionPatient / ImageOrientationPatient / PixelSpacing, either
//! uncompressed (Explicit VR Little Endian) or JPEG 2000 lossless (encapsulated, one fragment
//! per frame, as PACS send it). Used by the phantom generator.

use std::path::{Path, PathBuf};

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::derived::ds;
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
    /// JPEG 2000 encoding of slice {slice} failed: {reason}
    Encode {
        /// Slice index.
        slice: usize,
        /// What the encoder said.
        reason: String,
    },
    /// the volume is sheared (gantry tilt {tilt_deg:.3} deg): this writer writes orthogonal grids only
    Sheared {
        /// Tilt.
        tilt_deg: f64,
    },
}

/// How the pixel data are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelEncoding {
    /// Explicit VR Little Endian, native pixels.
    #[default]
    Uncompressed,
    /// JPEG 2000 Image Compression (Lossless Only), 1.2.840.10008.1.2.4.90.
    Jpeg2000Lossless,
}

/// Who and what a written series is: the identity a receiver checks a series against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesMeta {
    /// StudyInstanceUID.
    pub study_uid: String,
    /// SeriesInstanceUID (each slice's SOPInstanceUID is this with `.N`).
    pub series_uid: String,
    /// SeriesDescription.
    pub description: String,
    /// PatientID.
    pub patient_id: String,
    /// PatientName (DICOM PN, `Family^Given`).
    pub patient_name: String,
    /// FrameOfReferenceUID: series sharing it share the patient coordinate system.
    pub frame_of_reference_uid: String,
    /// AcquisitionDateTime (DICOM DT, e.g. `20261202185200.250000`), if known.
    pub acquisition_datetime: Option<String>,
}

impl SeriesMeta {
    /// A series of the simulated phantom patient, its frame of reference the study's.
    #[must_use]
    pub fn phantom(study_uid: &str, series_uid: &str, description: &str) -> Self {
        SeriesMeta {
            study_uid: study_uid.into(),
            series_uid: series_uid.into(),
            description: description.into(),
            patient_id: "STYLET-PHANTOM".into(),
            patient_name: "Phantom^Stylet".into(),
            frame_of_reference_uid: format!("{study_uid}.1"),
            acquisition_datetime: None,
        }
    }
}

impl SeriesMeta {
    /// The SOP instances [`write_series_with`] writes for a volume of `slices` slices, in slice
    /// order (for a SEG that references them).
    #[must_use]
    pub fn written_instances(&self, slices: usize) -> Vec<crate::SourceInstance> {
        (0..slices)
            .map(|k| crate::SourceInstance {
                sop_class_uid: uids::CT_IMAGE_STORAGE.into(),
                sop_instance_uid: format!("{}.{}", self.series_uid, k + 1),
            })
            .collect()
    }
}

/// Writes `v` (HU) as `dir/slice_0000.dcm`, ... with the given series UID, study UID and
/// description, as a series of the phantom patient ([`SeriesMeta::phantom`]). Values are
/// rounded to int16 with RescaleIntercept -1024, RescaleSlope 1.
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
    write_series_with(v, dir, &SeriesMeta::phantom(study_uid, series_uid, description), PixelEncoding::Uncompressed)
}

/// [`write_series`] with a choice of pixel encoding.
///
/// # Errors
/// A [`WriteError`].
pub fn write_series_encoded(
    v: &Volume,
    dir: &Path,
    study_uid: &str,
    series_uid: &str,
    description: &str,
    encoding: PixelEncoding,
) -> Result<Vec<PathBuf>, WriteError> {
    write_series_with(v, dir, &SeriesMeta::phantom(study_uid, series_uid, description), encoding)
}

/// Writes `v` (HU) as a series with the identity `meta`, in `encoding`.
///
/// # Errors
/// A [`WriteError`].
pub fn write_series_with(
    v: &Volume,
    dir: &Path,
    meta: &SeriesMeta,
    encoding: PixelEncoding,
) -> Result<Vec<PathBuf>, WriteError> {
    let (study_uid, series_uid, description) = (meta.study_uid.as_str(), meta.series_uid.as_str(), &meta.description);
    if v.tilt_deg() > 1e-6 {
        return Err(WriteError::Sheared { tilt_deg: v.tilt_deg() });
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| WriteError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
    let [nx, ny, nz] = v.dims;
    let iop = v.image_orientation();
    let mut paths = Vec::with_capacity(nz);
    for k in 0..nz {
        let p = v.ct_from_index(0.0, 0.0, k as f64).to_array();
        let sop_uid = format!("{series_uid}.{}", k + 1);
        let stored: Vec<i16> = v.voxels[k * nx * ny..(k + 1) * nx * ny]
            .iter()
            .map(|&hu| (f64::from(hu) + 1024.0).round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16)
            .collect();
        let (pixel_data, transfer_syntax) = match encoding {
            PixelEncoding::Uncompressed => {
                let bytes: Vec<u8> = stored.iter().flat_map(|s| s.to_le_bytes()).collect();
                (
                    DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(bytes)),
                    uids::EXPLICIT_VR_LITTLE_ENDIAN,
                )
            }
            PixelEncoding::Jpeg2000Lossless => {
                let scratch = dir.join(format!(".slice_{k:04}.j2k.tmp"));
                let mut codestream = encode_j2k_lossless(&stored, nx, ny, &scratch)
                    .map_err(|reason| WriteError::Encode { slice: k, reason })?;
                if codestream.len() % 2 == 1 {
                    codestream.push(0); // fragments have even length (PS3.5 A.4)
                }
                let fragments = PixelFragmentSequence::new(Vec::<u32>::new(), vec![codestream]);
                (DataElement::new(tags::PIXEL_DATA, VR::OB, fragments), uids::JPEG2000_LOSSLESS)
            }
        };
        let mut obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(uids::CT_IMAGE_STORAGE)),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop_uid.as_str())),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from(study_uid)),
            DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from(series_uid)),
            DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")),
            DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, PrimitiveValue::from(description.as_str())),
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from(meta.patient_name.as_str())),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from(meta.patient_id.as_str())),
            DataElement::new(
                tags::FRAME_OF_REFERENCE_UID,
                VR::UI,
                PrimitiveValue::from(meta.frame_of_reference_uid.as_str()),
            ),
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
            pixel_data,
        ]);
        if let Some(dt) = &meta.acquisition_datetime {
            obj.put(DataElement::new(tags::ACQUISITION_DATE_TIME, VR::DT, PrimitiveValue::from(dt.as_str())));
        }
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(transfer_syntax))
            .map_err(|e| WriteError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
        // File names in reverse order of position: a reader that sorts by name is wrong.
        let path = dir.join(format!("slice_{:04}.dcm", nz - 1 - k));
        file.write_to_file(&path)
            .map_err(|e| WriteError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        paths.push(path);
    }
    Ok(paths)
}

/// Encodes one signed 16-bit greyscale frame as a lossless JPEG 2000 codestream (reversible 5/3
/// wavelet, one quality layer, no rate limit) with the pure-Rust OpenJPEG port. Its safe API
/// writes to a file only, so the codestream goes through `scratch`, which is removed.
fn encode_j2k_lossless(pixels: &[i16], nx: usize, ny: usize, scratch: &Path) -> Result<Vec<u8>, String> {
    use openjp2::openjpeg::{opj_cparameters_t, OPJ_CLRSPC_GRAY, OPJ_CODEC_J2K};
    let (w, h) = (u32::try_from(nx).map_err(|e| e.to_string())?, u32::try_from(ny).map_err(|e| e.to_string())?);
    let component = openjp2::opj_image_comptparm { dx: 1, dy: 1, w, h, x0: 0, y0: 0, prec: 16, bpp: 16, sgnd: 1 };
    let mut image = openjp2::opj_image::create(&[component], OPJ_CLRSPC_GRAY).ok_or("cannot allocate the image")?;
    image.x1 = w;
    image.y1 = h;
    let data = image
        .comps_mut()
        .and_then(|c| c.first_mut())
        .and_then(|c| c.data_mut())
        .ok_or("the image has no component data")?;
    if data.len() != pixels.len() {
        return Err(format!("component holds {} samples, the frame {}", data.len(), pixels.len()));
    }
    for (d, &p) in data.iter_mut().zip(pixels) {
        *d = i32::from(p);
    }
    let mut params = opj_cparameters_t {
        tcp_numlayers: 1,
        cp_disto_alloc: 1, // tcp_rates[0] = 0 with one layer: lossless
        irreversible: 0,   // the reversible 5/3 wavelet
        ..Default::default()
    };
    let mut codec = openjp2::Codec::new_encoder(OPJ_CODEC_J2K).ok_or("cannot create the encoder")?;
    let mut stream = openjp2::Stream::new_file(scratch, 1 << 20, false).map_err(|e| e.to_string())?;
    let ok = codec.setup_encoder(&mut params, &mut image) != 0
        && codec.start_compress(&mut image, &mut stream) != 0
        && codec.encode(&mut stream) != 0
        && codec.end_compress(&mut stream) != 0;
    drop(stream);
    let bytes = std::fs::read(scratch).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(scratch);
    if !ok {
        return Err("the encoder reported an error".into());
    }
    bytes
}
