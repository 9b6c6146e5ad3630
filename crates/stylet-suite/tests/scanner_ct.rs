//! The scanner's CTs through the `CtSource` port: series sent by DCMTK's `storescu` to the DICOM
//! node (or dropped into a watched folder) are used only when asked for, whole, and of the
//! planning CT's patient and frame of reference; everything else is refused with the reason and
//! the source keeps waiting. With CI set a missing DCMTK fails the test; elsewhere it skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../stylet-dicom-node/tests/support/dcmtk.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nalgebra::Matrix3;
use stylet_core::frame::Point;
use stylet_dicom_node::{DicomNode, NodeConfig};
use stylet_imaging::{load_series, write_series_with, PixelEncoding, SeriesMeta, Volume};
use stylet_procedure::ports::{Acquired, CtPurpose, CtSource, PlanningCt};
use stylet_suite::site::FolderSite;
use stylet_suite::{Arrivals, FolderWatch, ScannerCt};

/// How long the test waits before calling the source hung (not a timing check).
const HANG: Duration = Duration::from_secs(60);

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stylet-suite-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn volume(seed: u32) -> Volume {
    let dims = [24, 20, 12];
    let voxels =
        (0..dims[0] * dims[1] * dims[2]).map(|i| ((i as u32 * 37 + seed * 101) % 2000) as f32 - 1000.0).collect();
    Volume {
        dims,
        spacing_mm: [0.8, 0.8, 2.5],
        origin: Point::new(-10.0, -8.0, -15.0),
        direction: Matrix3::identity(),
        voxels,
    }
}

fn meta(series: &str, patient: &str, frame: &str, acquired: Option<String>) -> SeriesMeta {
    SeriesMeta {
        study_uid: "1.2.826.0.1.3680043.10.77".into(),
        series_uid: series.into(),
        description: "checkpoint".into(),
        patient_id: patient.into(),
        patient_name: "Test^Patient".into(),
        frame_of_reference_uid: frame.into(),
        acquisition_datetime: acquired,
    }
}

const FRAME: &str = "1.2.826.0.1.3680043.10.77.9";

fn write(dir: &Path, v: &Volume, m: &SeriesMeta) -> Vec<PathBuf> {
    write_series_with(v, dir, m, PixelEncoding::Uncompressed).unwrap()
}

/// The source, its planning CT written and read back as the site would.
fn source(work: &Path, arrivals: Arrivals) -> ScannerCt {
    let dir = work.join("planning");
    write(&dir, &volume(0), &meta("1.2.826.0.1.3680043.10.77.1", "P-1", FRAME, None));
    let (ct, report) = load_series(&dir, None).unwrap();
    let labels = Volume { voxels: vec![0.0; ct.voxels.len()], ..ct.clone() };
    let table = stylet_planning::LabelTable::load(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/labels.toml")),
        "phantom",
    )
    .unwrap();
    let planning = PlanningCt {
        ct: Acquired { volume: ct, acquired_s: 0.0, source: "planning".into() },
        labels,
        table,
        tumour: stylet_planning::TumourSpec::Label { value: 2, component: 0 },
    };
    ScannerCt::new(planning, &report, arrivals, Instant::now(), 0)
}

/// Polls until a CT is there or `until` accepts a notice; the notices seen.
fn poll(src: &mut ScannerCt, until: impl Fn(&str) -> bool) -> (Option<Acquired>, Vec<String>) {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        let ct = src.poll_ct().unwrap();
        src.notices(&mut |n| seen.push(n));
        if ct.is_some() || seen.iter().any(|n| until(n)) {
            return (ct, seen);
        }
        assert!(t0.elapsed() < HANG, "nothing came; notices {seen:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn storescu(addr: SocketAddr, files: &[PathBuf]) {
    let o = support::dcmtk("storescu", "CT_SCANNER", addr, files);
    assert!(o.status.success(), "storescu: {}", String::from_utf8_lossy(&o.stderr));
}

fn utc_now_dt() -> String {
    let o = std::process::Command::new("date").args(["-u", "+%Y%m%d%H%M%S.%N+0000"]).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn over_dicom_only_the_asked_for_series_of_the_planning_patient_and_frame_is_used() {
    if !support::have(&["storescu"]) {
        return;
    }
    let work = scratch("node");
    let mut config = NodeConfig::local("STYLET", 0, work.join("incoming"));
    config.series_quiet_s = 0.3;
    let node = DicomNode::start(config).unwrap();
    let addr = node.local_addr();
    let mut src = source(&work, Arrivals::Node(node));
    assert!(src.planning().unwrap().is_some());
    assert!(src.planning().unwrap().is_none(), "the planning CT is handed out once");

    // Sent before anyone asked: not an answer to the request that follows.
    storescu(addr, &write(&work.join("early"), &volume(1), &meta("1.2.826.0.1.3680043.10.77.2", "P-1", FRAME, None)));
    let (ct, notices) = poll(&mut src, |n| n.contains("no CT was asked for"));
    assert!(ct.is_none(), "{notices:?}");
    src.request_ct(CtPurpose::Checkpoint).unwrap();
    let asked = Instant::now();

    // Another patient's series, and one in another frame of reference: refused, with why.
    storescu(addr, &write(&work.join("other"), &volume(2), &meta("1.2.826.0.1.3680043.10.77.3", "P-2", FRAME, None)));
    let (ct, notices) = poll(&mut src, |n| n.contains("refused"));
    assert!(ct.is_none());
    assert!(notices.iter().any(|n| n.contains("another patient") && n.contains("\"P-2\"")), "{notices:?}");
    let moved = meta("1.2.826.0.1.3680043.10.77.4", "P-1", "1.2.826.0.1.3680043.10.77.8", None);
    storescu(addr, &write(&work.join("moved"), &volume(3), &moved));
    let (ct, notices) = poll(&mut src, |n| n.contains("refused"));
    assert!(ct.is_none());
    assert!(notices.iter().any(|n| n.contains("another frame of reference")), "{notices:?}");

    // Something that is not DICOM at all (a web client at the wrong port): said, and waited on.
    {
        use std::io::Write as _;
        let mut web = std::net::TcpStream::connect(addr).unwrap();
        web.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let (ct, notices) = poll(&mut src, |n| n.contains("DICOM node:"));
        assert!(ct.is_none(), "{notices:?}");
    }
    // A sender breaking the protocol once associated (a data set with no C-STORE request).
    {
        use dicom_ul::pdu::{PDataValue, PDataValueType};
        let mut a = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("CT_SCANNER")
            .called_ae_title("STYLET")
            .with_presentation_context("1.2.840.10008.5.1.4.1.1.2", vec!["1.2.840.10008.1.2.1"])
            .establish(addr)
            .unwrap();
        let pc = a.presentation_contexts()[0].id;
        let data = vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Data,
            is_last: true,
            data: vec![0; 16],
        }];
        a.send(&dicom_ul::Pdu::PData { data }).unwrap();
        let (ct, notices) = poll(&mut src, |n| n.contains("ended without a series"));
        assert!(ct.is_none());
        assert!(notices.iter().any(|n| n.contains("protocol error")), "{notices:?}");
    }

    // The right one: loaded voxel for voxel, taken when its acquisition time says.
    let right = volume(4);
    let files =
        write(&work.join("right"), &right, &meta("1.2.826.0.1.3680043.10.77.5", "P-1", FRAME, Some(utc_now_dt())));
    storescu(addr, &files);
    let (ct, notices) = poll(&mut src, |_| false);
    let ct = ct.unwrap();
    assert_eq!(ct.volume.voxels, right.voxels, "{notices:?}");
    assert_eq!(ct.volume.dims, right.dims);
    assert!(ct.volume.origin.distance_mm(right.origin) < 1e-4);
    let since = asked.elapsed().as_secs_f64();
    assert!(ct.acquired_s >= 0.0 && ct.acquired_s <= since + 1.0, "acquired at {} s", ct.acquired_s);
    assert!(!notices.iter().any(|n| n.contains("AcquisitionDateTime")), "{notices:?}");
    assert!(ct.source.contains("1.2.826.0.1.3680043.10.77.5"), "{}", ct.source);

    // Sent again: nobody asked, and it was used already.
    storescu(addr, &files);
    let (ct, notices) = poll(&mut src, |n| n.contains("no CT was asked for"));
    assert!(ct.is_none(), "{notices:?}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn from_a_watched_folder_a_new_series_folder_is_used_once_it_is_quiet() {
    let work = scratch("folder");
    let watch = work.join("watch");
    let w = FolderWatch::start(&FolderSite { watch: watch.clone(), quiet_s: 0.3 }).unwrap();
    let mut src = source(&work, Arrivals::Folder(w));
    src.request_ct(CtPurpose::Confirmation).unwrap();
    let v = volume(5);
    write(&watch.join("series-a"), &v, &meta("1.2.826.0.1.3680043.10.77.6", "P-1", FRAME, None));
    let (ct, notices) = poll(&mut src, |_| false);
    assert_eq!(ct.unwrap().volume.voxels, v.voxels);
    // Without an acquisition time the arrival stands in, and the log says so.
    assert!(notices.iter().any(|n| n.contains("no AcquisitionDateTime")), "{notices:?}");
    let _ = std::fs::remove_dir_all(&work);
}
