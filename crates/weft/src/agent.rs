//! `weft agent`: the node daemon. In the lab its cluster state comes from the lab's API.

use anyhow::{Result, anyhow};
use std::path::PathBuf;
use weft_agent::node::{Config, run as run_node};
use weft_agent::overlay::Mode;
use weft_lab::source::LabSource;
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// This node's name (its Node object).
    #[arg(long)]
    node: String,
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

pub fn run(lab: &str, args: Args) -> Result<()> {
    let config = Config {
        node: args.node,
        overlay: args.overlay,
        cluster_cidr: args.cluster_cidr,
        uplink: args.uplink,
        node_config: args.node_config,
        cni_state_dir: args.cni_state_dir,
    };
    let mut source = LabSource::new(
        Paths::new(lab),
        Some(weft_agent::node::KINDS.iter().map(|k| k.to_string()).collect()),
    );
    run_node(&mut source, &config).map_err(|e| anyhow!("weft agent on {}: {e}", config.node))
}
