//! Small raster plots written as PNG (no fonts: the legend is in the command's output and docs).

use std::path::Path;

use stylet_respiration::eval::Timeline;

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self { w, h, px: vec![[255, 255, 255]; w * h] }
    }
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).clamp(1, 10_000);
        for i in 0..=n {
            let f = i as f64 / n as f64;
            let (x, y) = ((x0 + f * (x1 - x0)).round() as i64, (y0 + f * (y1 - y0)).round() as i64);
            self.set(x, y, c);
            self.set(x, y + 1, c);
        }
    }
    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut enc = png::Encoder::new(file, self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        let data: Vec<u8> = self.px.iter().flatten().copied().collect();
        w.write_image_data(&data)?;
        Ok(())
    }
}

/// Signal (black), prediction drawn at the time it predicts (blue), reference level (red) and
/// the window (+-half-width, light red), gate open (green band along the bottom and a pale green
/// background); vertical ticks every 5 s, horizontal every 5 mm.
pub(crate) fn respiration_png(
    path: &Path,
    tl: &Timeline,
    horizon_s: f64,
    half_width_mm: f64,
    (from, to): (f64, f64),
) -> anyhow::Result<()> {
    let (w, h, m) = (1600usize, 500usize, 20.0);
    let t0 = tl.t_s.first().copied().unwrap_or(0.0);
    let idx: Vec<usize> = (0..tl.t_s.len()).filter(|&i| (from..=to).contains(&(tl.t_s[i] - t0))).collect();
    anyhow::ensure!(idx.len() >= 2, "no samples between {from} and {to} s");
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &i in &idx {
        for v in [tl.value_mm[i], tl.predicted_mm[i]] {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let (lo, hi) = (lo - 1.0, hi + 1.0);
    let x = |t: f64| m + (t - t0 - from) / (to - from) * (w as f64 - 2.0 * m);
    let y = |v: f64| h as f64 - m - (v - lo) / (hi - lo) * (h as f64 - 2.0 * m);
    let mut c = Canvas::new(w, h);
    for (k, &i) in idx.iter().enumerate() {
        if tl.open[i] {
            let x0 = x(tl.t_s[i]) as i64;
            let x1 = idx.get(k + 1).map_or(x0 + 1, |&j| x(tl.t_s[j]) as i64);
            for xx in x0..x1.max(x0 + 1) {
                for yy in 0..h as i64 {
                    c.set(xx, yy, if yy > h as i64 - 14 { [40, 170, 60] } else { [225, 245, 225] });
                }
            }
        }
    }
    let grey = [200, 200, 200];
    let mut tick = (from / 5.0).ceil() * 5.0;
    while tick <= to {
        let xx = x(t0 + tick);
        c.line((xx, h as f64 - m), (xx, h as f64 - m + 8.0), [90, 90, 90]);
        tick += 5.0;
    }
    let mut level = (lo / 5.0).ceil() * 5.0;
    while level <= hi {
        c.line((m, y(level)), (w as f64 - m, y(level)), grey);
        level += 5.0;
    }
    for k in 1..idx.len() {
        let (a, b) = (idx[k - 1], idx[k]);
        let r = (tl.reference_mm[a], tl.reference_mm[b]);
        if r.0.is_finite() && r.1.is_finite() {
            for (off, col) in
                [(0.0, [210, 30, 30]), (half_width_mm, [240, 160, 160]), (-half_width_mm, [240, 160, 160])]
            {
                c.line((x(tl.t_s[a]), y(r.0 + off)), (x(tl.t_s[b]), y(r.1 + off)), col);
            }
        }
        c.line((x(tl.t_s[a]), y(tl.value_mm[a])), (x(tl.t_s[b]), y(tl.value_mm[b])), [0, 0, 0]);
        let (pa, pb) = (tl.t_s[a] + horizon_s, tl.t_s[b] + horizon_s);
        if pb - t0 <= to {
            c.line((x(pa), y(tl.predicted_mm[a])), (x(pb), y(tl.predicted_mm[b])), [30, 80, 220]);
        }
    }
    c.write(path)
}

/// The gate's trade-off: x the worst trace's p95 residual (0-5 mm, ticks every 0.5 mm, the RESP-2
/// window's 2-4 mm shaded), y the mean duty (0-100 %, lines every 10 %); one line per confidence
/// factor (0 orange, 1 blue, 2 purple, others grey) through its window half-widths, each point a
/// square, green when every trace's p95 residual is inside that half-width, red when not.
pub(crate) fn tradeoff_png(path: &Path, points: &[stylet_respiration::eval::TradeoffPoint]) -> anyhow::Result<()> {
    let (w, h, m) = (800usize, 500usize, 30.0);
    let x = |mm: f64| m + mm.clamp(0.0, 5.0) / 5.0 * (w as f64 - 2.0 * m);
    let y = |duty: f64| h as f64 - m - duty.clamp(0.0, 1.0) * (h as f64 - 2.0 * m);
    let mut c = Canvas::new(w, h);
    for xx in x(2.0) as i64..=x(4.0) as i64 {
        for yy in y(1.0) as i64..=y(0.0) as i64 {
            c.set(xx, yy, [240, 240, 250]);
        }
    }
    for k in 0..=10 {
        let d = f64::from(k) / 10.0;
        c.line((m, y(d)), (w as f64 - m, y(d)), [215, 215, 215]);
        let mm = f64::from(k) * 0.5;
        c.line((x(mm), h as f64 - m), (x(mm), h as f64 - m + 8.0), [90, 90, 90]);
    }
    c.line((m, y(0.0)), (w as f64 - m, y(0.0)), [90, 90, 90]);
    c.line((m, y(0.0)), (m, y(1.0)), [90, 90, 90]);
    let mut factors: Vec<f64> = points.iter().map(|p| p.confidence_factor).collect();
    factors.sort_by(f64::total_cmp);
    factors.dedup();
    for f in factors {
        let colour = [(0.0, [230, 130, 20]), (1.0, [30, 80, 220]), (2.0, [140, 40, 160])]
            .iter()
            .find(|(k, _)| (k - f).abs() < 1e-9)
            .map_or([120, 120, 120], |(_, c)| *c);
        let line: Vec<_> = points.iter().filter(|p| p.confidence_factor == f).collect();
        for pair in line.windows(2) {
            c.line(
                (x(pair[0].worst_p95_mm), y(pair[0].mean_duty)),
                (x(pair[1].worst_p95_mm), y(pair[1].mean_duty)),
                colour,
            );
        }
        for p in line {
            let mark = if p.traces_outside == 0 { [40, 170, 60] } else { [210, 30, 30] };
            let (px, py) = (x(p.worst_p95_mm) as i64, y(p.mean_duty) as i64);
            for dx in -4..=4 {
                for dy in -4..=4 {
                    c.set(px + dx, py + dy, if dx.abs() == 4 || dy.abs() == 4 { colour } else { mark });
                }
            }
        }
    }
    c.write(path)
}

/// An RGB image built pixel by pixel (for slice renderings).
pub(crate) struct Image {
    canvas: Canvas,
}

impl Image {
    pub(crate) fn new(w: usize, h: usize) -> Self {
        Self { canvas: Canvas::new(w, h) }
    }
    pub(crate) fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        self.canvas.set(x, y, c);
    }
    pub(crate) fn line(&mut self, a: (f64, f64), b: (f64, f64), c: [u8; 3]) {
        self.canvas.line(a, b, c);
    }
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        self.canvas.write(path)
    }
}
