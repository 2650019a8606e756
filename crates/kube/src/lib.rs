//! weft's node components as Kubernetes clients: `KubeSource` follows the cluster through the Kubernetes API with
//! kube-rs watchers and delivers it as the `Snapshot`s the agent and DNS plan from, in the lab as in any cluster;
//! `client` makes the rate-limited client they share.

mod client;
mod mirror;
mod source;
mod stats;

pub use client::{ClientOptions, client};
pub use kube::api::ApiResource;
pub use source::{Error, KubeSource};
pub use stats::WatchStats;
