//! What the proxy's end-to-end tests share: the cluster's objects as YAML (weft's IngressClass `nginx`, a Service
//! whose endpoints are upstreams on loopback, an Ingress of one path), the controller's config, and the signals of
//! a request an upstream holds.

// Each test binary uses a part of these.
#![allow(dead_code)]

use std::process::Command;
use weft_ingress::Config;

/// The prefix of ingress-nginx's annotations.
pub const A: &str = "nginx.ingress.kubernetes.io/";

/// Told when a held request reaches an upstream, which answers it once released.
pub static ARRIVED: tokio::sync::Notify = tokio::sync::Notify::const_new();
pub static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The IngressClass `nginx`, of weft's controller.
pub const INGRESS_CLASS: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: weft.dev/ingress}
---
";

/// The controller's config: the class of [`INGRESS_CLASS`].
pub fn config() -> Config {
    Config {
        controller: "weft.dev/ingress".into(),
        ..Config::default()
    }
}

/// Service `name` (port 80) whose endpoints are the upstreams on 127.0.0.1 at `ports` (one EndpointSlice each).
pub fn service(name: &str, ports: &[u16]) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n"
    );
    for port in ports {
        text.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{port}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n---\n"
        ));
    }
    text
}

/// Ingress `name` of class nginx for `host` with `annotations` (a YAML flow mapping's inside): `path` of `kind` to
/// Service `backend`, port 80.
pub fn ingress(name: &str, host: &str, annotations: &str, path: &str, kind: &str, backend: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default, annotations: {{{annotations}}}}}
spec:
  ingressClassName: nginx
  rules:
  - host: {host}
    http:
      paths:
      - {{path: \"{path}\", pathType: {kind}, backend: {{service: {{name: {backend}, port: {{number: 80}}}}}}}}
---
"
    )
}

/// curl's answer: status code, HTTP version and body.
pub async fn curl(args: &[&str]) -> (String, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let given = args.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"])
            .args(&given)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, version) = tail.split_once(' ').unwrap();
    (code.to_string(), version.to_string(), body.to_string())
}

/// The value of a `KEY=value` line of a test upstream's answer.
pub fn line<'a>(body: &'a str, key: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
}

/// A CA: its PEM and what signs with it.
pub fn ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, rcgen::Issuer::new(params, key))
}

/// A certificate for `names` signed by `ca`, and its key (PEM).
pub fn issue(ca: &rcgen::Issuer<'static, rcgen::KeyPair>, names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Every request a [`tls_upstream`] got: `NAME PATH SNI`.
pub static TLS_SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// An upstream on loopback terminating TLS with `config` (HTTP/1.1 and h2 by ALPN), answering `backend=NAME` and
/// `sni=` the server name the client sent (`none` without one); its port.
pub async fn tls_upstream(config: rustls::ServerConfig, name: &'static str) -> u16 {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = stream.get_ref().1.server_name().unwrap_or("none").to_string();
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = format!("{name} {} {sni}", request.uri().path());
                    TLS_SEEN.lock().unwrap().push(seen);
                    let text = format!("backend={name}\nsni={sni}\n");
                    let body = http_body_util::Full::new(bytes::Bytes::from(text));
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}
