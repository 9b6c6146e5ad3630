//! The ports: everything the [driver](crate::driver) knows of the world. A world (the CT suite's
//! devices, or the simulation in `stylet-sim`) implements every one of them; the driver sees
//! nothing else, and in particular no ground truth.
//!
//! Every port is polled: the driver never blocks inside a port, it asks, then lets time pass with
//! [`Clock::wait`] (which keeps the operator console's heartbeat and the gate flowing through
//! [`Motion::pump`]) until the answer is there. So the same driver runs on a wall clock and in
//! virtual time, where `wait` is what advances the world.

use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_imaging::Volume;
use stylet_respiration::Sample;
use stylet_safety::runner::{RunnerEvent, Timing};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Command, SafetyConfig, Snapshot};

/// Why a port could not do what it was asked. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum PortError {
    /// the supervisor refused: {0}
    Refused(String),
    /// the supervisor is gone: {0}
    Gone(String),
    /// the CT source failed: {0}
    Ct(String),
    /// the ablation device failed: {0}
    Ablation(String),
}

/// The arm, through the supervisor (a runner over an [`Actuator`](stylet_safety::Actuator)).
pub trait Motion {
    /// The supervisor's configuration (robot, limits, period).
    fn safety(&self) -> &SafetyConfig;
    /// The newest snapshot.
    ///
    /// # Errors
    /// [`PortError::Gone`] when the supervisor stopped.
    fn snapshot(&mut self) -> Result<Snapshot, PortError>;
    /// A workflow command (enable, align, insert, hold, retract, ...).
    ///
    /// # Errors
    /// [`PortError::Refused`] with the supervisor's reason.
    fn command(&mut self, c: Command) -> Result<(), PortError>;
    /// Starts a trajectory from the commanded position.
    ///
    /// # Errors
    /// [`PortError::Refused`] with the reason.
    fn execute(&mut self, t: Trajectory) -> Result<(), PortError>;
    /// A controlled stop: stop following the trajectory (the supervisor brings moving joints
    /// to rest within their limits).
    fn stop(&mut self);
    /// The software e-stop: drives off, brakes on, latched until a reset (what the arm is left
    /// in when nobody is there to decide).
    fn estop(&mut self);
    /// The console's heartbeat and the respiratory gate for the cycles to come; what the
    /// supervisor reported since the last pump goes to `events`.
    fn pump(&mut self, gate_open: bool, events: &mut dyn FnMut(RunnerEvent));
    /// The control loop's timing since the last call.
    fn take_timing(&mut self) -> Timing;
}

/// What [`forward_motion!`](crate::forward_motion) names, whatever the calling crate imports.
#[doc(hidden)]
pub mod forwarded {
    pub use super::PortError;
    pub use stylet_safety::runner::{RunnerEvent, Timing};
    pub use stylet_safety::trajectory::Trajectory;
    pub use stylet_safety::{Command, SafetyConfig, Snapshot};
}

/// The items of a [`Motion`] impl that hand every call to the field `$arm`, itself a [`Motion`]:
/// for a world whose arm is one of its parts (the CT suite's `SuiteWorld`, the simulation's
/// `RealtimeArm`), written once.
///
/// ```ignore
/// impl<M: Motion> Motion for MyWorld<M> {
///     stylet_procedure::forward_motion!(arm);
/// }
/// ```
#[macro_export]
macro_rules! forward_motion {
    ($arm:ident) => {
        fn safety(&self) -> &$crate::ports::forwarded::SafetyConfig {
            self.$arm.safety()
        }
        fn snapshot(&mut self) -> Result<$crate::ports::forwarded::Snapshot, $crate::ports::forwarded::PortError> {
            self.$arm.snapshot()
        }
        fn command(&mut self, c: $crate::ports::forwarded::Command) -> Result<(), $crate::ports::forwarded::PortError> {
            self.$arm.command(c)
        }
        fn execute(
            &mut self,
            t: $crate::ports::forwarded::Trajectory,
        ) -> Result<(), $crate::ports::forwarded::PortError> {
            self.$arm.execute(t)
        }
        fn stop(&mut self) {
            self.$arm.stop();
        }
        fn estop(&mut self) {
            self.$arm.estop();
        }
        fn pump(&mut self, gate_open: bool, events: &mut dyn FnMut($crate::ports::forwarded::RunnerEvent)) {
            self.$arm.pump(gate_open, events);
        }
        fn take_timing(&mut self) -> $crate::ports::forwarded::Timing {
            self.$arm.take_timing()
        }
    };
}

/// What a CT is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtPurpose {
    /// The needle aligned outside the skin (INS-1).
    Confirmation,
    /// The needle in tissue after an insertion step (INS-3).
    Checkpoint,
}

/// A CT volume and when it was taken.
#[derive(Clone, Debug)]
pub struct Acquired {
    /// The volume (HU, LPS).
    pub volume: Volume,
    /// Acquisition time on the procedure clock, s (the breath-hold's mid-point).
    pub acquired_s: f64,
    /// Where it came from (series UID, file, "simulated").
    pub source: String,
}

/// The planning inputs: the CT and what to treat in it.
#[derive(Clone, Debug)]
pub struct PlanningCt {
    /// The planning CT.
    pub ct: Acquired,
    /// The label map on the CT's grid (a segmentation from the radiologist or a tool).
    pub labels: Volume,
    /// Which label values mean what.
    pub table: stylet_planning::LabelTable,
    /// The tumour to treat.
    pub tumour: stylet_planning::TumourSpec,
}

/// The scanner.
pub trait CtSource {
    /// The planning CT with its labels, once it is there (`None`: not yet).
    ///
    /// # Errors
    /// [`PortError::Ct`] when it cannot be read.
    fn planning(&mut self) -> Result<Option<PlanningCt>, PortError>;
    /// Asks for a CT now (the scanner takes it in the next end-exhale breath-hold).
    ///
    /// # Errors
    /// [`PortError::Ct`] when a CT cannot be asked for.
    fn request_ct(&mut self, purpose: CtPurpose) -> Result<(), PortError>;
    /// The CT asked for, once it has arrived whole.
    ///
    /// # Errors
    /// [`PortError::Ct`] when the series could not be used.
    fn poll_ct(&mut self) -> Result<Option<Acquired>, PortError>;
    /// What the source refused or noticed since the last call (a series of another patient, one
    /// cut off mid-transfer), for the operator and the log; the source goes on waiting.
    fn notices(&mut self, sink: &mut dyn FnMut(String)) {
        let _ = sink;
    }
}

/// The respiratory surrogate (a live sensor through a `RespirationSource`, or the world's belt).
pub trait Respiration {
    /// Every sample taken up to `now_s` that was not yet handed out, in time order.
    fn samples(&mut self, now_s: f64, sink: &mut dyn FnMut(Sample));
    /// What the sensor reported since the last call (lines it could not read, its clock
    /// re-synchronised, the sensor gone), for the operator and the log. Without samples the gate
    /// goes stale and stays closed (RESP-2); the source keeps trying.
    fn respiration_notices(&mut self, sink: &mut dyn FnMut(String)) {
        let _ = sink;
    }
}

/// A decision the procedure needs from the operator.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "prompt", rename_all = "snake_case")]
pub enum Prompt {
    /// Start the procedure (the planning CT).
    Start,
    /// Choose one of these plans (index into the planner's list), all reachable by the arm.
    ChoosePlan {
        /// The candidates, best first.
        options: Vec<PlanOption>,
    },
    /// The chosen plan is high-risk (OAR-2): execute it anyway?
    OverrideHighRisk {
        /// The plan.
        index: usize,
        /// The rules that flag it, with their details.
        rules: Vec<String>,
    },
    /// Start the ablation at this setting.
    StartAblation {
        /// Device and setting.
        setting: String,
        /// Needle position, 1-based, and how many the plan has.
        position: (usize, usize),
    },
    /// The supervisor latched a fault; the arm holds. Reset and resume, or abort.
    AfterFault {
        /// The fault.
        fault: String,
    },
    /// The procedure stopped with the needle in tissue and the arm holding: withdraw it now
    /// (yes), or keep holding (no; asked again).
    RetractNeedle {
        /// Why the procedure stopped.
        why: String,
    },
    /// INS-3: the checkpoint CTs allowed are used up; go on, or abort.
    CheckpointsExhausted {
        /// CTs taken.
        taken: usize,
    },
    /// The site takes the CT-to-robot registration from the operator's side (3D Slicer's
    /// calibration): answered yes once [`Operator::registration`] has it, or abort.
    Registration,
}

/// One plan the operator can choose.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlanOption {
    /// Index in the planner's list.
    pub index: usize,
    /// Needle positions.
    pub positions: usize,
    /// MAR-1 margin, mm.
    pub margin_mm: f64,
    /// High-risk (OAR-2): executed only after an explicit override.
    pub high_risk: bool,
    /// The first position's entry at the skin (CT).
    pub entry: Point<Ct>,
    /// The first position's planned tip (CT).
    pub tip: Point<Ct>,
}

/// The operator's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Yes / go on / resume.
    Yes,
    /// No (the procedure takes the safe alternative: another plan, or an abort).
    No,
    /// This plan.
    Choose {
        /// The planner's index.
        index: usize,
    },
    /// Stop the procedure: the arm stops and holds; the needle comes out only on a retract command.
    Abort,
}

/// What the operator can ask at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Hold where the arm is.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Stop the procedure and hold (the arm stays under the supervisor).
    Abort,
    /// Withdraw the needle along its axis (after an abort or a fault).
    Retract,
    /// The software e-stop, from an operator who has no button on the supervisor's thread
    /// (3D Slicer's EMERGENCY): the driver presses [`Motion::estop`] at once (drives off, brakes
    /// on, latched); the procedure then ends as after any e-stop.
    EStop,
    /// The operator has left: the console closed, or the process was asked to end (a signal).
    /// The procedure stops as on an abort and the arm holds; with nobody to command the
    /// retraction or to answer, the run then ends at once with the drives off under the
    /// supervisor, the needle where it stopped (withdrawn by hand, or after a restart).
    Leave,
}

/// The operator (a console, 3D Slicer, or a script). The foot pedal is not here: it is a
/// controller input the supervisor reads (INS-2).
pub trait Operator {
    /// The answer to `prompt`, once given (`None`: not yet; asked again after a wait).
    fn answer(&mut self, prompt: &Prompt) -> Option<Answer>;
    /// A request made since the last call.
    fn request(&mut self) -> Option<Request>;
    /// What the operator's side has to say for the procedure log since the last call (network
    /// control armed or lapsed, a command refused).
    fn operator_notices(&mut self, _sink: &mut dyn FnMut(String)) {}
    /// The registration the operator's side gives (3D Slicer's `CLB_`, checked rigid), once
    /// given; asked only where the site takes it from there ([`Prompt::Registration`]).
    fn registration(&mut self) -> Option<Transform<Robot, Ct>> {
        None
    }
}

/// How an ablation is going.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AblationStatus {
    /// Time since the start, s.
    pub elapsed_s: f64,
    /// Energy delivered, J.
    pub energy_j: f64,
    /// The device finished its programme.
    pub done: bool,
}

/// The ablation device.
pub trait Ablation {
    /// Starts the programme `setting` with the tip believed at `tip` (for the device's log).
    ///
    /// # Errors
    /// [`PortError::Ablation`] when the device refuses.
    fn start_ablation(&mut self, setting: &stylet_planning::Zone, tip: Point<Ct>) -> Result<(), PortError>;
    /// How it is going.
    fn ablation_status(&mut self) -> AblationStatus;
    /// Stops the energy now (also at the end of the programme).
    fn stop_ablation(&mut self);
}

/// Time, and letting it pass.
pub trait Clock {
    /// The procedure clock, s.
    fn now_s(&self) -> f64;
    /// Lets `dt_s` pass. On a wall clock it sleeps; in virtual time it advances the world.
    fn wait(&mut self, dt_s: f64);
    /// Whether time passes while the driver computes (wall clock: yes, and the driver keeps
    /// pumping; virtual time: no, a computation takes no time, so runs are reproducible).
    fn runs_while_computing(&self) -> bool;
}

/// Everything the procedure emits, for the log, telemetry and OpenIGTLink.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// A workflow transition.
    Workflow(&'a crate::Transition),
    /// A line for the operator and the log.
    Note(&'a str),
    /// An operator decision or action, with what it concerns.
    Operator {
        /// E.g. `override`, `BeginInsert`.
        action: &'a str,
        /// Details.
        detail: &'a str,
    },
    /// A supervisor event, as it came from the control loop.
    Supervisor(&'a RunnerEvent),
    /// A supervisor state change seen in its snapshots.
    SupervisorState {
        /// From.
        from: &'a str,
        /// To.
        to: &'a str,
        /// The transition's cause, as the supervisor said it.
        reason: &'a str,
    },
    /// A latched fault.
    Fault {
        /// The hazard ID.
        code: &'a str,
        /// What happened.
        detail: &'a str,
    },
    /// A move the supervisor took (goal joints, mm and rad).
    Move(&'a [f64]),
    /// The newest snapshot (telemetry: joints, the robot's pose).
    Snapshot(&'a Snapshot),
    /// The respiratory gate's decision and the signal.
    Gate {
        /// The sample value.
        signal_mm: f64,
        /// The prediction at the horizon.
        predicted_mm: f64,
        /// Open.
        open: bool,
    },
    /// The planning CT with its labels and the target.
    PlanningCt(&'a PlanningCt),
    /// Fiducials found in the planning CT.
    Fiducials(&'a [Point<Ct>]),
    /// The registration accepted: where the robot is in the CT.
    Registered(Transform<Robot, Ct>),
    /// The chosen plan: the needle line of the current position and its zone centre (CT).
    Plan {
        /// Entry at the skin.
        entry: Point<Ct>,
        /// Planned tip.
        tip: Point<Ct>,
        /// Zone centre.
        zone_centre: Point<Ct>,
        /// Zone axes, mm.
        zone_mm: (f64, f64),
    },
    /// A CT with the needle in place (confirmation or checkpoint), as it arrived.
    NeedleCt {
        /// Why it was taken.
        purpose: CtPurpose,
        /// The volume (HU, LPS).
        volume: &'a Volume,
    },
    /// The needle tip measured in a CT.
    TipMeasured(Point<Ct>),
    /// An ablation done, its zone where the measured tip placed it.
    Ablated {
        /// Zone centre.
        zone_centre: Point<Ct>,
        /// Unit needle axis (CT).
        axis: [f64; 3],
        /// Zone axes, mm.
        zone_mm: (f64, f64),
    },
    /// The control loop's timing since the last tick (worst lateness, stalls and late cycles
    /// so far).
    LoopTiming(&'a Timing),
}

/// Where events go (fan-out to the procedure log, telemetry and OpenIGTLink).
pub trait EventSink {
    /// One event at procedure time `t_s`.
    fn event(&mut self, t_s: f64, e: Event<'_>);
}

/// A world: every port. Implemented for anything that implements them all.
pub trait World: Motion + CtSource + Respiration + Operator + Ablation + Clock {}
impl<W: Motion + CtSource + Respiration + Operator + Ablation + Clock> World for W {}
