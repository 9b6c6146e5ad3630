//! The procedure recorder: an append-only log of every command, state transition, operator
//! action and fault (docs/recorder.md has the format byte by byte).
//!
//! Format: UTF-8 text, one record per line. Each line is `<crc> <json>\n` where `<crc>` is the
//! CRC-32C (Castagnoli) of the JSON text as 8 lower-case hex digits. The first line is the header
//! (`"kind":"header"`) and describes the format in words; every later line is a [`Record`]:
//! `seq` (0, 1, 2, ... without gaps), `t_s` (the procedure clock, seconds) and the event's fields
//! under its `kind`. A reader needs nothing but this paragraph; the log outlives rerun's `.rrd`
//! format, which changes between versions.
//!
//! Crash safety: the writer thread hands every batch to the operating system as soon as its
//! queue is empty (so a killed process loses at most the record being written), and forces it to
//! the disk (`fsync`) at once after state transitions, operator actions and faults, and at least
//! every `fsync_interval` otherwise. [`read_log`] returns the records up to the last complete,
//! checksummed one and says where and why the file was cut.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod mcap_export;
pub use mcap_export::{topic as mcap_topic, write_mcap, McapError, McapStats};

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The format's name in the header.
pub const FORMAT: &str = "stylet procedure log";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A command the supervisor let through to the controller (name and values in internal
    /// units: mm, rad).
    Command {
        /// E.g. `setpoint`, `enable`, `home`.
        name: String,
        /// Values (joint positions, ...).
        values: Vec<f64>,
    },
    /// A state machine changed state (the workflow or the supervisor).
    State {
        /// Which machine.
        machine: String,
        /// From.
        from: String,
        /// To.
        to: String,
        /// Why.
        reason: String,
    },
    /// An operator action or decision.
    Operator {
        /// The action.
        action: String,
        /// Its details or reason.
        detail: String,
    },
    /// A fault.
    Fault {
        /// Fault code (e.g. `HAZ-3`).
        code: String,
        /// What happened.
        detail: String,
    },
    /// A measurement worth keeping (tip position, respiration, ...).
    Sample {
        /// What.
        name: String,
        /// Values.
        values: Vec<f64>,
    },
    /// Free text.
    Note {
        /// The text.
        text: String,
    },
}

impl Event {
    /// The record's `kind` as the log writes it (`command`, `state`, `operator`, `fault`,
    /// `sample`, `note`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Command { .. } => "command",
            Event::State { .. } => "state",
            Event::Operator { .. } => "operator",
            Event::Fault { .. } => "fault",
            Event::Sample { .. } => "sample",
            Event::Note { .. } => "note",
        }
    }

    /// Whether this event is forced to the disk at once.
    #[must_use]
    pub fn is_critical(&self) -> bool {
        matches!(self, Event::State { .. } | Event::Operator { .. } | Event::Fault { .. })
    }
}

/// One log record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Sequence number, from 0 without gaps.
    pub seq: u64,
    /// Procedure time, seconds.
    pub t_s: f64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// The header line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always `"header"`.
    pub kind: String,
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Wall-clock start, Unix milliseconds (for the reader's information only).
    pub started_unix_ms: u64,
    /// What the procedure is (scenario, seed, ...).
    pub procedure: String,
    /// The format in words, so a reader needs nothing else.
    pub description: String,
}

fn line(json: &str) -> String {
    format!("{:08x} {json}\n", CASTAGNOLI.checksum(json.as_bytes()))
}

/// Why a log could not be written. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum RecorderError {
    /// cannot write the procedure log {path}: {source}
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writer statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecorderStats {
    /// Records written.
    pub written: u64,
    /// Records refused because the queue was full (the control loop never waits).
    pub dropped: u64,
    /// fsync calls.
    pub fsyncs: u64,
}

enum Msg {
    Record(f64, Event),
    Close,
}

/// The recorder handle: [`Recorder::record`] never blocks.
#[derive(Debug)]
pub struct Recorder {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<RecorderStats, RecorderError>>>,
}

/// A cloneable handle that queues records into a [`Recorder`] without blocking.
#[derive(Clone, Debug)]
pub struct RecordSender {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl RecordSender {
    /// Queues a record; never blocks. Returns false (and counts it) when the queue is full.
    pub fn record(&self, t_s: f64, event: Event) -> bool {
        try_record(&self.tx, &self.dropped, t_s, event)
    }
}

fn try_record(tx: &SyncSender<Msg>, dropped: &AtomicU64, t_s: f64, event: Event) -> bool {
    match tx.try_send(Msg::Record(t_s, event)) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// How often records are forced to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsyncPolicy {
    /// At most this long between fsyncs while records arrive.
    pub interval: Duration,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self { interval: Duration::from_millis(100) }
    }
}

impl Recorder {
    /// Creates the log (refusing to overwrite an existing file) and writes its header.
    ///
    /// # Errors
    /// [`RecorderError::Io`] naming the file.
    pub fn create(
        path: &Path,
        procedure: &str,
        started_unix_ms: u64,
        policy: FsyncPolicy,
        queue: usize,
    ) -> Result<Self, RecorderError> {
        let io = |source| RecorderError::Io { path: path.to_path_buf(), source };
        let mut file = File::options().write(true).create_new(true).open(path).map_err(io)?;
        let header = Header {
            kind: "header".into(),
            format: FORMAT.into(),
            version: VERSION,
            started_unix_ms,
            procedure: procedure.into(),
            description: "UTF-8 lines '<crc> <json>\\n'; <crc> = CRC-32C (Castagnoli) of <json> as 8 lower-case hex digits. \
                          This header first; then records {seq (0,1,2,... no gaps), t_s (procedure clock, s), kind: \
                          command{name,values} | state{machine,from,to,reason} | operator{action,detail} | fault{code,detail} | \
                          sample{name,values} | note{text}}. Units: mm, rad, s. A line without its newline or with a bad CRC \
                          is where the log was cut."
                .into(),
        };
        let json = serde_json::to_string(&header).map_err(|e| io(std::io::Error::other(e)))?;
        file.write_all(line(&json).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        let (tx, rx) = sync_channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let p = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("stylet-recorder".into())
            .spawn(move || write_loop(file, &p, &rx, policy))
            .map_err(io)?;
        Ok(Self { tx, dropped, thread: Some(thread) })
    }

    /// A sender for other threads and closures: same queue, same drop count. Records sent after
    /// [`Recorder::close`] are counted as dropped.
    #[must_use]
    pub fn sender(&self) -> RecordSender {
        RecordSender { tx: self.tx.clone(), dropped: Arc::clone(&self.dropped) }
    }

    /// Queues a record; never blocks. Returns false (and counts it) when the queue is full.
    pub fn record(&self, t_s: f64, event: Event) -> bool {
        try_record(&self.tx, &self.dropped, t_s, event)
    }

    /// Writes what is queued, syncs and closes.
    ///
    /// # Errors
    /// [`RecorderError::Io`] from the writer.
    pub fn close(mut self) -> Result<RecorderStats, RecorderError> {
        let _ = self.tx.send(Msg::Close);
        let stats = match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r?,
            _ => RecorderStats::default(),
        };
        Ok(RecorderStats { dropped: self.dropped.load(Ordering::Relaxed), ..stats })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.tx.send(Msg::Close);
            let _ = t.join();
        }
    }
}

fn write_loop(
    file: File,
    path: &Path,
    rx: &Receiver<Msg>,
    policy: FsyncPolicy,
) -> Result<RecorderStats, RecorderError> {
    let io = |source| RecorderError::Io { path: path.to_path_buf(), source };
    let mut out = std::io::BufWriter::new(file);
    let mut stats = RecorderStats::default();
    let mut last_sync = Instant::now();
    let mut dirty = false;
    let mut seq = 0u64;
    loop {
        // Block for the next message, then take everything already queued.
        let first = match rx.recv_timeout(policy.interval) {
            Ok(m) => Some(m),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Msg::Close),
        };
        let mut critical = false;
        let mut close = false;
        for msg in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match msg {
                Msg::Record(t_s, event) => {
                    critical |= event.is_critical();
                    let rec = Record { seq, t_s, event };
                    let json = serde_json::to_string(&rec).map_err(|e| io(std::io::Error::other(e)))?;
                    out.write_all(line(&json).as_bytes()).map_err(io)?;
                    seq += 1;
                    stats.written += 1;
                    dirty = true;
                }
                Msg::Close => {
                    close = true;
                    break;
                }
            }
        }
        // The queue is empty: hand the batch to the OS (survives the process being killed).
        out.flush().map_err(io)?;
        if dirty && (critical || close || last_sync.elapsed() >= policy.interval) {
            out.get_ref().sync_data().map_err(io)?;
            stats.fsyncs += 1;
            last_sync = Instant::now();
            dirty = false;
        }
        if close {
            return Ok(stats);
        }
    }
}

/// Where and why a log ends early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cut {
    /// Byte offset of the first byte not read as a record.
    pub byte_offset: u64,
    /// 1-based line number there.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// A log read back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Log {
    /// The header.
    pub header: Header,
    /// Records up to the last complete one.
    pub records: Vec<Record>,
    /// Where the file was cut, if it was.
    pub cut: Option<Cut>,
    /// File size, bytes.
    pub bytes: u64,
}

/// A log that cannot be read at all. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum ReadError {
    /// cannot read the procedure log {path}: {reason}
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// {path}: not a Stylet procedure log ({reason})
    NotALog {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

fn parse_line(text: &str) -> Result<&str, String> {
    let (crc, json) = text.split_once(' ').ok_or("no '<crc> ' prefix")?;
    let want = u32::from_str_radix(crc, 16).map_err(|_| format!("checksum field {crc:?} is not hex"))?;
    if crc.len() != 8 || CASTAGNOLI.checksum(json.as_bytes()) != want {
        return Err("checksum mismatch".into());
    }
    Ok(json)
}

/// Parses a log's bytes (`path` only names it in messages).
///
/// # Errors
/// [`ReadError::NotALog`] when the header is missing or not this format and version.
pub fn parse_log(path: &str, bytes: &[u8]) -> Result<Log, ReadError> {
    let not = |reason: String| ReadError::NotALog { path: path.into(), reason };
    let mut offset = 0usize;
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let first = lines.next().ok_or_else(|| not("empty file".into()))?;
    let first_text = std::str::from_utf8(first).map_err(|_| not("header is not UTF-8".into()))?;
    let json = parse_line(first_text.strip_suffix('\n').ok_or_else(|| not("header line incomplete".into()))?)
        .map_err(|e| not(format!("header: {e}")))?;
    let header: Header = serde_json::from_str(json).map_err(|e| not(format!("header: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(not(format!(
            "format {:?} version {}, this reader knows {FORMAT:?} {VERSION}",
            header.format, header.version
        )));
    }
    offset += first.len();
    let mut records = Vec::new();
    let mut cut = None;
    for (k, raw) in lines.enumerate() {
        let line_no = k + 2;
        let fail = |reason: String| Some(Cut { byte_offset: offset as u64, line: line_no, reason });
        let Ok(text) = std::str::from_utf8(raw) else {
            cut = fail("not UTF-8".into());
            break;
        };
        let Some(body) = text.strip_suffix('\n') else {
            cut = fail(format!("last line incomplete ({} bytes without a newline)", raw.len()));
            break;
        };
        let rec = parse_line(body).and_then(|j| serde_json::from_str::<Record>(j).map_err(|e| e.to_string()));
        match rec {
            Ok(r) if r.seq == records.len() as u64 => records.push(r),
            Ok(r) => {
                cut = fail(format!("sequence jumps from {} to {}", records.len(), r.seq));
                break;
            }
            Err(e) => {
                cut = fail(e);
                break;
            }
        }
        offset += raw.len();
    }
    Ok(Log { header, records, cut, bytes: bytes.len() as u64 })
}

/// Reads a log file.
///
/// # Errors
/// A [`ReadError`].
pub fn read_log(path: &Path) -> Result<Log, ReadError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ReadError::Io { path: name.clone(), reason: e.to_string() })?;
    parse_log(&name, &bytes)
}
