//! What every object Stylet derives from a CT (a Segmentation, a Structured Report) writes alike:
//! element builders, and the patient and study copied from the CT, so that a PACS files the new
//! series with the images it came from.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::writer::{SeriesMeta, WriteError};

pub(crate) type Element = DataElement<InMemDicomObject>;

/// A derived object's own series and instance, and the software that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedSeries {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SOPInstanceUID.
    pub sop_instance_uid: String,
    /// SeriesDescription.
    pub description: String,
    /// SeriesNumber.
    pub series_number: u32,
    /// ContentDate and ContentTime (DICOM DA `YYYYMMDD`, TM `HHMMSS`).
    pub content_date_time: (String, String),
    /// SoftwareVersions.
    pub software_version: String,
}

pub(crate) fn text(tag: Tag, vr: VR, s: &str) -> Element {
    DataElement::new(tag, vr, PrimitiveValue::from(s))
}

pub(crate) fn empty(tag: Tag, vr: VR) -> Element {
    DataElement::new(tag, vr, PrimitiveValue::Empty)
}

pub(crate) fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> Element {
    DataElement::new(tag, VR::SQ, dicom_core::value::DataSetSequence::from(items))
}

/// Decimal strings (DS), six decimals, backslash-separated.
pub(crate) fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::from(values.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join("\\").as_str())
}

pub(crate) fn io_error(path: &Path, e: impl std::fmt::Display) -> WriteError {
    WriteError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// Writes `obj` as a DICOM file (Explicit VR Little Endian) at `path`, its folder created.
pub(crate) fn write_file(path: &Path, obj: InMemDicomObject) -> Result<(), WriteError> {
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(|e| io_error(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    file.write_to_file(path).map_err(|e| io_error(path, e))
}

/// SpecificCharacterSet, SOP class and instance, then the Patient and General Study modules as
/// the CT has them (type 2 attributes Stylet does not know left empty).
pub(crate) fn header(sop_class_uid: &str, sop_instance_uid: &str, ct: &SeriesMeta) -> [Element; 13] {
    [
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        text(tags::SOP_CLASS_UID, VR::UI, sop_class_uid),
        text(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid),
        text(tags::PATIENT_NAME, VR::PN, &ct.patient_name),
        text(tags::PATIENT_ID, VR::LO, &ct.patient_id),
        empty(tags::PATIENT_BIRTH_DATE, VR::DA),
        empty(tags::PATIENT_SEX, VR::CS),
        text(tags::STUDY_INSTANCE_UID, VR::UI, &ct.study_uid),
        empty(tags::STUDY_DATE, VR::DA),
        empty(tags::STUDY_TIME, VR::TM),
        empty(tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        empty(tags::STUDY_ID, VR::SH),
        empty(tags::ACCESSION_NUMBER, VR::SH),
    ]
}
