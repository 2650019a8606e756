//! Label selectors (`matchLabels` and `matchExpressions`) and label syntax.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Whether `labels` satisfy `selector`. An empty selector matches everything; a requirement with an unknown
/// operator matches nothing (validation refuses such selectors before they are stored).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|req| {
            let value = labels.get(&req.key);
            let values = req.values.as_deref().unwrap_or_default();
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `labels` satisfy every `key=value` of a map selector (a Service's or ReplicaSet's `selector`).
pub fn matches_map(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn validate(selector: &LabelSelector) -> Result<(), String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        label_key(key).map_err(|m| format!("matchLabels.{key}: {m}"))?;
        label_value(value).map_err(|m| format!("matchLabels.{key}: {m}"))?;
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        label_key(&req.key).map_err(|m| format!("matchExpressions[{i}].key: {m}"))?;
        let n = req.values.as_ref().map_or(0, Vec::len);
        let ok = match req.operator.as_str() {
            "In" | "NotIn" => n > 0,
            "Exists" | "DoesNotExist" => n == 0,
            other => {
                return Err(format!(
                    "matchExpressions[{i}].operator: {other:?} is not a valid operator"
                ));
            }
        };
        if !ok {
            return Err(format!(
                "matchExpressions[{i}].values: wrong number of values for {}",
                req.operator
            ));
        }
    }
    Ok(())
}

/// `[prefix/]name`: the prefix a DNS subdomain, the name at most 63 alphanumerics, '-', '_' or '.'.
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        crate::validate::dns_subdomain(p).map_err(|m| format!("key prefix {p:?} {m}"))?;
    }
    if name.is_empty() || !label_value_chars(name) {
        return Err(format!(
            "key {key:?} must be 1 to 63 alphanumerics, '-', '_' or '.', starting and ending with one"
        ));
    }
    Ok(())
}

/// Empty, or at most 63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || label_value_chars(value) {
        Ok(())
    } else {
        Err(format!(
            "value {value:?} must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with one"
        ))
    }
}

fn label_value_chars(s: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && edge(s.bytes().next())
        && edge(s.bytes().last())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![req("tier", "In", &["a", "b"]), req("canary", "DoesNotExist", &[])]),
        };
        assert!(matches(&sel, &labels(&[("app", "web"), ("tier", "a")])));
        assert!(!matches(&sel, &labels(&[("app", "web"), ("tier", "c")])));
        assert!(!matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("canary", "")])
        ));
        assert!(!matches(&sel, &labels(&[("tier", "a")])));
        let not_in = LabelSelector {
            match_expressions: Some(vec![req("env", "NotIn", &["prod"]), req("team", "Exists", &[])]),
            ..Default::default()
        };
        assert!(matches(&not_in, &labels(&[("team", "x")])));
        assert!(!matches(&not_in, &labels(&[("team", "x"), ("env", "prod")])));
        assert!(matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn validation_names_the_problem() {
        let bad_op = LabelSelector {
            match_expressions: Some(vec![req("a", "Equals", &["x"])]),
            ..Default::default()
        };
        assert!(validate(&bad_op).unwrap_err().contains("operator"));
        let no_values = LabelSelector {
            match_expressions: Some(vec![req("a", "In", &[])]),
            ..Default::default()
        };
        assert!(validate(&no_values).unwrap_err().contains("values"));
        assert!(label_key("example.com/app").is_ok());
        assert!(label_key("-app").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("a b").is_err());
    }
}
