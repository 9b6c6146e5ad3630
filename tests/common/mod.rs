//! What the end-to-end tests that run on the wall clock share.
//!
//! They drive a real-time supervisor against a simulated controller (in the `stylet` process on
//! a pty, or in a second process), so they take turns on the machine: one at a time across every
//! test binary, by a lock file. They run with the real-time scheduling of `config/realtime.toml`
//! (CI runs as root, so it is granted) and with the deadlines below widened for a loaded 2-core
//! CI machine. The production deadlines are exercised deterministically by the mock-clock tests
//! in stylet-safety, and their behaviour on a loaded host is measured by `bench/soak.sh`
//! (docs/PERFORMANCE.md), never asserted here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::path::{Path, PathBuf};

/// The repository.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Holds the machine for one wall-clock test: dropped, the next one runs.
#[derive(Debug)]
pub(crate) struct Turn(File);

/// Waits for this test's turn (an exclusive lock on a file every wall-clock test shares).
pub(crate) fn wall_clock_turn() -> Turn {
    let path = std::env::temp_dir().join("stylet-wall-clock-tests.lock");
    let f = File::options().create(true).truncate(false).write(true).open(&path).unwrap();
    f.lock().unwrap();
    Turn(f)
}

/// The widened deadlines (production value -> test value), each with its key in safety.toml.
pub(crate) const WIDENED: [(&str, &str); 4] = [
    // HAZ-8: a controller state every 1 ms; 15 ms without one is a fault on hardware.
    ("controller_state_ms = 15.0", "controller_state_ms = 100.0"),
    // HAZ-11: a cycle that starts 10 ms late.
    ("max_lateness_ms = 10.0", "max_lateness_ms = 60.0"),
    // HAZ-10: the controller's own watchdog, above the host's lateness limit.
    ("window_ms = 20\n", "window_ms = 100\n"),
    // HAZ-9: Ack/Nack to Enable, Disable, EStop and ResetFaults.
    ("reply_deadline_ms = 50.0", "reply_deadline_ms = 300.0"),
];

/// For the long wall-clock runs (the demo scenarios, the OpenIGTLink sessions, 35-60 s each):
/// the host's own deadlines at 1 s, the most the config allows. These runs test the procedure on
/// the wall clock, not the deadlines (the mock-clock tests and `bench/soak.py` do), and one CI
/// run of this machine saw the runner held off its core for 0.4 and 1.7 s in two scenarios.
/// The simulated controller does not count its own freezes against the host
/// (`Controller::frozen`), so its watchdog stays at 100 ms and link loss still ends in drives off.
/// HAZ-9's error count goes to 1000 a second: a stall of either end longer than the host's send
/// queue (64 cycles) overflows it, and each command dropped counts as a link error (a CI run
/// here latched 11 in a 77 ms stall, 0 frames corrupted); the tests that use this config check
/// instead that no frame was corrupted (`decode_errors` 0), and the fault tests keep the limit.
/// HAZ-5's following error goes to 10 deg and 8 mm: while either end stalls the setpoint runs on
/// and the measured position does not (a console run here latched 2.7 deg on joint 0 mid-
/// alignment, and passed when run again); the stuck-joint test (tests/pty_bringup.rs) and the
/// supervisor's mock-clock tests keep the 2 deg limit.
pub(crate) const GENEROUS: [(&str, &str); 9] = [
    ("limit_deg = 2.0", "limit_deg = 10.0"),
    ("limit_mm = 1.5", "limit_mm = 8.0"),
    ("controller_state_ms = 15.0", "controller_state_ms = 1000.0"),
    ("max_errors = 10\n", "max_errors = 1000\n"),
    ("operator_heartbeat_ms = 250.0", "operator_heartbeat_ms = 1000.0"),
    ("max_lateness_ms = 10.0", "max_lateness_ms = 1000.0"),
    ("window_ms = 20\n", "window_ms = 100\n"),
    ("reply_deadline_ms = 50.0", "reply_deadline_ms = 1000.0"),
    ("deadline_ms = 50.0", "deadline_ms = 1000.0"),
];

/// A copy of config/ with the deadlines of [`WIDENED`].
pub(crate) fn widened_config(tag: &str) -> PathBuf {
    patched_config(tag, &WIDENED)
}

/// A copy of config/ with the deadlines of [`GENEROUS`].
pub(crate) fn generous_config(tag: &str) -> PathBuf {
    patched_config(tag, &GENEROUS)
}

fn patched_config(tag: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stylet-wall-clock-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&repo().join("config"), &dir);
    let safety = std::fs::read_to_string(dir.join("safety.toml")).unwrap();
    let mut patched = safety.clone();
    for (from, to) in replacements {
        assert!(patched.contains(from), "config/safety.toml no longer has {from:?}: update tests/common");
        patched = patched.replace(from, to);
    }
    std::fs::write(dir.join("safety.toml"), patched).unwrap();
    dir
}

/// A copy of config/ with `file`'s text `from` replaced by `to`.
#[allow(dead_code)]
pub(crate) fn config_with(tag: &str, file: &str, from: &str, to: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stylet-config-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&repo().join("config"), &dir);
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    assert!(text.contains(from), "config/{file} no longer has {from:?}: update the test");
    std::fs::write(dir.join(file), text.replace(from, to)).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Runs tmux (Debian's tmux) with `args`; its stdout.
pub(crate) fn tmux(args: &[&str]) -> String {
    let out =
        std::process::Command::new("tmux").args(args).output().expect("tmux (Debian's tmux) is needed for this test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether tmux is here; in CI it must be (.ci/run installs it), elsewhere the test skips.
pub(crate) fn have_tmux() -> bool {
    let here = std::process::Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if !here {
        assert!(std::env::var_os("CI").is_none(), "tmux is required in CI (.ci/run installs it)");
        eprintln!("SKIPPED: no tmux (apt-get install tmux)");
    }
    here
}

/// What the tmux pane `target` shows now.
pub(crate) fn screen(target: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", target])
}

/// Waits until the pane `target` shows one of `wants` (a deadline for a hang, not a timing
/// check); the screen then.
pub(crate) fn wait_for_any(target: &str, wants: &[&str], limit_s: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit_s);
    loop {
        let s = screen(target);
        if wants.iter().any(|w| s.contains(w)) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{target} never showed {wants:?}; it shows:\n{s}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Waits until the pane `target` shows `want`.
pub(crate) fn wait_for(target: &str, want: &str, limit_s: u64) -> String {
    wait_for_any(target, &[want], limit_s)
}

/// Sends keys to the pane `target` (tmux key names: `y`, `Enter`, `Space`).
pub(crate) fn keys(target: &str, keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", target];
    args.extend_from_slice(keys);
    tmux(&args);
}

/// Types `text` literally into the pane `target` (no key-name lookup: `end` is not the End
/// key), then Enter.
pub(crate) fn type_line(target: &str, text: &str) {
    tmux(&["send-keys", "-t", target, "-l", text]);
    tmux(&["send-keys", "-t", target, "Enter"]);
}

/// Waits until `path` exists (a process's marker, written when it ended), at most `limit_s`;
/// whether it does.
pub(crate) fn wait_for_file(path: &Path, limit_s: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit_s);
    while !path.exists() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

/// The host tuning of config/realtime.toml as it stands: the unbound workqueues' cpumask and the
/// kernel's unbound workers at a real-time policy.
pub(crate) fn host_tuning() -> (String, usize) {
    let mask = std::fs::read_to_string("/sys/devices/virtual/workqueue/cpumask").unwrap_or_default();
    let mut raised = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(tasks) = std::fs::read_dir(e.path().join("task")) else { continue };
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            if !stat[open + 1..close].starts_with("kworker/u") {
                continue;
            }
            // After the comm: state is field 3; policy is field 41.
            let policy = stat[close + 2..].split_whitespace().nth(38).and_then(|p| p.parse::<u32>().ok());
            if policy == Some(1) {
                raised += 1;
            }
        }
    }
    (mask.trim().to_string(), raised)
}

/// A reader script of tests/peers run with python3, its JSON output; `None` (the test skips)
/// when its Python package is missing (exit 3) outside CI, where CI requires it.
pub(crate) fn python_peer(script: &str, args: &[&std::ffi::OsStr]) -> Option<serde_json::Value> {
    let o =
        std::process::Command::new("python3").arg(repo().join("tests/peers").join(script)).args(args).output().unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("skipped {script}: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// A third-party program's output; `None` (the test skips) when it is not installed, outside CI,
/// where CI requires it.
pub(crate) fn tool(name: &str, args: &[&std::ffi::OsStr]) -> Option<std::process::Output> {
    match std::process::Command::new(name).args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "{name} is required in CI (.ci/run installs it): {e}");
            eprintln!("skipped {name}: {e}");
            None
        }
    }
}

/// The lines dciodvfy (dicom3tools) flags as errors in a DICOM file (none: it is valid for its
/// IOD); `None` when dciodvfy is not installed, outside CI.
pub(crate) fn dciodvfy_errors(path: &Path) -> Option<Vec<String>> {
    let o = tool("dciodvfy", &[path.as_os_str()])?;
    let text = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    Some(text.lines().filter(|l| l.starts_with("Error")).map(str::to_string).collect())
}
