//! `config/registration.toml`.

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{parse_toml, read_toml, Checker, ConfigError};

use crate::rigid::Gates;

/// The registration config.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistrationConfig {
    /// Quality gates.
    pub gates: Gates,
    /// Matching tolerance, mm.
    pub matching_tolerance_mm: f64,
    /// Marker detection: threshold (HU), diameter (mm), volume fraction range, max elongation.
    pub fiducials: FiducialConfig,
}

/// Marker detection settings as written (the imaging crate applies them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FiducialConfig {
    /// Threshold, HU.
    pub threshold_hu: f64,
    /// Bead diameter, mm.
    pub diameter_mm: f64,
    /// Accepted volume fraction of the bead's: [min, max].
    pub volume_fraction: [f64; 2],
    /// Largest elongation.
    pub max_elongation: f64,
}

impl RegistrationConfig {
    /// Loads and checks the file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(path, read_toml(path)?)
    }

    /// Parses registration.toml text as if read from `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn from_toml_str(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_raw(path, parse_toml(path, text)?)
    }

    fn from_raw(path: &Path, raw: Raw) -> Result<Self, ConfigError> {
        let mut c = Checker::new();
        let q = &raw.quality;
        c.require(
            (3..=1000).contains(&q.min_markers),
            "quality.min_markers",
            q.min_markers,
            "must be within [3, 1000]",
        );
        let tre = c.range("quality.max_predicted_tre_mm", q.max_predicted_tre_mm, 0.01, 100.0);
        let res = c.range("quality.max_residual_mm", q.max_residual_mm, 0.01, 100.0);
        let fle = c.range("quality.fle_mm", q.fle_mm, 0.0, 100.0);
        let tol = c.range("matching.tolerance_mm", raw.matching.tolerance_mm, 0.01, 100.0);
        let fiducials = FiducialConfig::check(&raw.fiducials, &mut c);
        c.finish(
            path,
            RegistrationConfig {
                gates: Gates {
                    min_markers: q.min_markers,
                    max_predicted_tre_mm: tre,
                    max_residual_mm: res,
                    fle_mm: (fle > 0.0).then_some(fle),
                },
                matching_tolerance_mm: tol,
                fiducials,
            },
        )
    }
}

impl FiducialConfig {
    /// Loads a marker config file: a `[fiducials]` table with the keys of registration.toml's,
    /// for markers other than the default frame's beads (`stylet fiducials --marker-config`).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawMarkerFile = read_toml(path)?;
        let mut c = Checker::new();
        let f = Self::check(&raw.fiducials, &mut c);
        c.finish(path, f)
    }

    fn check(f: &RawFiducials, c: &mut Checker) -> Self {
        let out = FiducialConfig {
            threshold_hu: c.range("fiducials.threshold_hu", f.threshold_hu, -1000.0, 30_000.0),
            diameter_mm: c.range("fiducials.diameter_mm", f.diameter_mm, 0.5, 50.0),
            volume_fraction: [
                c.range("fiducials.min_volume_fraction", f.min_volume_fraction, 0.0, 10.0),
                c.range("fiducials.max_volume_fraction", f.max_volume_fraction, 0.0, 100.0),
            ],
            max_elongation: c.range("fiducials.max_elongation", f.max_elongation, 1.0, 100.0),
        };
        c.require(
            f.min_volume_fraction < f.max_volume_fraction,
            "fiducials.max_volume_fraction",
            f.max_volume_fraction,
            "must exceed min_volume_fraction",
        );
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarkerFile {
    fiducials: RawFiducials,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    quality: RawQuality,
    matching: RawMatching,
    fiducials: RawFiducials,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiducials {
    threshold_hu: f64,
    diameter_mm: f64,
    min_volume_fraction: f64,
    max_volume_fraction: f64,
    max_elongation: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuality {
    min_markers: usize,
    max_predicted_tre_mm: f64,
    max_residual_mm: f64,
    fle_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatching {
    tolerance_mm: f64,
}
