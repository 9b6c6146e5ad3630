//! `stylet demo` end to end on every scenario in config/scenarios/ with its fixed seed, in
//! virtual time (the default: the simulated controller in lockstep with the supervisor, seconds
//! per run, the same procedure log for the same seed): nominal scenarios reach ACC-1 and
//! complete; fault scenarios end in their documented safe state (or recover, as the scenario
//! says); the operator's abort, pause and refusal to retract end where the driver promises; the
//! wire monitor counts no violation; the procedure log of every run replays; the easy run's
//! rerun recording reads back with its entities and values.
//!
//! Two runs keep the wall clock (`--realtime`: the supervisor's real-time thread against the
//! simulated controller on a real pty): they take turns with every other wall-clock test and run
//! with generous deadlines (tests/common).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");
fn root() -> PathBuf {
    common::repo()
}

fn scenario_file(scenario: &str) -> PathBuf {
    if scenario.ends_with(".toml") {
        PathBuf::from(scenario)
    } else {
        root().join("config/scenarios").join(format!("{scenario}.toml"))
    }
}

/// Runs the demo on a scenario (virtual time unless `realtime`); its JSON summary and output
/// folder.
fn run_demo(scenario: &str, realtime: bool, tag: &str) -> (Value, PathBuf) {
    run_demo_with(scenario, realtime, tag, &[])
}

/// [`run_demo`] with more options.
fn run_demo_with(scenario: &str, realtime: bool, tag: &str, extra: &[&str]) -> (Value, PathBuf) {
    let name = Path::new(scenario).file_stem().unwrap().to_string_lossy().to_string();
    let out = std::env::temp_dir().join(format!("stylet-demo-test-{}-{name}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(STYLET);
    cmd.args(["demo", "--json", "--out"]).arg(&out).arg("--scenario").arg(scenario_file(scenario)).args(extra);
    let (_turn, config) = if realtime {
        cmd.arg("--realtime");
        (Some(common::wall_clock_turn()), Some(common::generous_config(&name)))
    } else {
        (None, None)
    };
    cmd.arg("--config").arg(config.clone().unwrap_or_else(|| root().join("config")));
    let o = cmd.output().unwrap();
    if let Some(c) = config {
        let _ = std::fs::remove_dir_all(c);
    }
    assert!(
        o.status.success(),
        "{scenario}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["wire_monitor_violations"], 0, "{v}");
    assert_eq!(v["outcome"], v["expected_outcome"], "{v}");
    // The procedure log replays, whole.
    let r = Command::new(STYLET).args(["replay", "--json"]).arg(out.join("procedure.log")).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let replay: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(replay["cut"].is_null(), "{replay}");
    // The control loop's timing, summed up at the end of the log, as the run's summary has it.
    let timing = &replay["cycle_timing"];
    assert_eq!(timing["cycles"].as_f64().unwrap(), v["cycle_timing"]["cycles"].as_f64().unwrap(), "{replay}");
    assert!(timing["max_us"].as_f64().unwrap() >= timing["p50_us"].as_f64().unwrap(), "{replay}");
    // What the host granted the control loop, reported.
    assert!(v["realtime"]["runner"]["policy"].is_string(), "{v}");
    assert!(replay["kinds"]["state"].as_u64().unwrap() >= 5, "{replay}");
    (v, out)
}

fn demo(scenario: &str) -> (Value, PathBuf) {
    run_demo(scenario, false, "virtual")
}

fn nominal(scenario: &str) -> (Value, PathBuf) {
    let (v, out) = demo(scenario);
    assert_eq!(v["outcome"], "done", "{v}");
    assert_eq!(v["final_phase"], "Done", "{v}");
    // ACC-1 (2.7 mm) on the true tip, MAR-1 (5 mm) on the achieved zone.
    assert!(v["tip_error_mm"].as_f64().unwrap() <= 2.7, "{v}");
    assert!(v["achieved_margin_mm"].as_f64().unwrap() >= 5.0, "{v}");
    assert!(v["faults"].is_null(), "{v}");
    assert_eq!(v["telemetry_dropped"], 0, "{v}");
    (v, out)
}

fn safe_stop(scenario: &str) -> Value {
    let (v, out) = demo(scenario);
    assert_eq!(v["outcome"], "safe-stop", "{v}");
    let s = &v["safe_state"];
    assert_eq!(s["controller_drives_off"], true, "{v}");
    assert!(s["fault"].is_string(), "{v}");
    assert_eq!(s["supervisor_state"], "fault", "{v}");
    assert!(s["inserted_mm"].as_f64().unwrap() >= 19.0, "{v}");
    let _ = std::fs::remove_dir_all(out);
    v
}

/// The rerun recording read back by rerun's own reader (tests/peers/read_rrd.py).
fn read_rrd(path: &Path) -> Option<Value> {
    common::python_peer("read_rrd.py", &[path.as_os_str()])
}

#[test]
fn easy() {
    let (v, out) = nominal("easy");
    assert!(v["checkpoint_cts"].as_u64().unwrap() <= 3, "{v}");
    let Some(r) = read_rrd(Path::new(v["telemetry"].as_str().unwrap())) else { return };
    let e = &r["entities"];
    for path in [
        "/world/target",
        "/world/plan",
        "/world/zone/planned",
        "/world/zone/achieved",
        "/world/structures/tumour",
        "/world/structures/vessels",
        "/world/robot/links",
        "/world/robot/needle",
        "/ct/axial",
        "/respiration/signal_mm",
        "/respiration/gate_open",
        "/respiration/predicted_mm",
        "/state/supervisor",
        "/state/workflow",
        "/events",
        "/world/checkpoint_tip",
        "/timing/worst_lateness_us",
        "/timing/stalls",
        "/timing/late_cycles",
    ] {
        assert!(e[path].is_object(), "{path} missing: {:?}", e.as_object().map(|m| m.keys().collect::<Vec<_>>()));
    }
    // The workflow's phases in order, ending Done.
    let phases: Vec<&str> =
        e["/state/workflow"]["TextLog:text"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"PlanningCt"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"Done"), "{phases:?}");
    assert!(phases.contains(&"AtTarget"), "{phases:?}");
    // The insertion joint's measured depth reached the plan's (the last joint, mm).
    let depth = e["/joints/6/measured"]["Scalars:scalars"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .fold(0.0, f64::max);
    assert!(depth > 50.0, "deepest insertion {depth} mm");
    // The gate is a 0/1 series that was open some of the time.
    let gate: Vec<f64> =
        e["/respiration/gate_open"]["Scalars:scalars"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    assert!(gate.iter().all(|g| *g == 0.0 || *g == 1.0) && gate.contains(&1.0) && gate.contains(&0.0));
    // The target point is the phantom's tumour (within the CT).
    let target = &e["/world/target"]["Points3D:positions"][0][0];
    assert!(target.as_array().unwrap().len() == 3, "{target}");
    // The procedure log replays into rerun: workflow transitions, supervisor states, moves.
    let rrd = out.join("replay.rrd");
    let o = Command::new(STYLET)
        .args(["replay", "--json", "--rrd"])
        .arg(&rrd)
        .arg(out.join("procedure.log"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let replay: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(replay["rerun"]["logged"].as_u64().unwrap() > 20, "{replay}");
    assert!(replay["kinds"]["command"].as_u64().unwrap() >= 4, "{replay}");
    let Some(r) = read_rrd(&rrd) else { return };
    let wf: Vec<&str> = r["entities"]["/log/state/workflow"]["TextLog:text"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(wf.last().unwrap().starts_with("Retraction -> Done"), "{wf:?}");
    assert!(r["entities"]["/log/state/supervisor"].is_object(), "{r}");
    assert!(r["entities"]["/commands/move/6"].is_object(), "{r}");
    let _ = std::fs::remove_dir_all(out);
}

/// An MCAP file read back by the `mcap` package (PyPI; tests/peers/read_mcap.py).
fn read_mcap(path: &Path) -> Option<Value> {
    common::python_peer("read_mcap.py", &[path.as_os_str()])
}

/// The procedure log as MCAP (issue 19, item 5), read by the `mcap` package: every record once,
/// on its kind's topic with its JSON Schema, at its procedure time, the workflow's transitions as
/// the log has them.
#[test]
fn near_vessel() {
    let (_, out) = nominal("near-vessel");
    let (log, mcap) = (out.join("procedure.log"), out.join("procedure.mcap"));
    let o =
        Command::new(STYLET).args(["replay", "--json", "--records", "--mcap"]).arg(&mcap).arg(&log).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let replay: Value = serde_json::from_slice(&o.stdout).unwrap();
    let records = replay["record_list"].as_array().unwrap();
    assert_eq!(replay["mcap"]["messages"].as_u64().unwrap(), records.len() as u64, "{}", replay["mcap"]);
    let Some(m) = read_mcap(&mcap) else { return };
    assert_eq!(m["message_count"].as_u64().unwrap(), records.len() as u64, "{}", m["message_count"]);
    let meta = &m["metadata"]["stylet_procedure_log"];
    assert_eq!(meta["format"], "stylet procedure log", "{meta}");
    assert_eq!(meta["records"], records.len().to_string(), "{meta}");
    let started_ms = replay["header"]["started_unix_ms"].as_u64().unwrap();
    let topics = m["topics"].as_object().unwrap();
    for (topic, t) in topics {
        assert_eq!(t["message_encoding"], "json", "{topic}");
        assert_eq!(t["schema_encoding"], "jsonschema", "{topic}");
        for msg in t["messages"].as_array().unwrap() {
            let d = &msg["data"];
            let rec = &records[usize::try_from(d["seq"].as_u64().unwrap()).unwrap()];
            assert_eq!(d, rec, "{topic}: the message is the log's record");
            let want = started_ms * 1_000_000 + (rec["t_s"].as_f64().unwrap() * 1e9).round() as u64;
            assert_eq!(msg["log_time"].as_u64().unwrap(), want, "{topic}: {d}");
            for field in t["schema_data"]["required"].as_array().unwrap() {
                assert!(!d[field.as_str().unwrap()].is_null(), "{topic}: {field} missing in {d}");
            }
        }
    }
    let workflow = |transitions: Vec<&Value>| -> Vec<String> {
        transitions
            .iter()
            .filter(|r| r["machine"] == "workflow")
            .map(|r| format!("{} -> {}", r["from"], r["to"]))
            .collect()
    };
    let in_log = workflow(records.iter().filter(|r| r["kind"] == "state").collect());
    let in_mcap =
        workflow(topics["/procedure/state"]["messages"].as_array().unwrap().iter().map(|m| &m["data"]).collect());
    assert_eq!(in_mcap, in_log);
    assert!(in_log.last().unwrap().ends_with("\"Done\""), "{in_log:?}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn dome() {
    let (_, out) = nominal("dome");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn irregular_breathing() {
    let (_, out) = nominal("irregular-breathing");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn fault_link_loss() {
    let v = safe_stop("fault-link-loss");
    assert!(v["scenario_events"][0].as_str().unwrap().contains("Disconnect"), "{v}");
}

#[test]
fn fault_controller_reset() {
    let v = safe_stop("fault-controller-reset");
    assert!(v["scenario_events"][0].as_str().unwrap().contains("Reset"), "{v}");
}

#[test]
fn fault_pedal_release() {
    let (v, out) = nominal("fault-pedal-release");
    assert_eq!(v["scenario_events"].as_array().unwrap().len(), 2, "{v}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn fault_stale_respiration() {
    let (v, out) = nominal("fault-stale-respiration");
    assert!(v["scenario_events"][0].as_str().unwrap().contains("silent"), "{v}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn harder_world() {
    let (v, out) = nominal("harder-world");
    let e = &v["error_sources_at_the_tip"];
    assert!(e["tissue_push_mm"].as_f64().unwrap() > 0.0, "{v}");
    assert!(e["patient_shift_mm"].as_f64().unwrap() > 0.0, "{v}");
    // Each CT with the needle showed the liver where breathing had carried it; the driver
    // measured how far on the liver itself, within 0.5 mm of the truth.
    let measured: Vec<&Value> = v["driver"]["positions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["liver_at_cts_mm"].as_array().unwrap())
        .collect();
    let truth = v["truth"]["liver_at_cts_mm"].as_array().unwrap();
    assert_eq!(measured.len(), truth.len(), "{v}");
    assert!(truth.len() >= 2, "{v}");
    for (m, t) in measured.iter().zip(truth) {
        let d: f64 = (0..3).map(|i| (m[i].as_f64().unwrap() - t[i].as_f64().unwrap()).powi(2)).sum::<f64>().sqrt();
        assert!(d < 0.5, "liver measured {m}, truly {t}");
    }
    let _ = std::fs::remove_dir_all(out);
}

/// Irregular breathing in the harder world, on a seed whose final approach once waited out the
/// step's time limit: the approach waited for the gate's longer-run prediction error (which an
/// irregular breather's deep breaths keep high) to fall, not only the recent one (session 20).
#[test]
fn irregular_breathing_in_the_harder_world_reaches_the_target() {
    let out = std::env::temp_dir().join(format!("stylet-demo-test-{}-irregular-harder", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(STYLET)
        .args(["demo", "--json", "--seed", "3004", "--out"])
        .arg(&out)
        .arg("--scenario")
        .arg(scenario_file("irregular-breathing"))
        .arg("--errors-from")
        .arg(scenario_file("harder-world"))
        .arg("--config")
        .arg(root().join("config"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"], "done", "{v}");
    assert_eq!(v["wire_monitor_violations"], 0, "{v}");
    assert!(v["tip_error_mm"].as_f64().unwrap() <= 2.7, "{v}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn recorded_breathing() {
    let (_, out) = nominal("recorded-breathing");
    let _ = std::fs::remove_dir_all(out);
}

/// The surrogate read by a belt in ADC counts, uncalibrated, at 1000 Hz and at 25 Hz: the driver
/// resamples it to the gate's rate and scales it from the breathing amplitude it saw before the
/// planning CT; the procedure completes as with a sensor in mm (and as accurately: over 12 seeds
/// each, mean true tip error 1.02 mm at 1000 Hz, 1.05 mm at 25 Hz, 0.99 mm for the easy patient
/// read in mm). Not `nominal`: the true zone's margin of this seed's run is 4.97 mm (the
/// accuracy study's business, docs/PERFORMANCE.md), the driver's measured one above MAR-1.
#[test]
fn a_belt_in_adc_counts_at_1000_and_at_25_hz() {
    for scenario in ["belt-1000hz-counts", "belt-25hz-counts"] {
        let (v, out) = demo(scenario);
        assert_eq!(v["outcome"], "done", "{v}");
        assert_eq!(v["final_phase"], "Done", "{v}");
        assert!(v["tip_error_mm"].as_f64().unwrap() <= 2.7, "{v}");
        assert!(v["faults"].is_null(), "{v}");
        assert!(v["gate_open_fraction_during_insertion"].as_f64().unwrap() > 0.2, "{v}");
        let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
        let note = log.lines().find(|l| l.contains("the counts sensor is uncalibrated")).expect("the scale noted");
        // 40 counts per surrogate mm: the amplitude (its 5th-95th percentile range) of 10 mm
        // breaths is most of 400 counts, so a mm-equivalent is about a fortieth of a count.
        let per: f64 = note.split("counts: ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
        assert!((0.024..0.028).contains(&per), "{note}");
        let _ = std::fs::remove_dir_all(out);
    }
}

#[test]
fn two_tumours_every_position() {
    // Not `nominal`: the planner measures a plan of overlapping zones on ~400 sampled surface
    // points, and the true tumour is covered with less than MAR-1 (docs/planning.md, known
    // issue). The driver's part holds: every position reached ACC-1 and was verified.
    let (v, out) = demo("two-tumours");
    assert_eq!(v["outcome"], "done", "{v}");
    assert_eq!(v["final_phase"], "Done", "{v}");
    for p in v["truth"]["positions"].as_array().unwrap() {
        assert!(p["tip_error_mm"].as_f64().unwrap() <= 2.7, "{v}");
    }
    let n = v["positions"].as_u64().unwrap();
    assert!(n >= 2, "overlapping ablations, MAR-3: {v}");
    let done = v["driver"]["positions"].as_array().unwrap();
    assert_eq!(done.len() as u64, n, "{v}");
    assert!(
        done.iter().all(|p| p["verified_margin_mm"].as_f64().is_some_and(|m| m >= 5.0)),
        "every position ablated and verified: {v}"
    );
    let _ = std::fs::remove_dir_all(out);
}

/// A point `[x, y, z]` of the JSON.
fn point(p: &Value) -> [f64; 3] {
    let a = p.as_array().unwrap_or_else(|| panic!("not a point: {p}"));
    [0, 1, 2].map(|i| a[i].as_f64().unwrap())
}

fn distance_mm(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// The results as DICOM on the planning CT (issue 19, item 1), on a plan of three overlapping
/// zones: the SEG read back by highdicom (by the planning CT's slices) and pydicom (by frame
/// position) has the tumour, each planned and each verified zone where the driver placed them;
/// the SR read back by pydicom has the driver's figures; dciodvfy finds no error in either and
/// DCMTK's dsrdump parses the SR.
#[test]
fn the_results_come_as_dicom_on_the_planning_ct() {
    let (v, out) = run_demo_with("two-tumours", false, "dicom", &["--write-planning-ct"]);
    assert_eq!(v["outcome"], "done", "{v}");
    let (d, driver) = (&v["dicom"], &v["driver"]);
    let chosen = &driver["plan"]["plan"];
    let n = chosen["positions"].as_array().unwrap().len();
    assert!(n >= 2, "{v}");
    let mut want = vec!["Tumour".to_string()];
    want.extend((1..=n).map(|k| format!("Planned ablation zone {k}")));
    want.extend((1..=n).map(|k| format!("Verified ablation zone {k}")));
    let written: Vec<&str> = d["segments"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(written, want, "{d}");
    let (seg, sr) = (Path::new(d["seg"].as_str().unwrap()), Path::new(d["sr"].as_str().unwrap()));
    let (_, ct) = stylet_imaging::load_series(&out.join("planning-ct"), None).unwrap();
    assert_eq!(ct.identity.study_uid, d["study_uid"].as_str().unwrap());
    let uids: Vec<std::ffi::OsString> = ct.instances.iter().map(|i| i.sop_instance_uid.clone().into()).collect();
    let mut args = vec![seg.as_os_str()];
    args.extend(uids.iter().map(std::ffi::OsString::as_os_str));
    if let Some(r) = common::python_peer("read_seg.py", &args) {
        assert_eq!(r["study"], d["study_uid"], "{r}");
        assert_eq!(r["frame_of_reference"], d["frame_of_reference_uid"], "{r}");
        assert_eq!(r["source_instances"].as_u64().unwrap(), uids.len() as u64, "{r}");
        let read: Vec<&str> = r["segments"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
        assert_eq!(read, want);
        for (k, s) in d["segments"].as_array().unwrap().iter().enumerate() {
            let number = (k + 1).to_string();
            let voxels = s["voxels"].as_u64().unwrap();
            assert!(voxels > 0, "{s}");
            let by_slice: u64 =
                r["by_instance"][&number].as_object().unwrap().values().map(|c| c[0].as_u64().unwrap()).sum();
            let by_frame: u64 =
                r["by_position"][&number].as_array().unwrap().iter().map(|f| f["on"][0].as_u64().unwrap()).sum();
            assert_eq!((by_slice, by_frame), (voxels, voxels), "segment {number}");
        }
        // Where each segment lies, as pydicom reads it in patient coordinates: the tumour at the
        // planner's target, each zone at its planned centre and, verified, where the driver
        // placed it (behind the tip the last CT measured). Within half a voxel's diagonal.
        let centroid = |k: usize| -> [f64; 3] {
            let c = r["centroid_lps_mm"][(k + 1).to_string()].as_array().unwrap();
            [0, 1, 2].map(|i| c[i].as_f64().unwrap())
        };
        let near = |a: [f64; 3], b: [f64; 3], what: &str| {
            let d = distance_mm(a, b);
            assert!(d < 0.7, "{what}: the SEG's centroid {a:?} is {d:.2} mm from {b:?}");
        };
        near(centroid(0), point(&driver["target"]), "the tumour");
        for k in 0..n {
            near(centroid(1 + k), point(&chosen["positions"][k]["zone_centre_lps_mm"]), "a planned zone");
            near(centroid(1 + n + k), point(&driver["positions"][k]["ablated_zone_centre"]), "a verified zone");
        }
    }
    if let Some(r) = common::python_peer("read_sr.py", &[sr.as_os_str()]) {
        assert_eq!(r["study"], d["study_uid"], "{r}");
        assert_eq!(r["completion"], "COMPLETE", "{r}");
        let items = r["items"].as_array().unwrap();
        let num = |name: &str| -> Vec<f64> {
            items.iter().filter(|i| i["name"] == name).map(|i| i["value"].as_f64().unwrap()).collect()
        };
        let close = |a: &[f64], b: &[f64], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5), "{what}: {a:?} vs {b:?}");
        };
        close(
            &num("Fiducial registration error (RMS)"),
            &[driver["registration"]["fre_rms_mm"].as_f64().unwrap()],
            "FRE",
        );
        close(
            &num("Predicted target registration error at the tumour"),
            &[driver["registration"]["predicted_tre_mm"].as_f64().unwrap()],
            "TRE",
        );
        close(
            &num("Planned minimal ablative margin (MAR-1)"),
            &[chosen["margin_mm"].as_f64().unwrap()],
            "planned margin",
        );
        let last_margin = driver["positions"][n - 1]["verified_margin_mm"].as_f64().unwrap();
        close(&num("Achieved minimal ablative margin (MAR-1), measured tip"), &[last_margin], "achieved margin");
        for k in 0..n {
            let p = &driver["positions"][k];
            let error = distance_mm(point(&p["measured_tip"]), point(&p["planned_tip"]));
            close(&num(&format!("Tip-to-target error (ACC-1), position {}", k + 1)), &[error], "tip error");
        }
        close(&num("CTs with the needle, all positions"), &[v["cts_with_needle"].as_f64().unwrap()], "CTs");
        let rules = items.iter().filter(|i| i["name"].as_str().unwrap().starts_with("Plan rule ")).count();
        assert_eq!(rules, chosen["checks"].as_array().unwrap().len(), "{r}");
    }
    for f in [seg, sr] {
        if let Some(errors) = common::dciodvfy_errors(f) {
            assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        }
    }
    if let Some(o) = common::tool("dsrdump", &[sr.as_os_str()]) {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains("Achieved minimal ablative margin"), "{text}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn the_same_seed_gives_the_same_log_byte_for_byte() {
    let (a, out_a) = run_demo("easy", false, "a");
    let (b, out_b) = run_demo("easy", false, "b");
    let (la, lb) =
        (std::fs::read(out_a.join("procedure.log")).unwrap(), std::fs::read(out_b.join("procedure.log")).unwrap());
    assert!(la.len() > 1000, "{a}");
    assert!(la == lb, "two runs of one seed wrote different logs: {a}\n{b}");
    assert_eq!(a["tip_error_mm"], b["tip_error_mm"]);
    let _ = std::fs::remove_dir_all(out_a);
    let _ = std::fs::remove_dir_all(out_b);
}

#[test]
fn realtime_easy_over_a_pty() {
    let (v, out) = run_demo("easy", true, "realtime");
    assert_eq!(v["outcome"], "done", "{v}");
    assert!(v["tip_error_mm"].as_f64().unwrap() <= 2.7, "{v}");
    assert!(v["realtime"]["runner"]["policy"].as_str().unwrap() != "virtual time (one thread, lockstep)", "{v}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn realtime_link_loss_ends_in_the_safe_state() {
    let (v, out) = run_demo("fault-link-loss", true, "realtime");
    assert_eq!(v["outcome"], "safe-stop", "{v}");
    assert_eq!(v["safe_state"]["controller_drives_off"], true, "{v}");
    let _ = std::fs::remove_dir_all(out);
}

/// A child process killed (and waited for) when dropped still running: a test that fails
/// early does not leave it loading the machine for the tests after it.
struct Reaped(Option<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn sigterm_ends_a_realtime_demo_as_a_leaving_operator_does_and_puts_the_host_tuning_back() {
    let _turn = common::wall_clock_turn();
    let config = common::generous_config("demo-sigterm");
    let out = std::env::temp_dir().join(format!("stylet-demo-test-{}-sigterm", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let before = common::host_tuning();
    // Its stderr to a file, not a pipe nobody reads until the end (a full pipe would stop the
    // demo mid-run); and killed if the test fails first, not left running.
    let stderr_path = out.with_extension("stderr");
    let child = Command::new(STYLET)
        .args(["demo", "--json", "--realtime", "--out"])
        .arg(&out)
        .arg("--scenario")
        .arg(scenario_file("easy"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reaped(Some(child));
    // Once the needle is in: the signal comes mid-insertion.
    let log = out.join("procedure.log");
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("\"to\":\"inserting\"") {
        // A deadline for a hang: planning in the debug build on a loaded 2-core machine
        // (a CI run compiling beside it) took over 2 minutes.
        assert!(t0.elapsed().as_secs() < 300, "the insertion never began");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = child.0.as_ref().map(std::process::Child::id).unwrap();
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let o = child.0.take().unwrap().wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&config);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success() && stderr.contains("ended by a signal"), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(v["outcome"], "aborted", "{v}");
    assert_eq!(v["aborted"]["controller_drives_off"], true, "{v}");
    assert_eq!(v["aborted"]["retracted"], false, "nobody commanded the retraction: {v}");
    assert_eq!(v["wire_monitor_violations"], 0, "{v}");
    assert!(v["scenario_events"].to_string().contains("asked from outside"), "{v}");
    let after = common::host_tuning();
    assert!(after.0 == before.0 && after.1 <= before.1, "host tuning {after:?}, before {before:?}");
    let _ = std::fs::remove_dir_all(out);
}

/// A copy of scenario `base` expecting `expect`, with the TOML tables `tables` appended, in a
/// temporary file.
fn variant(base: &str, name: &str, expect: &str, tables: &str) -> PathBuf {
    let text = std::fs::read_to_string(scenario_file(base)).unwrap();
    let text: String = text.lines().filter(|l| !l.starts_with("expect =")).map(|l| format!("{l}\n")).collect();
    let dir = std::env::temp_dir().join(format!("stylet-demo-variants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("expect = \"{expect}\"\n{text}\n{tables}")).unwrap();
    path
}

#[test]
fn an_abort_mid_insertion_stops_holds_and_retracts_only_on_the_operators_command() {
    let path = variant("easy", "abort", "aborted", "[[events]]\nat_inserted_mm = 20.0\noperator = \"abort\"\n");
    let (v, out) = demo(path.to_str().unwrap());
    let a = &v["aborted"];
    assert_eq!(a["phase"], "Insertion", "{v}");
    assert_eq!(a["retracted"], true, "the scripted operator commanded the retraction: {v}");
    assert_eq!(a["controller_drives_off"], true, "{v}");
    assert!(a["inserted_mm"].as_f64().unwrap() <= 0.5, "{v}");
    assert_eq!(v["final_phase"], "Aborted", "{v}");
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    assert!(log.contains("\"action\":\"retract\""), "the retraction was the operator's: {log}");
    // The results say what there is: the plan, no verified zone, a partial report.
    let labels: Vec<&str> =
        v["dicom"]["segments"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["Tumour", "Planned ablation zone"], "{v}");
    if let Some(r) = common::python_peer("read_sr.py", &[Path::new(v["dicom"]["sr"].as_str().unwrap()).as_os_str()]) {
        assert_eq!(r["completion"], "PARTIAL", "{r}");
        let outcome = r["items"].as_array().unwrap().iter().find(|i| i["name"] == "Procedure outcome").unwrap();
        assert!(outcome["value"].as_str().unwrap().starts_with("aborted by the operator in Insertion"), "{r}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn an_operator_who_leaves_mid_insertion_ends_the_run_with_the_drives_off_and_nothing_more_asked() {
    // The console closed or the process was asked to end (SIGTERM, SIGHUP): the procedure
    // stops as on an abort, but with nobody to command the retraction it does not wait for one.
    let path = variant("easy", "leave", "aborted", "[[events]]\nat_inserted_mm = 20.0\noperator = \"leave\"\n");
    let (v, out) = demo(path.to_str().unwrap());
    let a = &v["aborted"];
    assert_eq!(a["phase"], "Insertion", "{v}");
    assert_eq!(a["retracted"], false, "nobody commanded the retraction: {v}");
    assert!(a["inserted_mm"].as_f64().unwrap() >= 19.0, "the needle stays where it stopped: {v}");
    // Left in the software e-stop: drives off, brakes on, latched until someone resets it.
    assert_eq!(a["controller_drives_off"], true, "{v}");
    assert_eq!(v["faults"], "OperatorEStop", "{v}");
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    assert!(log.contains("the operator has left") && log.contains("drives off, brakes on"), "{log}");
    assert!(!log.contains("retract_needle") && !log.contains("\"action\":\"retract\""), "nothing was asked: {log}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn without_a_retract_command_the_arm_holds_under_the_supervisor() {
    let path = variant(
        "easy",
        "abort-hold",
        "aborted",
        "[operator]\nhold_after_stop = true\n[[events]]\nat_inserted_mm = 20.0\noperator = \"abort\"\n",
    );
    let (v, out) = demo(path.to_str().unwrap());
    let a = &v["aborted"];
    assert_eq!(a["retracted"], false, "{v}");
    assert!(a["inserted_mm"].as_f64().unwrap() >= 19.0, "the needle stays where it stopped: {v}");
    // Still under the supervisor, holding: no fault, no motion.
    assert!(v["faults"].is_null(), "{v}");
    assert_eq!(v["final_phase"], "Aborting", "{v}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_pause_holds_until_the_operator_resumes() {
    let path = variant(
        "easy",
        "pause",
        "done",
        "[[events]]\nat_inserted_mm = 20.0\noperator = \"pause\"\n[[events]]\nat_inserted_mm = 20.0\nafter_s = 4.0\noperator = \"resume\"\n",
    );
    let (v, out) = nominal(path.to_str().unwrap());
    assert_eq!(v["scenario_events"].as_array().unwrap().len(), 2, "{v}");
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    assert!(log.contains("paused by the operator") && log.contains("resumed by the operator"), "{log}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_fault_reset_by_the_operator_ends_with_the_arm_stopped_and_drives_off() {
    let path = variant(
        "fault-controller-reset",
        "fault-reset-by-operator",
        "safe-stop",
        "[operator]\nreset_after_fault = true\n",
    );
    let (v, out) = demo(path.to_str().unwrap());
    assert_eq!(v["safe_state"]["controller_drives_off"], true, "{v}");
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    assert!(log.contains("after_fault") && log.contains("supervisor reset by the operator"), "{log}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn at_the_ins3_limit_the_procedure_waits_for_the_operator_who_ends_it_safely() {
    // One CT with the needle per insertion before the operator decides (INS-3); the harder world
    // needs two checkpoint CTs, so the workflow pauses after the first and asks.
    let config = common::config_with("ins3", "clinical-rules.toml", "max_checkpoints = 5", "max_checkpoints = 1");
    let path = variant("harder-world", "ins3", "aborted", "");
    let out = std::env::temp_dir().join(format!("stylet-demo-test-{}-ins3", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(STYLET)
        .args(["demo", "--json", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .arg("--scenario")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&config);
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["wire_monitor_violations"], 0, "{v}");
    assert_eq!(v["aborted"]["phase"], "CheckpointCt", "{v}");
    assert_eq!(v["aborted"]["retracted"], true, "{v}");
    assert_eq!(v["aborted"]["controller_drives_off"], true, "{v}");
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    assert!(log.contains("checkpoints_exhausted") && log.contains("INS-3"), "{log}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_fault_during_the_retraction_is_a_safe_stop_not_a_failure() {
    // The controller restarts 10 s after the needle passed 60 mm: it is on its way out after the
    // ablation. The supervisor latches HAZ-12 mid-move; the procedure ends as a safe stop, the
    // needle held where the supervisor stopped it, drives off, and the operator decides.
    let path = variant(
        "easy",
        "fault-in-retraction",
        "safe-stop",
        "[[events]]\nat_inserted_mm = 60.0\nafter_s = 10.0\nfault = \"reset\"\n",
    );
    let (v, out) = demo(path.to_str().unwrap());
    let s = &v["safe_state"];
    assert_eq!(s["supervisor_state"], "fault", "{v}");
    assert_eq!(s["controller_drives_off"], true, "{v}");
    let inserted = s["inserted_mm"].as_f64().unwrap();
    assert!(inserted > 1.0 && inserted < 60.0, "stopped on the way out: {v}");
    assert!(v["failed"].is_null(), "{v}");
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    assert!(log.contains("stopped by the supervisor: move to") && log.contains("Retraction -> Paused"), "{log}");
    let _ = std::fs::remove_dir_all(out);
}
