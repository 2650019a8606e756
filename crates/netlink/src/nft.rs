//! nftables transactions through the `nft` binary: a whole script is applied atomically or not at all.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io::{BufWriter, Write};
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

/// As [`apply`], the script written by `write` straight into `nft`'s input as it is made: a whole table of
/// 10,000s of Services is megabytes of text, not worth holding at once.
pub fn apply_streamed(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    run_with(&["-f", "-"], write).map(drop)
}

/// Runs `nft ARGS` with `stdin` and returns its stdout (e.g. `-j list table inet weft`).
pub fn run(args: &[&str], stdin: &str) -> Result<String> {
    run_with(args, |input| input.write_all(stdin.as_bytes()))
}

/// Runs `nft ARGS` with what `write` writes as its input and returns its stdout.
fn run_with(args: &[&str], write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<String> {
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
    // The input is closed (end of file for nft) when `input` goes, before the wait.
    let written = child.stdin.take().map_or(Ok(()), |input| {
        let mut input = BufWriter::new(input);
        write(&mut input).and_then(|()| input.flush())
    });
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        // nft's own complaint says more than the broken pipe it left a writer with.
        return Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    written.map_err(|e| failed(format!("writing the script: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
