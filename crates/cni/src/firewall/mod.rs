//! weft-cni's nftables rules on the node: masquerade for pod traffic and port mappings (hostPort), all in
//! one table, `inet weft-cni`, that weft-cni owns and nobody else touches.
//!
//! The static part (chains, maps, sets, a handful of rules) is declared again by every script, idempotently:
//! `add` of an existing table/map/set is a no-op and the static chains are flushed and refilled inside the
//! same transaction. Per-pod state is only ever map and set elements, so the per-packet cost is a few hash
//! lookups however many pods and mappings there are.
//!
//! Every element an attachment adds is written to a journal file first; DEL and GC read it back, so they
//! work without prevResult and after the pod's namespace is gone.

pub mod masq;
pub mod portmap;

pub use crate::journal::Journal;
use crate::spec::Result;

pub const TABLE: &str = "inet weft-cni";

/// The static ruleset, declared by every transaction.
const BASE: &str = "\
add table inet weft-cni
add map inet weft-cni masq4 { type ipv4_addr : verdict; }
add map inet weft-cni masq6 { type ipv6_addr : verdict; }
add map inet weft-cni hostports4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet weft-cni hostports6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
add map inet weft-cni hostip-ports4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet weft-cni hostip-ports6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
add set inet weft-cni hairpin4 { type ipv4_addr . ipv4_addr; }
add set inet weft-cni hairpin6 { type ipv6_addr . ipv6_addr; }
add chain inet weft-cni hostports
flush chain inet weft-cni hostports
add rule inet weft-cni hostports dnat ip to ip daddr . meta l4proto . th dport map @hostip-ports4
add rule inet weft-cni hostports dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostip-ports6
add rule inet weft-cni hostports fib daddr type local dnat ip to meta l4proto . th dport map @hostports4
add rule inet weft-cni hostports fib daddr type local dnat ip6 to meta l4proto . th dport map @hostports6
add chain inet weft-cni prerouting { type nat hook prerouting priority -100; }
flush chain inet weft-cni prerouting
add rule inet weft-cni prerouting jump hostports
add chain inet weft-cni output { type nat hook output priority -100; }
flush chain inet weft-cni output
add rule inet weft-cni output jump hostports
add chain inet weft-cni postrouting { type nat hook postrouting priority 100; }
flush chain inet weft-cni postrouting
add rule inet weft-cni postrouting ct status dnat ip saddr . ip daddr @hairpin4 masquerade
add rule inet weft-cni postrouting ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade
add rule inet weft-cni postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade
add rule inet weft-cni postrouting ip saddr vmap @masq4
add rule inet weft-cni postrouting ip6 saddr vmap @masq6
";

/// One element of a map or set in the table, as nft writes it (`tcp . 8080 : 10.244.0.5 . 80`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    pub set: String,
    pub text: String,
}

/// A transaction being built: declarations beyond the base (per-network chains) and elements.
#[derive(Debug, Default)]
pub struct Change {
    setup: Vec<String>,
    pub elements: Vec<Element>,
}

impl Element {
    fn line(&self) -> String {
        format!("{}\t{}", self.set, self.text)
    }

    fn from_line(line: &str) -> Option<Element> {
        let (set, text) = line.split_once('\t')?;
        Some(Element {
            set: set.to_string(),
            text: text.to_string(),
        })
    }
}

impl Change {
    fn element(&mut self, set: &str, text: String) {
        let e = Element {
            set: set.to_string(),
            text,
        };
        if !self.elements.contains(&e) {
            self.elements.push(e);
        }
    }

    fn script(&self, add: &[Element], delete: &[Element]) -> String {
        let mut s = String::from(BASE);
        for line in &self.setup {
            s.push_str(line);
            s.push('\n');
        }
        // A verdict element needs its chain even when the table was lost (a reboot) since it was added.
        for e in delete {
            if let Some((_, chain)) = e.text.split_once(" : jump ") {
                s.push_str(&format!("add chain {TABLE} {chain}\n"));
            }
        }
        // Deleting a missing element fails a transaction, so each is added (a no-op when present) first.
        for e in add.iter().chain(delete) {
            s.push_str(&format!("add element {TABLE} {} {{ {} }}\n", e.set, e.text));
        }
        for e in delete {
            let key = e.text.split(" : ").next().unwrap_or(&e.text);
            s.push_str(&format!("delete element {TABLE} {} {{ {key} }}\n", e.set));
        }
        s
    }

    /// Journals the elements, then applies them in one transaction; on failure the journal is removed.
    pub fn commit(self, journal: &Journal) -> Result<()> {
        if self.elements.is_empty() {
            return Ok(());
        }
        journal.write(&self.elements.iter().map(Element::line).collect::<Vec<_>>())?;
        weft_netlink::nft::apply(&self.script(&self.elements, &[])).map_err(|e| {
            let _ = journal.remove();
            e.into()
        })
    }

    /// The text of the transaction `commit` would apply (what a reviewer reads).
    pub fn preview(&self) -> String {
        self.script(&self.elements, &[])
    }
}

/// Removes what the journal says the attachment added, in one transaction, then the journal.
pub fn undo(journal: &Journal) -> Result<Vec<Element>> {
    let elements: Vec<Element> = journal.read()?.iter().filter_map(|l| Element::from_line(l)).collect();
    if !elements.is_empty() {
        weft_netlink::nft::apply(&Change::default().script(&[], &elements))?;
    }
    journal.remove()?;
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_part_has_no_per_pod_rules_and_elements_are_deduplicated() {
        let mut c = Change::default();
        c.element("masq4", "10.244.0.5 : jump masq-cbr0".into());
        c.element("masq4", "10.244.0.5 : jump masq-cbr0".into());
        assert_eq!(c.elements.len(), 1);
        assert!(!BASE.contains("10.244"), "per-pod data in the static rules");
        let script = c.script(&[], &c.elements.clone());
        assert!(script.ends_with(
            "add element inet weft-cni masq4 { 10.244.0.5 : jump masq-cbr0 }\ndelete element inet weft-cni masq4 { 10.244.0.5 }\n"
        ));
    }
}
