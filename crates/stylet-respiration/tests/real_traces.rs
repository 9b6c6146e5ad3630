//! The 15 real Krilavicius traces (CC BY 4.0; Krilavicius et al. 2013, redistributed by Pohl et al.
//! 2022) read with their quirks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stylet_respiration::{read_trace, TraceFormat};

#[test]
fn all_fifteen_traces_read_with_their_quirks_reported() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/respiration/krilavicius");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 15);
    let mut seconds_glitches = 0;
    let mut terminators = 0;
    for f in &files {
        let t = read_trace(f, TraceFormat::Krilavicius).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // DATE-SITE-1-CONDITION-DURATION-6.csv: the duration in seconds.
        let duration: f64 = name.split('-').nth(4).unwrap().parse().unwrap();
        let span = t.t_s.last().unwrap() - t.t_s[0];
        assert!((span - duration).abs() < 3.0, "{name}: {span:.1} s vs {duration} s");
        let dt = t.median_interval_s();
        assert!((0.09..=0.12).contains(&dt), "{name}: median interval {dt}");
        assert!(t.t_s.windows(2).all(|w| w[1] > w[0]));
        // The data README says every file ends with an all-zero row; the three 2012-05-11 files do not.
        let text = std::fs::read_to_string(f).unwrap();
        let ends_with_zeros = text.trim_end().lines().last().is_some_and(|l| l.trim() == "0;0;0;0;0");
        assert_eq!(t.issues.iter().any(|i| i.reason.contains("terminator")), ends_with_zeros, "{name}");
        terminators += usize::from(ends_with_zeros);
        seconds_glitches += t.issues.iter().filter(|i| i.reason.contains("not in ms")).count();
        let (s, axis) = t.principal_axis();
        let p2p = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - s.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!((0.3..=60.0).contains(&p2p), "{name}: peak-to-peak {p2p:.1} mm along {axis:?}");
    }
    assert_eq!(terminators, 12);
    assert!(seconds_glitches > 0, "the data README says some rows carry seconds");
    println!("{seconds_glitches} rows with the Timestamp not in ms");
}
