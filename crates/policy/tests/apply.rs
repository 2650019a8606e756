//! The policy table against the kernel, in namespaces of its own: a node routing between pods `a`, `b` and `s`,
//! a policy on `s` that admits `a` only, rewritten back and forth incrementally while `b` floods `s` and an
//! established connection from `a` carries on; then a full resync when someone removed the table.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use weft_netlink::{Netns, Route};
use weft_policy::{Cluster, Enforcer, plan};
use weft_testkit::{Ns, eventually, root};

const NODE: &str = "node-1";
const PODS: [(&str, &str, &str); 3] = [
    ("a", "10.1.1.2", "role: a"),
    ("b", "10.1.2.2", "role: b"),
    ("s", "10.1.3.2", "app: s"),
];
const SERVER: &str = "10.1.3.2:8080";

/// The pods, and with `version` 1 or 2 a policy on `s` admitting `a` on 8080 (2 also admits an address block on
/// 9090: another chain, the same verdict for `a` and `b`); version 3 is 2 with `b` relabelled `role: a`.
fn snapshot(version: u8) -> weft_model::Snapshot {
    let mut text = String::new();
    for (name, ip, label) in PODS {
        let label = if version == 3 && name == "b" { "role: a" } else { label };
        text.push_str(&format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{{label}}}}}\nspec: {{nodeName: {NODE}, containers: [{{name: c}}]}}\nstatus: {{podIP: {ip}}}\n---\n"));
    }
    let extra = if version >= 2 {
        "\n  - from: [{ipBlock: {cidr: 10.9.0.0/16}}]\n    ports: [{port: 9090}]"
    } else {
        ""
    };
    if version > 0 {
        text.push_str(&format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: s, namespace: default}}\nspec:\n  podSelector: {{matchLabels: {{app: s}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{role: a}}}}}}]\n    ports: [{{port: 8080}}]{extra}\n"));
    }
    weft_model::Snapshot::new(1, weft_model::parse(&text, "t").unwrap())
}

/// Stops the helper threads however the test ends (a failed assertion included), so the scope can end.
struct Finish<'a>(&'a [&'a AtomicBool]);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        for flag in self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// A namespace per pod, each joined to the node by a veth: pod .2/24, node .1/24, the node routing between them.
/// The first value deletes the namespaces when dropped.
fn topology() -> (Vec<Ns>, Netns, Vec<Netns>) {
    let scratch: Vec<Ns> = ["node", "a", "b", "s"].into_iter().map(Ns::new).collect();
    let node = scratch[0].netns();
    node.run(|| weft_netlink::sysctl::set("net/ipv4/ip_forward", "1"))
        .unwrap();
    let mut node_handle = node.handle().unwrap();
    let pods = PODS
        .iter()
        .enumerate()
        .map(|(i, (_, ip, _))| {
            let pod = scratch[i + 1].netns();
            let host = format!("v{i}");
            node_handle.add_veth(&host, 1500, "eth0", pod.fd(), None).unwrap();
            let gateway = format!("10.1.{}.1", i + 1);
            let mut pod_handle = pod.handle().unwrap();
            for (h, link, addr) in [
                (&mut node_handle, host.as_str(), &gateway),
                (&mut pod_handle, "eth0", &ip.to_string()),
            ] {
                let index = h.link_by_name(link).unwrap().unwrap().index;
                h.add_address(index, format!("{addr}/24").parse().unwrap()).unwrap();
                h.set_up(index).unwrap();
            }
            pod_handle
                .add_route(&Route::via("0.0.0.0/0".parse().unwrap(), gateway.parse().unwrap()))
                .unwrap();
            pod
        })
        .collect();
    (scratch, node, pods)
}

fn listing() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "weft-policy"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    assert!(
        eventually(Duration::from_secs(10), cond),
        "timed out waiting for {what}"
    );
}

#[test]
fn changes_leave_no_window_and_keep_established_connections() {
    if !root() {
        return;
    }
    let (_scratch, node, pods) = topology();
    let (a, b, s) = (&pods[0], &pods[1], &pods[2]);
    let listener = s.run(|| Ok(TcpListener::bind(SERVER).unwrap())).unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                while conn.read_exact(&mut byte).is_ok() && conn.write_all(&byte).is_ok() {}
            });
        }
    });
    let udp = s.run(|| Ok(UdpSocket::bind(SERVER).unwrap())).unwrap();
    let received = AtomicUsize::new(0);
    let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let mut enforcer = Enforcer::new();
    let mut sync = |version: u8| {
        let snap = snapshot(version);
        let rules = plan::plan(&Cluster::index(&snap), NODE);
        node.run(|| enforcer.sync(rules)).unwrap()
    };
    let connect = |from: &Netns| {
        from.run(|| {
            Ok(TcpStream::connect_timeout(
                &SERVER.parse().unwrap(),
                Duration::from_secs(2),
            ))
        })
        .unwrap()
    };
    let flood = || {
        b.run(|| {
            let socket = UdpSocket::bind("10.1.2.2:0").unwrap();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                sent += usize::from(socket.send_to(b"x", SERVER).is_ok());
            }
            Ok(sent)
        })
    };

    let flags = [&stop, &done];
    std::thread::scope(|scope| {
        let _finish = Finish(&flags);
        scope.spawn(|| {
            let mut buf = [0u8; 8];
            udp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            while !done.load(Ordering::Relaxed) {
                if udp.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        assert!(sync(0).full, "the first sync writes the whole table");
        // Without a policy, b's datagrams arrive (so the flood below can see a leak).
        let probe = scope.spawn(flood);
        wait_for("b's datagrams without a policy", || {
            received.load(Ordering::Relaxed) > 0
        });
        stop.store(true, Ordering::Relaxed);
        probe.join().unwrap().unwrap();
        stop.store(false, Ordering::Relaxed);

        let mut established = connect(a).expect("a reaches s before any policy");
        established.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let echo = |conn: &mut TcpStream| {
            let mut byte = [0u8; 1];
            conn.write_all(b"y").is_ok() && conn.read_exact(&mut byte).is_ok()
        };
        let first = sync(1);
        assert!(!first.full && first.script > 0, "{first:?}");
        let table = node.run(|| Ok(listing())).unwrap();
        assert!(table.contains("10.1.1.2") && table.contains("8080"), "{table}");
        assert!(connect(b).is_err(), "b is refused once the policy is in place");
        received.store(0, Ordering::Relaxed);
        let flooding = scope.spawn(flood);
        for i in 0..40 {
            let report = sync(if i % 2 == 0 { 2 } else { 1 });
            assert!(!report.full && report.fallback.is_none(), "{report:?}");
            assert!(echo(&mut established), "a's connection broke at change {i}");
        }
        stop.store(true, Ordering::Relaxed);
        let sent = flooding.join().unwrap().unwrap();
        assert!(sent > 1000, "the flood sent only {sent} datagrams");
        assert_eq!(
            received.load(Ordering::Relaxed),
            0,
            "datagrams of b got through during changes"
        );
        assert!(connect(a).is_ok(), "a still reaches s");
    });

    // A relabel only moves b's address into the set of a's peers: one nfnetlink batch of elements, and back.
    assert!(!sync(2).netlink, "a chain changes: through nft");
    let relabelled = sync(3);
    assert!(relabelled.netlink && !relabelled.full, "{relabelled:?}");
    assert!(connect(b).is_ok(), "b is let in once labelled like a");
    let back = sync(2);
    assert!(back.netlink, "{back:?}");
    assert!(connect(b).is_err(), "b is refused again");

    // Someone removes our table: the next incremental sync fails and a full one follows.
    node.run(|| weft_netlink::nft::run(&["delete", "table", "inet", "weft-policy"], "").map(drop))
        .unwrap();
    let healed = sync(1);
    assert!(healed.full && healed.fallback.is_some(), "{healed:?}");
    let table = node.run(|| Ok(listing())).unwrap();
    assert!(table.contains("tcp dport 8080") && !table.contains("9090"), "{table}");
}
