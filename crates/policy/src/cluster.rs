//! The facts policies are judged on, indexed once per snapshot: pods (namespace, labels, address, node, ports),
//! namespace labels, and the policies themselves.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use weft_model::Snapshot;
use weft_model::k8s_openapi::api::networking::v1::NetworkPolicy;
use weft_model::object::labels;

#[derive(Clone, Debug)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Option<Ipv4Addr>,
    pub node: Option<String>,
    pub host_network: bool,
    /// Named container ports: (name, protocol) → number.
    pub named_ports: BTreeMap<(String, String), u16>,
}

pub struct Cluster<'a> {
    pub pods: Vec<PodInfo>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub policies: Vec<&'a NetworkPolicy>,
}

impl<'a> Cluster<'a> {
    pub fn index(snap: &'a Snapshot) -> Cluster<'a> {
        let pods = snap
            .pods()
            // A terminating pod is still a pod with its labels and address, served traffic while it drains
            // (its endpoint stays `serving`), so policies keep counting it; a finished one's address may already
            // be another pod's.
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .map(|p| {
                let spec = p.spec.as_ref();
                let mut named_ports = BTreeMap::new();
                let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
                for port in containers.iter().flat_map(|c| c.ports.iter().flatten()) {
                    if let (Some(name), Ok(number)) = (&port.name, u16::try_from(port.container_port)) {
                        let proto = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                        named_ports.insert((name.clone(), proto), number);
                    }
                }
                PodInfo {
                    namespace: p.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                    name: p.metadata.name.clone().unwrap_or_default(),
                    labels: labels(&p.metadata).clone(),
                    ip: p
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ip.as_deref())
                        .and_then(|ip| ip.parse().ok()),
                    node: spec.and_then(|s| s.node_name.clone()),
                    host_network: spec.and_then(|s| s.host_network) == Some(true),
                    named_ports,
                }
            })
            .collect();
        let namespaces = snap
            .namespaces()
            .filter_map(|n| Some((n.metadata.name.clone()?, labels(&n.metadata).clone())))
            .collect();
        let policies = snap
            .of_kind("NetworkPolicy")
            .filter_map(|o| match o {
                weft_model::Object::NetworkPolicy(p) => Some(&**p),
                _ => None,
            })
            .collect();
        Cluster {
            pods,
            namespaces,
            policies,
        }
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods.iter().find(|p| p.namespace == namespace && p.name == name)
    }

    /// The pod that has `ip` (host-network pods share their node's address and are not pods here).
    pub fn pod_by_ip(&self, ip: Ipv4Addr) -> Option<&PodInfo> {
        self.pods.iter().find(|p| !p.host_network && p.ip == Some(ip))
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminating_pods_count_finished_ones_do_not() {
        let pod = |name: &str, status: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\nspec: {{containers: [{{name: c}}]}}\nstatus: {status}\n---\n"
            )
        };
        let text = [
            pod("running", "{phase: Running, podIP: 10.244.1.2}"),
            pod("draining", "{phase: Running, podIP: 10.244.1.3}"),
            pod("done", "{phase: Succeeded, podIP: 10.244.1.4}"),
        ]
        .concat();
        let mut objects = weft_model::parse(&text, "t").unwrap();
        objects[1].meta_mut().deletion_timestamp = Some(
            weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let snap = Snapshot::new(1, objects);
        let cluster = Cluster::index(&snap);
        let mut names: Vec<&str> = cluster.pods.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["draining", "running"]);
    }
}
