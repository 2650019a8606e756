//! What the kernel tells about connections in the calling thread's network namespace, on one nfnetlink socket:
//! conntrack events (`NFNLGRP_CONNTRACK_NEW` and `_DESTROY`: a connection accepted, with the translation its
//! reply tuple shows, and its end, with counters when `nf_conntrack_acct` is on) and the packets an nftables
//! `log group N` rule hands to nfnetlink_log (weft's policy drops, with the rule's prefix).
//!
//! Messages are decoded with `netlink-packet-netfilter`; the counters, which it leaves raw, are read here.
//! Multicast is lossy: when the receive buffer overflows the kernel drops events and says so ([`Event::Lost`]).

use crate::error::{Error, Result};
use netlink_packet_core::{
    NLA_TYPE_MASK, NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla,
};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple};
use netlink_packet_netfilter::nflog::{ConfigCmd, ConfigMode, ConfigNla, PacketNla, ULogMessage};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const NFNETLINK_V0: u8 = 0;
/// Bytes of a logged packet copied to us: the IP and transport headers are all a flow needs.
const COPY_RANGE: u32 = 128;
const RECEIVE_BUFFER: usize = 16 << 20;
/// Datagrams one `recv` takes at most, so that a flood still yields batches of bounded size.
const DATAGRAMS_AT_ONCE: usize = 1024;

/// Addresses and ports of one direction of a connection (ports are 0 for protocols without them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple4 {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// Packets and bytes each way, from conntrack accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

/// One connection event: `original` as the first packet was sent, `reply` as the answer comes back (after a
/// DNAT, its source is the backend the destination was translated to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub protocol: u8,
    pub original: Tuple4,
    pub reply: Tuple4,
    pub counters: Option<Counters>,
}

/// A packet an nftables `log group` rule handed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub prefix: String,
    pub protocol: u8,
    pub packet: Tuple4,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    New(Connection),
    Destroy(Connection),
    Logged(Logged),
    /// The kernel dropped events that did not fit the receive buffer.
    Lost,
}

/// The subscription.
pub struct FlowEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl FlowEvents {
    /// Subscribes, in the calling thread's namespace, to conntrack's new and destroyed connections (when
    /// `conntrack`) and to the packets logged to `log_group` (when given).
    pub fn open(conntrack: bool, log_group: Option<u16>) -> Result<FlowEvents> {
        let fail = |op: &str| {
            let op = op.to_string();
            move |source| Error::Netlink { op, source }
        };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(fail("opening an nfnetlink socket"))?;
        socket.bind_auto().map_err(fail("binding an nfnetlink socket"))?;
        // Best effort: beyond the limit the kernel keeps the largest size it allows.
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        let mut events = FlowEvents {
            socket,
            buf: vec![0; 1 << 20],
        };
        // Bound before any multicast group is joined, so the acknowledgement is the only message waiting.
        if let Some(group) = log_group {
            events.bind_log_group(group)?;
        }
        if conntrack {
            for group in [NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY] {
                events
                    .socket
                    .add_membership(group)
                    .map_err(fail("joining the conntrack event groups"))?;
            }
        }
        Ok(events)
    }

    fn bind_log_group(&mut self, group: u16) -> Result<()> {
        // One packet per message, at once (the kernel's default batches up to 100 for up to a second); the rules
        // are rate-limited, so this stays cheap.
        let nlas: Vec<ConfigNla> = vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(COPY_RANGE).into(),
            ConfigNla::QThresh(1),
        ];
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = 1;
        let mut message = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, NFNETLINK_V0, group),
                ULogMessage::Config(nlas),
            )),
        );
        message.finalize();
        let mut out = vec![0; message.buffer_len()];
        message.serialize(&mut out);
        let op = format!("binding nflog group {group}");
        let io_err = |source| Error::Netlink { op: op.clone(), source };
        self.socket.send(&out, 0).map_err(io_err)?;
        let len = self.socket.recv(&mut &mut self.buf[..], 0).map_err(io_err)?;
        let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&self.buf[..len]).map_err(|e| Error::Decode {
            op: op.clone(),
            msg: e.to_string(),
        })?;
        match reply.payload {
            NetlinkPayload::Error(e) => match e.code {
                None => Ok(()),
                // EBUSY: another socket holds the group (a second agent on the node).
                Some(code) => Err(io_err(io::Error::from_raw_os_error(-code.get()))),
            },
            _ => Ok(()),
        }
    }

    /// Waits for the next datagram, then takes every one already queued (each conntrack event is a datagram
    /// of its own), and appends the events they hold.
    pub fn recv(&mut self, out: &mut Vec<Event>) -> Result<()> {
        let mut flags = 0;
        for _ in 0..DATAGRAMS_AT_ONCE {
            match self.socket.recv(&mut &mut self.buf[..], flags) {
                Ok(len) => decode(&self.buf[..len], out),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.push(Event::Lost),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && flags != 0 => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(source) => {
                    return Err(Error::Netlink {
                        op: "receiving flow events".into(),
                        source,
                    });
                }
            }
            flags = libc::MSG_DONTWAIT;
        }
        Ok(())
    }
}

/// The events in one datagram; what does not decode is skipped (a kernel newer than the decoder).
pub fn decode(mut data: &[u8], out: &mut Vec<Event>) {
    while data.len() >= 16 {
        let size = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if size < 16 || size > data.len() {
            return;
        }
        if let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(&data[..size])
            && let NetlinkPayload::InnerMessage(message) = message.payload
            && let Some(event) = event(message.inner)
        {
            out.push(event);
        }
        // Messages are 4-byte aligned.
        data = &data[size.next_multiple_of(4).min(data.len())..];
    }
}

fn event(inner: NetfilterMessageInner) -> Option<Event> {
    match inner {
        NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) => connection(&attrs).map(Event::New),
        NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(attrs)) => connection(&attrs).map(Event::Destroy),
        NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)) => logged(&nlas).map(Event::Logged),
        _ => None,
    }
}

fn connection(attrs: &[ConntrackAttribute]) -> Option<Connection> {
    let (mut original, mut reply, mut counters) = (None, None, None::<Counters>);
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(t) => original = tuple(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple(t),
            // The kind of a raw attribute keeps its flags (these are nested).
            ConntrackAttribute::Other(nla)
                if matches!(nla.kind() & NLA_TYPE_MASK, CTA_COUNTERS_ORIG | CTA_COUNTERS_REPLY) =>
            {
                let mut value = vec![0; nla.value_len()];
                nla.emit_value(&mut value);
                let (packets, bytes) = counter_values(&value);
                let c = counters.get_or_insert_default();
                if nla.kind() & NLA_TYPE_MASK == CTA_COUNTERS_ORIG {
                    (c.packets, c.bytes) = (packets, bytes);
                } else {
                    (c.reply_packets, c.reply_bytes) = (packets, bytes);
                }
            }
            _ => {}
        }
    }
    let ((protocol, original), (_, reply)) = (original?, reply?);
    Some(Connection {
        protocol,
        original,
        reply,
        counters,
    })
}

/// CTA_COUNTERS_PACKETS and _BYTES (big-endian u64) from a nested attribute's value.
fn counter_values(mut value: &[u8]) -> (u64, u64) {
    let (mut packets, mut bytes) = (0, 0);
    while value.len() >= 4 {
        let len = u16::from_ne_bytes([value[0], value[1]]) as usize;
        let kind = u16::from_ne_bytes([value[2], value[3]]) & 0x3fff;
        if len < 4 || len > value.len() {
            break;
        }
        if let Ok(v) = <[u8; 8]>::try_from(&value[4..len]) {
            match kind {
                CTA_COUNTERS_PACKETS => packets = u64::from_be_bytes(v),
                CTA_COUNTERS_BYTES => bytes = u64::from_be_bytes(v),
                _ => {}
            }
        }
        value = &value[len.next_multiple_of(4).min(value.len())..];
    }
    (packets, bytes)
}

fn tuple(parts: &[Tuple]) -> Option<(u8, Tuple4)> {
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, 0, 0);
    for part in parts {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(n) => protocol = Some(u8::from(*n)),
                        ProtoTuple::SourcePort(n) => sport = *n,
                        ProtoTuple::DestinationPort(n) => dport = *n,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        protocol?,
        Tuple4 {
            src: src?,
            dst: dst?,
            sport,
            dport,
        },
    ))
}

fn logged(nlas: &[PacketNla]) -> Option<Logged> {
    let (mut prefix, mut payload) = (String::new(), None);
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => prefix = p.to_string_lossy().into_owned(),
            PacketNla::Payload(p) => payload = Some(p.as_slice()),
            _ => {}
        }
    }
    let (protocol, packet) = ip_header(payload?)?;
    Some(Logged {
        prefix,
        protocol,
        packet,
    })
}

/// Protocol, addresses and ports of an IPv4 or IPv6 packet (IPv6 extension headers are not followed).
pub fn ip_header(p: &[u8]) -> Option<(u8, Tuple4)> {
    let (protocol, src, dst, l4): (u8, IpAddr, IpAddr, &[u8]) = match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let octets = |at: usize| -> Option<Ipv4Addr> { Some(<[u8; 4]>::try_from(p.get(at..at + 4)?).ok()?.into()) };
            (*p.get(9)?, octets(12)?.into(), octets(16)?.into(), p.get(ihl..)?)
        }
        6 => {
            let octets =
                |at: usize| -> Option<Ipv6Addr> { Some(<[u8; 16]>::try_from(p.get(at..at + 16)?).ok()?.into()) };
            (*p.get(6)?, octets(8)?.into(), octets(24)?.into(), p.get(40..)?)
        }
        _ => return None,
    };
    // TCP, UDP, SCTP, UDP-Lite: the ports are the first four bytes.
    let (sport, dport) = match protocol {
        6 | 17 | 132 | 136 if l4.len() >= 4 => (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])),
        _ => (0, 0),
    };
    Some((protocol, Tuple4 { src, dst, sport, dport }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_ipv4_tcp_header() {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 1, 5, 10, 244, 2, 7];
        p.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 0]);
        let (proto, t) = ip_header(&p).unwrap();
        assert_eq!(proto, 6);
        assert_eq!(t.src, IpAddr::from([10, 244, 1, 5]));
        assert_eq!(t.dst, IpAddr::from([10, 244, 2, 7]));
        assert_eq!((t.sport, t.dport), (40000, 80));
        assert_eq!(ip_header(&p[..10]), None, "truncated");
    }

    #[test]
    fn reads_counters() {
        let mut v = Vec::new();
        for (kind, n) in [(CTA_COUNTERS_PACKETS, 3u64), (CTA_COUNTERS_BYTES, 180)] {
            v.extend_from_slice(&12u16.to_ne_bytes());
            v.extend_from_slice(&kind.to_ne_bytes());
            v.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(counter_values(&v), (3, 180));
    }
}
