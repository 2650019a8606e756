//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-*` headers make a request act as
//! another user when its requester may `impersonate` each part (users or serviceaccounts, groups, uids, userextras),
//! as kube-apiserver's impersonation filter checks them.

use crate::auth::UserInfo;
use crate::authz::{Attributes, ResourceAttributes, parse_service_account_user, service_account_groups};
use crate::status::ApiError;
use hyper::HeaderMap;
use std::collections::BTreeMap;
use weft_model::Snapshot;

const EXTRA_PREFIX: &str = "impersonate-extra-";

/// What the headers ask to act as.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    pub fn from_headers(headers: &HeaderMap) -> Impersonation {
        let mut out = Impersonation::default();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            match name.as_str() {
                "impersonate-user" => out.user = Some(value.to_string()),
                "impersonate-uid" => out.uid = Some(value.to_string()),
                "impersonate-group" => out.groups.push(value.to_string()),
                other => {
                    if let Some(key) = other.strip_prefix(EXTRA_PREFIX) {
                        // Keys are percent-encoded in header names (kubectl encodes `/` and other characters).
                        let key = crate::request::query(Some(&format!("k={key}")))
                            .remove("k")
                            .unwrap_or_default();
                        out.extra.entry(key).or_default().push(value.to_string());
                    }
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        *self == Impersonation::default()
    }
}

/// The user `requester` acts as, once RBAC allowed every part asked for.
pub fn impersonate(
    rbac: &crate::authz::Rbac,
    snap: &Snapshot,
    requester: &UserInfo,
    asked: &Impersonation,
) -> Result<UserInfo, ApiError> {
    let Some(name) = &asked.user else {
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a uid or extra fields without impersonating a user",
        ));
    };
    let check = |resource: &str, group: &str, namespace: &str, name: &str| {
        let attrs = Attributes::resource(
            "impersonate",
            ResourceAttributes {
                group: group.to_string(),
                resource: resource.to_string(),
                subresource: String::new(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
        );
        let decision = rbac.authorize(snap, requester, &attrs);
        match decision.allowed {
            true => Ok(()),
            false => Err(ApiError::forbidden(&requester.name, &attrs, &decision.reason)),
        }
    };
    let mut groups = asked.groups.clone();
    match parse_service_account_user(name) {
        Some((ns, sa)) => {
            check("serviceaccounts", "", ns, sa)?;
            if groups.is_empty() {
                groups = service_account_groups(ns);
            }
        }
        None => check("users", "", "", name)?,
    }
    for g in &asked.groups {
        check("groups", "", "", g)?;
    }
    if let Some(uid) = &asked.uid {
        check("uids", "authentication.k8s.io", "", uid)?;
    }
    for (key, values) in &asked.extra {
        for v in values {
            check(&format!("userextras/{key}"), "authentication.k8s.io", "", v)?;
        }
    }
    if name != "system:anonymous" && !groups.iter().any(|g| g == crate::pki::AUTHENTICATED_GROUP) {
        groups.push(crate::pki::AUTHENTICATED_GROUP.to_string());
    }
    Ok(UserInfo {
        name: name.clone(),
        uid: asked.uid.clone().unwrap_or_default(),
        groups,
        extra: asked.extra.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap() -> Snapshot {
        let objects = [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "imp"},
                   "rules": [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"]},
                             {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["serviceaccounts"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "imp"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "imp"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
        ];
        Snapshot::new(
            1,
            objects
                .into_iter()
                .map(|v| weft_model::manifest::from_value(v).unwrap()),
        )
    }

    fn asked(user: &str, groups: &[&str]) -> Impersonation {
        Impersonation {
            user: Some(user.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Impersonation::default()
        }
    }

    #[test]
    fn impersonation_needs_the_impersonate_verb_on_each_part() {
        let rbac = crate::authz::Rbac::default();
        let alice = UserInfo {
            name: "alice".into(),
            ..UserInfo::default()
        };
        let bob = impersonate(&rbac, &snap(), &alice, &asked("bob", &[])).unwrap();
        assert_eq!(
            (bob.name.as_str(), bob.groups.as_slice()),
            ("bob", &["system:authenticated".to_string()][..])
        );
        let e = impersonate(&rbac, &snap(), &alice, &asked("carol", &[])).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "users \"carol\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            impersonate(&rbac, &snap(), &alice, &asked("bob", &["system:masters"]))
                .unwrap_err()
                .code,
            403
        );
        let sa = impersonate(&rbac, &snap(), &alice, &asked("system:serviceaccount:web:default", &[])).unwrap();
        assert_eq!(
            sa.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:web",
                "system:authenticated"
            ]
        );
        let mut no_user = asked("x", &["g"]);
        no_user.user = None;
        assert_eq!(impersonate(&rbac, &snap(), &alice, &no_user).unwrap_err().code, 400);
    }

    #[test]
    fn headers_are_read_with_their_extra_keys_decoded() {
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "bob".parse().unwrap());
        h.append("impersonate-group", "a".parse().unwrap());
        h.append("impersonate-group", "b".parse().unwrap());
        h.insert("impersonate-extra-example.com%2fscopes", "view".parse().unwrap());
        let i = Impersonation::from_headers(&h);
        assert_eq!(i.user.as_deref(), Some("bob"));
        assert_eq!(i.groups, ["a", "b"]);
        assert_eq!(i.extra["example.com/scopes"], ["view"]);
        assert!(Impersonation::from_headers(&HeaderMap::new()).is_empty());
    }
}
