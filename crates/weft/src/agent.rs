//! `weft agent`: the node daemon. It follows the cluster through the Kubernetes API, in the lab as in any cluster.

use crate::api_args::ApiArgs;
use crate::logging::Logging;
use anyhow::{Context, Result, anyhow};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_agent::ipam::{Allocation, CidrSource, PodCIDRBlock, Pool};
use weft_agent::ippool::{self, IPPool};
use weft_agent::metrics::Metrics;
use weft_agent::node::{Config, run as run_node};
use weft_agent::overlay::Mode;
use weft_daemon::Registry;
use weft_daemon::signal::Termination;
use weft_kube::{ApiResource, KubeSource};
use weft_model::k8s_openapi::api::core::v1::Node;

#[derive(clap::Args)]
pub struct Args {
    /// This node's name (its Node object).
    #[arg(long)]
    node: String,
    #[command(flatten)]
    api: ApiArgs,
    #[arg(long, default_value = "host-gw")]
    overlay: Mode,
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// Where each node's pod CIDR comes from: `node` (Node.spec.podCIDR, as the cluster allocates it), `weft`
    /// (blocks of --cluster-cidr that the agents claim as PodCIDRBlocks), `auto` (node when any Node has one).
    #[arg(long, default_value = "auto")]
    pod_cidrs: CidrSource,
    /// The prefix length of the blocks weft allocates.
    #[arg(long, default_value_t = 24)]
    block_length: u8,
    /// The link carrying node-to-node traffic.
    #[arg(long, default_value = "eth0")]
    uplink: String,
    /// Where to write the settings weft-cni reads.
    #[arg(long, default_value = "/run/weft/node.json")]
    node_config: PathBuf,
    /// weft-cni's state directory on this node.
    #[arg(long, default_value = "/var/lib/weft/cni")]
    cni_state_dir: PathBuf,
    /// Where /healthz, /readyz, /metrics and /flows are served.
    #[arg(long, default_value = "0.0.0.0:9654")]
    metrics_address: SocketAddr,
    /// The UDP port of VXLAN (the IANA port by default; flannel uses 8472).
    #[arg(long, env = "VXLAN_PORT", default_value_t = weft_agent::overlay::VXLAN_PORT)]
    vxlan_port: u16,
    /// Observe flows (conntrack events and logged policy drops) and serve them on /flows (`weft observe`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    observe: bool,
    /// How many flows the node keeps.
    #[arg(long, default_value_t = weft_agent::flows::CAPACITY)]
    flow_buffer: usize,
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
    let node = args.node.clone();
    let options = args.api.options();
    let custom = start(&args).with_context(|| format!("weft agent on {node}"))?;
    let reports = report_thread(&args.api.options()).with_context(|| format!("weft agent on {node}"))?;
    let config = Config {
        node: args.node,
        overlay: args.overlay,
        cluster_cidr: args.cluster_cidr,
        uplink: args.uplink,
        node_config: args.node_config,
        cni_state_dir: args.cni_state_dir,
        reports: Some(reports),
        vxlan_port: args.vxlan_port,
        flows: args
            .observe
            .then(|| weft_agent::flows::Flows::new(&node, args.flow_buffer)),
    };
    let keep = weft_agent::projection::keep;
    let mut source = KubeSource::start_with(&options, weft_agent::node::KINDS, &custom, keep)
        .map_err(|e| anyhow!("weft agent on {node}: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let registry = Registry::default();
    registry.register(metrics.clone());
    registry.register(source.stats());
    let mut endpoints: Option<Arc<dyn weft_daemon::http::Extra>> = None;
    if let Some(flows) = &config.flows {
        registry.register(flows.clone());
        match flows.start() {
            Ok(()) => endpoints = Some(Arc::new(weft_agent::flows::Endpoint(flows.clone()))),
            // The dataplane does not depend on it: run without flows.
            Err(e) => tracing::error!(error = %e, "observing flows"),
        }
    }
    let http = weft_daemon::http::start_with(args.metrics_address, metrics.clone(), registry, endpoints)
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
    run_node(&mut source, &config, &metrics).map_err(|e| anyhow!("weft agent on {node}: {e}"))
}

/// What the agent settles with the API before it follows it: a kube-proxy on the node is reported, the default
/// IP pool is created when there is none, and with weft allocating pod CIDRs this node's block is claimed.
/// Returns the custom resources to follow besides the built-in kinds (the pools, and the blocks when weft
/// allocates).
fn start(args: &Args) -> Result<Vec<ApiResource>> {
    let pool = Pool::new(args.cluster_cidr, args.block_length).map_err(|e| anyhow!("--block-length: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, _) = weft_kube::client(&args.api.options()).await?;
        // Looking for kube-proxy runs `nft`: beside the API's answers below, not before them.
        let (settled, ()) = tokio::join!(settle(args, &client, &pool), report_kube_proxy(&client, &args.node));
        settled
    })
}

/// The default IP pool (made when there is none) and this node's pod CIDR; returns the custom resources to follow.
async fn settle(args: &Args, client: &kube::Client, pool: &Pool) -> Result<Vec<ApiResource>> {
    let mode = args.overlay.vxlan_mode();
    // deploy/weft.yaml defines the IPPool kind after the DaemonSet: the API may not serve it for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let created = loop {
        match ippool::report::ensure_default(client, args.cluster_cidr, mode).await {
            Err(kube::Error::Api(status)) if status.code == 404 && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.context("creating the default IPPool")?,
        }
    };
    if created {
        tracing::info!(pool = ippool::DEFAULT_POOL, cidr = %args.cluster_cidr, vxlan_mode = %mode, "created the default IP pool");
    }
    let pools = ApiResource::erase::<IPPool>(&());
    let nodes = kube::Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .context("listing Nodes")?;
    match args.pod_cidrs.resolve(&nodes.items) {
        Allocation::Node => {
            tracing::info!("pod CIDRs: each Node's spec.podCIDR, as the cluster allocates them");
            Ok(vec![pools])
        }
        Allocation::Weft => {
            let cidr = weft_agent::ipam::claim(client, pool, &args.node).await?;
            tracing::info!(%cidr, cluster_cidr = %args.cluster_cidr, "pod CIDR: a block held as a PodCIDRBlock");
            Ok(vec![pools, ApiResource::erase::<PodCIDRBlock>(&())])
        }
    }
}

/// A thread that sends what the overlay sync finds for the API (IP pool conditions, the node's address, Events),
/// one change at a time; a failed one is logged and sent again by a later sync, which finds it still missing.
fn report_thread(options: &weft_kube::ClientOptions) -> Result<std::sync::mpsc::Sender<ippool::report::Write>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = runtime.block_on(weft_kube::client(options))?.0;
    let (tx, rx) = std::sync::mpsc::channel::<ippool::report::Write>();
    std::thread::Builder::new()
        .name("api-reports".into())
        .spawn(move || {
            for write in rx {
                if let Err(e) = runtime.block_on(ippool::report::write(&client, &write)) {
                    tracing::warn!(error = %e, ?write, "writing to the API");
                }
            }
        })
        .context("starting the API reports thread")?;
    Ok(tx)
}

/// Warns (in the log and as an Event on the Node) when kube-proxy runs on this node too.
async fn report_kube_proxy(client: &kube::Client, node: &str) {
    let detected = tokio::task::spawn_blocking(weft_agent::kube_proxy::detect).await;
    let found = match detected
        .map_err(|e| e.to_string())
        .and_then(|d| d.map_err(|e| e.to_string()))
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "looking for kube-proxy");
            return;
        }
    };
    if found.is_empty() {
        return;
    }
    let message = weft_agent::kube_proxy::warning(&found);
    tracing::warn!("{message}");
    if let Err(e) = weft_agent::kube_proxy::record(client, node, &message).await {
        tracing::warn!(error = %e, %node, "recording the kube-proxy Event on the Node");
    }
}
