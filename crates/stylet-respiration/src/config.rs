//! `config/respiration.toml`: every limit with the rule it enforces (RESP-1..3).

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{parse_toml, read_toml, Checker, ConfigError};

/// Which predictor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// No prediction (the last sample).
    Hold,
    /// RLS on multi-scale features.
    WaveletRls,
    /// Nearest neighbours among past breaths.
    Pattern,
    /// An echo-state network with an online-trained read-out.
    Reservoir,
    /// All three, weighted by recent accuracy.
    Combined,
}

/// Gating mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// End-exhale window during free breathing.
    FreeBreathing,
    /// Open only inside a detected breath-hold (RESP-1).
    BreathHold,
}

/// What a drift of the baseline beyond the limit does (RESP-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDrift {
    /// Close the gate until re-referenced.
    Close,
    /// Take the baseline as the new reference.
    ReReference,
}

/// The respiration settings in internal units (seconds, mm).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RespirationConfig {
    /// Nominal sample period, s.
    pub period_s: f64,
    /// Longest gap filled by interpolation, s.
    pub max_gap_s: f64,
    /// Input older than this closes the gate, s.
    pub stale_after_s: f64,
    /// Prediction horizon, s.
    pub horizon_s: f64,
    /// Predictor.
    pub method: Method,
    /// Wavelet levels.
    pub wavelet_levels: usize,
    /// Taps per level.
    pub wavelet_taps: usize,
    /// RLS forgetting factor.
    pub rls_forgetting: f64,
    /// Pattern window, samples.
    pub pattern_window: usize,
    /// Pattern neighbours.
    pub pattern_neighbours: usize,
    /// Pattern history, s.
    pub pattern_history_s: f64,
    /// Reservoir units (0: none in the blend).
    pub reservoir_units: usize,
    /// Reservoir spectral radius.
    pub reservoir_spectral_radius: f64,
    /// Reservoir leak rate.
    pub reservoir_leak: f64,
    /// Reservoir input scale.
    pub reservoir_input_scale: f64,
    /// Reservoir read-out RLS forgetting factor.
    pub reservoir_forgetting: f64,
    /// Error smoothing weight.
    pub error_smoothing: f64,
    /// Baseline window, s.
    pub baseline_window_s: f64,
    /// Exhale fraction of the range.
    pub exhale_fraction: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// Gating mode.
    pub mode: GateMode,
    /// RESP-2 window half-width, mm.
    pub window_half_width_mm: f64,
    /// Largest predicted speed with the gate open, mm/s.
    pub max_speed_mm_per_s: f64,
    /// Prediction-error margin factor.
    pub confidence_factor: f64,
    /// A running RMS prediction error above this closes the gate (`prediction_untrusted`), mm.
    pub max_prediction_error_mm: f64,
    /// RESP-2, final approach: the last `final_approach_mm` of each insertion step start only
    /// with the gate open and the predicted signal (plus its error) within this of the current
    /// end-exhale level, so the tip stops while the liver is stillest, mm.
    pub final_approach_half_width_mm: f64,
    /// Length of that final approach, mm.
    pub final_approach_mm: f64,
    /// RESP-3 drift limit, mm.
    pub max_drift_mm: f64,
    /// RESP-3 reaction.
    pub on_drift: OnDrift,
    /// RESP-1 longest hold, s.
    pub max_hold_s: f64,
    /// Hold detection speed, mm/s.
    pub hold_speed_mm_per_s: f64,
    /// Hold detection time, s.
    pub hold_detect_s: f64,
    /// Largest drift within a hold, mm.
    pub hold_max_drift_mm: f64,
    /// The surrogate sensor's unit ("mm" or any other name).
    pub sensor_unit: String,
    /// Its millimetres per unit, when calibrated (1 for "mm").
    pub sensor_mm_per_unit: Option<f64>,
    /// Uncalibrated: the breathing amplitude measured first stands for this, mm.
    pub nominal_amplitude_mm: f64,
    /// ... measured over this much signal, s.
    pub calibrate_s: f64,
}

impl Default for RespirationConfig {
    /// The values of the shipped config/respiration.toml.
    fn default() -> Self {
        Self {
            period_s: 0.1,
            max_gap_s: 1.0,
            stale_after_s: 0.3,
            horizon_s: 0.4,
            method: Method::Combined,
            wavelet_levels: 4,
            wavelet_taps: 2,
            rls_forgetting: 0.995,
            pattern_window: 16,
            pattern_neighbours: 10,
            pattern_history_s: 120.0,
            reservoir_units: 40,
            reservoir_spectral_radius: 0.9,
            reservoir_leak: 0.5,
            reservoir_input_scale: 0.5,
            reservoir_forgetting: 0.999,
            error_smoothing: 0.02,
            baseline_window_s: 20.0,
            exhale_fraction: 0.2,
            warmup_s: 10.0,
            mode: GateMode::FreeBreathing,
            window_half_width_mm: 3.0,
            max_speed_mm_per_s: 5.0,
            confidence_factor: 1.0,
            max_prediction_error_mm: 3.0,
            final_approach_half_width_mm: 0.6,
            final_approach_mm: 2.0,
            max_drift_mm: 2.0,
            on_drift: OnDrift::Close,
            max_hold_s: 20.0,
            hold_speed_mm_per_s: 0.6,
            hold_detect_s: 2.0,
            hold_max_drift_mm: 2.0,
            sensor_unit: "mm".into(),
            sensor_mm_per_unit: Some(1.0),
            nominal_amplitude_mm: 10.0,
            calibrate_s: 10.0,
        }
    }
}

impl RespirationConfig {
    /// Loads the file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(path, read_toml(path)?)
    }

    /// Parses TOML text as if read from `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn from_toml_str(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_raw(path, parse_toml(path, text)?)
    }

    /// How a sensor reading `unit` becomes millimetres: the configured sensor's scale when it is
    /// that sensor's unit (or mm), else (uncalibrated) from its breathing amplitude.
    #[must_use]
    pub fn calibration_for(&self, unit: &str) -> crate::Calibration {
        let configured = if unit == self.sensor_unit { self.sensor_mm_per_unit } else { None };
        match configured {
            Some(k) => crate::Calibration::MmPerUnit(k),
            None if unit == "mm" => crate::Calibration::MmPerUnit(1.0),
            None => {
                crate::Calibration::FromAmplitude { nominal_mm: self.nominal_amplitude_mm, after_s: self.calibrate_s }
            }
        }
    }

    /// The configured sensor's calibration.
    #[must_use]
    pub fn calibration(&self) -> crate::Calibration {
        self.calibration_for(&self.sensor_unit)
    }

    /// The prediction horizon in samples at the nominal period (at least 1).
    #[must_use]
    pub fn horizon_samples(&self) -> usize {
        ((self.horizon_s / self.period_s).round() as usize).max(1)
    }

    fn from_raw(path: &Path, raw: Raw) -> Result<Self, ConfigError> {
        let mut c = Checker::new();
        let rule = |c: &mut Checker, key: &str, got: &str, want: &str| {
            c.require(got == want, key, format!("{got:?}"), format!("this section enforces {want}"));
        };
        rule(&mut c, "gating.rule", &raw.gating.rule, "RESP-2");
        rule(&mut c, "reference.rule", &raw.reference.rule, "RESP-3");
        rule(&mut c, "breath_hold.rule", &raw.breath_hold.rule, "RESP-1");
        let s = &raw.sampling;
        let period_ms = c.range("sampling.period_ms", s.period_ms, 1.0, 1000.0);
        let max_gap_ms = c.range("sampling.max_gap_ms", s.max_gap_ms, 0.0, 10_000.0);
        let stale_ms = c.range("sampling.stale_after_ms", s.stale_after_ms, 1.0, 5000.0);
        c.require(
            stale_ms >= period_ms,
            "sampling.stale_after_ms",
            stale_ms,
            "must be at least sampling.period_ms (else every input is stale)",
        );
        let p = &raw.prediction;
        let horizon_ms = c.range("prediction.horizon_ms", p.horizon_ms, 0.0, 2000.0);
        let g = &raw.gating;
        let b = &raw.breath_hold;
        let hw = c.range("gating.window_half_width_mm", g.window_half_width_mm, 0.1, 20.0);
        c.require((2.0..=4.0).contains(&hw), "gating.window_half_width_mm", hw, "RESP-2 allows +/-2 to +/-4 mm");
        let max_hold = c.range("breath_hold.max_hold_s", b.max_hold_s, 1.0, 60.0);
        c.require(max_hold <= 20.0, "breath_hold.max_hold_s", max_hold, "RESP-1 allows at most 20 s");
        let drift = c.range("reference.max_drift_mm", raw.reference.max_drift_mm, 0.1, 20.0);
        c.require(drift <= 2.0, "reference.max_drift_mm", drift, "RESP-3 re-references beyond 2 mm");
        let cfg = RespirationConfig {
            period_s: period_ms * 1e-3,
            max_gap_s: max_gap_ms * 1e-3,
            stale_after_s: stale_ms * 1e-3,
            horizon_s: horizon_ms * 1e-3,
            method: p.method,
            wavelet_levels: p.wavelet_levels,
            wavelet_taps: p.wavelet_taps,
            rls_forgetting: c.range("prediction.rls_forgetting", p.rls_forgetting, 0.9, 1.0),
            pattern_window: p.pattern_window,
            pattern_neighbours: p.pattern_neighbours,
            pattern_history_s: c.range("prediction.pattern_history_s", p.pattern_history_s, 5.0, 3600.0),
            reservoir_units: p.reservoir_units,
            reservoir_spectral_radius: c.range(
                "prediction.reservoir_spectral_radius",
                p.reservoir_spectral_radius,
                0.05,
                0.999,
            ),
            reservoir_leak: c.range("prediction.reservoir_leak", p.reservoir_leak, 0.01, 1.0),
            reservoir_input_scale: c.range("prediction.reservoir_input_scale", p.reservoir_input_scale, 0.01, 10.0),
            reservoir_forgetting: c.range("prediction.reservoir_forgetting", p.reservoir_forgetting, 0.9, 1.0),
            error_smoothing: c.range("prediction.error_smoothing", p.error_smoothing, 1e-4, 1.0),
            baseline_window_s: c.range("estimation.baseline_window_s", raw.estimation.baseline_window_s, 2.0, 600.0),
            exhale_fraction: c.range("estimation.exhale_fraction", raw.estimation.exhale_fraction, 0.05, 0.5),
            warmup_s: c.range("estimation.warmup_s", raw.estimation.warmup_s, 0.0, 600.0),
            mode: g.mode,
            window_half_width_mm: hw,
            max_speed_mm_per_s: c.positive("gating.max_speed_mm_per_s", g.max_speed_mm_per_s),
            confidence_factor: c.range("gating.confidence_factor", g.confidence_factor, 0.0, 10.0),
            max_prediction_error_mm: {
                let e = c.range("gating.max_prediction_error_mm", g.max_prediction_error_mm, 0.05, 20.0);
                c.require(e <= hw, "gating.max_prediction_error_mm", e, "must be within the RESP-2 window");
                e
            },
            final_approach_half_width_mm: {
                let f = c.range("gating.final_approach_half_width_mm", g.final_approach_half_width_mm, 0.1, 4.0);
                c.require(f <= hw, "gating.final_approach_half_width_mm", f, "must be within the RESP-2 window");
                f
            },
            final_approach_mm: c.range("gating.final_approach_mm", g.final_approach_mm, 0.0, 50.0),
            max_drift_mm: drift,
            on_drift: raw.reference.on_drift,
            max_hold_s: max_hold,
            hold_speed_mm_per_s: c.positive("breath_hold.detect_speed_mm_per_s", b.detect_speed_mm_per_s),
            hold_detect_s: c.range("breath_hold.detect_after_s", b.detect_after_s, 0.1, 10.0),
            hold_max_drift_mm: c.positive("breath_hold.max_drift_mm", b.max_drift_mm),
            sensor_unit: raw.sensor.unit.clone(),
            sensor_mm_per_unit: sensor_scale(&mut c, &raw.sensor),
            nominal_amplitude_mm: c.range("sensor.nominal_amplitude_mm", raw.sensor.nominal_amplitude_mm, 1.0, 50.0),
            calibrate_s: c.range("sensor.calibrate_s", raw.sensor.calibrate_s, 2.0, 120.0),
        };
        c.count("prediction.wavelet_levels", cfg.wavelet_levels, 1, 8);
        c.count("prediction.wavelet_taps", cfg.wavelet_taps, 1, 8);
        c.count("prediction.pattern_window", cfg.pattern_window, 2, 256);
        c.count("prediction.pattern_neighbours", cfg.pattern_neighbours, 1, 256);
        if cfg.reservoir_units > 0 || cfg.method == Method::Reservoir {
            c.count("prediction.reservoir_units", cfg.reservoir_units, 2, 200);
        }
        c.finish(path, cfg)
    }
}

/// `[sensor]`: a sensor in mm has 1 mm per unit; one in other units `mm_per_unit` or none.
fn sensor_scale(c: &mut Checker, s: &RawSensor) -> Option<f64> {
    c.require(
        !s.unit.trim().is_empty(),
        "sensor.unit",
        format!("{:?}", s.unit),
        "name the unit (\"mm\", \"counts\", ...)",
    );
    match s.mm_per_unit {
        Some(k) => {
            let k = c.positive("sensor.mm_per_unit", k);
            c.require(
                s.unit != "mm" || (k - 1.0).abs() < 1e-12,
                "sensor.mm_per_unit",
                k,
                "a sensor in mm has 1 mm per unit",
            );
            Some(k)
        }
        None if s.unit == "mm" => Some(1.0),
        None => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensor {
    unit: String,
    mm_per_unit: Option<f64>,
    nominal_amplitude_mm: f64,
    calibrate_s: f64,
}

impl Default for RawSensor {
    fn default() -> Self {
        RawSensor { unit: "mm".into(), mm_per_unit: None, nominal_amplitude_mm: 10.0, calibrate_s: 10.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    sensor: RawSensor,
    sampling: RawSampling,
    prediction: RawPrediction,
    estimation: RawEstimation,
    gating: RawGating,
    reference: RawReference,
    breath_hold: RawBreathHold,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampling {
    period_ms: f64,
    max_gap_ms: f64,
    stale_after_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrediction {
    horizon_ms: f64,
    method: Method,
    wavelet_levels: usize,
    wavelet_taps: usize,
    rls_forgetting: f64,
    pattern_window: usize,
    pattern_neighbours: usize,
    pattern_history_s: f64,
    reservoir_units: usize,
    reservoir_spectral_radius: f64,
    reservoir_leak: f64,
    reservoir_input_scale: f64,
    reservoir_forgetting: f64,
    error_smoothing: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEstimation {
    baseline_window_s: f64,
    exhale_fraction: f64,
    warmup_s: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGating {
    rule: String,
    mode: GateMode,
    window_half_width_mm: f64,
    max_speed_mm_per_s: f64,
    confidence_factor: f64,
    max_prediction_error_mm: f64,
    final_approach_half_width_mm: f64,
    final_approach_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReference {
    rule: String,
    max_drift_mm: f64,
    on_drift: OnDrift,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreathHold {
    rule: String,
    max_hold_s: f64,
    detect_speed_mm_per_s: f64,
    detect_after_s: f64,
    max_drift_mm: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/respiration.toml"))
            .unwrap_or_default()
    }

    #[test]
    fn the_shipped_file_is_the_default() {
        let c = RespirationConfig::from_toml_str(Path::new("respiration.toml"), &shipped());
        assert_eq!(c.ok(), Some(RespirationConfig::default()));
    }

    #[test]
    fn limits_beyond_their_rules_are_refused_with_key_and_value() {
        let text = shipped()
            .replace("window_half_width_mm = 3.0", "window_half_width_mm = 5.0")
            .replace("max_hold_s = 20.0", "max_hold_s = 25.0")
            .replace("rule = \"RESP-3\"", "rule = \"RESP-9\"");
        let err = RespirationConfig::from_toml_str(Path::new("r.toml"), &text).map(|_| ()).unwrap_err().to_string();
        for needle in ["gating.window_half_width_mm", "5", "breath_hold.max_hold_s", "25", "reference.rule", "RESP-9"] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }
}
