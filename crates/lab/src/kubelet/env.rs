//! A container's environment and command line as kubelet makes them: the `kubernetes` Service's variables,
//! `envFrom` (ConfigMaps and Secrets, with their prefix), then `env` (values with `$(VAR)` expanded from what
//! came before, ConfigMap and Secret keys, the downward API's fields), and `$(VAR)` expanded in `command` and
//! `args`. `resourceFieldRef` is not supported: the lab sets no resources, so such a variable is left out.

use crate::spec::{LabSpec, NodePlan};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use weft_model::k8s_openapi;
use weft_model::{Key, Snapshot};

/// What a container's variables are made from besides its spec.
pub struct Facts<'a> {
    pub pod: &'a Pod,
    pub node: &'a NodePlan,
    /// The pod's address (the node's for a host-network pod).
    pub ip: &'a str,
    /// The `kubernetes` Service's ClusterIP.
    pub api_ip: Ipv4Addr,
    /// PATH inside the container.
    pub path: String,
    pub snap: &'a Snapshot,
}

impl<'a> Facts<'a> {
    /// The facts of a pod on `node` of `lab`, from the store as `snap` has it.
    pub fn new(pod: &'a Pod, node: &'a NodePlan, ip: &'a str, lab: &LabSpec, snap: &'a Snapshot) -> Facts<'a> {
        Facts {
            pod,
            node,
            ip,
            api_ip: lab.kubernetes_service_ip(),
            path: crate::sandbox::pod_path(&lab.weft_bin),
            snap,
        }
    }
}

/// The environment, in the order kubelet builds it (a later variable of the same name replaces an earlier
/// one); an error names what a reference that is not optional lacks, as kubelet's CreateContainerConfigError.
pub fn env(c: &Container, facts: &Facts) -> Result<Vec<(String, String)>, String> {
    let pod = facts.pod;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api_ip = facts.api_ip;
    let mut out = Env::default();
    for (k, v) in [
        ("PATH", facts.path.clone()),
        ("HOME", "/root".into()),
        ("HOSTNAME", name.clone()),
        ("WEFT_POD_NAME", name.clone()),
        ("WEFT_POD_NAMESPACE", ns.clone()),
        ("WEFT_NODE_NAME", facts.node.name.clone()),
        ("WEFT_POD_IP", facts.ip.to_string()),
        ("KUBERNETES_SERVICE_HOST", api_ip.to_string()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT", format!("tcp://{api_ip}:443")),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{api_ip}:443")),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_PORT", "443".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR", api_ip.to_string()),
    ] {
        out.set(k, v);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            config_map(facts.snap, &ns, &r.name, r.optional)?
        } else if let Some(r) = &from.secret_ref {
            secret(facts.snap, &ns, &r.name, r.optional)?
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            // kubelet skips keys that are no valid variable name.
            let key = format!("{prefix}{k}");
            if valid_name(&key) {
                out.set(&key, v);
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &|n| out.get(n))),
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    Some(field(facts, &f.field_path).ok_or_else(|| format!("unsupported fieldPath {}", f.field_path))?)
                } else if let Some(r) = &from.config_map_key_ref {
                    let data = config_map(facts.snap, &ns, &r.name, r.optional)?;
                    key_of(data, &r.key, "configmap", &r.name, r.optional)?
                } else if let Some(r) = &from.secret_key_ref {
                    let data = secret(facts.snap, &ns, &r.name, r.optional)?;
                    key_of(data, &r.key, "secret", &r.name, r.optional)?
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            out.set(&var.name, v);
        }
    }
    Ok(out.0)
}

/// The command line with `$(VAR)` expanded from the container's environment.
pub fn expand_argv(argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let lookup = |n: &str| env.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    argv.iter().map(|a| expand(a, &lookup)).collect()
}

/// Kubernetes' expansion (`third_party/forked/golang/expansion`): `$(VAR)` becomes VAR's value when it is
/// defined and stays as written when not; `$$` is one `$`; any other `$` stays.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A downward API field of the pod (`fieldRef.fieldPath`), for variables and downwardAPI volumes.
pub fn field(facts: &Facts, path: &str) -> Option<String> {
    let pod = facts.pod;
    let meta = &pod.metadata;
    let map_entry = |map: Option<&BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let all = |map: Option<&BTreeMap<String, String>>| -> String {
        map.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect()
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => all(meta.labels.as_ref()),
        "metadata.annotations" => all(meta.annotations.as_ref()),
        "spec.nodeName" => facts.node.name.clone(),
        "spec.serviceAccountName" => super::service_account_name(pod),
        "status.podIP" | "status.podIPs" => facts.ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.node.ip.to_string(),
        _ => {
            return map_entry(meta.labels.as_ref(), "metadata.labels['")
                .or_else(|| map_entry(meta.annotations.as_ref(), "metadata.annotations['"));
        }
    })
}

/// A ConfigMap's keys (binaryData too, as text); None when it is missing and optional.
pub fn config_map(
    snap: &Snapshot,
    ns: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let Some(object) = snap.get(&Key::new("ConfigMap", Some(ns), name)) else {
        return missing("configmap", name, optional);
    };
    let cm: ConfigMap = serde_json::from_value(object.to_value()).map_err(|e| e.to_string())?;
    let mut data = cm.data.unwrap_or_default();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    Ok(Some(data))
}

/// A Secret's keys (decoded; `stringData` too), as text; None when it is missing and optional.
pub fn secret(
    snap: &Snapshot,
    ns: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let Some(object) = snap.get(&Key::new("Secret", Some(ns), name)) else {
        return missing("secret", name, optional);
    };
    let secret: Secret = serde_json::from_value(object.to_value()).map_err(|e| e.to_string())?;
    let mut data: BTreeMap<String, String> = (secret.data.unwrap_or_default().into_iter())
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    data.extend(secret.string_data.unwrap_or_default());
    Ok(Some(data))
}

fn missing<T>(kind: &str, name: &str, optional: Option<bool>) -> Result<Option<T>, String> {
    match optional {
        Some(true) => Ok(None),
        _ => Err(format!("{kind} \"{name}\" not found")),
    }
}

fn key_of(
    data: Option<BTreeMap<String, String>>,
    key: &str,
    kind: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    match data.and_then(|mut d| d.remove(key)) {
        Some(v) => Ok(Some(v)),
        None if optional == Some(true) => Ok(None),
        None => Err(format!("couldn't find key {key} in {kind} \"{name}\"")),
    }
}

/// A name a variable may have (C identifiers, and what kubelet also allows: '-' and '.').
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Variables in order of definition, a redefinition replacing the value in place.
#[derive(Default)]
struct Env(Vec<(String, String)>);

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(n: &str) -> Option<String> {
        (n == "A").then(|| "x".to_string())
    }

    #[test]
    fn expansion_follows_kubernetes() {
        assert_eq!(expand("$(A)-$(A)", &lookup), "x-x");
        assert_eq!(expand("$(B) stays", &lookup), "$(B) stays");
        assert_eq!(expand("$$(A) escaped", &lookup), "$(A) escaped");
        assert_eq!(expand("$A $ $(A", &lookup), "$A $ $(A");
        assert_eq!(expand("", &lookup), "");
    }

    fn snapshot(objects: serde_json::Value) -> Snapshot {
        let objects = objects
            .as_array()
            .unwrap()
            .iter()
            .map(|v| weft_model::manifest::from_value(v.clone()).unwrap());
        Snapshot::new(1, objects)
    }

    #[test]
    fn variables_come_from_config_maps_secrets_and_the_pod() {
        let snap = snapshot(json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"},
             "data": {"mode": "vxlan", "mtu": "1450", "bad key": "x"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
             "data": {"token": "c2VjcmV0"}},
        ]));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}},
            "spec": {"serviceAccountName": "sa", "containers": []},
        }))
        .unwrap();
        let c: Container = serde_json::from_value(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "WHERE", "value": "$(NODE)/$(CFG_mtu)/$(UNSET)"},
            ],
        }))
        .unwrap();
        let node = NodePlan {
            name: "node-1".into(),
            ip: "172.18.0.11".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            subnet: 0,
        };
        let facts = Facts {
            pod: &pod,
            node: &node,
            ip: "10.244.1.5",
            api_ip: Ipv4Addr::new(10, 96, 0, 1),
            path: "/bin".into(),
            snap: &snap,
        };
        let env = env(&c, &facts).unwrap();
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("NODE"), Some("node-1"));
        assert_eq!(get("IP"), Some("10.244.1.5"));
        assert_eq!(get("SA"), Some("sa"));
        assert_eq!(get("APP"), Some("a"));
        assert_eq!(get("MODE"), Some("vxlan"));
        assert_eq!(get("CFG_mode"), Some("vxlan"));
        assert_eq!(get("CFG_bad key"), None);
        assert_eq!(get("TOKEN"), Some("secret"));
        assert_eq!(get("GONE"), None);
        assert_eq!(get("WHERE"), Some("node-1/1450/$(UNSET)"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        let argv = expand_argv(&["echo".into(), "$(MODE)".into(), "$$(MODE)".into()], &env);
        assert_eq!(argv, ["echo", "vxlan", "$(MODE)"]);
        let c: Container = serde_json::from_value(json!({
            "name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "missing"}}}],
        }))
        .unwrap();
        assert_eq!(env_err(&c, &facts), "couldn't find key missing in secret \"s\"");
    }

    fn env_err(c: &Container, facts: &Facts) -> String {
        env(c, facts).unwrap_err()
    }
}
