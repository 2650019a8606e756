//! Sockets and threads: UDP workers on SO_REUSEPORT sockets (a socket each, served in batches: `mmsg`), a TCP
//! acceptor with a thread per connection, and the table they answer from behind a generation counter (each worker
//! re-reads the shared table only when the generation moved, so the hot path takes no lock).

use crate::answer::{Outcome, TCP_LIMIT, handle, handle_into};
use crate::forward::{Client, Forwarder};
use crate::metrics::{Metrics, Worker};
use crate::mmsg::Batch;
use crate::records::Table;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::io::{self, Read, Write};
use std::mem::size_of;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What every thread shares.
pub struct Shared {
    pub zone: String,
    generation: AtomicU64,
    table: RwLock<Option<Arc<Table>>>,
    pub metrics: Arc<Metrics>,
    pub forwarder: Forwarder,
    pub tcp_idle: Duration,
    tcp_active: AtomicUsize,
}

/// At most this many TCP connections at once; more are closed at once.
const MAX_TCP: usize = 512;

impl Shared {
    pub fn new(zone: String, metrics: Arc<Metrics>, forwarder: Forwarder, tcp_idle: Duration) -> Shared {
        Shared {
            zone,
            generation: AtomicU64::new(0),
            table: RwLock::new(None),
            metrics,
            forwarder,
            tcp_idle,
            tcp_active: AtomicUsize::new(0),
        }
    }

    /// Serves `table` from now on.
    pub fn install(&self, table: Table) {
        let table = Arc::new(table);
        match self.table.write() {
            Ok(mut t) => *t = Some(table),
            Err(poisoned) => *poisoned.into_inner() = Some(table),
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether a complete snapshot is being served.
    pub fn ready(&self) -> bool {
        self.generation.load(Ordering::Acquire) > 0
    }

    fn current(&self) -> Option<Arc<Table>> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A worker's view of the table, refreshed when the generation moves.
struct View {
    generation: u64,
    table: Option<Arc<Table>>,
}

impl View {
    fn new() -> View {
        View {
            generation: 0,
            table: None,
        }
    }

    fn get(&mut self, shared: &Shared) -> Option<&Table> {
        let g = shared.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.table = shared.current();
            self.generation = g;
        }
        self.table.as_deref()
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough and suitably aligned for any sockaddr.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn setsockopt(fd: &OwnedFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A socket bound to `addr` with SO_REUSEPORT, so several workers share one address.
fn reuseport(addr: SocketAddr, kind: libc::c_int) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt(&fd, libc::SO_REUSEADDR, 1)?;
    setsockopt(&fd, libc::SO_REUSEPORT, 1)?;
    if kind == libc::SOCK_DGRAM {
        // Bursts queue in the kernel instead of being dropped; capped by net.core.rmem_max.
        let _ = setsockopt(&fd, libc::SO_RCVBUF, 4 << 20);
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a valid sockaddr of `len` bytes.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), &storage as *const _ as *const libc::sockaddr, len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if kind == libc::SOCK_STREAM {
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::listen(fd.as_raw_fd(), 1024) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// The bound sockets: `workers` UDP sockets and one TCP listener, all on the same address.
pub struct Sockets {
    pub udp: Vec<UdpSocket>,
    pub tcp: TcpListener,
    pub addr: SocketAddr,
}

/// Binds the sockets; with port 0, one free port for UDP and TCP alike.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Sockets> {
    let mut last = None;
    for _ in 0..20 {
        let first = UdpSocket::from(reuseport(addr, libc::SOCK_DGRAM)?);
        let bound = first.local_addr()?;
        let attempt = (|| -> io::Result<Sockets> {
            let tcp = TcpListener::from(reuseport(bound, libc::SOCK_STREAM)?);
            let mut udp = vec![first.try_clone()?];
            for _ in 1..workers.max(1) {
                udp.push(UdpSocket::from(reuseport(bound, libc::SOCK_DGRAM)?));
            }
            Ok(Sockets { udp, tcp, addr: bound })
        })();
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

/// Datagrams taken per `recvmmsg` (see `mmsg`).
const BATCH: usize = 32;

/// An answer waiting for the batch's `sendmmsg`: the datagram's index in the batch (its bytes are that slot of the
/// worker's answer buffers), and what the metrics count once it is sent.
type Reply = (usize, Option<RecordType>, Option<ResponseCode>);

/// One UDP worker: receive a batch, answer it, send the answers in one call, forever. The answers are written
/// into buffers kept from batch to batch. After a batch of more than one query but less than a full one, waits
/// `linger` (if not zero) before the next (`Config::linger`).
pub fn udp_worker(sock: Arc<UdpSocket>, shared: Arc<Shared>, metrics: Arc<Worker>, linger: Duration) {
    let fd = sock.as_raw_fd();
    let mut batch = Batch::new(BATCH);
    let mut answers: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut replies: Vec<Reply> = Vec::with_capacity(BATCH);
    let mut view = View::new();
    loop {
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let started = Instant::now();
        for (i, buf) in answers.iter_mut().enumerate().take(n) {
            let packet = batch.packet(i);
            let h = handle_into(view.get(&shared), &shared.zone, packet, true, std::mem::take(buf));
            match h.outcome {
                Outcome::Reply(bytes) => {
                    if bytes.len() > 2 && bytes[2] & 0x02 != 0 {
                        shared.metrics.truncated.fetch_add(1, Ordering::Relaxed);
                    }
                    *buf = bytes;
                    replies.push((i, h.qtype, h.rcode));
                }
                Outcome::Forward(f) => {
                    let Some(peer) = batch.peer(i) else { continue };
                    let client = Client::Udp {
                        sock: sock.clone(),
                        peer,
                        worker: metrics.clone(),
                        started,
                    };
                    shared.forwarder.forward(f, packet, client);
                }
                Outcome::Drop => metrics.query(None, None, started.elapsed()),
            }
        }
        batch.send(fd, replies.iter().map(|&(i, ..)| (i, answers[i].as_slice())));
        let took = started.elapsed();
        for (_, qtype, rcode) in replies.drain(..) {
            metrics.query(qtype, rcode, took);
        }
        if !linger.is_zero() && n > 1 && n < BATCH {
            std::thread::sleep(linger);
        }
    }
}

/// Accepts TCP connections, a thread each, up to `MAX_TCP` at once.
pub fn tcp_acceptor(listener: TcpListener, shared: Arc<Shared>) {
    let metrics = shared.metrics.worker();
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        if shared.tcp_active.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            shared.tcp_active.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        shared.metrics.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let (shared, metrics) = (shared.clone(), metrics.clone());
        let spawned = std::thread::Builder::new()
            .name("dns-tcp".into())
            .stack_size(256 << 10)
            .spawn({
                let shared = shared.clone();
                move || {
                    let _ = tcp_connection(stream, &shared, &metrics);
                    shared.tcp_active.fetch_sub(1, Ordering::AcqRel);
                }
            });
        if spawned.is_err() {
            shared.tcp_active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Several queries on one connection, each framed by its two-byte length; closed when idle.
fn tcp_connection(mut stream: TcpStream, shared: &Shared, metrics: &Worker) -> io::Result<()> {
    stream.set_read_timeout(Some(shared.tcp_idle))?;
    stream.set_write_timeout(Some(shared.tcp_idle))?;
    stream.set_nodelay(true)?;
    let mut view = View::new();
    let mut buf = vec![0u8; TCP_LIMIT];
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let n = usize::from(u16::from_be_bytes(len));
        stream.read_exact(&mut buf[..n])?;
        let started = Instant::now();
        let h = handle(view.get(shared), &shared.zone, &buf[..n], false);
        let (bytes, qtype, rcode) = match h.outcome {
            Outcome::Reply(bytes) => (bytes, h.qtype, h.rcode),
            Outcome::Forward(f) => {
                let bytes = shared.forwarder.exchange(&f, &buf[..n]);
                let rcode = (bytes.len() >= 4).then(|| hickory_proto::op::ResponseCode::from(0, bytes[3] & 0x0f));
                (bytes, h.qtype, rcode)
            }
            Outcome::Drop => {
                metrics.query(None, None, started.elapsed());
                return Ok(());
            }
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed)?;
        metrics.query(qtype, rcode, started.elapsed());
    }
}
