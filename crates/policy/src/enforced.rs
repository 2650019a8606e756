//! Whether the kernel enforces what the plan says for one pod: before `weft trace` claims DENIED it checks the
//! listing of the node's `inet weft-policy` (`nft list table`) holds the forward hook's lookup, the pod's
//! element in the direction's map and the pod's chain with every planned rule. A table someone flushed, and one
//! the agent is still restoring, fail the check.

use crate::decide::Direction;
use crate::plan::PolicyRules;
use std::net::Ipv4Addr;

/// True when `listing` (of the node's table) enforces `rules`' isolation of the pod at `ip` in `direction`.
pub fn enforced(listing: &str, rules: &PolicyRules, direction: Direction, ip: Ipv4Addr) -> bool {
    let (map, lookup) = match direction {
        Direction::Egress => (&rules.egress_pods, "ip saddr vmap @egress-pods"),
        Direction::Ingress => (&rules.ingress_pods, "ip daddr vmap @ingress-pods"),
    };
    let map_name = match direction {
        Direction::Egress => "egress-pods",
        Direction::Ingress => "ingress-pods",
    };
    let Some(chain) = map.get(&ip.to_string()) else {
        return false;
    };
    let forward = block(listing, "chain", "forward");
    let element = format!("{ip} : jump {chain}");
    let has_element = block(listing, "map", map_name)
        .is_some_and(|body| body.join(" ").split(['{', '}', ',']).any(|e| e.trim() == element));
    let rules_in_kernel = block(listing, "chain", chain).map(|body| body.iter().filter(|l| !l.is_empty()).count());
    forward.is_some_and(|body| body.contains(&lookup))
        && has_element
        && rules_in_kernel == rules.chains.get(chain).map(Vec::len)
}

/// The trimmed lines of the body of `KIND NAME { ... }` in an nft listing.
fn block<'a>(listing: &'a str, kind: &str, name: &str) -> Option<Vec<&'a str>> {
    let header = format!("{kind} {name} {{");
    let mut lines = listing.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    let body: Vec<&str> = lines.map(str::trim).take_while(|l| *l != "}").collect();
    // The base chain's declaration is not a rule.
    Some(body.into_iter().filter(|l| !l.starts_with("type ")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "table inet weft-policy {
\tmap egress-pods {
\t\ttype ipv4_addr : verdict
\t}

\tmap ingress-pods {
\t\ttype ipv4_addr : verdict
\t\telements = { 10.244.1.5 : jump ing-a,
\t\t\t     10.244.1.6 : jump ing-b }
\t}

\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tip saddr vmap @egress-pods
\t\tip daddr vmap @ingress-pods
\t}

\tchain ing-a {
\t\tip saddr 10.244.2.0/24 tcp dport { 80 } accept
\t\tdrop
\t}
}
";

    fn rules() -> PolicyRules {
        let mut rules = PolicyRules::default();
        rules.ingress_pods.insert("10.244.1.5".into(), "ing-a".into());
        rules.ingress_pods.insert("10.244.1.6".into(), "ing-b".into());
        rules.chains.insert(
            "ing-a".into(),
            vec!["ip saddr 10.244.2.0/24 tcp dport { 80 } accept".into(), "drop".into()],
        );
        rules.chains.insert("ing-b".into(), vec!["drop".into()]);
        rules
    }

    #[test]
    fn a_pod_is_enforced_when_lookup_element_and_chain_are_all_there() {
        let ip = |s: &str| s.parse().unwrap();
        assert!(enforced(LISTING, &rules(), Direction::Ingress, ip("10.244.1.5")));
        // Its chain is missing.
        assert!(!enforced(LISTING, &rules(), Direction::Ingress, ip("10.244.1.6")));
        // Not isolated in the plan, or in that direction.
        assert!(!enforced(LISTING, &rules(), Direction::Ingress, ip("10.244.1.7")));
        assert!(!enforced(LISTING, &rules(), Direction::Egress, ip("10.244.1.5")));
        // A flushed chain, a flushed forward chain, no table.
        let flushed = LISTING.replace("\t\tdrop\n", "");
        assert!(!enforced(&flushed, &rules(), Direction::Ingress, ip("10.244.1.5")));
        let no_lookup = LISTING.replace("\t\tip daddr vmap @ingress-pods\n", "");
        assert!(!enforced(&no_lookup, &rules(), Direction::Ingress, ip("10.244.1.5")));
        assert!(!enforced("", &rules(), Direction::Ingress, ip("10.244.1.5")));
    }
}
