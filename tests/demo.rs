//! `stylet demo` end to end on the easy scenario: the procedure completes, the tip is accepted
//! by ACC-1, the wire monitor saw no violation, and the procedure log replays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

#[test]
fn demo_completes_on_the_easy_scenario() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::env::temp_dir().join(format!("stylet-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(STYLET)
        .args(["demo", "--json", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(root.join("config"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["final_phase"], "Done", "{v}");
    assert!(v["tip_error_mm"].as_f64().unwrap() < 2.7, "{v}");
    assert!(v["achieved_margin_mm"].as_f64().unwrap() >= 5.0, "{v}");
    assert_eq!(v["wire_monitor_violations"], 0, "{v}");
    assert!(v["faults"].is_null(), "{v}");
    let log = out.join("procedure.log");
    let r = Command::new(STYLET).args(["replay", "--json"]).arg(&log).output().unwrap();
    let replay: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(replay["cut"].is_null(), "{replay}");
    assert!(replay["kinds"]["state"].as_u64().unwrap() >= 10, "{replay}");
    let _ = std::fs::remove_dir_all(&out);
}
