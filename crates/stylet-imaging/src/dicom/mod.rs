//! DICOM CT series: select, sort by position along the slice normal, geometry from
//! ImagePositionPatient / ImageOrientationPatient / PixelSpacing (never SliceThickness, never file
//! names or InstanceNumber), rescale to HU. Compressed pixel data (JPEG 2000, JPEG lossless, RLE,
//! deflate) is decoded by dicom-pixeldata; an unsupported transfer syntax is named in the error.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{open_file, DefaultDicomObject};
use dicom_pixeldata::PixelDecoder;
use nalgebra::Vector3;

mod series;

pub use series::load_series;

/// Largest deviation of one slice step from the median before the series is refused, mm.
pub const SPACING_TOLERANCE_MM: f64 = 0.01;

/// Why a series could not be read. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum DicomError {
    /// cannot read {path}: {reason}
    Io {
        /// The path.
        path: String,
        /// The error.
        reason: String,
    },
    /// no DICOM files in {dir}
    NoDicom {
        /// The folder.
        dir: String,
    },
    /// {dir} holds {count} series; name one with --series: {list}
    SeveralSeries {
        /// The folder.
        dir: String,
        /// How many.
        count: usize,
        /// UID, description and slice count of each.
        list: String,
    },
    /// no series {uid} in {dir}
    NoSuchSeries {
        /// The folder.
        dir: String,
        /// The UID asked for.
        uid: String,
    },
    /// {file}: missing or unreadable {tag}
    MissingTag {
        /// The file.
        file: String,
        /// The tag's name.
        tag: String,
    },
    /// {file}: cannot decode pixel data in transfer syntax {syntax}: {reason}
    PixelData {
        /// The file.
        file: String,
        /// Transfer syntax UID and name.
        syntax: String,
        /// The decoder's message.
        reason: String,
    },
    /// {file}: {tag} is {value}: {reason}
    BadValue {
        /// The file.
        file: String,
        /// The tag's name.
        tag: String,
        /// The value as read.
        value: String,
        /// What it should be.
        reason: String,
    },
    /// {file}: {what} differs from the first slice ({first}): mixed series?
    Inconsistent {
        /// The file.
        file: String,
        /// Which attribute.
        what: String,
        /// The first slice's value.
        first: String,
    },
    /// non-uniform slice spacing: steps from {min_mm:.3} to {max_mm:.3} mm (median {median_mm:.3}); refusing rather than mis-placing slices
    NonUniformSpacing {
        /// Smallest step.
        min_mm: f64,
        /// Largest step.
        max_mm: f64,
        /// Median step.
        median_mm: f64,
    },
    /// missing slice(s): a gap of {gap_mm:.3} mm after position {after_mm:.3} mm (median step {median_mm:.3} mm)
    MissingSlices {
        /// Gap.
        gap_mm: f64,
        /// Position along the normal before the gap.
        after_mm: f64,
        /// Median step.
        median_mm: f64,
    },
    /// two slices at the same position ({position_mm:.3} mm along the normal): {a} and {b}
    DuplicatePosition {
        /// Position.
        position_mm: f64,
        /// One file.
        a: String,
        /// The other.
        b: String,
    },
}

/// What was found and checked while loading a series.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SeriesReport {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SeriesDescription (may be empty).
    pub description: String,
    /// Whose CT it is and in which coordinate system (the same in every slice).
    pub identity: SeriesIdentity,
    /// Transfer syntax UID and name of the first slice.
    pub transfer_syntax: String,
    /// Slices.
    pub slices: usize,
    /// Slice step from ImagePositionPatient, mm.
    pub slice_spacing_mm: f64,
    /// SliceThickness as written (not used for geometry).
    pub slice_thickness_tag_mm: Option<f64>,
    /// Angle between the slice step and the slice normal (gantry tilt), degrees.
    pub tilt_deg: f64,
    /// Whether the slice axes are not aligned with the patient axes.
    pub oblique: bool,
    /// Each slice's SOP class and instance, in the volume's slice order (`k`): what a derived
    /// object (a Segmentation) references.
    #[serde(skip)]
    pub instances: Vec<SourceInstance>,
}

impl SeriesReport {
    /// The series' identity as a writer takes it (a derived object's study, frame of reference
    /// and patient are these).
    #[must_use]
    pub fn meta(&self) -> crate::SeriesMeta {
        crate::SeriesMeta {
            study_uid: self.identity.study_uid.clone(),
            series_uid: self.series_uid.clone(),
            description: self.description.clone(),
            patient_id: self.identity.patient_id.clone(),
            patient_name: self.identity.patient_name.clone(),
            frame_of_reference_uid: self.identity.frame_of_reference_uid.clone(),
            acquisition_datetime: self.identity.acquisition_datetime.clone(),
        }
    }
}

/// One image of a series, as a derived object references it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceInstance {
    /// SOPClassUID (0008,0016).
    pub sop_class_uid: String,
    /// SOPInstanceUID (0008,0018).
    pub sop_instance_uid: String,
}

/// Whose CT a series is and in which patient coordinate system: what a checkpoint CT must share
/// with the planning CT before its coordinates mean the same (empty when a tag is absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeriesIdentity {
    /// PatientID (0010,0020).
    pub patient_id: String,
    /// PatientName (0010,0010).
    pub patient_name: String,
    /// StudyInstanceUID (0020,000D).
    pub study_uid: String,
    /// FrameOfReferenceUID (0020,0052).
    pub frame_of_reference_uid: String,
    /// AcquisitionDateTime (0008,002A), or AcquisitionDate and AcquisitionTime, as written.
    pub acquisition_datetime: Option<String>,
}

impl SeriesIdentity {
    /// Why a series of this identity is not of the same patient and frame of reference as
    /// `planning`'s (`None`: it is). A tag missing from either side is a difference.
    #[must_use]
    pub fn differs_from(&self, planning: &SeriesIdentity) -> Option<String> {
        if self.patient_id != planning.patient_id {
            return Some(format!(
                "another patient: PatientID {:?}, the planning CT's is {:?}",
                self.patient_id, planning.patient_id
            ));
        }
        if self.frame_of_reference_uid.is_empty() || self.frame_of_reference_uid != planning.frame_of_reference_uid {
            return Some(format!(
                "another frame of reference: FrameOfReferenceUID {:?}, the planning CT's is {:?} (the patient was re-positioned or the scanner re-registered; its coordinates do not match the plan's)",
                self.frame_of_reference_uid, planning.frame_of_reference_uid
            ));
        }
        None
    }

    fn of(obj: &DefaultDicomObject) -> Self {
        let dt = Some(tag_str(obj, tags::ACQUISITION_DATE_TIME)).filter(|s| !s.is_empty()).or_else(|| {
            let (d, t) = (tag_str(obj, tags::ACQUISITION_DATE), tag_str(obj, tags::ACQUISITION_TIME));
            (!d.is_empty() && !t.is_empty()).then(|| format!("{d}{t}"))
        });
        SeriesIdentity {
            patient_id: tag_str(obj, tags::PATIENT_ID),
            patient_name: tag_str(obj, tags::PATIENT_NAME),
            study_uid: tag_str(obj, tags::STUDY_INSTANCE_UID),
            frame_of_reference_uid: tag_str(obj, tags::FRAME_OF_REFERENCE_UID),
            acquisition_datetime: dt,
        }
    }
}

struct Slice {
    path: PathBuf,
    obj: DefaultDicomObject,
    position: Vector3<f64>,
}

fn tag_f64s(obj: &DefaultDicomObject, file: &Path, tag: dicom_object::Tag, name: &str) -> Result<Vec<f64>, DicomError> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_multi_float64().ok())
        .ok_or_else(|| DicomError::MissingTag { file: file.display().to_string(), tag: name.into() })
}

fn tag_str(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> String {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_string())
        .unwrap_or_default()
}

fn syntax_name(uid: &str) -> String {
    let uid = uid.trim_end_matches('\0');
    let name = match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless",
        "1.2.840.10008.1.2.4.70" => "JPEG Lossless SV1",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        _ => "unknown",
    };
    format!("{uid} ({name})")
}

/// RLE Lossless.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// RLE Lossless (PS3.5 Annex G.5): every frame's fragment opens with a 64-byte header, the number
/// of segments (1-15) and 15 offsets, each used one inside the fragment. dicom-rs's decoder
/// reserves room for as many offsets as the first four bytes say before it looks further (a
/// fragment opening `FF FF FF FF` made it ask for 16 GB at once, found by the `ct_inputs` fuzz
/// target): the header is checked here first.
fn check_rle_fragments(fragments: &[Vec<u8>]) -> Result<(), String> {
    if fragments.is_empty() {
        return Err("RLE pixel data without fragments".into());
    }
    for (i, f) in fragments.iter().enumerate() {
        let word = |k: usize| f.get(4 * k..4 * k + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let (Some(n), true) = (word(0), f.len() >= 64) else {
            return Err(format!("RLE fragment {i}: {} bytes, shorter than its 64-byte header", f.len()));
        };
        if !(1..=15).contains(&n) {
            return Err(format!("RLE fragment {i}: {n} segments (the header allows 1-15)"));
        }
        for k in 1..=n as usize {
            let off = word(k).unwrap_or(u32::MAX);
            if off as usize > f.len() || (k == 1 && off != 64) {
                return Err(format!("RLE fragment {i}: segment {k} at offset {off} in {} bytes", f.len()));
            }
        }
    }
    Ok(())
}

fn has_dicom_magic(p: &Path) -> bool {
    crate::dicom_lengths::preamble_of(p).is_some()
}

/// Decodes one slice into `dst` (HU). Uncompressed 16-bit data is converted directly; everything
/// else goes through dicom-pixeldata's decoders and Modality LUT.
fn decode_slice(s: &Slice, nx: usize, ny: usize, dst: &mut [f32]) -> Result<(), DicomError> {
    let file = s.path.display().to_string();
    let ts_uid = s.obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let ts = syntax_name(&ts_uid);
    let int = |t| s.obj.element(t).ok().and_then(|e| e.to_int::<i64>().ok());
    let float = |t| s.obj.element(t).ok().and_then(|e| e.to_float64().ok());
    let native = ts_uid == "1.2.840.10008.1.2.1" || ts_uid == "1.2.840.10008.1.2";
    if native && int(tags::BITS_ALLOCATED) == Some(16) && int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) == 1 {
        let bytes = s
            .obj
            .element(tags::PIXEL_DATA)
            .ok()
            .and_then(|e| e.to_bytes().ok())
            .ok_or_else(|| DicomError::MissingTag { file: file.clone(), tag: "PixelData (7FE0,0010)".into() })?;
        if bytes.len() < nx * ny * 2 {
            return Err(DicomError::PixelData {
                file,
                syntax: ts,
                reason: format!("{} bytes of pixel data, expected {}", bytes.len(), nx * ny * 2),
            });
        }
        let slope = float(tags::RESCALE_SLOPE).unwrap_or(1.0) as f32;
        let intercept = float(tags::RESCALE_INTERCEPT).unwrap_or(0.0) as f32;
        let signed = int(tags::PIXEL_REPRESENTATION) == Some(1);
        for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
            let raw = if signed {
                f32::from(i16::from_le_bytes([b[0], b[1]]))
            } else {
                f32::from(u16::from_le_bytes([b[0], b[1]]))
            };
            *d = raw * slope + intercept;
        }
        return Ok(());
    }
    if ts_uid == RLE_LOSSLESS {
        let frags = s.obj.element(tags::PIXEL_DATA).ok().and_then(|e| e.value().fragments());
        if let Err(reason) = check_rle_fragments(frags.unwrap_or(&[])) {
            return Err(DicomError::PixelData { file, syntax: ts, reason });
        }
    }
    // dicom-pixeldata's decoders can panic on damaged compressed data (its RLE decoder indexes
    // out of bounds on inconsistent segment sizes, found by the `ct_inputs` fuzz target): such a
    // slice is an error like any other, never a crash.
    let decode = || -> Result<Vec<f32>, String> {
        let decoded = s.obj.decode_pixel_data().map_err(|e| e.to_string())?;
        decoded.to_vec().map_err(|e| e.to_string())
    };
    let values = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err("the decoder failed on damaged pixel data".into()))
        .map_err(|reason| DicomError::PixelData { file: file.clone(), syntax: ts.clone(), reason })?;
    if values.len() != nx * ny {
        return Err(DicomError::PixelData {
            file,
            syntax: ts,
            reason: format!("{} pixels, expected {nx} x {ny}", values.len()),
        });
    }
    dst.copy_from_slice(&values);
    Ok(())
}

/// Every DICOM file directly in `dir` (files without the DICOM preamble are skipped).
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, DefaultDicomObject)>, DicomError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DicomError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        // Declared lengths beyond the file's end are refused before dicom-rs would allocate them.
        if let Err(reason) = crate::dicom_lengths::check(&p) {
            return Err(DicomError::Io {
                path: p.display().to_string(),
                reason: format!("damaged or truncated DICOM file: {reason}"),
            });
        }
        match open_file(&p) {
            Ok(obj) => out.push((p, obj)),
            // A file with the DICOM preamble that does not parse is an error (truncated, damaged);
            // anything else in the folder (notes, thumbnails) is not ours to read.
            Err(e) if has_dicom_magic(&p) => {
                return Err(DicomError::Io {
                    path: p.display().to_string(),
                    reason: format!("damaged or truncated DICOM file: {e}"),
                })
            }
            Err(_) => {}
        }
    }
    if out.is_empty() {
        return Err(DicomError::NoDicom { dir: dir.display().to_string() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(segments: u32, offsets: &[u32], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..4].copy_from_slice(&segments.to_le_bytes());
        for (k, o) in offsets.iter().enumerate() {
            f[4 + 4 * k..8 + 4 * k].copy_from_slice(&o.to_le_bytes());
        }
        f
    }

    #[test]
    fn rle_headers_are_checked_before_the_decoder_trusts_them() {
        assert_eq!(check_rle_fragments(&[header(1, &[64], 80), header(2, &[64, 70], 80)]), Ok(()));
        let e = check_rle_fragments(&[header(u32::MAX, &[64], 80)]).unwrap_err();
        assert!(e.contains("4294967295 segments"), "{e}");
        assert!(check_rle_fragments(&[header(0, &[], 80)]).unwrap_err().contains("0 segments"));
        assert!(check_rle_fragments(&[vec![1, 0, 0, 0]]).unwrap_err().contains("shorter than its 64-byte header"));
        assert!(check_rle_fragments(&[header(2, &[64, 500], 80)]).unwrap_err().contains("segment 2 at offset 500"));
        assert!(check_rle_fragments(&[header(1, &[10], 80)]).unwrap_err().contains("segment 1 at offset 10"));
        assert!(check_rle_fragments(&[]).is_err());
    }

    #[test]
    fn an_rle_fragment_declaring_four_billion_segments_is_refused_not_allocated() {
        // Found by ct_inputs: dicom-rs reserved 16 GB for this 7.8 kB file's offsets.
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/ct_inputs-oom-94a8e4a1.dcm");
        let dir = std::env::temp_dir().join(format!("stylet-rle-oom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&src, dir.join("slice.dcm")).unwrap();
        let e = load_series(&dir, None).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("RLE fragment 0") && e.contains("segments"), "{e}");
    }
}
