//! The Gateway API on weft ingress: Gateways of the GatewayClasses whose `controllerName` is ours (with their
//! ListenerSets) and the HTTPRoutes, GRPCRoutes and TLSRoutes attached to them, compiled into the routing table
//! beside the Ingresses (`compile`), served on the pod ports of the LoadBalancer Service provisioned per Gateway
//! (`provision`), with the statuses the spec asks for (`status`). Pure, apart from `serve`, which answers the
//! requests, `passthrough`, which splices TLS connections, and `sni`, which hands a TLS port's connections
//! to their listener by server name.

pub mod addresses;
pub mod backendtls;
pub mod compile;
pub mod conditions;
pub mod cors;
pub mod filters;
pub mod grpc;
pub mod hostname;
pub mod matching;
pub mod mirror;
pub mod passthrough;
pub mod provision;
pub mod retry;
pub mod serve;
pub mod session;
pub mod sni;
pub mod status;
pub mod tls;

pub use compile::{Gateways, Serving, Settings};
