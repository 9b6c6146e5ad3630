//! The simulated motor controller.
//!
//! It speaks the device side of the wire protocol on a real pty, so the host connects to an
//! ordinary device path exactly as it would to hardware (the one seam between simulation and
//! hardware is the device path). The [`controller::Controller`] model is pure (time is passed in);
//! [`pty::serve`] is the I/O edge. [`monitor::WireMonitor`] independently checks every setpoint
//! that reaches the controller against the envelope and counts violations.

pub mod breathing;
pub mod config;
pub mod controller;
pub mod faults;
pub mod lockstep;
pub mod monitor;
pub mod patient;
pub mod phantom;
pub mod post_ablation;
pub mod pty;
pub mod scenario;
pub mod truth;
pub mod wire;
pub mod world;

pub use config::SimConfig;
pub use controller::Controller;
pub use faults::{FaultKind, FaultSpec};
pub use monitor::{MonitorReport, WireMonitor};
