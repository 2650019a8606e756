//! weft-cni's nftables rules on the node: masquerade for pod traffic and port mappings (hostPort), all in
//! one table, `inet weft-cni`, that weft-cni owns and nobody else touches.
//!
//! Per-pod state is only ever map and set elements, so the per-packet cost is a few hash lookups however
//! many pods and mappings there are, and an ADD or DEL is one transaction of element changes (~2 ms).
//! The static part (chains, maps, sets, a handful of rules) is declared only when that fast transaction
//! fails because it is missing or from another schema version: then one transaction declares everything
//! idempotently (static chains flushed and refilled, which costs the kernel ~15 ms) and adds the elements.
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
add set inet weft-cni schema-1 { type inet_service; }
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

/// Fails unless the table has this schema version: adding to a missing set fails the transaction. (Not a
/// delete: a transaction that deletes anything costs an RCU grace period, ~12 ms, when nft's socket closes.)
const SCHEMA_CHECK: &str = "add element inet weft-cni schema-1 { 1 }\n";

/// One element of a map or set in the table, as nft writes it (`tcp . 8080 : 10.244.0.5 . 80`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    pub set: String,
    pub text: String,
}

/// A transaction being built: declarations beyond the base (per-network chains) and the attachment's
/// elements.
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

    /// The element changes alone, or (`full`) with every declaration in front.
    fn script(&self, full: bool, add: &[Element], delete: &[Element]) -> String {
        let mut s = String::new();
        if full {
            s.push_str(BASE);
            for line in &self.setup {
                s.push_str(line);
                s.push('\n');
            }
        } else {
            s.push_str(SCHEMA_CHECK);
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
        self.apply(&self.elements, &[]).inspect_err(|_| {
            let _ = journal.remove();
        })
    }

    /// Tries the fast transaction; if it fails (missing or outdated table, or a real conflict), the full
    /// one, whose error is the one reported.
    fn apply(&self, add: &[Element], delete: &[Element]) -> Result<()> {
        if weft_netlink::nft::apply(&self.script(false, add, delete)).is_ok() {
            return Ok(());
        }
        Ok(weft_netlink::nft::apply(&self.script(true, add, delete))?)
    }

    /// The full transaction `commit` may apply (what a reviewer reads).
    pub fn preview(&self) -> String {
        self.script(true, &self.elements, &[])
    }
}

/// Removes what the journal says the attachment added, in one transaction, then the journal.
pub fn undo(journal: &Journal) -> Result<Vec<Element>> {
    let elements: Vec<Element> = journal.read()?.iter().filter_map(|l| Element::from_line(l)).collect();
    if !elements.is_empty() {
        Change::default().apply(&[], &elements)?;
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
        let script = c.script(false, &[], &c.elements.clone());
        assert!(script.starts_with(SCHEMA_CHECK), "{script}");
        assert!(script.ends_with(
            "add element inet weft-cni masq4 { 10.244.0.5 : jump masq-cbr0 }\ndelete element inet weft-cni masq4 { 10.244.0.5 }\n"
        ));
    }
}
