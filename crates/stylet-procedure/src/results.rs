//! The procedure's results as DICOM, in the planning CT's study and frame of reference (issue
//! 19, item 1), so a radiology tool shows them over the CT they came from and a PACS files them
//! with it:
//!
//! - a Segmentation (`results-seg.dcm`) with the tumour, the planned ablation zone(s) and the
//!   verified zone(s) (the device's zone placed where each ablation really was: on the axis behind
//!   the tip the last CT measured);
//! - a Comprehensive Structured Report (`results-sr.dcm`) with how the procedure ended, the
//!   registration's FRE and predicted TRE, the planned and achieved margin (MAR-1), each
//!   position's tip-to-target error (ACC-1), the CTs with the needle, and every rule's verdict on
//!   the chosen plan.
//!
//! Both come from the driver's [`Report`] alone: what the driver measured, never the world's
//! truth. A procedure that ended before planning has no tumour to draw: only the report is
//! written.

use std::path::{Path, PathBuf};

use stylet_imaging::derived::DerivedSeries;
use stylet_imaging::seg::{ablation_zone, derived_uid, write_seg, Algorithm, Code, SegSource, SegmentSpec};
use stylet_imaging::sr::{millimetre, no_unit, write_sr, SrItem, SrMeta};
use stylet_imaging::WriteError;
use stylet_planning::heat_sink::ZoneShape;

use crate::driver::{Outcome, Report};

/// What [`write_results`] wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResultsWritten {
    /// The Segmentation (`None`: the procedure ended before the tumour was known).
    pub seg: Option<PathBuf>,
    /// Its segments' labels and voxel counts.
    pub segments: Vec<(String, usize)>,
    /// The Structured Report.
    pub sr: PathBuf,
    /// Its content items (the UID references not counted).
    pub sr_items: usize,
}

/// Who writes the results, and when (DICOM DT, `YYYYMMDDHHMMSS...`).
#[derive(Clone, Copy, Debug)]
pub struct Authoring<'a> {
    /// SoftwareVersions, e.g. `stylet 0.1.0`.
    pub software: &'a str,
    /// The content date and time (the caller's clock).
    pub now_dt: &'a str,
}

/// The SEG's and the SR's series numbers (`stylet plan --dicom-seg` writes 901).
const SEG_SERIES_NUMBER: u32 = 902;
const SR_SERIES_NUMBER: u32 = 903;

fn stylet(value: &str, meaning: &str) -> Code {
    Code::new(value, "99STYLET", meaning)
}

/// Writes `dir/results-seg.dcm` and `dir/results-sr.dcm` for `report`, drawn on and referencing
/// the planning CT `ct`, with the MAR-1 and ACC-1 limits of `rules` for the achieved figures.
///
/// # Errors
/// [`WriteError`] when a file cannot be written or the CT's grid cannot carry a SEG.
pub fn write_results(
    dir: &Path,
    report: &Report,
    ct: SegSource<'_>,
    rules: &stylet_planning::Rules,
    by: Authoring<'_>,
) -> Result<ResultsWritten, WriteError> {
    let series = |what: &str, number: u32, description: &str| {
        let uid = derived_uid(&[&ct.meta.series_uid, what, by.now_dt]);
        DerivedSeries {
            sop_instance_uid: format!("{uid}.1"),
            series_uid: uid,
            description: description.into(),
            series_number: number,
            content_date_time: (by.now_dt.get(..8).unwrap_or("").into(), by.now_dt.get(8..14).unwrap_or("").into()),
            software_version: by.software.into(),
        }
    };
    let (seg, segments) = if report.tumour_voxels.is_empty() {
        (None, Vec::new())
    } else {
        let path = dir.join("results-seg.dcm");
        let masks = masks(report, ct.grid);
        let category = Code::new("49755003", "SCT", "Morphologically Altered Structure");
        let specs: Vec<SegmentSpec<'_>> = masks
            .iter()
            .map(|(label, mask)| SegmentSpec {
                label,
                category: category.clone(),
                property: if label == "Tumour" { Code::new("108369006", "SCT", "Neoplasm") } else { ablation_zone() },
                // The tumour is the planner's reading of the labels drawn with the CT.
                algorithm: if label == "Tumour" { Algorithm::Manual } else { Algorithm::Automatic },
                mask,
            })
            .collect();
        let meta =
            series("stylet procedure SEG", SEG_SERIES_NUMBER, "Stylet: tumour, planned and verified ablation zones");
        let written = write_seg(&path, ct, &meta, &specs)?;
        let counts = masks.iter().map(|(l, _)| l.clone()).zip(written.voxels).collect();
        (Some(path), counts)
    };
    let sr = dir.join("results-sr.dcm");
    let items = sr_items(report, rules);
    let meta = SrMeta {
        series: series("stylet procedure SR", SR_SERIES_NUMBER, "Stylet: procedure report"),
        title: stylet("ABLATION-REPORT", "Robot-guided percutaneous ablation report"),
        complete: matches!(report.outcome, Outcome::Done),
    };
    write_sr(&sr, ct.meta, &meta, &items)?;
    Ok(ResultsWritten { seg, segments, sr, sr_items: items.len() })
}

/// The segments: the tumour, each planned zone, each verified zone (one segment per needle
/// position when there are several, so each can be told apart).
fn masks(report: &Report, grid: &stylet_imaging::Volume) -> Vec<(String, Vec<bool>)> {
    let mut tumour = vec![false; grid.voxels.len()];
    for &i in &report.tumour_voxels {
        if let Some(t) = tumour.get_mut(i) {
            *t = true;
        }
    }
    let mut out = vec![("Tumour".to_string(), tumour)];
    let Some(chosen) = &report.plan else { return out };
    let plan = &chosen.plan;
    let n = plan.positions.len();
    let name = |what: &str, k: usize| {
        if n > 1 {
            format!("{what} ablation zone {}", k + 1)
        } else {
            format!("{what} ablation zone")
        }
    };
    let zone = |centre, axis: stylet_core::frame::Vector<stylet_core::frame::Ct>| {
        ZoneShape::ellipsoid(centre, axis.to_nalgebra(), plan.zone_long_mm, plan.zone_short_mm).mask(grid)
    };
    for (k, p) in plan.positions.iter().enumerate() {
        out.push((name("Planned", k), zone(p.zone_centre, p.axis)));
    }
    for (k, p) in report.positions.iter().enumerate() {
        if let Some(c) = p.ablated_zone_centre {
            out.push((name("Verified", k), zone(c, p.axis)));
        }
    }
    out
}

/// The report's content items, in reading order.
fn sr_items(report: &Report, rules: &stylet_planning::Rules) -> Vec<SrItem> {
    let mm = |name: Code, value: f64| SrItem::Num { name, value, unit: millimetre() };
    let count = |name: Code, value: usize| SrItem::Num { name, value: value as f64, unit: no_unit() };
    let text = |name: Code, text: String| SrItem::Text { name, text };
    let mut items = vec![text(stylet("OUTCOME", "Procedure outcome"), outcome(&report.outcome))];
    match &report.registration {
        Some(r) => {
            items.push(count(stylet("REG-MARKERS", "Registration markers"), r.markers));
            items.push(mm(stylet("FRE", "Fiducial registration error (RMS)"), r.fre_rms_mm));
            if let Some(tre) = r.predicted_tre_mm {
                items.push(mm(stylet("TRE-PREDICTED", "Predicted target registration error at the tumour"), tre));
            }
        }
        None if report.plan.is_some() => items.push(text(
            stylet("REG-SOURCE", "Registration source"),
            "the operator's side (3D Slicer's calibration): no fiducial residual".into(),
        )),
        None => {}
    }
    if let Some(chosen) = &report.plan {
        let plan = &chosen.plan;
        items.push(count(stylet("POSITIONS", "Needle positions planned"), plan.positions.len()));
        items.push(mm(stylet("MARGIN-PLANNED", "Planned minimal ablative margin (MAR-1)"), plan.margin_mm));
        if plan.high_risk {
            items.push(text(
                stylet("OVERRIDE", "Operator override"),
                "a high-risk plan (OAR-2) executed on the operator's explicit override".into(),
            ));
        }
        for c in &plan.checks {
            let verdict = format!("{:?}: {}", c.status, c.detail);
            items.push(text(stylet(&format!("RULE-{}", c.rule), &format!("Plan rule {}", c.rule)), verdict));
        }
    }
    for (k, p) in report.positions.iter().enumerate() {
        let at = |what: &str| format!("{what}, position {}", k + 1);
        if let Some(tip) = p.measured_tip {
            let error = (tip - p.planned_tip).norm_mm();
            items.push(mm(stylet("TIP-ERROR", &at("Tip-to-target error (ACC-1)")), error));
            let verdict = if error <= rules.acc1_max_tip_error_mm { "Pass" } else { "Fail" };
            items.push(text(
                stylet("RULE-ACC-1", &at("Rule ACC-1")),
                format!(
                    "{verdict}: tip {error:.2} mm from the planned tip (limit {:.1} mm)",
                    rules.acc1_max_tip_error_mm
                ),
            ));
        }
        items.push(count(stylet("CTS-WITH-NEEDLE", &at("CTs with the needle")), p.cts_with_needle));
        items.push(count(stylet("REINSERTIONS", &at("Re-insertions")), p.reinsertions));
    }
    // The last position ablated has the margin with every zone placed so far.
    if let Some(margin) = report.positions.iter().rev().find_map(|p| p.verified_margin_mm) {
        items.push(mm(stylet("MARGIN-ACHIEVED", "Achieved minimal ablative margin (MAR-1), measured tip"), margin));
        let verdict = if margin >= rules.mar1_fail_mm { "Pass" } else { "Fail" };
        items.push(text(
            stylet("RULE-MAR-1", "Rule MAR-1, achieved"),
            format!("{verdict}: {margin:.1} mm with the measured tips (at least {:.1} mm)", rules.mar1_fail_mm),
        ));
    }
    items.push(count(
        stylet("CTS-TOTAL", "CTs with the needle, all positions"),
        report.positions.iter().map(|p| p.cts_with_needle).sum(),
    ));
    items
}

fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Done => "done: every position ablated, the needle out, the arm home, drives off".into(),
        Outcome::Stopped { state, fault, inserted_mm } => format!(
            "stopped by the supervisor ({state}, {}); the needle held at {inserted_mm:.1} mm",
            fault.as_deref().unwrap_or("e-stop")
        ),
        Outcome::Aborted { phase, retracted } => format!(
            "aborted by the operator in {phase:?}; the needle {}",
            if *retracted { "withdrawn" } else { "held where it stopped" }
        ),
        Outcome::Failed { error, needle_out } => {
            format!("failed: {error}; the needle {}", if *needle_out { "out" } else { "held" })
        }
    }
}
