//! The small types cert-manager's kinds share (its `meta/v1` package and the condition shape).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An Issuer or ClusterIssuer: `name`, `kind` (default Issuer) and `group` (default cert-manager.io).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl IssuerRef {
    /// The kind, defaulted as cert-manager does.
    pub fn kind(&self) -> &str {
        match self.kind.as_deref() {
            None | Some("") => "Issuer",
            Some(kind) => kind,
        }
    }

    /// The group, defaulted as cert-manager does.
    pub fn group(&self) -> &str {
        match self.group.as_deref() {
            None | Some("") => super::GROUP,
            Some(group) => group,
        }
    }
}

/// A Secret in the referrer's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    pub name: String,
}

/// A key of a Secret in the referrer's namespace (for some uses the key has a default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeySelector {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A condition of an Issuer, Certificate or CertificateRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Issuing, Approved, Denied, InvalidRequest.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Finds the condition of `type_`.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Sets the condition of `type_`, keeping its lastTransitionTime when the status stays the same.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: &str) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                Some(now.to_string())
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Some(now.to_string());
            conditions.push(new);
        }
    }
}

/// Removes the condition of `type_`.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

impl Condition {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: None,
            observed_generation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, Condition::new("Ready", false, "Pending", "a"), "t1");
        set_condition(&mut conditions, Condition::new("Ready", false, "Pending", "b"), "t2");
        assert_eq!(conditions[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(conditions[0].message.as_deref(), Some("b"));
        set_condition(&mut conditions, Condition::new("Ready", true, "Ready", "c"), "t3");
        assert_eq!(conditions[0].last_transition_time.as_deref(), Some("t3"));
        assert!(is_true(&conditions, "Ready"));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn issuer_refs_default_as_cert_manager() {
        let r = IssuerRef {
            name: "ca".into(),
            ..Default::default()
        };
        assert_eq!((r.kind(), r.group()), ("Issuer", "cert-manager.io"));
    }
}
