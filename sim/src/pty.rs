//! The I/O edge: the controller model on a real pty.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::controller::Controller;
use crate::wire::ControllerEnd;
use serialport::{SerialPort, TTYPort};

/// The pty could not be set up.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum PtyError {
    /// cannot create a pty pair: {0}
    Pair(serialport::Error),
    /// the pty has no slave device path
    NoPath,
}

/// A pty pair: the controller keeps the master; the host opens `path`.
#[derive(Debug)]
pub struct Pty {
    master: TTYPort,
    // Held open so that master reads do not fail before the host opens the slave.
    _slave: TTYPort,
    /// The device path the host opens.
    pub path: String,
}

impl Pty {
    /// Creates the pair.
    ///
    /// # Errors
    /// [`PtyError`].
    pub fn open() -> Result<Self, PtyError> {
        let (mut master, slave) = TTYPort::pair().map_err(PtyError::Pair)?;
        let path = slave.name().ok_or(PtyError::NoPath)?;
        let _ = master.set_timeout(Duration::from_micros(500));
        Ok(Pty { master, _slave: slave, path })
    }

    /// The master side, for a device simulated by hand (e.g. a sensor writing lines); call it
    /// once the host has opened `path`.
    #[must_use]
    pub fn into_master(self) -> TTYPort {
        self.master
    }
}

/// A gap in the serving loop longer than this means the simulator itself was frozen.
const FROZEN_S: f64 = 0.02;
/// How long one turn of the loop takes at most when it runs (the read's timeout and the work).
const LOOP_S: f64 = 0.001;

/// Bytes framed for the host and not yet taken by the pty beyond this: whole frames are dropped
/// (a host that stopped reading), never a frame's tail.
const UNSENT_LIMIT: usize = 64 * 1024;

/// How the serial line served the host, as the controller's end saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LineReport {
    /// Frames handed to the line (written whole to the pty, or queued to be).
    pub frames_sent: u64,
    /// Frames dropped because the host had left [`UNSENT_LIMIT`] bytes untaken.
    pub frames_dropped: u64,
    /// Writes the pty refused (timed out or failed); what they held was written later.
    pub write_stalls: u64,
    /// Frames refused by the controller (Nack) so far.
    pub nacks: u64,
}

/// Runs the controller on the pty until `stop` is set. One loop iteration per ~0.5 ms: read what
/// arrived, handle it, step the model, write what it produced.
pub fn serve(pty: &mut Pty, controller: &mut Controller, stop: &Arc<AtomicBool>) -> LineReport {
    serve_with(pty, controller, stop, &mut |_, _| {})
}

/// [`serve`], calling `each(controller, now)` once per loop iteration: what a simulation that
/// runs the controller in process uses to inject faults at procedure events and to read the
/// arm's true joint positions (the ground truth the host never sees).
///
/// What the controller says is written as a UART's transmitter would send it: every byte, in
/// order, as fast as the line takes it. A write the pty does not take at once (a host slow to
/// read) keeps its bytes for the next turn rather than losing the frame or cutting it short,
/// which the host would count as link errors (HAZ-9) of the simulator's making.
pub fn serve_with(
    pty: &mut Pty,
    controller: &mut Controller,
    stop: &Arc<AtomicBool>,
    each: &mut dyn FnMut(&mut Controller, f64),
) -> LineReport {
    let start = Instant::now();
    let mut end = ControllerEnd::new();
    let mut rbuf = [0u8; 1024];
    let mut last = 0.0;
    let mut unsent: VecDeque<u8> = VecDeque::new();
    let mut report = LineReport::default();
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_secs_f64();
        // The loop turns every millisecond or faster; a longer gap means this simulator was not
        // running (not the host's doing): the controller does not hold it against the host.
        if now - last > FROZEN_S {
            controller.frozen(now - last - LOOP_S);
        }
        last = now;
        each(controller, now);
        match pty.master.read(&mut rbuf) {
            Ok(n) if n > 0 => end.receive(controller, now, &rbuf[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => std::thread::sleep(Duration::from_micros(500)),
        }
        end.step(controller, now);
        end.deliver(now, &mut |frame| {
            if unsent.len() + frame.len() > UNSENT_LIMIT {
                report.frames_dropped += 1;
            } else {
                unsent.extend(frame);
                report.frames_sent += 1;
            }
        });
        while !unsent.is_empty() {
            let (head, _) = unsent.as_slices();
            match pty.master.write(head) {
                Ok(n) if n > 0 => {
                    unsent.drain(..n);
                }
                Ok(_) | Err(_) => {
                    report.write_stalls += 1;
                    break;
                }
            }
        }
    }
    report.nacks = controller.nacks();
    report
}
