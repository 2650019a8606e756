//! Replacing a file all at once: a reader (kubectl, a restarting lab) sees the old contents or the new, never a
//! half-written file, and a key never exists on disk with a wider mode than asked for.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::unistd::{Gid, Uid, fchown};

/// Writes `contents` to a temporary file beside `path` with `mode` (and `owner`, when given), syncs it and renames
/// it over `path`.
pub(crate) fn write(path: &Path, contents: &[u8], mode: u32, owner: Option<(Uid, Gid)>) -> io::Result<()> {
    // Unique per process and call, so two threads writing siblings never share a temporary file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);

    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have narrowed the creation mode; set exactly what was asked.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
