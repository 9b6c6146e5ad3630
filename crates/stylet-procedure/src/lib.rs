//! The procedure workflow (docs/procedure.md): a state machine separate from the supervisor's
//! motion states, driven by operator actions and by what the other capabilities report. Pure:
//! [`Workflow::handle`] takes the time and the input and returns the transition (with its
//! reason) or a refusal (with its reason); the caller records both.
//!
//! Geometry crosses the crates in frame types: the planner's positions are `Point<Ct>` (LPS, mm),
//! the IK's needle line is `Point<Robot>`, and only the registration takes one to the other:
//!
//! ```
//! use stylet_core::frame::{Ct, Robot, Transform};
//! fn aim(robot_from_ct: Transform<Robot, Ct>, p: &stylet_planning::Position) -> stylet_kinematics::NeedleLine {
//!     stylet_kinematics::NeedleLine { entry: robot_from_ct * p.entry, target: robot_from_ct * p.tip }
//! }
//! ```
//!
//! A planned CT point handed to the IK as if it were in the robot frame does not compile:
//!
//! ```compile_fail
//! fn aim(p: &stylet_planning::Position) -> stylet_kinematics::NeedleLine {
//!     stylet_kinematics::NeedleLine { entry: p.entry, target: p.tip }
//! }
//! ```

use serde::Serialize;

pub mod driver;
pub mod ports;
pub mod results;
pub mod runner_motion;

pub use driver::{Driver, DriverConfig, DriverError, Outcome, Report};

/// Where the procedure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Patient and robot set up; nothing scanned.
    SetUp,
    /// Planning CT being taken (breath-hold at end-exhale: the reference level, RESP-3).
    PlanningCt,
    /// Fiducials detected, registration computed and quality-gated.
    Registration,
    /// Plans computed; the operator picks one.
    PlanSelection,
    /// The arm moves the needle onto the planned line outside the patient (IK, collision-checked).
    Alignment,
    /// Stepwise insertion in gated windows, the operator's enable held (INS-2).
    Insertion,
    /// A checkpoint CT: tip and axis measured against the plan.
    CheckpointCt,
    /// The tip is accepted at the target (ACC-1).
    AtTarget,
    /// Energy delivery.
    Ablation,
    /// Margin from the achieved tip position.
    Verification,
    /// Needle withdrawn.
    Retraction,
    /// Finished.
    Done,
    /// Held by the operator or by a fault; resumes to `paused_from`.
    Paused,
    /// Abort: safe retraction under way.
    Aborting,
    /// Aborted (needle out).
    Aborted,
    /// Emergency stop; needs an explicit reset.
    EStopped,
}

/// What can happen.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// The operator confirms the current step (start the CT, align, start ablation, ...).
    Confirm,
    /// A CT series arrived.
    CtAcquired,
    /// Registration finished: accepted by its quality gates, or refused with the reason.
    RegistrationDone {
        /// Passed the gates.
        accepted: bool,
        /// Why (the refusal's reason, or the predicted TRE).
        reason: String,
    },
    /// Planning finished with this many feasible plans (0: no safe path).
    PlansReady {
        /// Feasible plans.
        feasible: usize,
    },
    /// The operator picked a plan.
    SelectPlan {
        /// Its index.
        index: usize,
        /// Its needle positions (overlapping ablations, MAR-3), executed one after the other.
        positions: usize,
    },
    /// A confirmation CT with the needle aligned outside the skin measured how far its tip is
    /// off the planned line; the arm re-aligns by that much (outside tissue, INS-1). Counts as a
    /// checkpoint CT of the insertion (dose).
    AlignmentChecked {
        /// Tip offset from the planned line at the skin, mm.
        offset_mm: f64,
    },
    /// The needle is on the line, outside the patient.
    Aligned,
    /// An insertion step finished at a planned checkpoint depth.
    StepDone {
        /// Depth reached, mm.
        depth_mm: f64,
    },
    /// A checkpoint CT was measured.
    CheckpointMeasured {
        /// Tip to target, mm.
        tip_error_mm: f64,
        /// MAR-1 margin with the measured tip, mm.
        margin_mm: f64,
        /// Whether correcting needs a new orientation (INS-1: only outside tissue).
        needs_reorientation: bool,
        /// Depth still to go, mm.
        remaining_mm: f64,
    },
    /// Energy delivery finished.
    AblationDone,
    /// The verification measured this margin.
    Verified {
        /// Margin from the achieved tip, mm.
        margin_mm: f64,
    },
    /// The needle is out.
    Retracted,
    /// Pause.
    Pause,
    /// Resume from a pause.
    Resume,
    /// Abort: safe retraction.
    Abort,
    /// Emergency stop.
    EStop,
    /// The operator resets after an emergency stop (the supervisor's latch is separate).
    ResetEStop,
    /// A fault was latched by the supervisor.
    Fault {
        /// Its code.
        code: String,
    },
}

/// The limits the workflow enforces.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Limits {
    /// ACC-1: largest accepted tip error, mm.
    pub max_tip_error_mm: f64,
    /// MAR-1: smallest accepted margin, mm.
    pub min_margin_mm: f64,
    /// INS-3: checkpoint CTs before the operator decides.
    pub max_checkpoints: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_tip_error_mm: 3.0, min_margin_mm: 5.0, max_checkpoints: 5 }
    }
}

/// A transition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// Procedure time, s.
    pub t_s: f64,
    /// From.
    pub from: Phase,
    /// To.
    pub to: Phase,
    /// Why.
    pub reason: String,
}

impl Transition {
    /// As a procedure-log event.
    #[must_use]
    pub fn event(&self) -> stylet_recorder::Event {
        stylet_recorder::Event::State {
            machine: "workflow".into(),
            from: format!("{:?}", self.from),
            to: format!("{:?}", self.to),
            reason: self.reason.clone(),
        }
    }
}

/// An input the workflow does not take in its phase. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
/// {input} refused in phase {phase:?}: {reason}
pub struct Refusal {
    /// The phase.
    pub phase: Phase,
    /// The input, in words.
    pub input: String,
    /// Why.
    pub reason: String,
}

/// The workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    phase: Phase,
    paused_from: Option<Phase>,
    limits: Limits,
    checkpoints: usize,
    plan: Option<usize>,
    /// Needle positions of the plan not yet ablated.
    positions_left: usize,
    history: Vec<Transition>,
}

impl Workflow {
    /// A new procedure in set-up.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            phase: Phase::SetUp,
            paused_from: None,
            limits,
            checkpoints: 0,
            plan: None,
            positions_left: 0,
            history: Vec::new(),
        }
    }

    /// The phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Checkpoint CTs taken in this insertion.
    #[must_use]
    pub fn checkpoints(&self) -> usize {
        self.checkpoints
    }

    /// The selected plan.
    #[must_use]
    pub fn plan(&self) -> Option<usize> {
        self.plan
    }

    /// Every transition so far.
    #[must_use]
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    fn go(&mut self, t_s: f64, to: Phase, reason: impl Into<String>) -> Transition {
        let tr = Transition { t_s, from: self.phase, to, reason: reason.into() };
        self.phase = to;
        self.history.push(tr.clone());
        tr
    }

    fn refuse(&self, input: &Input, reason: impl Into<String>) -> Refusal {
        Refusal { phase: self.phase, input: format!("{input:?}"), reason: reason.into() }
    }

    /// Whether the needle may be in tissue in this phase (what an abort must retract).
    #[must_use]
    pub fn needle_may_be_in_tissue(phase: Phase) -> bool {
        matches!(
            phase,
            Phase::Insertion
                | Phase::CheckpointCt
                | Phase::AtTarget
                | Phase::Ablation
                | Phase::Verification
                | Phase::Retraction
        )
    }

    /// The inputs taken in (almost) every phase: e-stop, its reset, abort, pause, a fault, resume.
    fn anywhere(&mut self, t_s: f64, input: &Input) -> Option<Transition> {
        use Phase as P;
        let p = self.phase;
        match input {
            Input::EStop if p != P::EStopped => {
                self.paused_from = Some(p);
                Some(self.go(t_s, P::EStopped, "emergency stop by the operator"))
            }
            Input::ResetEStop if p == P::EStopped => {
                Some(self.go(t_s, P::Paused, "emergency stop reset by the operator; resume or abort"))
            }
            Input::Abort if !matches!(p, P::Aborting | P::Aborted | P::Done | P::EStopped) => {
                let from = if p == P::Paused { self.paused_from.unwrap_or(p) } else { p };
                Some(if Self::needle_may_be_in_tissue(from) {
                    self.go(t_s, P::Aborting, "abort by the operator: safe retraction along the needle axis")
                } else {
                    self.go(t_s, P::Aborted, "abort by the operator: the needle is outside the patient")
                })
            }
            Input::Pause if !matches!(p, P::Paused | P::EStopped | P::Done | P::Aborted | P::Aborting) => {
                self.paused_from = Some(p);
                Some(self.go(t_s, P::Paused, "paused by the operator"))
            }
            Input::Fault { code } if !matches!(p, P::Paused | P::EStopped | P::Done | P::Aborted) => {
                self.paused_from = Some(if p == P::Aborting { P::Aborting } else { p });
                Some(self.go(t_s, P::Paused, format!("fault {code} latched by the supervisor: the operator decides")))
            }
            Input::Resume if p == P::Paused => {
                let back = self.paused_from.take().unwrap_or(P::SetUp);
                Some(self.go(t_s, back, "resumed by the operator"))
            }
            _ => None,
        }
    }

    /// Takes an input.
    ///
    /// # Errors
    /// A [`Refusal`] with the reason when the input does not apply in this phase; nothing changes.
    #[allow(clippy::too_many_lines)]
    pub fn handle(&mut self, t_s: f64, input: &Input) -> Result<Transition, Refusal> {
        use Phase as P;
        let p = self.phase;
        // Inputs valid in (almost) every phase first.
        if let Some(tr) = self.anywhere(t_s, input) {
            return Ok(tr);
        }
        match (p, input) {
            (P::SetUp, Input::Confirm) => {
                Ok(self.go(t_s, P::PlanningCt, "operator starts the planning CT (end-exhale breath-hold)"))
            }
            (P::PlanningCt, Input::CtAcquired) => Ok(self.go(t_s, P::Registration, "planning CT acquired")),
            (P::Registration, Input::RegistrationDone { accepted: true, reason }) => {
                Ok(self.go(t_s, P::PlanSelection, format!("registration accepted: {reason}")))
            }
            (P::Registration, Input::RegistrationDone { accepted: false, reason }) => {
                Ok(self.go(t_s, P::PlanningCt, format!("registration refused ({reason}): repeat the planning CT")))
            }
            (P::PlanSelection, Input::PlansReady { feasible: 0 }) => {
                Err(self.refuse(input, "no safe path: nothing to select (abort, or re-plan with other settings)"))
            }
            (P::PlanSelection, Input::PlansReady { .. }) => {
                Err(self.refuse(input, "plans noted; waiting for the operator's choice"))
            }
            (P::PlanSelection, Input::SelectPlan { index, positions }) => {
                self.plan = Some(*index);
                self.checkpoints = 0;
                self.positions_left = (*positions).max(1);
                let how = if *positions > 1 { format!(" ({positions} needle positions)") } else { String::new() };
                Ok(self.go(t_s, P::Alignment, format!("operator selects plan {index}{how}")))
            }
            (P::Alignment, Input::AlignmentChecked { offset_mm }) => {
                self.checkpoints += 1;
                Ok(self.go(
                    t_s,
                    P::Alignment,
                    format!("confirmation CT: tip {offset_mm:.2} mm off the planned line at the skin; re-align outside tissue (INS-1)"),
                ))
            }
            (P::Alignment, Input::Aligned) => Ok(self.go(
                t_s,
                P::Insertion,
                "needle on the planned line at the skin; insertion in gated steps (INS-2)",
            )),
            (P::Insertion, Input::StepDone { depth_mm }) => {
                Ok(self.go(t_s, P::CheckpointCt, format!("step to {depth_mm:.1} mm done; checkpoint CT (INS-3)")))
            }
            (
                P::CheckpointCt,
                Input::CheckpointMeasured { tip_error_mm, margin_mm, needs_reorientation, remaining_mm },
            ) => {
                self.checkpoints += 1;
                let l = self.limits;
                if *remaining_mm <= 0.0 && *tip_error_mm <= l.max_tip_error_mm && *margin_mm >= l.min_margin_mm {
                    return Ok(self.go(
                        t_s,
                        P::AtTarget,
                        format!("ACC-1: tip {tip_error_mm:.2} mm from the target, margin {margin_mm:.1} mm, after {} checkpoint CT(s)", self.checkpoints),
                    ));
                }
                if self.checkpoints >= l.max_checkpoints {
                    self.paused_from = Some(P::CheckpointCt);
                    return Ok(self.go(
                        t_s,
                        P::Paused,
                        format!("INS-3: {} checkpoint CTs taken; the operator decides", self.checkpoints),
                    ));
                }
                if *needs_reorientation {
                    return Ok(self.go(
                        t_s,
                        P::Retraction,
                        "INS-1: the correction needs a new orientation; retract out of tissue first",
                    ));
                }
                if *remaining_mm <= 0.0 {
                    return Ok(self.go(
                        t_s,
                        P::Insertion,
                        format!("at depth but tip {tip_error_mm:.2} mm off / margin {margin_mm:.1} mm: correct along the axis"),
                    ));
                }
                Ok(self.go(
                    t_s,
                    P::Insertion,
                    format!("on course (tip error {tip_error_mm:.2} mm); {remaining_mm:.1} mm to go"),
                ))
            }
            (P::CheckpointCt, Input::Confirm) => Ok(self.go(
                t_s,
                P::Insertion,
                "past the INS-3 limit on the operator's decision: another step along the axis",
            )),
            (P::AtTarget, Input::Confirm) => Ok(self.go(t_s, P::Ablation, "operator starts the ablation")),
            (P::Ablation, Input::AblationDone) => Ok(self.go(t_s, P::Verification, "energy delivered")),
            (P::Verification, Input::Verified { margin_mm }) => {
                self.positions_left = self.positions_left.saturating_sub(1);
                let ok = *margin_mm >= self.limits.min_margin_mm;
                Ok(self.go(
                    t_s,
                    P::Retraction,
                    if ok {
                        format!("MAR-1 verified: {margin_mm:.1} mm")
                    } else {
                        format!("margin {margin_mm:.1} mm below MAR-1: flagged for the clinician")
                    },
                ))
            }
            (P::Retraction, Input::Retracted) => {
                // A retraction for re-orientation goes back to alignment; after ablation it ends.
                let reorient = self
                    .history
                    .iter()
                    .rev()
                    .find(|t| t.to == P::Retraction)
                    .is_some_and(|t| t.from == P::CheckpointCt);
                if reorient {
                    self.checkpoints = 0;
                    Ok(self.go(t_s, P::Alignment, "needle out of tissue: re-align (INS-1)"))
                } else if self.positions_left > 0 {
                    self.checkpoints = 0;
                    Ok(self.go(
                        t_s,
                        P::Alignment,
                        format!(
                            "needle withdrawn; {} more position(s) of the plan: align on the next",
                            self.positions_left
                        ),
                    ))
                } else {
                    Ok(self.go(t_s, P::Done, "needle withdrawn: procedure complete"))
                }
            }
            (P::Aborting, Input::Retracted) => Ok(self.go(t_s, P::Aborted, "needle withdrawn after the abort")),
            _ => Err(self.refuse(input, "not expected in this phase")),
        }
    }
}
