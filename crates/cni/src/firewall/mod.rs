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
use crate::state::{self, Lock};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;
use weft_netlink::nftables::{self, Data, Elements};

const NFPROTO_INET: u8 = 1;

pub const TABLE: &str = "inet weft-cni";
const TABLE_NAME: &str = "weft-cni";

/// The static ruleset, declared by every transaction.
const BASE: &str = "\
add table inet weft-cni
add set inet weft-cni schema-2 { type inet_service; }
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
add rule inet weft-cni hostports meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @hostports4
add rule inet weft-cni hostports meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @hostports6
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
const SCHEMA_CHECK: &str = "add element inet weft-cni schema-2 { 1 }\n";
const SCHEMA_SET: &str = "schema-2";

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

/// One field of an element as the kernel stores it: addresses as octets, protocols as their number, ports
/// big-endian.
fn field(token: &str) -> Option<Vec<u8>> {
    if let Ok(ip) = token.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        });
    }
    match token {
        "tcp" => Some(vec![6]),
        "udp" => Some(vec![17]),
        "sctp" => Some(vec![132]),
        port => port.parse::<u16>().ok().map(|p| p.to_be_bytes().to_vec()),
    }
}

/// A key or value; in a concatenation every field takes a whole number of 32-bit registers.
fn fields(side: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = side.split(" . ").collect();
    if let [single] = parts.as_slice() {
        return field(single);
    }
    let mut out = Vec::new();
    for part in parts {
        let mut f = field(part)?;
        f.resize(f.len().next_multiple_of(4), 0);
        out.extend(f);
    }
    Some(out)
}

/// Groups elements by set in their wire form; None if any is not in a form weft writes.
fn wire(elements: &[Element]) -> Option<Vec<Elements>> {
    let mut sets = vec![Elements {
        set: SCHEMA_SET.into(),
        elements: vec![(1u16.to_be_bytes().to_vec(), None)],
    }];
    for e in elements {
        let (key, data) = match e.text.split_once(" : ") {
            Some((k, d)) => (k, Some(d)),
            None => (e.text.as_str(), None),
        };
        let data = match data {
            None => None,
            Some(d) => Some(match d.strip_prefix("jump ") {
                Some(chain) => Data::Jump(chain.to_string()),
                None => Data::Value(fields(d)?),
            }),
        };
        let entry = (fields(key)?, data);
        match sets.iter_mut().find(|s| s.set == e.set) {
            Some(set) => set.elements.push(entry),
            None => sets.push(Elements {
                set: e.set.clone(),
                elements: vec![entry],
            }),
        }
    }
    Some(sets)
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

    /// Journals the elements, then applies them in one transaction. What an earlier ADD of the same
    /// attachment journaled (a retry without DEL) stays in the journal, so DEL still finds it; on failure the
    /// journal goes back to what it was.
    pub fn commit(self, journal: &Journal) -> Result<()> {
        if self.elements.is_empty() {
            return Ok(());
        }
        let _lock = journal.table_lock()?;
        let before = journal.read()?;
        let mut lines = before.clone();
        lines.extend(self.elements.iter().map(Element::line).filter(|l| !before.contains(l)));
        journal.write(&lines)?;
        self.apply(&self.elements, &[]).inspect_err(|_| {
            let _ = if before.is_empty() {
                journal.remove()
            } else {
                journal.write(&before)
            };
        })
    }

    /// Tries the fast transaction, sent over nfnetlink by the plugin itself (no `nft` process): the schema
    /// check, every element added (a no-op when present with the same value), then the deletions. If it fails
    /// (missing or outdated table, a key now holding another value, or a real conflict), the full one through
    /// `nft`, whose error is the one reported. The socket is not closed here: after a deletion its release
    /// waits for an RCU grace period holding the nftables commit mutex, which [`crate::detach::linger`]
    /// leaves to this node's releaser (see [`crate::detach`]).
    fn apply(&self, add: &[Element], delete: &[Element]) -> Result<()> {
        let all: Vec<Element> = add.iter().chain(delete).cloned().collect();
        let sent = wire(&all).zip(wire(delete)).map(|(adds, mut dels)| {
            dels.remove(0); // the schema check is in the additions
            nftables::transact(TABLE_NAME, NFPROTO_INET, &adds, &dels)
        });
        if let Some(Ok(socket)) = sent {
            if delete.is_empty() {
                crate::detach::offer(socket);
            } else {
                crate::detach::linger(socket);
            }
            return Ok(());
        }
        Ok(weft_netlink::nft::apply(&self.script(true, add, delete))?)
    }

    /// The full transaction `commit` may apply (what a reviewer reads).
    pub fn preview(&self) -> String {
        self.script(true, &self.elements, &[])
    }
}

/// Removes what the journal says the attachment added, in one transaction, then the journal. When that
/// transaction fails (a key now holds another pod's value: its mapping was freed and taken since), each
/// element is removed on its own and the ones that are no longer ours are left alone.
pub fn undo(journal: &Journal) -> Result<Vec<Element>> {
    let _lock = journal.table_lock()?;
    let elements: Vec<Element> = journal.read()?.iter().filter_map(|l| Element::from_line(l)).collect();
    if !elements.is_empty() && Change::default().apply(&[], &elements).is_err() {
        for e in &elements {
            let _ = Change::default().apply(&[], std::slice::from_ref(e));
        }
    }
    journal.remove()?;
    Ok(elements)
}

/// Journal kinds that record elements of this table: the `weft` type's, the bridge type's masquerade, portmap's.
const JOURNALED: [&str; 3] = [
    crate::plugins::weft::FIREWALL,
    masq::KIND,
    crate::plugins::portmap::KIND,
];

/// What [`restore`] put back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub elements: usize,
    /// Journaled elements left out: masquerade into a chain of another exclusion than the one given (its rules
    /// cannot be told from its name), or a key the table already holds with another value.
    pub skipped: usize,
}

/// Declares the table and adds every element the journals under `state_dir` record, in one transaction:
/// what the node agent runs when someone else removed or changed the table (see [`Restoration`]).
pub fn restore(state_dir: &Path, exclude: IpNet) -> Result<Restored> {
    Restoration::prepare(state_dir, exclude)?.apply()
}

/// The table as weft-cni's journals record it, ready to put back. Present elements stay (adding one is a
/// no-op); the static chains are flushed and refilled in the same transaction, so no packet sees them empty.
/// Masquerade chains are rebuilt for `exclude` (the cluster CIDR, as the `weft` type adds them). Holds the lock
/// every ADD and DEL takes until dropped, so none commits between the reading of the journals and the
/// transaction (a DEL's element would come back for good).
pub struct Restoration {
    _lock: Lock,
    change: Change,
    skipped: usize,
}

impl Restoration {
    pub fn prepare(state_dir: &Path, exclude: IpNet) -> Result<Restoration> {
        state::ensure_dir(state_dir)?;
        let lock = Lock::acquire(&state_dir.join(TABLE_LOCK))?;
        let mut change = Change::default();
        let mut skipped = 0;
        let masq_chain = |network: &str| masq::chain_name(network, exclude.trunc());
        for network in subdirectories(state_dir) {
            for kind in JOURNALED {
                for journal in Journal::all(state_dir, &network, kind)? {
                    let lines = journal.read()?;
                    for e in lines.iter().filter_map(|l| Element::from_line(l)) {
                        let masq = e
                            .set
                            .starts_with("masq")
                            .then(|| e.text.split_once(" : jump "))
                            .flatten();
                        match masq {
                            Some((ip, chain)) => match ip.parse::<IpAddr>() {
                                Ok(ip) if chain == masq_chain(&network) => change.masquerade(&network, ip, exclude),
                                _ => skipped += 1,
                            },
                            None => change.element(&e.set, e.text.clone()),
                        }
                    }
                }
            }
        }
        Ok(Restoration {
            _lock: lock,
            change,
            skipped,
        })
    }

    /// The whole table as one transaction's nft script, to apply alone or together with other tables. With
    /// the schema element the fast transactions add, so a whole table lists as it did.
    pub fn script(&self) -> String {
        format!("{}{SCHEMA_CHECK}", self.change.script(true, &self.change.elements, &[]))
    }

    /// What the table holds once [`Restoration::script`] was applied.
    pub fn restored(&self) -> Restored {
        Restored {
            elements: self.change.elements.len(),
            skipped: self.skipped,
        }
    }

    /// Applies the script on its own; when one element conflicts with what the table holds, the declarations
    /// and then each element alone.
    pub fn apply(self) -> Result<Restored> {
        if weft_netlink::nft::apply(&self.script()).is_ok() {
            return Ok(self.restored());
        }
        let mut restored = Restored {
            elements: 0,
            skipped: self.skipped,
        };
        let change = &self.change;
        weft_netlink::nft::apply(&format!("{}{SCHEMA_CHECK}", change.script(true, &[], &[])))?;
        for e in &change.elements {
            match weft_netlink::nft::apply(&change.script(false, std::slice::from_ref(e), &[])) {
                Ok(()) => restored.elements += 1,
                Err(_) => restored.skipped += 1,
            }
        }
        Ok(restored)
    }
}

/// The lock file, in weft-cni's state directory (its leading dot keeps it out of directory walks).
pub(crate) const TABLE_LOCK: &str = ".firewall.lock";

/// Names of the entries of `dir` but temporaries, lock files and IPAM's; none when it does not exist.
fn subdirectories(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "ipam")
        .collect();
    names.sort();
    names
}

/// Whether nft's listing of the table holds `element` as a whole element, not as part of a longer one
/// (`. 80` must not match `. 8080`).
pub fn listed(table: &str, element: &str) -> bool {
    table.match_indices(element).any(|(at, _)| {
        let before = table[..at].chars().next_back();
        let after = table[at + element.len()..].chars().next();
        matches!(before, Some(' ' | '\t' | '{' | '\n')) && matches!(after, None | Some(',' | ' ' | '}' | '\n'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_take_the_kernels_layout() {
        let e = |set: &str, text: &str| Element {
            set: set.into(),
            text: text.into(),
        };
        let sets = wire(&[
            e("masq4", "10.244.0.5 : jump masq-cbr0-1"),
            e("hostports4", "tcp . 8080 : 10.244.0.5 . 80"),
            e("hairpin4", "10.244.0.5 . 10.244.0.5"),
        ])
        .unwrap();
        assert_eq!(sets[0].elements[0].0, vec![0, 1], "schema check");
        assert_eq!(
            sets[1].elements[0],
            (vec![10, 244, 0, 5], Some(Data::Jump("masq-cbr0-1".into())))
        );
        assert_eq!(
            sets[2].elements[0],
            (
                vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0],
                Some(Data::Value(vec![10, 244, 0, 5, 0, 80, 0, 0]))
            )
        );
        assert_eq!(sets[3].elements[0].0.len(), 8);
        assert!(wire(&[e("x", "bogus . 1")]).is_none());
    }

    #[test]
    fn listed_matches_whole_elements_only() {
        let table = "elements = { tcp . 8080 : 10.0.0.5 . 8080,\n\t\t\t     udp . 53 : 10.0.0.6 . 53 }";
        assert!(listed(table, "tcp . 8080 : 10.0.0.5 . 8080"));
        assert!(listed(table, "udp . 53 : 10.0.0.6 . 53"));
        assert!(!listed(table, "tcp . 8080 : 10.0.0.5 . 80"));
        assert!(!listed(table, "cp . 8080 : 10.0.0.5 . 8080"));
    }

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
