//! Real-time scheduling for the threads that keep the arm's timing (docs/safety.md, "Latency
//! budget"; rule HAZ-11).
//!
//! Three threads carry the control loop: the supervisor's runner, the serial link's I/O thread
//! and, in simulation, the simulated controller (it stands for the controller's microcontroller,
//! so a fault in simulation means a host fault, not a starved simulator). Each asks for a
//! real-time policy at its configured priority and for the real-time core; the process keeps its
//! heavy work (CT decoding, rendering, planning, needle detection, telemetry encoding) on the
//! other cores and locks its memory. What was obtained is read back from the kernel and
//! reported; what was refused says why and how to grant it, and the run goes on.
//!
//! Everything here goes through maintained crates (`thread-priority`, `nix`): no `unsafe`.

use std::fmt;
use std::sync::Arc;

mod config;
pub mod input_workers;
pub mod steal;
pub use config::{CoreChoice, MemoryLock, Policy, RealtimeConfig, Role};
pub use input_workers::InputWorkers;
pub use steal::{StealMonitor, Stolen};

use serde::Serialize;

impl RealtimeConfig {
    /// Prepares the calling process: picks the real-time core, moves the calling thread (and so
    /// every thread it starts from now on, which inherit its mask) off that core when `isolate`
    /// is set, locks memory, and keeps the kernel's serial input workers at their priority while
    /// the returned [`Prepared`] (or a clone) lives. Call it first thing, before any worker
    /// thread starts.
    #[must_use]
    pub fn prepare_process(&self, memory: MemoryLock) -> Prepared {
        let mut refused = Vec::new();
        let allowed = allowed_cores();
        let core = match self.core {
            CoreChoice::Unpinned => None,
            CoreChoice::Last => allowed.last().copied(),
            CoreChoice::Index(i) if allowed.contains(&i) => Some(i),
            CoreChoice::Index(i) => {
                refused.push(format!(
                    "core {i} is not among this process's cores {allowed:?}: the real-time threads are not pinned"
                ));
                None
            }
        };
        let mut heavy_work_cores = allowed.clone();
        if let (true, Some(rt)) = (self.isolate, core) {
            let others: Vec<usize> = allowed.iter().copied().filter(|c| *c != rt).collect();
            if others.is_empty() {
                refused.push(format!(
                    "only core {rt} is available: heavy work shares it with the real-time threads (their policy still preempts it)"
                ));
            } else {
                match set_affinity(&others) {
                    Ok(()) => heavy_work_cores = others,
                    Err(e) => refused.push(format!("keeping heavy work off core {rt} refused ({e})")),
                }
            }
        }
        let memory_locked = if self.lock_memory {
            match lock_memory(memory) {
                Ok(()) => Some(memory),
                Err(e) => {
                    refused.push(e);
                    None
                }
            }
        } else {
            None
        };
        let wakeup = self.cpu_wakeup_latency_us.and_then(|us| match hold_wakeup_latency(us) {
            Ok(f) => Some((us, Arc::new(f))),
            Err(e) => {
                refused.push(e);
                None
            }
        });
        // The unbound workqueues kept on the heavy-work cores (when the real-time core is kept
        // for the real-time threads), their workers raised.
        let keep_on = (heavy_work_cores.len() < allowed.len()).then_some(heavy_work_cores.as_slice());
        let workers =
            (self.input_workers_priority > 0).then(|| InputWorkers::start(self.input_workers_priority, keep_on));
        let mut workqueue_cores = None;
        let workers = match workers {
            Some(w) => {
                let r = w.report();
                refused.extend(r.workqueue_refused);
                match r.refused {
                    // Dropped at once: the mask it wrote is put back.
                    Some(why) => {
                        refused.push(why);
                        None
                    }
                    None => {
                        workqueue_cores = r.workqueue_cores;
                        Some(Arc::new(w))
                    }
                }
            }
            None => None,
        };
        Prepared {
            cfg: *self,
            report: ProcessReport {
                realtime_core: core,
                heavy_work_cores,
                memory_locked: memory_locked.map(|m| match m {
                    MemoryLock::CurrentAndFuture => "current and future mappings",
                    MemoryLock::Current => "mappings at start",
                }),
                input_workers: workers.as_ref().map(|_| format!("SCHED_FIFO {}", self.input_workers_priority)),
                cpu_wakeup_latency_us: wakeup.as_ref().map(|w| w.0),
                kernel_workqueue_cores: workqueue_cores,
                refused,
            },
            _workers: workers,
            _wakeup: wakeup.map(|w| w.1),
            steal: StealMonitor::start().map(Arc::new),
        }
    }
}

/// What [`RealtimeConfig::prepare_process`] did for the process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessReport {
    /// The core the real-time threads are pinned to.
    pub realtime_core: Option<usize>,
    /// Where heavy work (and every other thread) runs.
    pub heavy_work_cores: Vec<usize>,
    /// What memory is locked, if any.
    pub memory_locked: Option<&'static str>,
    /// The policy the kernel's serial input workers are kept at, if any.
    pub input_workers: Option<String>,
    /// The wake-up latency every core is held to (PM QoS), µs, if any.
    pub cpu_wakeup_latency_us: Option<u32>,
    /// The cores the kernel's unbound workqueues are kept on (off the real-time core), if they are.
    pub kernel_workqueue_cores: Option<Vec<usize>>,
    /// What was asked for and refused, with how to grant it.
    pub refused: Vec<String>,
}

/// A prepared process: hands out each real-time thread's schedule.
#[derive(Clone, Debug)]
pub struct Prepared {
    cfg: RealtimeConfig,
    /// What was done for the process.
    pub report: ProcessReport,
    /// Held for the kernel's input workers to stay raised (put back when the last clone drops).
    _workers: Option<Arc<InputWorkers>>,
    /// Held open for the PM QoS request to last.
    _wakeup: Option<Arc<std::fs::File>>,
    steal: Option<Arc<StealMonitor>>,
}

impl Prepared {
    /// The hypervisor's steal so far on the cores of the real-time threads (the real-time core and
    /// the simulated controller's), timed from `base`; empty on bare metal.
    #[must_use]
    pub fn stolen(&self, base: std::time::Instant) -> Vec<Stolen> {
        let mut cores: Vec<usize> =
            [Role::Runner, Role::Controller].iter().filter_map(|r| self.schedule(*r).core).collect();
        if cores.is_empty() {
            cores = allowed_cores();
        }
        self.steal.as_ref().map_or_else(Vec::new, |m| m.since(base, &cores))
    }

    /// What a thread in `role` asks for. The runner and the link share the real-time core; the
    /// simulated controller stands for hardware of its own, so it runs on another core when
    /// there is one (a simulator on the host's real-time core would take the host's time).
    #[must_use]
    pub fn schedule(&self, role: Role) -> ThreadSchedule {
        let rt = self.report.realtime_core;
        let (priority, core) = match role {
            Role::Runner => (self.cfg.runner_priority, rt),
            Role::Link => (self.cfg.link_priority, rt),
            Role::Controller => (
                self.cfg.controller_priority,
                rt.map(|c| self.report.heavy_work_cores.iter().copied().find(|o| *o != c).unwrap_or(c)),
            ),
            Role::Driver => (self.cfg.driver_priority, None),
        };
        ThreadSchedule { policy: self.cfg.policy, priority, core }
    }
}

/// What one thread asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSchedule {
    /// Policy.
    pub policy: Policy,
    /// Priority within the policy.
    pub priority: u8,
    /// Core to pin to.
    pub core: Option<usize>,
}

impl ThreadSchedule {
    /// Applies the schedule to the calling thread and reads back what it got.
    #[must_use]
    pub fn apply_to_current_thread(&self) -> Obtained {
        let mut refused = Vec::new();
        if self.policy != Policy::Normal {
            if let Err(e) = set_policy(self.policy, self.priority) {
                refused.push(policy_refusal(self.policy, self.priority, &e));
            }
        }
        let mut core = None;
        if let Some(c) = self.core {
            match set_affinity(&[c]) {
                Ok(()) => core = Some(c),
                Err(e) => refused.push(format!("pinning to core {c} refused ({e})")),
            }
        }
        let (policy, priority) = current_policy();
        Obtained { policy, priority, core, asked_priority: self.priority, refused }
    }
}

/// What a thread obtained, read back from the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Obtained {
    /// The policy in force (SCHED_FIFO, SCHED_RR, SCHED_OTHER, ...).
    pub policy: &'static str,
    /// The priority in force.
    pub priority: i32,
    /// The core the thread is pinned to.
    pub core: Option<usize>,
    /// The priority asked for.
    pub asked_priority: u8,
    /// What was asked for and refused.
    pub refused: Vec<String>,
}

impl Obtained {
    /// Whether the thread runs under a real-time policy.
    #[must_use]
    pub fn is_realtime(&self) -> bool {
        matches!(self.policy, "SCHED_FIFO" | "SCHED_RR")
    }

    /// Whether a real-time policy was asked for and not granted.
    #[must_use]
    pub fn policy_refused(&self) -> bool {
        self.asked_priority > 0 && !self.is_realtime()
    }

    /// Policy, priority (when real-time) and core, without the refusals.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = self.policy.to_string();
        if self.is_realtime() {
            s.push_str(&format!(" {}", self.priority));
        }
        match self.core {
            Some(c) => s.push_str(&format!(" on core {c}")),
            None => s.push_str(" on any core"),
        }
        s
    }
}

impl fmt::Display for Obtained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())?;
        for r in &self.refused {
            write!(f, "; {r}")?;
        }
        Ok(())
    }
}

/// The cores the calling thread may run on, in order.
#[must_use]
pub fn allowed_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)).collect(),
    }
}

fn set_affinity(cores: &[usize]) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for c in cores {
        set.set(*c).map_err(|e| e.desc().to_string())?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| e.desc().to_string())
}

fn set_policy(policy: Policy, priority: u8) -> Result<(), thread_priority::Error> {
    use thread_priority::unix::{RealtimeThreadSchedulePolicy as Rt, ThreadSchedulePolicy as P};
    let p = match policy {
        Policy::Fifo => P::Realtime(Rt::Fifo),
        Policy::RoundRobin => P::Realtime(Rt::RoundRobin),
        Policy::Normal => return Ok(()),
    };
    let value = thread_priority::ThreadPriorityValue::try_from(priority.min(99))
        .map_err(|_| thread_priority::Error::Priority("priority out of range"))?;
    thread_priority::unix::set_thread_priority_and_policy(
        thread_priority::unix::thread_native_id(),
        thread_priority::ThreadPriority::Crossplatform(value),
        p,
    )
}

/// Puts the calling thread in the background (SCHED_IDLE: it runs only when nothing else of
/// normal or real-time priority wants its core). For heavy work beside a procedure (CT rendering,
/// needle detection, planning, IK), so that it cannot delay the kernel's normal-priority workers
/// that carry the serial line's bytes to the control loop (docs/safety.md, "Latency budget").
/// Threads it starts inherit it. Whether the policy took.
pub fn background_current_thread() -> bool {
    use thread_priority::unix::{NormalThreadSchedulePolicy as N, ThreadSchedulePolicy as P};
    thread_priority::unix::set_thread_priority_and_policy(
        thread_priority::unix::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        P::Normal(N::Idle),
    )
    .is_ok()
        && current_policy().0 == "SCHED_IDLE"
}

fn current_policy() -> (&'static str, i32) {
    use thread_priority::unix::ThreadSchedulePolicy as P;
    use thread_priority::unix::{NormalThreadSchedulePolicy as N, RealtimeThreadSchedulePolicy as Rt};
    match thread_priority::unix::thread_schedule_policy_param(thread_priority::unix::thread_native_id()) {
        Ok((policy, params)) => {
            let name = match policy {
                P::Realtime(Rt::Fifo) => Policy::Fifo.name(),
                P::Realtime(Rt::RoundRobin) => Policy::RoundRobin.name(),
                P::Realtime(Rt::Deadline) => "SCHED_DEADLINE",
                P::Normal(N::Batch) => "SCHED_BATCH",
                P::Normal(N::Idle) => "SCHED_IDLE",
                P::Normal(N::Other) => Policy::Normal.name(),
            };
            (name, params.sched_priority)
        }
        Err(_) => ("unknown", 0),
    }
}

fn limit(resource: nix::sys::resource::Resource) -> String {
    let show = |v: u64| if v == u64::MAX { "unlimited".to_string() } else { v.to_string() };
    match nix::sys::resource::getrlimit(resource) {
        Ok((soft, hard)) => format!("soft {}, hard {}", show(soft), show(hard)),
        Err(e) => format!("unreadable: {}", e.desc()),
    }
}

fn policy_refusal(policy: Policy, priority: u8, e: &thread_priority::Error) -> String {
    let why = match e {
        thread_priority::Error::OS(code) => nix::errno::Errno::from_raw(*code).desc().to_string(),
        other => other.to_string(),
    };
    format!("{} priority {priority} refused ({why}): running at normal priority", policy.name())
}

/// How to let a process have real-time priorities up to `priority` (for a report whose threads
/// were refused their policy).
#[must_use]
pub fn how_to_grant(priority: u8) -> String {
    format!(
        "grant CAP_SYS_NICE (`setcap cap_sys_nice+ep $(command -v stylet)`) or an rtprio limit of at least {priority} \
         (limits.conf `USER - rtprio {priority}`; a container needs `--cap-add SYS_NICE --ulimit rtprio={priority}`); \
         RLIMIT_RTPRIO now {}",
        limit(nix::sys::resource::Resource::RLIMIT_RTPRIO)
    )
}

/// Asks the kernel (PM QoS, `/dev/cpu_dma_latency`) to keep every core able to wake within `us`
/// while the returned file stays open: with 0 an idle core polls instead of entering an idle
/// state, which on bare metal takes tens to hundreds of µs to leave, and in a virtual machine
/// halts the virtual core to the hypervisor, which may then run something else on it (this
/// project's CI VM counted ~5 % steal on the real-time core at 1 kHz wake-ups, 1 % with it).
/// The cost is idle cores at full power while a control loop runs.
fn hold_wakeup_latency(us: u32) -> Result<std::fs::File, String> {
    use std::io::Write as _;
    let path = "/dev/cpu_dma_latency";
    let refused = |e: std::io::Error| {
        format!(
            "holding the cores' wake-up latency at {us} µs refused ({path}: {e}): idle cores may sleep deeply              (it needs write access to {path}, root by default)"
        )
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(refused)?;
    f.write_all(&i32::try_from(us).unwrap_or(i32::MAX).to_ne_bytes()).map_err(refused)?;
    Ok(f)
}

fn lock_memory(memory: MemoryLock) -> Result<(), String> {
    use nix::sys::mman::MlockAllFlags as F;
    let flags = match memory {
        MemoryLock::CurrentAndFuture => F::MCL_CURRENT | F::MCL_FUTURE,
        MemoryLock::Current => F::MCL_CURRENT,
    };
    nix::sys::mman::mlockall(flags).map_err(|e| {
        format!(
            "memory lock refused ({}): grant CAP_IPC_LOCK (`setcap cap_ipc_lock+ep $(command -v stylet)`) or raise \
             the memlock limit (`ulimit -l unlimited`, limits.conf `USER - memlock unlimited`; RLIMIT_MEMLOCK now {} bytes); \
             pages may be paged out",
            e.desc(),
            limit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("stylet-rt-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("realtime.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn repository_config_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let c = RealtimeConfig::load_dir(&dir).unwrap();
        assert_eq!(c.policy, Policy::Fifo);
        assert!(c.controller_priority > c.runner_priority && c.runner_priority > c.link_priority);
        assert!(c.input_workers_priority > 0 && c.input_workers_priority < c.link_priority);
        assert!(c.driver_priority > 0 && c.driver_priority < c.input_workers_priority);
        assert_eq!(c.cpu_wakeup_latency_us, Some(0));
    }

    #[test]
    fn bad_values_are_named() {
        let p = write(
            "rule = \"HAZ-11\"\npolicy = \"fifo\"\nrunner_priority = 0\nlink_priority = 120\ncontroller_priority = 50\ndriver_priority = 0\n\
             core = \"middle\"\nisolate = true\nlock_memory = false\n\
             input_workers_priority = 120\ncpu_wakeup_latency_us = -1\n",
        );
        let e = RealtimeConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("`runner_priority` = 0"), "{e}");
        assert!(e.contains("`link_priority` = 120"), "{e}");
        assert!(e.contains("`driver_priority` = 0"), "{e}");
        assert!(e.contains("`core` = \"middle\""), "{e}");
        assert!(e.contains("`input_workers_priority` = 120"), "{e}");
        assert!(e.contains("`cpu_wakeup_latency_us` = -1"), "{e}");
    }

    #[test]
    fn a_normal_thread_reports_what_it_has() {
        // Not pinned, no real-time request: the thread reports SCHED_OTHER, nothing refused.
        let got = std::thread::spawn(|| {
            ThreadSchedule { policy: Policy::Normal, priority: 0, core: None }.apply_to_current_thread()
        })
        .join()
        .unwrap();
        assert_eq!(got.policy, "SCHED_OTHER");
        assert!(got.refused.is_empty(), "{got:?}");
        assert!(!got.is_realtime());
    }

    #[test]
    fn a_realtime_request_is_obtained_or_refused_with_how_to_grant_it() {
        let core = *allowed_cores().last().unwrap();
        let got = std::thread::spawn(move || {
            ThreadSchedule { policy: Policy::Fifo, priority: 10, core: Some(core) }.apply_to_current_thread()
        })
        .join()
        .unwrap();
        assert_eq!(got.core, Some(core), "{got:?}");
        if got.is_realtime() {
            assert_eq!((got.policy, got.priority), ("SCHED_FIFO", 10));
            assert!(got.refused.is_empty(), "{got:?}");
        } else {
            assert!(got.refused[0].contains("SCHED_FIFO priority 10 refused"), "{got:?}");
            assert!(how_to_grant(10).contains("RLIMIT_RTPRIO"));
        }
        assert!(got.to_string().starts_with(got.policy), "{got}");
    }
}

#[cfg(test)]
mod background_tests {
    #[test]
    fn a_background_thread_runs_at_sched_idle_and_its_children_inherit_it() {
        let (own, child) = std::thread::spawn(|| {
            let own = super::background_current_thread();
            let child = std::thread::spawn(|| super::current_policy().0).join().unwrap_or("?");
            (own, child)
        })
        .join()
        .unwrap_or((false, "?"));
        assert!(own, "SCHED_IDLE needs no privilege");
        assert_eq!(child, "SCHED_IDLE");
        assert_ne!(super::current_policy().0, "SCHED_IDLE", "the caller's own thread is untouched");
    }
}
