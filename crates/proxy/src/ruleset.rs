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
        let changes = self.changes(new);
        (!changes.is_empty()).then(|| script(&changes))
    }

    /// The steps of [`Ruleset::diff`] as data, in order (the applier sends them over netlink when it can).
    pub fn changes<'a>(&'a self, new: &'a Ruleset) -> Vec<Change<'a>> {
        // Every comparison walks two sorted maps side by side: at 10,000 Services a lookup per name costs more
        // than the rest of the transaction.
        let mut out = Vec::new();
        let mut dropped_sets = Vec::new();
        // A set's name carries its declaration (the affinity timeout), so a set is only ever added or deleted.
        for (name, old, now) in merge(&self.sets, &new.sets) {
            match (old, now) {
                (None, Some(decl)) => out.push(Change::AddSet { name, decl }),
                (Some(_), None) => dropped_sets.push(Change::DeleteSet(name)),
                _ => {}
            }
        }
        let mut rules = Vec::new();
        let mut dropped = Vec::new();
        for (name, old, now) in merge(&self.chains, &new.chains) {
            match (old, now) {
                (Some(old), Some(now)) if old == now => continue,
                (Some(_), Some(_)) => rules.push(Change::FlushChain(name)),
                (None, Some(_)) => out.push(Change::AddChain(name)),
                (Some(_), None) => dropped.push(name),
                (None, None) => {}
            }
            rules.extend(
                now.iter()
                    .flat_map(|r| r.iter())
                    .map(|rule| Change::AddRule { chain: name, rule }),
            );
        }
        out.append(&mut rules);
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let maps: BTreeSet<&&str> = self.elements.keys().chain(new.elements.keys()).collect();
        for map in maps {
            let old = self.elements.get(*map).unwrap_or(&EMPTY);
            let now = new.elements.get(*map).unwrap_or(&EMPTY);
            let (mut gone, mut added) = (Vec::new(), Vec::new());
            for (key, old, now) in merge(old, now) {
                if old == now {
                    continue;
                }
                if old.is_some() {
                    gone.push(key);
                }
                if let Some(verdict) = now {
                    added.push((key, verdict.as_str()));
                }
            }
            for keys in gone.chunks(ELEMENTS_PER_STATEMENT) {
                out.push(Change::DeleteElements {
                    map,
                    keys: keys.to_vec(),
                });
            }
            for elements in added.chunks(ELEMENTS_PER_STATEMENT) {
                out.push(Change::AddElements {
                    map,
                    elements: elements.to_vec(),
                });
            }
        }
        out.extend(dropped.iter().map(|name| Change::FlushChain(name)));
        out.extend(dropped.iter().map(|name| Change::DeleteChain(name)));
        out.append(&mut dropped_sets);
        out
    }

    /// Chains, rules and map elements (for logs and benchmarks).
    pub fn counts(&self) -> (usize, usize, usize) {
        let rules = self.chains.values().map(Vec::len).sum();
        let elements = self.elements.values().map(BTreeMap::len).sum();
        (self.chains.len(), rules, elements)
    }
}

/// The keys of two sorted maps in order, each with its value on either side.
fn merge<'a, V>(
    old: &'a BTreeMap<String, V>,
    new: &'a BTreeMap<String, V>,
) -> impl Iterator<Item = (&'a str, Option<&'a V>, Option<&'a V>)> {
    let (mut old, mut new) = (old.iter().peekable(), new.iter().peekable());
    std::iter::from_fn(move || {
        let order = match (old.peek(), new.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        Some(match order {
            std::cmp::Ordering::Less => old.next().map(|(k, v)| (k.as_str(), Some(v), None))?,
            std::cmp::Ordering::Greater => new.next().map(|(k, v)| (k.as_str(), None, Some(v)))?,
            std::cmp::Ordering::Equal => {
                let (k, a) = old.next()?;
                let (_, b) = new.next()?;
                (k.as_str(), Some(a), Some(b))
            }
        })
    })
}

/// One step of a transaction on [`TABLE`]: an nft statement, as data.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<'a> {
    /// A set and its declaration (`type ipv4_addr; ...`).
    AddSet {
        name: &'a str,
        decl: &'a str,
    },
    AddChain(&'a str),
    /// Removes every rule of the chain.
    FlushChain(&'a str),
    /// Appends one rule (nft text) to a chain.
    AddRule {
        chain: &'a str,
        rule: &'a str,
    },
    /// Map elements by key.
    DeleteElements {
        map: &'a str,
        keys: Vec<&'a str>,
    },
    /// Map elements: key and verdict.
    AddElements {
        map: &'a str,
        elements: Vec<(&'a str, &'a str)>,
    },
    DeleteChain(&'a str),
    DeleteSet(&'a str),
}

impl std::fmt::Display for Change<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Change::AddSet { name, decl } => write!(f, "add set {TABLE} {name} {{ {decl} }}"),
            Change::AddChain(name) => write!(f, "add chain {TABLE} {name}"),
            Change::FlushChain(name) => write!(f, "flush chain {TABLE} {name}"),
            Change::AddRule { chain, rule } => write!(f, "add rule {TABLE} {chain} {rule}"),
            Change::DeleteElements { map, keys } => {
                write!(f, "delete element {TABLE} {map} {{ {} }}", keys.join(", "))
            }
            Change::AddElements { map, elements } => {
                let elements: Vec<String> = elements.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                write!(f, "add element {TABLE} {map} {{ {} }}", elements.join(", "))
            }
            Change::DeleteChain(name) => write!(f, "delete chain {TABLE} {name}"),
            Change::DeleteSet(name) => write!(f, "delete set {TABLE} {name}"),
        }
    }
}

/// The nft script of `changes`, one statement a line.
pub fn script(changes: &[Change]) -> String {
    let mut out = String::new();
    for change in changes {
        let _ = writeln!(out, "{change}");
    }
    out
}

/// Elements go in batches: one statement per element would make large syncs parse slowly.
const ELEMENTS_PER_STATEMENT: usize = 500;

fn add_rules(out: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule {TABLE} {chain} {rule}");
    }
}

fn add_elements(out: &mut String, map: &str, elements: impl Iterator<Item = String>) {
    let items: Vec<String> = elements.collect();
    for chunk in items.chunks(ELEMENTS_PER_STATEMENT) {
        let _ = writeln!(out, "add element {TABLE} {map} {{ {} }}", chunk.join(", "));
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
