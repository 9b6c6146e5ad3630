//! A procedure's figures as a DICOM Comprehensive Structured Report (PS3.3 A.35.3), in the
//! planning CT's study, so a PACS files them with the images (issue 19, item 1).
//!
//! One root CONTAINER (its title a code) holding, each by CONTAINS: the planning CT's study,
//! series and frame of reference as UIDREF items (DCM 110180 Study Instance UID, DCM 112002
//! Series Instance UID, DCM 112227 Frame of Reference UID), then the report's items in order:
//! numbers with their UCUM unit (NUM), text (TEXT, e.g. each rule's verdict) and coded values
//! (CODE). No instance is referenced, so no evidence sequence is needed.

use std::path::Path;

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use crate::derived::{header, seq, text, write_file, DerivedSeries};
use crate::seg::Code;
use crate::writer::{SeriesMeta, WriteError};

/// One content item of the report.
#[derive(Clone, Debug, PartialEq)]
pub enum SrItem {
    /// A measurement: its name, value and UCUM unit (e.g. `mm`, `1`).
    Num {
        /// What was measured.
        name: Code,
        /// The value (finite; a non-finite one is written as a text saying so).
        value: f64,
        /// Its unit, a UCUM code.
        unit: Code,
    },
    /// Free text.
    Text {
        /// What it says.
        name: Code,
        /// The text.
        text: String,
    },
    /// A coded value.
    Coded {
        /// What it names.
        name: Code,
        /// The value.
        value: Code,
    },
}

/// UCUM's millimetre.
#[must_use]
pub fn millimetre() -> Code {
    Code::new("mm", "UCUM", "millimeter")
}

/// UCUM's dimensionless unit (counts).
#[must_use]
pub fn no_unit() -> Code {
    Code::new("1", "UCUM", "no units")
}

/// The SR's own identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrMeta {
    /// The SR's series and instance.
    pub series: DerivedSeries,
    /// The document's title (the root container's concept name).
    pub title: Code,
    /// Whether the procedure ran to its end (CompletionFlag COMPLETE, else PARTIAL).
    pub complete: bool,
}

fn item(value_type: &str, name: &Code) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        text(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        text(tags::VALUE_TYPE, VR::CS, value_type),
        seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![name.item()]),
    ])
}

fn uidref(name: Code, uid: &str) -> InMemDicomObject {
    let mut i = item("UIDREF", &name);
    i.put(text(tags::UID, VR::UI, uid));
    i
}

fn content(it: &SrItem) -> InMemDicomObject {
    match it {
        SrItem::Num { name, value, unit } if value.is_finite() => {
            let mut i = item("NUM", name);
            // DS holds at most 16 characters; a count is written as one.
            let v =
                if value.fract() == 0.0 && value.abs() < 1e15 { format!("{value:.0}") } else { format!("{value:.6}") };
            let v = if v.len() > 16 { format!("{value:.6e}") } else { v };
            i.put(seq(
                tags::MEASURED_VALUE_SEQUENCE,
                vec![InMemDicomObject::from_element_iter([
                    seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![unit.item()]),
                    text(tags::NUMERIC_VALUE, VR::DS, &v),
                ])],
            ));
            i
        }
        SrItem::Num { name, value, .. } => {
            let mut i = item("TEXT", name);
            i.put(text(tags::TEXT_VALUE, VR::UT, &format!("not measured ({value})")));
            i
        }
        SrItem::Text { name, text: t } => {
            let mut i = item("TEXT", name);
            i.put(text(tags::TEXT_VALUE, VR::UT, t));
            i
        }
        SrItem::Coded { name, value } => {
            let mut i = item("CODE", name);
            i.put(seq(tags::CONCEPT_CODE_SEQUENCE, vec![value.item()]));
            i
        }
    }
}

/// Writes the report `items` about the procedure on the planning CT `ct` as one Comprehensive SR
/// file at `path`.
///
/// # Errors
/// [`WriteError::Io`] when the file cannot be written.
pub fn write_sr(path: &Path, ct: &SeriesMeta, sr: &SrMeta, items: &[SrItem]) -> Result<(), WriteError> {
    let mut children = vec![
        uidref(Code::new("110180", "DCM", "Study Instance UID"), &ct.study_uid),
        uidref(Code::new("112002", "DCM", "Series Instance UID"), &ct.series_uid),
        uidref(Code::new("112227", "DCM", "Frame of Reference UID"), &ct.frame_of_reference_uid),
    ];
    children.extend(items.iter().map(content));
    let (date, time) = (&sr.series.content_date_time.0, &sr.series.content_date_time.1);
    let mut obj =
        InMemDicomObject::from_element_iter(header(uids::COMPREHENSIVE_SR_STORAGE, &sr.series.sop_instance_uid, ct));
    for e in [
        text(tags::MODALITY, VR::CS, "SR"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &sr.series.series_uid),
        text(tags::SERIES_NUMBER, VR::IS, &sr.series.series_number.to_string()),
        text(tags::SERIES_DESCRIPTION, VR::LO, &sr.series.description),
        seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, Vec::new()),
        text(tags::MANUFACTURER, VR::LO, "Stylet"),
        text(tags::SOFTWARE_VERSIONS, VR::LO, &sr.series.software_version),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        text(tags::COMPLETION_FLAG, VR::CS, if sr.complete { "COMPLETE" } else { "PARTIAL" }),
        text(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
        text(tags::CONTENT_DATE, VR::DA, date),
        text(tags::CONTENT_TIME, VR::TM, time),
        seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, Vec::new()),
        text(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![sr.title.item()]),
        text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        seq(tags::CONTENT_SEQUENCE, children),
    ] {
        obj.put(e);
    }
    write_file(path, obj)
}
