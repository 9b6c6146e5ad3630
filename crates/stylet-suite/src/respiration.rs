//! The respiratory sensor on a serial port behind the [`Respiration`] port.
//!
//! The sensor sends lines `<t_ms>,<value_mm>` (docs/respiration.md) stamped with its own clock.
//! A thread reads them (`stylet_respiration::SerialSensor`) and stamps each with its arrival on
//! the procedure clock; [`ClockSync`] maps the sensor's clock onto the procedure's through the
//! smallest delay seen in a sliding window, so a sample's time is when it was taken, not when
//! the serial line and the scheduler happened to hand it over. A sensor that goes away (unplugged,
//! its line closed) is reported and reopened every second; without samples the gate goes stale
//! and stays closed (RESP-2).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use stylet_procedure::ports::Respiration;
use stylet_respiration::{RespirationSource as _, Sample, SerialSensor};

use crate::clock::WallClock;
use crate::site::SerialSite;

/// Lines that did not parse reported one by one, before they are only counted.
const ISSUES_REPORTED: usize = 10;

/// The sensor could not be started. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum SensorError {
    /// the respiratory sensor on {port}: {reason}
    Start {
        /// The device.
        port: String,
        /// Why.
        reason: String,
    },
}

/// How a sensor timestamp lands on the procedure clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mapped {
    /// At this procedure time, s.
    At(f64),
    /// At this time, after the sensor's clock went back (it restarted): the mapping began anew.
    Resynchronised(f64),
    /// Not after the previous sample (a repeated timestamp): dropped.
    Dropped,
}

/// Maps the sensor's clock onto the procedure clock: time = sensor time + the smallest
/// (arrival - sensor time) seen within `window_s` of arrivals. The smallest delay is the one
/// the line added least to; the window lets the mapping follow a sensor clock that runs slow.
/// Mapped times increase strictly and never exceed the arrival.
#[derive(Clone, Debug)]
pub struct ClockSync {
    window_s: f64,
    /// (arrival, offset), offsets increasing from front to back: the front is the window's least.
    offsets: VecDeque<(f64, f64)>,
    last_sensor_s: Option<f64>,
    last_mapped_s: f64,
}

impl ClockSync {
    /// A mapping over a `window_s` sliding window.
    #[must_use]
    pub fn new(window_s: f64) -> Self {
        ClockSync { window_s, offsets: VecDeque::new(), last_sensor_s: None, last_mapped_s: f64::NEG_INFINITY }
    }

    /// Maps one sample taken at `sensor_s` (sensor clock) that arrived at `arrived_s`.
    pub fn map(&mut self, sensor_s: f64, arrived_s: f64) -> Mapped {
        let went_back = self.last_sensor_s.is_some_and(|l| sensor_s < l);
        if self.last_sensor_s == Some(sensor_s) {
            return Mapped::Dropped;
        }
        if went_back {
            self.offsets.clear();
        }
        self.last_sensor_s = Some(sensor_s);
        let offset = arrived_s - sensor_s;
        while self.offsets.back().is_some_and(|&(_, o)| o >= offset) {
            self.offsets.pop_back();
        }
        self.offsets.push_back((arrived_s, offset));
        while self.offsets.front().is_some_and(|&(a, _)| a < arrived_s - self.window_s) {
            self.offsets.pop_front();
        }
        let least = self.offsets.front().map_or(offset, |&(_, o)| o);
        let t = sensor_s + least;
        if t <= self.last_mapped_s {
            return Mapped::Dropped;
        }
        self.last_mapped_s = t;
        if went_back {
            Mapped::Resynchronised(t)
        } else {
            Mapped::At(t)
        }
    }
}

/// What the reading thread hands over.
#[derive(Debug)]
enum Reading {
    Sample { sample: Sample, arrived_s: f64 },
    Unreadable { line: usize, reason: String },
    Lost(String),
    Back,
}

/// The sensor behind the [`Respiration`] port.
#[derive(Debug)]
pub struct SensorRespiration {
    port: String,
    readings: Receiver<Reading>,
    sync: ClockSync,
    pending: VecDeque<Sample>,
    notices: Vec<String>,
    unreadable: usize,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SensorRespiration {
    /// Opens the sensor at `site` and starts reading it, stamping samples on `clock`.
    ///
    /// # Errors
    /// [`SensorError::Start`] when the device cannot be opened (naming it).
    pub fn open(site: &SerialSite, clock: WallClock) -> Result<Self, SensorError> {
        let (tx, readings) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (port, baud, halt) = (site.port.clone(), site.baud, Arc::clone(&stop));
        let start = |reason: String| SensorError::Start { port: site.port.clone(), reason };
        let thread = std::thread::Builder::new()
            .name("stylet-resp-sensor".into())
            .spawn(move || read(&port, baud, clock, &tx, &ready_tx, &halt))
            .map_err(|e| start(format!("cannot start its thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(start(reason)),
            Err(_) => return Err(start("its thread ended".into())),
        }
        Ok(SensorRespiration {
            port: site.port.clone(),
            readings,
            sync: ClockSync::new(10.0),
            pending: VecDeque::new(),
            notices: Vec::new(),
            unreadable: 0,
            stop,
            thread: Some(thread),
        })
    }

    fn take(&mut self) {
        while let Ok(r) = self.readings.try_recv() {
            match r {
                Reading::Sample { sample, arrived_s } => match self.sync.map(sample.t_s, arrived_s) {
                    Mapped::At(t_s) => self.pending.push_back(Sample { t_s, ..sample }),
                    Mapped::Resynchronised(t_s) => {
                        self.notices.push(format!(
                            "{}: the sensor's clock went back (restarted?); its samples are timed anew",
                            self.port
                        ));
                        self.pending.push_back(Sample { t_s, ..sample });
                    }
                    Mapped::Dropped => {}
                },
                Reading::Unreadable { line, reason } => {
                    self.unreadable += 1;
                    if self.unreadable <= ISSUES_REPORTED {
                        self.notices.push(format!("{}: line {line} skipped: {reason}", self.port));
                    } else if self.unreadable.is_power_of_two() {
                        self.notices.push(format!("{}: {} lines skipped so far", self.port, self.unreadable));
                    }
                }
                Reading::Lost(why) => self
                    .notices
                    .push(format!("{}: the sensor is gone ({why}); the gate stays closed until it is back", self.port)),
                Reading::Back => self.notices.push(format!("{}: the sensor is back", self.port)),
            }
        }
    }
}

impl Respiration for SensorRespiration {
    fn samples(&mut self, now_s: f64, sink: &mut dyn FnMut(Sample)) {
        self.take();
        while self.pending.front().is_some_and(|s| s.t_s <= now_s) {
            if let Some(s) = self.pending.pop_front() {
                sink(s);
            }
        }
    }

    fn respiration_notices(&mut self, sink: &mut dyn FnMut(String)) {
        self.take();
        for n in self.notices.drain(..) {
            sink(n);
        }
    }
}

impl Drop for SensorRespiration {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The thread ends at its next sample or reopening attempt; it is not waited for (a
        // silent sensor would hold the caller).
        drop(self.thread.take());
    }
}

/// The reading thread: open (the first result goes to `ready`), read until the sensor goes,
/// report it, reopen every second until `stop` or until nobody listens.
fn read(
    port: &str,
    baud: u32,
    clock: WallClock,
    tx: &Sender<Reading>,
    ready: &Sender<Result<(), String>>,
    stop: &AtomicBool,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start its reader: {e}")));
            return;
        }
    };
    rt.block_on(async {
        let mut first = true;
        loop {
            let mut sensor = match SerialSensor::open(port, baud) {
                Ok(s) => s,
                Err(e) if first => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
            };
            if first {
                let _ = ready.send(Ok(()));
                first = false;
            } else if tx.send(Reading::Back).is_err() {
                return;
            }
            let mut issues = 0;
            let why = loop {
                let next = sensor.next_sample().await;
                for i in sensor.issues().iter().skip(issues) {
                    if tx.send(Reading::Unreadable { line: i.line, reason: i.reason.clone() }).is_err() {
                        return;
                    }
                }
                issues = sensor.issues().len();
                match next {
                    Ok(Some(sample)) => {
                        if tx.send(Reading::Sample { sample, arrived_s: clock.now_s() }).is_err()
                            || stop.load(Ordering::SeqCst)
                        {
                            return;
                        }
                    }
                    Ok(None) => break "its line closed".to_string(),
                    Err(e) => break e.to_string(),
                }
            };
            if tx.send(Reading::Lost(why)).is_err() {
                return;
            }
            drop(sensor);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_least_delay_in_the_window_times_the_samples() {
        let mut s = ClockSync::new(10.0);
        // The sensor's clock is 100 s ahead of the procedure's; the line delays 30, 5, 10 ms.
        assert!(matches!(s.map(100.0, 0.030), Mapped::At(t) if (t - 0.030).abs() < 1e-12));
        // Less delay than the first: timed better now, but not after the first sample: dropped.
        assert_eq!(s.map(100.010, 0.015), Mapped::Dropped);
        assert!(matches!(s.map(100.040, 0.050), Mapped::At(t) if (t - 0.045).abs() < 1e-12));
        // 12 s later the 5 ms delay left the window: the least delay is again what the window saw.
        assert!(matches!(s.map(112.0, 12.050), Mapped::At(t) if (t - 12.050).abs() < 1e-12));
        assert!(matches!(s.map(112.010, 12.070), Mapped::At(t) if (t - 12.060).abs() < 1e-12));
    }

    #[test]
    fn a_repeated_timestamp_is_dropped_and_a_clock_going_back_resynchronises() {
        let mut s = ClockSync::new(10.0);
        assert_eq!(s.map(50.0, 1.0), Mapped::At(1.0));
        assert_eq!(s.map(50.0, 1.01), Mapped::Dropped);
        assert_eq!(s.map(0.5, 2.0), Mapped::Resynchronised(2.0));
        assert!(matches!(s.map(0.6, 2.2), Mapped::At(t) if (t - 2.1).abs() < 1e-12));
    }

    proptest! {
        #[test]
        fn mapped_times_increase_and_never_pass_the_arrival(
            steps in proptest::collection::vec((0.0..0.05f64, 0.0..0.2f64, 0u8..40), 1..300),
        ) {
            let mut s = ClockSync::new(2.0);
            let (mut sensor, mut arrival, mut last) = (1000.0, 0.0, f64::NEG_INFINITY);
            for (dt, delay, jump) in steps {
                // Now and then the sensor restarts (its clock back to zero) or stutters.
                sensor = match jump { 0 => 0.0, 1 => sensor, _ => sensor + dt.max(1e-4) };
                arrival += dt.max(1e-4);
                let arrived = arrival + delay;
                match s.map(sensor, arrived) {
                    Mapped::At(t) | Mapped::Resynchronised(t) => {
                        prop_assert!(t > last && t <= arrived + 1e-9, "{t} after {last}, arrived {arrived}");
                        last = t;
                    }
                    Mapped::Dropped => {}
                }
            }
        }
    }
}
