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
    rig.h.send(Operator::Execute(t, None)).unwrap();
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
    rig.h.send(Operator::Execute(t, None)).unwrap();
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

/// Sends `m` (carrying an answer channel), lets one cycle run, and returns what `read` saw the
/// moment the answer arrived (before the cycle ended).
fn answered<T: std::fmt::Debug>(
    rig: &mut Rig,
    m: Operator,
    rx: &std::sync::mpsc::Receiver<T>,
) -> (T, stylet_safety::Snapshot) {
    rig.h.send(Operator::Heartbeat).unwrap();
    let target = rig.h.cycles() + 1;
    rig.h.send(m).unwrap();
    rig.clock.advance(rig.period);
    let answer = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let snap = rig.h.snapshot().unwrap();
    while rig.h.cycles() < target {
        std::thread::yield_now();
    }
    (answer, snap)
}

#[test]
fn answers_arrive_after_the_snapshot_shows_their_effect() {
    // A caller that plans a move from the snapshot right after its command's answer must see the
    // command's effect (CI once timed out a move planned from the state before StartHoming).
    let cfg = common::config();
    let mut rig = Rig::new();
    rig.steps(3, true);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (r, snap) = answered(&mut rig, Operator::Command(Command::StartHoming, Some(tx)), &rx);
    assert_eq!(r, Ok(()));
    assert_eq!(snap.state, MotionState::Homing);
    rig.steps(2, true);
    let start = rig.h.snapshot().unwrap().commanded.as_slice().to_vec();
    let mut goal = start.clone();
    goal[0] += 0.01;
    let margins = vec![0.0; start.len()];
    // From somewhere else: refused with the offset, nothing moves.
    let mut wrong = start.clone();
    wrong[2] += 0.5;
    let t = Trajectory::point_to_point(&cfg.robot, &wrong, &goal, &margins, 0.5, cfg.dt()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (r, _) = answered(&mut rig, Operator::Execute(t, Some(tx)), &rx);
    let offset = r.unwrap_err().offset;
    assert!((offset - 0.5).abs() < 1e-12, "{offset}");
    // From the commanded position: taken.
    let t = Trajectory::point_to_point(&cfg.robot, &start, &goal, &margins, 0.5, cfg.dt()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (r, _) = answered(&mut rig, Operator::Execute(t, Some(tx)), &rx);
    assert_eq!(r, Ok(()));
    rig.shutdown();
}
