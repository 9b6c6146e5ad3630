//! Per-sample cost of the respiration processor (push one sample, decide the gate) in steady
//! state on a real trace, for each predictor, and of the conditioner per raw sample of a fast
//! sensor. Run: `cargo bench -p stylet-respiration`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use stylet_respiration::{read_trace, Method, Respiration, RespirationConfig, Sample, TraceFormat};

fn per_sample(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/respiration/krilavicius/201205181211-LAC-1-N-320-6.csv");
    let trace = read_trace(&path, TraceFormat::Krilavicius).unwrap();
    let (signal, _) = trace.principal_axis();
    for method in [Method::Hold, Method::WaveletRls, Method::Pattern, Method::Reservoir, Method::Combined] {
        let cfg = RespirationConfig { method, ..RespirationConfig::default() };
        // Steady state: the pattern history (120 s) full.
        let warm = 1500;
        let mut base = Respiration::new(cfg);
        base.set_reference(0.0);
        for (&t_s, &value_mm) in trace.t_s.iter().zip(&signal).take(warm) {
            base.push(Sample { t_s, value_mm }).unwrap();
        }
        c.bench_function(&format!("respiration push+decide ({method:?})"), |b| {
            let mut r = base.clone();
            let mut i = warm;
            let mut t_shift = 0.0;
            b.iter(|| {
                if i >= signal.len() {
                    // Loop over the trace again, later in time.
                    t_shift += trace.t_s[signal.len() - 1] - trace.t_s[warm] + 0.1;
                    i = warm;
                }
                r.push(Sample { t_s: trace.t_s[i] + t_shift, value_mm: signal[i] }).unwrap();
                let d = r.decide(trace.t_s[i] + t_shift);
                i += 1;
                black_box(d)
            });
        });
    }
}

/// The conditioner's cost per raw sample of a 1000 Hz sensor in counts (uncalibrated, its scale
/// fixed), averaging to the 10 Hz working rate: what a fast sensor adds before the processor.
fn conditioning(c: &mut Criterion) {
    use stylet_respiration::{Calibration, Conditioner};
    let mut base = Conditioner::new(0.1, Calibration::FromAmplitude { nominal_mm: 10.0, after_s: 10.0 });
    let reading = |i: u64| {
        let t = i as f64 * 0.001;
        Sample { t_s: t, value_mm: 32768.0 + 400.0 * (std::f64::consts::PI * t / 4.0).sin().powi(6) }
    };
    for i in 0..20_000 {
        base.push(reading(i), &mut |s| {
            black_box(s);
        });
    }
    c.bench_function("conditioner push (1000 Hz counts to 10 Hz mm)", |b| {
        let mut k = base.clone();
        let mut i = 20_000;
        b.iter(|| {
            k.push(reading(i), &mut |s| {
                black_box(s);
            });
            i += 1;
        });
    });
}

criterion_group!(benches, per_sample, conditioning);
criterion_main!(benches);
