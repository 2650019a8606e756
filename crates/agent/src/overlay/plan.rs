//! The pure half of the overlay: this node and its peers in, the routes, VXLAN device, neighbours and FDB
//! entries this node needs out. No I/O.

use crate::error::{Error, Result};
use crate::ippool::VxlanMode;
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Name of the VXLAN device (flannel calls its `flannel.<VNI>`).
pub const VXLAN_DEVICE: &str = "weft.1";
pub const VXLAN_VNI: u32 = 1;
/// The IANA VXLAN port, which tshark and Wireshark decode as VXLAN without being told (flannel and the Linux
/// default use 8472); the agent's `--vxlan-port` (ConfigMap key `vxlanPort`) changes it.
pub const VXLAN_PORT: u16 = 4789;
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
    /// The MTU pods' interfaces should have: the uplink's, less VXLAN's header while the device is there.
    pub pod_mtu: u32,
    /// Sorted by destination.
    pub routes: Vec<PlannedRoute>,
    /// Present while any pool encapsulates; its absence tells the applier to remove the device.
    pub vxlan: Option<VxlanPlan>,
    pub skipped: Vec<Skipped>,
    /// Peers whose pool routes them directly (`Never`) though they are not on this node's subnet: no route can
    /// reach them, so none is planned (the agent reports them on the pool and the Node).
    pub unreachable: Vec<Skipped>,
}

/// How this node's traffic to each peer's pods is carried: the IP pools' modes, and this node's subnet on the
/// underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulation {
    /// Each pool's range and mode.
    pub pools: Vec<(Ipv4Net, VxlanMode)>,
    /// The mode of pod CIDRs no pool contains: the configured overlay's.
    pub fallback: VxlanMode,
    /// This node's underlay subnet (where its address is): `CrossSubnet` routes directly within it, `Never`
    /// reaches nothing outside it. Unknown: every peer counts as on it.
    pub subnet: Option<Ipv4Net>,
}

impl Encapsulation {
    /// The configured overlay for every pod CIDR (no pools).
    pub fn uniform(mode: Mode) -> Encapsulation {
        Encapsulation {
            pools: Vec::new(),
            fallback: mode.vxlan_mode(),
            subnet: None,
        }
    }

    /// The mode of a pod CIDR: the most specific pool containing it, else the fallback.
    pub fn mode_of(&self, cidr: Ipv4Net) -> VxlanMode {
        self.pools
            .iter()
            .filter(|(pool, _)| pool.contains(&cidr))
            .max_by_key(|(pool, _)| pool.prefix_len())
            .map_or(self.fallback, |(_, mode)| *mode)
    }

    /// Whether traffic to `peer` goes through the VXLAN device (Some(true)), directly (Some(false)), or cannot
    /// be routed at all (None: `Never` to another subnet).
    fn encapsulates(&self, peer: &NodeNet) -> Option<bool> {
        let on_subnet = self.subnet.is_none_or(|s| s.contains(&peer.ip));
        match (self.mode_of(peer.pod_cidr), on_subnet) {
            (VxlanMode::Always, _) | (VxlanMode::CrossSubnet, false) => Some(true),
            (VxlanMode::CrossSubnet, true) | (VxlanMode::Never, true) => Some(false),
            (VxlanMode::Never, false) => None,
        }
    }
}

impl Mode {
    /// The pool mode that carries traffic as this overlay does (`vxlan` → Always, `host-gw` → Never).
    pub fn vxlan_mode(self) -> VxlanMode {
        match self {
            Mode::HostGw => VxlanMode::Never,
            Mode::Vxlan => VxlanMode::Always,
        }
    }
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
/// order (same address, overlapping pod CIDR) is skipped and listed in `Desired::skipped`. Each peer's pod CIDR
/// is routed through the VXLAN device or directly via the peer's address as `encap` says.
pub fn plan(node: &NodeNet, peers: &[NodeNet], encap: &Encapsulation, uplink_mtu: u32) -> Result<Desired> {
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

    // flannel's layout for encapsulated peers: each peer's pod network address stands for the peer's VTEP. The
    // route sends the peer's CIDR to that address on the device, the neighbour entry resolves it to the VTEP
    // MAC, and the FDB entry says which underlay address that MAC lives behind. Direct peers: a route via the
    // peer's address on the uplink.
    let mut routes = Vec::new();
    let mut tunnelled = Vec::new();
    let mut unreachable = Vec::new();
    for p in &accepted {
        match encap.encapsulates(p) {
            Some(true) => {
                routes.push(PlannedRoute {
                    dst: p.pod_cidr,
                    gateway: p.pod_cidr.network(),
                    device: RouteDevice::Vxlan,
                    onlink: true,
                });
                tunnelled.push(p);
            }
            Some(false) => routes.push(PlannedRoute {
                dst: p.pod_cidr,
                gateway: p.ip,
                device: RouteDevice::Uplink,
                onlink: false,
            }),
            None => unreachable.push(Skipped {
                node: p.name.clone(),
                reason: format!(
                    "its address {} is not on this node's subnet {}, and vxlanMode Never routes its pods {} \
                     directly (CrossSubnet or Always would encapsulate them)",
                    p.ip,
                    encap.subnet.map(|s| s.to_string()).unwrap_or_default(),
                    p.pod_cidr
                ),
            }),
        }
    }
    // The device stays while this node's own pool encapsulates, even with no peer through it yet.
    let wants_device = !tunnelled.is_empty() || encap.mode_of(own_cidr) != VxlanMode::Never;
    if wants_device && uplink_mtu < MIN_MTU + VXLAN_OVERHEAD {
        return Err(Error::MtuTooSmall {
            mtu: uplink_mtu,
            overhead: VXLAN_OVERHEAD,
        });
    }
    let (vxlan, pod_mtu) = if wants_device {
        let neighbours = tunnelled
            .iter()
            .map(|p| NeighbourEntry {
                ip: p.pod_cidr.network(),
                mac: vtep_mac(p.ip),
            })
            .collect();
        let mut fdb: Vec<FdbEntry> = tunnelled
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
        (Some(plan), mtu)
    } else {
        (None, uplink_mtu)
    };
    Ok(Desired {
        pod_mtu,
        routes,
        vxlan,
        skipped,
        unreachable,
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

    fn uniform(mode: Mode) -> Encapsulation {
        Encapsulation::uniform(mode)
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
        let desired = plan(&all[0], &all, &uniform(Mode::HostGw), 1500).unwrap();
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
        let desired = plan(&all[1], &all, &uniform(Mode::Vxlan), 9000).unwrap();
        assert_eq!(desired.pod_mtu, 8950);
        let vxlan = desired.vxlan.unwrap();
        assert_eq!(
            vxlan.device,
            VxlanDevice {
                name: "weft.1".into(),
                vni: 1,
                port: 4789,
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
                plan(&all[0], &all, &uniform(mode), 1500).unwrap(),
                plan(&all[0], &reversed, &uniform(mode), 1500).unwrap()
            );
        }
    }

    #[test]
    fn a_node_alone_needs_no_routes_but_keeps_its_device() {
        let all = cluster();
        let desired = plan(&all[0], &[], &uniform(Mode::Vxlan), 1500).unwrap();
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
        let desired = plan(&all[0], &peers, &uniform(Mode::HostGw), 1500).unwrap();
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
            plan(&all[0], &all, &uniform(Mode::Vxlan), 100),
            Err(Error::MtuTooSmall { mtu: 100, .. })
        ));
        // host-gw adds no header, so the same MTU is fine there.
        assert_eq!(plan(&all[0], &all, &uniform(Mode::HostGw), 100).unwrap().pod_mtu, 100);
    }

    /// n1 and n2 on 172.31.0.0/24, n3 across a router on 172.31.1.0/24.
    fn two_subnets(mode: VxlanMode) -> (Vec<NodeNet>, Encapsulation) {
        let mut all = cluster();
        all[2].ip = ip("172.31.1.13");
        let encap = Encapsulation {
            pools: vec![(net("10.250.0.0/16"), mode)],
            fallback: VxlanMode::Always,
            subnet: Some(net("172.31.0.0/24")),
        };
        (all, encap)
    }

    fn devices(desired: &Desired) -> Vec<(String, RouteDevice)> {
        desired.routes.iter().map(|r| (r.dst.to_string(), r.device)).collect()
    }

    #[test]
    fn cross_subnet_encapsulates_only_towards_other_subnets() {
        let (all, encap) = two_subnets(VxlanMode::CrossSubnet);
        let desired = plan(&all[0], &all, &encap, 1500).unwrap();
        assert_eq!(
            devices(&desired),
            [
                ("10.250.2.0/24".to_string(), RouteDevice::Uplink),
                ("10.250.3.0/24".to_string(), RouteDevice::Vxlan)
            ]
        );
        assert_eq!(desired.routes[0].gateway, ip("172.31.0.12"));
        let vxlan = desired.vxlan.unwrap();
        assert_eq!(
            vxlan.fdb,
            [FdbEntry {
                mac: vtep_mac(ip("172.31.1.13")),
                dst: ip("172.31.1.13")
            }]
        );
        assert_eq!(desired.pod_mtu, 1450, "pods may be reached through the device");
        assert!(desired.unreachable.is_empty());
    }

    #[test]
    fn cross_subnet_on_one_subnet_routes_directly_and_keeps_the_device() {
        let (mut all, encap) = two_subnets(VxlanMode::CrossSubnet);
        all[2].ip = ip("172.31.0.13");
        let desired = plan(&all[0], &all, &encap, 1500).unwrap();
        assert!(desired.routes.iter().all(|r| r.device == RouteDevice::Uplink));
        let vxlan = desired.vxlan.unwrap();
        assert!(vxlan.fdb.is_empty() && vxlan.neighbours.is_empty());
    }

    #[test]
    fn never_across_subnets_leaves_those_peers_unreachable() {
        let (all, encap) = two_subnets(VxlanMode::Never);
        let desired = plan(&all[0], &all, &encap, 1500).unwrap();
        assert_eq!(devices(&desired), [("10.250.2.0/24".to_string(), RouteDevice::Uplink)]);
        assert_eq!(desired.vxlan, None);
        assert_eq!(desired.pod_mtu, 1500);
        assert_eq!(desired.unreachable.len(), 1);
        assert_eq!(desired.unreachable[0].node, "n3");
        assert!(
            desired.unreachable[0].reason.contains("172.31.0.0/24"),
            "{:?}",
            desired.unreachable
        );
        assert!(desired.skipped.is_empty());
    }

    #[test]
    fn always_encapsulates_even_on_one_subnet() {
        let (all, encap) = two_subnets(VxlanMode::Always);
        let desired = plan(&all[0], &all, &encap, 1500).unwrap();
        assert!(desired.routes.iter().all(|r| r.device == RouteDevice::Vxlan));
    }

    #[test]
    fn the_most_specific_pool_decides_and_the_overlay_covers_the_rest() {
        let encap = Encapsulation {
            pools: vec![
                (net("10.250.0.0/16"), VxlanMode::Never),
                (net("10.250.2.0/23"), VxlanMode::Always),
            ],
            fallback: VxlanMode::CrossSubnet,
            subnet: None,
        };
        assert_eq!(encap.mode_of(net("10.250.1.0/24")), VxlanMode::Never);
        assert_eq!(encap.mode_of(net("10.250.3.0/24")), VxlanMode::Always);
        assert_eq!(encap.mode_of(net("10.9.0.0/24")), VxlanMode::CrossSubnet);
        assert_eq!(Mode::Vxlan.vxlan_mode(), VxlanMode::Always);
        assert_eq!(Mode::HostGw.vxlan_mode(), VxlanMode::Never);
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [Mode::HostGw, Mode::Vxlan] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        assert!("udp".parse::<Mode>().is_err());
    }
}
