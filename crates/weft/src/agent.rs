//! `weft agent`: the node daemon. It follows the cluster through the Kubernetes API, in the lab as in any cluster.

use crate::logging::Logging;
use anyhow::{Context, Result, anyhow};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_agent::metrics::Metrics;
use weft_agent::node::{Config, run as run_node};
use weft_agent::overlay::Mode;
use weft_daemon::Registry;
use weft_daemon::signal::Termination;
use weft_kube::KubeSource;

#[derive(clap::Args)]
pub struct Args {
    /// This node's name (its Node object).
    #[arg(long)]
    node: String,
    /// The kubeconfig of the node's credentials (default: $KUBECONFIG, ~/.kube/config, or the pod's service
    /// account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "host-gw")]
    overlay: Mode,
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// The link carrying node-to-node traffic.
    #[arg(long, default_value = "eth0")]
    uplink: String,
    /// Where to write the settings weft-cni reads.
    #[arg(long, default_value = "/run/weft/node.json")]
    node_config: PathBuf,
    /// weft-cni's state directory on this node.
    #[arg(long, default_value = "/var/lib/weft/cni")]
    cni_state_dir: PathBuf,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:9654")]
    metrics_address: SocketAddr,
    #[command(flatten)]
    logging: Logging,
}

/// How long a terminating agent lets a sync in progress finish before it exits anyway (leaving it half done is
/// safe: every sync is idempotent, and the next agent completes it).
const FINISH_SYNC: Duration = Duration::from_secs(2);

pub fn run(args: Args) -> Result<()> {
    // First, before any thread exists: every thread must block the termination signals.
    let termination = Termination::block().context("blocking SIGTERM")?;
    args.logging.init()?;
    let config = Config {
        node: args.node,
        overlay: args.overlay,
        cluster_cidr: args.cluster_cidr,
        uplink: args.uplink,
        node_config: args.node_config,
        cni_state_dir: args.cni_state_dir,
    };
    let mut source = KubeSource::start(args.kubeconfig.as_deref(), weft_agent::node::KINDS)
        .map_err(|e| anyhow!("weft agent on {}: {e}", config.node))?;
    let metrics = Arc::new(Metrics::default());
    let registry = Registry::default();
    registry.register(metrics.clone());
    registry.register(source.stats());
    let http = weft_daemon::http::start(args.metrics_address, metrics.clone(), registry)
        .with_context(|| format!("serving /metrics on {}", args.metrics_address))?;
    let stopping = metrics.clone();
    termination.on_signal(move |signal| {
        tracing::info!(%signal, "terminating; routes, nftables tables and the VXLAN device stay for the next agent");
        if !stopping.liveness().wait_idle(FINISH_SYNC) {
            tracing::warn!("a sync is still running; exiting anyway (the next agent completes it)");
        }
        std::process::exit(0);
    })?;
    tracing::info!(node = %config.node, overlay = %config.overlay, %http, "agent started");
    run_node(&mut source, &config, &metrics).map_err(|e| anyhow!("weft agent on {}: {e}", config.node))
}
