//! Who an address is, from the cluster state the agent follows: pods by their IP, nodes by their InternalIP,
//! Services by each address and port a client may use (ClusterIP, external and LoadBalancer addresses, node
//! ports on any node's address). Built once per snapshot the collector uses.

use super::record::{Kind, Peer, ServiceRef};
use std::collections::HashMap;
use std::net::IpAddr;
use weft_model::compact::Protocol;
use weft_model::{Object, Snapshot};

#[derive(Default)]
pub struct Names {
    pods: HashMap<IpAddr, (String, String, Option<String>)>,
    nodes: HashMap<IpAddr, String>,
    /// (address, port, protocol number) → Service.
    services: HashMap<(IpAddr, u16, u8), ServiceRef>,
    /// (node port, protocol number) → Service, on any node's address.
    node_ports: HashMap<(u16, u8), ServiceRef>,
}

impl Names {
    pub fn of(snap: &Snapshot) -> Names {
        let mut names = Names::default();
        for pod in snap.pods() {
            let spec = pod.spec.as_ref();
            if spec.and_then(|s| s.host_network) == Some(true) {
                continue; // its address is its node's
            }
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()?.parse().ok()) else {
                continue;
            };
            let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            names
                .pods
                .insert(ip, (ns, name, spec.and_then(|s| s.node_name.clone())));
        }
        for node in snap.nodes() {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            for addr in node.status.iter().flat_map(|s| s.addresses.iter().flatten()) {
                if let Ok(ip) = addr.address.parse() {
                    names.nodes.insert(ip, name.clone());
                }
            }
        }
        for svc in snap.of_kind("Service").filter_map(Object::service) {
            let namespace = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = svc.metadata.name.clone().unwrap_or_default();
            let addresses = svc
                .cluster_ip
                .iter()
                .chain(svc.external_ips.iter())
                .chain(svc.load_balancer_ips.iter());
            for ip in addresses {
                for port in &svc.ports {
                    let service = ServiceRef {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        port_name: port.name.to_string(),
                        ip: *ip,
                        port: port.port,
                    };
                    names.services.insert((*ip, port.port, number(port.protocol)), service);
                }
            }
            for port in &svc.ports {
                if let Some(node_port) = port.node_port {
                    let service = ServiceRef {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        port_name: port.name.to_string(),
                        ip: IpAddr::from([0, 0, 0, 0]),
                        port: node_port,
                    };
                    names.node_ports.insert((node_port, number(port.protocol)), service);
                }
            }
        }
        names
    }

    /// The pod, node or outside address at `ip`.
    pub fn peer(&self, ip: IpAddr, port: u16) -> Peer {
        let mut peer = Peer {
            ip,
            port,
            kind: Kind::World,
            namespace: None,
            name: None,
            node: None,
        };
        if let Some((ns, name, node)) = self.pods.get(&ip) {
            peer.kind = Kind::Pod;
            peer.namespace = Some(ns.clone());
            peer.name = Some(name.clone());
            peer.node = node.clone();
        } else if let Some(node) = self.nodes.get(&ip) {
            peer.kind = Kind::Node;
            peer.name = Some(node.clone());
        }
        peer
    }

    /// The Service a client addressed at `ip:port` over IP protocol number `protocol`.
    pub fn service(&self, ip: IpAddr, port: u16, protocol: u8) -> Option<ServiceRef> {
        if let Some(s) = self.services.get(&(ip, port, protocol)) {
            return Some(s.clone());
        }
        if !self.nodes.contains_key(&ip) && !ip.is_loopback() {
            return None;
        }
        let mut s = self.node_ports.get(&(port, protocol))?.clone();
        s.ip = ip;
        Some(s)
    }
}

fn number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pods_nodes_and_services() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\nspec: {nodeName: node-2, containers: [{name: c}]}\nstatus: {podIP: 10.244.2.5}\n---\n\
apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\nstatus: {addresses: [{type: InternalIP, address: 172.18.0.12}]}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: NodePort, clusterIP: 10.96.0.20, ports: [{name: http, port: 80, nodePort: 30080}]}\n";
        let snap = Snapshot::new(1, weft_model::parse(text, "t").unwrap());
        let names = Names::of(&snap);
        let pod = names.peer("10.244.2.5".parse().unwrap(), 8080);
        assert_eq!(pod.label(), "shop/web-1:8080");
        assert_eq!(pod.node.as_deref(), Some("node-2"));
        assert_eq!(names.peer("172.18.0.12".parse().unwrap(), 0).label(), "node node-2");
        assert_eq!(names.peer("192.0.2.1".parse().unwrap(), 53).kind, Kind::World);
        let svc = names.service("10.96.0.20".parse().unwrap(), 80, 6).unwrap();
        assert_eq!((svc.name.as_str(), svc.port_name.as_str()), ("web", "http"));
        assert!(names.service("10.96.0.20".parse().unwrap(), 80, 17).is_none());
        let np = names.service("172.18.0.12".parse().unwrap(), 30080, 6).unwrap();
        assert_eq!((np.name.as_str(), np.port), ("web", 30080));
    }
}
