//! The PATCH engines of the API: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch as
//! apimachinery's `strategicpatch` applies it to the built-in kinds, and server-side apply with
//! `metadata.managedFields`. Pure functions over JSON; the HTTP layer picks the engine from the Content-Type and turns
//! a [`PatchError`] into a `Status` with [`PatchError::status`].

mod apply;
mod fields;
mod gofmt;
mod schema;
mod strategic;

pub use apply::{Conflict, parse_apply_body, record_update, server_side_apply};

use serde_json::Value;

/// The patch formats a PATCH request may carry, named by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply, see [`server_side_apply`])
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type header value (parameters such as `; charset=utf-8` are ignored).
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// The HTTP status and `Status.reason` the apiserver answers a failed patch with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400 `BadRequest`
    BadRequest,
    /// 409 `Conflict` (server-side apply conflicts)
    Conflict,
    /// 415 `UnsupportedMediaType`
    UnsupportedMediaType,
    /// 422 `Invalid`
    Invalid,
    /// 500 with no reason: apimachinery's untyped errors (e.g. a list item without its merge key) reach the client so.
    InternalError,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Conflict => 409,
            Status::UnsupportedMediaType => 415,
            Status::Invalid => 422,
            Status::InternalError => 500,
        }
    }

    /// `Status.reason`; "" is `StatusReasonUnknown`.
    pub fn reason(self) -> &'static str {
        match self {
            Status::BadRequest => "BadRequest",
            Status::Conflict => "Conflict",
            Status::UnsupportedMediaType => "UnsupportedMediaType",
            Status::Invalid => "Invalid",
            Status::InternalError => "",
        }
    }
}

/// Why a patch failed; `Display` is the message kube-apiserver gives.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    /// What the apiserver answers a JSON patch that fails to apply (or a list of lists in a strategic merge
    /// patch): 422 with this generic message, and `cause` as `Status.details.causes[0]`
    /// (`{"reason": "UnexpectedServerResponse", "message": cause}`).
    #[error("the server rejected our request due to an error in our request")]
    Rejected { cause: String },
    #[error("{0}")]
    Internal(String),
    /// A Content-Type the resource takes no patch in, e.g. a strategic merge patch of a kind without a Go struct
    /// (custom resources, unknown kinds); see [`PatchError::unsupported_media_type`].
    #[error("the body of the request was in an unknown format - accepted media types include: {accepted}")]
    UnsupportedMediaType { accepted: &'static str },
    /// Server-side apply changing fields another manager owns; `conflicts` are the `Status.details.causes`
    /// (type `FieldManagerConflict`).
    #[error("{message}")]
    Conflict { message: String, conflicts: Vec<Conflict> },
}

impl PatchError {
    /// The answer to a PATCH whose Content-Type the kind does not take: built-in kinds take all four patch
    /// types, other kinds (custom resources) all but strategic merge patch.
    pub fn unsupported_media_type(group: &str, kind: &str) -> PatchError {
        let accepted = if schema::root_type(group, kind).is_some() {
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        } else {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        };
        PatchError::UnsupportedMediaType { accepted }
    }

    pub fn status(&self) -> Status {
        match self {
            PatchError::BadRequest(_) => Status::BadRequest,
            PatchError::Invalid(_) | PatchError::Rejected { .. } => Status::Invalid,
            PatchError::Internal(_) => Status::InternalError,
            PatchError::UnsupportedMediaType { .. } => Status::UnsupportedMediaType,
            PatchError::Conflict { .. } => Status::Conflict,
        }
    }
}

/// Applies a JSON, merge or strategic merge patch `body` to `current`, an object of kind `kind` in API group
/// `group` ("" for core), and returns the patched object. Apply patches need a field manager: use
/// [`server_side_apply`].
pub fn patch(
    group: &str,
    kind: &str,
    current: &Value,
    patch_type: PatchType,
    body: &[u8],
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch(current, body),
        PatchType::Merge => merge_patch(current, body),
        PatchType::Strategic => strategic::patch(group, kind, current, body),
        PatchType::Apply => Err(PatchError::Invalid(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                .into(),
        )),
    }
}

/// RFC 6902. As in the apiserver (evanphx/json-patch), a body that is no JSON list is a bad request, and an
/// operation that is malformed or fails to apply is rejected.
fn json_patch(current: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let ops = match parse_json(body)? {
        Value::Array(ops) => ops,
        // Go decodes `null` into a nil list: no operations.
        Value::Null => Vec::new(),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                json_kind_name(&other)
            )));
        }
    };
    let rejected = |cause: String| PatchError::Rejected { cause };
    let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops)).map_err(|e| rejected(e.to_string()))?;
    let mut doc = current.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| rejected(e.to_string()))?;
    Ok(doc)
}

/// The JSON type name Go's decoding errors use.
fn json_kind_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null | Value::Object(_) => "object",
    }
}

/// RFC 7386; like the apiserver (evanphx/json-patch) only an object is a merge patch of an object.
fn merge_patch(current: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(body).map_err(|_| bad_merge_patch())?;
    if !patch.is_object() {
        return Err(bad_merge_patch());
    }
    let mut doc = current.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

fn bad_merge_patch() -> PatchError {
    PatchError::BadRequest("Invalid JSON Patch".into())
}

/// Decodes a JSON request body, with Go's message for a truncated one.
fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| {
        PatchError::BadRequest(if e.is_eof() {
            "unexpected end of JSON input".into()
        } else {
            e.to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 2}})
    }

    #[test]
    fn content_types_name_the_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn json_patch_applies_operations() {
        let body =
            br#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":5},
                        {"op":"move","from":"/metadata/labels/app","path":"/metadata/labels/tier"}]"#;
        let out = patch("apps", "Deployment", &deployment(), PatchType::Json, body).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(out["metadata"]["labels"], json!({"tier": "web"}));
    }

    #[test]
    fn json_patch_failures_are_invalid_and_malformed_bodies_bad_requests() {
        let d = deployment();
        for body in [
            &br#"[{"op":"test","path":"/spec/replicas","value":3}]"#[..],
            br#"[{"op":"remove","path":"/spec/paused"}]"#,
            br#"[{"op":"move","from":"/spec/nothing","path":"/spec/x"}]"#,
            br#"[{"op":"frobnicate"}]"#,
        ] {
            let e = patch("apps", "Deployment", &d, PatchType::Json, body).unwrap_err();
            assert_eq!(e.status(), Status::Invalid, "{e}");
            assert_eq!(
                e.to_string(),
                "the server rejected our request due to an error in our request"
            );
            assert!(matches!(&e, PatchError::Rejected { cause } if !cause.is_empty()));
        }
        let e = patch("apps", "Deployment", &d, PatchType::Json, b"{}").unwrap_err();
        assert_eq!(
            e,
            PatchError::BadRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch".into())
        );
        for body in [&b"["[..], b""] {
            let e = patch("apps", "Deployment", &d, PatchType::Json, body).unwrap_err();
            assert_eq!(e, PatchError::BadRequest("unexpected end of JSON input".into()));
        }
        assert_eq!(patch("apps", "Deployment", &d, PatchType::Json, b"null").unwrap(), d);
    }

    #[test]
    fn merge_patch_merges_and_null_deletes() {
        let body = br#"{"metadata":{"labels":{"app":null,"tier":"fe"}},"spec":{"replicas":5}}"#;
        let out = patch("apps", "Deployment", &deployment(), PatchType::Merge, body).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"tier": "fe"}));
        assert_eq!(out["spec"]["replicas"], 5);
        for body in [&b"[1]"[..], b"null", b"{", b"3"] {
            let e = patch("apps", "Deployment", &deployment(), PatchType::Merge, body).unwrap_err();
            assert_eq!(e, PatchError::BadRequest("Invalid JSON Patch".into()));
        }
    }

    #[test]
    fn apply_without_a_manager_is_refused() {
        let e = patch("apps", "Deployment", &deployment(), PatchType::Apply, b"{}").unwrap_err();
        assert_eq!(e.status(), Status::Invalid);
    }

    /// A small deterministic generator of JSON built from the words patches use, so that random patches reach
    /// the directives and typed lists the way the fuzz target's byte strings rarely do.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
            words[(self.next() % words.len() as u64) as usize]
        }

        fn value(&mut self, depth: u32) -> Value {
            const KEYS: &[&str] = &[
                "spec",
                "template",
                "containers",
                "ports",
                "name",
                "port",
                "containerPort",
                "protocol",
                "metadata",
                "finalizers",
                "labels",
                "strategy",
                "rollingUpdate",
                "type",
                "env",
                "image",
                "selector",
                "$patch",
                "$retainKeys",
                "$setElementOrder/ports",
                "$setElementOrder/containers",
                "$setElementOrder/finalizers",
                "$deleteFromPrimitiveList/finalizers",
                "$setElementOrder",
                "$deleteFromPrimitiveList/x/y",
                "managedFields",
                "fieldsV1",
                "op",
                "path",
                "value",
                "from",
            ];
            const WORDS: &[&str] = &[
                "delete",
                "replace",
                "merge",
                "web",
                "TCP",
                "/spec",
                "/spec/replicas",
                "add",
                "remove",
                "test",
                "move",
                "copy",
            ];
            let choice = if depth == 0 { self.next() % 5 } else { self.next() % 8 };
            match choice {
                0 => Value::Null,
                1 => Value::from(self.next().is_multiple_of(3)),
                2 => Value::from(self.next() % 100),
                3 => Value::from(self.pick(WORDS)),
                4 => Value::from(self.pick(KEYS)),
                5 | 6 => {
                    let n = self.next() % 4;
                    Value::Object(
                        (0..n)
                            .map(|_| (self.pick(KEYS).to_owned(), self.value(depth - 1)))
                            .collect(),
                    )
                }
                _ => {
                    let n = self.next() % 4;
                    Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
                }
            }
        }
    }

    #[test]
    fn random_patches_never_panic() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "finalizers": ["a"]},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "selector": {"app": "web"}}});
        let objects = [("apps", "Deployment", deployment()), ("", "Service", service)];
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..1500 {
            // Half the patches reach down the typed lists before turning random.
            let body = match g.next() % 4 {
                0 => json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "ports": g.value(4)}, g.value(5)]}}}}),
                1 => json!({"spec": {"ports": [g.value(4), {"port": 80, "$patch": g.value(1)}], "$setElementOrder/ports": g.value(3)}}),
                _ => g.value(6),
            }
            .to_string();
            for (group, kind, current) in &objects {
                for patch_type in [PatchType::Json, PatchType::Merge, PatchType::Strategic] {
                    if let Ok(mut patched) = patch(group, kind, current, patch_type, body.as_bytes()) {
                        record_update(group, kind, Some(current), &mut patched, "m", "t");
                    }
                }
                if let Ok(applied) = parse_apply_body(body.as_bytes()) {
                    let live = server_side_apply(group, kind, Some(current), &applied, "a", false, "t");
                    let _ = server_side_apply(group, kind, live.as_ref().ok(), &applied, "b", true, "t");
                }
            }
        }
    }
}
