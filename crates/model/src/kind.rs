//! The built-in resources the API serves: group, version, kind, plural and short names, scope, categories and
//! subresources (what discovery reports and what kubectl resolves `pods`, `po`, `deploy` to), and which kinds
//! are cluster-scoped.

use std::sync::LazyLock;

/// One resource as the API serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// `all` puts a resource in `kubectl get all`.
    pub categories: Vec<String>,
    /// `status`, `scale`, `log`, `exec`, ...
    pub subresources: Vec<String>,
    /// Only `create` for the review kinds, which are never stored.
    pub create_only: bool,
}

impl Resource {
    /// `v1` or `group/version`, as objects carry it.
    pub fn api_version(&self) -> String {
        match self.group.as_str() {
            "" => self.version.clone(),
            g => format!("{g}/{}", self.version),
        }
    }

    /// `pods` or `deployments.apps`, as API messages name a resource.
    pub fn qualified(&self) -> String {
        match self.group.as_str() {
            "" => self.plural.clone(),
            g => format!("{}.{g}", self.plural),
        }
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        if self.create_only {
            &["create"]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

/// (group, version, kind, plural, short names, cluster-scoped, in `all`, subresources, create only)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
    bool,
    &'static [&'static str],
    bool,
);

const BUILTIN: &[Row] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        &["ns"],
        true,
        false,
        &["status", "finalize"],
        false,
    ),
    (
        "",
        "v1",
        "Node",
        "nodes",
        &["no"],
        true,
        false,
        &["status", "proxy"],
        false,
    ),
    (
        "",
        "v1",
        "Pod",
        "pods",
        &["po"],
        false,
        true,
        &["status", "log", "exec", "attach", "portforward", "eviction", "binding"],
        false,
    ),
    (
        "",
        "v1",
        "Service",
        "services",
        &["svc"],
        false,
        true,
        &["status", "proxy"],
        false,
    ),
    ("", "v1", "Endpoints", "endpoints", &["ep"], false, false, &[], false),
    ("", "v1", "ConfigMap", "configmaps", &["cm"], false, false, &[], false),
    ("", "v1", "Secret", "secrets", &[], false, false, &[], false),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        false,
        false,
        &["token"],
        false,
    ),
    ("", "v1", "Event", "events", &["ev"], false, false, &[], false),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        true,
        false,
        &["status"],
        false,
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        false,
        false,
        &["status"],
        false,
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        &["quota"],
        false,
        false,
        &["status"],
        false,
    ),
    (
        "",
        "v1",
        "LimitRange",
        "limitranges",
        &["limits"],
        false,
        false,
        &[],
        false,
    ),
    ("", "v1", "PodTemplate", "podtemplates", &[], false, false, &[], false),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        &["rc"],
        false,
        true,
        &["status", "scale"],
        false,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        false,
        true,
        &["status", "scale"],
        false,
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        &["rs"],
        false,
        true,
        &["status", "scale"],
        false,
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        &["ds"],
        false,
        true,
        &["status"],
        false,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        false,
        true,
        &["status", "scale"],
        false,
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        &[],
        false,
        false,
        &[],
        false,
    ),
    ("batch", "v1", "Job", "jobs", &[], false, true, &["status"], false),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        &["cj"],
        false,
        true,
        &["status"],
        false,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        &[],
        false,
        false,
        &[],
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        false,
        false,
        &[],
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        false,
        false,
        &["status"],
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        &[],
        true,
        false,
        &[],
        false,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        false,
        false,
        &["status"],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        false,
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        false,
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        true,
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        true,
        false,
        &[],
        false,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        &[],
        false,
        false,
        &[],
        false,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        &["pc"],
        true,
        false,
        &[],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        &["sc"],
        true,
        false,
        &[],
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        true,
        false,
        &["status"],
        false,
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        false,
        true,
        &["status"],
        false,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        &[],
        true,
        false,
        &[],
        true,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        &[],
        true,
        false,
        &[],
        true,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        &[],
        true,
        false,
        &[],
        true,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        &[],
        true,
        false,
        &[],
        true,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        &[],
        false,
        false,
        &[],
        true,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        &[],
        true,
        false,
        &[],
        true,
    ),
];

static RESOURCES: LazyLock<Vec<Resource>> = LazyLock::new(|| {
    BUILTIN
        .iter()
        .map(
            |&(group, version, kind, plural, short, cluster, all, sub, create_only)| Resource {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: kind.to_ascii_lowercase(),
                namespaced: !cluster,
                short_names: short.iter().map(|s| s.to_string()).collect(),
                categories: if all { vec!["all".into()] } else { Vec::new() },
                subresources: sub.iter().map(|s| s.to_string()).collect(),
                create_only,
            },
        )
        .collect()
});

/// Every built-in resource, core group first, in discovery's order.
pub fn builtin() -> &'static [Resource] {
    &RESOURCES
}

/// The built-in resource of `kind`.
pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// Whether objects of this kind live in a namespace (unknown kinds do, as most custom resources).
pub fn namespaced(kind: &str) -> bool {
    by_kind(kind).is_none_or(|r| r.namespaced)
}

/// Whether `word` names `r` the way kubectl accepts it: kind, plural, singular or short name, optionally
/// qualified by the group (`deployments.apps`), case-insensitively.
pub fn names(r: &Resource, word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    let (name, group) = match lower.split_once('.') {
        Some((n, g)) => (n, Some(g)),
        None => (lower.as_str(), None),
    };
    group.is_none_or(|g| g == r.group)
        && (name == r.plural || name == r.singular || r.short_names.iter().any(|s| s == name))
}

/// The kind a user means by `word` (`pods` → `Pod`), matched against the built-in resources and then against
/// `others` (kinds present in the store), also in a plural `s` form.
pub fn resolve(word: &str, others: &[String]) -> Option<String> {
    if let Some(r) = RESOURCES.iter().find(|r| names(r, word)) {
        return Some(r.kind.clone());
    }
    let lower = word.to_ascii_lowercase();
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
        assert_eq!(resolve("deployments.apps", &[]).as_deref(), Some("Deployment"));
        assert_eq!(resolve("deployments.batch", &[]), None);
        assert_eq!(resolve("widgets", &["Widget".into()]).as_deref(), Some("Widget"));
        assert_eq!(resolve("widgets", &[]), None);
        assert_eq!(resolve("svc", &[]).as_deref(), Some("Service"));
        assert_eq!(resolve("ep", &[]).as_deref(), Some("Endpoints"));
        assert_eq!(resolve("endpointslices", &[]).as_deref(), Some("EndpointSlice"));
        assert_eq!(resolve("rs", &[]).as_deref(), Some("ReplicaSet"));
        assert!(!namespaced("Node"));
        assert!(!namespaced("ClusterRoleBinding"));
        assert!(namespaced("Widget"));
        assert_eq!(by_kind("Deployment").unwrap().qualified(), "deployments.apps");
        assert_eq!(by_kind("Pod").unwrap().api_version(), "v1");
    }

    #[test]
    fn every_kind_and_plural_is_listed_once() {
        let mut kinds: Vec<&str> = builtin().iter().map(|r| r.kind.as_str()).collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), n);
        for r in builtin() {
            assert_eq!(
                builtin().iter().filter(|o| names(o, &r.plural)).count(),
                1,
                "{}",
                r.plural
            );
        }
    }
}
