//! Where surrogate samples come from: the [`RespirationSource`] trait and its replay and live
//! serial implementations (the simulated breathing model lives in `stylet-sim` and implements it
//! too). Switching between them is the one seam between simulation and a real sensor.
//!
//! Live sensor line format (ASCII, one sample per line, `\n` or `\r\n`):
//!
//! ```text
//! # anything after '#' is a comment; empty lines are ignored
//! <t_ms>,<value_mm>
//! ```
//!
//! `t_ms` is the sensor's own monotonic timestamp in milliseconds (integer or decimal),
//! `value_mm` the surrogate displacement in mm (decimal point, optional sign). A line that does
//! not parse is reported with its line number and skipped; it never ends the stream.

use std::future::Future;

use crate::gate::Sample;
use crate::trace::RowIssue;

/// A source that could not deliver. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum SourceError {
    /// cannot open the respiration sensor {path}: {source}
    Open {
        /// Device path.
        path: String,
        /// Why.
        source: tokio_serial::Error,
    },
    /// reading the respiration sensor {path} failed: {source}
    Read {
        /// Device path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A stream of surrogate samples.
pub trait RespirationSource {
    /// The next sample, waiting for it when the source is live; `None` when a finite source ends.
    fn next_sample(&mut self) -> impl Future<Output = Result<Option<Sample>, SourceError>> + Send;
    /// Lines or rows the source skipped so far, with why.
    fn issues(&self) -> &[RowIssue];
}

/// Parses one sensor line: `Ok(None)` for a blank or comment line.
///
/// # Errors
/// The reason, for a line that is neither.
pub fn parse_sensor_line(line: &str) -> Result<Option<Sample>, String> {
    let body = line.split('#').next().unwrap_or("").trim();
    if body.is_empty() {
        return Ok(None);
    }
    let mut fields = body.split(',');
    let (Some(t), Some(v), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected <t_ms>,<value_mm>, got {body:?}"));
    };
    let t_ms: f64 = t.trim().parse().map_err(|_| format!("t_ms {:?} is not a number", t.trim()))?;
    let value_mm: f64 = v.trim().parse().map_err(|_| format!("value_mm {:?} is not a number", v.trim()))?;
    if !(t_ms.is_finite() && value_mm.is_finite()) {
        return Err(format!("non-finite sample {body:?}"));
    }
    Ok(Some(Sample { t_s: t_ms * 1e-3, value_mm }))
}

/// Replays a recorded signal as fast as it is asked for (the samples carry their own times).
#[derive(Clone, Debug)]
pub struct Replay {
    samples: Vec<Sample>,
    next: usize,
    issues: Vec<RowIssue>,
}

impl Replay {
    /// Replays `t_s`/`value_mm` pairs (e.g. a trace's principal-axis signal).
    #[must_use]
    pub fn new(t_s: &[f64], value_mm: &[f64], issues: Vec<RowIssue>) -> Self {
        let samples = t_s.iter().zip(value_mm).map(|(&t_s, &value_mm)| Sample { t_s, value_mm }).collect();
        Self { samples, next: 0, issues }
    }
}

impl RespirationSource for Replay {
    fn next_sample(&mut self) -> impl Future<Output = Result<Option<Sample>, SourceError>> + Send {
        let s = self.samples.get(self.next).copied();
        self.next += 1;
        std::future::ready(Ok(s))
    }
    fn issues(&self) -> &[RowIssue] {
        &self.issues
    }
}

/// A live sensor on a serial port, read under tokio.
#[derive(Debug)]
pub struct SerialSensor {
    path: String,
    reader: tokio::io::BufReader<tokio_serial::SerialStream>,
    line: String,
    line_no: usize,
    issues: Vec<RowIssue>,
}

impl SerialSensor {
    /// Opens the sensor's device.
    ///
    /// # Errors
    /// [`SourceError::Open`] naming the path.
    pub fn open(path: &str, baud: u32) -> Result<Self, SourceError> {
        let builder = tokio_serial::new(path, baud);
        let stream = tokio_serial::SerialStream::open(&builder)
            .map_err(|source| SourceError::Open { path: path.to_string(), source })?;
        Ok(Self {
            path: path.to_string(),
            reader: tokio::io::BufReader::new(stream),
            line: String::new(),
            line_no: 0,
            issues: Vec::new(),
        })
    }
}

impl RespirationSource for SerialSensor {
    async fn next_sample(&mut self) -> Result<Option<Sample>, SourceError> {
        use tokio::io::AsyncBufReadExt as _;
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .await
                .map_err(|source| SourceError::Read { path: self.path.clone(), source })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            match parse_sensor_line(&self.line) {
                Ok(Some(s)) => return Ok(Some(s)),
                Ok(None) => {}
                Err(reason) => {
                    // Bounded: a sensor spewing garbage must not grow memory without limit.
                    if self.issues.len() < 10_000 {
                        self.issues.push(RowIssue { line: self.line_no, reason });
                    }
                }
            }
        }
    }
    fn issues(&self) -> &[RowIssue] {
        &self.issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sensor_lines() {
        assert_eq!(parse_sensor_line("1500,-2.25\r\n"), Ok(Some(Sample { t_s: 1.5, value_mm: -2.25 })));
        assert_eq!(parse_sensor_line("  # a comment"), Ok(None));
        assert_eq!(parse_sensor_line(""), Ok(None));
        assert_eq!(parse_sensor_line("12.5, 3 # trailing"), Ok(Some(Sample { t_s: 0.0125, value_mm: 3.0 })));
        assert!(parse_sensor_line("1,2,3").unwrap_err().contains("expected"));
        assert!(parse_sensor_line("1;2").unwrap_err().contains("expected"));
        assert!(parse_sensor_line("x,2").unwrap_err().contains("t_ms"));
        assert!(parse_sensor_line("1,NaN").unwrap_err().contains("non-finite"));
    }

    proptest! {
        #[test]
        fn sensor_line_parser_never_panics(s in "\\PC{0,80}") {
            let _ = parse_sensor_line(&s);
        }

        #[test]
        fn sensor_lines_round_trip(t in 0u32..100_000_000, v in -100.0..100.0f64) {
            let line = format!("{t},{v}\n");
            let s = parse_sensor_line(&line).unwrap().unwrap();
            prop_assert!((s.t_s - f64::from(t) * 1e-3).abs() < 1e-9);
            prop_assert_eq!(s.value_mm, v);
        }
    }
}
