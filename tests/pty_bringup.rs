//! End to end over a real pty: the `stylet` binary's simulated controller in one process, the
//! host's bring-up in another, exactly as against hardware. With each injected fault the
//! supervisor must reach its documented safe state, and the controller's wire monitor must count
//! zero setpoints outside the envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

/// A copy of config/ with deadlines widened for a loaded CI machine (tests/common).
fn test_config(tag: &str) -> PathBuf {
    common::widened_config(&format!("pty-{tag}"))
}

struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    device: String,
}

impl Sim {
    fn start(config: &Path, faults: &[&str]) -> Sim {
        let mut cmd = Command::new(STYLET);
        cmd.args(["sim", "controller", "--json", "--stop-on-eof", "--config"]).arg(config);
        for f in faults {
            cmd.args(["--fault", f]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("sim said {line:?}: {e}"));
        let device = v["device"].as_str().unwrap().to_string();
        Sim { child, stdin, stdout, device }
    }

    /// Stops the controller and returns its wire monitor's report.
    fn stop(mut self) -> Value {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "sim exited with {status}");
        let last = rest.lines().last().unwrap_or_else(|| panic!("no monitor report: {rest:?}"));
        serde_json::from_str::<Value>(last).unwrap()["monitor"].clone()
    }
}

fn bringup(device: &str, config: &Path, range_deg: f64) -> (bool, Value) {
    let out = Command::new(STYLET)
        .args(["bringup", "--json", "--range-mm", "0.5", "--port", device, "--config"])
        .arg(config)
        .args(["--range-deg", &range_deg.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bringup printed {text:?} ({e}); stderr {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

fn assert_no_violations(monitor: &Value) {
    assert_eq!(monitor["violations"], 0, "wire monitor: {monitor}");
    assert!(monitor["setpoints"].as_u64().unwrap() > 100, "too few setpoints reached the controller: {monitor}");
}

#[test]
fn bringup_passes_against_the_simulated_controller() {
    let _g = common::wall_clock_turn();
    let config = test_config("nominal");
    let sim = Sim::start(&config, &[]);
    let (ok, report) = bringup(&sim.device, &config, 0.3);
    let monitor = sim.stop();
    let _ = std::fs::remove_dir_all(&config);
    assert!(ok, "bring-up failed: {report:#}");
    assert_eq!(report["passed"], true);
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps.len(), 3 + 7 + 2, "{steps:?}");
    assert!(steps.contains(&"watchdog"));
    assert_eq!(report["final_state"], "connected");
    assert_eq!(report["drives_on"], false);
    assert_no_violations(&monitor);
}

/// Runs bring-up with one injected fault; returns the report and the monitor's.
fn with_fault(spec: &str) -> (Value, Value) {
    with_fault_range(spec, 0.3)
}

fn with_fault_range(spec: &str, range_deg: f64) -> (Value, Value) {
    let _g = common::wall_clock_turn();
    let config = test_config(&spec.replace(['=', '@', ':', '.'], "_"));
    let sim = Sim::start(&config, &[spec]);
    let (ok, report) = bringup(&sim.device, &config, range_deg);
    let monitor = sim.stop();
    let _ = std::fs::remove_dir_all(&config);
    assert!(!ok, "{spec}: bring-up should fail: {report:#}");
    assert_eq!(report["passed"], false);
    assert_no_violations(&monitor);
    (report, monitor)
}

fn assert_fault(report: &Value, names: &[&str], state: &str) {
    let name = report["fault"]["name"].as_str().unwrap_or_else(|| panic!("no fault latched: {report:#}"));
    assert!(names.contains(&name), "fault {name}, expected one of {names:?}: {report:#}");
    assert_eq!(report["final_state"], state, "{report:#}");
    assert_eq!(report["drives_on"], false, "a brake hold leaves the drives off: {report:#}");
}

#[test]
fn dropped_frames_latch_a_link_fault() {
    let (r, _) = with_fault("drop=0.3@0.3");
    assert_fault(&r, &["link_errors", "sequence_gap", "stale_controller_state"], "fault");
}

#[test]
fn corrupted_frames_latch_a_link_fault() {
    let (r, _) = with_fault("corrupt=0.1@0.3");
    assert_fault(&r, &["link_errors"], "fault");
}

#[test]
fn delayed_frames_and_disconnect_latch_stale_state() {
    let (r, _) = with_fault("delay=250@0.3");
    assert_fault(&r, &["stale_controller_state"], "fault");
    let (r, _) = with_fault("disconnect@0.3");
    assert_fault(&r, &["stale_controller_state"], "fault");
}

#[test]
fn controller_reset_is_detected() {
    let (r, _) = with_fault("reset@0.3");
    assert_fault(&r, &["controller_reset", "drives_dropped"], "fault");
}

#[test]
fn stuck_joint_latches_following_error_or_fails_the_follow_check() {
    // A move larger than the following-error limit (2 deg): the supervisor brakes.
    let (r, _) = with_fault_range("stuck=0@0.4", 3.0);
    assert_fault(&r, &["following_error"], "fault");
    // A move smaller than the limit: bring-up's own check sees the joint did not follow.
    let (r, _) = with_fault_range("stuck=0@0.4", 0.3);
    let failed = r["steps"].as_array().unwrap().iter().find(|s| s["ok"] == false).unwrap().clone();
    assert!(failed["detail"].as_str().unwrap().contains("did not follow"), "{failed}");
    assert_eq!(r["drives_on"], false, "{r:#}");
}

#[test]
fn encoder_jump_and_over_current_latch_their_faults() {
    let (r, _) = with_fault("encoder-jump=3:0.2@0.3");
    assert_fault(&r, &["encoder_jump"], "fault");
    let (r, _) = with_fault("overcurrent=2@0.3");
    assert_fault(&r, &["over_current"], "fault");
}

#[test]
fn estop_press_ends_in_estop() {
    let (r, _) = with_fault("estop@0.3");
    assert_fault(&r, &["estop_input"], "estop");
}

#[test]
fn pedal_release_refuses_insertion() {
    let (r, _) = with_fault("pedal-release@0.1");
    assert!(r["fault"].is_null(), "a released pedal is not a fault: {r:#}");
    let failed = r["steps"].as_array().unwrap().iter().find(|s| s["ok"] == false).unwrap().clone();
    assert!(failed["step"].as_str().unwrap().contains("needle_insertion_joint"), "{failed}");
    assert!(failed["detail"].as_str().unwrap().contains("INS-2"), "{failed}");
    assert_eq!(r["drives_on"], false, "bring-up leaves the drives off: {r:#}");
}

/// `bringup --sim --json` in this process's privileges, or under `setpriv` without CAP_SYS_NICE
/// and CAP_IPC_LOCK.
fn bringup_sim(config: &Path, refused: bool) -> Value {
    let mut cmd = if refused {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", "-sys_nice,-ipc_lock", STYLET]);
        c
    } else {
        Command::new(STYLET)
    };
    let out = cmd
        .args(["bringup", "--sim", "--json", "--range-mm", "0.5", "--range-deg", "0.3", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bringup printed {text:?} ({e}); stderr {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success() && v["passed"] == true, "{v:#}");
    v
}

#[test]
fn scheduling_is_obtained_as_root_and_refused_with_how_to_grant_it_without_the_capabilities() {
    if !nix_is_root() {
        eprintln!("skipped: not root, the granted case cannot be shown (CI runs as root)");
        assert!(std::env::var_os("CI").is_none(), "CI runs this test as root");
        return;
    }
    let _g = common::wall_clock_turn();
    // The generous deadlines: this test is about what scheduling is obtained and what is said when
    // it is refused. The refused run goes on at normal priority, where a loaded host holds the link
    // thread off long enough to overflow its send queue (a CI run here, with a build beside it:
    // 87 commands dropped, HAZ-9 latched at 11 link errors, 0 frames corrupted).
    let config = common::generous_config("pty-sched");
    let granted = bringup_sim(&config, false)["realtime"].clone();
    assert_eq!(granted["runner"]["policy"], "SCHED_FIFO", "{granted:#}");
    assert_eq!(granted["link"]["policy"], "SCHED_FIFO", "{granted:#}");
    assert_eq!(granted["simulated_controller"]["policy"], "SCHED_FIFO", "{granted:#}");
    assert_eq!(granted["kernel_input_workers"], "SCHED_FIFO 70", "{granted:#}");
    assert!(granted["kernel_workqueue_cores"].is_array(), "{granted:#}");
    assert_eq!(granted["cpu_wakeup_latency_us"], 0, "{granted:#}");
    assert!(granted["memory_locked"].is_string(), "{granted:#}");
    assert_eq!(granted["refused"], serde_json::json!([]), "{granted:#}");
    // Without the capabilities the run goes on at normal priority, and says why and how to grant it.
    let refused = bringup_sim(&config, true)["realtime"].clone();
    let _ = std::fs::remove_dir_all(&config);
    assert_eq!(refused["runner"]["policy"], "SCHED_OTHER", "{refused:#}");
    assert!(refused["kernel_input_workers"].is_null(), "{refused:#}");
    assert!(refused["kernel_workqueue_cores"].is_null(), "{refused:#}");
    let why: Vec<&str> = refused["refused"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(why.iter().any(|r| r.contains("SCHED_FIFO priority 82 refused")), "{why:?}");
    assert!(why.iter().any(|r| r.contains("memory lock refused")), "{why:?}");
    assert!(why.iter().any(|r| r.contains("serial input workers") && r.contains("SCHED_FIFO 70 refused")), "{why:?}");
    assert!(refused["how_to_grant"].as_str().unwrap().contains("CAP_SYS_NICE"), "{refused:#}");
}

#[test]
fn sigterm_mid_bring_up_leaves_the_arm_safe_and_the_host_as_it_was() {
    let _g = common::wall_clock_turn();
    let config = test_config("sigterm");
    let before = common::host_tuning();
    // Slow moves, so that the signal comes while the bring-up is still moving.
    let (ok, v) =
        sigterm_after(&["bringup", "--sim", "--json", "--range-deg", "20", "--speed-fraction", "0.01"], &config, 4);
    assert!(!ok && v["passed"] == false, "{v:#}");
    let failed = v["steps"].as_array().unwrap().iter().find(|s| s["ok"] == false).cloned().unwrap_or_default();
    assert!(failed["detail"].as_str().unwrap_or("").contains("asked to end by a signal"), "{v:#}");
    assert_eq!(v["drives_on"], false, "{v:#}");
    assert_eq!(v["wire_monitor"]["violations"], 0, "{v:#}");
    let after = common::host_tuning();
    assert!(after.0 == before.0 && after.1 <= before.1, "host tuning {after:?}, before {before:?}");
    let _ = std::fs::remove_dir_all(&config);
}

#[test]
fn sigterm_ends_bench_loop_early_with_the_drives_off_and_the_host_as_it_was() {
    let _g = common::wall_clock_turn();
    let config = test_config("bench-sigterm");
    let before = common::host_tuning();
    let (ok, v) = sigterm_after(&["bench", "loop", "--json", "--seconds", "60"], &config, 3);
    assert!(ok, "{v:#}");
    assert_eq!(v["ended_by_signal"], true, "{v:#}");
    assert!(v["held_s"].as_f64().unwrap() < 60.0, "{v:#}");
    assert_eq!(v["drives_on"], false, "{v:#}");
    assert_eq!(v["wire_monitor"]["violations"], 0, "{v:#}");
    let after = common::host_tuning();
    assert!(after.0 == before.0 && after.1 <= before.1, "host tuning {after:?}, before {before:?}");
    let _ = std::fs::remove_dir_all(&config);
}

/// Runs `stylet ARGS --config CONFIG`, sends it SIGTERM after `after_s`, and returns whether it
/// exited with success and the JSON it printed.
fn sigterm_after(args: &[&str], config: &Path, after_s: u64) -> (bool, Value) {
    let child = Command::new(STYLET).args(args).arg("--config").arg(config).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(after_s));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{args:?} printed {text:?} ({e})"));
    (out.status.success(), v)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}
