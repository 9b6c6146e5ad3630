//! Online prediction of the surrogate `h` samples ahead (the system latency at the nominal
//! sample period). Every predictor is causal: [`Predictor::push`] takes the newest sample and
//! [`Predictor::predict`] uses nothing later.
//!
//! - [`Hold`]: the last sample (what "no prediction" means; the reference for every figure).
//! - [`WaveletRls`]: recursive least squares on a causal a-trous (Haar) multi-scale decomposition
//!   of the recent signal, predicting the change over the horizon directly (the wLMS idea of
//!   Ernst et al. with RLS in place of LMS).
//! - [`PatternMatch`]: nearest neighbours among the past breaths: the recent window (offset
//!   removed) is compared with every window of the last `history` samples, and the changes that
//!   followed the `k` closest are averaged (inverse-distance weights). Breathing repeats itself, so
//!   this captures the asymmetric inhale/exhale shape a linear model smooths over.
//! - [`Reservoir`]: an echo-state network: a fixed random recurrent network driven by the
//!   signal's normalised sample-to-sample change, whose linear read-out is trained online (RLS)
//!   on this patient's breathing as it arrives. Its state carries a nonlinear memory of the recent
//!   breaths that neither a linear model nor a window comparison has.
//! - [`Combined`]: all three above, weighted by the inverse of their recent squared error (an
//!   exponential average over matured predictions), so each trace leans on whichever predicts it
//!   better; and while the blend's error averaged over a longer past is above that of the last
//!   sample held, the last sample (a signal nothing predicts is then no worse for the prediction
//!   than without it).

/// A causal one-dimensional predictor at a fixed horizon in samples.
pub trait Predictor {
    /// Takes the newest sample (finite; the caller filters).
    fn push(&mut self, value: f64);
    /// The predicted value `horizon` samples after the newest (the newest value before warm-up).
    fn predict(&self) -> f64;
}

/// A growing buffer trimmed from the front, so that indices from the back stay cheap.
#[derive(Clone, Debug, Default)]
struct Recent {
    v: Vec<f64>,
    keep: usize,
}

impl Recent {
    fn new(keep: usize) -> Self {
        Self { v: Vec::with_capacity(2 * keep + 8), keep: keep.max(1) }
    }
    fn push(&mut self, x: f64) {
        if self.v.len() >= 2 * self.keep {
            self.v.drain(..self.v.len() - self.keep);
        }
        self.v.push(x);
    }
    /// The value `back` samples before the newest (0 = newest).
    fn back(&self, back: usize) -> Option<f64> {
        self.v.len().checked_sub(back + 1).map(|i| self.v[i])
    }
    fn len(&self) -> usize {
        self.v.len()
    }
}

/// No prediction: the last sample held.
#[derive(Clone, Debug, Default)]
pub struct Hold {
    last: f64,
}

impl Predictor for Hold {
    fn push(&mut self, value: f64) {
        self.last = value;
    }
    fn predict(&self) -> f64 {
        self.last
    }
}

/// Settings of [`WaveletRls`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaveletRlsSettings {
    /// Decomposition levels.
    pub levels: usize,
    /// Taps per level (spaced by the level's scale).
    pub taps: usize,
    /// RLS forgetting factor (0.99-1).
    pub forgetting: f64,
    /// Initial inverse-correlation diagonal.
    pub delta: f64,
}

impl Default for WaveletRlsSettings {
    fn default() -> Self {
        Self { levels: 4, taps: 2, forgetting: 0.995, delta: 100.0 }
    }
}

/// Recursive least squares over a feature vector, with a forgetting factor, kept finite and
/// bounded through spells without excitation (a breath-hold).
#[derive(Clone, Debug)]
struct Rls {
    w: Vec<f64>,
    /// The inverse-correlation matrix, row-major.
    p: Vec<f64>,
    /// P x of the update in progress (kept to spare an allocation per sample).
    px: Vec<f64>,
    dim: usize,
    forgetting: f64,
    delta: f64,
}

impl Rls {
    fn new(dim: usize, forgetting: f64, delta: f64) -> Self {
        let mut rls = Self { w: vec![0.0; dim], p: vec![0.0; dim * dim], px: vec![0.0; dim], dim, forgetting, delta };
        rls.reset_p();
        rls
    }

    fn reset_p(&mut self) {
        self.p.iter_mut().for_each(|x| *x = 0.0);
        for i in 0..self.dim {
            self.p[i * self.dim + i] = self.delta;
        }
    }

    fn output(&self, x: &[f64]) -> f64 {
        self.w.iter().zip(x).map(|(a, b)| a * b).sum()
    }

    fn update(&mut self, x: &[f64], y: f64) {
        let d = self.dim;
        let lam = self.forgetting;
        let mut px = std::mem::take(&mut self.px);
        for (r, out) in px.iter_mut().enumerate() {
            *out = self.p[r * d..(r + 1) * d].iter().zip(x).map(|(p, x)| p * x).sum();
        }
        let denom = lam + x.iter().zip(&px).map(|(a, b)| a * b).sum::<f64>();
        if !(denom.is_finite() && denom > 1e-12) {
            self.px = px;
            self.reset_p();
            return;
        }
        let err = y - self.output(x);
        for (w, p) in self.w.iter_mut().zip(&px) {
            *w += p / denom * err;
        }
        for (r, row) in self.p.chunks_exact_mut(d).enumerate() {
            for (p, pc) in row.iter_mut().zip(&px) {
                *p = (*p - px[r] * pc / denom) / lam;
            }
        }
        self.px = px;
        // Without excitation (a breath-hold) P grows as 1/lambda^n: keep it bounded.
        let trace: f64 = (0..d).map(|i| self.p[i * d + i]).sum();
        if !trace.is_finite() || !self.w.iter().all(|w| w.is_finite()) {
            self.reset_p();
            self.w.iter_mut().for_each(|w| *w = 0.0);
        } else if trace > MAX_P_TRACE {
            let k = MAX_P_TRACE / trace;
            self.p.iter_mut().for_each(|x| *x *= k);
        }
    }
}

/// RLS on multi-scale features.
#[derive(Clone, Debug)]
pub struct WaveletRls {
    s: WaveletRlsSettings,
    horizon: usize,
    /// Approximations c_0 (the signal) .. c_J.
    approx: Vec<Recent>,
    /// Details w_0 .. w_{J-1}.
    detail: Vec<Recent>,
    /// Feature vectors of the last `horizon + 1` samples, oldest first, waiting for their target.
    pending: std::collections::VecDeque<(Vec<f64>, f64)>,
    rls: Rls,
    dim: usize,
    current: Option<Vec<f64>>,
}

impl WaveletRls {
    /// A predictor `horizon` samples ahead.
    #[must_use]
    pub fn new(horizon: usize, s: WaveletRlsSettings) -> Self {
        let levels = s.levels.clamp(1, 8);
        let taps = s.taps.clamp(1, 8);
        let s = WaveletRlsSettings { levels, taps, ..s };
        let keep = (1 << levels) * (taps + 1) + 4;
        let dim = levels * taps + 3;
        Self {
            s,
            horizon,
            approx: (0..=levels).map(|_| Recent::new(keep)).collect(),
            detail: (0..levels).map(|_| Recent::new(keep)).collect(),
            pending: std::collections::VecDeque::new(),
            rls: Rls::new(dim, s.forgetting, s.delta),
            dim,
            current: None,
        }
    }

    fn features(&self) -> Option<Vec<f64>> {
        let levels = self.s.levels;
        let top = &self.approx[levels];
        if top.len() <= 1 << levels || self.detail[levels - 1].len() < (1 << (levels - 1)) * self.s.taps {
            return None;
        }
        let mut f = Vec::with_capacity(self.dim);
        for j in 0..levels {
            for k in 0..self.s.taps {
                f.push(self.detail[j].back(k << j)?);
            }
        }
        let s0 = self.approx[0].back(0)?;
        let cj = top.back(0)?;
        f.push(cj - s0);
        f.push(cj - top.back(1 << levels)?);
        f.push(1.0);
        Some(f)
    }
}

/// The longer-run error averages (the blend's fallback, the gate's margin) weigh each new error
/// this many times less than the running ones.
pub(crate) const LONG_RUN_SMOOTHING_DIVISOR: f64 = 5.0;

/// The largest trace of the RLS inverse-correlation matrix.
const MAX_P_TRACE: f64 = 1e8;

impl Predictor for WaveletRls {
    fn push(&mut self, value: f64) {
        self.approx[0].push(value);
        for j in 0..self.s.levels {
            let prev = &self.approx[j];
            let now = prev.back(0).unwrap_or(value);
            let then = prev.back(1 << j).unwrap_or(now);
            let next = 0.5 * (now + then);
            self.detail[j].push(now - next);
            self.approx[j + 1].push(next);
        }
        // The sample `horizon` back now has its target.
        if self.pending.len() >= self.horizon.max(1) {
            if let Some((x, base)) = self.pending.pop_front() {
                self.rls.update(&x, value - base);
            }
        }
        self.current = self.features();
        if let Some(f) = &self.current {
            self.pending.push_back((f.clone(), value));
        } else {
            self.pending.clear();
        }
    }

    fn predict(&self) -> f64 {
        let last = self.approx[0].back(0).unwrap_or(0.0);
        match &self.current {
            Some(f) => last + self.rls.output(f),
            None => last,
        }
    }
}

/// Settings of [`PatternMatch`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatternMatchSettings {
    /// Samples compared.
    pub window: usize,
    /// Neighbours averaged.
    pub neighbours: usize,
    /// Samples of history searched.
    pub history: usize,
}

impl Default for PatternMatchSettings {
    fn default() -> Self {
        Self { window: 16, neighbours: 10, history: 1200 }
    }
}

/// Nearest-neighbour prediction from past breaths.
#[derive(Clone, Debug)]
pub struct PatternMatch {
    s: PatternMatchSettings,
    horizon: usize,
    buf: Recent,
    prediction: f64,
    scratch: Vec<(f64, f64)>,
    query: Vec<f64>,
}

impl PatternMatch {
    /// A predictor `horizon` samples ahead.
    #[must_use]
    pub fn new(horizon: usize, s: PatternMatchSettings) -> Self {
        let s = PatternMatchSettings {
            window: s.window.clamp(2, 256),
            neighbours: s.neighbours.clamp(1, 256),
            history: s.history.clamp(16, 100_000),
        };
        Self {
            s,
            horizon,
            buf: Recent::new(s.history + s.window + horizon + 1),
            prediction: 0.0,
            scratch: Vec::new(),
            query: Vec::new(),
        }
    }

    fn compute(&mut self) -> Option<f64> {
        let (w, h, k) = (self.s.window, self.horizon, self.s.neighbours);
        let v = &self.buf.v;
        let n = v.len();
        let now = n.checked_sub(1)?;
        // Candidate window ends j: a full window before them and their future (j + h) known.
        let lo = (w - 1).max(n.saturating_sub(self.s.history));
        let hi = now.checked_sub(h)?; // exclusive
        if hi <= lo + k {
            return None;
        }
        let q_end = v[now];
        // The query window, newest first, offset removed.
        let mut query = std::mem::take(&mut self.query);
        query.clear();
        query.extend(v[now + 1 - w..=now].iter().rev().map(|x| x - q_end));
        self.scratch.clear();
        for j in lo..hi {
            let c_end = v[j];
            let d: f64 = v[j + 1 - w..=j].iter().rev().zip(&query).map(|(c, q)| (c - c_end) - q).map(|e| e * e).sum();
            self.scratch.push((d, v[j + h] - c_end));
        }
        self.query = query;
        let k = k.min(self.scratch.len());
        self.scratch.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        let (mut num, mut den) = (0.0, 0.0);
        for (d, change) in &self.scratch[..k] {
            let wt = 1.0 / (d + 1e-3);
            num += wt * change;
            den += wt;
        }
        Some(q_end + num / den)
    }
}

impl Predictor for PatternMatch {
    fn push(&mut self, value: f64) {
        self.buf.push(value);
        self.prediction = self.compute().unwrap_or(value);
    }
    fn predict(&self) -> f64 {
        self.prediction
    }
}

/// Settings of [`Reservoir`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReservoirSettings {
    /// Units in the reservoir (0: no reservoir in [`Combined`]).
    pub units: usize,
    /// Spectral radius of the recurrent weights (below 1: the echo of the input fades).
    pub spectral_radius: f64,
    /// Leak rate: the share of each unit's new activation in its state (1: no leak).
    pub leak: f64,
    /// Scale of the input weights.
    pub input_scale: f64,
    /// RLS forgetting factor of the read-out.
    pub forgetting: f64,
}

impl Default for ReservoirSettings {
    fn default() -> Self {
        Self { units: 40, spectral_radius: 0.9, leak: 0.5, input_scale: 0.5, forgetting: 0.999 }
    }
}

/// The input, in running standard deviations of the sample-to-sample change, is clipped here, so
/// that one artefact (a cough, a belt slipping) neither saturates the reservoir for long nor
/// inflates the scale the next breaths are measured in; and a change over the horizon beyond
/// `horizon` times this is not learnt from.
const RESERVOIR_INPUT_CLIP: f64 = 5.0;

/// Samples over which the reservoir's scale is a plain mean (then an exponential one, each new
/// sample weighing 1 %); its read-out trains only after them.
const RESERVOIR_SCALE_SAMPLES: usize = 50;

/// Samples before the reservoir's read-out is used (its state and scale settle first).
const RESERVOIR_WARMUP: usize = 100;

/// An echo-state network (Jaeger): a fixed, sparse, random recurrent network driven by the
/// signal's sample-to-sample change in units of its running standard deviation (so that any
/// sensor's units and any breathing amplitude look alike to it), with a linear read-out trained
/// online by RLS to predict the change over the horizon in the same units. The weights come from
/// a fixed seed: the same signal gives the same predictions.
#[derive(Clone, Debug)]
pub struct Reservoir {
    s: ReservoirSettings,
    horizon: usize,
    /// Recurrent weights, sparse: per unit, its inputs (unit, weight) in column order.
    recurrent: Vec<Vec<(usize, f64)>>,
    /// Input weights per unit: the normalised change, and a bias.
    input: Vec<[f64; 2]>,
    state: Vec<f64>,
    /// The next state, computed beside the current one.
    next: Vec<f64>,
    /// Running mean square of the sample-to-sample change.
    change_ms: f64,
    last: Option<f64>,
    /// Read-out features (the state and a bias) with the value and scale they were taken at,
    /// oldest first, waiting for their target.
    pending: std::collections::VecDeque<(Vec<f64>, f64, f64)>,
    readout: Rls,
    pushed: usize,
}

impl Reservoir {
    /// A predictor `horizon` samples ahead.
    #[must_use]
    pub fn new(horizon: usize, s: ReservoirSettings) -> Self {
        let n = s.units.clamp(2, 200);
        let s = ReservoirSettings { units: n, ..s };
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut uniform = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        // About one connection in ten, then scaled to the spectral radius (power iteration).
        let mut recurrent: Vec<f64> = (0..n * n)
            .map(|_| {
                let (keep, w) = (uniform(), uniform());
                if keep.abs() < 0.1 {
                    w
                } else {
                    0.0
                }
            })
            .collect();
        let radius = spectral_radius(&recurrent, n);
        if radius > 1e-9 {
            recurrent.iter_mut().for_each(|w| *w *= s.spectral_radius / radius);
        }
        let recurrent = recurrent
            .chunks_exact(n)
            .map(|row| row.iter().enumerate().filter(|(_, w)| **w != 0.0).map(|(c, w)| (c, *w)).collect())
            .collect();
        let input = (0..n).map(|_| [uniform() * s.input_scale, uniform() * 0.2]).collect();
        Self {
            s,
            horizon,
            recurrent,
            input,
            state: vec![0.0; n],
            next: vec![0.0; n],
            change_ms: 0.0,
            last: None,
            pending: std::collections::VecDeque::new(),
            readout: Rls::new(n + 1, s.forgetting, 100.0),
            pushed: 0,
        }
    }

    fn scale(&self) -> f64 {
        self.change_ms.sqrt().max(1e-9)
    }
}

/// The largest eigenvalue magnitude of a square matrix (power iteration; enough for scaling).
fn spectral_radius(m: &[f64], n: usize) -> f64 {
    let mut v = vec![1.0; n];
    let mut radius = 0.0;
    for _ in 0..100 {
        let next: Vec<f64> = (0..n).map(|r| (0..n).map(|c| m[r * n + c] * v[c]).sum()).collect();
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        let before = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm < 1e-12 || before < 1e-12 {
            return 0.0;
        }
        radius = norm / before;
        v = next.iter().map(|x| x / norm).collect();
    }
    radius
}

impl Predictor for Reservoir {
    fn push(&mut self, value: f64) {
        let change = self.last.map_or(0.0, |l| value - l);
        self.last = Some(value);
        self.pushed += 1;
        // The scale: a plain mean at first, then an exponential one; an outlier counts only up
        // to the clip.
        let (weight, limit) = if self.pushed < RESERVOIR_SCALE_SAMPLES {
            (1.0 / self.pushed as f64, f64::INFINITY)
        } else {
            (0.01, RESERVOIR_INPUT_CLIP * RESERVOIR_INPUT_CLIP * self.change_ms)
        };
        self.change_ms = (1.0 - weight) * self.change_ms + weight * (change * change).min(limit);
        let scale = self.scale();
        let u = (change / scale).clamp(-RESERVOIR_INPUT_CLIP, RESERVOIR_INPUT_CLIP);
        let leak = self.s.leak;
        let mut next = std::mem::take(&mut self.next);
        for (r, out) in next.iter_mut().enumerate() {
            let recurrent: f64 = self.recurrent[r].iter().map(|(c, w)| w * self.state[*c]).sum();
            let [w_u, bias] = self.input[r];
            *out = (1.0 - leak) * self.state[r] + leak * (recurrent + w_u * u + bias).tanh();
        }
        self.next = std::mem::replace(&mut self.state, next);
        // The sample `horizon` back now has its target (in the scale it was predicted in).
        if self.pending.len() >= self.horizon.max(1) {
            if let Some((x, base, at_scale)) = self.pending.pop_front() {
                // A change larger than the horizon's clipped steps could add up to is an
                // artefact, not a lesson: the read-out does not learn it.
                let target = (value - base) / at_scale;
                if target.abs() <= RESERVOIR_INPUT_CLIP * self.horizon.max(1) as f64 {
                    self.readout.update(&x, target);
                }
            }
        }
        // Until the scale has seen some breathing, a target in its units would be meaningless.
        if self.pushed >= RESERVOIR_SCALE_SAMPLES && self.change_ms > 0.0 {
            let mut features = self.state.clone();
            features.push(1.0);
            self.pending.push_back((features, value, scale));
        }
    }

    fn predict(&self) -> f64 {
        match (self.last, self.pending.back()) {
            (Some(last), Some((f, _, scale))) if self.pushed > RESERVOIR_WARMUP => {
                last + scale * self.readout.output(f)
            }
            (last, _) => last.unwrap_or(0.0),
        }
    }
}

/// [`WaveletRls`], [`PatternMatch`] and [`Reservoir`] blended by their recent accuracy.
#[derive(Clone, Debug)]
pub struct Combined {
    horizon: usize,
    rls: WaveletRls,
    pattern: PatternMatch,
    /// None with zero units.
    reservoir: Option<Reservoir>,
    /// Past predictions (rls, pattern, reservoir, blend, the last sample held, the output)
    /// waiting for their target, oldest first.
    pending: std::collections::VecDeque<[f64; 6]>,
    /// Exponential averages of squared error: rls, pattern, reservoir, the output.
    mse: [f64; 4],
    /// The blend's and the held sample's squared errors averaged over a longer past (a fifth of
    /// the smoothing weight): what the fallback decides on, so that a few bad breaths do not
    /// switch it.
    slow: [f64; 2],
    smoothing: f64,
    last: f64,
}

impl Combined {
    /// A predictor `horizon` samples ahead; `smoothing` is the weight of each new error in the
    /// running mean squared errors (e.g. 0.02).
    #[must_use]
    pub fn new(
        horizon: usize,
        rls: WaveletRlsSettings,
        pattern: PatternMatchSettings,
        reservoir: ReservoirSettings,
        smoothing: f64,
    ) -> Self {
        Self {
            horizon,
            rls: WaveletRls::new(horizon, rls),
            pattern: PatternMatch::new(horizon, pattern),
            reservoir: (reservoir.units > 0).then(|| Reservoir::new(horizon, reservoir)),
            pending: std::collections::VecDeque::new(),
            mse: [1.0; 4],
            slow: [1.0; 2],
            smoothing: smoothing.clamp(1e-4, 1.0),
            last: 0.0,
        }
    }

    /// The running RMS error of the prediction given (mm): its confidence.
    #[must_use]
    pub fn rms_error(&self) -> f64 {
        self.mse[3].sqrt()
    }

    /// Whether the blend is losing to the last sample held (squared errors over the longer
    /// past): the prediction given is then the last sample.
    #[must_use]
    pub fn holding(&self) -> bool {
        self.slow[0] > self.slow[1]
    }

    fn blend(&self) -> f64 {
        self.parts().iter().zip(self.weights()).map(|(p, w)| p * w).sum()
    }

    /// The blend weights of wavelet-RLS, pattern matching and the reservoir (summing to 1; the
    /// reservoir's 0 without one): each the inverse of its recent mean squared error.
    #[must_use]
    pub fn weights(&self) -> [f64; 3] {
        let inverse = |m: f64| 1.0 / m.max(1e-12);
        let w =
            [inverse(self.mse[0]), inverse(self.mse[1]), self.reservoir.as_ref().map_or(0.0, |_| inverse(self.mse[2]))];
        let total: f64 = w.iter().sum();
        w.map(|x| x / total)
    }

    /// The three predictions (wavelet-RLS, pattern, reservoir; the last sample without one).
    #[must_use]
    pub fn parts(&self) -> [f64; 3] {
        [self.rls.predict(), self.pattern.predict(), self.reservoir.as_ref().map_or(self.last, Predictor::predict)]
    }
}

impl Predictor for Combined {
    fn push(&mut self, value: f64) {
        if self.pending.len() > self.horizon.saturating_sub(1) {
            if let Some(p) = self.pending.pop_front() {
                let a = self.smoothing;
                let b = a / LONG_RUN_SMOOTHING_DIVISOR;
                let (fast, slow) = ([p[0], p[1], p[2], p[5]], [p[3], p[4]]);
                for (m, p) in self.mse.iter_mut().zip(fast) {
                    *m = (1.0 - a) * *m + a * (p - value).powi(2);
                }
                for (m, p) in self.slow.iter_mut().zip(slow) {
                    *m = (1.0 - b) * *m + b * (p - value).powi(2);
                }
            }
        }
        self.rls.push(value);
        self.pattern.push(value);
        if let Some(r) = &mut self.reservoir {
            r.push(value);
        }
        self.last = value;
        let [rls, pattern, reservoir] = self.parts();
        self.pending.push_back([rls, pattern, reservoir, self.blend(), value, self.predict()]);
    }

    fn predict(&self) -> f64 {
        if self.holding() {
            self.last
        } else {
            self.blend()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(i: usize) -> f64 {
        5.0 * (i as f64 * 0.1 * std::f64::consts::TAU / 4.0).sin()
    }

    fn rms_after(p: &mut dyn Predictor, h: usize, n: usize, skip: usize) -> f64 {
        let mut preds = Vec::new();
        let mut e2 = 0.0;
        let mut m = 0;
        for i in 0..n {
            p.push(sine(i));
            preds.push(p.predict());
            if i >= skip + h {
                e2 += (preds[i - h] - sine(i)).powi(2);
                m += 1;
            }
        }
        (e2 / f64::from(m)).sqrt()
    }

    #[test]
    fn every_predictor_learns_a_clean_sine_far_better_than_hold() {
        let h = 4;
        let hold = rms_after(&mut Hold::default(), h, 1500, 600);
        let rls = rms_after(&mut WaveletRls::new(h, WaveletRlsSettings::default()), h, 1500, 600);
        let pm = rms_after(&mut PatternMatch::new(h, PatternMatchSettings::default()), h, 1500, 600);
        let comb = rms_after(
            &mut Combined::new(
                h,
                WaveletRlsSettings::default(),
                PatternMatchSettings::default(),
                ReservoirSettings::default(),
                0.02,
            ),
            h,
            1500,
            600,
        );
        let res = rms_after(&mut Reservoir::new(h, ReservoirSettings::default()), h, 1500, 600);
        assert!(hold > 2.0, "{hold}");
        assert!(rls < 0.05 * hold, "rls {rls} vs hold {hold}");
        assert!(res < 0.05 * hold, "reservoir {res} vs hold {hold}");
        assert!(pm < 0.05 * hold, "pattern {pm} vs hold {hold}");
        assert!(comb < 0.05 * hold, "combined {comb} vs hold {hold}");
    }

    #[test]
    fn on_a_signal_nothing_predicts_the_blend_falls_back_to_the_last_sample() {
        // A random walk (a fixed-seed LCG): the best prediction is the last sample.
        let mut state: u64 = 7;
        let mut x = 0.0;
        let walk: Vec<f64> = (0..3000)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                x += ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.6;
                x
            })
            .collect();
        let h = 4;
        // The error of `predict` (called after each sample is pushed) h samples later.
        let rms = |predict: &mut dyn FnMut(f64) -> f64| {
            let preds: Vec<f64> = walk.iter().map(|v| predict(*v)).collect();
            walk.iter().enumerate().skip(600 + h).map(|(i, v)| (preds[i - h] - v).powi(2)).sum::<f64>().sqrt()
        };
        let combined = || {
            Combined::new(
                h,
                WaveletRlsSettings::default(),
                PatternMatchSettings::default(),
                ReservoirSettings::default(),
                0.02,
            )
        };
        let mut held = Hold::default();
        let hold = rms(&mut |v| {
            held.push(v);
            held.predict()
        });
        let mut c = combined();
        let comb = rms(&mut |v| {
            c.push(v);
            c.predict()
        });
        let mut parts = combined();
        let blend = rms(&mut |v| {
            parts.push(v);
            parts.blend()
        });
        assert!(blend > 1.02 * hold, "the blend alone loses here: {blend} vs hold {hold}");
        assert!(comb < 1.01 * hold, "with the fallback: {comb} vs hold {hold}");
    }

    #[test]
    fn the_reservoir_sees_no_units_and_shrugs_off_an_artefact() {
        let h = 4;
        // The same breathing in millimetres and in ADC counts (x 400, offset): the same
        // prediction, in each signal's units.
        let mut mm = Reservoir::new(h, ReservoirSettings::default());
        let mut counts = Reservoir::new(h, ReservoirSettings::default());
        for i in 0..1200 {
            mm.push(sine(i));
            counts.push(32_000.0 + 400.0 * sine(i));
            if i > 200 {
                let expected = 32_000.0 + 400.0 * mm.predict();
                assert!((counts.predict() - expected).abs() < 1e-6 * 400.0, "sample {i}");
            }
        }
        // A belt slipping: one sample 100 amplitudes off. A minute later the reservoir predicts
        // the sine as well as it did before.
        let mut r = Reservoir::new(h, ReservoirSettings::default());
        // The RMS error over samples [score_from, to) of a run over [from, to).
        let rms = |r: &mut Reservoir, from: usize, score_from: usize, to: usize, spike: Option<usize>| {
            let (mut e2, mut n) = (0.0, 0);
            let mut preds = std::collections::VecDeque::new();
            for i in from..to {
                r.push(if Some(i) == spike { 500.0 } else { sine(i) });
                preds.push_back(r.predict());
                if preds.len() > h {
                    let p = preds.pop_front().unwrap_or(0.0);
                    if i >= score_from {
                        e2 += (p - sine(i)).powi(2);
                        n += 1;
                    }
                }
            }
            (e2 / f64::from(n)).sqrt()
        };
        let before = rms(&mut r, 0, 700, 1000, None);
        let _ = rms(&mut r, 1000, 1000, 1600, Some(1000));
        let after = rms(&mut r, 1600, 1600, 1900, None);
        assert!(before < 0.1 && after < 2.0 * before, "after the artefact {after} vs before {before}");
    }

    #[test]
    fn a_flat_signal_keeps_the_rls_finite() {
        let mut p = WaveletRls::new(4, WaveletRlsSettings::default());
        for _ in 0..20_000 {
            p.push(1.0);
        }
        assert!((p.predict() - 1.0).abs() < 1e-6, "{}", p.predict());
        for i in 0..100 {
            p.push(sine(i));
        }
        assert!(p.predict().is_finite());
    }
}
