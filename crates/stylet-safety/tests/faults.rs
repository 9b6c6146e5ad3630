//! Every fault class, injected deterministically: detected, the stated reaction within its bound,
//! latched, and reset only once the cause has cleared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Harness;
use stylet_core::Nanos;
use stylet_protocol::{ControllerInfo, FaultCode, FaultReport, JointSetpoint, Message};
use stylet_safety::trajectory::{hard_ranges, Trajectory};
use stylet_safety::SoftRange;
use stylet_safety::{Actuator, ActuatorInput, Command, Fault, MotionState, Refusal, Supervisor};

fn req(h: &Harness, f: impl Fn(usize, f64) -> f64) -> Vec<JointSetpoint> {
    h.sup.commanded().iter().enumerate().map(|(i, q)| JointSetpoint { position: f(i, *q), velocity: 0.0 }).collect()
}

/// Resets after the cause is gone and checks the supervisor lands in `to`.
fn reset_ok(h: &mut Harness, to: MotionState) {
    h.tick(None);
    let r = h.sup.command(h.now, Command::Reset);
    assert!(r.is_ok(), "reset refused: {r:?}");
    h.ticks(5);
    assert_eq!(h.sup.fault(), None);
    assert_eq!(h.sup.state(), to);
}

#[test]
fn homing_alignment_insertion_retraction_happy_path() {
    let mut h = Harness::new();
    h.to_inserted(20.0);
    h.ticks(3);
    h.sup.command(h.now, Command::Complete).unwrap();
    assert_eq!(h.sup.state(), MotionState::AtTarget);
    h.sup.command(h.now, Command::BeginRetract).unwrap();
    let ins = h.ins();
    let t = h.trajectory(&[(ins, -20.0)], 0.5);
    h.run(&t);
    h.sup.command(h.now, Command::Complete).unwrap();
    assert_eq!(h.sup.state(), MotionState::Idle);
    h.sup.command(h.now, Command::DisableDrives).unwrap();
    h.tick(None);
    assert!(!h.fake.drives);
    assert_eq!(h.sup.state(), MotionState::Connected);
}

#[test]
fn position_beyond_soft_stop_is_a_controlled_stop() {
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    // Walk joint 0 towards its upper limit slowly enough for every rate limit; the soft stop or
    // the braking condition must catch it before the hard limit.
    let jmax = h.cfg.robot.joints[0].max;
    // A smooth move aimed past the hard limit (the planner is told to allow it).
    let from = h.sup.commanded().to_vec();
    let mut to = from.clone();
    to[0] = jmax + 0.1;
    // Up to 1 (rad or mm) beyond the hard stops: the supervisor must refuse the goal.
    let beyond: Vec<SoftRange> =
        hard_ranges(&h.cfg.robot).into_iter().map(|r| SoftRange { lo: r.lo - 1.0, hi: r.hi + 1.0, ..r }).collect();
    let t = Trajectory::point_to_point(&h.cfg.robot, &from, &to, &beyond, 0.5, h.cfg.dt()).unwrap();
    for k in 0..t.len() {
        h.tick(t.sample(k));
        assert!(h.sup.commanded()[0] <= jmax);
        if h.sup.fault().is_some() {
            break;
        }
    }
    h.assert_controlled_stop(|f| {
        matches!(f, Fault::SoftStopApproach { joint: 0, .. } | Fault::PositionLimit { joint: 0, .. })
    });
    reset_ok(&mut h, MotionState::Idle);
}

#[test]
fn velocity_acceleration_and_jerk_limits_are_controlled_stops() {
    // A step: velocity.
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    let r = req(&h, |i, q| if i == 1 { q + 0.01 } else { q });
    h.tick(Some(&r));
    h.assert_controlled_stop(|f| matches!(f, Fault::VelocityLimit { joint: 1, .. }));
    reset_ok(&mut h, MotionState::Idle);

    // A velocity under the limit reached in one cycle: acceleration.
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    let vmax = h.cfg.robot.joints[2].max_velocity;
    let r = req(&h, |i, q| if i == 2 { q + 0.5 * vmax * h.cfg.dt() } else { q });
    h.tick(Some(&r));
    h.assert_controlled_stop(|f| matches!(f, Fault::AccelerationLimit { joint: 2, .. }));

    // An acceleration under the limit reached in one cycle: jerk.
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    let amax = h.cfg.robot.joints[3].max_acceleration;
    let dt = h.cfg.dt();
    let r = req(&h, |i, q| if i == 3 { q + 0.5 * amax * dt * dt } else { q });
    h.tick(Some(&r));
    h.assert_controlled_stop(|f| matches!(f, Fault::JerkLimit { joint: 3, .. }));
}

#[test]
fn following_error_from_a_stuck_joint_is_a_brake_hold() {
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    h.fake.stuck[0] = true;
    let t = h.trajectory(&[(0, 0.3)], 0.8);
    h.run(&t);
    h.assert_brake_hold(|f| matches!(f, Fault::FollowingError { joint: 0, .. }));
    // The joint is still stuck where it was: the measured error is gone once drives are off and
    // commanded = measured after reset.
    h.fake.stuck[0] = false;
    reset_ok(&mut h, MotionState::Connected);
}

#[test]
fn over_current_latches_after_the_configured_count() {
    let mut h = Harness::new();
    h.to_idle();
    let limit = h.cfg.robot.joints[4].max_current_a as f32;
    h.fake.currents[4] = limit + 1.0;
    let n = h.cfg.overcurrent_states as usize;
    h.ticks(n - 1);
    assert_eq!(h.sup.fault(), None, "not before {n} consecutive states");
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::OverCurrent { joint: 4, .. }));
    // Reset is refused... no: the current falls with the drives off; clear it and reset.
    h.fake.currents[4] = 0.0;
    reset_ok(&mut h, MotionState::Connected);
}

#[test]
fn encoder_jump_is_a_brake_hold() {
    let mut h = Harness::new();
    h.to_idle();
    h.fake.stuck[5] = true;
    h.fake.positions[5] += 0.2;
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::EncoderJump { joint: 5, .. }));
}

#[test]
fn stale_controller_state_is_a_brake_hold_within_its_deadline() {
    let mut h = Harness::new();
    h.to_idle();
    h.fake.reporting = false;
    let deadline_cycles = (h.cfg.controller_state_deadline.0 / h.cfg.period.0) as usize;
    let mut detected_after = None;
    for k in 1..=deadline_cycles + 2 {
        h.tick(None);
        if h.sup.fault().is_some() {
            detected_after = Some(k);
            break;
        }
    }
    let k = detected_after.expect("detected");
    assert!(k <= deadline_cycles + 1, "detected after {k} cycles, deadline {deadline_cycles}");
    h.assert_brake_hold(|f| matches!(f, Fault::StaleControllerState { .. }));
    let r = h.sup.command(h.now, Command::Reset);
    assert_eq!(r, Err(Refusal::ControllerStale), "reset must wait for the controller");
    h.fake.reporting = true;
    reset_ok(&mut h, MotionState::Connected);
}

#[test]
fn stale_operator_heartbeat_is_a_controlled_stop() {
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    let t = h.trajectory(&[(0, 0.3)], 0.8);
    h.heartbeats = false;
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::StaleOperator { .. }));
    assert_eq!(h.sup.command(h.now, Command::Reset), Err(Refusal::OperatorStale));
    h.heartbeats = true;
    reset_ok(&mut h, MotionState::Idle);
}

#[test]
fn stale_gate_during_insertion_is_a_controlled_stop() {
    let mut h = Harness::new();
    h.to_inserted(5.0);
    let ins = h.ins();
    let t = h.trajectory(&[(ins, 10.0)], 0.8);
    h.gate_open = None;
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::StaleGate { .. }));
    h.gate_open = Some(true);
    // The needle is in tissue: reset lands in Holding, never Idle (INS-1).
    reset_ok(&mut h, MotionState::Holding);
}

#[test]
fn motion_stream_stalling_mid_move_is_a_controlled_stop() {
    let mut h = Harness::new();
    h.stall_mid_move();
    h.assert_controlled_stop(|f| matches!(f, Fault::StaleMotion));
}

#[test]
fn link_errors_and_sequence_gaps_are_brake_holds() {
    let mut h = Harness::new();
    h.to_idle();
    for _ in 0..h.cfg.link_max_errors {
        h.fake.inputs.push_back(ActuatorInput::LinkError);
    }
    h.tick(None);
    assert_eq!(h.sup.fault(), None, "errors up to the limit are tolerated");
    h.fake.inputs.push_back(ActuatorInput::LinkError);
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::LinkErrors { .. }));
    reset_ok(&mut h, MotionState::Connected);

    let mut h = Harness::new();
    h.to_idle();
    let mut s = None;
    h.fake.poll(&mut |i| s = Some(i));
    let Some(ActuatorInput::State { seq, state }) = s else { panic!("state expected") };
    h.fake.inputs.push_back(ActuatorInput::State { seq: seq.wrapping_add(100), state });
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::SequenceGap { .. }));
}

#[test]
fn acks_and_nacks_between_two_states_are_no_sequence_gap() {
    // The controller numbers every frame it sends in one sequence: an Ack or a Nack between two
    // states takes a number, and the states' numbers skip it without a frame being lost.
    let mut h = Harness::new();
    h.to_idle();
    let mut s = None;
    h.fake.poll(&mut |i| s = Some(i));
    let Some(ActuatorInput::State { seq, state }) = s else { panic!("state expected") };
    let before = h.sup.snapshot().link_errors_total;
    // Only the states below arrive (the fake numbers its own without acks).
    h.fake.reporting = false;
    // The state taken from the fake above had not reached the supervisor: it comes now.
    h.fake.inputs.push_back(ActuatorInput::State { seq, state });
    h.fake.inputs.push_back(ActuatorInput::Ack { msg_type: 0x02 });
    h.fake.inputs.push_back(ActuatorInput::State { seq: seq.wrapping_add(2), state });
    h.tick(None);
    assert_eq!(h.sup.snapshot().link_errors_total, before, "an ack is not a lost frame");
    // A frame really lost between them still counts.
    h.fake.inputs.push_back(ActuatorInput::Ack { msg_type: 0x02 });
    h.fake.inputs.push_back(ActuatorInput::State { seq: seq.wrapping_add(5), state });
    h.tick(None);
    assert_eq!(h.sup.snapshot().link_errors_total, before + 1, "one frame lost");
    assert_eq!(h.sup.fault(), None);
}

#[test]
fn controller_faults_watchdog_and_dropped_drives_are_brake_holds() {
    let mut h = Harness::new();
    h.to_idle();
    h.fake.report_fault(FaultReport { code: FaultCode::OverCurrent, joint: 2, value: 9.0 });
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::ControllerFault { code: FaultCode::OverCurrent, joint: 2, .. }));

    let mut h = Harness::new();
    h.to_idle();
    h.fake.watchdog_tripped = true;
    h.fake.drives = false;
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::ControllerWatchdog));
    // The watchdog latch clears only through ResetFaults: reset asks the controller, then lands.
    h.tick(None);
    h.sup.command(h.now, Command::Reset).unwrap();
    h.ticks(3);
    assert!(h.fake.sent.iter().any(|c| matches!(c.message(), Message::ResetFaults)));
    assert!(!h.fake.watchdog_tripped);
    assert_eq!(h.sup.state(), MotionState::Connected);

    let mut h = Harness::new();
    h.to_idle();
    h.fake.drives = false;
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::DrivesDropped));
}

#[test]
fn controller_reset_is_detected_from_its_clock_and_a_second_hello() {
    let mut h = Harness::new();
    h.to_idle();
    h.fake.controller_time_us = 0;
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::ControllerReset));

    let mut h = Harness::new();
    h.to_idle();
    h.fake.inputs.push_back(ActuatorInput::Connected(ControllerInfo {
        protocol_version: 1,
        controller_id: 1,
        joint_count: 7,
        firmware: [0, 1, 0],
    }));
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::ControllerReset));
}

#[test]
fn joint_count_mismatch_is_refused_at_the_handshake() {
    let mut h = Harness::new();
    h.fake = stylet_safety::fake::FakeActuator::new(vec![0.0; 6]);
    h.ticks(2);
    assert!(matches!(h.sup.fault(), Some(Fault::JointCountMismatch { controller: 6, config: 7 })));
    assert_eq!(
        h.sup.command(h.now, Command::StartHoming),
        Err(Refusal::NotInState { command: Command::StartHoming, state: MotionState::Fault })
    );
}

#[test]
fn insertion_depth_limit_is_a_controlled_stop() {
    let mut h = Harness::new();
    h.to_inserted(h.cfg.max_depth_mm - 1.0);
    let ins = h.ins();
    let t = h.trajectory(&[(ins, 5.0)], 0.8);
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::InsertionDepth { .. }));
    assert!(h.sup.commanded()[ins] <= h.cfg.max_depth_mm + 1e-9);
}

#[test]
fn the_generator_plans_within_the_ranges_the_supervisor_enforces_path6_and_soft_stops() {
    // One derivation (SafetyConfig::soft_ranges): a needle goal past PATH-6's depth but inside the
    // joint's own soft stop is refused by the generator, naming the joint, as the supervisor would.
    let mut h = Harness::new();
    let ins = h.ins();
    let ranges = h.cfg.soft_ranges();
    assert!(ranges[ins].depth_bound && (ranges[ins].hi - h.cfg.max_depth_mm).abs() < 1e-12);
    assert!(h.cfg.max_depth_mm + 5.0 < h.cfg.robot.joints[ins].max - h.cfg.soft_margin_mm, "PATH-6 is the tighter");
    h.to_inserted(h.cfg.max_depth_mm - 5.0);
    let from = h.sup.commanded().to_vec();
    let mut past = from.clone();
    past[ins] = h.cfg.max_depth_mm + 1.0;
    let e = Trajectory::within(&h.cfg, &from, &past, 0.5).unwrap_err().to_string();
    assert!(e.contains(&h.cfg.robot.joints[ins].name), "{e}");
    // Exactly at the depth limit: planned, and the supervisor admits every sample.
    let mut at = from.clone();
    at[ins] = h.cfg.max_depth_mm;
    let t = Trajectory::within(&h.cfg, &from, &at, 0.5).unwrap();
    h.run(&t);
    assert_eq!(h.sup.fault(), None);
    assert!((h.sup.commanded()[ins] - h.cfg.max_depth_mm).abs() < 1e-9);
    // The soft stops of every other joint: the generator's bound is the supervisor's.
    for (i, j) in h.cfg.robot.joints.iter().enumerate().filter(|(i, _)| *i != ins) {
        let margin = h.cfg.soft_margin(j.kind);
        assert!((ranges[i].lo - (j.min + margin)).abs() < 1e-12 && (ranges[i].hi - (j.max - margin)).abs() < 1e-12);
        let mut beyond = h.cfg.robot.home();
        beyond[i] = j.max - margin / 2.0;
        assert!(Trajectory::within(&h.cfg, &h.cfg.robot.home(), &beyond, 0.5).is_err(), "joint {i}");
    }
}

#[test]
fn orientation_in_tissue_and_with_insertion_are_refused_ins1() {
    // Orientation request while inserting (needle in tissue).
    let mut h = Harness::new();
    h.to_inserted(10.0);
    let t = h.trajectory(&[(0, 0.05)], 0.5);
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::OrientationInTissue { joint: 0, .. }));
    assert_eq!(
        h.sup.command(h.now, Command::BeginAlign),
        Err(Refusal::NotInState { command: Command::BeginAlign, state: MotionState::Fault })
    );

    // Orientation and insertion in the same request (homing, needle outside).
    let mut h = Harness::new();
    h.fake.positions[6] = 1.5;
    h.ticks(2);
    h.sup.command(h.now, Command::StartHoming).unwrap();
    h.ticks(3);
    let ins = h.ins();
    let t = h.trajectory(&[(0, 0.05), (ins, -1.0)], 0.5);
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::OrientationWithInsertion));

    // Re-aligning with the needle in tissue is refused up front.
    let mut h = Harness::new();
    h.to_inserted(10.0);
    h.sup.command(h.now, Command::Complete).unwrap();
    assert!(matches!(h.sup.command(h.now, Command::BeginAlign), Err(Refusal::NotInState { .. })));
}

#[test]
fn motion_outside_its_state_is_refused() {
    // Advancing the needle while aligning.
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    let ins = h.ins();
    let t = h.trajectory(&[(ins, 1.0)], 0.5);
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::MotionNotAllowed { joint: 6 }));

    // Advancing while retracting.
    let mut h = Harness::new();
    h.to_inserted(10.0);
    h.sup.command(h.now, Command::BeginRetract).unwrap();
    let t = h.trajectory(&[(ins, 1.0)], 0.5);
    h.run(&t);
    h.assert_controlled_stop(|f| matches!(f, Fault::MotionNotAllowed { joint: 6 }));
}

#[test]
fn pedal_release_and_gate_close_hold_insertion_ins2_resp2() {
    let mut h = Harness::new();
    h.to_inserted(5.0);
    let ins = h.ins();
    let t = h.trajectory(&[(ins, 20.0)], 0.8);
    for k in 0..t.len() / 2 {
        h.tick(t.sample(k));
    }
    h.fake.pedal = false;
    let depth_at_release = h.sup.commanded()[ins];
    h.tick(t.sample(t.len() / 2));
    assert_eq!(h.sup.state(), MotionState::Holding);
    assert_eq!(h.sup.fault(), None, "a pedal release is not a fault");
    let v = h.cfg.robot.joints[ins].max_velocity;
    let stop_mm = v * v / (2.0 * h.cfg.robot.joints[ins].max_acceleration * h.cfg.stop_deceleration_fraction);
    h.ticks_until_still(2000);
    assert!(h.sup.commanded()[ins] - depth_at_release <= stop_mm + 1e-9);
    assert_eq!(h.sup.command(h.now, Command::Resume), Err(Refusal::PedalNotHeld));
    h.fake.pedal = true;
    h.tick(None);
    h.sup.command(h.now, Command::Resume).unwrap();
    assert_eq!(h.sup.state(), MotionState::Inserting);

    // Gate closes: hold; resume refused while closed.
    h.gate_open = Some(false);
    h.tick(None);
    assert_eq!(h.sup.state(), MotionState::Holding);
    assert_eq!(h.sup.command(h.now, Command::Resume), Err(Refusal::GateNotOpen));
    h.gate_open = Some(true);
    h.tick(None);
    h.sup.command(h.now, Command::Resume).unwrap();

    // Insertion cannot begin without the pedal either.
    let mut h = Harness::new();
    h.to_idle();
    h.sup.command(h.now, Command::BeginAlign).unwrap();
    h.sup.command(h.now, Command::Complete).unwrap();
    h.fake.pedal = false;
    h.tick(None);
    assert_eq!(h.sup.command(h.now, Command::BeginInsert), Err(Refusal::PedalNotHeld));
}

#[test]
fn late_cycle_is_a_controlled_stop() {
    let mut h = Harness::new();
    h.to_idle();
    let late = h.cfg.max_lateness.saturating_add(Nanos::from_micros(1));
    h.tick_late(None, late);
    h.assert_controlled_stop(|f| matches!(f, Fault::CycleOverrun { .. }));
}

#[test]
fn estop_input_and_operator_estop_need_release_before_reset() {
    let mut h = Harness::new();
    h.to_inserted(5.0);
    h.fake.estop = true;
    h.tick(None);
    assert_eq!(h.sup.state(), MotionState::EStop);
    h.assert_brake_hold(|f| matches!(f, Fault::EStopInput));
    assert!(h.fake.sent.iter().any(|c| matches!(c.message(), Message::EStop)));
    assert_eq!(h.sup.command(h.now, Command::Reset), Err(Refusal::EStopStillOpen));
    h.fake.estop = false;
    reset_ok(&mut h, MotionState::Connected);

    let mut h = Harness::new();
    h.to_idle();
    h.sup.estop(h.now);
    h.tick(None);
    assert_eq!(h.sup.state(), MotionState::EStop);
    h.assert_brake_hold(|f| matches!(f, Fault::OperatorEStop));
    reset_ok(&mut h, MotionState::Connected);
}

#[test]
fn a_brake_hold_escalates_a_controlled_stop() {
    let mut h = Harness::new();
    h.stall_mid_move(); // StaleMotion: controlled stop begins
    assert_eq!(h.sup.fault(), Some(Fault::StaleMotion));
    h.fake.estop = true;
    h.tick(None);
    assert_eq!(h.sup.state(), MotionState::EStop);
    assert!(!h.fake.drives);
}

#[test]
fn a_command_the_controller_never_answers_is_a_brake_hold() {
    let mut h = Harness::new();
    h.ticks(2);
    h.fake.acking = false;
    h.sup.command(h.now, Command::StartHoming).unwrap();
    let deadline_cycles = (h.cfg.reply_deadline.0 / h.cfg.period.0) as usize;
    h.ticks(deadline_cycles);
    assert_eq!(h.sup.fault(), None, "not before the reply deadline");
    h.ticks(2);
    h.assert_brake_hold(|f| matches!(f, Fault::MissedReply { msg_type: 0x02, .. }));
    h.fake.acking = true;
    reset_ok(&mut h, MotionState::Connected);
}

#[test]
fn a_state_after_a_gap_in_the_controllers_clock_is_judged_by_that_clock() {
    // The controller did not report for 40 ms of its own clock (it was not scheduled, or states
    // were lost) while the host read one state per cycle: the joint moved 40 ms worth meanwhile.
    // That is no encoder jump; the same motion in 1 ms of the controller's clock is.
    let mut h = Harness::new();
    h.to_idle();
    let v = h.cfg.robot.joints[5].max_velocity;
    h.fake.stuck[5] = true;
    h.fake.positions[5] += v * 0.040;
    h.fake.controller_time_us += 40_000;
    h.tick(None);
    assert_eq!(h.sup.fault(), None);
    h.fake.positions[5] += v * 0.040;
    h.tick(None);
    h.assert_brake_hold(|f| matches!(f, Fault::EncoderJump { joint: 5, .. }));
}

#[test]
fn a_supervisor_is_built_only_on_limits_within_their_bounds() {
    let cfg = common::config();
    assert!(Supervisor::new(cfg.clone()).is_ok());
    // A loaded config changed afterwards, past what the loader would have taken.
    let mut deep = cfg.clone();
    deep.max_depth_mm = 1e6;
    let e = Supervisor::new(deep).map(|_| ()).unwrap_err();
    assert!(e.contains("max_depth_mm") && e.contains("PATH-6"), "{e}");
    let mut no_margin = cfg.clone();
    no_margin.soft_margin_mm = -1.0;
    assert!(Supervisor::new(no_margin).map(|_| ()).unwrap_err().contains("HAZ-1"));
    let mut never_late = cfg;
    never_late.max_lateness = stylet_core::Nanos::ZERO;
    assert!(Supervisor::new(never_late).map(|_| ()).unwrap_err().contains("HAZ-11"));
}
