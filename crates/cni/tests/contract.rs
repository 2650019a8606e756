//! The CNI contract around the plugins: bad input, program-name dispatch, GC and crash safety.

mod common;

use common::{BIN, Node, Ns, Reply, TempDir, eventually, root};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the binary directly (no namespace): every case here must fail before touching the kernel.
fn call(env: &[(&str, &str)], stdin: &str) -> Reply {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plugin may exit before reading stdin (e.g. bad environment), closing the pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    Reply::from(child.wait_with_output().unwrap())
}

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/nonexistent/netns"),
    ("CNI_IFNAME", "eth0"),
];

fn bridge(ipam: Value) -> String {
    json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "ipam": ipam}).to_string()
}

#[test]
fn bad_input_gets_the_right_code_and_names_the_problem() {
    let host_local = |extra: Value| {
        let mut ipam = json!({"type": "host-local", "dataDir": "/nonexistent/weft-test"});
        ipam.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        bridge(ipam)
    };
    // (what, environment, stdin, expected code, what the message must name)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u64, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", ADD.to_vec(), "{\"cniVersion\":".into(), 6, "not valid JSON"),
        ("not an object", ADD.to_vec(), "[1,2]".into(), 6, "JSON object"),
        ("missing CNI_COMMAND", vec![], "{}".into(), 4, "CNI_COMMAND"),
        ("missing CNI_NETNS", ADD.iter().copied().filter(|(k, _)| *k != "CNI_NETNS").collect(), bridge(json!({})), 4, "CNI_NETNS"),
        ("missing CNI_IFNAME", ADD.iter().copied().filter(|(k, _)| *k != "CNI_IFNAME").collect(), bridge(json!({})), 4, "CNI_IFNAME"),
        ("unknown CNI_ARGS key", [ADD, &[("CNI_ARGS", "BOGUS=1")]].concat(), bridge(json!({})), 4, "BOGUS"),
        ("unsupported version", ADD.to_vec(), r#"{"cniVersion":"2.0.0","name":"n","type":"bridge"}"#.into(), 1, "2.0.0"),
        ("unknown plugin type", ADD.to_vec(), r#"{"cniVersion":"1.0.0","name":"n","type":"ovs"}"#.into(), 7, "ovs"),
        ("wrong type for name", ADD.to_vec(), r#"{"cniVersion":"1.0.0","name":5,"type":"bridge"}"#.into(), 7, "name"),
        (
            "wrong type for hairpinMode",
            ADD.to_vec(),
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","hairpinMode":"yes","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#.into(),
            7,
            "hairpinMode",
        ),
        (
            "unknown bridge key",
            ADD.to_vec(),
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","vlanTrunk":[],"ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#.into(),
            2,
            "vlanTrunk",
        ),
        ("subnet is not a CIDR", ADD.to_vec(), host_local(json!({"subnet": "10.0.0.0/33"})), 7, "subnet"),
        ("rangeStart outside the subnet", ADD.to_vec(), host_local(json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"})), 7, "rangeStart"),
        ("gateway outside the subnet", ADD.to_vec(), host_local(json!({"subnet": "10.0.0.0/24", "gateway": "10.9.0.1"})), 7, "gateway"),
        ("bridge needs ipam", ADD.to_vec(), r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#.into(), 7, "ipam"),
        ("port mapping with port 0", ADD.to_vec(), json!({"cniVersion":"1.0.0","name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]},"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}}).to_string(), 7, "hostPort"),
        ("bandwidth rate without burst", ADD.to_vec(), json!({"cniVersion":"1.0.0","name":"n","type":"bandwidth","ingressRate":1000000,"prevResult":{"cniVersion":"1.0.0"}}).to_string(), 7, "urst"),
    ];
    for (what, env, stdin, code, needle) in cases {
        let reply = call(&env, &stdin);
        assert_ne!(reply.code, 0, "{what}: succeeded");
        assert_eq!(reply.json["code"], code, "{what}: {}", reply.json);
        let msg = format!("{} {}", reply.json["msg"], reply.json["details"]);
        assert!(msg.contains(needle), "{what}: message does not name {needle:?}: {msg}");
        assert!(
            reply.stderr.is_empty() || !reply.stderr.contains("panicked"),
            "{what}: panicked: {}",
            reply.stderr
        );
    }
}

#[test]
fn program_name_selects_the_plugin_type() {
    let dir = TempDir::new("bin");
    let link = dir.path().join("loopback");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    // Config says bridge, but called as `loopback` the plugin is loopback: its DEL needs no config keys.
    let mut child = Command::new(&link)
        .env_clear()
        .envs([
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#)
        .unwrap();
    let reply = Reply::from(child.wait_with_output().unwrap());
    assert_eq!(reply.code, 0, "{}", reply.json);
    // Called as weft-cni, the same config is a bridge config without ipam: refused.
    let reply = call(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ],
        r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
    );
    assert_eq!(reply.json["code"], 7);
}

#[test]
fn gc_frees_what_no_valid_attachment_owns() {
    if !root() {
        return;
    }
    let node = Node::new();
    let mut conf = node.bridge_conf("1.1.0", "10.252.0.0/24");
    let (keep, lose) = (Ns::new("keep"), Ns::new("lose"));
    let kept = Reply::ip(&node.cni("ADD", "keep", &keep.path(), &conf).ok());
    let lost = Reply::ip(&node.cni("ADD", "lose", &lose.path(), &conf).ok());
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    node.cni("GC", "", "", &conf).ok();
    assert_eq!(node.reservations("cbr0"), vec![kept.clone()]);
    let rules = node.ruleset();
    assert!(rules.contains(&kept) && !rules.contains(&lost), "{rules}");
    assert_eq!(
        node.veths().len(),
        1,
        "the lost attachment's veth stays until its netns goes: GC removes it"
    );
}

/// Kills ADD at spread-out moments; whatever each kill leaves, GC with no valid attachment removes.
#[test]
fn sigkill_in_the_middle_of_add_leaves_nothing_gc_does_not_remove() {
    if !root() {
        return;
    }
    let node = Node::new();
    let mut conf = node.bridge_conf("1.1.0", "10.252.1.0/24");
    // Warm up: the bridge and table exist, so kills land in the per-pod work.
    let warm = Ns::new("warm");
    node.cni("ADD", "warm", &warm.path(), &conf).ok();
    let mut pods = Vec::new();
    for i in 0..30u64 {
        let pod = Ns::new("k");
        let mut child = node.start(BIN, "ADD", &format!("kill{i}"), &pod.path(), &conf, &[]);
        std::thread::sleep(Duration::from_micros(200 * i)); // spread the kill points over the ADD
        let _ = child.kill();
        let _ = child.wait();
        pods.push(pod);
    }
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "warm", "ifname": "eth0"}]);
    node.cni("GC", "", "", &conf).ok();
    let warm_ip = node.reservations("cbr0");
    assert_eq!(warm_ip.len(), 1, "reservations left: {warm_ip:?}");
    assert!(
        eventually(Duration::from_secs(2), || node.veths().len() == 1),
        "veths left: {:?}",
        node.veths()
    );
    let leftover: Vec<String> = std::fs::read_dir(node.dir.path().join("ipam/cbr0"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftover.is_empty(), "temporary files left: {leftover:?}");
}
