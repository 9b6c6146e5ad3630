//! The planning inputs from files: the planning CT (a DICOM folder), the label map made on it
//! (NIfTI, NRRD or a 3D Slicer `.seg.nrrd`) and the table that says what its values mean.

use std::path::Path;

use stylet_imaging::{SeriesIdentity, SeriesReport, Volume};
use stylet_planning::LabelTable;
use stylet_procedure::ports::{Acquired, PlanningCt};

use crate::site::Site;

/// Why the planning inputs cannot be used. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum PlanningError {
    /// the planning CT {path}: {reason}
    Ct {
        /// The folder.
        path: String,
        /// Why.
        reason: String,
    },
    /// the label map {path}: {reason}
    Labels {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Whether `path` is read as NRRD (`.nrrd`, `.seg.nrrd`, `.nhdr`); anything else is NIfTI.
#[must_use]
pub fn is_nrrd(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("nrrd") || e.eq_ignore_ascii_case("nhdr"))
}

/// A label map and, for a NRRD, its segments' names and values (3D Slicer's `.seg.nrrd`).
///
/// # Errors
/// What the reader said.
pub fn load_labels(path: &Path) -> Result<(Volume, Vec<stylet_imaging::Segment>), String> {
    if is_nrrd(path) {
        let v = stylet_imaging::load_nrrd(path).map_err(|e| e.to_string())?;
        Ok((v, stylet_imaging::nrrd_segments(path).map_err(|e| e.to_string())?))
    } else {
        Ok((stylet_imaging::load_nifti(path).map_err(|e| e.to_string())?, Vec::new()))
    }
}

/// The label table for `labels`: `choice` names a table of `labels_toml`, or is `auto`: the
/// segments' own names when the file has them, else TotalSegmentator's table when the map
/// holds values above the phantom's, else the phantom's. With the name of what was chosen.
///
/// # Errors
/// The table's loader's message.
pub fn label_table(
    choice: &str,
    labels: &Volume,
    segments: &[stylet_imaging::Segment],
    labels_toml: &Path,
) -> Result<(LabelTable, String), String> {
    let load = |name: &str| LabelTable::load(labels_toml, name).map_err(|e| e.to_string());
    Ok(match choice {
        "auto" if !segments.is_empty() => {
            let named: Vec<(u32, &str)> = segments.iter().map(|s| (s.label_value, s.name.as_str())).collect();
            (LabelTable::from_segment_names("segment names", &named), "segment names".into())
        }
        "auto" if labels.voxels.iter().any(|v| *v > 12.5) => (load("totalsegmentator")?, "totalsegmentator".into()),
        "auto" => (load("phantom")?, "phantom".into()),
        other => (load(other)?, other.into()),
    })
}

/// The planning CT with its labels and tumour, its identity (what every later CT is checked
/// against) and its loader's report.
#[derive(Clone, Debug)]
pub struct Planning {
    /// What the driver plans on.
    pub inputs: PlanningCt,
    /// The planning CT's report (its identity among it).
    pub report: SeriesReport,
    /// The label table's name.
    pub table_name: String,
}

impl Planning {
    /// The planning CT's identity.
    #[must_use]
    pub fn identity(&self) -> &SeriesIdentity {
        &self.report.identity
    }
}

/// Loads the site's planning inputs (`labels.toml` from `config`). The planning CT's
/// acquisition time is `acquired_s` on the procedure clock (it was taken before the procedure
/// began: its breathing is not in the sensor's record).
///
/// # Errors
/// A [`PlanningError`] naming the file.
pub fn load(site: &Site, config: &Path, acquired_s: f64) -> Result<Planning, PlanningError> {
    let p = &site.planning;
    let ct_err = |reason: String| PlanningError::Ct { path: p.ct.display().to_string(), reason };
    let (volume, report) =
        stylet_imaging::load_series(&p.ct, p.series.as_deref()).map_err(|e| ct_err(e.to_string()))?;
    if report.identity.frame_of_reference_uid.is_empty() {
        return Err(ct_err(
            "it has no FrameOfReferenceUID (0020,0052): later CTs could not be checked to share its coordinates".into(),
        ));
    }
    let lab_err = |reason: String| PlanningError::Labels { path: p.labels.display().to_string(), reason };
    let (labels, segments) = load_labels(&p.labels).map_err(lab_err)?;
    labels.check_same_grid(&volume, 0.5).map_err(|e| lab_err(format!("not on the planning CT's grid: {e}")))?;
    let (table, table_name) =
        label_table(&p.label_table, &labels, &segments, &config.join("labels.toml")).map_err(lab_err)?;
    let source = format!("{} (series {})", p.ct.display(), report.series_uid);
    Ok(Planning {
        inputs: PlanningCt { ct: Acquired { volume, acquired_s, source }, labels, table, tumour: site.tumour() },
        report,
        table_name,
    })
}
