//! Neighbour (ARP/NDP) entries.

use crate::error::Result;
use crate::fdb::ip_neighbour;
use crate::socket::Handle;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::{
    RouteNetlinkMessage,
    neighbour::{NeighbourAttribute, NeighbourState},
    route::RouteType,
};
use std::net::IpAddr;

impl Handle {
    /// Adds or replaces a permanent neighbour entry: `ip` is at `mac` on link `index`.
    pub fn set_neighbour(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        let mut msg = ip_neighbour(index, ip);
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.change(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("setting neighbour {ip} on link #{index}"),
        )
    }
}
