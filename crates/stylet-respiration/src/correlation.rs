//! Correlation model: surrogate -> internal target displacement, fitted from checkpoint-CT
//! observations (the target's offset from its planning position, and the surrogate and its
//! velocity at the time of each CT). Per axis, `d = a u + b du/dt + c`: the velocity term is the
//! hysteresis (inhale and exhale paths differ). With too little velocity spread among the
//! observations (CTs in breath-hold) the velocity term is dropped, and with too few observations
//! the fit is refused.

/// One checkpoint-CT observation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Observation {
    /// Surrogate, mm.
    pub surrogate_mm: f64,
    /// Surrogate velocity, mm/s.
    pub surrogate_velocity_mm_per_s: f64,
    /// Target displacement from its reference position (LPS), mm.
    pub target_offset_mm: [f64; 3],
}

/// Why no model was fitted. The doc comment is the message.
#[derive(Clone, Copy, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum CorrelationError {
    /// {got} observation(s) with distinct surrogate values; at least 2 are needed
    TooFew {
        /// Usable observations.
        got: usize,
    },
    /// the observations are not finite
    NotFinite,
}

/// The fitted model.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CorrelationModel {
    /// Per LPS axis: [a (per mm), b (per mm/s), c (mm)].
    pub coefficients: [[f64; 3]; 3],
    /// Whether the hysteresis (velocity) term was fitted.
    pub hysteresis: bool,
    /// RMS of the 3-D fit residuals, mm.
    pub residual_rms_mm: f64,
}

/// Solves the 3x3 (or 2x2 when `k` = 2) normal equations by Gaussian elimination with pivoting.
fn solve(mut a: [[f64; 3]; 3], mut b: [f64; 3], k: usize) -> Option<[f64; 3]> {
    for col in 0..k {
        let piv = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..k {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (x, p) in a[row].iter_mut().zip(pivot_row).skip(col).take(k - col) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..k).rev() {
        let s: f64 = (row + 1..k).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

impl CorrelationModel {
    /// Least-squares fit.
    ///
    /// # Errors
    /// [`CorrelationError`].
    pub fn fit(obs: &[Observation]) -> Result<Self, CorrelationError> {
        if obs.iter().any(|o| {
            !(o.surrogate_mm.is_finite()
                && o.surrogate_velocity_mm_per_s.is_finite()
                && o.target_offset_mm.iter().all(|v| v.is_finite()))
        }) {
            return Err(CorrelationError::NotFinite);
        }
        let n = obs.len() as f64;
        let spread = |f: &dyn Fn(&Observation) -> f64| {
            let m = obs.iter().map(f).sum::<f64>() / n.max(1.0);
            (obs.iter().map(|o| (f(o) - m).powi(2)).sum::<f64>() / n.max(1.0)).sqrt()
        };
        let u_spread = spread(&|o| o.surrogate_mm);
        if obs.len() < 2 || u_spread < 1e-6 {
            return Err(CorrelationError::TooFew { got: if u_spread < 1e-6 { obs.len().min(1) } else { obs.len() } });
        }
        // The velocity term needs a third observation and real velocity spread (0.5 mm/s).
        let hysteresis = obs.len() >= 3 && spread(&|o| o.surrogate_velocity_mm_per_s) > 0.5;
        let k = if hysteresis { 3 } else { 2 };
        let feat = |o: &Observation| {
            if hysteresis {
                [o.surrogate_mm, o.surrogate_velocity_mm_per_s, 1.0]
            } else {
                [o.surrogate_mm, 1.0, 0.0]
            }
        };
        let mut ata = [[0.0; 3]; 3];
        for o in obs {
            let f = feat(o);
            for r in 0..k {
                for c in 0..k {
                    ata[r][c] += f[r] * f[c];
                }
            }
        }
        let mut coefficients = [[0.0; 3]; 3];
        for (axis, coef) in coefficients.iter_mut().enumerate() {
            let mut atb = [0.0; 3];
            for o in obs {
                let f = feat(o);
                for r in 0..k {
                    atb[r] += f[r] * o.target_offset_mm[axis];
                }
            }
            let x = solve(ata, atb, k).ok_or(CorrelationError::TooFew { got: obs.len() })?;
            *coef = if hysteresis { x } else { [x[0], 0.0, x[1]] };
        }
        let mut model = CorrelationModel { coefficients, hysteresis, residual_rms_mm: 0.0 };
        let ss: f64 = obs
            .iter()
            .map(|o| {
                let p = model.offset_mm(o.surrogate_mm, o.surrogate_velocity_mm_per_s);
                (0..3).map(|i| (p[i] - o.target_offset_mm[i]).powi(2)).sum::<f64>()
            })
            .sum();
        model.residual_rms_mm = (ss / n).sqrt();
        Ok(model)
    }

    /// The predicted target offset (LPS mm) for a surrogate value and velocity.
    #[must_use]
    pub fn offset_mm(&self, surrogate_mm: f64, velocity_mm_per_s: f64) -> [f64; 3] {
        self.coefficients.map(|[a, b, c]| a * surrogate_mm + b * velocity_mm_per_s + c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_model_with_hysteresis_and_drops_it_without_velocity() {
        let truth = |u: f64, v: f64| [0.1 * u, -0.4 * u + 0.2 * v, -1.3 * u + 0.5];
        let obs: Vec<Observation> = (0..8)
            .map(|i| {
                let (u, v) = (f64::from(i) * 1.3, (f64::from(i) * 2.1).sin() * 6.0);
                Observation { surrogate_mm: u, surrogate_velocity_mm_per_s: v, target_offset_mm: truth(u, v) }
            })
            .collect();
        let m = CorrelationModel::fit(&obs).unwrap();
        assert!(m.hysteresis);
        assert!(m.residual_rms_mm < 1e-9);
        let p = m.offset_mm(4.0, -3.0);
        let t = truth(4.0, -3.0);
        assert!((0..3).all(|i| (p[i] - t[i]).abs() < 1e-9), "{p:?} vs {t:?}");
        // Breath-hold CTs: no velocity; the model is surrogate-only.
        let still: Vec<Observation> =
            obs.iter().map(|o| Observation { surrogate_velocity_mm_per_s: 0.0, ..*o }).collect();
        let m = CorrelationModel::fit(&still).unwrap();
        assert!(!m.hysteresis);
        assert_eq!(CorrelationModel::fit(&still[..1]), Err(CorrelationError::TooFew { got: 1 }));
        let same: Vec<Observation> = still.iter().map(|o| Observation { surrogate_mm: 2.0, ..*o }).collect();
        assert!(matches!(CorrelationModel::fit(&same), Err(CorrelationError::TooFew { .. })));
        let mut bad = obs.clone();
        bad[0].surrogate_mm = f64::NAN;
        assert_eq!(CorrelationModel::fit(&bad), Err(CorrelationError::NotFinite));
    }
}
