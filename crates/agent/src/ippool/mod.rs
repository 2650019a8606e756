//! IP pools: how traffic to other nodes' pods is carried, changed live with `kubectl apply` (Calico's IPPool
//! `vxlanMode`). `resource.rs` is the custom resource (its CRD generated from the type), `routable.rs` the pure
//! rules of its `Routable` condition, `report.rs` what the agent writes to the API: the default pool, its node's
//! underlay address, the pools' status and an Event on its Node when a pool leaves peers unreachable.
//!
//! Each agent reads the pools from its snapshot (`encapsulation`) and plans its routes with them, so a change of
//! mode reaches the kernel in the sync it wakes, and drift repair repairs to the same plan.

pub mod report;
pub mod resource;
pub mod routable;

pub use resource::{Condition, DEFAULT_POOL, IPPool, IPPoolSpec, IPPoolStatus, VxlanMode};

use crate::overlay::{Encapsulation, Mode};
use ipnet::Ipv4Net;
use weft_model::{Object, Snapshot};

/// The Node annotation where each agent records its underlay address with its prefix (as Calico's
/// `projectcalico.org/IPv4Address`), so every agent knows which nodes share a subnet.
pub const ADDRESS_ANNOTATION: &str = "weft.dev/ipv4-address";

/// Every pool in `snap` whose spec weft can read.
pub fn pools(snap: &Snapshot) -> Vec<IPPool> {
    snap.of_kind("IPPool").filter_map(decode).collect()
}

/// The modes of `pools` for a node on `subnet`; pod CIDRs outside every pool follow the configured `overlay`.
pub fn encapsulation(pools: &[IPPool], overlay: Mode, subnet: Option<Ipv4Net>) -> Encapsulation {
    Encapsulation {
        pools: pools
            .iter()
            .filter_map(|p| Some((p.cidr()?, p.spec.vxlan_mode)))
            .collect(),
        fallback: overlay.vxlan_mode(),
        subnet,
    }
}

/// A pool as the snapshot holds it (a kind weft-model keeps as JSON).
fn decode(object: &Object) -> Option<IPPool> {
    serde_json::to_value(object)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pools_in_a_snapshot_decide_the_modes() {
        let pool = json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "p", "resourceVersion": "1"},
            "spec": {"cidr": "10.244.0.0/16", "vxlanMode": "CrossSubnet"},
        });
        let snap = Snapshot::new(1, [weft_model::manifest::from_value(pool).unwrap()]);
        let pools = pools(&snap);
        assert_eq!(pools.len(), 1);
        let subnet = Some("172.18.0.0/24".parse().unwrap());
        let encap = encapsulation(&pools, Mode::HostGw, subnet);
        assert_eq!(encap.mode_of("10.244.3.0/24".parse().unwrap()), VxlanMode::CrossSubnet);
        assert_eq!(encap.mode_of("10.1.0.0/24".parse().unwrap()), VxlanMode::Never);
        assert_eq!(encap.subnet, subnet);
    }
}
