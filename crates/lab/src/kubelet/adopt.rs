//! A kubelet started over a lab whose supervisor was killed: the pods bound to its node still have their network
//! namespace and address, and their processes (reparented to init) still run. A pod that was set up is adopted:
//! its running processes are watched through pidfds, and the ones that are gone are restarted as restartPolicy
//! says. A pod caught half set up is undone, so it starts afresh. Nothing runs twice.

use super::{ContainerRun, FIRST_BACKOFF, Kubelet, PodRun};
use crate::controller::{node_of, pod_key};
use crate::reaper::LOST_EXIT;
use crate::spec::Paths;
use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use weft_model::k8s_openapi;

/// Where the pid of a pod's container is recorded.
pub(super) fn pid_file(paths: &Paths, uid: &str, container: &str) -> PathBuf {
    paths.pod_dir(uid).join(format!("{container}.pid"))
}

impl Kubelet {
    /// Adopts or undoes every pod a previous supervisor started on this node (none in a new lab).
    pub(super) fn adopt(self: &Arc<Self>) {
        let snap = self.shared.snapshot();
        for pod in snap.pods().filter(|p| node_of(p) == Some(self.node.name.as_str())) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if uid.is_empty() || !self.shared.paths.pod_dir(&uid).exists() {
                continue;
            }
            let run = Arc::new(PodRun::new(pod_key(pod), uid.clone()));
            match self.address(pod, &uid) {
                Some(ip) => self.take_over(run, pod, ip),
                None => {
                    self.kill_recorded(pod, &uid);
                    self.detach(&run, pod);
                }
            }
        }
    }

    /// The pod's address, if its setup finished (the pod's files are written last).
    fn address(&self, pod: &Pod, uid: &str) -> Option<String> {
        let paths = &self.shared.paths;
        let dir = paths.pod_dir(uid);
        if !dir.join("hostname").exists() {
            return None;
        }
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return Some(self.node.ip.to_string());
        }
        if !PathBuf::from("/run/netns").join(paths.pod_netns(uid)).exists() {
            return None;
        }
        let cached = std::fs::read(dir.join("cni-result.json")).ok()?;
        crate::cni::result_ip(&serde_json::from_slice(&cached).ok()?)
    }

    /// Takes the pod's processes over, and restarts the containers that are not running but should be.
    fn take_over(self: &Arc<Self>, run: Arc<PodRun>, pod: &Pod, ip: String) {
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        let containers: Vec<ContainerRun> = (pod.spec.iter().flat_map(|s| &s.containers))
            .map(|c| {
                let old = statuses.iter().find(|s| s.name == c.name);
                let last_exit = old
                    .and_then(|s| s.state.as_ref()?.terminated.as_ref())
                    .map(|t| t.exit_code);
                ContainerRun {
                    name: c.name.clone(),
                    pid: crate::pidfile::live(&pid_file(&self.shared.paths, &run.uid, &c.name)),
                    restarts: old.map_or(0, |s| s.restart_count),
                    last_exit,
                    done: last_exit.is_some_and(|code| policy == "Never" || (policy == "OnFailure" && code == 0)),
                    backoff: false,
                    ready: None,
                }
            })
            .collect();
        {
            let mut state = run.lock();
            state.ip = Some(ip);
            state.started = true;
            state.containers = containers.clone();
        }
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.uid.clone(), run.clone());
        if containers.iter().any(|c| c.pid.is_none() && !c.done) {
            self.kill_strays(pod, &run.uid, &containers);
        }
        let pod = Arc::new(pod.clone());
        // The old supervisor may have died between starting a process and reporting it.
        self.report(&run, &pod, Vec::new());
        for (index, container) in containers.iter().enumerate() {
            let (me, run, pod) = (self.clone(), run.clone(), pod.clone());
            match container.pid {
                Some(pid) => self.reaper.adopt(pid, move |code| {
                    me.exited(run, pod, index, code, Instant::now(), FIRST_BACKOFF)
                }),
                None if container.done => {}
                // It ended while no supervisor watched it: how is lost.
                None => me.exited(run, pod, index, LOST_EXIT, Instant::now(), FIRST_BACKOFF),
            }
        }
    }

    /// Before containers are started again: kills the processes in the pod's namespace that no pid file names
    /// and that descend from none that does. The old supervisor, killed while starting a container, may have
    /// left it running unrecorded; a `weft exec` session in the pod goes too. (A host-network pod shares its
    /// node's namespace: nothing is killed there.)
    fn kill_strays(&self, pod: &Pod, uid: &str, containers: &[ContainerRun]) {
        use std::os::unix::fs::MetadataExt;
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return;
        }
        let netns = PathBuf::from("/run/netns").join(self.shared.paths.pod_netns(uid));
        let Ok(meta) = std::fs::metadata(&netns) else { return };
        let recorded: Vec<u32> = containers.iter().filter_map(|c| c.pid).collect();
        let inside = crate::teardown::pids_inside(&[(meta.dev(), meta.ino())].into());
        for pid in inside {
            if !descends_from(pid as u32, &recorded) {
                // SAFETY: kill(2) on a process inside this pod's own network namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// Kills what runs of a pod that is to start afresh.
    fn kill_recorded(&self, pod: &Pod, uid: &str) {
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            crate::pidfile::kill(&pid_file(&self.shared.paths, uid, &c.name));
        }
    }
}

/// Whether `pid` is one of `pids` or a descendant of one (by the parent pids in /proc).
fn descends_from(mut pid: u32, pids: &[u32]) -> bool {
    // Bounded: a pid chain ends at init (1) or at a process that is gone.
    for _ in 0..64 {
        if pids.contains(&pid) {
            return true;
        }
        let Some(parent) = parent(pid) else { return false };
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold ')'): state, then the parent pid.
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
