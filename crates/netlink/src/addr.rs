//! Interface addresses.

use crate::error::Result;
use crate::socket::Handle;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage},
};
use std::net::IpAddr;

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

impl Handle {
    /// Adds `addr` to link `index`. IPv6 addresses skip duplicate address detection: the pod's address is
    /// unique by construction and DAD would make the pod wait seconds before it may use it.
    pub fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if let IpNet::V4(v4) = addr {
            if v4.prefix_len() < 31 {
                msg.attributes.push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        } else {
            msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding address {addr} to link #{index}"),
        )
    }

    /// The addresses on link `index` (every link when `index` is 0).
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(u32, IpNet)>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "listing addresses",
        )?;
        let mut out = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewAddress(m) = reply else {
                continue;
            };
            if index != 0 && m.header.index != index {
                continue;
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
            let mut found = None;
            for attr in &m.attributes {
                match attr {
                    AddressAttribute::Local(ip) => found = Some(*ip),
                    AddressAttribute::Address(ip) if found.is_none() => found = Some(*ip),
                    _ => {}
                }
            }
            if let Some(ip) = found.and_then(|ip| IpNet::new(ip, m.header.prefix_len).ok()) {
                out.push((m.header.index, ip));
            }
        }
        Ok(out)
    }
}

impl Handle {
    pub fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        self.change(
            RouteNetlinkMessage::DelAddress(msg),
            0,
            &format!("deleting address {addr} from link #{index}"),
        )
    }
}
