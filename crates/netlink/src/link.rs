//! Links: bridges, veth pairs, IFB devices; their state, addresses, MTU and bridge-port flags.

use crate::error::{Error, Result};
use crate::socket::Handle;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use std::os::fd::{AsRawFd, BorrowedFd};

/// What weft needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    /// "bridge", "veth", "vxlan", ... (None for plain devices such as lo).
    pub kind: Option<String>,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    pub up: bool,
    pub promisc: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: Vec::new(),
            mtu: 0,
            kind: None,
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.mac = a.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Controller(m) => link.master = Some(*m),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// Formats a MAC the usual way (0a:58:0a:f4:00:05).
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses aa:bb:cc:dd:ee:ff.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

impl Handle {
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let reply = self.get(RouteNetlinkMessage::GetLink(msg), &format!("looking up link {name}"))?;
        Ok(reply.and_then(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(&m)),
            _ => None,
        }))
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let reply = self.get(
            RouteNetlinkMessage::GetLink(message(index)),
            &format!("looking up link #{index}"),
        )?;
        Ok(reply.and_then(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(&m)),
            _ => None,
        }))
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(message(0)), "listing links")?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge with a fixed MAC, so its address never follows the ports that come and go.
    pub fn add_bridge(&mut self, name: &str, mac: [u8; 6], mtu: Option<u32>) -> Result<()> {
        let mut msg = message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating bridge {name}"),
        )
    }

    /// Creates a veth pair: `name` here, `peer` directly inside the namespace `peer_ns`.
    pub fn add_veth(
        &mut self,
        name: &str,
        mtu: u32,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut peer_msg = message(0);
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        if let Some(mac) = peer_mac {
            peer_msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut msg = message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth pair {name} / {peer}"),
        )
    }

    /// Creates an IFB device (the target of redirected ingress traffic for shaping).
    pub fn add_ifb(&mut self, name: &str, mtu: u32) -> Result<()> {
        let mut msg = message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating ifb {name}"),
        )
    }

    fn set_flags(&mut self, index: u32, flags: LinkFlags, on: bool, what: &str) -> Result<()> {
        let mut msg = message(index);
        msg.header.change_mask = flags;
        if on {
            msg.header.flags = flags;
        }
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &format!("{what} link #{index}"))
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_flags(index, LinkFlags::Up, true, "bringing up")
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_flags(index, LinkFlags::Promisc, on, "setting promiscuous mode on")
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut msg = message(index);
        msg.attributes.push(LinkAttribute::Controller(master));
        self.change(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("attaching link #{index} to #{master}"),
        )
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = message(index);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.change(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("setting MTU of link #{index}"),
        )
    }

    /// Sets the hairpin flag of a bridge port, so a pod can reach itself through a Service or hostPort.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = message(index);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(on)])),
        ]));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            0,
            &format!("setting hairpin on link #{index}"),
        )
    }

    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        self.change(
            RouteNetlinkMessage::DelLink(message(index)),
            0,
            &format!("deleting link #{index}"),
        )
    }

    /// Deletes a link by name; Ok(false) when there was none.
    pub fn delete_link_named(&mut self, name: &str) -> Result<bool> {
        match self.link_by_name(name)? {
            None => Ok(false),
            Some(link) => match self.delete_link(link.index) {
                Err(e) if e.is_not_found() => Ok(false),
                other => other.map(|()| true),
            },
        }
    }

    /// The index of the peer of a veth (IFLA_LINK), in whatever namespace the peer lives.
    pub fn veth_peer_index(&mut self, index: u32) -> Result<u32> {
        let reply = self.get(
            RouteNetlinkMessage::GetLink(message(index)),
            &format!("looking up link #{index}"),
        )?;
        if let Some(RouteNetlinkMessage::NewLink(m)) = reply {
            for attr in m.attributes {
                if let LinkAttribute::Link(peer) = attr {
                    return Ok(peer);
                }
            }
        }
        Err(Error::NotFound(format!("peer of link #{index}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip_and_bad_ones_are_refused() {
        let mac = parse_mac("0a:58:0a:f4:00:05").unwrap();
        assert_eq!(format_mac(&mac), "0a:58:0a:f4:00:05");
        for bad in [
            "",
            "0a:58",
            "0a:58:0a:f4:00:05:01",
            "zz:58:0a:f4:00:05",
            "a:58:0a:f4:00:05",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
