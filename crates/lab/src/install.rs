//! weft as a (non-bare) lab installs it: deploy/weft.yaml, the file users apply to their clusters, with the
//! lab's settings filled in where a user would edit them: the ConfigMap `weft-system/weft-config` (cluster CIDR,
//! overlay, the API server's address, as on a cluster without kube-proxy) and the `kube-system/kube-dns`
//! Service's clusterIP (the lab's service CIDR). `weft lab up` applies the result through the lab's API.

use crate::error::{Error, Result};
use crate::spec::LabSpec;
use serde_json::{Value, json};

/// deploy/weft.yaml, as shipped.
pub const MANIFEST: &str = include_str!("../../../deploy/weft.yaml");

/// The documents of deploy/weft.yaml with `spec`'s settings.
pub fn manifests(spec: &LabSpec) -> Result<Vec<Value>> {
    let mut documents: Vec<Value> =
        serde_saphyr::from_multiple(MANIFEST).map_err(|e| Error::Invalid(format!("deploy/weft.yaml: {e}")))?;
    documents.retain(|d| !d.is_null());
    let config = find(&mut documents, "ConfigMap", "weft-system", "weft-config")?;
    let data = config
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Invalid("deploy/weft.yaml: weft-config has no data".into()))?;
    data.insert("clusterCIDR".into(), json!(spec.cluster_cidr.to_string()));
    data.insert("overlay".into(), json!(spec.overlay.to_string()));
    // The lab runs no kube-proxy: the agent reaches the API at the control plane's address on the wire.
    data.insert("apiServerHost".into(), json!(spec.control_plane_ip().to_string()));
    data.insert(
        "apiServerPort".into(),
        json!(crate::kube_api::CONTROL_PLANE_PORT.to_string()),
    );
    let dns = find(&mut documents, "Service", "kube-system", "kube-dns")?;
    dns["spec"]["clusterIP"] = json!(spec.cluster_dns().to_string());
    Ok(documents)
}

/// The document of `kind` `namespace/name`, to edit.
fn find<'a>(documents: &'a mut [Value], kind: &str, namespace: &str, name: &str) -> Result<&'a mut Value> {
    documents
        .iter_mut()
        .find(|d| d["kind"] == kind && d["metadata"]["namespace"] == namespace && d["metadata"]["name"] == name)
        .ok_or_else(|| Error::Invalid(format!("deploy/weft.yaml has no {kind} {namespace}/{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DEFAULT_LB_POOL, Overlay};

    #[test]
    fn the_lab_settings_go_where_a_user_edits_them() {
        let spec = LabSpec {
            name: "t".into(),
            nodes: 2,
            overlay: Overlay::Vxlan,
            cluster_cidr: "10.100.0.0/16".parse().unwrap(),
            service_cidr: "10.50.0.0/16".parse().unwrap(),
            lb_pool: DEFAULT_LB_POOL,
            cni_bin: "/x".into(),
            weft_bin: "/y".into(),
            bare: false,
            subnets: 1,
        };
        let mut documents = manifests(&spec).unwrap();
        let config = find(&mut documents, "ConfigMap", "weft-system", "weft-config").unwrap()["data"].clone();
        assert_eq!(config["clusterCIDR"], "10.100.0.0/16");
        assert_eq!(config["overlay"], "vxlan");
        assert_eq!(config["apiServerHost"], "172.18.0.2");
        assert_eq!(config["apiServerPort"], "6443");
        assert_eq!(config["podCIDRs"], "auto", "the rest as shipped");
        let dns = find(&mut documents, "Service", "kube-system", "kube-dns").unwrap();
        assert_eq!(dns["spec"]["clusterIP"], "10.50.0.10");
        // Everything else is deploy/weft.yaml's own: the DaemonSet, the DNS Deployment, RBAC, the CRDs.
        for kind in ["DaemonSet", "Deployment", "ClusterRole", "CustomResourceDefinition"] {
            assert!(documents.iter().any(|d| d["kind"] == kind), "{kind}");
        }
    }
}
