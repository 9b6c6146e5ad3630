//! The node against real DICOM peers on loopback: DCMTK's `echoscu` and `storescu` (Debian's
//! `dcmtk`) send the shared TotalSegmentator series and phantom series; what arrives loads voxel
//! for voxel like the folder it came from. A calling AE title not allowed is rejected; an
//! association aborted mid-series (by a dicom-ul client) leaves its series partial until it is
//! sent again whole. Stylet's own C-STORE SCU sends plain and JPEG Lossless series to DCMTK's
//! `storescp`, which stores them voxel for voxel. With CI set a missing DCMTK fails the tests; elsewhere they skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use nalgebra::Matrix3;
use stylet_core::frame::Point;
use stylet_dicom_node::{
    send_series, Destination, DicomNode, NodeConfig, NodeEvent, SendError, Sender, Series, SeriesOutcome,
};
use stylet_imaging::{load_series, write_series, Volume};

/// How long a test waits for an event before calling the node hung (not a timing check).
const HANG: Duration = Duration::from_secs(60);

#[path = "support/dcmtk.rs"]
mod support;
use support::{dcmtk, dcmtk_tool};

fn have_dcmtk() -> bool {
    support::have(&["storescu", "echoscu", "dcmcjpeg", "dcmodify"])
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stylet-dicom-node-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn node(name: &str, quiet_s: f64, allowed: &[&str]) -> (DicomNode, PathBuf) {
    let store = scratch(&format!("{name}-node"));
    let mut config = NodeConfig::local("STYLET", 0, store.clone());
    config.series_quiet_s = quiet_s;
    config.allowed_calling_ae_titles = allowed.iter().map(|s| s.to_string()).collect();
    (DicomNode::start(config).unwrap(), store)
}

/// Runs DCMTK's `dcmodify`, changing elements in place (`-m "(gggg,eeee)=value"` each).
fn dcmodify(file: &Path, set: &[String]) {
    let mut c = Command::new(dcmtk_tool("dcmodify").unwrap());
    c.arg("-nb");
    for s in set {
        c.arg("-m").arg(s);
    }
    let o = c.arg(file).output().unwrap();
    assert!(o.status.success(), "dcmodify {set:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Events until (and with) the first that `stop` accepts.
fn events_until(node: &DicomNode, stop: impl Fn(&NodeEvent) -> bool) -> Vec<NodeEvent> {
    let mut seen = Vec::new();
    loop {
        let e = node.events().recv_timeout(HANG).unwrap_or_else(|_| panic!("no such event; saw {seen:#?}"));
        let done = stop(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn complete(e: &NodeEvent) -> Option<&Series> {
    match e {
        NodeEvent::Series(SeriesOutcome::Complete(s)) => Some(s),
        _ => None,
    }
}

fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

fn assert_same(received: &Volume, sent: &Volume) {
    assert_eq!(received.dims, sent.dims);
    assert_eq!(received.spacing_mm, sent.spacing_mm);
    assert_eq!(received.origin, sent.origin);
    assert_eq!(received.direction, sent.direction);
    assert!(received.voxels == sent.voxels, "voxels differ");
}

fn phantom_series(dir: &Path, series_uid: &str) -> Vec<PathBuf> {
    let (nx, ny, nz) = (41, 33, 6);
    let v = Volume {
        dims: [nx, ny, nz],
        spacing_mm: [0.7, 0.7, 1.25],
        origin: Point::new(-14.0, -11.5, -300.0),
        direction: Matrix3::identity(),
        voxels: (0..nx * ny * nz).map(|i| ((i * 7919) % 3000) as f32 - 1024.0).collect(),
    };
    write_series(&v, dir, "1.2.826.0.1.3680043.10.1", series_uid, "phantom").unwrap()
}

#[test]
fn dcmtk_echoes_and_sends_the_shared_series_which_loads_voxel_for_voxel() {
    if !have_dcmtk() {
        return;
    }
    let (node, store) = node("shared", 0.5, &["SCANNER"]);
    let addr = node.local_addr();
    let echo = dcmtk("echoscu", "SCANNER", addr, &[]);
    assert!(echo.status.success(), "{}", String::from_utf8_lossy(&echo.stderr));
    events_until(&node, |e| matches!(e, NodeEvent::Echo { .. }));

    // The shared series is anonymised: SOPClassUID, SOPInstanceUID, SeriesInstanceUID and
    // PatientID are blank in its data sets (the file meta group keeps the first two, the file
    // name the instance UID). A sender needs them, so a copy gets them back, as a PACS would.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ct/totalsegmentator-abdomen/dicom");
    let copy = scratch("shared-copy");
    let mut files = Vec::new();
    for f in dicom_files(&src) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let out = copy.join(&name);
        std::fs::copy(&f, &out).unwrap();
        let sop = name.trim_start_matches("CT.");
        dcmodify(
            &out,
            &[
                "(0008,0016)=1.2.840.10008.5.1.4.1.1.2".to_string(),
                format!("(0008,0018)={sop}"),
                "(0020,000E)=1.2.826.0.1.3680043.10.1.5".to_string(),
                "(0010,0020)=ANON".to_string(),
            ],
        );
        files.push(out);
    }
    let sent = dcmtk("storescu -xv", "SCANNER", addr, &files);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let seen = events_until(&node, |e| complete(e).is_some());
    let series = complete(seen.last().unwrap()).unwrap().clone();
    assert_eq!(series.instances, files.len());
    assert_eq!(series.calling_aes, vec!["SCANNER".to_string()]);
    assert_eq!(series.patient_id, "ANON");
    assert_eq!(series.frame_of_reference_uid, "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041");
    assert!(series.dir.starts_with(&store));
    assert_eq!(seen.iter().filter(|e| matches!(e, NodeEvent::Stored { .. })).count(), files.len());
    let (from_folder, _) = load_series(&src, None).unwrap();
    let (received, report) = load_series(&series.dir, Some(&series.series_uid)).unwrap();
    assert_eq!(report.slices, files.len());
    assert_same(&received, &from_folder);
}

#[test]
fn dcmtk_sends_phantom_series_uncompressed_and_jpeg_lossless_each_complete_on_its_own() {
    if !have_dcmtk() {
        return;
    }
    let work = scratch("phantom");
    let plain = phantom_series(&work.join("plain"), "1.2.826.0.1.3680043.10.1.7");
    // DCMTK recompresses the same slices to JPEG Lossless (a new series UID, so both are stored).
    let jpeg_dir = work.join("jpeg");
    std::fs::create_dir_all(&jpeg_dir).unwrap();
    let mut jpeg = Vec::new();
    for f in &plain {
        let out = jpeg_dir.join(f.file_name().unwrap());
        let o = Command::new(dcmtk_tool("dcmcjpeg").unwrap())
            .args(["--encode-lossless-sv1", "--true-lossless"])
            .arg(f)
            .arg(&out)
            .output();
        assert!(o.as_ref().is_ok_and(|o| o.status.success()), "dcmcjpeg: {o:?}");
        dcmodify(&out, &["(0020,000E)=1.2.826.0.1.3680043.10.1.8".to_string()]);
        jpeg.push(out);
    }
    let (node, _) = node("phantom", 0.5, &[]);
    let mut both = plain.clone();
    both.extend(jpeg.iter().cloned());
    let sent = dcmtk("storescu -xs", "CT01", node.local_addr(), &both);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let mut done: Vec<Series> = Vec::new();
    while done.len() < 2 {
        let seen = events_until(&node, |e| complete(e).is_some());
        done.push(complete(seen.last().unwrap()).unwrap().clone());
    }
    done.sort_by(|a, b| a.series_uid.cmp(&b.series_uid));
    let (from_folder, _) = load_series(&work.join("plain"), None).unwrap();
    for (s, ts) in done.iter().zip(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"]) {
        assert_eq!(s.instances, plain.len());
        let (received, report) = load_series(&s.dir, None).unwrap();
        assert!(report.transfer_syntax.starts_with(ts), "{}", report.transfer_syntax);
        assert_same(&received, &from_folder);
    }
}

#[test]
fn a_calling_ae_title_not_allowed_is_rejected_and_nothing_is_stored() {
    if !have_dcmtk() {
        return;
    }
    let work = scratch("refused");
    let files = phantom_series(&work.join("series"), "1.2.826.0.1.3680043.10.1.9");
    let (node, store) = node("refused", 0.5, &["SCANNER"]);
    let sent = dcmtk("storescu", "INTRUDER", node.local_addr(), &files);
    assert!(!sent.status.success(), "storescu was let in");
    let seen = events_until(&node, |e| matches!(e, NodeEvent::Refused { .. }));
    let NodeEvent::Refused { reason, .. } = seen.last().unwrap() else { unreachable!() };
    assert!(reason.contains("INTRUDER"), "{reason}");
    // A peer that is not DICOM at all is refused too, and the node goes on answering.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(node.local_addr()).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    }
    events_until(&node, |e| matches!(e, NodeEvent::Refused { .. }));
    let echo = dcmtk("echoscu", "SCANNER", node.local_addr(), &[]);
    assert!(echo.status.success(), "{}", String::from_utf8_lossy(&echo.stderr));
    assert!(std::fs::read_dir(&store).unwrap().next().is_none(), "something was stored");
}

/// Opens an association (Stylet's own C-STORE SCU) and sends `files` on it.
fn associate_and_send(addr: SocketAddr, files: &[PathBuf]) -> Sender {
    let dest = Destination { addr, called_ae_title: "STYLET".into(), calling_ae_title: "SCANNER".into() };
    let mut s = Sender::connect(&dest, files).unwrap();
    for f in files {
        assert_eq!(s.store(f).unwrap(), 0, "C-STORE status");
    }
    s
}

#[test]
fn a_series_cut_off_by_an_abort_is_partial_and_complete_only_when_sent_again_whole() {
    if !have_dcmtk() {
        return;
    }
    let work = scratch("abort");
    let files = phantom_series(&work.join("series"), "1.2.826.0.1.3680043.10.1.10");
    // A long quiet time: the abort comes long before the series could be taken as complete.
    let (node, _) = node("abort", 5.0, &[]);
    associate_and_send(node.local_addr(), &files[..2]).abort().unwrap();
    let seen = events_until(&node, |e| matches!(e, NodeEvent::Series(_)));
    match seen.last().unwrap() {
        NodeEvent::Series(SeriesOutcome::Partial { series, reason }) => {
            assert_eq!(series.instances, 2);
            assert!(reason.contains("aborted"), "{reason}");
        }
        other => panic!("expected a partial series, got {other:?}"),
    }
    assert!(seen.iter().any(|e| matches!(e, NodeEvent::Ended { instances: 2, .. })), "{seen:#?}");
    // The scanner sends it again, whole: now it completes, with every slice.
    let sent = dcmtk("storescu", "SCANNER", node.local_addr(), &files);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let seen = events_until(&node, |e| matches!(e, NodeEvent::Series(_)));
    let series = complete(seen.last().unwrap()).unwrap_or_else(|| panic!("{seen:#?}"));
    assert_eq!(series.instances, files.len());
    let (received, _) = load_series(&series.dir, None).unwrap();
    assert_eq!(received.dims[2], files.len());
}

#[test]
fn pynetdicom_echoes_and_sends_a_series_which_loads_voxel_for_voxel() {
    let work = scratch("pynetdicom");
    let files = phantom_series(&work.join("series"), "1.2.826.0.1.3680043.10.1.11");
    let (node, _) = node("pynetdicom", 0.5, &["PYNETDICOM"]);
    let addr = node.local_addr();
    let o = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pynetdicom_send.py"))
        .args([addr.ip().to_string(), addr.port().to_string(), "PYNETDICOM".into(), "STYLET".into()])
        .args(&files)
        .output()
        .unwrap();
    if o.status.code() == Some(3) {
        assert!(std::env::var_os("CI").is_none(), "{}", String::from_utf8_lossy(&o.stderr));
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&o.stderr));
        return;
    }
    assert!(
        o.status.success(),
        "{}{}\nnode: {:#?}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        node.events().try_iter().collect::<Vec<_>>()
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["echo"], 0, "{r}");
    assert_eq!(r["stored"], serde_json::json!(vec![0; files.len()]), "{r}");
    let seen = events_until(&node, |e| complete(e).is_some());
    let series = complete(seen.last().unwrap()).unwrap();
    assert_eq!(series.instances, files.len());
    let (received, _) = load_series(&series.dir, None).unwrap();
    let (from_folder, _) = load_series(&work.join("series"), None).unwrap();
    assert_same(&received, &from_folder);
}

#[test]
fn a_sender_breaking_the_protocol_is_aborted_and_the_node_goes_on() {
    let (node, store) = node("protocol", 0.5, &[]);
    let ct = "1.2.840.10008.5.1.4.1.1.2";
    let mut a = ClientAssociationOptions::new()
        .calling_ae_title("SCANNER")
        .called_ae_title("STYLET")
        .with_presentation_context(ct, vec!["1.2.840.10008.1.2.1"])
        .establish(node.local_addr())
        .unwrap();
    let pc = a.presentation_contexts()[0].id;
    // A data set with no C-STORE request before it.
    a.send(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Data,
            is_last: true,
            data: vec![0; 64],
        }],
    })
    .unwrap();
    assert!(matches!(a.receive(), Ok(Pdu::AbortRQ { .. }) | Err(_)), "the node did not abort");
    let seen = events_until(&node, |e| matches!(e, NodeEvent::Ended { .. }));
    let NodeEvent::Ended { how, instances: 0, .. } = seen.last().unwrap() else { panic!("{seen:#?}") };
    assert!(how.contains("protocol error"), "{how}");
    // The wrong called AE title is refused at association.
    let wrong = ClientAssociationOptions::new()
        .calling_ae_title("SCANNER")
        .called_ae_title("NOT-STYLET")
        .with_presentation_context(ct, vec!["1.2.840.10008.1.2.1"])
        .establish(node.local_addr());
    assert!(wrong.is_err(), "associated under another called AE title");
    events_until(&node, |e| matches!(e, NodeEvent::Refused { .. }));
    assert!(std::fs::read_dir(&store).unwrap().next().is_none(), "something was stored");
}

#[test]
fn a_sender_gone_silent_is_ended_by_the_node_and_its_series_is_partial() {
    let work = scratch("silent");
    let files = phantom_series(&work.join("series"), "1.2.826.0.1.3680043.10.1.12");
    let store = scratch("silent-node");
    let mut config = NodeConfig::local("STYLET", 0, store);
    config.association_timeout_s = 0.5;
    config.series_quiet_s = 30.0; // the series cannot complete first
    let node = DicomNode::start(config).unwrap();
    // One instance, then nothing: the association stays open with the sender silent.
    let _silent = associate_and_send(node.local_addr(), &files[..1]);
    // A connection that never sends an A-ASSOCIATE-RQ is ended too.
    let _mute = std::net::TcpStream::connect(node.local_addr()).unwrap();
    // Both end at about the same time, in either order.
    let mut seen = events_until(&node, |e| matches!(e, NodeEvent::Series(_) | NodeEvent::Refused { .. }));
    let is_series = |e: &NodeEvent| matches!(e, NodeEvent::Series(_));
    let is_refused = |e: &NodeEvent| matches!(e, NodeEvent::Refused { .. });
    if !seen.iter().any(is_series) {
        seen.extend(events_until(&node, is_series));
    } else if !seen.iter().any(is_refused) {
        seen.extend(events_until(&node, is_refused));
    }
    match seen.iter().find(|e| is_series(e)).unwrap() {
        NodeEvent::Series(SeriesOutcome::Partial { series, reason }) => {
            assert_eq!(series.instances, 1);
            assert!(reason.contains("no PDU for 0.5 s"), "{reason}");
        }
        other => panic!("expected a partial series, got {other:?}"),
    }
}

/// DCMTK's `storescp` on a free loopback port, storing into `dir` (`+xa`: every transfer syntax).
fn storescp(dir: &Path) -> (std::process::Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(dcmtk_tool("storescp").unwrap())
        .args(["+xa", "-aet", "STORESCP", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + HANG;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "storescp never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

#[test]
fn stylets_scu_sends_plain_and_jpeg_lossless_series_to_dcmtk_storescp_voxel_for_voxel() {
    if !support::have(&["storescp", "dcmcjpeg"]) {
        return;
    }
    let work = scratch("scu");
    let plain = phantom_series(&work.join("plain"), "1.2.826.0.1.3680043.10.1.20");
    let jpeg_dir = work.join("jpeg");
    std::fs::create_dir_all(&jpeg_dir).unwrap();
    let jpeg: Vec<PathBuf> = plain
        .iter()
        .map(|f| {
            let out = jpeg_dir.join(f.file_name().unwrap());
            let o =
                Command::new(dcmtk_tool("dcmcjpeg").unwrap()).arg("--encode-lossless-sv1").arg(f).arg(&out).output();
            assert!(o.as_ref().is_ok_and(|o| o.status.success()), "dcmcjpeg: {o:?}");
            out
        })
        .collect();
    let (from_folder, _) = load_series(&work.join("plain"), None).unwrap();
    for (name, files, ts) in [("plain", &plain, "1.2.840.10008.1.2.1"), ("jpeg", &jpeg, "1.2.840.10008.1.2.4.70")] {
        let received = work.join(format!("received-{name}"));
        std::fs::create_dir_all(&received).unwrap();
        let (mut scp, addr) = storescp(&received);
        let dest = Destination { addr, called_ae_title: "STORESCP".into(), calling_ae_title: "STYLET_CT".into() };
        let sent = send_series(&dest, files);
        let _ = scp.kill();
        let _ = scp.wait();
        assert_eq!(sent.unwrap(), files.len());
        let (volume, report) = load_series(&received, None).unwrap();
        assert_eq!(report.slices, files.len(), "{name}");
        assert!(report.transfer_syntax.starts_with(ts), "{name}: sent as it was, {}", report.transfer_syntax);
        assert_same(&volume, &from_folder);
    }
}

#[test]
fn a_node_refusing_the_calling_ae_title_fails_the_send_and_names_the_node() {
    let work = scratch("scu-refused");
    let files = phantom_series(&work.join("series"), "1.2.826.0.1.3680043.10.1.21");
    let (node, store) = node("scu-refused", 0.5, &["CT01"]);
    let dest =
        Destination { addr: node.local_addr(), called_ae_title: "STYLET".into(), calling_ae_title: "OTHER".into() };
    match send_series(&dest, &files) {
        Err(e @ SendError::Association { .. }) => assert!(e.to_string().contains("STYLET@127.0.0.1"), "{e}"),
        other => panic!("expected a refused association, got {other:?}"),
    }
    assert_eq!(dicom_files(&store).len(), 0, "nothing stored");
}

#[test]
fn element_lengths_beyond_what_was_sent_are_refused_before_anything_is_read() {
    // dicom-rs reserves what an element declares: 4 GB declared in a few bytes would be 4 GB of
    // memory in the procedure's process (the fuzz target suite_inputs found it).
    let (node, store) = node("lengths", 0.5, &[]);
    let ct = "1.2.840.10008.5.1.4.1.1.2";
    let associate = || {
        ClientAssociationOptions::new()
            .calling_ae_title("SCANNER")
            .called_ae_title("STYLET")
            .with_presentation_context(ct, vec!["1.2.840.10008.1.2.1"])
            .establish(node.local_addr())
            .unwrap()
    };
    let pdv = |pc, value_type, data| Pdu::PData {
        data: vec![PDataValue { presentation_context_id: pc, value_type, is_last: true, data }],
    };
    let huge = vec![0x08, 0x00, 0x18, 0x00, b'U', b'I', 0xF0, 0xFF];
    // A data set (explicit VR LE) whose SOPInstanceUID declares 65 kB in 8 bytes: the instance
    // fails with 0xC000, the association goes on.
    let mut a = associate();
    let pc = a.presentation_contexts()[0].id;
    let rq = InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, ct)),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x0001])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [1])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, "1.2.3")),
    ]);
    let implicit = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut cmd = Vec::new();
    rq.write_dataset_with_ts(&mut cmd, &implicit).unwrap();
    a.send(&pdv(pc, PDataValueType::Command, cmd)).unwrap();
    a.send(&pdv(pc, PDataValueType::Data, huge)).unwrap();
    let Ok(Pdu::PData { data }) = a.receive() else { panic!("no C-STORE-RSP") };
    let rsp = InMemDicomObject::read_dataset_with_ts(data[0].data.as_slice(), &implicit).unwrap();
    assert_eq!(rsp.element(tags::STATUS).unwrap().to_int::<u16>().unwrap(), 0xC000);
    let seen = events_until(&node, |e| matches!(e, NodeEvent::InstanceRefused { .. }));
    let NodeEvent::InstanceRefused { reason, .. } = seen.last().unwrap() else { panic!("{seen:#?}") };
    assert!(reason.contains("declares 65520 bytes"), "{reason}");
    a.release().unwrap();
    // A command set whose Command Field declares 4 GB: a protocol error, the association aborted.
    let mut a = associate();
    let pc = a.presentation_contexts()[0].id;
    a.send(&pdv(pc, PDataValueType::Command, vec![0x00, 0x00, 0x00, 0x01, 0xF0, 0xFF, 0xFF, 0xFF])).unwrap();
    assert!(matches!(a.receive(), Ok(Pdu::AbortRQ { .. }) | Err(_)), "the node did not abort");
    let seen = events_until(&node, |e| matches!(e, NodeEvent::Ended { how, .. } if how.contains("protocol error")));
    let NodeEvent::Ended { how, .. } = seen.last().unwrap() else { panic!("{seen:#?}") };
    assert!(how.contains("declares 4294967280 bytes"), "{how}");
    assert!(dicom_files(&store).is_empty(), "nothing stored");
}
