//! Respiration: from a surrogate signal to "may the needle advance now, and where is the target".
//!
//! So far: [`trace`], readers for recorded breathing traces (the Krilavicius marker CSVs with their
//! quirks, and a plain `t_s,value` CSV), with every bad row reported by line number.

pub mod trace;

pub use trace::{parse_csv, parse_krilavicius, read_trace, RowIssue, Trace, TraceError, TraceFormat};
