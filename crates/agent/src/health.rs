//! Health-check node ports of `externalTrafficPolicy: Local` LoadBalancer Services, as kube-proxy serves them:
//! HTTP 200 with the count of this node's ready endpoints when there are any, 503 otherwise, so a load balancer
//! sends traffic only to nodes that can serve it locally.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_proxy::Ruleset;

/// What one health-check port reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

/// Health-check port → what it reports, from the proxy's plan for this node.
pub fn desired(rules: &Ruleset) -> BTreeMap<u16, Check> {
    let checks = rules.services.iter().filter_map(|(id, service)| {
        let (port, local_endpoints) = service.health_check?;
        let (namespace, name) = id.split_once('/')?;
        let check = Check {
            namespace: namespace.to_string(),
            name: name.to_string(),
            local_endpoints,
        };
        Some((port, check))
    });
    checks.collect()
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
                Err(e) => tracing::warn!(port, error = %e, "health check port not served"),
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

fn answer(stream: TcpStream, check: &Check) {
    let status = if check.local_endpoints > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    let body = format!(
        "{{\"service\":{{\"namespace\":\"{}\",\"name\":\"{}\"}},\"localEndpoints\":{},\"serviceProxyHealthy\":true}}",
        check.namespace, check.name, check.local_endpoints
    );
    let _ = weft_daemon::http::respond(stream, |_| (status, "application/json", body));
}
