//! Telemetry of a procedure to rerun (0.36): a live viewer or an `.rrd` file.
//!
//! The control side never waits for it: [`Telemetry::log`] puts an [`Item`] into a bounded
//! channel and returns; when the sink is slow and the channel is full the item is dropped and
//! counted ([`Telemetry::dropped`]). One thread owns the rerun recording stream and turns items
//! into archetypes. Callers build items from plain data (no rerun types cross this crate's
//! boundary), so the rest of the workspace builds and tests without rerun.
//!
//! Entity paths and timelines are documented in docs/telemetry.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The timeline every timed item is logged on: seconds since the procedure started.
pub const TIMELINE: &str = "procedure_time";

/// Where the recording goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// An `.rrd` file.
    File(PathBuf),
    /// Spawn a rerun viewer (the `rerun` executable on PATH) and stream to it.
    Spawn,
    /// Stream to a running viewer at this gRPC URL (e.g. `rerun+http://127.0.0.1:9876/proxy`).
    Connect(String),
}

/// Severity of a text item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Routine.
    Info,
    /// Something the operator should notice.
    Warn,
    /// A fault.
    Error,
}

/// One thing to log. `t_s: None` logs it as static (valid for the whole procedure).
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A time series sample.
    Scalar {
        /// Entity path.
        path: String,
        /// Procedure time, s.
        t_s: f64,
        /// Value.
        value: f64,
    },
    /// A text event (state changes, faults, operator actions).
    Text {
        /// Entity path.
        path: String,
        /// Procedure time, s.
        t_s: f64,
        /// Text.
        text: String,
        /// Severity.
        level: Level,
    },
    /// Points in the world frame (mm).
    Points {
        /// Entity path.
        path: String,
        /// Procedure time, s (None: static).
        t_s: Option<f64>,
        /// Positions, mm.
        points: Vec<[f32; 3]>,
        /// Radius, mm.
        radius_mm: f32,
        /// RGBA.
        color: [u8; 4],
    },
    /// Polylines in the world frame (mm).
    Lines {
        /// Entity path.
        path: String,
        /// Procedure time, s (None: static).
        t_s: Option<f64>,
        /// Each strip's vertices, mm.
        strips: Vec<Vec<[f32; 3]>>,
        /// Line radius, mm.
        radius_mm: f32,
        /// RGBA.
        color: [u8; 4],
    },
    /// An ellipsoid (the ablation zone).
    Ellipsoid {
        /// Entity path.
        path: String,
        /// Centre, mm.
        centre: [f32; 3],
        /// Half sizes along its own x, y, z, mm.
        half_sizes_mm: [f32; 3],
        /// Orientation as a quaternion (x, y, z, w).
        rotation_xyzw: [f32; 4],
        /// RGBA.
        color: [u8; 4],
    },
    /// A greyscale picture (a CT slice, windowed to 8 bits), static.
    Image {
        /// Entity path.
        path: String,
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
        /// Row-major 8-bit pixels, `width * height` of them.
        pixels: Vec<u8>,
    },
}

/// Telemetry could not start or finish.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum TelemetryError {
    /// starting the rerun recording ({sink}): {reason}
    Start {
        /// The sink.
        sink: String,
        /// rerun's error.
        reason: String,
    },
    /// writing the rerun recording: {0}
    Write(String),
    /// the telemetry thread could not be started: {0}
    Thread(#[from] std::io::Error),
    /// the telemetry thread panicked
    Panicked,
}

/// What a finished telemetry run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Items logged to rerun.
    pub logged: u64,
    /// Items dropped because the sink was slow (channel full).
    pub dropped: u64,
}

/// What goes through the channel.
#[derive(Debug)]
enum Msg {
    Item(Item),
    /// Finish: log nothing after this (loggers still alive then count their items as dropped).
    Close,
}

/// A cheap, cloneable sender for other threads and closures (same channel, same drop count).
#[derive(Clone, Debug)]
pub struct Logger {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
}

impl Logger {
    /// Queues an item without waiting; drops and counts it when the channel is full.
    pub fn log(&self, item: Item) {
        if let Some(tx) = &self.tx {
            match tx.try_send(Msg::Item(item)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether items go anywhere.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }
}

/// The control side's handle. [`Telemetry::off`] is a handle that logs nothing.
#[derive(Debug)]
pub struct Telemetry {
    logger: Logger,
    join: Option<JoinHandle<Result<u64, TelemetryError>>>,
}

impl Telemetry {
    /// A handle that discards everything (no sink).
    #[must_use]
    pub fn off() -> Self {
        Self { logger: Logger { tx: None, dropped: Arc::new(AtomicU64::new(0)) }, join: None }
    }

    /// Starts the sink thread with a channel of `capacity` items.
    ///
    /// # Errors
    /// [`TelemetryError::Start`] when rerun cannot open the sink (file not writable, no viewer).
    pub fn start(app: &'static str, sink: &Sink, capacity: usize) -> Result<Self, TelemetryError> {
        let builder = rerun::RecordingStreamBuilder::new(app);
        let start_err = |e: &dyn std::fmt::Display| TelemetryError::Start {
            sink: match sink {
                Sink::File(p) => p.display().to_string(),
                Sink::Spawn => "spawned viewer".into(),
                Sink::Connect(u) => u.clone(),
            },
            reason: e.to_string(),
        };
        let rec = match sink {
            Sink::File(p) => builder.save(p).map_err(|e| start_err(&e))?,
            Sink::Spawn => builder.spawn().map_err(|e| start_err(&e))?,
            Sink::Connect(url) => builder.connect_grpc_opts(url.clone()).map_err(|e| start_err(&e))?,
        };
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let join = std::thread::Builder::new().name("stylet-telemetry".into()).spawn(move || sink_loop(&rec, &rx))?;
        Ok(Self { logger: Logger { tx: Some(tx), dropped: Arc::new(AtomicU64::new(0)) }, join: Some(join) })
    }

    /// Whether items go anywhere.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.logger.is_on()
    }

    /// A sender for other threads and closures. [`Telemetry::finish`] waits for every logger
    /// to be dropped.
    #[must_use]
    pub fn logger(&self) -> Logger {
        self.logger.clone()
    }

    /// Queues an item without waiting; drops and counts it when the channel is full.
    pub fn log(&self, item: Item) {
        self.logger.log(item);
    }

    /// Items dropped so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.logger.dropped.load(Ordering::Relaxed)
    }

    /// Lets the thread log what is queued, flush and stop, and reports. Loggers still alive
    /// afterwards count what they log as dropped.
    ///
    /// # Errors
    /// [`TelemetryError::Write`] when the final flush failed; [`TelemetryError::Panicked`].
    pub fn finish(mut self) -> Result<Stats, TelemetryError> {
        if let Some(tx) = self.logger.tx.take() {
            // Not the control thread: waiting for room in the channel is fine here.
            let _ = tx.send(Msg::Close);
        }
        let logged = match self.join.take() {
            Some(j) => j.join().map_err(|_| TelemetryError::Panicked)??,
            None => 0,
        };
        Ok(Stats { logged, dropped: self.dropped() })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tx) = self.logger.tx.take() {
            let _ = tx.send(Msg::Close);
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn sink_loop(rec: &rerun::RecordingStream, rx: &Receiver<Msg>) -> Result<u64, TelemetryError> {
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
