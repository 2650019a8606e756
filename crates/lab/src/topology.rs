//! The lab's wiring: a "wire" namespace with a switch (a bridge), one namespace per node with `eth0` on the
//! switch, and an external host on the switch. Everything is inside namespaces named after the lab, so the
//! host's own network is never touched and removing the namespaces removes every link.

use crate::error::{Result, kernel};
use crate::spec::{LabSpec, Paths};
use ipnet::{IpNet, Ipv4Net};
use std::net::Ipv4Addr;
use weft_netlink::{Handle, Netns};

const SWITCH: &str = "switch";
/// A fixed, locally administered MAC for the switch (a bridge's address must not follow its ports).
const SWITCH_MAC: [u8; 6] = [0x0e, 0x57, 0x00, 0x00, 0x00, 0x01];
const MTU: u32 = 1500;

/// Builds the wire, the nodes and the external host. On error the caller tears the lab down.
pub fn build(spec: &LabSpec) -> Result<()> {
    let paths = Paths::new(&spec.name);
    let wire = Netns::create(&paths.wire_netns()).map_err(kernel("creating the wire namespace"))?;
    let mut w = wire.handle().map_err(kernel("netlink in the wire namespace"))?;
    loopback_up(&mut w)?;
    w.add_bridge(SWITCH, SWITCH_MAC, Some(MTU))
        .map_err(kernel("creating the switch"))?;
    let switch = index(&mut w, SWITCH)?;
    w.set_up(switch).map_err(kernel("bringing the switch up"))?;
    // The control plane's address, where the API server listens for nodes and pods.
    let cp =
        Ipv4Net::new(spec.control_plane_ip(), spec.wire_prefix()).map_err(|e| crate::Error::Invalid(e.to_string()))?;
    w.add_address(switch, IpNet::V4(cp))
        .map_err(kernel("addressing the control plane on the switch"))?;
    for node in spec.node_plans() {
        plug(&mut w, switch, &paths.node_netns(&node.name), &node.name, node.ip)?;
        gateway(&paths.node_netns(&node.name), spec.external_ip())?;
    }
    plug(&mut w, switch, &paths.external_netns(), "external", spec.external_ip())?;
    Ok(())
}

/// Creates a host namespace and plugs its `eth0` into the switch with `ip`/24.
fn plug(w: &mut Handle, switch: u32, netns: &str, port: &str, ip: Ipv4Addr) -> Result<()> {
    let ns = Netns::create(netns).map_err(kernel(format!("creating namespace {netns}")))?;
    w.add_veth(port, MTU, "eth0", ns.fd(), None)
        .map_err(kernel(format!("plugging {port} into the switch")))?;
    let idx = index(w, port)?;
    w.set_master(idx, switch)
        .map_err(kernel(format!("attaching {port} to the switch")))?;
    w.set_up(idx).map_err(kernel(format!("bringing {port} up")))?;
    let mut h = ns.handle().map_err(kernel(format!("netlink in {netns}")))?;
    loopback_up(&mut h)?;
    let eth0 = index(&mut h, "eth0")?;
    let addr = Ipv4Net::new(ip, 24).map_err(|e| crate::Error::Invalid(e.to_string()))?;
    h.add_address(eth0, IpNet::V4(addr))
        .map_err(kernel(format!("addressing eth0 of {port}")))?;
    h.set_up(eth0).map_err(kernel(format!("bringing eth0 of {port} up")))
}

/// The node's default route, via the external host as its network's router: a node sends what it has no
/// better route for there, as a real node sends it to its gateway (traffic to a ClusterIP needs a route
/// before the service proxy rewrites its destination).
fn gateway(netns: &str, router: Ipv4Addr) -> Result<()> {
    let ns = Netns::open(&format!("/run/netns/{netns}")).map_err(kernel(format!("opening {netns}")))?;
    let mut h = ns.handle().map_err(kernel(format!("netlink in {netns}")))?;
    let default = IpNet::V4(Ipv4Net::default());
    h.add_route(&weft_netlink::Route::via(default, router.into()))
        .map_err(kernel(format!("default route of {netns}")))
}

pub fn loopback_up(h: &mut Handle) -> Result<()> {
    let lo = index(h, "lo")?;
    h.set_up(lo).map_err(kernel("bringing lo up"))
}

fn index(h: &mut Handle, name: &str) -> Result<u32> {
    match h.link_by_name(name).map_err(kernel(format!("looking up {name}")))? {
        Some(link) => Ok(link.index),
        None => Err(crate::Error::Invalid(format!("link {name} vanished"))),
    }
}
