//! Sets of field paths in the FieldsV1 shape of `metadata.managedFields`: a tree whose edges are path elements
//! (`f:<field>`, `k:<key object>` for an item of a keyed list, `v:<value>` for a set item, `i:<index>`) and whose
//! nodes may be members themselves (`.` when the node also has children).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

pub(super) type Path = Vec<String>;

impl FieldSet {
    /// Parses a `fieldsV1` object; anything malformed in it is skipped.
    pub(super) fn from_json(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(map) = v {
            for (k, child) in map {
                if k == "." {
                    set.member = true;
                } else {
                    let mut node = FieldSet::from_json(child);
                    if node.children.is_empty() {
                        node.member = true;
                    }
                    set.children.insert(k.clone(), node);
                }
            }
        }
        set
    }

    pub(super) fn to_json(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &self.children {
            map.insert(k.clone(), child.to_json());
        }
        Value::Object(map)
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// The node at `element` below this one, created when missing.
    pub(super) fn child(&mut self, element: String) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    pub(super) fn mark(&mut self) {
        self.member = true;
    }

    /// Adds `path` as a member.
    pub(super) fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.child(element.clone());
        }
        node.mark();
    }

    pub(super) fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Every member path, parents before children.
    pub(super) fn members(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, child) in &self.children {
            prefix.push(k.clone());
            child.walk(prefix, out);
            prefix.pop();
        }
    }

    /// Whether the member at `path` has members below it (an item or map owned with some of its fields).
    pub(super) fn has_children(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.children.is_empty(),
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.has_children(rest)),
        }
    }

    pub(super) fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((head, rest)) => {
                if let Some(child) = self.children.get_mut(head) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(head);
                    }
                }
            }
        }
    }

    pub(super) fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, child) in &other.children {
            self.child(k.clone()).union(child);
        }
    }

    pub(super) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, child) in &self.children {
            let diff = match other.children.get(k) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !diff.is_empty() {
                out.children.insert(k.clone(), diff);
            }
        }
        out
    }
}

/// A path the way the apiserver prints it in conflicts: `.spec.ports[port=80,protocol="TCP"].targetPort`.
pub(super) fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = element.strip_prefix("k:") {
            let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

/// The `k:` element of a keyed-list item: its key fields as a JSON object with sorted keys. A missing `protocol`
/// key takes the API's default, TCP, as the apiserver's schema does.
pub(super) fn key_element(item: &Value, keys: &[&str]) -> String {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let mut fields = Map::new();
    for k in sorted {
        match item.get(k) {
            Some(v) if !v.is_null() => {
                fields.insert(k.to_owned(), v.clone());
            }
            _ if k == "protocol" => {
                fields.insert(k.to_owned(), Value::String("TCP".into()));
            }
            _ => {}
        }
    }
    format!("k:{}", Value::Object(fields))
}

pub(super) fn value_element(v: &Value) -> String {
    format!("v:{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips_and_set_algebra() {
        let v = json!({"f:spec": {"f:replicas": {}, "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}});
        let set = FieldSet::from_json(&v);
        assert_eq!(set.to_json(), v);
        let members = set.members();
        assert_eq!(members.len(), 3);
        assert_eq!(path_string(&members[0]), ".spec.ports[port=80,protocol=\"TCP\"]");
        let replicas = FieldSet::from_json(&json!({"f:spec": {"f:replicas": {}}}));
        let rest = set.difference(&replicas);
        assert!(!rest.contains(&["f:spec".into(), "f:replicas".into()]));
        let mut all = rest.clone();
        all.union(&replicas);
        assert_eq!(all, set);
        assert_eq!(
            key_element(&json!({"port": 80}), &["port", "protocol"]),
            "k:{\"port\":80,\"protocol\":\"TCP\"}"
        );
    }
}
