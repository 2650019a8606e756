//! `acme.cert-manager.io/v1` Order and Challenge: the ACME issuer's state for one request.

use super::issuer::ACMEChallengeSolver;
use super::meta::IssuerRef;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "acme.cert-manager.io",
    version = "v1",
    kind = "Order",
    plural = "orders",
    namespaced,
    status = "OrderStatus",
    category = "cert-manager",
    category = "cert-manager-acme",
    crates(k8s_openapi = "weft_model::k8s_openapi"),
    printcolumn = r#"{"name": "State", "type": "string", "jsonPath": ".status.state"}"#,
    printcolumn = r#"{"name": "Issuer", "type": "string", "priority": 1, "jsonPath": ".spec.issuerRef.name"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "priority": 1, "jsonPath": ".status.reason", "description": ""}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OrderSpec {
    /// The PEM CSR (base64 in the object).
    #[schemars(extend("format" = "byte"))]
    pub request: String,
    pub issuer_ref: IssuerRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, rename = "finalizeURL", skip_serializing_if = "Option::is_none")]
    pub finalize_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<ACMEAuthorization>,
    /// The issued chain, PEM (base64 in the object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub certificate: Option<String>,
    /// valid, ready, pending, processing, invalid, expired, errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ACMEAuthorization {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ACMEChallenge>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ACMEChallenge {
    pub url: String,
    pub token: String,
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "acme.cert-manager.io",
    version = "v1",
    kind = "Challenge",
    plural = "challenges",
    namespaced,
    status = "ChallengeStatus",
    category = "cert-manager",
    category = "cert-manager-acme",
    crates(k8s_openapi = "weft_model::k8s_openapi"),
    printcolumn = r#"{"name": "State", "type": "string", "jsonPath": ".status.state"}"#,
    printcolumn = r#"{"name": "Domain", "type": "string", "jsonPath": ".spec.dnsName"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "priority": 1, "jsonPath": ".status.reason", "description": ""}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeSpec {
    pub url: String,
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    pub dns_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
    /// HTTP-01 or DNS-01.
    #[serde(rename = "type")]
    pub type_: String,
    pub token: String,
    /// The key authorization the solver serves.
    pub key: String,
    pub solver: ACMEChallengeSolver,
    pub issuer_ref: IssuerRef,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}
