//! Masks on a CT's grid written as a DICOM Segmentation (SEG, PS3.3 A.51): binary, one frame per
//! segment and slice that holds any of it, in the CT's study and frame of reference, so radiology
//! tools (3D Slicer, OHIF, highdicom) show Stylet's results (the tumour, the planned and verified
//! ablation zones) over the CT they came from (issue 19, item 1).
//!
//! The SEG is a new series of the CT's study (StudyInstanceUID, FrameOfReferenceUID and the
//! patient copied from the CT's [`SeriesMeta`]); its frames lie on the CT's slices
//! (ImagePositionPatient per frame, the CT's orientation and pixel spacing shared), ordered by
//! segment and then by slice position, with the two dimension indices a reader needs
//! (ReferencedSegmentNumber, ImagePositionPatient). Pixels are one bit each, packed
//! least-significant bit first, the frames one continuous bit stream (PS3.5 8.1.1).

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use crate::derived::{ds, empty, header, io_error, seq, text, write_file, DerivedSeries};
use crate::dicom::SourceInstance;
use crate::volume::Volume;
use crate::writer::{SeriesMeta, WriteError};

/// A coded concept (PS3.3 8.8): the code, its scheme and what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    /// CodeValue, e.g. `108369006`.
    pub value: String,
    /// CodingSchemeDesignator, e.g. `SCT` (SNOMED CT) or `DCM`.
    pub scheme: String,
    /// CodeMeaning, e.g. `Neoplasm`.
    pub meaning: String,
}

impl Code {
    /// A code.
    #[must_use]
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Code { value: value.into(), scheme: scheme.into(), meaning: meaning.into() }
    }

    pub(crate) fn item(&self) -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            text(tags::CODE_VALUE, VR::SH, &self.value),
            text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &self.scheme),
            text(tags::CODE_MEANING, VR::LO, &self.meaning),
        ])
    }
}

/// The ablation zone's property code. No standard code names an ablation zone yet, so it is in
/// Stylet's private coding scheme (PS3.16 8.2: designators beginning `99`).
#[must_use]
pub fn ablation_zone() -> Code {
    Code::new("ABLATION-ZONE", "99STYLET", "Ablation zone")
}

/// A new UID under the UUID-derived root `2.25` (PS3.5 B.2), from a 128-bit hash of `parts`
/// (give it something unique: the source's UID and the time).
#[must_use]
pub fn derived_uid(parts: &[&str]) -> String {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        std::process::id().hash(&mut h);
        h.finish()
    };
    let v = (u128::from(half(1)) << 64) | u128::from(half(2));
    format!("2.25.{v}")
}

/// How a segment was made (SegmentAlgorithmType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Computed by Stylet (a plan's zone, a detection).
    Automatic,
    /// Drawn by a person (labels that came with the CT).
    Manual,
}

/// One segment: what it is and its mask on the CT's grid.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentSpec<'a> {
    /// SegmentLabel, e.g. `Tumour`.
    pub label: &'a str,
    /// SegmentedPropertyCategoryCodeSequence, e.g. SCT 49755003 Morphologically Altered Structure.
    pub category: Code,
    /// SegmentedPropertyTypeCodeSequence, e.g. SCT 108369006 Neoplasm.
    pub property: Code,
    /// SegmentAlgorithmType.
    pub algorithm: Algorithm,
    /// The voxels inside, in the CT's voxel order (`i` fastest, then `j`, then `k`).
    pub mask: &'a [bool],
}

/// What [`write_seg`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SegWritten {
    /// Frames (segment x slice holding any of it).
    pub frames: usize,
    /// Voxels inside, per segment.
    pub voxels: Vec<usize>,
}

/// The CT a SEG is drawn on: its grid, its identity, and its slices' instances (one per slice
/// `k`, as [`crate::SeriesReport::instances`] has them; empty for a CT that exists only in
/// memory, and then no instance is referenced).
#[derive(Clone, Copy, Debug)]
pub struct SegSource<'a> {
    /// The grid (geometry only; the voxels are not read).
    pub grid: &'a Volume,
    /// Study, series, frame of reference and patient.
    pub meta: &'a SeriesMeta,
    /// The slices' SOP instances, in slice order, or none.
    pub instances: &'a [SourceInstance],
}

fn reference(i: &SourceInstance) -> [DataElement<InMemDicomObject>; 2] {
    [
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &i.sop_class_uid),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &i.sop_instance_uid),
    ]
}

/// Writes `segments` (masks on the grid of `source`) as one SEG file at `path`. Empty segments
/// are kept in the segment list and have no frames.
///
/// # Errors
/// [`WriteError::Io`] when a mask's length is not the grid's, the instances are not one per
/// slice, or the file cannot be written; [`WriteError::Sheared`] for a tilted grid.
pub fn write_seg(
    path: &Path,
    source: SegSource<'_>,
    seg: &DerivedSeries,
    segments: &[SegmentSpec<'_>],
) -> Result<SegWritten, WriteError> {
    let (grid, ct) = (source.grid, source.meta);
    if grid.tilt_deg() > 1e-6 {
        return Err(WriteError::Sheared { tilt_deg: grid.tilt_deg() });
    }
    let [nx, ny, nz] = grid.dims;
    let per_slice = nx * ny;
    if nx > usize::from(u16::MAX) || ny > usize::from(u16::MAX) {
        return Err(io_error(path, format!("a {nx} x {ny} grid does not fit DICOM's Rows and Columns")));
    }
    if !source.instances.is_empty() && source.instances.len() != nz {
        return Err(io_error(path, format!("{} source instances for {nz} slices", source.instances.len())));
    }
    for s in segments {
        if s.mask.len() != per_slice * nz {
            return Err(io_error(
                path,
                format!("segment {:?}: {} mask voxels for a {nx} x {ny} x {nz} grid", s.label, s.mask.len()),
            ));
        }
    }
    let iop = grid.image_orientation();
    // Frames: segment by segment, slices in order along the slice step.
    let mut frames: Vec<(usize, usize)> = Vec::new();
    let mut voxels = Vec::with_capacity(segments.len());
    for (n, s) in segments.iter().enumerate() {
        voxels.push(s.mask.iter().filter(|m| **m).count());
        for k in 0..nz {
            if s.mask[k * per_slice..(k + 1) * per_slice].iter().any(|m| *m) {
                frames.push((n, k));
            }
        }
    }
    // One continuous bit stream, least-significant bit first.
    let bits = frames.len() * per_slice;
    let mut pixels = vec![0u8; bits.div_ceil(8) + bits.div_ceil(8) % 2];
    let mut bit = 0usize;
    for &(n, k) in &frames {
        for &m in &segments[n].mask[k * per_slice..(k + 1) * per_slice] {
            if m {
                pixels[bit / 8] |= 1 << (bit % 8);
            }
            bit += 1;
        }
    }
    let segment_items: Vec<InMemDicomObject> = segments
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let mut item = InMemDicomObject::from_element_iter([
                DataElement::new(tags::SEGMENT_NUMBER, VR::US, PrimitiveValue::from([(n + 1) as u16])),
                text(tags::SEGMENT_LABEL, VR::LO, s.label),
                text(
                    tags::SEGMENT_ALGORITHM_TYPE,
                    VR::CS,
                    match s.algorithm {
                        Algorithm::Automatic => "AUTOMATIC",
                        Algorithm::Manual => "MANUAL",
                    },
                ),
                seq(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, vec![s.category.item()]),
                seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![s.property.item()]),
            ]);
            if s.algorithm == Algorithm::Automatic {
                item.put(text(tags::SEGMENT_ALGORITHM_NAME, VR::LO, "Stylet"));
            }
            item
        })
        .collect();
    let per_frame: Vec<InMemDicomObject> = frames
        .iter()
        .map(|&(n, k)| {
            let position = grid.ct_from_index(0.0, 0.0, k as f64).to_array();
            let mut item = InMemDicomObject::from_element_iter([
                seq(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([DataElement::new(
                        tags::DIMENSION_INDEX_VALUES,
                        VR::UL,
                        PrimitiveValue::from([(n + 1) as u32, (k + 1) as u32]),
                    )])],
                ),
                seq(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([DataElement::new(
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        ds(&position),
                    )])],
                ),
                seq(
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([DataElement::new(
                        tags::REFERENCED_SEGMENT_NUMBER,
                        VR::US,
                        PrimitiveValue::from([(n + 1) as u16]),
                    )])],
                ),
            ]);
            // The CT slice this frame was segmented on (Derivation Image functional group).
            if let Some(src) = source.instances.get(k) {
                let mut image = InMemDicomObject::from_element_iter(reference(src));
                image.put(seq(
                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                    vec![Code::new("121322", "DCM", "Source image for image processing operation").item()],
                ));
                item.put(seq(
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        seq(tags::DERIVATION_CODE_SEQUENCE, vec![Code::new("113076", "DCM", "Segmentation").item()]),
                        seq(tags::SOURCE_IMAGE_SEQUENCE, vec![image]),
                    ])],
                ));
            }
            item
        })
        .collect();
    let shared = InMemDicomObject::from_element_iter([
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                DataElement::new(tags::PIXEL_SPACING, VR::DS, ds(&[grid.spacing_mm[1], grid.spacing_mm[0]])),
                DataElement::new(tags::SLICE_THICKNESS, VR::DS, ds(&[grid.spacing_mm[2]])),
                DataElement::new(tags::SPACING_BETWEEN_SLICES, VR::DS, ds(&[grid.spacing_mm[2]])),
            ])],
        ),
        seq(
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([DataElement::new(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                ds(&iop),
            )])],
        ),
    ]);
    let dimension_uid = format!("{}.1", seg.sop_instance_uid);
    let dimension = |pointer: dicom_core::Tag, group: dicom_core::Tag, label: &str| {
        InMemDicomObject::from_element_iter([
            text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid),
            DataElement::new(tags::DIMENSION_INDEX_POINTER, VR::AT, PrimitiveValue::Tags(vec![pointer].into())),
            DataElement::new(tags::FUNCTIONAL_GROUP_POINTER, VR::AT, PrimitiveValue::Tags(vec![group].into())),
            text(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    let (date, time) = (&seg.content_date_time.0, &seg.content_date_time.1);
    let mut obj = InMemDicomObject::from_element_iter(header(uids::SEGMENTATION_STORAGE, &seg.sop_instance_uid, ct));
    obj.put(text(tags::MODALITY, VR::CS, "SEG"));
    for e in [
        // The SEG's own series.
        text(tags::SERIES_INSTANCE_UID, VR::UI, &seg.series_uid),
        text(tags::SERIES_NUMBER, VR::IS, &seg.series_number.to_string()),
        text(tags::SERIES_DESCRIPTION, VR::LO, &seg.description),
        text(tags::FRAME_OF_REFERENCE_UID, VR::UI, &ct.frame_of_reference_uid),
        empty(tags::POSITION_REFERENCE_INDICATOR, VR::LO),
        text(tags::MANUFACTURER, VR::LO, "Stylet"),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, "stylet"),
        text(tags::DEVICE_SERIAL_NUMBER, VR::LO, "none"),
        text(tags::SOFTWARE_VERSIONS, VR::LO, &seg.software_version),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        text(tags::CONTENT_DATE, VR::DA, date),
        text(tags::CONTENT_TIME, VR::TM, time),
        text(tags::CONTENT_LABEL, VR::CS, "STYLET"),
        text(tags::CONTENT_DESCRIPTION, VR::LO, &seg.description),
        empty(tags::CONTENT_CREATOR_NAME, VR::PN),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY"),
        text(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        seq(tags::SEGMENT_SEQUENCE, segment_items),
        seq(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid)])],
        ),
        seq(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dimension(tags::REFERENCED_SEGMENT_NUMBER, tags::SEGMENT_IDENTIFICATION_SEQUENCE, "Segment"),
                dimension(tags::IMAGE_POSITION_PATIENT, tags::PLANE_POSITION_SEQUENCE, "Position"),
            ],
        ),
        seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.len().to_string()),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from([1u16])),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from([ny as u16])),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from([nx as u16])),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from([1u16])),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from([1u16])),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from([0u16])),
        DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from([0u16])),
        text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels)),
    ] {
        obj.put(e);
    }
    // The CT series and its slices (Common Instance Reference), when they exist as files.
    if !source.instances.is_empty() {
        let slices = source.instances.iter().map(|i| InMemDicomObject::from_element_iter(reference(i))).collect();
        obj.put(seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                text(tags::SERIES_INSTANCE_UID, VR::UI, &ct.series_uid),
                seq(tags::REFERENCED_INSTANCE_SEQUENCE, slices),
            ])],
        ));
    }
    write_file(path, obj)?;
    Ok(SegWritten { frames: frames.len(), voxels })
}
