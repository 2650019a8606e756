//! Unknown fields: what a request carried that the typed object dropped (`fieldValidation=Strict` refuses them,
//! `Warn` warns), found by comparing the request's JSON with the typed object's.

use serde_json::Value;

/// Paths (`spec.foo`, `spec.containers[0].bogus`) present in `input` but not in `typed`.
pub fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, typed, "", &mut out);
    out
}

fn walk(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let here = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(t) => walk(v, t, &here, out),
                    // A null or an empty value may be dropped on the way through the type.
                    None if v.is_null() || v == &Value::Object(Default::default()) || v == &Value::Array(vec![]) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, t)) in a.iter().zip(b).enumerate() {
                walk(v, t, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_each_field_the_type_dropped() {
        let input = json!({"spec": {"replicas": 1, "bogus": 2, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}, "status": null});
        let typed = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(unknown_fields(&input, &typed), ["spec.bogus", "spec.template.spec.containers[0].imagee"]);
        assert!(unknown_fields(&typed, &typed).is_empty());
    }
}
