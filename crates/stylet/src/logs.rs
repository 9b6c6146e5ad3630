//! Logs: the `tracing` subscriber of the binary. Every library (and every dependency that logs,
//! through `tracing` or the `log` facade) emits events; here they become lines on standard
//! error, human-readable or JSON (`--log-json`), filtered by `-v` (info), `-vv` (debug), `-vvv`
//! (trace), warnings and errors otherwise, or by `STYLET_LOG` (an `EnvFilter`, e.g.
//! `STYLET_LOG=stylet_procedure=debug,dicom_ul=trace`), which wins. The control thread never
//! logs: its events reach the procedure's thread on its wait-free channel and are logged there.
//! A command that owns the terminal (the procedure console) sends the lines to a file instead
//! ([`to_file`]).

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// Where lines go: standard error until [`to_file`].
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Installs the subscriber (once; later calls do nothing).
pub(crate) fn init(verbosity: u8, json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("STYLET_LOG") {
        Ok(f) if !f.trim().is_empty() => EnvFilter::try_new(&f).unwrap_or_else(|e| {
            eprintln!("warning: STYLET_LOG={f:?} is not a log filter ({e}); using {default:?}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| Line).with_ansi(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// From now on, log lines are appended to `path` instead of standard error.
///
/// # Errors
/// The file cannot be opened.
pub(crate) fn to_file(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    *FILE.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
    Ok(())
}

/// One log line's writer: the file when there is one, else standard error.
struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(f) => f.write(buf),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match FILE.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(f) => f.flush(),
            None => std::io::stderr().flush(),
        }
    }
}
