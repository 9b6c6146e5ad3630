//! One supervisor cycle at a time: what the runner thread runs each period, and what a lockstep
//! simulation steps directly.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use stylet_core::Nanos;

use super::timing::Lateness;
use super::{Operator, Rejected, RunReport, RunnerEvent, Timing};
use crate::command::Actuator;
use crate::state::Command;
use crate::supervisor::{Refusal, Snapshot, Supervisor};
use crate::trajectory::Trajectory;

/// Where a command's answer goes.
pub(super) type Answer = SyncSender<Result<(), Refusal>>;

pub(super) struct Active {
    pub(super) trajectory: Trajectory,
    pub(super) next: usize,
}

/// One supervisor cycle at a time, without a thread: what the runner thread runs each period,
/// and what a lockstep simulation calls directly (virtual time: the caller owns the clock).
#[derive(Debug)]
pub struct Cycler<A> {
    pub(super) sup: Supervisor,
    pub(super) actuator: A,
    pub(super) active: Option<Active>,
    pub(super) period: Nanos,
    pub(super) lateness: Lateness,
    pub(super) stalls: u64,
    pub(super) late_cycles: u64,
    pub(super) in_stall: bool,
    /// Published before a command's answer (the thread's callers read it next).
    pub(super) shared: Option<Arc<Mutex<Snapshot>>>,
    /// Answers waiting for a snapshot to be published first (the lock was busy).
    pub(super) pending: Vec<(Answer, Result<(), Refusal>)>,
    /// Where finished trajectories go to be freed off this thread.
    pub(super) retired: Option<rtrb::Producer<Trajectory>>,
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
    pub(super) fn retire(&mut self, a: Active) {
        if let Some(tx) = &mut self.retired {
            let _ = tx.push(a.trajectory);
        }
    }

    /// Publishes the snapshot without waiting (the thread never blocks on a lock a preempted
    /// caller may hold) and, once it is out, sends the answers that were waiting for it.
    pub(super) fn publish(&mut self) {
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
    pub(super) fn operator(&mut self, deadline: Nanos, m: Operator, emit: &mut dyn FnMut(RunnerEvent)) -> bool {
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
