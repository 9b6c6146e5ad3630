//! `stylet igtl serve`: an OpenIGTLink server (docs/igtl.md) in front of the simulated robot:
//! 3D Slicer (or any peer) drives it with the BWH convention and watches the needle tip.
//!
//! Every motion goes through the supervisor on the simulated controller on a pty, like the demo;
//! insertion still needs the operator's enable input at the controller (INS-2: the simulated
//! pedal, held unless a fault releases it). The network can ask; it cannot bypass.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nalgebra::Vector3;
use serde_json::json;
use stylet_core::frame::{Ct, Point, Robot, Transform, Vector};
use stylet_igtl::bwh::{Action, Bwh, Phase};
use stylet_igtl::server::{self, ServerConfig};
use stylet_safety::{Command, MotionState, SafetyConfig};

use crate::bringup::{step, Session};

/// Options of `stylet igtl serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// TCP port (0: any free port, printed).
    #[arg(long, default_value_t = server::DEFAULT_PORT)]
    port: u16,
    /// Address to listen on; anything but loopback needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Allow listening on a non-loopback address (logged).
    #[arg(long)]
    allow_remote: bool,
    /// The config folder.
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// Stop when standard input closes (for test harnesses).
    #[arg(long)]
    stop_on_eof: bool,
    /// Print JSON lines (the listening address first, then one line per event).
    #[arg(long)]
    json: bool,
}

/// A move in progress and what its end completes.
struct Moving {
    goal: Vec<f64>,
    phase: Phase,
    deadline: Instant,
}

fn out(json: bool, event: &str, detail: serde_json::Value) {
    if json {
        say!("{}", json!({ "event": event, "detail": detail }));
    } else {
        say!("{event}: {detail}");
    }
}

pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // Before any thread starts: the real-time core, heavy work off it, memory locked.
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::Current)?;
    let addr = SocketAddr::new(args.bind, args.port);
    if !addr.ip().is_loopback() {
        anyhow::ensure!(args.allow_remote, "refusing to listen on {addr}: not loopback (pass --allow-remote)");
        eprintln!("warning: OpenIGTLink server listening on {addr}, reachable from other hosts");
    }
    let srv = server::start(&ServerConfig { addr, allow_remote: args.allow_remote, ..Default::default() })?;
    out(args.json, "listening", json!(srv.local_addr.to_string()));
    let stop = Arc::new(AtomicBool::new(false));
    // SIGTERM, SIGHUP or SIGINT ends it as the end of input does (crate::signals).
    crate::signals::EndRequest::watch_into(Arc::clone(&stop)).context("watching for SIGTERM, SIGHUP and SIGINT")?;
    if args.stop_on_eof {
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
            flag.store(true, Ordering::SeqCst);
        });
    }

    let cfg = SafetyConfig::load_dir(&args.config)?;
    let crate::kincmd::Chain { arm, ik: ik_opts, keepouts, .. } =
        crate::kincmd::ChainArgs::reference(&args.config).load()?;
    let ins = cfg.robot.insertion_joint().context("the robot has no insertion joint")?;
    let home = cfg.robot.home();
    let rig = Rig { args, rt: &rt, cfg, arm, ik_opts, keepouts, ins, home };
    let mut st = Served {
        session: None,
        image_from_robot: None,
        line: None,
        aligned_on: None,
        moving: None,
        last_stream: Instant::now(),
    };
    while !stop.load(Ordering::SeqCst) {
        if let Some((s, _)) = st.session.as_mut() {
            s.pump();
        }
        // Requests from the peers.
        while let Ok(req) = srv.requests.try_recv() {
            request(&rig, &mut st, &srv, req.action);
        }
        follow(&rig, &mut st, &srv)?;
        std::thread::sleep(Duration::from_millis(10));
    }
    let received = srv.stats.received.load(Ordering::Relaxed);
    let rejected = srv.stats.rejected.load(Ordering::Relaxed);
    srv.stop();
    let violations = match st.session {
        Some((s, sim)) => {
            let _ = s.h.shutdown();
            sim.stop()?.monitor.violations
        }
        None => 0,
    };
    out(
        args.json,
        "stopped",
        json!({ "received": received, "rejected": rejected, "wire_monitor_violations": violations }),
    );
    Ok(ExitCode::SUCCESS)
}

/// What `igtl serve` drives with, fixed for the run.
struct Rig<'a> {
    args: &'a ServeArgs,
    rt: &'a stylet_rt::Prepared,
    cfg: SafetyConfig,
    arm: stylet_kinematics::Arm,
    ik_opts: stylet_kinematics::ik::IkOptions,
    keepouts: stylet_kinematics::KeepOuts,
    ins: usize,
    home: Vec<f64>,
}

/// What the peers' requests have set up so far.
struct Served {
    session: Option<(Session, crate::simcmd::InProcessSim)>,
    image_from_robot: Option<Transform<Ct, Robot>>,
    /// Entry and target in the robot frame.
    line: Option<(Vector3<f64>, Vector3<f64>)>,
    aligned_on: Option<Vec<f64>>,
    moving: Option<Moving>,
    last_stream: Instant,
}

/// One request of the BWH convention: a phase entered, a registration, a target.
fn request(rig: &Rig<'_>, st: &mut Served, srv: &server::ServerHandle, action: Action) {
    match action {
        Action::Enter(Phase::StartUp) => {
            if st.session.is_none() {
                match start_robot(rig.rt, &rig.args.config, &rig.cfg, rig.args.json) {
                    Ok(x) => {
                        st.session = Some(x);
                        srv.completed(Phase::StartUp, true, "robot connected, drives enabled, at home");
                    }
                    Err(e) => srv.completed(Phase::StartUp, false, &format!("{e:#}")),
                }
            } else {
                srv.completed(Phase::StartUp, true, "already started");
            }
        }
        Action::Enter(p @ (Phase::Planning | Phase::Manual)) => srv.completed(p, true, "ok"),
        Action::Enter(Phase::Calibration) => {
            if st.image_from_robot.is_some() {
                srv.completed(Phase::Calibration, true, "registration set");
            }
        }
        Action::Enter(Phase::Targeting) => {
            if st.aligned_on.is_some() {
                srv.completed(Phase::Targeting, true, "aligned on the target line");
            }
        }
        Action::Enter(Phase::MoveToTarget) => {
            let Some((s, _)) = st.session.as_mut() else {
                srv.completed(Phase::MoveToTarget, false, "not started (START_UP first)");
                return;
            };
            let (Some(q), Some((entry, target))) = (st.aligned_on.clone(), st.line) else {
                srv.completed(Phase::MoveToTarget, false, "not aligned on a target yet");
                return;
            };
            let mut goal = q;
            goal[rig.ins] = rig.ik_opts.standoff_mm + (target - entry).norm();
            s.fraction = 0.9;
            match s.command(Command::BeginInsert).and_then(|()| s.start_move(&goal)) {
                Ok(secs) => {
                    st.moving = Some(Moving {
                        goal,
                        phase: Phase::MoveToTarget,
                        deadline: Instant::now() + Duration::from_secs_f64(3.0 * secs + 5.0),
                    });
                    out(rig.args.json, "inserting", json!({ "depth_mm": (target - entry).norm() }));
                }
                Err(e) => srv.completed(Phase::MoveToTarget, false, &e.to_string()),
            }
        }
        Action::Enter(Phase::Stop) => {
            if let Some((s, _)) = st.session.as_mut() {
                let _ = s.h.send(stylet_safety::runner::Operator::Abort);
                let _ = s.command(Command::Hold);
            }
            st.moving = None;
            srv.completed(Phase::Stop, true, "controlled stop");
        }
        Action::Enter(Phase::Emergency) => {
            if let Some((s, _)) = st.session.as_mut() {
                let _ = s.h.send(stylet_safety::runner::Operator::EStop);
                s.pump();
            }
            st.moving = None;
            srv.completed(Phase::Emergency, true, "e-stop latched: drives off, brakes on; reset at the console");
            out(rig.args.json, "emergency", json!(null));
        }
        Action::Registration(t) => {
            // Checked rigid by the convention (a non-rigid CLB_ never gets here).
            st.image_from_robot = Some(t);
            srv.completed(Phase::Calibration, true, "registration set");
            out(rig.args.json, "registration", json!(t.to_nalgebra().to_homogeneous().as_slice()));
        }
        Action::Target { entry, target } => {
            let (Some(ifr), Some((s, _))) = (st.image_from_robot, st.session.as_mut()) else {
                srv.completed(Phase::Targeting, false, "START_UP and CALIBRATION first");
                return;
            };
            let robot_from_image = ifr.inverse();
            let to_robot = |p: Point<Ct>| (robot_from_image * p).to_nalgebra().coords;
            // Without an entry (a TGT_ transform): straight in from 60 mm anterior (LPS -y).
            let e = to_robot(entry.unwrap_or_else(|| target + Vector::new(0.0, -60.0, 0.0)));
            let t = to_robot(target);
            match align(s, &rig.arm, &rig.keepouts, &rig.ik_opts, (e, t), rig.ins, rig.home[rig.ins]) {
                Ok((q, secs)) => {
                    st.line = Some((e, t));
                    st.aligned_on = None;
                    st.moving = Some(Moving {
                        goal: q,
                        phase: Phase::Targeting,
                        deadline: Instant::now() + Duration::from_secs_f64(3.0 * secs + 5.0),
                    });
                    out(
                        rig.args.json,
                        "aligning",
                        json!({ "entry_robot_mm": e.as_slice(), "target_robot_mm": t.as_slice() }),
                    );
                }
                Err(e) => srv.completed(Phase::Targeting, false, &format!("{e:#}")),
            }
        }
        Action::Received(_) => {}
    }
}

/// A move in progress: stream the tip; complete when there and still.
fn follow(rig: &Rig<'_>, st: &mut Served, srv: &server::ServerHandle) -> anyhow::Result<()> {
    if let (Some(m), Some((s, _))) = (st.moving.as_ref(), st.session.as_mut()) {
        let snap = s.snapshot().map_err(|e| anyhow::anyhow!("{e}"))?;
        let there =
            snap.commanded.as_slice() == m.goal.as_slice() && snap.velocity.as_slice().iter().all(|v| *v == 0.0);
        // The tip streams at 10 Hz during the move, and once more where it stopped.
        if there || st.last_stream.elapsed() >= Duration::from_millis(100) {
            st.last_stream = Instant::now();
            let tip = rig.arm.tip_pose(snap.measured.as_slice());
            srv.broadcast(Bwh::current_position(st.image_from_robot.unwrap_or_else(Transform::identity) * tip));
        }
        if snap.fault.is_some() || snap.state == MotionState::EStop {
            srv.completed(m.phase, false, &format!("stopped: {:?}", snap.fault));
            st.moving = None;
        } else if there {
            let _ = s.command(Command::Complete);
            if m.phase == Phase::Targeting {
                st.aligned_on = Some(m.goal.clone());
                srv.completed(Phase::Targeting, true, "aligned on the target line, needle outside");
                out(rig.args.json, "aligned", json!(snap.measured.as_slice()));
            } else {
                srv.completed(m.phase, true, "at the target");
                out(rig.args.json, "at_target", json!(snap.measured.as_slice()));
            }
            st.moving = None;
        } else if Instant::now() > m.deadline {
            srv.completed(m.phase, false, &format!("did not finish ({})", snap.state.name()));
            st.moving = None;
        }
    }
    Ok(())
}

/// Starts the simulated controller and the supervisor, enables and homes (needle first).
fn start_robot(
    rt: &stylet_rt::Prepared,
    config: &std::path::Path,
    cfg: &SafetyConfig,
    json: bool,
) -> anyhow::Result<(Session, crate::simcmd::InProcessSim)> {
    let crate::realtime::ControlLoop { h, sim, mute, scheduling, .. } =
        crate::realtime::start(rt, config, cfg, None, &[])?;
    let sim = sim.context("the simulated controller")?;
    out(json, "realtime", scheduling.json());
    let mut s = Session {
        h,
        cfg: cfg.clone(),
        mute,
        log: Vec::new(),
        started: Instant::now(),
        fraction: 0.8,
        gate: None,
        observer: None,
        on_move: None,
        // `igtl serve` watches the signals in its own loop.
        end: None,
    };
    s.enable_and_home()?;
    Ok((s, sim))
}

/// IK for the line, then starts an alignment move with the needle retracted; the joint goal
/// and the move's duration (the caller polls, so an EMERGENCY is never kept waiting).
fn align(
    s: &mut Session,
    arm: &stylet_kinematics::Arm,
    keepouts: &stylet_kinematics::KeepOuts,
    ik_opts: &stylet_kinematics::ik::IkOptions,
    (entry, target): (Vector3<f64>, Vector3<f64>),
    ins: usize,
    retracted: f64,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let seed = step(s.snapshot())?.commanded.as_slice().to_vec();
    let sol = stylet_kinematics::ik::solve_first(
        arm,
        &stylet_kinematics::NeedleLine {
            entry: Point::<Robot>::from_coords(entry),
            target: Point::from_coords(target),
        },
        &seed,
        keepouts,
        ik_opts,
    )
    .map_err(|e| anyhow::anyhow!("no arm configuration reaches that line: {e}"))?;
    let mut q = sol.joints.clone();
    q[ins] = retracted;
    let state = step(s.snapshot())?.state;
    if state != MotionState::Idle && state != MotionState::Aligned {
        anyhow::bail!("the arm is {} (not idle): cannot align", state.name());
    }
    step(s.command(Command::BeginAlign))?;
    let secs = step(s.start_move(&q))?;
    Ok((q, secs))
}
