//! Shared foundations of the Stylet stack.
//!
//! - [`frame`]: points and rigid transforms tagged with their coordinate frame, so that
//!   `robot_from_ct * tip_in_ct` compiles and `robot_from_ct * tip_in_robot` does not.
//! - [`units`]: the internal length unit (millimetre) and conversions at the edges.
//! - [`clock`]: the injected monotonic clock, real and mock.
//! - [`config`]: strict TOML loading (unknown keys rejected, values range-checked, errors name
//!   file, key and value) and the robot description every other crate reads.

pub mod clock;
pub mod config;
pub mod frame;
pub mod units;

pub use clock::{Clock, MockClock, MonotonicClock, Nanos};
