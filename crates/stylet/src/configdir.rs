//! Where the config comes from, in this order: `--config DIR`; else the `STYLET_CONFIG`
//! environment variable; else `./config` when the working folder has one; else the defaults
//! built into the binary (the repository's `config/` at build time, `build.rs`). The built-in
//! defaults are written once to a folder of their own under the user's cache
//! (`$XDG_CACHE_HOME/stylet` or `~/.cache/stylet`, one per version and content), so that every
//! loader reads files as it always does and every error names a file you can open.
//! `stylet config init DIR` writes them out for editing.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded_config.rs"));

/// The `--config` default: `./config`, or the built-in defaults where there is none.
pub(crate) const DEFAULT: &str = "config";

/// The value parser of every `--config`: an existing folder as given; the default when
/// `./config` does not exist, the built-in defaults.
pub(crate) fn resolve(arg: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(arg);
    if path.is_dir() {
        return Ok(path);
    }
    if arg == DEFAULT {
        return builtin().map_err(|e| format!("no ./config here, and the built-in defaults could not be written: {e}"));
    }
    Err(format!(
        "{arg}: no such config folder (`stylet config init {arg}` writes the defaults there; without --config and \
         STYLET_CONFIG, ./config or the built-in defaults are used)"
    ))
}

/// FNV-1a over every path and content: the built-in set's identity.
fn fingerprint() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, bytes) in FILES {
        for b in path.bytes().chain([0]).chain(bytes.iter().copied()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("stylet")
}

/// The built-in defaults as a folder: written once per version and content, then reused.
pub(crate) fn builtin() -> std::io::Result<PathBuf> {
    let root = cache_root();
    let id = fingerprint();
    let dir = root.join(format!("config-{}-{id:016x}", env!("CARGO_PKG_VERSION")));
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    // Written beside, then renamed into place: a reader never sees half a folder, and two
    // processes starting at once both end up with the same complete one.
    let staging = root.join(format!(".staging-{}-{id}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    write_all(&staging, true)?;
    std::fs::write(staging.join(COMPLETE), b"")?;
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.join(COMPLETE).is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// Marks a built-in folder as completely written.
const COMPLETE: &str = ".complete";

/// Writes every built-in file under `dir`; without `overwrite`, refuses (writing nothing) when
/// any of them exists already, naming them. Returns the files written.
pub(crate) fn write_all(dir: &Path, overwrite: bool) -> std::io::Result<Vec<PathBuf>> {
    let targets: Vec<(PathBuf, &[u8])> = FILES.iter().map(|(p, b)| (dir.join(p), *b)).collect();
    if !overwrite {
        let existing: Vec<String> =
            targets.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
        if !existing.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} file(s) exist already (--force overwrites them): {}", existing.len(), existing.join(", ")),
            ));
        }
    }
    for (path, bytes) in &targets {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(targets.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_the_repositorys_config_folder() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        for (path, bytes) in FILES {
            assert_eq!(std::fs::read(repo.join(path)).ok().as_deref(), Some(*bytes), "{path}");
        }
        assert!(FILES.iter().any(|(p, _)| *p == "robot/stylet_arm.urdf"));
        assert!(FILES.iter().any(|(p, _)| *p == "scenarios/easy.toml"));
    }

    #[test]
    fn init_refuses_to_overwrite_without_force_and_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("stylet-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(dir.join("safety.toml"), "# mine\n").ok();
        let err = write_all(&dir, false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("safety.toml") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.join("safety.toml")).ok().as_deref(), Some("# mine\n"));
        assert!(!dir.join("respiration.toml").exists(), "nothing written when refused");
        let written = write_all(&dir, true).unwrap_or_default();
        assert_eq!(written.len(), FILES.len());
        assert!(dir.join("robot/robot.toml").is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
