//! The Gateway API conformance cases of tests/gateway/core.yaml, black-box against one lab: deploy/gateway.yaml
//! and deploy/ingress.yaml installed as a user would, the suite's base fixtures (tests/gateway/base.yaml), a
//! Gateway per case, every case's objects applied at once, then each case's route statuses and requests
//! (curl from the lab's external host to the Gateway's address) checked, polling until they hold. The result
//! of every case is printed (docs/gateway-conformance.md lists them by upstream test).

mod lab;

use lab::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    gateway: String,
    #[serde(default)]
    listeners: Option<Vec<Value>>,
    /// The Gateway's `spec.addresses`.
    #[serde(default)]
    addresses: Option<Vec<Value>>,
    objects: String,
    #[serde(default)]
    routes: Vec<RouteExpectation>,
    #[serde(default)]
    requests: Vec<Request>,
    #[serde(default)]
    listener_status: Vec<ListenerExpectation>,
    /// EndpointSlices the suite fills in itself (ServiceTypes): made once the pods run.
    #[serde(default)]
    endpoint_slices: Vec<ManualSlice>,
    /// TLS Secrets (self-signed, made with openssl) in the infra namespace, made before the objects.
    #[serde(default)]
    certificates: Vec<Certificate>,
    #[serde(default)]
    gateway_status: Vec<GatewayExpectation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayExpectation {
    /// Gateway (default) or ListenerSet.
    kind: Option<String>,
    /// Default: the case's Gateway.
    gateway: Option<String>,
    /// Reasons of the Gateway's conditions.
    accepted: Option<String>,
    programmed: Option<String>,
    /// The address its status must list.
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Certificate {
    name: String,
    /// Default: the infra namespace.
    namespace: Option<String>,
    hosts: Vec<String>,
    /// Signed by a CA of its own, whose certificate goes in ConfigMap `{name}-ca` (`ca.crt`), instead of
    /// self-signed.
    #[serde(default)]
    ca: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListenerExpectation {
    /// Gateway (default) or ListenerSet.
    kind: Option<String>,
    /// Default: the case's Gateway.
    gateway: Option<String>,
    name: String,
    attached_routes: Option<i64>,
    /// Reasons of the listener's conditions.
    accepted: Option<String>,
    programmed: Option<String>,
    resolved_refs: Option<String>,
}

/// An EndpointSlice `{service}-ip4` of Service `service` (port `first-port`, 3000) listing the ready pods
/// labelled `app: {app}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManualSlice {
    service: String,
    app: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteExpectation {
    /// Default HTTPRoute.
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    accepted: Option<String>,
    resolved_refs: Option<String>,
    /// The reason of PartiallyInvalid (True), or `none` for no such condition.
    partially_invalid: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Request {
    /// Another Gateway (in the infra namespace) to send it to.
    gateway: Option<String>,
    host: Option<String>,
    /// The Gateway's port (default 80, or 443 with `https`).
    port: Option<u16>,
    /// Over TLS to port 443, the host the SNI.
    #[serde(default)]
    https: bool,
    /// Over TLS, a server name other than the host (a connection made for one name, used for another).
    sni: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    method: Option<String>,
    status: Option<u16>,
    backend: Option<String>,
    backend_path: Option<String>,
    /// The Host the backend must get.
    backend_host: Option<String>,
    /// The protocol the backend must get the request in (`HTTP/1.1`, `HTTP/2.0`).
    backend_proto: Option<String>,
    #[serde(default)]
    backend_headers: BTreeMap<String, String>,
    #[serde(default)]
    absent_headers: Vec<String>,
    location: Option<String>,
    /// Response headers (name: value) and those that must be absent.
    #[serde(default)]
    response_headers: BTreeMap<String, String>,
    #[serde(default)]
    absent_response_headers: Vec<String>,
    /// The Gateway answers itself (a CORS preflight): no echo body to check.
    #[serde(default)]
    no_backend: bool,
    /// Deployments (by their `app` label) whose echo server must log the request (RequestMirror).
    #[serde(default)]
    mirrored_to: Vec<String>,
    /// Deployments (by their `app` label) whose echo server must log the request exactly this many times
    /// (HTTPRoute retries).
    #[serde(default)]
    tries: BTreeMap<String, usize>,
    /// HTTP/2 with prior knowledge in cleartext (h2c), as a gRPC client calls: POST with `content-type:
    /// application/grpc` in `headers`.
    #[serde(default)]
    http2: bool,
    /// A WebSocket upgrade instead of a plain request: switched (101), and a message sent after it comes back.
    #[serde(default)]
    websocket: bool,
}

const INFRA: &str = "gateway-conformance-infra";

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

fn gateway(case: &Case) -> String {
    let listeners = case
        .listeners
        .clone()
        .unwrap_or_else(|| vec![serde_json::json!({"name": "http", "port": 80, "protocol": "HTTP"})]);
    let mut gateway = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": case.gateway, "namespace": INFRA},
        "spec": {"gatewayClassName": "weft", "listeners": listeners},
    });
    if let Some(addresses) = &case.addresses {
        gateway["spec"]["addresses"] = addresses.clone().into();
    }
    serde_saphyr::to_string(&gateway).unwrap()
}

/// What is wrong with a WebSocket exchange through the Gateway (none: the upgrade is switched and a text
/// message sent after it comes back): the upgrade request, a masked text frame and a close frame written raw with
/// socat from the external host, as a WebSocket client sends them.
fn websocket_problem(lab: &Lab, address: &str, port: u16, host: &str, path: &str) -> Option<String> {
    let mut bytes = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    let mask = [1u8, 2, 3, 4];
    bytes.extend_from_slice(&[0x81, 0x84]);
    bytes.extend_from_slice(&mask);
    bytes.extend(b"weft".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    bytes.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]);
    // Every byte as an octal escape of printf's format: nothing for a shell to quote.
    let format: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
    // ignoreeof: the client keeps its side open (a proxy may close a half-closed connection before it answers)
    // until the backend, having answered the close frame, ends the connection.
    let script = format!("printf '{format}' | timeout 5 socat -t 0.2 -,ignoreeof TCP:{address}:{port}");
    let out = lab.node_exec("external", &["sh", "-c", &script]).stdout;
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Some(format!("no answer to the upgrade: {}", text(&out)));
    };
    let head = text(&out[..end]);
    if !head.starts_with("HTTP/1.1 101") {
        return Some(format!("answered {head}"));
    }
    let echoed = [&[0x81, 0x04][..], b"weft", &[0x88, 0x00]].concat();
    (out[end + 4..] != echoed[..]).then(|| format!("after the upgrade got {:?}", &out[end + 4..]))
}

/// What is wrong with the answer to `r` (none: it is as expected).
fn check(lab: &Lab, address: &str, r: &Request) -> Option<String> {
    let host = r.host.clone().unwrap_or_else(|| address.to_string());
    let port = r.port.unwrap_or(if r.https { 443 } else { 80 });
    if r.websocket {
        return websocket_problem(lab, address, port, &host, &r.path);
    }
    let sni = r.sni.clone().unwrap_or_else(|| host.clone());
    let url = match r.https {
        true => format!("https://{sni}:{port}{}", r.path),
        false => format!("http://{address}:{port}{}", r.path),
    };
    let mut args = vec![
        "curl".to_string(),
        "-sS".into(),
        "--max-time".into(),
        "5".into(),
        "-D".into(),
        "-".into(),
        "-H".into(),
        format!("Host: {host}"),
    ];
    for (name, value) in &r.headers {
        args.extend(["-H".into(), format!("{name}: {value}")]);
    }
    if let Some(method) = &r.method {
        args.extend(["-X".into(), method.clone()]);
    }
    if r.http2 {
        args.push("--http2-prior-knowledge".into());
    }
    if r.https {
        // The Secrets are self-signed: what is checked is which listener (by SNI) and route answer.
        args.extend(["-k".into(), "--resolve".into(), format!("{sni}:{port}:{address}")]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = text(&lab.node_exec("external", &args).stdout);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let expected = r.status.unwrap_or(200);
    if status != expected {
        return Some(format!("status {status}, expected {expected}"));
    }
    let response_header = |name: &str| {
        let values: Vec<&str> = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    if let Some(location) = &r.location
        && response_header("location").as_deref() != Some(location.as_str())
    {
        return Some(format!(
            "location {:?}, expected {location}",
            response_header("location")
        ));
    }
    for (name, value) in &r.response_headers {
        if response_header(name).as_deref() != Some(value.as_str()) {
            return Some(format!(
                "response {name}: {:?}, expected {value}",
                response_header(name)
            ));
        }
    }
    for name in &r.absent_response_headers {
        if response_header(name).is_some() {
            return Some(format!("response has {name}, expected none"));
        }
    }
    if status != 200 || r.no_backend {
        return None;
    }
    let Ok(echo) = serde_json::from_str::<Value>(body) else {
        return Some(format!("not the echo server's answer: {body}"));
    };
    if let Some(backend) = &r.backend
        && !echo["pod"].as_str().unwrap_or_default().starts_with(backend.as_str())
    {
        return Some(format!("answered by {}, expected {backend}", echo["pod"]));
    }
    let path = r.backend_path.clone().unwrap_or_else(|| r.path.clone());
    if echo["path"] != path.as_str() {
        return Some(format!("backend got path {}, expected {path}", echo["path"]));
    }
    if let Some(host) = &r.backend_host
        && echo["host"] != host.as_str()
    {
        return Some(format!("backend got host {}, expected {host}", echo["host"]));
    }
    if let Some(proto) = &r.backend_proto
        && echo["proto"] != proto.as_str()
    {
        return Some(format!("backend got {}, expected {proto}", echo["proto"]));
    }
    let header = |name: &str| {
        echo["headers"].as_object().and_then(|h| {
            h.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
    };
    for (name, value) in &r.backend_headers {
        if header(name).as_deref() != Some(value.as_str()) {
            return Some(format!("backend got {name}: {:?}, expected {value}", header(name)));
        }
    }
    for name in &r.absent_headers {
        if header(name).is_some() {
            return Some(format!("backend got {name}, expected none"));
        }
    }
    None
}

/// The address of Gateway `name` once it is Programmed.
fn address(lab: &Lab, name: &str) -> String {
    lab.wait(60, &format!("Gateway {name}'s address"), || {
        let g = lab.get_json(&["gateway", "-n", INFRA, name]);
        let programmed = g["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Programmed" && c["status"] == "True"));
        let address = g["status"]["addresses"][0]["value"].as_str().map(str::to_string);
        address.filter(|_| programmed)
    })
}

/// What is wrong with a listener's status (none: it is as expected).
fn listener_problem(lab: &Lab, gateway: &str, l: &ListenerExpectation) -> Option<String> {
    let g = lab.get_json(&[l.kind.as_deref().unwrap_or("Gateway"), "-n", INFRA, gateway]);
    let listeners = g["status"]["listeners"].as_array().cloned().unwrap_or_default();
    let Some(got) = listeners.iter().find(|x| x["name"] == l.name.as_str()) else {
        return Some(format!("Gateway {gateway} has no status for listener {}", l.name));
    };
    if let Some(n) = l.attached_routes
        && got["attachedRoutes"] != n
    {
        return Some(format!(
            "listener {} attachedRoutes {}, expected {n}",
            l.name, got["attachedRoutes"]
        ));
    }
    let conditions = [
        ("Accepted", &l.accepted),
        ("Programmed", &l.programmed),
        ("ResolvedRefs", &l.resolved_refs),
    ];
    for (type_, want) in conditions {
        let Some(want) = want else { continue };
        let reason = got["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .map(|c| c["reason"].clone());
        if reason.as_ref().and_then(Value::as_str) != Some(want.as_str()) {
            return Some(format!("listener {} {type_} {reason:?}, expected {want}", l.name));
        }
    }
    None
}

/// The EndpointSlice the suite makes for a Service without a selector.
fn manual_slice(lab: &Lab, slice: &ManualSlice) -> String {
    let pods = lab.get_json(&["pods", "-n", INFRA, "-l", &format!("app={}", slice.app)]);
    let endpoints: Vec<Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| ready(p))
        .map(|p| serde_json::json!({"addresses": [ip(p)]}))
        .collect();
    let object = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-ip4", slice.service),
            "namespace": INFRA,
            "labels": {"kubernetes.io/service-name": slice.service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "first-port", "port": 3000, "protocol": "TCP"}],
        "endpoints": endpoints,
    });
    serde_saphyr::to_string(&object).unwrap()
}

/// What is wrong with a Gateway's conditions (none: they are as expected).
fn gateway_problem(lab: &Lab, gateway: &str, e: &GatewayExpectation) -> Option<String> {
    let g = lab.get_json(&[e.kind.as_deref().unwrap_or("Gateway"), "-n", INFRA, gateway]);
    for (type_, want) in [("Accepted", &e.accepted), ("Programmed", &e.programmed)] {
        let Some(want) = want else { continue };
        let reason = g["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .map(|c| c["reason"].clone());
        if reason.as_ref().and_then(Value::as_str) != Some(want.as_str()) {
            return Some(format!("Gateway {gateway} {type_} {reason:?}, expected {want}"));
        }
    }
    if let Some(want) = &e.address
        && g["status"]["addresses"][0]["value"] != want.as_str()
    {
        return Some(format!(
            "Gateway {gateway} addresses {}, expected {want}",
            g["status"]["addresses"]
        ));
    }
    None
}

/// A self-signed certificate for `hosts` as a TLS Secret in its namespace, made as a user would
/// (openssl, kubectl create secret tls).
fn certificate(lab: &Lab, c: &Certificate) {
    let dir = std::env::temp_dir().join(format!("weft-{}-{}", lab.name, c.name));
    let hosts: Vec<&str> = c.hosts.iter().map(String::as_str).collect();
    let namespace = c.namespace.as_deref().unwrap_or(INFRA);
    let (crt, key) = match c.ca {
        false => self_signed(&dir, &hosts),
        true => {
            let (ca, ca_key) = self_signed(&dir.join("ca"), &["conformance-ca"]);
            let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
            let (csr, ext) = (dir.join("tls.csr"), dir.join("ext"));
            let sans: Vec<String> = hosts.iter().map(|h| format!("DNS:{h}")).collect();
            std::fs::write(
                &ext,
                format!("subjectAltName={}\nbasicConstraints=CA:FALSE\n", sans.join(",")),
            )
            .unwrap();
            let run = |args: &[&str]| {
                let out = std::process::Command::new("openssl").args(args).output().unwrap();
                assert!(out.status.success(), "openssl: {}", text(&out.stderr));
            };
            let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
            let (csr, ext, ca_crt, ca_key) = (path(&csr), path(&ext), path(&ca), path(&ca_key));
            let subject = format!("/CN={}", hosts[0]);
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &subject,
                "-keyout",
                &path(&key),
                "-out",
                &csr,
            ]);
            let sign = [
                "x509",
                "-req",
                "-days",
                "30",
                "-CAcreateserial",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
            ];
            run(&[&sign[..], &["-CAkey", &ca_key, "-extfile", &ext, "-out", &path(&crt)]].concat());
            let from = format!("--from-file=ca.crt={}", ca.display());
            lab.kubectl_ok(&["create", "configmap", &format!("{}-ca", c.name), "-n", namespace, &from]);
            (crt, key)
        }
    };
    let (crt, key) = (crt.to_str().unwrap(), key.to_str().unwrap());
    lab.kubectl_ok(&[
        "create", "secret", "tls", &c.name, "-n", namespace, "--cert", crt, "--key", key,
    ]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `problem` for up to 20 s; what is still wrong then.
fn settle(mut problem: impl FnMut() -> Option<String>) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got = problem();
    while got.is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        got = problem();
    }
    got
}

/// How many times the echo pods labelled `app` logged a `method` request for `path` (`weft serve` logs each as
/// `PEER METHOD TARGET STATUS`).
fn logged(lab: &Lab, app: &str, method: &str, path: &str) -> usize {
    let logs = lab.kubectl(&["logs", "-n", INFRA, "-l", &format!("app={app}"), "--tail=-1"]);
    text(&logs.stdout).matches(&format!(" {method} {path} ")).count()
}

/// The reason of the route's condition `type_` for its first parent.
fn reason(lab: &Lab, kind: &str, namespace: &str, name: &str, type_: &str) -> Option<String> {
    let route = lab.get_json(&[kind, "-n", namespace, name]);
    let conditions = route["status"]["parents"][0]["conditions"].as_array()?.clone();
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    c["reason"].as_str().map(str::to_string)
}

#[test]
fn core_and_extended_httproute_cases_in_one_lab() {
    if !root() {
        return;
    }
    let cases: Vec<Case> =
        serde_saphyr::from_str(&std::fs::read_to_string(repo("crates/weft/tests/gateway/core.yaml")).unwrap()).unwrap();
    let lab = Lab::up(1, "host-gw", "");
    // One apply each, as a user installs them; weft ingress makes the GatewayClass `weft`.
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/gateway.yaml")]);
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/ingress.yaml")]);
    lab.wait(60, "GatewayClass weft Accepted", || {
        // Absent until weft ingress runs.
        let out = lab.kubectl(&["get", "gatewayclass", "weft", "-o", "json"]);
        let class: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let conditions = class["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions
            .iter()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True")
            .then_some(())
    });
    lab.kubectl_ok(&["apply", "-f", &repo("crates/weft/tests/gateway/base.yaml")]);
    for c in cases.iter().flat_map(|c| &c.certificates) {
        certificate(&lab, c);
    }
    let mut objects = String::new();
    for case in &cases {
        objects.push_str(&gateway(case));
        objects.push_str("\n---\n");
        objects.push_str(&case.objects);
        objects.push_str("\n---\n");
    }
    let applied = lab.apply(&objects);
    assert!(
        applied.status.success(),
        "applying the cases: {}",
        text(&applied.stderr)
    );
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/weft-ingress",
        "-n",
        "weft-ingress",
        "--timeout=60s",
    ]);
    for d in ["infra-backend-v1", "infra-backend-v2", "infra-backend-v3"] {
        lab.kubectl_ok(&[
            "rollout",
            "status",
            &format!("deployment/{d}"),
            "-n",
            INFRA,
            "--timeout=60s",
        ]);
    }
    let slices: Vec<String> = cases
        .iter()
        .flat_map(|c| &c.endpoint_slices)
        .map(|slice| manual_slice(&lab, slice))
        .collect();
    if !slices.is_empty() {
        let applied = lab.apply(&slices.join("\n---\n"));
        assert!(
            applied.status.success(),
            "the EndpointSlices: {}",
            text(&applied.stderr)
        );
    }
    let mut failures = Vec::new();
    for case in &cases {
        let started = std::time::Instant::now();
        // Only cases with requests need their Gateway to have an address (some have no valid listener).
        let home = std::cell::OnceCell::new();
        let mut failed = None;
        let mut fail = |problem: Option<String>| {
            if failed.is_none() {
                failed = problem;
            }
        };
        for route in &case.routes {
            let ns = route.namespace.as_deref().unwrap_or(INFRA);
            let conditions = [
                ("Accepted", &route.accepted),
                ("ResolvedRefs", &route.resolved_refs),
                ("PartiallyInvalid", &route.partially_invalid),
            ];
            for (type_, want) in conditions {
                let Some(want) = want else { continue };
                fail(settle(|| {
                    let kind = route.kind.as_deref().unwrap_or("HTTPRoute");
                    let got = reason(&lab, kind, ns, &route.name, type_);
                    (got.as_deref().unwrap_or("none") != want.as_str())
                        .then(|| format!("route {} {type_}: {got:?}, expected {want}", route.name))
                }));
            }
        }
        for g in &case.gateway_status {
            let gateway = g.gateway.as_deref().unwrap_or(&case.gateway);
            fail(settle(|| gateway_problem(&lab, gateway, g)));
        }
        for l in &case.listener_status {
            let gateway = l.gateway.as_deref().unwrap_or(&case.gateway);
            fail(settle(|| listener_problem(&lab, gateway, l)));
        }
        for request in &case.requests {
            let to = match &request.gateway {
                Some(other) => address(&lab, other),
                None => home.get_or_init(|| address(&lab, &case.gateway)).clone(),
            };
            fail(settle(|| check(&lab, &to, request)).map(|p| format!("{request:?}: {p}")));
            let method = request.method.as_deref().unwrap_or("GET");
            for app in &request.mirrored_to {
                fail(settle(|| {
                    (logged(&lab, app, method, &request.path) == 0)
                        .then(|| format!("{app} got no copy of {}", request.path))
                }));
            }
            for (app, want) in &request.tries {
                fail(settle(|| {
                    let got = logged(&lab, app, method, &request.path);
                    (got != *want).then(|| format!("{app} got {} {got} times, expected {want}", request.path))
                }));
            }
        }
        match failed {
            None => println!("PASS {} ({:.1} s)", case.name, started.elapsed().as_secs_f64()),
            Some(why) => {
                println!("FAIL {}: {why}", case.name);
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "failed cases:\n{}", failures.join("\n"));
}
