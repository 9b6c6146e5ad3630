//! The command line as a user meets it: help, config errors that name file, key and value, and
//! clear failures on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_config(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stylet-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(dir.join("robot")).unwrap();
    for f in ["robot/robot.toml", "safety.toml", "sim.toml"] {
        std::fs::copy(repo().join("config").join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(STYLET).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for c in ["config", "sim", "bringup", "bench"] {
        assert!(text.contains(c), "{text}");
    }
}

#[test]
fn repository_config_checks_clean() {
    let out = Command::new(STYLET).args(["config", "check", "--json"]).arg(repo().join("config")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"].as_array().unwrap().len(), 3);
}

#[test]
fn config_errors_name_file_key_and_value() {
    let dir = copy_config("bad");
    let safety = std::fs::read_to_string(dir.join("safety.toml")).unwrap();
    std::fs::write(
        dir.join("safety.toml"),
        safety.replace("max_depth_mm = 180.0", "max_depth_mm = 5000.0").replace("rule = \"INS-2\"", "rule = \"INS-9\""),
    )
    .unwrap();
    let sim = std::fs::read_to_string(dir.join("sim.toml")).unwrap();
    std::fs::write(dir.join("sim.toml"), sim.replace("seed = 1", "seed = 1\nturbo = true")).unwrap();
    let out = Command::new(STYLET).args(["config", "check"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("safety.toml") && text.contains("`insertion_depth.max_depth_mm` = 5000"), "{text}");
    assert!(text.contains("`enable_interlock.rule` = \"INS-9\""), "{text}");
    assert!(text.contains("sim.toml") && text.contains("turbo"), "{text}");
}

#[test]
fn bringup_on_a_missing_device_fails_clearly() {
    let out = Command::new(STYLET)
        .args(["bringup", "--port", "/dev/does-not-exist", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/does-not-exist"), "{err}");
}

#[test]
fn bad_fault_spec_is_refused_before_starting() {
    let out = Command::new(STYLET)
        .args(["sim", "controller", "--fault", "melt@1", "--duration-s", "0.1", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("melt@1"));
}
