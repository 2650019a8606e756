//! Routes in the main table.

use crate::error::Result;
use crate::socket::Handle;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol, RouteScope, RouteType,
    },
};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Link scope: the destination is on the wire, no gateway needed.
    pub link_scope: bool,
    /// Reach the gateway on `oif` even though no address covers it (flannel's vxlan routes).
    pub onlink: bool,
    pub mtu: Option<u32>,
    pub metric: Option<u32>,
    /// Who installed the route (RTPROT_*). A component marks its routes with its own number so it can tell them
    /// from everyone else's after a restart; deletion matches it too.
    pub protocol: u8,
}

/// RTPROT_BOOT, what `ip route add` uses when no protocol is given.
pub const PROTOCOL_BOOT: u8 = 3;

impl Route {
    pub fn via(dst: IpNet, gateway: IpAddr) -> Route {
        Route {
            dst,
            gateway: Some(gateway),
            oif: None,
            link_scope: false,
            onlink: false,
            mtu: None,
            metric: None,
            protocol: PROTOCOL_BOOT,
        }
    }

    pub fn on_link(dst: IpNet, oif: u32) -> Route {
        Route {
            dst,
            gateway: None,
            oif: Some(oif),
            link_scope: true,
            onlink: false,
            mtu: None,
            metric: None,
            protocol: PROTOCOL_BOOT,
        }
    }
}

fn to_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn from_address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn message(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if route.dst.addr().is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(route.protocol);
    msg.header.scope = if route.link_scope {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    msg.header.kind = RouteType::Unicast;
    if route.onlink {
        msg.header.flags = netlink_packet_route::route::RouteFlags::Onlink;
    }
    msg.attributes
        .push(RouteAttribute::Destination(to_address(route.dst.network())));
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(to_address(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    if let Some(mtu) = route.mtu {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    msg
}

impl Handle {
    /// Adds a route; fails with EEXIST (see `Error::is_exists`) when one with the same key is there.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        self.change(
            RouteNetlinkMessage::NewRoute(message(route)),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding route to {}", route.dst),
        )
    }

    /// Adds or replaces the route to `route.dst`.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.change(
            RouteNetlinkMessage::NewRoute(message(route)),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("replacing route to {}", route.dst),
        )
    }

    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.change(
            RouteNetlinkMessage::DelRoute(message(route)),
            0,
            &format!("deleting route to {}", route.dst),
        )
    }

    /// Main-table unicast routes of both families.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            for reply in self.dump(RouteNetlinkMessage::GetRoute(req), "listing routes")? {
                let RouteNetlinkMessage::NewRoute(m) = reply else {
                    continue;
                };
                if m.header.table != RouteHeader::RT_TABLE_MAIN || m.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut dst = None;
                let mut route = Route {
                    dst: IpNet::default(),
                    gateway: None,
                    oif: None,
                    link_scope: m.header.scope == RouteScope::Link,
                    onlink: m.header.flags.contains(netlink_packet_route::route::RouteFlags::Onlink),
                    mtu: None,
                    metric: None,
                    protocol: m.header.protocol.into(),
                };
                for attr in &m.attributes {
                    match attr {
                        RouteAttribute::Destination(a) => dst = from_address(a),
                        RouteAttribute::Gateway(a) => route.gateway = from_address(a),
                        RouteAttribute::Oif(i) => route.oif = Some(*i),
                        RouteAttribute::Priority(p) => route.metric = Some(*p),
                        RouteAttribute::Metrics(ms) => {
                            for metric in ms {
                                if let RouteMetric::Mtu(mtu) = metric {
                                    route.mtu = Some(*mtu);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                let unspecified = if family == AddressFamily::Inet {
                    IpAddr::from([0u8; 4])
                } else {
                    IpAddr::from([0u16; 8])
                };
                let Ok(net) = IpNet::new(dst.unwrap_or(unspecified), m.header.destination_prefix_length) else {
                    continue;
                };
                route.dst = net;
                out.push(route);
            }
        }
        Ok(out)
    }
}
