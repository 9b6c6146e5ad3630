//! DCMTK, the third-party DICOM peer of the tests (Debian's `dcmtk`), found on the PATH; shared
//! by the node's tests and the CT suite's (`#[path]`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

/// DCMTK's own `tool` on the PATH: pynetdicom installs Python apps of the same names
/// (storescu, echoscu), which may come first.
pub(crate) fn dcmtk_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).to_lowercase().contains("dcmtk"))
    })
}

/// Whether every one of `tools` is there; with CI set a missing one fails the test, elsewhere
/// the test skips (says so and returns).
pub(crate) fn have(tools: &[&str]) -> bool {
    let found = tools.iter().all(|t| dcmtk_tool(t).is_some());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "DCMTK ({tools:?}) not found: apt install dcmtk");
        eprintln!("SKIPPED: DCMTK not found (apt install dcmtk)");
    }
    found
}

/// `echoscu`, or `storescu` with its options first (`-xs`: propose JPEG Lossless besides the
/// uncompressed syntaxes, `-xv`: JPEG 2000 lossless), so compressed files go as they are.
#[allow(dead_code)]
pub(crate) fn dcmtk(tool: &str, calling: &str, addr: SocketAddr, files: &[PathBuf]) -> Output {
    let mut words = tool.split_whitespace();
    let mut c = Command::new(dcmtk_tool(words.next().unwrap_or_default()).unwrap_or_default());
    c.args(words)
        .args(["-aet", calling, "-aec", "STYLET"])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}
