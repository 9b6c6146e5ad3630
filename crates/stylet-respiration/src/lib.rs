//! Respiration: from a surrogate signal to "may the needle advance now, and where is the target".
//!
//! - [`conditioning`]: any sensor to the processor's input: resampled to the working rate,
//!   calibrated to millimetres (or scaled from its breathing amplitude when uncalibrated).
//! - [`trace`]: readers for recorded breathing traces (Krilavicius marker CSVs with their quirks,
//!   plain `t_s,value` CSV), every bad row reported by line number.
//! - [`predict`]: causal predictors of the surrogate at the system latency (hold, wavelet-RLS,
//!   pattern matching, and their accuracy-weighted blend).
//! - [`gate`]: the processor: amplitude, end-exhale baseline, period and phase online; breath-hold
//!   detection; the gate decision on the predicted signal (RESP-1..3) with its reason and deadline.
//! - [`correlation`]: surrogate -> target displacement (with hysteresis) from checkpoint CTs.
//! - [`eval`]: scoring on recorded traces (`stylet resp eval`); [`cv`]: cross-validation by
//!   recording (`--cv`).
//! - [`source`]: the [`RespirationSource`] seam: replay, a live serial sensor (line format there),
//!   and in `stylet-sim` the simulated breathing model.
//!
//! Everything but [`source`] is pure: time comes with the samples and with each `decide(now)` call.

pub mod conditioning;
pub mod config;
pub mod correlation;
pub mod cv;
pub mod eval;
pub mod gate;
pub mod predict;
pub mod source;
pub mod trace;

pub use conditioning::{Calibration, Conditioner, Scale};
pub use config::{GateMode, Method, OnDrift, RespirationConfig};
pub use correlation::{CorrelationError, CorrelationModel, Observation};
pub use gate::{BreathingEstimate, GateOutput, GateReason, Respiration, Sample, SampleRefused};
pub use source::{parse_sensor_line, Replay, RespirationSource, SerialSensor, SourceError};
pub use trace::{parse_csv, parse_krilavicius, read_trace, RowIssue, Trace, TraceError, TraceFormat};
