//! Telemetry of a procedure to rerun (0.36): a live viewer or an `.rrd` file.
//!
//! The control side never waits for it: [`Telemetry::log`] puts an [`Item`] into a bounded
//! channel and returns; when the sink is slow and the channel is full the item is dropped and
//! counted ([`Telemetry::dropped`]). One thread owns the rerun recording stream and turns items
//! into archetypes. Callers build items from plain data (no rerun types cross this crate's
//! boundary), so the rest of the workspace builds and tests without rerun. Without the `rerun`
//! feature (on by default) the API stays and [`Telemetry::start`] says the build has none.
//!
//! Entity paths and timelines are documented in docs/telemetry.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "rerun")]
use std::sync::mpsc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

#[cfg(feature = "rerun")]
mod rerun_sink;

/// Whether this build can record (the `rerun` feature); without it only [`Telemetry::off`] works.
pub const BUILT: bool = cfg!(feature = "rerun");

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

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::File(p) => write!(f, "{}", p.display()),
            Sink::Spawn => f.write_str("spawned viewer"),
            Sink::Connect(u) => f.write_str(u),
        }
    }
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
    /// {sink}: this build has no rerun telemetry (it was built without the `telemetry` feature)
    NotBuilt {
        /// The sink asked for.
        sink: String,
    },
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
#[cfg_attr(not(feature = "rerun"), allow(dead_code))]
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
        #[cfg(feature = "rerun")]
        {
            let rec = rerun_sink::open(app, sink)?;
            let (tx, rx) = mpsc::sync_channel(capacity.max(1));
            let join = std::thread::Builder::new()
                .name("stylet-telemetry".into())
                .spawn(move || rerun_sink::sink_loop(&rec, &rx))?;
            Ok(Self { logger: Logger { tx: Some(tx), dropped: Arc::new(AtomicU64::new(0)) }, join: Some(join) })
        }
        #[cfg(not(feature = "rerun"))]
        {
            let _ = (app, capacity);
            Err(TelemetryError::NotBuilt { sink: sink.to_string() })
        }
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
