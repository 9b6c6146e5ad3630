//! The other side: a C-STORE SCU, what a CT scanner does to send a series to a node (the
//! simulated scanner of `stylet sim world` uses it; so do the node's own tests).
//!
//! One association per series: the SOP classes and transfer syntaxes of its files are proposed
//! (each file's own syntax first, then explicit and implicit VR little endian), each file is sent
//! in the syntax the node accepted (native files are re-encoded when the node took another native
//! syntax; an encapsulated file must be taken as it is), and each C-STORE-RSP status is checked.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{open_file, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const C_STORE_RQ: u16 = 0x0001;

/// Why a series could not be sent. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum SendError {
    /// {file}: {reason}
    File {
        /// The file.
        file: PathBuf,
        /// Why it cannot be sent.
        reason: String,
    },
    /// the association with {peer} failed: {reason}
    Association {
        /// The node.
        peer: String,
        /// Why.
        reason: String,
    },
    /// {peer} refused {file}: status 0x{status:04X}
    Refused {
        /// The node.
        peer: String,
        /// The file.
        file: PathBuf,
        /// The C-STORE-RSP status.
        status: u16,
    },
}

/// Where to send: the node's address and AE title, and ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The node's address.
    pub addr: SocketAddr,
    /// Its AE title (called).
    pub called_ae_title: String,
    /// Ours (calling).
    pub calling_ae_title: String,
}

/// One file, read for sending.
struct Instance {
    path: PathBuf,
    sop_class: String,
    sop_instance: String,
    transfer_syntax: String,
    object: InMemDicomObject,
}

fn read(path: &Path) -> Result<Instance, SendError> {
    let bad = |reason: String| SendError::File { file: path.to_path_buf(), reason };
    let obj = open_file(path).map_err(|e| bad(e.to_string()))?;
    let meta = obj.meta();
    let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let (sop_class, sop_instance, ts) = (
        trim(&meta.media_storage_sop_class_uid),
        trim(&meta.media_storage_sop_instance_uid),
        trim(&meta.transfer_syntax),
    );
    Ok(Instance { path: path.to_path_buf(), sop_class, sop_instance, transfer_syntax: ts, object: obj.into_inner() })
}

/// An open association to a node.
pub struct Sender {
    association: ClientAssociation<TcpStream>,
    peer: String,
    message_id: u16,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl Sender {
    /// Associates with `dest`, proposing what `files` need.
    ///
    /// # Errors
    /// A file that cannot be read, or the association refused.
    pub fn connect(dest: &Destination, files: &[PathBuf]) -> Result<Self, SendError> {
        let peer = format!("{}@{}", dest.called_ae_title, dest.addr);
        let mut proposals: Vec<(String, Vec<String>)> = Vec::new();
        for f in files {
            let i = read(f)?;
            match proposals.iter_mut().find(|(c, _)| *c == i.sop_class) {
                Some((_, ts)) if !ts.contains(&i.transfer_syntax) => ts.insert(0, i.transfer_syntax),
                Some(_) => {}
                None => {
                    let mut ts = vec![i.transfer_syntax.clone()];
                    for native in [EXPLICIT_LE, IMPLICIT_LE] {
                        if !ts.iter().any(|t| t == native) {
                            ts.push(native.into());
                        }
                    }
                    proposals.push((i.sop_class, ts));
                }
            }
        }
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(dest.calling_ae_title.clone())
            .called_ae_title(dest.called_ae_title.clone());
        for (class, ts) in &proposals {
            options = options.with_presentation_context(class.clone(), ts.clone());
        }
        let association = options
            .establish(dest.addr)
            .map_err(|e| SendError::Association { peer: peer.clone(), reason: e.to_string() })?;
        Ok(Sender { association, peer, message_id: 0 })
    }

    /// Sends one file (C-STORE) and waits for its status.
    ///
    /// # Errors
    /// The file, the association, or a failure status.
    pub fn store(&mut self, path: &Path) -> Result<u16, SendError> {
        let i = read(path)?;
        let bad = |reason: String| SendError::File { file: path.to_path_buf(), reason };
        let gone = |reason: String| SendError::Association { peer: self.peer.clone(), reason };
        let accepted: Vec<_> = self
            .association
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance && pc.abstract_syntax == i.sop_class)
            .cloned()
            .collect();
        let native = |ts: &str| ts == EXPLICIT_LE || ts == IMPLICIT_LE;
        let pc = accepted
            .iter()
            .find(|pc| pc.transfer_syntax == i.transfer_syntax)
            .or_else(|| accepted.iter().find(|pc| native(&pc.transfer_syntax) && native(&i.transfer_syntax)))
            .ok_or_else(|| {
                bad(format!(
                    "the node accepted no presentation context for SOP class {} in transfer syntax {}",
                    i.sop_class, i.transfer_syntax
                ))
            })?;
        let ts = TransferSyntaxRegistry
            .get(&pc.transfer_syntax)
            .ok_or_else(|| bad(format!("unknown transfer syntax {}", pc.transfer_syntax)))?;
        let implicit =
            TransferSyntaxRegistry.get(IMPLICIT_LE).ok_or_else(|| bad("no implicit VR little endian".into()))?;
        self.message_id = self.message_id.wrapping_add(1).max(1);
        let cmd = InMemDicomObject::command_from_element_iter([
            DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, i.sop_class.as_str())),
            DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_STORE_RQ])),
            DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [self.message_id])),
            DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0])),
            DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
            DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, i.sop_instance.as_str())),
        ]);
        let mut cmd_bytes = Vec::new();
        cmd.write_dataset_with_ts(&mut cmd_bytes, implicit).map_err(|e| bad(format!("command: {e}")))?;
        let mut data = Vec::new();
        i.object.write_dataset_with_ts(&mut data, ts).map_err(|e| bad(format!("data set: {e}")))?;
        let command = PDataValue {
            presentation_context_id: pc.id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: cmd_bytes,
        };
        self.association.send(&Pdu::PData { data: vec![command] }).map_err(|e| gone(e.to_string()))?;
        {
            use std::io::Write as _;
            let mut w = self.association.send_pdata(pc.id);
            w.write_all(&data).map_err(|e| gone(e.to_string()))?;
            w.finish().map_err(|e| gone(e.to_string()))?;
        }
        let status = match self.association.receive().map_err(|e| gone(e.to_string()))? {
            Pdu::PData { data } => {
                let bytes: Vec<u8> = data.into_iter().flat_map(|v| v.data).collect();
                let rsp = InMemDicomObject::read_dataset_with_ts(bytes.as_slice(), implicit)
                    .map_err(|e| gone(format!("unreadable C-STORE-RSP: {e}")))?;
                rsp.element(tags::STATUS)
                    .ok()
                    .and_then(|e| e.to_int::<u16>().ok())
                    .ok_or_else(|| gone("a C-STORE-RSP without a status".into()))?
            }
            other => return Err(gone(format!("expected a C-STORE-RSP, got {other:?}"))),
        };
        // 0x0000 success; 0xB000, 0xB007, 0xB006 warnings (stored).
        if status == 0 || status & 0xF000 == 0xB000 {
            Ok(status)
        } else {
            Err(SendError::Refused { peer: self.peer.clone(), file: i.path, status })
        }
    }

    /// Ends the association (A-RELEASE).
    ///
    /// # Errors
    /// The release failed.
    pub fn release(self) -> Result<(), SendError> {
        let peer = self.peer.clone();
        self.association.release().map_err(|e| SendError::Association { peer, reason: e.to_string() })
    }

    /// Breaks the association off (A-ABORT), as a scanner cut off mid-series would.
    ///
    /// # Errors
    /// The abort could not be sent.
    pub fn abort(self) -> Result<(), SendError> {
        let peer = self.peer.clone();
        self.association.abort().map_err(|e| SendError::Association { peer, reason: e.to_string() })
    }
}

/// Sends `files` on one association and releases it; the files sent.
///
/// # Errors
/// The first failure (the association is aborted then).
pub fn send_series(dest: &Destination, files: &[PathBuf]) -> Result<usize, SendError> {
    let mut s = Sender::connect(dest, files)?;
    for f in files {
        if let Err(e) = s.store(f) {
            let _ = s.abort();
            return Err(e);
        }
    }
    s.release()?;
    Ok(files.len())
}
