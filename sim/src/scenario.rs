//! Scenario files (`config/scenarios/*.toml`): the simulated patient a run uses. Parsed strictly,
//! like every config file: unknown keys are refused and every problem names its key and value.

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{parse_toml, read_toml, Checker, ConfigError};

use crate::phantom::{tumour_inside_liver, TumourSpec};

/// The phantom part of a scenario (what `stylet sim phantom` generates).
#[derive(Clone, Debug, PartialEq)]
pub struct PhantomScenario {
    /// Random seed.
    pub seed: u64,
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Voxel size, mm.
    pub spacing_mm: [f64; 3],
    /// Image noise, HU (standard deviation).
    pub noise_hu: f64,
    /// A metal wire with streak artefacts.
    pub metal_wire: bool,
    /// Frame beads left out of the image.
    pub missing_beads: Vec<usize>,
    /// Bead-like extras.
    pub extra_beads: usize,
    /// Tumours.
    pub tumours: Vec<TumourSpec>,
}

/// A scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// One line saying what the scenario exercises.
    pub description: String,
    /// The patient's CT.
    pub phantom: PhantomScenario,
}

impl Scenario {
    /// Loads a scenario file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(path, read_toml(path)?)
    }

    /// Parses scenario TOML text as if read from `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn from_toml_str(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_raw(path, parse_toml(path, text)?)
    }

    fn from_raw(path: &Path, raw: RawScenario) -> Result<Self, ConfigError> {
        let mut c = Checker::new();
        let p = &raw.phantom;
        for (i, d) in p.dims.iter().enumerate() {
            c.count(format!("phantom.dims[{i}]"), *d, 8, 2048);
        }
        for (i, s) in p.spacing_mm.iter().enumerate() {
            c.range(format!("phantom.spacing_mm[{i}]"), *s, 0.05, 10.0);
        }
        c.range("phantom.noise_hu", p.noise_hu, 0.0, 500.0);
        c.require(p.extra_beads <= 20, "phantom.extra_beads", p.extra_beads, "must be at most 20");
        c.require(!p.tumours.is_empty(), "phantom.tumours", "[]", "at least one tumour");
        let mut tumours = Vec::new();
        for (i, t) in p.tumours.iter().enumerate() {
            let d = c.range(format!("phantom.tumours[{i}].diameter_mm"), t.diameter_mm, 3.0, 100.0);
            let spec = TumourSpec { offset_from_liver_centre_mm: t.offset_from_liver_centre_mm, diameter_mm: d };
            c.require(
                tumour_inside_liver(&spec, p.dims, p.spacing_mm),
                format!("phantom.tumours[{i}].offset_from_liver_centre_mm"),
                format!("{:?}", t.offset_from_liver_centre_mm),
                format!("a {d} mm tumour there does not lie wholly inside the liver"),
            );
            tumours.push(spec);
        }
        c.finish(
            path,
            Scenario {
                description: raw.description,
                phantom: PhantomScenario {
                    seed: p.seed,
                    dims: p.dims,
                    spacing_mm: p.spacing_mm,
                    noise_hu: p.noise_hu,
                    metal_wire: p.metal_wire,
                    missing_beads: p.missing_beads.clone(),
                    extra_beads: p.extra_beads,
                    tumours,
                },
            },
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    phantom: RawPhantom,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhantom {
    seed: u64,
    dims: [usize; 3],
    spacing_mm: [f64; 3],
    noise_hu: f64,
    metal_wire: bool,
    #[serde(default)]
    missing_beads: Vec<usize>,
    #[serde(default)]
    extra_beads: usize,
    tumours: Vec<RawTumour>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTumour {
    offset_from_liver_centre_mm: [f64; 3],
    diameter_mm: f64,
}
