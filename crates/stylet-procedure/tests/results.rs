//! The results of a procedure that ended before planning (issue 19, item 1): no tumour, so no
//! SEG; a PARTIAL report that says why, read back by pydicom (tests/peers/read_sr.py; with CI set
//! a missing reader fails the test, elsewhere it skips). A folder that cannot be written is an
//! error naming it. The full results (SEG and SR of a completed run) are tested end to end in
//! tests/demo.rs and tests/procedure_world.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stylet_imaging::seg::SegSource;
use stylet_imaging::{SeriesMeta, Volume};
use stylet_procedure::results::{write_results, Authoring};
use stylet_procedure::{Outcome, Phase, Report};

fn failed_before_planning() -> Report {
    Report {
        outcome: Outcome::Failed { error: "registration refused: 3 markers (at least 4)".into(), needle_out: true },
        final_phase: Phase::Registration,
        ..Report::default()
    }
}

fn read_sr(path: &Path) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/read_sr.py");
    let o = Command::new("python3").arg(script).arg(path).output().unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("skipped: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn a_procedure_that_ended_before_planning_gets_a_partial_report_and_no_segmentation() {
    let dir = std::env::temp_dir().join(format!("stylet-results-early-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let grid = Volume {
        dims: [8, 8, 4],
        spacing_mm: [1.0, 1.0, 2.0],
        origin: stylet_core::frame::Point::new(0.0, 0.0, 0.0),
        direction: nalgebra::Matrix3::identity(),
        voxels: vec![0.0; 256],
    };
    let ct = SeriesMeta::phantom("1.2.826.0.1.3680043.10.1299.9.1", "1.2.826.0.1.3680043.10.1299.9.1.2", "CT");
    let by = Authoring { software: "stylet test", now_dt: "20261208010203.000000" };
    let source = SegSource { grid: &grid, meta: &ct, instances: &[] };
    let written =
        write_results(&dir, &failed_before_planning(), source, &stylet_planning::Rules::default(), by).unwrap();
    assert_eq!(written.seg, None);
    assert!(written.segments.is_empty());
    assert!(!dir.join("results-seg.dcm").exists());
    assert_eq!(written.sr, dir.join("results-sr.dcm"));
    if let Some(r) = read_sr(&written.sr) {
        assert_eq!(r["study"], ct.study_uid.as_str(), "{r}");
        assert_eq!(r["completion"], "PARTIAL", "{r}");
        let items = r["items"].as_array().unwrap();
        // The CT's three UID references, the outcome, and the CT count (none).
        assert_eq!(items.len(), 3 + written.sr_items, "{r}");
        let outcome = items.iter().find(|i| i["name"] == "Procedure outcome").unwrap();
        assert_eq!(outcome["value"], "failed: registration refused: 3 markers (at least 4); the needle out", "{r}");
        let cts = items.iter().find(|i| i["name"] == "CTs with the needle, all positions").unwrap();
        assert_eq!(cts["value"].as_f64(), Some(0.0), "{r}");
    }
    // Where nothing can be written: an error naming the place.
    let file = dir.join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let e = write_results(&file, &failed_before_planning(), source, &stylet_planning::Rules::default(), by)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not-a-folder"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
