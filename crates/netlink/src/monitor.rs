//! Kernel change notifications for the calling thread's network namespace: nftables (NETLINK_NETFILTER, group
//! NFNLGRP_NFTABLES) and rtnetlink (links, neighbours and FDB entries, IPv4 routes, IPv4 netconf). Only what a
//! caller needs to tell whose object changed is decoded: a table's name, a route's protocol, a link's name.

use crate::error::{Error, Result};
use netlink_sys::{
    Socket,
    protocols::{NETLINK_NETFILTER, NETLINK_ROUTE},
};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

const NFNLGRP_NFTABLES: u32 = 7;
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV4_NETCONF: u32 = 24;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_NEWNETCONF: u16 = 80;
const RTM_DELNETCONF: u16 = 81;
const AF_BRIDGE: u8 = 7;
const NUD_PERMANENT: u16 = 0x80;
const RT_TABLE_MAIN: u32 = 254;

/// Notifications are bursty (a full sync of a large table is one message per rule and element): the kernel
/// drops what does not fit and says so, which [`Event::Lost`] reports.
const RECEIVE_BUFFER: usize = 8 << 20;

/// One change the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An nftables object of `table` (family as nfnetlink numbers it: `inet` is 1) was added, changed or
    /// deleted; `elements` when it was only set or map elements. Part of the transaction the next
    /// [`Event::Generation`] ends.
    Nft {
        family: u8,
        table: String,
        elements: bool,
    },
    /// The end of one nftables transaction: the process (thread id) that committed it and its name.
    Generation {
        pid: u32,
        process: String,
    },
    Link {
        index: u32,
        name: Option<String>,
    },
    /// A route of the main table.
    Route {
        protocol: u8,
    },
    /// A neighbour (`bridge`: an FDB entry) on link `index`.
    Neighbour {
        index: u32,
        bridge: bool,
        permanent: bool,
    },
    /// A per-interface or global IPv4 setting (forwarding and friends).
    Netconf,
    /// The kernel dropped notifications: anything may have changed.
    Lost,
}

/// The two notification sockets.
pub struct Monitor {
    nft: Socket,
    route: Socket,
    buf: Vec<u8>,
}

fn open(protocol: isize, groups: &[u32]) -> Result<Socket> {
    let fail = |source| Error::Netlink {
        op: "opening a notification socket".into(),
        source,
    };
    let mut socket = Socket::new(protocol).map_err(fail)?;
    socket.bind_auto().map_err(fail)?;
    for group in groups {
        socket.add_membership(*group).map_err(fail)?;
    }
    // Best effort: beyond the limit the kernel keeps the largest size it allows.
    let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
    socket.set_non_blocking(true).map_err(fail)?;
    Ok(socket)
}

impl Monitor {
    /// Subscribes in the calling thread's network namespace.
    pub fn open() -> Result<Monitor> {
        Ok(Monitor {
            nft: open(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES])?,
            route: open(
                NETLINK_ROUTE,
                &[RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_NETCONF],
            )?,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Waits up to `timeout` (forever: `None`) for notifications and appends every one that has arrived.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.nft.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.route.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Error::Netlink {
                op: "waiting for notifications".into(),
                source: err,
            });
        }
        Self::drain(&self.nft, &mut self.buf, out, parse_nft)?;
        Self::drain(&self.route, &mut self.buf, out, parse_route)
    }

    fn drain(
        socket: &Socket,
        buf: &mut [u8],
        out: &mut Vec<Event>,
        parse: fn(u16, &[u8]) -> Option<Event>,
    ) -> Result<()> {
        loop {
            match socket.recv(&mut &mut buf[..], 0) {
                Ok(len) => messages(&buf[..len], |kind, body| out.extend(parse(kind, body))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.push(Event::Lost),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Netlink {
                        op: "reading notifications".into(),
                        source,
                    });
                }
            }
        }
    }
}

/// Calls `each(type, body)` for every netlink message in `data` (body: what follows the 16-byte header).
pub(crate) fn messages(mut data: &[u8], mut each: impl FnMut(u16, &[u8])) {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            return;
        }
        each(u16::from_ne_bytes([data[4], data[5]]), &data[16..len]);
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
}

/// The attributes after a fixed header of `skip` bytes: (type without flags, payload).
pub(crate) fn attributes(body: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(skip..).unwrap_or_default();
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        Some((kind, payload))
    })
}

pub(crate) fn text(payload: &[u8]) -> String {
    let end = payload.iter().position(|b| *b == 0).unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// An nftables notification: after nfgenmsg (4 bytes), attribute 1 is the table's name in every object message
/// (NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE,OBJ_TABLE,FLOWTABLE_TABLE}); a
/// generation message has NFTA_GEN_PROC_PID (2) and NFTA_GEN_PROC_NAME (3).
fn parse_nft(kind: u16, body: &[u8]) -> Option<Event> {
    if kind >> 8 != NFNL_SUBSYS_NFTABLES {
        return None;
    }
    let msg = kind & 0xff;
    if msg == NFT_MSG_NEWGEN {
        let mut pid = 0;
        let mut process = String::new();
        for (attr, payload) in attributes(body, 4) {
            match attr {
                2 if payload.len() == 4 => pid = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                3 => process = text(payload),
                _ => {}
            }
        }
        return Some(Event::Generation { pid, process });
    }
    let family = *body.first()?;
    let table = attributes(body, 4).find(|(attr, _)| *attr == 1).map(|(_, p)| text(p))?;
    Some(Event::Nft {
        family,
        table,
        elements: matches!(msg, NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM),
    })
}

/// An rtnetlink notification, by its fixed header (ifinfomsg, rtmsg, ndmsg) and the one attribute needed.
fn parse_route(kind: u16, body: &[u8]) -> Option<Event> {
    let u32_at = |at: usize| {
        body.get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    match kind {
        RTM_NEWLINK | RTM_DELLINK => Some(Event::Link {
            index: u32_at(4)?,
            // IFLA_IFNAME
            name: attributes(body, 16).find(|(attr, _)| *attr == 3).map(|(_, p)| text(p)),
        }),
        RTM_NEWROUTE | RTM_DELROUTE => {
            // RTA_TABLE (15) holds tables beyond 255; rtm_table (byte 4) the rest.
            let table = attributes(body, 12)
                .find(|(attr, p)| *attr == 15 && p.len() == 4)
                .map_or(u32::from(*body.get(4)?), |(_, p)| {
                    u32::from_ne_bytes([p[0], p[1], p[2], p[3]])
                });
            (table == RT_TABLE_MAIN).then(|| Event::Route { protocol: body[5] })
        }
        RTM_NEWNEIGH | RTM_DELNEIGH => {
            let state = body.get(8..10).map(|b| u16::from_ne_bytes([b[0], b[1]]))?;
            Some(Event::Neighbour {
                index: u32_at(4)?,
                bridge: *body.first()? == AF_BRIDGE,
                permanent: state & NUD_PERMANENT != 0,
            })
        }
        RTM_NEWNETCONF | RTM_DELNETCONF => Some(Event::Netconf),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn nftables_notifications_name_their_table_and_committer() {
        let mut rule = vec![1, 0, 0, 0];
        attr(&mut rule, 1, b"weft\0");
        attr(&mut rule, 2, b"services\0");
        let mut elements = vec![1, 0, 0, 0];
        attr(&mut elements, 1, b"weft-cni\0");
        let mut generation = vec![0, 0, 0, 0];
        attr(&mut generation, 1, &7u32.to_be_bytes());
        attr(&mut generation, 2, &4242u32.to_be_bytes());
        attr(&mut generation, 3, b"nft\0");
        let mut data = message(10 << 8 | 8, &rule);
        data.extend(message(10 << 8 | 12, &elements));
        data.extend(message(10 << 8 | 15, &generation));
        let mut events = Vec::new();
        messages(&data, |kind, body| events.extend(parse_nft(kind, body)));
        assert_eq!(
            events,
            vec![
                Event::Nft {
                    family: 1,
                    table: "weft".into(),
                    elements: false
                },
                Event::Nft {
                    family: 1,
                    table: "weft-cni".into(),
                    elements: true
                },
                Event::Generation {
                    pid: 4242,
                    process: "nft".into()
                },
            ]
        );
    }

    #[test]
    fn rtnetlink_notifications_keep_what_tells_owners_apart() {
        let mut link = vec![0; 16];
        link[4..8].copy_from_slice(&9u32.to_ne_bytes());
        attr(&mut link, 3, b"weft.1\0");
        let mut route = vec![2, 24, 0, 0, 254, 247, 0, 1, 0, 0, 0, 0];
        attr(&mut route, 1, &[10, 244, 2, 0]);
        let local = [2, 32, 0, 0, 255, 2, 254, 2, 0, 0, 0, 0];
        let mut fdb = vec![AF_BRIDGE, 0, 0, 0, 9, 0, 0, 0, 0x80, 0, 0, 0];
        fdb[4..8].copy_from_slice(&9u32.to_ne_bytes());
        let mut data = message(RTM_DELLINK, &link);
        data.extend(message(RTM_DELROUTE, &route));
        data.extend(message(RTM_NEWROUTE, &local));
        data.extend(message(RTM_NEWNEIGH, &fdb));
        data.extend(message(RTM_NEWNETCONF, &[2, 0, 0, 0]));
        let mut events = Vec::new();
        messages(&data, |kind, body| events.extend(parse_route(kind, body)));
        assert_eq!(
            events,
            vec![
                Event::Link {
                    index: 9,
                    name: Some("weft.1".into())
                },
                Event::Route { protocol: 247 },
                Event::Neighbour {
                    index: 9,
                    bridge: true,
                    permanent: true
                },
                Event::Netconf,
            ]
        );
    }
}
