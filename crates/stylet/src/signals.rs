//! The signals that ask a long-running command to end: SIGTERM (a service manager, `kill`),
//! SIGHUP (its terminal closed, e.g. a tmux session killed) and SIGINT (Ctrl-C where the
//! terminal is not in raw mode). Each sets one flag that the command's loop watches, so that
//! it ends the way it ends on its own: the supervisor puts the drives off before it stops, and
//! the host tuning of `config/realtime.toml` (the kernel's serial input workers raised, the
//! workqueue cpumask) is put back. Killed at once instead, a process would leave that tuning in
//! place for every process after it. A second signal ends the process at once (exit code 1),
//! for a command that does not end when asked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals watched.
const ENDING: [i32; 3] = [SIGTERM, SIGHUP, SIGINT];

/// Set when an ending signal arrived.
#[derive(Clone, Debug)]
pub(crate) struct EndRequest(Arc<AtomicBool>);

impl EndRequest {
    /// Watches the ending signals from now on.
    ///
    /// # Errors
    /// When a handler cannot be installed.
    pub(crate) fn watch() -> std::io::Result<Self> {
        Self::watch_into(Arc::new(AtomicBool::new(false)))
    }

    /// [`EndRequest::watch`], setting `flag` (a flag the command's loop already watches).
    pub(crate) fn watch_into(flag: Arc<AtomicBool>) -> std::io::Result<Self> {
        for signal in ENDING {
            // Registered first, so that it sees the flag as the earlier signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&flag))?;
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
        }
        Ok(EndRequest(flag))
    }

    /// The flag the signals set.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// Whether an ending signal has arrived.
    pub(crate) fn asked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
