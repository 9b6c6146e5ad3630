//! Correspondence without labels: which detected CT marker is which marker of the registration
//! frame, tolerating missing and extra detections.
//!
//! Hypothesise-and-verify on triangles: every non-degenerate triangle of the frame model is paired
//! with every ordered triple of detections whose three side lengths agree within twice the
//! tolerance; the rigid transform of that triangle maps the whole model onto the detections, and
//! the hypothesis that explains most markers (then the smallest RMS distance) wins. The result is
//! refined on all its pairs. The frame's markers should be laid out without symmetry (all
//! inter-marker distances distinct) so that exactly one assignment fits.

use nalgebra::{Point3, Vector3};
use stylet_core::frame::{Ct, Point, Robot};

use crate::rigid::{coords, fit, RegistrationError};

/// A candidate assignment: markers explained, their RMS distance, the pairs.
type Hypothesis = (usize, f64, Vec<(usize, usize)>);

/// Pairs `(detected index, model index)` sorted by model index.
///
/// # Errors
/// [`RegistrationError::NoCorrespondence`] when fewer than `min_matched` markers can be paired.
pub fn match_markers(
    detected: &[Point<Ct>],
    model: &[Point<Robot>],
    tolerance_mm: f64,
    min_matched: usize,
) -> Result<Vec<(usize, usize)>, RegistrationError> {
    let (detected, model) = (coords(detected), coords(model));
    let (detected, model) = (detected.as_slice(), model.as_slice());
    let (m, d) = (model.len(), detected.len());
    let dist = |a: &Vector3<f64>, b: &Vector3<f64>| (a - b).norm();
    let tol2 = 2.0 * tolerance_mm;
    let mut best: Option<Hypothesis> = None;
    for a in 0..m {
        for b in a + 1..m {
            for c in b + 1..m {
                let (ab, bc, ac) = (dist(&model[a], &model[b]), dist(&model[b], &model[c]), dist(&model[a], &model[c]));
                let area = (model[b] - model[a]).cross(&(model[c] - model[a])).norm();
                if area < 1e-3 * ab.max(ac).powi(2) {
                    continue;
                }
                for i in 0..d {
                    for j in 0..d {
                        if j == i || (dist(&detected[i], &detected[j]) - ab).abs() > tol2 {
                            continue;
                        }
                        for k in 0..d {
                            if k == i || k == j {
                                continue;
                            }
                            if (dist(&detected[j], &detected[k]) - bc).abs() > tol2
                                || (dist(&detected[i], &detected[k]) - ac).abs() > tol2
                            {
                                continue;
                            }
                            let Ok(t) = fit(&[model[a], model[b], model[c]], &[detected[i], detected[j], detected[k]])
                            else {
                                continue;
                            };
                            let pairs = associate(detected, model, |p| (t * Point3::from(*p)).coords, tolerance_mm);
                            let rms = rms(detected, model, &pairs, |p| (t * Point3::from(*p)).coords);
                            let better = match &best {
                                None => true,
                                Some((n, r, _)) => pairs.len() > *n || (pairs.len() == *n && rms < *r),
                            };
                            if better {
                                best = Some((pairs.len(), rms, pairs));
                            }
                        }
                    }
                }
            }
        }
    }
    let Some((_, _, pairs)) = best else {
        return Err(RegistrationError::NoCorrespondence { matched: 0, model: m, min: min_matched });
    };
    // Refine on every pair, then associate once more.
    let (src, dst): (Vec<_>, Vec<_>) = pairs.iter().map(|(i, k)| (model[*k], detected[*i])).unzip();
    let pairs = match fit(&src, &dst) {
        Ok(t) => associate(detected, model, |p| (t * Point3::from(*p)).coords, tolerance_mm),
        Err(_) => pairs,
    };
    if pairs.len() < min_matched {
        return Err(RegistrationError::NoCorrespondence { matched: pairs.len(), model: m, min: min_matched });
    }
    Ok(pairs)
}

/// Each model point (mapped) takes the nearest unused detection within the tolerance.
fn associate(
    detected: &[Vector3<f64>],
    model: &[Vector3<f64>],
    map: impl Fn(&Vector3<f64>) -> Vector3<f64>,
    tolerance_mm: f64,
) -> Vec<(usize, usize)> {
    let mut used = vec![false; detected.len()];
    let mut pairs = Vec::new();
    for (k, p) in model.iter().enumerate() {
        let q = map(p);
        let nearest = detected
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, x)| (i, (x - q).norm()))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, e)) = nearest {
            if e <= tolerance_mm {
                used[i] = true;
                pairs.push((i, k));
            }
        }
    }
    pairs
}

fn rms(
    detected: &[Vector3<f64>],
    model: &[Vector3<f64>],
    pairs: &[(usize, usize)],
    map: impl Fn(&Vector3<f64>) -> Vector3<f64>,
) -> f64 {
    if pairs.is_empty() {
        return f64::INFINITY;
    }
    (pairs.iter().map(|(i, k)| (map(&model[*k]) - detected[*i]).norm_squared()).sum::<f64>() / pairs.len() as f64)
        .sqrt()
}
