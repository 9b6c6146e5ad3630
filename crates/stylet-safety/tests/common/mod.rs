//! A deterministic harness: the supervisor, the fake controller and an explicit clock.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::wrong_self_convention
)]

use std::path::Path;

use stylet_core::Nanos;
use stylet_protocol::{JointSetpoint, Message};
use stylet_safety::fake::FakeActuator;
use stylet_safety::trajectory::{hard_ranges, Trajectory};
use stylet_safety::{Actuator, Command, Fault, MotionState, SafetyConfig, Supervisor};

pub fn config() -> SafetyConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    SafetyConfig::load_dir(&dir).expect("repository config loads")
}

pub struct Harness {
    pub cfg: SafetyConfig,
    pub sup: Supervisor,
    pub fake: FakeActuator,
    pub now: Nanos,
    pub heartbeats: bool,
    pub gate_open: Option<bool>,
    /// The message of the last command sent.
    pub last: Option<Message>,
}

impl Harness {
    pub fn new() -> Self {
        let cfg = config();
        let fake = FakeActuator::new(cfg.robot.home());
        Harness {
            sup: Supervisor::new(cfg.clone()).unwrap(),
            cfg,
            fake,
            now: Nanos::ZERO,
            heartbeats: true,
            gate_open: Some(true),
            last: None,
        }
    }

    pub fn n(&self) -> usize {
        self.cfg.robot.joints.len()
    }

    pub fn ins(&self) -> usize {
        self.cfg.robot.insertion_joint().expect("reference arm has an insertion joint")
    }

    /// One cycle at the nominal period, `lateness` late: the message of the command sent (to
    /// the fake actuator, which takes the command itself: it cannot be copied).
    pub fn tick_late(&mut self, req: Option<&[JointSetpoint]>, lateness: Nanos) -> Option<Message> {
        self.now = self.now.saturating_add(self.cfg.period);
        if self.heartbeats {
            self.sup.heartbeat(self.now);
        }
        if let Some(open) = self.gate_open {
            self.sup.gate(self.now, open);
        }
        let (sup, now) = (&mut self.sup, self.now);
        self.fake.poll(&mut |i| sup.handle(now, i));
        let out = self.sup.cycle(self.now, lateness, req);
        let sent = out.command.map(|c| {
            let m = *c.message();
            self.fake.send(c);
            m
        });
        self.last = sent;
        sent
    }

    pub fn tick(&mut self, req: Option<&[JointSetpoint]>) -> Option<Message> {
        self.tick_late(req, Nanos::ZERO)
    }

    pub fn ticks(&mut self, k: usize) {
        for _ in 0..k {
            self.tick(None);
        }
    }

    /// Connected -> Homing -> Idle, drives on.
    pub fn to_idle(&mut self) {
        self.ticks(2);
        assert_eq!(self.sup.state(), MotionState::Connected);
        self.sup.command(self.now, Command::StartHoming).expect("homing starts");
        self.ticks(3);
        self.sup.command(self.now, Command::Complete).expect("homing completes");
        assert_eq!(self.sup.state(), MotionState::Idle);
    }

    /// A move of the listed joints by the given offsets, at `fraction` of the limits.
    pub fn trajectory(&self, offsets: &[(usize, f64)], fraction: f64) -> Trajectory {
        let from = self.sup.commanded().to_vec();
        let mut to = from.clone();
        for (j, d) in offsets {
            to[*j] += d;
        }
        let hard = hard_ranges(&self.cfg.robot);
        Trajectory::point_to_point(&self.cfg.robot, &from, &to, &hard, fraction, self.cfg.dt()).expect("plannable")
    }

    /// Runs a trajectory to its end (or until a fault). Returns the samples run.
    pub fn run(&mut self, t: &Trajectory) -> usize {
        let mut k = 0;
        while k < t.len() {
            let s = t.sample(k).map(<[JointSetpoint]>::to_vec);
            let now_before = self.sup.fault();
            self.tick(s.as_deref());
            k += 1;
            if self.sup.fault().is_some() && now_before.is_none() {
                return k;
            }
        }
        // The cycle after the last sample holds still (what the runner does).
        self.tick(None);
        k
    }

    /// Idle -> Aligning, half of a joint-0 move, then a cycle without a sample: the motion stream
    /// stalls mid-move (StaleMotion).
    pub fn stall_mid_move(&mut self) {
        self.to_idle();
        self.sup.command(self.now, Command::BeginAlign).expect("align");
        let t = self.trajectory(&[(0, 0.5)], 0.8);
        for k in 0..t.len() / 2 {
            self.tick(t.sample(k));
        }
        self.tick(None);
    }

    /// Idle -> Aligning -> Aligned -> Inserting, with the needle advanced by `depth_mm`.
    pub fn to_inserted(&mut self, depth_mm: f64) {
        self.to_idle();
        self.sup.command(self.now, Command::BeginAlign).expect("align");
        let t = self.trajectory(&[(0, 0.05)], 0.5);
        self.run(&t);
        self.sup.command(self.now, Command::Complete).expect("aligned");
        self.sup.command(self.now, Command::BeginInsert).expect("insert");
        let ins = self.ins();
        let t = self.trajectory(&[(ins, depth_mm)], 0.5);
        self.run(&t);
        assert_eq!(self.sup.fault(), None);
        assert_eq!(self.sup.state(), MotionState::Inserting);
    }

    pub fn last_message(&self) -> Option<Message> {
        self.last
    }

    /// Ticks until every joint is still; returns how many cycles that took.
    pub fn ticks_until_still(&mut self, max: usize) -> usize {
        for k in 0..max {
            if self.sup.is_still() {
                return k;
            }
            self.tick(None);
        }
        panic!("joints still moving after {max} cycles");
    }

    /// Asserts the fault latched with a brake hold: the next thing on the wire is Disable or EStop,
    /// the fake controller's drives are off, and nothing moves afterwards.
    pub fn assert_brake_hold(&mut self, expect: impl Fn(&Fault) -> bool) {
        let f = self.sup.fault().expect("a fault latched");
        assert!(expect(&f), "unexpected fault {f:?}");
        assert_eq!(f.reaction(), stylet_safety::Reaction::BrakeHold);
        // Within one cycle of detection the controller is told to disable.
        let sent_disable =
            self.fake.sent.iter().rev().take(3).any(|c| matches!(c.message(), Message::Disable | Message::EStop));
        if !sent_disable {
            self.tick(None);
        }
        assert!(
            self.fake.sent.iter().rev().take(3).any(|c| matches!(c.message(), Message::Disable | Message::EStop)),
            "no Disable/EStop sent: {:?}",
            self.fake.sent.iter().rev().take(3).collect::<Vec<_>>()
        );
        assert!(!self.fake.drives);
        let before = self.fake.setpoints().len();
        self.ticks(100);
        assert_eq!(self.fake.setpoints().len(), before, "setpoints after a brake hold");
        assert!(self.sup.fault().is_some(), "fault must stay latched");
    }

    /// Asserts a controlled stop: still within the bound (largest v / a_stop, plus one cycle),
    /// drives kept on, fault latched.
    pub fn assert_controlled_stop(&mut self, expect: impl Fn(&Fault) -> bool) {
        let f = self.sup.fault().expect("a fault latched");
        assert!(expect(&f), "unexpected fault {f:?}");
        assert_eq!(f.reaction(), stylet_safety::Reaction::ControlledStop);
        let bound = self
            .cfg
            .robot
            .joints
            .iter()
            .map(|j| j.max_velocity / (j.max_acceleration * self.cfg.stop_deceleration_fraction))
            .fold(0.0, f64::max);
        let bound_cycles = (bound / self.cfg.dt()).ceil() as usize + 1;
        let took = self.ticks_until_still(bound_cycles + 1);
        assert!(took <= bound_cycles, "stop took {took} cycles, bound {bound_cycles}");
        assert!(self.fake.drives, "a controlled stop keeps the drives on");
        let held = self.sup.commanded().to_vec();
        self.ticks(50);
        assert_eq!(self.sup.commanded(), &held[..], "holds after the stop");
        assert!(self.sup.fault().is_some(), "fault must stay latched");
    }
}
