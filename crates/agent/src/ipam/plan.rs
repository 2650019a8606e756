//! The pure rules of pod CIDRs: where a node's comes from, which blocks are free, and every node's CIDR as a
//! snapshot shows it (the overlay routes to them, weft-cni allocates from this node's).

use super::block::PodCIDRBlock;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use weft_model::k8s_openapi::api::core::v1::Node;
use weft_model::{Object, Snapshot};

/// Where pod CIDRs come from, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CidrSource {
    /// The cluster's (`Node.spec.podCIDR`) when any Node has one, else weft's own blocks.
    Auto,
    /// Always the cluster's: a node without one waits for it.
    Node,
    /// Always weft's own blocks of the cluster CIDR.
    Weft,
}

/// Where they come from on this cluster, once decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    Node,
    Weft,
}

impl CidrSource {
    /// Decides from the Nodes there are. `Auto` goes by whether the cluster allocates at all: a node that
    /// registered a moment before the node IPAM controller gave it a CIDR must not claim a block of its own when
    /// every other node has one.
    pub fn resolve<'a>(self, nodes: impl IntoIterator<Item = &'a Node>) -> Allocation {
        match self {
            CidrSource::Node => Allocation::Node,
            CidrSource::Weft => Allocation::Weft,
            CidrSource::Auto if nodes.into_iter().any(|n| node_cidr(n).is_some()) => Allocation::Node,
            CidrSource::Auto => Allocation::Weft,
        }
    }
}

impl fmt::Display for CidrSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CidrSource::Auto => "auto",
            CidrSource::Node => "node",
            CidrSource::Weft => "weft",
        })
    }
}

impl FromStr for CidrSource {
    type Err = String;

    fn from_str(s: &str) -> Result<CidrSource, String> {
        match s {
            "auto" => Ok(CidrSource::Auto),
            "node" => Ok(CidrSource::Node),
            "weft" => Ok(CidrSource::Weft),
            other => Err(format!(
                "unknown pod CIDR source {other:?} (expected auto, node or weft)"
            )),
        }
    }
}

/// The cluster CIDR cut into blocks of one length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    cidr: Ipv4Net,
    block: u8,
}

impl Pool {
    /// Blocks of length `block` in `cidr`; a block holds at least a /30's two pod addresses.
    pub fn new(cidr: Ipv4Net, block: u8) -> Result<Pool, String> {
        if block < cidr.prefix_len() || block > 30 {
            return Err(format!(
                "block length /{block} does not fit the cluster CIDR {cidr} (expected /{} to /30)",
                cidr.prefix_len()
            ));
        }
        Ok(Pool {
            cidr: cidr.trunc(),
            block,
        })
    }

    /// The blocks that overlap none of `taken`, lowest first.
    pub fn free(&self, taken: &[Ipv4Net]) -> impl Iterator<Item = Ipv4Net> + '_ {
        let taken = taken.to_vec();
        self.cidr
            .subnets(self.block)
            .into_iter()
            .flatten()
            .filter(move |b| !taken.iter().any(|t| overlaps(b, t)))
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The blocks of `blocks` held by the Node `name` with uid `uid`, lowest first: the first is the node's, any
/// other the surplus of a race between two of its agents. A block of an earlier Node of the same name is not
/// this one's (the garbage collector removes it).
pub fn held(blocks: &[PodCIDRBlock], name: &str, uid: &str) -> Vec<Ipv4Net> {
    let mut held: Vec<Ipv4Net> = blocks
        .iter()
        .filter(|b| b.spec.node == name && b.owner_uid() == Some(uid))
        .filter_map(PodCIDRBlock::cidr)
        .collect();
    held.sort();
    held
}

/// A Node's IPv4 pod CIDR as the cluster allocated it.
pub fn node_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.as_ref())
        .find_map(|c| c.parse().ok())
}

/// Every node's pod CIDR in `snap`: the cluster's, else the lowest block the Node (by uid) holds.
pub fn pod_cidrs(snap: &Snapshot) -> BTreeMap<String, Ipv4Net> {
    let mut cidrs = BTreeMap::new();
    let mut uids = BTreeMap::new();
    for node in snap.nodes() {
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        match node_cidr(node) {
            Some(cidr) => {
                cidrs.insert(name, cidr);
            }
            None => {
                uids.insert(name, node.metadata.uid.clone().unwrap_or_default());
            }
        }
    }
    let blocks: Vec<PodCIDRBlock> = snap.of_kind("PodCIDRBlock").filter_map(decode).collect();
    for (name, uid) in uids {
        if let Some(first) = held(&blocks, &name, &uid).first() {
            cidrs.insert(name, *first);
        }
    }
    cidrs
}

/// A block as the snapshot holds it (a kind weft-model keeps as JSON).
fn decode(object: &Object) -> Option<PodCIDRBlock> {
    serde_json::to_value(object)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, uid: &str, cidr: Option<&str>) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": uid},
            "spec": cidr.map(|c| json!({"podCIDR": c, "podCIDRs": [c]})).unwrap_or(json!({})),
        }))
        .unwrap()
    }

    fn block(cidr: &str, node: &str, uid: &str) -> serde_json::Value {
        json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "PodCIDRBlock",
            "metadata": {"name": super::super::block::name(cidr.parse().unwrap()), "resourceVersion": "1",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]},
            "spec": {"cidr": cidr, "node": node},
        })
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn auto_follows_the_cluster_when_it_allocates() {
        let bare = [node("a", "1", None), node("b", "2", None)];
        assert_eq!(CidrSource::Auto.resolve(&bare), Allocation::Weft);
        // One node still waiting for the controller: the cluster allocates, so it waits too.
        let mixed = [node("a", "1", Some("10.244.0.0/24")), node("b", "2", None)];
        assert_eq!(CidrSource::Auto.resolve(&mixed), Allocation::Node);
        assert_eq!(CidrSource::Weft.resolve(&mixed), Allocation::Weft);
        assert_eq!(CidrSource::Node.resolve(&bare), Allocation::Node);
        assert_eq!("weft".parse::<CidrSource>().unwrap(), CidrSource::Weft);
        assert!("dhcp".parse::<CidrSource>().is_err());
    }

    #[test]
    fn free_blocks_skip_every_taken_range() {
        let pool = Pool::new(net("10.244.0.0/16"), 24).unwrap();
        let free: Vec<_> = pool
            .free(&[net("10.244.0.0/24"), net("10.244.2.0/23")])
            .take(2)
            .collect();
        assert_eq!(free, [net("10.244.1.0/24"), net("10.244.4.0/24")]);
        assert_eq!(pool.free(&[]).count(), 256);
        assert_eq!(
            pool.free(&[net("10.0.0.0/8")]).count(),
            0,
            "a larger range taken covers all"
        );
        assert!(Pool::new(net("10.244.0.0/16"), 8).is_err());
        assert!(Pool::new(net("10.244.0.0/16"), 31).is_err());
    }

    #[test]
    fn a_node_holds_its_own_blocks_by_uid() {
        let blocks: Vec<PodCIDRBlock> = [
            block("10.244.7.0/24", "a", "1"),
            block("10.244.3.0/24", "a", "1"),
            block("10.244.1.0/24", "a", "old"),
            block("10.244.2.0/24", "b", "2"),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        assert_eq!(held(&blocks, "a", "1"), [net("10.244.3.0/24"), net("10.244.7.0/24")]);
        assert!(held(&blocks, "c", "3").is_empty());
    }

    #[test]
    fn every_node_cidr_comes_from_its_node_or_its_block() {
        let mut objects = vec![
            Object::Node(Box::new(node("a", "1", Some("10.244.0.0/24")))),
            Object::Node(Box::new(node("b", "2", None))),
            Object::Node(Box::new(node("c", "3", None))),
        ];
        for value in [
            block("10.244.5.0/24", "b", "2"),
            // A block of a Node "c" that was deleted and registered again: not the new one's.
            block("10.244.6.0/24", "c", "0"),
            // The cluster's CIDR wins over a block.
            block("10.244.9.0/24", "a", "1"),
        ] {
            objects.push(weft_model::manifest::from_value(value).unwrap());
        }
        let cidrs = pod_cidrs(&Snapshot::new(1, objects));
        let expected: BTreeMap<String, Ipv4Net> = [("a", "10.244.0.0/24"), ("b", "10.244.5.0/24")]
            .into_iter()
            .map(|(n, c)| (n.to_string(), net(c)))
            .collect();
        assert_eq!(cidrs, expected);
    }
}
