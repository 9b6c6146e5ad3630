//! The spatial bodies: POSITION, POINT and TRAJ.

use super::body::{fits, Body};
use crate::wire::{put_f32s, put_text, Reader, Short};

/// POSITION's orientation part (its three body sizes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Orientation {
    /// 12-byte body: position only.
    None,
    /// 24-byte body: quaternion x, y, z (w follows from the unit norm).
    Xyz([f32; 3]),
    /// 28-byte body: quaternion x, y, z, w.
    Xyzw([f32; 4]),
}

/// One POINT element (136 bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct PointElement {
    /// Name (64).
    pub name: String,
    /// Group (32), e.g. `Landmark`, `Fiducial`.
    pub group: String,
    /// Colour RGBA.
    pub rgba: [u8; 4],
    /// Position, mm (RAS in 3D Slicer).
    pub position: [f32; 3],
    /// Diameter, mm.
    pub diameter: f32,
    /// Owner image (20).
    pub owner: String,
}

/// One TRAJ element (150 bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct TrajElement {
    /// Name (64).
    pub name: String,
    /// Group (32), e.g. `TRAJECTORY`.
    pub group: String,
    /// 1: entry only, 2: target only, 3: both.
    pub kind: i8,
    /// Colour RGBA.
    pub rgba: [u8; 4],
    /// Entry point, mm.
    pub entry: [f32; 3],
    /// Target point, mm.
    pub target: [f32; 3],
    /// Radius, mm.
    pub radius: f32,
    /// Owner image (20).
    pub owner: String,
}

/// POSITION: the body's size says which orientation follows the position.
pub(super) fn parse_position(r: &mut Reader<'_>, len: usize) -> Result<Body, Short> {
    let position = r.f32s("position")?;
    let orientation = match len {
        12 => Orientation::None,
        24 => Orientation::Xyz(r.f32s("quaternion")?),
        28 => Orientation::Xyzw(r.f32s("quaternion")?),
        _ => return Err(Short("POSITION body must be 12, 24 or 28 bytes")),
    };
    Ok(Body::Position { position, orientation })
}

pub(super) fn write_position(out: &mut Vec<u8>, position: &[f32; 3], orientation: &Orientation) {
    put_f32s(out, position);
    match orientation {
        Orientation::None => {}
        Orientation::Xyz(q) => put_f32s(out, q),
        Orientation::Xyzw(q) => put_f32s(out, q),
    }
}

/// POINT: 136-byte elements.
pub(super) fn parse_points(r: &mut Reader<'_>, len: usize) -> Result<Vec<PointElement>, Short> {
    if !len.is_multiple_of(136) {
        return Err(Short("POINT body must be a multiple of 136 bytes"));
    }
    let mut v = Vec::with_capacity(len / 136);
    while r.remaining() > 0 {
        v.push(PointElement {
            name: r.text(64, "point name")?,
            group: r.text(32, "point group")?,
            rgba: [r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?],
            position: r.f32s("point position")?,
            diameter: r.f32("point diameter")?,
            owner: r.text(20, "point owner")?,
        });
    }
    Ok(v)
}

pub(super) fn write_points(out: &mut Vec<u8>, v: &[PointElement]) {
    for p in v {
        put_text(out, &p.name, 64);
        put_text(out, &p.group, 32);
        out.extend_from_slice(&p.rgba);
        put_f32s(out, &p.position);
        put_f32s(out, &[p.diameter]);
        put_text(out, &p.owner, 20);
    }
}

pub(super) fn check_points(v: &[PointElement]) -> Result<(), String> {
    v.iter().try_for_each(|p| {
        fits("point name", &p.name, 64)?;
        fits("point group", &p.group, 32)?;
        fits("point owner", &p.owner, 20)
    })
}

/// TRAJ: 150-byte elements.
pub(super) fn parse_trajs(r: &mut Reader<'_>, len: usize) -> Result<Vec<TrajElement>, Short> {
    if !len.is_multiple_of(150) {
        return Err(Short("TRAJ body must be a multiple of 150 bytes"));
    }
    let mut v = Vec::with_capacity(len / 150);
    while r.remaining() > 0 {
        let name = r.text(64, "trajectory name")?;
        let group = r.text(32, "trajectory group")?;
        let kind = r.i8("trajectory type")?;
        let _reserved = r.u8("reserved")?;
        v.push(TrajElement {
            name,
            group,
            kind,
            rgba: [r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?],
            entry: r.f32s("entry")?,
            target: r.f32s("target")?,
            radius: r.f32("radius")?,
            owner: r.text(20, "trajectory owner")?,
        });
    }
    Ok(v)
}

pub(super) fn write_trajs(out: &mut Vec<u8>, v: &[TrajElement]) {
    for t in v {
        put_text(out, &t.name, 64);
        put_text(out, &t.group, 32);
        out.extend_from_slice(&t.kind.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&t.rgba);
        put_f32s(out, &t.entry);
        put_f32s(out, &t.target);
        put_f32s(out, &[t.radius]);
        put_text(out, &t.owner, 20);
    }
}

pub(super) fn check_trajs(v: &[TrajElement]) -> Result<(), String> {
    v.iter().try_for_each(|t| {
        fits("trajectory name", &t.name, 64)?;
        fits("trajectory group", &t.group, 32)?;
        fits("trajectory owner", &t.owner, 20)
    })
}
