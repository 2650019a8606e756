//! The Kubernetes Gateway API (gateway.networking.k8s.io, standard channel) as weft's own Rust types: what
//! `weft ingress` serves beside Ingress, and the CRDs `weft crds --gateway-api` generates from them.

pub mod api;
pub mod duration;
