//! Kill -9 the process writing a procedure log at various moments: the log reads back up to the
//! last complete record, with contiguous sequence numbers, and says where it was cut.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

#[test]
fn kill_9_at_any_point_leaves_a_readable_log() {
    let mut cuts = 0;
    let mut most = 0;
    for (k, delay_ms) in [30u64, 75, 140, 220, 310, 420].into_iter().enumerate() {
        let path = std::env::temp_dir().join(format!("stylet-kill9-{}-{k}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut child = Command::new(STYLET).args(["sim", "record", "--out"]).arg(&path).spawn().unwrap();
        // The delays count from the log's creation, not from the spawn: a loaded machine can
        // take longer than the shortest delay to start the process at all.
        let t0 = std::time::Instant::now();
        while !path.exists() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(path.exists(), "the process created no log in 20 s");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success());
        let out = Command::new(STYLET).args(["replay", "--json"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let records = v["records"].as_u64().unwrap();
        // Every complete line after the header is a record; a partial last line is the cut.
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(records, lines - 1, "{v}");
        let ends_clean = bytes.last() == Some(&b'\n');
        assert_eq!(v["cut"].is_null(), ends_clean, "{v}");
        if !ends_clean {
            cuts += 1;
            let at = v["cut"]["byte_offset"].as_u64().unwrap() as usize;
            assert_eq!(bytes[at - 1], b'\n', "the cut starts right after the last complete record");
            assert!(v["cut"]["reason"].as_str().unwrap().contains("incomplete"), "{v}");
        }
        println!("killed after {delay_ms} ms: {records} records, {} bytes, cut: {}", bytes.len(), v["cut"]);
        most = most.max(records);
    }
    // Not per kill: how much a process writes in a given time depends on the machine's load.
    assert!(most > 0, "no kill found a record written");
    println!("{cuts} of 6 kills cut a record in half");
}
