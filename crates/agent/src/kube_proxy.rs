//! Finding a kube-proxy on the node. weft's service proxy replaces kube-proxy; with both running, the two program
//! the same ClusterIPs and NodePorts and whichever hook runs first wins, packet by packet. The agent does not
//! fight it: it says so (a warning and an Event on the Node) and leaves kube-proxy's rules alone.
//!
//! kube-proxy's nftables mode owns the tables `ip kube-proxy` and `ip6 kube-proxy`; its iptables mode puts the
//! chain `KUBE-SERVICES` in the `nat` table, which iptables-nft keeps as the nftables table `ip nat` (`ip6 nat`)
//! and iptables-legacy in the kernel's x_tables (read back with `iptables-legacy-save`).

use std::fmt;
use std::process::Command;

/// One sign of a kube-proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// kube-proxy's nftables mode: its table in `family` (ip or ip6).
    NftTable { family: String },
    /// kube-proxy's iptables mode: `KUBE-SERVICES` in the nat table of `family` (ip or ip6), through `backend`
    /// (iptables-nft or iptables-legacy).
    IptablesChain { family: String, backend: &'static str },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NftTable { family } => write!(f, "nftables table `{family} kube-proxy`"),
            Finding::IptablesChain { family, backend } => {
                write!(f, "chain KUBE-SERVICES in the {family} nat table ({backend})")
            }
        }
    }
}

/// What points at a kube-proxy in the calling thread's network namespace; empty when nothing does. Missing tools
/// (no `iptables-legacy-save`) count as nothing found; `nft` itself is needed by the agent anyway.
pub fn detect() -> Result<Vec<Finding>, weft_netlink::Error> {
    let tables = tables(&weft_netlink::nft::run(&["list", "tables"], "")?);
    let mut found = Vec::new();
    for family in ["ip", "ip6"] {
        if tables.iter().any(|(f, t)| f == family && t == "kube-proxy") {
            found.push(Finding::NftTable { family: family.into() });
        }
        if tables.iter().any(|(f, t)| f == family && t == "nat")
            && weft_netlink::nft::run(&["list", "chain", family, "nat", "KUBE-SERVICES"], "").is_ok()
        {
            found.push(Finding::IptablesChain {
                family: family.into(),
                backend: "iptables-nft",
            });
        }
    }
    found.extend(legacy());
    Ok(found)
}

/// kube-proxy's chain in the legacy x_tables nat tables. Only read when the kernel has a legacy nat table at all
/// (`ip_tables_names` of the namespace), so that looking never loads the legacy modules.
fn legacy() -> Vec<Finding> {
    let mut found = Vec::new();
    for (family, names, save) in [
        ("ip", "/proc/thread-self/net/ip_tables_names", "iptables-legacy-save"),
        ("ip6", "/proc/thread-self/net/ip6_tables_names", "ip6tables-legacy-save"),
    ] {
        let has_nat = std::fs::read_to_string(names).is_ok_and(|t| t.lines().any(|l| l.trim() == "nat"));
        if !has_nat {
            continue;
        }
        let Ok(out) = Command::new(save).args(["-t", "nat"]).output() else {
            continue;
        };
        if out.status.success() && saves_kube_services(&String::from_utf8_lossy(&out.stdout)) {
            found.push(Finding::IptablesChain {
                family: family.into(),
                backend: "iptables-legacy",
            });
        }
    }
    found
}

/// The (family, name) of every table in `nft list tables` output.
fn tables(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "table").then_some(())?;
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Whether `iptables-save` output declares the chain `KUBE-SERVICES` (`:KUBE-SERVICES - [0:0]`).
fn saves_kube_services(save: &str) -> bool {
    save.lines()
        .any(|l| l.split_whitespace().next() == Some(":KUBE-SERVICES"))
}

/// The one-line warning the agent logs and records in the Node's Event.
pub fn warning(found: &[Finding]) -> String {
    let signs: Vec<String> = found.iter().map(ToString::to_string).collect();
    format!(
        "kube-proxy is running on this node ({}): it and weft's service proxy would both handle Services; \
         weft leaves kube-proxy's rules alone, so remove kube-proxy (docs/kube-proxy.md)",
        signs.join(", ")
    )
}

/// Records `message` as a Warning Event on the Node `node` (reason `KubeProxyRunning`), so that
/// `kubectl describe node` shows it; an agent restarting counts the same Event up.
pub async fn record(client: &kube::Client, node: &str, message: &str) -> Result<(), kube::Error> {
    crate::node_event::record(client, node, "KubeProxyRunning", "weft-kube-proxy", message).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_read_from_nft_list_tables() {
        let listing = "table inet weft\ntable ip kube-proxy\ntable ip6 nat\n";
        assert_eq!(
            tables(listing),
            [("inet", "weft"), ("ip", "kube-proxy"), ("ip6", "nat")].map(|(f, t)| (f.to_string(), t.to_string()))
        );
        assert!(tables("").is_empty());
    }

    #[test]
    fn kube_services_is_found_in_iptables_save_output() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";
        assert!(saves_kube_services(save));
        assert!(!saves_kube_services(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A X -j KUBE-SERVICES-X\nCOMMIT\n"
        ));
    }

    #[test]
    fn the_warning_names_every_sign() {
        let text = warning(&[
            Finding::NftTable { family: "ip".into() },
            Finding::IptablesChain {
                family: "ip".into(),
                backend: "iptables-nft",
            },
        ]);
        assert!(text.contains("`ip kube-proxy`"), "{text}");
        assert!(
            text.contains("KUBE-SERVICES in the ip nat table (iptables-nft)"),
            "{text}"
        );
    }
}
