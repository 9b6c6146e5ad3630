//! Point files: one point per line, `x y z` in millimetres separated by whitespace and/or commas;
//! an optional header line (the first line that is not a comment, when it is not three numbers);
//! `#` starts a comment (whole line or trailing); blank lines are ignored. In point-list
//! registration the row order gives the correspondence.

use stylet_core::frame::{Frame, Point};

/// A point file that could not be read. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum PointFileError {
    /// cannot read point file {path}: {reason}
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// {path}:{line}: expected three numbers "x y z" in mm, found {found:?}
    Malformed {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The line's content (trimmed, comment removed).
        found: String,
    },
    /// {path}:{line}: {value:?} is not a finite number
    NotFinite {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The value.
        value: String,
    },
    /// {path}: no points
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads a point file; the caller names the frame its points are in.
///
/// # Errors
/// A [`PointFileError`] naming the file and line.
pub fn read_points<F: Frame>(path: &std::path::Path) -> Result<Vec<Point<F>>, PointFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PointFileError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    parse_points(&path.display().to_string(), &text)
}

/// Parses point-file text (`path` names it in errors).
///
/// # Errors
/// A [`PointFileError`] naming the file and line.
pub fn parse_points<F: Frame>(path: &str, text: &str) -> Result<Vec<Point<F>>, PointFileError> {
    let mut points = Vec::new();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(|c: char| c == ',' || c.is_whitespace()).filter(|f| !f.is_empty()).collect();
        let numbers: Vec<Result<f64, _>> = fields.iter().map(|f| f.parse::<f64>()).collect();
        let all_numbers = numbers.iter().all(Result::is_ok);
        if !seen_content && !all_numbers {
            // The header line.
            seen_content = true;
            continue;
        }
        seen_content = true;
        if fields.len() != 3 || !all_numbers {
            return Err(PointFileError::Malformed { path: path.into(), line: i + 1, found: line.into() });
        }
        let mut xyz = [0.0; 3];
        for (k, (n, f)) in numbers.into_iter().zip(&fields).enumerate() {
            let v = n.unwrap_or(f64::NAN);
            if !v.is_finite() {
                return Err(PointFileError::NotFinite { path: path.into(), line: i + 1, value: (*f).to_string() });
            }
            xyz[k] = v;
        }
        points.push(Point::new(xyz[0], xyz[1], xyz[2]));
    }
    if points.is_empty() {
        return Err(PointFileError::Empty { path: path.into() });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stylet_core::frame::Ct;

    #[test]
    fn header_comments_commas_and_spaces() {
        let text = "# markers in CT (LPS, mm)\nx, y, z\n1 2 3\n 4,5,6  # trailing\n\n7.5\t-8e1 9\n";
        let p = parse_points::<Ct>("f.txt", text).unwrap();
        assert_eq!(p, vec![Point::new(1.0, 2.0, 3.0), Point::new(4.0, 5.0, 6.0), Point::new(7.5, -80.0, 9.0)]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_points::<Ct>("pts.txt", "1 2 3\n4 5\n").unwrap_err().to_string();
        assert!(e.starts_with("pts.txt:2:") && e.contains("\"4 5\""), "{e}");
        let e = parse_points::<Ct>("pts.txt", "1 2 3\n1 inf 3\n").unwrap_err().to_string();
        assert!(e.contains("pts.txt:2") && e.contains("inf"), "{e}");
        let e = parse_points::<Ct>("pts.txt", "x y z\n1 2 three\n").unwrap_err().to_string();
        assert!(e.contains("pts.txt:2"), "{e}");
        assert_eq!(parse_points::<Ct>("e.txt", "# nothing\n").unwrap_err().to_string(), "e.txt: no points");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse_points::<Ct>("fuzz", &s);
        }

        #[test]
        fn round_trips(pts in proptest::collection::vec(proptest::array::uniform3(-1e4f64..1e4), 1..20)) {
            let text: String = pts.iter().map(|p| format!("{} {},{}\n", p[0], p[1], p[2])).collect();
            let back = parse_points::<Ct>("rt", &text).unwrap();
            prop_assert_eq!(back.len(), pts.len());
            for (a, b) in back.iter().zip(&pts) {
                prop_assert_eq!(a.to_array(), *b);
            }
        }
    }
}
