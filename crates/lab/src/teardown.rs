//! `lab down`: stop the supervisor, kill every process living in one of the lab's namespaces (pods, agents),
//! remove the namespaces (which takes every link, route and nft table with them) and the state dir. Works from
//! the names alone, so a lab whose supervisor was SIGKILLed is cleaned just as well. Best effort: every step
//! runs, and all errors are reported together.

use crate::spec::Paths;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};
use weft_netlink::Netns;

/// What `down` removed, and what it could not.
#[derive(Debug, Default)]
pub struct Report {
    pub namespaces: usize,
    pub processes: usize,
    pub errors: Vec<String>,
}

pub fn down(paths: &Paths) -> Report {
    let mut report = Report::default();
    if let Some(pid) = supervisor_pid(paths) {
        // SAFETY: kill(2) with a pid read from our own pid file, checked to be a weft process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        report.processes += 1;
    }
    let prefix = paths.netns_prefix();
    let names: Vec<String> = match Netns::list() {
        Ok(all) => all.into_iter().filter(|n| n.starts_with(&prefix)).collect(),
        Err(e) => {
            report.errors.push(e.to_string());
            Vec::new()
        }
    };
    let inodes: HashSet<(u64, u64)> = names
        .iter()
        .filter_map(|n| std::fs::metadata(format!("/run/netns/{n}")).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    report.processes += kill_inside(&inodes, &mut report.errors);
    for name in &names {
        match Netns::remove(name) {
            Ok(_) => report.namespaces += 1,
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    if let Err(e) = crate::state_dir::remove(&paths.dir()) {
        report.errors.push(format!("removing {}: {e}", paths.dir().display()));
    }
    report
}

/// The supervisor's pid, if its pid file names a live weft process.
pub fn supervisor_pid(paths: &Paths) -> Option<libc::pid_t> {
    let pid: libc::pid_t = std::fs::read_to_string(paths.supervisor_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_ours = cmdline.split(|b| *b == 0).any(|arg| arg == b"supervise");
    is_ours.then_some(pid)
}

/// SIGKILLs every process whose network namespace is one of `inodes`, and waits until they are gone.
fn kill_inside(inodes: &HashSet<(u64, u64)>, errors: &mut Vec<String>) -> usize {
    if inodes.is_empty() {
        return 0;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut killed = HashSet::new();
    loop {
        let inside = pids_inside(inodes);
        if inside.is_empty() {
            return killed.len();
        }
        if Instant::now() > deadline {
            errors.push(format!("processes {inside:?} survived SIGKILL"));
            return killed.len();
        }
        for pid in inside {
            // SAFETY: kill(2) on a process found inside one of the lab's namespaces.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn pids_inside(inodes: &HashSet<(u64, u64)>) -> Vec<libc::pid_t> {
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&(m.dev(), m.ino())))
        })
        .collect()
}
