//! The review kinds, answered and never stored: `SelfSubjectAccessReview` (`kubectl auth can-i`),
//! `SubjectAccessReview`, `SelfSubjectReview` (`kubectl auth whoami`).

use crate::api::Call;
use crate::body::{Body, json_response};
use crate::status::ApiError;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use weft_model::kind::Resource;

pub fn create(call: &Call, resource: &Resource, mut review: Value) -> Result<Response<Body>, ApiError> {
    let user = call.user.as_ref().ok_or_else(ApiError::unauthorized)?;
    match resource.kind.as_str() {
        "SelfSubjectReview" => {
            review["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
        }
        "SelfSubjectAccessReview" => {
            let allowed = user.is_master();
            review["status"] = json!({"allowed": allowed, "reason": if allowed { "system:masters" } else { "" }});
        }
        _ => {
            return Err(ApiError::new(
                501,
                "NotImplemented",
                format!("{} is not served yet", resource.qualified()),
            ));
        }
    }
    review["apiVersion"] = json!(resource.api_version());
    review["kind"] = json!(resource.kind);
    Ok(json_response(StatusCode::CREATED, &review))
}
