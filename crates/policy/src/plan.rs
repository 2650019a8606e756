//! NetworkPolicy → nftables for one node: table `inet weft-policy`, checked in the forward hook after the
//! service proxy's DNAT (so a connection through a ClusterIP is judged on the endpoint pod and its port).
//!
//! - `forward`: established and related traffic passes (replies of allowed connections, and connections made
//!   before a policy change); then `ip saddr vmap @egress-pods` and `ip daddr vmap @ingress-pods`.
//! - `egress-pods` / `ingress-pods`: this node's pods isolated in that direction → their chain.
//! - `egr-…` / `ing-…`: one rule per allowed (peer, port) of every policy selecting the pod, then `drop`.
//!   Egress rules `return` (the destination's ingress is still judged), ingress rules `accept`.
//!
//! Traffic from the node to its own pods uses the output hook and is never checked here (probes work).

use crate::cluster::{Cluster, PodInfo};
use crate::decide::{Direction, Endpoint, has_type, peer_matches, selects};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use weft_model::k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use weft_model::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const TABLE: &str = "inet weft-policy";

/// The node's policy table as data: pod chains and the two lookup maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyRules {
    pub chains: BTreeMap<String, Vec<String>>,
    pub egress_pods: BTreeMap<String, String>,
    pub ingress_pods: BTreeMap<String, String>,
}

impl PolicyRules {
    /// The whole table, replacing the previous one atomically (one transaction, no moment without rules).
    pub fn full(&self) -> String {
        let mut out = format!(
            "add table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n\tmap egress-pods {{ type ipv4_addr : verdict; }}\n\tmap ingress-pods {{ type ipv4_addr : verdict; }}\n"
        );
        for name in self.chains.keys() {
            let _ = writeln!(out, "\tchain {name} {{ }}");
        }
        out.push_str("\tchain forward { type filter hook forward priority filter; policy accept; ct state established,related accept; ip saddr vmap @egress-pods; ip daddr vmap @ingress-pods; }\n}\n");
        for (name, rules) in &self.chains {
            for rule in rules {
                let _ = writeln!(out, "add rule {TABLE} {name} {rule}");
            }
        }
        for (map, elements) in [("egress-pods", &self.egress_pods), ("ingress-pods", &self.ingress_pods)] {
            if !elements.is_empty() {
                let items: Vec<String> = elements
                    .iter()
                    .map(|(ip, chain)| format!("{ip} : jump {chain}"))
                    .collect();
                let _ = writeln!(out, "add element {TABLE} {map} {{ {} }}", items.join(", "));
            }
        }
        out
    }
}

/// The rules for the pods of `node`.
pub fn plan(c: &Cluster, node: &str) -> PolicyRules {
    let mut rules = PolicyRules::default();
    for pod in c
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(node) && !p.host_network)
    {
        let Some(ip) = pod.ip else { continue };
        for direction in [Direction::Egress, Direction::Ingress] {
            let Some(chain_rules) = pod_chain(c, pod, direction) else {
                continue;
            };
            let prefix = if direction == Direction::Egress { "egr" } else { "ing" };
            let chain = format!("{prefix}-{}/{}", pod.namespace, pod.name);
            let map = if direction == Direction::Egress {
                &mut rules.egress_pods
            } else {
                &mut rules.ingress_pods
            };
            map.insert(ip.to_string(), chain.clone());
            rules.chains.insert(chain, chain_rules);
        }
    }
    rules
}

/// The chain of `pod` for `direction`, or none when no policy isolates it that way.
fn pod_chain(c: &Cluster, pod: &PodInfo, direction: Direction) -> Option<Vec<String>> {
    let policies: Vec<_> = c
        .policies
        .iter()
        .filter(|p| selects(p, pod) && has_type(p, direction))
        .collect();
    if policies.is_empty() {
        return None;
    }
    let verdict = if direction == Direction::Egress {
        "return"
    } else {
        "accept"
    };
    let mut out = BTreeSet::new();
    for policy in policies {
        let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
        let spec = policy.spec.clone().unwrap_or_default();
        let rules: Vec<(Vec<NetworkPolicyPeer>, Vec<NetworkPolicyPort>)> = match direction {
            Direction::Ingress => spec
                .ingress
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.from.unwrap_or_default(), r.ports.unwrap_or_default()))
                .collect(),
            Direction::Egress => spec
                .egress
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.to.unwrap_or_default(), r.ports.unwrap_or_default()))
                .collect(),
        };
        for (peers, ports) in rules {
            for m in rule_matches(c, ns, pod, direction, &peers, &ports) {
                out.insert(if m.is_empty() {
                    verdict.to_string()
                } else {
                    format!("{m} {verdict}")
                });
            }
        }
    }
    let mut chain: Vec<String> = out.into_iter().collect();
    chain.push("drop".into());
    Some(chain)
}

/// The match expressions (each one rule) allowing what one policy rule allows.
fn rule_matches(
    c: &Cluster,
    ns: &str,
    pod: &PodInfo,
    direction: Direction,
    peers: &[NetworkPolicyPeer],
    ports: &[NetworkPolicyPort],
) -> Vec<String> {
    let addr = if direction == Direction::Egress {
        "ip daddr"
    } else {
        "ip saddr"
    };
    // Each peer as an address match, plus (for named egress ports) the pods it covers.
    let peer_sets: Vec<(String, Vec<&PodInfo>)> = if peers.is_empty() {
        vec![(String::new(), c.pods.iter().filter(|p| !p.host_network).collect())]
    } else {
        peers.iter().filter_map(|p| peer_match(c, ns, p, addr)).collect()
    };
    let mut out = Vec::new();
    for (peer, peer_pods) in &peer_sets {
        if ports.is_empty() {
            out.push(peer.clone());
            continue;
        }
        for port in ports {
            let proto = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            match &port.port {
                None => out.push(join(peer, &format!("meta l4proto {proto}"))),
                Some(IntOrString::Int(n)) => {
                    let range = match port.end_port {
                        Some(end) if end > *n => format!("{n}-{end}"),
                        _ => n.to_string(),
                    };
                    out.push(join(peer, &format!("meta l4proto {proto} th dport {range}")));
                }
                Some(IntOrString::String(name)) => {
                    let key = (name.clone(), proto.to_ascii_uppercase());
                    if direction == Direction::Ingress {
                        // The pod this chain guards is the destination: its own number for the name.
                        if let Some(n) = pod.named_ports.get(&key) {
                            out.push(join(peer, &format!("meta l4proto {proto} th dport {n}")));
                        }
                    } else {
                        // Egress: the name means each destination pod's own number.
                        let pairs: Vec<String> = peer_pods
                            .iter()
                            .filter_map(|p| Some(format!("{} . {}", p.ip?, p.named_ports.get(&key)?)))
                            .collect();
                        if !pairs.is_empty() {
                            let m = format!("meta l4proto {proto} ip daddr . th dport {{ {} }}", pairs.join(", "));
                            out.push(join(peer, &m));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A peer as an address match and the pods it covers; none when it covers nothing.
fn peer_match<'a>(
    c: &'a Cluster,
    ns: &str,
    peer: &NetworkPolicyPeer,
    addr: &str,
) -> Option<(String, Vec<&'a PodInfo>)> {
    // The pods are those the decision model matches, so rules and `weft trace` cannot disagree.
    let pods: Vec<&PodInfo> = c
        .pods
        .iter()
        .filter(|p| !p.host_network && p.ip.is_some() && peer_matches(c, ns, peer, &Endpoint::Pod(p)))
        .collect();
    if let Some(block) = &peer.ip_block {
        let mut m = format!("{addr} {}", block.cidr);
        let except: Vec<&str> = block.except.iter().flatten().map(String::as_str).collect();
        if !except.is_empty() {
            let _ = write!(m, " {addr} != {{ {} }}", except.join(", "));
        }
        return Some((m, pods));
    }
    if pods.is_empty() {
        return None;
    }
    let ips: BTreeSet<String> = pods.iter().filter_map(|p| p.ip.map(|ip| ip.to_string())).collect();
    let ips: Vec<String> = ips.into_iter().collect();
    Some((format!("{addr} {{ {} }}", ips.join(", ")), pods))
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a} {b}"),
    }
}
