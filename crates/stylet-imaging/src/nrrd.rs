//! NRRD volumes (`.nrrd`, `.seg.nrrd`, `.nhdr` with a detached data file): 3D Slicer's own format
//! for volumes and segmentations.
//!
//! The geometry comes from `space`, `space directions` and `space origin`; a RAS space is
//! converted to LPS once here (x and y negated, as `stylet_core::frame::ct_from_slicer`), an LPS
//! space is taken as is. Encodings: raw and gzip. A 4-D segmentation whose first axis has one
//! element (Slicer's single-layer `.seg.nrrd`) is read as 3-D; several layers are refused.

use std::io::Read;
use std::path::Path;

use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::Point;

use crate::volume::Volume;

/// Why a NRRD file could not be read. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum NrrdError {
    /// cannot read {path}: {reason}
    Io {
        /// The file.
        path: String,
        /// The error.
        reason: String,
    },
    /// {path}: field "{field}": {reason}
    Field {
        /// The file.
        path: String,
        /// The header field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// {path}: {reason}
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The header fields this reader uses.
struct Header {
    kind: (usize, char),
    sizes: Vec<usize>,
    big_endian: bool,
    gzip: bool,
    ras: bool,
    directions: Vec<Option<Vector3<f64>>>,
    origin: Vector3<f64>,
    data_file: Option<String>,
}

fn vector(s: &str) -> Option<Vector3<f64>> {
    let s = s.trim();
    if s == "none" {
        return None;
    }
    let v: Vec<f64> =
        s.strip_prefix('(')?.strip_suffix(')')?.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
    (v.len() == 3 && v.iter().all(|x| x.is_finite())).then(|| Vector3::new(v[0], v[1], v[2]))
}

/// Splits "(a,b,c) (d,e,f) none" into its vectors and `none`s.
fn vectors(s: &str) -> Option<Vec<Option<Vector3<f64>>>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("none") {
            out.push(None);
            rest = r.trim_start();
        } else {
            let end = rest.find(')')?;
            out.push(Some(vector(&rest[..=end])?));
            rest = rest[end + 1..].trim_start();
        }
    }
    Some(out)
}

fn header(name: &str, text: &str) -> Result<Header, NrrdError> {
    let field = |f: &str, reason: String| NrrdError::Field { path: name.into(), field: f.into(), reason };
    let mut lines = text.lines();
    if !lines.next().is_some_and(|l| l.starts_with("NRRD000")) {
        return Err(NrrdError::Format { path: name.into(), reason: "no NRRD000x magic on the first line".into() });
    }
    let mut h = Header {
        kind: (0, 'u'),
        sizes: Vec::new(),
        big_endian: false,
        gzip: false,
        ras: false,
        directions: Vec::new(),
        origin: Vector3::zeros(),
        data_file: None,
    };
    let mut dimension = 0;
    let (mut have_type, mut have_space) = (false, false);
    for line in lines {
        if line.starts_with('#') || line.contains(":=") {
            continue;
        }
        let Some((key, value)) = line.split_once(": ") else { continue };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "type" => {
                h.kind = match value {
                    "uchar" | "unsigned char" | "uint8" | "uint8_t" => (1, 'u'),
                    "signed char" | "int8" | "int8_t" => (1, 'i'),
                    "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => (2, 'i'),
                    "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => (2, 'u'),
                    "int" | "signed int" | "int32" | "int32_t" => (4, 'i'),
                    "uint" | "unsigned int" | "uint32" | "uint32_t" => (4, 'u'),
                    "float" => (4, 'f'),
                    "double" => (8, 'f'),
                    other => return Err(field("type", format!("{other:?} is not supported"))),
                };
                have_type = true;
            }
            "dimension" => {
                dimension = value.parse().map_err(|_| field("dimension", format!("{value:?} is not a number")))?;
            }
            "sizes" => {
                h.sizes = value
                    .split_whitespace()
                    .map(|x| x.parse::<usize>().ok().filter(|n| *n > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| field("sizes", format!("{value:?} are not positive integers")))?;
            }
            "endian" => h.big_endian = value == "big",
            "encoding" => {
                h.gzip = match value {
                    "raw" => false,
                    "gzip" | "gz" => true,
                    other => return Err(field("encoding", format!("{other:?} is not supported (raw or gzip)"))),
                }
            }
            "space" => {
                h.ras = match value {
                    "left-posterior-superior" | "LPS" => false,
                    "right-anterior-superior" | "RAS" => true,
                    other => return Err(field("space", format!("{other:?} is not supported (LPS or RAS)"))),
                };
                have_space = true;
            }
            "space directions" => {
                h.directions = vectors(value)
                    .ok_or_else(|| field("space directions", format!("{value:?} is not a list of (x,y,z) or none")))?;
            }
            "space origin" => {
                h.origin = vector(value).ok_or_else(|| field("space origin", format!("{value:?} is not (x,y,z)")))?;
            }
            "data file" | "datafile" => h.data_file = Some(value.to_string()),
            "byte skip" | "byteskip" | "line skip" | "lineskip" if value != "0" => {
                return Err(field(key, format!("{value} is not supported (0 only)")));
            }
            _ => {}
        }
    }
    if !have_type {
        return Err(field("type", "missing".into()));
    }
    if !have_space {
        return Err(field("space", "missing: the volume's placement in the patient is unknown".into()));
    }
    if dimension != h.sizes.len() || h.directions.len() != h.sizes.len() {
        return Err(field(
            "dimension",
            format!("{dimension}, with {} sizes and {} space directions", h.sizes.len(), h.directions.len()),
        ));
    }
    // Single-layer segmentations: a leading list axis of one element.
    if dimension == 4 && h.directions[0].is_none() && h.sizes[0] == 1 {
        h.sizes.remove(0);
        h.directions.remove(0);
    }
    if h.sizes.len() != 3 || h.directions.iter().any(Option::is_none) {
        return Err(field("sizes", format!("{:?}: a 3-D volume with three space axes is needed", h.sizes)));
    }
    Ok(h)
}

/// Reads a NRRD file (a `.nhdr` with its detached data file too) into a [`Volume`] in LPS.
///
/// # Errors
/// A [`NrrdError`] naming the file and field.
pub fn load_nrrd(path: &Path) -> Result<Volume, NrrdError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NrrdError::Io { path: name.clone(), reason: e.to_string() })?;
    parse_nrrd_with(&name, &bytes, |file| {
        let p = path.parent().unwrap_or(Path::new(".")).join(file);
        std::fs::read(&p).map_err(|e| NrrdError::Io { path: p.display().to_string(), reason: e.to_string() })
    })
}

/// Parses an attached-data NRRD file (`name` names it in errors).
///
/// # Errors
/// A [`NrrdError`].
pub fn parse_nrrd(name: &str, bytes: &[u8]) -> Result<Volume, NrrdError> {
    parse_nrrd_with(name, bytes, |file| {
        Err(NrrdError::Format {
            path: name.into(),
            reason: format!("detached data file {file:?}: read it from a path"),
        })
    })
}

/// The header text (up to the first empty line) and the bytes after it.
fn split<'a>(name: &str, bytes: &'a [u8]) -> Result<(&'a str, &'a [u8]), NrrdError> {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i + 1, i + 2))
        .or_else(|| bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i + 2, i + 4)));
    let (text, data) = match end {
        Some((h, d)) => (&bytes[..h], &bytes[d..]),
        None => (bytes, &bytes[bytes.len()..]),
    };
    let text = std::str::from_utf8(text)
        .map_err(|_| NrrdError::Format { path: name.into(), reason: "the header is not text".into() })?;
    Ok((text, data))
}

/// One segment of a 3D Slicer segmentation (`.seg.nrrd` key-value pairs `SegmentN_Name:=`,
/// `SegmentN_LabelValue:=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The label value of its voxels.
    pub label_value: u32,
    /// The segment's name as the user gave it in Slicer.
    pub name: String,
}

/// The segments a Slicer segmentation's header names (empty for a plain NRRD), by label value.
///
/// # Errors
/// A [`NrrdError`] naming the file (unreadable, not NRRD, a segment without a usable label value).
pub fn nrrd_segments(path: &Path) -> Result<Vec<Segment>, NrrdError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NrrdError::Io { path: name.clone(), reason: e.to_string() })?;
    segments(&name, &bytes)
}

/// [`nrrd_segments`] of bytes in memory.
///
/// # Errors
/// A [`NrrdError`].
pub fn segments(name: &str, bytes: &[u8]) -> Result<Vec<Segment>, NrrdError> {
    let (text, _) = split(name, bytes)?;
    if !text.starts_with("NRRD000") {
        return Err(NrrdError::Format { path: name.into(), reason: "no NRRD000x magic on the first line".into() });
    }
    let mut by_index: std::collections::BTreeMap<u32, (Option<String>, Option<String>)> = Default::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(":=") else { continue };
        let Some(rest) = key.trim().strip_prefix("Segment") else { continue };
        let Some((index, field)) = rest.split_once('_') else { continue };
        let Ok(index) = index.parse::<u32>() else { continue };
        let slot = by_index.entry(index).or_default();
        match field {
            "Name" => slot.0 = Some(value.trim().to_string()),
            "LabelValue" => slot.1 = Some(value.trim().to_string()),
            _ => {}
        }
    }
    by_index
        .into_iter()
        .filter_map(|(i, (n, v))| n.map(|n| (i, n, v)))
        .map(|(i, name_, value)| {
            let label_value = value.as_deref().and_then(|v| v.parse::<u32>().ok()).ok_or_else(|| NrrdError::Field {
                path: name.into(),
                field: format!("Segment{i}_LabelValue"),
                reason: format!("{value:?} is not a label value"),
            })?;
            Ok(Segment { label_value, name: name_ })
        })
        .collect()
}

fn parse_nrrd_with(
    name: &str,
    bytes: &[u8],
    detached: impl Fn(&str) -> Result<Vec<u8>, NrrdError>,
) -> Result<Volume, NrrdError> {
    let format = |reason: String| NrrdError::Format { path: name.into(), reason };
    let (text, data) = split(name, bytes)?;
    let h = header(name, text)?;
    let owned;
    let data = match &h.data_file {
        Some(f) if f.starts_with("LIST") || f.contains('%') => {
            return Err(format(format!("data file {f:?}: lists and patterns are not supported")));
        }
        Some(f) => {
            owned = detached(f)?;
            &owned[..]
        }
        None => data,
    };
    let n = h.sizes.iter().try_fold(1usize, |a, s| a.checked_mul(*s));
    let need =
        n.and_then(|n| n.checked_mul(h.kind.0)).ok_or_else(|| format(format!("sizes {:?} overflow", h.sizes)))?;
    let raw;
    let data = if h.gzip {
        let mut out = Vec::new();
        // Never more than the sizes need (a gzip bomb stops there).
        flate2::read::GzDecoder::new(data)
            .take(need as u64)
            .read_to_end(&mut out)
            .map_err(|e| format(format!("gzip: {e}")))?;
        raw = out;
        &raw[..]
    } else {
        data
    };
    if data.len() < need {
        return Err(format(format!("{need} bytes of voxel data expected, {} present", data.len())));
    }
    let (size, kind) = h.kind;
    let voxels: Vec<f32> = data[..need]
        .chunks_exact(size)
        .map(|b| {
            let mut a = [0u8; 8];
            a[..size].copy_from_slice(b);
            if h.big_endian {
                a[..size].reverse();
            }
            match (size, kind) {
                (1, 'u') => f32::from(a[0]),
                (1, _) => f32::from(a[0] as i8),
                (2, 'i') => f32::from(i16::from_le_bytes([a[0], a[1]])),
                (2, _) => f32::from(u16::from_le_bytes([a[0], a[1]])),
                (4, 'i') => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
                (4, 'u') => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
                (4, _) => f32::from_le_bytes([a[0], a[1], a[2], a[3]]),
                _ => f64::from_le_bytes(a) as f32,
            }
        })
        .collect();
    // RAS -> LPS once (`ct_from_slicer`).
    let flip = |v: Vector3<f64>| if h.ras { Vector3::from(stylet_core::frame::lps_ras_flip(v.into())) } else { v };
    let cols: Vec<Vector3<f64>> = h.directions.iter().flatten().map(|d| flip(*d)).collect();
    let spacing = [cols[0].norm(), cols[1].norm(), cols[2].norm()];
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(NrrdError::Field {
            path: name.into(),
            field: "space directions".into(),
            reason: "a zero or non-finite axis".into(),
        });
    }
    let (origin, direction) =
        (flip(h.origin), Matrix3::from_columns(&[cols[0] / spacing[0], cols[1] / spacing[1], cols[2] / spacing[2]]));
    crate::volume::check_rigid_grid(&direction, &origin).map_err(|e| NrrdError::Field {
        path: name.into(),
        field: "space directions".into(),
        reason: format!("{e} (with the spacing split off, the directions must be orthonormal)"),
    })?;
    Ok(Volume {
        dims: [h.sizes[0], h.sizes[1], h.sizes[2]],
        spacing_mm: spacing,
        origin: Point::from_coords(origin),
        direction,
        voxels,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nrrd(space: &str, encoding: &str, extra: &str, data: &[u8]) -> Vec<u8> {
        let mut b = format!(
            "NRRD0004\n# Complete NRRD file format specification at:\ntype: short\ndimension: 3\nspace: {space}\n\
             sizes: 3 2 2\nspace directions: (0.8,0,0) (0,0.9,0) (0,0,1.25)\nkinds: domain domain domain\n\
             endian: little\nencoding: {encoding}\nspace origin: (-10,20,-300)\n{extra}\n"
        )
        .into_bytes();
        b.extend_from_slice(data);
        b
    }

    fn shorts() -> Vec<u8> {
        (0..12i16).flat_map(|v| (v * 100 - 1024).to_le_bytes()).collect()
    }

    #[test]
    fn lps_and_ras_spaces_give_the_same_lps_geometry() {
        let lps = parse_nrrd("a.nrrd", &nrrd("left-posterior-superior", "raw", "", &shorts())).unwrap();
        assert_eq!(lps.dims, [3, 2, 2]);
        assert_eq!(lps.ct_from_index(0.0, 0.0, 0.0).to_array(), [-10.0, 20.0, -300.0]);
        assert_eq!(lps.voxels[11], 76.0);
        let ras = parse_nrrd("b.nrrd", &nrrd("right-anterior-superior", "raw", "", &shorts())).unwrap();
        // RAS (-10, 20, -300) is LPS (10, -20, -300); the first axis points to RAS +x = LPS -x.
        assert_eq!(ras.ct_from_index(0.0, 0.0, 0.0).to_array(), [10.0, -20.0, -300.0]);
        assert!((ras.ct_from_index(1.0, 0.0, 0.0).to_array()[0] - 9.2).abs() < 1e-12);
        assert_eq!(ras.voxels, lps.voxels);
    }

    #[test]
    fn sheared_space_directions_are_refused_by_name() {
        let header = String::from_utf8(nrrd("LPS", "raw", "", &[])).unwrap();
        let mut sheared = header.replace("(0,0,1.25)", "(0.3,0,1.25)").into_bytes();
        sheared.extend_from_slice(&shorts());
        let e = parse_nrrd("s.nrrd", &sheared).unwrap_err().to_string();
        assert!(e.starts_with("s.nrrd: field \"space directions\"") && e.contains("not a rigid transform"), "{e}");
    }

    #[test]
    fn gzip_and_single_layer_segmentations_read() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &shorts()).unwrap();
        let v = parse_nrrd("g.nrrd", &nrrd("LPS", "gzip", "", &gz.finish().unwrap())).unwrap();
        assert_eq!(v.voxels[0], -1024.0);
        let seg = b"NRRD0004\ntype: unsigned char\ndimension: 4\nspace: left-posterior-superior\nsizes: 1 2 1 1\n\
space directions: none (1,0,0) (0,1,0) (0,0,1)\nkinds: list domain domain domain\nencoding: raw\n\
space origin: (0,0,0)\n\n\x05\x00";
        let v = parse_nrrd("s.seg.nrrd", seg).unwrap();
        assert_eq!((v.dims, v.voxels.clone()), ([2, 1, 1], vec![5.0, 0.0]));
    }

    #[test]
    fn slicer_segment_names_and_values_are_read() {
        let b = b"NRRD0004\ntype: unsigned char\ndimension: 3\nSegment0_Name:=Liver\nSegment0_LabelValue:=1\n\
Segment1_LabelValue:=2\nSegment1_Name:=liver tumour\nSegment1_Layer:=0\n\n";
        let s = segments("s.seg.nrrd", b).unwrap();
        assert_eq!(
            s,
            vec![
                Segment { label_value: 1, name: "Liver".into() },
                Segment { label_value: 2, name: "liver tumour".into() }
            ]
        );
        let e = segments("s.seg.nrrd", b"NRRD0004\nSegment3_Name:=x\n\n").unwrap_err().to_string();
        assert!(e.contains("Segment3_LabelValue"), "{e}");
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = parse_nrrd("x.nrrd", &nrrd("scanner-xyz", "raw", "", &shorts())).unwrap_err().to_string();
        assert!(e.contains("x.nrrd") && e.contains("space") && e.contains("scanner-xyz"), "{e}");
        let e = parse_nrrd("x.nrrd", &nrrd("LPS", "bzip2", "", &shorts())).unwrap_err().to_string();
        assert!(e.contains("encoding") && e.contains("bzip2"), "{e}");
        let e = parse_nrrd("x.nrrd", &nrrd("LPS", "raw", "", &shorts()[..20])).unwrap_err().to_string();
        assert!(e.contains("24 bytes") && e.contains("20 present"), "{e}");
        let e = parse_nrrd("x.nrrd", b"P5\n3 2\n").unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn damaged_files_are_errors_never_panics(edits in proptest::collection::vec((0usize..280, 0u8..=255), 1..8)) {
            let mut b = nrrd("LPS", "raw", "", &shorts());
            for (at, v) in edits {
                let at = at % b.len();
                b[at] = v;
            }
            if let Ok(v) = parse_nrrd("p.nrrd", &b) {
                proptest::prop_assert_eq!(v.voxels.len(), v.dims.iter().product::<usize>());
            }
        }
    }
}
