//! A scripted 3D Slicer-style session: pyigtl (tests/peers/igtl_bwh_session.py) drives
//! `stylet igtl serve` (the simulated robot behind the supervisor) through the whole BWH sequence:
//! refusals in the wrong phase, START_UP, CALIBRATION with a matrix, TARGETING with entry and
//! target, MOVE_TO_TARGET with CURRENT_POSITION streamed, EMERGENCY, and a refusal after it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

#[test]
fn pyigtl_runs_the_bwh_sequence_against_the_simulated_robot() {
    let _turn = common::wall_clock_turn();
    let root = common::repo();
    let config = common::generous_config("igtl-serve");
    let mut server = Command::new(STYLET)
        .args(["igtl", "serve", "--port", "0", "--json", "--stop-on-eof", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "listening", "{first}");
    let addr = first["detail"].as_str().unwrap().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let port = addr.rsplit(':').next().unwrap().to_string();
    let o = Command::new("python3").arg(root.join("tests/peers/igtl_bwh_session.py")).arg(&port).output().unwrap();
    // End the server (stdin closes) and read its last line.
    drop(server.stdin.take());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = server.wait();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("skipped: {}", String::from_utf8_lossy(&o.stderr));
        return;
    }
    assert!(
        o.status.success(),
        "{}\n{}\n{rest:?}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    let status_of = |i: usize| (steps[i]["phase"].as_str().unwrap().to_string(), steps[i]["status"].as_u64());
    // Refused before set-up: targeting -> device not ready (13); moving -> configuration error (10).
    assert_eq!(status_of(0), ("TARGETING".into(), Some(13)), "{v}");
    assert_eq!(status_of(1), ("MOVE_TO_TARGET".into(), Some(10)), "{v}");
    // Every command acknowledged with its phase within 100 ms.
    for s in steps.iter().filter(|s| s["ack_ms"].is_number()) {
        assert_eq!(s["ack"], s["phase"], "{s}");
        assert!(s["ack_ms"].as_f64().unwrap() < 100.0, "{s}");
    }
    assert_eq!(status_of(2), ("START_UP".into(), Some(1)), "{v}");
    // A scaled calibration matrix is refused with the reason; the identity after it is taken.
    let non_rigid = &v["non_rigid_calibration"];
    assert_ne!(non_rigid["status"], 1, "{v}");
    assert!(non_rigid["text"].as_str().unwrap().contains("not a rigid transform"), "{v}");
    assert_eq!(v["calibration_echo"][0][0], 1.0);
    assert_eq!(status_of(4), ("CALIBRATION".into(), Some(1)), "{v}");
    assert_eq!(status_of(6), ("TARGETING".into(), Some(1)), "{v}");
    assert_eq!(status_of(8), ("MOVE_TO_TARGET".into(), Some(1)), "{v}");
    // Positions streamed during the move, ending at the target (RAS = robot mm here).
    let positions = v["positions"].as_array().unwrap();
    assert!(positions.len() >= 5, "{} positions", positions.len());
    let last: Vec<f64> = positions.last().unwrap().as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let target: Vec<f64> = v["target"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let err = last.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    assert!(err < 1.0, "last streamed tip {last:?} vs target {target:?}: {err} mm");
    assert_eq!(status_of(9), ("EMERGENCY".into(), Some(1)), "{v}");
    assert_eq!(status_of(10), ("MOVE_TO_TARGET".into(), Some(3)), "{v}");
    // The server's last word: no rejection, no wire violation.
    let stopped: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert_eq!(stopped["detail"]["rejected"], 0, "{stopped}");
    assert_eq!(stopped["detail"]["wire_monitor_violations"], 0, "{stopped}");
}

#[test]
fn slicer_watches_the_demo_and_its_emergency_stops_it_safely() {
    let _turn = common::wall_clock_turn();
    let root = common::repo();
    let config = common::generous_config("igtl-demo");
    let out = std::env::temp_dir().join(format!("stylet-demo-igtl-{}", std::process::id()));
    let mut demo = Command::new(STYLET)
        .args(["demo", "--realtime", "--json", "--igtl", "0", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_lines = BufReader::new(demo.stderr.take().unwrap()).lines();
    let listening = err_lines.next().unwrap().unwrap();
    let addr = listening.strip_prefix("OpenIGTLink: listening on ").unwrap_or_else(|| panic!("{listening}"));
    let port = addr.rsplit(':').next().unwrap().to_string();
    let w = Command::new("python3").arg(root.join("tests/peers/igtl_demo_watch.py")).arg(&port).output().unwrap();
    let o = demo.wait_with_output().unwrap();
    if w.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("skipped: {}", String::from_utf8_lossy(&w.stderr));
        return;
    }
    assert!(w.status.success(), "{}\n{}", String::from_utf8_lossy(&w.stdout), String::from_utf8_lossy(&w.stderr));
    let watched: serde_json::Value = serde_json::from_slice(&w.stdout).unwrap();
    assert_eq!(watched["ack"], "EMERGENCY", "{watched}");
    assert_eq!(watched["status"], 1, "{watched}");
    assert!(watched["plan"].as_array().is_some_and(|p| p.len() == 2), "{watched}");
    assert!(watched["positions"].as_u64().unwrap() >= 10, "{watched}");
    let phases: Vec<&str> = watched["phases"].as_array().unwrap().iter().filter_map(|x| x.as_str()).collect();
    assert!(phases.contains(&"Alignment") && phases.contains(&"Insertion"), "{phases:?}");
    // The demo ended in the safe state, as the operator commanded, with 0 wire violations.
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"], "safe-stop", "{v}");
    assert_eq!(v["safe_state"]["controller_drives_off"], true, "{v}");
    assert_eq!(v["safe_state"]["supervisor_state"], "estop", "{v}");
    assert_eq!(v["wire_monitor_violations"], 0, "{v}");
    assert!(v["scenario_events"].to_string().contains("network EMERGENCY"), "{v}");
    let _ = std::fs::remove_dir_all(out);
}
