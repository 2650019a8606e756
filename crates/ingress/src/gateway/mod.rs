//! The Gateway API on weft ingress: Gateways of the GatewayClasses whose `controllerName` is ours and the
//! HTTPRoutes attached to them, compiled into the routing table beside the Ingresses (`compile`), served on
//! the pod ports of the LoadBalancer Service provisioned per Gateway (`provision`), with the statuses the spec
//! asks for (`status`). Pure, apart from `serve`, which answers the requests.

pub mod compile;
pub mod conditions;
pub mod cors;
pub mod filters;
pub mod grpc;
pub mod hostname;
pub mod matching;
pub mod mirror;
pub mod provision;
pub mod retry;
pub mod serve;
pub mod status;
pub mod tls;

pub use compile::{Gateways, Settings};
