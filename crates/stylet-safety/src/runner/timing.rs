//! The runner's timing: stalls, late cycles and the lateness histogram.

use std::sync::atomic::AtomicU64;

use stylet_core::Nanos;

/// Lateness histogram resolution.
const BUCKET: Nanos = Nanos::from_micros(1);
/// Buckets (1 us each up to 50 ms; later cycles land in the last one).
const BUCKETS: usize = 50_000;

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
pub(super) struct TimingCounters {
    pub(super) stalls: AtomicU64,
    pub(super) late: AtomicU64,
    pub(super) worst_ns: AtomicU64,
}

/// Cycle lateness statistics (how late each cycle started after its deadline).
#[derive(Clone, Debug)]
pub struct Lateness {
    pub(super) counts: Vec<u32>,
    pub(super) total: u64,
    pub(super) max: Nanos,
}

impl Lateness {
    pub(super) fn new() -> Self {
        Lateness { counts: vec![0; BUCKETS], total: 0, max: Nanos::ZERO }
    }

    pub(super) fn record(&mut self, late: Nanos) {
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
