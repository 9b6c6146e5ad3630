//! `stylet procedure` in a real terminal (tmux), on devices behind real interfaces: the
//! simulated controller on a pty (a second process), the simulated respiratory sensor on a pty
//! (a third), the planning CT a DICOM series with its labels. The operator's keys go in through
//! tmux send-keys and the console is read with capture-pane: start, choose a plan, the arm
//! aligns and the confirmation CT is asked for; the operator aborts while waiting for it; the
//! procedure ends aborted with the needle never in tissue, the drives off, and the controller's
//! wire monitor counts 0 setpoints outside the envelope.
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
    fn drop(&mut self) {
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

#[test]
fn the_operator_runs_the_procedure_from_the_console_and_aborts_it_while_a_ct_is_awaited() {
    if !common::have_tmux() {
        return;
    }
    let _turn = common::wall_clock_turn();
    let config = common::generous_config("procedure-console");
    let dir = std::env::temp_dir().join(format!("stylet-procedure-console-{}", std::process::id()));
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
    let mut controller = Device::start(&["sim", "controller", "--json", "--stop-on-eof"], &config);
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
    let session = format!("stylet-procedure-{}", std::process::id());
    let cmd = format!(
        "{STYLET} procedure --site {} --config {} --out {}; echo exit=$? > {}",
        site.display(),
        config.display(),
        out.display(),
        dir.join("exit").display()
    );
    tmux(&["new-session", "-d", "-s", &session, "-x", "150", "-y", "50", &cmd]);
    let screen = wait_for(&session, "Start the procedure", 60);
    assert!(screen.contains("decision 1") && screen.contains("SPACE e-stop"), "{screen}");
    keys(&session, &["y"]);
    let screen = wait_for(&session, "Choose a plan", 120);
    // A key that does not answer this question is refused, with why.
    keys(&session, &["y"]);
    wait_for(&session, "choose a plan by its number", 30);
    assert!(screen.contains("plan ") && screen.contains("margin"), "{screen}");
    keys(&session, &["1"]);
    let screen = wait_for_any(&session, &["Confirmation CT asked for", "is high-risk"], 180);
    let screen = if screen.contains("is high-risk") {
        keys(&session, &["y"]);
        wait_for(&session, "Confirmation CT asked for", 180)
    } else {
        screen
    };
    assert!(screen.contains("drives ON"), "aligned with the drives on:\n{screen}");
    assert!(screen.contains("surrogate"), "the sensor's samples reach the gate:\n{screen}");
    keys(&session, &["a"]);
    let screen = wait_for(&session, "ENDED", 60);
    assert!(screen.contains("Aborted"), "{screen}");
    keys(&session, &["q"]);
    assert!(common::wait_for_file(&dir.join("exit"), 30), "stylet procedure did not exit");
    let _ = tmux(&["kill-session", "-t", &session]);
    assert_eq!(std::fs::read_to_string(dir.join("exit")).unwrap().trim(), "exit=2", "aborted: exit code 2");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["outcome"].as_str().unwrap().starts_with("Aborted"), "{summary}");
    assert_eq!(summary["driver"]["outcome"]["outcome"], "aborted", "{summary}");
    // Aborted before the insertion: the needle never entered, so nothing to withdraw.
    assert_eq!(summary["driver"]["outcome"]["retracted"], Value::Bool(true), "{summary}");
    // The log has the operator's answers and the abort.
    let log = std::fs::read_to_string(out.join("procedure.log")).unwrap();
    for want in [
        r#""action":"Yes","detail":"{\"prompt\":\"start\"}""#,
        r#""action":"Choose { index: "#,
        r#""detail":"Abort""#,
        r#""reason":"drives disabled""#,
    ] {
        assert!(log.contains(want), "{want} not in the log:\n{log}");
    }
    // The controller: drives off at the end, nothing outside the envelope.
    drop(sensor);
    drop(controller.stdin.take());
    let mut rest = String::new();
    controller.stdout.read_to_string(&mut rest).unwrap();
    assert!(controller.child.wait().unwrap().success());
    let monitor: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(monitor["monitor"]["violations"], 0, "{monitor}");
}
