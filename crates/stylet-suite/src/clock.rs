//! The procedure clock in the CT suite: monotonic seconds since the procedure started, shared
//! by every adapter that stamps what it receives (sensor samples, CT arrivals, the ablation).

use std::time::{Duration, Instant};

use stylet_procedure::ports::Clock;

/// The wall clock behind the [`Clock`] port: `wait` sleeps, and time runs while the driver
/// computes (it keeps pumping the supervisor meanwhile).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    epoch: Instant,
}

impl WallClock {
    /// A clock whose zero is now.
    #[must_use]
    pub fn start() -> Self {
        WallClock { epoch: Instant::now() }
    }

    /// Its zero.
    #[must_use]
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Seconds since the zero.
    #[must_use]
    pub fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

impl Clock for WallClock {
    fn now_s(&self) -> f64 {
        WallClock::now_s(self)
    }
    fn wait(&mut self, dt_s: f64) {
        if dt_s.is_finite() && dt_s > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(dt_s.min(1.0)));
        }
    }
    fn runs_while_computing(&self) -> bool {
        true
    }
}
