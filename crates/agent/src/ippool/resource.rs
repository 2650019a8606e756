//! The `IPPool` custom resource, after Calico's (`projectcalico.org/v3` IPPool): a range of pod addresses and how
//! traffic between nodes' pods in it is carried. Cluster-scoped; weft reads `cidr` and `vxlanMode`.

use ipnet::Ipv4Net;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A range of pod addresses and its encapsulation.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    shortname = "ippool",
    status = "IPPoolStatus",
    crates(k8s_openapi = "weft_model::k8s_openapi"),
    printcolumn = r#"{"name": "CIDR", "type": "string", "jsonPath": ".spec.cidr"}"#,
    printcolumn = r#"{"name": "VXLAN", "type": "string", "jsonPath": ".spec.vxlanMode"}"#,
    printcolumn = r#"{"name": "Routable", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Routable\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The pods' addresses, for example 10.244.0.0/16: the cluster CIDR or part of it. Traffic to a node's pod
    /// CIDR follows the pool that contains it.
    pub cidr: String,
    /// When traffic to pods of another node is encapsulated in VXLAN: Always, CrossSubnet (only to nodes on
    /// another underlay subnet, directly routed within one) or Never (routed directly via the node's address,
    /// which needs every node on one L2 subnet).
    #[serde(default)]
    pub vxlan_mode: VxlanMode,
}

/// Calico's `vxlanMode` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum VxlanMode {
    Always,
    CrossSubnet,
    #[default]
    Never,
}

impl fmt::Display for VxlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VxlanMode::Always => "Always",
            VxlanMode::CrossSubnet => "CrossSubnet",
            VxlanMode::Never => "Never",
        })
    }
}

/// What the agents found, written by them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IPPoolStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A condition of a pool (`Routable`: whether every node reaches every other node's pods in it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True or False.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339: when the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl IPPool {
    /// The pool's range, when its spec holds an IPv4 one.
    pub fn cidr(&self) -> Option<Ipv4Net> {
        self.spec.cidr.parse::<Ipv4Net>().ok().map(|c| c.trunc())
    }
}

/// The name of the pool the agents create when there is none (Calico's).
pub const DEFAULT_POOL: &str = "default-ipv4-ippool";

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_is_cluster_scoped_with_a_status_and_calicos_field_names() {
        let crd = IPPool::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("ippools.weft.dev"));
        assert_eq!(crd.spec.scope, "Cluster");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let schema = serde_json::to_value(&version.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(
            spec["vxlanMode"]["enum"],
            serde_json::json!(["Always", "CrossSubnet", "Never"])
        );
        assert!(spec["cidr"].is_object());
    }

    #[test]
    fn a_pool_without_a_mode_is_never_encapsulated() {
        let pool: IPPoolSpec = serde_json::from_value(serde_json::json!({"cidr": "10.244.0.0/16"})).unwrap();
        assert_eq!(pool.vxlan_mode, VxlanMode::Never);
    }
}
