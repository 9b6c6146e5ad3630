//! Virtual time: the supervisor and the simulated controller in one loop on one mock clock (no
//! pty, no thread, no sleep). A bring-up-like sequence runs to the same result twice, bit for
//! bit; an injected disconnect latches HAZ-8 at exactly its deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stylet_core::Nanos;
use stylet_protocol::Status;
use stylet_safety::trajectory::{hard_ranges, Trajectory};
use stylet_safety::{Command, Fault, MotionState, SafetyConfig, Supervisor};
use stylet_sim::lockstep::{controller_for, Lockstep};
use stylet_sim::{FaultSpec, SimConfig};

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn world(faults: &[&str]) -> (Lockstep, SafetyConfig) {
    let safety = SafetyConfig::load_dir(&config()).unwrap();
    let mut sim = SimConfig::load(&config().join("sim.toml")).unwrap();
    sim.faults.extend(faults.iter().map(|f| FaultSpec::parse(f).unwrap()));
    let w = Lockstep::new(Supervisor::new(safety.clone()).unwrap(), controller_for(&safety, sim)).unwrap();
    (w, safety)
}

const SECOND: Nanos = Nanos(1_000_000_000);

fn enable(w: &mut Lockstep) {
    assert!(w.run_until(SECOND, true, |w| w.snapshot().state == MotionState::Connected));
    w.command(Command::StartHoming).unwrap();
    assert!(w.run_until(SECOND, true, |w| w.snapshot().status.has(Status::DRIVES_ENABLED)), "{:?}", w.snapshot());
}

fn move_to(w: &mut Lockstep, cfg: &SafetyConfig, goal: &[f64]) {
    let from = w.snapshot().commanded.as_slice().to_vec();
    let t = Trajectory::point_to_point(&cfg.robot, &from, goal, &hard_ranges(&cfg.robot), 0.8, cfg.dt()).unwrap();
    assert!(w.follow(t, Nanos(30 * SECOND.0)), "move did not finish: {:?}", w.snapshot());
    assert!(w.run_until(SECOND, true, |w| w.snapshot().velocity.as_slice().iter().all(|v| *v == 0.0)));
}

/// Enable, home, joint 0 out by 2 degrees and back; the run's events and the arm's true joints.
fn bring_up() -> (Vec<String>, Vec<f64>, stylet_sim::MonitorReport, Nanos) {
    let (mut w, cfg) = world(&[]);
    enable(&mut w);
    let home = cfg.robot.home();
    // The needle home first, on its own (INS-1), then the arm.
    let ins = cfg.robot.insertion_joint().unwrap();
    let mut needle_home = w.snapshot().commanded.as_slice().to_vec();
    needle_home[ins] = home[ins];
    move_to(&mut w, &cfg, &needle_home);
    move_to(&mut w, &cfg, &home);
    w.command(Command::Complete).unwrap();
    let mut out = home.clone();
    out[0] += 2f64.to_radians();
    w.command(Command::BeginAlign).unwrap();
    move_to(&mut w, &cfg, &out);
    move_to(&mut w, &cfg, &home);
    w.command(Command::Complete).unwrap();
    w.run_until(Nanos(100_000_000), true, |_| false);
    let snap = w.snapshot();
    assert_eq!(snap.fault, None);
    // The Enable's Ack took a sequence number between two states: no gap, no link error.
    assert_eq!(snap.link_errors_total, 0, "{snap:?}");
    assert_eq!(snap.state, MotionState::Aligned, "{snap:?}");
    let measured = snap.measured.as_slice()[0];
    assert!((measured - home[0]).abs() < 1e-3, "joint 0 at {measured}, home {}", home[0]);
    let now = w.now();
    let events = w.events.iter().map(|e| format!("{e:?}")).collect();
    let truth = w.controller().controller().positions();
    let (_, monitor) = w.finish();
    (events, truth, monitor, now)
}

#[test]
fn a_bring_up_in_virtual_time_is_the_same_run_twice() {
    let t0 = std::time::Instant::now();
    let (events, truth, monitor, virtual_time) = bring_up();
    let wall = t0.elapsed();
    assert_eq!(monitor.violations, 0, "{monitor:?}");
    assert!(monitor.setpoints > 1000, "{monitor:?}");
    assert!(events.iter().any(|e| e.contains("TrajectoryDone")), "{events:?}");
    let (events2, truth2, monitor2, _) = bring_up();
    assert_eq!(events, events2);
    assert_eq!(
        truth.iter().map(|q| q.to_bits()).collect::<Vec<_>>(),
        truth2.iter().map(|q| q.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(monitor.setpoints, monitor2.setpoints);
    eprintln!("{:.1} s of virtual time in {:.2} s", virtual_time.as_secs_f64(), wall.as_secs_f64());
}

#[test]
fn a_disconnect_latches_stale_state_at_its_deadline_in_virtual_time() {
    let (mut w, cfg) = world(&["disconnect@0.3"]);
    enable(&mut w);
    assert!(w.run_until(Nanos(2 * SECOND.0), true, |w| w.snapshot().fault.is_some()));
    let Some(Fault::StaleControllerState { age_ms, deadline_ms }) = w.snapshot().fault else {
        panic!("{:?}", w.snapshot().fault)
    };
    let deadline = cfg.controller_state_deadline.as_secs_f64() * 1e3;
    assert_eq!(deadline_ms, deadline);
    // Latched in the first cycle past the deadline: the states came every millisecond before.
    assert!(age_ms > deadline && age_ms <= deadline + 1.0 + 1e-9, "age {age_ms} ms, deadline {deadline} ms");
    let (_, monitor) = w.finish();
    assert_eq!(monitor.violations, 0);
}
