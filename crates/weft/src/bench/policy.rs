//! `weft bench policy`: NetworkPolicy at scale on one node. The process plays the node's agent (index, plan,
//! sync) in a namespace of its own, with N pods attached routed as the lab attaches them (veth, /32 route, gateway
//! 169.254.1.1), each a bare namespace with an address. All namespaces are anonymous, held only by this
//! process's descriptors, so the kernel removes them when it exits, however it exits.
//!
//! Workload: pods `p0..pN` spread over 10 namespaces, every tenth group of ten a `frontend`, the others
//! `backend`, each with a named port `http` (8080). Policy `pol-i` selects pod i alone: ingress from the
//! frontends of its namespace on `http`; for frontends also egress to the backends of the namespace labelled
//! with its team (namespaceSelector AND podSelector) on 8080 and to UDP 53 anywhere. The measured connection
//! is p0 (frontend) → p10 (backend) :8080, through p0's egress chain and p10's ingress chain.

use super::{connect_latency, ms, peak_rss_mb, print_latency};
use anyhow::{Context, Result, bail};
use ipnet::{IpNet, Ipv4Net};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use weft_model::Snapshot;
use weft_netlink::{Handle, Netns, Route};
use weft_policy::{Cluster, Enforcer, plan};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Policies, one per pod from p0 on (at most --pods).
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Connects per latency measurement.
    #[arg(long, default_value_t = 2000)]
    connects: usize,
    /// Runs, each in fresh namespaces; the summary gives each figure's median and range.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The figures summed up over runs, with what docs/benchmarks.md publishes for them.
const ANCHORS: [(&str, &str, &str); 5] = [
    ("apply to enforced, agent start", " ms", "68–119 ms"),
    ("apply to enforced, running node", " ms", "68–80 ms"),
    ("change one policy", " ms", "28–43 ms"),
    ("relabel one pod", " ms", "10–14 ms"),
    ("connect p50 with policies / without", "", "0.99–1.17"),
];

const NODE: &str = "bench-node";
const NAMESPACES: usize = 10;
const PORT: u16 = 8080;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The measured pair, and a backend of the same namespace that p10's policy refuses.
const CLIENT: usize = 0;
const SERVER: usize = 10;
const REFUSED: usize = 30;

pub fn run(args: Args) -> Result<()> {
    let mut runs: Vec<[f64; 5]> = Vec::new();
    for i in 0..args.runs {
        println!("run {} of {}", i + 1, args.runs);
        runs.push(once(&args)?);
    }
    super::peer::print_runs(
        "published: 2-core machine, load 1.8–2.3, 2026-11-23, three runs",
        &ANCHORS,
        &runs,
    );
    Ok(())
}

/// One run; prints its figures and returns those of [`ANCHORS`].
fn once(args: &Args) -> Result<[f64; 5]> {
    if args.pods <= REFUSED || args.pods > MAX_PODS || args.policies > args.pods || args.policies <= SERVER {
        bail!(
            "--pods must be more than {REFUSED} and at most {MAX_PODS}, and --policies between {} and --pods",
            SERVER + 1
        );
    }
    let started = Instant::now();
    let node = anonymous_netns()?;
    node.run(|| weft_netlink::sysctl::set("net/ipv4/ip_forward", "1"))?;
    let mut node_handle = node.handle()?;
    let pods: Vec<Netns> = (0..args.pods)
        .map(|i| attach_pod(&mut node_handle, i))
        .collect::<Result<_>>()?;
    println!(
        "{} pods attached to one node in {:.1} s (setup, not a figure)",
        args.pods,
        started.elapsed().as_secs_f64()
    );
    let listener = pods[SERVER]
        .run(|| TcpListener::bind((pod_ip(SERVER), PORT)).map_err(|e| weft_netlink::Error::NotFound(e.to_string())))?;
    std::thread::spawn(move || for _ in listener.incoming() {});
    let target = SocketAddr::from((pod_ip(SERVER), PORT));
    let connects =
        |from: usize, timeout: Duration| pods[from].run(|| Ok(TcpStream::connect_timeout(&target, timeout).is_ok()));

    let sync = |enforcer: &mut Enforcer, snap: &Snapshot| {
        let started = Instant::now();
        let cluster = Cluster::index(snap);
        let rules = plan::plan(&cluster, NODE);
        let planned = started.elapsed();
        let counts = (
            rules.chains.len(),
            rules.chains.values().map(Vec::len).sum::<usize>(),
            rules.sets.len(),
        );
        let report = node.run(|| enforcer.sync(rules))?;
        anyhow::Ok(Step {
            total: started.elapsed(),
            planned,
            report,
            counts,
        })
    };

    let mut enforcer = Enforcer::new();
    let none = sync(&mut enforcer, &snapshot(args.pods, 0, Change::None)?)?;
    let latency_none = pods[CLIENT].run(|| Ok(connect_latency(target, args.connects)))?;
    if !connects(REFUSED, Duration::from_secs(1))? {
        bail!("p{REFUSED} cannot reach p{SERVER} without policies");
    }

    // All policies at once into the running node's table (incremental), then as an agent starting with them
    // does it (the whole table through `nft`, replacing the one there).
    let snap = snapshot(args.pods, args.policies, Change::None)?;
    let added = sync(&mut enforcer, &snap)?;
    let mut enforcer = Enforcer::new();
    let full = sync(&mut enforcer, &snap)?;
    drop(snap);
    if connects(REFUSED, Duration::from_millis(300))? {
        bail!("p{REFUSED} still reaches p{SERVER} once its policy is applied");
    }
    let latency_many = pods[CLIENT].run(|| Ok(connect_latency(target, args.connects)))?;
    if latency_many.is_empty() {
        bail!("p{CLIENT} cannot reach p{SERVER}, which its policies allow");
    }

    let snap = snapshot(args.pods, args.policies, Change::Policy)?;
    let policy = sync(&mut enforcer, &snap)?;
    drop(snap);
    if !connects(REFUSED, Duration::from_secs(1))? {
        bail!("p{REFUSED} is still refused after p{SERVER}'s policy allowed backends");
    }

    let snap = snapshot(args.pods, args.policies, Change::Relabel)?;
    let relabel = sync(&mut enforcer, &snap)?;
    drop(snap);

    println!(
        "{} policies over {} pods, {NAMESPACES} namespaces",
        args.policies, args.pods
    );
    println!(
        "ruleset: {} pod chains, {} rules, {} address sets (without policies: {} chains, sync {:.1} ms)",
        full.counts.0,
        full.counts.1,
        full.counts.2,
        none.counts.0,
        ms(none.report.elapsed)
    );
    for (label, step) in [
        ("apply to enforced, agent start", &full),
        ("apply to enforced, running node", &added),
        ("change one policy", &policy),
        ("relabel one pod", &relabel),
    ] {
        println!(
            "{label}: {:.1} ms (index + plan {:.1} ms, {} sync {:.1} ms, {} bytes of nft text)",
            ms(step.total),
            ms(step.planned),
            step.report.kind(),
            ms(step.report.elapsed),
            step.report.script
        );
    }
    print_latency(&format!("p{CLIENT} -> p{SERVER}, 0 policies"), &latency_none);
    let many = format!("p{CLIENT} -> p{SERVER}, {} policies", args.policies);
    print_latency(&many, &latency_many);
    println!("peak RSS of this process (planner + applier): {:.1} MB", peak_rss_mb());
    Ok([
        ms(full.total),
        ms(added.total),
        ms(policy.total),
        ms(relabel.total),
        super::quantile(&latency_many, 0.5) / super::quantile(&latency_none, 0.5),
    ])
}

/// One sync as the agent does it: index the snapshot, plan the node's table, apply it.
struct Step {
    total: Duration,
    planned: Duration,
    report: weft_policy::Report,
    /// Pod chains, rules and address sets planned.
    counts: (usize, usize, usize),
}

/// A new network namespace that only the returned handle keeps alive.
fn anonymous_netns() -> Result<Netns> {
    let made = std::thread::spawn(|| -> Result<Netns> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        Ok(Netns::open("/proc/thread-self/ns/net")?)
    });
    made.join()
        .unwrap_or_else(|_| bail!("creating a network namespace panicked"))
}

/// Pod addresses are 10.244.0-255.10-209.
const MAX_PODS: usize = 256 * 200;

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, (i / 200) as u8, (i % 200 + 10) as u8)
}

/// Pod `i` in a namespace of its own, attached routed: its /32 and a default route via the link-local gateway,
/// which a permanent neighbour entry resolves to the node's end of the veth; the node routes the /32 back.
fn attach_pod(node_handle: &mut Handle, i: usize) -> Result<Netns> {
    let pod = anonymous_netns()?;
    let host_name = format!("p{i}");
    node_handle.add_veth(&host_name, 1500, "eth0", pod.fd(), None)?;
    let host = node_handle.link_by_name(&host_name)?.context("host veth")?;
    let mut h = pod.handle()?;
    let eth0 = h.link_by_name("eth0")?.context("pod veth")?;
    let ip = pod_ip(i);
    h.add_address(eth0.index, host_net(ip))?;
    h.set_up(eth0.index)?;
    h.set_neighbour(eth0.index, GATEWAY.into(), mac(&host.mac)?)?;
    h.add_route(&Route::on_link(host_net(GATEWAY), eth0.index))?;
    let mut default = Route::via("0.0.0.0/0".parse()?, GATEWAY.into());
    default.oif = Some(eth0.index);
    h.add_route(&default)?;
    node_handle.set_up(host.index)?;
    node_handle.set_neighbour(host.index, ip.into(), mac(&eth0.mac)?)?;
    node_handle.add_route(&Route::on_link(host_net(ip), host.index))?;
    Ok(pod)
}

fn host_net(ip: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(ip))
}

fn mac(bytes: &[u8]) -> Result<[u8; 6]> {
    bytes.try_into().context("a veth MAC is not 6 bytes")
}

/// What differs from the base workload.
/// Each includes the ones before it.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Change {
    None,
    /// p10's policy also admits backends.
    Policy,
    /// p30 becomes a frontend (every set of its namespace's frontends changes).
    Relabel,
}

fn role(i: usize, change: Change) -> &'static str {
    if (i / 10).is_multiple_of(2) || (change >= Change::Relabel && i == REFUSED) {
        "frontend"
    } else {
        "backend"
    }
}

fn snapshot(pods: usize, policies: usize, change: Change) -> Result<Snapshot> {
    let mut objects: Vec<Value> = (0..NAMESPACES)
        .map(|k| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns{k}"), "labels": {"team": format!("t{k}")}}}))
        .collect();
    for i in 0..pods {
        objects.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", i % NAMESPACES),
                "labels": {"app": format!("p{i}"), "role": role(i, change)}},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": PORT}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(i).to_string()}}));
    }
    for i in 0..policies {
        let k = i % NAMESPACES;
        let roles: &[&str] = if change >= Change::Policy && i == SERVER {
            &["frontend", "backend"]
        } else {
            &["frontend"]
        };
        let mut spec = json!({"podSelector": {"matchLabels": {"app": format!("p{i}")}},
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": roles}]}}],
                "ports": [{"port": "http"}]}]});
        if role(i, Change::None) == "frontend" {
            spec["egress"] = json!([
                {"to": [{"namespaceSelector": {"matchLabels": {"team": format!("t{k}")}}, "podSelector": {"matchLabels": {"role": "backend"}}}],
                    "ports": [{"port": PORT}]},
                {"ports": [{"port": 53, "protocol": "UDP"}]}]);
        }
        objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("pol-{i}"), "namespace": format!("ns{k}")}, "spec": spec}));
    }
    let objects = objects
        .into_iter()
        .map(|v| weft_model::manifest::from_value(v).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot::new(1, objects))
}
