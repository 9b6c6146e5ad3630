//! `stylet bringup`: the first thing run against a controller, simulated or real.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};
use stylet_core::config::{JointKind, JointRole, JointSpec};
use stylet_core::units::rad_from_deg;
use stylet_link::{Link, MuteSwitch};
use stylet_protocol::{ControllerInfo, Status};
use stylet_safety::runner::{self, Operator, RunnerEvent, RunnerHandle};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Command, Fault, MotionState, SafetyConfig, Snapshot};

/// Options of `stylet bringup`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The controller's serial device (e.g. /dev/ttyUSB0, or the pty `stylet sim controller` printed).
    #[arg(long, required_unless_present = "sim", conflicts_with = "sim")]
    port: Option<String>,
    /// Start the simulated controller in this process on a new pty and bring it up (its wire
    /// monitor's report is added to the output).
    #[arg(long)]
    sim: bool,
    /// With --sim: inject a fault into the simulated controller (repeatable; the specs of
    /// `stylet sim controller --fault`, docs/sim.md), e.g. `disconnect@0.3`.
    #[arg(long = "fault", value_name = "SPEC", requires = "sim")]
    faults: Vec<String>,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// How far each revolute joint moves out and back, degrees.
    #[arg(long, default_value_t = 2.0)]
    range_deg: f64,
    /// How far the insertion joint moves out and back, millimetres.
    #[arg(long, default_value_t = 2.0)]
    range_mm: f64,
    /// Fraction of each joint's velocity, acceleration and jerk limits the moves use.
    #[arg(long, default_value_t = 0.8)]
    speed_fraction: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Why a step failed.
#[derive(Debug)]
pub(crate) enum StepError {
    Fault(Fault),
    Refused(String),
    Timeout(String),
    Check(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Fault(x) => write!(f, "fault latched: {x}"),
            StepError::Refused(x) => write!(f, "refused: {x}"),
            StepError::Timeout(x) => write!(f, "timed out: {x}"),
            StepError::Check(x) => write!(f, "check failed: {x}"),
        }
    }
}

/// Sees every snapshot the session pumps, with the events drained since the last one and the
/// runner's timing (its worst cycle start since the previous pump).
pub(crate) type Observer = Box<dyn FnMut(&Snapshot, &[String], runner::Timing)>;
/// Sees the goal of every move the runner took.
pub(crate) type OnMove = Box<dyn FnMut(&[f64])>;

pub(crate) struct Session {
    pub(crate) h: RunnerHandle<Link>,
    pub(crate) cfg: SafetyConfig,
    pub(crate) mute: MuteSwitch,
    pub(crate) log: Vec<Value>,
    pub(crate) started: Instant,
    pub(crate) fraction: f64,
    /// The respiratory gate input; bring-up holds it open.
    pub(crate) gate: Option<Box<dyn FnMut() -> bool>>,
    /// Called on every pump with the newest snapshot and the events drained since the last one
    /// (the demo's telemetry).
    pub(crate) observer: Option<Observer>,
    /// Called with the goal of every move the runner took (the demo's procedure log).
    pub(crate) on_move: Option<OnMove>,
    /// An ending signal (SIGTERM, SIGHUP, SIGINT) fails the step under way: the arm is left safe
    /// and the command ends as after a failed step, the host tuning put back.
    pub(crate) end: Option<crate::signals::EndRequest>,
}

const PUMP: Duration = Duration::from_millis(10);

impl Session {
    /// Keeps the operator heartbeat and the gate input fresh, and drains events into the log.
    pub(crate) fn pump(&mut self) {
        let _ = self.h.send(Operator::Heartbeat);
        // Bring-up has no respiration: it holds the gate input open (RESP-2 is exercised later).
        let open = self.gate.as_mut().is_none_or(|g| g());
        let _ = self.h.send(Operator::Gate(open));
        let first_new = self.log.len();
        while let Some(e) = self.h.events.try_recv() {
            let t = self.started.elapsed().as_secs_f64() * 1e3;
            let text = match e {
                RunnerEvent::Stall { .. } => {
                    format!("{e}, limit {:.0} ms", self.cfg.max_lateness.as_secs_f64() * 1e3)
                }
                other => other.to_string(),
            };
            self.log.push(json!({ "t_ms": (t * 10.0).round() / 10.0, "event": text }));
        }
        if let (Some(obs), Some(snap)) = (self.observer.as_mut(), self.h.snapshot()) {
            let new: Vec<String> =
                self.log[first_new..].iter().filter_map(|v| v["event"].as_str().map(str::to_string)).collect();
            obs(&snap, &new, self.h.take_timing());
        }
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot, StepError> {
        self.h.snapshot().ok_or_else(|| StepError::Check("supervisor thread gone".into()))
    }

    pub(crate) fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot, StepError> {
        self.wait_for(what, timeout, true, done)
    }

    pub(crate) fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        fail_on_fault: bool,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot, StepError> {
        let t0 = Instant::now();
        loop {
            self.pump();
            let s = self.snapshot()?;
            if done(&s) {
                return Ok(s);
            }
            if self.end.as_ref().is_some_and(crate::signals::EndRequest::asked) {
                return Err(StepError::Check(format!("{what}: asked to end by a signal")));
            }
            if let (Some(f), true) = (s.fault, fail_on_fault) {
                return Err(StepError::Fault(f));
            }
            if fail_on_fault && s.state == MotionState::EStop {
                return Err(StepError::Check(format!("{what}: emergency stop")));
            }
            if t0.elapsed() > timeout {
                return Err(StepError::Timeout(format!(
                    "{what} after {:.1} s: {}, commanded {:?}, velocity {:?}",
                    timeout.as_secs_f64(),
                    s.state.name(),
                    s.commanded.as_slice(),
                    s.velocity.as_slice()
                )));
            }
            std::thread::sleep(PUMP);
        }
    }

    pub(crate) fn command(&mut self, c: Command) -> Result<(), StepError> {
        self.pump();
        match self.h.command(c) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(r)) => Err(StepError::Refused(format!("{c:?}: {r}"))),
            Err(e) => Err(StepError::Check(e.to_string())),
        }
    }

    /// Moves from the commanded position to `goal` and waits until the move is done and still.
    pub(crate) fn move_to(&mut self, goal: &[f64]) -> Result<(), StepError> {
        let s = self.snapshot()?;
        if s.commanded.as_slice().iter().zip(goal).all(|(a, b)| a == b) {
            return Ok(());
        }
        let seconds = self.start_move(goal)?;
        let goal = goal.to_vec();
        // The runner executes one sample per cycle: on a loaded machine (or a debug build) late
        // cycles stretch the move in wall time, so allow twice its duration.
        let what = format!("move of {seconds:.1} s to {goal:?}");
        self.wait(&what, Duration::from_secs_f64(2.0 * seconds + 2.0), |s| {
            s.commanded.as_slice() == goal.as_slice() && s.velocity.as_slice().iter().all(|v| *v == 0.0)
        })?;
        Ok(())
    }

    /// Starts a move from the commanded position to `goal` and returns at once with its duration
    /// in seconds (the caller polls).
    pub(crate) fn start_move(&mut self, goal: &[f64]) -> Result<f64, StepError> {
        let from = self.snapshot()?.commanded.as_slice().to_vec();
        let t =
            Trajectory::within(&self.cfg, &from, goal, self.fraction).map_err(|e| StepError::Check(e.to_string()))?;
        let seconds = t.len() as f64 * self.cfg.dt();
        match self.h.execute(t) {
            Ok(Ok(())) => {
                if let Some(f) = self.on_move.as_mut() {
                    f(goal);
                }
                Ok(seconds)
            }
            Ok(Err(r)) => Err(StepError::Refused(format!("move to {goal:?}: {r}"))),
            Err(e) => Err(StepError::Check(e.to_string())),
        }
    }

    /// Waits for the arm to settle and returns the largest |commanded - measured|, per joint unit.
    pub(crate) fn settle_error(&mut self) -> Result<f64, StepError> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(150) {
            self.pump();
            std::thread::sleep(PUMP);
        }
        let s = self.snapshot()?;
        if let Some(f) = s.fault {
            return Err(StepError::Fault(f));
        }
        Ok(s.commanded.as_slice().iter().zip(s.measured.as_slice()).map(|(c, m)| (c - m).abs()).fold(0.0, f64::max))
    }
}

struct Steps {
    list: Vec<Value>,
    ok: bool,
}

impl Steps {
    fn run(&mut self, s: &mut Session, name: &str, f: impl FnOnce(&mut Session) -> Result<String, StepError>) {
        if !self.ok {
            return;
        }
        let t0 = Instant::now();
        let r = f(s);
        let ms = (t0.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        match r {
            Ok(detail) => self.list.push(json!({ "step": name, "ok": true, "detail": detail, "ms": ms })),
            Err(e) => {
                self.ok = false;
                self.list.push(json!({ "step": name, "ok": false, "detail": e.to_string(), "ms": ms }));
            }
        }
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // First of all, so that a signal at any time ends the run as a failed step would.
    let end = crate::signals::EndRequest::watch().context("watching for SIGTERM, SIGHUP and SIGINT")?;
    anyhow::ensure!(
        args.speed_fraction > 0.0 && args.speed_fraction <= 1.0,
        "--speed-fraction {} must be within (0, 1]",
        args.speed_fraction
    );
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::CurrentAndFuture)?;
    let cfg = SafetyConfig::load_dir(&args.config)?;
    if args.port.is_none() && !args.sim {
        anyhow::bail!("give --port PATH or --sim");
    }
    let crate::realtime::ControlLoop { h, sim, info, stats, mute, scheduling } = crate::realtime::start(
        &rt,
        &args.config,
        &cfg,
        args.port.as_deref().map(|p| (p, stylet_link::LinkOptions::default().baud)),
        &args.faults,
    )?;
    let port = args.port.clone().or_else(|| sim.as_ref().map(|s| s.path.clone())).unwrap_or_default();
    let mut s = Session {
        h,
        cfg: cfg.clone(),
        mute,
        log: Vec::new(),
        started: Instant::now(),
        fraction: args.speed_fraction,
        gate: None,
        observer: None,
        on_move: None,
        end: Some(end),
    };
    let mut steps = Steps { list: Vec::new(), ok: true };
    let n = cfg.robot.joints.len();

    steps.run(&mut s, "handshake", |s| handshake(s, &info, n));
    steps.run(&mut s, "enable", enable);
    steps.run(&mut s, "home", home);
    for (i, j) in cfg.robot.joints.iter().enumerate() {
        steps.run(&mut s, &format!("joint {i} ({})", j.name), |s| exercise_joint(s, i, j, args));
    }
    steps.run(&mut s, "watchdog", watchdog);
    steps.run(&mut s, "disable", disable);

    // Leave the arm safe whatever happened: drives off if they are still on (waited for even
    // after an ending signal).
    s.end = None;
    let last = s.snapshot().ok();
    if let Some(x) = last {
        if x.drives_on && x.fault.is_none() {
            if s.command(Command::DisableDrives).is_err() {
                let _ = s.h.send(Operator::EStop);
            }
            let _ = s.wait("drives off", Duration::from_millis(500), |x| !x.drives_on);
        }
    }
    s.pump();
    let final_snapshot = s.snapshot().ok();
    let runner::RunReport { actuator: link, snapshot: last_snapshot, lateness, stalls, late_cycles, .. } =
        s.h.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(link); // closes the port
    let lat = &lateness;
    let us = |d: stylet_core::Nanos| (d.0 as f64 / 1e3 * 10.0).round() / 10.0;
    let snap = final_snapshot.unwrap_or(last_snapshot);
    let (monitor, controller_line) = match sim {
        Some(sim) => {
            let end = sim.stop()?;
            (Some(end.monitor), Some(end.line))
        }
        None => (None, None),
    };
    let fault_t_ms = s
        .log
        .iter()
        .find(|e| e["event"].as_str().is_some_and(|t| t.starts_with("fault latched")))
        .and_then(|e| e["t_ms"].as_f64());
    let fault_t_ms = snap.fault.and(fault_t_ms);
    let out = json!({
        "port": port,
        "realtime": scheduling.json(),
        "steal": crate::realtime::steal_json(&rt, s.started, fault_t_ms),
        "wire_monitor": monitor,
        "controller_line": controller_line,
        "passed": steps.ok,
        "controller": {
            "id": info.controller_id,
            "firmware": format!("{}.{}.{}", info.firmware[0], info.firmware[1], info.firmware[2]),
            "protocol_version": info.protocol_version,
            "joints": info.joint_count,
        },
        "steps": steps.list,
        "final_state": snap.state.name(),
        "fault": snap.fault.map(|f| json!({ "name": f.name(), "message": f.to_string(), "reaction": format!("{:?}", f.reaction()) })),
        "drives_on": snap.drives_on,
        "events": s.log,
        "cycles": lat.cycles(),
        "stalls": stalls,
        "late_cycles": late_cycles,
        "max_state_gap_ms": snap.max_state_gap_ms,
        "lateness_us": { "p50": us(lat.quantile(0.5)), "p99": us(lat.quantile(0.99)), "p999": us(lat.quantile(0.999)), "max": us(lat.max()) },
        "link": crate::realtime::link_counts(&stats),
    });
    if args.json {
        say!("{out}");
    } else {
        let mut human = out.clone();
        human["realtime_line"] = json!(scheduling.line());
        print_human(&human);
    }
    Ok(if steps.ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// The controller answers, and drives as many joints as the config has.
fn handshake(s: &mut Session, info: &ControllerInfo, n: usize) -> Result<String, StepError> {
    s.wait("connected", Duration::from_secs(1), |x| x.state == MotionState::Connected)?;
    if usize::from(info.joint_count) != n {
        return Err(StepError::Check(format!("controller drives {} joints, config has {n}", info.joint_count)));
    }
    Ok(format!(
        "controller {} firmware {}.{}.{}, protocol {}, {} joints",
        info.controller_id,
        info.firmware[0],
        info.firmware[1],
        info.firmware[2],
        info.protocol_version,
        info.joint_count
    ))
}

/// Drives on, brakes off.
fn enable(s: &mut Session) -> Result<String, StepError> {
    s.command(Command::StartHoming)?;
    let x = s.wait("drives enabled", Duration::from_secs(1), |x| x.status.has(Status::DRIVES_ENABLED))?;
    if x.status.has(Status::BRAKE_ENGAGED) {
        return Err(StepError::Check("brake still engaged with drives enabled".into()));
    }
    Ok("drives enabled, brakes released".into())
}

/// To home, the needle first on its own (INS-1).
fn home(s: &mut Session) -> Result<String, StepError> {
    let home = s.cfg.robot.home();
    let mut goal = s.snapshot()?.commanded.as_slice().to_vec();
    if let Some(i) = s.cfg.robot.insertion_joint() {
        goal[i] = home[i];
        s.move_to(&goal)?; // needle first, on its own (INS-1)
    }
    s.move_to(&home)?;
    s.command(Command::Complete)?;
    let e = s.settle_error()?;
    Ok(format!("at home, largest settle error {e:.2e}"))
}

/// Joint `i` out by the range the arguments give and back, in the state its role needs; it must
/// really have followed both ways.
fn exercise_joint(s: &mut Session, i: usize, j: &JointSpec, args: &Args) -> Result<String, StepError> {
    let start = s.snapshot()?.commanded.as_slice().to_vec();
    let (range, unit) = match j.kind {
        JointKind::Revolute => (rad_from_deg(args.range_deg), "rad"),
        JointKind::Prismatic => (args.range_mm, "mm"),
    };
    let up = s.cfg.soft_ranges().get(i).is_some_and(|r| r.contains(start[i] + range));
    let mut out = start.clone();
    out[i] += if up { range } else { -range };
    let measured_start = s.snapshot()?.measured.as_slice()[i];
    // The joint must really have moved there and back (a stuck joint whose error stays
    // under the following-error limit is caught here).
    let followed = |s: &Session, wanted: f64| -> Result<(), StepError> {
        let moved = s.snapshot()?.measured.as_slice()[i] - measured_start;
        let range = out[i] - start[i];
        if (moved - wanted).abs() > 0.1 * range.abs() {
            return Err(StepError::Check(format!(
                "joint did not follow: commanded {wanted:+.5} {unit}, measured {moved:+.5} {unit}"
            )));
        }
        Ok(())
    };
    // Orientation joints move in Aligning; the needle in Inserting (pedal, INS-2; gate,
    // RESP-2) and back in Retracting, which starts from Aligned.
    let (go_out, go_back) = match j.role {
        JointRole::Orientation => (Command::BeginAlign, Command::BeginAlign),
        JointRole::Insertion => {
            if s.snapshot()?.state == MotionState::Idle {
                s.command(Command::BeginAlign)?;
                s.command(Command::Complete)?;
            }
            (Command::BeginInsert, Command::BeginRetract)
        }
    };
    s.command(go_out)?;
    s.move_to(&out)?;
    s.command(Command::Complete)?;
    let e_out = s.settle_error()?;
    followed(s, out[i] - start[i])?;
    s.command(go_back)?;
    s.move_to(&start)?;
    s.command(Command::Complete)?;
    let e_back = s.settle_error()?;
    followed(s, 0.0)?;
    Ok(format!("{:+.4} {unit} and back, settle error {e_out:.2e} / {e_back:.2e}", out[i] - start[i]))
}

/// The host goes silent: the controller's watchdog must trip (drives off, brakes on), then the
/// operator's reset brings the supervisor back to Connected.
fn watchdog(s: &mut Session) -> Result<String, StepError> {
    let window = s.cfg.controller_watchdog_ms;
    let t0 = Instant::now();
    s.mute.set(true);
    let mut tripped_at = None;
    let result = loop {
        s.pump();
        let x = s.snapshot()?;
        if tripped_at.is_none() && x.status.has(Status::WATCHDOG_TRIPPED) {
            tripped_at = Some(t0.elapsed());
        }
        match x.fault {
            Some(Fault::ControllerWatchdog | Fault::DrivesDropped) if tripped_at.is_some() => break Ok(x),
            Some(f @ (Fault::ControllerWatchdog | Fault::DrivesDropped)) if t0.elapsed() > Duration::from_secs(1) => {
                break Err(StepError::Check(format!("{f} but the controller never reported its watchdog")));
            }
            Some(Fault::ControllerWatchdog | Fault::DrivesDropped) => {}
            Some(f) => break Err(StepError::Fault(f)),
            None => {}
        }
        if t0.elapsed() > Duration::from_secs(2) {
            break Err(StepError::Timeout("controller watchdog did not trip".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    s.mute.set(false);
    let x = result?;
    if x.status.has(Status::DRIVES_ENABLED) || !x.status.has(Status::BRAKE_ENGAGED) {
        return Err(StepError::Check("after the watchdog trip the drives are not off with brakes on".into()));
    }
    let trip_ms = tripped_at.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    // Operator reset: the controller clears its latch on ResetFaults, the supervisor returns to Connected.
    s.command(Command::Reset)?;
    s.wait_for("reset", Duration::from_secs(2), false, |x| x.state == MotionState::Connected && x.fault.is_none())
        .map_err(|e| StepError::Check(format!("reset after the watchdog trip: {e}")))?;
    Ok(format!(
        "host silent: controller tripped after {trip_ms:.1} ms (window {window} ms), drives off, brakes on; reset ok"
    ))
}

/// Drives off, brakes on.
fn disable(s: &mut Session) -> Result<String, StepError> {
    let x = s.snapshot()?;
    if matches!(x.state, MotionState::Idle | MotionState::Aligned) {
        s.command(Command::DisableDrives)?;
    }
    let x = s.wait("drives off", Duration::from_secs(1), |x| {
        x.state == MotionState::Connected
            && !x.status.has(Status::DRIVES_ENABLED)
            && x.status.has(Status::BRAKE_ENGAGED)
    })?;
    Ok(format!("drives off, brakes on ({})", x.state.name()))
}

fn print_human(r: &Value) {
    say!("bring-up of {}", r["port"].as_str().unwrap_or("?"));
    if let Some(steps) = r["steps"].as_array() {
        for st in steps {
            let ok = st["ok"].as_bool().unwrap_or(false);
            say!(
                "  [{}] {:<32} {:>8.1} ms  {}",
                if ok { " ok " } else { "FAIL" },
                st["step"].as_str().unwrap_or(""),
                st["ms"].as_f64().unwrap_or(0.0),
                st["detail"].as_str().unwrap_or("")
            );
        }
    }
    say!("final state: {}", r["final_state"].as_str().unwrap_or("?"));
    if r["wire_monitor"].is_object() {
        say!(
            "wire monitor (simulated controller): {} setpoints, {} outside the envelope",
            r["wire_monitor"]["setpoints"],
            r["wire_monitor"]["violations"]
        );
    }
    if let Some(m) = r["fault"]["message"].as_str() {
        say!("latched fault: {m}");
    }
    say!(
        "supervisor: {} cycles ({} stall(s), {} late cycle(s)), lateness p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        r["cycles"],
        r["stalls"],
        r["late_cycles"],
        r["lateness_us"]["p50"],
        r["lateness_us"]["p99"],
        r["lateness_us"]["p999"],
        r["lateness_us"]["max"]
    );
    if let Some(line) = r["realtime_line"].as_str() {
        say!("{line}");
    }
    say!("{}", if r["passed"].as_bool().unwrap_or(false) { "PASSED" } else { "FAILED" });
}
