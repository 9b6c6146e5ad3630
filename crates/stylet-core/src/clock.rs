//! The injected clock. Every timed behaviour (deadlines, watchdogs, rate loops, gating) asks a
//! [`Clock`] for the time instead of reading the system clock, so tests drive a [`MockClock`]
//! forward and assert what happens at each instant, without sleeping.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A monotonic instant in nanoseconds since the clock's own epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

impl Nanos {
    /// Zero, the clock's epoch.
    pub const ZERO: Nanos = Nanos(0);

    /// From milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms.saturating_mul(1_000_000))
    }

    /// From microseconds.
    #[must_use]
    pub const fn from_micros(us: u64) -> Nanos {
        Nanos(us.saturating_mul(1_000))
    }

    /// From a [`Duration`], saturating at `u64::MAX` nanoseconds (584 years).
    #[must_use]
    pub fn from_duration(d: Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Whole microseconds.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// Seconds as a float.
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-9
    }

    /// `self - earlier`, or zero when `earlier` is later.
    #[must_use]
    pub const fn saturating_sub(self, earlier: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating.
    #[must_use]
    pub const fn saturating_add(self, d: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(d.0))
    }
}

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Nanos;

    /// Blocks until `deadline` (a real clock sleeps; the mock clock jumps there).
    fn sleep_until(&self, deadline: Nanos);
}

/// The real monotonic clock, with its epoch at construction.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    #[must_use]
    pub fn new() -> Self {
        MonotonicClock { epoch: Instant::now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

/// How long before a deadline the real clock stops sleeping and spins: the kernel's sleep
/// granularity on a loaded 2-core machine is a few tens of microseconds.
const SPIN_WINDOW: Duration = Duration::from_micros(80);

impl Clock for MonotonicClock {
    fn now(&self) -> Nanos {
        Nanos::from_duration(self.epoch.elapsed())
    }

    fn sleep_until(&self, deadline: Nanos) {
        let target = self.epoch + Duration::from_nanos(deadline.0);
        loop {
            let now = Instant::now();
            if now >= target {
                return;
            }
            let left = target - now;
            if left > SPIN_WINDOW {
                std::thread::sleep(left - SPIN_WINDOW);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// `sleep_until` blocks until the test has advanced the time to the deadline, so a thread that
/// paces itself on this clock (the supervisor's loop) runs in lockstep with the test.
#[derive(Clone, Debug, Default)]
pub struct MockClock {
    now: Arc<(Mutex<u64>, Condvar)>,
}

impl MockClock {
    /// A mock clock at its epoch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d`, waking every sleeper whose deadline has come.
    pub fn advance(&self, d: Nanos) {
        let (lock, cv) = &*self.now;
        let mut now = lock.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.saturating_add(d.0);
        cv.notify_all();
    }

    /// Sets the time (never backwards: an earlier value is ignored, as a monotonic clock would).
    pub fn set(&self, t: Nanos) {
        let (lock, cv) = &*self.now;
        let mut now = lock.lock().unwrap_or_else(PoisonError::into_inner);
        *now = (*now).max(t.0);
        cv.notify_all();
    }
}

impl Clock for MockClock {
    fn now(&self) -> Nanos {
        let (lock, _) = &*self.now;
        Nanos(*lock.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn sleep_until(&self, deadline: Nanos) {
        let (lock, cv) = &*self.now;
        let mut now = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while *now < deadline.0 {
            now = cv.wait(now).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_moves_only_when_told_and_never_backwards() {
        let clock = MockClock::new();
        let shared = clock.clone();
        assert_eq!(clock.now(), Nanos::ZERO);
        clock.advance(Nanos::from_millis(5));
        assert_eq!(shared.now(), Nanos(5_000_000));
        clock.set(Nanos::from_millis(1));
        assert_eq!(clock.now(), Nanos::from_millis(5));
        // A deadline already passed returns at once.
        shared.sleep_until(Nanos::from_millis(4));
    }

    #[test]
    fn mock_clock_sleeper_wakes_only_when_time_reaches_its_deadline() {
        let clock = MockClock::new();
        let sleeper = clock.clone();
        let woke = Arc::new(Mutex::new(None));
        let woke2 = Arc::clone(&woke);
        let t = std::thread::spawn(move || {
            sleeper.sleep_until(Nanos::from_millis(10));
            *woke2.lock().unwrap() = Some(sleeper.now());
        });
        clock.advance(Nanos::from_millis(9));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(*woke.lock().unwrap(), None, "woke before its deadline");
        clock.advance(Nanos::from_millis(1));
        t.join().unwrap();
        assert_eq!(*woke.lock().unwrap(), Some(Nanos::from_millis(10)));
    }

    #[test]
    fn real_clock_sleeps_until_the_deadline() {
        let clock = MonotonicClock::new();
        let deadline = clock.now().saturating_add(Nanos::from_micros(300));
        clock.sleep_until(deadline);
        assert!(clock.now() >= deadline);
    }
}
