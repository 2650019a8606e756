//! The upstream network-policy end-to-end model: namespaces x, y, z with pods a, b, c serving TCP 80 and 81,
//! every pod probing every pod, the expected matrix computed by weft's policy model (the same one `weft trace`
//! uses) and checked against real probes, with a readable diff when they disagree. A few cells are also
//! asserted by hand so the model is not only checked against itself.

mod lab;

use lab::*;
use std::collections::BTreeMap;
use weft_model::{Snapshot, manifest::from_value};
use weft_policy::{Cluster, Endpoint, Protocol, decide};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn cluster() -> String {
    let mut text = String::new();
    for ns in NAMESPACES {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{ns}\", labels: {{ns: \"{ns}\"}}}}\n"
        ));
        for (i, pod) in PODS.iter().enumerate() {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: \"{ns}\", labels: {{pod: {pod}}}}}\nspec:\n  nodeName: node-{}\n  containers: [{{name: s, image: agnhost, ports: [{{name: serve-80, containerPort: 80}}, {{name: serve-81, containerPort: 81}}]}}]\n",
                i + 1
            ));
        }
    }
    text
}

type Matrix = BTreeMap<(String, String), bool>;

fn names() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// What the model says for every pair on `port`.
fn expected(lab: &Lab, port: u16) -> Matrix {
    let mut objects = Vec::new();
    for kind in ["pods", "namespaces", "networkpolicies"] {
        let list: serde_json::Value = serde_json::from_str(&lab.ok(&["get", kind, "-A", "-o", "json"])).unwrap();
        objects.extend(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| from_value(v.clone()).unwrap()),
        );
    }
    let snap = Snapshot::new(0, objects);
    let c = Cluster::index(&snap);
    let mut m = Matrix::new();
    for from in names() {
        for to in names() {
            let pod = |q: &str| {
                let (ns, name) = q.split_once('/').unwrap();
                c.pod(ns, name).unwrap()
            };
            let d = decide(
                &c,
                &Endpoint::Pod(pod(&from)),
                &Endpoint::Pod(pod(&to)),
                port,
                Protocol::Tcp,
            );
            m.insert((from.clone(), to.clone()), d.allowed());
        }
    }
    m
}

/// What real connections do, 27 probes at a time.
fn probed(lab: &Lab, port: u16, ips: &BTreeMap<String, String>) -> Matrix {
    let pairs: Vec<(String, String)> = names()
        .iter()
        .flat_map(|f| names().into_iter().map(move |t| (f.clone(), t)))
        .collect();
    let mut m = Matrix::new();
    for chunk in pairs.chunks(27) {
        let results: Vec<((String, String), bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(from, to)| {
                    s.spawn(move || {
                        let (ns, pod) = from.split_once('/').unwrap();
                        let target = format!("tcp://{}:{port}", ips[to]);
                        let out = lab.weft(&[
                            "exec",
                            "-n",
                            ns,
                            pod,
                            "--",
                            "weft",
                            "probe",
                            "--timeout",
                            "500ms",
                            &target,
                        ]);
                        ((from.clone(), to.clone()), out.status.success())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        m.extend(results);
    }
    m
}

fn render(m: &Matrix, other: &Matrix) -> String {
    let mut out = format!("{:>5}", "");
    for to in names() {
        out.push_str(&format!(" {to:>4}"));
    }
    for from in names() {
        out.push_str(&format!("\n{from:>5}"));
        for to in names() {
            let k = (from.clone(), to.clone());
            let cell = match (m[&k], m[&k] == other[&k]) {
                (true, true) => ".",
                (false, true) => "X",
                (true, false) => "!.",
                (false, false) => "!X",
            };
            out.push_str(&format!(" {cell:>4}"));
        }
    }
    out
}

/// Checks probes against the model on `port`, re-probing disagreeing cells once (a loaded machine may lose a
/// connect), and returns the matrix.
fn check(lab: &Lab, case: &str, port: u16, ips: &BTreeMap<String, String>) -> Matrix {
    let want = expected(lab, port);
    lab.wait(15, &format!("{case}: probes to agree with the model"), || {
        let got = probed(lab, port, ips);
        if got == want {
            return Some(got);
        }
        eprintln!(
            "{case} port {port} (. allowed, X denied, ! disagrees):\nexpected\n{}\nprobed\n{}",
            render(&want, &got),
            render(&got, &want)
        );
        None
    })
}

fn allowed(m: &Matrix, from: &str, to: &str) -> bool {
    m[&(from.to_string(), to.to_string())]
}

fn policy(lab: &Lab, yaml: &str) {
    let out = lab.apply(yaml);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn truth_table() {
    if !is_root() {
        return;
    }
    let lab = Lab::up(3, "host-gw", &cluster());
    let pods = lab.ready_pods();
    let ips: BTreeMap<String, String> = pods
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p["metadata"]["namespace"].as_str().unwrap(), name(p)),
                ip(p),
            )
        })
        .collect();

    let m = check(&lab, "no policy", 80, &ips);
    assert!(m.values().all(|v| *v));

    policy(
        &lab,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: \"x\"}\nspec: {podSelector: {}}\n",
    );
    let m = check(&lab, "default deny ingress in x", 80, &ips);
    assert!(!allowed(&m, "y/a", "x/a") && !allowed(&m, "x/b", "x/a") && allowed(&m, "x/a", "y/b"));

    policy(
        &lab,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-y, namespace: \"x\"}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]}]\n",
    );
    let m = check(&lab, "allow x/a from namespace y", 80, &ips);
    assert!(allowed(&m, "y/c", "x/a") && !allowed(&m, "z/c", "x/a") && !allowed(&m, "y/c", "x/b"));

    policy(
        &lab,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-anywhere, namespace: \"x\"}\nspec:\n  podSelector: {matchLabels: {pod: b}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}], ports: [{port: serve-81}]}]\n",
    );
    for port in [80, 81] {
        let m = check(&lab, "x/b from pods b anywhere, named port serve-81", port, &ips);
        assert_eq!(allowed(&m, "z/b", "x/b"), port == 81);
        assert!(!allowed(&m, "z/a", "x/b"));
    }

    policy(
        &lab,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: z-egress, namespace: \"z\"}\nspec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}}], ports: [{port: 80}]}]\n",
    );
    let m = check(
        &lab,
        "z egress only to 10.244/16 minus node-2's pods, port 80",
        80,
        &ips,
    );
    assert!(
        allowed(&m, "z/a", "y/a") && !allowed(&m, "z/a", "y/b"),
        "y/b runs on node-2 (10.244.2.x)"
    );
    let m = check(&lab, "the same on port 81", 81, &ips);
    assert!(!allowed(&m, "z/a", "y/a"));

    // Label change: x/c gets the pod label b and with it the b-anywhere policy's ingress rules.
    lab.ok(&["delete", "networkpolicy", "-n", "z", "z-egress"]);
    let relabelled = cluster().replace(
        "metadata: {name: c, namespace: \"x\", labels: {pod: c}}",
        "metadata: {name: c, namespace: \"x\", labels: {pod: b}}",
    );
    policy(&lab, &relabelled);
    let m = check(&lab, "x/c relabelled pod=b", 81, &ips);
    assert!(allowed(&m, "y/b", "x/c"));
}
