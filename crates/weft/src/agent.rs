//! `weft agent`: the node daemon. It follows the cluster through the Kubernetes API, in the lab as in any cluster.

use anyhow::{Result, anyhow};
use std::path::PathBuf;
use weft_agent::node::{Config, run as run_node};
use weft_agent::overlay::Mode;
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
}

pub fn run(args: Args) -> Result<()> {
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
    run_node(&mut source, &config).map_err(|e| anyhow!("weft agent on {}: {e}", config.node))
}
