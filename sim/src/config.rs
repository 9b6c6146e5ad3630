//! `config/sim.toml`: the simulated controller's behaviour.

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{read_toml, Checker, ConfigError};

use crate::faults::FaultSpec;

/// The simulated controller's parameters, in internal units.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Controller id reported in the handshake.
    pub controller_id: u32,
    /// Firmware version reported in the handshake.
    pub firmware: [u8; 3],
    /// State report period, seconds.
    pub state_period_s: f64,
    /// Servo bandwidth, Hz.
    pub servo_bandwidth_hz: f64,
    /// Setpoint latency, seconds.
    pub latency_s: f64,
    /// Encoder counts per revolution (revolute joints).
    pub counts_per_rev: f64,
    /// Encoder counts per mm (prismatic joints).
    pub counts_per_mm: f64,
    /// Encoder noise, standard deviation in counts.
    pub encoder_noise_counts: f64,
    /// Fraction of the current limit drawn at the acceleration limit.
    pub current_fraction_at_acceleration_limit: f64,
    /// Current noise, amperes.
    pub current_noise_a: f64,
    /// Random seed.
    pub seed: u64,
    /// Faults to inject.
    pub faults: Vec<FaultSpec>,
}

impl SimConfig {
    /// Loads `sim.toml`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawSim = read_toml(path)?;
        let mut c = Checker::new();
        let r = &raw.controller;
        let period = c.range("controller.state_period_ms", r.state_period_ms, 0.1, 100.0);
        let bw = c.range("controller.servo_bandwidth_hz", r.servo_bandwidth_hz, 1.0, 500.0);
        let lat = c.range("controller.latency_ms", r.latency_ms, 0.0, 100.0);
        let cpr = c.positive("controller.encoder_counts_per_rev", r.encoder_counts_per_rev);
        let cpm = c.positive("controller.encoder_counts_per_mm", r.encoder_counts_per_mm);
        let noise = c.range("controller.encoder_noise_counts", r.encoder_noise_counts, 0.0, 1000.0);
        let kc = c.range(
            "controller.current_fraction_at_acceleration_limit",
            r.current_fraction_at_acceleration_limit,
            0.0,
            1.0,
        );
        let cn = c.range("controller.current_noise_a", r.current_noise_a, 0.0, 10.0);
        let mut faults = Vec::new();
        for (i, s) in raw.faults.inject.iter().enumerate() {
            match FaultSpec::parse(s) {
                Ok(f) => faults.push(f),
                Err(e) => c.problem(format!("faults.inject[{i}]"), format!("{s:?}"), e.to_string()),
            }
        }
        c.finish(
            path,
            SimConfig {
                controller_id: r.controller_id,
                firmware: r.firmware,
                state_period_s: period * 1e-3,
                servo_bandwidth_hz: bw,
                latency_s: lat * 1e-3,
                counts_per_rev: cpr,
                counts_per_mm: cpm,
                encoder_noise_counts: noise,
                current_fraction_at_acceleration_limit: kc,
                current_noise_a: cn,
                seed: r.seed,
                faults,
            },
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSim {
    controller: RawController,
    faults: RawFaults,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    controller_id: u32,
    firmware: [u8; 3],
    state_period_ms: f64,
    servo_bandwidth_hz: f64,
    latency_ms: f64,
    encoder_counts_per_rev: f64,
    encoder_counts_per_mm: f64,
    encoder_noise_counts: f64,
    current_fraction_at_acceleration_limit: f64,
    current_noise_a: f64,
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    inject: Vec<String>,
}
