//! Errors as the API reports them: a `metav1.Status` with the HTTP code and the reason kubectl prints
//! (`Error from server (NotFound): pods "x" not found`).

use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    pub message: String,
    /// `details`: name, group, kind (the resource, as the API server names it) and causes.
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 as kube-apiserver answers a request its authorizer refused: `pods is forbidden: User "u" cannot list
    /// resource "pods" in API group "" in the namespace "default"`, then the authorizer's reason if any.
    pub fn forbidden(user: &str, attrs: &crate::authz::Attributes, reason: &str) -> ApiError {
        let mut message = attrs.refusal(user);
        if !reason.is_empty() {
            message = format!("{message}: {reason}");
        }
        let Some(r) = &attrs.resource else {
            return ApiError::new(403, "Forbidden", format!("forbidden: {message}"));
        };
        let qualified = match r.group.as_str() {
            "" => r.resource.clone(),
            g => format!("{}.{g}", r.resource),
        };
        let message = match r.name.as_str() {
            "" => format!("{qualified} is forbidden: {message}"),
            name => format!("{qualified} {name:?} is forbidden: {message}"),
        };
        let mut error = ApiError::new(403, "Forbidden", message);
        let mut details = json!({"group": r.group, "kind": r.resource});
        if !r.name.is_empty() {
            details["name"] = json!(r.name);
        }
        error.details = Some(details);
        error
    }

    pub fn not_found(resource: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found")).with_details(resource, name)
    }

    /// A path or resource the server does not have.
    pub fn no_route() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(resource: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists"))
            .with_details(resource, name)
    }

    pub fn conflict(resource: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply \
                 your changes to the latest version and try again"
            ),
        )
        .with_details(resource, name)
    }

    /// 422 with one cause per invalid field; `kind` is the Kind (`Service`), as kubectl prints it.
    pub fn invalid(kind: &str, name: &str, causes: &[(String, String)]) -> ApiError {
        let text: Vec<String> = causes
            .iter()
            .map(|(field, msg)| {
                if field.is_empty() {
                    msg.clone()
                } else {
                    format!("{field}: {msg}")
                }
            })
            .collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            // kube-apiserver brackets a list of several errors.
            message: match text.as_slice() {
                [one] => format!("{kind} \"{name}\" is invalid: {one}"),
                _ => format!("{kind} \"{name}\" is invalid: [{}]", text.join(", ")),
            },
            details: Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().map(|(field, msg)| json!({
                    "reason": cause_reason(msg), "message": msg, "field": field,
                })).collect::<Vec<_>>(),
            })),
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large() -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    fn with_details(mut self, resource: &str, name: &str) -> ApiError {
        let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    /// The `Status` object of this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// The `Status` a successful deletion of a collection (or of an object without a body to return) answers with.
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// The causes of a validation failure written as `field <path>: <reason>` lines (weft_model's validation), one
/// per line; a line without a field is a cause of the whole object.
pub fn field_causes(msg: &str) -> Vec<(String, String)> {
    msg.lines()
        .map(
            |line| match line.strip_prefix("field ").and_then(|m| m.split_once(": ")) {
                Some((field, text)) => (field.to_string(), text.to_string()),
                None => (String::new(), line.to_string()),
            },
        )
        .collect()
}

/// The StatusCause reason of a cause worded as kube-apiserver words it (`Required value: ...`).
fn cause_reason(msg: &str) -> &'static str {
    [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Too long", "FieldValueTooLong"),
        ("Duplicate value", "FieldValueDuplicate"),
    ]
    .into_iter()
    .find(|(prefix, _)| msg.starts_with(prefix))
    .map_or("FieldValueInvalid", |(_, reason)| reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_invalid_fields_are_one_status_with_a_cause_each() {
        let causes = field_causes(
            "field spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address\n\
             field spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
        );
        let e = ApiError::invalid("Ingress", "shop", &causes);
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Ingress \"shop\" is invalid: [spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not \
             an IP address, spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified]"
        );
        let details = e.details.unwrap();
        let reasons: Vec<(&str, &str)> = details["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["field"].as_str().unwrap(), c["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("spec.rules[0].host", "FieldValueInvalid"),
                ("spec.rules[0].http.paths[0].pathType", "FieldValueRequired")
            ]
        );
        let one = ApiError::invalid("Service", "web", &field_causes("field spec.type: bad"));
        assert_eq!(one.message, "Service \"web\" is invalid: spec.type: bad");
    }
}
