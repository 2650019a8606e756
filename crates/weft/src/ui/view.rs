//! The cluster as the page draws it: nodes, the pods on them (with the NetworkPolicies that select each), the
//! Services with their usable endpoints, and the policies. Built from the same snapshot `weft trace` judges.

use serde_json::{Value, json};
use weft_model::Snapshot;
use weft_policy::decide::{has_type, key, selects};
use weft_policy::{Cluster, Direction};
use weft_proxy::endpoints::{SliceIndex, for_port, usable};

pub fn cluster(snap: &Snapshot) -> Value {
    let index = Cluster::index(snap);
    let cidrs = weft_agent::ipam::pod_cidrs(snap);
    let nodes: Vec<Value> = snap
        .nodes()
        .filter_map(|n| weft_agent::node::node_net(n, &cidrs))
        .map(|n| json!({"name": n.name, "ip": n.ip.to_string()}))
        .collect();
    let pods: Vec<Value> = (index.pods.iter())
        .map(|p| {
            let policies: Vec<String> = (index.policies.iter())
                .filter(|policy| selects(policy, p))
                .map(|policy| key(policy))
                .collect();
            json!({
                "namespace": p.namespace, "name": p.name, "node": p.node,
                "ip": p.ip.map(|ip| ip.to_string()), "hostNetwork": p.host_network, "policies": policies,
            })
        })
        .collect();
    let slices = SliceIndex::of(snap);
    let services: Vec<Value> = (snap.of_kind("Service").filter_map(weft_model::Object::service))
        .map(|svc| {
            let namespace = svc.metadata.namespace.as_deref();
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            let mine = slices.slices(snap, namespace, name);
            let ports: Vec<Value> = (svc.ports.iter())
                .map(|sp| {
                    let endpoints: Vec<Value> = usable(&for_port(&mine, sp, ""))
                        .iter()
                        .map(|e| json!({"ip": e.ip.to_string(), "port": e.port}))
                        .collect();
                    json!({"port": sp.port, "protocol": sp.protocol.as_str(), "endpoints": endpoints})
                })
                .collect();
            json!({
                "namespace": namespace.unwrap_or("default"), "name": name,
                "clusterIP": svc.cluster_ip.map(|ip| ip.to_string()), "ports": ports,
            })
        })
        .collect();
    let policies: Vec<Value> = (index.policies.iter())
        .map(|policy| {
            let types: Vec<String> = [Direction::Ingress, Direction::Egress]
                .into_iter()
                .filter(|d| has_type(policy, *d))
                .map(|d| d.to_string())
                .collect();
            json!({"name": key(policy), "types": types})
        })
        .collect();
    json!({"nodes": nodes, "pods": pods, "services": services, "policies": policies})
}
