//! The checks the API server would make before accepting an object, each error naming the field.

use crate::object::Object;
use crate::selector;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashSet};

mod ingress;

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
        Object::Service(svc) => service(svc),
        Object::EndpointSlice(slice) => endpoint_slice(slice),
        Object::NetworkPolicy(policy) => network_policy(policy),
        Object::Other(o) if o.kind == "Ingress" => ingress::ingress(o),
        Object::Other(o) if o.kind == "IngressClass" => ingress::ingress_class(o),
        _ => Ok(()),
    }
}

/// The checks only an update has: fields that may not change once stored (each error a `field ...` line).
pub fn update(old: &Object, new: &Object) -> Checked {
    match (old, new) {
        (Object::Other(old), Object::Other(new)) if new.kind == "IngressClass" && old.kind == new.kind => {
            ingress::ingress_class_update(old, new)
        }
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

fn one_of(path: &str, value: Option<&str>, allowed: &[&str]) -> Checked {
    match value {
        Some(v) if !allowed.contains(&v) => Err(field(path, format!("{v:?} is not one of {}", allowed.join(", ")))),
        _ => Ok(()),
    }
}

fn service(svc: &Service) -> Checked {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    one_of(
        "spec.type",
        Some(kind),
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
    )?;
    if kind == "ExternalName" {
        let name = spec.external_name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(field("spec.externalName", "required for type ExternalName"));
        }
        return dns_subdomain(name.trim_end_matches('.')).map_err(|m| field("spec.externalName", m));
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None")
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(field(
            "spec.clusterIP",
            format!("{ip:?} is not an IP address, \"None\" or empty"),
        ));
    }
    if headless && kind != "ClusterIP" {
        return Err(field("spec.clusterIP", format!("may not be \"None\" for type {kind}")));
    }
    let ports = spec.ports.clone().unwrap_or_default();
    if ports.is_empty() && !headless {
        return Err(field("spec.ports", "required"));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        if !(1..=65535).contains(&p.port) {
            return Err(field(&format!("{at}.port"), "must be between 1 and 65535"));
        }
        one_of(
            &format!("{at}.protocol"),
            p.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
        )?;
        match p.name.as_deref() {
            None | Some("") if ports.len() > 1 => {
                return Err(field(
                    &format!("{at}.name"),
                    "required when the Service has more than one port",
                ));
            }
            Some(name) if !name.is_empty() => {
                dns_label(name).map_err(|m| field(&format!("{at}.name"), format!("{name:?} {m}")))?;
                if !names.insert(name) {
                    return Err(field(&format!("{at}.name"), format!("duplicate port name {name:?}")));
                }
            }
            _ => {}
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                return Err(field(&format!("{at}.targetPort"), "must be between 1 and 65535"));
            }
            Some(IntOrString::String(name)) => {
                port_name(name).map_err(|m| field(&format!("{at}.targetPort"), format!("{name:?} {m}")))?
            }
            _ => {}
        }
        if let Some(np) = p.node_port {
            if kind == "ClusterIP" {
                return Err(field(&format!("{at}.nodePort"), "may not be set for type ClusterIP"));
            }
            if !(30000..=32767).contains(&np) {
                return Err(field(&format!("{at}.nodePort"), "must be in the range 30000-32767"));
            }
        }
    }
    one_of(
        "spec.sessionAffinity",
        spec.session_affinity.as_deref(),
        &["None", "ClientIP"],
    )?;
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if timeout.is_some_and(|t| !(1..=86400).contains(&t)) {
        return Err(field(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "must be between 1 and 86400",
        ));
    }
    one_of(
        "spec.externalTrafficPolicy",
        spec.external_traffic_policy.as_deref(),
        &["Cluster", "Local"],
    )?;
    if spec.external_traffic_policy.is_some() && kind == "ClusterIP" {
        return Err(field(
            "spec.externalTrafficPolicy",
            "may only be set for NodePort and LoadBalancer Services",
        ));
    }
    one_of(
        "spec.internalTrafficPolicy",
        spec.internal_traffic_policy.as_deref(),
        &["Cluster", "Local"],
    )?;
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(field(
                &format!("spec.externalIPs[{i}]"),
                format!("{ip:?} is not an IP address"),
            ));
        }
    }
    for (i, range) in spec.load_balancer_source_ranges.iter().flatten().enumerate() {
        if range.parse::<ipnet::IpNet>().is_err() {
            return Err(field(
                &format!("spec.loadBalancerSourceRanges[{i}]"),
                format!("{range:?} is not a CIDR"),
            ));
        }
    }
    labels(spec.selector.as_ref(), "spec.selector")
}

fn endpoint_slice(slice: &EndpointSlice) -> Checked {
    one_of(
        "addressType",
        Some(slice.address_type.as_str()),
        &["IPv4", "IPv6", "FQDN"],
    )?;
    for (i, ep) in slice.endpoints.iter().enumerate() {
        if ep.addresses.is_empty() {
            return Err(field(
                &format!("endpoints[{i}].addresses"),
                "must have at least one address",
            ));
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let ok = match slice.address_type.as_str() {
                "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => dns_subdomain(a).is_ok(),
            };
            if !ok {
                let msg = format!("{a:?} is not a valid {} address", slice.address_type);
                return Err(field(&format!("endpoints[{i}].addresses[{j}]"), msg));
            }
        }
    }
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        if p.port.is_some_and(|n| !(1..=65535).contains(&n)) {
            return Err(field(&format!("ports[{i}].port"), "must be between 1 and 65535"));
        }
        one_of(
            &format!("ports[{i}].protocol"),
            p.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
        )?;
    }
    Ok(())
}

fn network_policy(policy: &k8s_openapi::api::networking::v1::NetworkPolicy) -> Checked {
    use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
    let spec = policy.spec.clone().unwrap_or_default();
    if let Some(sel) = &spec.pod_selector {
        selector::validate(sel).map_err(|m| field("spec.podSelector", m))?;
    }
    for (i, t) in spec.policy_types.iter().flatten().enumerate() {
        one_of(&format!("spec.policyTypes[{i}]"), Some(t), &["Ingress", "Egress"])?;
    }
    let peers_ok = |peers: &[NetworkPolicyPeer], at: &str| -> Checked {
        for (j, p) in peers.iter().enumerate() {
            let at = format!("{at}[{j}]");
            let selectors = p.pod_selector.is_some() || p.namespace_selector.is_some();
            match &p.ip_block {
                Some(_) if selectors => {
                    return Err(field(
                        &at,
                        "ipBlock may not be combined with podSelector or namespaceSelector",
                    ));
                }
                Some(block) => {
                    let cidr: ipnet::IpNet = block
                        .cidr
                        .parse()
                        .map_err(|_| field(&format!("{at}.ipBlock.cidr"), format!("{:?} is not a CIDR", block.cidr)))?;
                    for (k, e) in block.except.iter().flatten().enumerate() {
                        let inside = e.parse::<ipnet::IpNet>().is_ok_and(|e| cidr.contains(&e));
                        if !inside {
                            return Err(field(
                                &format!("{at}.ipBlock.except[{k}]"),
                                format!("{e:?} is not a CIDR inside {cidr}"),
                            ));
                        }
                    }
                }
                None if !selectors => return Err(field(&at, "must set podSelector, namespaceSelector or ipBlock")),
                None => {}
            }
            for (name, sel) in [
                ("podSelector", &p.pod_selector),
                ("namespaceSelector", &p.namespace_selector),
            ] {
                if let Some(sel) = sel {
                    selector::validate(sel).map_err(|m| field(&format!("{at}.{name}"), m))?;
                }
            }
        }
        Ok(())
    };
    let ports_ok = |ports: &[NetworkPolicyPort], at: &str| -> Checked {
        for (j, p) in ports.iter().enumerate() {
            let at = format!("{at}[{j}]");
            one_of(
                &format!("{at}.protocol"),
                p.protocol.as_deref(),
                &["TCP", "UDP", "SCTP"],
            )?;
            match (&p.port, p.end_port) {
                (Some(IntOrString::Int(n)), end) => {
                    if !(1..=65535).contains(n) {
                        return Err(field(&format!("{at}.port"), "must be between 1 and 65535"));
                    }
                    if end.is_some_and(|e| e < *n || e > 65535) {
                        return Err(field(
                            &format!("{at}.endPort"),
                            format!("must be between port ({n}) and 65535"),
                        ));
                    }
                }
                (Some(IntOrString::String(name)), end) => {
                    port_name(name).map_err(|m| field(&format!("{at}.port"), format!("{name:?} {m}")))?;
                    if end.is_some() {
                        return Err(field(&format!("{at}.endPort"), "may only be set with a numeric port"));
                    }
                }
                (None, Some(_)) => return Err(field(&format!("{at}.endPort"), "may only be set with a numeric port")),
                (None, None) => {}
            }
        }
        Ok(())
    };
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        peers_ok(
            rule.from.as_deref().unwrap_or_default(),
            &format!("spec.ingress[{i}].from"),
        )?;
        ports_ok(
            rule.ports.as_deref().unwrap_or_default(),
            &format!("spec.ingress[{i}].ports"),
        )?;
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        peers_ok(rule.to.as_deref().unwrap_or_default(), &format!("spec.egress[{i}].to"))?;
        ports_ok(
            rule.ports.as_deref().unwrap_or_default(),
            &format!("spec.egress[{i}].ports"),
        )?;
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

    fn svc(spec: &str) -> String {
        let text = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n{spec}");
        match parse(&text, "t") {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn service_checks_name_the_field() {
        assert_eq!(svc("  ports: [{port: 80, targetPort: http}]\n"), "ok");
        assert_eq!(svc("  clusterIP: None\n"), "ok");
        assert!(svc("  type: Magic\n  ports: [{port: 80}]\n").contains("spec.type"));
        assert!(svc("  ports: [{port: 80}, {port: 81}]\n").contains("spec.ports[0].name"));
        assert!(svc("  ports: [{port: 0}]\n").contains("spec.ports[0].port"));
        assert!(svc("  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n").contains("nodePort"));
        assert!(svc("  ports: [{port: 80, nodePort: 30080}]\n").contains("type ClusterIP"));
        assert!(svc("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n").contains("spec.clusterIP"));
        assert!(svc("  type: ExternalName\n").contains("spec.externalName"));
        assert!(svc("  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n").contains("externalTrafficPolicy"));
        let bad_range = svc("  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/33]\n  ports: [{port: 80}]\n");
        assert!(bad_range.contains("loadBalancerSourceRanges[0]"), "{bad_range}");
        let slice = parse(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.300]}]\n",
            "t",
        );
        assert!(slice.unwrap_err().to_string().contains("endpoints[0].addresses[0]"));
    }

    fn policy(spec: &str) -> String {
        let text =
            format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec:\n{spec}");
        match parse(&text, "t") {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn network_policy_checks_name_the_field() {
        assert_eq!(
            policy("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]\n"),
            "ok"
        );
        assert!(policy("  policyTypes: [Inbound]\n").contains("spec.policyTypes[0]"));
        assert!(policy("  ingress: [{from: [{}]}]\n").contains("spec.ingress[0].from[0]"));
        assert!(
            policy("  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]\n")
                .contains("except[0]")
        );
        assert!(
            policy("  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]\n")
                .contains("may not be combined")
        );
        assert!(policy("  egress: [{ports: [{port: 90, endPort: 80}]}]\n").contains("spec.egress[0].ports[0].endPort"));
        assert!(policy("  egress: [{ports: [{port: http, endPort: 80}]}]\n").contains("numeric port"));
        assert!(policy("  egress: [{ports: [{port: 80, protocol: ICMP}]}]\n").contains("protocol"));
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
