//! The real-time thread, in lockstep with a mock clock: the same loop that runs on hardware,
//! advanced one period at a time by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stylet_core::{Clock, MockClock};
use stylet_safety::fake::FakeActuator;
use stylet_safety::runner::{self, Operator, RunnerEvent, RunnerHandle};
use stylet_safety::trajectory::{hard_ranges, Trajectory};
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
        let h = runner::spawn(Supervisor::new(cfg.clone()).unwrap(), fake, Arc::new(clock.clone()) as Arc<dyn Clock>)
            .unwrap();
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

    /// Asks the thread to leave and moves the clock until it has. One period is not always
    /// enough: the thread skips its mailbox in a cycle where a caller holds the lock, and a CI
    /// run hung for good when the Shutdown waited for a cycle that never came.
    fn shutdown(self) -> runner::RunReport<FakeActuator> {
        self.h.send(Operator::Shutdown).unwrap();
        let t0 = Instant::now();
        while !self.h.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(10), "runner did not stop");
            let next = self.h.cycles() + 1;
            self.clock.advance(self.period);
            while self.h.cycles() < next && !self.h.is_finished() {
                assert!(t0.elapsed() < Duration::from_secs(10), "runner did not stop");
                std::thread::yield_now();
            }
        }
        self.h.shutdown().unwrap()
    }

    /// A rig connected and homing (drives enabled), a few cycles in.
    fn homing() -> Self {
        let mut rig = Rig::new();
        rig.steps(3, true);
        rig.h.send(Operator::Command(Command::StartHoming, None)).unwrap();
        rig.steps(3, true);
        rig
    }

    /// A move of `joint` by `delta` from the commanded position, and its goal.
    fn move_by(&self, cfg: &stylet_safety::SafetyConfig, joint: usize, delta: f64) -> (Trajectory, Vec<f64>) {
        let start = self.h.snapshot().unwrap().commanded.as_slice().to_vec();
        let mut goal = start.clone();
        goal[joint] += delta;
        let t = Trajectory::point_to_point(&cfg.robot, &start, &goal, &hard_ranges(&cfg.robot), 0.5, cfg.dt()).unwrap();
        (t, goal)
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
    let t = Trajectory::point_to_point(&cfg.robot, &start, &goal, &hard_ranges(&cfg.robot), 0.5, cfg.dt()).unwrap();
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
    let mut rig = Rig::homing();
    let (t, _) = rig.move_by(&cfg, 1, -0.3);
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
    let hard = hard_ranges(&cfg.robot);
    // From somewhere else: refused with the offset, nothing moves.
    let mut wrong = start.clone();
    wrong[2] += 0.5;
    let t = Trajectory::point_to_point(&cfg.robot, &wrong, &goal, &hard, 0.5, cfg.dt()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (r, _) = answered(&mut rig, Operator::Execute(t, Some(tx)), &rx);
    let offset = r.unwrap_err().offset;
    assert!((offset - 0.5).abs() < 1e-12, "{offset}");
    // From the commanded position: taken.
    let t = Trajectory::point_to_point(&cfg.robot, &start, &goal, &hard, 0.5, cfg.dt()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (r, _) = answered(&mut rig, Operator::Execute(t, Some(tx)), &rx);
    assert_eq!(r, Ok(()));
    rig.shutdown();
}

/// Advances the clock by `periods` at once (a host stall) and waits until the runner has run
/// every cycle that is now due.
fn stall(rig: &mut Rig, periods: u64) {
    rig.h.send(Operator::Heartbeat).unwrap();
    let target = rig.h.cycles() + periods;
    rig.clock.advance(stylet_core::Nanos(rig.period.0 * periods));
    let t0 = Instant::now();
    while rig.h.cycles() < target {
        assert!(t0.elapsed() < Duration::from_secs(10), "runner stalled");
        std::thread::yield_now();
    }
    rig.events.extend(rig.h.events.try_iter());
}

#[test]
fn a_short_stall_is_absorbed_and_counted_and_the_stream_keeps_its_times() {
    let cfg = common::config();
    let mut rig = Rig::homing();
    let (t, goal) = rig.move_by(&cfg, 0, 0.01);
    let samples: Vec<f64> = (0..t.len()).map(|i| t.sample(i).unwrap()[0].position).collect();
    rig.h.send(Operator::Execute(t, None)).unwrap();
    rig.steps(20, true);
    let sent_before = rig.h.snapshot().unwrap().commanded.as_slice()[0];
    // 6 ms late at 1 kHz (the HAZ-11 limit is 10 ms): the six cycles due run back to back.
    stall(&mut rig, 6);
    let after = rig.h.snapshot().unwrap().commanded.as_slice()[0];
    let stalls: Vec<_> = rig.events.iter().filter(|e| matches!(e, RunnerEvent::Stall { .. })).collect();
    assert_eq!(stalls, [&RunnerEvent::Stall { lateness: stylet_core::Nanos(rig.period.0 * 5) }], "{:?}", rig.events);
    // Each cycle took its own sample: the stream went on as if nothing had happened.
    let i = samples.iter().position(|s| *s == sent_before).unwrap();
    assert_eq!(after, samples[i + 6], "before {sent_before}, after {after}");
    let timing = rig.h.take_timing();
    assert_eq!((timing.stalls, timing.late_cycles), (1, 5), "{timing:?}");
    assert_eq!(timing.worst_lateness, stylet_core::Nanos(rig.period.0 * 5), "{timing:?}");
    assert_eq!(rig.h.take_timing().worst_lateness, stylet_core::Nanos::ZERO);
    rig.steps(samples.len(), true);
    assert!(rig.events.contains(&RunnerEvent::TrajectoryDone), "{:?}", rig.events);
    let report = rig.shutdown();
    assert_eq!(report.snapshot.fault, None);
    assert_eq!((report.stalls, report.late_cycles), (1, 5));
    assert_eq!(report.snapshot.commanded.as_slice()[0], goal[0]);
    // The fake saw one setpoint per nominal cycle, stamped one period apart.
    let stamps: Vec<u64> = report
        .actuator
        .sent
        .iter()
        .filter_map(|c| match c.message() {
            stylet_protocol::Message::Setpoint(s) => Some(s.host_time_us),
            _ => None,
        })
        .collect();
    let period_us = cfg.period.0 / 1000;
    assert!(stamps.len() > 30 && stamps.windows(2).all(|w| w[1] - w[0] == period_us), "{stamps:?}");
}

#[test]
fn a_stall_beyond_the_lateness_limit_latches_haz11() {
    let cfg = common::config();
    let mut rig = Rig::homing();
    let limit_periods = cfg.max_lateness.0 / cfg.period.0;
    stall(&mut rig, limit_periods + 2);
    let snap = rig.h.snapshot().unwrap();
    assert!(matches!(snap.fault, Some(Fault::CycleOverrun { .. })), "{:?}", snap.fault);
    rig.shutdown();
}

/// Runs cycle `k` of `cy` (deadline k periods) with these operator messages.
fn one_cycle(cy: &mut runner::Cycler<FakeActuator>, period: stylet_core::Nanos, k: u64, ops: Vec<Operator>) {
    let mut ops: std::collections::VecDeque<_> = ops.into();
    cy.cycle(stylet_core::Nanos(period.0 * k), stylet_core::Nanos::ZERO, &mut || ops.pop_front(), &mut |_| {});
}

#[test]
fn a_caller_holding_the_snapshot_lock_never_stalls_the_cycle() {
    // The runner's callers run at normal priority and may be preempted while they copy the
    // snapshot: the cycle must not wait for them (a CI run once lost the controller's watchdog
    // that way). The answer waits instead, until a snapshot showing the command is out.
    let cfg = common::config();
    let period = cfg.period;
    let mut cy = runner::Cycler::new(Supervisor::new(cfg.clone()).unwrap(), FakeActuator::new(cfg.robot.home()));
    let shared = Arc::new(std::sync::Mutex::new(cy.snapshot()));
    cy.publish_to(Arc::clone(&shared));
    for k in 1..=3 {
        one_cycle(&mut cy, period, k, vec![Operator::Heartbeat]);
    }
    let held = shared.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // The cycle runs on another thread, so that one that blocked shows as a timeout here.
    let worker = std::thread::spawn(move || {
        one_cycle(&mut cy, period, 4, vec![Operator::Heartbeat, Operator::Command(Command::StartHoming, Some(tx))]);
        done_tx.send(()).unwrap();
        cy
    });
    done_rx.recv_timeout(Duration::from_secs(10)).expect("the cycle waited for the snapshot lock");
    assert!(rx.try_recv().is_err(), "answered before a snapshot showing the command was out");
    assert_eq!(held.state, MotionState::Connected);
    drop(held);
    let mut cy = worker.join().unwrap();
    one_cycle(&mut cy, period, 5, vec![Operator::Heartbeat]);
    assert_eq!(rx.try_recv(), Ok(Ok(())));
    assert_eq!(shared.lock().unwrap().state, MotionState::Homing);
}
