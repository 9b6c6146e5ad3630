//! From surrogate samples to a gate decision: [`Respiration`] takes timestamped samples
//! ([`Respiration::push`]) and answers [`Respiration::decide`] at any time. Pure: time is what
//! the samples and the caller say it is.
//!
//! Per sample, in this order: the sample is checked (finite, time advancing; else it is refused
//! and nothing changes), gaps up to `max_gap_s` are filled on the nominal grid by linear
//! interpolation (a longer gap restarts the warm-up), the predictor takes it, and the estimator
//! updates amplitude, end-exhale baseline, period and phase, and the breath-hold detector. The
//! gate is decided from the *predicted* level at the horizon (the system latency), so the needle
//! moves when the target will be where it was imaged (RESP-2).

use crate::config::{GateMode, Method, OnDrift, RespirationConfig};
use crate::correlation::CorrelationModel;
use crate::predict::{
    Combined, Hold, PatternMatch, PatternMatchSettings, Predictor, Reservoir, ReservoirSettings, WaveletRls,
    WaveletRlsSettings,
};

/// Larger surrogate values are refused (no breathing sensor reads metres).
const MAX_ABS_VALUE_MM: f64 = 10_000.0;

/// One surrogate sample.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Time, s (any epoch, increasing).
    pub t_s: f64,
    /// Surrogate value, mm.
    pub value_mm: f64,
}

/// Why a sample was refused. The doc comment is the message.
#[derive(Clone, Copy, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum SampleRefused {
    /// sample at t = {t_s} s is not finite (value {value_mm})
    NotFinite {
        /// Time.
        t_s: f64,
        /// Value.
        value_mm: f64,
    },
    /// sample value {value_mm} mm is beyond +-10 m: a broken sensor
    OutOfRange {
        /// Value.
        value_mm: f64,
    },
    /// sample time {t_s} s does not advance past {last_s} s (duplicate or backwards)
    NotAdvancing {
        /// Time.
        t_s: f64,
        /// The newest accepted time.
        last_s: f64,
    },
}

/// Why the gate is as it is. The doc comment is the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, docsplay::Display, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateReason {
    /// open: predicted level inside the end-exhale window and still (RESP-2)
    Open,
    /// no surrogate sample yet
    NoSignal,
    /// surrogate input stale (newest sample too old)
    Stale,
    /// adapting to the signal (warm-up)
    WarmingUp,
    /// no reference level set (planning CT breath-hold)
    NoReference,
    /// end-exhale baseline drifted beyond the limit from the reference: re-reference (RESP-3)
    DriftNeedsReReference,
    /// the prediction cannot be trusted: its running error is above the limit (RESP-2)
    PredictionUntrusted,
    /// predicted level outside the end-exhale window (RESP-2)
    OutsideWindow,
    /// predicted signal moving faster than allowed
    Moving,
    /// breath-hold mode: no breath-hold in progress
    NotHolding,
    /// breath-hold longer than the limit (RESP-1)
    BreathHoldTooLong,
    /// level drifted during the breath-hold
    BreathHoldDrift,
}

/// The online estimate of the breathing pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BreathingEstimate {
    /// Peak-to-peak amplitude (5th to 95th percentile over the baseline window), mm.
    pub amplitude_mm: f64,
    /// End-exhale level, mm.
    pub baseline_mm: f64,
    /// Whether exhale is the low side of the signal.
    pub exhale_low: bool,
    /// Breathing period, s (0 before two cycles were seen).
    pub period_s: f64,
    /// Phase in [0, 1): 0 end-exhale, 0.5 end-inhale (None before the period is known).
    pub phase: Option<f64>,
    /// Seconds into the current breath-hold, when one is detected.
    pub hold_s: Option<f64>,
}

/// The per-cycle output: the supervisor's gate input is `open`, valid until `valid_until_s`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct GateOutput {
    /// Gate open.
    pub open: bool,
    /// Why.
    pub reason: GateReason,
    /// The surrogate predicted at the horizon, mm.
    pub predicted_mm: f64,
    /// Predicted offset from the reference level, mm (None without a reference).
    pub offset_from_reference_mm: Option<f64>,
    /// The target's predicted displacement (LPS mm) from where it was at the reference level,
    /// through the correlation model, when one is set: what to compensate when the gate opens off
    /// the reference level.
    pub predicted_target_offset_mm: Option<[f64; 3]>,
    /// Running RMS prediction error (the confidence: the larger of the recent one and the one
    /// over a five times longer past), mm.
    pub confidence_mm: f64,
    /// The recent running RMS prediction error alone, mm: how calm the breathing is now.
    pub recent_error_mm: f64,
    /// This decision holds until then (newest sample + stale limit), s.
    pub valid_until_s: f64,
    /// The breathing estimate.
    pub estimate: BreathingEstimate,
}

#[derive(Clone, Debug)]
enum AnyPredictor {
    Hold(Hold),
    Rls(WaveletRls),
    Pattern(PatternMatch),
    Reservoir(Box<Reservoir>),
    Combined(Box<Combined>),
}

impl AnyPredictor {
    fn new(cfg: &RespirationConfig) -> Self {
        let h = cfg.horizon_samples();
        let rls = WaveletRlsSettings {
            levels: cfg.wavelet_levels,
            taps: cfg.wavelet_taps,
            forgetting: cfg.rls_forgetting,
            delta: 100.0,
        };
        let pm = PatternMatchSettings {
            window: cfg.pattern_window,
            neighbours: cfg.pattern_neighbours,
            history: ((cfg.pattern_history_s / cfg.period_s).round() as usize).max(16),
        };
        let reservoir = ReservoirSettings {
            units: cfg.reservoir_units,
            spectral_radius: cfg.reservoir_spectral_radius,
            leak: cfg.reservoir_leak,
            input_scale: cfg.reservoir_input_scale,
            forgetting: cfg.reservoir_forgetting,
        };
        match cfg.method {
            Method::Hold => Self::Hold(Hold::default()),
            Method::WaveletRls => Self::Rls(WaveletRls::new(h, rls)),
            Method::Pattern => Self::Pattern(PatternMatch::new(h, pm)),
            Method::Reservoir => Self::Reservoir(Box::new(Reservoir::new(h, reservoir))),
            Method::Combined => Self::Combined(Box::new(Combined::new(h, rls, pm, reservoir, cfg.error_smoothing))),
        }
    }
    fn as_dyn(&mut self) -> &mut dyn Predictor {
        match self {
            Self::Hold(p) => p,
            Self::Rls(p) => p,
            Self::Pattern(p) => p,
            Self::Reservoir(p) => p.as_mut(),
            Self::Combined(p) => p.as_mut(),
        }
    }
    fn predict(&self) -> f64 {
        match self {
            Self::Hold(p) => p.predict(),
            Self::Rls(p) => p.predict(),
            Self::Pattern(p) => p.predict(),
            Self::Reservoir(p) => p.predict(),
            Self::Combined(p) => p.predict(),
        }
    }
}

/// The respiration processor.
#[derive(Clone, Debug)]
pub struct Respiration {
    cfg: RespirationConfig,
    horizon: usize,
    predictor: AnyPredictor,
    /// Newest accepted (grid) sample.
    last: Option<Sample>,
    /// Grid samples since the (re)start.
    count: usize,
    /// Time of the first sample since the (re)start.
    started_s: f64,
    /// Recent grid values for the estimator, newest last.
    window: std::collections::VecDeque<f64>,
    /// The same values, sorted (kept sorted incrementally).
    sorted_window: Vec<f64>,
    /// Past predictions waiting for their target (for the running error).
    pending: std::collections::VecDeque<f64>,
    mse: f64,
    /// The same over a longer past (a fifth of the smoothing weight).
    mse_slow: f64,
    /// The two previous predictions (older first), for the predicted speed.
    prev_predictions: [f64; 2],
    prediction: f64,
    estimate: BreathingEstimate,
    reference_mm: Option<f64>,
    re_references: usize,
    correlation: Option<CorrelationModel>,
    /// Which side is exhale (decided with hysteresis).
    exhale_low: Option<bool>,
    // Period and phase.
    inhale_armed: bool,
    last_crossing_s: Option<f64>,
    periods: std::collections::VecDeque<f64>,
    // Breath-hold detection.
    hold: Option<(f64, f64)>,
}

impl Respiration {
    /// A processor with no samples and no reference.
    #[must_use]
    pub fn new(cfg: RespirationConfig) -> Self {
        Self {
            horizon: cfg.horizon_samples(),
            predictor: AnyPredictor::new(&cfg),
            cfg,
            last: None,
            count: 0,
            started_s: 0.0,
            window: std::collections::VecDeque::new(),
            sorted_window: Vec::new(),
            pending: std::collections::VecDeque::new(),
            mse: 1.0,
            mse_slow: 1.0,
            prev_predictions: [0.0; 2],
            prediction: 0.0,
            estimate: BreathingEstimate::default(),
            reference_mm: None,
            re_references: 0,
            correlation: None,
            exhale_low: None,
            inhale_armed: false,
            last_crossing_s: None,
            periods: std::collections::VecDeque::new(),
            hold: None,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &RespirationConfig {
        &self.cfg
    }

    /// Sets the reference level (the surrogate during the planning or a checkpoint CT, RESP-3).
    pub fn set_reference(&mut self, level_mm: f64) {
        if level_mm.is_finite() {
            self.reference_mm = Some(level_mm);
            self.re_references += 1;
        }
    }

    /// Sets the surrogate -> target correlation model (fitted from checkpoint CTs).
    pub fn set_correlation(&mut self, model: CorrelationModel) {
        self.correlation = Some(model);
    }

    fn predicted_target_offset(&self) -> Option<[f64; 3]> {
        let (m, r) = (self.correlation?, self.reference_mm?);
        let v = (self.prediction - self.prev_predictions[0]) / (2.0 * self.cfg.period_s);
        let (at, base) = (m.offset_mm(self.prediction, v), m.offset_mm(r, 0.0));
        let d = [at[0] - base[0], at[1] - base[1], at[2] - base[2]];
        d.iter().all(|x| x.is_finite()).then_some(d)
    }

    /// The reference level.
    #[must_use]
    pub fn reference(&self) -> Option<f64> {
        self.reference_mm
    }

    /// How often the reference was set (including the first time).
    #[must_use]
    pub fn re_references(&self) -> usize {
        self.re_references
    }

    /// The current estimate.
    #[must_use]
    pub fn estimate(&self) -> BreathingEstimate {
        self.estimate
    }

    /// The surrogate predicted at the horizon.
    #[must_use]
    pub fn prediction(&self) -> f64 {
        self.prediction
    }

    /// Takes one sample.
    ///
    /// # Errors
    /// [`SampleRefused`] for a non-finite value or time, or a time that does not advance; the
    /// processor is unchanged.
    pub fn push(&mut self, s: Sample) -> Result<(), SampleRefused> {
        if !(s.t_s.is_finite() && s.value_mm.is_finite()) {
            return Err(SampleRefused::NotFinite { t_s: s.t_s, value_mm: s.value_mm });
        }
        if s.value_mm.abs() > MAX_ABS_VALUE_MM {
            return Err(SampleRefused::OutOfRange { value_mm: s.value_mm });
        }
        if let Some(last) = self.last {
            if s.t_s <= last.t_s {
                return Err(SampleRefused::NotAdvancing { t_s: s.t_s, last_s: last.t_s });
            }
            let gap = s.t_s - last.t_s;
            if gap > self.cfg.max_gap_s.max(1.5 * self.cfg.period_s) {
                self.restart();
            } else {
                // Fill the grid points a gap skipped (more than 1.5 periods apart).
                let missing = ((gap / self.cfg.period_s).round() as usize).saturating_sub(1);
                for k in 1..=missing {
                    let f = k as f64 / (missing + 1) as f64;
                    self.step(Sample {
                        t_s: last.t_s + f * gap,
                        value_mm: last.value_mm + f * (s.value_mm - last.value_mm),
                    });
                }
            }
        }
        self.step(s);
        Ok(())
    }

    fn restart(&mut self) {
        let (reference, re, corr) = (self.reference_mm, self.re_references, self.correlation);
        *self = Self::new(self.cfg.clone());
        self.reference_mm = reference;
        self.re_references = re;
        self.correlation = corr;
    }

    fn step(&mut self, s: Sample) {
        let dt = self.cfg.period_s;
        // Running prediction error.
        if self.pending.len() >= self.horizon {
            if let Some(p) = self.pending.pop_front() {
                let a = self.cfg.error_smoothing;
                let b = a / crate::predict::LONG_RUN_SMOOTHING_DIVISOR;
                self.mse = (1.0 - a) * self.mse + a * (p - s.value_mm).powi(2);
                self.mse_slow = (1.0 - b) * self.mse_slow + b * (p - s.value_mm).powi(2);
            }
        }
        self.predictor.as_dyn().push(s.value_mm);
        self.prev_predictions =
            if self.count == 0 { [s.value_mm; 2] } else { [self.prev_predictions[1], self.prediction] };
        self.prediction = self.predictor.predict();
        self.pending.push_back(self.prediction);
        if self.count == 0 {
            self.started_s = s.t_s;
        }
        self.count += 1;
        let prev = self.last.map_or(s.value_mm, |l| l.value_mm);
        self.last = Some(s);

        // Amplitude and end-exhale baseline over the recent window.
        let keep = ((self.cfg.baseline_window_s / dt).round() as usize).max(8);
        self.window.push_back(s.value_mm);
        let at = self.sorted_window.partition_point(|v| *v < s.value_mm);
        self.sorted_window.insert(at, s.value_mm);
        while self.window.len() > keep {
            if let Some(old) = self.window.pop_front() {
                let at = self.sorted_window.partition_point(|v| *v < old);
                if at < self.sorted_window.len() {
                    self.sorted_window.remove(at);
                }
            }
        }
        let sorted = &self.sorted_window;
        let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        let (lo, hi) = (pct(0.05), pct(0.95));
        let range = (hi - lo).max(1e-9);
        let below = |x: f64| sorted.partition_point(|v| *v < x);
        let low_dwell = below(lo + 0.25 * range);
        let high_dwell = sorted.len() - sorted.partition_point(|v| *v <= lo + 0.75 * range);
        // The exhale side is where the signal dwells; flipping needs a clear majority, so a
        // symmetric signal does not swap sides from one sample to the next.
        let exhale_low = match self.exhale_low {
            None => low_dwell >= high_dwell,
            Some(true) => 2 * high_dwell <= 3 * low_dwell,
            Some(false) => 2 * low_dwell > 3 * high_dwell,
        };
        self.exhale_low = Some(exhale_low);
        // End-exhale level: the median of the samples within `exhale_fraction` of the range from
        // the exhale extreme.
        let f = self.cfg.exhale_fraction;
        let baseline = if exhale_low {
            let k = below(lo + f * range);
            if k == 0 {
                lo
            } else {
                sorted[k / 2]
            }
        } else {
            let j = sorted.partition_point(|v| *v <= hi - f * range);
            if j >= sorted.len() {
                hi
            } else {
                sorted[j + (sorted.len() - j) / 2]
            }
        };
        self.estimate.amplitude_mm = hi - lo;
        self.estimate.baseline_mm = baseline;
        self.estimate.exhale_low = exhale_low;

        // Period: successive inhale-going crossings of mid-range (hysteresis 10 % of amplitude).
        let sign = if exhale_low { 1.0 } else { -1.0 };
        let u = sign * (s.value_mm - 0.5 * (lo + hi));
        let amp = 0.5 * range;
        if u < -0.1 * amp {
            self.inhale_armed = true;
        }
        if self.inhale_armed && u > 0.1 * amp && range > 0.2 {
            self.inhale_armed = false;
            if let Some(t0) = self.last_crossing_s {
                let p = s.t_s - t0;
                if (1.0..=15.0).contains(&p) {
                    self.periods.push_back(p);
                    if self.periods.len() > 5 {
                        self.periods.pop_front();
                    }
                }
            }
            self.last_crossing_s = Some(s.t_s);
        }
        let mut ps: Vec<f64> = self.periods.iter().copied().collect();
        ps.sort_by(f64::total_cmp);
        self.estimate.period_s = ps.get(ps.len() / 2).copied().unwrap_or(0.0);
        // Phase from the phase plane: u = -A cos(theta), du/dt = A omega sin(theta), with the
        // central difference at the previous sample advanced by one step.
        self.estimate.phase = (self.estimate.period_s > 0.0 && amp > 1e-6).then(|| {
            let omega = std::f64::consts::TAU / self.estimate.period_s;
            let x = (sign * (prev - 0.5 * (lo + hi)) / amp).clamp(-1.5, 1.5);
            let before = self.window.len().checked_sub(3).and_then(|i| self.window.get(i)).copied().unwrap_or(prev);
            let v = sign * (s.value_mm - before) / (2.0 * dt) / (amp * omega);
            let theta = v.atan2(-x) + omega * dt;
            theta.rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU
        });

        // Breath-hold: over the last `hold_detect_s`, the signal spans no more than the detection
        // speed allows (a range, not a sample-to-sample speed, so sensor noise does not break a
        // hold and a natural end-exhale pause is too short to count as one).
        let n = ((self.cfg.hold_detect_s / dt).round() as usize).max(2);
        let slow = self.window.len() >= n && {
            let (lo, hi) = self
                .window
                .iter()
                .rev()
                .take(n)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
            hi - lo <= self.cfg.hold_speed_mm_per_s * self.cfg.hold_detect_s
        };
        if !slow {
            self.hold = None;
        } else if self.hold.is_none() {
            let level = self.window.iter().rev().nth(n - 1).copied().unwrap_or(s.value_mm);
            self.hold = Some((s.t_s - (n - 1) as f64 * dt, level));
        }
        self.estimate.hold_s = self.hold.map(|(t0, _)| s.t_s - t0);

        // RESP-3: the reference follows the baseline when configured to.
        if self.cfg.on_drift == OnDrift::ReReference && s.t_s - self.started_s >= self.cfg.warmup_s {
            match self.reference_mm {
                None => self.set_reference(baseline),
                Some(r) if (baseline - r).abs() > self.cfg.max_drift_mm => self.set_reference(baseline),
                _ => {}
            }
        }
    }

    /// The gate at time `now_s` (any time; a decision needs no new sample, so a silent input
    /// closes the gate).
    #[must_use]
    pub fn decide(&self, now_s: f64) -> GateOutput {
        // The larger of the recent and the longer-run error: a calm spell in irregular breathing
        // does not earn the prediction a trust that the next irregular breath breaks.
        let confidence = self.mse.max(self.mse_slow).sqrt();
        let mut out = GateOutput {
            open: false,
            reason: GateReason::NoSignal,
            predicted_mm: self.prediction,
            offset_from_reference_mm: self.reference_mm.map(|r| self.prediction - r),
            predicted_target_offset_mm: self.predicted_target_offset(),
            confidence_mm: confidence,
            recent_error_mm: self.mse.sqrt(),
            valid_until_s: self.last.map_or(f64::NEG_INFINITY, |l| l.t_s + self.cfg.stale_after_s),
            estimate: self.estimate,
        };
        let Some(last) = self.last else { return out };
        out.reason = self.reason(now_s, last, confidence);
        out.open = out.reason == GateReason::Open;
        out
    }

    fn reason(&self, now_s: f64, last: Sample, confidence: f64) -> GateReason {
        let c = &self.cfg;
        if !now_s.is_finite() || now_s - last.t_s > c.stale_after_s || now_s < last.t_s - c.stale_after_s {
            return GateReason::Stale;
        }
        if last.t_s - self.started_s < c.warmup_s {
            return GateReason::WarmingUp;
        }
        let Some(reference) = self.reference_mm else { return GateReason::NoReference };
        if (self.estimate.baseline_mm - reference).abs() > c.max_drift_mm && c.mode == GateMode::FreeBreathing {
            return GateReason::DriftNeedsReReference;
        }
        if c.mode == GateMode::BreathHold {
            let Some((t0, level)) = self.hold else { return GateReason::NotHolding };
            if last.t_s - t0 > c.max_hold_s || now_s - t0 > c.max_hold_s {
                return GateReason::BreathHoldTooLong;
            }
            if (last.value_mm - level).abs() > c.hold_max_drift_mm {
                return GateReason::BreathHoldDrift;
            }
        }
        // A NaN error is untrusted too.
        let trusted = confidence.is_finite() && confidence <= c.max_prediction_error_mm;
        if !trusted {
            return GateReason::PredictionUntrusted;
        }
        // Written so that a NaN anywhere closes the gate.
        let margin = (self.prediction - reference).abs() + c.confidence_factor * confidence;
        let inside = margin.is_finite() && margin <= c.window_half_width_mm;
        if !inside {
            return GateReason::OutsideWindow;
        }
        // Predicted speed over two steps (one step is noisier).
        let speed = (self.prediction - self.prev_predictions[0]).abs() / (2.0 * c.period_s);
        let still = speed.is_finite() && speed <= c.max_speed_mm_per_s;
        if !still {
            return GateReason::Moving;
        }
        GateReason::Open
    }
}
