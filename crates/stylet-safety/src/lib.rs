//! The safety supervisor: stands between motion generation and the link.
//!
//! - [`Supervisor`]: the pure core, stepped once per cycle with an injected time; it alone
//!   constructs [`SupervisedCommand`], the only type the link sends.
//! - [`Actuator`]: the port it decorates (the serial link, or [`fake::FakeActuator`] in tests).
//! - [`runner`]: the fixed-rate real-time thread that steps the supervisor against an actuator.
//! - [`SafetyConfig`]: every limit, each tagged with the rule it enforces.
//!
//! Faults latch and need an explicit operator [`Command::Reset`] after their cause has cleared;
//! each fault class has a documented [`Reaction`] (see `docs/safety.md`).

mod command;
mod config;
pub mod fake;
mod fault;
pub mod runner;
mod state;
mod supervisor;
pub mod trajectory;

pub use command::{Actuator, ActuatorInput, SupervisedCommand};
pub use config::{SafetyConfig, SoftRange};
pub use fault::{Fault, Reaction};
pub use state::{Command, MotionState};
pub use supervisor::{Cycle, Event, Refusal, Snapshot, Supervisor};
