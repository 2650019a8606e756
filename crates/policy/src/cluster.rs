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
            .filter(|p| p.metadata.deletion_timestamp.is_none())
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
