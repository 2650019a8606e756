//! RBAC's escalation prevention, as kube-apiserver enforces it on writes of the RBAC kinds: a Role or ClusterRole
//! may grant only what its writer already holds at its scope (unless the writer may `escalate` roles), and a
//! binding may bind only a role whose every permission its writer holds there (unless the writer may `bind` that
//! role). Without it, whoever may write Roles and RoleBindings in a namespace could grant themselves anything.

use super::{Attributes, Rbac, ResourceAttributes};
use crate::auth::UserInfo;
use crate::status::ApiError;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleRef};
use serde_json::json;
use weft_model::{Object, Snapshot, k8s_openapi};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Refuses `object` (about to be created or updated by `user`) when it is an RBAC object granting more than `user`
/// holds; every other object passes.
pub fn check(rbac: &Rbac, snap: &Snapshot, user: &UserInfo, object: &Object) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let namespace = object.namespace().unwrap_or_default();
    let (resource, granted) = match object.kind() {
        "Role" => ("roles", decode::<Role>(object)?.rules.unwrap_or_default()),
        "ClusterRole" => {
            let role = decode::<ClusterRole>(object)?;
            let mut rules = role.rules.unwrap_or_default();
            // The rules an aggregationRule gathers are any the selectors pick: only a full authority may ask.
            if role.aggregation_rule.is_some() {
                rules.extend(full_authority());
            }
            ("clusterroles", rules)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref: RoleRef = serde_json::from_value(object.to_value()["roleRef"].clone())
                .map_err(|e| ApiError::bad_request(format!("roleRef: {e}")))?;
            let resource = match role_ref.kind.as_str() {
                "ClusterRole" => "clusterroles",
                _ => "roles",
            };
            if may(rbac, snap, user, "bind", resource, namespace, &role_ref.name) {
                return Ok(());
            }
            let rules = rbac
                .role_rules(snap, &role_ref.kind, namespace, &role_ref.name)
                .ok_or_else(|| {
                    forbidden(
                        object,
                        format!(
                            "{resource}.{GROUP} {:?} not found, so it cannot be bound",
                            role_ref.name
                        ),
                    )
                })?;
            (resource, rules.to_vec())
        }
        _ => return Ok(()),
    };
    if object.kind().ends_with("Role") && may(rbac, snap, user, "escalate", resource, namespace, object.name()) {
        return Ok(());
    }
    let held = rbac.rules(snap, user, namespace);
    let missing: Vec<String> = granted
        .iter()
        .flat_map(atomic)
        .filter(|rule| {
            let owner = match rule.non_resource_urls.is_some() {
                true => &held.non_resource,
                false => &held.resource,
            };
            !owner.iter().any(|o| covers(o, rule))
        })
        .map(|rule| describe(&rule))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let groups = user.groups.join(" ");
    Err(forbidden(
        object,
        format!(
            "user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            missing.join("\n")
        ),
    ))
}

fn decode<T: serde::de::DeserializeOwned>(object: &Object) -> Result<T, ApiError> {
    serde_json::from_value(object.to_value()).map_err(|e| ApiError::bad_request(format!("{}: {e}", object.kind())))
}

/// Whether `user` may do `verb` on the RBAC `resource` named `name`.
fn may(rbac: &Rbac, snap: &Snapshot, user: &UserInfo, verb: &str, resource: &str, ns: &str, name: &str) -> bool {
    let attrs = Attributes::resource(
        verb,
        ResourceAttributes {
            group: GROUP.into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            ..ResourceAttributes::default()
        },
    );
    rbac.authorize(snap, user, &attrs).allowed
}

/// Every permission there is: what a ClusterRole with an aggregationRule needs its writer to hold.
fn full_authority() -> [PolicyRule; 2] {
    let all = vec!["*".to_string()];
    [
        PolicyRule {
            api_groups: Some(all.clone()),
            resources: Some(all.clone()),
            verbs: all.clone(),
            ..PolicyRule::default()
        },
        PolicyRule {
            non_resource_urls: Some(all.clone()),
            verbs: all,
            ..PolicyRule::default()
        },
    ]
}

/// A rule split into rules of one verb, one group, one resource and one name (or one URL), as RBAC's coverage
/// check compares them.
fn atomic(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let one = |s: &String| Some(vec![s.clone()]);
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            out.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let names: Vec<Option<Vec<String>>> = match rule.resource_names.as_deref() {
                    None | Some([]) => vec![None],
                    Some(names) => names.iter().map(one).collect(),
                };
                for names in names {
                    out.push(PolicyRule {
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: names,
                        verbs: vec![verb.clone()],
                        ..PolicyRule::default()
                    });
                }
            }
        }
    }
    out
}

/// Whether `owner` grants everything the atomic rule `want` does. A wildcard in `want` is covered only by a
/// wildcard; a rule naming no resource names only by one naming none.
fn covers(owner: &PolicyRule, want: &PolicyRule) -> bool {
    let has = |list: Option<&[String]>, v: &str| list.unwrap_or_default().iter().any(|o| o == "*" || o == v);
    let first = |list: &Option<Vec<String>>| list.as_deref().and_then(<[String]>::first).cloned().unwrap_or_default();
    if !has(Some(&owner.verbs), want.verbs.first().map_or("", String::as_str)) {
        return false;
    }
    if want.non_resource_urls.is_some() {
        let url = first(&want.non_resource_urls);
        return owner
            .non_resource_urls
            .iter()
            .flatten()
            .any(|o| o == "*" || *o == url || o.strip_suffix('*').is_some_and(|prefix| url.starts_with(prefix)));
    }
    let resource = first(&want.resources);
    let resource_covered = owner.resources.iter().flatten().any(|o| {
        o == "*"
            || *o == resource
            || match (o.split_once('/'), resource.split_once('/')) {
                (Some((base, "*")), Some((want_base, _))) => base == want_base,
                (Some(("*", sub)), Some((_, want_sub))) => sub == want_sub,
                _ => false,
            }
    });
    let names_covered = match owner.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => want.resource_names.is_some() && names.contains(&first(&want.resource_names)),
    };
    has(owner.api_groups.as_deref(), &first(&want.api_groups)) && resource_covered && names_covered
}

/// An atomic rule as the 403 lists it: the rule's own JSON, fields left out where unset.
fn describe(rule: &PolicyRule) -> String {
    serde_json::to_string(rule).unwrap_or_default()
}

/// The 403 for an RBAC object whose writer would escalate.
fn forbidden(object: &Object, why: String) -> ApiError {
    let resource = match object.kind() {
        "Role" => "roles",
        "ClusterRole" => "clusterroles",
        "RoleBinding" => "rolebindings",
        _ => "clusterrolebindings",
    };
    let mut error = ApiError::new(
        403,
        "Forbidden",
        format!("{resource}.{GROUP} {:?} is forbidden: {why}", object.name()),
    );
    error.details = Some(json!({"name": object.name(), "group": GROUP, "kind": resource}));
    error
}
