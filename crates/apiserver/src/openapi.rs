//! OpenAPI v3, as much as `kubectl apply` needs: an index of group-versions, and per group-version a PATCH
//! operation per resource that declares the `fieldValidation` parameter. kubectl then leaves validation to the
//! server (`fieldValidation=Strict`) and computes patches from its compiled-in types (strategic merge for
//! built-in kinds, JSON merge for custom ones), as it does against kube-apiserver. No schemas are served: with
//! none, kubectl must not be told the strategic-merge content type (it would look for them), so none is.
//!
//! OpenAPI v2 is served empty (no paths, no definitions), in JSON or in the protobuf form kubectl asks for: kubectl
//! validates a `List` (`kubectl apply -f` of a `kind: List`) against v2 whatever v3 says, and a server without
//! v2 fails that with "failed to download openapi". Finding no schema for the items, kubectl leaves them to the
//! server's validation, as it does for every single object.

use crate::discovery::group_versions;
use serde_json::{Value, json};
use weft_model::kind::Resource;

/// `/openapi/v3`: every group-version with the address of its document; the hash changes with the document,
/// as kubectl caches documents by it.
pub fn index(resources: &[Resource]) -> Value {
    let paths: serde_json::Map<String, Value> = group_versions(resources)
        .into_keys()
        .filter_map(|path| {
            let hash = hash(&document(resources, &path)?);
            Some((
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            ))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`.
pub fn document(resources: &[Resource], path: &str) -> Option<Value> {
    let gvs = group_versions(resources);
    let rs = gvs.get(path)?;
    let mut paths = serde_json::Map::new();
    for r in rs {
        let prefix = format!("/{path}");
        let item = match r.namespaced {
            true => format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            false => format!("{prefix}/{}/{{name}}", r.plural),
        };
        paths.insert(
            item,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::version::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// `/openapi/v2` as JSON: a Swagger 2.0 document with no paths and no definitions.
pub fn v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::version::GIT_VERSION},
        "paths": {},
        "definitions": {},
    })
}

/// The same document as gnostic's `openapi.v2.Document` protobuf message (swagger = 1, info = 2 with title = 1
/// and version = 2), the form kubectl asks for.
pub fn v2_protobuf() -> Vec<u8> {
    use crate::protobuf::wire::len;
    let info = [len(1, b"Kubernetes"), len(2, crate::version::GIT_VERSION.as_bytes())].concat();
    [len(1, b"2.0"), len(2, &info)].concat()
}

/// The media type of `v2_protobuf`.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// FNV-1a of the document's JSON, as hex.
fn hash(doc: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in doc.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::kind::builtin;

    #[test]
    fn every_resource_declares_field_validation_on_patch() {
        let idx = index(builtin());
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc = document(builtin(), "api/v1").unwrap();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Service");
        assert_eq!(op["parameters"][0]["name"], "fieldValidation");
        assert!(doc["paths"]["/api/v1/nodes/{name}"].is_object());
        assert!(document(builtin(), "apis/nothing/v1").is_none());
    }

    #[test]
    fn v2_protobuf_is_a_swagger_document_with_info() {
        use crate::protobuf::wire::{Reader, WireType};
        let fields = |bytes: &[u8]| {
            let mut r = Reader::new(bytes);
            let mut out = Vec::new();
            while let Some((number, ty)) = r.key().unwrap() {
                assert_eq!(ty, WireType::Len);
                out.push((number, r.bytes().unwrap().to_vec()));
            }
            out
        };
        let doc = fields(&v2_protobuf());
        assert_eq!(doc[0], (1, b"2.0".to_vec()));
        assert_eq!(doc[1].0, 2);
        let info = fields(&doc[1].1);
        assert_eq!(info[0], (1, b"Kubernetes".to_vec()));
        assert_eq!(info[1], (2, crate::version::GIT_VERSION.as_bytes().to_vec()));
        assert_eq!(v2_json()["paths"], json!({}));
    }
}
