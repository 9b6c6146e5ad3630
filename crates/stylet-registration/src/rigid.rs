//! Rigid point registration and its accuracy figures.

use nalgebra::{Isometry3, Matrix3, Rotation3, Translation3, UnitQuaternion, Vector3};
use stylet_core::frame::{Ct, Frame, Point, Robot, Transform};

/// Why a registration cannot be computed or is refused. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum RegistrationError {
    /// {ct} CT points but {robot} robot points: point-list registration needs one robot point per CT point
    CountMismatch {
        /// CT points.
        ct: usize,
        /// Robot points.
        robot: usize,
    },
    /// {n} point pairs: a rigid registration needs at least 3 (and the quality gate {min})
    TooFew {
        /// Pairs given.
        n: usize,
        /// The gate's minimum.
        min: usize,
    },
    /// the points are collinear (second principal extent {extent_mm:.3} mm): rotation about their line is undetermined
    Collinear {
        /// Second principal extent.
        extent_mm: f64,
    },
    /// predicted TRE at the target {tre_mm:.2} mm exceeds the limit {limit_mm:.2} mm
    TreTooLarge {
        /// Predicted TRE.
        tre_mm: f64,
        /// Limit.
        limit_mm: f64,
    },
    /// marker {index}: residual {residual_mm:.2} mm exceeds the limit {limit_mm:.2} mm (a mislocated or moved marker?)
    ResidualTooLarge {
        /// Marker index.
        index: usize,
        /// Its residual.
        residual_mm: f64,
        /// Limit.
        limit_mm: f64,
    },
    /// no consistent correspondence: the best match pairs only {matched} detected markers with the {model} of the frame (need {min})
    NoCorrespondence {
        /// Markers matched.
        matched: usize,
        /// Markers in the frame model.
        model: usize,
        /// Needed.
        min: usize,
    },
}

/// The rigid transform `a_from_b` that maps each point of `src` (frame `B`) closest to its row of
/// `dst` (frame `A`): `dst = R src + t` minimising the squared distances (Umeyama 1991, without
/// scale; the reflection case is corrected by `D = diag(1, 1, sign(det(V U^T)))`).
///
/// # Errors
/// [`RegistrationError::TooFew`], [`RegistrationError::Collinear`].
pub fn umeyama<A: Frame, B: Frame>(src: &[Point<B>], dst: &[Point<A>]) -> Result<Transform<A, B>, RegistrationError> {
    fit(&coords(src), &coords(dst)).map(Transform::from_nalgebra)
}

/// The coordinates of frame-typed points, for the arithmetic inside this crate.
pub(crate) fn coords<F: Frame>(points: &[Point<F>]) -> Vec<Vector3<f64>> {
    points.iter().map(|p| p.to_nalgebra().coords).collect()
}

/// [`umeyama`] on bare coordinates.
pub(crate) fn fit(src: &[Vector3<f64>], dst: &[Vector3<f64>]) -> Result<Isometry3<f64>, RegistrationError> {
    let n = src.len();
    if n != dst.len() {
        return Err(RegistrationError::CountMismatch { ct: n, robot: dst.len() });
    }
    if n < 3 {
        return Err(RegistrationError::TooFew { n, min: 3 });
    }
    let mean = |v: &[Vector3<f64>]| v.iter().sum::<Vector3<f64>>() / v.len() as f64;
    let (ms, md) = (mean(src), mean(dst));
    let mut cov = Matrix3::zeros();
    let mut spread = Matrix3::zeros();
    for (s, d) in src.iter().zip(dst) {
        cov += (d - md) * (s - ms).transpose();
        spread += (s - ms) * (s - ms).transpose();
    }
    let extents = spread.symmetric_eigenvalues();
    let mut e: Vec<f64> = extents.iter().map(|x| (x.max(0.0) / n as f64).sqrt()).collect();
    e.sort_by(|a, b| b.total_cmp(a));
    if e[1] < 1e-6 * e[0].max(1e-12) || e[1] < 1e-9 {
        return Err(RegistrationError::Collinear { extent_mm: e[1] });
    }
    let svd = cov.svd(true, true);
    let (Some(u), Some(v_t)) = (svd.u, svd.v_t) else { return Err(RegistrationError::Collinear { extent_mm: e[1] }) };
    let mut d = Matrix3::identity();
    if (u * v_t).determinant() < 0.0 {
        d[(2, 2)] = -1.0;
    }
    let r = u * d * v_t;
    let rot = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
    let t = md - rot * ms;
    Ok(Isometry3::from_parts(Translation3::from(t), rot))
}

/// Accuracy figures of one marker.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MarkerResidual {
    /// Index in the input.
    pub index: usize,
    /// Fiducial registration error: |T(ct) - robot| with all markers, mm.
    pub fre_mm: f64,
    /// Leave-one-out residual: the same with this marker left out of the fit, mm (a TRE-like
    /// cross-check; large for a marker that moved).
    pub leave_one_out_mm: f64,
}

/// A computed registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The transform from CT (LPS) to the robot base frame.
    pub robot_from_ct: Transform<Robot, Ct>,
    /// Point pairs used.
    pub n: usize,
    /// RMS of the FREs, mm (not a measure of accuracy at the target).
    pub fre_rms_mm: f64,
    /// Per marker.
    pub markers: Vec<MarkerResidual>,
    /// The fiducial localisation error used for the prediction, mm (RMS).
    pub fle_mm: f64,
    /// Whether the markers are (nearly) coplanar.
    pub coplanar: bool,
    /// Predicted RMS TRE at the target, mm, when a target was given.
    pub predicted_tre_mm: Option<f64>,
}

/// Fitzpatrick, West & Maurer (1998): expected RMS TRE at `target` for fiducials `fid` (same frame)
/// with RMS localisation error `fle_mm`:
/// `<TRE^2> = (<FLE^2> / N) (1 + (1/3) sum_k d_k^2 / f_k^2)`, `d_k` the target's distance from
/// principal axis k of the fiducials (through their centroid), `f_k` the RMS distance of the
/// fiducials from that axis.
#[must_use]
pub fn predicted_tre<F: Frame>(fid: &[Point<F>], target: Point<F>, fle_mm: f64) -> f64 {
    tre(&coords(fid), &target.to_nalgebra().coords, fle_mm)
}

/// [`predicted_tre`] on bare coordinates.
fn tre(fid: &[Vector3<f64>], target: &Vector3<f64>, fle_mm: f64) -> f64 {
    let n = fid.len() as f64;
    let c = fid.iter().sum::<Vector3<f64>>() / n;
    let mut cov = Matrix3::zeros();
    for p in fid {
        cov += (p - c) * (p - c).transpose();
    }
    let eig = cov.symmetric_eigen();
    let mut sum = 0.0;
    for k in 0..3 {
        let axis = eig.eigenvectors.column(k).into_owned();
        let dist_from_axis = |p: &Vector3<f64>| {
            let v = p - c;
            (v - axis * v.dot(&axis)).norm_squared()
        };
        let f2 = fid.iter().map(dist_from_axis).sum::<f64>() / n;
        let d2 = dist_from_axis(target);
        if f2 > 0.0 {
            sum += d2 / f2;
        }
    }
    (fle_mm * fle_mm / n * (1.0 + sum / 3.0)).sqrt()
}

/// Quality gates (from `config/registration.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gates {
    /// Fewest point pairs accepted.
    pub min_markers: usize,
    /// Largest predicted TRE at the target, mm.
    pub max_predicted_tre_mm: f64,
    /// Largest FRE of any single marker, mm.
    pub max_residual_mm: f64,
    /// Fiducial localisation error to assume, mm RMS; `None` estimates it from the FRE
    /// (`<FLE^2> = <FRE^2> N / (N - 2)`).
    pub fle_mm: Option<f64>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates { min_markers: 4, max_predicted_tre_mm: 1.0, max_residual_mm: 1.5, fle_mm: None }
    }
}

/// Registers corresponding point lists (row `i` of `ct` is row `i` of `robot`) and applies the
/// quality gates. The target, when given, is in CT coordinates.
///
/// # Errors
/// A [`RegistrationError`] saying why it cannot be computed or is refused.
pub fn register(
    ct: &[Point<Ct>],
    robot: &[Point<Robot>],
    target: Option<Point<Ct>>,
    gates: &Gates,
) -> Result<Registration, RegistrationError> {
    if ct.len() != robot.len() {
        return Err(RegistrationError::CountMismatch { ct: ct.len(), robot: robot.len() });
    }
    let n = ct.len();
    if n < gates.min_markers.max(3) {
        return Err(RegistrationError::TooFew { n, min: gates.min_markers.max(3) });
    }
    let (src, dst) = (coords(ct), coords(robot));
    let iso = fit(&src, &dst)?;
    let fre: Vec<f64> = src
        .iter()
        .zip(&dst)
        .map(|(s, d)| (iso * nalgebra::Point3::from(*s) - nalgebra::Point3::from(*d)).norm())
        .collect();
    let fre_rms_mm = (fre.iter().map(|x| x * x).sum::<f64>() / n as f64).sqrt();
    let mut markers = Vec::with_capacity(n);
    for i in 0..n {
        let (s_i, d_i): (Vec<_>, Vec<_>) =
            src.iter().zip(&dst).enumerate().filter(|(k, _)| *k != i).map(|(_, (s, d))| (*s, *d)).unzip();
        let loo = match fit(&s_i, &d_i) {
            Ok(t) => (t * nalgebra::Point3::from(src[i]) - nalgebra::Point3::from(dst[i])).norm(),
            Err(_) => f64::INFINITY,
        };
        markers.push(MarkerResidual { index: i, fre_mm: fre[i], leave_one_out_mm: loo });
    }
    let fle_mm = gates.fle_mm.unwrap_or_else(|| {
        if n > 2 {
            fre_rms_mm * (n as f64 / (n as f64 - 2.0)).sqrt()
        } else {
            f64::INFINITY
        }
    });
    let mut spread = Matrix3::zeros();
    let c = src.iter().sum::<Vector3<f64>>() / n as f64;
    for s in &src {
        spread += (s - c) * (s - c).transpose();
    }
    let mut e: Vec<f64> = spread.symmetric_eigenvalues().iter().map(|x| x.max(0.0).sqrt()).collect();
    e.sort_by(|a, b| b.total_cmp(a));
    let coplanar = e[2] < 0.02 * e[0];
    let predicted_tre_mm = target.map(|t| tre(&src, &t.to_nalgebra().coords, fle_mm));
    if let Some((index, worst)) = fre.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1)) {
        if worst > gates.max_residual_mm {
            return Err(RegistrationError::ResidualTooLarge {
                index,
                residual_mm: worst,
                limit_mm: gates.max_residual_mm,
            });
        }
    }
    if let Some(tre) = predicted_tre_mm {
        if tre > gates.max_predicted_tre_mm {
            return Err(RegistrationError::TreTooLarge { tre_mm: tre, limit_mm: gates.max_predicted_tre_mm });
        }
    }
    Ok(Registration {
        robot_from_ct: Transform::from_nalgebra(iso),
        n,
        fre_rms_mm,
        markers,
        fle_mm,
        coplanar,
        predicted_tre_mm,
    })
}
