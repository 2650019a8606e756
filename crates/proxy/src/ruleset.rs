//! The proxy's desired nftables state as data, and the text that gets the kernel there: a whole table at start,
//! afterwards one transaction holding only what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

pub const TABLE: &str = "inet weft";

/// Maps the skeleton declares and the planner fills.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";

/// The fixed part: hooks, the lookup maps and the helper chains. Every packet costs the same few rules and one
/// or two map lookups, however many Services exist. NodePorts answer on every local address, 127.0.0.1 too (the
/// agent sets `route_localnet` for that); packets from elsewhere to 127.0.0.0/8 that were not DNATed are
/// dropped, so that setting opens nothing else (kube-proxy's guard for CVE-2020-8558).
pub const SKELETON: &str = "\
table inet weft {
\tmap service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
\tmap service-nodeports { type inet_proto . inet_service : verdict; }
\tmap no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
\tmap no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
\tchain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
\tchain nat-output { type nat hook output priority -100; policy accept; jump services; }
\tchain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
\tchain filter-input { type filter hook input priority -110; policy accept; ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop; ct state new jump endpoints-check; ct state new jump nodeport-endpoints-check; }
\tchain filter-forward { type filter hook forward priority -110; policy accept; ct state new jump endpoints-check; }
\tchain filter-output { type filter hook output priority -110; policy accept; ct state new jump endpoints-check; ct state new jump nodeport-endpoints-check; }
\tchain services { ip daddr . meta l4proto . th dport vmap @service-ips; fib daddr type local meta l4proto . th dport vmap @service-nodeports; }
\tchain endpoints-check { ip daddr . meta l4proto . th dport vmap @no-endpoint-services; }
\tchain nodeport-endpoints-check { fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports; }
\tchain mark-for-masquerade { meta mark set meta mark | 0x4000; }
\tchain masquerading { meta mark & 0x4000 == 0 return; meta mark set meta mark ^ 0x4000; masquerade fully-random; }
\tchain reject-chain { reject; }
}
";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ruleset {
    /// Chains generated per Service port and per endpoint: name → rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Session-affinity sets: name → declaration.
    pub sets: BTreeMap<String, String>,
    /// Elements of the skeleton's maps: map → key → verdict.
    pub elements: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// UDP endpoints in use (address, port): when one goes, its conntrack entries go too.
    pub udp_endpoints: BTreeSet<(Ipv4Addr, u16)>,
}

impl Ruleset {
    pub fn element(&mut self, map: &'static str, key: String, verdict: String) {
        self.elements.entry(map).or_default().insert(key, verdict);
    }

    /// The whole table, replacing whatever is there in the same transaction (no moment without rules).
    pub fn full(&self) -> String {
        let mut out = format!("add table {TABLE}\ndelete table {TABLE}\n{SKELETON}");
        for (name, decl) in &self.sets {
            let _ = writeln!(out, "add set {TABLE} {name} {{ {decl} }}");
        }
        for name in self.chains.keys() {
            let _ = writeln!(out, "add chain {TABLE} {name}");
        }
        for (name, rules) in &self.chains {
            add_rules(&mut out, name, rules);
        }
        for (map, elements) in &self.elements {
            add_elements(&mut out, map, elements.iter().map(|(k, v)| format!("{k} : {v}")));
        }
        out
    }

    /// One transaction from `self` (what the kernel has) to `new`; `None` when nothing changed. New chains are
    /// declared before anything refers to them, and old ones are deleted only after nothing does.
    pub fn diff(&self, new: &Ruleset) -> Option<String> {
        let mut out = String::new();
        // A set's name carries its declaration (the affinity timeout), so a set is only ever added or deleted.
        for (name, decl) in new.sets.iter().filter(|(n, _)| !self.sets.contains_key(*n)) {
            let _ = writeln!(out, "add set {TABLE} {name} {{ {decl} }}");
        }
        for name in new.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(out, "add chain {TABLE} {name}");
        }
        for (name, rules) in &new.chains {
            match self.chains.get(name) {
                Some(old) if old == rules => {}
                Some(_) => {
                    let _ = writeln!(out, "flush chain {TABLE} {name}");
                    add_rules(&mut out, name, rules);
                }
                None => add_rules(&mut out, name, rules),
            }
        }
        let empty = BTreeMap::new();
        let maps: BTreeSet<&&str> = self.elements.keys().chain(new.elements.keys()).collect();
        for map in maps {
            let old = self.elements.get(*map).unwrap_or(&empty);
            let now = new.elements.get(*map).unwrap_or(&empty);
            let gone = old
                .iter()
                .filter(|(k, v)| now.get(*k) != Some(*v))
                .map(|(k, _)| k.clone());
            delete_elements(&mut out, map, gone);
            let added = now
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k} : {v}"));
            add_elements(&mut out, map, added);
        }
        let dropped: Vec<&String> = self.chains.keys().filter(|n| !new.chains.contains_key(*n)).collect();
        for name in &dropped {
            let _ = writeln!(out, "flush chain {TABLE} {name}");
        }
        for name in &dropped {
            let _ = writeln!(out, "delete chain {TABLE} {name}");
        }
        for name in self.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            let _ = writeln!(out, "delete set {TABLE} {name}");
        }
        (!out.is_empty()).then_some(out)
    }

    /// Chains, rules and map elements (for logs and benchmarks).
    pub fn counts(&self) -> (usize, usize, usize) {
        let rules = self.chains.values().map(Vec::len).sum();
        let elements = self.elements.values().map(BTreeMap::len).sum();
        (self.chains.len(), rules, elements)
    }
}

fn add_rules(out: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule {TABLE} {chain} {rule}");
    }
}

/// Elements go in batches: one statement per element would make large syncs parse slowly.
fn add_elements(out: &mut String, map: &str, elements: impl Iterator<Item = String>) {
    batched(out, "add", map, elements);
}

fn delete_elements(out: &mut String, map: &str, keys: impl Iterator<Item = String>) {
    batched(out, "delete", map, keys);
}

fn batched(out: &mut String, verb: &str, map: &str, items: impl Iterator<Item = String>) {
    let items: Vec<String> = items.collect();
    for chunk in items.chunks(500) {
        let _ = writeln!(out, "{verb} element {TABLE} {map} {{ {} }}", chunk.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(chains: &[(&str, &[&str])], elements: &[(&str, &str)]) -> Ruleset {
        let mut r = Ruleset::default();
        for (name, rules) in chains {
            r.chains
                .insert(name.to_string(), rules.iter().map(|s| s.to_string()).collect());
        }
        for (k, v) in elements {
            r.element(SERVICE_IPS, k.to_string(), v.to_string());
        }
        r
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let old = ruleset(
            &[
                ("svc-a", &["goto ep-a1"]),
                ("ep-a1", &["dnat ip to 10.0.0.1:80"]),
                ("svc-b", &["goto ep-b1"]),
            ],
            &[
                ("10.96.0.1 . tcp . 80", "goto svc-a"),
                ("10.96.0.2 . tcp . 80", "goto svc-b"),
            ],
        );
        assert_eq!(old.diff(&old), None);
        let new = ruleset(
            &[
                ("svc-a", &["goto ep-a2"]),
                ("ep-a2", &["dnat ip to 10.0.0.2:80"]),
                ("svc-b", &["goto ep-b1"]),
            ],
            &[
                ("10.96.0.1 . tcp . 80", "goto svc-a"),
                ("10.96.0.2 . tcp . 80", "goto svc-b"),
            ],
        );
        let script = old.diff(&new).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines,
            [
                "add chain inet weft ep-a2",
                "add rule inet weft ep-a2 dnat ip to 10.0.0.2:80",
                "flush chain inet weft svc-a",
                "add rule inet weft svc-a goto ep-a2",
                "flush chain inet weft ep-a1",
                "delete chain inet weft ep-a1",
            ]
        );
        assert!(!script.contains("svc-b"), "an unchanged Service is not touched");
    }

    #[test]
    fn elements_are_replaced_when_their_verdict_changes() {
        let old = ruleset(&[], &[("10.96.0.1 . tcp . 80", "goto svc-a")]);
        let new = ruleset(
            &[],
            &[
                ("10.96.0.1 . tcp . 80", "goto svc-c"),
                ("10.96.0.3 . udp . 53", "goto svc-d"),
            ],
        );
        let script = old.diff(&new).unwrap();
        assert_eq!(
            script,
            "delete element inet weft service-ips { 10.96.0.1 . tcp . 80 }\n\
             add element inet weft service-ips { 10.96.0.1 . tcp . 80 : goto svc-c, 10.96.0.3 . udp . 53 : goto svc-d }\n"
        );
    }
}
