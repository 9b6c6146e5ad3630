//! The simulated breathing model, the correlation model fitted on it, the processor fed by it,
//! and a live sensor over a real pty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;

use stylet_respiration::{
    CorrelationModel, GateMode, GateReason, Observation, Respiration, RespirationConfig, RespirationSource,
    SerialSensor,
};
use stylet_sim::breathing::{Breathing, BreathingSpec};

#[test]
fn deterministic_and_realistic() {
    let spec = BreathingSpec { seed: 9, ..BreathingSpec::default() };
    let mut a = Breathing::new(spec.clone());
    let mut b = Breathing::new(spec.clone());
    // Different query patterns, same patient.
    let late = b.surrogate(250.0);
    let mut flat = Breathing::new(BreathingSpec { drift_mm_per_min: 0.0, ..spec.clone() });
    let thr = 0.5 * spec.amplitude_mm;
    let mut crossings = Vec::new();
    let mut prev = flat.surrogate(0.0);
    for i in 1..6000 {
        let t = 0.05 * f64::from(i);
        let v = flat.surrogate(t);
        if prev < thr && v >= thr {
            crossings.push(t);
        }
        prev = v;
    }
    for i in 0..3000 {
        a.surrogate(0.1 * f64::from(i));
    }
    assert_eq!(a.surrogate(250.0), late);
    let periods: Vec<f64> = crossings.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = periods.iter().sum::<f64>() / periods.len() as f64;
    assert!((3.0..=5.2).contains(&mean), "mean period {mean} over {} breaths", periods.len());
    assert!(periods.iter().any(|p| *p < 3.6) && periods.iter().any(|p| *p > 4.4), "no variability: {periods:?}");
    // Drift: the end-exhale level after 5 minutes is ~5 mm higher (1 mm/min).
    let exhale_late = (0..200).map(|i| a.surrogate(280.0 + 0.1 * f64::from(i))).fold(f64::INFINITY, f64::min);
    let exhale_early = (0..200).map(|i| a.surrogate(0.1 * f64::from(i))).fold(f64::INFINITY, f64::min);
    assert!((exhale_late - exhale_early - 4.7).abs() < 1.0, "{exhale_early} -> {exhale_late}");
}

#[test]
fn breath_hold_pauses_breathing_and_drifts() {
    let spec = BreathingSpec { holds: vec![(60.0, 24.0)], irregular_probability: 0.0, ..BreathingSpec::default() };
    let mut m = Breathing::new(spec);
    let (start, end) = (m.surrogate(60.0), m.surrogate(83.99));
    assert!((end - start - 5.6).abs() < 0.1, "creep {}", end - start);
    for i in 0..240 {
        let t = 60.0 + 0.1 * f64::from(i);
        let expected = start + 5.6 / 24.0 * (t - 60.0);
        assert!((m.surrogate(t) - expected).abs() < 1e-9, "breathing during the hold at {t}");
    }
    // Breathing resumes after it.
    let after: Vec<f64> = (0..60).map(|i| m.surrogate(84.0 + 0.1 * f64::from(i))).collect();
    let p2p =
        after.iter().copied().fold(f64::NEG_INFINITY, f64::max) - after.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(p2p > 5.0, "{p2p}");
}

#[test]
fn correlation_model_fitted_from_ten_checkpoints_predicts_the_liver() {
    let mut m = Breathing::new(BreathingSpec { seed: 4, drift_mm_per_min: 0.0, ..BreathingSpec::default() });
    let velocity = |m: &mut Breathing, t: f64| (m.surrogate(t + 0.05) - m.surrogate(t - 0.05)) / 0.1;
    // Ten "checkpoint CTs" at free-breathing moments (a 4-D CT's phases, say).
    let obs: Vec<Observation> = (0..10)
        .map(|i| {
            let t = 20.0 + 1.37 * f64::from(i);
            Observation {
                surrogate_mm: m.surrogate(t),
                surrogate_velocity_mm_per_s: velocity(&mut m, t),
                target_offset_mm: m.liver_offset_mm(t),
            }
        })
        .collect();
    let model = CorrelationModel::fit(&obs).unwrap();
    assert!(model.hysteresis);
    let (mut e2, mut motion2) = (0.0, 0.0);
    let n = 2000;
    for i in 0..n {
        let t = 40.0 + 0.087 * f64::from(i);
        let p = model.offset_mm(m.surrogate(t), velocity(&mut m, t));
        let truth = m.liver_offset_mm(t);
        e2 += (0..3).map(|k| (p[k] - truth[k]).powi(2)).sum::<f64>();
        motion2 += truth.iter().map(|v| v * v).sum::<f64>();
    }
    let (rms, motion) = ((e2 / f64::from(n)).sqrt(), (motion2 / f64::from(n)).sqrt());
    println!("correlation model: {rms:.3} mm RMS 3-D error vs {motion:.2} mm RMS liver motion");
    assert!(rms < 0.5 && rms < 0.1 * motion, "{rms} mm vs motion {motion} mm");
    // In the processor: with the reference at end-exhale, the predicted target offset follows the
    // liver 400 ms ahead.
    let mut r = Respiration::new(RespirationConfig::default());
    r.set_correlation(model);
    let mut worst: f64 = 0.0;
    let mut m2 =
        Breathing::new(BreathingSpec { seed: 4, drift_mm_per_min: 0.0, noise_mm: 0.0, ..BreathingSpec::default() });
    for i in 0..1200 {
        let t = 0.1 * f64::from(i);
        r.push(stylet_respiration::Sample { t_s: t, value_mm: m2.surrogate(t) }).unwrap();
        if i == 150 {
            r.set_reference(r.estimate().baseline_mm);
        }
        let d = r.decide(t);
        if i > 600 && d.open {
            let p = d.predicted_target_offset_mm.unwrap();
            // The true liver position at the reference surrogate level (no drift: baseline(0) = 0).
            let rf = r.reference().unwrap();
            let at_ref = [0.1 * rf, -0.4 * rf, -1.3 * rf];
            let truth = m2.liver_offset_mm(t + 0.4);
            let err = (0..3).map(|k| (p[k] - (truth[k] - at_ref[k])).powi(2)).sum::<f64>().sqrt();
            worst = worst.max(err);
        }
    }
    println!("predicted target offset while the gate is open: worst 3-D error {worst:.2} mm");
    assert!(worst < 1.5, "{worst}");
}

#[tokio::test]
async fn breath_hold_gating_on_the_simulated_patient() {
    // Free breathing, then a 30 s hold from 60 s: the gate opens only in the hold, for at most 20 s.
    let spec = BreathingSpec { holds: vec![(60.0, 30.0)], drift_mm_per_min: 0.0, ..BreathingSpec::default() };
    let hold_drift = spec.hold_drift_mm_per_s;
    let mut source = Breathing::new(BreathingSpec { hold_drift_mm_per_s: 0.02, ..spec });
    let cfg = RespirationConfig { mode: GateMode::BreathHold, ..RespirationConfig::default() };
    let mut r = Respiration::new(cfg);
    let mut open_times = Vec::new();
    let mut too_long = false;
    while let Some(s) = source.next_sample().await.unwrap() {
        if s.t_s > 100.0 {
            break;
        }
        r.push(s).unwrap();
        if (59.0..60.0).contains(&s.t_s) && r.reference().is_none() {
            r.set_reference(s.value_mm); // the planning CT at end-exhale
        }
        let d = r.decide(s.t_s);
        if d.open {
            open_times.push(s.t_s);
        }
        too_long |= d.reason == GateReason::BreathHoldTooLong;
    }
    assert!(hold_drift > 0.2);
    // The patient stops breathing at the end of the last breath before 60 s; the hold counts from
    // there (RESP-1: at most 20 s of gate).
    let (first, last) = (open_times[0], *open_times.last().unwrap());
    assert!(first >= 55.0 && last - first <= 20.0 && last - first > 15.0, "open from {first} to {last}");
    assert!(open_times.iter().all(|t| *t < 90.0), "open after the hold");
    assert!(too_long, "RESP-1 never reported");
}

#[tokio::test]
async fn live_sensor_lines_over_a_real_pty() {
    let pty = stylet_sim::pty::Pty::open().unwrap();
    let path = pty.path.clone();
    let mut sensor = SerialSensor::open(&path, 115_200).unwrap();
    let mut master = pty.into_master();
    let mut model = Breathing::new(BreathingSpec::default());
    let mut sent = Vec::new();
    let mut text = String::from("# stylet simulated belt\n");
    for i in 0..50 {
        let s = model.next_sensor_sample();
        text.push_str(&format!("{:.1},{:.4}\n", s.t_s * 1e3, s.value_mm));
        if i == 20 {
            text.push_str("garbage line\n");
        }
        sent.push(s);
    }
    master.write_all(text.as_bytes()).unwrap();
    master.flush().unwrap();
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let s = tokio::time::timeout(std::time::Duration::from_secs(5), sensor.next_sample()).await.unwrap().unwrap();
        got.push(s.unwrap());
    }
    for (a, b) in sent.iter().zip(&got) {
        assert!((a.t_s - b.t_s).abs() < 1e-4 && (a.value_mm - b.value_mm).abs() < 1e-4, "{a:?} vs {b:?}");
    }
    assert_eq!(sensor.issues().len(), 1, "{:?}", sensor.issues());
    assert_eq!(sensor.issues()[0].line, 23);
}

#[test]
fn a_recorded_trace_breathes_at_the_liver_amplitude_it_is_scaled_to() {
    use stylet_sim::breathing::RecordedBreathing;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/respiration/krilavicius/201205111055-LAC-1-N-117-6.csv");
    let trace = stylet_respiration::trace::read_trace_any(&path).unwrap();
    let spec = BreathingSpec::default();
    let rec = RecordedBreathing::from_trace(&trace, 12.0, spec.si_per_mm, "LAC").unwrap();
    let span = *rec.t_s.last().unwrap();
    assert!(span > 100.0, "{span}");
    let mut b = Breathing::new(BreathingSpec { recorded: Some(rec.clone()), ..spec });
    // The liver's SI motion over the recording: 5th to 95th percentile is the amplitude asked for.
    let mut si: Vec<f64> = (0..(span * 10.0) as usize).map(|i| b.liver_offset_mm(i as f64 * 0.1)[2]).collect();
    si.sort_by(f64::total_cmp);
    let p = |q: f64| si[((si.len() - 1) as f64 * q).round() as usize];
    let amplitude = p(0.95) - p(0.05);
    assert!((amplitude - 12.0).abs() < 0.5, "SI amplitude {amplitude} mm");
    // The belt reads the recording itself, and it repeats past its end.
    assert_eq!(b.surrogate(3.3), rec.at(3.3));
    assert!((rec.at(span + 3.3) - rec.at(3.3)).abs() < 1e-9);
}

#[test]
fn a_scenario_trace_without_an_amplitude_is_refused_by_name() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/scenarios/x.toml");
    let easy = std::fs::read_to_string(path.with_file_name("easy.toml")).unwrap();
    let text = format!("{easy}\n[breathing]\ntrace = \"no-such-file.csv\"\n");
    let e = stylet_sim::scenario::Scenario::from_toml_str(&path, &text).unwrap_err().to_string();
    assert!(e.contains("`breathing.trace`") && e.contains("liver_amplitude_mm"), "{e}");
    let text = format!("{easy}\n[breathing]\ntrace = \"no-such-file.csv\"\nliver_amplitude_mm = 10.0\n");
    let e = stylet_sim::scenario::Scenario::from_toml_str(&path, &text).unwrap_err().to_string();
    assert!(e.contains("no-such-file.csv"), "{e}");
}
