//! Masquerade of pod traffic that leaves the pod network: a verdict map from pod address to the network's
//! chain, which returns for destinations inside the network (and multicast) and masquerades the rest.

use super::{Change, Journal, undo};
use crate::attach::fnv1a;
use crate::spec::Result;
use crate::spec::config::Attachment;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;

pub(crate) const KIND: &str = "masq";

/// The chain for a network and the destinations it leaves alone. Its rules follow from its name, so a
/// transaction that only adds elements never has to touch it: a missing chain makes the fast transaction
/// fail and the full one create it.
pub(crate) fn chain_name(network: &str, exclude: IpNet) -> String {
    let clean: String = network
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    format!("masq-{clean}-{:08x}", fnv1a(&[exclude.to_string().as_bytes()]) as u32)
}

impl Change {
    /// Masquerade traffic from `pod` unless it goes to `exclude` (the pod subnet, or the cluster CIDR) or
    /// to a multicast group.
    pub fn masquerade(&mut self, network: &str, pod: IpAddr, exclude: IpNet) {
        let exclude = exclude.trunc();
        let chain = chain_name(network, exclude);
        let (fam, multicast) = if pod.is_ipv4() {
            ("ip", "224.0.0.0/4")
        } else {
            ("ip6", "ff00::/8")
        };
        let flush = format!("flush chain inet weft-cni {chain}");
        if !self.setup.contains(&flush) {
            self.setup.extend([
                format!("add chain inet weft-cni {chain} {{ comment \"{network}: masquerade unless to {exclude}\"; }}"),
                flush,
                format!("add rule inet weft-cni {chain} {fam} daddr {exclude} return"),
                format!("add rule inet weft-cni {chain} {fam} daddr {multicast} return"),
                format!("add rule inet weft-cni {chain} masquerade"),
            ]);
        }
        let v = if pod.is_ipv4() { "4" } else { "6" };
        self.element(&format!("masq{v}"), format!("{pod} : jump {chain}"));
    }
}

/// Adds masquerade for each (pod address, excluded destination) of the attachment.
pub fn add(state_dir: &Path, network: &str, container_id: &str, ifname: &str, pods: &[(IpAddr, IpNet)]) -> Result<()> {
    let mut change = Change::default();
    for (ip, exclude) in pods {
        change.masquerade(network, *ip, *exclude);
    }
    change.commit(&Journal::new(state_dir, network, KIND, container_id, ifname)?)
}

pub fn del(state_dir: &Path, network: &str, container_id: &str, ifname: &str) -> Result<()> {
    undo(&Journal::new(state_dir, network, KIND, container_id, ifname)?).map(drop)
}

pub fn gc(state_dir: &Path, network: &str, valid: &[Attachment]) -> Result<()> {
    for journal in Journal::stale(state_dir, network, KIND, valid)? {
        undo(&journal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerade_is_one_map_element_per_pod_address_and_one_chain_per_exclusion() {
        let mut c = Change::default();
        c.masquerade("cbr0", "10.244.0.5".parse().unwrap(), "10.244.0.0/24".parse().unwrap());
        c.masquerade("cbr0", "10.244.0.6".parse().unwrap(), "10.244.0.0/24".parse().unwrap());
        c.masquerade("cbr0", "fd00::5".parse().unwrap(), "fd00::/64".parse().unwrap());
        let v4 = chain_name("cbr0", "10.244.0.0/24".parse().unwrap());
        let script = c.preview();
        assert!(
            script.contains(&format!("add element inet weft-cni masq4 {{ 10.244.0.5 : jump {v4} }}")),
            "{script}"
        );
        assert!(
            script.contains(&format!("add element inet weft-cni masq4 {{ 10.244.0.6 : jump {v4} }}")),
            "{script}"
        );
        assert!(
            script.contains(&format!("add rule inet weft-cni {v4} ip daddr 10.244.0.0/24 return")),
            "{script}"
        );
        assert!(
            script.contains("add element inet weft-cni masq6 { fd00::5 : jump masq-cbr0-"),
            "{script}"
        );
        assert_eq!(
            script
                .matches(&format!("add rule inet weft-cni {v4} masquerade"))
                .count(),
            1
        );
        assert_eq!(c.elements.len(), 3);
        assert!(chain_name("my net/1", "10.0.0.0/8".parse().unwrap()).starts_with("masq-my_net_1-"));
    }
}
