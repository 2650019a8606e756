//! NetworkPolicy → nftables for one node: table `inet weft-policy`, checked in the forward hook after the
//! service proxy's DNAT (so a connection through a ClusterIP is judged on the endpoint pod and its port).
//!
//! - `forward`: established and related traffic passes (replies of allowed connections, and connections made
//!   before a policy change); then `ip saddr vmap @egress-pods` and `ip daddr vmap @ingress-pods`.
//! - `egress-pods` / `ingress-pods`: this node's pods isolated in that direction → their chain.
//! - `egr-…` / `ing-…`: one rule per allowed (peer, protocol) of every policy selecting the pod, its ports in one
//!   set, then a rate-limited `log group` naming the chain (NFLOG, for the agent's flows) and `drop`.
//!   Egress rules `return` (the destination's ingress is still judged), ingress rules `accept`.
//! - `pods-…`: the addresses a pod-selecting peer covers, one named set per distinct (namespace, selectors),
//!   shared by every rule using it; a label change moves addresses between sets and leaves the chains alone.
//!
//! Traffic from the node to its own pods uses the output hook and is never checked here (probes work).

use crate::cluster::{Cluster, PodInfo};
use crate::decide::{Direction, Endpoint, has_type, peer_matches, selects};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use weft_model::k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use weft_model::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_netlink::nftables::{Data, Elements, object_name};

pub const TABLE: &str = "inet weft-policy";
/// The NFLOG group the drop rules log to (the agent's flow collector binds it; with no one bound the kernel
/// discards the copy).
pub const DROP_LOG_GROUP: u16 = 74;
/// The start of a drop rule's log prefix; the pod chain's name follows (`weft-drop ing-NAMESPACE/POD`).
pub const DROP_LOG_PREFIX: &str = "weft-drop ";
/// How many dropped packets a second each pod chain logs at most (beyond it they are dropped unlogged): a
/// flood of denied packets costs a bounded number of netlink messages.
const DROP_LOG_RATE: &str = "limit rate 50/second burst 100 packets";

/// The node's policy table as data: pod chains and the two lookup maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyRules {
    pub chains: BTreeMap<String, Vec<String>>,
    /// Named sets of pod addresses, one per distinct peer selector (shared by every chain that uses it): a label
    /// change moves addresses between sets and leaves the chains alone.
    pub sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    pub egress_pods: BTreeMap<String, String>,
    pub ingress_pods: BTreeMap<String, String>,
}

impl PolicyRules {
    /// The whole table, replacing the previous one atomically (one transaction, no moment without rules).
    pub fn full(&self) -> String {
        let mut out = format!(
            "add table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n\tmap egress-pods {{ type ipv4_addr : verdict; }}\n\tmap ingress-pods {{ type ipv4_addr : verdict; }}\n\tchain forward {{ type filter hook forward priority filter; policy accept; ct state established,related accept; ip saddr vmap @egress-pods; ip daddr vmap @ingress-pods; }}\n}}\n"
        );
        out.push_str(&PolicyRules::default().diff(self).unwrap_or_default());
        out
    }

    /// Chains, rules and set or map elements, the fixed `forward` chain included (for logs and metrics).
    pub fn counts(&self) -> (usize, usize, usize) {
        let rules: usize = self.chains.values().map(Vec::len).sum();
        let elements: usize = self.sets.values().map(BTreeSet::len).sum();
        (
            self.chains.len() + 1,
            rules + 3,
            elements + self.egress_pods.len() + self.ingress_pods.len(),
        )
    }

    /// One transaction from `self` (what the kernel holds) to `new`, touching only the pod chains and map
    /// elements that differ; `None` when nothing does. New chains exist before an element jumps to them, a
    /// changed chain is flushed and refilled, and a chain goes only after its elements. The kernel commits a
    /// transaction at once, so packets see the old rules or the new ones, never a mix.
    pub fn diff(&self, new: &PolicyRules) -> Option<String> {
        let mut out = String::new();
        static EMPTY: BTreeSet<Ipv4Addr> = BTreeSet::new();
        for (name, ips) in &new.sets {
            let old = self.sets.get(name);
            if old.is_none() {
                let _ = writeln!(out, "add set {TABLE} {name} {{ type ipv4_addr; }}");
            }
            let old = old.unwrap_or(&EMPTY);
            for (verb, a, b) in [("delete", old, ips), ("add", ips, old)] {
                let only: Vec<String> = a.difference(b).map(Ipv4Addr::to_string).collect();
                if !only.is_empty() {
                    let _ = writeln!(out, "{verb} element {TABLE} {name} {{ {} }}", only.join(", "));
                }
            }
        }
        for (name, rules) in &new.chains {
            let verb = match self.chains.get(name) {
                Some(old) if old == rules => continue,
                Some(_) => "flush",
                None => "add",
            };
            let _ = writeln!(out, "{verb} chain {TABLE} {name}");
            for rule in rules {
                let _ = writeln!(out, "add rule {TABLE} {name} {rule}");
            }
        }
        for (map, old, now) in [
            ("egress-pods", &self.egress_pods, &new.egress_pods),
            ("ingress-pods", &self.ingress_pods, &new.ingress_pods),
        ] {
            let gone: Vec<&str> = differing(old, now).map(|(ip, _)| ip).collect();
            if !gone.is_empty() {
                let _ = writeln!(out, "delete element {TABLE} {map} {{ {} }}", gone.join(", "));
            }
            let added: Vec<String> = differing(now, old)
                .map(|(ip, chain)| format!("{ip} : jump {chain}"))
                .collect();
            if !added.is_empty() {
                let _ = writeln!(out, "add element {TABLE} {map} {{ {} }}", added.join(", "));
            }
        }
        for name in self.chains.keys().filter(|name| !new.chains.contains_key(*name)) {
            let _ = writeln!(out, "flush chain {TABLE} {name}\ndelete chain {TABLE} {name}");
        }
        for name in self.sets.keys().filter(|name| !new.sets.contains_key(*name)) {
            let _ = writeln!(out, "delete set {TABLE} {name}");
        }
        (!out.is_empty()).then_some(out)
    }
}

impl PolicyRules {
    /// The change from `self` to `new` as element additions and deletions (in that order), when it is nothing
    /// else: no chain, rule or set added, changed or removed, and no map element sent to another chain. That
    /// is what a relabelled pod usually is; the agent sends it over nfnetlink without `nft`.
    pub fn element_changes(&self, new: &PolicyRules) -> Option<(Vec<Elements>, Vec<Elements>)> {
        if self.chains != new.chains || !self.sets.keys().eq(new.sets.keys()) {
            return None;
        }
        let (mut add, mut delete) = (Vec::new(), Vec::new());
        for (name, old) in &self.sets {
            let now = &new.sets[name];
            let keys = |a: &BTreeSet<Ipv4Addr>, b| -> Vec<(Vec<u8>, Option<Data>)> {
                a.difference(b).map(|ip| (ip.octets().to_vec(), None)).collect()
            };
            add.push(Elements {
                set: name.clone(),
                elements: keys(now, old),
            });
            delete.push(Elements {
                set: name.clone(),
                elements: keys(old, now),
            });
        }
        for (map, old, now) in [
            ("egress-pods", &self.egress_pods, &new.egress_pods),
            ("ingress-pods", &self.ingress_pods, &new.ingress_pods),
        ] {
            let parse = |ip: &str| ip.parse::<Ipv4Addr>().ok().map(|ip| ip.octets().to_vec());
            let gone: Vec<_> = differing(old, now)
                .map(|(ip, _)| Some((parse(ip)?, None)))
                .collect::<Option<_>>()?;
            let added: Vec<_> = differing(now, old)
                .map(|(ip, chain)| Some((parse(ip)?, Some(Data::Jump(chain.to_string())))))
                .collect::<Option<_>>()?;
            // A verdict that changes would be added before its old one is gone.
            if added.iter().any(|(key, _)| gone.iter().any(|(k, _)| k == key)) {
                return None;
            }
            add.push(Elements {
                set: map.to_string(),
                elements: added,
            });
            delete.push(Elements {
                set: map.to_string(),
                elements: gone,
            });
        }
        Some((add, delete))
    }
}

/// The elements of map `a` that `b` lacks or sends elsewhere.
fn differing<'a>(
    a: &'a BTreeMap<String, String>,
    b: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    a.iter()
        .filter(|(ip, chain)| b.get(*ip) != Some(chain))
        .map(|(ip, chain)| (ip.as_str(), chain.as_str()))
}

/// The rules for the pods of `node`.
pub fn plan(c: &Cluster, node: &str) -> PolicyRules {
    let mut planner = Planner {
        c,
        policies: BTreeMap::new(),
        peers: HashMap::new(),
        sets: BTreeMap::new(),
    };
    // A policy selects pods of its own namespace only.
    for policy in &c.policies {
        let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
        planner.policies.entry(ns).or_default().push(policy);
    }
    let mut rules = PolicyRules::default();
    for pod in c
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(node) && !p.host_network)
    {
        let Some(ip) = pod.ip else { continue };
        let selecting: Vec<&NetworkPolicy> = planner
            .policies
            .get(pod.namespace.as_str())
            .into_iter()
            .flatten()
            .map(|p| **p)
            .filter(|p| selects(p, pod))
            .collect();
        for direction in [Direction::Egress, Direction::Ingress] {
            let Some(mut chain_rules) = planner.pod_chain(pod, &selecting, direction) else {
                continue;
            };
            let prefix = if direction == Direction::Egress { "egr" } else { "ing" };
            let chain = object_name(prefix, &format!("{}/{}", pod.namespace, pod.name));
            let map = if direction == Direction::Egress {
                &mut rules.egress_pods
            } else {
                &mut rules.ingress_pods
            };
            map.insert(ip.to_string(), chain.clone());
            chain_rules.push(drop_log(&chain));
            chain_rules.push("drop".into());
            rules.chains.insert(chain, chain_rules);
        }
    }
    rules.sets = planner.sets;
    rules
}

/// The drop rule's log: the prefix names the chain (cut to the kernel's 127 bytes; the agent reads the direction
/// from its start and the pod from the packet).
fn drop_log(chain: &str) -> String {
    let mut prefix = format!("{DROP_LOG_PREFIX}{chain}");
    let mut end = prefix.len().min(127);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    prefix.truncate(end);
    format!("{DROP_LOG_RATE} log prefix \"{prefix}\" group {DROP_LOG_GROUP}")
}

/// A peer as an address match and the pods it covers.
type PeerMatch<'a> = Option<(String, Vec<&'a PodInfo>)>;

struct Planner<'a, 'c> {
    c: &'c Cluster<'a>,
    /// Policies by namespace.
    policies: BTreeMap<&'c str, Vec<&'c &'a NetworkPolicy>>,
    /// Peers already resolved, by namespace, direction and peer: many policies share the same peers, and
    /// resolving one walks every pod.
    peers: HashMap<String, PeerMatch<'c>>,
    /// The named sets the resolved peers use.
    sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

impl<'c> Planner<'_, 'c> {
    /// The chain of `pod` for `direction` from the policies `selecting` it, or none when none of them isolates
    /// it that way.
    fn pod_chain(&mut self, pod: &PodInfo, selecting: &[&NetworkPolicy], direction: Direction) -> Option<Vec<String>> {
        let policies: Vec<&NetworkPolicy> = selecting.iter().copied().filter(|p| has_type(p, direction)).collect();
        if policies.is_empty() {
            return None;
        }
        let verdict = if direction == Direction::Egress {
            "return"
        } else {
            "accept"
        };
        let mut allowed = Allowed::new();
        for policy in policies {
            let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
            let Some(spec) = &policy.spec else { continue };
            let rules: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> = match direction {
                Direction::Ingress => spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.from.as_deref().unwrap_or_default(),
                            r.ports.as_deref().unwrap_or_default(),
                        )
                    })
                    .collect(),
                Direction::Egress => spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            r.to.as_deref().unwrap_or_default(),
                            r.ports.as_deref().unwrap_or_default(),
                        )
                    })
                    .collect(),
            };
            for (peers, ports) in rules {
                self.allow(&mut allowed, ns, pod, direction, peers, ports);
            }
        }
        // One rule per peer and protocol, all its ports in one set: a pod that many policies open on different
        // ports from the same peers costs a packet one lookup, not one rule per port.
        let chain: Vec<String> = allowed
            .into_iter()
            .map(|((peer, proto), ports)| {
                let m = match (proto, ports) {
                    (None, _) => peer,
                    (Some(proto), None) => join(&peer, &format!("meta l4proto {proto}")),
                    (Some(proto), Some(ranges)) => {
                        join(&peer, &format!("meta l4proto {proto} th dport {}", port_set(ranges)))
                    }
                };
                join(&m, verdict)
            })
            .collect();
        Some(chain)
    }

    /// Adds to `allowed` what one policy rule allows.
    fn allow(
        &mut self,
        allowed: &mut Allowed,
        ns: &str,
        pod: &PodInfo,
        direction: Direction,
        peers: &[NetworkPolicyPeer],
        ports: &[NetworkPolicyPort],
    ) {
        let addr = if direction == Direction::Egress {
            "ip daddr"
        } else {
            "ip saddr"
        };
        // Each peer as an address match, plus (for named egress ports) the pods it covers.
        let peer_sets: Vec<(String, Vec<&PodInfo>)> = if peers.is_empty() {
            vec![(String::new(), self.c.pods.iter().filter(|p| !p.host_network).collect())]
        } else {
            peers.iter().filter_map(|p| self.peer_match(ns, p, addr)).collect()
        };
        for (peer, peer_pods) in &peer_sets {
            if ports.is_empty() {
                allowed.insert((peer.clone(), None), None);
                continue;
            }
            for port in ports {
                let proto = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                let range = match &port.port {
                    None => None,
                    Some(IntOrString::Int(n)) => {
                        let Ok(first) = u16::try_from(*n) else { continue };
                        let last = port.end_port.and_then(|e| u16::try_from(e).ok()).unwrap_or(first);
                        Some((first, last.max(first)))
                    }
                    Some(IntOrString::String(name)) => {
                        let key = (name.clone(), proto.to_ascii_uppercase());
                        if direction == Direction::Ingress {
                            // The pod this chain guards is the destination: its own number for the name.
                            let Some(n) = pod.named_ports.get(&key) else { continue };
                            Some((*n, *n))
                        } else {
                            // Egress: the name means each destination pod's own number.
                            let pairs: Vec<String> = peer_pods
                                .iter()
                                .filter_map(|p| Some(format!("{} . {}", p.ip?, p.named_ports.get(&key)?)))
                                .collect();
                            if !pairs.is_empty() {
                                let m = format!("meta l4proto {proto} ip daddr . th dport {{ {} }}", pairs.join(", "));
                                allowed.insert((join(peer, &m), None), None);
                            }
                            continue;
                        }
                    }
                };
                let ports = allowed.entry((peer.clone(), Some(proto))).or_insert(Some(Vec::new()));
                match (ports, range) {
                    (Some(ranges), Some(range)) => ranges.push(range),
                    // Any port of the protocol.
                    (ports, None) => *ports = None,
                    (None, Some(_)) => {}
                }
            }
        }
    }

    /// A peer as an address match and the pods it covers; none when it covers nothing.
    fn peer_match(&mut self, ns: &str, peer: &NetworkPolicyPeer, addr: &str) -> PeerMatch<'c> {
        let key = format!("{ns} {addr} {peer:?}");
        if let Some(known) = self.peers.get(&key) {
            return known.clone();
        }
        let c = self.c;
        // The pods are those the decision model matches, so rules and `weft trace` cannot disagree.
        let pods: Vec<&PodInfo> = c
            .pods
            .iter()
            .filter(|p| !p.host_network && p.ip.is_some() && peer_matches(c, ns, peer, &Endpoint::Pod(p)))
            .collect();
        let found = if let Some(block) = &peer.ip_block {
            let mut m = format!("{addr} {}", block.cidr);
            let except: Vec<&str> = block.except.iter().flatten().map(String::as_str).collect();
            if !except.is_empty() {
                let _ = write!(m, " {addr} != {{ {} }}", except.join(", "));
            }
            Some((m, pods))
        } else {
            // Named after the selectors, not the pods: the set outlives changes of who matches.
            let mut hasher = DefaultHasher::new();
            (
                ns,
                peer.namespace_selector.as_ref().map(|s| format!("{s:?}")),
                peer.pod_selector.as_ref().map(|s| format!("{s:?}")),
            )
                .hash(&mut hasher);
            let name = format!("pods-{:016x}", hasher.finish());
            let ips = pods.iter().filter_map(|p| p.ip).collect();
            self.sets.insert(name.clone(), ips);
            Some((format!("{addr} @{name}"), pods))
        };
        self.peers.insert(key, found.clone());
        found
    }
}

/// What a pod chain allows: (address match, protocol) → destination port ranges; no protocol: anything from
/// that peer; no ranges: any port of the protocol.
type Allowed = BTreeMap<(String, Option<String>), Option<Vec<(u16, u16)>>>;

/// Port ranges as one `th dport` operand: overlapping and adjacent ranges merged (an nft interval set refuses
/// overlaps), a single one without braces.
fn port_set(mut ranges: Vec<(u16, u16)>) -> String {
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(prev) if u32::from(first) <= u32::from(prev.1) + 1 => prev.1 = prev.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    let items: Vec<String> = merged
        .iter()
        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect();
    match items.as_slice() {
        [one] => one.clone(),
        _ => format!("{{ {} }}", items.join(", ")),
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a} {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_include_the_fixed_forward_chain() {
        let rules = PolicyRules {
            chains: [("ing-x/a".to_string(), vec!["accept".to_string(), "drop".to_string()])].into(),
            sets: [("s1".to_string(), ["10.244.1.2".parse().unwrap()].into())].into(),
            egress_pods: BTreeMap::new(),
            ingress_pods: [("10.244.1.2".to_string(), "jump ing-x/a".to_string())].into(),
        };
        assert_eq!(rules.counts(), (2, 5, 2));
        assert_eq!(PolicyRules::default().counts(), (1, 3, 0));
    }

    fn rules(chains: &[(&str, &[&str])], ingress: &[(&str, &str)]) -> PolicyRules {
        PolicyRules {
            chains: chains
                .iter()
                .map(|(name, rules)| (name.to_string(), rules.iter().map(|r| r.to_string()).collect()))
                .collect(),
            sets: BTreeMap::new(),
            egress_pods: BTreeMap::new(),
            ingress_pods: ingress.iter().map(|(ip, c)| (ip.to_string(), c.to_string())).collect(),
        }
    }

    fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn a_relabel_moves_set_elements_only() {
        let mut old = rules(
            &[("ing-x/a", &["ip saddr @pods-1 accept", "drop"])],
            &[("10.0.0.5", "ing-x/a")],
        );
        old.sets.insert("pods-1".into(), ips(&["10.0.0.2", "10.0.0.3"]));
        let mut new = old.clone();
        new.sets.insert("pods-1".into(), ips(&["10.0.0.3", "10.0.0.4"]));
        assert_eq!(
            old.diff(&new).unwrap(),
            "delete element inet weft-policy pods-1 { 10.0.0.2 }\nadd element inet weft-policy pods-1 { 10.0.0.4 }\n"
        );
        let (add, delete) = old.element_changes(&new).unwrap();
        let keys = |e: &[Elements]| -> Vec<(String, Vec<Vec<u8>>)> {
            e.iter()
                .filter(|e| !e.elements.is_empty())
                .map(|e| (e.set.clone(), e.elements.iter().map(|(k, _)| k.clone()).collect()))
                .collect()
        };
        assert_eq!(keys(&add), [("pods-1".to_string(), vec![vec![10, 0, 0, 4]])]);
        assert_eq!(keys(&delete), [("pods-1".to_string(), vec![vec![10, 0, 0, 2]])]);
        // A new chain is not an element change: it goes through nft.
        let mut grown = new.clone();
        grown.chains.insert("ing-x/b".into(), vec!["drop".into()]);
        assert!(new.element_changes(&grown).is_none());
    }

    #[test]
    fn a_change_touches_only_the_chains_and_elements_that_differ() {
        let old = rules(
            &[
                ("ing-x/a", &["ip saddr { 10.0.0.2 } accept", "drop"]),
                ("ing-x/b", &["drop"]),
            ],
            &[("10.0.0.5", "ing-x/a"), ("10.0.0.6", "ing-x/b")],
        );
        assert_eq!(old.diff(&old), None);
        let new = rules(
            &[
                ("ing-x/a", &["ip saddr { 10.0.0.2, 10.0.0.3 } accept", "drop"]),
                ("ing-x/c", &["drop"]),
            ],
            &[("10.0.0.5", "ing-x/a"), ("10.0.0.7", "ing-x/c")],
        );
        let script = old.diff(&new).unwrap();
        assert_eq!(
            script.lines().collect::<Vec<_>>(),
            [
                "flush chain inet weft-policy ing-x/a",
                "add rule inet weft-policy ing-x/a ip saddr { 10.0.0.2, 10.0.0.3 } accept",
                "add rule inet weft-policy ing-x/a drop",
                "add chain inet weft-policy ing-x/c",
                "add rule inet weft-policy ing-x/c drop",
                "delete element inet weft-policy ingress-pods { 10.0.0.6 }",
                "add element inet weft-policy ingress-pods { 10.0.0.7 : jump ing-x/c }",
                "flush chain inet weft-policy ing-x/b",
                "delete chain inet weft-policy ing-x/b",
            ]
        );
    }

    #[test]
    fn ports_of_one_peer_share_a_rule() {
        assert_eq!(port_set(vec![(80, 80)]), "80");
        assert_eq!(
            port_set(vec![(81, 81), (80, 80), (90, 95), (93, 99), (7, 7)]),
            "{ 7, 80-81, 90-99 }"
        );
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: s, namespace: x, labels: {app: s}}\nspec: {nodeName: n1, containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}\nstatus: {podIP: 10.0.0.5}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: x, labels: {role: c}}\nspec: {nodeName: n2, containers: [{name: c}]}\nstatus: {podIP: 10.0.0.6}\n";
        let mut text = text.to_string();
        for (i, port) in ["80", "81", "web", "82}, {port: 9000, endPort: 9010"]
            .iter()
            .enumerate()
        {
            text.push_str(&format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{app: s}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{role: c}}}}}}], ports: [{{port: {port}}}]}}]\n"));
        }
        let snap = weft_model::Snapshot::new(1, weft_model::parse(&text, "t").unwrap());
        let rules = plan(&Cluster::index(&snap), "n1");
        let chain = &rules.chains["ing-x/s"];
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert!(
            chain[0].ends_with("meta l4proto tcp th dport { 80-82, 8080, 9000-9010 } accept"),
            "{chain:?}"
        );
        // The drop is logged to the flow collector, naming the chain, rate-limited.
        assert_eq!(
            chain[1],
            "limit rate 50/second burst 100 packets log prefix \"weft-drop ing-x/s\" group 74"
        );
        assert_eq!(chain[2], "drop");
    }

    #[test]
    fn the_full_table_is_the_diff_from_nothing_after_the_skeleton() {
        let r = rules(&[("ing-x/a", &["drop"])], &[("10.0.0.5", "ing-x/a")]);
        let full = r.full();
        assert!(full.starts_with("add table inet weft-policy\ndelete table inet weft-policy\n"));
        assert!(full.ends_with(&PolicyRules::default().diff(&r).unwrap()));
    }
}
