//! Offline evaluation of prediction and gating on a recorded trace (what `stylet resp eval`
//! prints). The processor sees the samples one by one, as it would live; only the scoring looks
//! ahead: the truth for a prediction made at sample time `t` is the trace linearly interpolated
//! at `t + horizon`. The first `warmup_s` (adaptation) are not scored; neither are predictions
//! whose target lies past the end of the trace.

use crate::config::{Method, OnDrift, RespirationConfig};
use crate::gate::{Respiration, Sample};

/// Prediction error of one method at one horizon.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MethodScore {
    /// The method.
    pub method: Method,
    /// RMS error, mm.
    pub rmse_mm: f64,
    /// RMS error over the no-prediction RMS error.
    pub ratio_to_hold: f64,
}

/// Gate statistics.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct GateStats {
    /// Fraction of scored decisions with the gate open.
    pub duty_cycle: f64,
    /// |signal at the horizon - reference| over open decisions: mean, mm.
    pub residual_mean_mm: f64,
    /// ... 95th percentile, mm.
    pub residual_p95_mm: f64,
    /// ... maximum, mm.
    pub residual_max_mm: f64,
    /// Window half-width, mm (RESP-2).
    pub window_half_width_mm: f64,
    /// Reference changes after the first (RESP-3 drift).
    pub re_references: usize,
}

/// One horizon's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HorizonReport {
    /// Horizon, ms.
    pub horizon_ms: f64,
    /// Horizon in samples at the nominal period.
    pub horizon_samples: usize,
    /// Scored predictions.
    pub scored: usize,
    /// No-prediction RMS error (the last sample held), mm.
    pub hold_rmse_mm: f64,
    /// Each method compared.
    pub methods: Vec<MethodScore>,
    /// The configured method's gate.
    pub gate: GateStats,
}

/// Per-sample record of one run (for plots).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Sample times, s.
    pub t_s: Vec<f64>,
    /// Signal, mm.
    pub value_mm: Vec<f64>,
    /// Prediction made at that time for `t + horizon`, mm.
    pub predicted_mm: Vec<f64>,
    /// Gate open.
    pub open: Vec<bool>,
    /// Reference level (NaN when none).
    pub reference_mm: Vec<f64>,
}

fn interp(t: &[f64], v: &[f64], at: f64) -> Option<f64> {
    let i = t.partition_point(|x| *x <= at);
    if i == 0 || i >= t.len() {
        return (i > 0 && (at - t[t.len() - 1]).abs() < 1e-12).then(|| v[v.len() - 1]);
    }
    let (t0, t1) = (t[i - 1], t[i]);
    let f = (at - t0) / (t1 - t0);
    Some(v[i - 1] + f * (v[i] - v[i - 1]))
}

/// Runs the processor over a trace with `method`, returning the timeline and the final reference
/// count. Refused samples are skipped (the trace readers already drop bad rows).
#[must_use]
pub fn run(t: &[f64], v: &[f64], cfg: &RespirationConfig) -> (Timeline, usize) {
    let mut r = Respiration::new(cfg.clone());
    let mut tl = Timeline::default();
    for (&ti, &vi) in t.iter().zip(v) {
        if r.push(Sample { t_s: ti, value_mm: vi }).is_err() {
            continue;
        }
        let d = r.decide(ti);
        tl.t_s.push(ti);
        tl.value_mm.push(vi);
        tl.predicted_mm.push(d.predicted_mm);
        tl.open.push(d.open);
        tl.reference_mm.push(r.reference().unwrap_or(f64::NAN));
    }
    (tl, r.re_references())
}

/// Evaluates a trace (times s, values mm) at one horizon: every method in `methods`, and the gate
/// of `cfg.method`. The reference follows the baseline on drift (no CT is taken on a trace).
#[must_use]
pub fn evaluate(t: &[f64], v: &[f64], cfg: &RespirationConfig, horizon_s: f64, methods: &[Method]) -> HorizonReport {
    let cfg = RespirationConfig { horizon_s, on_drift: OnDrift::ReReference, ..cfg.clone() };
    let scored_at = |tl: &Timeline| -> Vec<(usize, f64)> {
        tl.t_s
            .iter()
            .enumerate()
            .filter(|(_, ti)| **ti - t[0] >= cfg.warmup_s)
            .filter_map(|(i, ti)| interp(t, v, ti + horizon_s).map(|truth| (i, truth)))
            .collect()
    };
    let rms = |e: &[f64]| {
        if e.is_empty() {
            f64::NAN
        } else {
            (e.iter().map(|x| x * x).sum::<f64>() / e.len() as f64).sqrt()
        }
    };
    let (main, re_refs) = run(t, v, &cfg);
    let pts = scored_at(&main);
    let hold = rms(&pts.iter().map(|(i, truth)| main.value_mm[*i] - truth).collect::<Vec<_>>());
    let mut scores = Vec::new();
    for &m in methods {
        let tl =
            if m == cfg.method { main.clone() } else { run(t, v, &RespirationConfig { method: m, ..cfg.clone() }).0 };
        let e: Vec<f64> = scored_at(&tl).iter().map(|(i, truth)| tl.predicted_mm[*i] - truth).collect();
        let r = rms(&e);
        scores.push(MethodScore { method: m, rmse_mm: r, ratio_to_hold: r / hold });
    }
    let mut residual: Vec<f64> =
        pts.iter().filter(|(i, _)| main.open[*i]).map(|(i, truth)| (truth - main.reference_mm[*i]).abs()).collect();
    residual.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if residual.is_empty() {
            0.0
        } else {
            residual[((residual.len() - 1) as f64 * p).round() as usize]
        }
    };
    let gate = GateStats {
        duty_cycle: if pts.is_empty() { 0.0 } else { residual.len() as f64 / pts.len() as f64 },
        residual_mean_mm: if residual.is_empty() { 0.0 } else { residual.iter().sum::<f64>() / residual.len() as f64 },
        residual_p95_mm: pct(0.95),
        residual_max_mm: residual.last().copied().unwrap_or(0.0),
        window_half_width_mm: cfg.window_half_width_mm,
        re_references: re_refs.saturating_sub(1),
    };
    HorizonReport {
        horizon_ms: horizon_s * 1e3,
        horizon_samples: cfg.horizon_samples(),
        scored: pts.len(),
        hold_rmse_mm: hold,
        methods: scores,
        gate,
    }
}

/// One gate setting of a trade-off sweep ([`tradeoff`]), over a set of traces.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TradeoffPoint {
    /// RESP-2 window half-width, mm.
    pub half_width_mm: f64,
    /// Prediction-error margin factor.
    pub confidence_factor: f64,
    /// Mean duty over the traces.
    pub mean_duty: f64,
    /// The largest p95 residual of any trace, mm.
    pub worst_p95_mm: f64,
    /// Traces whose p95 residual is outside the window.
    pub traces_outside: usize,
}

/// The gate's trade-off between duty and residual motion: for each window half-width and each
/// confidence factor, the mean duty and the worst p95 residual over `traces` (times s, values
/// mm) at `horizon_s`, the predictor as `cfg` says.
#[must_use]
pub fn tradeoff(
    traces: &[(Vec<f64>, Vec<f64>)],
    cfg: &RespirationConfig,
    horizon_s: f64,
    half_widths_mm: &[f64],
    confidence_factors: &[f64],
) -> Vec<TradeoffPoint> {
    let mut out = Vec::new();
    for &confidence_factor in confidence_factors {
        for &half_width_mm in half_widths_mm {
            let c = RespirationConfig {
                window_half_width_mm: half_width_mm,
                final_approach_half_width_mm: cfg.final_approach_half_width_mm.min(half_width_mm),
                max_prediction_error_mm: cfg.max_prediction_error_mm.min(half_width_mm),
                confidence_factor,
                ..cfg.clone()
            };
            let gates: Vec<GateStats> = traces.iter().map(|(t, v)| evaluate(t, v, &c, horizon_s, &[]).gate).collect();
            let n = gates.len().max(1) as f64;
            out.push(TradeoffPoint {
                half_width_mm,
                confidence_factor,
                mean_duty: gates.iter().map(|g| g.duty_cycle).sum::<f64>() / n,
                worst_p95_mm: gates.iter().map(|g| g.residual_p95_mm).fold(0.0, f64::max),
                traces_outside: gates.iter().filter(|g| g.residual_p95_mm > half_width_mm).count(),
            });
        }
    }
    out
}
