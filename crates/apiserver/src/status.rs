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

    /// `resource` is the qualified resource (`pods`, `deployments.apps`).
    pub fn forbidden(user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> ApiError {
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        ApiError::new(
            403,
            "Forbidden",
            format!("{resource} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" {scope}"),
        )
    }

    pub fn not_found(resource: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found")).with_details(resource, name)
    }

    /// A path or resource the server does not have.
    pub fn no_route() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(resource: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists")).with_details(resource, name)
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
            .map(|(field, msg)| if field.is_empty() { msg.clone() } else { format!("{field}: {msg}") })
            .collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} \"{name}\" is invalid: {}", text.join(", ")),
            details: Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().map(|(field, msg)| json!({
                    "reason": "FieldValueInvalid", "message": msg, "field": field,
                })).collect::<Vec<_>>(),
            })),
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large() -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
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
