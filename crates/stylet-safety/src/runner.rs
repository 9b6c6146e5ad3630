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

/// A trajectory did not start at the commanded position (largest difference {offset:e}); nothing moved.
#[derive(Clone, Copy, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub struct Rejected {
    /// Largest difference from the commanded position, per joint unit.
    pub offset: f64,
}

/// Lateness histogram resolution.
const BUCKET: Nanos = Nanos::from_micros(1);
/// Buckets (1 us each up to 50 ms; later cycles land in the last one).
const BUCKETS: usize = 50_000;

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

/// The runner's timing so far, readable while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Cycles run.
    pub cycles: u64,
    /// Times the thread woke a period or more after a cycle's deadline.
    pub stalls: u64,
    /// Cycles that started a period or more late (each stall's first and its catch-up).
    pub late_cycles: u64,
    /// The latest start since the previous [`RunnerHandle::take_timing`].
    pub worst_lateness: Nanos,
}

#[derive(Debug, Default)]
struct TimingCounters {
    stalls: AtomicU64,
    late: AtomicU64,
    worst_ns: AtomicU64,
}

/// Cycle lateness statistics (how late each cycle started after its deadline).
#[derive(Clone, Debug)]
pub struct Lateness {
    counts: Vec<u32>,
    total: u64,
    max: Nanos,
}

impl Lateness {
    fn new() -> Self {
        Lateness { counts: vec![0; BUCKETS], total: 0, max: Nanos::ZERO }
    }

    fn record(&mut self, late: Nanos) {
        let b = usize::try_from(late.0 / BUCKET.0).unwrap_or(BUCKETS - 1).min(BUCKETS - 1);
        self.counts[b] += 1;
        self.total += 1;
        self.max = self.max.max(late);
    }

    /// Cycles recorded.
    #[must_use]
    pub fn cycles(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), to the bucket's upper edge.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Nanos {
        if self.total == 0 {
            return Nanos::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Nanos(((i as u64) + 1) * BUCKET.0);
            }
        }
        self.max
    }

    /// The latest cycle.
    #[must_use]
    pub fn max(&self) -> Nanos {
        self.max
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

/// Where a command's answer goes.
type Answer = SyncSender<Result<(), Refusal>>;

struct Counters {
    cycles: Arc<AtomicU64>,
    timing: Arc<TimingCounters>,
}

struct Active {
    trajectory: Trajectory,
    next: usize,
}

/// One supervisor cycle at a time, without a thread: what the runner thread runs each period,
/// and what a lockstep simulation calls directly (virtual time: the caller owns the clock).
#[derive(Debug)]
pub struct Cycler<A> {
    sup: Supervisor,
    actuator: A,
    active: Option<Active>,
    period: Nanos,
    lateness: Lateness,
    stalls: u64,
    late_cycles: u64,
    in_stall: bool,
    /// Published before a command's answer (the thread's callers read it next).
    shared: Option<Arc<Mutex<Snapshot>>>,
    /// Answers waiting for a snapshot to be published first (the lock was busy).
    pending: Vec<(Answer, Result<(), Refusal>)>,
    /// Where finished trajectories go to be freed off this thread.
    retired: Option<rtrb::Producer<Trajectory>>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Active {{ samples: {}, next: {} }}", self.trajectory.len(), self.next)
    }
}

impl<A: Actuator> Cycler<A> {
    /// The supervisor in front of `actuator`.
    #[must_use]
    pub fn new(supervisor: Supervisor, actuator: A) -> Self {
        let period = supervisor.config().period;
        Cycler {
            sup: supervisor,
            actuator,
            active: None,
            period,
            lateness: Lateness::new(),
            stalls: 0,
            late_cycles: 0,
            in_stall: false,
            shared: None,
            pending: Vec::new(),
            retired: None,
        }
    }

    /// Publishes every cycle's snapshot to `shared` (never waiting for its lock), and answers a
    /// command only once a snapshot showing it is out.
    pub fn publish_to(&mut self, shared: Arc<Mutex<Snapshot>>) {
        self.shared = Some(shared);
    }

    /// Hands a finished trajectory to the thread that frees it: freeing memory another thread
    /// allocated would take that thread's allocator lock, which a preempted holder could keep
    /// for as long as it is preempted. Freed here only when the channel is full.
    fn retire(&mut self, a: Active) {
        if let Some(tx) = &mut self.retired {
            let _ = tx.push(a.trajectory);
        }
    }

    /// Publishes the snapshot without waiting (the thread never blocks on a lock a preempted
    /// caller may hold) and, once it is out, sends the answers that were waiting for it.
    fn publish(&mut self) {
        let Some(shared) = &self.shared else { return };
        if let Ok(mut s) = shared.try_lock() {
            *s = self.sup.snapshot();
            drop(s);
            for (reply, r) in self.pending.drain(..) {
                let _ = reply.try_send(r);
            }
        }
    }

    /// Runs the cycle due at `deadline`, which started `late`: takes operator messages from
    /// `next` until it has none, polls the actuator, steps the supervisor with the trajectory's
    /// sample and hands the command to the actuator. `false` once a [`Operator::Shutdown`] came.
    pub fn cycle(
        &mut self,
        deadline: Nanos,
        late: Nanos,
        next: &mut dyn FnMut() -> Option<Operator>,
        emit: &mut dyn FnMut(RunnerEvent),
    ) -> bool {
        self.lateness.record(late);
        if late >= self.period {
            self.late_cycles += 1;
            if !self.in_stall {
                self.stalls += 1;
                emit(RunnerEvent::Stall { lateness: late });
            }
        }
        self.in_stall = late >= self.period;
        let mut running = true;
        while let Some(m) = next() {
            if !self.operator(deadline, m, emit) {
                running = false;
            }
        }
        let sup = &mut self.sup;
        self.actuator.poll(&mut |input| sup.handle(deadline, input));
        let request = match &self.active {
            Some(a) if sup.state().accepts_motion() && sup.fault().is_none() => a.trajectory.sample(a.next),
            _ => None,
        };
        let out = sup.cycle(deadline, late, request);
        if let Some(c) = out.command {
            self.actuator.send(c);
        }
        if let Some(a) = self.active.as_mut() {
            if out.consumed {
                a.next += 1;
            }
            let interrupted = sup.fault().is_some() || !sup.state().accepts_motion();
            if interrupted || a.next >= a.trajectory.len() {
                emit(if interrupted {
                    RunnerEvent::TrajectoryInterrupted { at_sample: a.next }
                } else {
                    RunnerEvent::TrajectoryDone
                });
                if let Some(a) = self.active.take() {
                    self.retire(a);
                }
            }
        }
        while let Some(e) = self.sup.pop_event() {
            emit(RunnerEvent::Supervisor(e));
        }
        self.publish();
        running
    }

    /// Handles one operator message at `deadline`; `false` for [`Operator::Shutdown`].
    fn operator(&mut self, deadline: Nanos, m: Operator, emit: &mut dyn FnMut(RunnerEvent)) -> bool {
        match m {
            Operator::Command(c, reply) => {
                let r = self.command(deadline, c, emit);
                if let Some(reply) = reply {
                    if self.shared.is_some() {
                        // A caller that waits for the answer reads the snapshot next: the
                        // answer goes once the snapshot showing the command is published.
                        self.pending.push((reply, r));
                        self.publish();
                    } else {
                        let _ = reply.try_send(r);
                    }
                }
            }
            Operator::Heartbeat => self.sup.heartbeat(deadline),
            Operator::Gate(open) => self.sup.gate(deadline, open),
            Operator::EStop => self.sup.estop(deadline),
            Operator::Execute(t, reply) => {
                let r = self.execute(t, emit);
                if let Some(reply) = reply {
                    let _ = reply.try_send(r);
                }
            }
            Operator::Abort => {
                if let Some(a) = self.active.take() {
                    emit(RunnerEvent::TrajectoryInterrupted { at_sample: a.next });
                    self.retire(a);
                }
            }
            Operator::Shutdown => return false,
        }
        true
    }

    /// A workflow command at `deadline`, with the supervisor's answer.
    ///
    /// # Errors
    /// The supervisor's [`Refusal`].
    pub fn command(&mut self, deadline: Nanos, c: Command, emit: &mut dyn FnMut(RunnerEvent)) -> Result<(), Refusal> {
        let r = self.sup.command(deadline, c);
        // Keep the log in order: the transition before what the next message does.
        while let Some(e) = self.sup.pop_event() {
            emit(RunnerEvent::Supervisor(e));
        }
        r
    }

    /// Takes a trajectory that starts at the commanded position; refuses it otherwise.
    ///
    /// # Errors
    /// [`Rejected`] with the largest difference from the commanded position.
    pub fn execute(&mut self, t: Trajectory, emit: &mut dyn FnMut(RunnerEvent)) -> Result<(), Rejected> {
        let commanded = self.sup.commanded();
        let offset = t
            .start()
            .iter()
            .zip(commanded)
            .map(|(a, b)| (a - b).abs())
            .fold(if t.start().len() == commanded.len() { 0.0 } else { f64::INFINITY }, f64::max);
        if offset > 1e-9 {
            emit(RunnerEvent::TrajectoryRejected { offset });
            Err(Rejected { offset })
        } else {
            emit(RunnerEvent::TrajectoryStarted { samples: t.len() });
            if let Some(old) = self.active.replace(Active { trajectory: t, next: 0 }) {
                self.retire(old);
            }
            Ok(())
        }
    }

    /// Whether a trajectory is being followed.
    #[must_use]
    pub fn is_moving(&self) -> bool {
        self.active.is_some()
    }

    /// The supervisor's snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.sup.snapshot()
    }

    /// The supervisor.
    #[must_use]
    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    /// The actuator.
    #[must_use]
    pub fn actuator(&self) -> &A {
        &self.actuator
    }

    /// The actuator, to change it (a simulated world injects faults through it).
    pub fn actuator_mut(&mut self) -> &mut A {
        &mut self.actuator
    }

    /// Lateness statistics so far.
    #[must_use]
    pub fn lateness(&self) -> &Lateness {
        &self.lateness
    }

    /// Stalls and late cycles so far (the worst lateness over the whole run).
    #[must_use]
    pub fn timing(&self) -> Timing {
        Timing {
            cycles: self.lateness.cycles(),
            stalls: self.stalls,
            late_cycles: self.late_cycles,
            worst_lateness: self.lateness.max(),
        }
    }

    /// Ends: the actuator handed back with the run's figures.
    #[must_use]
    pub fn into_report(self, events_dropped: u64) -> RunReport<A> {
        let snapshot = self.sup.snapshot();
        RunReport {
            actuator: self.actuator,
            snapshot,
            lateness: self.lateness,
            events_dropped,
            stalls: self.stalls,
            late_cycles: self.late_cycles,
        }
    }
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
