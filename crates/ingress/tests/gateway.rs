//! The Gateway API on the proxy end to end on loopback: a Gateway's provisioned Service maps its listener port to
//! the proxy's listener, HTTPRoutes send requests to three small backends (each answers with its name, the path
//! and the headers it got), and curl checks matching, precedence, filters, weights, failures and the statuses.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use weft_ingress::gateway::{self, status};
use weft_ingress::proxy::Proxy;
use weft_ingress::{Config, Table, server};
use weft_model::Snapshot;

mod common;

use common::{curl, line};

/// Every request the backends got: `NAME PATH`.
static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn seen(what: &str) -> bool {
    SEEN.lock().unwrap().iter().any(|s| s == what)
}

/// Waits up to 5 s until the backends have seen each of `all`.
async fn until_seen(all: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !all.iter().all(|w| seen(w)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(all.iter().all(|w| seen(w)), "{all:?} in {:?}", SEEN.lock().unwrap());
}

/// A backend answering `backend=NAME`, `path=...` and a `NAME=value` line per header it got.
async fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                    if request.uri().path().starts_with("/slow") {
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    let path = request.uri().path_and_query().unwrap().to_string();
                    let seen = format!("{name} {path}");
                    // /flaky paths fail the first time (`always`: every time), for retries.
                    let fail = path.starts_with("/flaky") && (path.contains("always") || !self::seen(&seen));
                    SEEN.lock().unwrap().push(seen);
                    let mut text = format!("backend={name}\npath={path}\n");
                    for (n, v) in request.headers() {
                        text.push_str(&format!("{n}={}\n", v.to_str().unwrap_or_default()));
                    }
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    if !body.is_empty() {
                        let body = String::from_utf8_lossy(&body);
                        // `NAME PATH BODY` too, for the copies of mirrors.
                        SEEN.lock().unwrap().push(format!("{name} {path} {body}"));
                        text.push_str(&format!("body={body}\n"));
                    }
                    let response = hyper::Response::builder()
                        .status(if fail { 503 } else { 200 })
                        .header("x-header-remove", "gone")
                        .body(Full::new(Bytes::from(text)))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

const CONTROLLER: &str = "weft.dev/gateway";

/// The objects of `text` and, for each of `names`, a Service in `infra` with one endpoint on the port of the same
/// place in `ports`.
fn with_services(mut text: String, names: &[&str], ports: &[u16]) -> Snapshot {
    for (name, port) in names.iter().zip(ports) {
        text.push_str(&service("infra", name, *port));
    }
    Snapshot::new(1, weft_model::parse(&text, "test").unwrap())
}

fn service(namespace: &str, name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: [{{name: http, port: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: {endpoints}
---
",
        port = port.max(1),
        endpoints = if port == 0 { "[]" } else { "[{addresses: [127.0.0.1]}]" }
    )
}

/// Class `weft`, Namespaces infra and web (label team: web), the controller's Service and the one provisioned
/// for Gateway infra/`gateway`, mapping its `port` to the proxy's `pod_port` (address 10.0.0.1).
fn cluster(gateway: &str, port: u16, pod_port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft, generation: 1}}
spec: {{controllerName: {CONTROLLER}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: web, labels: {{team: web}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: weft-ingress, namespace: weft-ingress}}
spec: {{type: LoadBalancer, selector: {{app: weft-ingress}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: gw-infra-{gateway}
  namespace: weft-ingress
  labels: {{gateway.weft.dev/namespace: infra, gateway.weft.dev/name: {gateway}}}
spec: {{type: LoadBalancer, ports: [{{name: port-{port}, port: {port}, targetPort: {pod_port}}}]}}
status: {{loadBalancer: {{ingress: [{{ip: 10.0.0.1}}]}}}}
---
"
    )
}

/// The cluster: class `weft`, Gateway infra/gw (listener http:80 from All namespaces, and `specific` on
/// very.specific.com), its provisioned Service mapping port 80 to `pod_port`, backends v1..v3 and web (in
/// namespace web), `empty` without endpoints, and `routes`.
/// Gateway `gw` as most tests have it.
const GW: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra, generation: 3}
spec:
  gatewayClassName: weft
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}}
  - {name: same, port: 80, protocol: HTTP, hostname: very.specific.com}
  - {name: odd, port: 1111, protocol: INVALID}
---
";

fn snapshot(pod_port: u16, backends: [u16; 4], routes: &str) -> Snapshot {
    snapshot_with(GW, pod_port, backends, routes)
}

/// The cluster with Gateway `gateway` (named gw) instead of `GW`.
fn snapshot_with(gateway: &str, pod_port: u16, backends: [u16; 4], routes: &str) -> Snapshot {
    let mut text = cluster("gw", 80, pod_port);
    text.push_str(gateway);
    for (name, port) in ["v1", "v2", "v3"].iter().zip(backends) {
        text.push_str(&service("infra", name, port));
    }
    text.push_str(&service("web", "web", backends[3]));
    text.push_str(&service("infra", "empty", 0));
    text.push_str(routes);
    Snapshot::new(1, weft_model::parse(&text, "test").unwrap())
}

fn config() -> Config {
    Config {
        gateway: gateway::Settings {
            controller: CONTROLLER.into(),
            publish: Some(("weft-ingress".into(), "weft-ingress".into())),
        },
        ..Config::default()
    }
}

const ROUTES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: order, namespace: infra, creationTimestamp: '2026-01-01T00:00:00Z', generation: 2}
spec:
  parentRefs: [{name: gw, sectionName: same}]
  rules:
  - matches: [{path: {type: Exact, value: /match}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /match/}}]
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /match/prefix/one}}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{headers: [{name: version, value: two}]}, {queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {value: /post}, method: POST}]
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Header-Set, value: set}], add: [{name: X-Header-Add, value: added}], remove: [X-Header-Remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: X-Response, value: 'yes'}], remove: [X-Header-Remove]}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {value: /weights}}]
    backendRefs: [{name: v1, port: 8080, weight: 1}, {name: v2, port: 8080, weight: 0}]
  - matches: [{path: {value: /missing}}]
    backendRefs: [{name: nonexistent, port: 8080}]
  - matches: [{path: {value: /nothing}}]
  - matches: [{path: {value: /empty}}]
    backendRefs: [{name: empty, port: 8080}]
  - matches: [{path: {value: /slow}}]
    timeouts: {request: 200ms}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {value: /slow/backend}}, {path: {value: /quick/backend}}]
    timeouts: {request: 5s, backendRequest: 200ms}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {value: /mirror}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 8080}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: v3, port: 8080}, fraction: {numerator: 1, denominator: 1}}}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {value: /never-mirrored}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 8080}, percent: 0}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {value: /flaky/retried}}]
    retry: {codes: [503], attempts: 2, backoff: 10ms}
    backendRefs: [{name: v1, port: 8080}]
  - backendRefs: [{name: v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross, namespace: web, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  hostnames: [cross.example]
  rules:
  - backendRefs: [{name: v2, namespace: infra, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: web, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  hostnames: ['*.wildcard.io']
  rules:
  - backendRefs: [{name: web, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: elsewhere, namespace: web, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: same}]
  rules:
  - backendRefs: [{name: web, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: nohost, namespace: infra, generation: 1}
spec:
  parentRefs: [{name: gw, sectionName: same}]
  hostnames: [other.example]
  rules:
  - backendRefs: [{name: v1, port: 8080}]
";

const GRPC: &str = "
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: infra, generation: 1}
spec:
  parentRefs: [{name: gw, sectionName: same}]
  rules:
  - matches: [{method: {service: foo.Echo, method: Hi}}]
    backendRefs: [{name: v3, port: 8080}]
";

const GRANT: &str = "
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: web-to-infra, namespace: infra}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]
  to: [{group: '', kind: Service}]
";

async fn get(at: SocketAddr, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{at}{path}");
    let host = format!("Host: {host}");
    let mut args = vec!["-H", host.as_str(), url.as_str()];
    args.extend_from_slice(extra);
    let (code, _, body) = curl(&args).await;
    (code.parse().unwrap_or(0), body)
}

/// The wanted status of object `kind` `name`.
fn status_of(wanted: &[status::Wanted], kind: &str, name: &str) -> serde_json::Value {
    let found = wanted.iter().find(|w| w.key.kind == kind && w.key.name == name);
    found
        .unwrap_or_else(|| panic!("no status for {kind} {name}"))
        .status
        .clone()
}

fn condition<'a>(conditions: &'a serde_json::Value, type_: &str) -> (&'a str, &'a str) {
    let c = conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} in {conditions}"));
    (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproutes_match_in_the_specs_order_filter_split_and_fail_as_it_says() {
    let backends = [
        backend("v1").await,
        backend("v2").await,
        backend("v3").await,
        backend("web").await,
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let config = config();
    let table = Arc::new(ArcSwap::from_pointee(Table::build(
        &snapshot(at.port(), backends, ROUTES),
        &config,
    )));
    let proxy = Arc::new(Proxy::new(table.clone(), Arc::default()));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve(listener, proxy, None, stopped));

    let host = "very.specific.com";
    // Path precedence: Exact, then the longest prefix.
    for (path, expected) in [
        ("/match", "v1"),
        ("/match/any", "v3"),
        ("/match/prefix/one/any", "v2"),
        ("/", "v1"),
    ] {
        let (code, body) = get(at, host, path, &[]).await;
        assert_eq!((code, line(&body, "backend")), (200, expected), "{path}: {body}");
    }
    // Header, query and method matches.
    assert_eq!(
        line(&get(at, host, "/", &["-H", "Version: two"]).await.1, "backend"),
        "v2"
    );
    assert_eq!(line(&get(at, host, "/?animal=whale", &[]).await.1, "backend"), "v2");
    assert_eq!(line(&get(at, host, "/?ANIMAL=whale", &[]).await.1, "backend"), "v1");
    assert_eq!(line(&get(at, host, "/post", &["-X", "POST"]).await.1, "backend"), "v3");
    assert_eq!(line(&get(at, host, "/post", &[]).await.1, "backend"), "v1");
    // Header modifiers, both ways.
    let (_, out) = get(
        at,
        host,
        "/headers",
        &[
            "-i",
            "-H",
            "x-header-set: old",
            "-H",
            "X-Header-Add: original",
            "-H",
            "X-Header-Remove: x",
        ],
    )
    .await;
    assert_eq!(line(&out, "x-header-set"), "set", "{out}");
    assert_eq!(line(&out, "x-header-add"), "original,added", "{out}");
    assert!(!out.contains("x-header-remove="), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-response: yes"), "{out}");
    assert!(!out.to_ascii_lowercase().contains("x-header-remove: gone"), "{out}");
    // A redirect, and a rewrite of host and prefix.
    let (code, out) = get(at, host, "/redirect", &["-i"]).await;
    assert_eq!(code, 301);
    assert!(out.contains("location: http://example.org/redirect"), "{out}");
    let (_, out) = get(at, host, "/prefix/one/two", &[]).await;
    assert_eq!(
        (line(&out, "path"), line(&out, "host")),
        ("/one/two", "rewritten.example"),
        "{out}"
    );
    // A weight of 0 takes nothing.
    for _ in 0..10 {
        assert_eq!(line(&get(at, host, "/weights", &[]).await.1, "backend"), "v1");
    }
    // 500 for a backend that cannot be followed or no backends, 503 without endpoints.
    assert_eq!(get(at, host, "/missing", &[]).await.0, 500);
    assert_eq!(get(at, host, "/nothing", &[]).await.0, 500);
    assert_eq!(get(at, host, "/empty", &[]).await.0, 503);
    // timeouts.request: 504 once it has passed.
    assert_eq!(get(at, host, "/slow", &[]).await.0, 504);
    // timeouts.backendRequest: 504 once the backend has not answered in time, well inside the request's 5 s.
    assert_eq!(get(at, host, "/slow/backend", &[]).await.0, 504);
    let (code, out) = get(at, host, "/quick/backend", &[]).await;
    assert_eq!((code, line(&out, "backend")), (200, "v1"), "{out}");
    // RequestMirror: each mirror gets a copy (its answer dropped), a 0% mirror none.
    for _ in 0..10 {
        assert_eq!(line(&get(at, host, "/never-mirrored", &[]).await.1, "backend"), "v1");
    }
    assert_eq!(line(&get(at, host, "/mirror?n=1", &[]).await.1, "backend"), "v1");
    until_seen(&["v2 /mirror?n=1", "v3 /mirror?n=1"]).await;
    assert!(!seen("v2 /never-mirrored"));
    // A request with a body the proxy holds whole is mirrored with it; one whose body streams through is not.
    assert_eq!(
        line(&get(at, host, "/mirror?n=2", &["-d", "body"]).await.1, "backend"),
        "v1"
    );
    until_seen(&["v1 /mirror?n=2 body", "v2 /mirror?n=2 body", "v3 /mirror?n=2 body"]).await;
    let chunked = ["-H", "Transfer-Encoding: chunked", "-d", "streamed"];
    let (_, out) = get(at, host, "/mirror?n=3", &chunked).await;
    assert_eq!((line(&out, "backend"), line(&out, "body")), ("v1", "streamed"), "{out}");
    assert_eq!(line(&get(at, host, "/mirror?n=4", &[]).await.1, "backend"), "v1");
    until_seen(&["v2 /mirror?n=4"]).await;
    assert!(!seen("v2 /mirror?n=3"));
    // retry: a 503 is tried again, with the request's body; at most `attempts` times; not without a retry.
    let (code, out) = get(at, host, "/flaky/retried?n=1", &["-d", "payload"]).await;
    assert_eq!((code, line(&out, "body")), (200, "payload"), "{out}");
    let tries = |what: &str| SEEN.lock().unwrap().iter().filter(|s| *s == what).count();
    assert_eq!(tries("v1 /flaky/retried?n=1"), 2);
    assert_eq!(get(at, host, "/flaky/retried/always", &[]).await.0, 503);
    assert_eq!(tries("v1 /flaky/retried/always"), 3);
    assert_eq!(get(at, host, "/flaky/once", &[]).await.0, 503);
    assert_eq!(tries("v1 /flaky/once"), 1);
    // Hosts: the wildcard listener route spans labels; the specific listener takes its host only.
    assert_eq!(line(&get(at, "a.b.wildcard.io", "/", &[]).await.1, "backend"), "web");
    assert_eq!(get(at, "wildcard.io", "/", &[]).await.0, 404);
    assert_eq!(get(at, "other.example", "/", &[]).await.0, 404);
    // Cross-namespace: refused without a grant, served with one, refused again once it is gone.
    assert_eq!(get(at, "cross.example", "/", &[]).await.0, 500);
    let granted = format!("{ROUTES}{GRANT}");
    table.store(Arc::new(Table::build(
        &snapshot(at.port(), backends, &granted),
        &config,
    )));
    assert_eq!(line(&get(at, "cross.example", "/", &[]).await.1, "backend"), "v2");
    table.store(Arc::new(Table::build(&snapshot(at.port(), backends, ROUTES), &config)));
    assert_eq!(get(at, "cross.example", "/", &[]).await.0, 500);
}

#[test]
fn statuses_carry_the_specs_reasons_and_the_generation() {
    let snapshot = snapshot(20000, [1, 2, 3, 4], &format!("{ROUTES}{GRPC}"));
    let table = Table::build(&snapshot, &config());
    let wanted = status::wanted(table.gateways(), &snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
    let of = |kind: &str, name: &str| status_of(&wanted, kind, name);
    assert_eq!(
        condition(&of("GatewayClass", "weft")["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    let gw = of("Gateway", "gw");
    assert_eq!(condition(&gw["conditions"], "Accepted"), ("True", "ListenersNotValid"));
    assert_eq!(condition(&gw["conditions"], "Programmed"), ("True", "Programmed"));
    assert_eq!(gw["conditions"][0]["observedGeneration"], 3);
    assert_eq!(
        gw["addresses"][0],
        serde_json::json!({"type": "IPAddress", "value": "10.0.0.1"})
    );
    let listeners = gw["listeners"].as_array().unwrap();
    let attached: Vec<i64> = listeners
        .iter()
        .map(|l| l["attachedRoutes"].as_i64().unwrap())
        .collect();
    assert_eq!(attached, [2, 2, 0]);
    assert_eq!(
        condition(&listeners[2]["conditions"], "Accepted"),
        ("False", "UnsupportedProtocol")
    );
    let parent = |route: &str| of("HTTPRoute", route)["parents"][0]["conditions"].clone();
    assert_eq!(condition(&parent("order"), "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&parent("order"), "ResolvedRefs"),
        ("False", "BackendNotFound")
    );
    assert_eq!(parent("order")[0]["observedGeneration"], 2);
    assert_eq!(
        condition(&parent("cross"), "ResolvedRefs"),
        ("False", "RefNotPermitted")
    );
    assert_eq!(condition(&parent("web"), "ResolvedRefs"), ("True", "ResolvedRefs"));
    assert_eq!(
        condition(&parent("elsewhere"), "Accepted"),
        ("False", "NotAllowedByListeners")
    );
    assert_eq!(
        condition(&parent("nohost"), "Accepted"),
        ("False", "NoMatchingListenerHostname")
    );
    assert_eq!(of("HTTPRoute", "order")["parents"][0]["controllerName"], CONTROLLER);
    let grpc = of("GRPCRoute", "grpc")["parents"][0]["conditions"].clone();
    assert_eq!(condition(&grpc, "Accepted"), ("True", "Accepted"));
}

#[test]
fn statuses_follow_a_gateways_new_generation_and_listeners() {
    // GatewayModifyListeners and the ObservedGenerationBump tests: a listener added and the generation bumped.
    let before = snapshot(20000, [1, 2, 3, 4], ROUTES);
    let changed = GW.replace("generation: 3", "generation: 4").replace(
        "  - {name: odd,",
        "  - {name: added, port: 80, protocol: HTTP, hostname: added.example}\n  - {name: odd,",
    );
    let after = snapshot_with(&changed, 20000, [1, 2, 3, 4], ROUTES);
    let gateway = |snapshot: &Snapshot| {
        let table = Table::build(snapshot, &config());
        let wanted = status::wanted(table.gateways(), snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
        (
            status_of(&wanted, "Gateway", "gw"),
            status_of(&wanted, "GatewayClass", "weft"),
        )
    };
    let names = |gw: &serde_json::Value| -> Vec<String> {
        let listeners = gw["listeners"].as_array().unwrap();
        listeners
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    let ((old, class), (new, _)) = (gateway(&before), gateway(&after));
    assert_eq!(names(&old), ["http", "same", "odd"]);
    assert_eq!(names(&new), ["http", "same", "added", "odd"]);
    let generations = |conditions: &serde_json::Value| -> Vec<i64> {
        let all = conditions.as_array().unwrap();
        all.iter().map(|c| c["observedGeneration"].as_i64().unwrap()).collect()
    };
    assert!(generations(&old["conditions"]).iter().all(|g| *g == 3));
    assert!(generations(&new["conditions"]).iter().all(|g| *g == 4));
    let added = &new["listeners"][2];
    assert_eq!(condition(&added["conditions"], "Accepted"), ("True", "Accepted"));
    assert!(generations(&added["conditions"]).iter().all(|g| *g == 4));
    assert_eq!(class["conditions"][0]["observedGeneration"], 1);
}

/// Routes with rules that cannot be served: some (`partly`), all (`invalid`), and an ExtensionRef filter.
const INVALID_RULES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: partly, namespace: infra, generation: 4}
spec:
  rules:
  - {name: good, matches: [{path: {value: /good}}], backendRefs: [{name: v1, port: 8080}]}
  - {name: bad-regex, matches: [{path: {type: RegularExpression, value: '/('}}], backendRefs: [{name: v1, port: 8080}]}
  - {matches: [{path: {value: /external}}], filters: [{type: ExternalAuth}], backendRefs: [{name: v1, port: 8080}]}
  parentRefs: [{name: gw, sectionName: same}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid, namespace: infra, generation: 1}
spec: {parentRefs: [{name: gw, sectionName: same}], rules: [{filters: [{type: RequestRedirect, requestRedirect: {hostname: a.example}}, {type: URLRewrite, urlRewrite: {hostname: b.example}}]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: extension, namespace: infra, generation: 1}
spec:
  {parentRefs: [{name: gw, sectionName: same}], rules: [{filters: [{type: ExtensionRef, \
  extensionRef: {group: example.com, kind: Auth, name: x}}], backendRefs: [{name: v1, port: 8080}]}]}
";

#[test]
fn routes_with_invalid_rules_are_partially_invalid_or_not_accepted() {
    let snapshot = snapshot(20000, [1, 2, 3, 4], &format!("{ROUTES}---\n{INVALID_RULES}"));
    let table = Table::build(&snapshot, &config());
    let wanted = status::wanted(table.gateways(), &snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
    let parent = |route: &str| status_of(&wanted, "HTTPRoute", route)["parents"][0]["conditions"].clone();
    let partially = |route: &str| {
        let conditions = parent(route);
        let found = conditions
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "PartiallyInvalid");
        found.cloned()
    };
    // Some rules dropped: accepted at the current generation, PartiallyInvalid naming them.
    let partly = parent("partly");
    assert_eq!(condition(&partly, "Accepted"), ("True", "Accepted"));
    assert_eq!(partly[0]["observedGeneration"], 4);
    let dropped = partially("partly").expect("PartiallyInvalid");
    assert_eq!(
        (dropped["status"].as_str(), dropped["reason"].as_str()),
        (Some("True"), Some("UnsupportedValue"))
    );
    let message = dropped["message"].as_str().unwrap();
    assert!(message.starts_with("Dropped Rule"), "{message}");
    assert!(
        message.contains("bad-regex") && message.contains("rule-2") && !message.contains("good"),
        "{message}"
    );
    // Every rule invalid: not accepted, and no PartiallyInvalid (nor on a valid route).
    assert_eq!(
        condition(&parent("invalid"), "Accepted"),
        ("False", "IncompatibleFilters")
    );
    assert_eq!(partially("invalid"), None);
    assert_eq!(partially("order"), None);
    // An ExtensionRef cannot be followed: the rule stays (answering 500), its reference unresolved.
    assert_eq!(condition(&parent("extension"), "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&parent("extension"), "ResolvedRefs"),
        ("False", "InvalidKind")
    );
    assert_eq!(partially("extension"), None);
    let gw = status_of(&wanted, "Gateway", "gw");
    // Listener `same` has order, partly and extension; not the route none of whose rules can be served.
    assert_eq!(gw["listeners"][1]["attachedRoutes"], 3);
}

/// A backend terminating TLS itself with certificate `key` (`common::tls_upstream`).
async fn tls_backend(name: &'static str, key: rustls::sign::CertifiedKey) -> u16 {
    let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key));
    common::tls_upstream(weft_ingress::tls::server_config(resolver).unwrap(), name).await
}

/// Gateway infra/tls: listener `tls` on port 443, TLS Passthrough for *.example.com (pod port `pod_port`),
/// `term`, TLS Terminate on term.example.net without certificateRefs, and `kinds`, which allows a kind not
/// served; TLSRoutes abc.example.com → t1 and *.example.com → t2 (t1 and t2 backends on `backends`), one to a
/// Service that does not exist, and one on a name outside the listeners'.
fn passthrough_snapshot(pod_port: u16, backends: [u16; 2]) -> Snapshot {
    let mut text = cluster("tls", 443, pod_port);
    text.push_str(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls, namespace: infra, generation: 1}
spec:
  gatewayClassName: weft
  listeners:
  - {name: tls, port: 443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}
  - {name: term, port: 8443, protocol: TLS, hostname: term.example.net, tls: {mode: Terminate}}
  - {name: kinds, port: 9443, protocol: TLS, hostname: kinds.example.net, tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TCPRoute}, {kind: TLSRoute}]}}
---
",
    );
    for (name, host, backend) in [
        ("exact", "abc.example.com", "t1"),
        ("wildcard", "'*.example.com'", "t2"),
        ("missing", "missing.example.com", "nonexistent"),
        ("elsewhere", "abc.example.org", "t1"),
    ] {
        text.push_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}, namespace: infra, generation: 1}}
spec:
  parentRefs: [{{name: tls}}]
  hostnames: [{host}]
  rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]
---
"
        ));
    }
    with_services(text, &["t1", "t2"], &backends)
}

/// Whether the proxy closes a connection whose ClientHello asks for `name`, without a byte back.
async fn refused(at: SocketAddr, name: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let mut stream = tokio::net::TcpStream::connect(at).await.unwrap();
    stream.write_all(&hello).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsroutes_pass_tls_through_by_server_name() {
    let self_signed = || weft_ingress::tls::self_signed().unwrap();
    let backends = [
        tls_backend("t1", self_signed()).await,
        tls_backend("t2", self_signed()).await,
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let snapshot = passthrough_snapshot(at.port(), backends);
    let table = Table::build(&snapshot, &config());
    assert_eq!(
        table.gateways().pod_ports().get(&at.port()),
        Some(&gateway::Serving::Passthrough)
    );
    let wanted = status::wanted(table.gateways(), &snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
    let of = |kind: &str, name: &str| status_of(&wanted, kind, name);
    let listeners = of("Gateway", "tls")["listeners"].clone();
    assert_eq!(listeners[0]["attachedRoutes"], 3);
    assert_eq!(
        listeners[0]["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}])
    );
    assert_eq!(
        condition(&listeners[0]["conditions"], "Programmed"),
        ("True", "Programmed")
    );
    assert_eq!(condition(&listeners[1]["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&listeners[1]["conditions"], "ResolvedRefs"),
        ("False", "InvalidCertificateRef")
    );
    assert_eq!(listeners[2]["supportedKinds"], listeners[0]["supportedKinds"]);
    assert_eq!(
        condition(&listeners[2]["conditions"], "ResolvedRefs"),
        ("False", "InvalidRouteKinds")
    );
    let parent = |route: &str| of("TLSRoute", route)["parents"][0]["conditions"].clone();
    assert_eq!(condition(&parent("exact"), "Accepted"), ("True", "Accepted"));
    assert_eq!(condition(&parent("exact"), "ResolvedRefs"), ("True", "ResolvedRefs"));
    assert_eq!(
        condition(&parent("missing"), "ResolvedRefs"),
        ("False", "BackendNotFound")
    );
    assert_eq!(
        condition(&parent("elsewhere"), "Accepted"),
        ("False", "NoMatchingListenerHostname")
    );

    let table = Arc::new(ArcSwap::from_pointee(table));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(gateway::passthrough::serve(listener, table, at.port(), false, stopped));
    // The backends terminate TLS themselves: the proxy holds no certificate for these names.
    for (name, expected) in [
        ("abc.example.com", "t1"),
        ("other.example.com", "t2"),
        ("a.b.example.com", "t2"),
    ] {
        let url = format!("https://{name}:{}/", at.port());
        let resolve = format!("{name}:{}:127.0.0.1", at.port());
        let (code, _, body) = common::curl(&["-k", "--resolve", &resolve, &url]).await;
        assert_eq!(code, "200", "{name}: {body}");
        assert_eq!((line(&body, "backend"), line(&body, "sni")), (expected, name), "{name}");
    }
    for name in ["abc.example.org", "missing.example.com"] {
        assert!(refused(at, name).await, "{name} was not refused");
    }
}

/// Gateway infra/mixed: on port 443 an HTTPS listener (https.mixed.example; an HTTPRoute to plain backend m1), a
/// TLS Passthrough one (pass.mixed.example; a TLSRoute to m3, which terminates TLS itself) and a TLS Terminate
/// one (term.mixed.example; a TLSRoute to plain backend m2), both terminating with Secret `mixed` (`pem`, `key`).
fn mixed_snapshot(pod_port: u16, backends: [u16; 3], pem: &str, key: &str) -> Snapshot {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut text = cluster("mixed", 443, pod_port);
    text.push_str(&format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: mixed, namespace: infra}}
type: kubernetes.io/tls
data: {{tls.crt: {}, tls.key: {}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: mixed, namespace: infra, generation: 1}}
spec:
  gatewayClassName: weft
  listeners:
  - {{name: https, port: 443, protocol: HTTPS, hostname: https.mixed.example, tls: {{certificateRefs: [{{name: mixed}}]}}}}
  - {{name: pass, port: 443, protocol: TLS, hostname: pass.mixed.example, tls: {{mode: Passthrough}}}}
  - {{name: term, port: 443, protocol: TLS, hostname: term.mixed.example, tls: {{mode: Terminate, certificateRefs: [{{name: mixed}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: https, namespace: infra, generation: 1}}
spec: {{parentRefs: [{{name: mixed, sectionName: https}}], rules: [{{backendRefs: [{{name: m1, port: 8080}}]}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: term, namespace: infra, generation: 1}}
spec: {{parentRefs: [{{name: mixed, sectionName: term}}], rules: [{{backendRefs: [{{name: m2, port: 8080}}]}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pass, namespace: infra, generation: 1}}
spec: {{parentRefs: [{{name: mixed, sectionName: pass}}], rules: [{{backendRefs: [{{name: m3, port: 8080}}]}}]}}
---
",
        b64(pem),
        b64(key)
    ));
    with_services(text, &["m1", "m2", "m3"], &backends)
}

/// [`mixed_snapshot`] with its backends (named `names`; the third terminates TLS itself) and a certificate for
/// *.mixed.example, on the pod port of the listener returned.
async fn mixed_cluster(names: [&'static str; 3]) -> (TcpListener, SocketAddr, Snapshot) {
    let backends = [
        backend(names[0]).await,
        backend(names[1]).await,
        tls_backend(names[2], weft_ingress::tls::self_signed().unwrap()).await,
    ];
    let (_, ca) = common::ca();
    let (pem, key) = common::issue(&ca, &["*.mixed.example"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let snapshot = mixed_snapshot(at.port(), backends, &pem, &key);
    (listener, at, snapshot)
}

/// Serves `listener`, a pod port of `table` shared by TLS listeners (`gateway::sni`), the proxy expecting the
/// PROXY protocol or not; it serves until the sender returned is dropped.
fn serve_by_server_name(listener: TcpListener, table: Table, proxy_protocol: bool) -> tokio::sync::watch::Sender<bool> {
    let port = listener.local_addr().unwrap().port();
    let table = Arc::new(ArcSwap::from_pointee(table));
    let proxy = Arc::new(Proxy::new(table.clone(), Arc::default()).with_proxy_protocol(proxy_protocol));
    let resolver = gateway::tls::Resolver {
        table: table.clone(),
        port,
    };
    let config = weft_ingress::tls::server_config(Arc::new(resolver)).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let acceptors = gateway::sni::Acceptors::new(config);
    tokio::spawn(gateway::sni::serve(listener, proxy, table, port, acceptors, stopped));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_shared_by_server_name_reads_the_proxy_protocol_header_first() {
    let (listener, at, snapshot) = mixed_cluster(["p1", "p2", "p3"]).await;
    let table = Table::build(&snapshot, &config());
    let _stop = serve_by_server_name(listener, table, true);
    // The header (curl's, version 1) is read before the ClientHello, and not passed on to the passthrough
    // backend, which terminates TLS itself.
    for (listener, expected) in ["https", "term", "pass"].into_iter().zip(["p1", "p2", "p3"]) {
        let host = format!("{listener}.mixed.example");
        let resolve = format!("{host}:{}:127.0.0.1", at.port());
        let url = format!("https://{host}:{}/", at.port());
        let (code, _, body) = common::curl(&["-k", "--haproxy-protocol", "--resolve", &resolve, &url]).await;
        assert_eq!(
            (code, line(&body, "backend")),
            ("200".into(), expected),
            "{host}: {body}"
        );
    }
    // A ClientHello without the header is not one.
    assert!(refused(at, "https.mixed.example").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_passthrough_and_terminate_listeners_share_a_port_by_server_name() {
    let (listener, at, snapshot) = mixed_cluster(["m1", "m2", "m3"]).await;
    let table = Table::build(&snapshot, &config());
    assert_eq!(
        table.gateways().pod_ports().get(&at.port()),
        Some(&gateway::Serving::BySni)
    );
    let wanted = status::wanted(table.gateways(), &snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
    let listeners = status_of(&wanted, "Gateway", "mixed")["listeners"].clone();
    for l in listeners.as_array().unwrap() {
        assert_eq!(condition(&l["conditions"], "Programmed"), ("True", "Programmed"), "{l}");
        assert_eq!(
            condition(&l["conditions"], "Conflicted"),
            ("False", "NoConflicts"),
            "{l}"
        );
        assert_eq!(l["attachedRoutes"], 1, "{l}");
    }

    let _stop = serve_by_server_name(listener, table, false);
    // (name, backend, HTTP version): HTTPS negotiates h2; the terminated stream offers no ALPN, so curl speaks
    // HTTP/1.1 to the plain backend through it; the passthrough backend negotiates h2 itself.
    for (name, expected, version) in [
        ("https.mixed.example", "m1", "2"),
        ("term.mixed.example", "m2", "1.1"),
        ("pass.mixed.example", "m3", "2"),
    ] {
        let url = format!("https://{name}:{}/{name}", at.port());
        let resolve = format!("{name}:{}:127.0.0.1", at.port());
        let (code, got_version, body) = common::curl(&["-k", "--resolve", &resolve, &url]).await;
        assert_eq!(
            (code.as_str(), got_version.as_str()),
            ("200", version),
            "{name}: {body}"
        );
        assert_eq!(line(&body, "backend"), expected, "{name}: {body}");
    }
    // A Host of a TLS listener over the HTTPS listener's connection is not routed to its stream backend.
    let resolve = format!("https.mixed.example:{}:127.0.0.1", at.port());
    let url = format!("https://https.mixed.example:{}/", at.port());
    let (code, _, _) = common::curl(&["-k", "--resolve", &resolve, "-H", "Host: term.mixed.example", &url]).await;
    assert_eq!(code, "404");
    assert!(refused(at, "other.mixed.example").await);
}

const SESSIONS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: sessions, namespace: infra, generation: 1}
spec:
  parentRefs: [{name: gw, sectionName: same}]
  rules:
  - matches: [{path: {value: /cookie}}]
    sessionPersistence: {sessionName: session-c}
    backendRefs: [{name: v1, port: 8080}, {name: v2, port: 8080}, {name: v3, port: 8080}]
  - matches: [{path: {value: /header}}]
    sessionPersistence: {sessionName: session-h, type: Header}
    backendRefs: [{name: v1, port: 8080}, {name: v2, port: 8080}, {name: v3, port: 8080}]
";

/// A response header's value in curl's `-i` output.
fn response_header<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stay_on_their_backend_by_cookie_or_header() {
    let backends = [
        backend("v1").await,
        backend("v2").await,
        backend("v3").await,
        backend("web").await,
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let table = Table::build(&snapshot(at.port(), backends, SESSIONS), &config());
    let proxy = Arc::new(Proxy::new(Arc::new(ArcSwap::from_pointee(table)), Arc::default()));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve(listener, proxy, None, stopped));
    let host = "very.specific.com";

    let (code, out) = get(at, host, "/cookie", &["-i"]).await;
    assert_eq!(code, 200, "{out}");
    let first = line(&out, "backend").to_string();
    let cookie = response_header(&out, "set-cookie").unwrap().to_string();
    assert!(
        cookie.starts_with("session-c=") && cookie.ends_with("; Path=/; HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let (_, out) = get(at, host, "/cookie", &["-i", "-H", &format!("Cookie: {session}")]).await;
        assert_eq!(line(&out, "backend"), first);
        assert!(response_header(&out, "set-cookie").is_none(), "{out}");
    }
    // Without the cookie, each request is a new session: the three backends take them.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(line(&get(at, host, "/cookie", &[]).await.1, "backend").to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    let (_, out) = get(at, host, "/header", &["-i"]).await;
    let first = line(&out, "backend").to_string();
    let value = response_header(&out, "session-h").unwrap().to_string();
    assert!(response_header(&out, "set-cookie").is_none(), "{out}");
    for _ in 0..10 {
        let (_, out) = get(at, host, "/header", &["-i", "-H", &format!("session-h: {value}")]).await;
        assert_eq!(line(&out, "backend"), first);
        assert!(response_header(&out, "session-h").is_none(), "{out}");
    }
    // A session no endpoint has: a new one.
    let (_, out) = get(at, host, "/header", &["-i", "-H", "session-h: gone"]).await;
    assert!(response_header(&out, "session-h").is_some_and(|v| v != "gone"), "{out}");
}

/// Gateway infra/lsgw (listener `http` for gw.example on port 80, pod port `pod_port`; ListenerSets from its
/// namespace allowed), ListenerSets `ls1` (ls.example on port 80), `ls2` in namespace web (not allowed) and
/// `ls3` (gw.example again: conflicts with the Gateway's); a route to the Gateway (v1) and one to `ls1` (v2).
fn listener_set_snapshot(pod_port: u16, backends: [u16; 4]) -> Snapshot {
    let mut text = cluster("lsgw", 80, pod_port);
    text.push_str(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: lsgw, namespace: infra, generation: 1}
spec:
  gatewayClassName: weft
  allowedListeners: {namespaces: {from: Same}}
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: gw.example}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls1, namespace: infra, generation: 2, creationTimestamp: '2026-01-01T00:00:00Z'}
spec:
  parentRef: {name: lsgw}
  listeners: [{name: ls-http, port: 80, protocol: HTTP, hostname: ls.example}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls2, namespace: web, generation: 1}
spec:
  parentRef: {name: lsgw, namespace: infra}
  listeners: [{name: web-http, port: 80, protocol: HTTP, hostname: web.example}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls3, namespace: infra, generation: 1, creationTimestamp: '2026-01-02T00:00:00Z'}
spec:
  parentRef: {name: lsgw}
  listeners: [{name: again, port: 80, protocol: HTTP, hostname: gw.example}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-gateway, namespace: infra, generation: 1}
spec:
  parentRefs: [{name: lsgw}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-set, namespace: infra, generation: 1}
spec:
  parentRefs: [{kind: ListenerSet, name: ls1}, {kind: ListenerSet, name: ls2, namespace: web}]
  rules: [{backendRefs: [{name: v2, port: 8080}]}]
---
",
    );
    with_services(text, &["v1", "v2", "v3"], &backends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_sets_add_listeners_their_gateway_allows() {
    let backends = [
        backend("v1").await,
        backend("v2").await,
        backend("v3").await,
        backend("web").await,
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let snapshot = listener_set_snapshot(at.port(), backends);
    let table = Table::build(&snapshot, &config());
    let wanted = status::wanted(table.gateways(), &snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
    let of = |kind: &str, name: &str| status_of(&wanted, kind, name);
    let gw = of("Gateway", "lsgw");
    assert_eq!(gw["attachedListenerSets"], 2);
    assert_eq!(gw["listeners"].as_array().unwrap().len(), 1);
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 1);
    let ls1 = of("ListenerSet", "ls1");
    assert_eq!(condition(&ls1["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(condition(&ls1["conditions"], "Programmed"), ("True", "Programmed"));
    assert_eq!(ls1["conditions"][0]["observedGeneration"], 2);
    assert_eq!(ls1["listeners"][0]["name"], "ls-http");
    assert_eq!(ls1["listeners"][0]["attachedRoutes"], 1);
    let ls2 = of("ListenerSet", "ls2");
    assert_eq!(condition(&ls2["conditions"], "Accepted"), ("False", "NotAllowed"));
    assert_eq!(condition(&ls2["conditions"], "Programmed"), ("False", "NotAllowed"));
    let ls3 = of("ListenerSet", "ls3");
    assert_eq!(
        condition(&ls3["listeners"][0]["conditions"], "Conflicted"),
        ("True", "HostnameConflict")
    );
    // The Gateway's own listener keeps its place.
    assert_eq!(
        condition(&gw["listeners"][0]["conditions"], "Conflicted"),
        ("False", "NoConflicts")
    );
    let parents = of("HTTPRoute", "to-set")["parents"].clone();
    assert_eq!(parents.as_array().unwrap().len(), 1, "{parents}");
    assert_eq!(parents[0]["parentRef"]["kind"], "ListenerSet");
    assert_eq!(condition(&parents[0]["conditions"], "Accepted"), ("True", "Accepted"));

    let proxy = Arc::new(Proxy::new(Arc::new(ArcSwap::from_pointee(table)), Arc::default()));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve(listener, proxy, None, stopped));
    assert_eq!(line(&get(at, "gw.example", "/", &[]).await.1, "backend"), "v1");
    assert_eq!(line(&get(at, "ls.example", "/", &[]).await.1, "backend"), "v2");
    assert_eq!(get(at, "web.example", "/", &[]).await.0, 404);
}

/// The Services of [`backend_tls_routes`] and their BackendTLSPolicies' `validation`.
const POLICIES: [(&str, &str); 7] = [
    (
        "secure",
        "{hostname: backend.example, caCertificateRefs: [{group: '', kind: ConfigMap, name: backend-ca}]}",
    ),
    (
        "misnamed",
        "{hostname: other.example, caCertificateRefs: [{group: '', kind: ConfigMap, name: backend-ca}]}",
    ),
    (
        "unknownca",
        "{hostname: backend.example, caCertificateRefs: [{group: '', kind: ConfigMap, name: missing}]}",
    ),
    (
        "dnssan",
        "{hostname: sni.example, subjectAltNames: [{type: Hostname, hostname: other.example}, \
         {type: Hostname, hostname: backend.example}], caCertificateRefs: [{group: '', kind: ConfigMap, name: backend-ca}]}",
    ),
    (
        "urisan",
        "{hostname: sni.example, subjectAltNames: [{type: URI, uri: 'spiffe://cluster.local/ns/infra/sa/secure'}], \
         caCertificateRefs: [{group: '', kind: ConfigMap, name: backend-ca}]}",
    ),
    (
        "wrongsan",
        "{hostname: backend.example, subjectAltNames: [{type: URI, uri: 'spiffe://cluster.local/ns/infra/sa/other'}], \
         caCertificateRefs: [{group: '', kind: ConfigMap, name: backend-ca}]}",
    ),
    ("system", "{hostname: backend.example, wellKnownCACertificates: System}"),
];

/// Services (each of [`POLICIES`]) behind one TLS backend whose certificate a CA signed for backend.example and
/// spiffe://cluster.local/ns/infra/sa/secure; BackendTLSPolicies: `secure` for backend.example with the CA,
/// `misnamed` for other.example, `unknownca` with a ConfigMap that does not exist, `dnssan` and `urisan` for
/// one of their subjectAltNames (the SNI sni.example), `wrongsan` for a URI the certificate lacks, `system`
/// with the system's roots (which lack the CA).
fn backend_tls_routes(ca: &str) -> String {
    let ca: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    // A rule `/NAME` to each Service, and a mirror to `secure`.
    let mut text = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: tls, namespace: infra, generation: 1}
spec:
  parentRefs: [{name: gw, sectionName: same}]
  rules:
  - matches: [{path: {value: /mirrored}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: secure, port: 8080}}}]
    backendRefs: [{name: v1, port: 8080}]
",
    );
    for (name, _) in POLICIES {
        text.push_str(&format!(
            "  - {{matches: [{{path: {{value: /{name}}}}}], backendRefs: [{{name: {name}, port: 8080}}]}}\n"
        ));
    }
    text.push_str("---\n");
    text.push_str(&format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: infra}}
data:
  ca.crt: |
{ca}---
"
    ));
    for (name, validation) in POLICIES {
        text.push_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: infra, generation: 1}}
spec:
  targetRefs: [{{group: '', kind: Service, name: {name}}}]
  validation: {validation}
---
"
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policies_verify_the_backends_certificate() {
    let (ca, issuer) = common::ca();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["backend.example".to_string()]).unwrap();
    let spiffe = "spiffe://cluster.local/ns/infra/sa/secure".try_into().unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(spiffe));
    let cert = params.signed_by(&key, &issuer).unwrap().pem();
    let leaf = weft_ingress::tls::from_pem(cert.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let tls = tls_backend("secure", leaf).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut routes = backend_tls_routes(&ca);
    for (name, _) in POLICIES {
        routes.push_str(&service("infra", name, tls));
    }
    let snapshot = snapshot(at.port(), [backend("v1").await, 2, 3, 4], &routes);
    let table = Table::build(&snapshot, &config());
    let wanted = status::wanted(table.gateways(), &snapshot, CONTROLLER, "2026-12-04T00:00:00Z");
    let ancestors = |name: &str| status_of(&wanted, "BackendTLSPolicy", name)["ancestors"].clone();
    let secure = ancestors("secure");
    assert_eq!(secure[0]["ancestorRef"]["name"], "gw");
    assert_eq!(secure[0]["controllerName"], CONTROLLER);
    assert_eq!(condition(&secure[0]["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&secure[0]["conditions"], "ResolvedRefs"),
        ("True", "ResolvedRefs")
    );
    assert_eq!(
        condition(&ancestors("unknownca")[0]["conditions"], "ResolvedRefs"),
        ("False", "InvalidCACertificateRef")
    );
    let system = ancestors("system");
    assert_eq!(
        condition(&system[0]["conditions"], "Accepted"),
        ("True", "Accepted"),
        "{system}"
    );

    let proxy = Arc::new(Proxy::new(Arc::new(ArcSwap::from_pointee(table)), Arc::default()));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve(listener, proxy, None, stopped));
    let host = "very.specific.com";
    // Verified for backend.example, which is also the SNI.
    let (code, body) = get(at, host, "/secure", &[]).await;
    assert_eq!(
        (code, line(&body, "backend"), line(&body, "sni")),
        (200, "secure", "backend.example"),
        "{body}"
    );
    // The certificate is not for other.example: no answer from the backend.
    assert_eq!(get(at, host, "/misnamed", &[]).await.0, 502);
    // A policy whose CA cannot be found: its Service's share answers 500.
    assert_eq!(get(at, host, "/unknownca", &[]).await.0, 500);
    // subjectAltNames: verified for one of them (a DNS name or a URI), the SNI still the hostname.
    for path in ["/dnssan", "/urisan"] {
        let (code, body) = get(at, host, path, &[]).await;
        assert_eq!((code, line(&body, "sni")), (200, "sni.example"), "{path}: {body}");
    }
    assert_eq!(get(at, host, "/wrongsan", &[]).await.0, 502);
    // The system's roots: followed, and they do not know the test's CA.
    assert_eq!(get(at, host, "/system", &[]).await.0, 502);
    // A mirror to the Service goes over the policy's TLS too (its server name says so).
    assert_eq!(get(at, host, "/mirrored", &[]).await.0, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mirrored = || {
        common::TLS_SEEN
            .lock()
            .unwrap()
            .iter()
            .any(|s| s == "secure /mirrored backend.example")
    };
    while !mirrored() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(mirrored(), "{:?}", common::TLS_SEEN.lock().unwrap());
}
