//! The core group's printers besides Pod: Service, Endpoints, Node, Namespace, Event, ConfigMap, Secret and
//! ServiceAccount.

use super::cells::{age, first_three, int_at, items, labels, load_balancer, name, or, str_at, strings};
use super::{AGE, Col, NAME, col, wide};
use serde_json::Value;
use std::time::SystemTime;

pub const SERVICE: &[Col] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service."),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

/// kubectl's Service row: the first cluster IP, the external addresses for the type, `port[:nodePort]/proto`.
pub fn service(svc: &Value, now: SystemTime) -> Vec<Value> {
    // The API defaults the type; the lab's store may hold Services written without it.
    let type_ = match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = strings(svc, "/spec/clusterIPs")
        .first()
        .copied()
        .unwrap_or_else(|| str_at(svc, "/spec/clusterIP"));
    let external_ips = strings(svc, "/spec/externalIPs");
    let external = match type_ {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb = load_balancer(svc.pointer("/status/loadBalancer"));
            let all: Vec<&str> = lb.split(',').filter(|a| !a.is_empty()).chain(external_ips).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = items(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = int_at(p, "/port");
            let proto = match str_at(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            match int_at(p, "/nodePort") {
                0 => format!("{port}/{proto}"),
                node_port => format!("{port}:{node_port}/{proto}"),
            }
        })
        .collect();
    vec![
        name(svc),
        type_.into(),
        or(cluster_ip, "<none>"),
        external.into(),
        or(&ports.join(","), "<none>"),
        age(svc, now),
        labels(svc.pointer("/spec/selector")).into(),
    ]
}

pub const ENDPOINTS: &[Col] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// kubectl's ENDPOINTS cell: `ip:port` per ready address and port (the address alone in a subset without ports),
/// three of them and how many more.
pub fn endpoints(ep: &Value, now: SystemTime) -> Vec<Value> {
    let subsets = items(ep, "/subsets");
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut all = Vec::new();
        for subset in subsets {
            let addresses: Vec<&str> = items(subset, "/addresses").iter().map(|a| str_at(a, "/ip")).collect();
            let ports = items(subset, "/ports");
            if ports.is_empty() {
                all.extend(addresses.iter().map(|a| a.to_string()));
            }
            for port in ports {
                let port = int_at(port, "/port");
                all.extend(addresses.iter().map(|a| host_port(a, port)));
            }
        }
        // Unlike the other lists, an Endpoints whose subsets hold no address prints an empty cell.
        if all.is_empty() {
            String::new()
        } else {
            first_three(&all)
        }
    };
    vec![name(ep), cell.into(), age(ep, now)]
}

/// `ip:port`, with brackets around an IPv6 address (net.JoinHostPort).
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub const NODE: &[Col] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

pub fn node(node: &Value, now: SystemTime) -> Vec<Value> {
    let ready = items(node, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None => (k == "kubernetes.io/role")
                .then(|| v.as_str().unwrap_or_default())
                .filter(|r| !r.is_empty()),
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let address = |type_: &str| {
        items(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == type_)
            .map_or("<none>", |a| str_at(a, "/address"))
    };
    let info = |field: &str| or(str_at(node, &format!("/status/nodeInfo/{field}")), "<unknown>");
    vec![
        name(node),
        status.into(),
        or(&roles.join(","), "<none>"),
        age(node, now),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

pub const NAMESPACE: &[Col] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

pub fn namespace(ns: &Value, now: SystemTime) -> Vec<Value> {
    // The API sets the phase on create; a namespace in the lab's store may not carry it yet.
    vec![name(ns), or(str_at(ns, "/status/phase"), "Active"), age(ns, now)]
}

pub const EVENT: &[Col] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "string", "The number of times this event has occurred."),
    Col { priority: 1, ..NAME },
];

/// An Event of core/v1 or events.k8s.io/v1 (whose fields carry other names), as kubectl prints it.
pub fn event(ev: &Value, now: SystemTime) -> Vec<Value> {
    let events_api = str_at(ev, "/apiVersion").starts_with("events.k8s.io/");
    let field = |core: &str, events: &str| if events_api { events } else { core }.to_string();
    let time = |pointer: &str| ev.pointer(pointer).and_then(Value::as_str).filter(|t| !t.is_empty());
    let first = time(&field("/firstTimestamp", "/deprecatedFirstTimestamp")).or_else(|| time("/eventTime"));
    let first_seen = super::age::since(first, now);
    let mut last_seen = match time(&field("/lastTimestamp", "/deprecatedLastTimestamp")) {
        Some(t) => super::age::since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(ev, &field("/count", "/deprecatedCount"));
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last_seen = super::age::since(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        // Singleton events don't carry a count in the newer API.
        count = 1;
    }
    let regarding = ev
        .get(if events_api { "regarding" } else { "involvedObject" })
        .unwrap_or(&Value::Null);
    let kind = str_at(regarding, "/kind").to_lowercase();
    let target = match str_at(regarding, "/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = match str_at(ev, &field("/source/component", "/deprecatedSource/component")) {
        "" => str_at(ev, "/reportingController"),
        c => c,
    };
    let host = match str_at(ev, &field("/source/host", "/deprecatedSource/host")) {
        "" => str_at(ev, "/reportingInstance"),
        h => h,
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last_seen.into(),
        str_at(ev, "/type").into(),
        str_at(ev, "/reason").into(),
        target.into(),
        str_at(regarding, "/fieldPath").into(),
        source.into(),
        str_at(ev, &field("/message", "/note")).trim().into(),
        first_seen.into(),
        count.into(),
        name(ev),
    ]
}

/// How many entries the map at `pointer` has.
fn entries(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer).and_then(Value::as_object).map_or(0, |m| m.len())
}

pub const CONFIG_MAP: &[Col] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

pub fn config_map(cm: &Value, now: SystemTime) -> Vec<Value> {
    let data = entries(cm, "/data") + entries(cm, "/binaryData");
    vec![name(cm), data.into(), age(cm, now)]
}

pub const SECRET: &[Col] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

pub fn secret(s: &Value, now: SystemTime) -> Vec<Value> {
    // The API folds stringData into data on write; count the keys of both for a secret stored as written.
    let mut keys: Vec<&String> = ["/data", "/stringData"]
        .iter()
        .filter_map(|p| s.pointer(p).and_then(Value::as_object))
        .flat_map(|m| m.keys())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let type_ = or(str_at(s, "/type"), "Opaque");
    vec![name(s), type_, keys.len().into(), age(s, now)]
}

pub const SERVICE_ACCOUNT: &[Col] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

pub fn service_account(sa: &Value, now: SystemTime) -> Vec<Value> {
    vec![name(sa), items(sa, "/secrets").len().into(), age(sa, now)]
}
