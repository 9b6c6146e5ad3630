//! The controller's end of the serial line, whatever carries the bytes: frames from the host are
//! decoded and handed to the [`Controller`]; what it answers is framed, passed through the line
//! faults it was given (lost, corrupted, delayed frames) and released when due. The pty
//! ([`crate::pty`]) and the lockstep actuator ([`crate::lockstep`]) both use it, so a fault
//! behaves the same on a real pty and in virtual time.

use std::collections::VecDeque;

use stylet_protocol::{encode_frame, FrameDecoder, Message, MAX_FRAME};

use crate::controller::{Controller, Link};

/// Frames queued towards the host beyond this are dropped (a host that stopped reading).
const OUTBOX_LIMIT: usize = 10_000;

/// The controller's side of the line.
#[derive(Debug)]
pub struct ControllerEnd {
    decoder: FrameDecoder,
    seq: u16,
    pending: Vec<Message>,
    outbox: VecDeque<(f64, Vec<u8>)>,
}

impl Default for ControllerEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerEnd {
    /// An idle line.
    #[must_use]
    pub fn new() -> Self {
        ControllerEnd { decoder: FrameDecoder::new(), seq: 0, pending: Vec::new(), outbox: VecDeque::new() }
    }

    /// Bytes from the host at `now`: every complete frame goes to the controller (unless the
    /// link is down or the frame is lost), and its answers wait for [`ControllerEnd::step`].
    pub fn receive(&mut self, c: &mut Controller, now: f64, bytes: &[u8]) {
        if c.link(now) != Link::Up {
            return;
        }
        let mut frames = Vec::new();
        self.decoder.feed(bytes, |r| {
            if let Ok(f) = r {
                frames.push(f);
            }
        });
        for f in frames {
            if c.drops_frame() {
                continue;
            }
            self.pending.extend(c.handle(now, f.seq, &f.message));
        }
    }

    /// Steps the controller to `now` and frames everything it has to say.
    pub fn step(&mut self, c: &mut Controller, now: f64) {
        let mut replies = std::mem::take(&mut self.pending);
        replies.extend(c.step(now));
        if c.link(now) != Link::Up {
            return;
        }
        let mut buf = [0u8; MAX_FRAME];
        for m in replies {
            self.seq = self.seq.wrapping_add(1);
            // A noisy line loses frames both ways.
            if c.drops_frame() {
                continue;
            }
            if let Ok(n) = encode_frame(self.seq, &m, &mut buf) {
                let mut frame = buf[..n].to_vec();
                if c.corrupts_frame() && n > 1 {
                    let i = c.corrupt_index(n - 1);
                    frame[i] ^= 0x5A;
                    if frame[i] == 0 {
                        frame[i] = 0x01;
                    }
                }
                self.outbox.push_back((now + c.send_delay_s(), frame));
            }
        }
        if self.outbox.len() > OUTBOX_LIMIT {
            self.outbox.clear();
        }
    }

    /// Hands every frame due by `now` to `send`, in order.
    pub fn deliver(&mut self, now: f64, send: &mut dyn FnMut(&[u8])) {
        while self.outbox.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, frame)) = self.outbox.pop_front() {
                send(&frame);
            }
        }
    }
}
