//! A synchronous rtnetlink socket: one request, its replies, its acknowledgement. The socket belongs to the
//! network namespace of the thread that opened it, whichever thread uses it later.

use crate::error::{Error, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;

pub struct Handle {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Handle {
    /// Opens a socket in the calling thread's network namespace.
    pub fn new() -> Result<Handle> {
        let fail = |source| Error::Netlink {
            op: "opening a netlink socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        // Extended acks make the kernel explain EINVAL and friends; best effort.
        let _ = socket.set_ext_ack(true);
        Ok(Handle {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends a request that changes something and waits for its acknowledgement.
    pub fn change(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<()> {
        self.exchange(msg, flags | NLM_F_ACK, op).map(drop)
    }

    /// Sends a dump request and collects every reply.
    pub fn dump(&mut self, msg: RouteNetlinkMessage, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP, op)
    }

    /// Sends a get request for one object; Ok(None) when the kernel says it does not exist.
    pub fn get(&mut self, msg: RouteNetlinkMessage, op: &str) -> Result<Option<RouteNetlinkMessage>> {
        match self.exchange(msg, 0, op) {
            Ok(mut replies) => Ok(replies.pop()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        let io_err = |source| Error::Netlink {
            op: op.to_string(),
            source,
        };
        self.socket.send(&out, 0).map_err(io_err)?;

        let multipart = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let len = self.socket.recv(&mut &mut self.buf[..], 0).map_err(io_err)?;
            let mut offset = 0;
            while offset < len {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..len]).map_err(|e| {
                        Error::Decode {
                            op: op.to_string(),
                            msg: e.to_string(),
                        }
                    })?;
                let size = reply.header.length as usize;
                if size == 0 {
                    return Err(Error::Decode {
                        op: op.to_string(),
                        msg: "zero-length message".into(),
                    });
                }
                offset += size;
                if reply.header.sequence_number != self.seq {
                    continue; // a late reply to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !multipart {
                            // A get's single reply; an ACK may not follow.
                            if flags & NLM_F_ACK == 0 {
                                return Ok(replies);
                            }
                        }
                    }
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(code) => return Err(io_err(io::Error::from_raw_os_error(-code.get()))),
                    },
                    NetlinkPayload::Done(_) => return Ok(replies),
                    _ => {}
                }
            }
        }
    }
}
