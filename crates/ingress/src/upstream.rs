//! A Service port's upstreams: the endpoints of its EndpointSlices (not its ClusterIP), ready ones, or the
//! serving-but-terminating ones when none is ready, tried in round-robin order.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::api::networking::v1::ServiceBackendPort;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug)]
pub struct Upstream {
    /// `namespace/name:port`, for logs.
    pub service: String,
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(service: String, endpoints: Vec<SocketAddr>) -> Upstream {
        Upstream {
            service,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// Every endpoint once, starting with the next one in round-robin order: the first is the one to use, the
    /// others are where a retry goes.
    pub fn attempts(&self) -> impl Iterator<Item = SocketAddr> + Clone + '_ {
        let n = self.endpoints.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| self.endpoints[(start + i) % n])
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BackendError {
    #[error("Service {namespace}/{name} does not exist")]
    NoService { namespace: String, name: String },
    #[error("Service {namespace}/{name} has no port {port}")]
    NoPort {
        namespace: String,
        name: String,
        port: String,
    },
    #[error("a backend without a port")]
    PortMissing,
}

/// The Services and EndpointSlices of a snapshot, by namespace and Service name.
#[derive(Default)]
pub struct Index<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Index<'a> {
    pub fn new(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Index<'a> {
        let mut index = Index::default();
        for service in services {
            if let (Some(ns), Some(name)) = (&service.metadata.namespace, &service.metadata.name) {
                index.services.insert((ns, name), service);
            }
        }
        for slice in slices {
            let owner = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(name)) = (&slice.metadata.namespace, owner) {
                index.slices.entry((ns, name)).or_default().push(slice);
            }
        }
        index
    }

    /// The endpoints of Service `namespace/name` at `port` (the Service's port, by number or name).
    pub fn upstream(&self, namespace: &str, name: &str, port: &ServiceBackendPort) -> Result<Upstream, BackendError> {
        let service = self
            .services
            .get(&(namespace, name))
            .ok_or_else(|| BackendError::NoService {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        let wanted = match (&port.number, &port.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => n.clone(),
            (None, None) => return Err(BackendError::PortMissing),
        };
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let service_port = ports
            .iter()
            .find(|p| match (&port.number, &port.name) {
                (Some(n), _) => p.port == *n,
                (None, name) => p.name.as_ref() == name.as_ref(),
            })
            .ok_or_else(|| BackendError::NoPort {
                namespace: namespace.into(),
                name: name.into(),
                port: wanted.clone(),
            })?;
        // A slice names its ports as the Service does; an unnamed port is "" or absent.
        let port_name = service_port.name.as_deref().unwrap_or_default();
        let slices = self
            .slices
            .get(&(namespace, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (mut ready, mut draining) = (Vec::new(), Vec::new());
        for slice in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let target = slice.ports.as_deref().unwrap_or_default().iter().find_map(|p| {
                (p.name.as_deref().unwrap_or_default() == port_name)
                    .then_some(p.port)
                    .flatten()
            });
            let Some(target) = target.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let into = match condition(endpoint) {
                    Condition::Ready => &mut ready,
                    Condition::Draining => &mut draining,
                    Condition::Out => continue,
                };
                let addrs = endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok());
                into.extend(addrs.map(|ip| SocketAddr::new(ip, target)));
            }
        }
        let mut endpoints = if ready.is_empty() { draining } else { ready };
        endpoints.sort();
        endpoints.dedup();
        Ok(Upstream::new(format!("{namespace}/{name}:{wanted}"), endpoints))
    }
}

enum Condition {
    Ready,
    /// Terminating but still serving: used only when nothing is ready.
    Draining,
    Out,
}

/// An endpoint's conditions; an absent condition counts as true (discovery/v1).
fn condition(endpoint: &Endpoint) -> Condition {
    let c = endpoint.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(true);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    match (ready, serving, terminating) {
        (true, _, _) => Condition::Ready,
        (false, true, true) => Condition::Draining,
        _ => Condition::Out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}, {"port": 81}]}
        }))
        .unwrap()
    }

    fn slice(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "", "port": 8081}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn port(number: Option<i32>, name: Option<&str>) -> ServiceBackendPort {
        ServiceBackendPort {
            number,
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn ports_by_number_or_name_resolve_to_the_slices_target_port() {
        let (svc, s) = (service(), slice("a", json!([{"addresses": ["10.0.0.1"]}])));
        let index = Index::new([&svc], [&s]);
        let by_name = index.upstream("default", "web", &port(None, Some("http"))).unwrap();
        assert_eq!(by_name.endpoints(), ["10.0.0.1:8080".parse().unwrap()]);
        let by_number = index.upstream("default", "web", &port(Some(80), None)).unwrap();
        assert_eq!(by_number.endpoints(), by_name.endpoints());
        let unnamed = index.upstream("default", "web", &port(Some(81), None)).unwrap();
        assert_eq!(unnamed.endpoints(), ["10.0.0.1:8081".parse().unwrap()]);
        assert!(matches!(
            index.upstream("default", "web", &port(Some(82), None)),
            Err(BackendError::NoPort { .. })
        ));
        assert!(matches!(
            index.upstream("default", "nope", &port(Some(80), None)),
            Err(BackendError::NoService { .. })
        ));
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let svc = service();
        let draining =
            json!({"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}});
        let failed = json!({"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": false}});
        let some_ready = slice("a", json!([{"addresses": ["10.0.0.1"]}, draining, failed]));
        let index = Index::new([&svc], [&some_ready]);
        let up = index.upstream("default", "web", &port(Some(80), None)).unwrap();
        assert_eq!(up.endpoints(), ["10.0.0.1:8080".parse().unwrap()]);
        let none_ready = slice("a", json!([draining, failed]));
        let index = Index::new([&svc], [&none_ready]);
        let up = index.upstream("default", "web", &port(Some(80), None)).unwrap();
        assert_eq!(up.endpoints(), ["10.0.0.2:8080".parse().unwrap()]);
    }

    #[test]
    fn attempts_rotate_and_cover_every_endpoint() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let up = Upstream::new("x".into(), vec![a, b]);
        assert_eq!(up.attempts().collect::<Vec<_>>(), [a, b]);
        assert_eq!(up.attempts().collect::<Vec<_>>(), [b, a]);
        assert_eq!(Upstream::new("x".into(), vec![]).attempts().count(), 0);
    }
}
