//! `stylet demo`: a complete simulated procedure on a scenario (docs/demo.md).
//!
//! Patient and planning CT from the scenario, marker detection and registration, planning with
//! the robot's reachability, then the arm through the supervisor on the simulated controller on a
//! real pty: alignment, stepwise insertion in respiratory-gated windows, checkpoint CTs with the
//! needle found in the image, acceptance by ACC-1, ablation, verification, retraction. Every
//! workflow transition and operator action goes to the procedure log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nalgebra::{Isometry3, Point3, Vector3};
use serde_json::json;
use stylet_core::frame::{Ct, Point, Robot};
use stylet_procedure::{Input, Limits, Workflow};
use stylet_recorder::{Event as LogEvent, FsyncPolicy, Recorder};
use stylet_safety::{runner, Command, MotionState, SafetyConfig};

use crate::bringup::{step, Session};

mod view;

use stylet_sim::patient::end_exhale_before;
use stylet_sim::scenario::{EventKind, Outcome};
use stylet_telemetry::{Level, Sink, Telemetry};

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
    /// Output folder for the CTs and the procedure log [default: a new temporary folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The config folder.
    #[arg(long, default_value = "config")]
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
    /// Serve OpenIGTLink during the run (default port 18944; 0: any free port, printed on
    /// stderr): 3D Slicer sees the plan (POINT `PLAN`, RAS), the workflow phase (STRING
    /// `WORKFLOW`) and the needle tip (TRANSFORM `CURRENT_POSITION`), and can send EMERGENCY.
    #[arg(long, num_args = 0..=1, default_missing_value = "18944", value_name = "PORT")]
    igtl: Option<u16>,
}

struct Log {
    rec: Recorder,
    t0: Instant,
    lines: Vec<String>,
    quiet: bool,
    bar: indicatif::ProgressBar,
    tel: stylet_telemetry::Logger,
    igtl: Option<stylet_igtl::server::Broadcaster>,
}

/// Workflow phases a nominal run passes through (the progress bar's length).
const PHASES: u64 = 12;

impl Log {
    fn say(&mut self, text: impl Into<String>) {
        let text = text.into();
        let t = self.t0.elapsed().as_secs_f64();
        self.rec.record(t, LogEvent::Note { text: text.clone() });
        view::text(&self.tel, "log/procedure", t, text.clone(), Level::Info);
        if self.quiet {
        } else if self.bar.is_hidden() {
            say!("[{t:7.2} s] {text}");
        } else {
            self.bar.println(format!("[{t:7.2} s] {text}"));
        }
        self.lines.push(text);
    }
    fn workflow(&mut self, w: &mut Workflow, input: &Input) -> anyhow::Result<()> {
        let t = self.t0.elapsed().as_secs_f64();
        let tr = w.handle(t, input).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.rec.record(t, tr.event());
        view::text(&self.tel, "state/workflow", t, format!("{:?}", tr.to), Level::Info);
        if let Some(b) = &self.igtl {
            let phase = format!("{:?}", tr.to);
            b.broadcast(stylet_igtl::Message::new(
                "WORKFLOW",
                stylet_igtl::Body::String { encoding: 3, value: phase.into_bytes() },
            ));
        }
        self.bar.inc(1);
        self.bar.set_message(format!("{:?}", tr.to));
        self.say(format!("workflow {:?} -> {:?}: {}", tr.from, tr.to, tr.reason));
        Ok(())
    }
}

/// Starts a move; `false` when the runner refused it because the arm was still settling (the
/// caller tries again on its next poll).
fn try_start(s: &mut Session, goal: &[f64]) -> anyhow::Result<bool> {
    match s.start_move(goal) {
        Ok(_) => Ok(true),
        Err(crate::bringup::StepError::Refused(_)) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// A CT with the needle drawn from `from` to `tip` into a copy of the planning CT, and the
/// needle found in it. The CT takes a moment: the operator console stays alive meanwhile.
/// The CT is taken at `dose.1` of the planning dose (noise `dose.0` HU at full dose; seed `dose.2`).
#[allow(clippy::too_many_arguments)]
fn needle_ct(
    s: &mut Session,
    planning_ct: &stylet_imaging::Volume,
    from: Vector3<f64>,
    tip: Vector3<f64>,
    expected: ([f64; 3], [f64; 3]),
    settings: &stylet_imaging::NeedleSettings,
    dose: (f64, f64, u64),
) -> anyhow::Result<stylet_imaging::NeedleFound> {
    let found = std::thread::scope(|sc| {
        let job = sc.spawn(|| {
            let mut ct = planning_ct.clone();
            stylet_sim::phantom::render_needle(&mut ct, from, tip, 1.5);
            stylet_sim::phantom::lower_dose(&mut ct, dose.0, dose.1, dose.2);
            stylet_imaging::detect_needle(&ct, Some(expected), settings)
        });
        while !job.is_finished() {
            s.pump();
            std::thread::sleep(Duration::from_millis(10));
        }
        job.join().map_err(|_| anyhow::anyhow!("checkpoint CT thread panicked"))
    })??;
    Ok(found)
}

/// The planned line shifted by `correction` (CT mm), in the robot frame, and the arm moved onto
/// it with the needle retracted (an alignment move, outside tissue: INS-1).
#[allow(clippy::too_many_arguments)]
fn align_on_line(
    s: &mut Session,
    arm: &stylet_kinematics::Arm,
    keepouts: &stylet_kinematics::KeepOuts,
    ik_opts: &stylet_kinematics::ik::IkOptions,
    robot_from_ct: &Isometry3<f64>,
    (entry, tip): (Vector3<f64>, Vector3<f64>),
    correction: Vector3<f64>,
    (ins, retracted): (usize, f64),
) -> anyhow::Result<()> {
    let shifted = stylet_kinematics::NeedleLine {
        entry: (robot_from_ct * Point3::from(entry + correction)).coords,
        target: (robot_from_ct * Point3::from(tip + correction)).coords,
    };
    let seed_now = step(s.snapshot())?.commanded.as_slice().to_vec();
    let sol = stylet_kinematics::ik::solve_first(arm, &shifted, &seed_now, keepouts, ik_opts)
        .map_err(|e| anyhow::anyhow!("alignment on the corrected line: {e}"))?;
    let mut q = sol.joints.clone();
    q[ins] = retracted;
    step(s.command(Command::BeginAlign))?;
    step(s.move_to(&q))?;
    step(s.command(Command::Complete))?;
    Ok(())
}

/// How the insertion ended.
enum InsertionEnd {
    /// ACC-1 accepted the tip: true tip in tissue and the last measured tip.
    AtTarget { true_tip: Vector3<f64>, measured_tip: Vector3<f64> },
    /// At depth but off to the side by `lateral` (CT mm): retract and re-align (INS-1).
    Missed { lateral: Vector3<f64> },
    /// The supervisor latched a fault (or an e-stop) and the arm stopped.
    Stopped { state: MotionState, fault: Option<String>, inserted_mm: f64, true_tip: Vector3<f64> },
}

#[allow(clippy::too_many_lines)]
pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let t_start = Instant::now();
    // Before any thread starts: the real-time core, heavy work off it, memory locked.
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::Current)?;
    let scenario_path = args.scenario.clone().unwrap_or_else(|| args.config.join("scenarios").join("easy.toml"));
    let mut scenario = stylet_sim::scenario::Scenario::load(&scenario_path)?;
    if let Some(path) = &args.breathing_trace {
        anyhow::ensure!(
            (1.0..=50.0).contains(&args.liver_amplitude_mm),
            "--liver-amplitude-mm {} must be within [1, 50]",
            args.liver_amplitude_mm
        );
        let trace = stylet_respiration::trace::read_trace_any(path)?;
        let name = path.display().to_string();
        let recorded = stylet_sim::breathing::RecordedBreathing::from_trace(
            &trace,
            args.liver_amplitude_mm,
            scenario.breathing.si_per_mm,
            &name,
        )
        .with_context(|| format!("{name}: the recording does not move"))?;
        scenario.breathing.recorded = Some(recorded);
    }
    let ps = scenario.phantom.clone();
    let seed = args.seed.unwrap_or(ps.seed);
    let out = match &args.out {
        Some(o) => o.clone(),
        None => std::env::temp_dir().join(format!("stylet-demo-{}-{seed}", std::process::id())),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let log_path = out.join("procedure.log");
    let _ = std::fs::remove_file(&log_path);
    let rec = Recorder::create(
        &log_path,
        &format!("demo {} seed {seed}", scenario_path.display()),
        0,
        FsyncPolicy::default(),
        1 << 16,
    )?;
    let rrd_path = args.rrd.clone().unwrap_or_else(|| out.join("telemetry.rrd"));
    let sink = match (&args.connect, args.viewer) {
        (Some(url), _) => Sink::Connect(url.clone()),
        (None, true) => Sink::Spawn,
        (None, false) => Sink::File(rrd_path.clone()),
    };
    let to_file = matches!(sink, Sink::File(_));
    let telemetry = Telemetry::start("stylet_demo", &sink, 1 << 14)?;
    let tel = telemetry.logger();
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
    // OpenIGTLink (docs/igtl.md): watch from 3D Slicer, and EMERGENCY.
    let igtl = match args.igtl {
        Some(port) => {
            let srv = stylet_igtl::server::start(&stylet_igtl::server::ServerConfig {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                ..Default::default()
            })?;
            eprintln!("OpenIGTLink: listening on {}", srv.local_addr);
            Some(srv)
        }
        None => None,
    };
    let mut log = Log {
        rec,
        t0: Instant::now(),
        lines: Vec::new(),
        quiet: args.json,
        bar,
        tel: tel.clone(),
        igtl: igtl.as_ref().map(stylet_igtl::server::ServerHandle::broadcaster),
    };
    let t0 = log.t0;
    let rules = stylet_planning::Rules::load(&args.config.join("clinical-rules.toml"))?;
    let mut wf = Workflow::new(Limits {
        max_tip_error_mm: rules.acc1_max_tip_error_mm,
        min_margin_mm: rules.mar1_fail_mm,
        max_checkpoints: rules.ins3_max_checkpoints,
    });

    // The patient and the planning CT.
    let frame = stylet_registration::read_points(&args.config.join("robot").join("marker_frame.txt"))?;
    let reg_cfg = stylet_registration::RegistrationConfig::load(&args.config.join("registration.toml"))?;
    log.workflow(&mut wf, &Input::Confirm)?;
    let ph = stylet_sim::phantom::generate(&stylet_sim::phantom::PhantomSpec {
        seed,
        dims: ps.dims,
        spacing_mm: ps.spacing_mm,
        markers_in_robot: frame.clone(),
        marker_diameter_mm: reg_cfg.fiducials.diameter_mm,
        noise_hu: ps.noise_hu,
        missing_beads: ps.missing_beads.clone(),
        extra_beads: ps.extra_beads,
        tumours: ps.tumours.clone(),
        metal_wire: ps.metal_wire,
    });
    log.say(format!("planning CT: {:?} voxels of {:?} mm ({})", ps.dims, ps.spacing_mm, scenario.description));
    log.workflow(&mut wf, &Input::CtAcquired)?;
    let table = stylet_planning::LabelTable::load(&args.config.join("labels.toml"), "phantom")?;
    let target = ph.tumour_in_ct;
    view::structures(&tel, &ph.labels, &table, 4);
    view::axial_slice(&tel, &ph.volume, target);
    view::point(&tel, "world/target", None, target, 1.5, [255, 40, 40, 255]);

    // Registration from the image.
    let (found, _) = stylet_imaging::detect(&ph.volume, &crate::ctcmd::fiducial_settings(&reg_cfg.fiducials));
    let detected: Vec<Vector3<f64>> = found.iter().map(|m| Vector3::from(m.center_lps_mm)).collect();
    let pairs = stylet_registration::match_markers(
        &detected,
        &frame,
        reg_cfg.matching_tolerance_mm,
        reg_cfg.gates.min_markers,
    )?;
    let ct_pts: Vec<Point<Ct>> =
        pairs.iter().map(|(i, _)| Point::new(detected[*i].x, detected[*i].y, detected[*i].z)).collect();
    let robot_pts: Vec<Point<Robot>> =
        pairs.iter().map(|(_, k)| Point::new(frame[*k].x, frame[*k].y, frame[*k].z)).collect();
    tel.log(stylet_telemetry::Item::Points {
        path: "world/fiducials".into(),
        t_s: None,
        points: detected.iter().map(|p| [p.x as f32, p.y as f32, p.z as f32]).collect(),
        radius_mm: 2.0,
        color: [80, 255, 80, 255],
    });
    let reg = stylet_registration::register(
        &ct_pts,
        &robot_pts,
        Some(Point::new(target.x, target.y, target.z)),
        &reg_cfg.gates,
    );
    let reg = match reg {
        Ok(r) => r,
        Err(e) => {
            log.workflow(&mut wf, &Input::RegistrationDone { accepted: false, reason: e.to_string() })?;
            anyhow::bail!("registration refused: {e}");
        }
    };
    let robot_from_ct: Isometry3<f64> = reg.robot_from_ct.to_nalgebra();
    let reg_err = (robot_from_ct * Point3::from(target) - ph.ct_from_robot.inverse() * Point3::from(target)).norm();
    log.workflow(
        &mut wf,
        &Input::RegistrationDone {
            accepted: true,
            reason: format!(
                "{} markers, predicted TRE {:.2} mm at the tumour",
                pairs.len(),
                reg.predicted_tre_mm.unwrap_or(f64::NAN)
            ),
        },
    )?;

    // Plan, with the robot.
    let zone = stylet_planning::load_zone(&args.config.join("devices.toml"), "mwa-generic", "100W-8min")?;
    let report = stylet_planning::plan(&stylet_planning::PlanInput {
        ct: &ph.volume,
        labels: &ph.labels,
        table: &table,
        tumour: stylet_planning::TumourSpec::Label { value: 3, component: 0 },
        zone: zone.clone(),
        rules: rules.clone(),
        max_plans: 20,
    })?;
    log.workflow(&mut wf, &Input::PlansReady { feasible: report.feasible }).ok();
    let chain = crate::kincmd::ChainArgs::reference(&args.config);
    let (arm, ik_opts, keepouts) = chain.load()?;
    let seed_q = crate::kincmd::default_seed(&arm, &args.config);
    let to_robot = |p: [f64; 3]| robot_from_ct * Point3::new(p[0], p[1], p[2]);
    let mut chosen = None;
    let multi = report.plans.iter().filter(|p| p.positions.len() > 1).count();
    for (k, p) in report.plans.iter().enumerate() {
        // The demo places one needle; plans of overlapping ablations are for `stylet plan`.
        if p.positions.len() != 1 {
            continue;
        }
        // A high-risk plan (OAR-2) only on the operator's explicit override.
        if p.high_risk && !scenario.operator.override_high_risk {
            continue;
        }
        let pos = &p.positions[0];
        let line = stylet_kinematics::NeedleLine {
            entry: to_robot(pos.entry_lps_mm).coords,
            target: to_robot(pos.tip_lps_mm).coords,
        };
        if let Ok(sol) = stylet_kinematics::ik::solve_first(&arm, &line, &seed_q, &keepouts, &ik_opts) {
            chosen = Some((k, p.clone(), sol));
            break;
        }
    }
    let Some((plan_index, plan, sol)) = chosen else {
        anyhow::bail!(
            "no feasible single-needle plan the arm reaches ({} feasible plans, {multi} of them overlapping ablations, \
             which the demo does not execute; {} high-risk, executed only with `[operator] override_high_risk = true`; \
             `stylet plan` shows them)",
            report.feasible,
            report.high_risk
        )
    };
    let pos = plan.positions[0].clone();
    if plan.high_risk {
        let why: Vec<String> = plan.high_risk_rules().map(|c| format!("{}: {}", c.rule, c.detail)).collect();
        log.rec.record(
            log.t0.elapsed().as_secs_f64(),
            LogEvent::Operator { action: "override".into(), detail: format!("plan {plan_index}, {}", why.join("; ")) },
        );
        log.say(format!("operator override of a high-risk plan: {}", why.join("; ")));
    }
    log.workflow(&mut wf, &Input::SelectPlan { index: plan_index })?;
    log.say(format!(
        "plan {plan_index}: entry ({:.1}, {:.1}, {:.1}) depth {:.1} mm, margin {:.1} mm, clearance {:.1} mm",
        pos.entry_lps_mm[0], pos.entry_lps_mm[1], pos.entry_lps_mm[2], pos.depth_mm, plan.margin_mm, plan.clearance_mm
    ));
    let axis = Vector3::from(pos.axis_lps);
    let entry = Vector3::from(pos.entry_lps_mm);
    let planned_tip = Vector3::from(pos.tip_lps_mm);
    view::line(&tel, "world/plan", entry - axis * 30.0, planned_tip, 0.5, [255, 255, 0, 255]);
    if let Some(b) = &log.igtl {
        let ras = |p: Vector3<f64>| {
            let r = stylet_igtl::ras_from_lps([p.x, p.y, p.z]);
            [r[0] as f32, r[1] as f32, r[2] as f32]
        };
        let point = |name: &str, p: Vector3<f64>| stylet_igtl::PointElement {
            name: name.into(),
            group: "Plan".into(),
            rgba: [255, 255, 0, 255],
            position: ras(p),
            diameter: 2.0,
            owner: String::new(),
        };
        b.broadcast(stylet_igtl::Message::new(
            "PLAN",
            stylet_igtl::Body::Point(vec![point("entry", entry), point("target", planned_tip)]),
        ));
    }
    view::zone(&tel, "world/zone/planned", Vector3::from(pos.zone_centre_lps_mm), axis, zone.long_mm, zone.short_mm);

    // Ground truth the run is measured against (never shown to the stack).
    let errors = scenario.errors;
    let mut rng_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state >> 11) as f64 / (1u64 << 53) as f64
    };
    let perp = axis.cross(&Vector3::z()).try_normalize(1e-6).unwrap_or_else(Vector3::x);
    let perp2 = axis.cross(&perp);
    let th = std::f64::consts::TAU * uniform();
    let breathing = stylet_sim::breathing::Breathing::new(stylet_sim::breathing::BreathingSpec {
        seed,
        ..scenario.breathing.clone()
    });
    let mut truth = stylet_sim::patient::Patient {
        arm: stylet_sim::truth::HiddenCalibration::draw(
            &arm,
            errors.link_length_error_mm,
            errors.joint_offset_error_deg,
            seed,
        )
        .true_arm(&arm),
        ct_from_robot: ph.ct_from_robot,
        deflect_dir: perp * th.cos() + perp2 * th.sin(),
        deflection_per_mm: errors.needle_deflection_mm_per_100mm / 100.0 * uniform(),
        breathing: breathing.clone(),
        liver_at_planning_ct: Vector3::zeros(),
        liver_motion: errors.liver_motion,
        // Drawn after the draws above, so that a scenario without a push keeps its run.
        push: stylet_sim::patient::TissuePush::new(
            errors.tissue_push_mm[0] + (errors.tissue_push_mm[1] - errors.tissue_push_mm[0]) * uniform(),
            errors.tissue_relax_s,
        ),
        shift: stylet_sim::patient::PatientShift::new(errors.patient_shift_mm, seed),
    };
    // The planning CT was taken in the end-exhale breath-hold just before t = 60 s of breathing.
    let t_planning_ct = end_exhale_before(&mut truth.breathing, 60.0);
    truth.liver_at_planning_ct = Vector3::from(truth.breathing.liver_offset_mm(t_planning_ct));

    // The robot: simulated controller on a pty, the supervisor in front of it.
    let cfg = SafetyConfig::load_dir(&args.config)?;
    let crate::realtime::ControlLoop { h, sim, mute, scheduling, .. } =
        crate::realtime::start(&rt, &args.config, &cfg, None, &[])?;
    let sim = sim.context("the simulated controller")?;
    // Respiration: the simulated belt through the processor; the gate is its decision.
    let mut belt = breathing;
    let resp_cfg = stylet_respiration::RespirationConfig::load(&args.config.join("respiration.toml"))?;
    let (approach_mm, approach_half_width_mm) = (resp_cfg.final_approach_mm, resp_cfg.final_approach_half_width_mm);
    let mut resp =
        stylet_respiration::Respiration::new(stylet_respiration::RespirationConfig { warmup_s: 5.0, ..resp_cfg });
    // The patient breathed for a minute before: the processor has adapted, and the planning CT's
    // end-exhale level is the reference (RESP-3).
    for i in 0..600 {
        let t = f64::from(i) * 0.1;
        let _ = resp.push(stylet_respiration::Sample { t_s: t, value_mm: belt.surrogate(t) });
    }
    resp.set_reference(resp.estimate().baseline_mm);
    let gate_t0 = Instant::now();
    let breathing_time = move || 60.0 + gate_t0.elapsed().as_secs_f64();
    let gate_stats = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let belt_silent_until = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let gs = Arc::clone(&gate_stats);
    let silent = Arc::clone(&belt_silent_until);
    let gate_tel = tel.clone();
    let approach_ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let approach_flag = Arc::clone(&approach_ok);
    let mut next_sample = 60.0;
    let mut last_logged = 0.0;
    let re_reference = Arc::new(std::sync::Mutex::new(None::<f64>));
    let re_reference_flag = Arc::clone(&re_reference);
    let gate = move || {
        let now = breathing_time();
        let muted = silent.lock().ok().and_then(|s| *s).is_some_and(|u| Instant::now() < u);
        while next_sample <= now {
            if !muted {
                let v = belt.surrogate(next_sample);
                let _ = resp.push(stylet_respiration::Sample { t_s: next_sample, value_mm: v });
                view::scalar(&gate_tel, "respiration/signal_mm", t0.elapsed().as_secs_f64(), v);
            }
            next_sample += 0.1;
        }
        // RESP-3: a CT was just taken in an end-exhale breath-hold: the belt's level then is the
        // new reference.
        if let Some(level) = re_reference_flag.lock().ok().and_then(|mut r| r.take()) {
            resp.set_reference(level);
        }
        let d = resp.decide(now);
        // At the end-exhale plateau: the liver at its stillest and nearest where the last CT
        // imaged it (the baseline's drift since that CT remains; docs/demo.md).
        let near = (d.predicted_mm - d.estimate.baseline_mm).abs() + d.confidence_mm <= approach_half_width_mm;
        approach_flag.store(d.open && near, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut g) = gs.lock() {
            g.0 += 1;
            g.1 += u64::from(d.open);
        }
        let t = t0.elapsed().as_secs_f64();
        if t - last_logged >= 0.05 {
            last_logged = t;
            view::scalar(&gate_tel, "respiration/gate_open", t, f64::from(u8::from(d.open)));
            view::scalar(&gate_tel, "respiration/predicted_mm", t, d.predicted_mm);
        }
        d.open
    };
    let obs_tel = tel.clone();
    let obs_arm = arm.clone();
    let ct_from_robot_est = robot_from_ct.inverse();
    let needle_len = ik_opts.standoff_mm + 200.0;
    let mut last_state = None;
    let mut last_fk = -1.0;
    let obs_igtl = log.igtl.clone();
    let obs_rec = log.rec.sender();
    let move_rec = log.rec.sender();
    let mut last_fault = None;
    let mut stalls_logged = 0;
    let observer = move |snap: &stylet_safety::Snapshot, events: &[String], timing: runner::Timing| {
        let t = t0.elapsed().as_secs_f64();
        // The runner's timing: the worst cycle start of each pump interval, stalls and late cycles.
        view::scalar(&obs_tel, "timing/worst_lateness_us", t, timing.worst_lateness.as_secs_f64() * 1e6);
        view::scalar(&obs_tel, "timing/stalls", t, timing.stalls as f64);
        view::scalar(&obs_tel, "timing/late_cycles", t, timing.late_cycles as f64);
        if timing.stalls > stalls_logged {
            stalls_logged = timing.stalls;
            obs_rec.record(t, crate::realtime::timing_sample("cycle_stall", &timing, None));
        }
        // The procedure log: every supervisor state change and latched fault.
        if last_state.is_some_and(|s| s != snap.state) {
            obs_rec.record(
                t,
                LogEvent::State {
                    machine: "supervisor".into(),
                    from: last_state.map(|s: MotionState| s.name().to_string()).unwrap_or_default(),
                    to: snap.state.name().into(),
                    reason: events.iter().find(|e| e.contains("->")).cloned().unwrap_or_default(),
                },
            );
        }
        if snap.fault.is_some() && snap.fault != last_fault {
            if let Some(f) = snap.fault {
                obs_rec.record(t, LogEvent::Fault { code: format!("{f:?}"), detail: f.to_string() });
            }
        }
        last_fault = snap.fault;
        for (i, (m, c)) in snap.measured.as_slice().iter().zip(snap.commanded.as_slice()).enumerate() {
            view::scalar(&obs_tel, &format!("joints/{i}/measured"), t, *m);
            view::scalar(&obs_tel, &format!("joints/{i}/commanded"), t, *c);
        }
        if last_state != Some(snap.state) {
            last_state = Some(snap.state);
            view::text(&obs_tel, "state/supervisor", t, snap.state.name().to_string(), Level::Info);
        }
        for e in events {
            let level = if e.starts_with("fault") { Level::Error } else { Level::Info };
            view::text(&obs_tel, "events", t, e.clone(), level);
        }
        if t - last_fk >= 0.1 {
            last_fk = t;
            view::robot(&obs_tel, t, &obs_arm, snap.measured.as_slice(), &ct_from_robot_est, needle_len);
            if let Some(b) = &obs_igtl {
                let m = (ct_from_robot_est * obs_arm.tip_pose(snap.measured.as_slice())).to_homogeneous();
                let rows: [[f64; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|c| m[(r, c)]));
                b.broadcast(stylet_igtl::bwh::Bwh::current_position(&rows));
            }
        }
    };
    let mut s = Session {
        h,
        cfg: cfg.clone(),
        mute,
        log: Vec::new(),
        started: Instant::now(),
        fraction: 0.25,
        gate: None,
        observer: Some(Box::new(observer)),
        on_move: Some(Box::new(move |goal: &[f64]| {
            move_rec
                .record(t0.elapsed().as_secs_f64(), LogEvent::Command { name: "move".into(), values: goal.to_vec() });
        })),
    };
    // EMERGENCY from the network presses the supervisor's e-stop (it can stop, never move).
    let network_estop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let igtl_thread = igtl.map(|srv| {
        let button = s.h.estop_button();
        let pressed = Arc::clone(&network_estop);
        std::thread::spawn(move || {
            while let Ok(req) = srv.requests.recv() {
                if req.action == stylet_igtl::bwh::Action::Enter(stylet_igtl::bwh::Phase::Emergency) {
                    let _ = button.press();
                    pressed.store(true, std::sync::atomic::Ordering::SeqCst);
                    srv.completed(stylet_igtl::bwh::Phase::Emergency, true, "e-stop latched: drives off, brakes on");
                }
            }
        })
    });
    let _ = igtl_thread;
    s.enable_and_home()?;
    let home = cfg.robot.home();
    let ins = cfg.robot.insertion_joint().context("the robot has no insertion joint")?;
    log.say(scheduling.line());
    log.say("controller connected, drives enabled, arm at home");

    // Alignment (outside the patient).
    let mut q = sol.joints.clone();
    q[ins] = home[ins];
    step(s.command(Command::BeginAlign))?;
    s.fraction = 0.8;
    step(s.move_to(&q))?;
    step(s.command(Command::Complete))?;
    // Confirmation CT with the needle outside the skin (end-exhale breath-hold): how far its tip
    // really is off the planned line, relative to the anatomy as it is now. The arm re-aligns by
    // that much while the needle is still outside tissue (INS-1), which takes out the robot's
    // calibration error, the registration error and the drift since the planning CT.
    let standoff = ik_opts.standoff_mm;
    let q_true = sim.true_positions();
    let t_c = end_exhale_before(&mut truth.breathing, breathing_time());
    truth.shift.next_ct();
    let tip_now = truth.tip_in_tissue(&q_true, 0.0, (t_c, t_c), &axis);
    let liver_at_confirmation = truth.liver_offset(t_c);
    // In air the thin shaft's partial-volume voxels stay below the in-tissue metal threshold;
    // nothing else near the line outside the body is that dense.
    let in_air = stylet_imaging::NeedleSettings { threshold_hu: 1500.0, ..Default::default() };
    let needle = needle_ct(
        &mut s,
        &ph.volume,
        tip_now - axis * 40.0,
        tip_now,
        (pos.entry_lps_mm, target.into()),
        &in_air,
        (ps.noise_hu, errors.checkpoint_dose_fraction, seed),
    )
    .context("confirmation CT")?;
    let at_skin = entry - axis * standoff;
    let mut correction = at_skin - Vector3::from(needle.tip_lps_mm);
    log.workflow(&mut wf, &Input::AlignmentChecked { offset_mm: correction.norm() })?;
    if let Ok(mut r) = re_reference.lock() {
        *r = Some(truth.breathing.surrogate(t_c));
    }
    let line = (entry, planned_tip);
    align_on_line(&mut s, &arm, &keepouts, &ik_opts, &robot_from_ct, line, correction, (ins, home[ins]))?;
    log.workflow(&mut wf, &Input::Aligned)?;
    s.gate = Some(Box::new(gate));
    s.fraction = 0.9;

    // Insertion to the planned depth in gated windows, then a checkpoint CT; a further step
    // along the axis when it says so (INS-3).
    let full = standoff + pos.depth_mm;
    let mut goal_depth = full;
    let mut first = true;
    // CTs with the needle for this insertion: the confirmation CT so far.
    let mut total_cts = 1usize;
    let mut events = scenario.events.clone();
    events.sort_by(|a, b| a.at_inserted_mm.total_cmp(&b.at_inserted_mm));
    let mut pending: std::collections::VecDeque<_> = events.into_iter().collect();
    let mut due_at: Option<Instant> = None;
    let mut fired = Vec::new();
    let mut last_tip: Option<(f64, Vector3<f64>)> = None;
    let mut budget = json!(null);
    let mut reinsertions = 0;
    let end = loop {
        let end = 'procedure: loop {
            // Advance in gated windows: the supervisor holds when the gate closes; resume when it opens.
            let mut goal = step(s.snapshot())?.commanded.as_slice().to_vec();
            goal[ins] = goal_depth;
            let t_step = Instant::now();
            let mut moving = false;
            let mut sub_goal = f64::NAN;
            let stopped_at;
            loop {
                s.pump();
                let snap = step(s.snapshot())?;
                let commanded = snap.commanded.as_slice()[ins];
                let inserted = snap.measured.as_slice()[ins] - standoff;
                // Scenario events: due once the needle is deep enough, after their delay.
                if let Some(ev) = pending.front().copied() {
                    if inserted >= ev.at_inserted_mm && due_at.is_none() {
                        due_at = Some(Instant::now() + Duration::from_secs_f64(ev.after_s));
                    }
                    if due_at.is_some_and(|d| Instant::now() >= d) {
                        pending.pop_front();
                        due_at = None;
                        let what = match ev.what {
                            EventKind::Controller(kind) => {
                                sim.inject(kind);
                                format!("controller fault injected: {kind:?}")
                            }
                            EventKind::BeltSilent(secs) => {
                                if let Ok(mut u) = belt_silent_until.lock() {
                                    *u = Some(Instant::now() + Duration::from_secs_f64(secs));
                                }
                                format!("respiratory belt silent for {secs} s")
                            }
                        };
                        log.say(format!("scenario event at {inserted:.1} mm inserted: {what}"));
                        view::text(&tel, "events", t0.elapsed().as_secs_f64(), what.clone(), Level::Warn);
                        fired.push(what);
                    }
                }
                let there = (commanded - goal_depth).abs() < 1e-9;
                let still = snap.velocity.as_slice().iter().all(|v| *v == 0.0);
                if there && still {
                    stopped_at = breathing_time();
                    break;
                }
                anyhow::ensure!(t_step.elapsed() < Duration::from_secs(90), "insertion step did not finish in 90 s");
                // The bulk of the step in any gated window; its final approach only near the
                // reference level (RESP-2, final approach), so the tip stops where the CT imaged it.
                let next =
                    if commanded < goal_depth - approach_mm - 1e-6 { goal_depth - approach_mm } else { goal_depth };
                if moving && still && (commanded - sub_goal).abs() < 1e-9 {
                    moving = false;
                }
                let may_start = next < goal_depth || approach_ok.load(std::sync::atomic::Ordering::Relaxed);
                goal[ins] = next;
                match snap.state {
                    // Waiting for a gated window: begin or resume when the supervisor takes it.
                    MotionState::Aligned | MotionState::Holding if may_start => {
                        moving = false;
                        let cmd = if first { Command::BeginInsert } else { Command::Resume };
                        if s.command(cmd).is_ok() {
                            first = false;
                            log.rec.record(
                                log.t0.elapsed().as_secs_f64(),
                                LogEvent::Operator {
                                    action: format!("{cmd:?}"),
                                    detail: "pedal held, gate open".into(),
                                },
                            );
                            moving = try_start(&mut s, &goal)?;
                            sub_goal = next;
                        }
                    }
                    MotionState::Aligned | MotionState::Holding => moving = false,
                    MotionState::Inserting if !moving && still && may_start => {
                        moving = try_start(&mut s, &goal)?;
                        sub_goal = next;
                    }
                    MotionState::Fault | MotionState::EStop => {
                        // The supervisor stopped the arm: wait for it to be still, then report where.
                        let t_stop = Instant::now();
                        while t_stop.elapsed() < Duration::from_millis(500) {
                            s.pump();
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        let q_true = sim.true_positions();
                        let inserted = q_true.get(ins).copied().unwrap_or(0.0) - standoff;
                        let now = breathing_time();
                        let tip = truth.tip_in_tissue(&q_true, inserted, (now, now), &axis);
                        break 'procedure InsertionEnd::Stopped {
                            state: snap.state,
                            fault: snap.fault.map(|f| f.to_string()),
                            inserted_mm: inserted,
                            true_tip: tip,
                        };
                    }
                    // Inserting, or a snapshot a cycle behind the last command.
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            step(s.command(Command::Hold)).ok();
            let snap = step(s.snapshot())?;
            log.workflow(&mut wf, &Input::StepDone { depth_mm: snap.commanded.as_slice()[ins] - standoff })?;
            // Where the tip really is: the true arm at its true joints, bent, in the tissue that was
            // under it when it stopped.
            let q_true = sim.true_positions();
            let inserted = (q_true.get(ins).copied().unwrap_or(0.0) - standoff).max(0.0);
            // Checkpoint CT (end-exhale breath-hold), a moment later: the patient may have moved
            // on the table, and the tissue pushed ahead of the needle relaxed meanwhile.
            let t_ct = end_exhale_before(&mut truth.breathing, breathing_time());
            truth.shift.next_ct();
            // A step that did not advance leaves the tip in the tissue it was in.
            let true_tip = match last_tip {
                Some((depth, tip)) if (depth - inserted).abs() < 0.01 => tip,
                _ => truth.tip_in_tissue(&q_true, inserted, (stopped_at, t_ct.max(stopped_at)), &axis),
            };
            last_tip = Some((inserted, true_tip));
            budget = json!({
                "liver_since_planning_ct_mm": truth.liver_offset(stopped_at).norm(),
                "liver_since_confirmation_ct_mm": (truth.liver_offset(stopped_at) - liver_at_confirmation).norm(),
                "hidden_calibration_at_tip_mm": (truth.arm.tip_pose(&q_true).translation.vector
                    - arm.tip_pose(&q_true).translation.vector).norm(),
                "needle_deflection_mm": truth.deflection_per_mm * inserted * inserted / 100.0_f64.max(inserted),
                "tissue_push_mm": truth.push.push_mm(),
                "patient_shift_mm": truth.shift.now().norm(),
            });
            // The checkpoint CT: the needle drawn into a copy of the planning CT along the true axis,
            // and found in it. The CT takes a moment: keep the console alive.
            let skin_side = true_tip - axis * (inserted + standoff + 20.0);
            let needle = needle_ct(
                &mut s,
                &ph.volume,
                skin_side,
                true_tip,
                (pos.entry_lps_mm, target.into()),
                &stylet_imaging::NeedleSettings::default(),
                (ps.noise_hu, errors.checkpoint_dose_fraction, seed.wrapping_add(total_cts as u64)),
            )
            .context("checkpoint CT")?;
            total_cts += 1;
            let measured_tip = Vector3::from(needle.tip_lps_mm);
            view::point(
                &tel,
                "world/checkpoint_tip",
                Some(t0.elapsed().as_secs_f64()),
                measured_tip,
                1.2,
                [255, 0, 255, 255],
            );
            if let Ok(mut r) = re_reference.lock() {
                *r = Some(truth.breathing.surrogate(t_ct));
            }
            let remaining = (planned_tip - measured_tip).dot(&axis);
            // The zone is centred behind the tip: its centre against the target is the error.
            let centre = measured_tip - axis * zone.centre_from_tip_mm;
            let margin = plan.margin_mm - (centre - target).norm();
            log.say(format!(
            "checkpoint CT: needle tip found at ({:.1}, {:.1}, {:.1}) mm, {:.2} mm from the planned tip, {remaining:.1} mm to go",
            measured_tip.x,
            measured_tip.y,
            measured_tip.z,
            (measured_tip - planned_tip).norm()
        ));
            let tip_error = (measured_tip - planned_tip).norm();
            let at_depth = remaining <= 1.0;
            let acceptable = tip_error <= rules.acc1_max_tip_error_mm && margin >= rules.mar1_fail_mm;
            let input = Input::CheckpointMeasured {
                tip_error_mm: tip_error,
                margin_mm: margin,
                // At depth but off to the side: only a new orientation corrects it (INS-1).
                needs_reorientation: at_depth && !acceptable,
                remaining_mm: if at_depth { 0.0 } else { remaining },
            };
            log.workflow(&mut wf, &input)?;
            match wf.phase() {
                stylet_procedure::Phase::AtTarget => break InsertionEnd::AtTarget { true_tip, measured_tip },
                stylet_procedure::Phase::Insertion => {
                    goal_depth = (snap.commanded.as_slice()[ins] + remaining.max(0.0)).min(cfg.robot.joints[ins].max);
                }
                stylet_procedure::Phase::Retraction => {
                    let miss = measured_tip - planned_tip;
                    break InsertionEnd::Missed { lateral: miss - axis * miss.dot(&axis) };
                }
                other => anyhow::bail!("workflow stopped in {other:?}"),
            }
        };
        // A lateral miss: needle out, re-align shifted by the miss, insert again.
        match end {
            InsertionEnd::Missed { lateral } if reinsertions < 2 => {
                reinsertions += 1;
                step(s.command(Command::BeginRetract))?;
                let mut back = step(s.snapshot())?.commanded.as_slice().to_vec();
                back[ins] = home[ins];
                step(s.move_to(&back))?;
                step(s.command(Command::Complete))?;
                log.workflow(&mut wf, &Input::Retracted)?;
                correction -= lateral;
                align_on_line(&mut s, &arm, &keepouts, &ik_opts, &robot_from_ct, line, correction, (ins, home[ins]))?;
                log.workflow(&mut wf, &Input::Aligned)?;
                first = true;
                goal_depth = full;
                last_tip = None;
            }
            InsertionEnd::Missed { .. } => anyhow::bail!("still off the target after {reinsertions} re-insertions"),
            other => break other,
        }
    };

    let outcome;
    let mut summary = json!({
        "scenario": scenario_path, "description": scenario.description, "seed": seed, "out": out,
        "procedure_log": log_path,
        "telemetry": if to_file { json!(rrd_path) } else { json!("viewer") },
        "registration_error_at_target_mm": reg_err,
        "planned_margin_mm": plan.margin_mm,
        "scenario_events": fired,
    });
    match end {
        InsertionEnd::AtTarget { true_tip, measured_tip } => {
            // Ablation and verification.
            log.workflow(&mut wf, &Input::Confirm)?;
            let t_abl = Instant::now();
            while t_abl.elapsed() < Duration::from_millis(500) {
                s.pump();
                std::thread::sleep(Duration::from_millis(10));
            }
            log.say("ablation: 100 W for 8 min (simulated in 0.5 s)");
            log.workflow(&mut wf, &Input::AblationDone)?;
            let achieved_centre = true_tip - axis * zone.centre_from_tip_mm;
            let achieved_margin = plan.margin_mm - (achieved_centre - target).norm();
            view::zone(&tel, "world/zone/achieved", achieved_centre, axis, zone.long_mm, zone.short_mm);
            log.workflow(&mut wf, &Input::Verified { margin_mm: achieved_margin })?;
            // Retraction.
            step(s.command(Command::BeginRetract))?;
            let mut back = step(s.snapshot())?.commanded.as_slice().to_vec();
            back[ins] = 0.0;
            s.gate = None;
            step(s.move_to(&back))?;
            step(s.command(Command::Complete))?;
            // Out of the patient: the arm back home (an alignment move), drives off.
            step(s.command(Command::BeginAlign))?;
            s.fraction = 0.8;
            step(s.move_to(&home))?;
            step(s.command(Command::Complete))?;
            step(s.command(Command::DisableDrives))?;
            log.workflow(&mut wf, &Input::Retracted)?;
            outcome = Outcome::Done;
            summary["tip_error_mm"] = json!((true_tip - planned_tip).norm());
            summary["zone_centre_to_target_mm"] = json!((achieved_centre - target).norm());
            summary["measured_tip_error_mm"] = json!((measured_tip - planned_tip).norm());
            summary["achieved_margin_mm"] = json!(achieved_margin);
            summary["error_sources_at_the_tip"] = budget.clone();
        }
        InsertionEnd::Missed { .. } => anyhow::bail!("a missed insertion left the re-insertion loop"),
        InsertionEnd::Stopped { state, fault, inserted_mm, true_tip } => {
            // The documented safe state: fault latched, drives off and brakes on at the
            // controller (its watchdog or its own reset), the needle left where it stopped.
            let t_wait = Instant::now();
            while sim.drives_on() && t_wait.elapsed() < Duration::from_secs(3) {
                s.pump();
                std::thread::sleep(Duration::from_millis(10));
            }
            let drives_off = !sim.drives_on();
            let code = fault.clone().unwrap_or_else(|| format!("{state:?}"));
            log.workflow(&mut wf, &Input::Fault { code: code.clone() })?;
            log.say(format!(
                "safe stop: {code}; needle held at {inserted_mm:.1} mm, drives {} (operator reset required)",
                if drives_off { "off, brakes on" } else { "STILL ON" }
            ));
            outcome = if drives_off && (fault.is_some() || state == MotionState::EStop) {
                Outcome::SafeStop
            } else {
                Outcome::Done
            };
            if network_estop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(a) = summary["scenario_events"].as_array_mut() {
                    a.push(json!("network EMERGENCY (OpenIGTLink)"));
                }
            }
            summary["safe_state"] = json!({
                "supervisor_state": state.name(), "fault": fault, "controller_drives_off": drives_off,
                "inserted_mm": inserted_mm, "tip_to_planned_tip_mm": (true_tip - planned_tip).norm(),
            });
        }
    }
    let final_snap = step(s.snapshot())?;
    let timing = s.h.take_timing();
    let run = s.h.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    log.rec.record(
        log.t0.elapsed().as_secs_f64(),
        crate::realtime::timing_sample("cycle_timing", &timing, Some(&run.lateness)),
    );
    let monitor = sim.stop()?;
    let (gate_samples, gate_open) = gate_stats.lock().map(|g| *g).unwrap_or((0, 0));
    let stats = log.rec.close()?;
    log.bar.finish_and_clear();
    drop(tel);
    drop(log.tel);
    let tstats = telemetry.finish()?;
    // An e-stop the operator pressed (over the network) ends the run as commanded.
    let expected = scenario.expect == outcome
        || (outcome == Outcome::SafeStop && network_estop.load(std::sync::atomic::Ordering::SeqCst));
    let outcome_name = |o: Outcome| match o {
        Outcome::Done => "done",
        Outcome::SafeStop => "safe-stop",
    };
    summary["outcome"] = json!(outcome_name(outcome));
    summary["expected_outcome"] = json!(outcome_name(scenario.expect));
    summary["checkpoint_cts"] = json!(total_cts);
    summary["reinsertions"] = json!(reinsertions);
    summary["gate_open_fraction_during_insertion"] =
        json!(if gate_samples > 0 { gate_open as f64 / gate_samples as f64 } else { 0.0 });
    summary["faults"] = json!(final_snap.fault.map(|f| format!("{f:?}")));
    summary["realtime"] = scheduling.json();
    summary["cycle_timing"] = crate::realtime::timing_json(&timing, &run.lateness);
    summary["cycle_timing"]["max_state_gap_ms"] = json!(final_snap.max_state_gap_ms);
    summary["wire_monitor_violations"] = json!(monitor.violations);
    summary["supervisor_events_dropped"] = json!(run.events_dropped);
    summary["log_records"] = json!(stats.written);
    summary["telemetry_items"] = json!(tstats.logged);
    summary["telemetry_dropped"] = json!(tstats.dropped);
    summary["seconds"] = json!(t_start.elapsed().as_secs_f64());
    summary["final_phase"] = json!(format!("{:?}", wf.phase()));
    if args.json {
        say!("{summary}");
    } else {
        say!("");
        match outcome {
            Outcome::Done => say!(
                "summary: tip {:.2} mm from the planned tip (zone centre {:.2} mm from the target), margin {:.1} mm (planned {:.1}), {} checkpoint CT(s), gate open {:.0} % of the insertion time, wire monitor {} violation(s), {:.1} s",
                summary["tip_error_mm"].as_f64().unwrap_or(f64::NAN),
                summary["zone_centre_to_target_mm"].as_f64().unwrap_or(f64::NAN),
                summary["achieved_margin_mm"].as_f64().unwrap_or(f64::NAN),
                plan.margin_mm,
                wf.checkpoints(),
                100.0 * summary["gate_open_fraction_during_insertion"].as_f64().unwrap_or(0.0),
                monitor.violations,
                t_start.elapsed().as_secs_f64()
            ),
            Outcome::SafeStop => say!(
                "summary: safe stop ({}), wire monitor {} violation(s), {:.1} s",
                summary["safe_state"]["fault"].as_str().unwrap_or("?"),
                monitor.violations,
                t_start.elapsed().as_secs_f64()
            ),
        }
        say!("procedure log: {} ({} records; `stylet replay` reads it)", log_path.display(), stats.written);
        if to_file {
            say!(
                "telemetry: {} ({} items; open with `rerun {}`)",
                rrd_path.display(),
                tstats.logged,
                rrd_path.display()
            );
        }
    }
    if !expected {
        anyhow::bail!(
            "the scenario expects {} but the run ended {}",
            outcome_name(scenario.expect),
            outcome_name(outcome)
        );
    }
    Ok(ExitCode::SUCCESS)
}
