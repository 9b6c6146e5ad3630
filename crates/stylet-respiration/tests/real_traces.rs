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

/// The acceptance figures of issue 5 on the 15 real traces, principal axis, 400 ms horizon:
/// prediction RMSE <= 0.5x the no-prediction RMSE averaged over traces; gate duty cycle >= 30 %
/// with p95 residual motion inside the gate <= the window half-width.
#[test]
fn prediction_and_gating_on_the_fifteen_real_traces() {
    use stylet_respiration::{eval::evaluate, Method, RespirationConfig};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/respiration/krilavicius");
    let cfg =
        RespirationConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/respiration.toml")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let methods = [Method::WaveletRls, Method::Pattern, Method::Reservoir, Method::Combined];
    let mut ratios = vec![Vec::new(); methods.len()];
    let (mut duty, mut worst_p95_excess) = (Vec::new(), f64::NEG_INFINITY);
    for f in files.iter().filter(|p| p.extension().is_some_and(|e| e == "csv")) {
        let t = read_trace(f, TraceFormat::Krilavicius).unwrap();
        let (s, _) = t.principal_axis();
        let r = evaluate(&t.t_s, &s, &cfg, 0.4, &methods);
        for (k, m) in r.methods.iter().enumerate() {
            ratios[k].push(m.ratio_to_hold);
        }
        duty.push(r.gate.duty_cycle);
        worst_p95_excess = worst_p95_excess.max(r.gate.residual_p95_mm - r.gate.window_half_width_mm);
        println!(
            "{:<34} hold {:5.2} mm  rls {:.3}  pattern {:.3}  reservoir {:.3}  combined {:.3}  duty {:4.1} %  residual p95 {:.2} max {:.2} mm  re-ref {}",
            f.file_name().unwrap().to_string_lossy(),
            r.hold_rmse_mm,
            r.methods[0].ratio_to_hold,
            r.methods[1].ratio_to_hold,
            r.methods[2].ratio_to_hold,
            r.methods[3].ratio_to_hold,
            100.0 * r.gate.duty_cycle,
            r.gate.residual_p95_mm,
            r.gate.residual_max_mm,
            r.gate.re_references,
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean ratio: rls {:.3} pattern {:.3} reservoir {:.3} combined {:.3}; mean duty {:.1} %; min duty {:.1} %",
        mean(&ratios[0]),
        mean(&ratios[1]),
        mean(&ratios[2]),
        mean(&ratios[3]),
        100.0 * mean(&duty),
        100.0 * duty.iter().cloned().fold(1.0, f64::min)
    );
    assert_eq!(duty.len(), 15);
    assert!(mean(&ratios[3]) <= 0.5, "combined {:.3}", mean(&ratios[3]));
    assert!(ratios[..3].iter().all(|part| mean(&ratios[3]) < mean(part)), "the blend must beat each part");
    assert!(mean(&duty) >= 0.30, "mean duty {:.3}", mean(&duty));
    assert!(worst_p95_excess <= 0.0, "a trace's p95 residual exceeds the half-width by {worst_p95_excess:.2} mm");
}
