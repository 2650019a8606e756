//! `weft observe` and `weft lab capture` on a real lab: flows named by the agents (a policy drop names its
//! policy, a ClusterIP connection its Service and backend pod), merged across nodes, and a pcap of VXLAN that
//! tshark decodes down to the inner packet.

mod lab;

use lab::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const APP: &str = concat!(
    include_str!("lab/policy_app.yaml"),
    "---\n",
    include_str!("lab/access_nginx.yaml")
);

fn lab() -> Option<&'static Lab> {
    shared(2, "vxlan", APP)
}

/// The flows `weft observe ARGS -o json --last 0` prints.
fn flows(lab: &Lab, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["observe", "-o", "json", "--last", "0"];
    all.extend_from_slice(args);
    lab.ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_denied_connection_is_dropped_naming_its_policy() {
    let Some(lab) = lab() else { return };
    let nginx = format!("http://{}/", ip(&lab.pod("nginx")));
    lab.wait(20, "the policy to deny `other`", || {
        (!lab.reaches("other", &nginx, "1s")).then_some(())
    });
    let drop = lab.wait(10, "a DROPPED flow", || {
        flows(lab, &["--verdict", "DROPPED", "--pod", "other"]).pop()
    });
    assert_eq!(drop["event"], "drop", "{drop}");
    assert_eq!(drop["node"], "node-1", "dropped where nginx is isolated: {drop}");
    assert_eq!(drop["source"]["name"], "other", "{drop}");
    assert_eq!(drop["destination"]["name"], "nginx", "{drop}");
    assert_eq!(drop["destination"]["port"], 80, "{drop}");
    assert_eq!(drop["policy"]["direction"], "Ingress", "{drop}");
    assert_eq!(
        drop["policy"]["policies"],
        serde_json::json!(["default/access-nginx"]),
        "{drop}"
    );
    // The table names the policy too.
    let table = lab.ok(&["observe", "--verdict", "dropped", "--pod", "other"]);
    assert!(
        table.contains("ingress of default/nginx by default/access-nginx"),
        "{table}"
    );
}

#[test]
fn a_connection_through_a_cluster_ip_names_its_service_and_backend() {
    let Some(lab) = lab() else { return };
    let svc = lab.get_json(&["svc", "nginx"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let url = format!("http://{cluster_ip}/");
    lab.wait(20, "the Service", || lab.reaches("allowed", &url, "1s").then_some(()));
    let flow = lab.wait(10, "a TRANSLATED flow", || {
        flows(lab, &["--service", "nginx", "--verdict", "TRANSLATED", "--port", "80"]).pop()
    });
    assert_eq!(flow["node"], "node-2", "seen where the client is: {flow}");
    assert_eq!(flow["protocol"], "TCP");
    assert_eq!(flow["source"]["name"], "allowed", "{flow}");
    assert_eq!(flow["service"]["name"], "nginx", "{flow}");
    assert_eq!(flow["service"]["ip"], cluster_ip.as_str(), "{flow}");
    assert_eq!(flow["destination"]["kind"], "pod", "{flow}");
    assert_eq!(flow["destination"]["name"], "nginx", "the backend: {flow}");
    // Node-1, where nginx runs, sees the same connection already translated.
    let there = flows(lab, &["--pod", "allowed", "--verdict", "FORWARDED", "--port", "80"]);
    assert!(there.iter().any(|f| f["node"] == "node-1"), "{there:?}");
}

#[test]
fn follow_streams_new_flows() {
    let Some(lab) = lab() else { return };
    let mut child = lab
        .cmd(&[
            "observe",
            "--follow",
            "-o",
            "json",
            "--pod",
            "other",
            "--verdict",
            "DROPPED",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let nginx = format!("http://{}/", ip(&lab.pod("nginx")));
    // Attempts until the stream (started before or while they run) shows one.
    let line = lab.wait(20, "a followed drop", || {
        lab.reaches("other", &nginx, "1s");
        rx.try_recv().ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    let flow: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(flow["verdict"], "DROPPED", "{flow}");
}

#[test]
fn a_capture_of_cross_node_http_over_vxlan_shows_two_ip_headers() {
    let Some(lab) = lab() else { return };
    let file = std::env::temp_dir().join(format!("weft-{}-vxlan.pcap", lab.name));
    let _remove = Remove(file.clone());
    let mut capture = lab
        .cmd(&[
            "lab",
            "capture",
            "wire",
            "-w",
            file.to_str().unwrap(),
            "-c",
            "10",
            "udp",
            "port",
            "4789",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The header is written once the socket listens.
    lab.wait(10, "the capture to start", || {
        (std::fs::metadata(&file).ok()?.len() >= 24).then_some(())
    });
    let nginx = format!("http://{}/", ip(&lab.pod("nginx")));
    lab.wait(20, "ten VXLAN packets", || {
        assert!(
            lab.reaches("allowed", &nginx, "1s"),
            "allowed reaches nginx across nodes"
        );
        capture.try_wait().unwrap().map(|status| assert!(status.success()))
    });
    // tshark decodes UDP 4789 as VXLAN unasked: the outer (nodes') and the inner (pods') IP headers.
    let out = std::process::Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .output()
        .expect("tshark (scripts/deps.sh installs it)");
    let fields = text(&out.stdout);
    let first = fields
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no HTTP request decoded: {}", text(&out.stderr)));
    let allowed = ip(&lab.pod("allowed"));
    let nginx_ip = ip(&lab.pod("nginx"));
    assert_eq!(
        first,
        format!("172.18.0.12,{allowed}\t172.18.0.11,{nginx_ip}"),
        "node-2 to node-1 outside, allowed to nginx inside"
    );
}
