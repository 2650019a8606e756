//! The checks the API server would make before accepting an object, each error naming the field.

use crate::object::Object;
use crate::selector;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, HashSet};

type Checked = Result<(), String>;

fn field(path: &str, msg: impl std::fmt::Display) -> String {
    format!("field {path}: {msg}")
}

pub fn object(object: &Object) -> Checked {
    let label_name = matches!(object, Object::Namespace(_));
    meta(object.meta(), label_name)?;
    match object {
        Object::Pod(pod) => match &pod.spec {
            Some(spec) => pod_spec(spec, "spec"),
            None => Err(field("spec", "required")),
        },
        Object::Deployment(d) => deployment(d),
        _ => Ok(()),
    }
}

fn meta(meta: &ObjectMeta, label_name: bool) -> Checked {
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(field("metadata.name", "required"));
    }
    let valid = if label_name {
        dns_label(name)
    } else {
        dns_subdomain(name)
    };
    valid.map_err(|m| field("metadata.name", format!("{name:?} {m}")))?;
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        dns_label(ns).map_err(|m| field("metadata.namespace", format!("{ns:?} {m}")))?;
    }
    labels(meta.labels.as_ref(), "metadata.labels")
}

fn labels(labels: Option<&BTreeMap<String, String>>, path: &str) -> Checked {
    for (key, value) in labels.into_iter().flatten() {
        selector::label_key(key).map_err(|m| field(&format!("{path}.{key}"), m))?;
        selector::label_value(value).map_err(|m| field(&format!("{path}.{key}"), m))?;
    }
    Ok(())
}

fn deployment(d: &Deployment) -> Checked {
    let spec = d.spec.as_ref().ok_or_else(|| field("spec", "required"))?;
    if spec.replicas.is_some_and(|r| r < 0) {
        return Err(field("spec.replicas", "must be greater than or equal to 0"));
    }
    selector::validate(&spec.selector).map_err(|m| field("spec.selector", m))?;
    if spec.selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && spec.selector.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    {
        return Err(field("spec.selector", "must not be empty"));
    }
    let template_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    labels(template_labels, "spec.template.metadata.labels")?;
    if !selector::matches(&spec.selector, template_labels.unwrap_or(&BTreeMap::new())) {
        return Err(field("spec.template.metadata.labels", "does not match spec.selector"));
    }
    let pod = spec
        .template
        .spec
        .as_ref()
        .ok_or_else(|| field("spec.template.spec", "required"))?;
    pod_spec(pod, "spec.template.spec")
}

fn pod_spec(spec: &PodSpec, path: &str) -> Checked {
    if spec.containers.is_empty() {
        return Err(field(&format!("{path}.containers"), "must have at least one container"));
    }
    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let at = format!("{path}.containers[{i}]");
        container(c, &at)?;
        if !names.insert(c.name.as_str()) {
            return Err(field(
                &format!("{at}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
    }
    if let Some(policy) = spec.restart_policy.as_deref()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        let msg = format!("{policy:?} is not one of Always, OnFailure, Never");
        return Err(field(&format!("{path}.restartPolicy"), msg));
    }
    for (key, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value {
            dns_label(v).map_err(|m| field(&format!("{path}.{key}"), format!("{v:?} {m}")))?;
        }
    }
    Ok(())
}

fn container(c: &Container, at: &str) -> Checked {
    dns_label(&c.name).map_err(|m| field(&format!("{at}.name"), format!("{:?} {m}", c.name)))?;
    let mut port_names = HashSet::new();
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let pat = format!("{at}.ports[{j}]");
        if !(1..=65535).contains(&p.container_port) {
            return Err(field(&format!("{pat}.containerPort"), "must be between 1 and 65535"));
        }
        if let Some(hp) = p.host_port
            && !(1..=65535).contains(&hp)
        {
            return Err(field(&format!("{pat}.hostPort"), "must be between 1 and 65535"));
        }
        if let Some(proto) = p.protocol.as_deref()
            && !["TCP", "UDP", "SCTP"].contains(&proto)
        {
            return Err(field(
                &format!("{pat}.protocol"),
                format!("{proto:?} is not one of TCP, UDP, SCTP"),
            ));
        }
        if let Some(name) = p.name.as_deref() {
            port_name(name).map_err(|m| field(&format!("{pat}.name"), format!("{name:?} {m}")))?;
            if !port_names.insert(name) {
                return Err(field(&format!("{pat}.name"), format!("duplicate port name {name:?}")));
            }
        }
    }
    Ok(())
}

/// RFC 1123 label: what names of namespaces, containers and hostnames must be.
pub fn dns_label(s: &str) -> Checked {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("must consist of lower case alphanumeric characters or '-', and start and end with one".into())
    }
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (names of most objects).
pub fn dns_subdomain(s: &str) -> Checked {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    s.split('.').try_for_each(dns_label)
}

/// IANA service name: how container ports are named (at most 15 characters, at least one letter).
fn port_name(s: &str) -> Checked {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err("must be at most 15 lower case alphanumeric characters or '-', with at least one letter".into())
    }
}

#[cfg(test)]
mod tests {
    use crate::parse;

    fn pod(spec: &str) -> String {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec}");
        match parse(&text, "t") {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn pod_checks_name_the_field() {
        assert_eq!(pod("  containers: [{name: c}]\n"), "ok");
        assert!(pod("  containers: []\n").contains("spec.containers: must have at least one"));
        assert!(pod("  containers: [{name: C}]\n").contains("spec.containers[0].name"));
        assert!(pod("  containers: [{name: c}, {name: c}]\n").contains("duplicate container name"));
        let bad_port = pod("  containers: [{name: c, ports: [{containerPort: 70000}]}]\n");
        assert!(
            bad_port.contains("spec.containers[0].ports[0].containerPort"),
            "{bad_port}"
        );
        let bad_proto = pod("  containers: [{name: c, ports: [{containerPort: 80, protocol: ICMP}]}]\n");
        assert!(bad_proto.contains("ports[0].protocol"), "{bad_proto}");
        let restart = pod("  restartPolicy: Sometimes\n  containers: [{name: c}]\n");
        assert!(restart.contains("spec.restartPolicy"), "{restart}");
    }

    #[test]
    fn names_and_labels() {
        let e = parse(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c}]}",
            "t",
        );
        assert!(e.unwrap_err().to_string().contains("metadata.name"));
        let e = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n", "t");
        assert!(e.unwrap_err().to_string().contains("metadata.name"));
        let e = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {k: 'x y'}}\n",
            "t",
        );
        assert!(e.unwrap_err().to_string().contains("metadata.labels.k"));
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let d = |labels: &str| {
            let text = format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: [{{name: c}}]}}\n"
            );
            parse(&text, "t").map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(d("{app: a}").is_ok());
        assert!(d("{app: b}").unwrap_err().contains("does not match spec.selector"));
    }
}
