//! A procedure report written as a DICOM Comprehensive SR (issue 19, item 1) and read back by
//! third-party readers: DCMTK's dsrdump parses the document tree, pydicom reads every item back
//! with its value and unit, dciodvfy (dicom3tools) reports no error. With CI set a missing reader
//! fails the test; elsewhere it skips with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stylet_imaging::derived::DerivedSeries;
use stylet_imaging::seg::Code;
use stylet_imaging::sr::{millimetre, no_unit, write_sr, SrItem, SrMeta};
use stylet_imaging::SeriesMeta;

fn code(v: &str, meaning: &str) -> Code {
    Code::new(v, "99STYLET", meaning)
}

fn tool(name: &str, args: &[&std::ffi::OsStr]) -> Option<std::process::Output> {
    match Command::new(name).args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "{name}: {e} (apt install dcmtk dicom3tools)");
            eprintln!("SKIPPED: {name}: {e}");
            None
        }
    }
}

#[test]
fn a_procedure_report_reads_back_in_dsrdump_pydicom_and_dciodvfy() {
    let dir = std::env::temp_dir().join(format!("stylet-sr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("report.sr.dcm");
    let ct = SeriesMeta::phantom("1.2.826.0.1.3680043.10.1299.8.1", "1.2.826.0.1.3680043.10.1299.8.1.2", "planning CT");
    let sr = SrMeta {
        series: DerivedSeries {
            series_uid: "1.2.826.0.1.3680043.10.1299.8.1.9".into(),
            sop_instance_uid: "1.2.826.0.1.3680043.10.1299.8.1.9.1".into(),
            description: "Stylet procedure report".into(),
            series_number: 902,
            content_date_time: ("20261207".into(), "120000".into()),
            software_version: "stylet test".into(),
        },
        title: code("PROCEDURE-REPORT", "Stylet procedure report"),
        complete: true,
    };
    let items = [
        SrItem::Num { name: code("MARGIN-PLANNED", "Planned margin (MAR-1)"), value: 6.7, unit: millimetre() },
        SrItem::Num { name: code("TIP-ERROR", "Tip to target error"), value: f64::NAN, unit: millimetre() },
        SrItem::Num { name: code("CTS-WITH-NEEDLE", "CTs with the needle"), value: 2.0, unit: no_unit() },
        SrItem::Text { name: code("RULE", "Rule result"), text: "MAR-1 Pass: 6.7 mm >= 5 mm".into() },
        SrItem::Coded { name: code("OUTCOME", "Outcome"), value: code("DONE", "Procedure complete") },
    ];
    write_sr(&path, &ct, &sr, &items).unwrap();

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("python3").arg(root.join("tests/peers/read_sr.py")).arg(&path).output().unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&o.stderr));
    } else {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["sop_class"], "1.2.840.10008.5.1.4.1.1.88.33");
        assert_eq!(r["modality"], "SR");
        assert_eq!(r["study"], ct.study_uid.as_str());
        assert_eq!(r["completion"], "COMPLETE");
        assert_eq!(r["title"], "Stylet procedure report");
        let it = r["items"].as_array().unwrap();
        assert_eq!(it.len(), 3 + items.len(), "{r}");
        assert_eq!(it[0]["value"], ct.study_uid.as_str());
        assert_eq!(it[1]["value"], ct.series_uid.as_str());
        assert_eq!(it[2]["value"], ct.frame_of_reference_uid.as_str());
        assert_eq!(
            (it[3]["type"].as_str(), it[3]["value"].as_f64(), it[3]["unit"].as_str()),
            (Some("NUM"), Some(6.7), Some("mm"))
        );
        assert_eq!(it[4]["type"], "TEXT");
        assert!(it[4]["value"].as_str().unwrap().starts_with("not measured"), "{}", it[4]);
        assert_eq!((it[5]["value"].as_f64(), it[5]["unit"].as_str()), (Some(2.0), Some("1")));
        assert_eq!(it[6]["value"], "MAR-1 Pass: 6.7 mm >= 5 mm");
        assert_eq!(it[7]["value"], "Procedure complete");
        assert!(it.iter().all(|i| i["relationship"] == "CONTAINS"));
    }
    if let Some(o) = tool("dsrdump", &[path.as_os_str()]) {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "dsrdump: {}{out}", String::from_utf8_lossy(&o.stderr));
        for want in ["Stylet procedure report", "Planned margin (MAR-1)", "6.7", "millimeter", "Procedure complete"] {
            assert!(out.contains(want), "dsrdump lacks {want:?}:\n{out}");
        }
    }
    if let Some(o) = tool("dciodvfy", &[path.as_os_str()]) {
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        eprintln!("dciodvfy:\n{text}");
        assert!(!text.lines().any(|l| l.starts_with("Error")), "dciodvfy found errors:\n{text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
