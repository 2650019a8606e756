//! The part of kubectl's JSONPath templates that scripts use: literal text with `{.field.list[0].x}` and
//! `{.items[*].metadata.name}` (several values joined by spaces).

use serde_json::Value;

/// Renders `template` against `doc`.
pub fn render(template: &str, doc: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("jsonpath {template:?}: unclosed '{{'"))?;
        let expr = &rest[open + 1..open + close];
        let values = select(doc, expr).map_err(|e| format!("jsonpath {template:?}: {e}"))?;
        let texts: Vec<String> = values.iter().map(|v| scalar(v)).collect();
        out.push_str(&texts.join(" "));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The values `expr` (`.a.b[0]`, `.items[*].x`, or `.` for the whole document) selects.
fn select<'a>(doc: &'a Value, expr: &str) -> Result<Vec<&'a Value>, String> {
    let expr = expr.trim();
    let path = expr
        .strip_prefix('.')
        .ok_or_else(|| format!("{expr:?} must start with '.'"))?;
    let mut current = vec![doc];
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let (field, index) = match step.find('[') {
            Some(i) => {
                let idx = step[i + 1..]
                    .strip_suffix(']')
                    .ok_or_else(|| format!("bad index in {step:?}"))?;
                (&step[..i], Some(idx))
            }
            None => (step, None),
        };
        let mut next = Vec::new();
        for v in current {
            let v = if field.is_empty() { Some(v) } else { v.get(field) };
            let Some(v) = v else { continue };
            match index {
                None => next.push(v),
                Some("*") => next.extend(v.as_array().into_iter().flatten()),
                Some(i) => {
                    let i: usize = i.parse().map_err(|_| format!("bad index {i:?}"))?;
                    next.extend(v.as_array().and_then(|a| a.get(i)));
                }
            }
        }
        current = next;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_indexes_and_wildcards() {
        let doc = json!({"spec": {"clusterIP": "10.96.0.17", "ports": [{"nodePort": 30080}]},
                         "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]});
        assert_eq!(render("{.spec.clusterIP}", &doc).unwrap(), "10.96.0.17");
        assert_eq!(render("port={.spec.ports[0].nodePort}!", &doc).unwrap(), "port=30080!");
        assert_eq!(render("{.items[*].metadata.name}", &doc).unwrap(), "a b");
        assert_eq!(render("{.missing}", &doc).unwrap(), "");
        assert!(render("{.spec", &doc).is_err());
        assert!(render("{spec}", &doc).is_err());
    }
}
