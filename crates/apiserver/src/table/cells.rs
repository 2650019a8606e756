//! Reading fields of API objects (as JSON) for cells, and the formats kubectl's printers share.

use super::age;
use serde_json::Value;
use std::time::SystemTime;

/// The string at `pointer`, or "" (an unset string field in Go).
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The integer at `pointer`, or 0.
pub fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or_default()
}

/// The array at `pointer`, or none.
pub fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The strings of the array at `pointer`.
pub fn strings<'a>(v: &'a Value, pointer: &str) -> Vec<&'a str> {
    items(v, pointer).iter().filter_map(Value::as_str).collect()
}

/// `s`, or `fallback` when it is empty.
pub fn or(s: &str, fallback: &str) -> Value {
    Value::from(if s.is_empty() { fallback } else { s })
}

pub fn name(v: &Value) -> Value {
    Value::from(str_at(v, "/metadata/name"))
}

/// The AGE cell.
pub fn age(v: &Value, now: SystemTime) -> Value {
    since(v, "/metadata/creationTimestamp", now)
}

/// How long ago the timestamp at `pointer` was.
pub fn since(v: &Value, pointer: &str, now: SystemTime) -> Value {
    age::since(v.pointer(pointer).and_then(Value::as_str), now).into()
}

/// At most three items joined by commas, then ` + N more...`; `<unset>` for none (kubectl's listWithMoreString).
pub fn first_three(items: &[String]) -> String {
    match items.len() {
        0 => "<unset>".into(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

/// A label map as `k=v,k2=v2` in key order, `<none>` when empty (labels.FormatLabels).
pub fn labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// A LabelSelector as a selector string: `app=web,tier in (a,b),!legacy`, requirements in key order; "" for
/// none or empty; `None` for an operator the API does not know (LabelSelectorAsSelector(...).String()).
pub fn selector(sel: Option<&Value>) -> Option<String> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Some(String::new());
    };
    let mut requirements: Vec<(String, String)> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())))
        .collect();
    for expr in items(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let mut values = strings(expr, "/values");
        values.sort_unstable();
        let text = match str_at(expr, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_string(), text));
    }
    requirements.sort();
    Some(
        requirements
            .into_iter()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A LabelSelector for display: `<none>` when it selects everything or nothing, `<error>` when unreadable
/// (metav1.FormatLabelSelector).
pub fn format_selector(sel: Option<&Value>) -> String {
    match selector(sel) {
        None => "<error>".into(),
        Some(s) if s.is_empty() => "<none>".into(),
        Some(s) => s,
    }
}

/// The Containers and Images cells for a pod spec: names and images joined by commas.
pub fn containers(pod_spec: Option<&Value>) -> [Value; 2] {
    let containers = pod_spec.map_or(&[][..], |s| items(s, "/containers"));
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| str_at(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    [join("/name").into(), join("/image").into()]
}

/// The unique load balancer addresses (IP, else hostname) in order, joined by commas.
pub fn load_balancer(status: Option<&Value>) -> String {
    let mut addresses: Vec<&str> = status
        .map_or(&[][..], |s| items(s, "/ingress"))
        .iter()
        .map(|i| match str_at(i, "/ip") {
            "" => str_at(i, "/hostname"),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_print_in_key_order() {
        let sel = json!({"matchLabels": {"tier": "web", "app": "shop"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "legacy", "operator": "DoesNotExist"},
                                 {"key": "zone", "operator": "NotIn", "values": ["b"]},
                                 {"key": "canary", "operator": "Exists"}]});
        assert_eq!(
            selector(Some(&sel)).unwrap(),
            "app=shop,canary,env in (dev,prod),!legacy,tier=web,zone notin (b)"
        );
        assert_eq!(format_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(format_selector(Some(&bad)), "<error>");
        assert_eq!(labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(labels(None), "<none>");
    }

    #[test]
    fn lists_show_three_then_count_the_rest() {
        let items: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(first_three(&items), "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...");
        assert_eq!(first_three(&items[..3]), "10.0.0.1,10.0.0.2,10.0.0.3");
        assert_eq!(first_three(&[]), "<unset>");
    }
}
