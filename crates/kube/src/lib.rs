//! weft's node components as Kubernetes clients: `KubeSource` follows the cluster through the Kubernetes API with
//! kube-rs watchers and delivers it as the `Snapshot`s the agent and DNS plan from, in the lab as in any cluster.

mod mirror;
mod source;
mod stats;

pub use source::{Error, KubeSource};
pub use stats::WatchStats;
