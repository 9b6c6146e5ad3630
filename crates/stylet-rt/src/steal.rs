//! The hypervisor's steal, per core, while a control loop runs: the time a virtual machine's core
//! wanted to run and the hypervisor ran something else. Nothing inside the machine prevents it,
//! and a real-time thread stolen for longer than the lateness limit latches HAZ-11 like any late
//! cycle; reported beside the faults so that a fault the host's hypervisor caused can be told from
//! one the host caused (docs/safety.md, "Latency budget").
//!
//! Read from `/proc/stat` (its steal column, in 10 ms ticks) every [`SAMPLE_PERIOD`] by a
//! normal-priority thread; on bare metal it stays 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often `/proc/stat` is read.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(10);

/// Steal seen on one core between two samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stolen {
    /// When it was seen, ms after the time base given to [`StealMonitor::since`].
    pub t_ms: f64,
    /// The core.
    pub core: usize,
    /// How much, ms (a multiple of the 10 ms tick).
    pub ms: u64,
}

/// Per-core steal ticks in `/proc/stat`'s text.
#[must_use]
pub fn parse_steal(stat: &str) -> Vec<(usize, u64)> {
    stat.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let core: usize = w.next()?.strip_prefix("cpu")?.parse().ok()?;
            // user nice system idle iowait irq softirq steal
            let steal: u64 = w.nth(7)?.parse().ok()?;
            Some((core, steal))
        })
        .collect()
}

fn read() -> Option<Vec<(usize, u64)>> {
    std::fs::read_to_string("/proc/stat").ok().map(|s| parse_steal(&s))
}

struct Shared {
    seen: Mutex<Vec<(Instant, usize, u64)>>,
    stop: AtomicBool,
}

/// Records the steal on every core from its start until it is dropped.
pub struct StealMonitor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StealMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StealMonitor").finish_non_exhaustive()
    }
}

/// At most this many steal records are kept (a long procedure on a busy hypervisor).
const MAX_RECORDS: usize = 10_000;

impl StealMonitor {
    /// Starts sampling; `None` where `/proc/stat` cannot be read.
    #[must_use]
    pub fn start() -> Option<Self> {
        let mut last = read()?;
        let shared = Arc::new(Shared { seen: Mutex::new(Vec::new()), stop: AtomicBool::new(false) });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("stylet-steal".into())
            .spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(SAMPLE_PERIOD);
                    let Some(now) = read() else { continue };
                    let t = Instant::now();
                    let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
                    for ((core, ticks), (_, before)) in now.iter().zip(&last) {
                        if ticks > before && seen.len() < MAX_RECORDS {
                            seen.push((t, *core, (ticks - before) * 10));
                        }
                    }
                    last = now;
                }
            })
            .ok()?;
        Some(StealMonitor { shared, thread: Some(thread) })
    }

    /// The steal seen so far on `cores`, timed from `base`.
    #[must_use]
    pub fn since(&self, base: Instant, cores: &[usize]) -> Vec<Stolen> {
        let seen = self.shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .filter(|(_, c, _)| cores.contains(c))
            .map(|(t, core, ms)| Stolen {
                t_ms: (t.saturating_duration_since(base).as_secs_f64() * 1e4).round() / 10.0,
                core: *core,
                ms: *ms,
            })
            .collect()
    }
}

impl Drop for StealMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Steal within `[t_ms - before_ms, t_ms + after_ms]`, ms.
#[must_use]
pub fn around(stolen: &[Stolen], t_ms: f64, before_ms: f64, after_ms: f64) -> u64 {
    stolen.iter().filter(|s| s.t_ms >= t_ms - before_ms && s.t_ms <= t_ms + after_ms).map(|s| s.ms).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn steal_is_read_per_core() {
        let stat = "cpu  151369 0 16282 47181 537 0 115 3363 0 0\ncpu0 75548 0 8192 23551 195 0 14 1641 0 0\n\
                    cpu1 75821 0 8089 23630 342 0 101 1721 0 0\nintr 1 2 3\n";
        assert_eq!(parse_steal(stat), vec![(0, 1641), (1, 1721)]);
    }

    #[test]
    fn steal_is_summed_around_a_moment() {
        let s = |t_ms, ms| Stolen { t_ms, core: 1, ms };
        let stolen = [s(100.0, 10), s(480.0, 20), s(520.0, 10), s(900.0, 10)];
        assert_eq!(around(&stolen, 500.0, 300.0, 30.0), 30);
        assert_eq!(around(&stolen, 50.0, 300.0, 30.0), 0);
    }

    #[test]
    fn the_monitor_runs_and_stops() {
        let m = StealMonitor::start().unwrap();
        std::thread::sleep(SAMPLE_PERIOD * 3);
        let all: Vec<usize> = (0..1024).collect();
        assert!(m.since(Instant::now(), &all).iter().all(|s| s.ms % 10 == 0));
        drop(m);
    }
}
