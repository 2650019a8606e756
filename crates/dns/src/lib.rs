//! weft's cluster DNS server: the records of the Kubernetes DNS-Based Service Discovery specification (1.1.0) from
//! the cluster's snapshots, served over UDP and TCP by several worker threads; everything outside the cluster
//! domain forwarded upstream with a bounded cache; `/healthz`, `/readyz` and `/metrics` over HTTP (weft-daemon's).
//!
//! `records` is the pure core (snapshot → table), `answer` the request path (bytes → bytes; `direct` its fast
//! path for the common question), `server` and `forward` the shell.

pub mod answer;
pub mod direct;
pub mod forward;
mod index;
pub mod metrics;
mod mmsg;
pub mod records;
pub mod server;
pub mod source;

pub use records::{Lookup, Table};
pub use source::StaticSource;

use metrics::Metrics;
use server::Shared;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use weft_daemon::{Liveness, Probes, Registry};
use weft_model::Source;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding DNS sockets on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the HTTP endpoint on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP address (port 0: any free port).
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics` (none: no HTTP endpoint).
    pub http: Option<SocketAddr>,
    /// Resolvers for everything outside the cluster domain.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of the cluster records, in seconds.
    pub ttl: u32,
    /// The cluster domain.
    pub domain: String,
    /// UDP worker threads (0: one per CPU).
    pub workers: usize,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle: Duration,
    /// How long a UDP worker waits before reading again after a batch that found more than one query queued
    /// but not a full batch: under load the next batch then gathers more queries (fewer wakeups and system calls
    /// per query), at the cost of at most this much latency; a lone query never waits. Zero: never wait.
    pub linger: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: ([0, 0, 0, 0], 53).into(),
            http: Some(([0, 0, 0, 0], 8080).into()),
            upstreams: Vec::new(),
            ttl: 5,
            domain: "cluster.local".into(),
            workers: 0,
            tcp_idle: Duration::from_secs(10),
            linger: Duration::from_micros(200),
        }
    }
}

/// A running server: its addresses, and the handle to feed it tables.
pub struct Server {
    shared: Arc<Shared>,
    status: Arc<Status>,
    registry: Registry,
    config: Config,
    /// Where DNS is served (UDP and TCP).
    pub addr: SocketAddr,
    /// Where the HTTP endpoints are served.
    pub http_addr: Option<SocketAddr>,
}

impl Server {
    /// Binds every socket and starts every thread; answers SERVFAIL in the cluster domain until the first table.
    pub fn start(config: Config) -> Result<Server, Error> {
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let sockets = server::bind(config.listen, workers).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        let forwarder =
            forward::Forwarder::new(config.upstreams.clone(), sockets.addr, metrics.clone()).map_err(|source| {
                Error::Start {
                    what: "the forwarder",
                    source,
                }
            })?;
        let zone = config.domain.trim_end_matches('.').to_ascii_lowercase();
        let shared = Arc::new(Shared::new(zone, metrics.clone(), forwarder, config.tcp_idle));
        let start = |what: &'static str, source: std::io::Error| Error::Start { what, source };

        let status = Arc::new(Status {
            shared: shared.clone(),
            liveness: Liveness::new(STUCK),
            draining: AtomicBool::new(false),
        });
        let registry = Registry::default();
        registry.register(metrics.clone());
        let http_addr = match config.http {
            Some(addr) => Some(
                weft_daemon::http::start(addr, status.clone(), registry.clone())
                    .map_err(|source| Error::Http { addr, source })?,
            ),
            None => None,
        };
        // The forwarder's receiving threads hold an Arc of the forwarder through `shared`.
        spawn_forwarder(&shared).map_err(|e| start("the forwarder", e))?;
        for (i, sock) in sockets.udp.into_iter().enumerate() {
            let (shared, worker, linger) = (shared.clone(), metrics.worker(), config.linger);
            let sock: Arc<UdpSocket> = Arc::new(sock);
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || server::udp_worker(sock, shared, worker, linger))
                .map_err(|e| start("a UDP worker", e))?;
        }
        let (tcp, shared2) = (sockets.tcp, shared.clone());
        std::thread::Builder::new()
            .name("dns-tcp-accept".into())
            .spawn(move || server::tcp_acceptor(tcp, shared2))
            .map_err(|e| start("the TCP acceptor", e))?;
        Ok(Server {
            shared,
            status,
            registry,
            config,
            addr: sockets.addr,
            http_addr,
        })
    }

    /// Builds and serves the table of `snapshot`; returns how long that took. Each of the snapshot's changes is
    /// timed from when the API accepted it to now, when the answers include it.
    pub fn install(&self, snapshot: &weft_model::Snapshot) -> Duration {
        let _turn = self.status.liveness.turn("table build");
        let started = Instant::now();
        // Built on a thread of its own: glibc gives it another malloc arena, so the table does not interleave with
        // the snapshot's memory, and the snapshot's pages can go back to the system once it is dropped.
        let build = || Table::build(snapshot, &self.config.domain, self.config.ttl);
        let table = std::thread::scope(|s| s.spawn(build).join()).unwrap_or_else(|_| build());
        let names = table.names();
        self.shared.install(table);
        let took = started.elapsed();
        let m = &self.shared.metrics;
        m.sync.observe(took);
        let served = SystemTime::now();
        for changed in &snapshot.changes {
            // A change stamped after now (clocks of other hosts) counts as immediate.
            m.change_to_answer
                .observe(served.duration_since(*changed).unwrap_or_default());
        }
        m.revision.store(snapshot.revision, Ordering::Relaxed);
        m.names.store(names as u64, Ordering::Relaxed);
        took
    }

    /// Follows `source` forever, serving each snapshot as it arrives; source errors are retried every second
    /// while the last table keeps being served.
    pub fn follow(&self, source: &mut dyn Source) -> ! {
        let mut after = 0;
        loop {
            match source.next(after) {
                Ok(snapshot) => {
                    let took = self.install(&snapshot);
                    tracing::debug!(
                        revision = snapshot.revision,
                        names = self.shared.metrics.names.load(Ordering::Relaxed),
                        took = ?took,
                        "records served"
                    );
                    after = snapshot.revision;
                    drop(snapshot);
                    trim();
                }
                Err(e) => {
                    self.shared.metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cluster state source failed; retrying in 1s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// The metrics text, as `/metrics` serves it.
    pub fn metrics(&self) -> String {
        self.registry.render()
    }

    /// Where more metrics (e.g. the API source's watch counters) join the server's on `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// From now on `/readyz` answers 503 (so endpoints drop this server) while queries are still answered: what
    /// a terminating server does before it exits.
    pub fn drain(&self) {
        self.status.draining.store(true, Ordering::Relaxed);
    }

    /// The upstreams in use (after leaving out our own address).
    pub fn upstreams(&self) -> &[SocketAddr] {
        self.shared.forwarder.upstreams()
    }
}

fn spawn_forwarder(shared: &Arc<Shared>) -> std::io::Result<()> {
    // The forwarder lives inside `Shared`; its receive loops borrow it through an Arc of `Shared`.
    for v6 in [false, true] {
        if shared.forwarder.has_socket(v6) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dns-upstream".into())
                .spawn(move || shared.forwarder.receive(v6))?;
        }
    }
    Ok(())
}

/// Gives the memory freed after a table build (the old table, the snapshot, parsing garbage) back to the
/// system, so that RSS follows the live table.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Server {
    /// Logs where the server answers.
    pub fn announce(&self) {
        tracing::info!(
            domain = %self.config.domain,
            dns = %self.addr,
            http = %self.http_addr.map_or("none".into(), |a| a.to_string()),
            upstreams = ?self.upstreams(),
            "serving"
        );
    }
}

/// A table build that takes this long means the server is stuck (one takes well under a second at 10,000
/// Services).
const STUCK: Duration = Duration::from_secs(60);

/// What the probes see.
struct Status {
    shared: Arc<Shared>,
    liveness: Liveness,
    draining: AtomicBool,
}

impl Probes for Status {
    fn healthy(&self) -> Result<(), String> {
        self.liveness.check()
    }

    fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            Err("terminating".into())
        } else if self.shared.ready() {
            Ok(())
        } else {
            Err("waiting for the first snapshot".into())
        }
    }
}
