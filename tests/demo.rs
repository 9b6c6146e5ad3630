//! `stylet demo` end to end on every scenario in config/scenarios/ with its fixed seed: nominal
//! scenarios reach ACC-1 and complete; fault scenarios end in their documented safe state (or
//! recover, as the scenario says); the wire monitor counts no violation; the procedure log of
//! every run replays; the easy run's rerun recording reads back with its entities and values.
//!
//! The runs drive a real-time supervisor against the simulated controller on a pty, so they take
//! turns with every other wall-clock test and run with generous deadlines (tests/common).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");
fn root() -> PathBuf {
    common::repo()
}

/// Runs the demo on a scenario; returns its JSON summary and output folder.
fn demo(scenario: &str) -> (Value, PathBuf) {
    let _turn = common::wall_clock_turn();
    let config = common::generous_config(scenario);
    let out = std::env::temp_dir().join(format!("stylet-demo-test-{}-{scenario}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(STYLET)
        .args(["demo", "--json", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .arg("--scenario")
        .arg(root().join("config/scenarios").join(format!("{scenario}.toml")))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&config);
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
    let o = Command::new("python3").arg(root().join("tests/peers/read_rrd.py")).arg(path).output().unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("skipped the .rrd read-back: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
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

#[test]
fn near_vessel() {
    let (_, out) = nominal("near-vessel");
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
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn recorded_breathing() {
    let (_, out) = nominal("recorded-breathing");
    let _ = std::fs::remove_dir_all(out);
}
