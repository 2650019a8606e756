//! Reading manifests: YAML (several documents) or JSON, one object, or a `List`. Each document is dispatched on
//! its `kind` to the typed Kubernetes struct (which also checks `apiVersion`), then validated. Any error names the
//! document and the field, and the whole input is refused: callers apply all of it or nothing.

use crate::object::Object;
use crate::validate;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    /// Where the text came from (a file name, `-`).
    pub origin: String,
    /// 1-based document number within the input, when the error is about one document.
    pub document: Option<usize>,
    /// `Kind/name` of the object when known.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(n) = self.document {
            write!(f, ": document {n}")?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Parses every object in `text`. `origin` names the input in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Object>, ManifestError> {
    let fail = |document: Option<usize>, object: Option<String>, message: String| ManifestError {
        origin: origin.to_string(),
        document,
        object,
        message,
    };
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        let value = serde_json::from_str(text).map_err(|e| fail(None, None, format!("invalid JSON: {e}")))?;
        vec![value]
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| fail(None, None, format!("invalid YAML: {e}")))?
    };
    let mut objects = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let n = Some(i + 1);
        match document {
            Value::Null => continue,
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = map.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                for (j, item) in items.into_iter().enumerate() {
                    let object = decode(item).map_err(|(o, m)| fail(n, o, format!("items[{j}]: {m}")))?;
                    objects.push(object);
                }
            }
            Value::Object(_) => objects.push(decode(document).map_err(|(o, m)| fail(n, o, m))?),
            other => {
                return Err(fail(
                    n,
                    None,
                    format!("expected an object, found {}", type_name(&other)),
                ));
            }
        }
    }
    Ok(objects)
}

/// Dispatches one document on its kind, then validates it. The error carries `Kind/name` when known.
pub fn decode(value: Value) -> Result<Object, (Option<String>, String)> {
    let kind = match value.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(_) => return Err((None, "field kind: must be a non-empty string".into())),
        None => return Err((None, "field kind: required".into())),
    };
    if !matches!(value.get("apiVersion"), Some(Value::String(v)) if !v.is_empty()) {
        return Err((None, "field apiVersion: required".into()));
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(|n| format!("{kind}/{n}"));
    let object = from_value(value).map_err(|m| (name.clone(), m))?;
    validate::object(&object).map_err(|m| (name, m))?;
    Ok(object)
}

/// The typed object for a document, without validation (used for objects already stored).
pub fn from_value(value: Value) -> Result<Object, String> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Object::decode_typed(&kind, value)
}

/// Deserialises `value`, naming the field path in the error.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("field {path}: {inner}")
        }
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {role: client}
spec:
  containers:
  - name: c
    image: busybox
    command: [sleep, infinity]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {size: 3}
";

    #[test]
    fn multi_document_yaml_dispatches_on_kind() {
        let objects = parse(WEB, "web.yaml").unwrap();
        let kinds: Vec<_> = objects.iter().map(|o| o.kind().to_string()).collect();
        assert_eq!(kinds, ["Deployment", "Pod", "Widget"]);
        let Object::Deployment(d) = &objects[0] else { panic!() };
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
        let Object::Other(w) = &objects[2] else { panic!() };
        assert_eq!(w.rest["spec"]["size"], 3);
        assert_eq!(objects[2].to_value()["spec"]["size"], 3);
    }

    #[test]
    fn json_and_lists() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}]}"#;
        let objects = parse(text, "-").unwrap();
        assert_eq!(objects[0].key().to_string(), "Namespace/x");
    }

    fn error(text: &str) -> String {
        parse(text, "f.yaml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_document_and_field() {
        let e = error(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports:\n    - containerPort: http\n",
        );
        assert!(
            e.contains("document 1 (Pod/p)") && e.contains("spec.containers[0].ports[0].containerPort"),
            "{e}"
        );
        let e = error("kind: Pod\nmetadata: {name: p}\n");
        assert!(e.contains("apiVersion"), "{e}");
        let e = error("apiVersion: v1\nmetadata: {name: p}\n");
        assert!(e.contains("field kind: required"), "{e}");
        let e = error("apiVersion: apps/v1\nkind: Pod\nmetadata: {name: p}\n");
        assert!(e.contains("Pod/p"), "{e}");
        let e = error("- 1\n- 2\n");
        assert!(e.contains("expected an object"), "{e}");
        let e = error("a: [unclosed\n");
        assert!(e.contains("invalid YAML"), "{e}");
    }
}
