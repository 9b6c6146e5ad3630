//! The OpenIGTLink server: tokio TCP on its own thread, several clients, the BWH convention.
//!
//! The procedure side is synchronous and never waits for the network: it receives the peers'
//! requests as [`Request`]s on a std channel and sends with [`ServerHandle::broadcast`], which
//! never blocks (each client has a bounded queue; a client too slow to drain it loses messages,
//! counted, and never stalls anyone else). Malformed input is logged as a rejection and the
//! connection stays up.
//!
//! A message is shared, not copied, between the clients and the scene (an `Arc`): broadcasting a
//! whole CT costs the procedure side no copy, and the scene's lock is held only to swap a pointer.
//!
//! Every message leaves with a timestamp: the wall clock when the procedure handed it over (or
//! when a reply was made), unless it carries one already. The server keeps the latest message of
//! each kind per device it has sent ([`Scene`]) and answers `GET_` queries from it:
//! `GET_CAPABIL` with the types it speaks, `GET_STATUS` with the convention's phase,
//! `GET_IMGMETA` with the images it has, `GET_<TYPE>` with the latest of that type from the
//! device named (every device when the name is empty), or a `STATUS` "not found" saying so.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use crate::bwh::{Action, Bwh, Convention, Phase};
use crate::{status, Body, Decoder, ImageMeta, Message, Query};

/// A body larger than this (bytes) is encoded on a blocking thread, off the server's own.
const LARGE_BODY: usize = 1 << 20;

/// The default port of OpenIGTLink.
pub const DEFAULT_PORT: u16 = 18944;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Listening on anything but loopback must be asked for explicitly.
    pub allow_remote: bool,
    /// The other hosts that may connect when listening beyond loopback (this host's own
    /// loopback peers always may); anyone else's connection is closed at once, and logged.
    pub allowed_peers: Vec<IpAddr>,
    /// Largest body accepted, bytes (a larger one is skipped by its size).
    pub max_body: usize,
    /// Messages queued per client before it starts losing them.
    pub client_queue: usize,
    /// Who registers and plans: the peer, or Stylet's procedure.
    pub convention: Convention,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            allow_remote: false,
            allowed_peers: Vec::new(),
            max_body: 64 << 20,
            client_queue: 1024,
            convention: Convention::PeerPlans,
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
    /// The clients connected now: number and address.
    pub peers: Mutex<Vec<(u64, SocketAddr)>>,
    /// Replies (ACKs, query answers) written.
    pub replies: AtomicU64,
    /// The longest time from a message's last byte read to its reply written to the socket, us.
    pub reply_max_us: AtomicU64,
}

/// The procedure side's handle.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where it listens (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// Requests from the peers.
    pub requests: mpsc::Receiver<Request>,
    out: broadcast::Sender<Arc<Message>>,
    scene: Arc<Mutex<Scene>>,
    /// Counters.
    pub stats: Arc<ServerStats>,
    bwh: Arc<Mutex<Bwh>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cloneable sender to every client (for threads and closures); never blocks.
#[derive(Clone, Debug)]
pub struct Broadcaster {
    out: broadcast::Sender<Arc<Message>>,
    scene: Arc<Mutex<Scene>>,
}

impl Broadcaster {
    /// Sends a message to every client, timestamped and kept for `GET_` queries; never blocks.
    pub fn broadcast(&self, m: Message) {
        send_out(&self.out, &self.scene, m);
    }
}

/// Stamps a message, keeps it in the scene and sends it to every client.
fn send_out(out: &broadcast::Sender<Arc<Message>>, scene: &Mutex<Scene>, m: Message) {
    let m = Arc::new(stamped(m));
    if let Ok(mut s) = scene.lock() {
        s.keep(&m);
    }
    let _ = out.send(m);
}

/// The message with the wall clock's time now when it has none (the server is the edge where
/// messages leave; OpenIGTLink's timestamps are wall-clock time).
fn stamped(mut m: Message) -> Message {
    if m.timestamp == 0 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        m.timestamp = crate::timestamp_from_unix(now);
    }
    m
}

/// The types this server reads or sends, as `GET_CAPABIL` answers (a type name has 12 bytes:
/// `GET_TRANSFORM` is `GET_TRANS` on the wire, as the reference library sends it).
pub const CAPABILITIES: [&str; 29] = [
    "CAPABILITY",
    "IMAGE",
    "IMGMETA",
    "POINT",
    "POLYDATA",
    "POSITION",
    "STATUS",
    "STRING",
    "TRAJ",
    "TRANSFORM",
    "GET_CAPABIL",
    "GET_IMAGE",
    "GET_IMGMETA",
    "GET_POINT",
    "GET_POLYDATA",
    "GET_POSITION",
    "GET_STATUS",
    "GET_STRING",
    "GET_TRANS",
    "STT_IMAGE",
    "STP_IMAGE",
    "STT_POLYDATA",
    "STP_POLYDATA",
    "STT_TRANS",
    "STP_TRANS",
    "STT_STRING",
    "STP_STRING",
    "STT_POINT",
    "STP_POINT",
];

/// What the server has sent, to answer `GET_` queries: the latest message of each type per
/// device (a `STATUS` is an answer of its moment and is not kept).
#[derive(Debug, Default)]
pub struct Scene {
    latest: Vec<Arc<Message>>,
}

impl Scene {
    /// Keeps `m` as the latest of its type from its device.
    pub fn keep(&mut self, m: &Arc<Message>) {
        let kept = matches!(
            m.body,
            Body::Image(_)
                | Body::Point(_)
                | Body::PolyData(_)
                | Body::Position { .. }
                | Body::String { .. }
                | Body::Traj(_)
                | Body::Transform(_)
        );
        if !kept {
            return;
        }
        let ty = m.body.type_name();
        match self.latest.iter_mut().find(|k| k.device_name == m.device_name && k.body.type_name() == ty) {
            Some(k) => *k = Arc::clone(m),
            None => self.latest.push(Arc::clone(m)),
        }
    }

    /// The answers to `GET_<of>` from `device` (empty: every device) while the convention is in
    /// `phase`.
    #[must_use]
    pub fn answer(&self, of: &str, device: &str, phase: Phase) -> Vec<Arc<Message>> {
        let of = if of == "TRANS" { "TRANSFORM" } else { of };
        match of {
            "CAPABIL" => {
                vec![reply_to(device, Body::Capability(CAPABILITIES.iter().map(|t| (*t).to_string()).collect()))]
            }
            "STATUS" => vec![reply_to(
                device,
                Body::Status {
                    code: status::OK,
                    subcode: 0,
                    error_name: String::new(),
                    message: format!("phase {}", phase.name()),
                },
            )],
            "IMGMETA" => {
                let images: Vec<ImageMeta> = self
                    .latest
                    .iter()
                    .filter_map(|m| match &m.body {
                        Body::Image(img) => Some(ImageMeta {
                            name: m.device_name.clone(),
                            device_name: m.device_name.clone(),
                            modality: "CT".into(),
                            patient_name: String::new(),
                            patient_id: String::new(),
                            timestamp: m.timestamp,
                            size: img.size,
                            scalar_type: img.scalar_type,
                        }),
                        _ => None,
                    })
                    .collect();
                vec![reply_to(device, Body::ImgMeta(images))]
            }
            _ => {
                let found: Vec<Arc<Message>> = self
                    .latest
                    .iter()
                    .filter(|m| m.body.type_name() == of && (device.is_empty() || m.device_name == device))
                    .cloned()
                    .collect();
                if found.is_empty() {
                    let what = if device.is_empty() { String::new() } else { format!(" from {device:?}") };
                    vec![reply_to(
                        device,
                        Body::Status {
                            code: status::NOT_FOUND,
                            subcode: 0,
                            error_name: "NOT_FOUND".into(),
                            message: format!("no {of}{what} has been sent"),
                        },
                    )]
                } else {
                    found
                }
            }
        }
    }
}

/// A reply to a header-version-2 message in version 2 too, with the same message id (so a
/// protocol-3 peer such as 3D Slicer can match it to what it sent).
fn answering(reply: &Message, to: &Message) -> Message {
    let mut r = reply.clone();
    r.version = 2;
    r.extended = Some(crate::Extended {
        message_id: to.extended.as_ref().map_or(0, |e| e.message_id),
        metadata: r.extended.take().map(|e| e.metadata).unwrap_or_default(),
    });
    r
}

/// The STATUS that refuses a message the decoder rejected, under its device name where the
/// header gave one: checksum error (9), overflow (8), unknown version (17), or a malformed
/// message (2), with the reason.
fn refusal(e: &crate::IgtlError) -> Message {
    use crate::IgtlError as E;
    let (device, code, name) = match e {
        E::Crc { device, .. } => (device.as_str(), status::CHECKSUM_ERROR, "BAD_CRC"),
        E::TooLarge { .. } => ("", status::OVERFLOW, "TOO_LARGE"),
        E::Version(_) => ("", status::UNKNOWN_VERSION, "BAD_VERSION"),
        _ => ("", status::UNKNOWN_ERROR, "MALFORMED"),
    };
    stamped(Message::new(
        device,
        Body::Status { code, subcode: 0, error_name: name.to_string(), message: e.to_string() },
    ))
}

/// A reply under the device name the query came with.
fn reply_to(device: &str, body: Body) -> Arc<Message> {
    Arc::new(stamped(Message::new(device, body)))
}

impl ServerHandle {
    /// A cloneable sender to every client.
    #[must_use]
    pub fn broadcaster(&self) -> Broadcaster {
        Broadcaster { out: self.out.clone(), scene: Arc::clone(&self.scene) }
    }

    /// Sends a message to every client, timestamped and kept for `GET_` queries; never blocks.
    pub fn broadcast(&self, m: Message) {
        send_out(&self.out, &self.scene, m);
    }

    /// Reports a phase as entered or failed: a STATUS named after it, to every client.
    pub fn completed(&self, p: Phase, ok: bool, message: &str) {
        let m = self.bwh.lock().map(|b| b.completed(p, ok, message));
        if let Ok(m) = m {
            self.broadcast(m);
        }
    }

    /// Refuses to enter a phase: a STATUS named after it with `code` (`crate::status`), an error
    /// name and the reason, to every client.
    pub fn refused(&self, p: Phase, code: u16, error_name: &str, reason: &str) {
        self.broadcast(Message::new(
            p.name(),
            Body::Status { code, subcode: 0, error_name: error_name.to_string(), message: reason.to_string() },
        ));
    }

    /// The clients connected now (number, address), in connection order.
    #[must_use]
    pub fn peers(&self) -> Vec<(u64, SocketAddr)> {
        self.stats.peers.lock().map(|p| p.clone()).unwrap_or_default()
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
    let bwh = Arc::new(Mutex::new(Bwh::new(cfg.convention)));
    let scene = Arc::new(Mutex::new(Scene::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (out2, stats2, bwh2, cfg2) = (out.clone(), Arc::clone(&stats), Arc::clone(&bwh), cfg.clone());
    let scene2 = Arc::clone(&scene);
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
                            let Ok((socket, peer)) = r else { continue };
                            if !peer_allowed(&cfg2.allowed_peers, peer.ip()) {
                                reject(&stats2, format!("{peer}: connection refused, not on the allow-list"));
                                drop(socket);
                                continue;
                            }
                            next_client += 1;
                            tracing::info!(client = next_client, %peer, "OpenIGTLink client connected");
                            stats2.clients.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut p) = stats2.peers.lock() {
                                p.push((next_client, peer));
                            }
                            tokio::spawn(client(
                                next_client,
                                socket,
                                cfg2.clone(),
                                out2.subscribe(),
                                req_tx.clone(),
                                Shared { stats: Arc::clone(&stats2), bwh: Arc::clone(&bwh2), scene: Arc::clone(&scene2) },
                            ));
                        }
                    }
                }
            });
        })
        .map_err(ServerError::Thread)?;
    Ok(ServerHandle { local_addr, requests, out, scene, stats, bwh, stop: Some(stop), thread: Some(thread) })
}

/// Whether encoding `m` is long work (an image's pixels beyond [`LARGE_BODY`]).
fn is_large(m: &Message) -> bool {
    matches!(&m.body, Body::Image(img) if img.pixels.len() > LARGE_BODY)
}

/// Whether `peer` may connect: this host (loopback), or a host on the allow-list.
fn peer_allowed(allowed: &[IpAddr], peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    peer.is_loopback() || allowed.contains(&peer)
}

fn reject(stats: &ServerStats, what: String) {
    tracing::warn!("OpenIGTLink: {what}");
    stats.rejected.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut r) = stats.rejections.lock() {
        if r.len() >= 64 {
            r.remove(0);
        }
        r.push(what);
    }
}

/// What every client's task shares with the procedure side.
struct Shared {
    stats: Arc<ServerStats>,
    bwh: Arc<Mutex<Bwh>>,
    scene: Arc<Mutex<Scene>>,
}

async fn client(
    id: u64,
    socket: TcpStream,
    cfg: ServerConfig,
    mut from_procedure: broadcast::Receiver<Arc<Message>>,
    requests: mpsc::Sender<Request>,
    shared: Shared,
) {
    let Shared { stats, bwh, scene } = shared;
    let _ = socket.set_nodelay(true);
    let (mut rd, mut wr) = socket.into_split();
    // Replies, with when the message they answer was read (to measure the server's part).
    let (reply_tx, mut reply_rx) =
        tokio::sync::mpsc::channel::<(Arc<Message>, std::time::Instant)>(cfg.client_queue.max(1));
    // The types this client asked not to be streamed (`STP_<TYPE>`, until `STT_<TYPE>`): e.g. a
    // connection that only commands, with no CT in front of its ACKs.
    let muted: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer_muted = Arc::clone(&muted);
    let writer_stats = Arc::clone(&stats);
    let writer = tokio::spawn(async move {
        // A large message (a CT) is encoded (copied, CRC-64) on a blocking thread while this
        // client's replies go on being written; the procedure's stream after it waits, in order.
        let mut encoding: Option<tokio::task::JoinHandle<Result<Vec<u8>, crate::IgtlError>>> = None;
        loop {
            // Replies first: an ACK never waits behind the procedure's stream, nor behind a CT
            // being encoded; only behind a message already on the wire.
            let (bytes, read_at) = tokio::select! {
                biased;
                m = reply_rx.recv() => match m {
                    Some((m, t)) => match m.encode() { Ok(b) => (b, Some(t)), Err(_) => continue },
                    None => break,
                },
                done = async {
                    match encoding.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if encoding.is_some() => {
                    encoding = None;
                    match done { Ok(Ok(b)) => (b, None), _ => continue }
                }
                m = from_procedure.recv(), if encoding.is_none() => match m {
                    Ok(m) if writer_muted.lock().is_ok_and(|t| t.contains(&m.body.type_name())) => continue,
                    Ok(m) if is_large(&m) => {
                        encoding = Some(tokio::task::spawn_blocking(move || m.encode()));
                        continue;
                    }
                    Ok(m) => match m.encode() { Ok(b) => (b, None), Err(_) => continue },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        writer_stats.dropped.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
            if let Some(t) = read_at {
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                writer_stats.replies.fetch_add(1, Ordering::Relaxed);
                writer_stats.reply_max_us.fetch_max(us, Ordering::Relaxed);
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
        let read_at = std::time::Instant::now();
        decoder.push(&buf[..n]);
        while let Some(r) = decoder.next_message() {
            match r {
                Err(e) => {
                    // Refused with a STATUS saying why, to the sender; the stream goes on.
                    let _ = reply_tx.try_send((Arc::new(refusal(&e)), read_at));
                    reject(&stats, format!("client {id}: {e}"));
                }
                Ok(m) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    let (replies, actions): (Vec<Arc<Message>>, Vec<Action>) = match (&m.body, bwh.lock()) {
                        (Body::Query { query: Query::Get, of, .. }, Ok(b)) => {
                            let answers = scene.lock().map(|s| s.answer(of, &m.device_name, b.phase()));
                            (answers.unwrap_or_default(), Vec::new())
                        }
                        (Body::Query { query: q @ (Query::Start | Query::Stop), of, .. }, _) => {
                            let type_name = if of == "TRANS" { "TRANSFORM".to_string() } else { of.clone() };
                            if let Ok(mut t) = muted.lock() {
                                t.retain(|x| *x != type_name);
                                if *q == Query::Stop {
                                    t.push(type_name);
                                }
                            }
                            // RTS_<TYPE>: one status byte, 0 for success.
                            let body = Body::Query { query: Query::Reply, of: of.clone(), body: vec![0] };
                            (vec![reply_to(&m.device_name, body)], Vec::new())
                        }
                        (_, Ok(mut b)) => {
                            let (replies, actions) = b.handle(&m);
                            (replies.into_iter().map(|r| Arc::new(stamped(r))).collect(), actions)
                        }
                        (_, Err(_)) => (Vec::new(), Vec::new()),
                    };
                    for r in replies {
                        let r = if m.version == 2 { Arc::new(answering(&r, &m)) } else { r };
                        if reply_tx.try_send((r, read_at)).is_err() {
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
    if let Ok(mut p) = stats.peers.lock() {
        p.retain(|(c, _)| *c != id);
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    fn transform(device: &str, z: f32) -> Message {
        Message::new(device, Body::Transform([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, z]))
    }

    #[test]
    fn only_this_host_and_the_listed_peers_may_connect() {
        let listed: IpAddr = [192, 0, 2, 7].into();
        assert!(peer_allowed(&[], [127, 0, 0, 1].into()));
        assert!(peer_allowed(&[], std::net::Ipv6Addr::LOCALHOST.into()));
        assert!(!peer_allowed(&[], listed));
        assert!(peer_allowed(&[listed], listed));
        assert!(!peer_allowed(&[listed], [192, 0, 2, 8].into()));
        // An IPv4 peer on a dual-stack socket arrives IPv4-mapped.
        assert!(peer_allowed(&[listed], std::net::Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().into()));
        assert!(!peer_allowed(&[], std::net::Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().into()));
    }

    #[test]
    fn the_scene_keeps_the_latest_of_each_type_per_device_and_answers_from_it() {
        let mut scene = Scene::default();
        for m in [transform("NEEDLE", 1.0), transform("NEEDLE", 2.0), transform("ZONE", 3.0)] {
            scene.keep(&Arc::new(m));
        }
        scene.keep(&Arc::new(Message::new(
            "TARGETING",
            Body::Status { code: status::OK, subcode: 0, error_name: String::new(), message: "ok".into() },
        )));
        let needle = scene.answer("TRANS", "NEEDLE", Phase::StartUp);
        assert_eq!(needle.len(), 1);
        assert_eq!(needle[0].body, transform("NEEDLE", 2.0).body);
        assert_eq!(scene.answer("TRANSFORM", "", Phase::StartUp).len(), 2, "every device when none is named");
        let Body::Status { code, message, .. } = &scene.answer("STATUS", "S", Phase::Targeting)[0].body else {
            panic!("GET_STATUS answers the phase")
        };
        assert_eq!((*code, message.as_str()), (status::OK, "phase TARGETING"));
        let Body::Status { code, message, .. } = &scene.answer("IMAGE", "CT", Phase::StartUp)[0].body else {
            panic!("an IMAGE never sent is not found")
        };
        assert_eq!((*code, message.as_str()), (status::NOT_FOUND, "no IMAGE from \"CT\" has been sent"));
        assert_eq!(scene.answer("IMGMETA", "", Phase::StartUp)[0].body, Body::ImgMeta(Vec::new()));
    }
}
