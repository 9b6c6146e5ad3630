//! Scenario files (`config/scenarios/*.toml`): the simulated patient a run uses. Parsed strictly,
//! like every config file: unknown keys are refused and every problem names its key and value.

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{parse_toml, read_toml, Checker, ConfigError};

use crate::breathing::{BreathingSpec, RecordedBreathing};
use crate::faults::{FaultKind, FaultSpec};
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

/// The error sources of a simulated procedure that Stylet never sees (docs/demo.md): the
/// true robot, the needle in tissue and the moving liver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorSources {
    /// Each link of the true arm is longer or shorter than the model by up to this, mm (uniform).
    pub link_length_error_mm: f64,
    /// Each revolute joint's true zero is off by up to this, degrees (uniform).
    pub joint_offset_error_deg: f64,
    /// The needle bends off its axis by up to this per 100 mm inserted (random direction).
    pub needle_deflection_mm_per_100mm: f64,
    /// The tip cuts tissue where the breathing liver is at that moment (not where it was imaged).
    pub liver_motion: bool,
    /// The liver is pushed ahead of the advancing needle by up to a value drawn per run from
    /// this range, mm (`[0, 0]`: off).
    pub tissue_push_mm: [f64; 2],
    /// The pushed tissue relaxes over the stopped needle with this time constant, s.
    pub tissue_relax_s: f64,
    /// The patient moves on the table by up to this between CTs, mm (0: off).
    pub patient_shift_mm: f64,
    /// Checkpoint CTs are taken at this fraction of the planning CT's dose: their noise is the
    /// planning noise / sqrt(fraction) (1: the same).
    pub checkpoint_dose_fraction: f64,
}

impl Default for ErrorSources {
    fn default() -> Self {
        Self {
            link_length_error_mm: 0.2,
            joint_offset_error_deg: 0.05,
            needle_deflection_mm_per_100mm: 1.0,
            liver_motion: true,
            tissue_push_mm: [0.0, 0.0],
            tissue_relax_s: 5.0,
            patient_shift_mm: 0.0,
            checkpoint_dose_fraction: 1.0,
        }
    }
}

/// Something that happens during the procedure, once the needle is this deep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcedureEvent {
    /// Inserted depth past the skin that triggers it, mm.
    pub at_inserted_mm: f64,
    /// Delay after the depth is reached, s.
    pub after_s: f64,
    /// What happens.
    pub what: EventKind,
}

/// What a [`ProcedureEvent`] does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventKind {
    /// A simulated controller fault (`disconnect`, `reset`, `pedal-release`, ... as in docs/sim.md).
    Controller(FaultKind),
    /// The respiratory belt stops sending samples for this many seconds.
    BeltSilent(f64),
    /// The operator asks this (pause, resume, abort, retract).
    Operator(stylet_procedure::ports::Request),
}

/// How a scenario must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The procedure completes (ACC-1, ablation, verification, retraction).
    Done,
    /// A fault is latched and the arm is in the documented safe state (drives off, brakes on,
    /// needle held where it stopped, operator reset required).
    SafeStop,
    /// The operator aborted: the arm stopped and held, the needle out only on the operator's
    /// retract command, drives off once it is out.
    Aborted,
}

/// A scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// One line saying what the scenario exercises.
    pub description: String,
    /// The patient's CT.
    pub phantom: PhantomScenario,
    /// The patient's breathing (the seed is the run's).
    pub breathing: BreathingSpec,
    /// Hidden error sources.
    pub errors: ErrorSources,
    /// Events during insertion (faults), in the order they trigger.
    pub events: Vec<ProcedureEvent>,
    /// How the run must end.
    pub expect: Outcome,
    /// The scripted operator's decisions.
    pub operator: OperatorScript,
}

/// What the scripted operator decides when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorScript {
    /// Overrides a high-risk plan (OAR-2) when no safe one is left (the override is logged with
    /// the rule).
    pub override_high_risk: bool,
    /// After a fault, asks the supervisor's reset (otherwise ends the procedure there).
    pub reset_after_fault: bool,
    /// After an abort or an error with the needle in tissue, keeps the arm holding (never
    /// commands the retraction).
    pub hold_after_stop: bool,
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
        let tumours = tumours(&mut c, p);
        let breathing = raw.breathing.as_ref().map_or_else(BreathingSpec::default, |b| breathing(&mut c, path, b));
        let errors = raw.errors.as_ref().map_or_else(ErrorSources::default, |e| errors(&mut c, e));
        let events = raw.events.iter().enumerate().filter_map(|(i, e)| event(&mut c, i, e)).collect();
        let expect = match raw.expect.as_deref().unwrap_or("done") {
            "done" => Outcome::Done,
            "safe-stop" => Outcome::SafeStop,
            "aborted" => Outcome::Aborted,
            other => {
                c.require(false, "expect", other, "must be \"done\", \"safe-stop\" or \"aborted\"");
                Outcome::Done
            }
        };
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
                breathing,
                errors,
                events,
                expect,
                operator: OperatorScript {
                    override_high_risk: raw.operator.as_ref().is_some_and(|o| o.override_high_risk),
                    reset_after_fault: raw.operator.as_ref().is_some_and(|o| o.reset_after_fault),
                    hold_after_stop: raw.operator.as_ref().is_some_and(|o| o.hold_after_stop),
                },
            },
        )
    }
}

/// The phantom's tumours, each checked to lie wholly inside the liver.
fn tumours(c: &mut Checker, p: &RawPhantom) -> Vec<TumourSpec> {
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
    tumours
}

/// `[breathing]`: the parametric model's settings, the sensor's, or a recorded trace (relative to
/// the scenario file's folder).
fn breathing(c: &mut Checker, path: &Path, b: &RawBreathing) -> BreathingSpec {
    let mut breathing = BreathingSpec::default();
    if let Some(p) = b.period_s {
        c.range("breathing.period_s[0]", p[0], 1.0, 20.0);
        c.range("breathing.period_s[1]", p[1], p[0], 20.0);
        breathing.period_s = p;
    }
    c.optional("breathing.amplitude_mm", b.amplitude_mm, 0.0, 40.0, &mut breathing.amplitude_mm);
    c.optional("breathing.amplitude_variation", b.amplitude_variation, 0.0, 1.0, &mut breathing.amplitude_variation);
    c.optional(
        "breathing.irregular_probability",
        b.irregular_probability,
        0.0,
        1.0,
        &mut breathing.irregular_probability,
    );
    c.optional("breathing.drift_mm_per_min", b.drift_mm_per_min, -20.0, 20.0, &mut breathing.drift_mm_per_min);
    if let Some(u) = &b.sensor_unit {
        c.require(!u.trim().is_empty(), "breathing.sensor_unit", format!("{u:?}"), "name a unit");
        breathing.sensor.unit = u.clone();
    }
    c.optional("breathing.sensor_rate_hz", b.sensor_rate_hz, 1.0, 5000.0, &mut breathing.sensor.rate_hz);
    if let Some(k) = b.sensor_units_per_mm {
        breathing.sensor.units_per_mm = c.range("breathing.sensor_units_per_mm", k, -1e6, 1e6);
        c.require(k != 0.0, "breathing.sensor_units_per_mm", k, "a sensor that reads nothing");
    }
    c.optional("breathing.sensor_zero", b.sensor_zero, -1e9, 1e9, &mut breathing.sensor.zero);
    c.require(
        breathing.sensor.unit != "mm" || (breathing.sensor.units_per_mm - 1.0).abs() < 1e-12,
        "breathing.sensor_units_per_mm",
        breathing.sensor.units_per_mm,
        "a sensor in mm reads 1 per mm (name another unit)",
    );
    match (&b.trace, b.liver_amplitude_mm) {
        (Some(t), Some(amp)) => {
            let amp = c.range("breathing.liver_amplitude_mm", amp, 1.0, 50.0);
            // Relative to the scenario file's folder.
            let file = path.parent().unwrap_or_else(|| Path::new(".")).join(t);
            match stylet_respiration::trace::read_trace_any(&file) {
                Ok(trace) => match RecordedBreathing::from_trace(&trace, amp, breathing.si_per_mm, t) {
                    Some(r) => breathing.recorded = Some(r),
                    None => c.problem("breathing.trace", format!("{t:?}"), "the recording does not move"),
                },
                Err(e) => c.problem("breathing.trace", format!("{t:?}"), e.to_string()),
            }
        }
        (Some(t), None) => {
            c.problem("breathing.trace", format!("{t:?}"), "give liver_amplitude_mm with it");
        }
        (None, Some(a)) => c.problem("breathing.liver_amplitude_mm", a, "goes with trace"),
        (None, None) => {}
    }
    breathing
}

/// `[errors]`: the error sources of the world, each within its bounds.
fn errors(c: &mut Checker, e: &RawErrors) -> ErrorSources {
    let mut errors = ErrorSources::default();
    c.optional("errors.link_length_error_mm", e.link_length_error_mm, 0.0, 5.0, &mut errors.link_length_error_mm);
    c.optional("errors.joint_offset_error_deg", e.joint_offset_error_deg, 0.0, 2.0, &mut errors.joint_offset_error_deg);
    c.optional(
        "errors.needle_deflection_mm_per_100mm",
        e.needle_deflection_mm_per_100mm,
        0.0,
        10.0,
        &mut errors.needle_deflection_mm_per_100mm,
    );
    if let Some(v) = e.liver_motion {
        errors.liver_motion = v;
    }
    if let Some([lo, hi]) = e.tissue_push_mm {
        c.range("errors.tissue_push_mm[0]", lo, 0.0, 10.0);
        c.range("errors.tissue_push_mm[1]", hi, lo.max(0.0), 10.0);
        errors.tissue_push_mm = [lo, hi];
    }
    c.optional("errors.tissue_relax_s", e.tissue_relax_s, 0.1, 120.0, &mut errors.tissue_relax_s);
    c.optional("errors.patient_shift_mm", e.patient_shift_mm, 0.0, 10.0, &mut errors.patient_shift_mm);
    c.optional(
        "errors.checkpoint_dose_fraction",
        e.checkpoint_dose_fraction,
        0.05,
        1.0,
        &mut errors.checkpoint_dose_fraction,
    );
    errors
}

/// `[[events]]` entry `i`: exactly one of a controller fault, a silent belt or an operator's
/// request, with when it happens.
fn event(c: &mut Checker, i: usize, e: &RawEvent) -> Option<ProcedureEvent> {
    let key = format!("events[{i}]");
    let at = c.range(format!("{key}.at_inserted_mm"), e.at_inserted_mm, 0.0, 300.0);
    let after = c.range(format!("{key}.after_s"), e.after_s, 0.0, 600.0);
    let what = match (&e.fault, e.belt_silent_s, &e.operator) {
        (None, None, Some(o)) => match o.as_str() {
            "pause" => Some(EventKind::Operator(stylet_procedure::ports::Request::Pause)),
            "resume" => Some(EventKind::Operator(stylet_procedure::ports::Request::Resume)),
            "abort" => Some(EventKind::Operator(stylet_procedure::ports::Request::Abort)),
            "retract" => Some(EventKind::Operator(stylet_procedure::ports::Request::Retract)),
            "leave" => Some(EventKind::Operator(stylet_procedure::ports::Request::Leave)),
            other => {
                c.require(false, format!("{key}.operator"), other, "must be pause, resume, abort, retract or leave");
                None
            }
        },
        (Some(f), None, None) => match FaultSpec::parse(f) {
            Ok(spec) if spec.at_s == 0.0 => Some(EventKind::Controller(spec.kind)),
            Ok(_) => {
                c.require(false, format!("{key}.fault"), f, "give the time with at_inserted_mm and after_s, not @");
                None
            }
            Err(err) => {
                c.require(false, format!("{key}.fault"), f, err.to_string());
                None
            }
        },
        (None, Some(s), None) => Some(EventKind::BeltSilent(c.range(format!("{key}.belt_silent_s"), s, 0.1, 600.0))),
        _ => {
            c.require(false, key.clone(), "", "give exactly one of fault, belt_silent_s and operator");
            None
        }
    };
    what.map(|what| ProcedureEvent { at_inserted_mm: at, after_s: after, what })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    phantom: RawPhantom,
    breathing: Option<RawBreathing>,
    errors: Option<RawErrors>,
    #[serde(default)]
    events: Vec<RawEvent>,
    expect: Option<String>,
    operator: Option<RawOperator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    #[serde(default)]
    override_high_risk: bool,
    #[serde(default)]
    reset_after_fault: bool,
    #[serde(default)]
    hold_after_stop: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreathing {
    period_s: Option<[f64; 2]>,
    amplitude_mm: Option<f64>,
    amplitude_variation: Option<f64>,
    irregular_probability: Option<f64>,
    drift_mm_per_min: Option<f64>,
    trace: Option<String>,
    liver_amplitude_mm: Option<f64>,
    sensor_unit: Option<String>,
    sensor_rate_hz: Option<f64>,
    sensor_units_per_mm: Option<f64>,
    sensor_zero: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrors {
    link_length_error_mm: Option<f64>,
    joint_offset_error_deg: Option<f64>,
    needle_deflection_mm_per_100mm: Option<f64>,
    liver_motion: Option<bool>,
    tissue_push_mm: Option<[f64; 2]>,
    tissue_relax_s: Option<f64>,
    patient_shift_mm: Option<f64>,
    checkpoint_dose_fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at_inserted_mm: f64,
    #[serde(default)]
    after_s: f64,
    fault: Option<String>,
    belt_silent_s: Option<f64>,
    operator: Option<String>,
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
