//! Which resources the server has: the built-in ones (weft-model's table) and those of every established
//! CustomResourceDefinition in the store, served as soon as the definition is stored.

use serde_json::Value;
use weft_model::kind::{Resource, builtin};
use weft_model::{Object, Snapshot};

/// The resource at `group`/`version` named `plural`.
pub fn lookup(snap: &Snapshot, group: &str, version: &str, plural: &str) -> Option<Resource> {
    if let Some(r) = builtin()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
    {
        return Some(r.clone());
    }
    custom(snap).find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Every served resource: built-in first, then custom ones in the order of their definitions.
pub fn all(snap: &Snapshot) -> Vec<Resource> {
    builtin().iter().cloned().chain(custom(snap)).collect()
}

/// The resources of the stored CustomResourceDefinitions, one per served version.
pub fn custom(snap: &Snapshot) -> impl Iterator<Item = Resource> + '_ {
    snap.of_kind("CustomResourceDefinition").flat_map(from_definition)
}

/// The definition (as JSON) of the custom resource `kind` in `group`, if one is stored.
pub fn definition(snap: &Snapshot, group: &str, kind: &str) -> Option<Value> {
    snap.of_kind("CustomResourceDefinition")
        .map(Object::to_value)
        .find(|crd| {
            crd.pointer("/spec/group").and_then(Value::as_str) == Some(group)
                && crd.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind)
        })
}

fn from_definition(crd: &Object) -> Vec<Resource> {
    let crd = crd.to_value();
    let text = |pointer: &str| crd.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    let strings = |pointer: &str| -> Vec<String> {
        crd.pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (group, kind, plural) = (text("/spec/group"), text("/spec/names/kind"), text("/spec/names/plural"));
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = match text("/spec/names/singular") {
        s if s.is_empty() => kind.to_ascii_lowercase(),
        s => s,
    };
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|v| {
            let version = v.get("name")?.as_str()?.to_string();
            let mut subresources = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subresources.push("status".to_string());
            }
            if v.pointer("/subresources/scale").is_some() {
                subresources.push("scale".to_string());
            }
            Some(Resource {
                group: group.clone(),
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced: text("/spec/scope") != "Cluster",
                short_names: strings("/spec/names/shortNames"),
                categories: strings("/spec/names/categories"),
                subresources,
                create_only: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_definition_is_served_at_once() {
        let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
            "metadata":{"name":"widgets.example.com"},
            "spec":{"group":"example.com","scope":"Cluster","names":{"kind":"Widget","plural":"widgets","shortNames":["wd"]},
            "versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}}},{"name":"v0","served":false}]}}"#;
        let object = weft_model::manifest::from_value(serde_json::from_str(crd).unwrap()).unwrap();
        let snap = Snapshot::new(1, [object]);
        let r = lookup(&snap, "example.com", "v1", "widgets").unwrap();
        assert_eq!((r.kind.as_str(), r.namespaced), ("Widget", false));
        assert_eq!(r.subresources, ["status"]);
        assert_eq!(r.short_names, ["wd"]);
        assert!(lookup(&snap, "example.com", "v0", "widgets").is_none());
        assert!(lookup(&snap, "apps", "v1", "deployments").is_some());
        assert_eq!(all(&snap).len(), builtin().len() + 1);
    }
}
