//! The part of kubectl's JSONPath that scripts and CRD printer columns use: literal text with `{.field.list[0].x}`,
//! `{.items[*].metadata.name}` (several values joined by spaces), `['dotted.key']` and filters such as
//! `[?(@.type=="Ready")]`.

use serde_json::Value;

/// Renders `template` against `doc`.
pub fn render(template: &str, doc: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = closing_brace(&rest[open..]).ok_or_else(|| format!("jsonpath {template:?}: unclosed '{{'"))?;
        let expr = &rest[open + 1..open + close];
        let values = select(doc, expr).map_err(|e| format!("jsonpath {template:?}: {e}"))?;
        let texts: Vec<String> = values.iter().map(|v| text(v)).collect();
        out.push_str(&texts.join(" "));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as kubectl prints it: strings bare, null as nothing, the rest as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The offset of the `}` that closes the `{` at the start of `s`, skipping braces inside quotes.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The values `expr` (`.a.b[0]`, `.items[*].x`, `.conditions[?(@.type=="Ready")].status`, or `.` for the whole
/// document) selects; a missing field selects nothing.
pub fn select<'a>(doc: &'a Value, expr: &str) -> Result<Vec<&'a Value>, String> {
    let expr = expr.trim();
    let path = expr
        .strip_prefix('$')
        .unwrap_or(expr)
        .strip_prefix('.')
        .ok_or_else(|| format!("{expr:?} must start with '.'"))?;
    let steps = parse(path)?;
    Ok(apply(doc, &steps))
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter(Filter),
}

/// `[?(@.path)]` (the field is present) or `[?(@.path == literal)]` / `!=`.
#[derive(Debug, PartialEq)]
struct Filter {
    path: Vec<Step>,
    test: Option<(bool, Value)>,
}

fn parse(mut s: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    while !s.is_empty() {
        if let Some(rest) = s.strip_prefix('[') {
            let close = bracket_end(rest).ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
            steps.push(bracket(rest[..close].trim())?);
            s = &rest[close + 1..];
        } else {
            let s2 = s.strip_prefix('.').unwrap_or(s);
            let end = s2.find(['.', '[']).unwrap_or(s2.len());
            if end > 0 {
                steps.push(Step::Field(s2[..end].to_string()));
            }
            s = &s2[end..];
        }
    }
    Ok(steps)
}

/// The offset of the `]` that closes a bracket whose contents start `s`, skipping nested brackets and quotes.
fn bracket_end(s: &str) -> Option<usize> {
    let (mut depth, mut quote) = (0, None);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    if let Some(cond) = inner.strip_prefix("?(").and_then(|c| c.strip_suffix(')')) {
        return filter(cond.trim()).map(Step::Filter);
    }
    inner
        .parse()
        .map(Step::Index)
        .map_err(|_| format!("unsupported subscript [{inner}]"))
}

fn unquote(s: &str) -> Option<&str> {
    ['\'', '"']
        .iter()
        .find_map(|q| s.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
}

fn filter(cond: &str) -> Result<Filter, String> {
    let path = cond
        .strip_prefix('@')
        .ok_or_else(|| format!("filter {cond:?} must test a field of @"))?;
    let Some((op_at, op)) = ["==", "!="]
        .iter()
        .filter_map(|op| path.find(op).map(|i| (i, *op)))
        .min()
    else {
        return Ok(Filter {
            path: parse(path.trim())?,
            test: None,
        });
    };
    let literal = path[op_at + op.len()..].trim();
    let value = match unquote(literal) {
        Some(s) => Value::String(s.to_string()),
        None => serde_json::from_str(literal).map_err(|_| format!("bad literal {literal:?} in filter"))?,
    };
    Ok(Filter {
        path: parse(path[..op_at].trim())?,
        test: Some((op == "==", value)),
    })
}

fn apply<'a>(doc: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![doc];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name.as_str())),
                Step::All => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Index(i) => {
                    let a = v.as_array().map_or(&[][..], Vec::as_slice);
                    let at = if *i < 0 {
                        a.len().checked_sub(i.unsigned_abs() as usize)
                    } else {
                        Some(*i as usize)
                    };
                    next.extend(at.and_then(|i| a.get(i)));
                }
                Step::Filter(f) => {
                    let items = v.as_array().map_or(&[][..], Vec::as_slice);
                    next.extend(items.iter().filter(|item| matches(item, f)));
                }
            }
        }
        current = next;
    }
    current
}

fn matches(item: &Value, f: &Filter) -> bool {
    let found = apply(item, &f.path);
    match &f.test {
        None => !found.is_empty(),
        Some((equal, want)) => found.iter().any(|v| (*v == want) == *equal),
    }
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
        assert_eq!(render("{.items[-1].metadata.name}", &doc).unwrap(), "b");
        assert_eq!(render("{.missing}", &doc).unwrap(), "");
        assert!(render("{.spec", &doc).is_err());
        assert!(render("{spec}", &doc).is_err());
    }

    #[test]
    fn quoted_keys_and_filters() {
        let doc = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        assert_eq!(
            render("{.metadata.labels['app.kubernetes.io/name']}", &doc).unwrap(),
            "web"
        );
        assert_eq!(
            render(r#"{.status.conditions[?(@.type=="Ready")].status}"#, &doc).unwrap(),
            "False"
        );
        assert_eq!(
            render("{.status.conditions[?(@.type != 'Ready')].type}", &doc).unwrap(),
            "Synced"
        );
        assert_eq!(render("{.status.conditions[?(@.reason)].type}", &doc).unwrap(), "");
        assert!(render("{.status.conditions[?(type)]}", &doc).is_err());
    }
}
