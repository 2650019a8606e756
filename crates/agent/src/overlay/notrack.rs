//! The VXLAN underlay's own packets skip conntrack. Every encapsulated packet is otherwise tracked twice on each
//! node (the inner flow in forward, the outer UDP datagram in output on one node and in prerouting on the
//! other), and the outer entry serves nothing: no NAT, policy or Service applies to node-to-node VXLAN. Tracking
//! it cost a VXLAN path several per cent of throughput against the same path without weft (docs/benchmarks.md,
//! `weft bench datapath`). The match is narrow: UDP to the VXLAN port, on the uplink, to or from this node's own
//! address, so a pod's or a Service's UDP on the same port is still tracked.

use crate::error::{Error, Result};
use std::net::Ipv4Addr;

/// The table, in family `inet`; owned by the overlay like the `weft.1` device.
pub const TABLE: &str = "weft-overlay";

/// The whole table for VXLAN on `port` over `uplink` with this node's underlay address `ip`: declared, deleted
/// and declared again in one transaction, so it replaces whatever is there atomically.
pub fn script(uplink: &str, ip: Ipv4Addr, port: u16) -> String {
    format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\
         \tchain prerouting {{ type filter hook prerouting priority raw; policy accept; \
         iifname \"{uplink}\" ip daddr {ip} udp dport {port} notrack; }}\n\
         \tchain output {{ type filter hook output priority raw; policy accept; \
         oifname \"{uplink}\" ip saddr {ip} udp dport {port} notrack; }}\n}}\n"
    )
}

/// Whether the calling thread's network namespace has the table.
pub fn present() -> Result<bool> {
    let tables = weft_netlink::nftables::tables().map_err(Error::kernel("listing nftables tables"))?;
    Ok(tables.contains(&(NFPROTO_INET, TABLE.to_string())))
}

/// `inet`, as nfnetlink numbers families.
const NFPROTO_INET: u8 = 1;

/// Puts `wanted` (a [`script`]) in place, or removes the table when None; `present` says whether the kernel
/// has the table now.
pub fn apply(wanted: Option<&str>, present: bool) -> Result<()> {
    let script = match wanted {
        Some(script) => script.to_string(),
        None if present => format!("delete table inet {TABLE}\n"),
        None => return Ok(()),
    };
    weft_netlink::nft::apply(&script).map_err(Error::kernel(format!("writing nftables table inet {TABLE}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nodes_own_vxlan_datagrams_on_the_uplink_are_untracked() {
        let s = script("eth0", Ipv4Addr::new(172, 18, 0, 11), 8472);
        assert!(s.starts_with("add table inet weft-overlay\ndelete table inet weft-overlay\n"));
        assert!(s.contains(
            "hook prerouting priority raw; policy accept; iifname \"eth0\" ip daddr 172.18.0.11 udp dport 8472 notrack;"
        ));
        assert!(s.contains(
            "hook output priority raw; policy accept; oifname \"eth0\" ip saddr 172.18.0.11 udp dport 8472 notrack;"
        ));
    }
}
