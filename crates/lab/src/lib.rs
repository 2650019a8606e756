//! The lab: a whole cluster's network on one Linux host. Nodes and pods are network namespaces, a "wire"
//! namespace holds the switch that connects the nodes and an external host, pods are attached by the real
//! weft-cni binary and run real processes. A supervisor process keeps the objects and runs the controllers and
//! one pod runtime per node; CLI calls talk to it over a Unix socket (`api`).

pub mod api;
pub mod cni;
pub mod controller;
pub mod endpoints;
pub mod error;
pub mod kube_api;
pub mod kubelet;
pub mod reaper;
pub mod sandbox;
pub mod services;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod teardown;
pub mod topology;

pub use error::{Error, Result};
pub use spec::LabSpec;
