//! The endpoint controllers, pure: the Service's pods as EndpointSlices (what `endpointslice-controller.k8s.io`
//! does) and as an `Endpoints` of the Service's name (the endpoints controller), and selector-less Services'
//! `Endpoints` mirrored into EndpointSlices (what `endpointslicemirroring-controller.k8s.io` does). Names are
//! deterministic, so one reconcile step computes every object and compares it with what is stored.

use crate::controller::Change;
use crate::services::{has_selector, service_type};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use weft_model::k8s_openapi;
use weft_model::object::labels;
use weft_model::{Key, Object, Snapshot};

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
pub const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";
/// Set (to the empty string) on the slices of headless Services; kube-proxy ignores those slices.
pub const HEADLESS: &str = "service.kubernetes.io/headless";
/// On Endpoints the endpoints controller writes: the mirroring controller leaves them alone.
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Marks the Endpoints the endpoints controller manages (the label and value Kubernetes 1.33 sets).
pub const ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const ENDPOINTS_CONTROLLER: &str = "endpoint-controller";
/// The controller's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Object names the controllers make stay within 63 characters, as generated names do.
const MAX_NAME: usize = 63;

/// The Services a reconcile looks at: all of them, or those whose EndpointSlices and Endpoints may have to change
/// since an earlier snapshot. Computing every Service's slices on every change costs O(Services) per write, which
/// at 10,000 Services was most of a write's cost.
pub enum Scope {
    All,
    /// Namespace → names.
    Services(BTreeMap<String, BTreeSet<String>>),
}

impl Scope {
    /// What changed from `before` to `snap` that the endpoint controllers care about: a changed Service; the
    /// Services whose selector matches a changed pod's labels, old or new; the Service named by a changed slice
    /// (its `kubernetes.io/service-name`) or Endpoints. Any Node change (topology, readiness) means all, and so
    /// does an empty `before` (a first reconcile).
    pub fn between(before: &Snapshot, snap: &Snapshot) -> Scope {
        if before.is_empty() || snap.changes_since(before, "Node").next().is_some() {
            return Scope::All;
        }
        let mut services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut add = |meta: &ObjectMeta, name: Option<&str>| {
            if let (Some(ns), Some(name)) = (meta.namespace.as_deref(), name) {
                services.entry(ns.to_string()).or_default().insert(name.to_string());
            }
        };
        for (old, new) in snap.changes_since(before, "Service") {
            if let Some(o) = old.or(new) {
                add(o.meta(), o.meta().name.as_deref());
            }
        }
        for (old, new) in snap.changes_since(before, "Endpoints") {
            if let Some(o) = old.or(new) {
                add(o.meta(), o.meta().name.as_deref());
            }
        }
        for (old, new) in snap.changes_since(before, "EndpointSlice") {
            for o in [old, new].into_iter().flatten() {
                add(o.meta(), labels(o.meta()).get(SERVICE_NAME).map(String::as_str));
            }
        }
        let pods: Vec<&Object> = snap
            .changes_since(before, "Pod")
            .flat_map(|(old, new)| [old, new])
            .flatten()
            .collect();
        if !pods.is_empty() {
            for svc in snap.services() {
                let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
                let Some(selector) = selector.filter(|s| !s.is_empty()) else {
                    continue;
                };
                let selects = |pod: &&Object| {
                    pod.meta().namespace == svc.metadata.namespace
                        && selector.iter().all(|(k, v)| labels(pod.meta()).get(k) == Some(v))
                };
                if pods.iter().any(selects) {
                    add(&svc.metadata, svc.metadata.name.as_deref());
                }
            }
        }
        Scope::Services(services)
    }

    fn has(&self, namespace: Option<&str>, name: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Services(map) => match (namespace, name) {
                (Some(ns), Some(name)) => map.get(ns).is_some_and(|names| names.contains(name)),
                _ => false,
            },
        }
    }

    /// The stored EndpointSlices that may be the Services' in scope: for each, those of its namespace whose name
    /// starts as `derived_name` starts the names it makes (the first 32 characters of the Service's name, at least
    /// that many being kept beside any suffix), found from that prefix on rather than by reading every slice.
    fn slices<'a>(&self, snap: &'a Snapshot) -> Vec<&'a EndpointSlice> {
        let slice = |o: &'a Object| match o {
            Object::EndpointSlice(s) => Some(&**s),
            _ => None,
        };
        let Scope::Services(map) = self else {
            return snap.endpoint_slices().collect();
        };
        let mut found = Vec::new();
        for (ns, names) in map {
            for name in names {
                let end = (0..=name.len().min(32))
                    .rev()
                    .find(|i| name.is_char_boundary(*i))
                    .unwrap_or(0);
                let prefix = name[..end].trim_end_matches(['-', '.']);
                let start = Key::new("EndpointSlice", Some(ns), prefix);
                let same_prefix = |o: &&Object| {
                    o.kind() == "EndpointSlice" && o.namespace() == Some(ns.as_str()) && o.name().starts_with(prefix)
                };
                found.extend(snap.from_key(&start).take_while(same_prefix).filter_map(slice));
            }
        }
        // One Service's prefix can be another's (`web`, `web-api`): each slice once, in key order as in a full pass.
        found.sort_by_key(|s| slice_key(s));
        found.dedup_by(|a, b| std::ptr::eq(*a, *b));
        found
    }

    /// The stored objects of `kind` named as the Services in scope (the Services themselves, their Endpoints),
    /// looked up by key rather than by reading every one.
    fn objects<'a>(&self, snap: &'a Snapshot, kind: &'a str) -> Vec<&'a Object> {
        match self {
            Scope::All => snap.of_kind(kind).collect(),
            Scope::Services(map) => map
                .iter()
                .flat_map(|(ns, names)| names.iter().map(move |name| Key::new(kind, Some(ns), name)))
                .filter_map(|key| snap.get(&key))
                .collect(),
        }
    }
}

/// Adds the slice writes and removals that make the stored EndpointSlices what the Services and pods (and
/// selector-less Services' Endpoints) call for, for the Services in `scope`.
pub fn reconcile(snap: &Snapshot, scope: &Scope, changes: &mut Vec<Change>) {
    if matches!(scope, Scope::Services(map) if map.is_empty()) {
        return;
    }
    let mut desired: BTreeMap<Key, EndpointSlice> = BTreeMap::new();
    let mut desired_endpoints: BTreeMap<Key, Endpoints> = BTreeMap::new();
    let mut pods_by_ns: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in snap.pods() {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        pods_by_ns.entry(ns).or_default().push(pod);
    }
    let nodes: HashMap<&str, &BTreeMap<String, String>> = snap
        .nodes()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, labels(&n.metadata))))
        .collect();
    for object in scope.objects(snap, "Service") {
        let Object::Service(svc) = object else { continue };
        let Some(spec) = &svc.spec else { continue };
        if service_type(spec) == "ExternalName" {
            continue;
        }
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let slices = if has_selector(spec) {
            let pods = pods_by_ns.get(ns).map(Vec::as_slice).unwrap_or_default();
            let ep = endpoints_for(svc, pods);
            desired_endpoints.insert(
                Key::new("Endpoints", Some(ns), svc.metadata.name.as_deref().unwrap_or_default()),
                ep,
            );
            slices_for(svc, pods, &nodes)
        } else {
            let key = Key::new("Endpoints", Some(ns), svc.metadata.name.as_deref().unwrap_or_default());
            match snap.get(&key) {
                Some(Object::Endpoints(ep)) => mirror(ep),
                _ => Vec::new(),
            }
        };
        for slice in slices {
            desired.insert(slice_key(&slice), slice);
        }
    }
    for existing in scope.slices(snap) {
        let service = labels(&existing.metadata).get(SERVICE_NAME).map(String::as_str);
        if !scope.has(existing.metadata.namespace.as_deref(), service) {
            continue;
        }
        let key = slice_key(existing);
        let managed = labels(&existing.metadata)
            .get(MANAGED_BY)
            .is_some_and(|m| m == CONTROLLER || m == MIRRORING);
        match desired.remove(&key) {
            // A user's slice that happens to carry the name: left alone.
            Some(_) if !managed => {}
            Some(want) if !same_slice(existing, &want) => {
                changes.push(Change::Put(Box::new(Object::EndpointSlice(Box::new(want)))))
            }
            Some(_) => {}
            None if managed => changes.push(Change::Remove(key)),
            None => {}
        }
    }
    for want in desired.into_values() {
        changes.push(Change::Put(Box::new(Object::EndpointSlice(Box::new(want)))));
    }
    for existing in scope.objects(snap, "Endpoints") {
        let Object::Endpoints(have) = existing else { continue };
        let key = existing.key();
        let ours = labels(&have.metadata)
            .get(ENDPOINTS_MANAGED_BY)
            .is_some_and(|m| m == ENDPOINTS_CONTROLLER);
        match desired_endpoints.remove(&key) {
            // As upstream, the Endpoints of a Service with a selector are the controller's, whoever made them.
            Some(want) if have.metadata.labels != want.metadata.labels || have.subsets != want.subsets => {
                changes.push(Change::Put(Box::new(Object::Endpoints(Box::new(want)))));
            }
            Some(_) => {}
            None if ours => changes.push(Change::Remove(key)),
            None => {}
        }
    }
    for want in desired_endpoints.into_values() {
        changes.push(Change::Put(Box::new(Object::Endpoints(Box::new(want)))));
    }
}

/// The `Endpoints` of a Service with a selector: its pods' addresses, ready or not, grouped into subsets by
/// the ports they resolve (a pod resolving none is left out, unless the Service has no ports at all).
pub fn endpoints_for(svc: &Service, pods: &[&Pod]) -> Endpoints {
    let spec = svc.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let no_ports = spec.ports.as_ref().is_none_or(Vec::is_empty);
    type Subset = (
        Vec<CorePort>,
        Vec<(Ipv4Addr, EndpointAddress)>,
        Vec<(Ipv4Addr, EndpointAddress)>,
    );
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods {
        let pod_labels = labels(&pod.metadata);
        if !selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        if crate::controller::is_terminal(pod) || (pod.metadata.deletion_timestamp.is_some() && !publish) {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        if ports.is_empty() && !no_ports {
            continue;
        }
        let pod_spec = pod.spec.clone().unwrap_or_default();
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: pod_spec
                .hostname
                .filter(|h| !h.is_empty() && pod_spec.subdomain.as_deref() == svc.metadata.name.as_deref()),
            node_name: pod_spec.node_name,
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let (_, ready, not_ready) = groups.entry(port_set(&ports)).or_insert_with(|| {
            let ports = ports
                .iter()
                .map(|p| CorePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: p.port.unwrap_or_default(),
                    protocol: p.protocol.clone(),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect();
            (ports, Vec::new(), Vec::new())
        });
        if publish || pod_ready(pod) {
            ready.push((ip, address));
        } else {
            not_ready.push((ip, address));
        }
    }
    let sorted = |mut list: Vec<(Ipv4Addr, EndpointAddress)>| {
        list.sort_by_key(|(ip, _)| *ip);
        (!list.is_empty()).then(|| list.into_iter().map(|(_, a)| a).collect::<Vec<_>>())
    };
    let subsets: Vec<EndpointSubset> = groups
        .into_values()
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: sorted(ready),
            not_ready_addresses: sorted(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        })
        .collect();
    let mut ep_labels = labels(&svc.metadata).clone();
    ep_labels.remove(HEADLESS);
    if spec
        .cluster_ip
        .as_deref()
        .is_none_or(|ip| ip.is_empty() || ip == "None")
    {
        ep_labels.insert(HEADLESS.into(), String::new());
    }
    ep_labels.insert(SKIP_MIRROR.into(), "true".into());
    ep_labels.insert(ENDPOINTS_MANAGED_BY.into(), ENDPOINTS_CONTROLLER.into());
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(ep_labels),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

fn slice_key(slice: &EndpointSlice) -> Key {
    Key::new(
        "EndpointSlice",
        slice.metadata.namespace.as_deref(),
        slice.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Whether `have` already is what the controller wants (system fields aside).
fn same_slice(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    let (h, w) = (&have.metadata, &want.metadata);
    h.labels == w.labels
        && h.annotations == w.annotations
        && h.owner_references == w.owner_references
        && have.address_type == want.address_type
        && have.endpoints == want.endpoints
        && have.ports == want.ports
}

/// Pods resolving to one port set: the ports and (address, endpoint) per pod.
type Group = (Vec<EndpointPort>, Vec<(Ipv4Addr, Endpoint)>);

/// The slices of a Service with a selector: its pods grouped by their resolved ports, at most
/// `MAX_ENDPOINTS_PER_SLICE` to a slice; one empty slice when no pod matches (as the controller's placeholder).
pub fn slices_for(
    svc: &Service,
    pods: &[&Pod],
    nodes: &HashMap<&str, &BTreeMap<String, String>>,
) -> Vec<EndpointSlice> {
    let spec = svc.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        let pod_labels = labels(&pod.metadata);
        if !selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
            continue;
        }
        let Some(address) = pod_ipv4(pod) else { continue };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let node_labels = node.and_then(|n| nodes.get(n));
        if node.is_some() && node_labels.is_none() && !publish {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        let endpoint = endpoint(svc, pod, address, node, node_labels.copied());
        let (_, members) = groups.entry(port_set(&ports)).or_insert_with(|| (ports, Vec::new()));
        members.push((address, endpoint));
    }
    if groups.is_empty() {
        groups.insert(port_set(&[]), (Vec::new(), Vec::new()));
    }
    let mut slices = Vec::new();
    for (set, (ports, mut members)) in groups {
        members.sort_by_key(|a| a.0);
        let chunks: Vec<Vec<Endpoint>> = if members.is_empty() {
            vec![Vec::new()]
        } else {
            members
                .chunks(MAX_ENDPOINTS_PER_SLICE)
                .map(|c| c.iter().map(|(_, e)| e.clone()).collect())
                .collect()
        };
        for (i, endpoints) in chunks.into_iter().enumerate() {
            let hash = short_hash(&set);
            let suffix = if i == 0 { hash } else { format!("{hash}-{}", i + 1) };
            slices.push(EndpointSlice {
                metadata: slice_meta(svc, &suffix),
                address_type: "IPv4".into(),
                endpoints,
                ports: (!ports.is_empty()).then(|| ports.clone()),
            });
        }
    }
    slices
}

fn slice_meta(svc: &Service, suffix: &str) -> ObjectMeta {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let spec = svc.spec.clone().unwrap_or_default();
    let mut slice_labels: BTreeMap<String, String> = labels(&svc.metadata)
        .iter()
        .filter(|(k, _)| k.as_str() != SERVICE_NAME && k.as_str() != MANAGED_BY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    slice_labels.remove(HEADLESS);
    if spec
        .cluster_ip
        .as_deref()
        .is_none_or(|ip| ip.is_empty() || ip == "None")
    {
        slice_labels.insert(HEADLESS.into(), String::new());
    }
    slice_labels.insert(SERVICE_NAME.into(), name.clone());
    slice_labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    ObjectMeta {
        name: Some(derived_name(&name, suffix)),
        namespace: svc.metadata.namespace.clone(),
        labels: Some(slice_labels),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name,
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    }
}

/// `<base>-<suffix>`, the base cut so the name stays within 63 characters.
fn derived_name(base: &str, suffix: &str) -> String {
    let keep = MAX_NAME.saturating_sub(suffix.len() + 1).min(base.len());
    format!("{}-{suffix}", base[..keep].trim_end_matches(['-', '.']))
}

fn pod_ipv4(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(listed)
        .find_map(|ip| ip.parse().ok())
}

fn pod_ready(pod: &Pod) -> bool {
    crate::controller::is_ready(pod)
}

fn endpoint(
    svc: &Service,
    pod: &Pod,
    address: Ipv4Addr,
    node: Option<&str>,
    node_labels: Option<&BTreeMap<String, String>>,
) -> Endpoint {
    let spec = svc.spec.clone().unwrap_or_default();
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // "ready" is never true for a terminating pod, unless the Service publishes not-ready addresses.
    let ready = spec.publish_not_ready_addresses == Some(true) || (serving && !terminating);
    let pod_spec = pod.spec.clone().unwrap_or_default();
    let hostname = pod_spec
        .hostname
        .filter(|h| !h.is_empty() && pod_spec.subdomain.as_deref() == svc.metadata.name.as_deref());
    Endpoint {
        addresses: vec![address.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: node.map(str::to_string),
        zone: node_labels.and_then(|l| l.get("topology.kubernetes.io/zone").cloned()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One port per Service port the pod resolves (`podutil.FindPort`): a number as is, a name to the pod's
/// container port of that name and protocol. A port the pod lacks is left out of its set, so such pods land
/// in a slice of their own (with no ports at all when none resolves), as in Kubernetes.
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let spec = svc.spec.clone().unwrap_or_default();
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        let number = match &port.target_port {
            None => Some(port.port),
            Some(IntOrString::Int(0)) => Some(port.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => named_port(pod, name, &protocol),
        };
        let Some(number) = number else { continue };
        out.push(EndpointPort {
            name: Some(port.name.clone().unwrap_or_default()),
            port: Some(number),
            protocol: Some(protocol),
            app_protocol: port.app_protocol.clone(),
        });
    }
    out
}

fn named_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    let spec = pod.spec.as_ref()?;
    // Sidecars (init containers that keep running) count, as in `FindPort`.
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
        .map(|p| p.container_port)
}

/// A port set as text, independent of order (the grouping key).
fn port_set(ports: &[EndpointPort]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or_default(),
                p.protocol.as_deref().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.app_protocol.as_deref().unwrap_or_default()
            )
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// Ten characters of FNV-1a, in the API server's name-suffix alphabet.
fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The mirrored slices of a selector-less Service's Endpoints: one per distinct port set, `<svc>-mirror`, then
/// `<svc>-mirror-2`, ...; addresses ready or not as the Endpoints lists them; IPv4 addresses only.
pub fn mirror(ep: &Endpoints) -> Vec<EndpointSlice> {
    if labels(&ep.metadata).get(SKIP_MIRROR).is_some_and(|v| v == "true") {
        return Vec::new();
    }
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut groups: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        let endpoints: Vec<Endpoint> = ready
            .chain(not_ready)
            .filter(|(a, _)| a.ip.parse::<Ipv4Addr>().is_ok())
            .map(|(a, ready)| Endpoint {
                addresses: vec![a.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    ..Default::default()
                }),
                hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                node_name: a.node_name.clone(),
                target_ref: a.target_ref.clone(),
                ..Default::default()
            })
            .collect();
        if endpoints.is_empty() {
            continue;
        }
        let set = port_set(&ports);
        match groups.iter_mut().find(|(p, _)| port_set(p) == set) {
            Some((_, members)) => members.extend(endpoints),
            None => groups.push((ports, endpoints)),
        }
    }
    let mut slice_labels = labels(&ep.metadata).clone();
    slice_labels.insert(SERVICE_NAME.into(), name.clone());
    slice_labels.insert(MANAGED_BY.into(), MIRRORING.into());
    let annotations: BTreeMap<String, String> = ep
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            k.as_str() != "kubectl.kubernetes.io/last-applied-configuration"
                && k.as_str() != "endpoints.kubernetes.io/last-change-trigger-time"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (ports, endpoints))| {
            let suffix = if i == 0 {
                "mirror".to_string()
            } else {
                format!("mirror-{}", i + 1)
            };
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(derived_name(&name, &suffix)),
                    namespace: ep.metadata.namespace.clone(),
                    labels: Some(slice_labels.clone()),
                    annotations: (!annotations.is_empty()).then(|| annotations.clone()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Endpoints".into(),
                        name: name.clone(),
                        uid: ep.metadata.uid.clone().unwrap_or_default(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(value: Value) -> Object {
        weft_model::manifest::from_value(value).unwrap()
    }

    fn service(name: &str, spec: Value) -> Object {
        object(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}, "spec": spec}))
    }

    /// A pod on `node` with `ip`, Ready or not, with container ports `ports` (name, number).
    fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Object {
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, p)| json!({"name": n, "containerPort": p}))
            .collect();
        object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
    }

    fn node() -> Object {
        object(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}))
    }

    fn slices(snap: &Snapshot) -> Vec<EndpointSlice> {
        let mut changes = Vec::new();
        reconcile(snap, &Scope::All, &mut changes);
        changes
            .into_iter()
            .filter_map(|c| match c {
                Change::Put(o) => match *o {
                    Object::EndpointSlice(s) => Some(*s),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// The Services a scoped reconcile looks at, by name.
    fn scoped(before: &Snapshot, snap: &Snapshot) -> Option<Vec<String>> {
        match Scope::between(before, snap) {
            Scope::All => None,
            Scope::Services(map) => Some(map.into_values().flatten().collect()),
        }
    }

    #[test]
    fn scope_is_what_changed_and_a_scoped_reconcile_matches_a_full_one() {
        let web = service("web", json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let other = service("other", json!({"selector": {"app": "other"}, "ports": [{"port": 80}]}));
        let mut snap = Snapshot::new(1, [node(), web, other]);
        assert!(
            scoped(&Snapshot::default(), &snap).is_none(),
            "a first reconcile looks at everything"
        );
        // The controller's own slices are in place: nothing left to do.
        let mut changes = Vec::new();
        reconcile(&snap, &Scope::All, &mut changes);
        for change in changes {
            match change {
                Change::Put(o) => drop(snap.insert(*o)),
                Change::Remove(key) => drop(snap.remove(&key)),
                other => panic!("unexpected {other:?}"),
            }
        }
        let before = snap.clone();
        // A pod of `web` appears: only `web` is looked at, and the scoped reconcile writes what a full one would.
        snap.insert(pod("p1", "10.244.0.5", true, &[]));
        assert_eq!(scoped(&before, &snap), Some(vec!["web".to_string()]));
        let (mut full, mut part) = (Vec::new(), Vec::new());
        reconcile(&snap, &Scope::All, &mut full);
        reconcile(&snap, &Scope::between(&before, &snap), &mut part);
        assert_eq!(format!("{full:?}"), format!("{part:?}"));
        assert!(!part.is_empty());
        // Services whose names prefix each other, both in scope: their slices are each looked at once.
        let mut settled = snap.clone();
        settled.insert(service(
            "web-api",
            json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
        ));
        let mut changes = Vec::new();
        reconcile(&settled, &Scope::All, &mut changes);
        for change in changes {
            if let Change::Put(o) = change {
                settled.insert(*o);
            }
        }
        let mut next = settled.clone();
        next.insert(service(
            "web-api",
            json!({"selector": {"app": "web"}, "ports": [{"port": 81}]}),
        ));
        next.insert(service(
            "web",
            json!({"selector": {"app": "web"}, "ports": [{"port": 8080}]}),
        ));
        let snap = settled;
        let (mut full, mut part) = (Vec::new(), Vec::new());
        reconcile(&next, &Scope::All, &mut full);
        reconcile(&next, &Scope::between(&snap, &next), &mut part);
        assert_eq!(format!("{full:?}"), format!("{part:?}"));
        // A Service changed: that one; a slice removed by hand: its Service; a Node changed: all.
        let mut next = before.clone();
        next.insert(service(
            "other",
            json!({"selector": {"app": "x"}, "ports": [{"port": 81}]}),
        ));
        assert_eq!(scoped(&before, &next), Some(vec!["other".to_string()]));
        let mut next = before.clone();
        let slice = next.endpoint_slices().next().map(slice_key).unwrap();
        next.remove(&slice);
        assert_eq!(scoped(&before, &next).map(|v| v.len()), Some(1));
        let mut next = before.clone();
        next.insert(object(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"}}),
        ));
        assert!(scoped(&before, &next).is_none());
        assert_eq!(scoped(&before, &before), Some(vec![]));
    }

    fn addresses(slice: &EndpointSlice) -> Vec<&str> {
        slice.endpoints.iter().map(|e| e.addresses[0].as_str()).collect()
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_split_slices() {
        let svc = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}),
        );
        let snap = Snapshot::new(
            1,
            [
                node(),
                svc,
                pod("a", "10.244.1.2", true, &[("http", 8080)]),
                pod("b", "10.244.1.3", true, &[("http", 8080)]),
                pod("c", "10.244.1.4", true, &[("http", 9090)]),
                pod("d", "10.244.1.5", true, &[("other", 80)]),
            ],
        );
        let mut got = slices(&snap);
        got.sort_by_key(|s| s.ports.as_ref().and_then(|p| p[0].port));
        assert_eq!(got.len(), 3, "{got:#?}");
        // The pod lacking the port: a slice with no ports, so no traffic reaches it.
        assert_eq!(got[0].ports, None);
        assert_eq!(addresses(&got[0]), ["10.244.1.5"]);
        assert_eq!(got[1].ports.as_ref().unwrap()[0].port, Some(8080));
        assert_eq!(addresses(&got[1]), ["10.244.1.2", "10.244.1.3"]);
        assert_eq!(got[2].ports.as_ref().unwrap()[0].port, Some(9090));
        assert_eq!(got[2].ports.as_ref().unwrap()[0].name.as_deref(), Some("http"));
        let names: Vec<&str> = got.iter().map(|s| s.metadata.name.as_deref().unwrap()).collect();
        assert!(
            names.iter().all(|n| n.starts_with("web-") && n.len() == 14),
            "{names:?}"
        );
        let meta = &got[1].metadata;
        assert_eq!(labels(meta)[SERVICE_NAME], "web");
        assert_eq!(labels(meta)[MANAGED_BY], CONTROLLER);
        assert!(!labels(meta).contains_key(HEADLESS));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "uid-web", Some(true))
        );
        let ep = &got[1].endpoints[0];
        assert_eq!(ep.node_name.as_deref(), Some("node-1"));
        let target = ep.target_ref.as_ref().unwrap();
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref(), target.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn conditions_follow_readiness_deletion_and_publish_not_ready() {
        let svc = |publish: bool| {
            service(
                "web",
                json!({"clusterIP": "None", "selector": {"app": "web"}, "publishNotReadyAddresses": publish,
                "ports": [{"port": 80}]}),
            )
        };
        let mut dying = pod("dying", "10.244.1.3", true, &[]);
        dying.meta_mut().deletion_timestamp = Some(crate::store::now());
        let mut done = pod("done", "10.244.1.9", false, &[]);
        if let Object::Pod(p) = &mut done {
            p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        }
        let pods = [
            pod("up", "10.244.1.2", true, &[]),
            dying,
            pod("starting", "10.244.1.4", false, &[]),
            done,
        ];
        let conditions = |publish: bool| -> Vec<(bool, bool, bool)> {
            let snap = Snapshot::new(1, [node(), svc(publish)].into_iter().chain(pods.clone()));
            let got = slices(&snap);
            assert_eq!(got.len(), 1);
            assert_eq!(labels(&got[0].metadata).get(HEADLESS).map(String::as_str), Some(""));
            assert_eq!(got[0].ports.as_ref().unwrap()[0].port, Some(80));
            got[0]
                .endpoints
                .iter()
                .map(|e| {
                    let c = e.conditions.as_ref().unwrap();
                    (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
                })
                .collect()
        };
        // Ordered by address: up, dying, starting (the Succeeded pod is left out).
        assert_eq!(
            conditions(false),
            [(true, true, false), (false, true, true), (false, false, false)]
        );
        assert_eq!(
            conditions(true),
            [(true, true, false), (true, true, true), (true, false, false)]
        );
    }

    #[test]
    fn hostnames_placeholders_and_stale_slices() {
        let svc = service("db", json!({"clusterIP": "None", "selector": {"app": "web"}}));
        let mut p = pod("db-0", "10.244.1.2", true, &[]);
        if let Object::Pod(pod) = &mut p {
            let spec = pod.spec.as_mut().unwrap();
            spec.hostname = Some("db-0".into());
            spec.subdomain = Some("db".into());
        }
        let snap = Snapshot::new(1, [node(), svc.clone(), p]);
        let got = slices(&snap);
        assert_eq!(got[0].endpoints[0].hostname.as_deref(), Some("db-0"));
        // No pods: one empty slice. A stale one of ours goes; a user's stays.
        let mut stale = got[0].clone();
        stale.metadata.name = Some("db-old".into());
        let mut users = stale.clone();
        users.metadata.name = Some("db-mine".into());
        users.metadata.labels.as_mut().unwrap().remove(MANAGED_BY);
        let snap = Snapshot::new(
            2,
            [
                node(),
                svc,
                Object::EndpointSlice(Box::new(stale)),
                Object::EndpointSlice(Box::new(users)),
            ],
        );
        let mut changes = Vec::new();
        reconcile(&snap, &Scope::All, &mut changes);
        // The Service's Endpoints are written too; here only the slices matter.
        changes.retain(|c| !matches!(c, Change::Put(o) if o.kind() == "Endpoints"));
        assert_eq!(changes.len(), 2, "{changes:#?}");
        assert!(changes.contains(&Change::Remove(Key::new("EndpointSlice", Some("default"), "db-old"))));
        let Some(Change::Put(empty)) = changes.iter().find(|c| matches!(c, Change::Put(_))) else {
            panic!()
        };
        let Object::EndpointSlice(empty) = &**empty else {
            panic!()
        };
        assert!(empty.endpoints.is_empty() && empty.ports.is_none());
        assert_eq!(derived_name(&"x".repeat(70), "abc").len(), 63);
    }

    #[test]
    fn endpoints_of_selectorless_services_are_mirrored() {
        let svc = service("ext", json!({"ports": [{"port": 5432}]}));
        let ep = object(json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "ext", "namespace": "default", "uid": "uid-ep", "labels": {"team": "db"}},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.10"}, {"ip": "2001:db8::1"}], "notReadyAddresses": [{"ip": "192.0.2.11"}],
                 "ports": [{"port": 5432}]},
                {"addresses": [{"ip": "192.0.2.12"}], "ports": [{"port": 5433, "name": "alt"}]}]}));
        let snap = Snapshot::new(1, [svc.clone(), ep.clone()]);
        let got = slices(&snap);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].metadata.name.as_deref(), Some("ext-mirror"));
        assert_eq!(got[1].metadata.name.as_deref(), Some("ext-mirror-2"));
        assert_eq!(addresses(&got[0]), ["192.0.2.10", "192.0.2.11"]);
        let ready: Vec<Option<bool>> = got[0]
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready)
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        assert_eq!(labels(&got[0].metadata)[MANAGED_BY], MIRRORING);
        assert_eq!(labels(&got[0].metadata)["team"], "db");
        assert_eq!(got[0].metadata.owner_references.as_ref().unwrap()[0].kind, "Endpoints");
        // Stored and unchanged: nothing to do. The Endpoints gone: the mirror goes.
        let stored: Vec<Object> = got.into_iter().map(|s| Object::EndpointSlice(Box::new(s))).collect();
        let snap = Snapshot::new(2, [svc.clone(), ep].into_iter().chain(stored.clone()));
        let mut changes = Vec::new();
        reconcile(&snap, &Scope::All, &mut changes);
        assert!(changes.is_empty(), "{changes:#?}");
        let snap = Snapshot::new(3, [svc].into_iter().chain(stored));
        let mut changes = Vec::new();
        reconcile(&snap, &Scope::All, &mut changes);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| matches!(c, Change::Remove(_))));
    }

    fn endpoints_changes(snap: &Snapshot) -> Vec<Change> {
        let mut changes = Vec::new();
        reconcile(snap, &Scope::All, &mut changes);
        changes.retain(|c| match c {
            Change::Put(o) => o.kind() == "Endpoints",
            Change::Remove(k) => k.kind == "Endpoints",
            _ => false,
        });
        changes
    }

    #[test]
    fn services_with_a_selector_get_endpoints_of_their_name() {
        let svc = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
        );
        let pods = [
            pod("a", "10.244.1.3", true, &[("http", 8080)]),
            pod("b", "10.244.1.2", false, &[("http", 8080)]),
            // Lacks the named port: not an endpoint.
            pod("c", "10.244.1.4", true, &[]),
        ];
        let snap = Snapshot::new(1, [node(), svc.clone()].into_iter().chain(pods.clone()));
        let changes = endpoints_changes(&snap);
        let [Change::Put(ep)] = &changes[..] else {
            panic!("{changes:#?}")
        };
        let Object::Endpoints(ep) = &**ep else { panic!() };
        assert_eq!(labels(&ep.metadata)[SKIP_MIRROR], "true");
        assert_eq!(labels(&ep.metadata)[ENDPOINTS_MANAGED_BY], ENDPOINTS_CONTROLLER);
        let subsets = ep.subsets.as_ref().unwrap();
        assert_eq!(subsets.len(), 1);
        let ips =
            |a: &Option<Vec<EndpointAddress>>| -> Vec<String> { a.iter().flatten().map(|a| a.ip.clone()).collect() };
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.3"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.244.1.2"]);
        let port = &subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), 8080, Some("TCP"))
        );
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
        // Stored: nothing to do, and nothing mirrored from it. The Service gone: it goes.
        let stored = Object::Endpoints(ep.clone());
        let snap = Snapshot::new(2, [node(), svc, stored.clone()].into_iter().chain(pods));
        assert!(endpoints_changes(&snap).is_empty());
        assert!(
            slices(&snap)
                .iter()
                .all(|s| labels(&s.metadata)[MANAGED_BY] == CONTROLLER)
        );
        let snap = Snapshot::new(3, [node(), stored]);
        assert_eq!(
            endpoints_changes(&snap),
            [Change::Remove(Key::new("Endpoints", Some("default"), "web"))]
        );
    }

    #[test]
    fn large_services_are_cut_into_slices_of_a_hundred() {
        let svc = service(
            "web",
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
        );
        let pods = (0..250).map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.244.{}.{}", 1 + i / 200, 2 + i % 200),
                true,
                &[],
            )
        });
        let snap = Snapshot::new(1, [node(), svc].into_iter().chain(pods));
        let mut got = slices(&snap);
        got.sort_by_key(|s| s.metadata.name.clone());
        let sizes: Vec<usize> = got.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(got[1].metadata.name.as_deref().unwrap().ends_with("-2"));
    }
}
