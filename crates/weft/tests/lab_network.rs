//! The lab's network behaviour, end to end through real pods, over both overlays: unique pod IPs from each
//! node's CIDR, pod-to-pod on the same and other nodes with the client's real source IP, nodes to pods,
//! pods to the external host masqueraded to the node, and no way in from outside.

mod lab;

use lab::*;
use std::process::{Command, Stdio};

fn network_behaves(overlay: &str) {
    if !root() {
        return;
    }
    let host_links_before = host_links();
    let lab = Lab::up(3, overlay, WEB);
    // The quickstart's pods (kube-system holds cluster DNS).
    let pods: Vec<Value> = lab
        .ready_pods()
        .into_iter()
        .filter(|p| p["metadata"]["namespace"] == "default")
        .collect();
    assert_eq!(pods.len(), 4);
    let ips: std::collections::HashSet<String> = pods.iter().map(ip).collect();
    assert_eq!(ips.len(), 4, "pod IPs are unique");
    let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    for pod in &pods {
        let node = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == node(pod))
            .unwrap();
        let cidr: ipnet::Ipv4Net = node["spec"]["podCIDR"].as_str().unwrap().parse().unwrap();
        assert!(
            cidr.contains(&ip(pod).parse::<std::net::Ipv4Addr>().unwrap()),
            "{} in {cidr}",
            ip(pod)
        );
    }
    let client = pods.iter().find(|p| name(p) == "client").unwrap();
    let web: Vec<&Value> = pods.iter().filter(|p| name(p).starts_with("web-")).collect();
    let web_nodes: std::collections::HashSet<String> = web.iter().map(|p| node(p)).collect();
    assert_eq!(web_nodes.len(), 3, "a Deployment's pods spread over the nodes");
    for server in &web {
        // Every pod reaches every other, and the server sees the client's own address: no NAT inside.
        let out = lab.exec("client", &["weft", "probe", &format!("http://{}/", ip(server))]);
        let answer = text(&out.stdout);
        assert!(
            out.status.success(),
            "client -> {}: {}",
            name(server),
            text(&out.stderr)
        );
        assert_eq!(field(&answer, "pod").as_deref(), Some(name(server).as_str()));
        let seen = field(&answer, "client").unwrap();
        assert_eq!(seen.split(':').next(), Some(ip(client).as_str()), "source IP preserved");
        // Host binaries work inside pods.
        assert!(
            lab.exec("client", &["ping", "-c1", "-W2", &ip(server)])
                .status
                .success()
        );
        // Every node reaches every pod.
        for n in ["node-1", "node-2", "node-3"] {
            let out = lab.node_exec(n, &["weft", "probe", &format!("tcp://{}:80", ip(server))]);
            assert!(out.status.success(), "{n} -> {}: {}", name(server), text(&out.stderr));
        }
        // The external host cannot reach pod IPs.
        let out = lab.node_exec(
            "external",
            &["weft", "probe", "--timeout", "1s", &format!("tcp://{}:80", ip(server))],
        );
        assert!(!out.status.success(), "external reached {}", ip(server));
    }
    // Traffic to the external host leaves masqueraded to the node's address.
    let _server = ExternalServer::start(&lab, 8080);
    let answer = lab.wait(10, "the external server", || {
        let out = lab.exec("client", &["weft", "probe", "http://172.18.0.100:8080/"]);
        out.status.success().then(|| text(&out.stdout))
    });
    let node_ip = client["status"]["hostIP"].as_str().unwrap();
    assert_eq!(field(&answer, "client").unwrap().split(':').next(), Some(node_ip));
    drop(lab);
    assert_eq!(host_links(), host_links_before, "the host's links are untouched");
}

#[test]
fn host_gw() {
    network_behaves("host-gw");
}

#[test]
fn vxlan() {
    network_behaves("vxlan");
}

use serde_json::Value;

/// The host's own link names (the lab must never add or remove one).
fn host_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let mut names: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        })
        .collect();
    names.sort();
    names
}

/// `weft serve` on the external host, killed on drop.
struct ExternalServer(std::process::Child);

impl ExternalServer {
    fn start(lab: &Lab, port: u16) -> ExternalServer {
        let child = lab
            .cmd(&[
                "lab",
                "exec",
                "external",
                "--",
                "weft",
                "serve",
                "--http",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ExternalServer(child)
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
