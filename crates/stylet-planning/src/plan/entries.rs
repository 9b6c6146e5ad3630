//! Candidate skin entries (the body's surface, posterior part excluded, thinned to a grid) and the
//! spine's midline (PATH-3).

use std::collections::HashSet;

use nalgebra::Vector3;

use super::grid::{boundary, Grid, Rows};
use super::PlanError;
use crate::config::{Class, Rules};
use crate::geometry::Crop;

/// Entries on the skin of `body` (within `crop`), at most one per `entry_spacing_mm` cell.
pub(super) fn skin_entries(
    grid: &Grid,
    body: &[bool],
    crop: Crop,
    rules: &Rules,
) -> Result<Vec<Vector3<f64>>, PlanError> {
    let dims = grid.dims;
    // The skin: body voxels with a neighbour outside the body (not at the volume's edge).
    let skin: Vec<usize> = {
        let bcrop = crop;
        let inner = boundary(&bcrop.extract(body), bcrop.dims, false);
        // Box faces that are the volume's faces are not skin.
        inner
            .into_iter()
            .map(|i| bcrop.full_index(i))
            .filter(|&i| {
                let [nx, ny, nz] = dims;
                let (a, b, c) = (i % nx, (i / nx) % ny, i / (nx * ny));
                !(a == 0 || b == 0 || c == 0 || a + 1 == nx || b + 1 == ny || c + 1 == nz)
            })
            .collect()
    };
    if skin.is_empty() {
        return Err(PlanError::NoSkin);
    }
    let (ymin, ymax) =
        skin.iter().map(|&i| grid.lps(i).y).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let y_cut = ymax - rules.exclude_posterior_fraction * (ymax - ymin);
    let mut cells = HashSet::new();
    Ok(skin
        .iter()
        .map(|&i| grid.lps(i))
        .filter(|p| p.y <= y_cut)
        .filter(|p| cells.insert((p / rules.entry_spacing_mm).map(|x| x.floor() as i64).as_slice().to_vec()))
        .collect())
}

/// LPS x of the spine's midline, when the label map has a spine.
pub(super) fn spine_midline(grid: &Grid, rows: &Rows, classes: &[Class]) -> Option<f64> {
    rows.crop(Class::Spine, 0).and_then(|c| {
        let (sum, n) = (0..c.dims.iter().product::<usize>())
            .map(|i| c.full_index(i))
            .filter(|&i| classes[i] == Class::Spine)
            .fold((0.0, 0usize), |(s, n), i| (s + grid.lps(i).x, n + 1));
        (n > 0).then(|| sum / n as f64)
    })
}
