//! `stylet demo`: a complete simulated procedure on a scenario (docs/demo.md).
//!
//! Composition only: the scenario's world (`stylet_sim::world`: patient, planning CT, scanner,
//! belt, ablation device, scripted operator, and the arm: the simulated controller in lockstep
//! with the supervisor in virtual time, or over a real pty on the wall clock with `--realtime`),
//! the procedure driver (`stylet_procedure::Driver`) over its ports, and the events fanned out
//! to the procedure log, telemetry and OpenIGTLink. The errors of the run come from the world's
//! truth after the driver is done.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};
use stylet_core::frame::Robot;
use stylet_procedure::ports::World;
use stylet_procedure::{Driver, DriverConfig, Outcome as End, Report};
use stylet_recorder::{FsyncPolicy, Recorder};
use stylet_safety::SafetyConfig;
use stylet_sim::scenario::{Outcome, Scenario};
use stylet_sim::world::{RealtimeArm, SimArm, SimWorld, TrueController, VirtualArm, WorldSetup};
use stylet_suite::{LiveWorld, SlicerOperator};
use stylet_telemetry::{Sink, Telemetry};

pub(crate) mod sink;
mod view;

use sink::Fanout;

/// Options of `stylet demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Scenario file [default: CONFIG/scenarios/easy.toml].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed (patient, noise, needle deflection) [default: the scenario's].
    #[arg(long)]
    seed: Option<u64>,
    /// The patient breathes this recording instead of the scenario's breathing (any format the
    /// trace readers take; the belt reads the same recording), scaled to --liver-amplitude-mm.
    #[arg(long, value_name = "TRACE")]
    breathing_trace: Option<PathBuf>,
    /// With --breathing-trace: superior-inferior liver motion of a typical breath, mm.
    #[arg(long, default_value_t = 12.0, requires = "breathing_trace")]
    liver_amplitude_mm: f64,
    /// Take the error sources (`[errors]`) from this scenario file instead, e.g.
    /// config/scenarios/harder-world.toml on any patient.
    #[arg(long, value_name = "SCENARIO")]
    errors_from: Option<PathBuf>,
    /// Run on the wall clock: the supervisor's real-time thread against the simulated controller
    /// on a real pty (hardware-like timing; for the viewer and OpenIGTLink). Without it the run is
    /// in virtual time: as fast as the CPU allows, the same procedure log for the same seed.
    #[arg(long)]
    realtime: bool,
    /// Output folder for the procedure log, telemetry and the results as DICOM (a SEG and an SR
    /// on the planning CT) [default: a new temporary folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the simulated planning CT as a DICOM series (OUT/planning-ct), which the
    /// results' SEG then references slice by slice: load both in a viewer (3D Slicer, OHIF).
    #[arg(long)]
    write_planning_ct: bool,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Stream telemetry to a rerun viewer (spawned: `rerun` from `pip install rerun-sdk==0.36.3`
    /// on PATH) instead of writing the .rrd file.
    #[arg(long)]
    viewer: bool,
    /// Write the rerun recording here [default: OUT/telemetry.rrd].
    #[arg(long, conflicts_with = "viewer")]
    rrd: Option<PathBuf>,
    /// Stream telemetry to a running rerun viewer at this URL (e.g.
    /// rerun+http://127.0.0.1:9876/proxy) instead of writing the .rrd file.
    #[arg(long, conflicts_with_all = ["viewer", "rrd"])]
    connect: Option<String>,
    /// With --realtime: serve OpenIGTLink during the run (default port 18944; 0: any free port,
    /// printed on stderr): 3D Slicer sees the plan (POINT `PLAN`, RAS), the workflow phase
    /// (STRING `WORKFLOW`) and the needle tip (TRANSFORM `CURRENT_POSITION`), and can send
    /// EMERGENCY.
    #[arg(long, num_args = 0..=1, default_missing_value = "18944", value_name = "PORT", requires = "realtime")]
    igtl: Option<u16>,
}

/// 3D Slicer as the operator of the simulated procedure (`stylet igtl serve`): where its
/// OpenIGTLink server listens.
#[derive(Clone, Debug)]
pub(crate) struct SlicerSetup {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) allow_remote: bool,
    /// The other hosts that may connect (beyond loopback).
    pub(crate) allowed_peers: Vec<std::net::IpAddr>,
    /// The registration comes from Slicer's calibration (CLB_), not from the fiducials.
    pub(crate) peer_calibration: bool,
}

impl DemoArgs {
    /// The demo's options for `stylet igtl serve`: the scenario's world, run by Slicer.
    pub(crate) fn for_slicer(
        config: PathBuf,
        scenario: Option<PathBuf>,
        seed: Option<u64>,
        out: Option<PathBuf>,
        json: bool,
    ) -> Self {
        DemoArgs {
            scenario,
            seed,
            breathing_trace: None,
            liver_amplitude_mm: 12.0,
            errors_from: None,
            realtime: false,
            out,
            write_planning_ct: false,
            config,
            json,
            viewer: false,
            rrd: None,
            connect: None,
            igtl: None,
        }
    }
}

/// Workflow transitions a nominal one-position run passes through (the progress bar's length).
const PHASES: u64 = 14;

/// The driver reads the scenario's surrogate sensor in its unit: a sensor in mm as it is, one in
/// other units uncalibrated (scaled from its breathing amplitude, as at a site that has not
/// calibrated it: docs/respiration.md, "Any sensor").
pub(crate) fn reads_the_sensor_of(dcfg: &mut DriverConfig, scenario: &stylet_sim::scenario::Scenario) {
    let unit = &scenario.breathing.sensor.unit;
    if *unit != dcfg.respiration.sensor_unit {
        dcfg.respiration.sensor_unit.clone_from(unit);
        dcfg.respiration.sensor_mm_per_unit = (unit == "mm").then_some(1.0);
    }
}

/// The driver's configuration from a config folder.
pub(crate) fn driver_config(config: &Path) -> anyhow::Result<DriverConfig> {
    let rules = stylet_planning::Rules::load(&config.join("clinical-rules.toml"))?;
    let registration = stylet_registration::RegistrationConfig::load(&config.join("registration.toml"))?;
    let marker_frame = stylet_registration::read_points::<Robot>(&config.join("robot").join("marker_frame.txt"))?;
    let zone = stylet_planning::load_zone(&config.join("devices.toml"), "mwa-generic", "100W-8min")?;
    let crate::kincmd::Chain { arm, ik, keepouts, home: ik_seed } =
        crate::kincmd::ChainArgs::reference(config).load()?;
    let resp = stylet_respiration::RespirationConfig::load(&config.join("respiration.toml"))?;
    Ok(DriverConfig {
        rules,
        registration,
        marker_frame,
        zone,
        arm,
        ik,
        keepouts,
        organ: stylet_imaging::OrganSettings::default(),
        ik_seed,
        respiration: stylet_respiration::RespirationConfig { warmup_s: 5.0, ..resp },
        max_plans: 20,
        step_timeout_s: 90.0,
        max_reinsertions: 2,
        hold_limit_s: Some(30.0),
        ct_timeout_s: 600.0,
        registration_from_operator: false,
    })
}

/// The scenario, with `--breathing-trace` applied.
fn scenario(args: &DemoArgs) -> anyhow::Result<(PathBuf, Scenario)> {
    let path = args.scenario.clone().unwrap_or_else(|| args.config.join("scenarios").join("easy.toml"));
    let mut scenario = Scenario::load(&path)?;
    if let Some(trace_path) = &args.breathing_trace {
        anyhow::ensure!(
            (1.0..=50.0).contains(&args.liver_amplitude_mm),
            "--liver-amplitude-mm {} must be within [1, 50]",
            args.liver_amplitude_mm
        );
        let trace = stylet_respiration::trace::read_trace_any(trace_path)?;
        let name = trace_path.display().to_string();
        let recorded = stylet_sim::breathing::RecordedBreathing::from_trace(
            &trace,
            args.liver_amplitude_mm,
            scenario.breathing.si_per_mm,
            &name,
        )
        .with_context(|| format!("{name}: the recording does not move"))?;
        scenario.breathing.recorded = Some(recorded);
    }
    if let Some(other) = &args.errors_from {
        scenario.errors = Scenario::load(other)?.errors;
    }
    Ok((path, scenario))
}

/// The run's terminal output, log and telemetry.
fn fanout(
    args: &DemoArgs,
    log_path: &Path,
    title: &str,
    dcfg: &DriverConfig,
) -> anyhow::Result<(Fanout, Telemetry, Value)> {
    let _ = std::fs::remove_file(log_path);
    let rec = Recorder::create(log_path, title, 0, FsyncPolicy::default(), 1 << 16)?;
    let out = log_path.parent().unwrap_or_else(|| Path::new("."));
    let rrd_path = args.rrd.clone().unwrap_or_else(|| out.join("telemetry.rrd"));
    let sink = match (&args.connect, args.viewer) {
        (Some(url), _) => Sink::Connect(url.clone()),
        (None, true) => Sink::Spawn,
        (None, false) => Sink::File(rrd_path.clone()),
    };
    let asked = args.rrd.is_some() || args.viewer || args.connect.is_some();
    let (telemetry, where_to) = if stylet_telemetry::BUILT || asked {
        let where_to = if matches!(sink, Sink::File(_)) { json!(rrd_path) } else { json!("viewer") };
        (Telemetry::start("stylet_demo", &sink, 1 << 16)?, where_to)
    } else {
        // A build without the `telemetry` feature records nothing unless asked (then it says why not).
        (Telemetry::off(), Value::Null)
    };
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(PHASES);
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let needle_mm = dcfg.ik.standoff_mm + 200.0;
    let f = Fanout::new(rec, telemetry.logger(), None, bar, args.json, dcfg.arm.clone(), needle_mm);
    Ok((f, telemetry, where_to))
}

/// The world of the scenario around `arm`.
pub(crate) fn world<A: SimArm>(
    arm: A,
    scenario: &Scenario,
    seed: u64,
    config: &Path,
    dcfg: &DriverConfig,
) -> anyhow::Result<SimWorld<A>> {
    let ps = &scenario.phantom;
    let ph = stylet_sim::phantom::generate(&stylet_sim::phantom::PhantomSpec {
        seed,
        dims: ps.dims,
        spacing_mm: ps.spacing_mm,
        markers_in_robot: dcfg.marker_frame.clone(),
        marker_diameter_mm: dcfg.registration.fiducials.diameter_mm,
        noise_hu: ps.noise_hu,
        missing_beads: ps.missing_beads.clone(),
        extra_beads: ps.extra_beads,
        tumours: ps.tumours.clone(),
        metal_wire: ps.metal_wire,
    });
    let patient = stylet_sim::world::draw_patient(scenario, seed, &dcfg.arm, ph.ct_from_robot);
    let setup = WorldSetup {
        table: stylet_planning::LabelTable::load(&config.join("labels.toml"), "phantom")?,
        standoff_mm: dcfg.ik.standoff_mm,
        ablation_w_s: (dcfg.zone.power_w, dcfg.zone.time_s),
        ablation_sim_s: 0.5,
        nominal_arm: dcfg.arm.clone(),
    };
    Ok(SimWorld::new(arm, scenario, seed, ph, patient, setup))
}

impl TrueController for crate::simcmd::InProcessSim {
    fn true_joints(&self) -> Vec<f64> {
        self.true_positions()
    }
    fn drives_on(&self) -> bool {
        crate::simcmd::InProcessSim::drives_on(self)
    }
    fn inject(&self, kind: stylet_sim::FaultKind) {
        crate::simcmd::InProcessSim::inject(self, kind);
    }
}

/// What a run gives back: the driver's report, the world's truth, the arm's end, whether an
/// OpenIGTLink peer pressed the e-stop, Slicer (handed back), and the planning CT the driver had.
struct Ran {
    report: Report,
    truth: Value,
    end: ArmEnd,
    network_estop: bool,
    slicer: Option<SlicerOperator>,
    planning_ct: Arc<stylet_imaging::Volume>,
}

/// What the arm's side reports at the end.
struct ArmEnd {
    monitor: stylet_sim::MonitorReport,
    timing: Value,
    realtime: Value,
    events_dropped: u64,
    /// A signal ended the run (the operator left).
    ended_by_signal: bool,
}

/// Starts the OpenIGTLink server with Stylet planning (the BWH convention's phases answer the
/// driver's prompts) and makes Slicer the operator; the scene goes out through `fan`.
fn slicer_operator(
    setup: SlicerSetup,
    fan: &mut Fanout,
) -> anyhow::Result<(SlicerOperator, crate::signals::EndRequest)> {
    let op = serve_slicer(&setup, fan, "the operator")?;
    // SIGTERM, SIGHUP or SIGINT: the operator leaves (the arm stops under the supervisor).
    let signal = crate::signals::EndRequest::watch().context("watching for SIGTERM, SIGHUP and SIGINT")?;
    Ok((op.leave_when(signal.flag()), signal))
}

/// Starts the OpenIGTLink server for 3D Slicer as `role` (said on stderr and in the log), with
/// Stylet planning; the scene, the CTs included, goes out through `fan`.
pub(crate) fn serve_slicer(setup: &SlicerSetup, fan: &mut Fanout, role: &str) -> anyhow::Result<SlicerOperator> {
    let srv = stylet_igtl::server::start(&stylet_igtl::server::ServerConfig {
        addr: setup.addr,
        allow_remote: setup.allow_remote,
        allowed_peers: setup.allowed_peers.clone(),
        convention: if setup.peer_calibration {
            stylet_igtl::bwh::Convention::StyletPlansPeerCalibrates
        } else {
            stylet_igtl::bwh::Convention::StyletPlans
        },
        ..Default::default()
    })?;
    let peers = if setup.addr.ip().is_loopback() {
        "this host".to_string()
    } else {
        let peers = format!("this host and {:?}", setup.allowed_peers);
        eprintln!(
            "warning: OpenIGTLink server listening on {}, reachable from other hosts; served: {peers}",
            srv.local_addr
        );
        peers
    };
    eprintln!("OpenIGTLink: listening on {}", srv.local_addr);
    fan.event_note(&format!("OpenIGTLink: 3D Slicer is {role}, listening on {} for {peers}", srv.local_addr));
    fan.igtl = Some(srv.broadcaster());
    fan.igtl_volumes = true;
    let op = SlicerOperator::new(srv);
    Ok(if setup.peer_calibration {
        fan.event_note("the registration comes from 3D Slicer's calibration (CLB_), not from the fiducials");
        op.taking_calibration()
    } else {
        op
    })
}

/// The driver over `world`, run by Slicer when there is one; Slicer is handed back.
fn drive<W: World>(
    world: &mut W,
    fan: &mut Fanout,
    dcfg: &DriverConfig,
    slicer: Option<SlicerOperator>,
) -> (Report, Option<SlicerOperator>) {
    match slicer {
        None => (Driver::new(world, fan, dcfg.clone()).run(), None),
        Some(op) => {
            let mut live = LiveWorld::new(world, op);
            let report = Driver::new(&mut live, fan, dcfg.clone()).run();
            (report, Some(live.operator))
        }
    }
}

/// Slicer told how the procedure ended; the server stopped once the peers have had the time to
/// read it.
pub(crate) fn slicer_ended(op: SlicerOperator, report: &Report) -> Value {
    let (ok, text) = match &report.outcome {
        End::Done => {
            (true, format!("done: {} position(s) ablated, the needle out, drives off", report.positions.len()))
        }
        End::Stopped { state, fault, .. } => (
            false,
            format!("stopped by the supervisor ({state}, {}); the arm holds", fault.as_deref().unwrap_or("e-stop")),
        ),
        End::Aborted { retracted, .. } => {
            (false, format!("aborted; the needle {}", if *retracted { "withdrawn" } else { "holds where it stopped" }))
        }
        End::Failed { error, .. } => (false, format!("failed: {error}")),
    };
    let srv = op.ended(ok, &text);
    std::thread::sleep(Duration::from_millis(500));
    let st = &srv.stats;
    let counts = json!({
        "clients": st.clients.load(Ordering::Relaxed),
        "received": st.received.load(Ordering::Relaxed),
        "rejected": st.rejected.load(Ordering::Relaxed),
        "dropped": st.dropped.load(Ordering::Relaxed),
        "replies": st.replies.load(Ordering::Relaxed),
        // From a message's last byte read to its reply written to the socket: the server's part
        // of every ACK.
        "reply_max_ms": st.reply_max_us.load(Ordering::Relaxed) as f64 / 1e3,
    });
    srv.stop();
    counts
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    run_with(args, None)
}

/// `stylet demo`, or with `slicer` the simulated procedure that 3D Slicer runs (`stylet igtl
/// serve`).
pub(crate) fn run_with(args: &DemoArgs, slicer: Option<SlicerSetup>) -> anyhow::Result<ExitCode> {
    let t_start = Instant::now();
    let (scenario_path, scenario) = scenario(args)?;
    let seed = args.seed.unwrap_or(scenario.phantom.seed);
    let out = match &args.out {
        Some(o) => o.clone(),
        None => std::env::temp_dir().join(format!("stylet-demo-{}-{seed}", std::process::id())),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let log_path = out.join("procedure.log");
    let mut dcfg = driver_config(&args.config)?;
    dcfg.registration_from_operator = slicer.as_ref().is_some_and(|s| s.peer_calibration);
    reads_the_sensor_of(&mut dcfg, &scenario);
    let safety = SafetyConfig::load_dir(&args.config)?;
    let title = format!("demo {} seed {seed}", scenario_path.display());
    let (mut fan, telemetry, rrd) = fanout(args, &log_path, &title, &dcfg)?;
    let (slicer, slicer_signal) = match slicer {
        Some(setup) => {
            let (op, signal) = slicer_operator(setup, &mut fan)?;
            (Some(op), Some(signal))
        }
        None => (None, None),
    };
    let Ran { report, truth, mut end, network_estop, slicer, planning_ct } = if args.realtime {
        realtime(args, &scenario, seed, &dcfg, &safety, &mut fan, slicer)?
    } else {
        let controller = crate::simcmd::controller_from(&args.config, &[])?;
        let arm =
            VirtualArm::new(safety.clone(), controller).map_err(|e| anyhow::anyhow!("simulated controller: {e}"))?;
        let mut w = world(arm, &scenario, seed, &args.config, &dcfg)?;
        let (report, slicer) = drive(&mut w, &mut fan, &dcfg, slicer);
        let truth = w.truth(&report);
        let t_end = stylet_procedure::ports::Clock::now_s(&w);
        let planning_ct = w.planning_volume();
        let (run, monitor) = w.arm.lockstep.finish();
        let timing = crate::realtime::final_timing(&run, None, &fan.rec, t_end);
        let realtime = json!({ "virtual_time": true, "runner": { "policy": "virtual time (one thread, lockstep)" } });
        let end = ArmEnd { monitor, timing, realtime, events_dropped: run.events_dropped, ended_by_signal: false };
        Ran { report, truth, end, network_estop: false, slicer, planning_ct }
    };
    let mut network_stop = network_estop.then_some("EMERGENCY");
    let mut igtl = None;
    if let Some(op) = slicer {
        // What the peer stopped (STOP, EMERGENCY) ended as it commanded.
        network_stop = network_stop.or(op.stopped_by().map(stylet_igtl::bwh::Phase::name));
        igtl = Some(slicer_ended(op, &report));
    }
    if slicer_signal.is_some_and(|s| s.asked()) && !matches!(report.outcome, End::Done) {
        end.ended_by_signal = true;
    }
    let stats = fan.rec.close()?;
    fan.bar.finish_and_clear();
    drop(fan.tel);
    let tstats = telemetry.finish()?;
    let outcome = match &report.outcome {
        End::Done => Outcome::Done,
        End::Stopped { .. } => Outcome::SafeStop,
        End::Aborted { .. } | End::Failed { .. } => Outcome::Aborted,
    };
    let mut summary = summary(&report, &truth, &end, outcome, &scenario);
    let dicom =
        crate::dicomresults::write_simulated(&out, &report, &planning_ct, &dcfg.rules, args.write_planning_ct, &title)?;
    let more = json!({
        "dicom": dicom,
        "scenario": scenario_path, "description": scenario.description, "seed": seed, "out": out,
        "procedure_log": log_path, "telemetry": rrd, "log_records": stats.written,
        "telemetry_items": tstats.logged, "telemetry_dropped": tstats.dropped,
        "seconds": t_start.elapsed().as_secs_f64(),
    });
    if let (Some(s), Some(m)) = (summary.as_object_mut(), more.as_object()) {
        s.extend(m.clone());
    }
    if let Some(counts) = igtl {
        summary["igtl"] = counts;
    }
    if let Some(phase) = network_stop {
        if let Some(a) = summary["scenario_events"].as_array_mut() {
            a.push(json!(format!("network {phase} (OpenIGTLink)")));
        }
    }
    print_summary(args, &summary, outcome);
    anyhow::ensure!(
        !end.ended_by_signal,
        "ended by a signal (SIGTERM, SIGHUP or SIGINT): the operator left, the arm stopped and holds under the supervisor with the drives off"
    );
    // An e-stop the operator pressed (over the network) ends the run as commanded.
    let expected = scenario.expect == outcome || (outcome != Outcome::Done && network_stop.is_some());
    if let End::Failed { error, .. } = &report.outcome {
        if scenario.expect != Outcome::Aborted && network_stop.is_none() {
            anyhow::bail!("the procedure stopped: {error}");
        }
    }
    anyhow::ensure!(
        expected,
        "the scenario expects {} but the run ended {}",
        outcome_name(scenario.expect),
        outcome_name(outcome)
    );
    Ok(ExitCode::SUCCESS)
}

/// The wall-clock run: the supervisor's real-time thread, the simulated controller on a pty.
fn realtime(
    args: &DemoArgs,
    scenario: &Scenario,
    seed: u64,
    dcfg: &DriverConfig,
    safety: &SafetyConfig,
    fan: &mut Fanout,
    slicer: Option<SlicerOperator>,
) -> anyhow::Result<Ran> {
    // Before any thread starts: the real-time core, heavy work off it, memory locked.
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::Current)?;
    let started = std::time::Instant::now();
    let crate::realtime::ControlLoop { h, sim, mut scheduling, .. } =
        crate::realtime::start(&rt, &args.config, safety, None, &[])?;
    let sim = sim.context("the simulated controller")?;
    // OpenIGTLink (docs/igtl.md): watch from 3D Slicer, and EMERGENCY, which presses the
    // supervisor's e-stop (it can stop, never move).
    let network_estop = Arc::new(AtomicBool::new(false));
    if let Some(port) = args.igtl {
        let srv = stylet_igtl::server::start(&stylet_igtl::server::ServerConfig {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            ..Default::default()
        })?;
        eprintln!("OpenIGTLink: listening on {}", srv.local_addr);
        fan.igtl = Some(srv.broadcaster());
        let button = h.estop_button();
        let pressed = Arc::clone(&network_estop);
        std::thread::spawn(move || {
            while let Ok(req) = srv.requests.recv() {
                if req.action == stylet_igtl::bwh::Action::Enter(stylet_igtl::bwh::Phase::Emergency) {
                    let _ = button.press();
                    pressed.store(true, Ordering::SeqCst);
                    srv.completed(stylet_igtl::bwh::Phase::Emergency, true, "e-stop latched: drives off, brakes on");
                }
            }
        });
    }
    let arm = RealtimeArm::new(stylet_procedure::runner_motion::RunnerMotion::new(h, safety.clone()), sim);
    let mut w = world(arm, scenario, seed, &args.config, dcfg)?;
    // SIGTERM, SIGHUP or SIGINT: the operator leaves, the arm stops under the supervisor and
    // the host tuning is put back as at the run's own end.
    let signal = crate::signals::EndRequest::watch().context("watching for SIGTERM, SIGHUP and SIGINT")?;
    w.leave_when(signal.flag());
    // The driver on a thread of its own, above normal load (its heartbeat and gate are due
    // every tick); the threads it starts for heavy work put themselves at SCHED_IDLE.
    let driver_schedule = rt.schedule(stylet_rt::Role::Driver);
    let (report, slicer) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("stylet-driver".into())
            .spawn_scoped(s, || {
                scheduling.set_driver(driver_schedule.apply_to_current_thread());
                fan.event_note(&scheduling.line());
                drive(&mut w, fan, dcfg, slicer)
            })
            .map(|t| t.join())
    })
    .context("starting the driver's thread")?
    .map_err(|_| anyhow::anyhow!("the driver's thread panicked"))?;
    let truth = w.truth(&report);
    let t_end = stylet_procedure::ports::Clock::now_s(&w);
    let planning_ct = w.planning_volume();
    let RealtimeArm { motion, controller, .. } = w.arm;
    let timing = motion.handle.take_timing();
    let run = motion.handle.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    let timing_json = crate::realtime::final_timing(&run, Some(timing), &fan.rec, t_end);
    let monitor = controller.stop()?.monitor;
    let mut realtime = scheduling.json();
    realtime["steal"] = crate::realtime::steal_json(&rt, started, None);
    let end = ArmEnd {
        monitor,
        timing: timing_json,
        realtime,
        events_dropped: run.events_dropped,
        // A signal after the driver had ended changed nothing.
        ended_by_signal: signal.asked() && matches!(report.outcome, End::Aborted { .. }),
    };
    Ok(Ran { report, truth, end, network_estop: network_estop.load(Ordering::SeqCst), slicer, planning_ct })
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Done => "done",
        Outcome::SafeStop => "safe-stop",
        Outcome::Aborted => "aborted",
    }
}

/// The run's summary: what the driver did, and its errors from the world's truth.
fn summary(report: &Report, truth: &Value, end: &ArmEnd, outcome: Outcome, scenario: &Scenario) -> Value {
    let mut s = json!({
        "outcome": outcome_name(outcome),
        "expected_outcome": outcome_name(scenario.expect),
        "driver": report,
        "final_phase": format!("{:?}", report.final_phase),
        "planned_margin_mm": report.plan.as_ref().map(|p| p.plan.margin_mm),
        "positions": report.positions.len(),
        "checkpoint_cts": truth["checkpoint_cts"],
        "cts_with_needle": report.positions.iter().map(|p| p.cts_with_needle).sum::<usize>(),
        "reinsertions": report.positions.iter().map(|p| p.reinsertions).sum::<usize>(),
        "gate_open_fraction_during_insertion": report.gate_open_fraction,
        "faults": report.fault,
        "realtime": end.realtime,
        "cycle_timing": end.timing,
        "wire_monitor_violations": end.monitor.violations,
        "supervisor_events_dropped": end.events_dropped,
        "scenario_events": truth["scenario_events"],
        "truth": truth,
    });
    if outcome == Outcome::Done {
        s["tip_error_mm"] = truth["tip_error_mm"].clone();
        s["zone_centre_to_target_mm"] = truth["zone_centre_error_mm"].clone();
        s["achieved_margin_mm"] = truth["achieved_margin_mm"].clone();
        s["measured_tip_error_mm"] = truth["positions"][0]["measured_tip_error_mm"].clone();
        s["error_sources_at_the_tip"] = truth["positions"][0]["error_sources_at_the_tip"].clone();
    }
    if let End::Stopped { state, fault, inserted_mm } = &report.outcome {
        s["safe_state"] = json!({
            "supervisor_state": state, "fault": fault, "controller_drives_off": truth["controller_drives_off"],
            "inserted_mm": inserted_mm, "tip_to_planned_tip_mm": truth["last_imaged_tip_to_planned_tip_mm"],
        });
    }
    if let End::Aborted { phase, retracted } = &report.outcome {
        s["aborted"] = json!({ "phase": format!("{phase:?}"), "retracted": retracted,
            "controller_drives_off": truth["controller_drives_off"], "inserted_mm": truth["inserted_mm"] });
    }
    if let End::Failed { error, needle_out } = &report.outcome {
        s["failed"] = json!({ "error": error, "needle_out": needle_out,
            "controller_drives_off": truth["controller_drives_off"], "inserted_mm": truth["inserted_mm"] });
    }
    s
}

fn print_summary(args: &DemoArgs, s: &Value, outcome: Outcome) {
    if args.json {
        say!("{s}");
        return;
    }
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    say!("");
    match outcome {
        Outcome::Done => say!(
            "summary: tip {:.2} mm from the planned tip (zone centre {:.2} mm off), margin {:.1} mm (planned {:.1}), {} position(s), {} CT(s) with the needle, gate open {:.0} % of the insertion time, wire monitor {} violation(s), {:.1} s",
            f("tip_error_mm"),
            f("zone_centre_to_target_mm"),
            f("achieved_margin_mm"),
            f("planned_margin_mm"),
            s["positions"],
            s["cts_with_needle"],
            100.0 * f("gate_open_fraction_during_insertion"),
            s["wire_monitor_violations"],
            f("seconds")
        ),
        Outcome::SafeStop => say!(
            "summary: safe stop ({}), wire monitor {} violation(s), {:.1} s",
            s["safe_state"]["fault"].as_str().unwrap_or("?"),
            s["wire_monitor_violations"],
            f("seconds")
        ),
        Outcome::Aborted => say!("summary: ended early ({}), {:.1} s", s["driver"]["outcome"], f("seconds")),
    }
    say!(
        "procedure log: {} ({} records; `stylet replay` reads it)",
        s["procedure_log"].as_str().unwrap_or("?"),
        s["log_records"]
    );
    let dicom = &s["dicom"];
    if let Some(sr) = dicom["sr"].as_str() {
        match dicom["seg"].as_str() {
            Some(seg) => say!("results as DICOM: {seg} (SEG: tumour, planned and verified zones), {sr} (SR)"),
            None => say!("results as DICOM: {sr} (SR)"),
        }
    }
    if let Some(ct) = dicom["planning_ct"].as_str() {
        say!("planning CT as DICOM: {ct}");
    }
    if let Some(rrd) = s["telemetry"].as_str().filter(|r| *r != "viewer") {
        say!("telemetry: {rrd} ({} items; open with `rerun {rrd}`)", s["telemetry_items"]);
    }
}
