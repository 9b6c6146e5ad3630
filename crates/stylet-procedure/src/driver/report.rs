//! What the driver reports: how each needle position and the procedure ended.

use stylet_core::frame::{Ct, Point, Vector};

use crate::Phase;

/// How a needle position ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PositionReport {
    /// Entry at the skin (CT, LPS mm).
    pub entry: Point<Ct>,
    /// Planned tip.
    pub planned_tip: Point<Ct>,
    /// Unit needle axis.
    pub axis: Vector<Ct>,
    /// The last tip measured in a CT.
    pub measured_tip: Option<Point<Ct>>,
    /// CTs with the needle (the confirmation CT and the checkpoints), all insertions.
    pub cts_with_needle: usize,
    /// Re-insertions after a lateral miss.
    pub reinsertions: usize,
    /// MAR-1 margin with the measured tip, mm (with the zones placed so far).
    pub verified_margin_mm: Option<f64>,
    /// Where the ablation zone was placed: its centre on the axis behind the measured tip
    /// (`None` until ablated).
    pub ablated_zone_centre: Option<Point<Ct>>,
    /// How far the liver had moved since the planning CT in each CT with the needle, as
    /// measured there (CT, LPS mm; `None` where it could not be measured).
    pub liver_at_cts_mm: Vec<Option<Vector<Ct>>>,
}

/// The fiducial registration's quality.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RegistrationReport {
    /// Markers matched and registered.
    pub markers: usize,
    /// Fiducial registration error, RMS, mm.
    pub fre_rms_mm: f64,
    /// Predicted target registration error at the tumour, mm.
    pub predicted_tre_mm: Option<f64>,
}

/// The plan the operator chose.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlanChosen {
    /// Its index in the planner's list.
    pub index: usize,
    /// The plan: positions, planned margin, rule verdicts.
    pub plan: stylet_planning::Plan,
}

/// How the procedure ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every position ablated, the needle out, the arm home, drives off.
    Done,
    /// The supervisor stopped the arm (a fault or an e-stop) and the operator ended the
    /// procedure; the arm holds in the supervisor's safe state.
    Stopped {
        /// The supervisor's state.
        state: String,
        /// The latched fault.
        fault: Option<String>,
        /// Needle depth past the skin when it stopped, mm.
        inserted_mm: f64,
    },
    /// The operator aborted; the needle was retracted on the operator's command, or holds.
    Aborted {
        /// Where.
        phase: Phase,
        /// The needle came out.
        retracted: bool,
    },
    /// The procedure could not go on (the error); the arm stopped and holds, or was retracted on
    /// the operator's command, or the needle was outside and the drives are off.
    Failed {
        /// Why.
        error: String,
        /// The needle came out (or never went in).
        needle_out: bool,
    },
}

/// What the driver did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// The workflow's last phase.
    pub final_phase: Phase,
    /// The tumour centre (CT, LPS mm), from the planner.
    pub target: Option<Point<Ct>>,
    /// The fiducial registration (`None` before it, or when the registration came from the
    /// operator's side).
    pub registration: Option<RegistrationReport>,
    /// The plan executed, with every rule's verdict (`high_risk`: executed on an override of
    /// OAR-2).
    pub plan: Option<PlanChosen>,
    /// The tumour's voxels in the planning CT (indices into its voxels), from the planner.
    #[serde(skip)]
    pub tumour_voxels: Vec<usize>,
    /// Each needle position.
    pub positions: Vec<PositionReport>,
    /// Fraction of gate decisions open during the insertions.
    pub gate_open_fraction: f64,
    /// The supervisor's latched fault at the end.
    pub fault: Option<String>,
}

impl Default for Report {
    /// Before the procedure: in set-up, nothing measured (the outcome is set when it ends).
    fn default() -> Self {
        Report {
            outcome: Outcome::Done,
            final_phase: Phase::SetUp,
            target: None,
            registration: None,
            plan: None,
            tumour_voxels: Vec::new(),
            positions: Vec::new(),
            gate_open_fraction: 0.0,
            fault: None,
        }
    }
}
