//! Kind names as users type them (`pods`, `po`, `deploy`) and which kinds are cluster-scoped.

/// Kinds weft knows, with the names and short names kubectl accepts for them.
const KNOWN: &[(&str, &[&str])] = &[
    ("Namespace", &["namespace", "namespaces", "ns"]),
    ("Node", &["node", "nodes", "no"]),
    ("Pod", &["pod", "pods", "po"]),
    ("Deployment", &["deployment", "deployments", "deploy"]),
    ("Service", &["service", "services", "svc"]),
    ("EndpointSlice", &["endpointslice", "endpointslices"]),
    ("Endpoints", &["endpoints", "ep"]),
    ("NetworkPolicy", &["networkpolicy", "networkpolicies", "netpol"]),
    ("Ingress", &["ingress", "ingresses", "ing"]),
    ("ConfigMap", &["configmap", "configmaps", "cm"]),
    ("Secret", &["secret", "secrets"]),
];

/// Cluster-scoped kinds; everything else is namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
];

pub fn namespaced(kind: &str) -> bool {
    !CLUSTER_SCOPED.contains(&kind)
}

/// The kind a user means by `word` (`pods` → `Pod`), matched case-insensitively against known names and then
/// against `others` (kinds present in the store), also in a plural `s` form.
pub fn resolve(word: &str, others: &[String]) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    if let Some((kind, _)) = KNOWN.iter().find(|(_, names)| names.contains(&lower.as_str())) {
        return Some(kind.to_string());
    }
    others
        .iter()
        .find(|kind| {
            let k = kind.to_ascii_lowercase();
            k == lower || format!("{k}s") == lower || (k.ends_with('s') && format!("{k}es") == lower)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_short_names_and_stored_kinds() {
        assert_eq!(resolve("po", &[]).as_deref(), Some("Pod"));
        assert_eq!(resolve("Deployments", &[]).as_deref(), Some("Deployment"));
        assert_eq!(resolve("widgets", &["Widget".into()]).as_deref(), Some("Widget"));
        assert_eq!(resolve("widgets", &[]), None);
        assert_eq!(resolve("svc", &[]).as_deref(), Some("Service"));
        assert_eq!(resolve("ep", &[]).as_deref(), Some("Endpoints"));
        assert_eq!(resolve("endpointslices", &[]).as_deref(), Some("EndpointSlice"));
        assert!(!namespaced("Node"));
        assert!(namespaced("Widget"));
    }
}
