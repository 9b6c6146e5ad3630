//! `stylet demo`: a complete simulated procedure on a scenario (first version, docs/demo.md).
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
use stylet_core::clock::{Clock, MonotonicClock};
use stylet_core::frame::{Ct, Point, Robot};
use stylet_link::{Link, LinkOptions};
use stylet_procedure::{Input, Limits, Workflow};
use stylet_recorder::{Event as LogEvent, FsyncPolicy, Recorder};
use stylet_safety::{runner, Command, MotionState, SafetyConfig, Supervisor};

use crate::bringup::Session;

/// Options of `stylet demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Scenario file [default: CONFIG/scenarios/easy.toml].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed (patient, noise, needle deflection) [default: the scenario's].
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder for the CTs and the procedure log [default: a new temporary folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The config folder.
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

struct Log {
    rec: Recorder,
    t0: Instant,
    lines: Vec<String>,
    quiet: bool,
}

impl Log {
    fn say(&mut self, text: impl Into<String>) {
        let text = text.into();
        let t = self.t0.elapsed().as_secs_f64();
        self.rec.record(t, LogEvent::Note { text: text.clone() });
        if !self.quiet {
            say!("[{t:7.2} s] {text}");
        }
        self.lines.push(text);
    }
    fn workflow(&mut self, w: &mut Workflow, input: &Input) -> anyhow::Result<()> {
        let t = self.t0.elapsed().as_secs_f64();
        let tr = w.handle(t, input).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.rec.record(t, tr.event());
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

fn step<T>(r: Result<T, crate::bringup::StepError>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e}"))
}

#[allow(clippy::too_many_lines)]
pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let t_start = Instant::now();
    let scenario_path = args.scenario.clone().unwrap_or_else(|| args.config.join("scenarios").join("easy.toml"));
    let scenario = stylet_sim::scenario::Scenario::load(&scenario_path)?;
    let ps = scenario.phantom;
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
    let mut log = Log { rec, t0: Instant::now(), lines: Vec::new(), quiet: args.json };
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
    let target = ph.tumour_in_ct;
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
    let true_ct_from_robot = ph.ct_from_robot;
    let reg_err = (robot_from_ct * Point3::from(target) - true_ct_from_robot.inverse() * Point3::from(target)).norm();
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
    let table = stylet_planning::LabelTable::load(&args.config.join("labels.toml"), "phantom")?;
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
    for (k, p) in report.plans.iter().enumerate() {
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
    let Some((plan_index, plan, sol)) = chosen else { anyhow::bail!("no feasible plan the arm reaches") };
    let pos = plan.positions[0].clone();
    log.workflow(&mut wf, &Input::SelectPlan { index: plan_index })?;
    log.say(format!(
        "plan {plan_index}: entry ({:.1}, {:.1}, {:.1}) depth {:.1} mm, margin {:.1} mm, clearance {:.1} mm",
        pos.entry_lps_mm[0], pos.entry_lps_mm[1], pos.entry_lps_mm[2], pos.depth_mm, plan.margin_mm, plan.clearance_mm
    ));

    // The robot: simulated controller on a pty, the supervisor in front of it.
    let cfg = SafetyConfig::load_dir(&args.config)?;
    let sim = crate::simcmd::InProcessSim::start(&args.config, &[])?;
    let link = Link::open(&sim.path, &LinkOptions::default()).context("connecting to the simulated controller")?;
    let mute = link.mute_switch();
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let h = runner::spawn(Supervisor::new(cfg.clone()), link, clock).context("starting the supervisor")?;
    // Respiration: the simulated belt through the processor; the gate is its decision.
    let mut breathing =
        stylet_sim::breathing::Breathing::new(stylet_sim::breathing::BreathingSpec { seed, ..Default::default() });
    let resp_cfg = stylet_respiration::RespirationConfig::load(&args.config.join("respiration.toml"))?;
    let mut resp =
        stylet_respiration::Respiration::new(stylet_respiration::RespirationConfig { warmup_s: 5.0, ..resp_cfg });
    // The patient breathed for a minute before: the processor has adapted, and the planning CT's
    // end-exhale level is the reference (RESP-3).
    for i in 0..600 {
        let t = f64::from(i) * 0.1;
        let _ = resp.push(stylet_respiration::Sample { t_s: t, value_mm: breathing.surrogate(t) });
    }
    resp.set_reference(resp.estimate().baseline_mm);
    let gate_t0 = Instant::now();
    let gate_stats = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let gs = Arc::clone(&gate_stats);
    let mut next_sample = 60.0;
    let gate = move || {
        let now = 60.0 + gate_t0.elapsed().as_secs_f64();
        while next_sample <= now {
            let _ =
                resp.push(stylet_respiration::Sample { t_s: next_sample, value_mm: breathing.surrogate(next_sample) });
            next_sample += 0.1;
        }
        let open = resp.decide(now).open;
        if let Ok(mut g) = gs.lock() {
            g.0 += 1;
            g.1 += u64::from(open);
        }
        open
    };
    let mut s =
        Session { h, cfg: cfg.clone(), mute, log: Vec::new(), started: Instant::now(), fraction: 0.25, gate: None };
    step(s.wait("connected", Duration::from_secs(2), |x| x.state == MotionState::Connected))?;
    // The first states may still be on their way: retry briefly.
    let mut tries = 0;
    while let Err(e) = s.command(Command::StartHoming) {
        tries += 1;
        anyhow::ensure!(tries < 50, "{e}");
        s.pump();
        std::thread::sleep(Duration::from_millis(20));
    }
    let home = cfg.robot.home();
    let ins = cfg.robot.insertion_joint().context("the robot has no insertion joint")?;
    // The needle first, on its own (INS-1), then the arm.
    let mut needle_home = step(s.snapshot())?.commanded.as_slice().to_vec();
    needle_home[ins] = home[ins];
    step(s.move_to(&needle_home))?;
    step(s.move_to(&home))?;
    step(s.command(Command::Complete))?;
    log.say("controller connected, drives enabled, arm at home");

    // Alignment (outside the patient).
    let mut q = sol.joints.clone();
    q[ins] = home[ins];
    step(s.command(Command::BeginAlign))?;
    s.fraction = 0.35;
    step(s.move_to(&q))?;
    step(s.command(Command::Complete))?;
    log.workflow(&mut wf, &Input::Aligned)?;
    s.gate = Some(Box::new(gate));
    s.fraction = 0.6;

    // Stepwise insertion: to 60 % of the depth, checkpoint, then the rest (corrected from the CT).
    let axis = Vector3::from(pos.axis_lps);
    let entry = Vector3::from(pos.entry_lps_mm);
    let standoff = ik_opts.standoff_mm;
    let full = standoff + pos.depth_mm;
    let mut rng_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state >> 11) as f64 / (1u64 << 53) as f64
    };
    // Needle deflection in tissue: up to 1 mm per 100 mm inserted, in a random direction.
    let perp = axis.cross(&Vector3::z()).try_normalize(1e-6).unwrap_or_else(Vector3::x);
    let perp2 = axis.cross(&perp);
    let th = std::f64::consts::TAU * uniform();
    let deflection_per_mm = 0.01 * uniform();
    let deflect_dir = perp * th.cos() + perp2 * th.sin();
    let mut goal_depth = 0.6 * full;
    let mut true_tip;
    let mut measured_tip;
    let mut first = true;
    loop {
        // Advance in gated windows: the supervisor holds when the gate closes; resume when it opens.
        let mut goal = s.snapshot().map_err(|e| anyhow::anyhow!("{e}"))?.commanded.as_slice().to_vec();
        goal[ins] = goal_depth;
        let t_step = Instant::now();
        let mut moving = false;
        loop {
            s.pump();
            let snap = step(s.snapshot())?;
            let there = (snap.commanded.as_slice()[ins] - goal_depth).abs() < 1e-9;
            let still = snap.velocity.as_slice().iter().all(|v| *v == 0.0);
            if there && still {
                break;
            }
            anyhow::ensure!(t_step.elapsed() < Duration::from_secs(90), "insertion step did not finish in 90 s");
            match snap.state {
                // Waiting for a gated window: begin or resume when the supervisor takes it.
                MotionState::Aligned | MotionState::Holding => {
                    moving = false;
                    let cmd = if first { Command::BeginInsert } else { Command::Resume };
                    if s.command(cmd).is_ok() {
                        first = false;
                        log.rec.record(
                            log.t0.elapsed().as_secs_f64(),
                            LogEvent::Operator { action: format!("{cmd:?}"), detail: "pedal held, gate open".into() },
                        );
                        moving = try_start(&mut s, &goal)?;
                    }
                }
                MotionState::Inserting if !moving && still => moving = try_start(&mut s, &goal)?,
                MotionState::Fault | MotionState::EStop => {
                    anyhow::bail!("supervisor in {:?} during insertion (fault {:?})", snap.state, snap.fault)
                }
                // Inserting, or a snapshot a cycle behind the last command.
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        step(s.command(Command::Hold)).ok();
        log.workflow(&mut wf, &Input::StepDone { depth_mm: goal_depth - standoff })?;
        // Checkpoint CT at end-exhale breath-hold: the true tip from the arm's measured joints
        // through the true robot pose, bent by the deflection; the needle drawn into a copy of the
        // planning CT and found in it.
        let snap = step(s.snapshot())?;
        let tip_robot = arm.tip_pose(snap.measured.as_slice()).translation.vector;
        let tip_ct = (true_ct_from_robot * Point3::from(tip_robot)).coords;
        let inserted = (snap.measured.as_slice()[ins] - standoff).max(0.0);
        true_tip = tip_ct + deflect_dir * (deflection_per_mm * inserted * inserted / 100.0_f64.max(inserted));
        let skin_side = true_tip - axis * (inserted + standoff + 20.0);
        // The CT and the search take a moment: keep the operator console alive meanwhile.
        let needle = std::thread::scope(|sc| {
            let job = sc.spawn(|| {
                let mut ct = ph.volume.clone();
                stylet_sim::phantom::render_needle(&mut ct, skin_side, true_tip, 1.5);
                stylet_imaging::detect_needle(
                    &ct,
                    Some(([entry.x, entry.y, entry.z], [target.x, target.y, target.z])),
                    &stylet_imaging::NeedleSettings::default(),
                )
            });
            while !job.is_finished() {
                s.pump();
                std::thread::sleep(Duration::from_millis(10));
            }
            job.join().map_err(|_| anyhow::anyhow!("checkpoint CT thread panicked"))
        })??;
        measured_tip = Vector3::from(needle.tip_lps_mm);

        let planned_tip = Vector3::from(pos.tip_lps_mm);
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
        let input = Input::CheckpointMeasured {
            tip_error_mm: (measured_tip - planned_tip).norm(),
            margin_mm: margin,
            needs_reorientation: false,
            remaining_mm: if remaining > 1.0 { remaining } else { 0.0 },
        };
        log.workflow(&mut wf, &input)?;
        match wf.phase() {
            stylet_procedure::Phase::AtTarget => break,
            stylet_procedure::Phase::Insertion => {
                goal_depth = (snap.commanded.as_slice()[ins] + remaining.max(0.0)).min(cfg.robot.joints[ins].max);
            }
            other => anyhow::bail!("workflow stopped in {other:?}"),
        }
    }
    // Ablation and verification.
    log.workflow(&mut wf, &Input::Confirm)?;
    // Energy delivery, simulated in half a second (the console stays alive meanwhile).
    let t_abl = Instant::now();
    while t_abl.elapsed() < Duration::from_millis(500) {
        s.pump();
        std::thread::sleep(Duration::from_millis(10));
    }
    log.say("ablation: 100 W for 8 min (simulated in 0.5 s)");
    log.workflow(&mut wf, &Input::AblationDone)?;
    let achieved_centre = true_tip - axis * zone.centre_from_tip_mm;
    let achieved_margin = plan.margin_mm - (achieved_centre - target).norm();
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
    s.fraction = 0.35;
    step(s.move_to(&home))?;
    step(s.command(Command::Complete))?;
    step(s.command(Command::DisableDrives))?;
    log.workflow(&mut wf, &Input::Retracted)?;
    let final_snap = step(s.snapshot())?;
    let run = s.h.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = run;
    let monitor = sim.stop()?;
    let (gate_samples, gate_open) = gate_stats.lock().map(|g| *g).unwrap_or((0, 0));
    let tip_error = (true_tip - Vector3::from(pos.tip_lps_mm)).norm();
    let centre_error = (achieved_centre - target).norm();
    let stats = log.rec.close()?;
    let summary = json!({
        "scenario": scenario_path, "seed": seed, "out": out, "procedure_log": log_path,
        "tip_error_mm": tip_error,
        "zone_centre_to_target_mm": centre_error,
        "measured_tip_error_mm": (measured_tip - Vector3::from(pos.tip_lps_mm)).norm(),
        "registration_error_at_target_mm": reg_err,
        "achieved_margin_mm": achieved_margin,
        "planned_margin_mm": plan.margin_mm,
        "checkpoint_cts": wf.checkpoints(),
        "gate_open_fraction_during_insertion": if gate_samples > 0 { gate_open as f64 / gate_samples as f64 } else { 0.0 },
        "faults": final_snap.fault.map(|f| format!("{f:?}")),
        "wire_monitor_violations": monitor.violations,
        "log_records": stats.written,
        "seconds": t_start.elapsed().as_secs_f64(),
        "final_phase": format!("{:?}", wf.phase()),
    });
    if args.json {
        say!("{summary}");
    } else {
        say!("");
        say!("summary: tip {:.2} mm from the planned tip (zone centre {:.2} mm from the target), margin {:.1} mm (planned {:.1}), {} checkpoint CT(s), gate open {:.0} % of the insertion time, wire monitor {} violation(s), {:.1} s",
            tip_error, centre_error, achieved_margin, plan.margin_mm, wf.checkpoints(),
            100.0 * summary["gate_open_fraction_during_insertion"].as_f64().unwrap_or(0.0),
            monitor.violations, t_start.elapsed().as_secs_f64());
        say!("procedure log: {} ({} records; `stylet replay` reads it)", log_path.display(), stats.written);
    }
    Ok(ExitCode::SUCCESS)
}
