//! The real kubectl against a lab, end to end: apply twice keeps what strategic merge must keep, every patch
//! type, logs -f, get -w, rollout status, `-o name` round trips, raw requests, 401 without credentials, and invalid
//! objects refused whole. One lab for the binary, with a kubeconfig of its own.

mod lab;

use lab::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `web` (weft serve, which logs each request) and a client pod.
fn lab() -> Option<&'static Lab> {
    let lab = shared(2, "host-gw", WEB)?;
    Some(lab)
}

/// A Deployment with named container ports, probes and one env var of value `value`.
fn api_deployment(value: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
      - name: web
        image: nginx
        env: [{{name: MODE, value: \"{value}\"}}]
        ports: [{{name: http, containerPort: 80}}, {{name: metrics, containerPort: 9090}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 2}}
        livenessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 5}}
"
    )
}

fn kubectl_apply(lab: &Lab, manifest: &str) -> std::process::Output {
    let mut child = lab
        .kubectl_cmd(&["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The lines `child` writes on its stdout, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn json_of(lab: &Lab, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(&args)).unwrap()
}

#[test]
fn reapplying_a_changed_deployment_keeps_ports_and_probes() {
    let Some(lab) = lab() else { return };
    let out = kubectl_apply(lab, &api_deployment("one"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kubectl_apply(lab, &api_deployment("two"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deployment.apps/api configured"),
        "{}",
        text(&out.stdout)
    );
    let d = json_of(lab, &["get", "deployment", "api"]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["env"], json!([{"name": "MODE", "value": "two"}]));
    let ports: Vec<(&str, i64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports, [("http", 80), ("metrics", 9090)]);
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], 80);
}

#[test]
fn patches_of_every_type() {
    let Some(lab) = lab() else { return };
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: patched, labels: {keep: \"yes\"}}\ndata: {a: \"1\"}\n";
    assert!(kubectl_apply(lab, cm).status.success());
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: patched-svc}\nspec:\n  selector: {app: web}\n  \
               ports: [{name: http, port: 80}, {name: alt, port: 8080}]\n";
    assert!(kubectl_apply(lab, svc).status.success());

    // Strategic merge (the default): list entries merge by their key (a Service's ports by `port`), the rest
    // stays.
    lab.kubectl_ok(&[
        "patch",
        "svc",
        "patched-svc",
        "-p",
        r#"{"spec":{"ports":[{"port":8080,"name":"other"}]}}"#,
    ]);
    let ports = json_of(lab, &["get", "svc", "patched-svc"])["spec"]["ports"].clone();
    let named: Vec<(&str, i64)> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(named, [("http", 80), ("other", 8080)]);
    // And the notes' patch: a NodePort-less Service becomes a LoadBalancer and gets an address.
    lab.kubectl_ok(&[
        "patch",
        "svc",
        "patched-svc",
        "-p",
        r#"{"spec":{"type":"LoadBalancer"}}"#,
    ]);
    lab.wait(30, "a LoadBalancer address", || {
        let s = json_of(lab, &["get", "svc", "patched-svc"]);
        s["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });

    // JSON merge patch: maps merge, null removes.
    lab.kubectl_ok(&[
        "patch",
        "configmap",
        "patched",
        "--type=merge",
        "-p",
        r#"{"data":{"a":null,"b":"2"}}"#,
    ]);
    let c = json_of(lab, &["get", "configmap", "patched"]);
    assert_eq!(c["data"], json!({"b": "2"}));
    assert_eq!(c["metadata"]["labels"], json!({"keep": "yes"}));

    // JSON patch: operations on paths.
    lab.kubectl_ok(&[
        "patch",
        "configmap",
        "patched",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/c","value":"3"},{"op":"remove","path":"/metadata/labels/keep"}]"#,
    ]);
    let c = json_of(lab, &["get", "configmap", "patched"]);
    assert_eq!(c["data"], json!({"b": "2", "c": "3"}));
    assert!(c["metadata"]["labels"].as_object().is_none_or(|l| l.is_empty()), "{c}");
    // A patch that does not apply is refused.
    let out = lab.kubectl(&[
        "patch",
        "configmap",
        "patched",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/nosuch"}]"#,
    ]);
    assert!(!out.status.success());
}

#[test]
fn logs_follow_prints_new_lines() {
    let Some(lab) = lab() else { return };
    let pod = lab
        .kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .next()
        .expect("a web pod")
        .to_string();
    let ip = lab.kubectl_ok(&["get", &pod, "-o", "jsonpath={.status.podIP}"]);
    let mut child = lab
        .kubectl_cmd(&["logs", "-f", &pod])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    // Each request is a new line in the log, seen while kubectl keeps following.
    for n in 0..3 {
        let path = format!("/followed-{n}");
        let url = format!("http://{ip}{path}");
        lab.ok(&["exec", "client", "--", "weft", "probe", &url]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(&path) => break,
                Ok(_) => {}
                Err(e) => panic!("no log line for {path}: {e}"),
            }
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "kubectl logs -f keeps following");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn get_watch_prints_each_change_of_a_pod() {
    let Some(lab) = lab() else { return };
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{role: watched}}}}\n\
             spec: {{containers: [{{name: c, image: busybox, command: [sleep, infinity]}}]}}\n"
        )
    };
    // A first pod, so that kubectl's list shows one: once its line is out, the watch goes on from that list.
    assert!(kubectl_apply(lab, &pod("listed")).status.success());
    let mut child = lab
        .kubectl_cmd(&["get", "pods", "-l", "role=watched", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    // Each state a pod goes through is a line, in order: created Pending, then Running; deleted, Terminating.
    let mut seen = Vec::new();
    let wait_for = |name: &str, status: Option<&str>, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let mut cells = line.split_whitespace();
                    let found = cells.next() == Some(name) && (status.is_none() || cells.nth(1) == status);
                    seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!("no line of {name} {status:?}: {e}; seen {seen:?}"),
            }
        }
    };
    wait_for("listed", None, &mut seen);
    assert!(kubectl_apply(lab, &pod("watched")).status.success());
    wait_for("watched", Some("Pending"), &mut seen);
    // Pending from its first event on, as kube-apiserver creates pods (not a blank status until scheduled).
    let first = seen.iter().find(|l| l.starts_with("watched ")).unwrap();
    assert_eq!(first.split_whitespace().nth(2), Some("Pending"), "{seen:?}");
    wait_for("watched", Some("Running"), &mut seen);
    lab.kubectl_ok(&["delete", "pod", "watched", "--wait=false"]);
    wait_for("watched", Some("Terminating"), &mut seen);
    assert!(child.try_wait().unwrap().is_none(), "kubectl get -w keeps watching");
    child.kill().unwrap();
    child.wait().unwrap();
    lab.kubectl_ok(&["delete", "pod", "listed", "--wait=false"]);
}

#[test]
fn rollout_status_waits_for_the_deployment() {
    let Some(lab) = lab() else { return };
    let out = lab.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn names_round_trip_into_get_and_delete() {
    let Some(lab) = lab() else { return };
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: doomed, labels: {role: doomed}}\n\
               spec: {containers: [{name: c, image: busybox, command: [sleep, infinity]}]}\n";
    assert!(kubectl_apply(lab, pod).status.success());
    let names = lab.kubectl_ok(&["get", "pods", "-l", "role=doomed", "-o", "name"]);
    let name = names.lines().next().unwrap();
    assert_eq!(name, "pod/doomed");
    assert!(lab.kubectl_ok(&["get", name]).contains("doomed"));
    let deleted = lab.kubectl_ok(&["delete", name]);
    assert!(deleted.contains("pod \"doomed\" deleted"), "{deleted}");
    let out = lab.kubectl(&["get", name]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Error from server (NotFound): pods \"doomed\" not found"));
    // weft's own verbs take the same forms.
    let first = lab.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    let first = first.lines().next().unwrap();
    assert!(first.starts_with("pod/web-"), "{first}");
    assert!(lab.ok(&["get", first]).contains(&first["pod/".len()..]));
}

#[test]
fn raw_version() {
    let Some(lab) = lab() else { return };
    let version: Value = serde_json::from_str(&lab.kubectl_ok(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(version["major"], "1");
    assert!(
        version["gitVersion"].as_str().is_some_and(|v| v.starts_with("v1.")),
        "{version}"
    );
}

#[test]
fn no_credentials_get_401() {
    let Some(lab) = lab() else { return };
    let server = lab.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let out = std::process::Command::new("curl")
        .args(["-sk", &format!("{server}/api/v1/pods")])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 401);
    assert_eq!(status["reason"], "Unauthorized");
}

#[test]
fn invalid_objects_are_refused_and_nothing_is_stored() {
    let Some(lab) = lab() else { return };
    let bad_port = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad-port}\n\
                    spec: {containers: [{name: c, image: busybox, ports: [{containerPort: 99999}]}]}\n";
    let out = kubectl_apply(lab, bad_port);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("is invalid") && err.contains("spec.containers[0].ports[0].containerPort"),
        "{err}"
    );
    assert!(!lab.kubectl(&["get", "pod", "bad-port"]).status.success());

    // Unknown fields: kubectl asks for fieldValidation=Strict, the server names the field.
    let unknown = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad-field}\n\
                   spec: {containers: [{name: c, image: busybox, bogus: 1}]}\n";
    let out = kubectl_apply(lab, unknown);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("Error from server (BadRequest)") && err.contains("bogus"),
        "{err}"
    );
    assert!(!lab.kubectl(&["get", "pod", "bad-field"]).status.success());

    // weft apply: the server checks every object first, so nothing of a refused input is applied.
    let both = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: first-of-two}}\n---\n{unknown}");
    let out = lab.apply(&both);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("Error from server (BadRequest)"),
        "{}",
        text(&out.stderr)
    );
    assert!(!lab.kubectl(&["get", "configmap", "first-of-two"]).status.success());
}
