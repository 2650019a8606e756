//! Forwarding-database entries of VXLAN devices (`bridge fdb ... self`), plus listing and removing the IP
//! neighbour entries that go with them: a VXLAN overlay needs both, and a sync has to find and drop stale ones.

use crate::error::Result;
use crate::link::format_mac;
use crate::socket::Handle;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use std::net::IpAddr;

/// One remote of a device's own FDB: frames for `mac` are sent to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: [u8; 6],
    /// Tunnel endpoint (None for entries without one, e.g. a plain device's own addresses).
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

/// An IP neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub permanent: bool,
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

/// A neighbour (ARP/NDP) message naming `ip` on link `index`, to which setting adds state and address.
pub(crate) fn ip_neighbour(index: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(neighbour_address(ip)));
    msg
}

/// The crate decodes NDA_DST by the message family, so AF_BRIDGE destinations arrive as raw bytes.
fn ip_of(addr: &NeighbourAddress) -> Option<IpAddr> {
    match addr {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn fdb_message(index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry belongs to the device's own table, not to a bridge it might be a port of.
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(dst) = dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(dst)));
    }
    msg
}

/// Decodes the parts of a neighbour message both tables share: (mac, ip, permanent).
fn decode(m: &NeighbourMessage) -> (Option<[u8; 6]>, Option<IpAddr>, bool) {
    let mut mac = None;
    let mut ip = None;
    for attr in &m.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            NeighbourAttribute::Destination(d) => ip = ip_of(d),
            _ => {}
        }
    }
    let permanent = u16::from(m.header.state) & u16::from(NeighbourState::Permanent) != 0;
    (mac, ip, permanent)
}

impl Handle {
    /// Adds or replaces the permanent entry "`mac` is behind `dst`" in the FDB of device `index` (a VXLAN device).
    /// Replace moves an existing entry for `mac` to the new `dst` instead of adding a second remote.
    pub fn set_fdb(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        self.change(
            RouteNetlinkMessage::NewNeighbour(fdb_message(index, mac, Some(dst))),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("setting fdb {} dst {dst} on link #{index}", format_mac(&mac)),
        )
    }

    /// Deletes the entry for `mac` on device `index`: only its remote `dst` when given, else the whole entry.
    pub fn delete_fdb(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        self.change(
            RouteNetlinkMessage::DelNeighbour(fdb_message(index, mac, dst)),
            0,
            &format!("deleting fdb {} on link #{index}", format_mac(&mac)),
        )
    }

    /// The device's own FDB entries (NTF_SELF), one per remote.
    pub fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        // Without strict checking the kernel ignores filters in an FDB dump request; filter here.
        let replies = self.dump(RouteNetlinkMessage::GetNeighbour(req), "listing fdb entries")?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewNeighbour(m)
                    if m.header.ifindex == index && m.header.flags.contains(NeighbourFlags::Own) =>
                {
                    let (mac, dst, permanent) = decode(m);
                    Some(FdbEntry {
                        mac: mac?,
                        dst,
                        permanent,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// IPv4 and IPv6 neighbour entries on link `index`.
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            for reply in self.dump(RouteNetlinkMessage::GetNeighbour(req), "listing neighbours")? {
                let RouteNetlinkMessage::NewNeighbour(m) = reply else {
                    continue;
                };
                if m.header.ifindex != index {
                    continue;
                }
                if let (mac, Some(ip), permanent) = decode(&m) {
                    out.push(Neighbour { ip, mac, permanent });
                }
            }
        }
        Ok(out)
    }

    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        self.change(
            RouteNetlinkMessage::DelNeighbour(ip_neighbour(index, ip)),
            0,
            &format!("deleting neighbour {ip} on link #{index}"),
        )
    }
}
