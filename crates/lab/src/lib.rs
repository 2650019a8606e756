//! The lab: a whole cluster's network on one Linux host. Nodes and pods are network namespaces, a "wire"
//! namespace holds the switch that connects the nodes and an external host, pods are attached by the real
//! weft-cni binary and run real processes. A supervisor process keeps the objects and runs the controllers and
//! one pod runtime per node; it serves the Kubernetes API (`kube_api`), which the CLI and kubectl use.

pub mod acme;
pub mod cni;
pub mod controller;
pub mod daemonset;
pub mod deployment;
mod disk;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod install;
pub mod kube_api;
pub mod kubelet;
pub mod node_fs;
mod pidfile;
pub mod reaper;
pub mod replicaset;
pub mod sandbox;
pub mod services;
pub mod spec;
pub mod state_dir;
pub mod store;
pub mod supervisor;
pub mod teardown;
pub mod topology;

pub use error::{Error, Result};
pub use spec::LabSpec;
