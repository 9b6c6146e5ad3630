//! The OpenIGTLink server: tokio TCP on its own thread, several clients, the BWH convention.
//!
//! The procedure side is synchronous and never waits for the network: it receives the peers'
//! requests as [`Request`]s on a std channel and sends with [`ServerHandle::broadcast`], which
//! never blocks (each client has a bounded queue; a client too slow to drain it loses messages,
//! counted, and never stalls anyone else). Malformed input is logged as a rejection and the
//! connection stays up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use crate::bwh::{Action, Bwh, Phase};
use crate::{Decoder, Message};

/// The default port of OpenIGTLink.
pub const DEFAULT_PORT: u16 = 18944;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Listening on anything but loopback must be asked for explicitly.
    pub allow_remote: bool,
    /// Largest body accepted, bytes (a larger one is skipped by its size).
    pub max_body: usize,
    /// Messages queued per client before it starts losing them.
    pub client_queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            allow_remote: false,
            max_body: 64 << 20,
            client_queue: 1024,
        }
    }
}

/// The server could not start.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum ServerError {
    /// refusing to listen on {0}: not a loopback address (pass the explicit allow-remote option to serve other hosts)
    NotLoopback(SocketAddr),
    /// listening on {addr}: {source}
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// starting the server thread: {0}
    Thread(std::io::Error),
}

/// Something a peer asked for, with the client it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Client number (in connection order).
    pub client: u64,
    /// What.
    pub action: Action,
}

/// Counters, and the last rejections (newest last), for logs and tests.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Clients accepted so far.
    pub clients: AtomicU64,
    /// Messages received and decoded.
    pub received: AtomicU64,
    /// Messages refused (CRC, size, malformed).
    pub rejected: AtomicU64,
    /// Messages a slow client lost.
    pub dropped: AtomicU64,
    /// The last rejections' messages.
    pub rejections: Mutex<Vec<String>>,
}

/// The procedure side's handle.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where it listens (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// Requests from the peers.
    pub requests: mpsc::Receiver<Request>,
    out: broadcast::Sender<Message>,
    /// Counters.
    pub stats: Arc<ServerStats>,
    bwh: Arc<Mutex<Bwh>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cloneable sender to every client (for threads and closures); never blocks.
#[derive(Clone, Debug)]
pub struct Broadcaster {
    out: broadcast::Sender<Message>,
}

impl Broadcaster {
    /// Sends a message to every client; never blocks.
    pub fn broadcast(&self, m: Message) {
        let _ = self.out.send(m);
    }
}

impl ServerHandle {
    /// A cloneable sender to every client.
    #[must_use]
    pub fn broadcaster(&self) -> Broadcaster {
        Broadcaster { out: self.out.clone() }
    }

    /// Sends a message to every client; never blocks.
    pub fn broadcast(&self, m: Message) {
        let _ = self.out.send(m);
    }

    /// Reports a phase as entered or failed: a STATUS named after it, to every client.
    pub fn completed(&self, p: Phase, ok: bool, message: &str) {
        let m = self.bwh.lock().map(|b| b.completed(p, ok, message));
        if let Ok(m) = m {
            self.broadcast(m);
        }
    }

    /// The convention's current phase.
    #[must_use]
    pub fn phase(&self) -> Option<Phase> {
        self.bwh.lock().ok().map(|b| b.phase())
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the server on its own thread.
///
/// # Errors
/// [`ServerError`]: a non-loopback address without `allow_remote`, the port taken.
pub fn start(cfg: &ServerConfig) -> Result<ServerHandle, ServerError> {
    if !cfg.addr.ip().is_loopback() && !cfg.allow_remote {
        return Err(ServerError::NotLoopback(cfg.addr));
    }
    let std_listener =
        std::net::TcpListener::bind(cfg.addr).map_err(|source| ServerError::Bind { addr: cfg.addr, source })?;
    std_listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: cfg.addr, source })?;
    let local_addr = std_listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.addr, source })?;
    let (req_tx, requests) = mpsc::channel();
    let (out, _) = broadcast::channel(cfg.client_queue.max(1));
    let stats = Arc::new(ServerStats::default());
    let bwh = Arc::new(Mutex::new(Bwh::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (out2, stats2, bwh2, cfg2) = (out.clone(), Arc::clone(&stats), Arc::clone(&bwh), cfg.clone());
    let thread = std::thread::Builder::new()
        .name("stylet-igtl".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_io().build() else { return };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else { return };
                let mut stopped = stopped;
                let mut next_client = 0u64;
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        r = listener.accept() => {
                            let Ok((socket, _peer)) = r else { continue };
                            next_client += 1;
                            stats2.clients.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(client(
                                next_client,
                                socket,
                                cfg2.clone(),
                                out2.subscribe(),
                                req_tx.clone(),
                                Arc::clone(&stats2),
                                Arc::clone(&bwh2),
                            ));
                        }
                    }
                }
            });
        })
        .map_err(ServerError::Thread)?;
    Ok(ServerHandle { local_addr, requests, out, stats, bwh, stop: Some(stop), thread: Some(thread) })
}

fn reject(stats: &ServerStats, what: String) {
    stats.rejected.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut r) = stats.rejections.lock() {
        if r.len() >= 64 {
            r.remove(0);
        }
        r.push(what);
    }
}

async fn client(
    id: u64,
    socket: TcpStream,
    cfg: ServerConfig,
    mut from_procedure: broadcast::Receiver<Message>,
    requests: mpsc::Sender<Request>,
    stats: Arc<ServerStats>,
    bwh: Arc<Mutex<Bwh>>,
) {
    let _ = socket.set_nodelay(true);
    let (mut rd, mut wr) = socket.into_split();
    let (reply_tx, mut reply_rx) = tokio::sync::mpsc::channel::<Message>(cfg.client_queue.max(1));
    let writer_stats = Arc::clone(&stats);
    let writer = tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                m = reply_rx.recv() => match m { Some(m) => m, None => break },
                m = from_procedure.recv() => match m {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        writer_stats.dropped.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            let Ok(bytes) = m.encode() else { continue };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = Decoder::new(cfg.max_body);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        while let Some(r) = decoder.next_message() {
            match r {
                Err(e) => reject(&stats, format!("client {id}: {e}")),
                Ok(m) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    let (replies, actions) = match bwh.lock() {
                        Ok(mut b) => b.handle(&m),
                        Err(_) => (Vec::new(), Vec::new()),
                    };
                    for r in replies {
                        if reply_tx.try_send(r).is_err() {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for action in actions {
                        let _ = requests.send(Request { client: id, action });
                    }
                }
            }
        }
    }
    drop(reply_tx);
    let _ = writer.await;
}
