//! The `PodCIDRBlock` custom resource: one per claimed block, cluster-scoped, named after the block.

use ipnet::Ipv4Net;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A block of the cluster CIDR that a node's pods take their addresses from.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "PodCIDRBlock",
    plural = "podcidrblocks",
    shortname = "pcb",
    crates(k8s_openapi = "weft_model::k8s_openapi"),
    printcolumn = r#"{"name": "CIDR", "type": "string", "jsonPath": ".spec.cidr"}"#,
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".spec.node"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
pub struct PodCIDRBlockSpec {
    /// The block, for example 10.244.3.0/24.
    pub cidr: String,
    /// The Node whose pods use it.
    pub node: String,
}

impl PodCIDRBlock {
    /// The block, when its spec holds one.
    pub fn cidr(&self) -> Option<Ipv4Net> {
        self.spec.cidr.parse().ok()
    }

    /// The uid of the Node that owns it.
    pub fn owner_uid(&self) -> Option<&str> {
        self.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.kind == "Node")
            .map(|r| r.uid.as_str())
    }
}

/// The object name of a block: its address and length with dashes (`10.244.3.0/24` → `10-244-3-0-24`), a valid
/// name that only this block has.
pub fn name(cidr: Ipv4Net) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix_len()).replace('.', "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn blocks_are_named_after_their_cidr() {
        assert_eq!(name("10.244.3.0/24".parse().unwrap()), "10-244-3-0-24");
        assert_eq!(name("10.0.0.0/26".parse().unwrap()), "10-0-0-0-26");
    }

    #[test]
    fn the_crd_is_cluster_scoped_with_printer_columns() {
        let crd = PodCIDRBlock::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("podcidrblocks.weft.dev"));
        assert_eq!(crd.spec.scope, "Cluster");
        let version = &crd.spec.versions[0];
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["CIDR", "Node", "Age"]);
    }
}
