//! The pod runtime of one node (the kubelet's role): for every pod bound to the node it makes a network
//! namespace, attaches it through the node's CNI config, writes the pod's resolv.conf/hosts/hostname and
//! volumes, runs its init containers to completion in order, then the containers' processes inside it, probes
//! them (`probe`), restarts them per `restartPolicy`, reports status, and on deletion stops the processes
//! (SIGTERM, then SIGKILL after the grace period), calls CNI DEL and removes the namespace. Until the node has a
//! network config (`node_status`), only host-network pods start; the others wait, as on a node without its CNI.
//! Containers run as root with every capability whatever their securityContext says (`privileged`,
//! `capabilities`): the lab has no users or capability sets of its own to give them.

use crate::cni::{self, Attachment};
use crate::error::{Error, Result, io};
use crate::events::{Note, reference};
use crate::reaper::Reaper;
use crate::sandbox::{self, Env, Sandbox};
use crate::spec::NodePlan;
use crate::store::now;
use crate::supervisor::Shared;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    ObjectReference, Pod, PodCondition, PodIP, PodStatus,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weft_model::k8s_openapi;
use weft_model::{Key, Object};
use weft_netlink::Netns;

mod adopt;
mod agent_sync;
pub mod env;
pub mod image;
pub mod node_status;
pub mod probe;
pub mod stdio;
pub mod tokens;
pub mod volumes;

/// Cluster DNS as kubelet's `--cluster-domain` (served from the DNS issue on); `--cluster-dns` is the 10th
/// address of the service CIDR (`LabSpec::cluster_dns`, 10.96.0.10 by default), as kubeadm sets it.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Pods started at once per node; more would only queue on the CNI plugin's locks.
const PARALLEL_STARTS: usize = 4;
/// The wait before a container's first restart; it doubles on each quick exit.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// `source.component` of the Events a kubelet records.
const COMPONENT: &str = "kubelet";
/// How often the node's net.d is looked at (a node turns Ready this long at most after its CNI config is in
/// place, and `lab up` applies the user's manifests once every node is Ready).
const NETWORK_POLL: Duration = Duration::from_millis(50);
/// How often the pods' ServiceAccount tokens are looked at; the shortest lives 600 s and is renewed at 480 s.
const TOKEN_CHECK: Duration = Duration::from_secs(15);

pub struct Kubelet {
    shared: Arc<Shared>,
    node: NodePlan,
    node_netns: PathBuf,
    runtime: cni::Runtime,
    /// Whether the node's runtime has a network config (see `watch_network`).
    network_ready: AtomicBool,
    pods: Mutex<HashMap<String, Arc<PodRun>>>,
    /// Pods waiting for one of the node's `PARALLEL_STARTS` start threads.
    starts: Mutex<VecDeque<(Arc<PodRun>, Pod)>>,
    queued: Condvar,
    /// Pods set up, waiting for the node's agent to sync them before their processes start.
    agent_waits: agent_sync::AgentWaits<(Arc<PodRun>, Pod)>,
    reaper: Arc<Reaper>,
    /// Issues the pods' ServiceAccount tokens.
    tokens: Arc<weft_apiserver::tokens::Tokens>,
}

/// One pod's processes and what the runtime knows about them.
struct PodRun {
    key: Key,
    uid: String,
    stop: AtomicBool,
    wake: Condvar,
    state: Mutex<RunState>,
}

#[derive(Default)]
struct RunState {
    ip: Option<String>,
    started: bool,
    init: Vec<ContainerRun>,
    containers: Vec<ContainerRun>,
    failed: Option<String>,
    /// Sandbox setups that failed so far (each retried after a longer wait).
    attempts: u32,
}

#[derive(Clone, Default)]
struct ContainerRun {
    name: String,
    pid: Option<u32>,
    restarts: i32,
    /// Exit code of the last run, when it ended.
    last_exit: Option<i32>,
    /// No more restarts (restartPolicy says so).
    done: bool,
    backoff: bool,
    /// The readiness probe's verdict; None without one (ready while running).
    ready: Option<bool>,
}

impl Kubelet {
    pub fn new(
        shared: Arc<Shared>,
        node: NodePlan,
        runtime: cni::Runtime,
        reaper: Arc<Reaper>,
        tokens: Arc<weft_apiserver::tokens::Tokens>,
    ) -> Kubelet {
        let paths = shared.paths.clone();
        Kubelet {
            node_netns: PathBuf::from("/run/netns").join(paths.node_netns(&node.name)),
            network_ready: AtomicBool::new(false),
            shared,
            node,
            runtime,
            pods: Mutex::new(HashMap::new()),
            starts: Mutex::new(VecDeque::new()),
            queued: Condvar::new(),
            agent_waits: Default::default(),
            reaper,
            tokens,
        }
    }

    /// Reconciles the node's pods with the store until the supervisor stops.
    pub fn run(self: Arc<Self>) {
        self.network_ready.store(self.network_config(), Ordering::Release);
        self.adopt();
        for _ in 0..PARALLEL_STARTS {
            let me = self.clone();
            spawn_small(move || me.starter());
        }
        {
            let me = self.clone();
            std::thread::spawn(move || me.watch_network());
        }
        {
            let me = self.clone();
            spawn_small(move || me.watch_agent());
        }
        {
            let me = self.clone();
            spawn_small(move || me.rotate_tokens());
        }
        let mut seen = 0;
        // Pods told (by an Event) that they wait for the network.
        let mut waiting: HashSet<String> = HashSet::new();
        while !self.shared.stopping() {
            let snap = self.shared.wait_newer(seen, Duration::from_secs(1));
            seen = snap.revision;
            let network_ready = self.network_ready.load(Ordering::Acquire);
            let mine: Vec<&Pod> = snap
                .pods()
                .filter(|p| crate::controller::node_of(p) == Some(self.node.name.as_str()))
                .collect();
            waiting.retain(|uid| mine.iter().any(|p| p.metadata.uid.as_ref() == Some(uid)));
            let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            for pod in &mine {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let deleting = pod.metadata.deletion_timestamp.is_some();
                match pods.get(&uid) {
                    None if !deleting && !network_ready && !host_network(pod) => {
                        if waiting.insert(uid) {
                            self.network_not_ready(pod);
                        }
                    }
                    None if !deleting => {
                        let run = Arc::new(PodRun::new(crate::controller::pod_key(pod), uid.clone()));
                        pods.insert(uid, run.clone());
                        self.queue(run, (*pod).clone());
                    }
                    None => {
                        // Deleted before it ever started here: nothing runs, so it can go.
                        let key = crate::controller::pod_key(pod);
                        self.shared.write(|s| s.remove(&key));
                    }
                    Some(run) if deleting && !run.stop.swap(true, Ordering::AcqRel) => {
                        let (me, run, pod) = (self.clone(), run.clone(), (*pod).clone());
                        spawn_small(move || me.stop(run, &pod));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Queues a pod for the start threads.
    fn queue(&self, run: Arc<PodRun>, pod: Pod) {
        let mut queue = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        queue.push_back((run, pod));
        self.queued.notify_one();
    }

    /// Starts queued pods until the supervisor stops.
    fn starter(self: Arc<Self>) {
        while !self.shared.stopping() {
            let mut queue = self.starts.lock().unwrap_or_else(|e| e.into_inner());
            let Some((run, pod)) = queue.pop_front() else {
                drop(self.queued.wait_timeout(queue, Duration::from_secs(1)));
                continue;
            };
            drop(queue);
            self.clone().start(run, pod);
        }
    }

    /// Runs the pods the agent has synced (or waited for too long), each on a thread of its own (its init
    /// containers are waited for; the containers' processes start at once), until the supervisor stops: the
    /// start threads are busy with the next sandboxes.
    fn watch_agent(self: Arc<Self>) {
        while !self.shared.stopping() {
            for released in self.agent_waits.next(Duration::from_secs(1)) {
                let (run, pod) = released.item;
                if released.late {
                    eprintln!(
                        "weft lab: {}: the agent has not synced {}; starting it anyway",
                        self.node.name, run.key
                    );
                }
                let me = self.clone();
                spawn_small(move || me.run_pod(run, pod));
            }
        }
    }

    fn start(self: Arc<Self>, run: Arc<PodRun>, pod: Pod) {
        if run.stop.load(Ordering::Acquire) {
            return;
        }
        let outcome = self.setup(&run, &pod);
        if let Err(e) = outcome {
            let attempts = {
                let mut state = run.lock();
                state.failed = Some(e.to_string());
                state.attempts += 1;
                state.attempts
            };
            let note = Note::warning(
                reference("v1", "Pod", &pod.metadata),
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {e}"),
                COMPONENT,
            );
            self.report(&run, &pod, vec![note.on(&self.node.name)]);
            // Undone and tried again later, as kubelet retries a pod's sandbox.
            self.detach(&run, &pod);
            let backoff = (FIRST_BACKOFF * 2u32.pow(attempts.min(5))).min(Duration::from_secs(10));
            let me = self.clone();
            self.reaper.after(backoff, move || {
                if !run.stop.load(Ordering::Acquire) {
                    me.queue(run, pod);
                }
            });
            return;
        }
        run.lock().failed = None;
        // The pod's address is now in the store; its processes start once the agent has put the pod under its
        // NetworkPolicy rules, so a new pod is never reachable (or reaching out) unpoliced. Meanwhile this thread
        // sets up the next pod's sandbox. A network without `nodeConfig` has no agent to wait for.
        let revision = self.report(&run, &pod, Vec::new());
        let agent = self.node_config_file().map(|f| f.with_file_name("agent-revision"));
        match agent {
            Some(file) if !host_network(&pod) => self.agent_waits.add(file, revision, (run, pod)),
            _ => self.run_pod(run, pod),
        }
    }

    /// Runs the pod's init containers, then starts its containers.
    fn run_pod(self: Arc<Self>, run: Arc<PodRun>, pod: Pod) {
        if run.stop.load(Ordering::Acquire) {
            return;
        }
        let runs = |list: &[Container]| -> Vec<ContainerRun> {
            list.iter()
                .map(|c| ContainerRun {
                    name: c.name.clone(),
                    ..Default::default()
                })
                .collect()
        };
        let spec = pod.spec.clone().unwrap_or_default();
        {
            let mut state = run.lock();
            state.init = runs(spec.init_containers.as_deref().unwrap_or_default());
            state.containers = runs(&spec.containers);
        }
        if !self.run_init(&run, &pod) {
            return;
        }
        let pod = Arc::new(pod);
        for index in 0..spec.containers.len() {
            self.clone().launch(run.clone(), pod.clone(), index, FIRST_BACKOFF);
        }
    }

    /// Runs the init containers in order, each to success (restarted after a back-off when it fails, unless
    /// `restartPolicy` is Never: then the pod fails). False when the containers are not to start.
    fn run_init(&self, run: &PodRun, pod: &Pod) -> bool {
        let inits = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default();
        let never = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
        for (index, container) in inits.iter().enumerate() {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let spawned = {
                    let mut state = run.lock();
                    if run.stop.load(Ordering::Acquire) {
                        return false;
                    }
                    let spawned = self.spawn(run, pod, container, state.ip.as_deref().unwrap_or_default());
                    if let (Ok(child), Some(c)) = (&spawned, state.init.get_mut(index)) {
                        c.pid = Some(child.id());
                        c.backoff = false;
                    }
                    spawned
                };
                let code = match spawned {
                    Ok(mut child) => {
                        let at = container_reference_in(pod, "initContainers", &container.name);
                        let note = Note::normal(
                            at,
                            "Started",
                            format!("Started container {}", container.name),
                            COMPONENT,
                        );
                        self.report(run, pod, vec![note.on(&self.node.name)]);
                        let code = child.wait().map_or(128, |s| exit_code(&s));
                        self.shared.inputs.remove(&run.uid, &container.name);
                        code
                    }
                    Err(e) => {
                        self.log_failure(run, &container.name, &e);
                        128
                    }
                };
                let restart = code != 0 && !never && !run.stop.load(Ordering::Acquire);
                run.with_init(index, |c| {
                    c.pid = None;
                    c.last_exit = Some(code);
                    c.done = code == 0 || !restart;
                    c.backoff = restart;
                    c.restarts += i32::from(restart);
                });
                self.report(run, pod, Vec::new());
                if code == 0 {
                    break;
                }
                if !restart {
                    // The pod failed (restartPolicy Never) or is being stopped: its containers never start.
                    let mut state = run.lock();
                    for c in &mut state.containers {
                        c.done = true;
                    }
                    drop(state);
                    self.report(run, pod, Vec::new());
                    return false;
                }
                run.pause(backoff, |_| true);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        true
    }

    /// Whether the node's runtime has a network config.
    fn network_config(&self) -> bool {
        matches!(self.runtime.network(), Ok(Some(_)))
    }

    /// Keeps the node's Ready condition and `network_ready` in line with its network config (polled: a file
    /// dropped into net.d is seen within `NETWORK_POLL`).
    fn watch_network(self: Arc<Self>) {
        let mut complained = false;
        while !self.shared.stopping() {
            let ready = match self.runtime.network() {
                Ok(network) => network.is_some(),
                Err(e) => {
                    if !complained {
                        eprintln!("weft lab: {}: {e}", self.node.name);
                    }
                    complained = true;
                    false
                }
            };
            complained &= !ready;
            self.network_ready.store(ready, Ordering::Release);
            let key = Key::new("Node", None, &self.node.name);
            let stale = match self.shared.snapshot().get(&key) {
                Some(Object::Node(node)) => !node_status::says(node, ready),
                _ => false,
            };
            if stale {
                self.shared.write(|s| node_status::set(s, &self.node.name, ready));
            }
            std::thread::sleep(NETWORK_POLL);
        }
    }

    /// Re-issues the started pods' ServiceAccount tokens before they expire (`tokens::rotate`), until the
    /// supervisor stops.
    fn rotate_tokens(self: Arc<Self>) {
        while !self.shared.stopping() {
            std::thread::sleep(TOKEN_CHECK);
            let runs: Vec<Arc<PodRun>> = self
                .pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            let snap = self.shared.snapshot();
            for run in runs.iter().filter(|r| r.lock().started) {
                let Some(Object::Pod(pod)) = snap.get(&run.key) else {
                    continue;
                };
                if pod.metadata.uid.as_deref() != Some(run.uid.as_str()) {
                    continue;
                }
                let dir = self.shared.paths.pod_dir(&run.uid);
                let files = tokens::files(pod, &dir, &dir.join(sandbox::SERVICE_ACCOUNT_DIR));
                let issue = |audience: Option<&str>, seconds: Option<i64>| self.token(pod, audience, seconds);
                let now = weft_apiserver::tokens::unix_now();
                if let Err(e) = tokens::rotate(&files, &self.tokens, now, &issue) {
                    eprintln!("weft lab: {}: rotating the tokens of {}: {e}", self.node.name, run.key);
                }
            }
        }
    }

    /// Says (once) why a pod does not start: the pod waits in ContainerCreating with kubelet's Event.
    fn network_not_ready(&self, pod: &Pod) {
        let key = crate::controller::pod_key(pod);
        let uid = pod.metadata.uid.clone();
        let statuses: Vec<ContainerStatus> = (pod.spec.iter().flat_map(|s| &s.containers))
            .map(|c| {
                container_status(&ContainerRun {
                    name: c.name.clone(),
                    ..Default::default()
                })
            })
            .collect();
        let note = Note::warning(
            reference("v1", "Pod", &pod.metadata),
            "NetworkNotReady",
            format!("network is not ready: {}", cni::NOT_READY),
            COMPONENT,
        )
        .on(&self.node.name);
        self.shared.write(|s| {
            crate::events::record(s, note);
            s.update(&key, |o| {
                if let Object::Pod(p) = o
                    && p.metadata.uid == uid
                {
                    let status = p.status.get_or_insert_default();
                    status.phase = Some("Pending".into());
                    status.host_ip = Some(self.node.ip.to_string());
                    status.container_statuses = Some(statuses);
                }
            });
        });
    }

    /// Namespace, CNI ADD and the pod's files.
    fn setup(&self, run: &PodRun, pod: &Pod) -> Result<()> {
        let paths = &self.shared.paths;
        let dir = paths.pod_dir(&run.uid);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let host_network = spec.host_network == Some(true);
        let ip = if host_network {
            self.node.ip.to_string()
        } else {
            let netns_name = paths.pod_netns(&run.uid);
            Netns::create(&netns_name).map_err(crate::error::kernel(format!("creating the netns of {name}")))?;
            let netns = PathBuf::from("/run/netns").join(&netns_name);
            self.wait_for_node_config();
            let result = self.runtime.add(&attachment(run, pod, &netns))?;
            let cached = serde_json::to_vec(&result).map_err(|e| Error::Invalid(e.to_string()))?;
            std::fs::write(dir.join("cni-result.json"), cached).map_err(io("caching the CNI result"))?;
            cni::result_ip(&result).ok_or_else(|| Error::Invalid(format!("CNI gave {name} no IPv4 address")))?
        };
        let hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
        let fqdn = spec
            .subdomain
            .as_ref()
            .map(|sub| format!("{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}"));
        // kubelet's dnsPolicy: ClusterFirst (the default) uses cluster DNS, except for host-network pods unless
        // they ask for ClusterFirstWithHostNet; Default uses the node's resolvers (cluster DNS itself needs that):
        // its own /etc/resolv.conf (see `NodeFs::prepare`).
        let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
        let node_resolvers = policy == "Default" || (host_network && policy != "ClusterFirstWithHostNet");
        let resolv = if node_resolvers {
            std::fs::read_to_string(self.runtime.fs.resolv_conf()).unwrap_or_default()
        } else {
            sandbox::resolv_conf(&self.shared.spec.cluster_dns().to_string(), &ns, CLUSTER_DOMAIN)
        };
        let files = [
            ("resolv.conf", resolv),
            ("hosts", sandbox::hosts_file(Some(&ip), &hostname, fqdn.as_deref())),
            ("hostname", format!("{hostname}\n")),
        ];
        for (file, text) in files {
            std::fs::write(dir.join(file), text).map_err(io(format!("writing the pod's {file}")))?;
        }
        let snap = self.shared.snapshot();
        if automount(pod, &snap) {
            self.service_account_files(pod, &dir.join(sandbox::SERVICE_ACCOUNT_DIR))?;
        }
        let facts = self.facts(pod, &ip, &snap);
        let issue = |audience: Option<&str>, seconds: Option<i64>| self.token(pod, audience, seconds);
        volumes::prepare(&facts, &self.runtime.fs, &dir, &issue).map_err(Error::Invalid)?;
        let mut state = run.lock();
        state.ip = Some(ip);
        state.started = true;
        Ok(())
    }

    /// The pod's ServiceAccount files: a token bound to the pod, the cluster's CA and the namespace. The
    /// ServiceAccount may not exist yet in a namespace created a moment ago (its controller makes `default`).
    fn service_account_files(&self, pod: &Pod, dir: &std::path::Path) -> Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let token = self
            .token(pod, None, Some(tokens::MOUNT_EXPIRATION))
            .map_err(Error::Invalid)?;
        let ca = self.shared.paths.pki_dir().join("ca.crt");
        let ca = std::fs::read(&ca).map_err(io(format!("reading {}", ca.display())))?;
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        for (file, bytes) in [
            ("token", token.into_bytes()),
            ("ca.crt", ca),
            ("namespace", ns.into_bytes()),
        ] {
            std::fs::write(dir.join(file), bytes).map_err(io(format!("writing the pod's {file}")))?;
        }
        Ok(())
    }

    /// A token of the pod's ServiceAccount bound to the pod, for `audience` (None: the API's) and `seconds`
    /// (None: the API's default hour); `tokens::rotate` re-issues it before it expires. The ServiceAccount may not
    /// exist yet in a namespace created a moment ago (its controller makes `default`): that is waited for.
    fn token(&self, pod: &Pod, audience: Option<&str>, seconds: Option<i64>) -> std::result::Result<String, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = service_account_name(pod);
        let key = Key::new("ServiceAccount", Some(&ns), &name);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut snap = self.shared.snapshot();
        let sa_uid = loop {
            if let Some(sa) = snap.get(&key) {
                break sa.meta().uid.clone().unwrap_or_default();
            }
            if Instant::now() >= deadline || self.shared.stopping() {
                return Err(format!("error looking up service account {ns}/{name}: not found"));
            }
            snap = self.shared.wait_newer(snap.revision, Duration::from_millis(200));
        };
        use weft_apiserver::tokens::{Claims, DEFAULT_EXPIRATION, Ref, api_audiences, unix_now};
        let sa = Ref { name, uid: sa_uid };
        let bound = Ref {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let audiences = audience.map_or_else(api_audiences, |a| vec![a.to_string()]);
        let seconds = seconds.unwrap_or(DEFAULT_EXPIRATION);
        let claims = Claims::new(&ns, sa, Some(bound), audiences, unix_now(), seconds);
        self.tokens.issue(&claims).map_err(|e| e.to_string())
    }

    /// What the pod's variables and downward API volumes are made of.
    fn facts<'a>(&'a self, pod: &'a Pod, ip: &'a str, snap: &'a weft_model::Snapshot) -> env::Facts<'a> {
        env::Facts::new(pod, &self.node, ip, &self.shared.spec, snap)
    }

    /// Where container `c` runs: the pod's namespaces (the node's network for a host-network pod), its image's
    /// files and its volumes.
    fn sandbox(&self, run: &PodRun, pod: &Pod, c: &Container) -> Result<Sandbox> {
        let spec = pod.spec.as_ref();
        let host_network = host_network(pod);
        let paths = &self.shared.paths;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let dir = paths.pod_dir(&run.uid);
        let mut binds = image::binds(paths, c.image.as_deref());
        binds.extend(volumes::binds(pod, c, &self.runtime.fs, &dir).map_err(Error::Invalid)?);
        let service_account = Some(dir.join(sandbox::SERVICE_ACCOUNT_DIR))
            .filter(|d| d.is_dir() && !volumes::mounts_at(c, sandbox::SERVICE_ACCOUNT_MOUNT));
        Ok(Sandbox {
            netns: if host_network {
                self.node_netns.clone()
            } else {
                PathBuf::from("/run/netns").join(paths.pod_netns(&run.uid))
            },
            files: (!host_network).then(|| dir.clone()),
            hostname: (!host_network).then(|| spec.and_then(|s| s.hostname.clone()).unwrap_or(name)),
            service_account,
            binds,
        })
    }

    /// Starts container `index` of the pod; the reaper restarts it as `restartPolicy` says when it exits,
    /// after `backoff`.
    fn launch(self: Arc<Self>, run: Arc<PodRun>, pod: Arc<Pod>, index: usize, backoff: Duration) {
        let Some(container) = pod.spec.as_ref().and_then(|s| s.containers.get(index)) else {
            return;
        };
        let began = Instant::now();
        // Under the pod's lock: `stop` then either sees the new process or it is not started.
        let spawned = {
            let mut state = run.lock();
            if run.stop.load(Ordering::Acquire) {
                return;
            }
            let spawned = self.spawn(&run, &pod, container, state.ip.as_deref().unwrap_or_default());
            if let (Ok(child), Some(c)) = (&spawned, state.containers.get_mut(index)) {
                c.pid = Some(child.id());
                c.backoff = false;
                c.ready = container.readiness_probe.as_ref().map(|_| false);
                let file = adopt::pid_file(&self.shared.paths, &run.uid, &c.name);
                if let Err(e) = crate::pidfile::write(&file, child.id()) {
                    eprintln!("weft lab: writing {}: {e}", file.display());
                }
            }
            spawned
        };
        run.wake.notify_all();
        match spawned {
            Ok(child) => {
                let image = container.image.as_deref().unwrap_or_default();
                let at = container_reference(&pod, &container.name);
                let notes = [
                    (
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    ),
                    ("Created", format!("Created container {}", container.name)),
                    ("Started", format!("Started container {}", container.name)),
                ];
                let notes = notes
                    .into_iter()
                    .map(|(reason, message)| Note::normal(at.clone(), reason, message, COMPONENT).on(&self.node.name))
                    .collect();
                self.report(&run, &pod, notes);
                let pid = child.id();
                let probes = [(&container.readiness_probe, false), (&container.liveness_probe, true)];
                for (probe, liveness) in probes {
                    if let Some(probe) = probe.clone() {
                        let (me, run, pod) = (self.clone(), run.clone(), pod.clone());
                        spawn_small(move || me.probe(&run, &pod, index, pid, &probe, liveness));
                    }
                }
                let reaper = self.reaper.clone();
                reaper.watch(child, move |code| self.exited(run, pod, index, code, began, backoff));
            }
            Err(e) => {
                self.log_failure(&run, &container.name, &e);
                self.exited(run, pod, index, 128, began, backoff);
            }
        }
    }

    /// Probes container `index` (its run with `pid`) until that run ends: a readiness verdict sets whether it is
    /// Ready, a failed liveness verdict kills it (`restartPolicy` then says what follows).
    fn probe(
        &self,
        run: &PodRun,
        pod: &Pod,
        index: usize,
        pid: u32,
        p: &k8s_openapi::api::core::v1::Probe,
        liveness: bool,
    ) {
        let Some(c) = pod.spec.as_ref().and_then(|s| s.containers.get(index)) else {
            return;
        };
        let t = probe::timing(p);
        let alive = |state: &RunState| state.containers.get(index).is_some_and(|c| c.pid == Some(pid));
        let kind = if liveness { "Liveness" } else { "Readiness" };
        let netns = match host_network(pod) {
            true => self.node_netns.clone(),
            false => PathBuf::from("/run/netns").join(self.shared.paths.pod_netns(&run.uid)),
        };
        let ip = run.lock().ip.clone().unwrap_or_default();
        let mut verdict = probe::Verdict::new(liveness);
        let mut wait = t.initial_delay;
        // Readiness is probed until the container exits, also while the pod terminates (kubelet does since
        // 1.25): a server that drains (DNS's lameduck) turns unready, so its endpoint stops `serving` and the
        // proxies let go of its flows while it still answers. Liveness stops with the pod, as a container
        // shutting down must not be killed for it.
        let pause = |wait| match liveness {
            true => run.pause(wait, alive),
            false => run.pause_through_stop(wait, alive),
        };
        let (mut ever_ready, mut early_failures) = (false, 0);
        while pause(wait) {
            let passed = match probe::network(p, c, &netns, &ip, t.timeout) {
                Some(passed) => passed,
                None => self.exec_probe(run, pod, c, p, t.timeout),
            };
            ever_ready |= verdict.ok && !liveness;
            wait = match liveness || ever_ready || passed {
                true => t.period,
                false => {
                    early_failures += 1;
                    probe::early_readiness_wait(&t, early_failures - 1)
                }
            };
            if !verdict.add(passed, &t) {
                continue;
            }
            let at = container_reference(pod, &c.name);
            let mut notes = Vec::new();
            if !verdict.ok {
                let note = Note::warning(at.clone(), "Unhealthy", format!("{kind} probe failed"), COMPONENT);
                notes.push(note.on(&self.node.name));
            }
            if liveness {
                let message = format!("Container {} failed liveness probe, will be restarted", c.name);
                notes.push(Note::normal(at, "Killing", message, COMPONENT).on(&self.node.name));
                self.report(run, pod, notes);
                signal(&[pid], libc::SIGKILL);
                return;
            }
            run.with_container(index, |c| c.ready = Some(verdict.ok));
            self.report(run, pod, notes);
        }
    }

    /// One try of an `exec` probe in the container's sandbox: passed when it exits 0 within `timeout`.
    fn exec_probe(
        &self,
        run: &PodRun,
        pod: &Pod,
        c: &Container,
        p: &k8s_openapi::api::core::v1::Probe,
        timeout: Duration,
    ) -> bool {
        let argv = p.exec.as_ref().and_then(|e| e.command.clone()).unwrap_or_default();
        let env = Env::Only(vec![("PATH".into(), sandbox::pod_path(&self.shared.spec.weft_bin))]);
        let spawned = self.sandbox(run, pod, c).and_then(|s| {
            s.spawn(&argv, env, |mut command| {
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(io(format!("starting the probe {}", argv.join(" "))))
            })
        });
        let Ok(mut child) = spawned else { return false };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// Records how container `index` ended and schedules its restart, if any.
    fn exited(
        self: Arc<Self>,
        run: Arc<PodRun>,
        pod: Arc<Pod>,
        index: usize,
        code: i32,
        began: Instant,
        backoff: Duration,
    ) {
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        let restart = match policy {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        } && !run.stop.load(Ordering::Acquire);
        if let Some(c) = pod.spec.as_ref().and_then(|s| s.containers.get(index)) {
            self.shared.inputs.remove(&run.uid, &c.name);
        }
        run.with_container(index, |c| {
            c.pid = None;
            c.last_exit = Some(code);
            c.done = !restart;
            c.backoff = restart;
            if restart {
                c.restarts += 1;
            }
        });
        // A restart after a quick exit is a back-off, as kubelet's CrashLoopBackOff.
        let notes = match pod.spec.as_ref().and_then(|s| s.containers.get(index)) {
            Some(c) if restart && began.elapsed() <= Duration::from_secs(10) => vec![
                Note::warning(
                    container_reference(&pod, &c.name),
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name,
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        run.uid
                    ),
                    COMPONENT,
                )
                .on(&self.node.name),
            ],
            _ => Vec::new(),
        };
        self.report(&run, &pod, notes);
        if !restart {
            return;
        }
        // A container that ran a while starts over with a short backoff; a crash loop backs off to 10 s.
        let backoff = if began.elapsed() > Duration::from_secs(10) {
            FIRST_BACKOFF
        } else {
            backoff
        };
        let next = (backoff * 2).min(Duration::from_secs(10));
        let reaper = self.reaper.clone();
        reaper.after(backoff, move || self.launch(run, pod, index, next));
    }

    /// Why a container could not start, where `kubectl logs` shows it.
    fn log_failure(&self, run: &PodRun, container: &str, e: &Error) {
        let log = self.shared.paths.pod_dir(&run.uid).join(format!("{container}.log"));
        let line = format!("weft: cannot start container: {e}\n");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = appended {
            eprintln!("weft lab: {}: {e}", self.node.name);
        }
    }

    fn spawn(&self, run: &PodRun, pod: &Pod, container: &Container, ip: &str) -> Result<std::process::Child> {
        let snap = self.shared.snapshot();
        let env = env::env(container, &self.facts(pod, ip, &snap)).map_err(Error::Invalid)?;
        let argv = env::expand_argv(&argv(container, &self.shared.spec.weft_bin), &env);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let log_path = self
            .shared
            .paths
            .pod_dir(&run.uid)
            .join(format!("{}.log", container.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let sandbox = self.sandbox(run, pod, container)?;
        let (child, wiring) = sandbox.spawn(&argv, Env::Only(env), |mut command| {
            command.current_dir(container.working_dir.as_deref().unwrap_or("/"));
            let wiring = stdio::Wiring::connect(&mut command, container, log)
                .map_err(io(format!("connecting the streams of container {}", container.name)))?;
            let child = command.spawn().map_err(io(format!(
                "starting container {} of {name} ({})",
                container.name,
                argv.join(" ")
            )))?;
            Ok((child, wiring))
        })?;
        if let Some(input) = wiring.input() {
            let once = container.stdin_once == Some(true);
            self.shared.inputs.insert(&run.uid, &container.name, input, once);
        }
        Ok(child)
    }

    /// Writes the pod's status from what the runtime knows, and `notes` as Events; returns the store's
    /// revision after it.
    fn report(&self, run: &PodRun, pod: &Pod, notes: Vec<Note>) -> u64 {
        let status = run.status(pod, &self.node);
        self.shared.write(|s| {
            for note in notes {
                crate::events::record(s, note);
            }
            s.update(&run.key, |o| {
                if let Object::Pod(p) = o
                    && p.metadata.uid.as_deref() == Some(run.uid.as_str())
                {
                    p.status = Some(status);
                }
            });
            s.revision()
        })
    }

    /// Waits (up to 10 s, then goes on) until the node's agent has written the node settings the network's
    /// `weft` plugin reads: a network config installed before its agent is up (a DaemonSet's init container writes
    /// it first) would fail the pod's CNI ADD and leave it to a retry back-off.
    fn wait_for_node_config(&self) {
        let Some(file) = self.node_config_file() else { return };
        self.wait_for_file("written the node's settings", || file.exists());
    }

    /// Polls `done` every 5 ms for up to 10 s; says so when the agent has not `what` by then.
    fn wait_for_file(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            if Instant::now() > deadline {
                eprintln!(
                    "weft lab: {}: the agent has not {what}; starting anyway",
                    self.node.name
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The `nodeConfig` of the network's `weft` plugin (where the node's agent writes the node's settings, and
    /// records the revision it has synced beside them), as the plugins see the node; None without one.
    fn node_config_file(&self) -> Option<PathBuf> {
        let network = self.runtime.network().ok()??;
        let plugins = network.get("plugins")?.as_array()?;
        let config = plugins.iter().find_map(|p| p.get("nodeConfig")?.as_str())?;
        self.runtime.fs.plugin_path(config)
    }

    /// Stops the pod's processes, detaches it and removes it from the store.
    fn stop(&self, run: Arc<PodRun>, pod: &Pod) {
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .clamp(0, 30) as u64;
        let pids = |run: &PodRun| -> Vec<u32> {
            let state = run.lock();
            state
                .init
                .iter()
                .chain(&state.containers)
                .filter_map(|c| c.pid)
                .collect()
        };
        let running: Vec<String> = run
            .lock()
            .containers
            .iter()
            .filter(|c| c.pid.is_some())
            .map(|c| c.name.clone())
            .collect();
        if !running.is_empty() {
            self.shared.write(|s| {
                for name in running {
                    let note = Note::normal(
                        container_reference(pod, &name),
                        "Killing",
                        format!("Stopping container {name}"),
                        COMPONENT,
                    );
                    crate::events::record(s, note.on(&self.node.name));
                }
            });
        }
        signal(&pids(&run), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(grace);
        while !pids(&run).is_empty() && Instant::now() < deadline {
            let state = run.lock();
            drop(run.wake.wait_timeout(state, Duration::from_millis(20)));
        }
        signal(&pids(&run), libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pids(&run).is_empty() && Instant::now() < deadline {
            let state = run.lock();
            drop(run.wake.wait_timeout(state, Duration::from_millis(20)));
        }
        self.detach(&run, pod);
        self.shared.inputs.remove_pod(&run.uid);
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).remove(&run.uid);
        self.shared.write(|s| {
            if matches!(s.get(&run.key), Some(o) if o.meta().uid.as_deref() == Some(run.uid.as_str())) {
                s.remove(&run.key);
            }
        });
    }

    /// CNI DEL (with the cached ADD result, if ADD finished), the pod's namespace and its files.
    fn detach(&self, run: &PodRun, pod: &Pod) {
        let paths = &self.shared.paths;
        let dir = paths.pod_dir(&run.uid);
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        if !host_network {
            let netns = PathBuf::from("/run/netns").join(paths.pod_netns(&run.uid));
            let cached: Option<Value> = std::fs::read(dir.join("cni-result.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Err(e) = self.runtime.del(&attachment(run, pod, &netns), cached.as_ref()) {
                eprintln!("weft lab: {e}");
            }
            let _ = Netns::remove(&paths.pod_netns(&run.uid));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl PodRun {
    fn new(key: Key, uid: String) -> PodRun {
        PodRun {
            key,
            uid,
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            state: Mutex::new(RunState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_container(&self, index: usize, f: impl FnOnce(&mut ContainerRun)) {
        if let Some(c) = self.lock().containers.get_mut(index) {
            f(c);
        }
        self.wake.notify_all();
    }

    /// Waits `d`, or less when the pod stops or `still` no longer holds; whether the wait ran its course.
    fn pause(&self, d: Duration, still: impl Fn(&RunState) -> bool) -> bool {
        self.wait(d, true, still)
    }

    /// Waits `d`, or less when `still` no longer holds; a stopping pod does not cut it short.
    fn pause_through_stop(&self, d: Duration, still: impl Fn(&RunState) -> bool) -> bool {
        self.wait(d, false, still)
    }

    fn wait(&self, d: Duration, until_stop: bool, still: impl Fn(&RunState) -> bool) -> bool {
        let deadline = Instant::now() + d;
        let mut state = self.lock();
        loop {
            if (until_stop && self.stop.load(Ordering::Acquire)) || !still(&state) {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            state = self.wake.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn with_init(&self, index: usize, f: impl FnOnce(&mut ContainerRun)) {
        if let Some(c) = self.lock().init.get_mut(index) {
            f(c);
        }
        self.wake.notify_all();
    }

    fn status(&self, pod: &Pod, node: &NodePlan) -> PodStatus {
        let state = self.lock();
        let statuses: Vec<ContainerStatus> = state.containers.iter().map(container_status).collect();
        let init_statuses: Vec<ContainerStatus> = state.init.iter().map(container_status).collect();
        let initialized = state.init.iter().all(|c| c.last_exit == Some(0));
        let init_failed = state.init.iter().any(|c| c.done && c.last_exit != Some(0));
        let all_running = !statuses.is_empty() && state.containers.iter().all(ready);
        let all_done = !state.containers.is_empty() && state.containers.iter().all(|c| c.done);
        let phase = if init_failed {
            "Failed"
        } else if state.failed.is_some() || !initialized {
            "Pending"
        } else if all_done {
            if state.containers.iter().all(|c| c.last_exit == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if state.containers.iter().any(|c| c.pid.is_some() || c.restarts > 0) {
            "Running"
        } else {
            "Pending"
        };
        let condition = |type_: &str, ok: bool| PodCondition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            last_transition_time: Some(now()),
            ..Default::default()
        };
        let old = pod.status.clone().unwrap_or_default();
        PodStatus {
            phase: Some(phase.into()),
            pod_ip: state.ip.clone(),
            pod_ips: state.ip.clone().map(|ip| vec![PodIP { ip }]),
            host_ip: Some(node.ip.to_string()),
            start_time: old.start_time.or_else(|| Some(now())),
            conditions: Some(vec![
                condition("PodScheduled", true),
                condition("Initialized", initialized),
                condition("Ready", all_running),
            ]),
            container_statuses: Some(statuses),
            init_container_statuses: Some(init_statuses).filter(|s| !s.is_empty()),
            message: state.failed.clone(),
            reason: state.failed.as_ref().map(|_| "NetworkNotReady".into()),
            // Set by the API at creation.
            qos_class: old.qos_class,
            ..Default::default()
        }
    }
}

fn container_status(c: &ContainerRun) -> ContainerStatus {
    let state = if c.pid.is_some() {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now()),
            }),
            ..Default::default()
        }
    } else if c.backoff {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: None,
            }),
            ..Default::default()
        }
    } else if let Some(code) = c.last_exit {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    } else {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        }
    };
    ContainerStatus {
        name: c.name.clone(),
        ready: ready(c),
        restart_count: c.restarts,
        started: Some(c.pid.is_some()),
        state: Some(state),
        image: String::new(),
        image_id: String::new(),
        ..Default::default()
    }
}

/// A pod's container, as Events name it (`involvedObject.fieldPath`).
fn container_reference(pod: &Pod, container: &str) -> ObjectReference {
    container_reference_in(pod, "containers", container)
}

fn container_reference_in(pod: &Pod, list: &str, container: &str) -> ObjectReference {
    ObjectReference {
        field_path: Some(format!("spec.{list}{{{container}}}")),
        ..reference("v1", "Pod", &pod.metadata)
    }
}

/// Whether a container is Ready: running, and its readiness probe (if any) passed.
fn ready(c: &ContainerRun) -> bool {
    c.pid.is_some() && c.ready.unwrap_or(true)
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// A process's exit code, or 128 + the signal that killed it (as a shell reports it).
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}

fn attachment<'a>(run: &'a PodRun, pod: &'a Pod, netns: &'a std::path::Path) -> Attachment<'a> {
    Attachment {
        container_id: &run.uid,
        netns,
        ifname: "eth0",
        pod_namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod_name: pod.metadata.name.as_deref().unwrap_or_default(),
        pod_uid: &run.uid,
        runtime_config: json!({ "portMappings": port_mappings(pod) }),
    }
}

/// `hostPort`s as the runtime passes them to the `portMappings` capability.
fn port_mappings(pod: &Pod) -> Vec<Value> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port?;
            let mut m = json!({
                "hostPort": host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            });
            if let Some(ip) = &p.host_ip {
                m["hostIP"] = json!(ip);
            }
            Some(m)
        })
        .collect()
}

/// The pid of container `container` of the pod `uid` while it runs, as its node's runtime recorded it (what
/// `ps` would show for a container on a real node).
pub fn container_pid(paths: &crate::spec::Paths, uid: &str, container: &str) -> Option<u32> {
    crate::pidfile::live(&adopt::pid_file(paths, uid, container))
}

/// The command line: `command` + `args` as given, `args` alone as the command, or `weft serve` on the
/// container's ports when the image's own entrypoint would have run (we have no images).
pub fn argv(c: &Container, weft_bin: &std::path::Path) -> Vec<String> {
    let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    if !argv.is_empty() {
        return argv;
    }
    let mut argv = vec![weft_bin.display().to_string(), "serve".into()];
    // An echo server's image (the Gateway API suite's echo-basic and the like) answers as echo-basic does.
    if c.image.as_deref().is_some_and(|image| image.contains("echo")) {
        argv.push("--echo".into());
    }
    for p in c.ports.iter().flatten() {
        let flag = match p.protocol.as_deref() {
            Some("UDP") => "--udp",
            Some("SCTP") => continue,
            _ => "--http",
        };
        argv.extend([flag.to_string(), p.container_port.to_string()]);
    }
    argv
}

/// The pod's ServiceAccount: `serviceAccountName`, else the deprecated `serviceAccount`, else `default`.
pub fn service_account_name(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.service_account_name.clone())
        .or_else(|| spec.and_then(|s| s.service_account.clone()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// Whether the pod gets its token mounted: the pod's `automountServiceAccountToken`, else its ServiceAccount's,
/// else yes.
fn automount(pod: &Pod, snap: &weft_model::Snapshot) -> bool {
    if let Some(choice) = pod.spec.as_ref().and_then(|s| s.automount_service_account_token) {
        return choice;
    }
    let ns = pod.metadata.namespace.as_deref();
    let sa = snap.get(&Key::new("ServiceAccount", ns, &service_account_name(pod)));
    sa.and_then(|sa| {
        sa.to_value()
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
    })
    .unwrap_or(true)
}

/// Start and stop threads: small stacks, since a node may stop hundreds of pods at once.
fn spawn_small(f: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(f);
    if let Err(e) = spawned {
        eprintln!("weft lab: cannot start a thread: {e}");
    }
}

fn signal(pids: &[u32], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill(2) on a pid this runtime started and has not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> Container {
        serde_saphyr_free(yaml)
    }

    fn serde_saphyr_free(json: &str) -> Container {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn argv_follows_command_args_or_serves_the_ports() {
        let bin = std::path::Path::new("/w");
        let c = container(r#"{"name":"c","command":["sh","-c"],"args":["echo hi"]}"#);
        assert_eq!(argv(&c, bin), ["sh", "-c", "echo hi"]);
        let c = container(r#"{"name":"c","args":["sleep","5"]}"#);
        assert_eq!(argv(&c, bin), ["sleep", "5"]);
        let c = container(
            r#"{"name":"c","ports":[{"containerPort":80},{"containerPort":53,"protocol":"UDP"},{"containerPort":9,"protocol":"SCTP"}]}"#,
        );
        assert_eq!(argv(&c, bin), ["/w", "serve", "--http", "80", "--udp", "53"]);
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":80,"hostPort":8080},{"containerPort":81}]}]}}"#,
        )
        .unwrap();
        let m = port_mappings(&pod);
        assert_eq!(
            m,
            vec![json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})]
        );
    }

    #[test]
    fn a_stopping_pod_cuts_short_liveness_waits_but_not_readiness_ones() {
        let run = PodRun::new(Key::new("Pod", Some("default"), "p"), "u".into());
        run.stop.store(true, Ordering::Release);
        assert!(!run.pause(Duration::from_secs(10), |_| true), "cut short at once");
        assert!(
            run.pause_through_stop(Duration::from_millis(1), |_| true),
            "ran its course"
        );
        assert!(
            !run.pause_through_stop(Duration::from_secs(10), |_| false),
            "the container exited"
        );
    }
}
