//! The endpoints of one Service port, gathered from the Service's EndpointSlices, and the subset the proxy may
//! use: ready ones, or (only when none is ready) serving-and-terminating ones, as kube-proxy does.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use weft_model::Snapshot;
use weft_model::k8s_openapi::api::core::v1::ServicePort;
use weft_model::k8s_openapi::api::discovery::v1::EndpointSlice;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On the node the plan is for.
    pub local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// The EndpointSlices of a snapshot by (namespace, Service name): one pass, so planning stays linear in the
/// number of Services. Only IPv4 slices yield endpoints; the type is checked there, not here (every field read
/// of 10,000 slices is a cache miss).
pub struct Slices<'a>(HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>);

impl<'a> Slices<'a> {
    pub fn index(snap: &'a Snapshot) -> Slices<'a> {
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in snap.endpoint_slices() {
            let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(svc) = weft_model::object::labels(&slice.metadata).get(SERVICE_NAME_LABEL) {
                by_service.entry((ns, svc.as_str())).or_default().push(slice);
            }
        }
        Slices(by_service)
    }

    /// The slices of `namespace/service`, in the snapshot's (name) order, of any address type.
    pub fn of<'s>(&'s self, namespace: &'s str, service: &'s str) -> &'s [&'s EndpointSlice] {
        self.0.get(&(namespace, service)).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every endpoint of `namespace/service` for the Service port `port` (matched by name and protocol).
    pub fn for_port(&self, namespace: &str, service: &str, port: &ServicePort, node: &str) -> Vec<Endpoint> {
        endpoints_of(self.of(namespace, service), port, node)
    }
}

fn endpoints_of(slices: &[&EndpointSlice], port: &ServicePort, node: &str) -> Vec<Endpoint> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let name = port.name.as_deref().unwrap_or_default();
    let mut out = BTreeSet::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let Some(number) = slice.ports.iter().flatten().find_map(|p| {
            let same =
                p.name.as_deref().unwrap_or_default() == name && p.protocol.as_deref().unwrap_or("TCP") == protocol;
            same.then_some(p.port).flatten()
        }) else {
            continue;
        };
        let Ok(number) = u16::try_from(number) else { continue };
        for ep in &slice.endpoints {
            let conditions = ep.conditions.clone().unwrap_or_default();
            // Missing conditions mean "ready" (the API's documented default), serving follows ready.
            let ready = conditions.ready.unwrap_or(true);
            let serving = conditions.serving.unwrap_or(ready);
            let terminating = conditions.terminating.unwrap_or(false);
            for address in &ep.addresses {
                let Ok(ip) = address.parse() else { continue };
                out.insert(Endpoint {
                    ip,
                    port: number,
                    local: ep.node_name.as_deref() == Some(node),
                    ready,
                    serving,
                    terminating,
                });
            }
        }
    }
    out.into_iter().collect()
}

/// The endpoints traffic may go to: the ready ones, else the serving terminating ones.
pub fn usable(all: &[Endpoint]) -> Vec<Endpoint> {
    let ready: Vec<Endpoint> = all.iter().filter(|e| e.ready).cloned().collect();
    if !ready.is_empty() {
        return ready;
    }
    all.iter().filter(|e| e.serving && e.terminating).cloned().collect()
}
