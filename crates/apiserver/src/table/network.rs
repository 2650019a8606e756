//! discovery.k8s.io and networking.k8s.io: EndpointSlice, Ingress, IngressClass and NetworkPolicy.

use super::cells::{age, first_three, format_selector, items, load_balancer, name, or, str_at, strings};
use super::{AGE, Col, NAME, col};
use serde_json::Value;
use std::time::SystemTime;

pub const ENDPOINT_SLICE: &[Col] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

/// Ports (number, else name, else `*`) and endpoint addresses, three of each and how many more.
pub fn endpoint_slice(slice: &Value, now: SystemTime) -> Vec<Value> {
    let ports: Vec<String> = items(slice, "/ports")
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".into(),
            }
        })
        .collect();
    let addresses: Vec<String> = items(slice, "/endpoints")
        .iter()
        .flat_map(|e| strings(e, "/addresses"))
        .map(str::to_string)
        .collect();
    vec![
        name(slice),
        str_at(slice, "/addressType").into(),
        first_three(&ports).into(),
        first_three(&addresses).into(),
        age(slice, now),
    ]
}

pub const INGRESS: &[Col] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

pub fn ingress(ing: &Value, now: SystemTime) -> Vec<Value> {
    let rules = items(ing, "/spec/rules");
    // kubectl's formatHosts: the first three hosts set; "more" once a rule follows them, counted over all rules.
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= hosts.len() == 3;
        let host = str_at(rule, "/host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = match hosts.is_empty() {
        true => "*".to_string(),
        false if more => format!("{} + {} more...", hosts.join(","), rules.len() - 3),
        false => hosts.join(","),
    };
    let ports = if items(ing, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing),
        or(str_at(ing, "/spec/ingressClassName"), "<none>"),
        hosts.into(),
        load_balancer(ing.pointer("/status/loadBalancer")).into(),
        ports.into(),
        age(ing, now),
    ]
}

pub const INGRESS_CLASS: &[Col] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

pub fn ingress_class(class: &Value, now: SystemTime) -> Vec<Value> {
    let parameters = match class.pointer("/spec/parameters").filter(|p| p.is_object()) {
        None => "<none>".to_string(),
        Some(p) => {
            let group = match str_at(p, "/apiGroup") {
                "" => String::new(),
                g => format!(".{g}"),
            };
            format!("{}{group}/{}", str_at(p, "/kind"), str_at(p, "/name"))
        }
    };
    vec![
        name(class),
        str_at(class, "/spec/controller").into(),
        parameters.into(),
        age(class, now),
    ]
}

pub const NETWORK_POLICY: &[Col] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

pub fn network_policy(np: &Value, now: SystemTime) -> Vec<Value> {
    vec![
        name(np),
        format_selector(np.pointer("/spec/podSelector")).into(),
        age(np, now),
    ]
}
