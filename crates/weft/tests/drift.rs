//! Drift repair: what a node's agent owns in the kernel, removed or altered by hand on the node as an admin (or
//! firewalld) would, comes back without any object changing; a connection NetworkPolicy denies stays denied and
//! one allowed through a ClusterIP works again; `weft trace` does not claim DENIED while the rules are gone.

mod lab;

use lab::*;
use std::process::Command;

/// The nginx pod and Service, an allowed and another client, and the policy that lets only the allowed one in.
const APP: &str = concat!(
    include_str!("lab/policy_app.yaml"),
    "---\n",
    include_str!("lab/access_nginx.yaml")
);

/// Runs a command on a node and asserts it succeeded; its stdout.
fn on(lab: &Lab, node: &str, command: &[&str]) -> String {
    let out = lab.node_exec(node, command);
    assert!(
        out.status.success(),
        "{command:?} on {node}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Polls until `command` on `node` succeeds with stdout satisfying `ok`.
fn until_on(lab: &Lab, node: &str, command: &[&str], what: &str, ok: impl Fn(&str) -> bool) {
    lab.wait(20, what, || {
        let out = lab.node_exec(node, command);
        (out.status.success() && ok(&text(&out.stdout))).then_some(())
    });
}

fn tables(lab: &Lab, node: &str) -> String {
    text(&lab.node_exec(node, &["nft", "list", "tables"]).stdout)
}

fn all_tables(listing: &str) -> bool {
    ["table inet weft\n", "table inet weft-policy\n", "table inet weft-cni\n"]
        .iter()
        .all(|t| listing.contains(t))
}

/// The app with its policy enforced, the Service working: (nginx's address, the ClusterIP).
fn app(lab: &Lab) -> (String, String) {
    lab.ready_pods();
    let nginx = format!("http://{}/", ip(&lab.pod("nginx")));
    let svc: serde_json::Value = serde_json::from_str(&lab.ok(&["get", "svc", "nginx", "-o", "json"])).unwrap();
    let service = format!("http://{}/", svc["spec"]["clusterIP"].as_str().unwrap());
    lab.wait(30, "the Service", || {
        lab.reaches("allowed", &service, "1s").then_some(())
    });
    lab.wait(30, "the policy", || (!lab.reaches("other", &nginx, "1s")).then_some(()));
    (nginx, service)
}

fn signal(pid: i32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn flushed_ruleset_comes_back_and_trace_says_when_policy_is_not_enforced() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", APP);
    let (nginx, service) = app(&lab);
    let trace = |from: &str| {
        text(
            &lab.weft(&["trace", from, &format!("{}:80", service_ip(&service))])
                .stdout,
        )
    };
    assert!(trace("other").contains("DENIED"), "{}", trace("other"));

    // With node-1's agent stopped, its flushed policy is nowhere: trace must not say DENIED.
    let agent = lab.agent_pid("node-1");
    signal(agent, "-STOP");
    on(&lab, "node-1", &["nft", "flush", "ruleset"]);
    let restoring = trace("other");
    signal(agent, "-CONT");
    assert!(!restoring.contains("DENIED:"), "{restoring}");
    assert!(
        restoring.contains("policy not enforced on node-1: restoring"),
        "{restoring}"
    );

    // Resumed, it repairs from the notifications it missed; then both nodes at once.
    lab.wait(20, "node-1's tables", || {
        all_tables(&tables(&lab, "node-1")).then_some(())
    });
    for node in ["node-1", "node-2"] {
        on(&lab, node, &["nft", "flush", "ruleset"]);
    }
    for node in ["node-1", "node-2"] {
        lab.wait(20, "the tables", || all_tables(&tables(&lab, node)).then_some(()));
    }
    assert!(
        !lab.reaches("other", &nginx, "1s"),
        "denied before, denied after the repair"
    );
    assert!(!lab.reaches("other", &service, "1s"));
    lab.wait(20, "the Service after the repair", || {
        lab.reaches("allowed", &service, "1s").then_some(())
    });
    assert!(trace("other").contains("DENIED"), "{}", trace("other"));

    // weft-cni's table, rebuilt with every pod's masquerade from its journals.
    let nginx_ip = ip(&lab.pod("nginx"));
    on(&lab, "node-1", &["nft", "delete", "table", "inet", "weft-cni"]);
    until_on(
        &lab,
        "node-1",
        &["nft", "list", "map", "inet", "weft-cni", "masq4"],
        "masq4",
        |m| m.contains(&format!("{nginx_ip} : jump masq-")),
    );

    // Altered rather than removed: a chain of each table flushed, a policy element deleted.
    for (table, chain) in [
        ("weft", "services"),
        ("weft-policy", "forward"),
        ("weft-cni", "postrouting"),
    ] {
        let before = on(&lab, "node-1", &["nft", "list", "chain", "inet", table, chain]);
        on(&lab, "node-1", &["nft", "flush", "chain", "inet", table, chain]);
        until_on(
            &lab,
            "node-1",
            &["nft", "list", "chain", "inet", table, chain],
            chain,
            |now| now == before,
        );
    }
    let element = format!("{{ {nginx_ip} }}");
    on(
        &lab,
        "node-1",
        &[
            "nft",
            "delete",
            "element",
            "inet",
            "weft-policy",
            "ingress-pods",
            &element,
        ],
    );
    until_on(
        &lab,
        "node-1",
        &["nft", "list", "map", "inet", "weft-policy", "ingress-pods"],
        "the pod's isolation",
        |m| m.contains(&format!("{nginx_ip} : jump ing-")),
    );
    assert!(!lab.reaches("other", &nginx, "1s"));
    assert!(lab.reaches("allowed", &service, "1s"));
}

fn service_ip(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

#[test]
fn overlay_routes_device_neighbours_fdb_notrack_table_and_sysctls_come_back() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "vxlan", APP);
    let (nginx, service) = app(&lab);
    let routes = || on(&lab, "node-2", &["ip", "route", "show", "proto", "247"]);
    let want_routes = routes();
    assert!(want_routes.contains("weft.1"), "{want_routes}");
    let neighbours = || {
        on(
            &lab,
            "node-2",
            &["ip", "neigh", "show", "dev", "weft.1", "nud", "permanent"],
        )
    };
    let fdb = || on(&lab, "node-2", &["bridge", "fdb", "show", "dev", "weft.1"]);
    let (want_neighbours, want_fdb) = (neighbours(), fdb());
    // The overlay's own datagrams skip conntrack; the table comes back whole when deleted.
    let notrack = || {
        text(
            &lab.node_exec("node-2", &["nft", "list", "table", "inet", "weft-overlay"])
                .stdout,
        )
    };
    let want_notrack = notrack();
    assert!(want_notrack.contains("udp dport 4789 notrack"), "{want_notrack}");
    on(&lab, "node-2", &["nft", "delete", "table", "inet", "weft-overlay"]);
    lab.wait(20, "the overlay's nftables table", || {
        (notrack() == want_notrack).then_some(())
    });

    let dst = want_routes.split_whitespace().next().unwrap().to_string();
    on(&lab, "node-2", &["ip", "route", "del", &dst, "proto", "247"]);
    lab.wait(20, "the route", || (routes() == want_routes).then_some(()));

    let neighbour = want_neighbours.split_whitespace().next().unwrap().to_string();
    on(&lab, "node-2", &["ip", "neigh", "del", &neighbour, "dev", "weft.1"]);
    lab.wait(20, "the neighbour", || (neighbours() == want_neighbours).then_some(()));

    let entry: Vec<&str> = want_fdb.lines().next().unwrap().split_whitespace().collect();
    let (mac, remote) = (entry[0], entry[entry.iter().position(|w| *w == "dst").unwrap() + 1]);
    on(
        &lab,
        "node-2",
        &["bridge", "fdb", "del", mac, "dev", "weft.1", "dst", remote],
    );
    lab.wait(20, "the fdb entry", || (fdb() == want_fdb).then_some(()));

    on(&lab, "node-2", &["ip", "link", "set", "weft.1", "mtu", "1300"]);
    lab.wait(20, "the device's MTU", || {
        (!on(&lab, "node-2", &["ip", "link", "show", "weft.1"]).contains("mtu 1300")).then_some(())
    });

    on(&lab, "node-2", &["ip", "link", "del", "weft.1"]);
    lab.wait(20, "the device and its routes", || {
        (routes() == want_routes && neighbours() == want_neighbours && fdb() == want_fdb).then_some(())
    });

    on(&lab, "node-2", &["sysctl", "-w", "net.ipv4.ip_forward=0"]);
    until_on(
        &lab,
        "node-2",
        &["sysctl", "-n", "net.ipv4.ip_forward"],
        "ip_forward",
        |v| v.trim() == "1",
    );

    assert!(!lab.reaches("other", &nginx, "1s"));
    lab.wait(20, "the Service across the repaired overlay", || {
        lab.reaches("allowed", &service, "1s").then_some(())
    });
}
