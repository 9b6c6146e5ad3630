//! The planner's config: label tables (`config/labels.toml`), ablation devices
//! (`config/devices.toml`, MAR-2) and the clinical thresholds (`config/clinical-rules.toml`,
//! one section per rule ID).

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{read_toml, Checker, ConfigError};

/// The structure classes the planner knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Outside the patient.
    Background,
    /// The body: everything inside the skin not labelled otherwise (a label map with this class
    /// gives the skin surface).
    Body,
    /// Labelled soft tissue the needle may cross (muscle, fat) that does not outline the body.
    SoftTissue,
    /// Liver parenchyma.
    Liver,
    /// Tumour.
    Tumour,
    /// Blood vessel.
    Vessel,
    /// Bile duct.
    BileDuct,
    /// Gallbladder.
    Gallbladder,
    /// Bowel or stomach.
    Bowel,
    /// Lung.
    Lung,
    /// Heart.
    Heart,
    /// Bone (ribs, cartilage, metal).
    Bone,
    /// Vertebrae.
    Spine,
    /// Any other organ the needle must not cross.
    Organ,
}

impl Class {
    /// Classes the shaft must keep clear of (PATH-1); vessels only from the minimum diameter up.
    #[must_use]
    pub fn blocks_path(self) -> bool {
        matches!(
            self,
            Class::BileDuct
                | Class::Gallbladder
                | Class::Bowel
                | Class::Lung
                | Class::Heart
                | Class::Bone
                | Class::Spine
                | Class::Organ
        )
    }
}

/// A label table: value -> class and name.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelTable {
    /// Table name.
    pub name: String,
    entries: Vec<(u32, u32, Class, String)>,
}

impl LabelTable {
    /// The class of a label value, or None when the table does not list it.
    #[must_use]
    pub fn class(&self, value: u32) -> Option<Class> {
        self.entries.iter().find(|(a, b, _, _)| (*a..=*b).contains(&value)).map(|e| e.2)
    }

    /// The name of a label value.
    #[must_use]
    pub fn label_name(&self, value: u32) -> Option<&str> {
        self.entries.iter().find(|(a, b, _, _)| (*a..=*b).contains(&value)).map(|e| e.3.as_str())
    }

    /// A table from segment names (3D Slicer's `.seg.nrrd`): each name is read for the structure
    /// it names ("liver tumor" is a tumour, "portal vein" a vessel, "rib 7" bone); a name that
    /// names none of the planner's classes becomes `Organ`, which the needle must not cross.
    /// Value 0 is the background.
    #[must_use]
    pub fn from_segment_names(name: &str, segments: &[(u32, &str)]) -> Self {
        let mut entries = vec![(0, 0, Class::Background, "background".to_string())];
        for (value, segment) in segments {
            if *value != 0 && !entries.iter().any(|e| e.0 == *value) {
                entries.push((*value, *value, class_of_name(segment), (*segment).to_string()));
            }
        }
        Self { name: name.into(), entries }
    }

    /// Every entry: first and last value, class, name.
    #[must_use]
    pub fn entries(&self) -> &[(u32, u32, Class, String)] {
        &self.entries
    }

    /// Loads table `name` from `labels.toml`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value (also for an unknown table).
    pub fn load(path: &Path, name: &str) -> Result<Self, ConfigError> {
        let raw: RawLabels = read_toml(path)?;
        let mut c = Checker::new();
        let Some(t) = raw.tables.get(name) else {
            let known: Vec<&String> = raw.tables.keys().collect();
            c.problem("tables", name, format!("no such table; known: {known:?}"));
            return c.finish(path, LabelTable { name: name.into(), entries: Vec::new() });
        };
        let mut entries = Vec::new();
        for (i, e) in t.labels.iter().enumerate() {
            let key = format!("tables.{name}.labels[{i}].values");
            let parsed = match e.values.split_once('-') {
                Some((a, b)) => a.trim().parse::<u32>().ok().zip(b.trim().parse::<u32>().ok()),
                None => e.values.trim().parse::<u32>().ok().map(|v| (v, v)),
            };
            match parsed {
                Some((a, b)) if a <= b => {
                    if entries.iter().any(|(x, y, _, _)| a <= *y && *x <= b) {
                        c.problem(&key, &e.values, "overlaps an earlier entry");
                    }
                    entries.push((a, b, e.class, e.name.clone()));
                }
                _ => c.problem(&key, &e.values, "expected a value N or a range A-B with A <= B"),
            }
        }
        c.finish(path, LabelTable { name: name.into(), entries })
    }
}

/// The planner's class for a structure's name (English, any case; first match wins, so a
/// "liver tumour" is a tumour and a "hepatic vein" a vessel).
fn class_of_name(name: &str) -> Class {
    let n = name.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["tumor", "tumour", "lesion", "metasta", "hcc", "nodule", "target"]) {
        Class::Tumour
    } else if has(&["vein", "vessel", "artery", "aorta", "cava", "ivc", "portal"]) {
        Class::Vessel
    } else if has(&["bile", "duct", "biliary"]) {
        Class::BileDuct
    } else if has(&["gallbladder", "gall bladder"]) {
        Class::Gallbladder
    } else if has(&["bowel", "colon", "intestin", "duoden", "stomach", "jejun", "ileum"]) {
        Class::Bowel
    } else if has(&["lung", "pleura"]) {
        Class::Lung
    } else if has(&["heart", "pericard"]) {
        Class::Heart
    } else if has(&["vertebra", "spine", "spinal", "sacrum"]) {
        Class::Spine
    } else if has(&["rib", "bone", "sternum", "costal", "cartilage", "scapula", "clavicle"]) {
        Class::Bone
    } else if has(&["liver", "hepat"]) {
        Class::Liver
    } else if has(&["skin", "body", "patient"]) {
        Class::Body
    } else if has(&["muscle", "fat", "soft tissue"]) {
        Class::SoftTissue
    } else {
        Class::Organ
    }
}

/// One ablation setting after the shrink factor (MAR-2).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Zone {
    /// Device name.
    pub device: String,
    /// Setting name.
    pub setting: String,
    /// Long axis (along the needle), mm, shrink applied.
    pub long_mm: f64,
    /// Short axis, mm, shrink applied.
    pub short_mm: f64,
    /// Zone centre behind the tip, mm.
    pub centre_from_tip_mm: f64,
    /// The generator's power at this setting, W.
    pub power_w: f64,
    /// The programme's duration, s.
    pub time_s: f64,
}

/// Loads one device setting from `devices.toml`.
///
/// # Errors
/// A [`ConfigError`] naming the file, key and value, or listing the devices and settings.
pub fn load_zone(path: &Path, device: &str, setting: &str) -> Result<Zone, ConfigError> {
    let raw: RawDevices = read_toml(path)?;
    let mut c = Checker::new();
    let mut zone = Zone {
        device: device.into(),
        setting: setting.into(),
        long_mm: 0.0,
        short_mm: 0.0,
        centre_from_tip_mm: 0.0,
        power_w: 0.0,
        time_s: 0.0,
    };
    for (i, d) in raw.devices.iter().enumerate() {
        c.range(format!("devices[{i}].shrink_factor"), d.shrink_factor, 0.3, 1.0);
        for (j, s) in d.settings.iter().enumerate() {
            c.range(format!("devices[{i}].settings[{j}].long_mm"), s.long_mm, 5.0, 150.0);
            c.range(format!("devices[{i}].settings[{j}].short_mm"), s.short_mm, 5.0, 150.0);
            c.require(
                s.short_mm <= s.long_mm,
                format!("devices[{i}].settings[{j}].short_mm"),
                s.short_mm,
                "a prolate zone's short axis must not exceed its long axis",
            );
            c.range(format!("devices[{i}].settings[{j}].power_w"), s.power_w, 1.0, 500.0);
            c.range(format!("devices[{i}].settings[{j}].time_s"), s.time_s, 10.0, 3600.0);
            let _ = &d.kind;
        }
    }
    match raw.devices.iter().find(|d| d.name == device) {
        None => {
            let names: Vec<&str> = raw.devices.iter().map(|d| d.name.as_str()).collect();
            c.problem("devices[].name", device, format!("no such device; known: {names:?}"));
        }
        Some(d) => match d.settings.iter().find(|s| s.name == setting) {
            None => {
                let names: Vec<&str> = d.settings.iter().map(|s| s.name.as_str()).collect();
                c.problem(
                    format!("devices[{device}].settings[].name"),
                    setting,
                    format!("no such setting; known: {names:?}"),
                );
            }
            Some(s) => {
                zone.long_mm = s.long_mm * d.shrink_factor;
                zone.short_mm = s.short_mm * d.shrink_factor;
                (zone.power_w, zone.time_s) = (s.power_w, s.time_s);
                zone.centre_from_tip_mm =
                    c.range(format!("devices[{device}].centre_from_tip_mm"), d.centre_from_tip_mm, 0.0, 50.0);
            }
        },
    }
    c.finish(path, zone)
}

/// The clinical thresholds, each named after its rule.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[allow(missing_docs)]
pub struct Rules {
    pub needle_length_mm: f64,
    pub needle_radius_mm: f64,
    pub targeting_error_mm: f64,
    pub path1_min_vessel_diameter_mm: f64,
    pub path2_min_liver_mm: f64,
    pub path3_warn_mm: f64,
    pub path3_fail_mm: f64,
    pub path3_intercostal_detect_mm: f64,
    pub path4_enabled: bool,
    pub path5_warn_within_mm: f64,
    pub path6_reserve_mm: f64,
    pub mar1_fail_mm: f64,
    pub mar1_warn_mm: f64,
    pub mar3_max_positions: usize,
    pub oar1_min_mm: f64,
    pub oar2_min_mm: f64,
    pub oar3_min_vessel_diameter_mm: f64,
    pub oar3_min_mm: f64,
    pub ind1_max_single_mm: f64,
    pub ind2_max_tumours: usize,
    pub ind2_max_multiple_mm: f64,
    pub entry_spacing_mm: f64,
    pub exclude_posterior_fraction: f64,
    pub acc1_max_tip_error_mm: f64,
    pub ins3_max_checkpoints: usize,
    pub ver1_min_margin_mm: f64,
}

impl Rules {
    /// Loads `clinical-rules.toml`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let r: RawRules = read_toml(path)?;
        let mut c = Checker::new();
        let rules = Rules {
            needle_length_mm: c.range("needle.usable_length_mm", r.needle.usable_length_mm, 20.0, 400.0),
            needle_radius_mm: c.range("needle.radius_mm", r.needle.radius_mm, 0.1, 5.0),
            targeting_error_mm: c.range("needle.targeting_error_mm", r.needle.targeting_error_mm, 0.0, 20.0),
            path1_min_vessel_diameter_mm: c.range(
                "PATH-1.min_vessel_diameter_mm",
                r.path1.min_vessel_diameter_mm,
                0.5,
                20.0,
            ),
            path2_min_liver_mm: c.range("PATH-2.min_liver_mm", r.path2.min_liver_mm, 0.0, 100.0),
            path3_warn_mm: c.range("PATH-3.warn_below_mm", r.path3.warn_below_mm, 0.0, 300.0),
            path3_fail_mm: c.range("PATH-3.fail_below_mm", r.path3.fail_below_mm, 0.0, 300.0),
            path3_intercostal_detect_mm: c.range(
                "PATH-3.intercostal_detect_mm",
                r.path3.intercostal_detect_mm,
                1.0,
                100.0,
            ),
            path4_enabled: r.path4.enabled,
            path5_warn_within_mm: c.range("PATH-5.warn_within_mm", r.path5.warn_within_mm, 0.0, 100.0),
            path6_reserve_mm: c.range("PATH-6.reserve_mm", r.path6.reserve_mm, 0.0, 200.0),
            mar1_fail_mm: c.range("MAR-1.fail_below_mm", r.mar1.fail_below_mm, 0.0, 50.0),
            mar1_warn_mm: c.range("MAR-1.warn_below_mm", r.mar1.warn_below_mm, 0.0, 50.0),
            mar3_max_positions: r.mar3.max_positions,
            oar1_min_mm: c.range("OAR-1.min_mm", r.oar1.min_mm, 0.0, 50.0),
            oar2_min_mm: c.range("OAR-2.min_mm", r.oar2.min_mm, 0.0, 50.0),
            oar3_min_vessel_diameter_mm: c.range(
                "OAR-3.min_vessel_diameter_mm",
                r.oar3.min_vessel_diameter_mm,
                0.5,
                20.0,
            ),
            oar3_min_mm: c.range("OAR-3.min_mm", r.oar3.min_mm, 0.0, 50.0),
            ind1_max_single_mm: c.range("IND-1.max_single_diameter_mm", r.ind1.max_single_diameter_mm, 1.0, 200.0),
            ind2_max_tumours: r.ind2.max_tumours,
            ind2_max_multiple_mm: c.range(
                "IND-2.max_multiple_diameter_mm",
                r.ind2.max_multiple_diameter_mm,
                1.0,
                200.0,
            ),
            entry_spacing_mm: c.range("candidates.entry_spacing_mm", r.candidates.entry_spacing_mm, 0.5, 50.0),
            exclude_posterior_fraction: c.range(
                "candidates.exclude_posterior_fraction",
                r.candidates.exclude_posterior_fraction,
                0.0,
                0.9,
            ),
            acc1_max_tip_error_mm: c.range("ACC-1.max_tip_error_mm", r.acc1.max_tip_error_mm, 0.1, 10.0),
            ins3_max_checkpoints: r.ins3.max_checkpoints,
            ver1_min_margin_mm: c.range("VER-1.min_margin_mm", r.ver1.min_margin_mm, 0.0, 50.0),
        };
        c.count("INS-3.max_checkpoints", rules.ins3_max_checkpoints, 1, 20);
        c.require(
            rules.path3_fail_mm <= rules.path3_warn_mm,
            "PATH-3.fail_below_mm",
            rules.path3_fail_mm,
            "must not exceed warn_below_mm",
        );
        c.require(
            rules.mar1_fail_mm <= rules.mar1_warn_mm,
            "MAR-1.fail_below_mm",
            rules.mar1_fail_mm,
            "must not exceed warn_below_mm",
        );
        c.count("MAR-3.max_positions", rules.mar3_max_positions, 1, 20);
        c.finish(path, rules)
    }
}

impl Default for Rules {
    /// The values of the shipped config/clinical-rules.toml.
    fn default() -> Self {
        Self {
            needle_length_mm: 200.0,
            needle_radius_mm: 0.75,
            targeting_error_mm: 2.0,
            path1_min_vessel_diameter_mm: 3.0,
            path2_min_liver_mm: 10.0,
            path3_warn_mm: 100.0,
            path3_fail_mm: 70.0,
            path3_intercostal_detect_mm: 15.0,
            path4_enabled: true,
            path5_warn_within_mm: 10.0,
            path6_reserve_mm: 20.0,
            mar1_fail_mm: 5.0,
            mar1_warn_mm: 10.0,
            mar3_max_positions: 6,
            oar1_min_mm: 5.0,
            oar2_min_mm: 5.0,
            oar3_min_vessel_diameter_mm: 3.0,
            oar3_min_mm: 5.0,
            ind1_max_single_mm: 50.0,
            ind2_max_tumours: 3,
            ind2_max_multiple_mm: 30.0,
            entry_spacing_mm: 3.0,
            exclude_posterior_fraction: 0.3,
            acc1_max_tip_error_mm: 3.0,
            ins3_max_checkpoints: 5,
            ver1_min_margin_mm: 5.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    tables: std::collections::BTreeMap<String, RawTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    labels: Vec<RawLabel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    values: String,
    class: Class,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    devices: Vec<RawDevice>,
    /// Read by [`crate::heat_sink::load_heat_sink`].
    #[allow(dead_code)]
    heat_sink: Option<serde::de::IgnoredAny>,
}

/// `devices.toml` as the heat sink's loader reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct RawDevicesFile {
    pub(crate) heat_sink: Option<crate::heat_sink::HeatSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    kind: String,
    shrink_factor: f64,
    centre_from_tip_mm: f64,
    settings: Vec<RawSetting>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetting {
    name: String,
    power_w: f64,
    time_s: f64,
    long_mm: f64,
    short_mm: f64,
}

macro_rules! raw_sections {
    ($($name:ident { $($field:ident: $ty:ty),* })*) => {
        $(
            #[derive(Debug, Deserialize)]
            #[serde(deny_unknown_fields)]
            struct $name { $($field: $ty),* }
        )*
    };
}

raw_sections! {
    RawNeedle { usable_length_mm: f64, radius_mm: f64, targeting_error_mm: f64 }
    RawPath1 { min_vessel_diameter_mm: f64 }
    RawPath2 { min_liver_mm: f64 }
    RawPath3 { warn_below_mm: f64, fail_below_mm: f64, intercostal_detect_mm: f64 }
    RawPath4 { enabled: bool }
    RawPath5 { warn_within_mm: f64 }
    RawPath6 { reserve_mm: f64 }
    RawMar1 { fail_below_mm: f64, warn_below_mm: f64 }
    RawMar3 { max_positions: usize }
    RawOar1 { min_mm: f64 }
    RawOar2 { min_mm: f64 }
    RawOar3 { min_vessel_diameter_mm: f64, min_mm: f64 }
    RawInd1 { max_single_diameter_mm: f64 }
    RawInd2 { max_tumours: usize, max_multiple_diameter_mm: f64 }
    RawCandidates { entry_spacing_mm: f64, exclude_posterior_fraction: f64 }
    RawAcc1 { max_tip_error_mm: f64 }
    RawIns3 { max_checkpoints: usize }
    RawVer1 { min_margin_mm: f64 }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    needle: RawNeedle,
    #[serde(rename = "PATH-1")]
    path1: RawPath1,
    #[serde(rename = "PATH-2")]
    path2: RawPath2,
    #[serde(rename = "PATH-3")]
    path3: RawPath3,
    #[serde(rename = "PATH-4")]
    path4: RawPath4,
    #[serde(rename = "PATH-5")]
    path5: RawPath5,
    #[serde(rename = "PATH-6")]
    path6: RawPath6,
    #[serde(rename = "MAR-1")]
    mar1: RawMar1,
    #[serde(rename = "MAR-3")]
    mar3: RawMar3,
    #[serde(rename = "OAR-1")]
    oar1: RawOar1,
    #[serde(rename = "OAR-2")]
    oar2: RawOar2,
    #[serde(rename = "OAR-3")]
    oar3: RawOar3,
    #[serde(rename = "IND-1")]
    ind1: RawInd1,
    #[serde(rename = "IND-2")]
    ind2: RawInd2,
    candidates: RawCandidates,
    #[serde(rename = "ACC-1")]
    acc1: RawAcc1,
    #[serde(rename = "INS-3")]
    ins3: RawIns3,
    #[serde(rename = "VER-1")]
    ver1: RawVer1,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_map_to_classes() {
        let t = LabelTable::from_segment_names(
            "slicer",
            &[
                (1, "Liver"),
                (2, "liver tumor"),
                (3, "Portal vein"),
                (4, "hepatic veins"),
                (5, "Gallbladder"),
                (6, "Rib 7 right"),
                (7, "kidney"),
                (8, "Vertebrae L1"),
                (9, "Skin"),
                (10, "common bile duct"),
            ],
        );
        let classes: Vec<Option<Class>> = (0..=11).map(|v| t.class(v)).collect();
        assert_eq!(
            classes,
            vec![
                Some(Class::Background),
                Some(Class::Liver),
                Some(Class::Tumour),
                Some(Class::Vessel),
                Some(Class::Vessel),
                Some(Class::Gallbladder),
                Some(Class::Bone),
                Some(Class::Organ),
                Some(Class::Spine),
                Some(Class::Body),
                Some(Class::BileDuct),
                None,
            ]
        );
        assert_eq!(t.label_name(2), Some("liver tumor"));
    }
}
