//! The supervisor's fixed-rate thread.
//!
//! One thread owns the [`Supervisor`] and an [`Actuator`]; each cycle it sleeps until its deadline
//! on the injected [`Clock`], drains operator messages and link inputs without blocking, steps the
//! supervisor with the current trajectory sample, hands the one command to the actuator, and
//! publishes events and a snapshot without blocking (bounded channels; a full channel drops and
//! counts). Nothing in the cycle allocates except when a new trajectory replaces an old one.
//!
//! Cycles keep their nominal times: after a stall the missed cycles run back to back, each with
//! its own deadline, so the setpoint stream stays inside the envelope in its own timestamps and the
//! controller plays it out by them (its playout delay absorbs a stall shorter than it; a longer
//! one makes it hold its last setpoint until the stream resumes). A stall is counted (`stalls`,
//! `late_cycles`), and beyond `max_lateness` it latches HAZ-11 (docs/safety.md, "Latency
//! budget").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use stylet_core::{Clock, Nanos};
use stylet_rt::{Obtained, ThreadSchedule};

use crate::command::Actuator;
use crate::state::Command;
use crate::supervisor::{Event, Refusal, Snapshot, Supervisor};
use crate::trajectory::Trajectory;

mod cycler;
mod timing;

pub use cycler::Cycler;
use timing::TimingCounters;
pub use timing::{Lateness, Timing};

/// A trajectory did not start at the commanded position (largest difference {offset:e}); nothing moved.
#[derive(Clone, Copy, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub struct Rejected {
    /// Largest difference from the commanded position, per joint unit.
    pub offset: f64,
}

/// A message to the supervisor thread.
#[derive(Debug)]
pub enum Operator {
    /// A workflow command; the answer comes back on the channel when one is given.
    Command(Command, Option<SyncSender<Result<(), Refusal>>>),
    /// The operator console is alive.
    Heartbeat,
    /// The respiratory gate input.
    Gate(bool),
    /// Software e-stop.
    EStop,
    /// Run this trajectory from the current commanded position; the answer (refused when it does
    /// not start there) comes back on the channel when one is given.
    Execute(Trajectory, Option<SyncSender<Result<(), Rejected>>>),
    /// Stop following the trajectory (the supervisor brings moving joints to a controlled stop).
    Abort,
    /// Leave the loop (after the next cycle).
    Shutdown,
}

/// What the runner reports besides supervisor events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RunnerEvent {
    /// A supervisor event.
    Supervisor(Event),
    /// A trajectory was taken.
    TrajectoryStarted {
        /// Its length in cycles.
        samples: usize,
    },
    /// A trajectory ran to its end.
    TrajectoryDone,
    /// A trajectory was dropped: state left motion, a fault latched, or it was aborted.
    TrajectoryInterrupted {
        /// Samples executed.
        at_sample: usize,
    },
    /// A trajectory did not start at the commanded position and was refused.
    TrajectoryRejected {
        /// Largest difference from the commanded position.
        offset: f64,
    },
    /// The thread woke a period or more after a cycle's deadline (a stall): that cycle and the
    /// ones missed meanwhile run back to back.
    Stall {
        /// How late the cycle started.
        lateness: Nanos,
    },
}

impl std::fmt::Display for RunnerEvent {
    /// In words, for logs and consoles.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunnerEvent::Supervisor(Event::Transition { from, to, cause, .. }) => {
                write!(f, "{} -> {} ({cause})", from.name(), to.name())
            }
            RunnerEvent::Supervisor(Event::FaultLatched { fault, reaction, .. }) => {
                write!(f, "fault latched: {fault} -> {reaction:?}")
            }
            RunnerEvent::Supervisor(Event::FaultEscalated { fault, .. }) => write!(f, "fault escalated: {fault}"),
            RunnerEvent::Supervisor(Event::Refused { command, reason, .. }) => {
                write!(f, "refused {command:?}: {reason}")
            }
            RunnerEvent::Supervisor(Event::ControllerNack { msg_type, reason, .. }) => {
                write!(f, "controller refused message {msg_type:#04x} (reason {reason})")
            }
            RunnerEvent::Supervisor(Event::Stopped { .. }) => write!(f, "controlled stop complete"),
            RunnerEvent::Stall { lateness } => write!(
                f,
                "stall: a cycle started {:.2} ms late; the cycles due ran back to back (HAZ-11)",
                lateness.as_secs_f64() * 1e3
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

/// What the thread returns when it ends.
#[derive(Debug)]
pub struct RunReport<A> {
    /// The actuator, handed back.
    pub actuator: A,
    /// The final snapshot.
    pub snapshot: Snapshot,
    /// Lateness statistics.
    pub lateness: Lateness,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// Times the thread woke a period or more after a cycle's deadline.
    pub stalls: u64,
    /// Cycles that started a period or more late.
    pub late_cycles: u64,
}

/// Operator messages towards the thread. The callers run at any priority and take the lock to
/// push; the thread only ever tries it (a caller preempted while holding it delays its messages
/// by a cycle, never the cycle). std's channels are not used on the real-time side: a receiver
/// there spins while a sender it raced is mid-write, and a preempted sender can hold it for as
/// long as it is preempted (CI saw a 1.7 s stall and a livelock that way).
#[derive(Debug, Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Operator>>,
    gone: std::sync::atomic::AtomicBool,
}

impl Mailbox {
    fn post(&self, m: Operator) -> Result<(), RunnerGone> {
        if self.gone.load(Ordering::Acquire) {
            return Err(RunnerGone);
        }
        self.queue.lock().map_err(|_| RunnerGone)?.push_back(m);
        Ok(())
    }
}

/// The events the thread reported, in order (a wait-free ring: the thread never waits on the
/// reader).
#[derive(Debug)]
pub struct Events {
    rx: rtrb::Consumer<RunnerEvent>,
}

impl Events {
    /// The next event, if one is waiting.
    pub fn try_recv(&mut self) -> Option<RunnerEvent> {
        self.rx.pop().ok()
    }

    /// Every event waiting now.
    pub fn try_iter(&mut self) -> impl Iterator<Item = RunnerEvent> + '_ {
        std::iter::from_fn(move || self.rx.pop().ok())
    }
}

/// The caller's side of a running supervisor.
#[derive(Debug)]
pub struct RunnerHandle<A> {
    mailbox: Arc<Mailbox>,
    /// Events, in order.
    pub events: Events,
    snapshot: Arc<Mutex<Snapshot>>,
    cycles: Arc<AtomicU64>,
    timing: Arc<TimingCounters>,
    scheduling: Option<Obtained>,
    /// Trajectories the thread finished with, freed here.
    retired: Mutex<rtrb::Consumer<Trajectory>>,
    join: Option<JoinHandle<RunReport<A>>>,
}

/// Asks the supervisor thread for the software e-stop; nothing else.
#[derive(Clone, Debug)]
pub struct EStopButton {
    mailbox: Arc<Mailbox>,
}

impl EStopButton {
    /// Presses it (the thread takes it on its next cycle).
    ///
    /// # Errors
    /// [`RunnerGone`] when the thread has ended.
    pub fn press(&self) -> Result<(), RunnerGone> {
        self.mailbox.post(Operator::EStop)
    }
}

/// The supervisor thread has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, docsplay::Display, thiserror::Error)]
pub struct RunnerGone;

impl<A> RunnerHandle<A> {
    /// Sends a message to the thread.
    ///
    /// # Errors
    /// [`RunnerGone`] when the thread has ended.
    pub fn send(&self, m: Operator) -> Result<(), RunnerGone> {
        self.mailbox.post(m)
    }

    /// A cloneable handle that can only ask for the software e-stop (for a remote console, a
    /// network peer): it can stop the arm, never move it.
    #[must_use]
    pub fn estop_button(&self) -> EStopButton {
        EStopButton { mailbox: Arc::clone(&self.mailbox) }
    }

    /// Sends a workflow command and waits for the supervisor's answer.
    ///
    /// # Errors
    /// [`RunnerGone`] when the thread has ended; the inner result is the supervisor's answer.
    ///
    /// When the answer arrives the snapshot already shows the command's effect.
    pub fn command(&self, c: Command) -> Result<Result<(), Refusal>, RunnerGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Operator::Command(c, Some(tx)))?;
        rx.recv().map_err(|_| RunnerGone)
    }

    /// Hands over a trajectory and waits until the thread has taken or refused it.
    ///
    /// # Errors
    /// [`RunnerGone`] when the thread has ended; the inner result says whether it was taken.
    pub fn execute(&self, t: Trajectory) -> Result<Result<(), Rejected>, RunnerGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Operator::Execute(t, Some(tx)))?;
        rx.recv().map_err(|_| RunnerGone)
    }

    /// What the thread obtained of the schedule it asked for (`None` when it asked for none).
    #[must_use]
    pub fn scheduling(&self) -> Option<&Obtained> {
        self.scheduling.as_ref()
    }

    /// Cycles completed so far.
    #[must_use]
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Acquire)
    }

    /// The timing so far; the worst lateness restarts from zero (for a telemetry series of the
    /// worst start per interval).
    #[must_use]
    pub fn take_timing(&self) -> Timing {
        Timing {
            cycles: self.cycles(),
            stalls: self.timing.stalls.load(Ordering::Relaxed),
            late_cycles: self.timing.late.load(Ordering::Relaxed),
            worst_lateness: Nanos(self.timing.worst_ns.swap(0, Ordering::Relaxed)),
        }
    }

    /// The newest snapshot (and frees the trajectories the thread has finished with).
    #[must_use]
    pub fn snapshot(&self) -> Option<Snapshot> {
        if let Ok(mut retired) = self.retired.lock() {
            while retired.pop().is_ok() {}
        }
        self.snapshot.lock().ok().map(|s| *s)
    }

    /// Whether the thread has ended (after a [`Operator::Shutdown`], or by panicking).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Stops the thread and collects its report.
    ///
    /// The thread reads its mailbox only when the lock is free (it never waits for a caller), so
    /// the message may wait a cycle: with a clock that only moves when told, move it until
    /// [`is_finished`](Self::is_finished) before calling this.
    ///
    /// # Errors
    /// [`RunnerGone`] when the thread panicked.
    pub fn shutdown(mut self) -> Result<RunReport<A>, RunnerGone> {
        let _ = self.mailbox.post(Operator::Shutdown);
        self.join.take().ok_or(RunnerGone)?.join().map_err(|_| RunnerGone)
    }
}

/// Starts the supervisor thread at normal priority (tests, tools).
///
/// # Errors
/// The OS error when the thread cannot be spawned.
pub fn spawn<A: Actuator + Send + 'static>(
    supervisor: Supervisor,
    actuator: A,
    clock: Arc<dyn Clock>,
) -> std::io::Result<RunnerHandle<A>> {
    spawn_with(supervisor, actuator, clock, None)
}

/// Starts the supervisor thread, which first asks for `schedule` (a real-time policy, its core)
/// and reports what it obtained ([`RunnerHandle::scheduling`]).
///
/// # Errors
/// The OS error when the thread cannot be spawned.
pub fn spawn_with<A: Actuator + Send + 'static>(
    supervisor: Supervisor,
    actuator: A,
    clock: Arc<dyn Clock>,
    schedule: Option<ThreadSchedule>,
) -> std::io::Result<RunnerHandle<A>> {
    let mailbox = Arc::new(Mailbox::default());
    let inbox = Arc::clone(&mailbox);
    let (etx, erx) = rtrb::RingBuffer::new(4096);
    let (stx, srx) = mpsc::sync_channel(1);
    let (rtx, retired) = rtrb::RingBuffer::new(16);
    let snapshot = Arc::new(Mutex::new(supervisor.snapshot()));
    let snapshot_shared = Arc::clone(&snapshot);
    let cycles = Arc::new(AtomicU64::new(0));
    let timing = Arc::new(TimingCounters::default());
    let counters = Counters { cycles: Arc::clone(&cycles), timing: Arc::clone(&timing) };
    let join = std::thread::Builder::new().name("stylet-supervisor".into()).spawn(move || {
        let obtained = schedule.map(|s| s.apply_to_current_thread());
        // The epoch is taken once the thread is set up (its stack, policy and core), so the first
        // cycle is not late by the set-up; spawn returns only after it, so cycle k is due k
        // periods after spawn returns (what a lockstep caller counts on).
        let start = clock.now();
        let _ = stx.send(obtained);
        run(supervisor, actuator, clock.as_ref(), start, &inbox, etx, &snapshot_shared, rtx, &counters)
    })?;
    let scheduling = srx.recv().ok().flatten();
    Ok(RunnerHandle {
        mailbox,
        events: Events { rx: erx },
        snapshot,
        cycles,
        timing,
        scheduling,
        retired: Mutex::new(retired),
        join: Some(join),
    })
}

struct Counters {
    cycles: Arc<AtomicU64>,
    timing: Arc<TimingCounters>,
}

#[allow(clippy::too_many_arguments)]
fn run<A: Actuator>(
    supervisor: Supervisor,
    actuator: A,
    clock: &dyn Clock,
    start: Nanos,
    mailbox: &Arc<Mailbox>,
    mut events: rtrb::Producer<RunnerEvent>,
    shared: &Arc<Mutex<Snapshot>>,
    retired: rtrb::Producer<Trajectory>,
    counters: &Counters,
) -> RunReport<A> {
    let mut cycler = Cycler::new(supervisor, actuator);
    cycler.publish_to(Arc::clone(shared));
    cycler.retired = Some(retired);
    let period = cycler.period;
    let mut dropped = 0u64;
    let mut emit = |e: RunnerEvent| {
        if events.push(e).is_err() {
            dropped += 1;
        }
    };
    let mut inbox: VecDeque<Operator> = VecDeque::with_capacity(256);
    let mut k: u64 = 1;
    let mut running = true;
    while running {
        let deadline = start.saturating_add(Nanos(period.0.saturating_mul(k)));
        clock.sleep_until(deadline);
        let late = clock.now().saturating_sub(deadline);
        counters.timing.worst_ns.fetch_max(late.0, Ordering::Relaxed);
        // Only the thread holds the mailbox once every caller has let go: then it ends.
        if Arc::strong_count(mailbox) == 1 {
            inbox.push_back(Operator::Shutdown);
        }
        if let Ok(mut q) = mailbox.queue.try_lock() {
            inbox.extend(q.drain(..));
        }
        running = cycler.cycle(deadline, late, &mut || inbox.pop_front(), &mut emit);
        counters.timing.stalls.store(cycler.stalls, Ordering::Relaxed);
        counters.timing.late.store(cycler.late_cycles, Ordering::Relaxed);
        counters.cycles.fetch_add(1, Ordering::Release);
        k += 1;
    }
    // The loop has ended: nothing is real-time any more, so waiting for the lock is fine, and
    // every answer still waiting goes now.
    if let Ok(mut s) = shared.lock() {
        *s = cycler.snapshot();
    }
    for (reply, r) in cycler.pending.drain(..) {
        let _ = reply.try_send(r);
    }
    mailbox.gone.store(true, Ordering::Release);
    cycler.into_report(dropped)
}
