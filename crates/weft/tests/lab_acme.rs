//! `weft lab up --acme`: pebble and its DNS on the external host, which resolves every name to the first
//! LoadBalancer address and trusts pebble's directory and roots without `-k`; `lab down` stops them. Then weft certs
//! against it as cert-manager against Let's Encrypt: solvers chosen by their selectors, one adding its path to an
//! existing Ingress, the Events cert-manager records, and the failures (a challenge pebble refuses, a name no
//! solver serves) in the Challenge, Order and Certificate. Root only.

mod lab;

use lab::{Lab, repo, root, text};
use serde_json::Value;
use std::collections::BTreeSet;

const DIRECTORY: &str = "https://172.18.0.100:14000/dir";

#[test]
fn lab_up_acme_runs_pebble_on_the_external_host() {
    if !root() {
        return;
    }
    let lab = Lab::start(&["--bare", "--nodes", "1", "--acme"], "");
    let external = |command: &[&str]| {
        let mut args = vec!["lab", "exec", "external", "--"];
        args.extend_from_slice(command);
        lab.ok(&args)
    };
    // The directory answers over HTTPS, verified with the external host's bundle (no -k).
    let directory = external(&["curl", "-sS", "--max-time", "5", DIRECTORY]);
    assert!(directory.contains("\"newOrder\""), "{directory}");
    // Any name resolves to the lab's first LoadBalancer address, through pebble's DNS.
    let hosts = external(&["getent", "hosts", "blue.weft.test"]);
    assert!(hosts.starts_with("172.18.1.1 "), "{hosts}");
    // The bundle holds the root pebble issues under (fetched again from its management interface).
    let root_pem = external(&["curl", "-sS", "--max-time", "5", "https://172.18.0.100:15000/roots/0"]);
    let bundle = external(&["cat", "/etc/ssl/certs/ca-certificates.crt"]);
    assert!(root_pem.contains("BEGIN CERTIFICATE") && bundle.contains(root_pem.trim()));
    let status = lab.ok(&["lab", "status"]);
    assert!(status.contains(&format!("acme:       {DIRECTORY}")), "{status}");
    // Nodes (and the pods behind them) reach the directory with the lab's CA file, as an Issuer's caBundle.
    let ca = format!("/run/weft/labs/{}/acme/ca.pem", lab.name);
    let out = lab.node_exec(
        "node-1",
        &["curl", "-sS", "--max-time", "5", "--cacert", &ca, DIRECTORY],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = format!("/run/weft/labs/{}/acme/config.json", lab.name);
    lab.down();
    let left = std::process::Command::new("pgrep")
        .args(["-f", &config])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "pebble outlived lab down: {}",
        text(&left.stdout)
    );
}

/// The issuer: green.weft.test by the solver that edits the Ingress `blue-green`, the rest of weft.test by a solver
/// Ingress of its own; nothing else.
const ISSUER: &str = r#"
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: pebble}
spec:
  acme:
    server: https://172.18.0.100:14000/dir
    email: admin@weft.test
    caBundle: CA_BUNDLE
    privateKeySecretRef: {name: pebble-account}
    solvers:
    - selector: {dnsZones: [weft.test]}
      http01: {ingress: {ingressClassName: nginx}}
    - selector: {dnsNames: [green.weft.test]}
      http01: {ingress: {name: blue-green}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: blue-green}
spec:
  ingressClassName: nginx
  rules:
  - host: blue.weft.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: blue, port: {number: 80}}}}
  - host: green.weft.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: green, port: {number: 80}}}}
"#;

fn certificate(name: &str, names: &[&str]) -> String {
    format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}}}\nspec:\n  secretName: {name}-tls\n  \
         issuerRef: {{name: pebble}}\n  dnsNames: [{}]\n",
        names.join(", ")
    )
}

/// A condition of an object: (status, reason, message); empty while there is none.
fn condition(object: &Value, kind: &str) -> (String, String, String) {
    let conditions = object["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let found = conditions.iter().find(|c| c["type"] == kind);
    let field = |f: &str| found.and_then(|c| c[f].as_str()).unwrap_or_default().to_string();
    (field("status"), field("reason"), field("message"))
}

/// The events of the object `name`: "TYPE REASON MESSAGE" lines.
fn events(lab: &Lab, name: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name}");
    let list = lab.get_json(&["events", "--field-selector", &selector]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {} {}",
                e["type"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Every item of a list whose `path` (a JSON pointer) is `value`.
fn items_where(list: &Value, path: &str, value: &str) -> Vec<Value> {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|i| i.pointer(path).and_then(Value::as_str) == Some(value))
        .collect()
}

#[test]
fn acme_solvers_by_selector_one_editing_an_ingress_and_failures_in_challenge_order_and_certificate() {
    if !root() {
        return;
    }
    let lab = Lab::start(&["--nodes", "1", "--acme"], "");
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/ingress.yaml")]);
    let load_balancer = r#"{"spec":{"type":"LoadBalancer"}}"#;
    lab.kubectl_ok(&[
        "patch",
        "-n",
        "weft-ingress",
        "service",
        "weft-ingress",
        "-p",
        load_balancer,
    ]);
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/certs.yaml")]);
    let ca = std::fs::read(format!("/run/weft/labs/{}/acme/ca.pem", lab.name)).unwrap();
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca);
    let applied = lab.apply(&ISSUER.replace("CA_BUNDLE", &ca));
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let original = lab.get_json(&["ingress", "blue-green"])["spec"].clone();
    for deployment in ["weft-ingress -n weft-ingress", "weft-certs -n weft-certs"] {
        let target = format!("deployment/{deployment}");
        let mut args = vec!["rollout", "status", "--timeout=60s"];
        args.extend(target.split(' '));
        lab.kubectl_ok(&args);
    }

    // The issuer's account: Ready, and its URL on the issuer as cert-manager keeps it.
    let issuer = lab.wait(30, "the ACME issuer Ready", || {
        let issuer = lab.get_json(&["issuer", "pebble"]);
        (condition(&issuer, "Ready").1 == "ACMEAccountRegistered").then_some(issuer)
    });
    let uri = issuer["status"]["acme"]["uri"].as_str().unwrap_or_default();
    assert!(uri.starts_with("https://172.18.0.100:14000/"), "{issuer}");
    assert_eq!(issuer["status"]["acme"]["lastRegisteredEmail"], "admin@weft.test");

    // blue by the zone's solver (an Ingress of its own), green by the named one (a path added to blue-green),
    // watched while the order runs.
    // The Ingresses sampled as fast as kubectl answers while the order runs (the edit lasts a second or two): one
    // line per Ingress, "NAME HOST=PATHS;HOST=PATHS;".
    let format = r#"jsonpath={range .items[*]}{.metadata.name} {range .spec.rules[*]}{.host}={.http.paths[*].path};{end}{"\n"}{end}"#;
    let issued = std::sync::atomic::AtomicBool::new(false);
    let lines = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut lines = Vec::new();
            while !issued.load(std::sync::atomic::Ordering::Relaxed) {
                let out = lab.kubectl(&["get", "ingress", "-o", format]);
                lines.extend(text(&out.stdout).lines().map(String::from));
            }
            lines
        });
        let applied = lab.apply(&certificate("blue-green", &["blue.weft.test", "green.weft.test"]));
        assert!(applied.status.success(), "{}", text(&applied.stderr));
        lab.wait(60, "the Certificate issued", || {
            let certificate = lab.get_json(&["certificate", "blue-green"]);
            (condition(&certificate, "Ready").0 == "True").then_some(())
        });
        issued.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap()
    });
    let (mut edited, mut solver_hosts) = (false, BTreeSet::new());
    for line in &lines {
        let (name, rules) = line.split_once(' ').unwrap_or((line, ""));
        for (host, paths) in rules.split(';').filter_map(|r| r.split_once('=')) {
            if name.starts_with("cm-acme-http-solver-") {
                solver_hosts.insert(host.to_string());
            } else if name == "blue-green" && paths.contains("/.well-known/acme-challenge/") {
                assert_eq!(host, "green.weft.test", "{line}");
                edited = true;
            }
        }
    }
    assert!(edited, "the challenge path was never seen in the Ingress blue-green");
    assert_eq!(solver_hosts, BTreeSet::from(["blue.weft.test".to_string()]));
    // The path is gone again: the Ingress is as it was.
    lab.wait(10, "the Ingress blue-green as it was", || {
        (lab.get_json(&["ingress", "blue-green"])["spec"] == original).then_some(())
    });
    // Events as cert-manager records them, on the Order and its CertificateRequest (of one name), its Challenges
    // and the Certificate.
    let order = lab.get_json(&["orders"])["items"][0].clone();
    let order_name = order["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let order_events = events(&lab, &order_name);
    let created = format!("Normal OrderCreated Created Order resource default/{order_name}");
    for expected in [
        created.as_str(),
        "Normal CertificateIssued Certificate fetched from issuer successfully",
        "Normal Created Created Challenge resource",
        "for domain \"green.weft.test\"",
        "for domain \"blue.weft.test\"",
        "Normal Complete Order completed successfully",
    ] {
        assert!(
            order_events.iter().any(|e| e.contains(expected)),
            "{expected}: {order_events:?}"
        );
    }
    let challenge = order_events
        .iter()
        .find_map(|e| {
            e.strip_prefix("Normal Created Created Challenge resource \"")?
                .split('"')
                .next()
        })
        .unwrap()
        .to_string();
    let challenge_events = events(&lab, &challenge);
    for expected in [
        "Normal Started",
        "Normal Presented Presented challenge using HTTP-01",
        "Normal DomainVerified",
    ] {
        assert!(
            challenge_events.iter().any(|e| e.starts_with(expected)),
            "{expected}: {challenge_events:?}"
        );
    }
    let certificate_events = events(&lab, "blue-green");
    for expected in [
        "Normal Issuing",
        "Normal Generated",
        "Normal Requested",
        "Normal Issuing The certificate has been successfully issued",
    ] {
        assert!(
            certificate_events.iter().any(|e| e.starts_with(expected)),
            "{expected}: {certificate_events:?}"
        );
    }

    // pebble refuses a challenge: red.weft.test resolves (for pebble) to the external host, where nothing serves
    // port 80, while weft's self-check passes through the Ingress.
    let record = r#"{"host":"red.weft.test","addresses":["172.18.0.100"]}"#;
    let out = lab.node_exec(
        "external",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-d",
            record,
            "http://172.18.0.100:8055/add-a",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A name no solver serves.
    for (name, names) in [("red", ["red.weft.test"]), ("stranger", ["stranger.example"])] {
        let applied = lab.apply(&certificate(name, &names));
        assert!(applied.status.success(), "{}", text(&applied.stderr));
    }
    let (challenge, order) = lab.wait(40, "red's Challenge and Order invalid", || {
        let challenges = lab.get_json(&["challenges"]);
        let challenge = items_where(&challenges, "/spec/dnsName", "red.weft.test")
            .into_iter()
            .find(|c| c["status"]["state"] == "invalid")?;
        let owner = challenge["metadata"]["labels"]["acme.cert-manager.io/order-name"]
            .as_str()?
            .to_string();
        let order = lab.get_json(&["order", &owner]);
        (order["status"]["state"] == "invalid").then_some((challenge, order))
    });
    let reason = challenge["status"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(reason.contains("refused"), "{challenge}");
    assert!(
        order["status"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("red.weft.test"),
        "{order}"
    );
    let challenge_name = challenge["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let challenge_events = events(&lab, &challenge_name);
    assert!(
        challenge_events
            .iter()
            .any(|e| e.starts_with("Warning Failed Accepting challenge authorization failed:")),
        "{challenge_events:?}"
    );
    let red = lab.wait(30, "red's Certificate failed", || {
        let certificate = lab.get_json(&["certificate", "red"]);
        (condition(&certificate, "Issuing").1 == "Failed").then_some(certificate)
    });
    assert_eq!(condition(&red, "Ready").0, "False");
    assert_eq!(condition(&red, "Ready").1, "DoesNotExist");
    assert!(condition(&red, "Issuing").2.contains("invalid"), "{red}");
    assert!(
        events(&lab, "red")
            .iter()
            .any(|e| e.starts_with("Warning Failed The certificate request has failed"))
    );

    let order = lab.wait(20, "stranger's Order errored", || {
        let orders = lab.get_json(&["orders"]);
        orders["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["spec"]["dnsNames"][0] == "stranger.example" && o["status"]["state"] == "errored")
            .cloned()
    });
    let reason = order["status"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("Failed to determine a valid solver configuration for the set of domains on the Order"),
        "{order}"
    );
    let order_events = events(&lab, order["metadata"]["name"].as_str().unwrap_or_default());
    assert!(
        order_events
            .iter()
            .any(|e| e.starts_with("Warning Solver Failed to determine")),
        "{order_events:?}"
    );
    assert!(
        lab.get_json(&["challenges"])["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["spec"]["dnsName"] != "stranger.example")
    );
    let stranger = lab.wait(20, "stranger's Certificate failed", || {
        let certificate = lab.get_json(&["certificate", "stranger"]);
        (condition(&certificate, "Issuing").1 == "Failed").then_some(certificate)
    });
    assert_eq!(condition(&stranger, "Ready").1, "DoesNotExist");
    let restarts = lab.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "weft-certs",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(restarts, "0", "weft certs never restarted");
}
