//! Label and field selectors as they come in a query string (`labelSelector=app=web,tier!=db`,
//! `fieldSelector=spec.nodeName=node-1`), parsed once per request and matched against each object.

use serde_json::Value;
use std::collections::BTreeMap;
use weft_model::Object;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels(Vec<(String, Op)>);

impl Labels {
    pub fn parse(text: &str) -> Result<Labels, String> {
        let mut out = Vec::new();
        for part in split_top(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            out.push(requirement(part).map_err(|m| format!("unable to parse requirement: {m}"))?);
        }
        Ok(Labels(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(key, op)| {
            let v = labels.get(key);
            match op {
                Op::Equals(x) => v == Some(x),
                Op::NotEquals(x) => v != Some(x),
                Op::In(xs) => v.is_some_and(|v| xs.contains(v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn requirement(part: &str) -> Result<(String, Op), String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok((key_of(key)?, Op::DoesNotExist));
    }
    for (sep, make) in [
        ("!=", Op::NotEquals as fn(String) -> Op),
        ("==", Op::Equals),
        ("=", Op::Equals),
    ] {
        if let Some((k, v)) = part.split_once(sep) {
            return Ok((key_of(k)?, make(value_of(v)?)));
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim();
        let (op, list) = if let Some(l) = rest.strip_prefix("notin") {
            (false, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (true, l)
        } else {
            return Err(format!("{part:?}: expected one of =, ==, !=, in, notin"));
        };
        let list = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("{part:?}: expected a parenthesised list of values"))?;
        let values = list.split(',').map(value_of).collect::<Result<Vec<_>, _>>()?;
        return Ok((key_of(key)?, if op { Op::In(values) } else { Op::NotIn(values) }));
    }
    Ok((key_of(part)?, Op::Exists))
}

fn key_of(k: &str) -> Result<String, String> {
    let k = k.trim();
    weft_model::selector::label_key(k).map_err(|m| format!("key {k:?}: {m}"))?;
    Ok(k.to_string())
}

fn value_of(v: &str) -> Result<String, String> {
    let v = v.trim();
    weft_model::selector::label_value(v).map_err(|m| format!("value {v:?}: {m}"))?;
    Ok(v.to_string())
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(Vec<(String, bool, String)>);

impl Fields {
    /// Parses `text`; only fields the API server supports for `kind` are accepted, as it does.
    pub fn parse(text: &str, kind: &str) -> Result<Fields, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            let field = field.trim();
            if !supported(kind, field) {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Fields(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Object) -> bool {
        if self.0.is_empty() {
            return true;
        }
        // Names and namespaces are read straight from the metadata; any other field from the JSON form.
        let mut json: Option<Value> = None;
        self.0.iter().all(|(field, equal, want)| {
            let have = match field.as_str() {
                "metadata.name" => object.name().to_string(),
                "metadata.namespace" => object.namespace().unwrap_or_default().to_string(),
                other => {
                    let v = json.get_or_insert_with(|| object.to_value());
                    let pointer = format!("/{}", other.replace('.', "/"));
                    match v.pointer(&pointer) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Bool(b)) => b.to_string(),
                        Some(Value::Number(n)) => n.to_string(),
                        _ => String::new(),
                    }
                }
            };
            (have == *want) == *equal
        })
    }
}

/// The fields kube-apiserver lets each kind be selected by (besides metadata.name and metadata.namespace).
fn supported(kind: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let fields: &[&str] = match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    };
    fields.contains(&field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors_as_kubectl_sends_them() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        for (text, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("kubernetes.io/service-name=web", false),
            ("", true),
        ] {
            assert_eq!(Labels::parse(text).unwrap().matches(&l), want, "{text}");
        }
        assert!(Labels::parse("app in web").is_err());
        assert!(Labels::parse("a b c").is_err());
        assert!(Labels::parse("app=we b").is_err());
    }

    #[test]
    fn field_selectors_read_the_fields_the_api_supports() {
        let pod = weft_model::parse(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: default}\nspec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {phase: Running}\n",
            "t",
        )
        .unwrap()
        .remove(0);
        let f = |t: &str| Fields::parse(t, "Pod").unwrap().matches(&pod);
        assert!(f("metadata.name=web-1"));
        assert!(f("spec.nodeName=node-1,status.phase=Running"));
        assert!(!f("spec.nodeName!=node-1"));
        assert!(!f("metadata.namespace=kube-system"));
        assert_eq!(Fields::parse("spec.foo=1", "Pod").unwrap_err(), "field label not supported: spec.foo");
        assert!(Fields::parse("involvedObject.uid=x", "Event").is_ok());
    }
}
