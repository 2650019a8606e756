//! `weft lab up|down|status|exec|capture|supervise`: building, inspecting and removing a lab.

use crate::client::Api;
use crate::objects::{self, read_documents};
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft_lab::spec::{LabSpec, Overlay, Paths};
use weft_lab::{teardown, topology};

#[derive(clap::Subcommand)]
pub enum LabCmd {
    /// Build the lab (nodes, wire, external host, control plane), install weft from deploy/weft.yaml and apply
    /// manifests.
    Up(UpArgs),
    /// Remove everything the lab made: processes, namespaces, state. Safe to repeat.
    Down,
    /// What the lab is made of and whether it runs.
    Status,
    /// Print a standalone kubeconfig for the lab's admin (`weft lab kubeconfig > lab.yaml`).
    Kubeconfig,
    /// Run a command on a node (in its network namespace) or on the external host.
    Exec {
        /// `node-N`, `external`, or `router` (with --subnets 2 or more).
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Capture packets of a node, pod, the wire or the external host as pcap (for tshark or Wireshark).
    Capture(crate::capture::Args),
    /// The control plane process (started by `lab up`).
    #[command(hide = true)]
    Supervise,
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Number of nodes (1-16) [default: 3].
    #[arg(long)]
    nodes: Option<u8>,
    /// How nodes reach each other's pods: host-gw or vxlan [default: host-gw]; the default IPPool's vxlanMode
    /// (Never or Always), which `kubectl apply` changes live.
    #[arg(long)]
    overlay: Option<Overlay>,
    /// Underlay subnets to spread the nodes over (1-4), joined by a router [default: 1]: with 2, IP pools'
    /// CrossSubnet encapsulates between them only, and Never cannot reach across.
    #[arg(long)]
    subnets: Option<u8>,
    /// Pod addresses of the whole cluster; each node gets a /24 of it [default: 10.244.0.0/16].
    #[arg(long)]
    cluster_cidr: Option<ipnet::Ipv4Net>,
    /// ClusterIPs of Services [default: 10.96.0.0/12].
    #[arg(long)]
    service_cidr: Option<ipnet::Ipv4Net>,
    /// Manifests to apply once the lab is up (file, directory or -; may repeat).
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// The weft-cni binary (default: next to this one).
    #[arg(long)]
    cni_bin: Option<PathBuf>,
    /// Nodes and the API only, without deploy/weft.yaml (no agents, no cluster DNS, no CNI config): the nodes
    /// are NotReady until a CNI config appears in their /etc/cni/net.d, as a kubeadm cluster before its CNI.
    #[arg(long)]
    bare: bool,
    /// Run an ACME server (pebble) on the external host, with a DNS server there answering every name with the
    /// first LoadBalancer address; the external host trusts pebble's roots (docs/lab.md).
    #[arg(long)]
    acme: bool,
    /// How long to wait for nodes and pods to be ready.
    #[arg(long, default_value = "120s", value_parser = crate::probe::parse_duration)]
    timeout: Duration,
}

pub fn run(lab: &str, cmd: LabCmd) -> Result<i32> {
    let paths = Paths::new(lab);
    match cmd {
        LabCmd::Up(args) => up(&paths, args).map(|()| 0),
        LabCmd::Down => down(&paths),
        LabCmd::Status => status(&paths).map(|()| 0),
        LabCmd::Kubeconfig => {
            let text = std::fs::read_to_string(paths.kubeconfig())
                .with_context(|| format!("lab {} has no kubeconfig (is it up?)", paths.lab))?;
            print!("{text}");
            Ok(0)
        }
        LabCmd::Exec { target, command } => exec(&paths, &target, &command),
        LabCmd::Capture(args) => crate::capture::run(&paths, args),
        LabCmd::Supervise => weft_lab::supervisor::run(&paths).map(|()| 0).map_err(Into::into),
    }
}

fn up(paths: &Paths, args: UpArgs) -> Result<()> {
    let me = std::env::current_exe().context("finding the weft binary")?;
    let cni_bin = args.cni_bin.clone().unwrap_or_else(|| me.with_file_name("weft-cni"));
    if !cni_bin.is_file() {
        bail!(
            "weft-cni not found at {} (build it, or pass --cni-bin)",
            cni_bin.display()
        );
    }
    // Bad manifests stop us before anything is built (the server checks them again, strictly).
    let manifests = read_documents(&args.files)?;
    for (i, document) in manifests.iter().enumerate() {
        weft_model::manifest::decode(document.clone()).map_err(|(object, message)| {
            let object = object.map(|o| format!(" ({o})")).unwrap_or_default();
            anyhow::anyhow!("document {}{object}: {message}", i + 1)
        })?;
    }
    let started = Instant::now();
    let resumed = match paths.dir().exists() {
        true if teardown::supervisor_pid(paths).is_some() => bail!(
            "lab {} is already up (`weft lab down` first, or pick another name with --lab)",
            paths.lab
        ),
        true => resumable(paths, &args)?,
        false => None,
    };
    let fresh = resumed.is_none();
    let spec = match resumed {
        Some(mut spec) => {
            // The lab keeps its shape; the binaries are the ones this command comes with.
            spec.cni_bin = cni_bin;
            spec.weft_bin = me.clone();
            std::fs::write(paths.spec_file(), serde_json::to_vec_pretty(&spec)?).context("writing the lab spec")?;
            eprintln!(
                "lab {}: its supervisor is gone; resuming over its namespaces with its store",
                spec.name
            );
            start_supervisor(paths, &me).context(format!("resuming lab {}", spec.name))?;
            spec
        }
        None => {
            let spec = new_spec(paths, &args, cni_bin, me.clone());
            spec.validate()?;
            if paths.dir().exists() {
                eprintln!("lab {}: cleaning up what a previous run left", paths.lab);
                report_down(paths, teardown::down(paths))?;
            }
            build(paths, &spec, &me)?;
            spec
        }
    };
    let deadline = Instant::now() + args.timeout;
    merge_kubeconfig(paths, deadline)?;
    let api = Api::connect(paths)?;
    if spec.bare {
        eprintln!(
            "lab {}: {} nodes, NotReady until a CNI config is in their /etc/cni/net.d ({}/NODE/root/etc/cni/net.d)",
            spec.name,
            spec.nodes,
            paths.dir().join("nodes").display()
        );
        // Only what runs without a network can be Ready: nothing is waited for.
        if !manifests.is_empty() {
            objects::apply_values(&api, manifests, "default", objects::Order::Input)?;
        }
    } else {
        // A resumed lab has weft's objects in its store already (as its user may have changed them).
        if fresh {
            objects::apply_values(
                &api,
                weft_lab::install::manifests(&spec)?,
                "default",
                objects::Order::AtOnce,
            )
            .context("installing weft from deploy/weft.yaml")?;
        }
        // Cheap questions (three Nodes, two objects), asked often: each step of the start waits on them.
        wait_for_every(deadline, "the nodes to be Ready", QUICK_POLL, || {
            let nodes = objects::list(&api, "Node", None)?;
            let ready = nodes.iter().filter(|n| objects::ready(n)).count();
            Ok((ready == spec.node_plans().len()).then_some(()))
        })?;
        // The user's pods go in once every node is Ready (its network config is in place), as a cluster's
        // scheduler and kubelets take them: each pod's network waits for its node's agent, not for every agent
        // and DNS to pass readiness (waiting for all nodes first spreads the pods over them).
        let user_pods = !manifests.is_empty();
        if user_pods {
            objects::apply_values(&api, manifests, "default", objects::Order::Input)?;
        }
        wait_for_every(
            deadline,
            "weft's agents and cluster DNS to be ready",
            QUICK_POLL,
            || weft_ready(&api, spec.nodes),
        )?;
        eprintln!(
            "lab {}: {} nodes, their agents and cluster DNS ready in {:.1?}",
            spec.name,
            spec.nodes,
            started.elapsed()
        );
        if user_pods {
            wait_pods_ready(&api, deadline)?;
        }
    }
    if args.acme {
        let pebble = weft_lab::acme::start(paths, &spec).context("starting pebble on the external host")?;
        println!(
            "ACME directory: {} (its CA, for an Issuer's caBundle: {}); on the external host every name resolves \
             to {} and pebble's roots are trusted",
            pebble.directory_url(),
            pebble.ca_file().display(),
            pebble.answer,
        );
    }
    eprintln!("lab {}: up in {:.1?}", spec.name, started.elapsed());
    let lab_flag = if spec.name == weft_lab::spec::DEFAULT_LAB {
        String::new()
    } else {
        format!(" --lab {}", spec.name)
    };
    println!(
        "\nTry (kubectl's context is {context}):\n  kubectl get pods -o wide\n  kubectl get nodes -o wide\n  weft{lab_flag} exec POD -- weft probe http://OTHER-POD-IP\n  weft{lab_flag} lab exec node-1 -- ip route\n  weft{lab_flag} lab exec external -- ping -c1 {}\n  weft{lab_flag} lab down",
        spec.node_plans()[0].ip,
        context = paths.context(),
    );
    Ok(())
}

/// Whether deploy/weft.yaml's workloads are up, as `kubectl rollout status` tells: the `weft-node` DaemonSet
/// Ready on all `nodes` nodes and the `kube-system/weft-dns` Deployment available.
fn weft_ready(api: &Api, nodes: u8) -> Result<Option<()>> {
    let get = |kind: &str, namespace: &str, name: &str| -> Result<serde_json::Value> {
        let resource = weft_model::kind::by_kind(kind).with_context(|| format!("no built-in kind {kind}"))?;
        objects::get_one(api, resource, namespace, name)
    };
    let agents = get("DaemonSet", "weft-system", "weft-node")?;
    let ready = agents
        .pointer("/status/numberReady")
        .and_then(serde_json::Value::as_u64);
    let dns = get("Deployment", "kube-system", "weft-dns")?;
    Ok((ready == Some(u64::from(nodes)) && objects::deployment_complete(&dns)).then_some(()))
}

/// Merges the lab's context `weft-LAB` into the user's kubeconfig and makes it current, as kind does, once the
/// supervisor has written the lab's own.
fn merge_kubeconfig(paths: &Paths, deadline: Instant) -> Result<()> {
    let file = paths.kubeconfig();
    let text = wait_for(deadline, "the lab's API server", || {
        Ok(std::fs::read_to_string(&file).ok())
    })?;
    let value: serde_json::Value = serde_saphyr::from_str(&text).context("reading the lab's kubeconfig")?;
    let field = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let decode = |pointer: &str| -> Result<String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(field(pointer))
            .with_context(|| format!("the lab's kubeconfig: {pointer}"))?;
        String::from_utf8(bytes).with_context(|| format!("the lab's kubeconfig: {pointer}"))
    };
    let target = weft_apiserver::kubeconfig::default_path()?;
    weft_apiserver::kubeconfig::merge_into(
        &target,
        &paths.context(),
        &field("/clusters/0/cluster/server"),
        &decode("/clusters/0/cluster/certificate-authority-data")?,
        &decode("/users/0/user/client-certificate-data")?,
        &decode("/users/0/user/client-key-data")?,
    )?;
    std::fs::write(paths.merged_into(), target.as_os_str().as_encoded_bytes())
        .context("recording where the lab's context went")?;
    eprintln!(
        "lab {}: kubectl context {} in {}",
        paths.lab,
        paths.context(),
        target.display()
    );
    Ok(())
}

/// A lab from the flags, with the defaults for those not given.
fn new_spec(paths: &Paths, args: &UpArgs, cni_bin: PathBuf, weft_bin: PathBuf) -> LabSpec {
    LabSpec {
        name: paths.lab.clone(),
        nodes: args.nodes.unwrap_or(3),
        overlay: args.overlay.unwrap_or(Overlay::HostGw),
        cluster_cidr: args.cluster_cidr.unwrap_or(DEFAULT_CLUSTER_CIDR),
        service_cidr: args.service_cidr.unwrap_or(weft_lab::spec::DEFAULT_SERVICE_CIDR),
        lb_pool: weft_lab::spec::DEFAULT_LB_POOL,
        cni_bin,
        weft_bin,
        bare: args.bare,
        subnets: args.subnets.unwrap_or(1),
    }
}

const DEFAULT_CLUSTER_CIDR: ipnet::Ipv4Net = ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 244, 0, 0), 16);

/// The spec of a lab whose supervisor is gone but whose namespaces and store are all there (it was killed), to
/// start a supervisor over; None when something is missing (the lab is then cleaned and built anew). Flags for
/// the lab's shape must match what it was built with.
fn resumable(paths: &Paths, args: &UpArgs) -> Result<Option<LabSpec>> {
    let Ok(spec) = paths.read_spec() else { return Ok(None) };
    let differs = (args.bare && !spec.bare)
        || args.nodes.is_some_and(|n| n != spec.nodes)
        || args.overlay.is_some_and(|o| o != spec.overlay)
        || args.cluster_cidr.is_some_and(|c| c != spec.cluster_cidr)
        || args.service_cidr.is_some_and(|c| c != spec.service_cidr)
        || args.subnets.is_some_and(|s| s != spec.subnets);
    if differs {
        bail!(
            "lab {} exists with {} nodes, {} overlay, pods in {}, services in {}, and its supervisor is gone: `weft lab up` \
             with those flags (or none) resumes it, `weft lab down` removes it",
            spec.name,
            spec.nodes,
            spec.overlay,
            spec.cluster_cidr,
            spec.service_cidr
        );
    }
    let mut netns: Vec<String> = spec.node_plans().iter().map(|n| paths.node_netns(&n.name)).collect();
    netns.extend([paths.wire_netns(), paths.external_netns()]);
    if spec.subnets > 1 {
        netns.push(paths.router_netns());
    }
    let store = paths.store_file();
    let whole = (store.exists() || store.with_extension("json").exists())
        && netns.iter().all(|n| PathBuf::from("/run/netns").join(n).exists());
    Ok(whole.then_some(spec))
}

/// The namespaces and the supervisor of a new lab (nothing of it left when that fails).
fn build(paths: &Paths, spec: &LabSpec, me: &std::path::Path) -> Result<()> {
    weft_lab::state_dir::create(&paths.dir())?;
    std::fs::write(paths.spec_file(), serde_json::to_vec_pretty(spec)?).context("writing the lab spec")?;
    eprintln!(
        "lab {}: {} nodes, {} overlay, pods in {}, services in {}",
        spec.name, spec.nodes, spec.overlay, spec.cluster_cidr, spec.service_cidr
    );
    if let Err(e) = topology::build(spec)
        .map_err(anyhow::Error::from)
        .and_then(|()| start_supervisor(paths, me))
    {
        let _ = teardown::down(paths);
        return Err(e.context(format!("building lab {}", spec.name)));
    }
    Ok(())
}

fn start_supervisor(paths: &Paths, me: &std::path::Path) -> Result<()> {
    let log = std::fs::File::create(paths.supervisor_log()).context("creating the supervisor log")?;
    let mut command = Command::new(me);
    command
        .args(["lab", "supervise", "--lab", &paths.lab])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid(2) only; the supervisor outlives this command in its own session.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    command.spawn().context("starting the lab supervisor")?;
    // Up once its API answers (the kubeconfig is written as the API starts listening).
    wait_for(Instant::now() + Duration::from_secs(10), "the lab's API server", || {
        Ok(Api::connect(paths)
            .and_then(|api| api.get("/version", "application/json"))
            .is_ok()
            .then_some(()))
    })
}

/// Polls `check` until it yields a value or the deadline passes; the interval grows from 10 to 100 ms so a
/// long wait does not load the supervisor.
pub fn wait_for<T>(deadline: Instant, what: &str, check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    wait_for_every(deadline, what, Duration::from_millis(100), check)
}

/// The longest interval of a poll whose question costs the API little (a few small objects).
const QUICK_POLL: Duration = Duration::from_millis(20);

/// `wait_for` with an interval growing from 10 ms to `longest`.
fn wait_for_every<T>(
    deadline: Instant,
    what: &str,
    longest: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let mut interval = Duration::from_millis(10).min(longest);
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(interval);
        interval = (interval * 3 / 2).min(longest);
    }
}

/// Waits until every Deployment has all its replicas and every pod is Running and Ready, showing progress. While
/// a Deployment is short of ready replicas only the Deployments are read (what they count), so the wait can look
/// often without making the API list hundreds of pods each time.
pub fn wait_pods_ready(api: &Api, deadline: Instant) -> Result<()> {
    let mut last = String::new();
    let mut show = |ready: i64, of: i64| {
        let line = format!("pods ready: {ready}/{of}");
        if line != last {
            eprintln!("{line}");
            last = line;
        }
    };
    wait_for_every(deadline, "pods to be ready", QUICK_POLL, || {
        let deployments = objects::list(api, "Deployment", None)?;
        if !deployments.iter().all(objects::deployment_complete) {
            let count = |pointer: &str| -> i64 {
                (deployments.iter())
                    .filter_map(|d| d.pointer(pointer).and_then(serde_json::Value::as_i64))
                    .sum()
            };
            show(count("/status/readyReplicas"), count("/spec/replicas"));
            return Ok(None);
        }
        let pods = objects::list(api, "Pod", None)?;
        let ready = pods.iter().filter(|p| objects::ready(p)).count();
        show(ready as i64, pods.len() as i64);
        Ok((ready == pods.len()).then_some(()))
    })
}

fn down(paths: &Paths) -> Result<i32> {
    use std::os::unix::ffi::OsStringExt;
    let started = Instant::now();
    // The context goes from the file `lab up` merged it into and from today's default, if another.
    let merged = std::fs::read(paths.merged_into()).ok();
    let mut report = teardown::down(paths);
    let current = weft_apiserver::kubeconfig::default_path();
    let mut files: Vec<PathBuf> = merged
        .map(|p| PathBuf::from(std::ffi::OsString::from_vec(p)))
        .into_iter()
        .collect();
    match current {
        Ok(path) if !files.contains(&path) => files.push(path),
        Ok(_) => {}
        Err(e) if files.is_empty() => report.errors.push(format!("removing context {}: {e}", paths.context())),
        Err(_) => {}
    }
    for file in files {
        if let Err(e) = weft_apiserver::kubeconfig::remove_from(&file, &paths.context()) {
            report.errors.push(format!(
                "removing context {} from {}: {e}",
                paths.context(),
                file.display()
            ));
        }
    }
    let (ns, procs) = (report.namespaces, report.processes);
    report_down(paths, report)?;
    eprintln!(
        "lab {}: down in {:.1?} ({ns} namespaces, {procs} processes removed)",
        paths.lab,
        started.elapsed()
    );
    Ok(0)
}

fn report_down(paths: &Paths, report: teardown::Report) -> Result<()> {
    if report.errors.is_empty() {
        return Ok(());
    }
    bail!(
        "lab {}: cleanup incomplete:\n  {}",
        paths.lab,
        report.errors.join("\n  ")
    )
}

fn status(paths: &Paths) -> Result<()> {
    let spec = paths.read_spec()?;
    let running = teardown::supervisor_pid(paths);
    println!("lab:        {}", spec.name);
    println!(
        "supervisor: {}",
        running.map_or("not running".to_string(), |p| format!("running (pid {p})"))
    );
    if spec.bare {
        println!("bare:       weft not installed by the lab (deploy/weft.yaml); nodes Ready by their /etc/cni/net.d");
    }
    println!("overlay:    {}", spec.overlay);
    println!("pods in:    {}", spec.cluster_cidr);
    println!(
        "services:   {} (ClusterIPs; cluster DNS {}), node ports 30000-32767",
        spec.service_cidr,
        spec.cluster_dns()
    );
    println!("lb pool:    {} (routed from the external host)", spec.lb_pool);
    println!("external:   {} (netns {})", spec.external_ip(), paths.external_netns());
    if spec.subnets > 1 {
        let nets: Vec<String> = spec.subnet_nets().iter().map(ToString::to_string).collect();
        println!(
            "subnets:    {} (joined by netns {})",
            nets.join(", "),
            paths.router_netns()
        );
    }
    if weft_lab::acme::dir(paths).join("roots.pem").exists() {
        let pebble = weft_lab::acme::pebble(paths, &spec);
        println!(
            "acme:       {} (names resolve to {})",
            pebble.directory_url(),
            pebble.answer
        );
    }
    for node in spec.node_plans() {
        println!(
            "{:<11} {} pods {} (netns {})",
            format!("{}:", node.name),
            node.ip,
            node.pod_cidr,
            paths.node_netns(&node.name)
        );
    }
    if running.is_some() {
        let pods = objects::list(&Api::connect(paths)?, "Pod", None)?;
        let ready = pods.iter().filter(|p| objects::ready(p)).count();
        println!("pods:       {} ({ready} ready)", pods.len());
    }
    Ok(())
}

fn exec(paths: &Paths, target: &str, command: &[String]) -> Result<i32> {
    let spec = paths.read_spec()?;
    let netns = if target == "external" {
        paths.external_netns()
    } else if target == "router" && spec.subnets > 1 {
        paths.router_netns()
    } else if spec.node_plans().iter().any(|n| n.name == target) {
        paths.node_netns(target)
    } else {
        bail!(
            "no node {target:?} in lab {} (nodes are node-1..node-{}, or external)",
            spec.name,
            spec.nodes
        );
    };
    // The external host resolves and trusts with pebble's DNS and roots when the lab runs them (`--acme`).
    let binds = match target {
        "external" => weft_lab::acme::external_binds(paths),
        _ => Vec::new(),
    };
    let sandbox = weft_lab::sandbox::Sandbox {
        netns: PathBuf::from("/run/netns").join(netns),
        binds,
        ..Default::default()
    };
    run_inherit(&sandbox, command)
}

/// Runs `argv` in `sandbox` with our stdio and returns its exit code (128+signal when killed).
pub fn run_inherit(sandbox: &weft_lab::sandbox::Sandbox, argv: &[String]) -> Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    // `weft` itself is found inside pods and nodes even when it is not on the caller's PATH.
    let path = std::env::current_exe().map(|me| ("PATH".to_string(), weft_lab::sandbox::pod_path(&me)));
    let env = weft_lab::sandbox::Env::Inherit(path.into_iter().collect());
    let what = format!("running {}", argv.first().map(String::as_str).unwrap_or(""));
    let mut child = sandbox.spawn(argv, env, |mut command| {
        command.spawn().map_err(weft_lab::error::io(what.clone()))
    })?;
    let status = child.wait().context(what)?;
    Ok(status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(1))
}
