//! A lab's state directory (/run/weft/labs/LAB) is a tmpfs of its own, as /run is on a standard host: the
//! thousands of small files a lab writes (each pod's files, logs and CNI reservations, the agents' node settings,
//! the store) never reach a disk, and `lab down` lets go of them with one unmount. Where /run is on an ext4 disk
//! without a journal (some VMs), every new inode there skips the ones freed in the last minutes, so the
//! files of the labs just taken down made each new one dearer. The store's commits survive the supervisor's
//! death (SIGKILL) in a tmpfs as on a disk; a host's reboot ends the lab's namespaces and processes either way.

use crate::error::{Error, Result, io};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Makes `dir` and mounts a tmpfs on it, unless one is there already (a lab resumed over its state).
pub fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    if is_mount_point(dir).map_err(io(format!("looking at {}", dir.display())))? {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("mode=0755")).map_err(|e| Error::Io {
        what: format!("mounting a tmpfs on {}", dir.display()),
        source: e.into(),
    })
}

/// Removes `dir` with everything in it: unmounts its tmpfs (lazily: a process of the lab that is still
/// exiting keeps only its own view), or, for a directory that is not a mount point, removes the files.
/// A missing `dir` is no error.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match is_mount_point(dir) {
        Ok(true) => {
            umount2(dir, MntFlags::MNT_DETACH)?;
            std::fs::remove_dir(dir)
        }
        Ok(false) => std::fs::remove_dir_all(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether something is mounted on `dir` (it lies on another device than its parent).
fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    let own = std::fs::metadata(dir)?.dev();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    Ok(std::fs::metadata(parent)?.dev() != own)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mount); skipped without it.
    #[test]
    fn a_state_dir_is_a_tmpfs_and_goes_with_its_files() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("weft-state-dir-{}", std::process::id()));
        create(&dir).unwrap();
        let removed = (|| {
            assert!(is_mount_point(&dir)?, "a tmpfs is mounted on the state dir");
            let fs = nix::sys::statfs::statfs(&dir).map_err(std::io::Error::from)?;
            assert_eq!(fs.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
            std::fs::create_dir_all(dir.join("pods/a"))?;
            std::fs::write(dir.join("pods/a/hosts"), "x")?;
            create(&dir).map_err(std::io::Error::other)?;
            assert!(dir.join("pods/a/hosts").exists(), "a second create keeps what is there");
            remove(&dir)
        })();
        let left = dir.exists();
        if left {
            let _ = umount2(&dir, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(&dir);
        }
        removed.unwrap();
        assert!(!left, "remove takes the mount point too");
        remove(&dir).expect("removing a missing state dir is no error");
    }

    #[test]
    fn a_plain_directory_is_removed_file_by_file() {
        let dir = std::env::temp_dir().join(format!("weft-state-plain-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pods")).unwrap();
        std::fs::write(dir.join("pods/x"), "x").unwrap();
        assert!(!is_mount_point(&dir).unwrap());
        remove(&dir).unwrap();
        assert!(!dir.exists());
    }
}
