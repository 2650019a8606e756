//! The Kubernetes API a lab serves, so that the real kubectl and kube-rs drive it unchanged: HTTPS with client
//! certificates, discovery and OpenAPI, list/get/create/update/patch/delete/watch with server-side tables, and
//! the pod subresources, over a store the lab keeps (the `Cluster` trait).

pub mod api;
mod atomic_write;
pub mod auth;
pub mod authz;
pub mod body;
pub mod cluster;
pub mod crd;
pub mod discovery;
pub mod impersonate;
pub mod jsonpath;
pub mod kubeconfig;
pub mod names;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod pods;
pub mod portforward;
pub mod protobuf;
pub mod registry;
pub mod remotecommand;
pub mod request;
pub mod review;
pub mod selector;
pub mod server;
pub mod spdy;
pub mod status;
pub mod strict;
pub mod table;
pub mod tokens;
pub mod upgrade;
pub mod version;
pub mod watch;

pub use api::Api;
pub use cluster::{Change, Cluster, Deletion};
pub use status::ApiError;
