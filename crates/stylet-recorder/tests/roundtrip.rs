//! Written logs read back exactly; every truncation reads back to the last complete record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stylet_recorder::{parse_log, read_log, Event, FsyncPolicy, Recorder};

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| match i % 6 {
            0 => Event::Command { name: "setpoint".into(), values: vec![i as f64 * 0.001, -1.5, 2.0] },
            1 => Event::State {
                machine: "workflow".into(),
                from: "alignment".into(),
                to: "insertion".into(),
                reason: "aligned within 0.1 mm".into(),
            },
            2 => Event::Operator { action: "pedal".into(), detail: "pressed".into() },
            3 => Event::Fault { code: "HAZ-3".into(), detail: "link silent for 12 ms".into() },
            4 => Event::Sample { name: "tip_in_ct_mm".into(), values: vec![1.0, 2.0, f64::from(i as u32)] },
            _ => Event::Note { text: format!("note {i} with \"quotes\" and a newline\ninside") },
        })
        .collect()
}

fn write(path: &std::path::Path, n: usize) {
    let r = Recorder::create(path, "test", 1_700_000_000_000, FsyncPolicy::default(), 1 << 16).unwrap();
    for (i, e) in events(n).into_iter().enumerate() {
        assert!(r.record(i as f64 * 0.001, e));
    }
    let stats = r.close().unwrap();
    assert_eq!((stats.written, stats.dropped), (n as u64, 0));
}

#[test]
fn a_log_reads_back_exactly_and_refuses_to_overwrite() {
    let path = std::env::temp_dir().join(format!("stylet-rec-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    write(&path, 500);
    let log = read_log(&path).unwrap();
    assert_eq!(log.cut, None);
    assert_eq!(log.records.len(), 500);
    for (i, (r, e)) in log.records.iter().zip(events(500)).enumerate() {
        assert_eq!((r.seq, &r.event), (i as u64, &e));
    }
    assert!(Recorder::create(&path, "again", 0, FsyncPolicy::default(), 16).is_err());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_flipped_bit_is_a_cut_not_a_wrong_record() {
    let path = std::env::temp_dir().join(format!("stylet-rec-bit-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    write(&path, 50);
    let mut bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    // Corrupt a digit inside record 20's JSON.
    let start = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(20).unwrap().0 + 1;
    let pos = start + 30;
    bytes[pos] ^= 0x01;
    let log = parse_log("x", &bytes).unwrap();
    assert_eq!(log.records.len(), 20);
    let cut = log.cut.unwrap();
    assert_eq!((cut.byte_offset as usize, cut.line), (start, 22));
    assert!(cut.reason.contains("checksum"), "{}", cut.reason);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Cut anywhere: the records before the cut are intact, the cut is reported unless it fell on a
    /// line end.
    #[test]
    fn any_truncation_reads_back_to_the_last_complete_record(n in 1usize..80, frac in 0.0f64..1.0) {
        let path = std::env::temp_dir().join(format!("stylet-rec-p-{}-{n}-{}.log", std::process::id(), (frac * 1e9) as u64));
        let _ = std::fs::remove_file(&path);
        write(&path, n);
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let header_len = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let at = header_len + ((bytes.len() - header_len) as f64 * frac) as usize;
        let log = parse_log("p", &bytes[..at]).unwrap();
        let complete = bytes[header_len..at].iter().filter(|b| **b == b'\n').count();
        prop_assert_eq!(log.records.len(), complete);
        let on_boundary = at == header_len || bytes[at - 1] == b'\n';
        prop_assert_eq!(log.cut.is_none(), on_boundary);
        for (i, r) in log.records.iter().enumerate() {
            prop_assert_eq!(r.seq, i as u64);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_log("g", &bytes);
    }
}
