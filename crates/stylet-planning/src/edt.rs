//! Exact Euclidean distance transform on an anisotropic grid (Felzenszwalb & Huttenlocher 2012:
//! separable lower envelopes of parabolas, one pass per axis, linear in the voxel count).
//!
//! `edt(mask, dims, spacing)` gives, for every voxel, the distance in mm from its centre to the
//! centre of the nearest voxel where `mask` is true (0 on the mask; `f32::INFINITY` everywhere
//! when the mask is empty). Lines are split over the available cores; the passes along y and z
//! work in place on tiles of adjacent x so that memory is read in whole cache lines.

/// 1-D squared distance transform of `f` (squared mm, `INFINITY` = no feature) for samples `step`
/// mm apart, into `out`. `v` and `z` are scratch of at least `f.len()` and `f.len() + 1`.
fn line(f: &[f32], step: f32, out: &mut [f32], v: &mut [usize], z: &mut [f32]) {
    let n = f.len();
    let s2 = step * step;
    let mut k: usize = 0;
    let mut any = false;
    for q in 0..n {
        if !f[q].is_finite() {
            continue;
        }
        if !any {
            v[0] = q;
            z[0] = f32::NEG_INFINITY;
            z[1] = f32::INFINITY;
            any = true;
            continue;
        }
        loop {
            let p = v[k];
            // Intersection of the parabolas from p and q, in index units.
            let s = ((f[q] + s2 * (q * q) as f32) - (f[p] + s2 * (p * p) as f32)) / (2.0 * s2 * (q - p) as f32);
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0: q's parabola is below p's everywhere that matters.
                v[0] = q;
                z[0] = f32::NEG_INFINITY;
                z[1] = f32::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f32::INFINITY;
            break;
        }
    }
    if !any {
        out.iter_mut().for_each(|o| *o = f32::INFINITY);
        return;
    }
    let mut j = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[j + 1] < q as f32 {
            j += 1;
        }
        let d = q as f32 - v[j] as f32;
        *o = s2 * d * d + f[v[j]];
    }
}

/// Runs `work(first_line, chunk)` over `data` split into chunks of whole `line_len`-sized groups,
/// on up to the available cores.
fn parallel_chunks(data: &mut [f32], group: usize, work: impl Fn(usize, &mut [f32]) + Sync) {
    let groups = data.len() / group.max(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let per = groups.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (c, chunk) in data.chunks_mut(per * group).enumerate() {
            let work = &work;
            s.spawn(move || work(c * per, chunk));
        }
    });
}

/// Squared distances along x for every (y, z) row, in place.
fn pass_x(d: &mut [f32], nx: usize, step: f32) {
    parallel_chunks(d, nx, |_, chunk| {
        let (mut f, mut v, mut z) = (vec![0f32; nx], vec![0usize; nx], vec![0f32; nx + 1]);
        for row in chunk.chunks_mut(nx) {
            f.copy_from_slice(row);
            line(&f, step, row, &mut v, &mut z);
        }
    });
}

const TILE: usize = 16;

/// Transforms the lines that run across `slices` (one slice per step along the axis, all of the
/// same width): tiles of up to `TILE` adjacent positions are gathered (whole cache lines),
/// transformed and written back.
fn transform_across(slices: &mut [&mut [f32]], step: f32) {
    let n = slices.len();
    let width = slices.first().map_or(0, |s| s.len());
    let (mut f, mut out, mut v, mut z) = (vec![0f32; n], vec![0f32; n], vec![0usize; n], vec![0f32; n + 1]);
    let mut tile = vec![0f32; n * TILE];
    let mut x0 = 0;
    while x0 < width {
        let w = TILE.min(width - x0);
        for (q, sl) in slices.iter().enumerate() {
            tile[q * TILE..q * TILE + w].copy_from_slice(&sl[x0..x0 + w]);
        }
        for t in 0..w {
            for q in 0..n {
                f[q] = tile[q * TILE + t];
            }
            line(&f, step, &mut out, &mut v, &mut z);
            for q in 0..n {
                tile[q * TILE + t] = out[q];
            }
        }
        for (q, sl) in slices.iter_mut().enumerate() {
            sl[x0..x0 + w].copy_from_slice(&tile[q * TILE..q * TILE + w]);
        }
        x0 += w;
    }
}

/// The pass along y: each z slice (`nx * ny`) is independent; slices are split over threads.
fn pass_y(d: &mut [f32], nx: usize, ny: usize, step: f32) {
    parallel_chunks(d, nx * ny, |_, chunk| {
        for plane in chunk.chunks_mut(nx * ny) {
            let mut rows: Vec<&mut [f32]> = plane.chunks_mut(nx).collect();
            transform_across(&mut rows, step);
        }
    });
}

/// The pass along z: every thread takes a band of each z slice (disjoint borrows of the same
/// array, split safely), so nothing is copied wholesale.
fn pass_z(d: &mut [f32], nxy: usize, step: f32) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let band = nxy.div_ceil(threads).max(1);
    let mut per_thread: Vec<Vec<&mut [f32]>> = (0..threads).map(|_| Vec::new()).collect();
    for plane in d.chunks_mut(nxy) {
        for (t, part) in plane.chunks_mut(band).enumerate() {
            per_thread[t].push(part);
        }
    }
    std::thread::scope(|s| {
        for mut slices in per_thread.into_iter().filter(|v| !v.is_empty()) {
            s.spawn(move || transform_across(&mut slices, step));
        }
    });
}

/// Squared Euclidean distance (mm²) to the nearest `mask` voxel.
///
/// # Panics
/// Never: a mask whose length is not `nx * ny * nz` gives all `INFINITY`.
#[must_use]
pub fn edt_squared(mask: &[bool], dims: [usize; 3], spacing_mm: [f64; 3]) -> Vec<f32> {
    let [nx, ny, nz] = dims;
    if mask.len() != nx * ny * nz || mask.is_empty() {
        return vec![f32::INFINITY; mask.len()];
    }
    let mut d: Vec<f32> = mask.iter().map(|&m| if m { 0.0 } else { f32::INFINITY }).collect();
    let s = spacing_mm.map(|x| x as f32);
    pass_x(&mut d, nx, s[0]);
    if ny > 1 {
        pass_y(&mut d, nx, ny, s[1]);
    }
    if nz > 1 {
        pass_z(&mut d, nx * ny, s[2]);
    }
    d
}

/// Euclidean distance (mm) to the nearest `mask` voxel.
#[must_use]
pub fn edt(mask: &[bool], dims: [usize; 3], spacing_mm: [f64; 3]) -> Vec<f32> {
    let mut d = edt_squared(mask, dims, spacing_mm);
    d.iter_mut().for_each(|x| *x = x.sqrt());
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(mask: &[bool], dims: [usize; 3], s: [f64; 3]) -> Vec<f64> {
        let [nx, ny, _] = dims;
        let feats: Vec<[usize; 3]> =
            (0..mask.len()).filter(|&i| mask[i]).map(|i| [i % nx, (i / nx) % ny, i / (nx * ny)]).collect();
        (0..mask.len())
            .map(|i| {
                let p = [i % nx, (i / nx) % ny, i / (nx * ny)];
                feats
                    .iter()
                    .map(|f| (0..3).map(|a| ((p[a] as f64 - f[a] as f64) * s[a]).powi(2)).sum::<f64>().sqrt())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_brute_force(
            nx in 1usize..12, ny in 1usize..12, nz in 1usize..10,
            sx in 0.3f64..3.0, sy in 0.3f64..3.0, sz in 0.3f64..5.0,
            density in 0.0f64..0.3, seed in 0u64..u64::MAX,
        ) {
            let n = nx * ny * nz;
            let mut x = seed;
            let mask: Vec<bool> = (0..n).map(|_| {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                (x % 1000) as f64 / 1000.0 < density
            }).collect();
            let got = edt(&mask, [nx, ny, nz], [sx, sy, sz]);
            let want = brute(&mask, [nx, ny, nz], [sx, sy, sz]);
            for (g, w) in got.iter().zip(&want) {
                if w.is_infinite() {
                    prop_assert!(g.is_infinite());
                } else {
                    prop_assert!((f64::from(*g) - w).abs() < 1e-3 * (1.0 + w), "{} vs {}", g, w);
                }
            }
        }
    }

    #[test]
    fn wide_volume_exercises_tiles_and_threads() {
        let dims = [37, 41, 23];
        let n = dims[0] * dims[1] * dims[2];
        let mask: Vec<bool> = (0..n).map(|i| i % 997 == 0 || i == n - 1).collect();
        let s = [0.7, 0.9, 2.5];
        let got = edt(&mask, dims, s);
        let want = brute(&mask, dims, s);
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-3 * (1.0 + w));
        }
    }
}
