//! The host side of the serial link to the motor controller.
//!
//! [`Link::open`] opens any device path (a USB-serial adapter, or the simulated controller's pty),
//! performs the handshake, and then runs a tokio runtime on an I/O thread of its own: a reader
//! task decodes frames into [`ActuatorInput`]s, a writer task encodes and writes commands.
//! [`Link`] implements the supervisor's [`Actuator`] port: `send` takes only a
//! [`SupervisedCommand`] (which only the supervisor can construct) and never blocks; `poll`
//! drains what arrived. The supervisor keeps its own deadlines and never relies on the serial
//! read timeout (serialport-rs issue 7).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use stylet_protocol::{encode_frame, ControllerInfo, FrameDecoder, Message, MAX_FRAME, PROTOCOL_VERSION};
use stylet_safety::{Actuator, ActuatorInput, SupervisedCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Options for opening a link.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// Baud rate (ignored by ptys and USB-CDC devices).
    pub baud: u32,
    /// How long to wait for the controller's answer to each hello.
    pub handshake_timeout: Duration,
    /// Hellos sent before giving up.
    pub handshake_attempts: u32,
    /// Host id sent in the hello.
    pub host_id: u32,
    /// What the I/O thread asks for (a real-time policy and core; docs/safety.md), if anything.
    pub schedule: Option<stylet_rt::ThreadSchedule>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            baud: 921_600,
            handshake_timeout: Duration::from_millis(300),
            handshake_attempts: 5,
            host_id: 1,
            schedule: None,
        }
    }
}

/// Why the link could not be opened.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum LinkError {
    /// cannot open serial device {path}: {source}
    Open {
        /// Device path.
        path: String,
        /// Underlying error.
        source: tokio_serial::Error,
    },
    /// no handshake answer from {path} after {attempts} attempts of {timeout_ms} ms (is a controller connected and powered?)
    HandshakeTimeout {
        /// Device path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// Timeout per attempt.
        timeout_ms: u64,
    },
    /// controller at {path} speaks protocol version {controller}, this host speaks {host}
    Version {
        /// Device path.
        path: String,
        /// Controller's version.
        controller: u16,
        /// Ours.
        host: u16,
    },
    /// I/O error on {path}: {source}
    Io {
        /// Device path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// the link's I/O thread could not start: {0}
    Thread(std::io::Error),
}

/// Counters kept by the I/O tasks.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Frames written.
    pub frames_sent: AtomicU64,
    /// Frames decoded.
    pub frames_received: AtomicU64,
    /// Frames that failed CRC or decoding.
    pub decode_errors: AtomicU64,
    /// Commands dropped because the writer queue was full.
    pub send_queue_full: AtomicU64,
    /// Commands dropped while muted (bring-up's watchdog test).
    pub muted_drops: AtomicU64,
    /// Inputs dropped because the supervisor did not poll fast enough.
    pub input_queue_full: AtomicU64,
}

/// The bring-up hook that silences the host: while muted, the writer drops every frame, exactly as
/// if the host had hung. Used to prove the controller's watchdog trips.
#[derive(Clone, Debug)]
pub struct MuteSwitch {
    muted: Arc<AtomicBool>,
}

impl MuteSwitch {
    /// Stops (true) or resumes (false) writing.
    pub fn set(&self, muted: bool) {
        self.muted.store(muted, Ordering::SeqCst);
    }
}

/// An open link. Implements [`Actuator`].
#[derive(Debug)]
pub struct Link {
    info: ControllerInfo,
    path: String,
    tx: mpsc::Sender<SupervisedCommand>,
    /// Inputs from the I/O thread: a wait-free ring, so that the runner never waits on an I/O
    /// thread it preempted mid-write (std's channels spin there).
    rx: rtrb::Consumer<ActuatorInput>,
    stats: Arc<LinkStats>,
    muted: Arc<AtomicBool>,
    pending_errors: u32,
    connected_reported: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    scheduling: Option<stylet_rt::Obtained>,
}

/// Queue depth towards the writer: a few cycles of commands.
const SEND_QUEUE: usize = 64;
/// Queue depth towards the supervisor.
const INPUT_QUEUE: usize = 1024;

impl Link {
    /// Opens `path`, says hello and waits for the controller's answer.
    ///
    /// # Errors
    /// A [`LinkError`] naming the path.
    pub fn open(path: &str, options: &LinkOptions) -> Result<Link, LinkError> {
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<ControllerInfo, LinkError>>(1);
        let (tx, cmd_rx) = mpsc::channel::<SupervisedCommand>(SEND_QUEUE);
        let (in_tx, rx) = rtrb::RingBuffer::<ActuatorInput>::new(INPUT_QUEUE);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (sched_tx, sched_rx) = std_mpsc::sync_channel(1);
        let stats = Arc::new(LinkStats::default());
        let muted = Arc::new(AtomicBool::new(false));
        let io = IoContext {
            path: path.to_string(),
            options: options.clone(),
            stats: Arc::clone(&stats),
            muted: Arc::clone(&muted),
        };
        let thread = std::thread::Builder::new()
            .name("stylet-link-io".into())
            .spawn(move || {
                let _ = sched_tx.send(io.options.schedule.map(|s| s.apply_to_current_thread()));
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = ready_tx.send(Err(LinkError::Io { path: io.path.clone(), source }));
                        return;
                    }
                };
                rt.block_on(io.run(ready_tx, cmd_rx, in_tx, stop_rx));
            })
            .map_err(LinkError::Thread)?;
        let scheduling = sched_rx.recv().ok().flatten();
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(LinkError::Io {
                    path: path.to_string(),
                    source: std::io::Error::other("I/O thread ended during the handshake"),
                });
            }
        };
        tracing::info!(port = path, controller = ?info, "controller link open");
        Ok(Link {
            info,
            path: path.to_string(),
            tx,
            rx,
            stats,
            muted,
            pending_errors: 0,
            connected_reported: false,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            scheduling,
        })
    }

    /// What the controller said in the handshake.
    #[must_use]
    pub fn info(&self) -> ControllerInfo {
        self.info
    }

    /// What the I/O thread obtained of the schedule it asked for.
    #[must_use]
    pub fn scheduling(&self) -> Option<&stylet_rt::Obtained> {
        self.scheduling.as_ref()
    }

    /// The device path.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> Arc<LinkStats> {
        Arc::clone(&self.stats)
    }

    /// The mute switch (bring-up's watchdog test).
    #[must_use]
    pub fn mute_switch(&self) -> MuteSwitch {
        MuteSwitch { muted: Arc::clone(&self.muted) }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Actuator for Link {
    fn send(&mut self, command: SupervisedCommand) {
        if self.tx.try_send(command).is_err() {
            self.stats.send_queue_full.fetch_add(1, Ordering::Relaxed);
            self.pending_errors += 1;
        }
    }

    fn poll(&mut self, sink: &mut dyn FnMut(ActuatorInput)) {
        if !self.connected_reported {
            self.connected_reported = true;
            sink(ActuatorInput::Connected(self.info));
        }
        for _ in 0..std::mem::take(&mut self.pending_errors) {
            sink(ActuatorInput::LinkError);
        }
        // Abandoned: the I/O thread has ended, and what it queued is all there will be.
        let gone = self.rx.is_abandoned();
        while let Ok(i) = self.rx.pop() {
            sink(i);
        }
        if gone {
            sink(ActuatorInput::Disconnected);
        }
    }
}

struct IoContext {
    path: String,
    options: LinkOptions,
    stats: Arc<LinkStats>,
    muted: Arc<AtomicBool>,
}

impl IoContext {
    fn io_error(&self, source: std::io::Error) -> LinkError {
        LinkError::Io { path: self.path.clone(), source }
    }

    async fn run(
        self,
        ready: std_mpsc::SyncSender<Result<ControllerInfo, LinkError>>,
        mut commands: mpsc::Receiver<SupervisedCommand>,
        mut inputs: rtrb::Producer<ActuatorInput>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let port = tokio_serial::new(&self.path, self.options.baud).timeout(Duration::from_millis(50));
        let stream = match tokio_serial::SerialStream::open(&port) {
            Ok(s) => s,
            Err(source) => {
                let _ = ready.send(Err(LinkError::Open { path: self.path.clone(), source }));
                return;
            }
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut decoder = FrameDecoder::new();
        let mut seq: u16 = 0;
        // Handshake: hello, wait for HelloAck, a few times.
        let info = match self.handshake(&mut reader, &mut writer, &mut decoder, &mut seq).await {
            Ok(info) => info,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(info)).is_err() {
            return;
        }
        let stats = Arc::clone(&self.stats);
        let muted = Arc::clone(&self.muted);
        let write = async move {
            let mut buf = [0u8; MAX_FRAME];
            while let Some(cmd) = commands.recv().await {
                if muted.load(Ordering::SeqCst) {
                    stats.muted_drops.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                seq = seq.wrapping_add(1);
                let Ok(n) = encode_frame(seq, cmd.message(), &mut buf) else {
                    continue;
                };
                if writer.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
        };
        let stats = Arc::clone(&self.stats);
        let read = async move {
            let mut buf = [0u8; 512];
            loop {
                let n = match AsyncReadExt::read(&mut reader, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.feed(&buf[..n], |r| {
                    let input = match r {
                        Ok(f) => {
                            stats.frames_received.fetch_add(1, Ordering::Relaxed);
                            ActuatorInput::from_controller(f.seq, f.message)
                        }
                        Err(_) => {
                            stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                            Some(ActuatorInput::LinkError)
                        }
                    };
                    if let Some(i) = input {
                        if inputs.push(i).is_err() {
                            stats.input_queue_full.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                if inputs.is_abandoned() {
                    break;
                }
            }
            // Dropping `inputs` tells the supervisor the link is gone.
        };
        tokio::select! {
            () = write => {}
            () = read => {}
            _ = &mut stop => {}
        }
    }

    async fn handshake<R, W>(
        &self,
        reader: &mut R,
        writer: &mut W,
        decoder: &mut FrameDecoder,
        seq: &mut u16,
    ) -> Result<ControllerInfo, LinkError>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut buf = [0u8; MAX_FRAME];
        let hello = Message::Hello { protocol_version: PROTOCOL_VERSION, host_id: self.options.host_id };
        for _ in 0..self.options.handshake_attempts {
            *seq = seq.wrapping_add(1);
            let n = encode_frame(*seq, &hello, &mut buf).map_err(|e| self.io_error(std::io::Error::other(e)))?;
            writer.write_all(&buf[..n]).await.map_err(|e| self.io_error(e))?;
            let deadline = tokio::time::Instant::now() + self.options.handshake_timeout;
            let mut rbuf = [0u8; 256];
            loop {
                let read = tokio::time::timeout_at(deadline, AsyncReadExt::read(reader, &mut rbuf)).await;
                let n = match read {
                    Err(_) => break, // this attempt timed out
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                    Ok(Err(e)) => return Err(self.io_error(e)),
                };
                let mut answer = None;
                decoder.feed(&rbuf[..n], |r| {
                    // Anything but the answer (a stale state, line noise) is skipped here.
                    if let Ok(f) = r {
                        match f.message {
                            Message::HelloAck(info) => answer = Some(Ok(info)),
                            Message::Nack { reason: stylet_protocol::NackReason::Version, .. } => {
                                answer = Some(Err(0u16));
                            }
                            _ => {}
                        }
                    }
                });
                match answer {
                    Some(Ok(info)) if info.protocol_version == PROTOCOL_VERSION => return Ok(info),
                    Some(Ok(info)) => {
                        return Err(LinkError::Version {
                            path: self.path.clone(),
                            controller: info.protocol_version,
                            host: PROTOCOL_VERSION,
                        })
                    }
                    Some(Err(v)) => {
                        return Err(LinkError::Version {
                            path: self.path.clone(),
                            controller: v,
                            host: PROTOCOL_VERSION,
                        })
                    }
                    None => {}
                }
            }
        }
        Err(LinkError::HandshakeTimeout {
            path: self.path.clone(),
            attempts: self.options.handshake_attempts,
            timeout_ms: u64::try_from(self.options.handshake_timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }
}
