//! The `weft` type: one exec per pod, settings from the node config the agent writes.

mod common;

use common::{Node, Ns, Reply, eventually, root, tcp};
use serde_json::{Value, json};
use std::time::Duration;

fn setup(node: &Node, attachment: &str) -> Value {
    let node_config = node.dir.path().join("node.json");
    let settings = json!({
        "podCIDR": "10.244.1.0/24", "clusterCIDR": "10.244.0.0/16", "mtu": 1450,
        "stateDir": node.state_dir(), "attachment": attachment
    });
    std::fs::write(&node_config, settings.to_string()).unwrap();
    json!({"cniVersion": "1.1.0", "name": "weft", "type": "weft", "nodeConfig": node_config})
}

fn with_capabilities(conf: &Value, caps: Value) -> Value {
    let mut c = conf.clone();
    c["runtimeConfig"] = caps;
    c
}

#[test]
fn bridged_pods_one_exec_attaches_masquerades_maps_ports_and_shapes() {
    if root() {
        one_exec_attaches_masquerades_maps_ports_and_shapes("bridge");
    }
}

#[test]
fn routed_pods_one_exec_attaches_masquerades_maps_ports_and_shapes() {
    if root() {
        one_exec_attaches_masquerades_maps_ports_and_shapes("routed");
    }
}

fn one_exec_attaches_masquerades_maps_ports_and_shapes(attachment: &str) {
    let node = Node::new();
    let ext = node.external();
    let conf = setup(&node, attachment);
    let (web, client) = (Ns::new("web"), Ns::new("client"));
    let caps = json!({
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 100_000_000, "ingressBurst": 1_000_000, "egressRate": 100_000_000, "egressBurst": 1_000_000}
    });
    let web_result = node
        .cni("ADD", "web", &web.path(), &with_capabilities(&conf, caps.clone()))
        .ok();
    let client_result = node.cni("ADD", "client", &client.path(), &conf).ok();
    let (web_ip, client_ip) = (Reply::ip(&web_result), Reply::ip(&client_result));
    assert!(web_ip.starts_with("10.244.1."), "{web_ip}");
    // Bridged: bridge, host veth, pod interface. Routed: no bridge, and the pod holds a /32.
    let expected = if attachment == "bridge" { 3 } else { 2 };
    assert_eq!(
        web_result["interfaces"].as_array().unwrap().len(),
        expected,
        "{web_result}"
    );
    let prefix = if attachment == "bridge" { "/24" } else { "/32" };
    assert!(
        web_result["ips"][0]["address"].as_str().unwrap().ends_with(prefix),
        "{web_result}"
    );
    assert!(web.ok(&["ip", "-o", "link", "show", "eth0"]).contains("mtu 1450"));

    // Pod to pod: no NAT, the server sees the client's own address.
    let _web = web.spawn(&["socat", "TCP4-LISTEN:80,fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"]);
    assert!(eventually(Duration::from_secs(5), || tcp(&client, &web_ip, 80).is_some()));
    assert_eq!(tcp(&client, &web_ip, 80).as_deref(), Some(client_ip.as_str()));
    // hostPort from outside the node, and from the pod itself (hairpin).
    assert!(tcp(&ext, node.addr, 8080).is_some(), "external -> node:8080 failed");
    assert!(tcp(&web, node.addr, 8080).is_some(), "hairpin to own hostPort failed");
    assert!(
        tcp(&node.ns, "127.0.0.1", 8080).is_some(),
        "node -> 127.0.0.1:hostPort failed"
    );
    // Leaving the cluster CIDR: masqueraded to the node's address.
    let _ext = ext.spawn(&[
        "socat",
        "TCP4-LISTEN:9000,fork,reuseaddr",
        "SYSTEM:echo $SOCAT_PEERADDR",
    ]);
    assert!(eventually(Duration::from_secs(5), || tcp(
        &client,
        "192.168.77.3",
        9000
    )
    .is_some()));
    assert_eq!(tcp(&client, "192.168.77.3", 9000).as_deref(), Some(node.addr));
    // Shaping is in place.
    assert!(node.ns.ok(&["tc", "qdisc", "show"]).contains("rate 100Mbit"));

    let mut check = with_capabilities(&conf, caps.clone());
    check["prevResult"] = web_result;
    node.cni("CHECK", "web", &web.path(), &check).ok();

    node.cni("DEL", "web", &web.path(), &with_capabilities(&conf, caps))
        .ok();
    node.cni("DEL", "web", &web.path(), &conf).ok();
    let rules = node.ruleset();
    assert!(!rules.contains(&web_ip) && !rules.contains("8080"), "{rules}");
    assert!(!node.ns.ok(&["ip", "-o", "link"]).contains("weftb"), "IFB left");
    assert_eq!(node.veths().len(), 1);
}

#[test]
fn status_is_unavailable_without_node_config_and_gc_collects() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = setup(&node, "bridge");
    let mut missing = conf.clone();
    missing["nodeConfig"] = json!("/nonexistent/weft/node.json");
    assert_eq!(node.cni("STATUS", "", "", &missing).json["code"], 50);
    node.cni("STATUS", "", "", &conf).ok();
    let (keep, lose) = (Ns::new("keep"), Ns::new("lose"));
    let caps = json!({"portMappings": [{"hostPort": 7070, "containerPort": 80}]});
    node.cni("ADD", "keep", &keep.path(), &conf).ok();
    let lost_ip = Reply::ip(
        &node
            .cni("ADD", "lose", &lose.path(), &with_capabilities(&conf, caps))
            .ok(),
    );
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    node.cni("GC", "", "", &gc).ok();
    let rules = node.ruleset();
    assert!(!rules.contains(&lost_ip) && !rules.contains("7070"), "{rules}");
    assert_eq!(node.veths().len(), 1);
}

/// What the node agent runs when someone removed or changed weft-cni's table: the table comes back from the
/// journals with every pod's masquerade and port mapping, and a DEL afterwards still removes the pod's.
#[test]
fn restore_rebuilds_the_table_from_the_journals() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = setup(&node, "routed");
    let (web, client) = (Ns::new("web"), Ns::new("client"));
    let caps = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let web_ip = Reply::ip(
        &node
            .cni("ADD", "web", &web.path(), &with_capabilities(&conf, caps.clone()))
            .ok(),
    );
    let client_ip = Reply::ip(&node.cni("ADD", "client", &client.path(), &conf).ok());
    let before = node.ruleset();
    node.ns.ok(&["nft", "delete", "table", "inet", "weft-cni"]);
    let state_dir = std::path::PathBuf::from(node.state_dir());
    let restored = node
        .ns
        .netns()
        .run(|| {
            Ok(weft_cni::firewall::restore(
                &state_dir,
                "10.244.0.0/16".parse().unwrap(),
            ))
        })
        .unwrap()
        .unwrap();
    assert_eq!(restored.skipped, 0, "{restored:?}");
    assert_eq!(node.ruleset(), before, "the table as ADD left it");
    for ip in [&web_ip, &client_ip] {
        assert!(before.contains(&format!("{ip} : jump masq-weft-")), "{before}");
    }
    assert!(before.contains(&format!("tcp . 8080 : {web_ip} . 80")), "{before}");
    node.cni("DEL", "web", &web.path(), &with_capabilities(&conf, caps))
        .ok();
    let after = node.ruleset();
    assert!(!after.contains(&web_ip), "{after}");
    assert!(after.contains(&format!("{client_ip} : jump masq-weft-")), "{after}");
}
