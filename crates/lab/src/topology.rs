//! The lab's wiring: a "wire" namespace with a switch (a bridge), one namespace per node with `eth0` on the
//! switch, and an external host on the switch. With `--subnets N`, nodes are spread over N switches (subnets), and
//! a router namespace joins them (every node routes the other subnets through it). Everything is inside namespaces named after the lab, so the
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

/// Builds the wire, the nodes and the external host; with more than one subnet, a switch per subnet and the
/// router joining them. On error the caller tears the lab down.
pub fn build(spec: &LabSpec) -> Result<()> {
    let paths = Paths::new(&spec.name);
    let wire = Netns::create(&paths.wire_netns()).map_err(kernel("creating the wire namespace"))?;
    let mut w = wire.handle().map_err(kernel("netlink in the wire namespace"))?;
    loopback_up(&mut w)?;
    let nets = spec.subnet_nets();
    let mut switches = Vec::new();
    for k in 0..nets.len() {
        // Subnet 0's switch keeps its name: `lab capture wire` and older labs know it.
        let name = if k == 0 {
            SWITCH.to_string()
        } else {
            format!("{SWITCH}-{k}")
        };
        let mut mac = SWITCH_MAC;
        mac[5] += k as u8;
        w.add_bridge(&name, mac, Some(MTU))
            .map_err(kernel(format!("creating {name}")))?;
        let switch = index(&mut w, &name)?;
        w.set_up(switch).map_err(kernel(format!("bringing {name} up")))?;
        switches.push(switch);
    }
    // The control plane's address, where the API server listens for nodes and pods.
    let cp =
        Ipv4Net::new(spec.control_plane_ip(), spec.wire_prefix()).map_err(|e| crate::Error::Invalid(e.to_string()))?;
    w.add_address(switches[0], IpNet::V4(cp))
        .map_err(kernel("addressing the control plane on the switch"))?;
    let router = (nets.len() > 1).then(|| spec.router_ip(0));
    for node in spec.node_plans() {
        let netns = paths.node_netns(&node.name);
        let ns = Netns::create(&netns).map_err(kernel(format!("creating namespace {netns}")))?;
        plug(
            &mut w,
            switches[usize::from(node.subnet)],
            &ns,
            &node.name,
            "eth0",
            node.ip,
        )?;
        let mut h = ns.handle().map_err(kernel(format!("netlink in {netns}")))?;
        loopback_up(&mut h)?;
        if node.subnet == 0 {
            gateway(&mut h, &netns, None, spec.external_ip())?;
            if let Some(router) = router {
                for net in &nets[1..] {
                    gateway(&mut h, &netns, Some(*net), router)?;
                }
            }
        } else {
            // The router is this subnet's way out, to the control plane and the external host too.
            gateway(&mut h, &netns, None, spec.router_ip(node.subnet))?;
        }
    }
    let external = Netns::create(&paths.external_netns()).map_err(kernel("creating the external namespace"))?;
    plug(&mut w, switches[0], &external, "external", "eth0", spec.external_ip())?;
    let mut h = external.handle().map_err(kernel("netlink in the external namespace"))?;
    loopback_up(&mut h)?;
    if let Some(router) = router {
        for net in &nets[1..] {
            gateway(&mut h, &paths.external_netns(), Some(*net), router)?;
            // The control plane answers nodes on the other subnets through the router too.
            gateway(&mut w, &paths.wire_netns(), Some(*net), router)?;
        }
        build_router(spec, &paths, &mut w, &switches)?;
    }
    Ok(())
}

/// The router between the subnets: `eth0` on the wire's switch at .1, `ethK` on subnet K's at its .1,
/// forwarding; what is on none of them goes to the external host, as nodes on the wire's subnet send it.
fn build_router(spec: &LabSpec, paths: &Paths, w: &mut Handle, switches: &[u32]) -> Result<()> {
    let netns = paths.router_netns();
    let ns = Netns::create(&netns).map_err(kernel("creating the router namespace"))?;
    for (k, switch) in switches.iter().enumerate() {
        let k8 = k as u8;
        let port = if k == 0 {
            "router".to_string()
        } else {
            format!("router-{k}")
        };
        plug(w, *switch, &ns, &port, &format!("eth{k}"), spec.router_ip(k8))?;
    }
    ns.run(|| weft_netlink::sysctl::set("net/ipv4/ip_forward", "1"))
        .map_err(kernel("turning on forwarding in the router"))?;
    let mut h = ns.handle().map_err(kernel("netlink in the router namespace"))?;
    loopback_up(&mut h)?;
    gateway(&mut h, &netns, None, spec.external_ip())
}

/// Plugs a veth into `switch` as `port`, its other end `ifname` in `ns` with `ip`/24, up.
fn plug(w: &mut Handle, switch: u32, ns: &Netns, port: &str, ifname: &str, ip: Ipv4Addr) -> Result<()> {
    w.add_veth(port, MTU, ifname, ns.fd(), None)
        .map_err(kernel(format!("plugging {port} into the switch")))?;
    let idx = index(w, port)?;
    w.set_master(idx, switch)
        .map_err(kernel(format!("attaching {port} to the switch")))?;
    w.set_up(idx).map_err(kernel(format!("bringing {port} up")))?;
    let mut h = ns.handle().map_err(kernel(format!("netlink in {}", ns.path())))?;
    let link = index(&mut h, ifname)?;
    let addr = Ipv4Net::new(ip, 24).map_err(|e| crate::Error::Invalid(e.to_string()))?;
    h.add_address(link, IpNet::V4(addr))
        .map_err(kernel(format!("addressing {ifname} of {port}")))?;
    h.set_up(link)
        .map_err(kernel(format!("bringing {ifname} of {port} up")))
}

/// A route in a namespace via `router` to `dst` (None: the default route). A node's default route goes via the
/// external host as its network's router: a node sends what it has no better route for there, as a real node
/// sends it to its gateway (traffic to a ClusterIP needs a route before the service proxy rewrites its
/// destination).
fn gateway(h: &mut Handle, netns: &str, dst: Option<Ipv4Net>, router: Ipv4Addr) -> Result<()> {
    let dst = IpNet::V4(dst.unwrap_or_default());
    h.add_route(&weft_netlink::Route::via(dst, router.into()))
        .map_err(kernel(format!("route to {dst} in {netns}")))
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
