//! The declared-length check (`dicom_lengths::check`, run before dicom-rs reads a file) never
//! refuses a file dicom-rs reads: over pydicom's collection of test files (little and big endian,
//! implicit and explicit VR, JPEG, JPEG-LS, JPEG 2000, RLE, deflate, sequences, odd lengths,
//! truncated and damaged files). With CI set a missing pydicom fails the test; elsewhere it
//! skips with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn pydicom_test_files() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, pydicom.data; print(os.path.join(os.path.dirname(pydicom.data.__file__), 'test_files'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(out) = out else {
        assert!(std::env::var_os("CI").is_none(), "pydicom not found: pip install pydicom");
        eprintln!("SKIPPED: pydicom not found (pip install pydicom)");
        return None;
    };
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[test]
fn the_length_check_never_refuses_a_file_dicom_rs_reads() {
    let Some(dir) = pydicom_test_files() else { return };
    let (mut read, mut refused_damaged) = (0, 0);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if !p.is_file() {
            continue;
        }
        let ours = stylet_imaging::dicom_lengths::check(&p);
        match dicom_object::open_file(&p) {
            Ok(_) => {
                assert_eq!(ours, Ok(()), "{} reads with dicom-rs but the check refuses it", p.display());
                read += 1;
            }
            Err(_) => refused_damaged += usize::from(ours.is_err()),
        }
    }
    println!("{read} files read by dicom-rs all pass; {refused_damaged} it cannot read are also refused by the check");
    assert!(read >= 50, "only {read} readable files in {}", dir.display());
    assert!(refused_damaged >= 3, "the truncated files should fail the check too");
}
