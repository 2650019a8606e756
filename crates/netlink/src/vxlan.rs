//! VXLAN devices: the node-to-node overlay's tunnel endpoint (flannel's `flannel.1`, weft's `weft.1`).

use crate::error::Result;
use crate::socket::Handle;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use std::net::Ipv4Addr;

/// Everything that defines a unicast VXLAN device with learning off. Read back by `Handle::vxlan`, so a caller
/// can compare the device it finds with the one it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    pub name: String,
    pub vni: u32,
    /// Source address of the encapsulated packets (this node's address on the underlay).
    pub local: Ipv4Addr,
    /// Index of the underlay link the packets leave by.
    pub underlay: u32,
    /// UDP destination port (weft uses the IANA port 4789; flannel and the Linux default use 8472).
    pub port: u16,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// A VXLAN device as found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub index: u32,
    pub up: bool,
    /// Source MAC learning; weft wants it off because every remote MAC is programmed.
    pub learning: bool,
    pub config: VxlanConfig,
}

impl Vxlan {
    /// None when the link is not a VXLAN device.
    fn from_message(msg: &LinkMessage) -> Option<Vxlan> {
        let mut vxlan = Vxlan {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            // The kernel's default when IFLA_VXLAN_LEARNING is absent.
            learning: true,
            config: VxlanConfig {
                name: String::new(),
                vni: 0,
                local: Ipv4Addr::UNSPECIFIED,
                underlay: 0,
                port: 0,
                mac: [0; 6],
                mtu: 0,
            },
        };
        let mut is_vxlan = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => vxlan.config.name = n.clone(),
                LinkAttribute::Mtu(m) => vxlan.config.mtu = *m,
                LinkAttribute::Address(a) => {
                    if let Ok(mac) = <[u8; 6]>::try_from(a.as_slice()) {
                        vxlan.config.mac = mac;
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(InfoKind::Vxlan) => is_vxlan = true,
                            LinkInfo::Data(InfoData::Vxlan(data)) => {
                                for item in data {
                                    match item {
                                        InfoVxlan::Id(vni) => vxlan.config.vni = *vni,
                                        InfoVxlan::Local(ip) => vxlan.config.local = *ip,
                                        InfoVxlan::Link(index) => vxlan.config.underlay = *index,
                                        InfoVxlan::Port(port) => vxlan.config.port = *port,
                                        InfoVxlan::Learning(on) => vxlan.learning = *on,
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        is_vxlan.then_some(vxlan)
    }
}

impl Handle {
    /// Creates a VXLAN device (down) with learning off: remote MACs come only from permanent FDB entries, so a
    /// stray frame can never teach the device a wrong tunnel endpoint.
    pub fn add_vxlan(&mut self, config: &VxlanConfig) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(config.name.clone()));
        msg.attributes.push(LinkAttribute::Address(config.mac.to_vec()));
        msg.attributes.push(LinkAttribute::Mtu(config.mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(config.vni),
                InfoVxlan::Local(config.local),
                InfoVxlan::Link(config.underlay),
                InfoVxlan::Port(config.port),
                InfoVxlan::Learning(false),
            ])),
        ]));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating vxlan {} (vni {})", config.name, config.vni),
        )
    }

    /// The VXLAN device called `name`; Ok(None) when there is no link of that name or it is not a VXLAN device
    /// (use `link_by_name` to tell the two apart).
    pub fn vxlan(&mut self, name: &str) -> Result<Option<Vxlan>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let reply = self.get(RouteNetlinkMessage::GetLink(msg), &format!("looking up link {name}"))?;
        Ok(match reply {
            Some(RouteNetlinkMessage::NewLink(m)) => Vxlan::from_message(&m),
            _ => None,
        })
    }
}
