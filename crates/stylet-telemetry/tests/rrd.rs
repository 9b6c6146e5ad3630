//! The written `.rrd` read back by rerun's own reader (the PyPI `rerun-sdk` of the same version,
//! tests/peers/read_rrd.py): entities and values are there; a slow sink drops and counts.
#![cfg(feature = "rerun")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use stylet_telemetry::{Item, Level, Sink, Telemetry};

/// Runs the reader; in CI (CI set) a missing reader fails the test, elsewhere it says so and skips.
fn read_back(path: &std::path::Path) -> Option<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/read_rrd.py");
    let out = Command::new("python3").arg(&script).arg(path).output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) if o.status.code() == Some(3) && std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Ok(o) => {
            panic!("read_rrd.py failed: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        }
        Err(e) => panic!("python3: {e}"),
    }
}

#[test]
fn a_recording_reads_back_with_its_entities_and_values() {
    let dir = std::env::temp_dir().join(format!("stylet-rrd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.rrd");
    let t = Telemetry::start("stylet_test", &Sink::File(path.clone()), 1024).unwrap();
    for k in 0..10 {
        let t_s = f64::from(k) * 0.1;
        t.log(Item::Scalar { path: "respiration/signal_mm".into(), t_s, value: f64::from(k) * 0.5 });
    }
    t.log(Item::Text { path: "events".into(), t_s: 0.5, text: "fault latched: link lost".into(), level: Level::Error });
    t.log(Item::Points {
        path: "world/target".into(),
        t_s: None,
        points: vec![[1.0, 2.0, 3.0]],
        radius_mm: 2.0,
        color: [255, 0, 0, 255],
    });
    t.log(Item::Image { path: "ct/axial".into(), width: 4, height: 2, pixels: vec![0, 1, 2, 3, 4, 5, 6, 7] });
    let stats = t.finish().unwrap();
    assert_eq!(stats.logged, 13);
    assert_eq!(stats.dropped, 0);
    let Some(v) = read_back(&path) else { return };
    let e = &v["entities"];
    assert_eq!(
        e["/respiration/signal_mm"]["Scalars:scalars"],
        serde_json::json!([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]),
        "{v}"
    );
    assert_eq!(e["/events"]["TextLog:text"], serde_json::json!(["fault latched: link lost"]), "{v}");
    assert_eq!(e["/world/target"]["Points3D:positions"], serde_json::json!([[[1.0, 2.0, 3.0]]]), "{v}");
    assert_eq!(e["/ct/axial"]["Image:buffer"], serde_json::json!([8]), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_channel_drops_and_counts_instead_of_blocking() {
    let dir = std::env::temp_dir().join(format!("stylet-rrd-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Telemetry::start("stylet_test", &Sink::File(dir.join("slow.rrd")), 1).unwrap();
    // A burst far faster than the sink logs: with one slot, most are dropped, none block.
    let n = 20_000u64;
    for k in 0..n {
        t.log(Item::Scalar { path: "x".into(), t_s: k as f64, value: 1.0 });
    }
    let dropped_during = t.dropped();
    let stats = t.finish().unwrap();
    assert!(dropped_during > 0);
    assert_eq!(stats.logged + stats.dropped, n);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_file_is_a_clear_error() {
    let e = Telemetry::start("stylet_test", &Sink::File("/nonexistent-dir/x.rrd".into()), 8).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/x.rrd"), "{e}");
}

#[test]
fn finish_does_not_wait_for_loggers_still_alive() {
    let dir = std::env::temp_dir().join(format!("stylet-rrd-alive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Telemetry::start("stylet_test", &Sink::File(dir.join("a.rrd")), 16).unwrap();
    let kept = t.logger();
    kept.log(Item::Scalar { path: "x".into(), t_s: 0.0, value: 1.0 });
    let stats = t.finish().unwrap();
    assert_eq!(stats.logged, 1);
    // After finish: nowhere to go, counted, never blocks.
    kept.log(Item::Scalar { path: "x".into(), t_s: 1.0, value: 2.0 });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn off_logs_nothing() {
    let t = Telemetry::off();
    t.log(Item::Scalar { path: "x".into(), t_s: 0.0, value: 1.0 });
    assert!(!t.is_on());
    assert_eq!(t.finish().unwrap().logged, 0);
}
