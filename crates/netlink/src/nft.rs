//! nftables transactions through the `nft` binary: a whole script is applied atomically or not at all.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The last `nft` processes this process ran, so a watcher of nftables notifications can tell its own
/// transactions (a notification names the committing process) from everyone else's.
static SPAWNED: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());
const SPAWNED_KEPT: usize = 64;

/// Whether `pid` is one of the last `nft` processes this process ran.
pub fn spawned_here(pid: u32) -> bool {
    SPAWNED.lock().is_ok_and(|pids| pids.contains(&pid))
}

/// Applies `script` as one transaction (`nft -f -`) in the calling thread's network namespace.
pub fn apply(script: &str) -> Result<()> {
    run(&["-f", "-"], script).map(drop)
}

/// Runs `nft ARGS` with `stdin` and returns its stdout (e.g. `-j list table inet weft`).
pub fn run(args: &[&str], stdin: &str) -> Result<String> {
    let failed = |msg: String| Error::Command {
        program: "nft".into(),
        msg,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run nft (is the nftables package installed?): {e}")))?;
    if let Ok(mut pids) = SPAWNED.lock() {
        if pids.len() == SPAWNED_KEPT {
            pids.pop_front();
        }
        pids.push_back(child.id());
    }
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| failed(format!("writing the script: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}
