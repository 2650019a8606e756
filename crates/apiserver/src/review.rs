//! The kinds that are answered and never stored: `SelfSubjectReview` (`kubectl auth whoami`),
//! `SelfSubjectAccessReview` (`kubectl auth can-i`), `SelfSubjectRulesReview` (`kubectl auth can-i --list`),
//! `SubjectAccessReview`, `LocalSubjectAccessReview`, `TokenReview`, and the TokenRequest of
//! `serviceaccounts/NAME/token` (`kubectl create token`).

use crate::api::{Api, Call};
use crate::auth::UserInfo;
use crate::authz::{Attributes, ResourceAttributes};
use crate::body::{Body, json_response};
use crate::request::Target;
use crate::status::ApiError;
use crate::tokens::{Claims, DEFAULT_EXPIRATION, MIN_EXPIRATION, Ref};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use weft_model::{Key, Snapshot};

pub fn create(
    api: &Api,
    call: &Call,
    snap: &Snapshot,
    target: &Target,
    mut review: Value,
) -> Result<Response<Body>, ApiError> {
    let user = call.user.as_ref().ok_or_else(ApiError::unauthorized)?;
    let resource = &target.resource;
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    review["status"] = match resource.kind.as_str() {
        "SelfSubjectReview" => json!({"userInfo": user_json(user)}),
        "SelfSubjectAccessReview" => access(api, snap, user, &spec, None)?,
        "LocalSubjectAccessReview" => {
            let subject = subject(&spec)?;
            access(api, snap, &subject, &spec, target.namespace.as_deref())?
        }
        "SubjectAccessReview" => access(api, snap, &subject(&spec)?, &spec, None)?,
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or_default();
            rules(api, snap, user, ns)
        }
        "TokenReview" => token_review(api, snap, &spec),
        _ => {
            return Err(ApiError::new(
                501,
                "NotImplemented",
                format!("{} is not served", resource.qualified()),
            ));
        }
    };
    review["apiVersion"] = json!(resource.api_version());
    review["kind"] = json!(resource.kind);
    Ok(json_response(StatusCode::CREATED, &review))
}

fn user_json(user: &UserInfo) -> Value {
    let mut v = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        v["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        v["extra"] = json!(user.extra);
    }
    v
}

/// The user a (Local)SubjectAccessReview asks about.
fn subject(spec: &Value) -> Result<UserInfo, ApiError> {
    let text = |name: &str| spec.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let (name, uid) = (text("user"), text("uid"));
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            "SubjectAccessReview",
            "",
            &[(
                "spec.user".into(),
                "Invalid value: \"\": at least one of user or group must be specified".into(),
            )],
        ));
    }
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    Ok(UserInfo {
        name,
        uid,
        groups,
        extra,
    })
}

/// The status of an access review: whether `user` may do what `spec` describes (`namespace` overrides the
/// spec's, for LocalSubjectAccessReview).
fn access(
    api: &Api,
    snap: &Snapshot,
    user: &UserInfo,
    spec: &Value,
    namespace: Option<&str>,
) -> Result<Value, ApiError> {
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let attrs = if let Some(r) = spec.get("resourceAttributes") {
        let mut resource = ResourceAttributes {
            group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
        };
        if let Some(ns) = namespace {
            if !resource.namespace.is_empty() && resource.namespace != ns {
                return Err(ApiError::bad_request(
                    "spec.resourceAttributes.namespace must match the namespace of the request",
                ));
            }
            resource.namespace = ns.to_string();
        }
        Attributes::resource(&text(r, "verb"), resource)
    } else if let Some(n) = spec.get("nonResourceAttributes") {
        Attributes::non_resource(&text(n, "verb"), &text(n, "path"))
    } else {
        return Err(ApiError::bad_request(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    let decision = api.rbac.authorize(snap, user, &attrs);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

fn rules(api: &Api, snap: &Snapshot, user: &UserInfo, namespace: &str) -> Value {
    let rules = api.rbac.rules(snap, user, namespace);
    let list = |rules: &[weft_model::k8s_openapi::api::rbac::v1::PolicyRule], non_resource: bool| -> Vec<Value> {
        rules
            .iter()
            .map(|r| match non_resource {
                true => json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}),
                false => json!({
                    "verbs": r.verbs,
                    "apiGroups": r.api_groups,
                    "resources": r.resources,
                    "resourceNames": r.resource_names,
                }),
            })
            .collect()
    };
    let mut status = json!({
        "resourceRules": list(&rules.resource, false),
        "nonResourceRules": list(&rules.non_resource, true),
        "incomplete": !rules.errors.is_empty(),
    });
    // system:masters may do anything without a rule saying so; kube-apiserver's answer shows the same.
    if user.is_master() {
        status["resourceRules"] = json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]);
        status["nonResourceRules"] = json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]);
    }
    if !rules.errors.is_empty() {
        status["evaluationError"] = json!(rules.errors.join(", "));
    }
    status
}

fn token_review(api: &Api, snap: &Snapshot, spec: &Value) -> Value {
    let token = spec.get("token").and_then(Value::as_str).unwrap_or_default();
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(crate::tokens::api_audiences);
    let Some(tokens) = &api.tokens else {
        return json!({"authenticated": false, "error": "service-account tokens are not served"});
    };
    match tokens.authenticate(token, &audiences, snap, crate::tokens::unix_now()) {
        Ok((user, claims)) => {
            let audiences: Vec<&String> = claims.aud.iter().filter(|a| audiences.contains(a)).collect();
            json!({"authenticated": true, "user": user_json(&user), "audiences": audiences})
        }
        Err(e) => json!({"authenticated": false, "error": format!("[invalid bearer token, {e}]")}),
    }
}

/// `POST serviceaccounts/NAME/token`: a TokenRequest answered with a token for the ServiceAccount, bound to a pod
/// when `spec.boundObjectRef` names one.
pub fn token_request(
    api: &Api,
    snap: &Snapshot,
    target: &Target,
    mut request: Value,
) -> Result<Response<Body>, ApiError> {
    let tokens = api
        .tokens
        .as_ref()
        .ok_or_else(|| ApiError::new(501, "NotImplemented", "service-account tokens are not served"))?;
    let ns = target.namespace.as_deref().unwrap_or_default();
    let name = target.name.as_deref().unwrap_or_default();
    let sa = snap
        .get(&Key::new("ServiceAccount", Some(ns), name))
        .ok_or_else(|| ApiError::not_found("serviceaccounts", name))?;
    let invalid = |field: &str, msg: String| ApiError::invalid("TokenRequest", name, &[(field.into(), msg)]);
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if seconds < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    if seconds > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"),
        ));
    }
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(crate::tokens::api_audiences);
    let pod = match spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        None => None,
        Some(bound) => {
            let kind = bound.get("kind").and_then(Value::as_str).unwrap_or_default();
            let pod_name = bound.get("name").and_then(Value::as_str).unwrap_or_default();
            if kind != "Pod" {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    format!("Unsupported value: {kind:?}: supported values: \"Pod\""),
                ));
            }
            let pod = snap
                .get(&Key::new("Pod", Some(ns), pod_name))
                .ok_or_else(|| ApiError::not_found("pods", pod_name))?;
            let uid = pod.meta().uid.clone().unwrap_or_default();
            if bound.get("uid").and_then(Value::as_str).is_some_and(|u| u != uid) {
                return Err(ApiError::conflict("pods", pod_name));
            }
            Some(Ref {
                name: pod_name.to_string(),
                uid,
            })
        }
    };
    let sa_ref = Ref {
        name: name.to_string(),
        uid: sa.meta().uid.clone().unwrap_or_default(),
    };
    let now = crate::tokens::unix_now();
    let claims = Claims::new(ns, sa_ref, pod, audiences.clone(), now, seconds);
    let token = tokens.issue(&claims).map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = weft_model::k8s_openapi::jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": crate::api::now()});
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(seconds);
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(json_response(StatusCode::CREATED, &request))
}
