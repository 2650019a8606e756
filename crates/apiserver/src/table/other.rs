//! RoleBinding and ClusterRoleBinding (their printer serves both), Lease and PodDisruptionBudget.

use super::cells::{age, int_at, items, name, str_at};
use super::{AGE, Col, NAME, col, wide};
use serde_json::Value;
use std::time::SystemTime;

pub const ROLE_BINDING: &[Col] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

pub const CLUSTER_ROLE_BINDING: &[Col] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
];

/// `Kind/name` of the role, and the subjects by kind (service accounts as `namespace/name`).
pub fn role_binding(rb: &Value, now: SystemTime) -> Vec<Value> {
    let role = format!("{}/{}", str_at(rb, "/roleRef/kind"), str_at(rb, "/roleRef/name"));
    let subjects = |kind: &str| {
        items(rb, "/subjects")
            .iter()
            .filter(|s| str_at(s, "/kind") == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", str_at(s, "/namespace"), str_at(s, "/name")),
                _ => str_at(s, "/name").to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(rb),
        role.into(),
        age(rb, now),
        subjects("User").into(),
        subjects("Group").into(),
        subjects("ServiceAccount").into(),
    ]
}

pub const LEASE: &[Col] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

pub fn lease(lease: &Value, now: SystemTime) -> Vec<Value> {
    vec![
        name(lease),
        str_at(lease, "/spec/holderIdentity").into(),
        age(lease, now),
    ]
}

pub const POD_DISRUPTION_BUDGET: &[Col] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

pub fn pod_disruption_budget(pdb: &Value, now: SystemTime) -> Vec<Value> {
    // An IntOrString: `2` or `50%`.
    let int_or_string = |pointer: &str| match pdb.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".into(),
    };
    vec![
        name(pdb),
        int_or_string("/spec/minAvailable").into(),
        int_or_string("/spec/maxUnavailable").into(),
        int_at(pdb, "/status/disruptionsAllowed").into(),
        age(pdb, now),
    ]
}
