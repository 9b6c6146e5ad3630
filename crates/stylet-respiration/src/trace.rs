//! Recorded breathing traces.
//!
//! - Krilavicius CSV (`"Frame";"Timestamp";"x";"y";"z"`, `;` separated, decimal commas, mm): the
//!   time base is `Frame / 60` s (a 60 Hz camera counter); the Timestamp column (ms, but seconds in
//!   a few rows of some recordings) is only cross-checked. The all-zero terminator row is dropped.
//! - Plain CSV: `t_s,value` per line (or one value per line at `# rate_hz = N`), optional header,
//!   `#` comments; `# unit = counts` or the header's suffix (`t_s,belt_counts`) names the unit of
//!   a 1-D sensor (mm by default).
//!
//! Bad rows (wrong field count, unparsable or non-finite numbers, time going backwards or standing
//! still) are skipped and reported with their line number; they are never silently dropped and
//! never fatal, unless nothing usable remains.

use nalgebra::{Matrix3, Vector3};

/// A row that was skipped or corrected, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RowIssue {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A trace: sample times and 3-D positions (plain CSV traces have the value in x, y = z = 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Sample times, seconds, strictly increasing.
    pub t_s: Vec<f64>,
    /// Positions, mm (in `unit` when that is not "mm": a 1-D sensor's own unit).
    pub xyz_mm: Vec<[f64; 3]>,
    /// The values' unit: "mm", or a sensor's own ("counts", "V", ...).
    pub unit: String,
    /// Rows skipped or noted.
    pub issues: Vec<RowIssue>,
}

/// A trace that could not be read at all. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum TraceError {
    /// cannot read {path}: {reason}
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// {path}: no usable samples ({issues} rows rejected)
    Empty {
        /// The file.
        path: String,
        /// Rows rejected.
        issues: usize,
    },
}

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// Krilavicius marker CSV.
    Krilavicius,
    /// Plain `t_s,value`.
    Csv,
}

/// The format of a trace file's text: a Krilavicius marker CSV names its `Frame` column in its
/// header; anything else is read as plain CSV.
#[must_use]
pub fn detect_format(text: &str) -> TraceFormat {
    if text.lines().next().is_some_and(|l| l.contains("Frame")) {
        TraceFormat::Krilavicius
    } else {
        TraceFormat::Csv
    }
}

/// Reads a trace file in the format its text shows ([`detect_format`]).
///
/// # Errors
/// A [`TraceError`].
pub fn read_trace_any(path: &std::path::Path) -> Result<Trace, TraceError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| TraceError::Read { path: name.clone(), reason: e.to_string() })?;
    match detect_format(&text) {
        TraceFormat::Krilavicius => parse_krilavicius(&name, &text),
        TraceFormat::Csv => parse_csv(&name, &text),
    }
}

/// Reads a trace file.
///
/// # Errors
/// A [`TraceError`].
pub fn read_trace(path: &std::path::Path, format: TraceFormat) -> Result<Trace, TraceError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| TraceError::Read { path: name.clone(), reason: e.to_string() })?;
    match format {
        TraceFormat::Krilavicius => parse_krilavicius(&name, &text),
        TraceFormat::Csv => parse_csv(&name, &text),
    }
}

fn decimal_comma(s: &str) -> Option<f64> {
    let v: f64 = s.trim().trim_matches('"').replace(',', ".").parse().ok()?;
    v.is_finite().then_some(v)
}

/// Keeps strictly increasing times; reports the rest.
fn push(out: &mut Trace, line: usize, t: f64, p: [f64; 3]) {
    match out.t_s.last() {
        Some(&last) if t <= last => out.issues.push(RowIssue {
            line,
            reason: format!("time {t:.4} s does not advance past {last:.4} s (duplicate or backwards)"),
        }),
        _ => {
            out.t_s.push(t);
            out.xyz_mm.push(p);
        }
    }
}

/// Parses a Krilavicius CSV.
///
/// # Errors
/// [`TraceError::Empty`] when no row is usable.
pub fn parse_krilavicius(path: &str, text: &str) -> Result<Trace, TraceError> {
    let mut out = Trace { t_s: Vec::new(), xyz_mm: Vec::new(), unit: "mm".into(), issues: Vec::new() };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let row = raw.trim();
        if row.is_empty() || (i == 0 && row.contains("Frame")) {
            continue;
        }
        let f: Vec<&str> = row.split(';').collect();
        if f.len() != 5 {
            out.issues.push(RowIssue { line, reason: format!("{} fields, expected 5: {row:?}", f.len()) });
            continue;
        }
        let nums: Vec<Option<f64>> = f.iter().map(|x| decimal_comma(x)).collect();
        let [Some(frame), Some(stamp), Some(x), Some(y), Some(z)] = [nums[0], nums[1], nums[2], nums[3], nums[4]]
        else {
            out.issues.push(RowIssue { line, reason: format!("a field is not a finite number: {row:?}") });
            continue;
        };
        if frame == 0.0 && stamp == 0.0 && x == 0.0 && y == 0.0 && z == 0.0 {
            out.issues.push(RowIssue { line, reason: "all-zero terminator row dropped".into() });
            continue;
        }
        let t = frame / 60.0;
        // The Timestamp should be ms on the frame clock; some rows carry another unit (seconds).
        if (stamp / 1000.0 - t).abs() > 1.0 {
            out.issues.push(RowIssue {
                line,
                reason: format!(
                    "Timestamp {stamp} disagrees with Frame / 60 = {t:.3} s (not in ms; time taken from Frame)"
                ),
            });
        }
        push(&mut out, line, t, [x, y, z]);
    }
    if out.t_s.is_empty() {
        return Err(TraceError::Empty { path: path.into(), issues: out.issues.len() });
    }
    Ok(out)
}

/// Parses a plain CSV: `t_s,value` per line, or one `value` per line at a rate given in a
/// comment. Before the rows, comments `# unit = counts` and `# rate_hz = 1000` (or `key: value`)
/// name the unit (default mm) and the rate; a header row names the unit too, as the value
/// column's suffix (`t_s,belt_counts`, `value_mm`).
///
/// # Errors
/// [`TraceError::Empty`] when no row is usable.
pub fn parse_csv(path: &str, text: &str) -> Result<Trace, TraceError> {
    let mut out = Trace { t_s: Vec::new(), xyz_mm: Vec::new(), unit: "mm".into(), issues: Vec::new() };
    let (mut first, mut rate_hz, mut n) = (true, None::<f64>, 0usize);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (row, comment) = raw.split_once('#').map_or((raw.trim(), ""), |(r, c)| (r.trim(), c.trim()));
        if let Some((key, value)) = comment.split_once(['=', ':']) {
            match key.trim() {
                "unit" => out.unit = value.trim().to_string(),
                "rate_hz" => match value.trim().parse::<f64>() {
                    Ok(r) if r.is_finite() && r > 0.0 => rate_hz = Some(r),
                    _ => out
                        .issues
                        .push(RowIssue { line, reason: format!("rate_hz {:?} is not a positive rate", value.trim()) }),
                },
                _ => {}
            }
        }
        if row.is_empty() {
            continue;
        }
        let f: Vec<&str> = row.split(',').map(str::trim).collect();
        let parsed: Vec<Option<f64>> = f.iter().map(|x| x.parse::<f64>().ok().filter(|v| v.is_finite())).collect();
        if first && parsed.iter().any(Option::is_none) {
            first = false;
            // A header: the value column's suffix is its unit.
            if let Some((_, unit)) = f.last().and_then(|h| h.rsplit_once('_')).filter(|(_, u)| *u != "s") {
                out.unit = unit.to_string();
            }
            continue;
        }
        first = false;
        match (parsed.as_slice(), rate_hz) {
            ([Some(t), Some(v)], _) => push(&mut out, line, *t, [*v, 0.0, 0.0]),
            ([Some(v)], Some(r)) => {
                push(&mut out, line, n as f64 / r, [*v, 0.0, 0.0]);
                n += 1;
            }
            ([Some(_)], None) => out.issues.push(RowIssue {
                line,
                reason: "one value per row needs the rate in a comment before the rows (# rate_hz = 1000)".into(),
            }),
            _ => out.issues.push(RowIssue {
                line,
                reason: format!("expected \"t_s,value\" (or one value at rate_hz) with finite numbers: {row:?}"),
            }),
        }
    }
    if out.t_s.is_empty() {
        return Err(TraceError::Empty { path: path.into(), issues: out.issues.len() });
    }
    Ok(out)
}

impl Trace {
    /// The signal along the principal axis of motion (mm, mean removed), with the axis; the sign
    /// is chosen so the largest excursion is positive.
    #[must_use]
    pub fn principal_axis(&self) -> (Vec<f64>, Vector3<f64>) {
        let n = self.xyz_mm.len().max(1) as f64;
        let mean = self.xyz_mm.iter().fold(Vector3::zeros(), |a, p| a + Vector3::from(*p)) / n;
        let mut cov = Matrix3::zeros();
        for p in &self.xyz_mm {
            let d = Vector3::from(*p) - mean;
            cov += d * d.transpose();
        }
        let eig = cov.symmetric_eigen();
        let k = eig.eigenvalues.imax();
        let mut axis = eig.eigenvectors.column(k).into_owned();
        let mut s: Vec<f64> = self.xyz_mm.iter().map(|p| (Vector3::from(*p) - mean).dot(&axis)).collect();
        let (lo, hi) = s.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        if -lo > hi {
            axis = -axis;
            for v in &mut s {
                *v = -*v;
            }
        }
        (s, axis)
    }

    /// Median sampling interval, s.
    #[must_use]
    pub fn median_interval_s(&self) -> f64 {
        let mut d: Vec<f64> = self.t_s.windows(2).map(|w| w[1] - w[0]).collect();
        d.sort_by(f64::total_cmp);
        d.get(d.len() / 2).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn krilavicius_quirks() {
        let text = "\"Frame\";\"Timestamp\";\"x\";\"y\";\"z\"\n600;10000;-490,7;4,1;64,7\n606;10100;-490,6;4,2;64,5\n612;10,2;-490,5;4,3;64,4\n612;10200;-490,5;4,3;64,4\nbad;row\n618;10300;x;1;2\n0;0;0;0;0\n";
        let t = parse_krilavicius("k.csv", text).unwrap();
        assert_eq!(t.t_s, vec![10.0, 10.1, 10.2]);
        assert_eq!(t.xyz_mm[1], [-490.6, 4.2, 64.5]);
        let lines: Vec<usize> = t.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 8], "{:?}", t.issues);
        assert!(t.issues[0].reason.contains("not in ms"));
        assert!(t.issues[1].reason.contains("does not advance"));
        assert!(t.issues[4].reason.contains("terminator"));
    }

    #[test]
    fn plain_csv() {
        let t = parse_csv("c.csv", "t_s,value\n0,1.5\n0.1,2\n0.1,3\n0.2,nan\n0.3,4 # late\n").unwrap();
        assert_eq!(t.t_s, vec![0.0, 0.1, 0.3]);
        assert_eq!(t.issues.iter().map(|i| i.line).collect::<Vec<_>>(), vec![4, 5]);
        assert!(matches!(parse_csv("e.csv", "t_s,value\n"), Err(TraceError::Empty { .. })));
    }

    #[test]
    fn a_sensor_csv_names_its_unit_and_rate() {
        assert_eq!(parse_csv("c.csv", "t_s,value\n0,1\n").unwrap().unit, "mm");
        assert_eq!(parse_csv("c.csv", "t_s,belt_counts\n0,1\n").unwrap().unit, "counts");
        // One value per row at the rate of a comment, the unit in another.
        let t = parse_csv("b.csv", "# a belt\n# unit = counts\n# rate_hz: 25\nvalue\n2048\n2050\n2049\n").unwrap();
        assert_eq!((t.unit.as_str(), t.t_s.clone()), ("counts", vec![0.0, 0.04, 0.08]));
        assert_eq!(t.xyz_mm[1], [2050.0, 0.0, 0.0]);
        // Without the rate, one value per row is reported, not guessed.
        let e = parse_csv("n.csv", "value\n1\n2\n").unwrap_err();
        assert!(matches!(e, TraceError::Empty { issues: 2, .. }), "{e:?}");
        let t = parse_csv("r.csv", "# rate_hz = fast\n0,1\n").unwrap();
        assert!(t.issues.iter().any(|i| i.line == 1 && i.reason.contains("fast")), "{:?}", t.issues);
    }

    proptest! {
        #[test]
        fn readers_never_panic(s in "\\PC{0,300}") {
            let _ = parse_krilavicius("p", &s);
            let _ = parse_csv("p", &s);
        }
    }
}
