//! The kernel's slow waits moved out of the plugin's lifetime, its effects not.
//!
//! Two things on DEL make the kernel wait for RCU grace periods inside a system call:
//! - unregistering a network device: `RTM_DELLINK` returns only after `rcu_barrier()` (~18 ms on a 2-core
//!   VM), long after the device was unlisted (its name free, its addresses, routes, neighbours and bridge port
//!   gone, `RTM_DELLINK` announced on the link multicast group);
//! - releasing an nfnetlink socket while a deleting transaction's deferred destroy work is pending (any
//!   socket, anyone's): the release flushes that work (~14 ms) *holding the nftables commit mutex*, so every
//!   other transaction, and every device unregistration (nf_tables' netdev notifier takes the same mutex),
//!   waits too.
//!
//! Link deletions: [`delete_links_named`] forks a helper (new session, no stdin/stdout/stderr, so a runtime
//! reading the plugin's stdout to EOF is not held) that sends `RTM_DELLINK` by index and sits through the
//! kernel's wait; the plugin returns once the kernel announces each link deleted. If the helper cannot be
//! made or the announcement does not come in time, the plugin deletes the link itself.
//!
//! nfnetlink sockets: [`linger`] hands the socket of a deleting transaction, after the kernel acknowledged
//! it, to one releaser per network namespace (an abstract unix socket; a detached process started by the
//! first plugin that needs it). The releaser keeps every socket it is given until no new one has come for
//! [`IDLE`], then closes them all: one flush per burst of DELs, at a quiet moment, instead of one per DEL
//! in the middle of the next one. ADD hands over its socket too while a releaser runs ([`offer`]), since
//! its release would flush the DELs' pending work just the same.
//!
//! Only the binary turns this on ([`enable`]); a library caller (tests, fuzzing) gets the plain synchronous
//! behaviour.

use crate::spec::Result;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft_netlink::Handle;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long a link deletion may take before the plugin does it itself.
const UNLIST_DEADLINE: Duration = Duration::from_secs(5);
/// The releaser closes what it holds once nothing new came for this long.
pub const IDLE: Duration = Duration::from_millis(250);
/// At most this many sockets are held; reaching it releases them all at once.
const MAX_HELD: usize = 4000;
/// The releaser's address: abstract, so it is per network namespace and vanishes with its process.
const RELEASER: &[u8] = b"\0weft-cni/nfnetlink-release";

const RTM_DELLINK: u16 = 17;
const RTMGRP_LINK: u32 = 1;
const NLM_F_REQUEST: u16 = 1;

/// Lets this process hand waits to detached helpers. Called by `main` only.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn releaser_addr() -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(RELEASER) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + RELEASER.len();
    (addr, len as libc::socklen_t)
}

/// Sends `fd` over `via` to the releaser in one datagram; async-signal-safe.
fn send_fd(via: RawFd, fd: RawFd) -> io::Result<()> {
    let (addr, addr_len) = releaser_addr();
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr carrying one descriptor, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr and cmsghdr are plain data; every pointer refers to a live local of the right size.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&raw const addr).cast_mut().cast();
        msg.msg_namelen = addr_len;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(via, &raw const msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Hands `fd` to this namespace's releaser; Err when none is listening (or it is overwhelmed).
fn to_releaser(fd: &OwnedFd) -> io::Result<()> {
    let via = socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    // A releaser that does not drain its queue within this time is not waited for.
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: setsockopt reads one timeval.
    unsafe {
        libc::setsockopt(
            via.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    send_fd(via.as_raw_fd(), fd.as_raw_fd())
}

/// The socket of a committed transaction that deleted something: released by this namespace's releaser
/// (started now if there is none) instead of here. Without [`enable`], closed now.
pub fn linger(fd: OwnedFd) {
    if !enabled() || to_releaser(&fd).is_ok() {
        return;
    }
    // Failing to start one only means this process pays the wait when it closes `fd`.
    let _ = start_releaser(fd);
}

/// Any other nfnetlink socket: handed to a running releaser, else closed here (there is then most likely no
/// deleting transaction pending whose flush its release would wait for).
pub fn offer(fd: OwnedFd) {
    if enabled() {
        let _ = to_releaser(&fd);
    }
}

/// Closes every descriptor but `keep` (sorted); async-signal-safe.
fn close_all_but(keep: &[RawFd]) {
    let mut next: libc::c_uint = 0;
    for &fd in keep {
        let fd = fd as libc::c_uint;
        if fd > next {
            // SAFETY: closing descriptors in the helper, which owns all of them.
            unsafe { libc::close_range(next, fd - 1, 0) };
        }
        next = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::close_range(next, libc::c_uint::MAX, 0) };
}

/// Forks a detached process: new session, root directory, every descriptor closed but `keep`. Returns in
/// the parent (true) and in the child (false); the child must end with `_exit`.
fn fork_detached(keep: &mut [RawFd]) -> io::Result<bool> {
    keep.sort_unstable();
    // SAFETY: the child only makes async-signal-safe calls on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(true);
    }
    // SAFETY: setsid and chdir take no Rust-managed memory; "/" is a valid C string.
    unsafe {
        libc::setsid();
        libc::chdir(c"/".as_ptr());
    }
    close_all_but(keep);
    Ok(false)
}

/// Starts this namespace's releaser holding `first`. If another one won the race to the address, the
/// helper just exits, releasing `first` (and waiting for that) on its own time, not the plugin's.
fn start_releaser(first: OwnedFd) -> io::Result<()> {
    let listener = socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    // Allocated before the fork: the releaser does not allocate.
    let mut held: Vec<RawFd> = Vec::with_capacity(MAX_HELD);
    let mut keep = [first.as_raw_fd(), listener.as_raw_fd()];
    if fork_detached(&mut keep)? {
        return Ok(()); // our copies close on drop; the releaser's stay open
    }
    let (addr, addr_len) = releaser_addr();
    // SAFETY (whole block): only async-signal-safe calls; the child never returns into Rust code.
    unsafe {
        if libc::bind(listener.as_raw_fd(), (&raw const addr).cast(), addr_len) != 0 {
            libc::_exit(0);
        }
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
        held.push(first.as_raw_fd());
        let mut byte = 0u8;
        let mut control = [0u64; 8];
        loop {
            let mut pfd = libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = libc::poll(&raw mut pfd, 1, IDLE.as_millis() as libc::c_int);
            if ready == 0 {
                break;
            }
            if ready < 0 {
                continue; // EINTR
            }
            let mut iov = libc::iovec {
                iov_base: (&raw mut byte).cast(),
                iov_len: 1,
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            if libc::recvmsg(listener.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) < 0 {
                continue;
            }
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    for i in 0..count {
                        if held.len() == held.capacity() {
                            for fd in held.drain(..) {
                                libc::close(fd);
                            }
                        }
                        held.push(std::ptr::read_unaligned(data.add(i)));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        // Unbind first, so the next plugin starts a new releaser instead of sending to this one.
        libc::close(listener.as_raw_fd());
        for fd in held.drain(..) {
            libc::close(fd);
        }
        libc::_exit(0);
    }
}

/// `RTM_DELLINK` requests for `indexes`, without acknowledgement (the helper does not read).
fn dellink_requests(indexes: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, index) in indexes.iter().enumerate() {
        out.extend_from_slice(&32u32.to_ne_bytes());
        out.extend_from_slice(&RTM_DELLINK.to_ne_bytes());
        out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        out.extend_from_slice(&(seq as u32 + 1).to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        // ifinfomsg: family, pad, type, index, flags, change.
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&index.to_ne_bytes());
        out.extend_from_slice(&[0; 8]);
    }
    out
}

/// Makes the link helper wait this many milliseconds before it sends its request, so tests can check that DEL
/// waits for the kernel's announcement rather than racing it.
pub const TEST_DELAY_ENV: &str = "WEFT_CNI_TEST_HELPER_DELAY_MS";

/// Forks a helper that sends `request` on `socket` (blocking through the kernel's wait) and exits.
fn send_detached(socket: OwnedFd, request: Vec<u8>) -> io::Result<()> {
    let delay_ms: u32 = std::env::var(TEST_DELAY_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(10_000);
    let delay = libc::timespec {
        tv_sec: (delay_ms / 1000).into(),
        tv_nsec: ((delay_ms % 1000) * 1_000_000).into(),
    };
    if fork_detached(&mut [socket.as_raw_fd()])? {
        return Ok(());
    }
    // SAFETY: async-signal-safe calls on memory prepared before the fork; never returns into Rust code.
    unsafe {
        if delay_ms > 0 {
            libc::nanosleep(&raw const delay, std::ptr::null_mut());
        }
        libc::send(socket.as_raw_fd(), request.as_ptr().cast(), request.len(), 0);
        libc::_exit(0);
    }
}

/// Indexes of links the kernel announced as deleted in one read of the link group.
fn deleted_indexes(buf: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
        if len < 16 {
            break;
        }
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
        // AF_UNSPEC: the link itself (a bridge also announces a removed port, as AF_BRIDGE).
        if kind == RTM_DELLINK && at + 24 <= buf.len() && buf[at + 16] == 0 {
            out.push(u32::from_ne_bytes(buf[at + 20..at + 24].try_into().unwrap_or_default()));
        }
        at += len.next_multiple_of(4);
    }
    out
}

/// A socket on the link multicast group of the calling thread's namespace.
fn link_monitor() -> io::Result<OwnedFd> {
    let monitor = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    // SAFETY: sockaddr_nl is plain data; bind reads it.
    let rc = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = RTMGRP_LINK;
        libc::bind(
            monitor.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let size: libc::c_int = 1 << 20;
    // SAFETY: setsockopt reads one int. Best effort: a small buffer only means more lookups after overflows.
    unsafe {
        libc::setsockopt(
            monitor.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Ok(monitor)
}

/// Deletes the links named `names` (in the calling thread's namespace; missing ones are fine) and returns
/// once the kernel has unlisted them: their names are free and their addresses, routes, neighbours and bridge
/// ports are gone, with only the kernel's final freeing of the devices left to a detached helper. Returns how
/// many of them there were.
pub fn delete_links_named(host: &mut Handle, names: &[&str]) -> Result<usize> {
    if !enabled() {
        let mut found = 0;
        for name in names {
            found += usize::from(host.delete_link_named(name)?);
        }
        return Ok(found);
    }
    // Subscribe before the lookups, so a deletion by anyone after them is announced to us.
    let monitor = link_monitor();
    let mut pending = Vec::new();
    for name in names {
        if let Some(link) = host.link_by_name(name)? {
            pending.push(link.index);
        }
    }
    let found = pending.len();
    if found == 0 {
        return Ok(0);
    }
    let handed_off = monitor.and_then(|monitor| {
        let request = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        send_detached(request, dellink_requests(&pending))?;
        wait_unlisted(host, &monitor, &mut pending, Instant::now() + UNLIST_DEADLINE);
        Ok(())
    });
    drop(handed_off);
    // Whatever was not announced in time (or could not be handed off) is deleted here, by index, so a link
    // re-created under the same name meanwhile is never touched.
    for index in pending {
        match host.delete_link(index) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(found)
}

/// Reads link announcements until every index in `pending` was deleted or `deadline` passes; removes the
/// announced ones from `pending`. When announcements were lost (the socket overflowed), looks the rest up.
fn wait_unlisted(host: &mut Handle, monitor: &OwnedFd, pending: &mut Vec<u32>, deadline: Instant) {
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: monitor.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        let ready = unsafe { libc::poll(&raw mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32 + 1) };
        if ready <= 0 {
            continue; // timeout (checked above) or EINTR
        }
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                monitor.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                pending.retain(|i| !matches!(host.link_by_index(*i), Ok(None)));
            }
            continue;
        }
        for index in deleted_indexes(&buf[..n as usize]) {
            pending.retain(|i| *i != index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dellink_requests_are_parsed_back_as_announcements() {
        let bytes = dellink_requests(&[7, 300]);
        assert_eq!(bytes.len(), 64);
        assert_eq!(deleted_indexes(&bytes), vec![7, 300]);
        let mut bridge_port = dellink_requests(&[9]);
        bridge_port[16] = libc::AF_BRIDGE as u8;
        assert!(deleted_indexes(&bridge_port).is_empty());
        assert!(deleted_indexes(&[0; 8]).is_empty());
    }

    #[test]
    fn the_releaser_address_is_abstract() {
        let (addr, len) = releaser_addr();
        assert_eq!(addr.sun_path[0], 0);
        assert_eq!(len as usize, 2 + RELEASER.len());
    }
}
