//! The pure rules of a pool's `Routable` condition: with `vxlanMode: Never` pods are routed directly via each
//! node's underlay address, which only works between nodes on one subnet. Nodes' subnets come from the
//! `weft.dev/ipv4-address` annotation each agent writes on its Node.

use super::resource::{Condition, VxlanMode};
use super::{ADDRESS_ANNOTATION, IPPool};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use weft_model::k8s_openapi::api::core::v1::Node;

pub const ROUTABLE: &str = "Routable";

/// Each node's underlay subnet, as its annotation says (nodes without one are left out).
pub fn subnets<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeMap<String, Ipv4Net> {
    nodes
        .into_iter()
        .filter_map(|n| {
            let address = n.metadata.annotations.as_ref()?.get(ADDRESS_ANNOTATION)?;
            Some((n.metadata.name.clone()?, address.parse::<Ipv4Net>().ok()?.trunc()))
        })
        .collect()
}

/// The pool's `Routable` condition for nodes on `subnets` (lastTransitionTime left to the writer).
pub fn condition(pool: &IPPool, subnets: &BTreeMap<String, Ipv4Net>) -> Condition {
    let mut by_subnet: BTreeMap<Ipv4Net, Vec<&str>> = BTreeMap::new();
    for (node, subnet) in subnets {
        by_subnet.entry(*subnet).or_default().push(node);
    }
    let listed = by_subnet
        .iter()
        .map(|(subnet, nodes)| format!("{subnet} ({})", nodes.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let (routable, reason, message) = match pool.spec.vxlan_mode {
        VxlanMode::Always => (
            true,
            "Encapsulated",
            "every node reaches other nodes' pods through VXLAN".to_string(),
        ),
        VxlanMode::CrossSubnet => (
            true,
            "CrossSubnet",
            format!("pods are routed directly within a subnet and through VXLAN across subnets: {listed}"),
        ),
        VxlanMode::Never if by_subnet.len() > 1 => (
            false,
            "NodesOnDifferentSubnets",
            format!(
                "vxlanMode Never routes pods directly via each node's address, but the nodes are on {} subnets: \
                 {listed}; pods cannot reach pods of nodes on another subnet (use CrossSubnet or Always)",
                by_subnet.len()
            ),
        ),
        VxlanMode::Never => (
            true,
            "OneSubnet",
            format!("every node is on one subnet, so pods are routed directly: {listed}"),
        ),
    };
    Condition {
        type_: ROUTABLE.into(),
        status: if routable { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ippool::IPPoolSpec;
    use serde_json::json;

    fn pool(mode: VxlanMode) -> IPPool {
        IPPool::new(
            "p",
            IPPoolSpec {
                cidr: "10.244.0.0/16".into(),
                vxlan_mode: mode,
            },
        )
    }

    fn node(name: &str, address: Option<&str>) -> Node {
        let annotations = address.map(|a| json!({ADDRESS_ANNOTATION: a})).unwrap_or(json!({}));
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}})).unwrap()
    }

    #[test]
    fn never_across_subnets_is_not_routable_and_names_the_nodes() {
        let nodes = [
            node("node-1", Some("172.18.0.11/24")),
            node("node-2", Some("172.18.0.12/24")),
            node("node-3", Some("172.18.2.13/24")),
            node("node-4", None),
        ];
        let subnets = subnets(&nodes);
        assert_eq!(subnets.len(), 3);
        let c = condition(&pool(VxlanMode::Never), &subnets);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NodesOnDifferentSubnets")
        );
        assert!(
            c.message
                .contains("172.18.0.0/24 (node-1, node-2); 172.18.2.0/24 (node-3)"),
            "{}",
            c.message
        );
        for mode in [VxlanMode::CrossSubnet, VxlanMode::Always] {
            assert_eq!(condition(&pool(mode), &subnets).status, "True");
        }
    }

    #[test]
    fn never_on_one_subnet_is_routable() {
        let nodes = [node("a", Some("10.0.0.1/16")), node("b", Some("10.0.200.1/16"))];
        let c = condition(&pool(VxlanMode::Never), &subnets(&nodes));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "OneSubnet"));
    }
}
