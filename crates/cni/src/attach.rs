//! Attaching a pod: the veth pair, the node's bridge and its gateway address, and the pod side's addresses
//! and routes. Shared by the `bridge` and `weft` plugin types.

use crate::spec::result::{Interface, IpConfig, Route};
use crate::spec::{CniError, Code, Result};
use ipnet::IpNet;
use std::net::IpAddr;
use weft_netlink::link::format_mac;
use weft_netlink::{Handle, Link, Netns};

/// Host-side veth name: derived from the attachment, so DEL finds it with nothing but the container ID.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    format!(
        "veth{:011x}",
        fnv1a(&[container_id.as_bytes(), b"/", ifname.as_bytes()]) >> 20
    )
}

/// FNV-1a: stable across versions and platforms, unlike std's hasher.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts.iter().flat_map(|p| p.iter()).fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// A MAC that encodes an IPv4 address (0a:58:a.b.c.d, the convention kubenet and OVN use): the same pod
/// address always has the same MAC, so neighbours' ARP caches stay right when a pod is re-created.
pub fn mac_for(ip: Option<IpAddr>, salt: &str) -> [u8; 6] {
    match ip {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            [0x0a, 0x58, o[0], o[1], o[2], o[3]]
        }
        _ => {
            let h = fnv1a(&[salt.as_bytes()]).to_be_bytes();
            // Locally administered, unicast.
            [(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]]
        }
    }
}

/// Finds or creates the bridge and brings it up. A concurrent ADD creating it first is not an error.
pub fn ensure_bridge(host: &mut Handle, name: &str, mac: [u8; 6], mtu: u32) -> Result<Link> {
    let existing = match host.link_by_name(name)? {
        Some(link) => link,
        None => {
            match host.add_bridge(name, mac, Some(mtu)) {
                Err(e) if e.is_exists() => {}
                other => other?,
            }
            host.link_by_name(name)?
                .ok_or_else(|| CniError::new(Code::Io, format!("bridge {name} vanished right after it was created")))?
        }
    };
    if existing.kind.as_deref() != Some("bridge") {
        return Err(CniError::config(format!("{name:?} exists and is not a bridge")));
    }
    if !existing.up {
        host.set_up(existing.index)?;
    }
    Ok(existing)
}

/// Puts the gateway address on the bridge. Another address in the same subnet is replaced with
/// `force`, refused without it; the same address added by a concurrent ADD is fine.
pub fn ensure_gateway(host: &mut Handle, bridge: &Link, gateway: IpNet, force: bool) -> Result<()> {
    for (_, existing) in host.addresses(bridge.index)? {
        if existing == gateway {
            return Ok(());
        }
        if existing.addr().is_ipv4() == gateway.addr().is_ipv4() && existing.contains(&gateway.addr()) {
            if !force {
                return Err(CniError::config(format!(
                    "bridge {} has address {existing}, not the gateway {gateway} (set forceAddress to replace it)",
                    bridge.name
                )));
            }
            host.delete_address(bridge.index, existing)?;
        }
    }
    match host.add_address(bridge.index, gateway) {
        Err(e) if e.is_exists() => Ok(()),
        other => Ok(other?),
    }
}

/// The two ends of a new pod link.
pub struct Pair {
    pub host: Link,
    pub pod: Link,
}

/// Creates the veth pair with the pod end named `ifname` inside the pod's namespace.
pub fn create_veth(
    host: &mut Handle,
    pod: &mut Handle,
    pod_ns: &Netns,
    host_name: &str,
    ifname: &str,
    mtu: u32,
    mac: [u8; 6],
) -> Result<Pair> {
    if pod.link_by_name(ifname)?.is_some() {
        return Err(CniError::new(
            Code::Internal,
            format!("interface {ifname} already exists in {}", pod_ns.path()),
        ));
    }
    // A leftover of an attachment whose DEL never came: the name is ours, so the link is too.
    host.delete_link_named(host_name)?;
    host.add_veth(host_name, mtu, ifname, pod_ns.fd(), Some(mac))?;
    let missing = |what: &str| CniError::new(Code::Io, format!("{what} vanished right after it was created"));
    let host_link = host.link_by_name(host_name)?.ok_or_else(|| missing(host_name))?;
    let pod_link = pod.link_by_name(ifname)?.ok_or_else(|| missing(ifname))?;
    Ok(Pair {
        host: host_link,
        pod: pod_link,
    })
}

/// Addresses, link state and routes on the pod side. Routes without a gateway go via the gateway of
/// their family.
pub fn configure_pod(pod: &mut Handle, index: u32, ips: &[IpConfig], routes: &[Route]) -> Result<()> {
    for ip in ips {
        pod.add_address(index, ip.address)?;
    }
    pod.set_up(index)?;
    for route in routes {
        let family_v4 = route.dst.addr().is_ipv4();
        let gateway = route.gw.or_else(|| {
            ips.iter()
                .find(|ip| ip.address.addr().is_ipv4() == family_v4)
                .and_then(|ip| ip.gateway)
        });
        let mut r = match gateway {
            Some(gw) => weft_netlink::Route::via(route.dst, gw),
            None => weft_netlink::Route::on_link(route.dst, index),
        };
        r.oif = Some(index);
        r.mtu = route.mtu;
        r.metric = route.priority;
        pod.add_route(&r)
            .or_else(|e| if e.is_exists() { Ok(()) } else { Err(e) })?;
    }
    Ok(())
}

/// Removes the pod's link. The host end is found by its derived name and deleted, which removes both ends;
/// the call returns once the kernel has unlisted the pair (see [`crate::detach`]). Only when there is no
/// host end is the pod's `ifname` deleted inside its namespace, if that still exists. Missing pieces are not
/// errors.
pub fn remove(host: &mut Handle, netns: &str, ifname: &str, host_name: &str) -> Result<()> {
    if crate::detach::delete_links_named(host, &[host_name])? > 0 || netns.is_empty() {
        return Ok(());
    }
    match Netns::open(netns) {
        Ok(ns) => {
            let mut pod = ns.handle()?;
            if let Some(link) = pod.link_by_name(ifname)? {
                match pod.delete_link(link.index) {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn interface(link: &Link, sandbox: &str) -> Interface {
    Interface {
        name: link.name.clone(),
        mac: format_mac(&link.mac),
        mtu: None,
        sandbox: sandbox.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_distinct_and_fit_ifnamsiz() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
        assert_eq!(a.len(), 15);
    }

    #[test]
    fn macs_encode_ipv4_or_are_local_unicast() {
        assert_eq!(
            mac_for(Some("10.244.1.5".parse().unwrap()), "x"),
            [0x0a, 0x58, 10, 244, 1, 5]
        );
        let m = mac_for(None, "cni0");
        assert_eq!(m[0] & 0x03, 0x02);
        assert_eq!(m, mac_for(Some("fd00::1".parse().unwrap()), "cni0"));
    }
}
