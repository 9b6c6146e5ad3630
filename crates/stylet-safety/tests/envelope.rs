//! Property: whatever the motion generator, the operator and the controller do, no setpoint the
//! supervisor emits leaves the envelope (hard limits, velocity, acceleration, INS-1, PATH-6).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Harness;
use proptest::prelude::*;
use stylet_protocol::{FaultCode, FaultReport, JointSetpoint, Message};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::SoftRange;
use stylet_safety::{ActuatorInput, Command};

#[derive(Clone, Debug)]
enum Action {
    /// A smooth move of some joints (may aim past the limits, may be too fast).
    Move {
        offsets: Vec<(usize, f64)>,
        fraction: f64,
        take: usize,
    },
    /// Arbitrary raw setpoints around the current command.
    Raw {
        steps: Vec<(usize, f64)>,
    },
    Command(Command),
    Pedal(bool),
    Gate(Option<bool>),
    Heartbeats(bool),
    Reporting(bool),
    LinkError,
    ControllerFault,
    EStop(bool),
    Stuck(usize, bool),
    Wait(usize),
    Late,
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::StartHoming),
        Just(Command::Complete),
        Just(Command::BeginAlign),
        Just(Command::BeginInsert),
        Just(Command::Hold),
        Just(Command::Resume),
        Just(Command::BeginRetract),
        Just(Command::DisableDrives),
        Just(Command::Reset),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (proptest::collection::vec((0usize..7, -1.5f64..1.5), 1..3), 0.05f64..1.0, 10usize..400)
            .prop_map(|(o, fraction, take)| Action::Move {
                offsets: o.into_iter().map(|(j, d)| (j, if j == 6 { d * 100.0 } else { d })).collect(),
                fraction,
                take,
            }),
        2 => proptest::collection::vec((0usize..7, -0.01f64..0.01), 1..20).prop_map(|steps| Action::Raw { steps }),
        6 => command().prop_map(Action::Command),
        1 => any::<bool>().prop_map(Action::Pedal),
        1 => proptest::option::of(any::<bool>()).prop_map(Action::Gate),
        1 => any::<bool>().prop_map(Action::Heartbeats),
        1 => any::<bool>().prop_map(Action::Reporting),
        1 => Just(Action::LinkError),
        1 => Just(Action::ControllerFault),
        1 => any::<bool>().prop_map(Action::EStop),
        1 => (0usize..7, any::<bool>()).prop_map(|(j, s)| Action::Stuck(j, s)),
        2 => (1usize..300).prop_map(Action::Wait),
        1 => Just(Action::Late),
    ]
}

fn apply(h: &mut Harness, a: &Action) {
    match a {
        Action::Move { offsets, fraction, take } => {
            let from = h.sup.commanded().to_vec();
            let mut to = from.clone();
            for (j, d) in offsets {
                to[*j] += d;
            }
            // Goals anywhere, even beyond the hard stops: the supervisor must keep the envelope.
            let anywhere = vec![SoftRange { lo: -1e3, hi: 1e3, depth_bound: false }; from.len()];
            if let Ok(t) = Trajectory::point_to_point(&h.cfg.robot, &from, &to, &anywhere, *fraction, h.cfg.dt()) {
                for k in 0..t.len().min(*take) {
                    h.tick(t.sample(k));
                }
            }
        }
        Action::Raw { steps } => {
            for (j, d) in steps {
                let mut r: Vec<JointSetpoint> =
                    h.sup.commanded().iter().map(|q| JointSetpoint { position: *q, velocity: 0.0 }).collect();
                r[*j].position += d;
                h.tick(Some(&r));
            }
        }
        Action::Command(c) => {
            let _ = h.sup.command(h.now, *c);
            h.tick(None);
        }
        Action::Pedal(p) => h.fake.pedal = *p,
        Action::Gate(g) => h.gate_open = *g,
        Action::Heartbeats(b) => h.heartbeats = *b,
        Action::Reporting(b) => h.fake.reporting = *b,
        Action::LinkError => h.fake.inputs.push_back(ActuatorInput::LinkError),
        Action::ControllerFault => h.fake.report_fault(FaultReport { code: FaultCode::Encoder, joint: 1, value: 0.0 }),
        Action::EStop(e) => h.fake.estop = *e,
        Action::Stuck(j, s) => h.fake.stuck[*j] = *s,
        Action::Wait(k) => h.ticks(*k),
        Action::Late => {
            let late = h.cfg.max_lateness.saturating_add(stylet_core::Nanos(1));
            h.tick_late(None, late);
        }
    }
}

/// The envelope, checked on the wire output alone.
fn check_envelope(h: &Harness) -> Result<(), String> {
    let joints = &h.cfg.robot.joints;
    let ins = h.ins();
    let tol = |limit: f64| limit * (1.0 + 1e-6) + 1e-9;
    let mut prev: Option<(u64, Vec<f64>)> = None;
    let mut prev_v: Option<Vec<f64>> = None;
    for c in &h.fake.sent {
        let s = match c.message() {
            Message::Setpoint(s) => s,
            Message::Heartbeat { .. } => continue,
            _ => {
                prev = None;
                prev_v = None;
                continue;
            }
        };
        let q: Vec<f64> = s.joints.as_slice().iter().map(|j| j.position).collect();
        for (i, j) in joints.iter().enumerate() {
            if q[i] < j.min || q[i] > j.max {
                return Err(format!("joint {i} at {} outside [{}, {}]", q[i], j.min, j.max));
            }
            let ff = f64::from(s.joints.as_slice()[i].velocity).abs();
            if ff > tol(j.max_velocity) {
                return Err(format!("joint {i} feed-forward {ff} > {}", j.max_velocity));
            }
        }
        if q[ins] > h.cfg.max_depth_mm + 1e-9 {
            return Err(format!("needle at {} mm beyond PATH-6 {}", q[ins], h.cfg.max_depth_mm));
        }
        if let Some((t0, q0)) = &prev {
            let dt = (s.host_time_us - t0) as f64 * 1e-6;
            if dt <= 0.0 {
                return Err("host time did not advance".into());
            }
            let v: Vec<f64> = q.iter().zip(q0).map(|(a, b)| (a - b) / dt).collect();
            let mut orientation = false;
            let mut insertion = false;
            for (i, j) in joints.iter().enumerate() {
                if v[i].abs() > tol(j.max_velocity) {
                    return Err(format!("joint {i} velocity {} > {}", v[i], j.max_velocity));
                }
                if let Some(pv) = &prev_v {
                    let a = (v[i] - pv[i]) / dt;
                    if a.abs() > tol(j.max_acceleration) {
                        return Err(format!("joint {i} acceleration {a} > {}", j.max_acceleration));
                    }
                }
                if q[i] != q0[i] {
                    if i == ins {
                        insertion = true;
                    } else {
                        orientation = true;
                    }
                }
            }
            if orientation && insertion {
                return Err("orientation and insertion moved together (INS-1)".into());
            }
            if orientation && q0[ins] > h.cfg.in_tissue_depth_mm {
                return Err(format!("orientation moved with the needle {} mm in (INS-1)", q0[ins]));
            }
            prev_v = Some(v);
        }
        prev = Some((s.host_time_us, q));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn no_emitted_setpoint_leaves_the_envelope(actions in proptest::collection::vec(action(), 1..40)) {
        let mut h = Harness::new();
        h.to_idle();
        let _ = h.sup.command(h.now, Command::BeginAlign);
        for a in &actions {
            apply(&mut h, a);
        }
        h.ticks(50);
        prop_assert_eq!(check_envelope(&h), Ok(()));
    }

    #[test]
    fn a_walk_that_reaches_insertion_stays_in_the_envelope(
        depth in 1.0f64..250.0,
        fraction in 0.1f64..1.0,
        mid in proptest::collection::vec(action(), 0..10),
    ) {
        let mut h = Harness::new();
        h.to_idle();
        h.sup.command(h.now, Command::BeginAlign).unwrap();
        h.sup.command(h.now, Command::Complete).unwrap();
        h.sup.command(h.now, Command::BeginInsert).unwrap();
        apply(&mut h, &Action::Move { offsets: vec![(6, depth)], fraction, take: 100_000 });
        for a in &mid {
            apply(&mut h, a);
        }
        h.ticks(50);
        prop_assert_eq!(check_envelope(&h), Ok(()));
    }
}
