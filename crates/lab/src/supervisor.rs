//! The supervisor: the lab's control plane in one process. It holds the store (`Shared`), serves the Kubernetes
//! API, runs the controllers and one pod runtime per node. Networking is not its business: `weft lab up` applies
//! deploy/weft.yaml (see `install`), whose DaemonSet and Deployment the node runtimes run as any cluster's would.

use crate::error::{Error, Result, io};
use crate::node_fs::NodeFs;
use crate::spec::{LabSpec, Paths};
use crate::store::Store;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weft_model::Snapshot;

/// State shared by the API, the controllers and the pod runtimes.
pub struct Shared {
    pub spec: LabSpec,
    pub paths: Paths,
    store: Mutex<Store>,
    /// A new revision is on disk (readers and `wait_newer` see it).
    changed: Condvar,
    /// A commit ended (writers waiting for theirs look again).
    committed: Condvar,
    stopping: AtomicBool,
    /// Every new revision, for the Kubernetes API's watches (which wait on it asynchronously).
    revisions: tokio::sync::watch::Sender<u64>,
    /// The stdin and terminal ends of running containers, for `attach -i`.
    pub inputs: crate::kubelet::stdio::Inputs,
}

impl Shared {
    pub fn new(spec: LabSpec, store: Store) -> Shared {
        let revision = store.revision();
        Shared {
            paths: Paths::new(&spec.name),
            spec,
            store: Mutex::new(store),
            changed: Condvar::new(),
            committed: Condvar::new(),
            stopping: AtomicBool::new(false),
            revisions: tokio::sync::watch::Sender::new(revision),
            inputs: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking writer leaves the store consistent (every change is one insert), so keep going.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store and commits what it changed to disk (one commit), then wakes every watcher. A
    /// failed commit is logged and leaves the store as it is on disk (see `Store::batch`).
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, saved) = self.batch(f);
        if let Err(e) = saved {
            eprintln!("weft lab: {e}");
        }
        out
    }

    /// `write` for what is acknowledged to a client: Ok only once it is on disk.
    pub fn try_write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        let (out, saved) = self.batch(f);
        saved?;
        out
    }

    /// Runs `f` on the store in memory, then waits until what it changed is on disk: the first writer to find
    /// no commit under way writes every change made so far in one transaction, without the store's lock; the
    /// writers that come meanwhile wait and share the next (group commit), so one fsync serves many writes.
    fn batch<T>(&self, f: impl FnOnce(&mut Store) -> T) -> (T, Result<()>) {
        let mut store = self.lock();
        let out = store.batch(f);
        // Also a writer that changed nothing waits for what it saw (an answer such as AlreadyExists must not rest
        // on a change that is not on disk yet); when all is on disk that is no wait at all.
        let (revision, epoch) = (store.revision(), store.epoch());
        loop {
            match store.saved(revision, epoch) {
                Some(true) => return (out, Ok(())),
                Some(false) => {
                    let lost = Error::Invalid(
                        "the store could not write this change to disk (see the supervisor's log)".into(),
                    );
                    return (out, Err(lost));
                }
                None => {}
            }
            let Some(commit) = store.begin_commit() else {
                store = self.committed.wait(store).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            drop(store);
            let written = commit.write();
            store = self.lock();
            let ended = store.end_commit(commit, written);
            self.committed.notify_all();
            match ended {
                Ok(()) => {
                    self.changed.notify_all();
                    self.revisions.send_replace(store.durable());
                }
                Err(e) => eprintln!("weft lab: {e}"),
            }
        }
    }

    /// Sees every new revision of the store.
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revisions.subscribe()
    }

    /// Every change after revision `after` (see `Store::changes_since`).
    pub fn changes_since(&self, after: u64) -> Option<Vec<weft_apiserver::Change>> {
        self.lock().changes_since(after)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.lock().snapshot()
    }

    /// The first snapshot newer than `after`, or the current one when `timeout` passes first.
    pub fn wait_newer(&self, after: u64, timeout: Duration) -> Arc<Snapshot> {
        let deadline = Instant::now() + timeout;
        let mut store = self.lock();
        while store.durable() <= after && !self.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            store = self
                .changed
                .wait_timeout(store, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        store.snapshot()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _guard = self.lock();
        self.changed.notify_all();
    }
}

/// Namespaces every cluster starts with.
const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
/// What every node's /opt/cni/bin has from the start, as the container runtime's package brings it (the
/// runtime attaches every pod's `lo` through it).
const NODE_CNI_TYPES: &[&str] = &["loopback"];

/// The supervisor's main: runs until SIGTERM/SIGINT.
pub fn run(paths: &Paths) -> Result<()> {
    // Hundreds of short-lived threads would otherwise each get a malloc arena that never shrinks.
    // SAFETY: mallopt(3) before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let spec = paths.read_spec()?;
    let mut store = Store::open(paths.store_file())?;
    store.set_service_network(crate::services::ServiceNetwork {
        cidr: spec.service_cidr,
        lb_pool: spec.lb_pool,
    });
    let shared = Arc::new(Shared::new(spec.clone(), store));
    std::fs::write(paths.supervisor_pid(), std::process::id().to_string()).map_err(io("writing the pid file"))?;
    install_cni(paths, &spec)?;
    bootstrap(&shared)?;
    let tokens = start_api(&shared)?;
    publish_root_ca(&shared)?;
    raise_fd_limit();
    let reaper = crate::reaper::Reaper::start().map_err(io("starting the reaper"))?;
    let stop = install_signal_handlers();
    {
        let shared = shared.clone();
        std::thread::spawn(move || controllers(&shared));
    }
    {
        let shared = shared.clone();
        std::thread::spawn(move || cloud(&shared));
    }
    for node in spec.node_plans() {
        let runtime = crate::cni::Runtime {
            node_netns: std::path::PathBuf::from("/run/netns").join(paths.node_netns(&node.name)),
            fs: NodeFs::new(paths, &node.name),
        };
        let kubelet = Arc::new(crate::kubelet::Kubelet::new(
            shared.clone(),
            node,
            runtime,
            reaper.clone(),
            tokens.clone(),
        ));
        std::thread::spawn(move || kubelet.run());
    }
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop();
    Ok(())
}

/// Starts the Kubernetes API on 127.0.0.1 (the port of the last run when it is free, so kubeconfigs stay valid)
/// and on the control-plane address in the wire namespace, then writes the admin's kubeconfig. Answers with the
/// service-account token issuer, which the kubelets share.
fn start_api(shared: &Arc<Shared>) -> Result<Arc<weft_apiserver::tokens::Tokens>> {
    let (spec, paths) = (&shared.spec, &shared.paths);
    let service_ip = spec.kubernetes_service_ip();
    let names =
        weft_apiserver::pki::ServerNames::for_lab(spec.control_plane_ip().into(), service_ip.into(), "cluster.local");
    let pki = weft_apiserver::pki::Pki::load_or_create(&paths.pki_dir(), &spec.name, &names)
        .map_err(|e| Error::Invalid(format!("the lab's certificates: {e}")))?;
    let port_file = paths.dir().join("api-port");
    let last_port: u16 = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    let host = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, last_port))
        .or_else(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)))
        .map_err(io("binding the API on 127.0.0.1"))?;
    let port = host.local_addr().map_err(io("the API's port"))?.port();
    let wire_ns = weft_netlink::Netns::open(&format!("/run/netns/{}", paths.wire_netns()))
        .map_err(crate::error::kernel("opening the wire namespace"))?;
    let wire_addr = (spec.control_plane_ip(), crate::kube_api::CONTROL_PLANE_PORT);
    let wire = wire_ns
        .run(|| {
            std::net::TcpListener::bind(wire_addr).map_err(|e| weft_netlink::Error::Netlink {
                op: format!("binding {}:{}", wire_addr.0, wire_addr.1),
                source: e,
            })
        })
        .map_err(crate::error::kernel("the API on the wire"))?;
    let sa_key = weft_apiserver::pki::service_account_key(&paths.pki_dir())
        .map_err(|e| Error::Invalid(format!("the service-account key: {e}")))?;
    let tokens = Arc::new(weft_apiserver::tokens::Tokens::new(&sa_key).map_err(|e| Error::Invalid(e.to_string()))?);
    let api = weft_apiserver::Api::new(
        Arc::new(crate::kube_api::LabCluster(shared.clone())),
        Some(tokens.clone()),
    );
    weft_apiserver::server::start(vec![host, wire], pki.server_config(), Arc::new(api), 2)
        .map_err(io("starting the API server"))?;
    std::fs::write(&port_file, port.to_string()).map_err(io("writing the API's port"))?;
    let admin = pki.admin();
    write_kubeconfig(
        &paths.kubeconfig(),
        paths,
        &format!("https://127.0.0.1:{port}"),
        &pki,
        admin,
    )?;
    Ok(tokens)
}

/// Writes a standalone kubeconfig for `credential` on the API at `server`.
fn write_kubeconfig(
    path: &std::path::Path,
    paths: &Paths,
    server: &str,
    pki: &weft_apiserver::pki::Pki,
    credential: &weft_apiserver::pki::Credential,
) -> Result<()> {
    let kubeconfig = weft_apiserver::kubeconfig::standalone(
        &paths.context(),
        server,
        pki.ca_pem(),
        &credential.cert_pem,
        &credential.key_pem,
    )
    .map_err(|e| Error::Invalid(e.to_string()))?;
    write_private(path, kubeconfig.as_bytes())
}

/// Writes a file only root may read (it holds the admin's key), atomically.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
}

/// The reaper holds a pidfd per container (and a timerfd per pending restart): allow as many fds as root may.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit(2) on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The controllers' loop: reconcile after every change, looking at what changed since the last reconcile (from
/// scratch again after a write that did not reach the disk: the store went back to what is there).
fn controllers(shared: &Shared) {
    let mut before = Arc::new(Snapshot::default());
    while !shared.stopping() {
        let snap = shared.wait_newer(before.revision, Duration::from_secs(1));
        let changes = crate::controller::reconcile(&before, &snap);
        before = snap;
        if !changes.is_empty()
            && let Err(e) = shared.try_write(|store| {
                crate::controller::apply(store, changes);
                Ok(())
            })
        {
            eprintln!("weft lab: {e}");
            before = Arc::new(Snapshot::default());
            // Back-off: a disk that refuses this write will likely refuse the next.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Marks the routes the lab's cloud puts on the external host (the agents' overlay routes use 247).
pub const CLOUD_ROUTE_PROTOCOL: u8 = 0xF8;

/// The lab's cloud provider: keeps a route on the external host to every LoadBalancer address, via the node
/// `services::lb_routes` picks. Resyncs on every change of the Services or their slices, and every 30 s.
fn cloud(shared: &Shared) {
    // Only nodes on the external host's own subnet can be a route's next hop.
    let nodes: Vec<(String, std::net::Ipv4Addr)> = shared
        .spec
        .node_plans()
        .into_iter()
        .filter(|n| n.subnet == 0)
        .map(|n| (n.name, n.ip))
        .collect();
    let netns = std::path::PathBuf::from("/run/netns").join(shared.paths.external_netns());
    let mut handle: Option<weft_netlink::Handle> = None;
    let mut synced: Option<std::collections::BTreeMap<std::net::Ipv4Addr, std::net::Ipv4Addr>> = None;
    let mut last_sync = Instant::now();
    let mut before = Arc::new(Snapshot::default());
    while !shared.stopping() {
        let snap = shared.wait_newer(before.revision, Duration::from_secs(1));
        let changed = crate::services::lb_routes_changed(&before, &snap);
        before = snap;
        let resync = last_sync.elapsed() >= Duration::from_secs(30);
        if synced.is_some() && !changed && !resync {
            continue;
        }
        let want = crate::services::lb_routes(&before, &nodes);
        if synced.as_ref() == Some(&want) && !resync {
            continue;
        }
        let result = match handle.as_mut() {
            Some(h) => sync_cloud_routes(h, &want),
            None => weft_netlink::Netns::open(&netns.display().to_string())
                .and_then(|ns| ns.handle())
                .map_err(crate::error::kernel("netlink in the external host"))
                .and_then(|mut h| {
                    let out = sync_cloud_routes(&mut h, &want);
                    handle = Some(h);
                    out
                }),
        };
        last_sync = Instant::now();
        match result {
            Ok(()) => synced = Some(want),
            Err(e) => {
                eprintln!("weft lab: load balancer routes: {e}");
                handle = None;
                synced = None;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Makes the external host's cloud routes exactly `want` (address → node), touching no other route.
pub fn sync_cloud_routes(
    h: &mut weft_netlink::Handle,
    want: &std::collections::BTreeMap<std::net::Ipv4Addr, std::net::Ipv4Addr>,
) -> Result<()> {
    use crate::error::kernel;
    use ipnet::{IpNet, Ipv4Net};
    use weft_netlink::Route;
    let have: Vec<Route> = h
        .routes()
        .map_err(kernel("listing the external host's routes"))?
        .into_iter()
        .filter(|r| r.protocol == CLOUD_ROUTE_PROTOCOL)
        .collect();
    for route in &have {
        let keep = match (route.dst, route.gateway) {
            (IpNet::V4(dst), Some(std::net::IpAddr::V4(gw))) => {
                dst.prefix_len() == 32 && want.get(&dst.addr()) == Some(&gw)
            }
            _ => false,
        };
        if !keep {
            h.delete_route(route)
                .map_err(kernel(format!("removing the route to {}", route.dst)))?;
        }
    }
    for (ip, node) in want {
        let dst = IpNet::V4(Ipv4Net::new_assert(*ip, 32));
        if have.iter().any(|r| r.dst == dst && r.gateway == Some((*node).into())) {
            continue;
        }
        let mut route = Route::via(dst, (*node).into());
        route.protocol = CLOUD_ROUTE_PROTOCOL;
        h.replace_route(&route)
            .map_err(kernel(format!("routing {ip} via {node}")))?;
    }
    Ok(())
}

/// Namespaces and one Node per lab node, with its pod CIDR and address, as node registration would make them.
fn bootstrap(shared: &Shared) -> Result<()> {
    let mut objects = Vec::new();
    for ns in BUILTIN_NAMESPACES {
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    for node in shared.spec.node_plans() {
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
            }},
            // Registered NotReady, as kubelet registers a node: its kubelet says Ready once the network is.
            "spec": {
                "podCIDR": node.pod_cidr.to_string(),
                "podCIDRs": [node.pod_cidr.to_string()],
                "taints": [crate::kubelet::node_status::not_ready_taint()],
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": node.ip.to_string()},
                    {"type": "Hostname", "address": node.name},
                ],
                "conditions": [crate::kubelet::node_status::ready_condition(false)],
            },
        }));
    }
    objects.extend(crate::kube_api::kubernetes_service(&shared.spec));
    objects.extend(weft_apiserver::authz::bootstrap_policy());
    shared.try_write(|store| {
        for value in objects {
            let object = weft_model::manifest::from_value(value).map_err(Error::Invalid)?;
            if store.get(&object.key()).is_none() {
                store.create(object)?;
            }
        }
        Ok(())
    })
}

/// The lab's CA as `kube-system/kube-root-ca.crt`, which the root CA publisher (`controller`) copies into every
/// namespace.
fn publish_root_ca(shared: &Shared) -> Result<()> {
    let file = shared.paths.pki_dir().join("ca.crt");
    let ca = std::fs::read_to_string(&file).map_err(io(format!("reading {}", file.display())))?;
    let value = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": crate::controller::ROOT_CA, "namespace": "kube-system"},
        "data": {"ca.crt": ca},
    });
    let object = weft_model::manifest::from_value(value).map_err(Error::Invalid)?;
    // The CA stays the lab's for its life: a resumed lab has it already.
    shared.try_write(|store| match store.get(&object.key()) {
        Some(_) => Ok(()),
        None => store.create(object),
    })
}

/// Every node's root (see `node_fs`) with the loopback plugin in its /opt/cni/bin (weft's own plugin is the
/// DaemonSet's to install); and the weft image's files.
fn install_cni(paths: &Paths, spec: &LabSpec) -> Result<()> {
    crate::kubelet::image::install(paths, spec)?;
    for node in spec.node_plans() {
        let fs = NodeFs::new(paths, &node.name);
        fs.prepare()?;
        for kind in NODE_CNI_TYPES {
            let link = fs.cni_bin_dir().join(kind);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&spec.cni_bin, &link).map_err(io(format!("linking {}", link.display())))?;
        }
    }
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Release);
}

/// SIGTERM and SIGINT set a flag the main loop polls.
fn install_signal_handlers() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    &STOP
}
