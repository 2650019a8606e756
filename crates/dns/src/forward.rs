//! Forwarding outside the cluster domain: upstream resolvers, a bounded cache of their positive answers, and
//! forwarding-loop detection (an upstream that is our own address, or one of our own upstream queries arriving
//! back at us as a client query).

use crate::answer::Forward;
use crate::metrics::{Metrics, Worker};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one upstream gets to answer before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(2000);
/// Entries in the upstream answer cache.
const CACHE_ENTRIES: usize = 10_000;
/// The longest an upstream answer is cached, whatever its TTL.
const CACHE_MAX_TTL: u32 = 3600;

/// The `nameserver` lines of a resolv.conf, on port 53.
pub fn from_resolv_conf(path: &Path) -> io::Result<Vec<SocketAddr>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.split('%').next().and_then(|ip| ip.parse::<IpAddr>().ok()))
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect())
}

/// Where a forwarded answer goes.
pub enum Client {
    Udp {
        sock: Arc<UdpSocket>,
        peer: SocketAddr,
        worker: Arc<Worker>,
        started: Instant,
    },
}

struct Waiter {
    forward: Box<Forward>,
    client: Client,
    query: Vec<u8>,
    attempts: usize,
}

struct Inflight {
    key: (String, u16),
    upstream: usize,
    sent: Instant,
    /// The UDP client waiting for this answer; `None` for a TCP client's blocking exchange.
    waiter: Option<Waiter>,
}

struct Cached {
    msg: Message,
    stored: Instant,
    ttl: u32,
}

/// The upstream side of the server.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    looping: Vec<AtomicBool>,
    sock4: Option<UdpSocket>,
    sock6: Option<UdpSocket>,
    inflight: Mutex<HashMap<u16, Inflight>>,
    cache: Mutex<HashMap<(String, u16), Cached>>,
    ids: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `ip` is one of this host's addresses (binding to it succeeds only then).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether sending to `upstream` would reach our own listening address `own`.
pub fn is_self(upstream: SocketAddr, own: SocketAddr) -> bool {
    if upstream == own {
        return true;
    }
    upstream.port() == own.port() && own.ip().is_unspecified() && is_local(upstream.ip())
}

impl Forwarder {
    /// A forwarder to `upstreams`, leaving out any that is our own listening address `own`.
    pub fn new(upstreams: Vec<SocketAddr>, own: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Forwarder> {
        let mut kept = Vec::new();
        for u in upstreams {
            if is_self(u, own) {
                tracing::warn!(upstream = %u, own = %own, "upstream is this server's own address: forwarding loop, not used");
                metrics.loops.fetch_add(1, Relaxed);
            } else {
                kept.push(u);
            }
        }
        let sock4 = kept
            .iter()
            .any(SocketAddr::is_ipv4)
            .then(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .transpose()?;
        let sock6 = kept
            .iter()
            .any(SocketAddr::is_ipv6)
            .then(|| UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)))
            .transpose()?;
        for s in sock4.iter().chain(sock6.iter()) {
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
        }
        Ok(Forwarder {
            looping: kept.iter().map(|_| AtomicBool::new(false)).collect(),
            upstreams: kept,
            sock4,
            sock6,
            inflight: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(0),
            hasher: Default::default(),
            metrics,
        })
    }

    /// The upstreams in use.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Whether there is an upstream socket of that family (and so a receiving loop to run).
    pub fn has_socket(&self, v6: bool) -> bool {
        if v6 { self.sock6.is_some() } else { self.sock4.is_some() }
    }

    fn live(&self, after: usize) -> Option<usize> {
        let n = self.upstreams.len();
        (0..n)
            .map(|i| (after + i) % n)
            .find(|&i| !self.looping[i].load(Relaxed))
    }

    /// An unpredictable query ID not in flight (callers hold the inflight lock).
    fn fresh_id(&self, inflight: &HashMap<u16, Inflight>) -> u16 {
        loop {
            let id = self.hasher.hash_one(self.ids.fetch_add(1, Relaxed)) as u16;
            if !inflight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Whether `f` is one of our own upstream queries come back to us: then the upstream it went to forwards to
    /// us, and is not used again.
    fn looped(&self, f: &Forward) -> bool {
        let key = f.key();
        let inflight = lock(&self.inflight);
        match inflight.get(&f.request.metadata.id) {
            Some(i) if i.key == key => {
                let u = i.upstream;
                drop(inflight);
                if !self.looping[u].swap(true, Relaxed) {
                    tracing::warn!(
                        name = %key.0,
                        upstream = %self.upstreams[u],
                        "query came back from upstream: forwarding loop, upstream not used"
                    );
                }
                self.metrics.loops.fetch_add(1, Relaxed);
                true
            }
            _ => false,
        }
    }

    fn cached(&self, key: &(String, u16)) -> Option<Message> {
        let mut cache = lock(&self.cache);
        let entry = cache.get(key)?;
        let age = entry.stored.elapsed().as_secs() as u32;
        if age >= entry.ttl {
            cache.remove(key);
            return None;
        }
        let mut msg = entry.msg.clone();
        drop(cache);
        for r in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        self.metrics.cache_hits.fetch_add(1, Relaxed);
        Some(msg)
    }

    /// Keeps positive, complete answers for their smallest TTL. Negative answers are never cached (and nothing in
    /// the cluster domain is ever forwarded, so nothing of it is cached either).
    fn store(&self, key: (String, u16), msg: &Message) {
        if msg.metadata.response_code != ResponseCode::NoError || msg.answers.is_empty() || msg.metadata.truncation {
            return;
        }
        let ttl = msg.answers.iter().map(|r| r.ttl).min().unwrap_or(0).min(CACHE_MAX_TTL);
        if ttl == 0 {
            return;
        }
        let mut cache = lock(&self.cache);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, c| c.stored.elapsed().as_secs() < u64::from(c.ttl));
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        let mut msg = msg.clone();
        msg.additionals.retain(|r| r.record_type() != RecordType::OPT);
        msg.edns = None;
        cache.insert(
            key,
            Cached {
                msg,
                stored: Instant::now(),
                ttl,
            },
        );
    }

    fn sock(&self, upstream: SocketAddr) -> Option<&UdpSocket> {
        if upstream.is_ipv4() {
            self.sock4.as_ref()
        } else {
            self.sock6.as_ref()
        }
    }

    /// Answers a UDP client's forwarded question: from the cache, or later from the receiving thread.
    pub fn forward(&self, f: Box<Forward>, raw: &[u8], client: Client) {
        let (rcode, reply) = if self.looped(&f) {
            (ResponseCode::Refused, Some(f.fail(ResponseCode::Refused)))
        } else if let Some(msg) = self.cached(&f.key()) {
            (msg.metadata.response_code, Some(f.relay(&msg)))
        } else if let Some(u) = self.live(0) {
            let mut inflight = lock(&self.inflight);
            let id = self.fresh_id(&inflight);
            let query = f.upstream_query(id, raw);
            if let Some(sock) = self.sock(self.upstreams[u]) {
                let _ = sock.send_to(&query, self.upstreams[u]);
            }
            self.metrics.forwarded.fetch_add(1, Relaxed);
            inflight.insert(
                id,
                Inflight {
                    key: f.key(),
                    upstream: u,
                    sent: Instant::now(),
                    waiter: Some(Waiter {
                        forward: f,
                        client,
                        query,
                        attempts: 1,
                    }),
                },
            );
            return;
        } else {
            (ResponseCode::ServFail, Some(f.fail(ResponseCode::ServFail)))
        };
        if let Some(reply) = reply {
            deliver(&client, &reply, f.query.query_type(), rcode);
        }
    }

    /// The receiving thread: upstream answers to waiting UDP clients, and retries/timeouts.
    pub fn receive(&self, v6: bool) {
        let Some(sock) = (if v6 { self.sock6.as_ref() } else { self.sock4.as_ref() }) else {
            return;
        };
        let mut buf = vec![0u8; 65535];
        let mut last_sweep = Instant::now();
        loop {
            if let Ok((n, from)) = sock.recv_from(&mut buf)
                && n >= 12
            {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let mut inflight = lock(&self.inflight);
                let mine = inflight
                    .get(&id)
                    .is_some_and(|i| i.waiter.is_some() && self.upstreams[i.upstream] == from);
                let entry = if mine { inflight.remove(&id) } else { None };
                drop(inflight);
                if let Some(Inflight {
                    key, waiter: Some(w), ..
                }) = entry
                {
                    self.answer(w, key, &buf[..n]);
                }
            }
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
    }

    fn answer(&self, w: Waiter, key: (String, u16), upstream: &[u8]) {
        let qtype = w.forward.query.query_type();
        match Message::from_vec(upstream) {
            Ok(msg) => {
                self.store(key, &msg);
                let reply = if w.forward.verbatim() {
                    let mut raw = upstream.to_vec();
                    raw[..2].copy_from_slice(&w.forward.request.metadata.id.to_be_bytes());
                    raw
                } else {
                    w.forward.relay(&msg)
                };
                deliver(&w.client, &reply, qtype, msg.metadata.response_code);
            }
            Err(_) => {
                let reply = w.forward.fail(ResponseCode::ServFail);
                deliver(&w.client, &reply, qtype, ResponseCode::ServFail);
            }
        }
    }

    /// Resends timed-out questions to the next upstream, or answers SERVFAIL when every upstream had its turn.
    fn sweep(&self) {
        let mut inflight = lock(&self.inflight);
        let expired: Vec<u16> = inflight
            .iter()
            .filter(|(_, i)| i.waiter.is_some() && i.sent.elapsed() >= UPSTREAM_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        let mut failed = Vec::new();
        for id in expired {
            self.metrics.upstream_timeouts.fetch_add(1, Relaxed);
            let Some(i) = inflight.get_mut(&id) else { continue };
            let next = self.live(i.upstream + 1);
            let attempts = i.waiter.as_ref().map_or(usize::MAX, |w| w.attempts);
            match next {
                Some(u) if attempts < self.upstreams.len() => {
                    i.upstream = u;
                    i.sent = Instant::now();
                    if let Some(w) = i.waiter.as_mut() {
                        w.attempts += 1;
                        if let Some(sock) = self.sock(self.upstreams[u]) {
                            let _ = sock.send_to(&w.query, self.upstreams[u]);
                        }
                    }
                }
                _ => {
                    if let Some(Inflight { waiter: Some(w), .. }) = inflight.remove(&id) {
                        failed.push(w);
                    }
                }
            }
        }
        drop(inflight);
        for w in failed {
            let reply = w.forward.fail(ResponseCode::ServFail);
            deliver(&w.client, &reply, w.forward.query.query_type(), ResponseCode::ServFail);
        }
    }

    /// Answers a TCP client's forwarded question, blocking this connection's thread (UDP upstream first, TCP
    /// when the answer was truncated).
    pub fn exchange(&self, f: &Forward, raw: &[u8]) -> Vec<u8> {
        if self.looped(f) {
            return f.fail(ResponseCode::Refused);
        }
        let key = f.key();
        if let Some(msg) = self.cached(&key) {
            return f.relay(&msg);
        }
        let mut tried = 0;
        let mut next = self.live(0);
        while let Some(u) = next
            && tried < self.upstreams.len()
        {
            tried += 1;
            let upstream = self.upstreams[u];
            let id = {
                let mut inflight = lock(&self.inflight);
                let id = self.fresh_id(&inflight);
                inflight.insert(
                    id,
                    Inflight {
                        key: key.clone(),
                        upstream: u,
                        sent: Instant::now(),
                        waiter: None,
                    },
                );
                id
            };
            let query = f.upstream_query(id, raw);
            self.metrics.forwarded.fetch_add(1, Relaxed);
            let got = exchange_one(upstream, id, &query);
            lock(&self.inflight).remove(&id);
            match got
                .ok()
                .and_then(|bytes| Message::from_vec(&bytes).ok().map(|m| (bytes, m)))
            {
                Some((bytes, msg)) => {
                    self.store(key, &msg);
                    if f.verbatim() {
                        let mut raw = bytes;
                        raw[..2].copy_from_slice(&f.request.metadata.id.to_be_bytes());
                        return raw;
                    }
                    return f.relay(&msg);
                }
                None => {
                    self.metrics.upstream_timeouts.fetch_add(1, Relaxed);
                    next = self.live(u + 1);
                }
            }
        }
        f.fail(ResponseCode::ServFail)
    }
}

/// One question to one upstream: over UDP, then over TCP when the answer was truncated.
fn exchange_one(upstream: SocketAddr, id: u16, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(upstream)?;
    sock.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    sock.send(query)?;
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let n = sock.recv(&mut buf)?;
        if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            if buf[2] & 0x02 == 0 {
                buf.truncate(n);
                return Ok(buf);
            }
            break;
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    let mut tcp = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)?;
    tcp.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    tcp.write_all(&framed)?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len)?;
    let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut out)?;
    Ok(out)
}

fn deliver(client: &Client, reply: &[u8], qtype: RecordType, rcode: ResponseCode) {
    match client {
        Client::Udp {
            sock,
            peer,
            worker,
            started,
        } => {
            let _ = sock.send_to(reply, *peer);
            worker.query(Some(qtype), Some(rcode), started.elapsed());
        }
    }
}
