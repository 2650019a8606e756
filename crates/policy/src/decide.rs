//! Whether a connection is allowed, and why. A pod is isolated in a direction as soon as one policy selecting it
//! has that policy type; then only what some rule of some such policy allows gets through (rules are a union).
//! Egress is judged at the source pod, ingress at the destination pod, both after any Service rewrite (the
//! destination is the endpoint pod and its port).

use crate::cluster::{Cluster, PodInfo};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
pub use weft_model::compact::Protocol;
use weft_model::k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use weft_model::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_model::selector::matches;

/// One end of a connection.
#[derive(Clone, Debug)]
pub enum Endpoint<'a> {
    Pod(&'a PodInfo),
    /// A node itself (its own address): it may always reach the pods it runs.
    Node {
        name: String,
        ip: Ipv4Addr,
    },
    /// Anything else: another host, the external host.
    Address(Ipv4Addr),
}

impl Endpoint<'_> {
    fn ip(&self) -> Option<Ipv4Addr> {
        match self {
            Endpoint::Pod(p) => p.ip,
            Endpoint::Node { ip, .. } | Endpoint::Address(ip) => Some(*ip),
        }
    }

    /// The pod pod selectors may match (host-network pods are not matched by pod selectors).
    fn selectable_pod(&self) -> Option<&PodInfo> {
        match self {
            Endpoint::Pod(p) if !p.host_network => Some(p),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        })
    }
}

/// The rule that allowed a connection: policy `namespace/name`, the index of the rule in its ingress or egress
/// list, and of the peer and port that matched (none when the rule has no peers or no ports: "all").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub policy: String,
    pub direction: Direction,
    pub rule: usize,
    pub peer: Option<usize>,
    pub port: Option<usize>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = if self.direction == Direction::Ingress {
            "ingress"
        } else {
            "egress"
        };
        let peers = if self.direction == Direction::Ingress {
            "from"
        } else {
            "to"
        };
        write!(f, "{} {list}[{}]", self.policy, self.rule)?;
        match self.peer {
            Some(p) => write!(f, " {peers}[{p}]")?,
            None => write!(f, " (any peer)")?,
        }
        match self.port {
            Some(p) => write!(f, " ports[{p}]"),
            None => write!(f, " (any port)"),
        }
    }
}

/// One direction's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// No policy of this type selects the pod (or the end is not a pod): allowed.
    NotIsolated,
    /// Allowed whatever the policies say, for this reason.
    Exempt(&'static str),
    /// Policies select the pod; `allowed_by` is the first rule that allows the connection, if any.
    Isolated {
        policies: Vec<String>,
        allowed_by: Option<RuleRef>,
    },
}

impl Side {
    pub fn allows(&self) -> bool {
        match self {
            Side::NotIsolated | Side::Exempt(_) => true,
            Side::Isolated { allowed_by, .. } => allowed_by.is_some(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub egress: Side,
    pub ingress: Side,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

/// Judges a connection from `src` to `dst` on `port`/`protocol`.
pub fn decide(c: &Cluster, src: &Endpoint, dst: &Endpoint, port: u16, protocol: Protocol) -> Decision {
    // A pod talking to its own address never leaves its network namespace, so no policy sees it (the
    // upstream tests allow loopback for the same reason).
    if let (Endpoint::Pod(a), Endpoint::Pod(b)) = (src, dst)
        && a.namespace == b.namespace
        && a.name == b.name
    {
        let own = Side::Exempt("a pod reaches itself without leaving its network namespace");
        return Decision {
            egress: own.clone(),
            ingress: own,
        };
    }
    let egress = match src.selectable_pod() {
        Some(pod) => side(c, pod, Direction::Egress, dst, dst.selectable_pod(), port, protocol),
        None => Side::NotIsolated,
    };
    let ingress = match (src, dst.selectable_pod()) {
        (Endpoint::Node { name, .. }, Some(pod)) if pod.node.as_deref() == Some(name.as_str()) => {
            Side::Exempt("a node always reaches its own pods")
        }
        (_, Some(pod)) => side(c, pod, Direction::Ingress, src, Some(pod), port, protocol),
        (_, None) => Side::NotIsolated,
    };
    Decision { egress, ingress }
}

/// One rule's peers (`from` or `to`) and ports; `None` or empty means "all".
type Rule = (Option<Vec<NetworkPolicyPeer>>, Option<Vec<NetworkPolicyPort>>);

/// The verdict of the policies selecting `pod` for `direction`, the far end being `peer`; named ports resolve
/// on `port_owner` (the destination pod).
fn side(
    c: &Cluster,
    pod: &PodInfo,
    direction: Direction,
    peer: &Endpoint,
    port_owner: Option<&PodInfo>,
    port: u16,
    protocol: Protocol,
) -> Side {
    let selecting: Vec<&NetworkPolicy> = c
        .policies
        .iter()
        .copied()
        .filter(|p| selects(p, pod) && has_type(p, direction))
        .collect();
    if selecting.is_empty() {
        return Side::NotIsolated;
    }
    let mut allowed_by = None;
    'policies: for policy in &selecting {
        let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
        let spec = policy.spec.clone().unwrap_or_default();
        let rules: Vec<Rule> = match direction {
            Direction::Ingress => spec
                .ingress
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.from, r.ports))
                .collect(),
            Direction::Egress => spec
                .egress
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.to, r.ports))
                .collect(),
        };
        for (i, (peers, ports)) in rules.iter().enumerate() {
            let peer_match = match peers.as_deref() {
                None | Some([]) => Some(None),
                Some(peers) => peers.iter().position(|p| peer_matches(c, ns, p, peer)).map(Some),
            };
            let port_match = match ports.as_deref() {
                None | Some([]) => Some(None),
                Some(ports) => ports
                    .iter()
                    .position(|p| port_matches(p, port_owner, port, protocol))
                    .map(Some),
            };
            if let (Some(peer), Some(port)) = (peer_match, port_match) {
                allowed_by = Some(RuleRef {
                    policy: key(policy),
                    direction,
                    rule: i,
                    peer,
                    port,
                });
                break 'policies;
            }
        }
    }
    Side::Isolated {
        policies: selecting.iter().map(|p| key(p)).collect(),
        allowed_by,
    }
}

pub fn key(policy: &NetworkPolicy) -> String {
    format!(
        "{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or("default"),
        policy.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether `policy` selects `pod` (same namespace, pod selector matching; host-network pods never).
pub fn selects(policy: &NetworkPolicy, pod: &PodInfo) -> bool {
    if pod.host_network || policy.metadata.namespace.as_deref().unwrap_or("default") != pod.namespace {
        return false;
    }
    match policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref()) {
        Some(selector) => matches(selector, &pod.labels),
        None => matches(&Default::default(), &pod.labels),
    }
}

/// `policyTypes`, or its default: Ingress always, Egress when the policy has egress rules.
pub fn has_type(policy: &NetworkPolicy, direction: Direction) -> bool {
    let Some(spec) = &policy.spec else {
        return direction == Direction::Ingress;
    };
    match &spec.policy_types {
        Some(types) => types.iter().any(|t| t == &direction.to_string()),
        None => direction == Direction::Ingress || spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
    }
}

/// Whether `peer` of a policy in `policy_ns` covers `who`; the one place peers are matched (rules, trace, checks).
pub fn peer_matches(c: &Cluster, policy_ns: &str, peer: &NetworkPolicyPeer, who: &Endpoint) -> bool {
    if let Some(block) = &peer.ip_block {
        let Some(ip) = who.ip() else { return false };
        let inside = |cidr: &str| cidr.parse::<Ipv4Net>().is_ok_and(|n| n.contains(&ip));
        return inside(&block.cidr) && !block.except.iter().flatten().any(|e| inside(e));
    }
    let Some(pod) = who.selectable_pod() else { return false };
    let pod_ok = |sel: &Option<_>| match sel {
        Some(s) => matches(s, &pod.labels),
        None => true,
    };
    match (&peer.namespace_selector, &peer.pod_selector) {
        (None, None) => false,
        (None, Some(_)) => pod.namespace == policy_ns && pod_ok(&peer.pod_selector),
        (Some(ns_sel), _) => {
            let ns_labels = c.namespace_labels(&pod.namespace);
            matches(ns_sel, ns_labels.unwrap_or(&BTreeMap::new())) && pod_ok(&peer.pod_selector)
        }
    }
}

fn port_matches(spec: &NetworkPolicyPort, owner: Option<&PodInfo>, port: u16, protocol: Protocol) -> bool {
    if spec.protocol.as_deref().unwrap_or("TCP") != protocol.as_str() {
        return false;
    }
    match &spec.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let end = spec.end_port.unwrap_or(*n);
            (*n..=end).contains(&i32::from(port))
        }
        Some(IntOrString::String(name)) => owner
            .and_then(|pod| pod.named_ports.get(&(name.clone(), protocol.as_str().to_string())))
            .is_some_and(|n| *n == port),
    }
}

#[cfg(test)]
mod tests;
