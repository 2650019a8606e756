//! What `status.loadBalancer.ingress` of the served Ingresses should say, so that `kubectl get ingress` shows an
//! ADDRESS (and external-dns, Argo CD and the like find one): the addresses of the controller's own Service
//! (`--publish-service`) — its LoadBalancer ingress when it has one, else the addresses of the nodes, each of
//! which answers on the Service's NodePorts (ExternalIP when a node has one, else InternalIP).

use crate::class::Classes;
use crate::table::{Config, decode_all};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use weft_model::Snapshot;

/// The addresses of Service `namespace/name` as Ingress status entries; none while the Service does not exist.
pub fn addresses(snapshot: &Snapshot, namespace: &str, name: &str) -> Vec<IngressLoadBalancerIngress> {
    let Some(service) = snapshot
        .services()
        .find(|s| s.metadata.namespace.as_deref() == Some(namespace) && s.metadata.name.as_deref() == Some(name))
    else {
        return Vec::new();
    };
    let balancer = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref());
    let mut out: Vec<IngressLoadBalancerIngress> = match balancer.filter(|b| !b.is_empty()) {
        Some(ingress) => ingress
            .iter()
            .map(|i| IngressLoadBalancerIngress {
                ip: i.ip.clone(),
                hostname: i.hostname.clone(),
                ports: None,
            })
            .collect(),
        None => snapshot
            .nodes()
            .filter_map(|node| {
                let addresses = node.status.as_ref()?.addresses.as_ref()?;
                let of = |kind: &str| addresses.iter().find(|a| a.type_ == kind).map(|a| a.address.clone());
                of("ExternalIP").or_else(|| of("InternalIP"))
            })
            .map(|ip| IngressLoadBalancerIngress {
                ip: Some(ip),
                ..Default::default()
            })
            .collect(),
    };
    out.sort_by(|a, b| (&a.ip, &a.hostname).cmp(&(&b.ip, &b.hostname)));
    out.dedup();
    out
}

/// `namespace/name` of the served Ingresses whose status does not say `wanted`.
pub fn stale(snapshot: &Snapshot, config: &Config, wanted: &[IngressLoadBalancerIngress]) -> Vec<(String, String)> {
    let mut ignored = Vec::new();
    let classes: Vec<IngressClass> = decode_all(snapshot, "IngressClass", &mut ignored);
    let classes = Classes::of(&config.controller, &classes);
    let ingresses: Vec<Ingress> = decode_all(snapshot, "Ingress", &mut ignored);
    ingresses
        .into_iter()
        .filter(|i| classes.admits(i))
        .filter(|i| {
            let current = i
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_deref());
            current.unwrap_or_default() != wanted
        })
        .filter_map(|i| Some((i.metadata.namespace?, i.metadata.name?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECTS: &str = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.18.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}, {type: ExternalIP, address: 192.0.2.2}]}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: weft.dev/ingress}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ours, namespace: default}
spec: {ingressClassName: nginx, defaultBackend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: done, namespace: default}
spec: {ingressClassName: nginx, defaultBackend: {service: {name: web, port: {number: 80}}}}
status: {loadBalancer: {ingress: [{ip: 172.18.0.11}, {ip: 192.0.2.2}]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: default}
spec: {ingressClassName: other, defaultBackend: {service: {name: web, port: {number: 80}}}}
";

    fn snapshot(service: &str) -> Snapshot {
        Snapshot::new(1, weft_model::parse(&format!("{OBJECTS}---\n{service}"), "t").unwrap())
    }

    fn ips(entries: &[IngressLoadBalancerIngress]) -> Vec<&str> {
        entries.iter().filter_map(|e| e.ip.as_deref()).collect()
    }

    const NODE_PORT: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: weft-ingress, namespace: weft-ingress}\nspec: {type: NodePort, ports: [{port: 80}]}\n";

    #[test]
    fn a_node_port_service_publishes_the_node_addresses() {
        let snap = snapshot(NODE_PORT);
        let wanted = addresses(&snap, "weft-ingress", "weft-ingress");
        assert_eq!(ips(&wanted), ["172.18.0.11", "192.0.2.2"]);
        let config = Config {
            controller: "weft.dev/ingress".into(),
            ..Config::default()
        };
        assert_eq!(
            stale(&snap, &config, &wanted),
            [("default".to_string(), "ours".to_string())]
        );
        assert!(addresses(&snap, "weft-ingress", "absent").is_empty());
    }

    #[test]
    fn a_load_balancer_publishes_its_address() {
        let lb = format!("{NODE_PORT}status: {{loadBalancer: {{ingress: [{{ip: 172.18.0.200}}]}}}}\n");
        assert_eq!(
            ips(&addresses(&snapshot(&lb), "weft-ingress", "weft-ingress")),
            ["172.18.0.200"]
        );
    }
}
