//! CustomResourceDefinitions: what a definition says about its resources' printing, and the structural schema
//! its custom objects are defaulted, pruned and validated against on every write, as apiextensions-apiserver
//! does; and the status the server gives a definition it accepts.

use crate::table::PrinterColumn;
use serde_json::{Map, Value, json};
use weft_model::Snapshot;
use weft_model::kind::{Resource, builtin};

/// The columns of a custom resource's version (its additionalPrinterColumns; none declared: Name and Age);
/// None for built-in resources, which have printers of their own.
pub fn printer_columns(snap: &Snapshot, resource: &Resource) -> Option<Vec<PrinterColumn>> {
    if is_builtin(resource) {
        return None;
    }
    Some(
        crate::registry::definition(snap, &resource.group, &resource.kind)
            .map(|crd| PrinterColumn::from_crd(&crd, &resource.version))
            .unwrap_or_default(),
    )
}

fn is_builtin(resource: &Resource) -> bool {
    builtin()
        .iter()
        .any(|r| r.group == resource.group && r.kind == resource.kind)
}

/// The openAPIV3Schema of a custom resource's version, if its definition has one.
pub fn schema(snap: &Snapshot, resource: &Resource) -> Option<Value> {
    if is_builtin(resource) {
        return None;
    }
    let crd = crate::registry::definition(snap, &resource.group, &resource.kind)?;
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(&resource.version))?
        .pointer("/schema/openAPIV3Schema")
        .cloned()
}

/// What checking an object against a schema found.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    /// (field path, message) per invalid value.
    pub errors: Vec<(String, String)>,
    /// Fields the schema does not know; they have been pruned from the object.
    pub unknown: Vec<String>,
}

/// Defaults, prunes and validates `object` (a custom resource as JSON) against `schema`. apiVersion, kind and
/// metadata are the API's own and are left alone.
pub fn check(schema: &Value, object: &mut Value) -> Checked {
    let mut out = Checked::default();
    let Some(map) = object.as_object_mut() else {
        out.errors.push((String::new(), "must be an object".into()));
        return out;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    defaults(schema, map);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&key)) {
            Some(sub) => {
                if let Some(v) = map.get_mut(&key) {
                    walk(sub, v, &key, &mut out);
                }
            }
            None if preserves(schema) => {}
            None => {
                map.remove(&key);
                out.unknown.push(key);
            }
        }
    }
    required(schema, map, "", &mut out);
    out
}

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Fills in the defaults of properties that are absent.
fn defaults(schema: &Value, map: &mut Map<String, Value>) {
    for (k, sub) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !map.contains_key(k)
            && let Some(d) = sub.get("default")
        {
            map.insert(k.clone(), d.clone());
        }
    }
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Checked) {
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = name.as_str()
            && !map.contains_key(name)
        {
            out.errors.push((join(path, name), "Required value".into()));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, out: &mut Checked) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            out.errors
                .push((path.into(), "Invalid value: \"null\": must not be null".into()));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or_default();
    let fits = match ty {
        "" => true,
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !fits {
        out.errors.push((
            path.into(),
            format!(
                "Invalid value: {}: {path} in body must be of type {ty}: \"{}\"",
                value,
                kind_of(value)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.errors.push((
            path.into(),
            format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        ));
    }
    bounds(schema, value, path, out);
    match value {
        Value::Object(map) => {
            defaults(schema, map);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let here = join(path, &key);
                let sub = props.and_then(|p| p.get(&key)).or(additional.filter(|a| a.is_object()));
                match sub {
                    Some(sub) => {
                        if let Some(v) = map.get_mut(&key) {
                            walk(sub, v, &here, out);
                        }
                    }
                    None if preserves(schema) || additional == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&key);
                        out.unknown.push(here);
                    }
                }
            }
            required(schema, map, path, out);
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// minimum/maximum, minLength/maxLength, minItems/maxItems, minProperties/maxProperties.
fn bounds(schema: &Value, value: &Value, path: &str, out: &mut Checked) {
    let limit = |name: &str| schema.get(name).and_then(Value::as_f64);
    let mut fail = |msg: String| out.errors.push((path.into(), msg));
    if let Some(n) = value.as_f64() {
        if let Some(min) = limit("minimum")
            && n < min
        {
            fail(format!(
                "Invalid value: {value}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = limit("maximum")
            && n > max
        {
            fail(format!(
                "Invalid value: {value}: {path} in body should be less than or equal to {max}"
            ));
        }
    }
    let size = match value {
        Value::String(s) => Some(("Length", s.chars().count())),
        Value::Array(a) => Some(("Items", a.len())),
        Value::Object(m) => Some(("Properties", m.len())),
        _ => None,
    };
    if let Some((what, len)) = size {
        if let Some(min) = limit(&format!("min{what}"))
            && (len as f64) < min
        {
            fail(format!(
                "Invalid value: {value}: {path} in body should have at least {min} {}",
                what.to_lowercase()
            ));
        }
        if let Some(max) = limit(&format!("max{what}"))
            && (len as f64) > max
        {
            fail(format!(
                "Too long: {path} in body may not have more than {max} {}",
                what.to_lowercase()
            ));
        }
    }
}

/// The status kube-apiserver gives a definition it serves: its names accepted and the resource established
/// (`kubectl wait --for condition=established` waits for it).
pub fn accept(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let now = crate::api::now();
    let condition = |ty: &str, reason: &str, message: &str| json!({"type": ty, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "port": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        }})
    }

    #[test]
    fn defaults_are_filled_and_unknown_fields_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 2, "bogus": 1, "port": "http", "labels": {"a": "b"}, "free": {"any": {"thing": 1}}},
            "extra": true});
        let checked = check(&schema(), &mut o);
        assert!(checked.errors.is_empty(), "{checked:?}");
        assert_eq!(checked.unknown, ["extra", "spec.bogus"]);
        assert_eq!(o["spec"]["color"], "red");
        assert!(o.get("extra").is_none() && o["spec"].get("bogus").is_none());
        assert_eq!(o["spec"]["free"]["any"]["thing"], 1);
    }

    #[test]
    fn invalid_values_are_named_by_field() {
        let mut o = json!({"spec": {"size": 11, "color": "green", "tags": ["a", "b", 3], "labels": {"a": 1}}, "status": {"ready": "yes"}});
        let fields: Vec<String> = check(&schema(), &mut o).errors.into_iter().map(|(f, _)| f).collect();
        let want = [
            "spec.color",
            "spec.labels.a",
            "spec.size",
            "spec.tags",
            "spec.tags[2]",
            "status.ready",
        ];
        assert_eq!(fields, want);
        let mut missing = json!({"spec": {}});
        let errors = check(&schema(), &mut missing).errors;
        assert_eq!(errors, [("spec.size".to_string(), "Required value".to_string())]);
    }

    #[test]
    fn an_accepted_definition_is_established() {
        let mut crd =
            json!({"spec": {"names": {"kind": "W", "plural": "ws"}, "versions": [{"name": "v1", "storage": true}]}});
        accept(&mut crd);
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(crd["status"]["acceptedNames"]["plural"], "ws");
    }
}
