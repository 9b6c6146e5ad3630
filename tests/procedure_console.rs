//! `stylet procedure` in a real terminal (tmux), on devices behind real interfaces: the
//! simulated controller on a pty (a second process), the simulated respiratory sensor on a pty
//! (a third), the planning CT a DICOM series with its labels. The operator's keys go in through
//! tmux send-keys and the console is read with capture-pane: start, choose a plan, the arm
//! aligns and the confirmation CT is asked for; the operator aborts while waiting for it; the
//! procedure ends aborted with the needle never in tissue, the drives off, and the controller's
//! wire monitor counts 0 setpoints outside the envelope. A second test ends the procedure and
//! the controller with SIGTERM instead: both end as they do on their own, and the host tuning
//! of config/realtime.toml is put back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

/// A `stylet sim ...` process that prints its device as its first JSON line.
struct Device {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    path: String,
}

impl Drop for Device {
    /// SIGTERM first, so that a device that tuned the host puts it back (SIGKILL would leave it
    /// for the tests after); SIGKILL if it has not ended within 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Device {
    fn start(args: &[&str], config: &Path) -> Device {
        let mut child = Command::new(STYLET)
            .args(args)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{args:?} said {line:?}: {e}"));
        Device { child, stdin, stdout, path: v["device"].as_str().unwrap().to_string() }
    }
}

use common::{keys, tmux, wait_for, wait_for_any};

/// The procedure at a console in tmux against a simulated controller and sensor, each a process
/// of its own; planning CT from a phantom series.
struct Rig {
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    session: String,
    controller: Device,
    _sensor: Device,
}

impl Rig {
    fn start(tag: &str, controller_args: &[&str]) -> Rig {
        let config = common::generous_config(&format!("procedure-console-{tag}"));
        let dir = std::env::temp_dir().join(format!("stylet-procedure-console-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The planning CT: the easy scenario's phantom as a DICOM series, its labels beside it.
        let phantom = dir.join("phantom");
        let st = Command::new(STYLET)
            .args(["sim", "phantom", "--dicom", "--json", "--out"])
            .arg(&phantom)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let controller = Device::start(controller_args, &config);
        let sensor = Device::start(&["sim", "sensor", "--json", "--duration-s", "600"], &config);
        let site = dir.join("site.toml");
        std::fs::write(
            &site,
            format!(
                r#"
[controller]
port = "{}"
baud = 1000000

[respiration]
port = "{}"
baud = 115200

[ct]
source = "folder"
timeout_s = 600.0

[ct.folder]
watch = "incoming"
quiet_s = 1.0

[planning]
ct = "phantom/dicom"
labels = "phantom/labels.nii.gz"
tumour_label = 3

[ablation]
device = "mwa-generic"
setting = "100W-8min"
"#,
                controller.path, sensor.path
            ),
        )
        .unwrap();
        let out = dir.join("out");
        let session = format!("stylet-procedure-{}-{tag}", std::process::id());
        let cmd = format!(
            "{STYLET} procedure --site {} --config {} --out {}; echo exit=$? > {}",
            site.display(),
            config.display(),
            out.display(),
            dir.join("exit").display()
        );
        tmux(&["new-session", "-d", "-s", &session, "-x", "150", "-y", "50", &cmd]);
        Rig { dir, out, session, controller, _sensor: sensor }
    }

    /// Start, a plan chosen, the arm aligned and the confirmation CT asked for; the screen then.
    fn to_confirmation_ct(&self) -> String {
        let session = self.session.as_str();
        let screen = wait_for(session, "Start the procedure", 60);
        assert!(screen.contains("decision 1") && screen.contains("SPACE e-stop"), "{screen}");
        keys(session, &["y"]);
        let screen = wait_for(session, "Choose a plan", 120);
        // A key that does not answer this question is refused, with why.
        keys(session, &["y"]);
        wait_for(session, "choose a plan by its number", 30);
        assert!(screen.contains("plan ") && screen.contains("margin"), "{screen}");
        keys(session, &["1"]);
        let screen = wait_for_any(session, &["Confirmation CT asked for", "is high-risk"], 180);
        if screen.contains("is high-risk") {
            keys(session, &["y"]);
            wait_for(session, "Confirmation CT asked for", 180)
        } else {
            screen
        }
    }

    /// The procedure's exit line (`exit=N`), its summary and its log, once it has exited.
    fn exited(&self) -> (String, Value, String) {
        assert!(common::wait_for_file(&self.dir.join("exit"), 60), "stylet procedure did not exit");
        let exit = std::fs::read_to_string(self.dir.join("exit")).unwrap().trim().to_string();
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(self.out.join("summary.json")).unwrap()).unwrap();
        let log = std::fs::read_to_string(self.out.join("procedure.log")).unwrap();
        (exit, summary, log)
    }

    /// The controller's last JSON line once it has exited, and whether it exited successfully.
    fn controller_end(&mut self) -> (Value, bool) {
        let mut rest = String::new();
        self.controller.stdout.read_to_string(&mut rest).unwrap();
        let ok = self.controller.child.wait().unwrap().success();
        (serde_json::from_str(rest.lines().last().unwrap_or("null")).unwrap_or(Value::Null), ok)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.session]);
    }
}

#[test]
fn the_operator_runs_the_procedure_from_the_console_and_aborts_it_while_a_ct_is_awaited() {
    if !common::have_tmux() {
        return;
    }
    let _turn = common::wall_clock_turn();
    let mut rig = Rig::start("abort", &["sim", "controller", "--json", "--stop-on-eof"]);
    let session = rig.session.clone();
    let screen = rig.to_confirmation_ct();
    assert!(screen.contains("drives ON"), "aligned with the drives on:\n{screen}");
    assert!(screen.contains("surrogate"), "the sensor's samples reach the gate:\n{screen}");
    keys(&session, &["a"]);
    let screen = wait_for(&session, "ENDED", 60);
    assert!(screen.contains("Aborted"), "{screen}");
    keys(&session, &["q"]);
    let (exit, summary, log) = rig.exited();
    assert_eq!(exit, "exit=2", "aborted: exit code 2");
    assert!(summary["outcome"].as_str().unwrap().starts_with("Aborted"), "{summary}");
    assert_eq!(summary["driver"]["outcome"]["outcome"], "aborted", "{summary}");
    // Aborted before the insertion: the needle never entered, so nothing to withdraw.
    assert_eq!(summary["driver"]["outcome"]["retracted"], Value::Bool(true), "{summary}");
    // The log has the operator's answers and the abort.
    for want in [
        r#""action":"Yes","detail":"{\"prompt\":\"start\"}""#,
        r#""action":"Choose { index: "#,
        r#""detail":"Abort""#,
        r#""reason":"drives disabled""#,
    ] {
        assert!(log.contains(want), "{want} not in the log:\n{log}");
    }
    // The controller: drives off at the end, nothing outside the envelope.
    drop(rig.controller.stdin.take());
    let (end, ok) = rig.controller_end();
    assert!(ok, "{end}");
    assert_eq!(end["monitor"]["violations"], 0, "{end}");
}

#[test]
fn sigterm_ends_the_procedure_and_the_controller_as_their_own_end_does_and_puts_the_host_tuning_back() {
    if !common::have_tmux() {
        return;
    }
    let _turn = common::wall_clock_turn();
    let before = common::host_tuning();
    let mut rig = Rig::start("sigterm", &["sim", "controller", "--json"]);
    let screen = rig.to_confirmation_ct();
    assert!(screen.contains("drives ON"), "aligned with the drives on:\n{screen}");
    // A service manager (or `kill`) ends the procedure: the operator has left.
    // The stylet process itself, not the shell that runs it in tmux.
    let pid = |pattern: &str| {
        let out = Command::new("pgrep").args(["-f", pattern]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "stylet"))
            .map(str::to_string)
    };
    let procedure = pid(&format!("procedure --site {}", rig.dir.join("site.toml").display())).unwrap();
    assert!(Command::new("kill").args(["-TERM", &procedure]).status().unwrap().success());
    let (exit, summary, log) = rig.exited();
    assert_eq!(exit, "exit=2", "aborted: exit code 2\n{log}");
    assert_eq!(summary["driver"]["outcome"]["outcome"], "aborted", "{summary}");
    // The needle never entered: nothing to withdraw, the drives went off under the supervisor.
    assert_eq!(summary["driver"]["outcome"]["retracted"], Value::Bool(true), "{summary}");
    assert!(log.contains(r#""action":"request","detail":"Leave""#), "{log}");
    assert!(log.contains(r#""reason":"drives disabled""#), "{log}");
    // The controller, ended by SIGTERM too, ends as it does on its own: its report, exit 0.
    let controller = rig.controller.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &controller]).status().unwrap().success());
    let (end, ok) = rig.controller_end();
    assert!(ok, "the controller exited with an error on SIGTERM: {end}");
    assert_eq!(end["monitor"]["violations"], 0, "{end}");
    // Both gone (the sensor keeps no host tuning): the host is as it was.
    // (Workers raised before the test may have been retired since: fewer, never more.)
    let after = common::host_tuning();
    assert!(
        after.0 == before.0 && after.1 <= before.1,
        "the host tuning is not as it was: workqueue cpumask {:?} and {} kernel workers at SCHED_FIFO, before {:?} and {}",
        after.0,
        after.1,
        before.0,
        before.1
    );
}
