//! The procedure's results as DICOM (a SEG and an SR on the planning CT), for `stylet demo` and
//! `stylet procedure`: the writing is `stylet_procedure::results`; this file supplies the clock
//! and the software's name, and for the demo the simulated planning CT's identity (and, when
//! asked, the CT itself as a DICOM series beside the results).

use std::path::Path;

use anyhow::Context as _;
use serde_json::{json, Value};
use stylet_imaging::seg::{derived_uid, SegSource};
use stylet_imaging::{SeriesMeta, SourceInstance, Volume};
use stylet_procedure::results::{write_results, Authoring};
use stylet_procedure::Report;

/// Writes `out/results-seg.dcm` and `out/results-sr.dcm` for `report` on the planning CT
/// (`grid`, `meta`, its slices' `instances` or none); what was written, as JSON.
pub(crate) fn write(
    out: &Path,
    report: &Report,
    grid: &Volume,
    meta: &SeriesMeta,
    instances: &[SourceInstance],
    rules: &stylet_planning::Rules,
) -> anyhow::Result<Value> {
    let now = stylet_suite::ct::dicom_datetime(stylet_suite::ct::unix_now());
    let software = format!("stylet {}", env!("CARGO_PKG_VERSION"));
    let written = write_results(
        out,
        report,
        SegSource { grid, meta, instances },
        rules,
        Authoring { software: &software, now_dt: &now },
    )
    .with_context(|| format!("writing the results as DICOM in {}", out.display()))?;
    Ok(json!({
        "seg": written.seg,
        "segments": written.segments.iter().map(|(label, voxels)| json!({ "label": label, "voxels": voxels })).collect::<Vec<_>>(),
        "sr": written.sr,
        "sr_items": written.sr_items,
        "study_uid": meta.study_uid,
        "series_uid": meta.series_uid,
        "frame_of_reference_uid": meta.frame_of_reference_uid,
    }))
}

/// The demo's results on its simulated planning CT `grid`: the CT gets a study of its own (new
/// UIDs each run); with `write_ct` the CT is written as a DICOM series in `out/planning-ct`
/// (the SEG then references its slices, and a viewer loads the two together).
pub(crate) fn write_simulated(
    out: &Path,
    report: &Report,
    grid: &Volume,
    rules: &stylet_planning::Rules,
    write_ct: bool,
    title: &str,
) -> anyhow::Result<Value> {
    let now = stylet_suite::ct::dicom_datetime(stylet_suite::ct::unix_now());
    let study = derived_uid(&["stylet demo planning CT", title, &now]);
    let meta = SeriesMeta::phantom(&study, &format!("{study}.1"), "Stylet simulated planning CT");
    let instances = if write_ct {
        let dir = out.join("planning-ct");
        let _ = std::fs::remove_dir_all(&dir);
        stylet_imaging::write_series_with(grid, &dir, &meta, stylet_imaging::PixelEncoding::Uncompressed)
            .with_context(|| format!("writing the planning CT in {}", dir.display()))?;
        meta.written_instances(grid.dims[2])
    } else {
        Vec::new()
    };
    let mut v = write(out, report, grid, &meta, &instances, rules)?;
    v["planning_ct"] = if write_ct { json!(out.join("planning-ct")) } else { Value::Null };
    Ok(v)
}
