//! The semantics on the upstream tests' model: namespaces x, y, z, each with pods a, b, c.

use super::*;
use weft_model::{Snapshot, parse};

fn cluster_yaml(policies: &str) -> Snapshot {
    let mut text = String::new();
    for (n, ns) in ["x", "y", "z"].iter().enumerate() {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{ns}\", labels: {{ns: \"{ns}\"}}}}\n"
        ));
        for (m, pod) in ["a", "b", "c"].iter().enumerate() {
            // Pod c serves its named port "serve" on 81, the others on 80: one name, different numbers.
            let serve = if *pod == "c" { 81 } else { 80 };
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: \"{ns}\", labels: {{pod: {pod}}}}}\nspec:\n  nodeName: node-{}\n  containers: [{{name: c, ports: [{{name: serve, containerPort: {serve}}}, {{name: udp-serve, containerPort: 80, protocol: UDP}}]}}]\nstatus: {{podIP: 10.244.{}.{}}}\n",
                m + 1,
                m + 1,
                10 + n
            ));
        }
    }
    text.push_str(policies);
    Snapshot::new(1, parse(&text, "fixture").unwrap())
}

fn verdict(snap: &Snapshot, from: &str, to: &str, port: u16, proto: Protocol) -> bool {
    let c = Cluster::index(snap);
    let pod = |q: &str| {
        let (ns, name) = q.split_once('/').unwrap();
        c.pod(ns, name).unwrap().clone()
    };
    let (src, dst) = (pod(from), pod(to));
    decide(&c, &Endpoint::Pod(&src), &Endpoint::Pod(&dst), port, proto).allowed()
}

fn tcp(snap: &Snapshot, from: &str, to: &str, port: u16) -> bool {
    verdict(snap, from, to, port, Protocol::Tcp)
}

#[test]
fn without_policies_everything_is_allowed() {
    let s = cluster_yaml("");
    assert!(tcp(&s, "x/a", "y/b", 80));
    assert!(verdict(&s, "z/c", "x/a", 81, Protocol::Udp));
}

#[test]
fn default_deny_ingress_isolates_only_selected_pods_for_ingress() {
    let s = cluster_yaml(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n",
    );
    assert!(!tcp(&s, "y/a", "x/a", 80));
    assert!(!tcp(&s, "x/b", "x/a", 80), "same namespace too");
    assert!(tcp(&s, "x/a", "x/a", 80), "a pod reaches itself");
    assert!(
        tcp(&s, "x/a", "y/a", 80),
        "egress is not isolated by an Ingress-only policy"
    );
    assert!(tcp(&s, "x/a", "z/b", 81));
}

#[test]
fn allow_from_a_namespace_or_a_pod_or_both() {
    let ns_only = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]}]\n";
    let s = cluster_yaml(ns_only);
    assert!(tcp(&s, "y/c", "x/a", 80));
    assert!(!tcp(&s, "z/c", "x/a", 80));
    assert!(!tcp(&s, "x/b", "x/a", 80), "own namespace not selected");
    assert!(tcp(&s, "z/c", "x/b", 80), "x/b is not selected by the policy");
    // AND: one peer with both selectors.
    let both = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}, podSelector: {matchLabels: {pod: b}}}]}]\n";
    let s = cluster_yaml(both);
    assert!(tcp(&s, "y/b", "x/a", 80));
    assert!(!tcp(&s, "y/c", "x/a", 80));
    assert!(!tcp(&s, "z/b", "x/a", 80));
    // OR: two peers.
    let either = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}, {podSelector: {matchLabels: {pod: b}}}]}]\n";
    let s = cluster_yaml(either);
    assert!(tcp(&s, "y/c", "x/a", 80));
    assert!(tcp(&s, "x/b", "x/a", 80), "podSelector alone: the policy's namespace");
    assert!(!tcp(&s, "z/b", "x/a", 80));
    // Empty namespaceSelector: every namespace.
    let all_ns = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]}]\n";
    let s = cluster_yaml(all_ns);
    assert!(tcp(&s, "z/c", "x/a", 80));
    assert!(!tcp(&s, "z/b", "x/a", 80));
}

#[test]
fn ports_by_number_range_name_and_protocol() {
    let named = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: serve}]}]\n";
    let s = cluster_yaml(named);
    assert!(tcp(&s, "y/a", "x/a", 80), "serve is 80 on a");
    assert!(!tcp(&s, "y/a", "x/a", 81));
    assert!(tcp(&s, "y/a", "x/c", 81), "and 81 on c");
    assert!(!tcp(&s, "y/a", "x/c", 80));
    let range = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 81, endPort: 90}]}]\n";
    let s = cluster_yaml(range);
    assert!(!tcp(&s, "y/a", "x/a", 80));
    assert!(tcp(&s, "y/a", "x/a", 81));
    assert!(tcp(&s, "y/a", "x/a", 90));
    let sctp = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 80, protocol: SCTP}]}]\n";
    let s = cluster_yaml(sctp);
    assert!(
        !tcp(&s, "y/a", "x/a", 80),
        "a policy that allows only SCTP does not open TCP"
    );
    assert!(verdict(&s, "y/a", "x/a", 80, Protocol::Sctp));
    // Egress with an empty `to` and a named port: resolved on each destination pod.
    let egress_named = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: serve}]}]\n";
    let s = cluster_yaml(egress_named);
    assert!(tcp(&s, "x/a", "y/b", 80));
    assert!(tcp(&s, "x/a", "y/c", 81));
    assert!(!tcp(&s, "x/a", "y/c", 80));
}

#[test]
fn ip_blocks_apply_to_pod_addresses_with_exceptions() {
    let block = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}}]}]\n";
    let s = cluster_yaml(block);
    assert!(tcp(&s, "y/a", "x/a", 80), "10.244.1.11 is inside");
    assert!(!tcp(&s, "y/b", "x/a", 80), "10.244.2.11 is excepted");
    let c = Cluster::index(&s);
    let dst = c.pod("x", "a").unwrap().clone();
    let outside = decide(
        &c,
        &Endpoint::Address("172.18.0.100".parse().unwrap()),
        &Endpoint::Pod(&dst),
        80,
        Protocol::Tcp,
    );
    assert!(!outside.allowed());
}

#[test]
fn egress_isolation_and_dns() {
    let deny_egress = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]\n";
    let s = cluster_yaml(deny_egress);
    assert!(!tcp(&s, "x/a", "y/a", 80));
    assert!(
        tcp(&s, "y/a", "x/a", 80),
        "ingress to x is not isolated by an Egress-only policy"
    );
    assert!(verdict(&s, "x/a", "y/a", 53, Protocol::Udp));
}

#[test]
fn rules_of_several_policies_are_a_union_and_the_reason_is_named() {
    let two = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-z, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"z\"}}}], ports: [{port: 81}]}]\n";
    let s = cluster_yaml(two);
    assert!(tcp(&s, "y/a", "x/a", 80));
    assert!(tcp(&s, "z/a", "x/a", 81));
    assert!(!tcp(&s, "z/a", "x/a", 80));
    let c = Cluster::index(&s);
    let (src, dst) = (c.pod("z", "a").unwrap().clone(), c.pod("x", "a").unwrap().clone());
    let d = decide(&c, &Endpoint::Pod(&src), &Endpoint::Pod(&dst), 81, Protocol::Tcp);
    let Side::Isolated {
        policies,
        allowed_by: Some(rule),
    } = &d.ingress
    else {
        panic!("{d:?}")
    };
    assert_eq!(policies, &["x/from-y", "x/from-z"]);
    assert_eq!(rule.to_string(), "x/from-z ingress[0] from[0] ports[0]");
}

#[test]
fn nodes_reach_their_own_pods_and_host_network_pods_are_not_selected() {
    let s = cluster_yaml(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n",
    );
    let c = Cluster::index(&s);
    let dst = c.pod("x", "a").unwrap().clone();
    let own = Endpoint::Node {
        name: "node-1".into(),
        ip: "172.18.0.11".parse().unwrap(),
    };
    assert!(decide(&c, &own, &Endpoint::Pod(&dst), 80, Protocol::Tcp).allowed());
    let other = Endpoint::Node {
        name: "node-2".into(),
        ip: "172.18.0.12".parse().unwrap(),
    };
    assert!(!decide(&c, &other, &Endpoint::Pod(&dst), 80, Protocol::Tcp).allowed());
    let mut host = dst.clone();
    host.host_network = true;
    assert!(decide(&c, &other, &Endpoint::Pod(&host), 80, Protocol::Tcp).allowed());
}
