//! cert-manager's API as Rust types, unchanged: `cert-manager.io/v1` Issuer, ClusterIssuer, Certificate and
//! CertificateRequest, and `acme.cert-manager.io/v1` Order and Challenge (written from cert-manager's API
//! reference; fields weft does not act on are kept so that manifests written for cert-manager apply as they are).

mod acme;
mod certificate;
mod issuer;
mod meta;
mod request;

pub use acme::*;
pub use certificate::*;
pub use issuer::*;
pub use meta::*;
pub use request::*;

use kube::CustomResourceExt;
use weft_model::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The group of the certificate kinds.
pub const GROUP: &str = "cert-manager.io";

/// The CRDs of all six kinds, in the order cert-manager's install lists them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        CertificateRequest::crd(),
        Certificate::crd(),
        Challenge::crd(),
        ClusterIssuer::crd(),
        Issuer::crd(),
        Order::crd(),
    ]
}
