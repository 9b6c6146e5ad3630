//! The node: its configuration, the listener thread (accepts, filters peers, ticks the tracker)
//! and the events it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::tracker::{AssociationId, SeriesOutcome, SeriesTracker};

/// Where the node listens, whom it accepts and where it stores (the site config's `[dicom]`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's AE title (the called AE title senders must use), 1-16 characters.
    pub ae_title: String,
    /// The address to bind (an interface's address, or 0.0.0.0 for all).
    pub bind_address: IpAddr,
    /// The TCP port (0: any free port, for tests).
    pub port: u16,
    /// Calling AE titles allowed (empty: any).
    #[serde(default)]
    pub allowed_calling_ae_titles: Vec<String>,
    /// Peer addresses allowed (empty: any).
    #[serde(default)]
    pub allowed_peer_addresses: Vec<IpAddr>,
    /// The folder series are stored in, one sub-folder per SeriesInstanceUID.
    pub storage_dir: PathBuf,
    /// A series is complete after this long without news of it, s.
    pub series_quiet_s: f64,
    /// An association silent this long is ended by the node (its series partial), s.
    #[serde(default = "default_association_timeout_s")]
    pub association_timeout_s: f64,
    /// Largest PDU the node accepts, bytes.
    #[serde(default = "default_max_pdu_length")]
    pub max_pdu_length: u32,
}

fn default_association_timeout_s() -> f64 {
    60.0
}

fn default_max_pdu_length() -> u32 {
    65_536
}

impl NodeConfig {
    /// A node on loopback storing to `storage_dir`, accepting any caller (for tools and tests).
    pub fn local(ae_title: &str, port: u16, storage_dir: PathBuf) -> Self {
        Self {
            ae_title: ae_title.to_string(),
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port,
            allowed_calling_ae_titles: Vec::new(),
            allowed_peer_addresses: Vec::new(),
            storage_dir,
            series_quiet_s: 2.0,
            association_timeout_s: default_association_timeout_s(),
            max_pdu_length: default_max_pdu_length(),
        }
    }

    /// Checks every field; the error names the field and the value.
    ///
    /// # Errors
    /// [`NodeError::Config`].
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |field: &str, value: String, why: &str| {
            Err(NodeError::Config { field: field.to_string(), value, why: why.to_string() })
        };
        for (field, ae) in std::iter::once(("ae_title", &self.ae_title))
            .chain(self.allowed_calling_ae_titles.iter().map(|a| ("allowed_calling_ae_titles", a)))
        {
            if !valid_ae_title(ae) {
                return bad(field, format!("{ae:?}"), "an AE title is 1-16 printable ASCII characters, no backslash");
            }
        }
        if !(self.series_quiet_s.is_finite() && self.series_quiet_s > 0.0) {
            return bad("series_quiet_s", self.series_quiet_s.to_string(), "must be > 0");
        }
        if !(self.association_timeout_s.is_finite() && self.association_timeout_s > 0.0) {
            return bad("association_timeout_s", self.association_timeout_s.to_string(), "must be > 0");
        }
        if !(4096..=1 << 24).contains(&self.max_pdu_length) {
            return bad("max_pdu_length", self.max_pdu_length.to_string(), "must be 4096 to 16777216");
        }
        Ok(())
    }
}

fn valid_ae_title(ae: &str) -> bool {
    let t = ae.trim();
    !t.is_empty() && ae.len() <= 16 && ae.chars().all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\')
}

/// What can stop the node from starting. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum NodeError {
    /// DICOM node config: {field} = {value}: {why}
    Config {
        /// The field.
        field: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// cannot listen on {addr}: {source}
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// cannot create the storage folder {dir}: {source}
    Storage {
        /// The folder.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What the node reports, in order, on [`DicomNode::events`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum NodeEvent {
    /// A connection or association was refused (peer address or AE title not allowed, or a
    /// malformed request).
    Refused {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// An association was accepted.
    Associated {
        /// The node's number for it.
        association: AssociationId,
        /// The peer.
        peer: SocketAddr,
        /// Its AE title.
        calling_ae: String,
    },
    /// A C-ECHO was answered.
    Echo {
        /// The association.
        association: AssociationId,
    },
    /// An instance was stored.
    Stored {
        /// The association.
        association: AssociationId,
        /// SeriesInstanceUID.
        series_uid: String,
        /// SOPInstanceUID.
        sop_instance_uid: String,
        /// The file.
        path: PathBuf,
    },
    /// An instance was refused with a failure status (it is not stored).
    InstanceRefused {
        /// The association.
        association: AssociationId,
        /// The DIMSE status sent.
        status: u16,
        /// Why.
        reason: String,
    },
    /// An association ended.
    Ended {
        /// The association.
        association: AssociationId,
        /// Instances it stored.
        instances: usize,
        /// "released", or why it was cut off.
        how: String,
    },
    /// A series is complete, or partial.
    Series(SeriesOutcome),
}

/// What the listener and the association threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    tracker: Mutex<SeriesTracker>,
    /// A handle on each open association's socket, for the listener to end a silent one (the
    /// sockets have no read timeout: a timeout makes the kernel return EINTR to a read that a
    /// signal interrupts, even under SA_RESTART, and dicom-ul would take that as a broken link).
    sockets: Mutex<BTreeMap<AssociationId, TcpStream>>,
    /// Associations the listener ended for silence.
    silenced: Mutex<BTreeSet<AssociationId>>,
    events: Mutex<Sender<NodeEvent>>,
    epoch: Instant,
}

impl Shared {
    pub(crate) fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    pub(crate) fn tracker(&self) -> MutexGuard<'_, SeriesTracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets an association's socket; whether the listener ended it for silence.
    pub(crate) fn closed(&self, id: AssociationId) -> bool {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        self.silenced.lock().unwrap_or_else(PoisonError::into_inner).remove(&id)
    }

    /// Ends the associations silent for `association_timeout_s`: their reads fail at once.
    fn end_silent(&self) {
        let silent = self.tracker().silent(self.now_s(), self.config.association_timeout_s);
        let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        for id in silent {
            if let Some(s) = sockets.get(&id) {
                if self.silenced.lock().unwrap_or_else(PoisonError::into_inner).insert(id) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Reports an event; a node whose user stopped listening goes on storing.
    pub(crate) fn report(&self, event: NodeEvent) {
        match &event {
            NodeEvent::Refused { .. } => tracing::warn!(?event, "DICOM node"),
            _ => tracing::info!(?event, "DICOM node"),
        }
        let _ = self.events.lock().unwrap_or_else(PoisonError::into_inner).send(event);
    }
}

/// A running node. Dropping it stops the listener; associations in progress run to their end.
#[derive(Debug)]
pub struct DicomNode {
    addr: SocketAddr,
    events: Receiver<NodeEvent>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
}

impl DicomNode {
    /// Validates the config, creates the storage folder, binds and starts listening.
    ///
    /// # Errors
    /// A [`NodeError`] naming the field, address or folder.
    pub fn start(config: NodeConfig) -> Result<Self, NodeError> {
        config.validate()?;
        std::fs::create_dir_all(&config.storage_dir)
            .map_err(|source| NodeError::Storage { dir: config.storage_dir.clone(), source })?;
        let want = SocketAddr::new(config.bind_address, config.port);
        let bind = |source| NodeError::Bind { addr: want, source };
        let listener = TcpListener::bind(want).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let (tx, events) = channel();
        let shared = Arc::new(Shared {
            tracker: Mutex::new(SeriesTracker::new(config.series_quiet_s)),
            sockets: Mutex::new(BTreeMap::new()),
            silenced: Mutex::new(BTreeSet::new()),
            config,
            events: Mutex::new(tx),
            epoch: Instant::now(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop_listener = Arc::clone(&stop);
        let listener = std::thread::Builder::new()
            .name("dicom-node".into())
            .spawn(move || listen(&listener, &shared, &stop_listener))
            .map_err(bind)?;
        Ok(Self { addr, events, stop, listener: Some(listener) })
    }

    /// The address the node listens on (the port chosen when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's events, in the order they happened.
    pub fn events(&self) -> &Receiver<NodeEvent> {
        &self.events
    }
}

impl Drop for DicomNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
    }
}

/// How often the listener looks for connections and complete series.
const TICK: Duration = Duration::from_millis(20);

fn listen(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    let next_id = AtomicU64::new(1);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let allowed = &shared.config.allowed_peer_addresses;
                if !allowed.is_empty() && !allowed.contains(&peer.ip()) {
                    shared.report(NodeEvent::Refused {
                        peer,
                        reason: format!("peer address {} is not in allowed_peer_addresses", peer.ip()),
                    });
                    continue;
                }
                // Small PDUs (the C-STORE responses) go at once: with Nagle's algorithm and the
                // peer's delayed ACK each instance would wait tens of milliseconds.
                let _ = stream.set_nodelay(true);
                let _ = stream.set_nonblocking(false);
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                shared.tracker().activity(id, shared.now_s());
                if let Ok(handle) = stream.try_clone() {
                    shared.sockets.lock().unwrap_or_else(PoisonError::into_inner).insert(id, handle);
                }
                let report = Arc::clone(shared);
                let shared = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("dicom-assoc-{id}"))
                    .spawn(move || crate::association::serve(stream, peer, id, &shared));
                if let Err(e) = spawned {
                    // The stream went with the closure: the peer sees the connection close.
                    report.report(NodeEvent::Refused { peer, reason: format!("no thread for the association: {e}") });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(_) => std::thread::sleep(TICK),
        }
        shared.end_silent();
        let now = shared.now_s();
        let due = shared.tracker().due(now);
        for outcome in due {
            shared.report(NodeEvent::Series(outcome));
        }
    }
}
