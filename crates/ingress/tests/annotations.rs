//! ingress-nginx's traffic annotations on the wire: session affinity, rate and connection limits, CORS, basic
//! authentication, custom error pages and the default-backend annotation, driven by curl through the proxy on
//! loopback to small upstream "pods" (each closes its connections, so one that is stopped refuses at once).

use arc_swap::ArcSwap;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use tokio::net::TcpListener;
use weft_ingress::proxy::Proxy;
use weft_ingress::{Table, server};
use weft_model::Snapshot;

mod common;

use common::{A, ARRIVED, INGRESS_CLASS, RELEASE, ca, config, issue, service};

/// A pod on 127.0.0.1: answers `who=PORT`, the path and the x-* and origin headers it got; `/status/N` answers
/// N; a request with X-Code (as the error backend gets) answers that code. Aborting the task stops it.
async fn pod() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                    let path = request.uri().path().to_string();
                    if path == "/hold" {
                        ARRIVED.notify_one();
                        RELEASE.notified().await;
                    }
                    let mut text = format!(
                        "who={port}\nmethod={}\npath={}\n",
                        request.method(),
                        request.uri().path_and_query().unwrap()
                    );
                    let mut headers: Vec<_> = request
                        .headers()
                        .iter()
                        .filter(|(k, _)| k.as_str().starts_with("x-") || k.as_str() == "origin")
                        .map(|(k, v)| format!("{k}={}\n", v.to_str().unwrap()))
                        .collect();
                    headers.sort();
                    text.extend(headers);
                    let code = path
                        .strip_prefix("/status/")
                        .or(request.headers().get("x-code").map(|c| c.to_str().unwrap()))
                        .and_then(|c| c.parse::<u16>().ok())
                        .unwrap_or(200);
                    let _ = request.into_body().collect().await;
                    let response = hyper::Response::builder()
                        .status(code)
                        .header("access-control-allow-origin", "upstream")
                        .body(Full::new(Bytes::from(text)))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

/// Ingress `name` for `host`, path `/` (Prefix) to Service `backend`, with `annotations` (a YAML flow mapping's
/// inside).
fn ingress(name: &str, host: &str, annotations: &str, backend: &str) -> String {
    common::ingress(name, host, annotations, "/", "Prefix", backend)
}

fn table(objects: &str) -> Table {
    let text = format!("{INGRESS_CLASS}{objects}");
    Table::build(&Snapshot::new(1, weft_model::parse(&text, "test").unwrap()), &config())
}

/// A proxy serving `table` on loopback (plain HTTP), until the sender is dropped.
async fn proxy(table: Table) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let proxy = Arc::new(Proxy::new(Arc::new(ArcSwap::from_pointee(table)), Arc::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve(listener, proxy, None, stopped));
    (addr, stop)
}

/// curl's status code, response headers (lower-case names) and body.
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn line(&self, key: &str) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix(&format!("{key}=")))
    }
}

async fn curl(proxy: SocketAddr, host: &str, path: &str, extra: &[&str]) -> Answer {
    let mut args = vec![
        "-sS".to_string(),
        "-i".into(),
        "--max-time".into(),
        "10".into(),
        "-H".into(),
        format!("Host: {host}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(format!("http://{proxy}{path}"));
    let out = tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        code,
        headers,
        body: body.to_string(),
    }
}

/// The `name=value` of a Set-Cookie header.
fn session(answer: &Answer) -> String {
    let cookie = answer
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {:?}", answer.headers));
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_keeps_a_session_on_its_pod_and_moves_it_when_the_pod_fails() {
    let (mut pods, mut tasks) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (port, task) = pod().await;
        pods.push(port);
        tasks.push(task);
    }
    let objects = [
        service("web", &pods),
        ingress(
            "keep",
            "keep.example",
            &format!("{A}affinity: cookie, {A}affinity-mode: persistent, {A}session-cookie-max-age: \"60\""),
            "web",
        ),
        ingress(
            "move",
            "move.example",
            &format!("{A}affinity: cookie, {A}session-cookie-name: route, {A}session-cookie-path: /app, {A}session-cookie-change-on-failure: \"true\", {A}session-cookie-samesite: Strict"),
            "web",
        ),
    ]
    .concat();
    let table = table(&objects);
    assert!(table.problems().is_empty(), "{:?}", table.problems());
    let (proxy, _stop) = proxy(table).await;
    let mut sessions = Vec::new();
    for host in ["keep.example", "move.example"] {
        let first = curl(proxy, host, "/", &[]).await;
        assert_eq!(first.code, 200);
        let cookie = first.header("set-cookie").unwrap().to_string();
        let pod = first.line("who").unwrap().to_string();
        for _ in 0..6 {
            let again = curl(proxy, host, "/", &["-H", &format!("Cookie: {}", session(&first))]).await;
            assert_eq!(again.line("who"), Some(pod.as_str()), "{host}");
            assert_eq!(again.header("set-cookie"), None, "{host}");
        }
        sessions.push((host, session(&first), cookie, pod));
    }
    let (_, _, keep_cookie, _) = &sessions[0];
    assert!(
        keep_cookie.starts_with("INGRESSCOOKIE=") && keep_cookie.ends_with("; Path=/; Max-Age=60; HttpOnly"),
        "{keep_cookie}"
    );
    let (_, _, move_cookie, _) = &sessions[1];
    assert!(
        move_cookie.starts_with("route=") && move_cookie.ends_with("; Path=/app; HttpOnly; SameSite=Strict"),
        "{move_cookie}"
    );
    // Both sessions' pods stop: each request goes to another pod; only change-on-failure moves the session.
    for (_, _, _, pod) in &sessions {
        let i = pods.iter().position(|p| p.to_string() == *pod).unwrap();
        tasks[i].abort();
    }
    for (host, cookie, _, pod) in &sessions {
        let after = curl(proxy, host, "/", &["-H", &format!("Cookie: {cookie}")]).await;
        assert_eq!(after.code, 200, "{host}: {}", after.body);
        assert_ne!(after.line("who"), Some(pod.as_str()), "{host}");
        match *host {
            "keep.example" => assert_eq!(after.header("set-cookie"), None),
            _ => {
                let moved = session(&after);
                let again = curl(proxy, host, "/", &["-H", &format!("Cookie: {moved}")]).await;
                assert_eq!(again.line("who"), after.line("who"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_and_connection_limits_answer_503_per_client_except_the_whitelist() {
    let (port, _pod) = pod().await;
    let objects = [
        service("web", &[port]),
        // rpm 1 with a burst of 1: two requests at once, then one a minute.
        ingress(
            "rpm",
            "rpm.example",
            &format!("{A}limit-rpm: \"1\", {A}limit-burst-multiplier: \"1\""),
            "web",
        ),
        ingress(
            "free",
            "free.example",
            &format!("{A}limit-rpm: \"1\", {A}limit-burst-multiplier: \"1\", {A}limit-whitelist: 127.0.0.0/8"),
            "web",
        ),
        ingress("conn", "conn.example", &format!("{A}limit-connections: \"1\""), "web"),
    ]
    .concat();
    let (proxy, _stop) = proxy(table(&objects)).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(curl(proxy, "rpm.example", "/", &[]).await.code);
    }
    assert_eq!(codes, [200, 200, 503, 503]);
    for _ in 0..4 {
        assert_eq!(curl(proxy, "free.example", "/", &[]).await.code, 200);
    }
    // One request in flight: a second from the same client is refused until it has finished.
    let held = tokio::spawn(curl(proxy, "conn.example", "/hold", &[]));
    ARRIVED.notified().await;
    assert_eq!(curl(proxy, "conn.example", "/", &[]).await.code, 503);
    RELEASE.notify_one();
    assert_eq!(held.await.unwrap().code, 200);
    assert_eq!(curl(proxy, "conn.example", "/", &[]).await.code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_and_decorates_responses_for_allowed_origins() {
    let (port, _pod) = pod().await;
    let objects = [
        service("web", &[port]),
        ingress(
            "cors",
            "cors.example",
            &format!(
                "{A}enable-cors: \"true\", {A}cors-allow-origin: \"https://app.example, https://*.sub.example\", {A}cors-expose-headers: X-Total, {A}cors-max-age: \"600\""
            ),
            "web",
        ),
        ingress("any", "any.example", &format!("{A}enable-cors: \"true\""), "web"),
    ]
    .concat();
    let (proxy, _stop) = proxy(table(&objects)).await;
    let preflight = curl(
        proxy,
        "cors.example",
        "/api",
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Origin: https://x.sub.example",
            "-H",
            "Access-Control-Request-Method: PUT",
        ],
    )
    .await;
    assert_eq!(preflight.code, 204, "{}", preflight.body);
    assert_eq!(preflight.body, "");
    for (name, value) in [
        ("access-control-allow-origin", "https://x.sub.example"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET, PUT, POST, DELETE, PATCH, OPTIONS"),
        ("access-control-expose-headers", "X-Total"),
        ("access-control-max-age", "600"),
    ] {
        assert_eq!(preflight.header(name), Some(value), "{name}");
    }
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("Authorization")
    );
    // A simple request: the upstream's answer with the headers (replacing its own).
    let get = curl(proxy, "cors.example", "/api", &["-H", "Origin: https://app.example"]).await;
    assert_eq!((get.code, get.line("path")), (200, Some("/api")));
    assert_eq!(get.header("access-control-allow-origin"), Some("https://app.example"));
    // Another origin: no CORS, and its OPTIONS goes to the upstream.
    let other = curl(
        proxy,
        "cors.example",
        "/api",
        &["-X", "OPTIONS", "-H", "Origin: https://evil.example"],
    )
    .await;
    assert_eq!((other.code, other.line("method")), (200, Some("OPTIONS")));
    assert_eq!(other.header("access-control-allow-origin"), Some("upstream"));
    assert_eq!(other.header("access-control-max-age"), None);
    let any = curl(proxy, "any.example", "/", &["-H", "Origin: https://whoever.example"]).await;
    assert_eq!(any.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_an_htpasswd_secret_and_503_without_one() {
    let (port, _pod) = pod().await;
    let bob = bcrypt::hash("hunter2", 4).unwrap();
    let file = format!("alice:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\nbob:{bob}\n");
    let b64 = base64::engine::general_purpose::STANDARD.encode(file);
    let objects = [
        service("web", &[port]),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: users, namespace: default}}\ndata: {{auth: {b64}}}\n---\n"
        ),
        ingress(
            "auth",
            "auth.example",
            &format!("{A}auth-type: basic, {A}auth-secret: users, {A}auth-realm: \"Staff only\""),
            "web",
        ),
        ingress(
            "nosecret",
            "nosecret.example",
            &format!("{A}auth-type: basic, {A}auth-secret: absent"),
            "web",
        ),
    ]
    .concat();
    let table = table(&objects);
    let reasons: Vec<&str> = table.problems().iter().map(|p| p.reason).collect();
    assert_eq!(reasons, ["SecretNotFound"]);
    let (proxy, _stop) = proxy(table).await;
    let refused = curl(proxy, "auth.example", "/", &[]).await;
    assert_eq!(refused.code, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Basic realm=\"Staff only\""));
    // An ACME server cannot log in: its HTTP-01 challenges pass, here and where the Secret is missing.
    let challenge = "/.well-known/acme-challenge/tok";
    let solved = curl(proxy, "auth.example", challenge, &[]).await;
    assert_eq!((solved.code, solved.line("path")), (200, Some(challenge)));
    assert_eq!(curl(proxy, "nosecret.example", challenge, &[]).await.code, 200);
    for (user, code) in [
        ("alice:secret", 200),
        ("bob:hunter2", 200),
        ("bob:hunter2", 200),
        ("bob:nope", 401),
        ("eve:secret", 401),
    ] {
        assert_eq!(
            curl(proxy, "auth.example", "/", &["-u", user]).await.code,
            code,
            "{user}"
        );
    }
    assert_eq!(
        curl(proxy, "nosecret.example", "/", &["-u", "alice:secret"]).await.code,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_http_errors_go_to_the_default_backend_annotation_with_ingress_nginx_headers() {
    let (web, _web) = pod().await;
    let (errors, _errors) = pod().await;
    let objects = [
        service("web", &[web]),
        service("errors", &[errors]),
        service("empty", &[]),
        ingress(
            "pages",
            "pages.example",
            &format!("{A}custom-http-errors: \"404,503\", {A}default-backend: errors"),
            "web",
        ),
        ingress("own", "own.example", &format!("{A}custom-http-errors: \"404\""), "web"),
        ingress(
            "fallback",
            "fallback.example",
            &format!("{A}default-backend: errors"),
            "empty",
        ),
    ]
    .concat();
    let table = table(&objects);
    assert!(table.problems().is_empty(), "{:?}", table.problems());
    let (proxy, _stop) = proxy(table).await;
    let page = curl(
        proxy,
        "pages.example",
        "/status/404?q=1",
        &["-H", "Accept: application/json", "-H", "X-Request-ID: req-1"],
    )
    .await;
    assert_eq!(page.code, 404);
    assert_eq!(page.line("who"), Some(errors.to_string().as_str()));
    for (key, value) in [
        ("x-code", "404"),
        ("x-format", "application/json"),
        ("x-original-uri", "/status/404?q=1"),
        ("x-namespace", "default"),
        ("x-ingress-name", "pages"),
        ("x-service-name", "web"),
        ("x-service-port", "80"),
        ("x-request-id", "req-1"),
    ] {
        assert_eq!(page.line(key), Some(value), "{key}: {}", page.body);
    }
    // Codes not listed pass as the upstream answered them.
    let passed = curl(proxy, "pages.example", "/status/500", &[]).await;
    assert_eq!((passed.code, passed.line("who")), (500, Some(web.to_string().as_str())));
    // Without a default-backend: weft's own page.
    let own = curl(proxy, "own.example", "/status/404", &[]).await;
    assert_eq!((own.code, own.body.as_str()), (404, "404 Not Found\n"));
    // A backend without endpoints: the request itself goes to the default-backend Service.
    let fell = curl(proxy, "fallback.example", "/x", &[]).await;
    assert_eq!(
        (fell.code, fell.line("who"), fell.line("path")),
        (200, Some(errors.to_string().as_str()), Some("/x"))
    );
}

/// An HTTPS pod with a certificate for web.internal that takes only clients with a certificate of `ca`
/// (`common::tls_upstream`: answers `sni=` the name the client sent).
async fn tls_pod(ca_pem: &str, ca: &rcgen::Issuer<'static, rcgen::KeyPair>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = issue(ca, &["web.internal"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    common::tls_upstream(config, "web").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_ssl_verifies_the_upstream_by_name_and_presents_the_client_certificate() {
    let (ca_pem, ca) = ca();
    let port = tls_pod(&ca_pem, &ca).await;
    let (client_cert, client_key) = issue(&ca, &["weft-ingress"]);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = |name: &str, with_client: bool| {
        let client = if with_client {
            format!(", tls.crt: {}, tls.key: {}", b64(&client_cert), b64(&client_key))
        } else {
            String::new()
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ndata: {{ca.crt: {}{client}}}\n---\n",
            b64(&ca_pem)
        )
    };
    let https = format!("{A}backend-protocol: HTTPS");
    let verified = |secret: &str, name: &str| {
        format!(
            "{https}, {A}proxy-ssl-secret: default/{secret}, {A}proxy-ssl-verify: \"on\", {A}proxy-ssl-name: {name}, {A}proxy-ssl-server-name: \"on\""
        )
    };
    let objects = [
        service("tlsweb", &[port]),
        secret("upstream-mtls", true),
        secret("upstream-ca", false),
        ingress(
            "good",
            "good.example",
            &verified("upstream-mtls", "web.internal"),
            "tlsweb",
        ),
        ingress(
            "wrongname",
            "wrongname.example",
            &verified("upstream-mtls", "other.internal"),
            "tlsweb",
        ),
        ingress(
            "nocert",
            "nocert.example",
            &verified("upstream-ca", "web.internal"),
            "tlsweb",
        ),
        ingress(
            "unverified",
            "unverified.example",
            &format!("{https}, {A}proxy-ssl-secret: upstream-mtls"),
            "tlsweb",
        ),
        ingress(
            "missing",
            "missing.example",
            &verified("absent", "web.internal"),
            "tlsweb",
        ),
    ]
    .concat();
    let table = table(&objects);
    let reasons: Vec<&str> = table.problems().iter().map(|p| p.reason).collect();
    assert_eq!(reasons, ["SecretNotFound"], "{:?}", table.problems());
    let (proxy, _stop) = proxy(table).await;
    for (host, code, sni) in [
        ("good.example", 200, Some("web.internal")),
        ("wrongname.example", 502, None),
        ("nocert.example", 502, None),
        // Not verified, no SNI (the upstream is an address), still the client certificate.
        ("unverified.example", 200, Some("none")),
        ("missing.example", 503, None),
    ] {
        let answer = curl(proxy, host, "/", &[]).await;
        assert_eq!(answer.code, code, "{host}: {}", answer.body);
        if sni.is_some() {
            assert_eq!(answer.line("sni"), sni, "{host}");
        }
    }
}
