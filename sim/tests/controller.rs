//! The simulated controller model and its wire monitor, stepped with explicit times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stylet_core::config::RobotConfig;
use stylet_protocol::{JointArray, JointSetpoint, Message, NackReason, Setpoint, Status};
use stylet_sim::{Controller, FaultSpec, SimConfig, WireMonitor};

fn repo_config() -> (SimConfig, RobotConfig) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    (SimConfig::load(&dir.join("sim.toml")).unwrap(), RobotConfig::load(&dir.join("robot/robot.toml")).unwrap())
}

fn monitor(robot: &RobotConfig) -> WireMonitor {
    WireMonitor::new(robot, 2.0, 180.0)
}

fn setpoint(t_us: u64, q: &[f64]) -> Setpoint {
    Setpoint {
        host_time_us: t_us,
        joints: JointArray::from_fn(q.len(), |i| JointSetpoint { position: q[i], velocity: 0.0 }).unwrap(),
    }
}

fn state_of(out: &[Message]) -> Option<stylet_protocol::ControllerState> {
    out.iter().rev().find_map(|m| if let Message::State(s) = m { Some(*s) } else { None })
}

#[test]
fn monitor_counts_every_kind_of_violation() {
    let (_, robot) = repo_config();
    let home = robot.home();
    let mut m = monitor(&robot);
    assert!(m.check(&setpoint(1000, &home)));
    // Hard limit.
    let mut q = home.clone();
    q[0] = robot.joints[0].max + 0.01;
    assert!(!m.check(&setpoint(2000, &q)));
    m.break_continuity();
    // Velocity: a step of 0.01 rad in 1 ms is 10 rad/s.
    assert!(m.check(&setpoint(3000, &home)));
    let mut q = home.clone();
    q[1] += 0.01;
    assert!(!m.check(&setpoint(4000, &q)));
    m.break_continuity();
    // INS-1: orientation and insertion together.
    assert!(m.check(&setpoint(5000, &home)));
    let mut q = home.clone();
    q[0] += 1e-5;
    q[6] += 1e-4;
    assert!(!m.check(&setpoint(6000, &q)));
    // PATH-6: beyond the depth limit.
    m.break_continuity();
    let mut q = home.clone();
    q[6] = 181.0;
    assert!(!m.check(&setpoint(7000, &q)));
    let r = m.report();
    assert_eq!(r.violations, 4, "{r:?}");
    for k in ["position", "velocity", "ins1_together", "depth"] {
        assert!(r.by_kind.contains_key(k), "{k} missing from {r:?}");
    }
}

#[test]
fn monitor_accepts_a_smooth_move_and_flags_an_acceleration_step() {
    let (_, robot) = repo_config();
    let mut q = robot.home();
    let mut m = monitor(&robot);
    let mut t = 0;
    let mut v = 0.0;
    for _ in 0..200 {
        v += 0.5 * 0.001; // 0.5 rad/s^2, under the 1.05 rad/s^2 limit
        q[0] += v * 0.001;
        t += 1000;
        assert!(m.check(&setpoint(t, &q)), "{:?}", m.report());
    }
    // Jump to 0.4 rad/s in one cycle: 300 rad/s^2.
    q[0] += 0.4 * 0.001;
    t += 1000;
    assert!(!m.check(&setpoint(t, &q)));
    assert!(m.report().by_kind.contains_key("acceleration"));
}

#[test]
fn watchdog_trips_when_the_host_goes_silent_and_latches_until_reset() {
    let (cfg, robot) = repo_config();
    let m = monitor(&robot);
    let mut c = Controller::new(cfg, robot.clone(), m);
    c.handle(0.0, 1, &Message::Hello { protocol_version: 1, host_id: 1 });
    c.handle(0.001, 2, &Message::Enable { watchdog_ms: 20 });
    assert!(c.drives());
    let mut t = 0.001;
    for k in 0..10 {
        t += 0.001;
        c.handle(t, 3 + k, &Message::Heartbeat { host_time_us: 0 });
        c.step(t);
    }
    assert!(c.drives(), "fed watchdog holds");
    let out = c.step(t + 0.019);
    assert!(c.drives(), "not before the window: {out:?}");
    let out = c.step(t + 0.021);
    assert!(!c.drives());
    let s = state_of(&out).or_else(|| state_of(&c.step(t + 0.03))).unwrap();
    assert!(s.status.has(Status::WATCHDOG_TRIPPED) && s.status.has(Status::BRAKE_ENGAGED));
    let out = c.handle(t + 0.04, 50, &Message::Enable { watchdog_ms: 20 });
    assert!(matches!(out[0], Message::Nack { reason: NackReason::WatchdogTripped, .. }), "{out:?}");
    c.handle(t + 0.05, 51, &Message::ResetFaults);
    let out = c.handle(t + 0.06, 52, &Message::Enable { watchdog_ms: 20 });
    assert!(matches!(out[0], Message::Ack { .. }), "{out:?}");
}

#[test]
fn servo_follows_a_setpoint_and_the_encoder_quantises() {
    let (cfg, robot) = repo_config();
    let counts_per_mm = cfg.counts_per_mm;
    let mut c = Controller::new(cfg, robot.clone(), monitor(&robot));
    c.handle(0.0, 1, &Message::Hello { protocol_version: 1, host_id: 1 });
    c.handle(0.0, 2, &Message::Enable { watchdog_ms: 1000 });
    let mut q = robot.home();
    q[6] = 0.5;
    c.handle(0.001, 3, &Message::Setpoint(setpoint(1000, &q)));
    let mut last = None;
    for k in 2..500 {
        let t = k as f64 * 0.001;
        c.handle(t, 3, &Message::Heartbeat { host_time_us: 0 });
        if let Some(s) = state_of(&c.step(t)) {
            last = Some(s);
        }
    }
    let s = last.unwrap();
    let p = s.joints.as_slice()[6].position;
    assert!((p - 0.5).abs() < 3.0 / counts_per_mm, "needle at {p}");
    assert!(((p * counts_per_mm).round() - p * counts_per_mm).abs() < 1e-6, "quantised to counts");
}

#[test]
fn estop_refuses_enable_until_released_and_reset() {
    let (mut cfg, robot) = repo_config();
    cfg.faults = vec![FaultSpec::parse("estop@0.01").unwrap(), FaultSpec::parse("estop-release@0.05").unwrap()];
    let mut c = Controller::new(cfg, robot.clone(), monitor(&robot));
    c.handle(0.0, 1, &Message::Hello { protocol_version: 1, host_id: 1 });
    c.handle(0.0, 2, &Message::Enable { watchdog_ms: 1000 });
    c.step(0.02);
    assert!(!c.drives());
    let out = c.handle(0.03, 3, &Message::Enable { watchdog_ms: 1000 });
    assert!(matches!(out[0], Message::Nack { reason: NackReason::EStopActive, .. }));
    let out = c.handle(0.03, 4, &Message::ResetFaults);
    assert!(matches!(out[0], Message::Nack { reason: NackReason::EStopActive, .. }), "reset refused while pressed");
    c.step(0.06);
    c.handle(0.07, 5, &Message::ResetFaults);
    let out = c.handle(0.08, 6, &Message::Enable { watchdog_ms: 1000 });
    assert!(matches!(out[0], Message::Ack { .. }), "{out:?}");
}

#[test]
fn a_frozen_simulator_does_not_blame_the_host_but_a_silent_host_still_trips_the_watchdog() {
    let (cfg, robot) = repo_config();
    let home = robot.home();
    let mut c = Controller::new(cfg, robot.clone(), monitor(&robot));
    let _ = c.handle(0.0, 1, &Message::Hello { protocol_version: stylet_protocol::PROTOCOL_VERSION, host_id: 1 });
    let _ = c.handle(0.001, 2, &Message::Enable { watchdog_ms: 20 });
    let _ = c.handle(0.002, 3, &Message::Setpoint(setpoint(2_000, &home)));
    assert!(c.drives());
    // The simulator was not scheduled for 500 ms: on resuming, the host is not at fault.
    c.frozen(0.5);
    let _ = c.step(0.51);
    assert!(c.drives(), "the watchdog counted the simulator's own freeze");
    // A host that then stays silent trips it, 20 ms on.
    let _ = c.step(0.53);
    assert!(!c.drives(), "a silent host must trip the watchdog");
}

#[test]
fn a_host_slow_to_read_gets_every_frame_whole_and_in_order_over_a_real_pty() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use stylet_protocol::{encode_frame, FrameDecoder, MAX_FRAME, PROTOCOL_VERSION};

    let (cfg, robot) = repo_config();
    let mut c = Controller::new(cfg, robot.clone(), monitor(&robot));
    let mut pty = stylet_sim::pty::Pty::open().unwrap();
    let mut host = serialport::new(&pty.path, 1_000_000).timeout(Duration::from_millis(20)).open_native().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let server = std::thread::spawn(move || stylet_sim::pty::serve(&mut pty, &mut c, &flag));
    let mut buf = [0u8; MAX_FRAME];
    let n = encode_frame(1, &Message::Hello { protocol_version: PROTOCOL_VERSION, host_id: 1 }, &mut buf).unwrap();
    host.write_all(&buf[..n]).unwrap();
    // The host does not read for long enough to fill the pty (states at 1 kHz), then reads on.
    std::thread::sleep(Duration::from_millis(2500));
    let (mut decoder, mut seqs, mut bad) = (FrameDecoder::new(), Vec::new(), 0);
    let mut rbuf = [0u8; 4096];
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Ok(n) = host.read(&mut rbuf) {
            decoder.feed(&rbuf[..n], |r| match r {
                Ok(f) => seqs.push(f.seq),
                Err(_) => bad += 1,
            });
        }
    }
    stop.store(true, Ordering::SeqCst);
    let line = server.join().unwrap();
    assert!(line.write_stalls > 0, "the pty never filled: {line:?}");
    assert_eq!(bad, 0, "no frame cut short or corrupted ({line:?})");
    assert!(seqs.len() > 1000, "{} frames", seqs.len());
    // Frames are lost only whole, and only those the controller counted as dropped.
    let lost: u64 = seqs.windows(2).map(|w| u64::from(w[1].wrapping_sub(w[0]).wrapping_sub(1))).sum();
    assert!(lost <= line.frames_dropped, "{lost} frames missing, {} dropped", line.frames_dropped);
}
