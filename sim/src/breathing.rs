//! A breathing model for simulation: the surrogate signal (a belt or chest marker) and the liver's
//! displacement, deterministic from a seed.
//!
//! Each breath has Lujan et al.'s shape `amplitude * sin^6(pi * tau)` (tau: 0..1 over the breath):
//! brief inhale peaks, a long end-exhale dwell at the baseline. Every breath draws its period
//! (uniform in `period_s`), its amplitude (+-`amplitude_variation`), and with probability
//! `irregular_probability` is a deep (x1.6) or shallow (x0.5), short breath. The baseline drifts
//! (`drift_mm_per_min`, plus a slow wander). Breath-holds pause breathing at end-exhale while the
//! level creeps at `hold_drift_mm_per_s` (5.6 mm in 24 s in the literature).
//!
//! The liver follows the surrogate: superior-inferior `-si_per_mm * u(t)` (inhale moves it
//! inferior, LPS -z), anterior-posterior `ap_per_mm * u(t - hysteresis_lag_s)` (the lag makes the
//! SI-AP path a loop: hysteresis), left-right `lr_per_mm * u(t)`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_respiration::gate::Sample;
use stylet_respiration::trace::RowIssue;
use stylet_respiration::{RespirationSource, SourceError};

/// A recorded breathing trace the simulated patient breathes instead of the parametric model;
/// the belt reads the same recording.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedBreathing {
    /// Sample times from 0, s, strictly increasing.
    pub t_s: Vec<f64>,
    /// The surrogate, mm: the recording's principal-axis signal, its end-exhale level (5th
    /// percentile) at 0, scaled so that a typical breath (5th to 95th percentile) moves the
    /// liver `liver_amplitude_mm` superior-inferior.
    pub surrogate_mm: Vec<f64>,
    /// Where it came from (for reports).
    pub source: String,
}

impl RecordedBreathing {
    /// From a trace (any format the trace readers take), scaled to `liver_amplitude_mm` of SI
    /// liver motion through `si_per_mm`. `None` when the trace has fewer than two samples or
    /// does not move.
    #[must_use]
    pub fn from_trace(
        trace: &stylet_respiration::trace::Trace,
        liver_amplitude_mm: f64,
        si_per_mm: f64,
        source: &str,
    ) -> Option<Self> {
        let (s, _) = trace.principal_axis();
        if s.len() < 2 || si_per_mm <= 0.0 {
            return None;
        }
        let mut sorted = s.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let (lo, hi) = (at(0.05), at(0.95));
        if hi - lo <= 1e-9 {
            return None;
        }
        let k = liver_amplitude_mm / si_per_mm / (hi - lo);
        let t0 = trace.t_s[0];
        Some(RecordedBreathing {
            t_s: trace.t_s.iter().map(|t| t - t0).collect(),
            surrogate_mm: s.iter().map(|v| (v - lo) * k).collect(),
            source: source.to_string(),
        })
    }

    /// The surrogate at `t` (s), linearly interpolated; the recording repeats past its end.
    #[must_use]
    pub fn at(&self, t: f64) -> f64 {
        let (Some(&first), Some(&last)) = (self.t_s.first(), self.t_s.last()) else { return 0.0 };
        let span = last - first;
        let t = if span > 0.0 { first + (t - first).rem_euclid(span) } else { first };
        let i = self.t_s.partition_point(|x| *x <= t).clamp(1, self.t_s.len() - 1);
        let (t0, t1) = (self.t_s[i - 1], self.t_s[i]);
        let f = if t1 > t0 { ((t - t0) / (t1 - t0)).clamp(0.0, 1.0) } else { 0.0 };
        self.surrogate_mm[i - 1] + f * (self.surrogate_mm[i] - self.surrogate_mm[i - 1])
    }
}

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct BreathingSpec {
    /// Seed.
    pub seed: u64,
    /// Breath period range, s.
    pub period_s: [f64; 2],
    /// Surrogate peak-to-peak of a normal breath, mm.
    pub amplitude_mm: f64,
    /// Relative amplitude variation per breath (uniform +-).
    pub amplitude_variation: f64,
    /// Probability that a breath is irregular (deep or shallow).
    pub irregular_probability: f64,
    /// Baseline drift, mm per minute.
    pub drift_mm_per_min: f64,
    /// Breath-holds: start and duration, s.
    pub holds: Vec<(f64, f64)>,
    /// Level creep during a hold, mm/s.
    pub hold_drift_mm_per_s: f64,
    /// Surrogate sensor noise, mm (standard deviation).
    pub noise_mm: f64,
    /// Sample period of the simulated sensor, s.
    pub sample_period_s: f64,
    /// Liver SI motion per surrogate mm.
    pub si_per_mm: f64,
    /// Liver AP motion per surrogate mm.
    pub ap_per_mm: f64,
    /// Liver LR motion per surrogate mm.
    pub lr_per_mm: f64,
    /// AP lag behind the surrogate (hysteresis), s.
    pub hysteresis_lag_s: f64,
    /// A recorded trace to breathe instead of the parametric breaths (holds still apply).
    pub recorded: Option<RecordedBreathing>,
    /// What the surrogate sensor the driver reads gives for the surrogate.
    pub sensor: SensorOutput,
}

/// The surrogate sensor's output: `zero + units_per_mm x surrogate`, at `rate_hz`, in `unit`
/// (a belt's ADC counts, say); the default is a 10 Hz sensor in mm.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorOutput {
    /// The unit's name ("mm", "counts", ...).
    pub unit: String,
    /// Samples per second.
    pub rate_hz: f64,
    /// Units per surrogate mm.
    pub units_per_mm: f64,
    /// The value at surrogate 0, units.
    pub zero: f64,
}

impl Default for SensorOutput {
    fn default() -> Self {
        SensorOutput { unit: "mm".into(), rate_hz: 10.0, units_per_mm: 1.0, zero: 0.0 }
    }
}

impl SensorOutput {
    /// The sensor's reading of surrogate `mm`.
    #[must_use]
    pub fn reading(&self, mm: f64) -> f64 {
        self.zero + self.units_per_mm * mm
    }
}

impl Default for BreathingSpec {
    fn default() -> Self {
        Self {
            seed: 1,
            period_s: [3.0, 5.0],
            amplitude_mm: 10.0,
            amplitude_variation: 0.15,
            irregular_probability: 0.05,
            drift_mm_per_min: 1.0,
            holds: Vec::new(),
            hold_drift_mm_per_s: 5.6 / 24.0,
            noise_mm: 0.05,
            sample_period_s: 0.1,
            si_per_mm: 1.3,
            ap_per_mm: 0.4,
            lr_per_mm: 0.1,
            hysteresis_lag_s: 0.3,
            recorded: None,
            sensor: SensorOutput::default(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Breath {
    start: f64,
    period: f64,
    amp: f64,
}

/// The model. Breaths are generated in order as time advances, so every query pattern sees the
/// same patient.
#[derive(Clone, Debug)]
pub struct Breathing {
    spec: BreathingSpec,
    rng: SmallRng,
    noise_rng: SmallRng,
    breaths: Vec<Breath>,
    next_sample: u64,
}

impl Breathing {
    /// The surrogate sensor's output.
    #[must_use]
    pub fn sensor(&self) -> &SensorOutput {
        &self.spec.sensor
    }

    /// A patient.
    #[must_use]
    pub fn new(spec: BreathingSpec) -> Self {
        let rng = SmallRng::seed_from_u64(spec.seed);
        let noise_rng = SmallRng::seed_from_u64(spec.seed ^ 0x5eed_b4ea_7000_0001);
        Self { spec, rng, noise_rng, breaths: Vec::new(), next_sample: 0 }
    }

    fn hold_at(&self, t: f64) -> Option<(f64, f64)> {
        self.spec.holds.iter().copied().find(|(s, d)| t >= *s && t < s + d)
    }

    fn extend_to(&mut self, t: f64) {
        while self.breaths.last().is_none_or(|b| b.start + b.period <= t) {
            let mut start = self.breaths.last().map_or(0.0, |b| b.start + b.period);
            // Breathing pauses during a hold: the next breath starts when it ends.
            while let Some((s, d)) = self.hold_at(start).or_else(|| {
                self.spec.holds.iter().copied().find(|(s, _)| *s > start && *s < start + self.spec.period_s[1])
            }) {
                start = start.max(s + d);
                if self.hold_at(start).is_none() {
                    break;
                }
            }
            let [lo, hi] = self.spec.period_s;
            let mut period = if hi > lo { self.rng.gen_range(lo..hi) } else { lo };
            let v = self.spec.amplitude_variation.abs();
            let mut amp = self.spec.amplitude_mm * (1.0 + if v > 0.0 { self.rng.gen_range(-v..v) } else { 0.0 });
            if self.rng.gen_bool(self.spec.irregular_probability.clamp(0.0, 1.0)) {
                if self.rng.gen_bool(0.5) {
                    amp *= 1.6;
                    period *= 1.3;
                } else {
                    amp *= 0.5;
                    period *= 0.7;
                }
            }
            self.breaths.push(Breath { start, period: period.max(0.5), amp });
        }
    }

    fn baseline(&self, t: f64) -> f64 {
        if self.spec.recorded.is_some() {
            // A recording carries its own drift.
            return 0.0;
        }
        self.spec.drift_mm_per_min / 60.0 * t + 0.4 * (std::f64::consts::TAU * t / 97.0).sin()
    }

    /// The noise-free surrogate at `t` (s, >= 0), mm.
    pub fn surrogate(&mut self, t: f64) -> f64 {
        let t = t.max(0.0);
        if let Some(r) = &self.spec.recorded {
            return match self.hold_at(t) {
                Some((s, _)) => r.at(s) + self.spec.hold_drift_mm_per_s * (t - s),
                None => r.at(t),
            };
        }
        if let Some((s, _)) = self.hold_at(t) {
            return self.baseline(s) + self.spec.hold_drift_mm_per_s * (t - s);
        }
        self.extend_to(t);
        let i = self.breaths.partition_point(|b| b.start <= t);
        let breath = match i.checked_sub(1).map(|k| self.breaths[k]) {
            Some(b) if t < b.start + b.period => b,
            _ => return self.baseline(t),
        };
        let tau = (t - breath.start) / breath.period;
        self.baseline(t) + breath.amp * (std::f64::consts::PI * tau).sin().powi(6)
    }

    /// The liver's displacement from its end-exhale position at `t`, LPS mm.
    pub fn liver_offset_mm(&mut self, t: f64) -> [f64; 3] {
        let u = self.surrogate(t) - self.baseline(0.0);
        let lagged = self.surrogate(t - self.spec.hysteresis_lag_s) - self.baseline(0.0);
        [self.spec.lr_per_mm * u, -self.spec.ap_per_mm * lagged, -self.spec.si_per_mm * u]
    }

    /// The sensor's next sample (with noise), at the sample period from t = 0.
    pub fn next_sensor_sample(&mut self) -> Sample {
        let t = self.next_sample as f64 * self.spec.sample_period_s;
        self.next_sample += 1;
        let u1: f64 = self.noise_rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = self.noise_rng.gen_range(0.0..1.0);
        let n = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Sample { t_s: t, value_mm: self.surrogate(t) + n * self.spec.noise_mm }
    }
}

impl RespirationSource for Breathing {
    fn next_sample(&mut self) -> impl std::future::Future<Output = Result<Option<Sample>, SourceError>> + Send {
        std::future::ready(Ok(Some(self.next_sensor_sample())))
    }
    fn issues(&self) -> &[RowIssue] {
        &[]
    }
}
