//! The rerun side (feature `rerun`): one thread owns the recording stream and turns items into
//! archetypes.

use std::sync::mpsc::Receiver;

use crate::{Item, Level, Msg, Sink, TelemetryError, TIMELINE};

/// Opens the recording for `sink`.
pub(crate) fn open(app: &'static str, sink: &Sink) -> Result<rerun::RecordingStream, TelemetryError> {
    let builder = rerun::RecordingStreamBuilder::new(app);
    let start_err = |e: &dyn std::fmt::Display| TelemetryError::Start { sink: sink.to_string(), reason: e.to_string() };
    match sink {
        Sink::File(p) => builder.save(p).map_err(|e| start_err(&e)),
        Sink::Spawn => builder.spawn().map_err(|e| start_err(&e)),
        Sink::Connect(url) => builder.connect_grpc_opts(url.clone()).map_err(|e| start_err(&e)),
    }
}

pub(crate) fn sink_loop(rec: &rerun::RecordingStream, rx: &Receiver<Msg>) -> Result<u64, TelemetryError> {
    let mut logged = 0u64;
    let mut first_error = None;
    for msg in rx {
        let Msg::Item(item) = msg else { break };
        match log_item(rec, &item) {
            Ok(()) => logged += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    rec.flush_blocking().map_err(|e| TelemetryError::Write(e.to_string()))?;
    match first_error {
        Some(e) => Err(TelemetryError::Write(e)),
        None => Ok(logged),
    }
}

fn rgba(c: [u8; 4]) -> rerun::Color {
    rerun::Color::from_unmultiplied_rgba(c[0], c[1], c[2], c[3])
}

fn at(rec: &rerun::RecordingStream, t_s: Option<f64>) -> bool {
    match t_s {
        Some(t) => {
            rec.set_duration_secs(TIMELINE, t);
            false
        }
        None => true,
    }
}

fn log_item(rec: &rerun::RecordingStream, item: &Item) -> Result<(), String> {
    let r = match item {
        Item::Scalar { path, t_s, value } => {
            rec.set_duration_secs(TIMELINE, *t_s);
            rec.log(path.as_str(), &rerun::Scalars::single(*value))
        }
        Item::Text { path, t_s, text, level } => {
            rec.set_duration_secs(TIMELINE, *t_s);
            let level = match level {
                Level::Info => rerun::TextLogLevel::INFO,
                Level::Warn => rerun::TextLogLevel::WARN,
                Level::Error => rerun::TextLogLevel::ERROR,
            };
            rec.log(path.as_str(), &rerun::TextLog::new(text.as_str()).with_level(level))
        }
        Item::Points { path, t_s, points, radius_mm, color } => {
            let a = rerun::Points3D::new(points.iter().copied()).with_radii([*radius_mm]).with_colors([rgba(*color)]);
            if at(rec, *t_s) {
                rec.log_static(path.as_str(), &a)
            } else {
                rec.log(path.as_str(), &a)
            }
        }
        Item::Lines { path, t_s, strips, radius_mm, color } => {
            let a =
                rerun::LineStrips3D::new(strips.iter().cloned()).with_radii([*radius_mm]).with_colors([rgba(*color)]);
            if at(rec, *t_s) {
                rec.log_static(path.as_str(), &a)
            } else {
                rec.log(path.as_str(), &a)
            }
        }
        Item::Ellipsoid { path, centre, half_sizes_mm, rotation_xyzw, color } => {
            let a = rerun::Ellipsoids3D::from_centers_and_half_sizes([*centre], [*half_sizes_mm])
                .with_quaternions([rerun::Quaternion::from_xyzw(*rotation_xyzw)])
                .with_colors([rgba(*color)]);
            rec.log_static(path.as_str(), &a)
        }
        Item::Image { path, width, height, pixels } => {
            if pixels.len() != (*width as usize) * (*height as usize) {
                return Err(format!("{path}: {} pixels for a {width}x{height} image", pixels.len()));
            }
            rec.log_static(path.as_str(), &rerun::Image::from_l8(pixels.clone(), [*width, *height]))
        }
    };
    r.map_err(|e| e.to_string())
}
