//! Datagrams in batches. `recvmmsg` with `MSG_WAITFORONE` returns as soon as one datagram is there, together with
//! every other one already queued (up to the batch size), and `sendmmsg` sends all their answers in one call: under
//! load a pair of system calls serves a whole batch instead of two calls per query, and a lone query is answered
//! at once. (libc directly, like the socket setup in `server`: nix's wrappers tie the headers and buffers to one
//! borrow, which a loop reusing them cannot keep.)

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// The largest query read; a longer datagram arrives cut and is answered FORMERR (DNS queries are tens of bytes,
/// an EDNS one with options a few hundred).
pub const SLOT: usize = 4096;

/// Receive buffers, their senders, and the headers for both directions, allocated once per worker.
pub struct Batch {
    bufs: Box<[[u8; SLOT]]>,
    peers: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    received: usize,
    send_iovs: Box<[libc::iovec]>,
    send_hdrs: Box<[libc::mmsghdr]>,
}

fn zeroed<T>(n: usize) -> Box<[T]> {
    // SAFETY: only used for libc's plain-old-data structs (and byte arrays), for which all-zero bytes are valid.
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

impl Batch {
    pub fn new(size: usize) -> Batch {
        let size = size.max(1);
        Batch {
            bufs: vec![[0u8; SLOT]; size].into_boxed_slice(),
            peers: zeroed(size),
            iovs: zeroed(size),
            hdrs: zeroed(size),
            received: 0,
            send_iovs: zeroed(size),
            send_hdrs: zeroed(size),
        }
    }

    /// Waits for at least one datagram on `fd` and takes up to the batch size; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        for i in 0..self.bufs.len() {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at buffers, addresses and iovecs owned by `self`, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last `recv`.
    pub fn packet(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(SLOT);
        &self.bufs[i][..len]
    }

    /// The sender of datagram `i`.
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        let storage = &self.peers[i];
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET; storage is large enough and aligned.
                let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
            }
            _ => None,
        }
    }

    /// Sends each `(i, answer)` to the sender of datagram `i` of the last `recv`, as few calls as the kernel
    /// allows. An answer the kernel refuses (e.g. an unreachable sender) is skipped, as `send_to` would fail it.
    pub fn send<'a>(&mut self, fd: RawFd, replies: impl Iterator<Item = (usize, &'a [u8])>) {
        let mut count = 0;
        for (i, bytes) in replies.take(self.send_hdrs.len()) {
            if i >= self.received {
                continue;
            }
            self.send_iovs[count] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let h = &mut self.send_hdrs[count];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
            h.msg_hdr.msg_iov = &mut self.send_iovs[count];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            count += 1;
        }
        let mut done = 0;
        while done < count {
            // SAFETY: headers `done..count` point at live answers (borrowed for this call) and at our addresses.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_hdrs[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                done += n as usize;
            } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                done += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_batch_is_received_and_answered_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for q in [b"one".as_slice(), b"two", b"three"] {
            client.send_to(q, server.local_addr().unwrap()).unwrap();
        }
        let mut batch = Batch::new(8);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = batch.recv(server.as_raw_fd()).unwrap();
            for i in 0..n {
                assert_eq!(batch.peer(i), Some(client.local_addr().unwrap()));
                got.push(batch.packet(i).to_vec());
            }
            let answers: Vec<Vec<u8>> = (0..n).map(|i| [batch.packet(i), b"!"].concat()).collect();
            batch.send(
                server.as_raw_fd(),
                answers.iter().enumerate().map(|(i, a)| (i, a.as_slice())),
            );
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        let mut buf = [0u8; 64];
        for want in [b"one!".as_slice(), b"two!", b"three!"] {
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }
}
