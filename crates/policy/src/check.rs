//! `weft policy check`: the usual NetworkPolicy traps, found before applying.

use crate::cluster::Cluster;
use crate::decide::{Direction, Endpoint, has_type, key, peer_matches, selects};
use weft_model::k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use weft_model::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Warnings about `policy`; `cluster` (when a lab is running) lets selectors be checked against real pods.
pub fn check(policy: &NetworkPolicy, cluster: Option<&Cluster>) -> Vec<String> {
    let name = key(policy);
    let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
    let spec = policy.spec.clone().unwrap_or_default();
    let mut out = Vec::new();
    let peers = |list: &str, rules: Vec<Option<Vec<NetworkPolicyPeer>>>| -> Vec<(String, NetworkPolicyPeer)> {
        rules
            .into_iter()
            .enumerate()
            .flat_map(|(i, peers)| {
                let list = list.to_string();
                peers
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(move |(j, p)| (format!("{list}[{i}].peers[{j}]"), p))
            })
            .collect()
    };
    let mut all = peers(
        "ingress",
        spec.ingress.iter().flatten().map(|r| r.from.clone()).collect(),
    );
    all.extend(peers(
        "egress",
        spec.egress.iter().flatten().map(|r| r.to.clone()).collect(),
    ));
    for (at, peer) in &all {
        if peer.namespace_selector.is_some() && peer.pod_selector.is_some() {
            out.push(format!(
                "{name}: {at} has namespaceSelector AND podSelector in one peer: only pods matching both are allowed. \
                 If either should do, write them as two list items (\"- namespaceSelector: ...\" and \"- podSelector: ...\")"
            ));
        }
    }
    if has_type(policy, Direction::Egress) {
        let dns_open = spec.egress.iter().flatten().any(|rule| {
            let ports = rule.ports.clone().unwrap_or_default();
            ports.is_empty()
                || ports.iter().any(|p| {
                    p.protocol.as_deref().unwrap_or("TCP") == "UDP"
                        && match &p.port {
                            None => true,
                            Some(IntOrString::Int(n)) => (*n..=p.end_port.unwrap_or(*n)).contains(&53),
                            Some(IntOrString::String(_)) => false,
                        }
                })
        });
        if !dns_open {
            out.push(format!(
                "{name}: isolates egress but no egress rule allows UDP port 53: the selected pods cannot resolve names \
                 unless another policy allows DNS"
            ));
        }
    }
    if let Some(c) = cluster {
        if !c.pods.iter().any(|p| selects(policy, p)) {
            out.push(format!("{name}: spec.podSelector selects no pod in namespace {ns}"));
        }
        for (at, peer) in &all {
            if peer.ip_block.is_some() {
                continue;
            }
            let hits = c.pods.iter().any(|p| peer_matches(c, ns, peer, &Endpoint::Pod(p)));
            if !hits {
                out.push(format!("{name}: {at} matches no pod right now"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> NetworkPolicy {
        match weft_model::parse(text, "t").unwrap().remove(0) {
            weft_model::Object::NetworkPolicy(p) => *p,
            _ => panic!(),
        }
    }

    #[test]
    fn the_usual_traps() {
        let and = policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {team: a}}\n      podSelector: {matchLabels: {role: db}}\n",
        );
        let w = check(&and, None);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("ingress[0].peers[0]") && w[0].contains("two list items"),
            "{w:?}"
        );
        let or = policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {team: a}}\n    - podSelector: {matchLabels: {role: db}}\n",
        );
        assert!(check(&or, None).is_empty());
        let no_dns = policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: 443}]}]\n",
        );
        assert!(check(&no_dns, None)[0].contains("UDP port 53"));
        let dns = policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: 53, protocol: UDP}]}]\n",
        );
        assert!(check(&dns, None).is_empty());
        let snap = weft_model::Snapshot::new(1, weft_model::parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: web}}\nspec: {containers: [{name: c}]}\n", "t").unwrap());
        let c = Cluster::index(&snap);
        let nothing = policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]\n",
        );
        let w = check(&nothing, Some(&c));
        assert_eq!(
            w,
            vec!["x/p: spec.podSelector selects no pod in namespace x".to_string()]
        );
    }
}
