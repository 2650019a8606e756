//! The standard channel's kinds: GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, ReferenceGrant,
//! BackendTLSPolicy and ListenerSet, all `gateway.networking.k8s.io/v1` (ReferenceGrant `v1beta1` too; written from the API reference of
//! Gateway API v1.6; fields weft does not act on are kept, so manifests written for any implementation apply as
//! they are).

mod backendtls;
mod gateway;
mod grpcroute;
mod httproute;
mod listenerset;
mod referencegrant;
mod shared;
mod tlsroute;

pub use backendtls::*;
pub use gateway::*;
pub use grpcroute::*;
pub use httproute::*;
pub use listenerset::*;
pub use referencegrant::*;
pub use shared::*;
pub use tlsroute::*;

use kube::CustomResourceExt;
use weft_model::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};

/// The API group of every kind.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The CRDs of the standard channel's kinds, in the order the upstream install lists them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        BackendTLSPolicy::crd(),
        GatewayClass::crd(),
        Gateway::crd(),
        GRPCRoute::crd(),
        HTTPRoute::crd(),
        ListenerSet::crd(),
        also_v1beta1(ReferenceGrant::crd()),
        TLSRoute::crd(),
    ]
}

/// The CRD with its version served as `v1beta1` too (same schema, stored as the first): upstream serves
/// ReferenceGrant as both, and its conformance manifests (and many users') still write `v1beta1`.
fn also_v1beta1(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    if let Some(first) = crd.spec.versions.first() {
        let beta = CustomResourceDefinitionVersion {
            name: "v1beta1".into(),
            storage: false,
            ..first.clone()
        };
        crd.spec.versions.push(beta);
    }
    crd
}
