//! `config/robot/kinematics.toml`: the chain, the IK settings and the keep-out volumes.

use std::path::{Path, PathBuf};

use nalgebra::{Unit, Vector3};
use serde::Deserialize;
use stylet_core::config::{read_toml, Checker, ConfigError};
use stylet_core::frame::{Point, Vector};

use crate::ik::IkOptions;
use crate::keepout::{KeepOut, KeepOuts};

/// The parsed kinematics config.
#[derive(Clone, Debug, PartialEq)]
pub struct KinematicsConfig {
    /// URDF path (resolved against the config file's folder).
    pub urdf: PathBuf,
    /// Base link.
    pub base_link: String,
    /// Tip link (its z axis is the needle axis).
    pub tip_link: String,
    /// IK settings.
    pub ik: IkOptions,
    /// Keep-out volumes and the arm's radius.
    pub keepouts: KeepOuts,
    /// The needle.
    pub needle: Needle,
}

/// The needle and its driver, mm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Needle {
    /// Usable length beyond the guide.
    pub usable_length_mm: f64,
    /// Outer diameter.
    pub outer_diameter_mm: f64,
    /// From the flange to the guide's exit.
    pub driver_length_mm: f64,
}

impl KinematicsConfig {
    /// Loads and checks the file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = read_toml(path)?;
        let mut c = Checker::new();
        let i = &raw.ik;
        let ik = IkOptions {
            standoff_mm: c.range("ik.standoff_mm", i.standoff_mm, 0.0, 200.0),
            position_tolerance_mm: c.range("ik.position_tolerance_mm", i.position_tolerance_mm, 1e-9, 1.0),
            axis_tolerance_rad: c.range("ik.axis_tolerance_deg", i.axis_tolerance_deg, 1e-9, 1.0).to_radians(),
            max_iterations: i.max_iterations,
            max_attempts: i.max_attempts,
            solution_attempts: i.solution_attempts,
            distinct_mm: c.range("ik.distinct_mm", i.distinct_mm, 0.001, 1000.0),
            min_manipulability: c.range("ik.min_manipulability", i.min_manipulability, 0.0, 1.0),
            characteristic_length_mm: IkOptions::default().characteristic_length_mm,
            seed: i.seed,
        };
        c.require(
            (1..=10_000).contains(&i.max_iterations),
            "ik.max_iterations",
            i.max_iterations,
            "must be within [1, 10000]",
        );
        c.require(
            (1..=10_000).contains(&i.max_attempts),
            "ik.max_attempts",
            i.max_attempts,
            "must be within [1, 10000]",
        );
        c.require(
            (1..=1000).contains(&i.solution_attempts),
            "ik.solution_attempts",
            i.solution_attempts,
            "must be within [1, 1000]",
        );
        let link_radius_mm = c.range("clearance.link_radius_mm", raw.clearance.link_radius_mm, 0.0, 500.0);
        let mut volumes = Vec::new();
        for (k, cy) in raw.keepout.cylinder.iter().enumerate() {
            let key = |f: &str| format!("keepout.cylinder[{k}].{f}");
            let axis = Vector3::from(cy.axis);
            let Some(axis) = Unit::try_new(axis, 1e-9) else {
                c.problem(key("axis"), format!("{:?}", cy.axis), "must not be zero");
                continue;
            };
            let inner = c.range(key("inner_radius_mm"), cy.inner_radius_mm, 0.0, 1e5);
            let outer = c.range(key("outer_radius_mm"), cy.outer_radius_mm, 0.0, 1e5);
            c.require(inner < outer, key("outer_radius_mm"), outer, format!("must exceed inner_radius_mm = {inner}"));
            volumes.push(KeepOut::Cylinder {
                name: cy.name.clone(),
                center: Point::from_coords(Vector3::from(cy.center_mm)),
                axis: Vector::from_nalgebra(axis.into_inner()),
                inner_radius_mm: inner,
                outer_radius_mm: outer,
                half_length_mm: c.positive(key("half_length_mm"), cy.half_length_mm),
            });
        }
        for (k, b) in raw.keepout.r#box.iter().enumerate() {
            let ok = (0..3).all(|a| b.min_mm[a] < b.max_mm[a]);
            c.require(
                ok,
                format!("keepout.box[{k}].max_mm"),
                format!("{:?}", b.max_mm),
                "must exceed min_mm on every axis",
            );
            volumes.push(KeepOut::Box {
                name: b.name.clone(),
                min: Point::from_coords(Vector3::from(b.min_mm)),
                max: Point::from_coords(Vector3::from(b.max_mm)),
            });
        }
        for (k, h) in raw.keepout.height_field.iter().enumerate() {
            let key = |f: &str| format!("keepout.height_field[{k}].{f}");
            let spacing = c.positive(key("spacing_mm"), h.spacing_mm);
            let ny = h.heights_mm.len().checked_div(h.nx).unwrap_or(0);
            c.require(
                h.nx >= 2 && ny >= 2 && h.nx * ny == h.heights_mm.len(),
                key("heights_mm"),
                h.heights_mm.len(),
                format!("must hold nx x ny values with nx = {} and ny >= 2", h.nx),
            );
            volumes.push(KeepOut::HeightField {
                name: h.name.clone(),
                origin_xy: nalgebra::Vector2::from(h.origin_xy_mm),
                spacing_mm: spacing,
                nx: h.nx,
                heights: h.heights_mm.clone(),
            });
        }
        let n = &raw.needle;
        let needle = Needle {
            usable_length_mm: c.range("needle.usable_length_mm", n.usable_length_mm, 1.0, 1000.0),
            outer_diameter_mm: c.range("needle.outer_diameter_mm", n.outer_diameter_mm, 0.1, 20.0),
            driver_length_mm: c.range("needle.driver_length_mm", n.driver_length_mm, 0.0, 1000.0),
        };
        let urdf = path.parent().map_or_else(|| raw.urdf.clone(), |d| d.join(&raw.urdf));
        c.finish(
            path,
            KinematicsConfig {
                urdf,
                base_link: raw.base_link,
                tip_link: raw.tip_link,
                ik,
                keepouts: KeepOuts { volumes, link_radius_mm },
                needle,
            },
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    urdf: PathBuf,
    base_link: String,
    tip_link: String,
    needle: RawNeedle,
    ik: RawIk,
    clearance: RawClearance,
    #[serde(default)]
    keepout: RawKeepOut,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeedle {
    usable_length_mm: f64,
    outer_diameter_mm: f64,
    driver_length_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIk {
    standoff_mm: f64,
    min_manipulability: f64,
    position_tolerance_mm: f64,
    axis_tolerance_deg: f64,
    max_iterations: usize,
    max_attempts: usize,
    solution_attempts: usize,
    distinct_mm: f64,
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClearance {
    link_radius_mm: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeepOut {
    #[serde(default)]
    cylinder: Vec<RawCylinder>,
    #[serde(default, rename = "box")]
    r#box: Vec<RawBox>,
    #[serde(default)]
    height_field: Vec<RawHeightField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeightField {
    name: String,
    origin_xy_mm: [f64; 2],
    spacing_mm: f64,
    nx: usize,
    heights_mm: Vec<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCylinder {
    name: String,
    center_mm: [f64; 3],
    axis: [f64; 3],
    inner_radius_mm: f64,
    outer_radius_mm: f64,
    half_length_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBox {
    name: String,
    min_mm: [f64; 3],
    max_mm: [f64; 3],
}
