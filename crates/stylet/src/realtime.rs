//! The control loop on this host: the simulated controller (when simulated), the serial link and
//! the supervisor's runner, each scheduled as `config/realtime.toml` asks, and the report of what
//! the host granted (printed by bringup, demo and bench loop, and logged).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{json, Value};
use stylet_core::{Clock, MonotonicClock};
use stylet_link::{Link, LinkOptions, LinkStats, MuteSwitch};
use stylet_protocol::ControllerInfo;
use stylet_rt::{MemoryLock, Obtained, Prepared, RealtimeConfig, Role};
use stylet_safety::runner::{self, RunnerHandle};
use stylet_safety::{SafetyConfig, Supervisor};

use crate::simcmd::InProcessSim;

/// Reads `CONFIG/realtime.toml` and prepares this process (real-time core, heavy work off it,
/// memory lock). Call it before any worker thread starts.
pub(crate) fn prepare(config: &Path, memory: MemoryLock) -> anyhow::Result<Prepared> {
    Ok(RealtimeConfig::load_dir(config)?.prepare_process(memory))
}

/// The link's counters, as the reports print them: what a fault of HAZ-9 (link errors) was made of.
pub(crate) fn link_counts(stats: &LinkStats) -> Value {
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "frames_sent": n(&stats.frames_sent),
        "frames_received": n(&stats.frames_received),
        "decode_errors": n(&stats.decode_errors),
        "send_queue_full": n(&stats.send_queue_full),
        "input_queue_full": n(&stats.input_queue_full),
    })
}

/// What the control loop's threads obtained.
#[derive(Clone, Debug)]
pub(crate) struct Scheduling {
    process: stylet_rt::ProcessReport,
    runner: Option<Obtained>,
    link: Option<Obtained>,
    controller: Option<Obtained>,
    driver: Option<Obtained>,
}

impl Scheduling {
    /// What the procedure driver's thread obtained (a wall-clock run).
    pub(crate) fn set_driver(&mut self, o: Obtained) {
        self.driver = Some(o);
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "runner": self.runner,
            "link": self.link,
            "simulated_controller": self.controller,
            "driver": self.driver,
            "realtime_core": self.process.realtime_core,
            "heavy_work_cores": self.process.heavy_work_cores,
            "memory_locked": self.process.memory_locked,
            "kernel_input_workers": self.process.input_workers,
            "cpu_wakeup_latency_us": self.process.cpu_wakeup_latency_us,
            "kernel_workqueue_cores": self.process.kernel_workqueue_cores,
            "refused": self.refused(),
            "how_to_grant": self.policy_refused().then(|| stylet_rt::how_to_grant(self.max_priority())),
        })
    }

    /// Everything refused, each once.
    fn refused(&self) -> Vec<String> {
        let mut all = self.process.refused.clone();
        for o in self.threads() {
            for r in &o.refused {
                if !all.contains(r) {
                    all.push(r.clone());
                }
            }
        }
        all
    }

    fn threads(&self) -> impl Iterator<Item = &Obtained> {
        [&self.runner, &self.link, &self.controller, &self.driver].into_iter().flatten()
    }

    /// Whether any thread was refused its real-time policy.
    fn policy_refused(&self) -> bool {
        self.threads().any(Obtained::policy_refused)
    }

    fn max_priority(&self) -> u8 {
        self.threads().map(|o| o.asked_priority).max().unwrap_or(0)
    }

    /// One line for a human report and the procedure log.
    pub(crate) fn line(&self) -> String {
        let show = |o: &Option<Obtained>| o.as_ref().map_or_else(|| "as started".to_string(), Obtained::summary);
        let mut line = format!("real-time: runner {}, link {}", show(&self.runner), show(&self.link));
        if self.controller.is_some() {
            line.push_str(&format!(", simulated controller {}", show(&self.controller)));
        }
        if self.driver.is_some() {
            line.push_str(&format!(", driver {}", show(&self.driver)));
        }
        line.push_str(&format!(
            "; heavy work on cores {:?}; memory {}; kernel input workers {}; core wake-up latency {}",
            self.process.heavy_work_cores,
            self.process.memory_locked.map_or_else(|| "not locked".to_string(), |m| format!("locked ({m})")),
            match (&self.process.input_workers, &self.process.kernel_workqueue_cores) {
                (Some(w), Some(c)) => format!("{w} (unbound workqueues on cores {c:?})"),
                (Some(w), None) => w.clone(),
                (None, _) => "as the kernel has them".to_string(),
            },
            self.process
                .cpu_wakeup_latency_us
                .map_or_else(|| "as the host has it".to_string(), |us| format!("held at {us} µs"))
        ));
        for r in self.refused() {
            line.push_str(&format!("\n  refused: {r}"));
        }
        if self.policy_refused() {
            line.push_str(&format!("\n  to grant it: {}", stylet_rt::how_to_grant(self.max_priority())));
        }
        line
    }
}

/// The supervisor in front of a controller: the runner's handle and what came with it.
pub(crate) struct ControlLoop {
    pub(crate) h: RunnerHandle<Link>,
    pub(crate) sim: Option<InProcessSim>,
    pub(crate) info: ControllerInfo,
    pub(crate) stats: Arc<LinkStats>,
    pub(crate) mute: MuteSwitch,
    pub(crate) scheduling: Scheduling,
}

/// Starts the control loop against the controller on `port` (device, baud), or against a simulated controller on a new pty in
/// this process (with `faults`) when `port` is `None`.
pub(crate) fn start(
    rt: &Prepared,
    config: &Path,
    cfg: &SafetyConfig,
    port: Option<(&str, u32)>,
    faults: &[String],
) -> anyhow::Result<ControlLoop> {
    // The supervisor first: nothing is opened on limits out of their bounds.
    let supervisor = Supervisor::new(cfg.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let sim = match port {
        Some(_) => None,
        None => Some(InProcessSim::start(config, faults, Some(rt.schedule(Role::Controller)))?),
    };
    let path = match (port, &sim) {
        (Some((p, _)), _) => p.to_string(),
        (None, Some(s)) => s.path.clone(),
        (None, None) => anyhow::bail!("no controller"),
    };
    let baud = port.map_or(LinkOptions::default().baud, |(_, b)| b);
    let options = LinkOptions { baud, schedule: Some(rt.schedule(Role::Link)), ..LinkOptions::default() };
    let link = Link::open(&path, &options).with_context(|| format!("connecting to the controller on {path}"))?;
    let (info, stats, mute) = (link.info(), link.stats(), link.mute_switch());
    let link_sched = link.scheduling().cloned();
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let h = runner::spawn_with(supervisor, link, clock, Some(rt.schedule(Role::Runner)))
        .context("starting the supervisor thread")?;
    let scheduling = Scheduling {
        process: rt.report.clone(),
        runner: h.scheduling().cloned(),
        link: link_sched,
        controller: sim.as_ref().and_then(|s| s.scheduling.clone()),
        driver: None,
    };
    Ok(ControlLoop { h, sim, info, stats, mute, scheduling })
}

/// The hypervisor's steal on the real-time threads' cores during a run that started at `base`
/// (docs/safety.md, "Latency budget"): in all, the most within any 100 ms, and, when a fault
/// latched at `fault_t_ms` (same time base), within the 300 ms before it.
pub(crate) fn steal_json(rt: &Prepared, base: std::time::Instant, fault_t_ms: Option<f64>) -> Value {
    let stolen = rt.stolen(base);
    let worst_100ms = stolen.iter().map(|s| stylet_rt::steal::around(&stolen, s.t_ms, 100.0, 0.0)).max().unwrap_or(0);
    json!({
        "total_ms": stolen.iter().map(|s| s.ms).sum::<u64>(),
        "worst_100ms_ms": worst_100ms,
        "before_fault_ms": fault_t_ms.map(|t| stylet_rt::steal::around(&stolen, t, 300.0, 20.0)),
        "events": stolen.iter().take(200).collect::<Vec<_>>(),
    })
}

/// The order of a timing sample's values in the procedure log.
const TIMING_VALUES: [&str; 7] = ["cycles", "stalls", "late_cycles", "p50_us", "p99_us", "p999_us", "max_us"];

fn us(n: stylet_core::Nanos) -> f64 {
    (n.as_secs_f64() * 1e7).round() / 10.0
}

/// A lateness quantile: the histogram bucket's upper edge, never above the largest lateness seen.
fn quantile(l: &runner::Lateness, q: f64) -> stylet_core::Nanos {
    l.quantile(q).min(l.max())
}

/// The runner's timing as a procedure-log sample (`cycle_stall` at each stall, without the
/// lateness quantiles; `cycle_timing` at the end, with them).
pub(crate) fn timing_sample(
    name: &str,
    t: &runner::Timing,
    lateness: Option<&runner::Lateness>,
) -> stylet_recorder::Event {
    let cycles = lateness.map_or(t.cycles, runner::Lateness::cycles);
    let mut values = vec![cycles as f64, t.stalls as f64, t.late_cycles as f64];
    if let Some(l) = lateness {
        values.extend([us(quantile(l, 0.5)), us(quantile(l, 0.99)), us(quantile(l, 0.999)), us(l.max())]);
    }
    stylet_recorder::Event::Sample { name: name.into(), values }
}

/// A timing sample's values by name (for `stylet replay`).
pub(crate) fn timing_from_sample(values: &[f64]) -> Value {
    Value::Object(TIMING_VALUES.iter().zip(values).map(|(k, v)| ((*k).to_string(), json!(v))).collect())
}

/// The runner's timing at the end of a run: recorded in the procedure log (`cycle_timing`) at
/// `t_s`, and returned for the JSON summary with the largest gap between controller states.
/// `kept` is the runner's own count where the caller took it, else the report's is used.
pub(crate) fn final_timing<A>(
    run: &runner::RunReport<A>,
    kept: Option<runner::Timing>,
    rec: &stylet_recorder::Recorder,
    t_s: f64,
) -> Value {
    let t = kept.unwrap_or(runner::Timing {
        cycles: run.lateness.cycles(),
        stalls: run.stalls,
        late_cycles: run.late_cycles,
        worst_lateness: run.lateness.max(),
    });
    rec.record(t_s, timing_sample("cycle_timing", &t, Some(&run.lateness)));
    let mut timing = timing_json(&t, &run.lateness);
    timing["max_state_gap_ms"] = json!(run.snapshot.max_state_gap_ms);
    timing
}

/// The runner's timing for a JSON summary.
pub(crate) fn timing_json(t: &runner::Timing, l: &runner::Lateness) -> Value {
    json!({
        "cycles": l.cycles(), "stalls": t.stalls, "late_cycles": t.late_cycles,
        "lateness_us": { "p50": us(quantile(l, 0.5)), "p99": us(quantile(l, 0.99)), "p999": us(quantile(l, 0.999)), "max": us(l.max()) },
    })
}
