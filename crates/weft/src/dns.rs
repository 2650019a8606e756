//! `weft dns`: the cluster DNS server (the role CoreDNS plays), fed by the Kubernetes API or, for tests and the
//! benchmark, by a fixed manifest file.

use crate::api_args::ApiArgs;
use crate::logging::Logging;
use anyhow::{Context, Result, bail};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_daemon::signal::Termination;
use weft_dns::{Config, Server, StaticSource};
use weft_kube::KubeSource;
use weft_model::Source;

#[derive(clap::Args)]
pub struct Args {
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Upstream resolver for names outside the cluster domain (repeatable; IP or IP:PORT). Default: the
    /// nameservers of --resolv-conf.
    #[arg(long)]
    upstream: Vec<String>,
    /// Where to read upstream resolvers when no --upstream is given.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Forward nothing: names outside the cluster domain are answered SERVFAIL at once (for a network with no way
    /// out, such as the lab, where every forwarded question would wait for the upstream timeout first).
    #[arg(long, conflicts_with_all = ["upstream", "resolv_conf"])]
    no_upstream: bool,
    /// Serve the objects of this manifest file instead of following the Kubernetes API.
    #[arg(long, conflicts_with = "kubeconfig")]
    objects: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    domain: String,
    /// TTL of cluster records, in seconds.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    /// UDP worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Microseconds a UDP worker waits before reading again after a batch of more than one query but less than a
    /// full one, so that under load the next batch gathers more: fewer wakeups and system calls per query, at
    /// most this much more latency (0: never wait; a lone query never waits).
    #[arg(long, default_value_t = 200)]
    linger_us: u64,
    /// Seconds before an idle TCP connection is closed.
    #[arg(long, default_value_t = 10)]
    tcp_idle: u64,
    /// Seconds to keep answering after SIGTERM, with /readyz failing, while the Service's endpoints drop this
    /// server (CoreDNS's `lameduck`).
    #[arg(long, default_value_t = 5)]
    lameduck: u64,
    #[command(flatten)]
    logging: Logging,
}

/// The kinds the records are made of. Not Pods: pod hostnames come with their EndpointSlice endpoints and pod
/// records are answered from the name alone, so a pod's status changes need no new table.
pub const KINDS: [&str; 3] = ["Service", "EndpointSlice", "Namespace"];

fn upstream(text: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => bail!("--upstream {text}: not an IP address or IP:PORT"),
    }
}

pub fn run(args: Args) -> Result<()> {
    // First, before any thread exists: every thread must block the termination signals.
    let termination = Termination::block().context("blocking SIGTERM")?;
    args.logging.init()?;
    let upstreams = if args.no_upstream {
        Vec::new()
    } else if args.upstream.is_empty() {
        match weft_dns::forward::from_resolv_conf(&args.resolv_conf) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(file = %args.resolv_conf.display(), error = %e, "no upstream resolvers");
                Vec::new()
            }
        }
    } else {
        args.upstream.iter().map(|u| upstream(u)).collect::<Result<_>>()?
    };
    let config = Config {
        listen: args.listen,
        http: Some(args.http),
        upstreams,
        ttl: args.ttl,
        domain: args.domain,
        workers: args.workers,
        tcp_idle: Duration::from_secs(args.tcp_idle),
        linger: Duration::from_micros(args.linger_us),
    };
    let server = Arc::new(Server::start(config)?);
    let mut source: Box<dyn Source> = match args.objects {
        Some(path) => Box::new(StaticSource::from_file(&path).context("weft dns --objects")?),
        None => {
            let kube = KubeSource::start(&args.api.options(), &KINDS, &[]).context("weft dns")?;
            server.registry().register(kube.stats());
            Box::new(kube)
        }
    };
    let lameduck = Duration::from_secs(args.lameduck);
    let draining = server.clone();
    termination.on_signal(move |signal| {
        tracing::info!(%signal, lameduck = ?lameduck, "terminating: not ready, still answering for the lameduck period");
        draining.drain();
        std::thread::sleep(lameduck);
        std::process::exit(0);
    })?;
    server.announce();
    server.follow(source.as_mut())
}
