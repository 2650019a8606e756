//! Crash-safe files on the node: atomic replace, exclusive create and an advisory lock. Everything weft-cni
//! remembers between invocations (IP reservations, journals) is built on these. A file appears whole or not
//! at all when a process dies at any point. There is no fsync, as in the reference plugins: after a power
//! loss every pod is gone anyway and the runtime's GC reconciles what the disk kept.

use crate::spec::{CniError, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Default root of weft-cni's per-network state (overridden by a config's `dataDir`/`stateDir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/weft";

pub fn io_err(what: &str, path: &Path, err: std::io::Error) -> CniError {
    CniError::io(format!("{what} {}", path.display()), err)
}

pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))
}

/// Replaces `path` with `data` so a reader (or a crash) sees the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("cannot write", path, e)
    })
}

/// Creates `path` holding `data` only if it does not exist yet; Ok(false) when it already did.
/// The content is written to a temporary file first and linked into place, so it appears whole or not at all.
pub fn create_exclusive(path: &Path, data: &[u8]) -> Result<bool> {
    let tmp = tmp_path(path);
    let attempt = || -> std::io::Result<bool> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    };
    let result = attempt();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| io_err("cannot create", path, e))
}

/// Removes `path`; a file that is already gone is not an error.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("cannot remove", path, e)),
        _ => Ok(()),
    }
}

/// Reads `path`; Ok(None) when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("cannot read", path, e)),
    }
}

/// Temporary names carry the pid, so concurrent writers never share one; leftovers of a killed process
/// start with '.' and are skipped by every directory walk.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Whether the process that wrote temporary file `name` (see `tmp_path`) still runs.
pub fn writer_alive(name: &str) -> bool {
    let pid = name
        .strip_suffix(".tmp")
        .and_then(|n| n.rsplit('.').next())
        .and_then(|p| p.parse::<i32>().ok());
    match pid {
        // SAFETY: signal 0 only checks that the process exists.
        Some(pid) if pid > 0 => unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM },
        _ => false,
    }
}

/// An exclusive flock(2) held until dropped; the kernel releases it if the process dies.
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(path: &Path) -> Result<Lock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err("cannot open lock", path, e))?;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != ErrorKind::Interrupted {
                return Err(io_err("cannot lock", path, err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_create_wins_once_and_leaves_no_temporaries() {
        let dir = std::env::temp_dir().join(format!("weft-state-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let p = dir.join("10.0.0.5");
        assert!(create_exclusive(&p, b"a").unwrap());
        assert!(!create_exclusive(&p, b"b").unwrap());
        assert_eq!(read(&p).unwrap().unwrap(), b"a");
        write_atomic(&p, b"c").unwrap();
        assert_eq!(read(&p).unwrap().unwrap(), b"c");
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        assert!(writer_alive(&format!(".x.{}.tmp", std::process::id())));
        assert!(!writer_alive(".x.999999999.tmp"));
        assert!(!writer_alive(".x.tmp"));
        fs::remove_dir(&dir).unwrap();
    }
}
