//! The bridge + host-local chain through the real binary, in throwaway namespaces.

mod common;

use common::{Node, Ns, Reply, root};
use serde_json::json;

fn ping(from: &Ns, to: &str) -> bool {
    from.run(&["ping", "-c1", "-W2", to]).status.success()
}

#[test]
fn two_pods_on_one_bridge_ping_each_other_and_the_gateway() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.1.0", "10.250.0.0/24");
    let (a, b) = (Ns::new("pa"), Ns::new("pb"));
    let ra = node.cni("ADD", "ctr-a", &a.path(), &conf).ok();
    let rb = node.cni("ADD", "ctr-b", &b.path(), &conf).ok();
    let (ip_a, ip_b) = (Reply::ip(&ra), Reply::ip(&rb));
    assert_ne!(ip_a, ip_b);
    assert_eq!(ra["ips"][0]["gateway"], "10.250.0.1");
    assert!(ping(&a, &ip_b), "pod a cannot reach pod b at {ip_b}");
    assert!(ping(&b, &ip_a), "pod b cannot reach pod a at {ip_a}");
    assert!(ping(&a, "10.250.0.1"), "pod a cannot reach the gateway");
    // The default route goes via the gateway, so the node's own address is reachable too.
    assert!(ping(&a, node.addr), "pod a cannot reach the node address");
    // The result names the bridge, the host veth and the pod interface with its sandbox.
    assert_eq!(ra["interfaces"][0]["name"], "cni0");
    assert_eq!(ra["interfaces"][2]["name"], "eth0");
    assert_eq!(ra["interfaces"][2]["sandbox"], a.path());
    assert_eq!(ra["ips"][0]["interface"], 2);
}

#[test]
fn bridge_mac_stays_put_as_ports_come_and_go() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.0.0", "10.250.1.0/24");
    let mac = |n: &Node| n.ns.ok(&["cat", "/sys/class/net/cni0/address"]);
    let pods: Vec<Ns> = (0..3).map(|i| Ns::new(&format!("p{i}"))).collect();
    node.cni("ADD", "c0", &pods[0].path(), &conf).ok();
    let first = mac(&node);
    node.cni("ADD", "c1", &pods[1].path(), &conf).ok();
    node.cni("DEL", "c0", &pods[0].path(), &conf).ok();
    node.cni("ADD", "c2", &pods[2].path(), &conf).ok();
    assert_eq!(mac(&node), first);
    assert_eq!(
        first.trim(),
        "0a:58:0a:fa:01:01",
        "the bridge MAC encodes the gateway address"
    );
}

#[test]
fn check_passes_after_add_and_fails_once_the_veth_is_deleted() {
    if !root() {
        return;
    }
    let node = Node::new();
    let mut conf = node.bridge_conf("1.0.0", "10.250.2.0/24");
    let pod = Ns::new("pod");
    let result = node.cni("ADD", "ctr", &pod.path(), &conf).ok();
    conf["prevResult"] = result;
    node.cni("CHECK", "ctr", &pod.path(), &conf).ok();
    pod.ok(&["ip", "link", "del", "eth0"]);
    let reply = node.cni("CHECK", "ctr", &pod.path(), &conf);
    assert_ne!(reply.code, 0);
    assert!(
        reply.json["msg"].as_str().unwrap().contains("missing"),
        "{}",
        reply.json
    );
}

#[test]
fn del_removes_veth_reservation_and_rules_and_is_idempotent() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.0.0", "10.250.3.0/24");
    let pod = Ns::new("pod");
    let ip = Reply::ip(&node.cni("ADD", "ctr", &pod.path(), &conf).ok());
    assert_eq!(node.veths().len(), 1);
    assert_eq!(node.reservations("cbr0"), vec![ip.clone()]);
    assert!(
        node.ruleset().contains(&ip),
        "masquerade element for {ip} missing:\n{}",
        node.ruleset()
    );
    node.cni("DEL", "ctr", &pod.path(), &conf).ok();
    assert!(node.veths().is_empty(), "veths left: {:?}", node.veths());
    assert!(node.reservations("cbr0").is_empty());
    assert!(
        !node.ruleset().contains(&ip),
        "rules still mention {ip}:\n{}",
        node.ruleset()
    );
    assert!(pod.ok(&["ip", "-o", "link"]).lines().all(|l| !l.contains("eth0")));
    node.cni("DEL", "ctr", &pod.path(), &conf).ok();
}

#[test]
fn del_after_the_netns_is_gone_frees_the_address() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.0.0", "10.250.4.0/24");
    let pod = Ns::new("pod");
    let path = pod.path();
    node.cni("ADD", "ctr", &path, &conf).ok();
    drop(pod);
    node.cni("DEL", "ctr", &path, &conf).ok();
    node.cni("DEL", "ctr", "", &conf).ok();
    assert!(node.reservations("cbr0").is_empty());
    assert!(node.veths().is_empty());
}

#[test]
fn every_version_gets_a_result_of_its_own_shape() {
    if !root() {
        return;
    }
    let node = Node::new();
    for (i, version) in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let conf = node.bridge_conf(version, "10.250.5.0/24");
        let pod = Ns::new("v");
        let id = format!("ctr{i}");
        let r = node.cni("ADD", &id, &pod.path(), &conf).ok();
        assert_eq!(r["cniVersion"], *version);
        match *version {
            "0.1.0" | "0.2.0" => {
                assert!(r["ip4"]["ip"].as_str().unwrap().starts_with("10.250.5."), "{r}");
                assert!(r.get("ips").is_none());
            }
            "0.3.0" | "0.3.1" | "0.4.0" => assert_eq!(r["ips"][0]["version"], "4", "{version}: {r}"),
            _ => assert!(r["ips"][0].get("version").is_none(), "{version}: {r}"),
        }
        node.cni("DEL", &id, &pod.path(), &conf).ok();
    }
    let version = node.cni("VERSION", "", "", &json!({})).ok();
    assert_eq!(version["supportedVersions"].as_array().unwrap().len(), 7);
}

#[test]
fn a_hundred_concurrent_adds_get_a_hundred_distinct_addresses() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.0.0", "10.251.0.0/16");
    let pods: Vec<Ns> = (0..100).map(|i| Ns::new(&format!("c{i}"))).collect();
    let ips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || Reply::ip(&node.cni("ADD", &format!("ctr{i}"), &pod.path(), conf).ok()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: std::collections::BTreeSet<_> = ips.iter().collect();
    assert_eq!(distinct.len(), 100, "duplicate addresses: {ips:?}");
    assert_eq!(node.reservations("cbr0").len(), 100);
    assert_eq!(node.veths().len(), 100);
}

#[test]
fn exhausted_range_gives_a_clear_error_and_status_50() {
    if !root() {
        return;
    }
    let node = Node::new();
    // A /30 has two usable addresses; the gateway takes one.
    let conf = node.bridge_conf("1.1.0", "10.250.6.0/30");
    let (a, b) = (Ns::new("a"), Ns::new("b"));
    node.cni("STATUS", "", "", &conf).ok();
    node.cni("ADD", "a", &a.path(), &conf).ok();
    let full = node.cni("ADD", "b", &b.path(), &conf);
    assert_ne!(full.code, 0);
    assert!(
        full.json["msg"].as_str().unwrap().contains("10.250.6.0/30"),
        "{}",
        full.json
    );
    assert!(node.veths().len() == 1, "a failed ADD left links: {:?}", node.veths());
    let status = node.cni("STATUS", "", "", &conf);
    assert_eq!(status.json["code"], 50, "{}", status.json);
    node.cni("DEL", "a", &a.path(), &conf).ok();
    node.cni("STATUS", "", "", &conf).ok();
}

/// The pid of this node's nfnetlink releaser (see `detach.rs`), if one runs.
fn releaser(node: &Node) -> Option<u32> {
    let out = node.ns.ok(&["ss", "-xlpn"]);
    let line = out.lines().find(|l| l.contains("@weft-cni/nfnetlink-release"))?;
    let pid = line.split("pid=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?;
    pid.parse().ok()
}

#[test]
fn del_then_an_immediate_add_of_the_same_attachment_works_and_the_pod_pings() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.0.0", "10.250.7.0/24");
    let (pod, other) = (Ns::new("pod"), Ns::new("other"));
    let ip_other = Reply::ip(&node.cni("ADD", "other", &other.path(), &conf).ok());
    for round in 0..3 {
        let ip = Reply::ip(&node.cni("ADD", "ctr", &pod.path(), &conf).ok());
        assert!(ping(&pod, &ip_other), "round {round}: the pod cannot reach {ip_other}");
        assert!(ping(&other, &ip), "round {round}: {ip} is not reachable");
        // Looked up from this process right as DEL returns (an `ip` exec would be too slow to notice):
        // the host veth's name and the pod's eth0 must be free then, though the kernel may still be freeing
        // the old pair, so the same container ID and ifname can be added again at once.
        let mut host = weft_netlink::Netns::open(&node.ns.path()).unwrap().handle().unwrap();
        let mut in_pod = weft_netlink::Netns::open(&pod.path()).unwrap().handle().unwrap();
        // The helper that deletes the link is held back, so a DEL that did not wait for the kernel's
        // announcement would return with the link still there.
        let delay = [(weft_cni::detach::TEST_DELAY_ENV, "200")];
        node.cni_as(common::BIN, "DEL", "ctr", &pod.path(), &conf, &delay).ok();
        let veth = weft_cni::attach::host_veth_name("ctr", "eth0");
        assert_eq!(
            host.link_by_name(&veth).unwrap(),
            None,
            "round {round}: {veth} outlived DEL"
        );
        assert_eq!(
            in_pod.link_by_name("eth0").unwrap(),
            None,
            "round {round}: eth0 outlived DEL"
        );
        assert_eq!(node.veths().len(), 1, "round {round}: {:?}", node.veths());
        assert!(
            pod.ok(&["ip", "-o", "link"]).lines().all(|l| !l.contains("eth0")),
            "round {round}: eth0 is still in the pod after DEL"
        );
        assert!(
            !node.ruleset().contains(&format!("{ip} :")),
            "round {round}: {ip} still masqueraded"
        );
    }
    let ip = Reply::ip(&node.cni("ADD", "ctr", &pod.path(), &conf).ok());
    assert!(ping(&other, &ip), "after the last re-ADD {ip} is not reachable");
    assert!(
        ping(&pod, &ip_other),
        "after the last re-ADD the pod cannot reach {ip_other}"
    );
    assert!(
        ping(&pod, "10.250.7.1"),
        "after the last re-ADD the pod cannot reach the gateway"
    );
}

#[test]
fn concurrent_dels_leave_nothing_behind_at_return_and_the_releaser_holds_no_pipes_and_exits() {
    if !root() {
        return;
    }
    let node = Node::new();
    let conf = node.bridge_conf("1.0.0", "10.251.0.0/16");
    let pods: Vec<Ns> = (0..40).map(|i| Ns::new(&format!("d{i}"))).collect();
    for (i, pod) in pods.iter().enumerate() {
        node.cni("ADD", &format!("ctr{i}"), &pod.path(), &conf).ok();
    }
    assert_eq!(node.veths().len(), 40);
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || node.cni("DEL", &format!("ctr{i}"), &pod.path(), conf).ok());
        }
    });
    // Every DEL has returned (and its stdout reached EOF): everything is gone already.
    assert!(node.veths().is_empty(), "veths left: {:?}", node.veths());
    assert!(node.reservations("cbr0").is_empty());
    assert!(
        !node.ruleset().contains(" : jump masq-"),
        "elements left:\n{}",
        node.ruleset()
    );
    for pod in &pods {
        assert!(pod.ok(&["ip", "-o", "link"]).lines().all(|l| !l.contains("eth0")));
    }
    // The releaser keeps the nfnetlink sockets, nothing of the runtime's: no pipe, no terminal.
    let mut seen = false;
    for attempt in 0..5 {
        if attempt > 0 {
            let pod = Ns::new("r");
            node.cni("ADD", "r", &pod.path(), &conf).ok();
            node.cni("DEL", "r", &pod.path(), &conf).ok();
        }
        let Some(pid) = releaser(&node) else { continue };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let targets: Vec<String> = fds
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|t| t.display().to_string())
            .collect();
        assert!(
            targets.iter().all(|t| t.starts_with("socket:")),
            "the releaser holds more than sockets: {targets:?}"
        );
        seen = true;
        break;
    }
    assert!(seen, "no releaser was seen after DEL");
    assert!(
        common::eventually(std::time::Duration::from_secs(10), || releaser(&node).is_none()),
        "the releaser did not exit once idle"
    );
}
