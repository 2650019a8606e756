//! A conflist chain as runtimes run it: bridge, then portmap, then bandwidth, each called under its own
//! name through a link to weft-cni, each given the previous result; DEL in reverse order.

mod common;

use common::{BIN, Node, Ns, Reply, TempDir, eventually, root, tcp};
use serde_json::{Value, json};
use std::time::Duration;

struct Chain {
    bin: TempDir,
}

impl Chain {
    fn new() -> Chain {
        let bin = TempDir::new("bin");
        for t in ["bridge", "host-local", "portmap", "bandwidth"] {
            std::os::unix::fs::symlink(BIN, bin.path().join(t)).unwrap();
        }
        Chain { bin }
    }

    fn path(&self, t: &str) -> String {
        self.bin.path().join(t).display().to_string()
    }

    /// flannel's cbr0 list plus bandwidth, with the runtime's capabilities filled in.
    fn plugins(node: &Node, mappings: Value, bandwidth: Value) -> Vec<Value> {
        let mut bridge = node.bridge_conf("1.0.0", "10.254.0.0/24");
        bridge.as_object_mut().unwrap().remove("type");
        vec![
            json!({"type": "bridge"})
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .chain(bridge.as_object().unwrap().clone())
                .collect(),
            json!({"cniVersion": "1.0.0", "name": "cbr0", "type": "portmap", "stateDir": node.state_dir(), "runtimeConfig": {"portMappings": mappings}}),
            json!({"cniVersion": "1.0.0", "name": "cbr0", "type": "bandwidth", "stateDir": node.state_dir(), "runtimeConfig": {"bandwidth": bandwidth}}),
        ]
    }

    fn add(&self, node: &Node, id: &str, pod: &Ns, plugins: &[Value]) -> Value {
        let mut prev = Value::Null;
        for conf in plugins {
            let mut conf = conf.clone();
            if !prev.is_null() {
                conf["prevResult"] = prev.clone();
            }
            let t = conf["type"].as_str().unwrap().to_string();
            prev = node.cni_as(&self.path(&t), "ADD", id, &pod.path(), &conf, &[]).ok();
        }
        prev
    }

    fn run(&self, node: &Node, command: &str, id: &str, pod: &Ns, plugins: &[Value], result: &Value) {
        let order: Vec<&Value> = if command == "DEL" {
            plugins.iter().rev().collect()
        } else {
            plugins.iter().collect()
        };
        for conf in order {
            let mut conf = conf.clone();
            conf["prevResult"] = result.clone();
            let t = conf["type"].as_str().unwrap().to_string();
            node.cni_as(&self.path(&t), command, id, &pod.path(), &conf, &[]).ok();
        }
    }
}

#[test]
fn host_ports_work_from_outside_from_pods_from_the_pod_itself_and_from_localhost() {
    if !root() {
        return;
    }
    let node = Node::new();
    let chain = Chain::new();
    let plugins = Chain::plugins(
        &node,
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        json!({}),
    );
    let (web, client) = (Ns::new("web"), Ns::new("client"));
    let result = chain.add(&node, "web", &web, &plugins);
    chain.add(&node, "client", &client, &plugins[..1]);
    let web_ip = Reply::ip(&result);
    let _server = web.spawn(&["socat", "TCP4-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello-from-web"]);
    assert!(
        eventually(Duration::from_secs(5), || tcp(&web, &web_ip, 80).is_some()),
        "server did not start"
    );

    assert_eq!(
        tcp(&client, node.addr, 8080).as_deref(),
        Some("hello-from-web"),
        "pod -> node:hostPort"
    );
    assert_eq!(
        tcp(&web, node.addr, 8080).as_deref(),
        Some("hello-from-web"),
        "hairpin: pod -> its own hostPort"
    );
    assert_eq!(
        tcp(&node.ns, node.addr, 8080).as_deref(),
        Some("hello-from-web"),
        "node -> its own address"
    );
    assert_eq!(
        tcp(&node.ns, "127.0.0.1", 8080).as_deref(),
        Some("hello-from-web"),
        "node -> 127.0.0.1:hostPort"
    );

    let mut check = plugins[1].clone();
    check["prevResult"] = result.clone();
    node.cni_as(&chain.path("portmap"), "CHECK", "web", &web.path(), &check, &[])
        .ok();

    chain.run(&node, "DEL", "web", &web, &plugins, &result);
    assert!(
        !node.ruleset().contains("8080"),
        "mapping left after DEL:\n{}",
        node.ruleset()
    );
    assert_eq!(tcp(&client, node.addr, 8080), None, "mapping still answers after DEL");
    chain.run(&node, "DEL", "web", &web, &plugins, &result);
}

/// A UDP client keeps one flow (same source port) to a hostPort while the mapping moves from one pod to
/// another. The flow's conntrack entry still points at the first pod; weft-cni deletes entries for UDP host
/// ports on DEL and ADD, so the next datagram goes where the mapping now points.
#[test]
fn a_udp_host_port_moved_to_another_pod_takes_the_flow_with_it() {
    if !root() {
        return;
    }
    let node = Node::new();
    let chain = Chain::new();
    let plugins = Chain::plugins(
        &node,
        json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]),
        json!({}),
    );
    let client = Ns::new("client");
    chain.add(&node, "client", &client, &plugins[..1]);
    let udp = || {
        let cmd = format!(
            "echo ping | socat -T1 - UDP4:{}:5353,sourceport=40000,reuseaddr",
            node.addr
        );
        String::from_utf8_lossy(&client.run(&["sh", "-c", &cmd]).stdout)
            .trim()
            .to_string()
    };
    let (first, second) = (Ns::new("first"), Ns::new("second"));
    let first_result = chain.add(&node, "first", &first, &plugins);
    let _first_server = first.spawn(&["socat", "UDP4-RECVFROM:53,fork", "SYSTEM:echo first"]);
    assert!(
        eventually(Duration::from_secs(5), || udp() == "first"),
        "the first pod never answered"
    );
    // The first pod keeps running; only its mapping goes (portmap DEL), and the second pod takes the port.
    let mut pm = plugins[1].clone();
    pm["prevResult"] = first_result;
    node.cni_as(&chain.path("portmap"), "DEL", "first", &first.path(), &pm, &[])
        .ok();
    let second_result = chain.add(&node, "second", &second, &plugins);
    let _second_server = second.spawn(&["socat", "UDP4-RECVFROM:53,fork", "SYSTEM:echo second"]);
    assert!(
        eventually(Duration::from_secs(5), || udp() == "second"),
        "the flow stayed on the first pod"
    );
    chain.run(&node, "DEL", "second", &second, &plugins, &second_result);
}

#[test]
fn bandwidth_shapes_both_directions_and_del_removes_the_ifb() {
    if !root() {
        return;
    }
    let node = Node::new();
    let chain = Chain::new();
    let limits =
        json!({"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 4_000_000, "egressBurst": 400_000});
    let plugins = Chain::plugins(&node, json!([]), limits);
    let pod = Ns::new("pod");
    let result = chain.add(&node, "shaped", &pod, &plugins);
    let veth = result["interfaces"][1]["name"].as_str().unwrap().to_string();
    let qdiscs = node.ns.ok(&["tc", "qdisc", "show"]);
    assert!(
        qdiscs.contains(&format!("qdisc tbf 8001: dev {veth} root")) || qdiscs.contains(&format!("dev {veth} root")),
        "{qdiscs}"
    );
    assert!(qdiscs.contains("rate 8Mbit"), "ingress limit missing: {qdiscs}");
    assert!(qdiscs.contains("rate 4Mbit"), "egress limit missing: {qdiscs}");
    let ifbs = || node.ns.ok(&["ip", "-o", "link", "show", "type", "ifb"]);
    assert!(ifbs().contains("weftb"), "no IFB device: {}", ifbs());
    chain.run(&node, "CHECK", "shaped", &pod, &plugins, &result);
    chain.run(&node, "DEL", "shaped", &pod, &plugins, &result);
    assert!(!ifbs().contains("weftb"), "IFB left after DEL: {}", ifbs());
}

#[test]
fn bad_bandwidth_and_a_taken_host_port_are_refused_without_leftovers() {
    if !root() {
        return;
    }
    let node = Node::new();
    let chain = Chain::new();
    let plugins = Chain::plugins(&node, json!([{"hostPort": 9090, "containerPort": 80}]), json!({}));
    let (a, b) = (Ns::new("a"), Ns::new("b"));
    chain.add(&node, "a", &a, &plugins);
    let rb = node
        .cni_as(&chain.path("bridge"), "ADD", "b", &b.path(), &plugins[0], &[])
        .ok();
    let mut pm = plugins[1].clone();
    pm["prevResult"] = rb;
    let taken = node.cni_as(&chain.path("portmap"), "ADD", "b", &b.path(), &pm, &[]);
    assert_ne!(taken.code, 0, "a second pod got host port 9090");
    let rules = node.ruleset();
    assert_eq!(rules.matches("9090").count(), 1, "{rules}");
}
