//! The pure half of the overlay: this node and its peers in, the routes, VXLAN device, neighbours and FDB
//! entries this node needs out. No I/O.

use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Name of the VXLAN device (flannel calls its `flannel.<VNI>`).
pub const VXLAN_DEVICE: &str = "weft.1";
pub const VXLAN_VNI: u32 = 1;
/// flannel's port (the Linux default before IANA assigned 4789), so weft and flannel docs agree.
pub const VXLAN_PORT: u16 = 8472;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;
/// Route protocol (RTPROT_*) that marks weft's routes, so a restarted agent re-adopts them instead of
/// flushing, and never mistakes anyone else's route for its own. Unassigned in the kernel and iproute2.
pub const ROUTE_PROTOCOL: u8 = 0xF7;
/// Smallest MTU IPv4 allows a link to have.
const MIN_MTU: u32 = 68;

/// A node as the overlay sees it: its address on the underlay and the pod CIDR it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Route each peer's pod CIDR via the peer's address; needs every node on one L2 segment.
    HostGw,
    /// Encapsulate in VXLAN; works across routed underlays at the cost of 50 bytes of MTU.
    Vxlan,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::HostGw => "host-gw",
            Mode::Vxlan => "vxlan",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "host-gw" => Ok(Mode::HostGw),
            "vxlan" => Ok(Mode::Vxlan),
            other => Err(format!("unknown overlay mode {other:?} (expected host-gw or vxlan)")),
        }
    }
}

/// Which link a planned route leaves by; the applier resolves it to an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDevice {
    Uplink,
    Vxlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRoute {
    pub dst: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub device: RouteDevice,
    /// The gateway is not on any subnet of the device (VXLAN: the peer's pod network address).
    pub onlink: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// This node's underlay address, the source of encapsulated packets.
    pub local: Ipv4Addr,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// This node's pod network address as a /32: the source the node itself uses towards remote pods, and the
    /// address remote nodes route to when they send to this node's pods.
    pub address: Ipv4Net,
}

/// A permanent neighbour on the VXLAN device: a peer's pod network address is at the peer's VTEP MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// A permanent FDB entry on the VXLAN device: frames for the peer's VTEP MAC go to the peer's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPlan {
    pub device: VxlanDevice,
    pub neighbours: Vec<NeighbourEntry>,
    pub fdb: Vec<FdbEntry>,
}

/// A peer left out of the plan, and why (for the caller to log; the others are still served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: String,
}

/// What the node's namespace should hold for node-to-node traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub mode: Mode,
    /// The MTU pods' interfaces should have in this mode.
    pub pod_mtu: u32,
    /// Sorted by destination.
    pub routes: Vec<PlannedRoute>,
    /// Present in VXLAN mode only; its absence tells the applier to remove the device.
    pub vxlan: Option<VxlanPlan>,
    pub skipped: Vec<Skipped>,
}

/// The VTEP MAC of the node at `ip`: locally administered (0x0e: bit 1 set, unicast) `0e:57` ("W") followed by
/// the address, so every node derives every peer's MAC and no annotation has to carry it.
pub fn vtep_mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x0e, 0x57, a, b, c, d]
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Plans the node-to-node dataplane of `node`. `peers` may include `node` itself (matched by name), so the
/// caller can pass every node it knows. A peer that would clash with this node or with a peer earlier in name
/// order (same address, overlapping pod CIDR) is skipped and listed in `Desired::skipped`.
pub fn plan(node: &NodeNet, peers: &[NodeNet], mode: Mode, uplink_mtu: u32) -> Result<Desired> {
    if mode == Mode::Vxlan && uplink_mtu < MIN_MTU + VXLAN_OVERHEAD {
        return Err(Error::MtuTooSmall {
            mtu: uplink_mtu,
            overhead: VXLAN_OVERHEAD,
        });
    }
    let own_cidr = node.pod_cidr.trunc();

    let mut sorted: Vec<&NodeNet> = peers.iter().filter(|p| p.name != node.name).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut accepted: Vec<NodeNet> = Vec::new();
    let mut skipped = Vec::new();
    for peer in sorted {
        let cidr = peer.pod_cidr.trunc();
        let clash = if peer.ip == node.ip {
            Some(format!("has this node's address {}", peer.ip))
        } else if overlaps(cidr, own_cidr) {
            Some(format!("pod CIDR {cidr} overlaps this node's {own_cidr}"))
        } else {
            accepted.iter().find_map(|other| {
                if other.name == peer.name {
                    Some("is listed twice".to_string())
                } else if other.ip == peer.ip {
                    Some(format!("has the same address {} as node {}", peer.ip, other.name))
                } else if overlaps(other.pod_cidr, cidr) {
                    Some(format!(
                        "pod CIDR {cidr} overlaps {} of node {}",
                        other.pod_cidr, other.name
                    ))
                } else {
                    None
                }
            })
        };
        match clash {
            Some(reason) => skipped.push(Skipped {
                node: peer.name.clone(),
                reason,
            }),
            None => accepted.push(NodeNet {
                pod_cidr: cidr,
                ..peer.clone()
            }),
        }
    }
    accepted.sort_by_key(|p| p.pod_cidr);

    let (routes, vxlan, pod_mtu) = match mode {
        Mode::HostGw => {
            let routes = accepted
                .iter()
                .map(|p| PlannedRoute {
                    dst: p.pod_cidr,
                    gateway: p.ip,
                    device: RouteDevice::Uplink,
                    onlink: false,
                })
                .collect();
            (routes, None, uplink_mtu)
        }
        Mode::Vxlan => {
            // flannel's layout: each peer's pod network address stands for the peer's VTEP. The route sends
            // the peer's CIDR to that address on the device, the neighbour entry resolves it to the VTEP MAC,
            // and the FDB entry says which underlay address that MAC lives behind.
            let routes = accepted
                .iter()
                .map(|p| PlannedRoute {
                    dst: p.pod_cidr,
                    gateway: p.pod_cidr.network(),
                    device: RouteDevice::Vxlan,
                    onlink: true,
                })
                .collect();
            let neighbours = accepted
                .iter()
                .map(|p| NeighbourEntry {
                    ip: p.pod_cidr.network(),
                    mac: vtep_mac(p.ip),
                })
                .collect();
            let mut fdb: Vec<FdbEntry> = accepted
                .iter()
                .map(|p| FdbEntry {
                    mac: vtep_mac(p.ip),
                    dst: p.ip,
                })
                .collect();
            fdb.sort_by_key(|e| e.mac);
            let mtu = uplink_mtu - VXLAN_OVERHEAD;
            let device = VxlanDevice {
                name: VXLAN_DEVICE.to_string(),
                vni: VXLAN_VNI,
                port: VXLAN_PORT,
                local: node.ip,
                mac: vtep_mac(node.ip),
                mtu,
                address: Ipv4Net::from(own_cidr.network()),
            };
            let plan = VxlanPlan {
                device,
                neighbours,
                fdb,
            };
            (routes, Some(plan), mtu)
        }
    };
    Ok(Desired {
        mode,
        pod_mtu,
        routes,
        vxlan,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, cidr: &str) -> NodeNet {
        NodeNet {
            name: name.into(),
            ip: ip.parse().unwrap(),
            pod_cidr: cidr.parse().unwrap(),
        }
    }

    fn cluster() -> Vec<NodeNet> {
        vec![
            node("n1", "172.31.0.11", "10.250.1.0/24"),
            node("n2", "172.31.0.12", "10.250.2.0/24"),
            node("n3", "172.31.0.13", "10.250.3.0/24"),
        ]
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn vtep_mac_is_local_unicast_and_carries_the_address() {
        let mac = vtep_mac(ip("172.31.0.12"));
        assert_eq!(mac, [0x0e, 0x57, 172, 31, 0, 12]);
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        assert_ne!(vtep_mac(ip("172.31.0.11")), mac);
    }

    #[test]
    fn host_gw_routes_each_peer_cidr_via_the_peer() {
        let all = cluster();
        let desired = plan(&all[0], &all, Mode::HostGw, 1500).unwrap();
        assert_eq!(desired.pod_mtu, 1500);
        assert_eq!(desired.vxlan, None);
        assert!(desired.skipped.is_empty());
        assert_eq!(
            desired.routes,
            vec![
                PlannedRoute {
                    dst: net("10.250.2.0/24"),
                    gateway: ip("172.31.0.12"),
                    device: RouteDevice::Uplink,
                    onlink: false,
                },
                PlannedRoute {
                    dst: net("10.250.3.0/24"),
                    gateway: ip("172.31.0.13"),
                    device: RouteDevice::Uplink,
                    onlink: false,
                },
            ]
        );
    }

    #[test]
    fn vxlan_follows_flannels_layout() {
        let all = cluster();
        let desired = plan(&all[1], &all, Mode::Vxlan, 9000).unwrap();
        assert_eq!(desired.pod_mtu, 8950);
        let vxlan = desired.vxlan.unwrap();
        assert_eq!(
            vxlan.device,
            VxlanDevice {
                name: "weft.1".into(),
                vni: 1,
                port: 8472,
                local: ip("172.31.0.12"),
                mac: [0x0e, 0x57, 172, 31, 0, 12],
                mtu: 8950,
                address: net("10.250.2.0/32"),
            }
        );
        assert_eq!(
            desired.routes,
            vec![
                PlannedRoute {
                    dst: net("10.250.1.0/24"),
                    gateway: ip("10.250.1.0"),
                    device: RouteDevice::Vxlan,
                    onlink: true,
                },
                PlannedRoute {
                    dst: net("10.250.3.0/24"),
                    gateway: ip("10.250.3.0"),
                    device: RouteDevice::Vxlan,
                    onlink: true,
                },
            ]
        );
        assert_eq!(
            vxlan.neighbours,
            vec![
                NeighbourEntry {
                    ip: ip("10.250.1.0"),
                    mac: vtep_mac(ip("172.31.0.11")),
                },
                NeighbourEntry {
                    ip: ip("10.250.3.0"),
                    mac: vtep_mac(ip("172.31.0.13")),
                },
            ]
        );
        assert_eq!(
            vxlan.fdb,
            vec![
                FdbEntry {
                    mac: vtep_mac(ip("172.31.0.11")),
                    dst: ip("172.31.0.11"),
                },
                FdbEntry {
                    mac: vtep_mac(ip("172.31.0.13")),
                    dst: ip("172.31.0.13"),
                },
            ]
        );
    }

    #[test]
    fn peer_order_does_not_matter() {
        let all = cluster();
        let mut reversed = all.clone();
        reversed.reverse();
        for mode in [Mode::HostGw, Mode::Vxlan] {
            assert_eq!(
                plan(&all[0], &all, mode, 1500).unwrap(),
                plan(&all[0], &reversed, mode, 1500).unwrap()
            );
        }
    }

    #[test]
    fn a_node_alone_needs_no_routes_but_keeps_its_device() {
        let all = cluster();
        let desired = plan(&all[0], &[], Mode::Vxlan, 1500).unwrap();
        assert!(desired.routes.is_empty());
        let vxlan = desired.vxlan.unwrap();
        assert!(vxlan.neighbours.is_empty() && vxlan.fdb.is_empty());
        assert_eq!(vxlan.device.address, net("10.250.1.0/32"));
    }

    #[test]
    fn clashing_peers_are_skipped_and_the_rest_served() {
        let all = cluster();
        let peers = vec![
            all[1].clone(),
            node("a-same-cidr-as-me", "172.31.0.20", "10.250.1.128/25"),
            node("b-same-ip-as-me", "172.31.0.11", "10.250.9.0/24"),
            node("z-overlaps-n2", "172.31.0.21", "10.250.0.0/16"),
            node("z-same-ip-as-n2", "172.31.0.12", "10.250.8.0/24"),
            node("n2", "172.31.0.30", "10.250.7.0/24"),
            // Host bits in a CIDR are ignored rather than trusted.
            node("n4", "172.31.0.14", "10.250.4.9/24"),
        ];
        let desired = plan(&all[0], &peers, Mode::HostGw, 1500).unwrap();
        let dsts: Vec<_> = desired.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, ["10.250.2.0/24", "10.250.4.0/24"]);
        let skipped: Vec<_> = desired.skipped.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "a-same-cidr-as-me",
                "b-same-ip-as-me",
                "n2",
                "z-overlaps-n2",
                "z-same-ip-as-n2"
            ]
        );
    }

    #[test]
    fn vxlan_needs_room_for_its_header() {
        let all = cluster();
        assert!(matches!(
            plan(&all[0], &all, Mode::Vxlan, 100),
            Err(Error::MtuTooSmall { mtu: 100, .. })
        ));
        // host-gw adds no header, so the same MTU is fine there.
        assert_eq!(plan(&all[0], &all, Mode::HostGw, 100).unwrap().pod_mtu, 100);
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [Mode::HostGw, Mode::Vxlan] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        assert!("udp".parse::<Mode>().is_err());
    }
}
