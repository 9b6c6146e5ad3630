//! The I/O edge: the controller model on a real pty.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use stylet_protocol::{encode_frame, FrameDecoder, Message, MAX_FRAME};

use crate::controller::{Controller, Link};

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

/// Runs the controller on the pty until `stop` is set. One loop iteration per ~0.5 ms: read what
/// arrived, handle it, step the model, write what it produced.
pub fn serve(pty: &mut Pty, controller: &mut Controller, stop: &Arc<AtomicBool>) {
    serve_with(pty, controller, stop, &mut |_, _| {});
}

/// [`serve`], calling `each(controller, now)` once per loop iteration: what a simulation that
/// runs the controller in process uses to inject faults at procedure events and to read the
/// arm's true joint positions (the ground truth the host never sees).
pub fn serve_with(
    pty: &mut Pty,
    controller: &mut Controller,
    stop: &Arc<AtomicBool>,
    each: &mut dyn FnMut(&mut Controller, f64),
) {
    let start = Instant::now();
    let mut decoder = FrameDecoder::new();
    let mut seq: u16 = 0;
    let mut outbox: VecDeque<(f64, Vec<u8>)> = VecDeque::new();
    let mut rbuf = [0u8; 1024];
    let mut fbuf = [0u8; MAX_FRAME];
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_secs_f64();
        each(controller, now);
        let up = controller.link(now) == Link::Up;
        let mut replies: Vec<Message> = Vec::new();
        match pty.master.read(&mut rbuf) {
            Ok(n) if n > 0 && up => {
                let mut frames = Vec::new();
                decoder.feed(&rbuf[..n], |r| {
                    if let Ok(f) = r {
                        frames.push(f);
                    }
                });
                for f in frames {
                    if controller.drops_frame() {
                        continue;
                    }
                    replies.extend(controller.handle(now, f.seq, &f.message));
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => std::thread::sleep(Duration::from_micros(500)),
        }
        replies.extend(controller.step(now));
        if up {
            for m in replies {
                seq = seq.wrapping_add(1);
                // A noisy line loses frames both ways.
                if controller.drops_frame() {
                    continue;
                }
                if let Ok(n) = encode_frame(seq, &m, &mut fbuf) {
                    let mut frame = fbuf[..n].to_vec();
                    if controller.corrupts_frame() && n > 1 {
                        let i = controller.corrupt_index(n - 1);
                        frame[i] ^= 0x5A;
                        if frame[i] == 0 {
                            frame[i] = 0x01;
                        }
                    }
                    outbox.push_back((now + controller.send_delay_s(), frame));
                }
            }
        }
        while let Some((at, _)) = outbox.front() {
            if *at > now {
                break;
            }
            if let Some((_, frame)) = outbox.pop_front() {
                // A host that is not reading fills the pty: drop rather than block the controller.
                let _ = pty.master.write_all(&frame);
            }
        }
        if outbox.len() > 10_000 {
            outbox.clear();
        }
    }
}
