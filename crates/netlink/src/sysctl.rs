//! sysctls under /proc/sys. Network sysctls belong to the namespace of the thread that opens the file, so
//! call these from a thread inside the target namespace (see `netns::run_in`).

use crate::error::{Error, Result};
use std::fs;

/// `key` is slash-separated (`net/ipv4/conf/eth0.100/forwarding`) because interface names may hold dots.
fn path(key: &str) -> String {
    format!("/proc/sys/{key}")
}

/// Sets `key` (e.g. `net/ipv4/ip_forward`) unless it already has `value`, so read-only /proc/sys
/// setups that are already right do not fail.
pub fn set(key: &str, value: &str) -> Result<()> {
    let p = path(key);
    let err = |source| Error::Sysctl {
        key: key.to_string(),
        source,
    };
    if fs::read_to_string(&p).map_err(err)?.trim() == value {
        return Ok(());
    }
    fs::write(&p, value).map_err(err)
}

pub fn get(key: &str) -> Result<String> {
    fs::read_to_string(path(key))
        .map(|v| v.trim().to_string())
        .map_err(|source| Error::Sysctl {
            key: key.to_string(),
            source,
        })
}
