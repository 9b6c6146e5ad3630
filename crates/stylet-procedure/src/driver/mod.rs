//! The procedure driver: the whole procedure from the planning CT to retraction, over the
//! [ports](crate::ports) and nothing else (docs/procedure.md).
//!
//! The driver is sequential code that never blocks inside a port: it asks, then lets time pass
//! with [`Driver::tick`], which feeds the respiratory processor, decides the gate (RESP-1..3),
//! keeps the console's heartbeat going, and reports what the supervisor did. Long computations
//! (fiducial and needle detection, planning, IK) run on a worker thread while the driver keeps
//! ticking on a wall clock; in virtual time they take no time, so a seed gives one run.
//!
//! The steps, each in its own function: [`setup`] (planning CT, registration, plan choice),
//! [`needle`] (alignment, confirmation CT, gated insertion with checkpoint CTs, ACC-1),
//! [`finish`] (ablation, verification, retraction, and the safe exits).

use std::collections::VecDeque;
use std::sync::Arc;

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Robot};
use stylet_respiration::{Respiration as Processor, RespirationConfig, Sample};
use stylet_safety::runner::RunnerEvent;
use stylet_safety::{Command, MotionState, Snapshot};

use crate::ports::{Answer, Event, EventSink, PlanningCt, PortError, Prompt, Request, World};
use crate::{Input, Limits, Phase, Workflow};

mod finish;
mod needle;
mod report;
mod setup;

pub use report::{Outcome, PlanChosen, PositionReport, RegistrationReport, Report};

pub use needle::InsertionEnd;
pub use setup::fiducial_settings;

/// What the driver needs besides the ports: rules, calibrations and the robot model.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// The clinical rules (ACC-1, MAR-1, INS-3, the planner's rules).
    pub rules: stylet_planning::Rules,
    /// Fiducial detection, matching and quality gates.
    pub registration: stylet_registration::RegistrationConfig,
    /// The marker frame's beads in the robot base frame.
    pub marker_frame: Vec<Point<Robot>>,
    /// The ablation device's zone at the setting used.
    pub zone: stylet_planning::Zone,
    /// The arm's kinematic model.
    pub arm: stylet_kinematics::Arm,
    /// IK options (stand-off, tolerances).
    pub ik: stylet_kinematics::ik::IkOptions,
    /// How the liver's motion since the planning CT is measured in each CT with the needle.
    pub organ: stylet_imaging::OrganSettings,
    /// Volumes the arm must keep out of.
    pub keepouts: stylet_kinematics::KeepOuts,
    /// The IK's starting joints (the arm's home).
    pub ik_seed: Vec<f64>,
    /// Respiratory processing and the gate (RESP-1..3).
    pub respiration: RespirationConfig,
    /// Plans the planner returns at most.
    pub max_plans: usize,
    /// One insertion step (to a checkpoint depth) must finish within this, s.
    pub step_timeout_s: f64,
    /// Re-insertions after a lateral miss, at most (INS-1).
    pub max_reinsertions: usize,
    /// After an abort or an error with the needle in tissue, the arm holds until the operator
    /// commands the retraction; a run ends after holding this long without one (`None`: holds
    /// until the operator decides, as at a console).
    pub hold_limit_s: Option<f64>,
    /// A CT asked for must arrive within this, s (the site's `ct.timeout_s`).
    pub ct_timeout_s: f64,
    /// The registration comes from the operator's side (3D Slicer's calibration, where the site
    /// allows it) instead of the fiducials in the planning CT.
    pub registration_from_operator: bool,
}

/// Why the procedure could not go on. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum DriverError {
    /// {0}
    Port(#[from] PortError),
    /// workflow: {0}
    Workflow(#[from] crate::Refusal),
    /// registration refused: {0}
    Registration(String),
    /// planning: {0}
    Planning(String),
    /// {0}
    Kinematics(String),
    /// {0}
    Motion(String),
    /// {0} timed out
    Timeout(String),
    /// {0}
    Imaging(String),
    /// the operator aborted the procedure in {0:?}
    Aborted(Phase),
    /// a computation thread failed: {0}
    Worker(String),
}

/// The procedure driver over one world.
pub struct Driver<'a, W: World> {
    world: &'a mut W,
    sink: &'a mut dyn EventSink,
    cfg: Arc<DriverConfig>,
    wf: Workflow,
    resp: Processor,
    /// The sensor's samples to the processor's rate and millimetres (its unit, `[sensor]`).
    sensor: stylet_respiration::Conditioner,
    /// The calibration last reported.
    scale_noted: bool,
    /// Recent surrogate samples (conditioned) (the level at a CT's acquisition time is its reference, RESP-3).
    history: VecDeque<Sample>,
    /// A CT taken at this time sets the next reference once the samples have caught up.
    re_reference_at: Option<f64>,
    gate_open: bool,
    /// The gate is open and the prediction near the reference level (the final approach).
    approach_ok: bool,
    gate_counting: bool,
    gate_stats: (u64, u64),
    last_state: Option<MotionState>,
    last_fault: Option<stylet_safety::Fault>,
    /// The cause of the supervisor's last transition, as it said it.
    last_cause: &'static str,
    requests: VecDeque<Request>,
    /// The operator has left ([`Request::Leave`]): nothing more is asked, the run ends.
    operator_left: bool,
    /// The plan's zones (centre, axis), each replaced by where its ablation really was placed
    /// (the tip the last CT measured) once done.
    zones: Vec<(Point<Ct>, stylet_core::frame::Vector<Ct>)>,
    /// The tumour's surface (the margins are measured on it).
    surface: Vec<Point<Ct>>,
    report: Report,
}

impl<W: World> std::fmt::Debug for Driver<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("phase", &self.wf.phase()).finish_non_exhaustive()
    }
}

/// How often the driver ticks, s.
pub const TICK_S: f64 = 0.01;

/// A CT's breath-hold level is read from the respiratory record only if the record reaches back
/// to within this of the CT's time, s.
const REFERENCE_MATCH_S: f64 = 0.5;

/// The respiratory record the driver keeps, s.
const HISTORY_S: f64 = 120.0;

impl<'a, W: World> Driver<'a, W> {
    /// A driver for one procedure.
    pub fn new(world: &'a mut W, sink: &'a mut dyn EventSink, cfg: DriverConfig) -> Self {
        let r = &cfg.rules;
        let wf = Workflow::new(Limits {
            max_tip_error_mm: r.acc1_max_tip_error_mm,
            min_margin_mm: r.mar1_fail_mm,
            max_checkpoints: r.ins3_max_checkpoints,
        });
        let resp = Processor::new(cfg.respiration.clone());
        let sensor = stylet_respiration::Conditioner::new(cfg.respiration.period_s, cfg.respiration.calibration());
        Driver {
            world,
            sink,
            cfg: Arc::new(cfg),
            wf,
            resp,
            sensor,
            scale_noted: false,
            history: VecDeque::new(),
            re_reference_at: None,
            gate_open: false,
            approach_ok: false,
            gate_counting: false,
            gate_stats: (0, 0),
            last_state: None,
            last_fault: None,
            last_cause: "",
            requests: VecDeque::new(),
            operator_left: false,
            zones: Vec::new(),
            surface: Vec::new(),
            report: Report::default(),
        }
    }

    /// Runs the procedure to its end. Every exit leaves the arm under the supervisor, stopped and
    /// holding (or retracted on the operator's command, or with the needle out and drives off).
    pub fn run(mut self) -> Report {
        let outcome = match self.procedure() {
            Ok(o) => o,
            Err(DriverError::Aborted(phase)) => self.abort(phase),
            Err(e) => match self.supervisor_stop() {
                // The supervisor stopped the arm (during an alignment, a retraction, a command):
                // the same safe stop as one during an insertion, the operator decides.
                Some((state, fault, inserted_mm)) => {
                    self.note(&format!("stopped by the supervisor: {e}"));
                    self.after_stop(state, fault, inserted_mm)
                }
                None => self.fail(&e),
            },
        };
        self.report.outcome = outcome;
        self.report.final_phase = self.wf.phase();
        self.report.gate_open_fraction =
            if self.gate_stats.0 > 0 { self.gate_stats.1 as f64 / self.gate_stats.0 as f64 } else { 0.0 };
        self.report.fault = self.world.snapshot().ok().and_then(|s| s.fault).map(|f| format!("{f:?}"));
        self.report
    }

    fn procedure(&mut self) -> Result<Outcome, DriverError> {
        if self.ask(&Prompt::Start)? != Answer::Yes {
            return Err(DriverError::Aborted(Phase::SetUp));
        }
        self.workflow(&Input::Confirm)?;
        let planning = self.planning_ct()?;
        let plans = self.plans(&planning)?;
        let robot_from_ct = if self.cfg.registration_from_operator {
            self.operator_registration()?
        } else {
            self.register(&planning, plans.tumour_centre)?
        };
        let chosen = self.choose_plan(&plans, robot_from_ct)?;
        self.enable_and_home()?;
        let n = chosen.plan.positions.len();
        for k in 0..n {
            match self.position(&planning, &chosen, k, robot_from_ct)? {
                InsertionEnd::AtTarget { measured_tip } => {
                    self.ablate(&chosen, k, measured_tip)?;
                    self.retract_after_ablation(k + 1 == n)?;
                }
                InsertionEnd::Stopped { state, fault, inserted_mm } => {
                    return Ok(self.after_stop(state, fault, inserted_mm));
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// The supervisor's stop, if it holds one (a latched fault or an e-stop): its state, the
    /// fault, and the needle's depth past the skin (measured joints).
    fn supervisor_stop(&mut self) -> Option<(MotionState, Option<String>, f64)> {
        let s = self.world.snapshot().ok()?;
        if s.fault.is_none() && s.state != MotionState::EStop {
            return None;
        }
        let inserted =
            self.insertion_joint().map_or(0.0, |ins| (s.measured.as_slice()[ins] - self.cfg.ik.standoff_mm).max(0.0));
        Some((s.state, s.fault.map(|f| f.to_string()), inserted))
    }

    // ----- the ports, through the driver's bookkeeping -----

    /// Lets one tick pass: respiration in, the gate decided, the console's heartbeat and the gate
    /// out, the supervisor's news to the sink. Returns the newest snapshot.
    fn tick(&mut self) -> Result<Snapshot, DriverError> {
        let now = self.world.now_s();
        self.respiration(now);
        let (gate, events) = (self.gate_open, &mut Vec::new());
        self.world.pump(gate, &mut |e| events.push(e));
        for e in events.iter() {
            self.runner_event(now, e);
        }
        let snap = self.world.snapshot()?;
        self.observe(now, &snap);
        let timing = self.world.take_timing();
        self.sink.event(now, Event::LoopTiming(&timing));
        let mut notices = Vec::new();
        self.world.operator_notices(&mut |n| notices.push(n));
        for n in notices {
            self.note(&format!("operator: {n}"));
        }
        if let Some(r) = self.world.request() {
            self.sink.event(now, Event::Operator { action: "request", detail: &format!("{r:?}") });
            if r == Request::EStop {
                self.world.estop();
            } else if r == Request::Leave {
                // Every wait that takes an abort ends; what asks the operator stops asking.
                self.operator_left = true;
                self.requests.push_back(Request::Abort);
            } else {
                self.requests.push_back(r);
            }
        }
        self.world.wait(TICK_S);
        Ok(snap)
    }

    fn respiration(&mut self, now: f64) {
        let (resp, history, sensor) = (&mut self.resp, &mut self.history, &mut self.sensor);
        let mut last = None;
        self.world.samples(now, &mut |raw| {
            sensor.push(raw, &mut |s| {
                let _ = resp.push(s);
                history.push_back(s);
                last = Some(s);
            });
        });
        if !self.scale_noted {
            if let stylet_respiration::Scale::Fixed { mm_per_unit, amplitude: Some(a), .. } = self.sensor.scale() {
                self.scale_noted = true;
                let unit = self.cfg.respiration.sensor_unit.clone();
                self.note(&format!(
                    "respiration: the {unit} sensor is uncalibrated: its breathing amplitude ({a:.4} {unit}) stands for {} mm; mm per {unit}: {mm_per_unit:.6} (RESP-2's window is +-{:.4} {unit})",
                    self.cfg.respiration.nominal_amplitude_mm,
                    self.cfg.respiration.window_half_width_mm / mm_per_unit
                ));
            }
        }
        let mut notices = Vec::new();
        self.world.respiration_notices(&mut |n| notices.push(n));
        for n in notices {
            self.note(&format!("respiration: {n}"));
        }
        // Long enough to reach back to a CT's breath-hold after its series arrived and loaded,
        // at any sensor rate.
        while self.history.front().is_some_and(|s| s.t_s < now - HISTORY_S) {
            self.history.pop_front();
        }
        // RESP-3: the level at the last CT's breath-hold is the new reference. A CT taken before
        // the surrogate's record began (a planning CT from before the procedure) has no level in
        // it: the reference is then the end-exhale baseline the gate tracks.
        if let Some(t) = self.re_reference_at {
            if self.history.front().is_some_and(|s| s.t_s > t + REFERENCE_MATCH_S) {
                self.re_reference_at = None;
                self.note(&format!(
                    "the CT at {t:.1} s is older than the respiratory record (from {:.1} s): the reference level is the end-exhale baseline (RESP-3)",
                    self.history.front().map_or(f64::NAN, |s| s.t_s)
                ));
            } else if self.history.back().is_some_and(|s| s.t_s >= t) {
                if let Some(s) = self.history.iter().min_by(|a, b| (a.t_s - t).abs().total_cmp(&(b.t_s - t).abs())) {
                    self.resp.set_reference(s.value_mm);
                }
                self.re_reference_at = None;
            }
        }
        let d = self.resp.decide(now);
        // The final approach waits for a calm moment near end-exhale: judged on the recent error
        // (the gate itself, open or not, already allows for the longer-run one; with both here an
        // irregular breather's approach waited out the step's time limit).
        let near = (d.predicted_mm - d.estimate.baseline_mm).abs() + d.recent_error_mm
            <= self.cfg.respiration.final_approach_half_width_mm;
        self.gate_open = d.open;
        self.approach_ok = d.open && near;
        if self.gate_counting {
            self.gate_stats.0 += 1;
            self.gate_stats.1 += u64::from(d.open);
        }
        let signal = last.map_or(f64::NAN, |s| s.value_mm);
        self.sink.event(now, Event::Gate { signal_mm: signal, predicted_mm: d.predicted_mm, open: d.open });
    }

    fn runner_event(&mut self, now: f64, e: &RunnerEvent) {
        if let RunnerEvent::Supervisor(stylet_safety::Event::Transition { cause, .. }) = e {
            self.last_cause = cause;
        }
        log_runner_event(now, e);
        self.sink.event(now, Event::Supervisor(e));
    }

    fn observe(&mut self, now: f64, snap: &Snapshot) {
        if let Some(prev) = self.last_state.filter(|s| *s != snap.state) {
            self.sink.event(
                now,
                Event::SupervisorState { from: prev.name(), to: snap.state.name(), reason: self.last_cause },
            );
        }
        self.last_state = Some(snap.state);
        if snap.fault.is_some() && snap.fault != self.last_fault {
            if let Some(f) = snap.fault {
                self.sink.event(now, Event::Fault { code: &format!("{f:?}"), detail: &f.to_string() });
            }
        }
        self.last_fault = snap.fault;
        self.sink.event(now, Event::Snapshot(snap));
    }

    /// Ticks until `done` holds for a snapshot, or `timeout_s` passes (procedure time).
    fn wait_until(
        &mut self,
        what: &str,
        timeout_s: f64,
        mut done: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Snapshot, DriverError> {
        let t0 = self.world.now_s();
        loop {
            let s = self.tick()?;
            if done(&s) {
                return Ok(s);
            }
            if let Some(f) = s.fault {
                return Err(DriverError::Motion(format!("{what}: fault latched: {f}")));
            }
            if s.state == MotionState::EStop {
                return Err(DriverError::Motion(format!("{what}: emergency stop")));
            }
            if self.world.now_s() - t0 > timeout_s {
                return Err(DriverError::Timeout(format!("{what} ({timeout_s:.1} s)")));
            }
        }
    }

    /// Waits `dt_s` of procedure time, ticking.
    fn dwell(&mut self, dt_s: f64) -> Result<(), DriverError> {
        let t0 = self.world.now_s();
        while self.world.now_s() - t0 < dt_s {
            self.tick()?;
        }
        Ok(())
    }

    /// Runs `f` on a worker: on a wall clock the driver ticks meanwhile (the worker at
    /// SCHED_IDLE, `stylet_rt::background_current_thread`); in virtual time the computation takes
    /// no time.
    fn compute<T: Send>(&mut self, f: impl FnOnce() -> T + Send) -> Result<T, DriverError> {
        if !self.world.runs_while_computing() {
            return Ok(f());
        }
        std::thread::scope(|sc| {
            // In the background: the kernel's workers that carry the serial line come first.
            let job = sc.spawn(|| {
                stylet_rt::background_current_thread();
                f()
            });
            while !job.is_finished() {
                self.tick()?;
            }
            job.join().map_err(|_| DriverError::Worker("panicked".into()))
        })
    }

    /// The operator's answer to `prompt` (ticking until it comes).
    fn ask(&mut self, prompt: &Prompt) -> Result<Answer, DriverError> {
        loop {
            if self.operator_left {
                return Err(DriverError::Aborted(self.wf.phase()));
            }
            if let Some(a) = self.world.answer(prompt) {
                let now = self.world.now_s();
                let detail = serde_json::to_string(prompt).unwrap_or_default();
                self.sink.event(now, Event::Operator { action: &format!("{a:?}"), detail: &detail });
                return Ok(a);
            }
            self.tick()?;
        }
    }

    fn workflow(&mut self, input: &Input) -> Result<(), DriverError> {
        let now = self.world.now_s();
        let tr = self.wf.handle(now, input)?;
        tracing::info!(t_s = now, from = ?tr.from, to = ?tr.to, reason = %tr.reason, "workflow");
        self.sink.event(now, Event::Workflow(&tr));
        Ok(())
    }

    fn note(&mut self, text: &str) {
        let now = self.world.now_s();
        tracing::info!(t_s = now, "{text}");
        self.sink.event(now, Event::Note(text));
    }

    fn command(&mut self, c: Command) -> Result<(), DriverError> {
        self.tick()?;
        self.world.command(c).map_err(|e| DriverError::Motion(format!("{c:?}: {e}")))
    }

    /// A point-to-point move from the commanded joints to `goal` at `fraction` of the limits;
    /// `Ok(false)` when the supervisor refused it because the arm was still settling.
    fn start_move(&mut self, goal: &[f64], fraction: f64) -> Result<bool, DriverError> {
        let safety = self.world.safety().clone();
        let from = self.world.snapshot()?.commanded.as_slice().to_vec();
        let t = stylet_safety::trajectory::Trajectory::within(&safety, &from, goal, fraction)
            .map_err(|e| DriverError::Motion(format!("move to {goal:?}: {e}")))?;
        match self.world.execute(t) {
            Ok(()) => {
                let now = self.world.now_s();
                self.sink.event(now, Event::Move(goal));
                Ok(true)
            }
            Err(PortError::Refused(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves to `goal` and waits until the arm is there and still.
    fn move_to(&mut self, goal: &[f64], fraction: f64) -> Result<(), DriverError> {
        let s = self.world.snapshot()?;
        if s.commanded.as_slice() == goal {
            return Ok(());
        }
        let mut tries = 0;
        while !self.start_move(goal, fraction)? {
            tries += 1;
            if tries > 50 {
                return Err(DriverError::Motion(format!("the supervisor does not take the move to {goal:?}")));
            }
            self.tick()?;
        }
        let goal = goal.to_vec();
        self.wait_until(&format!("move to {goal:?}"), 60.0, |s| {
            s.commanded.as_slice() == goal.as_slice() && s.velocity.as_slice().iter().all(|v| *v == 0.0)
        })?;
        Ok(())
    }

    /// A controlled stop, then hold: an insertion holds at once (the supervisor's Holding state
    /// ramps the joints down within their limits, and the trajectory is dropped); any other move
    /// (alignment, retraction: outside tissue or along the axis) runs to its end.
    fn stop_and_hold(&mut self) {
        if self.world.snapshot().is_ok_and(|s| s.state == MotionState::Inserting) {
            let _ = self.world.command(Command::Hold);
            self.world.stop();
        }
        let _ = self.wait_until("the arm at rest", 60.0, |s| s.velocity.as_slice().iter().all(|v| *v == 0.0));
    }

    /// The insertion joint's index.
    fn insertion_joint(&self) -> Result<usize, DriverError> {
        self.world
            .safety()
            .robot
            .insertion_joint()
            .ok_or_else(|| DriverError::Motion("the robot has no insertion joint".into()))
    }

    /// MAR-1 margin with position `k`'s zone behind a tip at `tip` on `axis` and the others
    /// where they are (done) or planned.
    fn margin_with(&self, k: usize, tip: Vector3<f64>, axis: Vector3<f64>) -> f64 {
        let mut zones = self.zones.clone();
        let centre = tip - axis * self.cfg.zone.centre_from_tip_mm;
        if let Some(z) = zones.get_mut(k) {
            *z = (Point::from_coords(centre), stylet_core::frame::Vector::from_nalgebra(axis));
        }
        stylet_planning::margin_mm(&self.surface, &self.cfg.zone, &zones)
    }

    /// An operator's pause or abort, if one came: a pause holds until resume (or abort).
    fn take_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// Whether the operator asked to abort; the abort is taken, other requests stay queued.
    fn abort_asked(&mut self) -> bool {
        let before = self.requests.len();
        self.requests.retain(|r| *r != Request::Abort);
        self.requests.len() != before
    }
}

/// The plan chosen and its IK solution at the first position.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// Index in the planner's list.
    pub index: usize,
    /// The plan.
    pub plan: stylet_planning::Plan,
    /// The tumour centre, CT.
    pub target: Point<Ct>,
}

/// Keeps the planning CT shared with workers.
type Shared = Arc<PlanningCt>;

/// The control thread's events as log events, on the procedure's thread (the control thread
/// only puts them on its wait-free channel, which the motion port drains): faults as errors,
/// the controller's refusals as warnings, state changes and the supervisor's refusals as
/// information, the rest for debugging. A stall is for debugging too: on a virtual machine
/// cycles a few ms late come by the thousand, and a stall that matters latches HAZ-11, an error.
fn log_runner_event(t_s: f64, e: &RunnerEvent) {
    use stylet_safety::Event as S;
    match e {
        RunnerEvent::Supervisor(S::FaultLatched { .. } | S::FaultEscalated { .. }) => {
            tracing::error!(target: "stylet_safety", t_s, "{e}");
        }
        RunnerEvent::Supervisor(S::ControllerNack { .. }) | RunnerEvent::TrajectoryRejected { .. } => {
            tracing::warn!(target: "stylet_safety", t_s, "{e}");
        }
        // A refusal is the supervisor at work (an insertion step asked for while the gate is
        // closed is refused in every run), not a problem.
        RunnerEvent::Supervisor(S::Transition { .. } | S::Refused { .. }) => {
            tracing::info!(target: "stylet_safety", t_s, "{e}");
        }
        _ => tracing::debug!(target: "stylet_safety", t_s, "{e}"),
    }
}
