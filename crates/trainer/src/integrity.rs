//! Integrity of everything the trainer writes: atomic writes and SHA-256 checksum files.
//!
//! Every model file and checkpoint `X.bpk` is written to a temporary file in the same folder,
//! synced, and renamed over `X.bpk` (so a crash mid-write never leaves a half-written file under
//! the final name); then its checksum goes to `X.bpk.sha256` the same way, in `sha256sum`'s
//! format (`sha256sum -c X.bpk.sha256` checks it by hand). Whatever reads a model or a checkpoint
//! — `eval`, `--resume`, `ptq` and `qat` starting from the float model — verifies it first.
//! SHA-256 runs at about 1.5 GB/s here (the CPU's SHA instructions, `cargo xtask bench
//! integrity`): a LeNet checkpoint (2.6 MB) costs a few milliseconds, against tens of seconds per
//! epoch; the sync, not the hash, is most of a checked write's cost.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a file could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The file does not exist (or is not a file).
    #[error("{}: {reason}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// Not found, a directory, …
        reason: String,
    },
    /// The file exists but its checksum file does not.
    #[error("{}: no checksum file {} (written by an older version, or the write was cut off before it)", path.display(), checksum_path(path).display())]
    NoChecksum {
        /// The file.
        path: PathBuf,
    },
    /// The content does not match its checksum: the file is damaged.
    #[error("{}: checksum mismatch (expected sha256 {expected}, found {actual}): the file is damaged", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The recorded checksum.
        expected: String,
        /// The checksum of the content found.
        actual: String,
    },
    /// Reading failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `path` with `.sha256` appended.
pub fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Milliseconds to sleep per 64 KiB written, from `TRAINER_TEST_WRITE_DELAY_MS`: lets the
/// crash-safety test kill a run while a checkpoint is being written. Unset: no delay.
fn write_delay() -> Option<std::time::Duration> {
    std::env::var("TRAINER_TEST_WRITE_DELAY_MS")
        .ok()?
        .parse()
        .ok()
        .map(std::time::Duration::from_millis)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path` (and the folder synced), so `path` is either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        match write_delay() {
            None => file.write_all(bytes)?,
            Some(delay) => {
                for chunk in bytes.chunks(64 << 10) {
                    file.write_all(chunk)?;
                    std::thread::sleep(delay);
                }
            }
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` and its checksum to `path.sha256`, both atomically.
pub fn write_checked(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let line = format!("{}  {name}\n", sha256_hex(bytes));
    write_atomic(&checksum_path(path), line.as_bytes())
}

/// Reads `path` and checks it against `path.sha256`.
pub fn read_checked(path: &Path) -> Result<Vec<u8>, IntegrityError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(IntegrityError::Missing {
                path: path.into(),
                reason: "is a directory, not a model file".into(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IntegrityError::Missing {
                path: path.into(),
                reason: "not found".into(),
            });
        }
        Err(source) => {
            return Err(IntegrityError::Io {
                path: path.into(),
                source,
            });
        }
    }
    let bytes = std::fs::read(path).map_err(|source| IntegrityError::Io {
        path: path.into(),
        source,
    })?;
    let sum_path = checksum_path(path);
    let recorded = match std::fs::read_to_string(&sum_path) {
        Ok(text) => text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IntegrityError::NoChecksum { path: path.into() });
        }
        Err(source) => {
            return Err(IntegrityError::Io {
                path: sum_path,
                source,
            });
        }
    };
    let actual = sha256_hex(&bytes);
    if actual != recorded {
        return Err(IntegrityError::Mismatch {
            path: path.into(),
            expected: recorded,
            actual,
        });
    }
    Ok(bytes)
}

/// Removes `path` and its checksum file (missing ones are fine).
pub fn remove_checked(path: &Path) -> std::io::Result<()> {
    for p in [path.to_path_buf(), checksum_path(path)] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_anywhere_is_a_mismatch_and_atomic_writes_leave_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("trainer-integrity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.bpk");
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        write_checked(&path, &data).unwrap();
        assert_eq!(read_checked(&path).unwrap(), data);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        for at in [0, 1234, 4999] {
            let mut damaged = data.clone();
            damaged[at] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            let err = read_checked(&path).unwrap_err().to_string();
            assert!(
                err.contains("checksum mismatch") && err.contains("x.bpk"),
                "{err}"
            );
        }
        std::fs::remove_file(checksum_path(&path)).unwrap();
        assert!(matches!(
            read_checked(&path),
            Err(IntegrityError::NoChecksum { .. })
        ));
        assert!(
            read_checked(&dir)
                .unwrap_err()
                .to_string()
                .contains("is a directory")
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
