//! Health-check node ports of `externalTrafficPolicy: Local` LoadBalancer Services, as kube-proxy serves them:
//! HTTP 200 with the count of this node's ready endpoints when there are any, 503 otherwise, so a load balancer
//! sends traffic only to nodes that can serve it locally.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_model::Snapshot;

/// What one health-check port reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

/// Health-check port → what it reports, for this node.
pub fn desired(snap: &Snapshot, node: &str) -> BTreeMap<u16, Check> {
    let mut out = BTreeMap::new();
    let slices = weft_proxy::endpoints::Slices::index(snap);
    for svc in snap.services() {
        let Some(spec) = &svc.spec else { continue };
        let Some(port) = spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        if spec.external_traffic_policy.as_deref() != Some("Local") {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut local = std::collections::BTreeSet::new();
        for p in spec.ports.iter().flatten() {
            for ep in slices.for_port(&ns, &name, p, node) {
                if ep.local && ep.ready {
                    local.insert(ep.ip);
                }
            }
        }
        out.insert(
            port,
            Check {
                namespace: ns,
                name,
                local_endpoints: local.len(),
            },
        );
    }
    out
}

/// The listeners, one thread each; a port no longer wanted is closed on its next connection or wake-up.
#[derive(Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<u16, Check>>>,
    listening: BTreeMap<u16, ()>,
}

impl Health {
    pub fn sync(&mut self, desired: BTreeMap<u16, Check>) {
        let gone: Vec<u16> = self
            .listening
            .keys()
            .filter(|p| !desired.contains_key(p))
            .copied()
            .collect();
        let new: Vec<u16> = desired
            .keys()
            .filter(|p| !self.listening.contains_key(p))
            .copied()
            .collect();
        *self.checks.lock().unwrap_or_else(|e| e.into_inner()) = desired;
        for port in gone {
            self.listening.remove(&port);
            // Wake the accept loop so it sees the port is no longer wanted and closes it.
            let _ = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200));
        }
        for port in new {
            match TcpListener::bind(("0.0.0.0", port)) {
                Ok(listener) => {
                    let checks = self.checks.clone();
                    std::thread::spawn(move || serve(listener, port, &checks));
                    self.listening.insert(port, ());
                }
                Err(e) => eprintln!("weft agent: health check port {port}: {e}"),
            }
        }
    }
}

fn serve(listener: TcpListener, port: u16, checks: &Mutex<BTreeMap<u16, Check>>) {
    for stream in listener.incoming() {
        let check = checks.lock().unwrap_or_else(|e| e.into_inner()).get(&port).cloned();
        let Some(check) = check else { return };
        if let Ok(stream) = stream {
            answer(stream, &check);
        }
    }
}

fn answer(mut stream: TcpStream, check: &Check) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 1024];
    let _ = stream.read(&mut buf);
    let (status, reason) = if check.local_endpoints > 0 {
        (200, "OK")
    } else {
        (503, "Service Unavailable")
    };
    let body = format!(
        "{{\"service\":{{\"namespace\":\"{}\",\"name\":\"{}\"}},\"localEndpoints\":{},\"serviceProxyHealthy\":true}}",
        check.namespace, check.name, check.local_endpoints
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
