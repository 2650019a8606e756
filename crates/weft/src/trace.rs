//! `weft trace SRC DST:PORT[/PROTO]`: would SRC reach DST, and why. The destination is rewritten as the service
//! proxy would (a ClusterIP becomes each usable endpoint), then judged by the same NetworkPolicy model that
//! generates the rules. `explain` is shared with `weft ui`, which shows it for a clicked flow.

use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use weft_lab::spec::Paths;
use weft_model::Snapshot;
use weft_policy::{Cluster, Decision, Direction, Endpoint, Protocol, Side, decide};

#[derive(clap::Args)]
pub struct Args {
    /// A pod (NAME or NAMESPACE/NAME), a node (node-N) or an IP address.
    source: String,
    /// POD:PORT, SERVICE-IP:PORT or IP:PORT, optionally /TCP, /UDP or /SCTP.
    destination: String,
    /// Namespace of pods given by bare name.
    #[arg(short, long, default_value = "default")]
    namespace: String,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let snap = crate::objects::snapshot(paths)?;
    let explanation = explain(paths, &snap, &args.source, &args.destination, &args.namespace)?;
    for line in explanation.lines() {
        println!("{line}");
    }
    Ok(if explanation.reaches() { 0 } else { 1 })
}

/// What `weft trace` found: the text it prints and, for `weft ui`, the same as JSON.
pub struct Explanation {
    from: String,
    /// The Service the destination address belongs to and its usable endpoints' count.
    service: Option<(String, usize)>,
    /// The destination as given (`TARGET:PORT/PROTO`), for the Service line.
    to: String,
    judgements: Vec<Judgement>,
}

/// One destination judged (the destination itself, or each endpoint of its Service).
struct Judgement {
    to: String,
    port: u16,
    proto: Protocol,
    verdict: String,
    egress: String,
    ingress: String,
    allowed: bool,
}

impl Explanation {
    /// Whether SRC gets through to at least one destination (allowed, or denied but not enforced).
    pub fn reaches(&self) -> bool {
        self.judgements.iter().any(|j| j.allowed)
    }

    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("from {}", self.from)];
        if let Some((service, usable)) = &self.service {
            lines.push(format!("to {}: Service {service}, {usable} usable endpoints", self.to));
            if *usable == 0 {
                lines.push("  REFUSED: the Service has no usable endpoints".into());
            }
        }
        for j in &self.judgements {
            lines.push(format!(
                "  {}: to {} port {}/{}",
                j.verdict,
                j.to,
                j.port,
                j.proto.as_str()
            ));
            lines.push(format!("    egress: {}", j.egress));
            lines.push(format!("    ingress: {}", j.ingress));
        }
        lines
    }

    pub fn json(&self) -> serde_json::Value {
        let judgements: Vec<serde_json::Value> = (self.judgements.iter())
            .map(|j| {
                serde_json::json!({"to": j.to, "port": j.port, "protocol": j.proto.as_str(), "verdict": j.verdict,
                    "egress": j.egress, "ingress": j.ingress, "allowed": j.allowed})
            })
            .collect();
        serde_json::json!({
            "from": self.from,
            "service": self.service.as_ref().map(|(name, usable)| serde_json::json!({"name": name, "usable": usable})),
            "judgements": judgements,
            "reaches": self.reaches(),
            "text": self.lines().join("\n"),
        })
    }
}

/// Would `source` reach `destination` (`TARGET:PORT[/PROTO]`) in `snap`, and why.
pub fn explain(
    paths: &Paths,
    snap: &Snapshot,
    source: &str,
    destination: &str,
    namespace: &str,
) -> Result<Explanation> {
    let cluster = Cluster::index(snap);
    let (dest, proto) = match destination.rsplit_once('/') {
        Some((d, p)) if p.parse::<Protocol>().is_ok() => (d, p.parse().map_err(anyhow::Error::msg)?),
        _ => (destination, Protocol::Tcp),
    };
    let (target, port) = dest.rsplit_once(':').context("destination must be TARGET:PORT")?;
    let port: u16 = port.parse().with_context(|| format!("bad port {port:?}"))?;
    let src = endpoint(&cluster, snap, source, namespace)?;
    let mut explanation = Explanation {
        from: describe(&src),
        service: None,
        to: format!("{target}:{port}/{}", proto.as_str()),
        judgements: Vec::new(),
    };
    // A Service address: judge each endpoint the proxy may choose.
    let targets = match target
        .parse::<Ipv4Addr>()
        .ok()
        .and_then(|ip| service_endpoints(snap, ip, port, proto))
    {
        Some((service, eps)) => {
            explanation.service = Some((service, eps.len()));
            eps
        }
        None => vec![(target.to_string(), port)],
    };
    for (addr, port) in targets {
        let dst = endpoint(&cluster, snap, &addr, namespace)?;
        let d = decide(&cluster, &src, &dst, port, proto);
        let unenforced = if d.allowed() {
            Vec::new()
        } else {
            unenforced(paths, &cluster, &src, &dst, &d)
        };
        explanation.judgements.push(Judgement {
            to: describe(&dst),
            port,
            proto,
            verdict: verdict(&d, &unenforced),
            egress: side(&d.egress),
            ingress: side(&d.ingress),
            allowed: d.allowed() || !unenforced.is_empty(),
        });
    }
    Ok(explanation)
}

/// The nodes whose kernel does not hold the isolation that denies the connection (none: it is denied). A
/// connection is dropped when one of the sides that deny it is in the kernel; until then, after someone
/// flushed the node's tables and while its agent restores them, it goes through.
fn unenforced(paths: &Paths, cluster: &Cluster, src: &Endpoint, dst: &Endpoint, d: &Decision) -> Vec<String> {
    let denies = |side: &Side| matches!(side, Side::Isolated { allowed_by: None, .. });
    let mut nodes = Vec::new();
    for (direction, side, pod) in [
        (Direction::Egress, &d.egress, src),
        (Direction::Ingress, &d.ingress, dst),
    ] {
        let Endpoint::Pod(pod) = pod else { continue };
        let (Some(node), Some(ip)) = (&pod.node, pod.ip) else {
            continue;
        };
        if !denies(side) {
            continue;
        }
        let rules = weft_policy::plan::plan(cluster, node);
        let netns = format!("/run/netns/{}", paths.node_netns(node));
        let listed = weft_netlink::Netns::open(&netns)
            .and_then(|ns| ns.run(|| weft_netlink::nft::run(&["list", "table", weft_policy::plan::TABLE], "")));
        let listing = match listed {
            Ok(listing) => listing,
            // No table: nothing is enforced there.
            Err(e) if e.to_string().contains("No such file or directory") => String::new(),
            // Not able to look (not root, no such namespace): the model's verdict stands.
            Err(e) => {
                eprintln!("weft trace: not checked against {node}'s kernel: {e}");
                return Vec::new();
            }
        };
        if weft_policy::enforced::enforced(&listing, &rules, direction, ip) {
            return Vec::new();
        }
        nodes.push(node.clone());
    }
    nodes
}

fn verdict(d: &Decision, unenforced: &[String]) -> String {
    match (d.allowed(), unenforced) {
        (true, _) => "ALLOWED".to_string(),
        (false, []) => "DENIED".to_string(),
        (false, nodes) => format!(
            "NOT ENFORCED (policy would deny it; policy not enforced on {}: restoring)",
            nodes.join(", ")
        ),
    }
}

/// One direction's verdict in words.
fn side(side: &Side) -> String {
    match side {
        Side::NotIsolated => "not isolated".to_string(),
        Side::Exempt(why) => format!("allowed: {why}"),
        Side::Isolated {
            policies,
            allowed_by: Some(rule),
        } => format!("isolated by {}; allowed by {rule}", policies.join(", ")),
        Side::Isolated {
            policies,
            allowed_by: None,
        } => format!("isolated by {}; no rule allows it", policies.join(", ")),
    }
}

fn describe(e: &Endpoint) -> String {
    match e {
        Endpoint::Pod(p) => format!(
            "pod {}/{} ({}, {})",
            p.namespace,
            p.name,
            p.ip.map_or("no IP".into(), |ip| ip.to_string()),
            p.node.as_deref().unwrap_or("unscheduled")
        ),
        Endpoint::Node { name, ip } => format!("node {name} ({ip})"),
        Endpoint::Address(ip) => format!("{ip} (outside the pod network)"),
    }
}

/// A pod by name, a node by name, or an address (a pod's, a node's, or any other).
fn endpoint<'a>(c: &'a Cluster, snap: &Snapshot, word: &str, namespace: &str) -> Result<Endpoint<'a>> {
    let cidrs = weft_agent::ipam::pod_cidrs(snap);
    let nodes: Vec<(String, Ipv4Addr)> = snap
        .nodes()
        .filter_map(|n| weft_agent::node::node_net(n, &cidrs).map(|n| (n.name, n.ip)))
        .collect();
    if let Ok(ip) = word.parse::<Ipv4Addr>() {
        if let Some(pod) = c.pod_by_ip(ip) {
            return Ok(Endpoint::Pod(pod));
        }
        if let Some((name, ip)) = nodes.iter().find(|(_, nip)| *nip == ip) {
            return Ok(Endpoint::Node {
                name: name.clone(),
                ip: *ip,
            });
        }
        return Ok(Endpoint::Address(ip));
    }
    if let Some((name, ip)) = nodes.iter().find(|(n, _)| n == word) {
        return Ok(Endpoint::Node {
            name: name.clone(),
            ip: *ip,
        });
    }
    let (ns, name) = word.split_once('/').unwrap_or((namespace, word));
    match c.pod(ns, name) {
        Some(pod) => Ok(Endpoint::Pod(pod)),
        None => bail!("no pod {ns}/{name}, node or address {word:?}"),
    }
}

/// The Service owning `ip:port/proto` and the endpoints the proxy would use, when `ip` is a ClusterIP.
fn service_endpoints(
    snap: &Snapshot,
    ip: Ipv4Addr,
    port: u16,
    proto: Protocol,
) -> Option<(String, Vec<(String, u16)>)> {
    let index = weft_proxy::endpoints::SliceIndex::of(snap);
    for svc in snap.of_kind("Service").filter_map(weft_model::Object::service) {
        if svc.cluster_ip != Some(ip.into()) {
            continue;
        }
        let namespace = svc.metadata.namespace.as_deref();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let sp = (svc.ports.iter()).find(|p| p.port == port && p.protocol.as_str() == proto.as_str())?;
        let slices = index.slices(snap, namespace, name);
        let usable = weft_proxy::endpoints::usable(&weft_proxy::endpoints::for_port(&slices, sp, ""));
        return Some((
            format!("{}/{name}", namespace.unwrap_or("default")),
            usable.iter().map(|e| (e.ip.to_string(), e.port)).collect(),
        ));
    }
    None
}
