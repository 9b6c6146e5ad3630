//! One association: access control at A-ASSOCIATE, then C-ECHO and C-STORE until the sender
//! releases or aborts. Every instance is written to a temporary name and renamed into place, so a
//! file under its final name is always whole.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use dicom_core::Tag;
use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::{entries::IMPLICIT_VR_LITTLE_ENDIAN, TransferSyntaxRegistry};
use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, UserIdentity};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};

use crate::node::{NodeEvent, Shared};
use crate::tracker::{AssociationId, StoredInstance};

/// DIMSE command fields (PS3.7 E.1).
const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;
const C_ECHO_RQ: u16 = 0x0030;
const C_ECHO_RSP: u16 = 0x8030;
/// DIMSE statuses (PS3.4 B.2.3).
const SUCCESS: u16 = 0x0000;
const OUT_OF_RESOURCES: u16 = 0xA700;
const DATA_SET_DOES_NOT_MATCH: u16 = 0xA900;
const CANNOT_UNDERSTAND: u16 = 0xC000;
/// The largest instance (or command) accepted, bytes: above any CT (an enhanced CT of 300
/// slices of 512 x 512 is 160 MB); a sender going past it is cut off, not let fill the memory.
const MAX_INSTANCE_BYTES: usize = 1 << 30;

/// The called AE title must be ours; the calling one in the allowed list when there is one.
/// Remembers the calling AE title for the node's report.
#[derive(Debug)]
struct Access<'a> {
    allowed: &'a [String],
    calling: Arc<Mutex<String>>,
}

impl AccessControl for Access<'_> {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        calling_ae_title.trim().clone_into(&mut self.calling.lock().unwrap_or_else(PoisonError::into_inner));
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a.trim() == calling_ae_title.trim()) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// How an association ended.
#[derive(Debug)]
enum End {
    /// The sender released it.
    Released,
    /// The sender aborted it, or the link broke.
    ByPeer(String),
    /// The node ends it (a protocol breach, a response it could not send, silence): an
    /// A-ABORT tells the sender.
    ByNode(String),
}

/// A C-STORE request whose data set is still arriving.
#[derive(Debug)]
struct StoreRq {
    message_id: u16,
    sop_class_uid: String,
    sop_instance_uid: String,
}

/// Serves one association to its end and reports what it did.
pub(crate) fn serve(stream: TcpStream, peer: SocketAddr, id: AssociationId, shared: &Shared) {
    let config = &shared.config;
    let calling = Arc::new(Mutex::new(String::new()));
    let access = Access { allowed: &config.allowed_calling_ae_titles, calling: Arc::clone(&calling) };
    let calling = move || calling.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(access)
        .ae_title(config.ae_title.trim())
        .max_pdu_length(config.max_pdu_length)
        .with_abstract_syntax(crate::VERIFICATION_SOP_CLASS);
    for class in crate::STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(class);
    }
    for ts in crate::TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(ts);
    }
    let mut association = match options.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            let calling = calling();
            shared.closed(id);
            shared.tracker().ended(id, None, shared.now_s());
            shared.report(NodeEvent::Refused { peer, reason: format!("association from {calling:?} refused: {e}") });
            return;
        }
    };
    let calling = calling();
    shared.tracker().activity(id, shared.now_s());
    shared.report(NodeEvent::Associated { association: id, peer, calling_ae: calling.clone() });
    let (stored, mut end) = receive(&mut association, id, &calling, shared);
    if shared.closed(id) {
        end = End::ByNode(format!("ended by the node: no PDU for {} s", config.association_timeout_s));
    }
    let aborted = match end {
        End::Released => None,
        End::ByPeer(why) => Some(why),
        End::ByNode(why) => {
            // The series stays partial.
            let _ = association.abort();
            Some(why)
        }
    };
    let now = shared.now_s();
    let partial = shared.tracker().ended(id, aborted.as_deref(), now);
    let how = aborted.unwrap_or_else(|| "released".into());
    shared.report(NodeEvent::Ended { association: id, instances: stored, how });
    for outcome in partial {
        shared.report(NodeEvent::Series(outcome));
    }
}

/// Receives until the association ends: (instances stored, how it ended).
fn receive(
    association: &mut ServerAssociation<TcpStream>,
    id: AssociationId,
    calling: &str,
    shared: &Shared,
) -> (usize, End) {
    let mut stored = 0;
    let mut command: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut pending: Option<StoreRq> = None;
    loop {
        let pdu = match association.receive() {
            Ok(p) => p,
            Err(e) => return (stored, End::ByPeer(format!("association broken: {}", chain(&e)))),
        };
        shared.tracker().activity(id, shared.now_s());
        let values = match pdu {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ => {
                let _ = association.send(&Pdu::ReleaseRP);
                return (stored, End::Released);
            }
            Pdu::AbortRQ { source } => return (stored, End::ByPeer(format!("aborted by the sender ({source:?})"))),
            other => return (stored, End::ByNode(format!("unexpected {}", other.short_description()))),
        };
        for mut value in values {
            match value.value_type {
                _ if command.len() + data.len() + value.data.len() > MAX_INSTANCE_BYTES => {
                    return (stored, End::ByNode(format!("an instance larger than {MAX_INSTANCE_BYTES} bytes")));
                }
                PDataValueType::Command => {
                    command.append(&mut value.data);
                    if !value.is_last {
                        continue;
                    }
                    let cmd = std::mem::take(&mut command);
                    match on_command(association, value.presentation_context_id, &cmd, id, shared) {
                        Ok(rq) => {
                            pending = rq;
                            data.clear();
                        }
                        Err(why) => return (stored, End::ByNode(why)),
                    }
                }
                PDataValueType::Data => {
                    data.append(&mut value.data);
                    if !value.is_last {
                        continue;
                    }
                    let Some(rq) = pending.take() else {
                        return (stored, End::ByNode("protocol error: a data set without a C-STORE request".into()));
                    };
                    let outcome = store(association, value.presentation_context_id, &rq, &data, calling, shared);
                    data.clear(); // keeps its capacity for the next instance
                    let status = match outcome {
                        Ok(instance) => {
                            let path = instance.dir.join(format!("{}.dcm", instance.sop_instance_uid));
                            shared.tracker().stored(id, &instance, shared.now_s());
                            shared.report(NodeEvent::Stored {
                                association: id,
                                series_uid: instance.series_uid,
                                sop_instance_uid: instance.sop_instance_uid,
                                path,
                            });
                            stored += 1;
                            SUCCESS
                        }
                        Err((status, reason)) => {
                            shared.report(NodeEvent::InstanceRefused { association: id, status, reason });
                            status
                        }
                    };
                    let rsp = store_response(&rq, status);
                    if let Err(why) = send_command(association, value.presentation_context_id, &rsp) {
                        return (stored, End::ByNode(why));
                    }
                }
            }
        }
    }
}

/// An error with its causes, "a: b: c".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

fn implicit_le() -> dicom_encoding::TransferSyntax {
    IMPLICIT_VR_LITTLE_ENDIAN.erased()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.element(tag).ok()?.to_str().ok()?;
    Some(s.trim_end_matches(['\0', ' ']).trim().to_string())
}

/// A DIMSE command the node takes, from a sender's command set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DimseCommand {
    /// C-ECHO-RQ.
    Echo {
        /// Its Message ID.
        message_id: u16,
    },
    /// C-STORE-RQ (its data set follows).
    Store {
        /// Its Message ID.
        message_id: u16,
        /// Affected SOP Class UID.
        sop_class_uid: String,
        /// Affected SOP Instance UID.
        sop_instance_uid: String,
    },
}

/// Reads a command set (implicit VR little endian, as DIMSE requires) sent by a peer: a flat
/// list of group 0000 elements, walked here without dicom-rs (which reserves what an element
/// declares before it reads, and reads the value of a tag its dictionary calls a sequence as
/// items, each with a length of its own: a few bytes could cost gigabytes).
///
/// # Errors
/// Why the node cannot take it (it aborts the association then).
pub fn parse_command(bytes: &[u8]) -> Result<DimseCommand, String> {
    let bad = |why: String| format!("protocol error: unreadable command: {why}");
    let (mut field, mut message_id, mut class, mut instance) = (None, 0u16, String::new(), String::new());
    let mut at = 0usize;
    while at < bytes.len() {
        let header = bytes.get(at..at + 8).ok_or_else(|| bad(format!("ends inside an element header at byte {at}")))?;
        let (group, element) = (u16::from_le_bytes([header[0], header[1]]), u16::from_le_bytes([header[2], header[3]]));
        let n = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let remaining = bytes.len() - at - 8;
        if n == u32::MAX || n as usize > remaining {
            return Err(bad(format!(
                "element ({group:04X},{element:04X}) declares {n} bytes at byte {at} but only {remaining} remain"
            )));
        }
        if group != 0x0000 {
            return Err(bad(format!("element ({group:04X},{element:04X}) is not of a command set (group 0000)")));
        }
        let value = &bytes[at + 8..at + 8 + n as usize];
        let us = || (value.len() == 2).then(|| u16::from_le_bytes([value[0], value[1]]));
        let ui = || String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).trim().to_string();
        match element {
            0x0100 => field = Some(us().ok_or_else(|| bad("Command Field is not one US".into()))?),
            0x0110 => message_id = us().ok_or_else(|| bad("Message ID is not one US".into()))?,
            0x0002 => class = ui(),
            0x1000 => instance = ui(),
            _ => {}
        }
        at += 8 + n as usize;
    }
    match field {
        Some(C_ECHO_RQ) => Ok(DimseCommand::Echo { message_id }),
        Some(C_STORE_RQ) => Ok(DimseCommand::Store { message_id, sop_class_uid: class, sop_instance_uid: instance }),
        Some(other) => Err(format!("protocol error: unsupported command 0x{other:04X}")),
        None => Err("protocol error: a command without a Command Field".into()),
    }
}

/// A command: answers a C-ECHO, or returns the C-STORE request whose data set follows.
fn on_command(
    association: &mut ServerAssociation<TcpStream>,
    pc: u8,
    bytes: &[u8],
    id: AssociationId,
    shared: &Shared,
) -> Result<Option<StoreRq>, String> {
    match parse_command(bytes)? {
        DimseCommand::Echo { message_id } => {
            let rsp = InMemDicomObject::command_from_element_iter([
                DataElement::new(
                    tags::AFFECTED_SOP_CLASS_UID,
                    VR::UI,
                    dicom_value!(Str, crate::VERIFICATION_SOP_CLASS),
                ),
                DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_ECHO_RSP])),
                DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [message_id])),
                DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0101])),
                DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [SUCCESS])),
            ]);
            send_command(association, pc, &rsp)?;
            shared.report(NodeEvent::Echo { association: id });
            Ok(None)
        }
        DimseCommand::Store { message_id, sop_class_uid, sop_instance_uid } => {
            Ok(Some(StoreRq { message_id, sop_class_uid, sop_instance_uid }))
        }
    }
}

fn store_response(rq: &StoreRq, status: u16) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, rq.sop_class_uid.as_str())),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_STORE_RSP])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [rq.message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0101])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, rq.sop_instance_uid.as_str())),
    ])
}

fn send_command(association: &mut ServerAssociation<TcpStream>, pc: u8, obj: &InMemDicomObject) -> Result<(), String> {
    let mut bytes = Vec::new();
    obj.write_dataset_with_ts(&mut bytes, &implicit_le()).map_err(|e| format!("cannot encode a response: {e}"))?;
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: bytes,
        }],
    };
    association.send(&pdu).map_err(|e| format!("cannot send a response: {e}"))
}

/// A DICOM UID: 1-64 characters of digits and dots (also what makes it safe as a file name).
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.chars().all(|c| c.is_ascii_digit() || c == '.') && !uid.starts_with('.')
}

/// Reads and writes one instance: the stored instance, or the failure status and why.
fn store(
    association: &ServerAssociation<TcpStream>,
    pc: u8,
    rq: &StoreRq,
    set: &[u8],
    calling: &str,
    shared: &Shared,
) -> Result<StoredInstance, (u16, String)> {
    let ts_uid = association
        .presentation_contexts()
        .iter()
        .find(|p| p.id == pc)
        .map(|p| p.transfer_syntax.trim_end_matches(['\0', ' ']).to_string())
        .ok_or((CANNOT_UNDERSTAND, format!("no presentation context {pc}")))?;
    let ts =
        TransferSyntaxRegistry.get(&ts_uid).ok_or((CANNOT_UNDERSTAND, format!("unknown transfer syntax {ts_uid}")))?;
    // dicom-rs reserves an element's declared length before it reads: checked first. The
    // attributes the node needs come before the pixels, which dicom-rs is not given (a copy of
    // half a megabyte per slice that nothing reads: the file is written from `set`).
    let head = stylet_imaging::dicom_lengths::pixel_data_offset(set, &ts_uid)
        .map_err(|e| (CANNOT_UNDERSTAND, format!("unreadable data set: {e}")))?;
    let obj = InMemDicomObject::read_dataset_with_ts(&set[..head], ts)
        .map_err(|e| (CANNOT_UNDERSTAND, format!("unreadable data set: {e}")))?;
    let series_uid = text(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    let sop_uid = text(&obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let sop_class = text(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if !valid_uid(&series_uid) {
        return Err((DATA_SET_DOES_NOT_MATCH, format!("SeriesInstanceUID {series_uid:?} is not a UID")));
    }
    if !valid_uid(&sop_uid) || sop_uid != rq.sop_instance_uid {
        return Err((
            DATA_SET_DOES_NOT_MATCH,
            format!("SOPInstanceUID {sop_uid:?} is not the request's {:?}", rq.sop_instance_uid),
        ));
    }
    if sop_class != rq.sop_class_uid {
        return Err((
            DATA_SET_DOES_NOT_MATCH,
            format!("SOPClassUID {sop_class:?} is not the request's {:?}", rq.sop_class_uid),
        ));
    }
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class.as_str())
        .media_storage_sop_instance_uid(sop_uid.as_str())
        .transfer_syntax(ts_uid.as_str())
        .build()
        .map_err(|e| (CANNOT_UNDERSTAND, format!("cannot build the file meta group: {e}")))?;
    let dir: PathBuf = shared.config.storage_dir.join(&series_uid);
    let write_error = |e: String| (OUT_OF_RESOURCES, format!("cannot write into {}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(|e| write_error(e.to_string()))?;
    let part = dir.join(format!(".{sop_uid}.dcm.part"));
    let path = dir.join(format!("{sop_uid}.dcm"));
    let patient_id = text(&obj, tags::PATIENT_ID).unwrap_or_default();
    let frame_of_reference_uid = text(&obj, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default();
    // The data set is written as it arrived (bit for bit, in its transfer syntax) after the
    // preamble and the file meta group: nothing is re-encoded.
    let mut header = Vec::with_capacity(512);
    header.extend_from_slice(&[0; 128]);
    header.extend_from_slice(b"DICM");
    meta.write(&mut header).map_err(|e| (CANNOT_UNDERSTAND, format!("cannot write the file meta group: {e}")))?;
    drop(obj);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&part)?;
        file.write_all(&header)?;
        file.write_all(set)
    };
    write().map_err(|e| write_error(e.to_string()))?;
    std::fs::rename(&part, &path).map_err(|e| write_error(e.to_string()))?;
    Ok(StoredInstance {
        series_uid,
        sop_instance_uid: sop_uid,
        dir,
        patient_id,
        frame_of_reference_uid,
        calling_ae: calling.to_string(),
    })
}

#[cfg(test)]
mod command_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn encoded(obj: &InMemDicomObject) -> Vec<u8> {
        let mut b = Vec::new();
        obj.write_dataset_with_ts(&mut b, &implicit_le()).unwrap();
        b
    }

    #[test]
    fn commands_are_read_without_dicom_rs_and_lengths_are_checked() {
        let rq = InMemDicomObject::command_from_element_iter([
            DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, "1.2.840.10008.5.1.4.1.1.2")),
            DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_STORE_RQ])),
            DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [7])),
            DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, "1.2.3.4")),
        ]);
        assert_eq!(
            parse_command(&encoded(&rq)),
            Ok(DimseCommand::Store {
                message_id: 7,
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: "1.2.3.4".into()
            })
        );
        let echo = InMemDicomObject::command_from_element_iter([
            DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_ECHO_RQ])),
            DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [1])),
        ]);
        assert_eq!(parse_command(&encoded(&echo)), Ok(DimseCommand::Echo { message_id: 1 }));
        let too_long = [0x00, 0x00, 0x00, 0x01, 0xF0, 0xFF, 0xFF, 0xFF];
        assert!(parse_command(&too_long).unwrap_err().contains("(0000,0100) declares 4294967280 bytes"));
        // A data set element (here one dicom-rs would read as a sequence of items) is no command.
        let sq = [0x08, 0x00, 0x15, 0x11, 8, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0x80];
        assert!(parse_command(&sq).unwrap_err().contains("not of a command set"));
        assert!(parse_command(&[0x00, 0x00, 0x00, 0x01, 2, 0]).unwrap_err().contains("inside an element header"));
    }
}
