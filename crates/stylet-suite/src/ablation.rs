//! The ablation device run by hand behind the [`Ablation`] port: Stylet does not drive the
//! generator. The operator starts it at the device when the procedure asks (the console's
//! "start ablation" prompt, answered yes once it runs) and confirms its end at the console
//! ([`AblationEnd`]); the setting, the start and the duration go to the log, and the energy is
//! the setting's power over that time (the generator's own display is the record of what it
//! delivered).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stylet_core::frame::{Ct, Point};
use stylet_procedure::ports::{Ablation, AblationStatus, PortError};

use crate::clock::WallClock;

/// The console's "ablation ended" key: the operator confirms that the generator stopped.
#[derive(Clone, Debug, Default)]
pub struct AblationEnd(Arc<AtomicBool>);

impl AblationEnd {
    /// The operator confirms the end.
    pub fn confirm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, Debug)]
struct Running {
    power_w: f64,
    started_s: f64,
    ended_s: Option<f64>,
}

/// The generator, started and ended by the operator.
#[derive(Debug)]
pub struct ManualAblation {
    clock: WallClock,
    end: AblationEnd,
    running: Option<Running>,
}

impl ManualAblation {
    /// The device timed on `clock`; its end confirmed through `end`.
    #[must_use]
    pub fn new(clock: WallClock, end: AblationEnd) -> Self {
        ManualAblation { clock, end, running: None }
    }
}

impl Ablation for ManualAblation {
    fn start_ablation(&mut self, setting: &stylet_planning::Zone, _tip: Point<Ct>) -> Result<(), PortError> {
        if self.running.is_some() {
            return Err(PortError::Ablation("an ablation is running already".into()));
        }
        // A confirmation given before this start does not end this ablation.
        let _ = self.end.take();
        self.running = Some(Running { power_w: setting.power_w, started_s: self.clock.now_s(), ended_s: None });
        Ok(())
    }

    fn ablation_status(&mut self) -> AblationStatus {
        let Some(r) = self.running.as_mut() else {
            return AblationStatus { elapsed_s: 0.0, energy_j: 0.0, done: false };
        };
        if r.ended_s.is_none() && self.end.take() {
            r.ended_s = Some(self.clock.now_s());
        }
        let elapsed_s = (r.ended_s.unwrap_or_else(|| self.clock.now_s()) - r.started_s).max(0.0);
        AblationStatus { elapsed_s, energy_j: elapsed_s * r.power_w, done: r.ended_s.is_some() }
    }

    fn stop_ablation(&mut self) {
        self.running = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn zone() -> stylet_planning::Zone {
        let devices = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/devices.toml");
        stylet_planning::load_zone(std::path::Path::new(devices), "mwa-generic", "100W-8min").unwrap()
    }

    #[test]
    fn it_runs_until_the_operator_confirms_the_end() {
        let end = AblationEnd::default();
        let mut a = ManualAblation::new(WallClock::start(), end.clone());
        end.confirm(); // pressed before the start: ignored
        a.start_ablation(&zone(), Point::new(0.0, 0.0, 0.0)).unwrap();
        assert!(a.start_ablation(&zone(), Point::new(0.0, 0.0, 0.0)).is_err(), "started twice");
        assert!(!a.ablation_status().done);
        std::thread::sleep(std::time::Duration::from_millis(20));
        end.confirm();
        let s = a.ablation_status();
        assert!(s.done && s.elapsed_s >= 0.02, "{s:?}");
        assert!((s.energy_j - 100.0 * s.elapsed_s).abs() < 1e-9, "{s:?}");
        // The end is fixed once confirmed.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(a.ablation_status(), s);
        a.stop_ablation();
        assert!(!a.ablation_status().done);
    }
}
