//! From any surrogate sensor to the processor's input: samples at the working rate in millimetres.
//!
//! Sensors come at 10-2000 Hz in their own units (a belt in ADC counts, impedance in ohms, an
//! optical marker in mm). The predictors work at one rate (`[sampling] period_ms`: their horizon
//! and windows are counted in samples) and the gate's limits are millimetres (RESP-2's window is
//! "+/-2 to +/-4 mm equivalent"). The [`Conditioner`]:
//!
//! - **resamples**: a sensor faster than twice the working rate is averaged over each working
//!   period (a boxcar, the anti-alias filter of the decimation), timed at the mean time of the
//!   samples averaged; a slower one passes sample by sample (the processor fills gaps);
//! - **calibrates**: millimetres are the sensor's value times `mm_per_unit` when it is known (a
//!   sensor in mm, or one calibrated against the liver's motion through the correlation model),
//!   else the breathing amplitude of the first `calibrate_s` (5th-95th percentile, the processor's
//!   own amplitude measure) is taken as `nominal_amplitude_mm`, and the scale is fixed from then
//!   on: the gate works in the sensor's units with its window a fixed fraction of the amplitude
//!   measured before the planning CT. Until then nothing reaches the processor (its warm-up
//!   starts after); an uncalibrated sensor's first value is its zero, so a large offset (a 24-bit
//!   ADC) keeps the values small.

use std::collections::VecDeque;

use crate::gate::Sample;

/// How a sensor's values become millimetres.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// Millimetres per unit (1 for a sensor in mm).
    MmPerUnit(f64),
    /// Uncalibrated: the amplitude over the first `after_s` of signal is `nominal_mm`.
    FromAmplitude {
        /// The millimetres the measured amplitude stands for.
        nominal_mm: f64,
        /// Signal measured before the scale is fixed, s.
        after_s: f64,
    },
}

/// The calibration's state, for the console and the log.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Scale {
    /// The scale is known: mm per unit, and the zero subtracted (units).
    Fixed {
        /// Millimetres per unit.
        mm_per_unit: f64,
        /// Subtracted before scaling, units.
        zero: f64,
        /// The amplitude it was measured from, units (`None`: configured).
        amplitude: Option<f64>,
    },
    /// Measuring: this much signal so far, s.
    Measuring {
        /// Signal seen, s.
        seen_s: f64,
    },
    /// The signal over the calibration time has no breathing in it (a range of zero): still
    /// measuring, over the newest `after_s`.
    Flat {
        /// The range found, units.
        range: f64,
    },
}

/// Raw sensor samples in, working-rate millimetre samples out.
#[derive(Clone, Debug)]
pub struct Conditioner {
    period_s: f64,
    calibration: Calibration,
    scale: Scale,
    /// Working-rate samples in sensor units, before the scale is known.
    pending: VecDeque<Sample>,
    /// The open bin: its index, the sums of time and value, the count.
    bin: Option<(i64, f64, f64, u32)>,
    /// Running mean raw interval, s.
    interval_s: Option<f64>,
    last_t: Option<f64>,
}

impl Conditioner {
    /// A conditioner to `period_s` (the processor's `period_s`) with `calibration`.
    #[must_use]
    pub fn new(period_s: f64, calibration: Calibration) -> Self {
        let scale = match calibration {
            Calibration::MmPerUnit(k) => Scale::Fixed { mm_per_unit: k, zero: 0.0, amplitude: None },
            Calibration::FromAmplitude { .. } => Scale::Measuring { seen_s: 0.0 },
        };
        Conditioner {
            period_s,
            calibration,
            scale,
            pending: VecDeque::new(),
            bin: None,
            interval_s: None,
            last_t: None,
        }
    }

    /// The calibration now.
    #[must_use]
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// Millimetres per sensor unit, once known.
    #[must_use]
    pub fn mm_per_unit(&self) -> Option<f64> {
        match self.scale {
            Scale::Fixed { mm_per_unit, .. } => Some(mm_per_unit),
            _ => None,
        }
    }

    /// One sensor sample (`value_mm` in the sensor's units): the working-rate samples in mm it
    /// completes, in time order, to `out`. A non-finite or non-advancing sample is passed on
    /// as it is (the processor refuses it, with its reason).
    pub fn push(&mut self, s: Sample, out: &mut dyn FnMut(Sample)) {
        if !(s.t_s.is_finite() && s.value_mm.is_finite()) || self.last_t.is_some_and(|t| s.t_s <= t) {
            self.emit(s, out);
            return;
        }
        if let Some(t) = self.last_t {
            let d = s.t_s - t;
            self.interval_s = Some(self.interval_s.map_or(d, |m| 0.9 * m + 0.1 * d));
        }
        self.last_t = Some(s.t_s);
        let fast = self.interval_s.is_some_and(|d| d < 0.5 * self.period_s);
        if !fast {
            self.flush_bin(out);
            self.emit(s, out);
            return;
        }
        let k = (s.t_s / self.period_s).floor() as i64;
        match self.bin {
            Some((b, st, sv, n)) if b == k => self.bin = Some((b, st + s.t_s, sv + s.value_mm, n + 1)),
            _ => {
                self.flush_bin(out);
                self.bin = Some((k, s.t_s, s.value_mm, 1));
            }
        }
    }

    fn flush_bin(&mut self, out: &mut dyn FnMut(Sample)) {
        if let Some((_, st, sv, n)) = self.bin.take() {
            let n = f64::from(n);
            self.emit(Sample { t_s: st / n, value_mm: sv / n }, out);
        }
    }

    /// A working-rate sample in units: scaled and passed on, or kept until the scale is known.
    fn emit(&mut self, s: Sample, out: &mut dyn FnMut(Sample)) {
        if let Scale::Fixed { mm_per_unit, zero, .. } = self.scale {
            out(Sample { t_s: s.t_s, value_mm: (s.value_mm - zero) * mm_per_unit });
            return;
        }
        let Calibration::FromAmplitude { nominal_mm, after_s } = self.calibration else { return };
        if !(s.t_s.is_finite() && s.value_mm.is_finite()) {
            return;
        }
        self.pending.push_back(s);
        // Bounded while flat: the newest two calibration times are kept.
        while self.pending.front().is_some_and(|f| f.t_s < s.t_s - 2.0 * after_s) {
            self.pending.pop_front();
        }
        let seen = s.t_s - self.pending.front().map_or(s.t_s, |f| f.t_s);
        if seen < after_s {
            if !matches!(self.scale, Scale::Flat { .. }) {
                self.scale = Scale::Measuring { seen_s: seen };
            }
            return;
        }
        let mut v: Vec<f64> = self.pending.iter().filter(|p| p.t_s >= s.t_s - after_s).map(|p| p.value_mm).collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        let range = at(0.95) - at(0.05);
        if !(range.is_finite() && range > 1e-9 * at(0.5).abs().max(1e-12)) {
            self.scale = Scale::Flat { range };
            return;
        }
        let zero = self.pending.front().map_or(0.0, |f| f.value_mm);
        self.scale = Scale::Fixed { mm_per_unit: nominal_mm / range, zero, amplitude: Some(range) };
        for p in std::mem::take(&mut self.pending) {
            out(Sample { t_s: p.t_s, value_mm: (p.value_mm - zero) * nominal_mm / range });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut Conditioner, samples: impl IntoIterator<Item = Sample>) -> Vec<Sample> {
        let mut out = Vec::new();
        for s in samples {
            c.push(s, &mut |o| out.push(o));
        }
        out
    }

    fn breathing(rate_hz: f64, secs: f64, units_per_mm: f64, zero: f64) -> Vec<Sample> {
        let n = (rate_hz * secs) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / rate_hz;
                let mm = 10.0 * (std::f64::consts::PI * t / 4.0).sin().powi(6);
                Sample { t_s: t, value_mm: zero + mm * units_per_mm }
            })
            .collect()
    }

    #[test]
    fn a_fast_sensor_is_averaged_to_the_working_rate_timed_at_its_mean_time() {
        let mut c = Conditioner::new(0.1, Calibration::MmPerUnit(1.0));
        let out = run(&mut c, breathing(1000.0, 20.0, 1.0, 0.0));
        // 200 working periods, the last still open (and the very first sample on its own: no
        // rate is known before the second).
        assert!((198..=201).contains(&out.len()), "{}", out.len());
        assert!(out[1..].windows(2).all(|w| (w[1].t_s - w[0].t_s - 0.1).abs() < 2e-3), "evenly spaced");
        // Each is the mean of its period's samples, at their mean time: close to the signal there.
        for s in &out[20..] {
            let mm = 10.0 * (std::f64::consts::PI * s.t_s / 4.0).sin().powi(6);
            assert!((s.value_mm - mm).abs() < 0.05, "{s:?} against {mm}");
        }
    }

    #[test]
    fn a_sensor_at_the_working_rate_or_slower_passes_unchanged() {
        let samples = breathing(10.0, 20.0, 1.0, 0.0);
        let mut c = Conditioner::new(0.1, Calibration::MmPerUnit(1.0));
        assert_eq!(run(&mut c, samples.clone()), samples);
        let slow: Vec<Sample> = breathing(4.0, 20.0, 1.0, 0.0);
        let mut c = Conditioner::new(0.1, Calibration::MmPerUnit(1.0));
        assert_eq!(run(&mut c, slow.clone()), slow);
    }

    #[test]
    fn an_uncalibrated_sensor_is_scaled_so_its_amplitude_is_the_nominal_one_and_stays_so() {
        // ADC counts: 2048 at end-exhale, 40 counts per mm.
        let cal = Calibration::FromAmplitude { nominal_mm: 10.0, after_s: 10.0 };
        let mut c = Conditioner::new(0.1, cal);
        let first = run(&mut c, breathing(1000.0, 9.0, 40.0, 2048.0));
        assert!(first.is_empty(), "nothing before the scale is known");
        assert!(matches!(c.scale(), Scale::Measuring { seen_s } if seen_s > 8.0));
        let rest = run(&mut c, breathing(1000.0, 30.0, 40.0, 2048.0).into_iter().skip(9000));
        let Scale::Fixed { mm_per_unit, amplitude: Some(a), .. } = c.scale() else { panic!("{:?}", c.scale()) };
        // The 5th-95th percentile range of this breath shape is most of its 400 counts.
        assert!(a > 250.0 && a < 400.0, "{a}");
        assert!((mm_per_unit - 10.0 / a).abs() < 1e-12);
        // Everything measured is handed on at once, in order, then the rest as it comes.
        assert!(rest.len() > 250 && rest.windows(2).all(|w| w[1].t_s > w[0].t_s));
        assert!(rest[0].t_s < 0.2, "from the start: {:?}", rest[0]);
        let (lo, hi) = rest.iter().fold((f64::MAX, f64::MIN), |(a, b), s| (a.min(s.value_mm), b.max(s.value_mm)));
        assert!(lo.abs() < 0.5 && (hi - lo) > 10.0 && (hi - lo) < 17.0, "{lo} {hi}");
        // A louder breathing later does not change the scale.
        let _ = run(&mut c, breathing(1000.0, 40.0, 80.0, 2048.0).into_iter().skip(30_000));
        assert_eq!(c.mm_per_unit(), Some(mm_per_unit));
    }

    #[test]
    fn a_flat_signal_is_never_scaled() {
        let mut c = Conditioner::new(0.1, Calibration::FromAmplitude { nominal_mm: 10.0, after_s: 5.0 });
        let flat = (0..20_000).map(|i| Sample { t_s: f64::from(i) * 0.001, value_mm: 512.0 });
        assert!(run(&mut c, flat).is_empty());
        assert!(matches!(c.scale(), Scale::Flat { .. }), "{:?}", c.scale());
    }
}
