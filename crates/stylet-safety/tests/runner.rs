//! The real-time thread, in lockstep with a mock clock: the same loop that runs on hardware,
//! advanced one period at a time by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stylet_core::{Clock, MockClock};
use stylet_safety::fake::FakeActuator;
use stylet_safety::runner::{self, Operator, RunnerEvent, RunnerHandle};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Command, Event, Fault, MotionState, Supervisor};

struct Rig {
    clock: MockClock,
    period: stylet_core::Nanos,
    h: RunnerHandle<FakeActuator>,
    events: Vec<RunnerEvent>,
}

impl Rig {
    fn new() -> Self {
        let cfg = common::config();
        let clock = MockClock::new();
        let fake = FakeActuator::new(cfg.robot.home());
        let h = runner::spawn(Supervisor::new(cfg.clone()), fake, Arc::new(clock.clone()) as Arc<dyn Clock>).unwrap();
        Rig { clock, period: cfg.period, h, events: Vec::new() }
    }

    /// Advances one period and waits until the runner has finished that cycle.
    fn step(&mut self, heartbeat: bool) {
        if heartbeat {
            self.h.send(Operator::Heartbeat).unwrap();
        }
        let target = self.h.cycles() + 1;
        self.clock.advance(self.period);
        let t0 = Instant::now();
        while self.h.cycles() < target {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "runner stalled at {} (target {target}), clock {:?}",
                self.h.cycles(),
                self.clock.now()
            );
            std::thread::yield_now();
        }
        self.events.extend(self.h.events.try_iter());
    }

    fn shutdown(self) -> runner::RunReport<FakeActuator> {
        self.h.send(Operator::Shutdown).unwrap();
        self.clock.advance(self.period);
        self.h.shutdown().unwrap()
    }

    fn steps(&mut self, k: usize, heartbeat: bool) {
        for _ in 0..k {
            self.step(heartbeat);
        }
    }
}

#[test]
fn runner_homes_and_executes_a_trajectory_in_lockstep() {
    let cfg = common::config();
    let mut rig = Rig::new();
    rig.steps(3, true);
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, RunnerEvent::Supervisor(Event::Transition { to: MotionState::Connected, .. }))));
    rig.h.send(Operator::Command(Command::StartHoming, None)).unwrap();
    rig.steps(3, true);
    let start = rig.h.snapshot().unwrap().commanded.as_slice().to_vec();
    let mut goal = start.clone();
    goal[0] += 0.01;
    let t = Trajectory::point_to_point(&cfg.robot, &start, &goal, &vec![0.0; start.len()], 0.5, cfg.dt()).unwrap();
    let samples = t.len();
    rig.h.send(Operator::Execute(t)).unwrap();
    rig.steps(samples + 2, true);
    assert!(rig.events.contains(&RunnerEvent::TrajectoryStarted { samples }), "{:?}", rig.events);
    assert!(rig.events.contains(&RunnerEvent::TrajectoryDone), "{:?}", rig.events);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rig.h.send(Operator::Command(Command::Complete, Some(tx))).unwrap();
    rig.step(true);
    assert_eq!(rx.try_recv(), Ok(Ok(())));
    let report = rig.shutdown();
    assert_eq!(report.snapshot.fault, None);
    assert_eq!(report.snapshot.commanded.as_slice()[0], goal[0]);
    assert_eq!(report.actuator.positions[0], goal[0]);
}

#[test]
fn runner_latches_stale_operator_at_its_deadline_and_interrupts_the_trajectory() {
    let cfg = common::config();
    let mut rig = Rig::new();
    rig.steps(3, true);
    rig.h.send(Operator::Command(Command::StartHoming, None)).unwrap();
    rig.steps(3, true);
    let start = rig.h.snapshot().unwrap().commanded.as_slice().to_vec();
    let mut goal = start.clone();
    goal[1] -= 0.3;
    let t = Trajectory::point_to_point(&cfg.robot, &start, &goal, &vec![0.0; start.len()], 0.5, cfg.dt()).unwrap();
    rig.h.send(Operator::Execute(t)).unwrap();
    rig.step(true);
    // The operator console goes silent: exactly the deadline later the fault latches.
    let deadline_cycles = (cfg.operator_deadline.0 / cfg.period.0) as usize;
    rig.steps(deadline_cycles, false);
    assert_eq!(rig.h.snapshot().unwrap().fault, None);
    rig.steps(2, false);
    let snap = rig.h.snapshot().unwrap();
    assert!(matches!(snap.fault, Some(Fault::StaleOperator { .. })), "{:?}", snap.fault);
    assert!(rig.events.iter().any(|e| matches!(e, RunnerEvent::TrajectoryInterrupted { .. })));
    rig.shutdown();
}
