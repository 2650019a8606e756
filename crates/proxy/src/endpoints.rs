//! The endpoints of one Service port, gathered from the Service's EndpointSlices, and the subset the proxy may
//! use: ready ones, or (only when none is ready) serving-and-terminating ones, as kube-proxy does.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use weft_model::compact::{AddressType, EndpointSlice, ServicePort};
use weft_model::object::Key;
use weft_model::{Object, Snapshot};

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

/// Which EndpointSlices belong to which Service: slice names by the Service's namespace and name, kept up to
/// date one slice at a time (so a change costs the same at any number of Services). Slices of any address type
/// are listed; only IPv4 ones yield endpoints. A Service's names are a sorted list: it has one slice or a few,
/// and a set per Service would cost more than its names.
#[derive(Default)]
pub struct SliceIndex(HashMap<ServiceId, Vec<String>>);

/// A Service by namespace (as its object has it) and name.
pub type ServiceId = (Option<String>, String);

/// A Service's slices as the proxy reads them (borrowed where the snapshot holds them compact).
pub type Slices<'s> = Vec<Cow<'s, EndpointSlice>>;

impl SliceIndex {
    pub fn of(snap: &Snapshot) -> SliceIndex {
        let mut index = SliceIndex::default();
        for slice in snap.of_kind("EndpointSlice").filter_map(Object::endpoint_slice) {
            index.insert(&slice);
        }
        index
    }

    /// Files a slice under its Service (from its label); returns the Service, none for a slice without one.
    pub fn insert(&mut self, slice: &EndpointSlice) -> Option<ServiceId> {
        let (id, name) = owner(slice)?;
        let names = self.0.entry(id.clone()).or_default();
        if let Err(at) = names.binary_search_by(|n| n.as_str().cmp(name)) {
            names.insert(at, name.to_string());
        }
        Some(id)
    }

    /// Forgets a slice as it was filed; returns its Service.
    pub fn remove(&mut self, slice: &EndpointSlice) -> Option<ServiceId> {
        let (id, name) = owner(slice)?;
        if let Some(names) = self.0.get_mut(&id) {
            if let Ok(at) = names.binary_search_by(|n| n.as_str().cmp(name)) {
                names.remove(at);
            }
            if names.is_empty() {
                self.0.remove(&id);
            }
        }
        Some(id)
    }

    /// The slices of a Service in `snap`, by name.
    pub fn slices<'s>(&self, snap: &'s Snapshot, namespace: Option<&str>, service: &str) -> Slices<'s> {
        let Some(names) = self.0.get(&(namespace.map(str::to_string), service.to_string())) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| snap.get(&Key::new("EndpointSlice", namespace, name))?.endpoint_slice())
            .collect()
    }
}

/// The Service a slice belongs to, and the slice's name.
fn owner(slice: &EndpointSlice) -> Option<(ServiceId, &str)> {
    let id = (slice.metadata.namespace.clone(), slice.service.as_deref()?.to_string());
    Some((id, slice.metadata.name.as_deref()?))
}

/// Every endpoint in `slices` for the Service port `port` (matched by name and protocol); `local` says which are
/// on `node`.
pub fn for_port(slices: &[Cow<'_, EndpointSlice>], port: &ServicePort, node: &str) -> Vec<Endpoint> {
    let (protocol, name) = (port.protocol, &*port.name);
    let mut out = BTreeSet::new();
    for slice in slices.iter().filter(|s| s.address_type == AddressType::IPv4) {
        let number = slice
            .ports
            .iter()
            .find(|p| &*p.name == name && p.protocol == protocol)
            .and_then(|p| p.port);
        let Some(number) = number else { continue };
        for ep in &slice.endpoints {
            let IpAddr::V4(ip) = ep.address else { continue };
            out.insert(Endpoint {
                ip,
                port: number,
                local: ep.node.as_deref() == Some(node),
                ready: ep.is_ready(),
                serving: ep.is_serving(),
                terminating: ep.is_terminating(),
            });
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
