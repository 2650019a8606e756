//! RBAC, as kube-apiserver's authorizer evaluates it: the Roles, ClusterRoles and their bindings of the current
//! snapshot (kept as `Object::Other` JSON), decoded once into an index that is rebuilt only when one of them
//! changed. ClusterRoles with an `aggregationRule` hold the union of the ClusterRoles their selectors pick (what
//! kube-controller-manager writes into them), computed when the index is built.

use crate::auth::UserInfo;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use weft_model::{Object, Snapshot, k8s_openapi};

pub mod escalation;

const RBAC_KINDS: [&str; 4] = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// What a request asks to do, as the authorizer sees it (`authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    pub verb: String,
    /// None: a non-resource request (`/healthz`, `/api`), decided by `nonResourceURLs`.
    pub resource: Option<ResourceAttributes>,
    /// The path of a non-resource request.
    pub path: String,
}

/// The resource part of a request; empty strings for what it does not name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceAttributes {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl Attributes {
    pub fn resource(verb: &str, r: ResourceAttributes) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            resource: Some(r),
            path: String::new(),
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            resource: None,
            path: path.to_string(),
        }
    }

    /// kube-apiserver's refusal sentence (`User "u" cannot list resource "pods" in API group "" in the namespace
    /// "default"`), the message of its 403.
    pub fn refusal(&self, user: &str) -> String {
        let Some(r) = &self.resource else {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        };
        let mut resource = r.resource.clone();
        if !r.subresource.is_empty() {
            resource = format!("{resource}/{}", r.subresource);
        }
        let scope = match r.namespace.as_str() {
            "" => "at the cluster scope".to_string(),
            ns => format!("in the namespace {ns:?}"),
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            self.verb, r.group
        )
    }
}

/// The answer, with kube-apiserver's reason (`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to
/// Group "z"`), or the roles bindings name that do not exist.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// The rules that apply to a user in a namespace (`SelfSubjectRulesReview`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    pub resource: Vec<PolicyRule>,
    pub non_resource: Vec<PolicyRule>,
    /// Bindings naming roles that do not exist.
    pub errors: Vec<String>,
}

/// The RBAC authorizer; one per server, shared by every request.
#[derive(Default)]
pub struct Rbac {
    index: Mutex<Option<Arc<Index>>>,
}

impl Rbac {
    /// Whether `user` may do `attrs` in `snap`. Members of `system:masters` may do anything, as kube-apiserver's
    /// privileged-group authorizer decides before RBAC.
    pub fn authorize(&self, snap: &Snapshot, user: &UserInfo, attrs: &Attributes) -> Decision {
        if user.is_master() {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let index = self.index(snap);
        let namespace = attrs
            .resource
            .as_ref()
            .map(|r| r.namespace.as_str())
            .unwrap_or_default();
        let mut errors = Vec::new();
        let mut allowed_by = None;
        index.visit(user, namespace, &mut |binding, rules| {
            match rules {
                Ok(rules) if rules.iter().any(|rule| allows(rule, attrs)) => {
                    allowed_by = Some(binding.describe(user));
                    return true;
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
            false
        });
        match allowed_by {
            Some(reason) => Decision { allowed: true, reason },
            None => Decision {
                allowed: false,
                reason: match errors.is_empty() {
                    true => String::new(),
                    false => format!("RBAC: [{}]", errors.join(", ")),
                },
            },
        }
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide ones included).
    pub fn rules(&self, snap: &Snapshot, user: &UserInfo, namespace: &str) -> Rules {
        let index = self.index(snap);
        let mut out = Rules::default();
        index.visit(user, namespace, &mut |_, rules| {
            match rules {
                Ok(rules) => {
                    for rule in rules {
                        match rule.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
                            true => out.non_resource.push(rule.clone()),
                            false => out.resource.push(rule.clone()),
                        }
                    }
                }
                Err(e) => out.errors.push(e),
            }
            false
        });
        out
    }

    /// The rules of the role a binding in `namespace` refers to (`kind` Role or ClusterRole), aggregation resolved.
    pub fn role_rules(&self, snap: &Snapshot, kind: &str, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>> {
        let index = self.index(snap);
        match kind {
            "ClusterRole" => index.cluster_roles.get(name).cloned(),
            "Role" => index.roles.get(&(namespace.to_string(), name.to_string())).cloned(),
            _ => None,
        }
    }

    /// The index of `snap`'s RBAC objects: the cached one while they are unchanged.
    fn index(&self, snap: &Snapshot) -> Arc<Index> {
        let mut cached = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = cached.as_ref()
            && index.revision == snap.revision
        {
            return index.clone();
        }
        let fingerprint = fingerprint(snap);
        let index = match cached.as_ref() {
            Some(index) if index.fingerprint == fingerprint => Arc::new(Index {
                revision: snap.revision,
                ..Index::clone(index)
            }),
            _ => Arc::new(Index::build(snap, fingerprint)),
        };
        *cached = Some(index.clone());
        index
    }
}

/// A hash of the RBAC objects' keys and resourceVersions: equal when none was added, changed or removed.
fn fingerprint(snap: &Snapshot) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for kind in RBAC_KINDS {
        for o in snap.of_kind(kind) {
            o.key().hash(&mut h);
            o.meta().resource_version.hash(&mut h);
        }
    }
    h.finish()
}

/// A binding's role's rules, or why they are missing.
type RulesOf<'a> = Result<&'a [PolicyRule], String>;

#[derive(Clone, Default)]
struct Index {
    revision: u64,
    fingerprint: u64,
    /// Rules by ClusterRole name, aggregation resolved.
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    /// Rules by (namespace, Role name).
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_bindings: Arc<[Binding]>,
    /// RoleBindings by namespace.
    bindings: Arc<HashMap<String, Vec<Binding>>>,
}

#[derive(Clone, Debug)]
struct Binding {
    /// Empty for a ClusterRoleBinding.
    namespace: String,
    name: String,
    subjects: Vec<Subject>,
    role_ref: RoleRef,
}

impl Binding {
    fn describe(&self, user: &UserInfo) -> String {
        let subject = self
            .subjects
            .iter()
            .find(|s| applies(s, user, &self.namespace))
            .map(|s| match s.kind.as_str() {
                "ServiceAccount" => format!(
                    "ServiceAccount \"{}/{}\"",
                    s.namespace.as_deref().unwrap_or(&self.namespace),
                    s.name
                ),
                kind => format!("{kind} {:?}", s.name),
            })
            .unwrap_or_default();
        let binding = match self.namespace.as_str() {
            "" => format!("ClusterRoleBinding {:?}", self.name),
            ns => format!("RoleBinding \"{}/{ns}\"", self.name),
        };
        format!(
            "RBAC: allowed by {binding} of {} {:?} to {subject}",
            self.role_ref.kind, self.role_ref.name
        )
    }
}

fn decode<T: serde::de::DeserializeOwned>(o: &Object) -> Option<T> {
    serde_json::from_value(o.to_value()).ok()
}

impl Index {
    fn build(snap: &Snapshot, fingerprint: u64) -> Index {
        let cluster_roles: Vec<ClusterRole> = snap.of_kind("ClusterRole").filter_map(decode).collect();
        let by_name: HashMap<&str, &ClusterRole> = cluster_roles
            .iter()
            .filter_map(|r| Some((r.metadata.name.as_deref()?, r)))
            .collect();
        let aggregated = by_name
            .keys()
            .map(|name| {
                let mut rules = Vec::new();
                aggregate(name, &cluster_roles, &by_name, &mut HashSet::new(), &mut rules);
                (name.to_string(), Arc::from(rules))
            })
            .collect();
        let roles = snap
            .of_kind("Role")
            .filter_map(decode::<Role>)
            .map(|r| {
                let key = (
                    r.metadata.namespace.unwrap_or_default(),
                    r.metadata.name.unwrap_or_default(),
                );
                (key, Arc::from(r.rules.unwrap_or_default()))
            })
            .collect();
        let cluster_bindings: Vec<Binding> = snap
            .of_kind("ClusterRoleBinding")
            .filter_map(decode::<ClusterRoleBinding>)
            .map(|b| Binding {
                namespace: String::new(),
                name: b.metadata.name.unwrap_or_default(),
                subjects: b.subjects.unwrap_or_default(),
                role_ref: b.role_ref,
            })
            .collect();
        let mut bindings: HashMap<String, Vec<Binding>> = HashMap::new();
        for b in snap.of_kind("RoleBinding").filter_map(decode::<RoleBinding>) {
            let namespace = b.metadata.namespace.unwrap_or_default();
            bindings.entry(namespace.clone()).or_default().push(Binding {
                namespace,
                name: b.metadata.name.unwrap_or_default(),
                subjects: b.subjects.unwrap_or_default(),
                role_ref: b.role_ref,
            });
        }
        Index {
            revision: snap.revision,
            fingerprint,
            cluster_roles: aggregated,
            roles,
            cluster_bindings: Arc::from(cluster_bindings),
            bindings: Arc::new(bindings),
        }
    }

    /// Calls `f` with each binding that applies to `user` (ClusterRoleBindings, then the RoleBindings of
    /// `namespace`) and its role's rules, or the error naming a missing role; stops when `f` answers true.
    fn visit(&self, user: &UserInfo, namespace: &str, f: &mut dyn FnMut(&Binding, RulesOf) -> bool) {
        let local = match namespace {
            "" => &[][..],
            ns => self.bindings.get(ns).map_or(&[][..], Vec::as_slice),
        };
        for binding in self.cluster_bindings.iter().chain(local) {
            if !binding.subjects.iter().any(|s| applies(s, user, &binding.namespace)) {
                continue;
            }
            let r = &binding.role_ref;
            let rules = match r.kind.as_str() {
                "ClusterRole" => self
                    .cluster_roles
                    .get(&r.name)
                    .map(|rules| &rules[..])
                    .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {:?} not found", r.name)),
                "Role" if !binding.namespace.is_empty() => self
                    .roles
                    .get(&(binding.namespace.clone(), r.name.clone()))
                    .map(|rules| &rules[..])
                    .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", r.name)),
                other => Err(format!("unknown roleRef kind {other:?}")),
            };
            if f(binding, rules) {
                return;
            }
        }
    }
}

/// The rules of ClusterRole `name`: its own, or, with an aggregationRule, those of every ClusterRole its
/// selectors pick (themselves aggregated), each role once.
fn aggregate<'a>(
    name: &'a str,
    all: &'a [ClusterRole],
    by_name: &HashMap<&'a str, &'a ClusterRole>,
    seen: &mut HashSet<&'a str>,
    out: &mut Vec<PolicyRule>,
) {
    let Some(role) = by_name.get(name) else { return };
    if !seen.insert(name) {
        return;
    }
    let Some(rule) = &role.aggregation_rule else {
        out.extend(role.rules.iter().flatten().cloned());
        return;
    };
    let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
    for other in all {
        let labels = weft_model::object::labels(&other.metadata);
        if let Some(other_name) = other.metadata.name.as_deref()
            && selectors.iter().any(|s| weft_model::selector::matches(s, labels))
        {
            aggregate(other_name, all, by_name, seen, out);
        }
    }
}

/// Whether `subject` of a binding in `namespace` ("" for a ClusterRoleBinding) names `user`.
fn applies(subject: &Subject, user: &UserInfo, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(namespace);
            user.name == service_account_user(ns, &subject.name)
        }
        _ => false,
    }
}

/// The RBAC objects a cluster starts with: the default user-facing roles (cluster-admin, admin, edit, view,
/// aggregated as kube-apiserver's bootstrap policy does), discovery, basic-user, public-info-viewer,
/// auth-delegator and `system:node` for group `system:nodes`, with their bindings.
pub fn bootstrap_policy() -> Vec<serde_json::Value> {
    // A test checks that the file parses and decodes.
    serde_saphyr::from_str(include_str!("bootstrap.yaml")).unwrap_or_default()
}

/// `system:serviceaccount:NS:NAME`, the user a ServiceAccount's token authenticates as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups of a ServiceAccount: all service accounts, those of its namespace, and all authenticated users.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        crate::pki::AUTHENTICATED_GROUP.to_string(),
    ]
}

/// The namespace and name of a ServiceAccount user name.
pub fn parse_service_account_user(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// Whether `rule` allows `attrs` (`rbac.RuleAllows`).
pub fn allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|v| v == "*" || v == want);
    if !any(&rule.verbs, &attrs.verb) {
        return false;
    }
    match &attrs.resource {
        Some(r) => {
            any(rule.api_groups.as_deref().unwrap_or_default(), &r.group)
                && resource_matches(rule.resources.as_deref().unwrap_or_default(), r)
                && rule
                    .resource_names
                    .as_deref()
                    .is_none_or(|names| names.is_empty() || names.contains(&r.name))
        }
        None => rule.non_resource_urls.iter().flatten().any(|url| {
            url == "*"
                || *url == attrs.path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| attrs.path.starts_with(prefix))
        }),
    }
}

/// `*` matches every resource and subresource, `*/log` a subresource of any resource, `pods/log` itself.
fn resource_matches(resources: &[String], r: &ResourceAttributes) -> bool {
    resources.iter().any(|want| {
        if want == "*" {
            return true;
        }
        if r.subresource.is_empty() {
            return *want == r.resource;
        }
        want.strip_prefix("*/") == Some(r.subresource.as_str())
            || want.split_once('/') == Some((r.resource.as_str(), r.subresource.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn snapshot(objects: Vec<Value>) -> Snapshot {
        let objects = objects
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                v["metadata"]["resourceVersion"] = json!((i + 1).to_string());
                weft_model::manifest::from_value(v).unwrap()
            })
            .collect::<Vec<_>>();
        Snapshot::new(objects.len() as u64, objects)
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    fn sa(ns: &str, name: &str) -> UserInfo {
        UserInfo {
            name: service_account_user(ns, name),
            groups: service_account_groups(ns),
            ..UserInfo::default()
        }
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(
            verb,
            ResourceAttributes {
                group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
            },
        )
    }

    fn cluster_role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    fn binding(kind: &str, ns: Option<&str>, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
        let mut v = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": subjects});
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        v
    }

    #[test]
    fn rules_match_verbs_groups_resources_names_and_subresources() {
        let rule: PolicyRule = serde_json::from_value(json!({
            "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"], "resourceNames": ["web"]
        }))
        .unwrap();
        assert!(allows(&rule, &res("get", "", "pods", "", "default", "web")));
        assert!(allows(&rule, &res("get", "", "pods", "log", "default", "web")));
        assert!(!allows(&rule, &res("get", "", "pods", "exec", "default", "web")));
        assert!(!allows(&rule, &res("get", "", "pods", "", "default", "db")));
        assert!(!allows(&rule, &res("delete", "", "pods", "", "default", "web")));
        assert!(!allows(&rule, &res("get", "apps", "pods", "", "default", "web")));
        let star: PolicyRule =
            serde_json::from_value(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})).unwrap();
        assert!(allows(&star, &res("create", "apps", "deployments", "scale", "", "")));
        assert!(!allows(&star, &Attributes::non_resource("get", "/healthz")));
        let sub: PolicyRule =
            serde_json::from_value(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]})).unwrap();
        assert!(allows(&sub, &res("get", "", "nodes", "status", "", "n1")));
        assert!(!allows(&sub, &res("get", "", "nodes", "", "", "n1")));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let rule: PolicyRule =
            serde_json::from_value(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]})).unwrap();
        assert!(allows(&rule, &Attributes::non_resource("get", "/healthz")));
        assert!(allows(&rule, &Attributes::non_resource("get", "/apis/apps/v1")));
        assert!(!allows(&rule, &Attributes::non_resource("get", "/api")));
        assert!(!allows(&rule, &Attributes::non_resource("post", "/healthz")));
        assert!(!allows(&rule, &res("get", "", "pods", "", "", "")));
    }

    #[test]
    fn role_bindings_grant_in_their_namespace_only_and_cluster_bindings_everywhere() {
        let snap = snapshot(vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "reader", "namespace": "default"},
                   "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]}),
            binding(
                "RoleBinding",
                Some("default"),
                "r",
                "Role",
                "reader",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            cluster_role(
                "node-reader",
                json!({}),
                json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]),
            ),
            binding(
                "ClusterRoleBinding",
                None,
                "n",
                "ClusterRole",
                "node-reader",
                json!([{"kind": "Group", "name": "ops"}]),
            ),
        ]);
        let rbac = Rbac::default();
        let alice = user("alice", &["system:authenticated"]);
        assert!(
            rbac.authorize(&snap, &alice, &res("list", "", "pods", "", "default", ""))
                .allowed
        );
        assert!(
            !rbac
                .authorize(&snap, &alice, &res("list", "", "pods", "", "other", ""))
                .allowed
        );
        assert!(
            !rbac
                .authorize(&snap, &alice, &res("list", "", "pods", "", "", ""))
                .allowed
        );
        let bob = user("bob", &["ops"]);
        let d = rbac.authorize(&snap, &bob, &res("get", "", "nodes", "", "", "n1"));
        assert!(d.allowed);
        assert_eq!(
            d.reason,
            "RBAC: allowed by ClusterRoleBinding \"n\" of ClusterRole \"node-reader\" to Group \"ops\""
        );
        let root = user("root", &["system:masters"]);
        assert!(
            rbac.authorize(&snap, &root, &res("delete", "", "nodes", "", "", "n1"))
                .allowed
        );
    }

    #[test]
    fn service_accounts_match_by_name_and_by_their_groups() {
        let snap = snapshot(vec![
            cluster_role(
                "view-pods",
                json!({}),
                json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]),
            ),
            // A subject without a namespace means the binding's.
            binding(
                "RoleBinding",
                Some("a"),
                "one",
                "ClusterRole",
                "view-pods",
                json!([{"kind": "ServiceAccount", "name": "x"}]),
            ),
            binding(
                "RoleBinding",
                Some("b"),
                "all",
                "ClusterRole",
                "view-pods",
                json!([{"kind": "Group", "name": "system:serviceaccounts:b"}]),
            ),
        ]);
        let rbac = Rbac::default();
        let list = |ns: &str| res("list", "", "pods", "", ns, "");
        assert!(rbac.authorize(&snap, &sa("a", "x"), &list("a")).allowed);
        assert!(!rbac.authorize(&snap, &sa("a", "y"), &list("a")).allowed);
        assert!(!rbac.authorize(&snap, &sa("c", "x"), &list("a")).allowed);
        assert!(rbac.authorize(&snap, &sa("b", "anyone"), &list("b")).allowed);
        assert!(!rbac.authorize(&snap, &sa("a", "x"), &list("b")).allowed);
        assert_eq!(
            parse_service_account_user("system:serviceaccount:b:anyone"),
            Some(("b", "anyone"))
        );
        assert_eq!(parse_service_account_user("system:serviceaccount:b"), None);
    }

    #[test]
    fn aggregated_cluster_roles_hold_the_rules_of_the_roles_they_select() {
        let snap = snapshot(vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "admin"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-admin": "true"}}]}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "edit", "labels": {"to-admin": "true"}},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-edit": "true"}}]}}),
            cluster_role(
                "widgets-edit",
                json!({"to-edit": "true"}),
                json!([{"verbs": ["create"], "apiGroups": ["example.com"], "resources": ["widgets"]}]),
            ),
            cluster_role(
                "secrets-admin",
                json!({"to-admin": "true"}),
                json!([{"verbs": ["delete"], "apiGroups": [""], "resources": ["secrets"]}]),
            ),
            binding(
                "RoleBinding",
                Some("a"),
                "b",
                "ClusterRole",
                "admin",
                json!([{"kind": "User", "name": "u"}]),
            ),
            binding(
                "RoleBinding",
                Some("a"),
                "c",
                "ClusterRole",
                "missing",
                json!([{"kind": "User", "name": "u"}]),
            ),
        ]);
        let rbac = Rbac::default();
        let u = user("u", &[]);
        assert!(
            rbac.authorize(&snap, &u, &res("create", "example.com", "widgets", "", "a", "w"))
                .allowed
        );
        assert!(
            rbac.authorize(&snap, &u, &res("delete", "", "secrets", "", "a", "s"))
                .allowed
        );
        let no = rbac.authorize(&snap, &u, &res("get", "", "secrets", "", "a", "s"));
        assert!(!no.allowed);
        assert_eq!(
            no.reason,
            "RBAC: [clusterrole.rbac.authorization.k8s.io \"missing\" not found]"
        );
        let rules = rbac.rules(&snap, &u, "a");
        assert_eq!(rules.resource.len(), 2);
        assert_eq!(rules.errors.len(), 1);
    }

    #[test]
    fn the_index_follows_changes_to_rbac_objects_only() {
        let role = cluster_role(
            "r",
            json!({}),
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]),
        );
        let bind = binding(
            "ClusterRoleBinding",
            None,
            "b",
            "ClusterRole",
            "r",
            json!([{"kind": "User", "name": "u"}]),
        );
        let rbac = Rbac::default();
        let get = res("get", "", "pods", "", "x", "p");
        let snap = snapshot(vec![role.clone()]);
        assert!(!rbac.authorize(&snap, &user("u", &[]), &get).allowed);
        let snap = snapshot(vec![role, bind]);
        assert!(rbac.authorize(&snap, &user("u", &[]), &get).allowed);
        let first = rbac.index(&snap);
        let mut later = snap.clone();
        later.revision += 5;
        let same = rbac.index(&later);
        assert!(Arc::ptr_eq(&first.cluster_roles["r"], &same.cluster_roles["r"]));
        assert_eq!(same.revision, later.revision);
    }

    #[test]
    fn the_bootstrap_policy_gives_users_nodes_and_service_accounts_what_kubernetes_does() {
        let policy = bootstrap_policy();
        assert!(policy.len() > 15);
        let mut objects = policy;
        objects.push(binding(
            "RoleBinding",
            Some("web"),
            "dev",
            "ClusterRole",
            "edit",
            json!([{"kind": "User", "name": "dev"}]),
        ));
        let snap = snapshot(objects);
        let rbac = Rbac::default();
        let dev = user("dev", &["system:authenticated"]);
        // edit aggregates view; admin aggregates edit, not the other way.
        assert!(
            rbac.authorize(&snap, &dev, &res("delete", "apps", "deployments", "", "web", "d"))
                .allowed
        );
        assert!(
            rbac.authorize(&snap, &dev, &res("get", "", "pods", "log", "web", "p"))
                .allowed
        );
        assert!(
            rbac.authorize(
                &snap,
                &dev,
                &res("create", "", "serviceaccounts", "token", "web", "default")
            )
            .allowed
        );
        assert!(
            !rbac
                .authorize(
                    &snap,
                    &dev,
                    &res("create", "rbac.authorization.k8s.io", "rolebindings", "", "web", "")
                )
                .allowed
        );
        assert!(
            !rbac
                .authorize(&snap, &dev, &res("list", "", "pods", "", "other", ""))
                .allowed
        );
        assert!(
            rbac.authorize(&snap, &dev, &Attributes::non_resource("get", "/apis/apps/v1"))
                .allowed
        );
        assert!(
            rbac.authorize(
                &snap,
                &dev,
                &res("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", "")
            )
            .allowed
        );
        let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
        for (group, resource) in [("", "nodes"), ("", "pods"), ("", "services"), ("", "endpoints")] {
            assert!(
                rbac.authorize(&snap, &node, &res("watch", group, resource, "", "", ""))
                    .allowed,
                "{resource}"
            );
        }
        assert!(
            rbac.authorize(&snap, &node, &res("patch", "", "nodes", "status", "", "n1"))
                .allowed
        );
        assert!(
            !rbac
                .authorize(&snap, &node, &res("list", "", "secrets", "", "", ""))
                .allowed
        );
        // weft's DNS gets its permissions from deploy/weft.yaml, not from the cluster's own policy.
        let dns = sa("kube-system", "weft-dns");
        assert!(
            !rbac
                .authorize(
                    &snap,
                    &dns,
                    &res("list", "discovery.k8s.io", "endpointslices", "", "", "")
                )
                .allowed
        );
        assert!(
            !rbac
                .authorize(
                    &snap,
                    &sa("default", "default"),
                    &res("list", "", "pods", "", "default", "")
                )
                .allowed
        );
    }

    #[test]
    fn refusals_read_as_kube_apiserver_words_them() {
        assert_eq!(
            res("list", "", "pods", "", "default", "").refusal("system:serviceaccount:default:x"),
            "User \"system:serviceaccount:default:x\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            res("get", "apps", "deployments", "scale", "", "").refusal("u"),
            "User \"u\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
        assert_eq!(
            Attributes::non_resource("get", "/metrics").refusal("u"),
            "User \"u\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn roles_and_bindings_grant_only_what_their_writer_holds() {
        let rbac_group = "rbac.authorization.k8s.io";
        let role = |name: &str, rules: Value| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": name, "namespace": "team"}, "rules": rules})
        };
        let manager = json!([{"kind": "ServiceAccount", "name": "manager", "namespace": "team"}]);
        let snap = snapshot(vec![
            role(
                "manage",
                json!([
                {"apiGroups": [rbac_group], "resources": ["roles", "rolebindings"], "verbs": ["create", "update"]},
                {"apiGroups": [""], "resources": ["pods", "pods/*"], "verbs": ["get", "list"]},
                {"apiGroups": [rbac_group], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["view"]}]),
            ),
            binding("RoleBinding", Some("team"), "manage", "Role", "manage", manager),
            cluster_role(
                "view",
                json!({}),
                json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
            ),
            cluster_role(
                "admin",
                json!({}),
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            ),
        ]);
        let (rbac, writer) = (Rbac::default(), sa("team", "manager"));
        let check = |value: Value| {
            let object = weft_model::manifest::from_value(value).unwrap();
            escalation::check(&rbac, &snap, &writer, &object)
        };
        // What the writer holds, or less of it (a subresource its `pods/*` covers): allowed.
        check(role(
            "read",
            json!([{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
        ))
        .unwrap();
        // More than it holds: 403 naming what is not held.
        let e = check(role(
            "grow",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]),
        ))
        .unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message.contains("not currently held") && e.message.contains("\"delete\""),
            "{}",
            e.message
        );
        assert!(!e.message.contains("\"get\""), "{}", e.message);
        // A wildcard is covered only by a wildcard.
        assert!(
            check(role(
                "star",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])
            ))
            .is_err()
        );
        // Binding: a role whose rules the writer holds, or one it may `bind`; not cluster-admin's powers.
        let bind = |kind: &str, name: &str| {
            binding(
                "RoleBinding",
                Some("team"),
                "b",
                kind,
                name,
                json!([{"kind": "User", "name": "x"}]),
            )
        };
        check(bind("Role", "manage")).unwrap();
        check(bind("ClusterRole", "view")).unwrap();
        assert_eq!(check(bind("ClusterRole", "admin")).unwrap_err().code, 403);
        assert_eq!(check(bind("ClusterRole", "missing")).unwrap_err().code, 403);
        // The cluster's administrators are not checked.
        let object = weft_model::manifest::from_value(bind("ClusterRole", "admin")).unwrap();
        escalation::check(&rbac, &snap, &user("admin", &[crate::pki::MASTERS_GROUP]), &object).unwrap();
    }
}
