//! `config/realtime.toml`: the policy, priorities, core and host tuning asked for.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stylet_core::config::{read_toml, Checker, ConfigError};

/// The scheduling policy asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// SCHED_FIFO: runs until it blocks; preempts every normal thread.
    Fifo,
    /// SCHED_RR: like FIFO, time-sliced among threads of equal priority.
    RoundRobin,
    /// No real-time request (SCHED_OTHER).
    Normal,
}

impl Policy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Policy::Fifo => "SCHED_FIFO",
            Policy::RoundRobin => "SCHED_RR",
            Policy::Normal => "SCHED_OTHER",
        }
    }
}

/// Which core the real-time threads share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreChoice {
    /// The highest-numbered core this process may use.
    Last,
    /// This core.
    Index(usize),
    /// No pinning.
    Unpinned,
}

/// The threads that keep the arm's timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The supervisor's fixed-rate thread.
    Runner,
    /// The serial link's I/O thread.
    Link,
    /// The simulated motor controller's thread (standing for the controller's microcontroller).
    Controller,
    /// The procedure driver's thread in a wall-clock run: it sends the operator's heartbeat
    /// (HAZ-8) and the respiratory gate (RESP-2) every tick, so it runs above normal load, below
    /// the kernel's serial input workers; not pinned (it runs where heavy work may).
    Driver,
}

/// How the process locks its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryLock {
    /// Every page mapped now and later (controller-only processes: bring-up, the simulated
    /// controller, the loop bench).
    CurrentAndFuture,
    /// The pages mapped now: code, libraries, the stacks and heap so far (processes that also
    /// decode CTs and plan, whose large working buffers come and go).
    Current,
}

/// `config/realtime.toml`: what the real-time threads ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// Policy of the real-time threads.
    pub policy: Policy,
    /// Runner priority (1..=99 for FIFO and RR).
    pub runner_priority: u8,
    /// Link I/O thread priority.
    pub link_priority: u8,
    /// Simulated controller priority.
    pub controller_priority: u8,
    /// The procedure driver's priority in a wall-clock run.
    pub driver_priority: u8,
    /// The real-time core.
    pub core: CoreChoice,
    /// Keep heavy work off the real-time core.
    pub isolate: bool,
    /// Lock the process's memory.
    pub lock_memory: bool,
    /// The priority the kernel's serial input workers are kept at while a control loop runs
    /// ([`input_workers`]); 0 leaves them as they are.
    pub input_workers_priority: u8,
    /// The most a core may take to wake while a control loop runs (PM QoS), µs; `None` leaves it.
    pub cpu_wakeup_latency_us: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealtime {
    #[allow(dead_code)]
    rule: String,
    policy: Policy,
    runner_priority: i64,
    link_priority: i64,
    controller_priority: i64,
    driver_priority: i64,
    core: toml_core::RawCore,
    isolate: bool,
    lock_memory: bool,
    input_workers_priority: i64,
    #[serde(default)]
    cpu_wakeup_latency_us: Option<i64>,
}

mod toml_core {
    use serde::Deserialize;

    /// `core = "last"`, `core = "none"` or `core = 3`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum RawCore {
        Name(String),
        Index(i64),
    }
}

impl RealtimeConfig {
    /// Loads `DIR/realtime.toml`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load_dir(dir: &Path) -> Result<Self, ConfigError> {
        Self::load(&dir.join("realtime.toml"))
    }

    /// Loads a realtime config file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawRealtime = read_toml(path)?;
        let mut c = Checker::new();
        let (lo, hi) = if raw.policy == Policy::Normal { (0, 0) } else { (1, 99) };
        let mut prio = |key: &str, v: i64| {
            if !(lo..=hi).contains(&v) {
                c.problem(key, v, format!("must be within [{lo}, {hi}] for policy {:?}", raw.policy));
            }
            u8::try_from(v.clamp(0, 99)).unwrap_or(0)
        };
        let runner_priority = prio("runner_priority", raw.runner_priority);
        let link_priority = prio("link_priority", raw.link_priority);
        let controller_priority = prio("controller_priority", raw.controller_priority);
        let driver_priority = prio("driver_priority", raw.driver_priority);
        let input_workers_priority = if raw.policy == Policy::Normal || raw.input_workers_priority == 0 {
            0
        } else if (1..i64::from(link_priority)).contains(&raw.input_workers_priority) {
            u8::try_from(raw.input_workers_priority).unwrap_or(0)
        } else {
            c.problem(
                "input_workers_priority",
                raw.input_workers_priority,
                format!("must be 0 (leave them) or within [1, {}] (below link_priority)", i64::from(link_priority) - 1),
            );
            0
        };
        let core = match raw.core {
            toml_core::RawCore::Name(n) if n == "last" => CoreChoice::Last,
            toml_core::RawCore::Name(n) if n == "none" => CoreChoice::Unpinned,
            toml_core::RawCore::Name(n) => {
                c.problem("core", format!("{n:?}"), "must be \"last\", \"none\" or a core number");
                CoreChoice::Unpinned
            }
            toml_core::RawCore::Index(i) => match usize::try_from(i) {
                Ok(i) if i < 1024 => CoreChoice::Index(i),
                _ => {
                    c.problem("core", i, "must be a core number within [0, 1023]");
                    CoreChoice::Unpinned
                }
            },
        };
        let cpu_wakeup_latency_us = raw.cpu_wakeup_latency_us.and_then(|v| match u32::try_from(v) {
            Ok(us) if us <= 1_000_000 => Some(us),
            _ => {
                c.problem("cpu_wakeup_latency_us", v, "must be within [0, 1000000] µs (or left out)");
                None
            }
        });
        if raw.policy != Policy::Normal && input_workers_priority > 0 && driver_priority >= input_workers_priority {
            c.problem(
                "driver_priority",
                driver_priority,
                format!("must be below input_workers_priority ({input_workers_priority}): the driver must not delay the line's bytes"),
            );
        }
        let cfg = RealtimeConfig {
            policy: raw.policy,
            runner_priority,
            link_priority,
            controller_priority,
            driver_priority,
            core,
            isolate: raw.isolate,
            lock_memory: raw.lock_memory,
            input_workers_priority,
            cpu_wakeup_latency_us,
        };
        c.finish(path, cfg)
    }

    /// No real-time request, no pinning, no memory lock (unit tests, and tools that drive no arm).
    #[must_use]
    pub fn disabled() -> Self {
        RealtimeConfig {
            policy: Policy::Normal,
            runner_priority: 0,
            link_priority: 0,
            controller_priority: 0,
            driver_priority: 0,
            core: CoreChoice::Unpinned,
            isolate: false,
            lock_memory: false,
            input_workers_priority: 0,
            cpu_wakeup_latency_us: None,
        }
    }
}
