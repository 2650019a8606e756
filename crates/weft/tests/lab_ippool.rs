//! IP pools' encapsulation modes, live, on a lab whose nodes are on two subnets (`lab up --subnets 2`: node-1
//! and node-2 on 172.18.0.0/24, node-3 behind the router on 172.18.2.0/24): `kubectl apply` of the default
//! pool's `vxlanMode` moves each node's routes between the VXLAN device and the uplink while an established
//! connection keeps working both ways; CrossSubnet encapsulates only towards the other subnet; Never cannot reach
//! across and says so on the pool and the Node. The tests share one lab and take turns (each sets its mode).

mod lab;

use lab::*;
use serde_json::Value;
use std::sync::Mutex;
use std::time::Instant;

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: node-1
  containers: [{name: echo, image: alpine/socat, command: [socat, 'TCP-LISTEN:9000,fork,reuseaddr', 'EXEC:cat']}]
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec:
  nodeName: node-2
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeName: node-3
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
";

const POOL: &str = "default-ipv4-ippool";

/// One mode at a time: the tests change the same pool.
static TURN: Mutex<()> = Mutex::new(());

fn lab() -> Option<&'static Lab> {
    shared_with(&["--nodes", "3", "--subnets", "2", "--overlay", "vxlan"], PODS)
}

/// `kubectl apply` of the default pool with `mode`, as a user changes it.
fn set_mode(lab: &Lab, mode: &str) {
    let file = std::env::temp_dir().join(format!("weft-{}-ippool.yaml", lab.name));
    let pool = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {POOL}}}\nspec: {{cidr: 10.244.0.0/16, vxlanMode: {mode}}}\n"
    );
    std::fs::write(&file, pool).unwrap();
    let _remove = Remove(file.clone());
    lab.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

/// The device `node` routes `cidr` by (weft's routes: protocol 247), None without a route.
fn route_dev(lab: &Lab, node: &str, cidr: &str) -> Option<String> {
    let out = lab.node_exec(node, &["ip", "-4", "route", "show", cidr, "proto", "247"]);
    let line = text(&out.stdout);
    let mut words = line.split_whitespace();
    words.find(|w| *w == "dev")?;
    words.next().map(str::to_string)
}

/// Waits until node-2's routes to node-1's and node-3's pods leave by `to_1` and `to_3` (None: no route), and
/// returns `ip route` of node-2 then.
fn wait_routes(lab: &Lab, what: &str, to_1: Option<&str>, to_3: Option<&str>) -> String {
    let started = Instant::now();
    lab.wait(10, what, || {
        let have = (
            route_dev(lab, "node-2", "10.244.1.0/24"),
            route_dev(lab, "node-2", "10.244.3.0/24"),
        );
        (have.0.as_deref() == to_1 && have.1.as_deref() == to_3).then_some(())
    });
    eprintln!("{what}: {:?} after the apply", started.elapsed());
    text(&lab.node_exec("node-2", &["ip", "-4", "route"]).stdout)
}

/// The pool's condition of `type_` (status, reason, message).
fn pool_condition(lab: &Lab, type_: &str) -> Option<(String, String, String)> {
    let pool = lab.get_json(&["ippool", POOL]);
    let conditions = pool["status"]["conditions"].as_array()?.clone();
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((field("status"), field("reason"), field("message")))
}

/// The agents' PodsUnreachable Events (on Nodes, in `default`).
fn unreachable_events(lab: &Lab) -> Vec<Value> {
    let events = lab.get_json(&["events", "-n", "default"]);
    let items = events["items"].as_array().cloned().unwrap_or_default();
    items.into_iter().filter(|e| e["reason"] == "PodsUnreachable").collect()
}

fn reaches_server(lab: &Lab, from: &str) -> bool {
    let server = format!("tcp://{}:9000", ip(&lab.pod("server")));
    lab.reaches(from, &server, "1s")
}

#[test]
fn flipping_the_pool_mode_keeps_an_established_connection_and_moves_the_routes() {
    let Some(lab) = lab() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // The lab's overlay made the default pool: vxlan is Always.
    let pool = lab.get_json(&["ippools", POOL]);
    assert_eq!(pool["spec"]["cidr"], "10.244.0.0/16");
    set_mode(lab, "Always");
    wait_routes(lab, "Always: VXLAN to both", Some("weft.1"), Some("weft.1"));
    lab.ready_pods();
    let mut held = Connection::open(lab, "near", &format!("{}:9000", ip(&lab.pod("server"))));
    assert_eq!(held.echo("vxlan"), "vxlan");

    set_mode(lab, "CrossSubnet");
    let routes = wait_routes(lab, "CrossSubnet", Some("eth0"), Some("weft.1"));
    assert!(routes.contains("10.244.1.0/24 via 172.18.0.11 dev eth0"), "{routes}");
    assert_eq!(held.echo("direct"), "direct", "the connection after VXLAN → direct");

    set_mode(lab, "Always");
    let routes = wait_routes(lab, "Always again", Some("weft.1"), Some("weft.1"));
    assert!(routes.contains("10.244.1.0/24 via 10.244.1.0 dev weft.1"), "{routes}");
    assert_eq!(
        held.echo("vxlan again"),
        "vxlan again",
        "the connection after direct → VXLAN"
    );
    assert!(
        reaches_server(lab, "far"),
        "node-3's pods across the router, through VXLAN"
    );
}

#[test]
fn cross_subnet_encapsulates_only_between_subnets() {
    let Some(lab) = lab() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    set_mode(lab, "CrossSubnet");
    wait_routes(lab, "CrossSubnet", Some("eth0"), Some("weft.1"));
    // node-3 is across the router from both others: VXLAN to each.
    lab.wait(10, "node-3 tunnels to both", || {
        let to_1 = route_dev(lab, "node-3", "10.244.1.0/24");
        let to_2 = route_dev(lab, "node-3", "10.244.2.0/24");
        (to_1.as_deref() == Some("weft.1") && to_2.as_deref() == Some("weft.1")).then_some(())
    });
    // Drift repair puts a deleted route back as the pool says, not as the lab's overlay flag says.
    let deleted = lab.node_exec("node-2", &["ip", "route", "del", "10.244.1.0/24"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    wait_routes(lab, "the deleted route repaired", Some("eth0"), Some("weft.1"));
    lab.ready_pods();
    assert!(reaches_server(lab, "near"), "directly within a subnet");
    assert!(reaches_server(lab, "far"), "through VXLAN across the router");
    let (status, reason, _) = lab.wait(10, "Routable", || pool_condition(lab, "Routable"));
    assert_eq!((status.as_str(), reason.as_str()), ("True", "CrossSubnet"));
}

#[test]
fn never_across_subnets_says_which_nodes_cannot_be_reached() {
    let Some(lab) = lab() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    set_mode(lab, "Never");
    let routes = wait_routes(lab, "Never", Some("eth0"), None);
    assert!(!routes.contains("weft.1"), "no VXLAN device: {routes}");
    let (_, _, message) = lab.wait(10, "the pool to say Routable False", || {
        pool_condition(lab, "Routable")
            .filter(|(status, reason, _)| status == "False" && reason == "NodesOnDifferentSubnets")
    });
    assert!(
        message.contains("172.18.0.0/24 (node-1, node-2); 172.18.2.0/24 (node-3)"),
        "{message}"
    );
    // node-3's own Event names the nodes it cannot reach.
    let event = lab.wait(10, "the PodsUnreachable Event on node-3", || {
        unreachable_events(lab)
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "node-3")
    });
    let text = event["message"].as_str().unwrap();
    assert!(text.contains("node-1") && text.contains("node-2"), "{text}");
    lab.ready_pods();
    assert!(
        reaches_server(lab, "near"),
        "within the subnet pods still reach each other"
    );
    assert!(!reaches_server(lab, "far"), "across the router they cannot");

    // Back to a mode that reaches: the condition and the Event go.
    set_mode(lab, "CrossSubnet");
    lab.wait(10, "Routable True again", || {
        pool_condition(lab, "Routable").filter(|(status, _, _)| status == "True")
    });
    lab.wait(10, "the Event removed", || {
        unreachable_events(lab).is_empty().then_some(())
    });
    assert!(reaches_server(lab, "far"));
}
