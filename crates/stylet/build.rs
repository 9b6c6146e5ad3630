//! Embeds the repository's `config/` folder in the binary: every file under it, as bytes, with
//! its path relative to the folder, but for the files in [`REPOSITORY_ONLY`]. `stylet` runs from anywhere with these defaults
//! (`src/configdir.rs`), and `stylet config init DIR` writes them out for editing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files that name data outside the config folder, which only a checkout of the repository has
/// (an installed binary would carry a scenario it cannot run).
const REPOSITORY_ONLY: &[&str] = &["scenarios/recorded-breathing.toml"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let config = manifest.join("../../config").canonicalize()?;
    println!("cargo:rerun-if-changed={}", config.display());
    let mut found = Vec::new();
    files(&config, &mut found)?;
    let mut code = String::from("/// The default config folder: (path relative to it, contents).\n");
    code.push_str("pub(crate) const FILES: &[(&str, &[u8])] = &[\n");
    for path in &found {
        println!("cargo:rerun-if-changed={}", path.display());
        let relative = path.strip_prefix(&config)?.to_string_lossy().replace('\\', "/");
        if REPOSITORY_ONLY.contains(&relative.as_str()) {
            continue;
        }
        writeln!(code, "    ({relative:?}, include_bytes!({:?})),", path.display().to_string())?;
    }
    code.push_str("];\n");
    std::fs::write(PathBuf::from(std::env::var("OUT_DIR")?).join("embedded_config.rs"), code)?;
    Ok(())
}
