//! Node-to-node pod traffic: `host-gw` (one route per remote node's pod CIDR) or flannel-style `vxlan`.
//!
//! `plan` turns this node and its peers into a `Desired` state; `sync` makes a network namespace match it,
//! touching only what weft owns: routes marked with `ROUTE_PROTOCOL` and the `weft.1` device with its
//! addresses, neighbours and FDB entries; with VXLAN also the nftables table `inet weft-overlay` (`notrack`).

pub mod apply;
pub mod notrack;
pub mod plan;

pub use apply::{Counts, Report, sync};
pub use plan::{
    Desired, Encapsulation, FdbEntry, Mode, NeighbourEntry, NodeNet, PlannedRoute, ROUTE_PROTOCOL, RouteDevice,
    Skipped, VXLAN_DEVICE, VXLAN_OVERHEAD, VXLAN_PORT, VXLAN_VNI, VxlanDevice, VxlanPlan, plan, vtep_mac,
};
