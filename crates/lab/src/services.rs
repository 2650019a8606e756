//! Services as the API server admits them: defaults, a ClusterIP from the service CIDR, node ports, a health
//! check node port, and (the lab's "cloud") a LoadBalancer address from the lab's pool. Everything is decided
//! synchronously at apply, from the Services already stored: an allocation is held by the Service that carries
//! it, so deleting a Service or changing its type releases what it held, and a restarted supervisor knows every
//! allocation from the objects alone.

use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use weft_model::k8s_openapi;
use weft_model::{Key, Object, Snapshot};

/// The API server's default `--service-node-port-range`.
pub const NODE_PORTS: RangeInclusive<i32> = 30000..=32767;
/// Addresses at the bottom of the service CIDR that dynamic allocation uses last, so requested addresses
/// (10.96.0.10 for cluster DNS) are free when asked for.
const STATIC_BAND: u32 = 16;

/// The address ranges Services get addresses from.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceNetwork {
    pub cidr: Ipv4Net,
    pub lb_pool: Ipv4Net,
}

impl Default for ServiceNetwork {
    fn default() -> ServiceNetwork {
        ServiceNetwork {
            cidr: crate::spec::DEFAULT_SERVICE_CIDR,
            lb_pool: crate::spec::DEFAULT_LB_POOL,
        }
    }
}

pub fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

fn needs_node_ports(spec: &ServiceSpec) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

fn needs_health_check_port(spec: &ServiceSpec) -> bool {
    service_type(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// Whether the Service has a selector (an empty one counts as none, as the API server stores it).
pub fn has_selector(spec: &ServiceSpec) -> bool {
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// The LoadBalancer ingress address of a Service, if it has one.
pub fn ingress_ip(svc: &Service) -> Option<Ipv4Addr> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.as_deref()?.parse().ok())
}

/// Admits `svc` (created when `old` is none, else replacing `old`): fills in the defaults and allocations,
/// or refuses it naming the field and the reason. `snap` holds the other Services.
pub fn admit(held: &Allocations, net: &ServiceNetwork, old: Option<&Service>, svc: &mut Service) -> Result<()> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let who = format!("Service/{namespace}/{name}");
    let fail = |field: &str, msg: String| Error::Invalid(format!("{who}: field {field}: {msg}"));
    let others = Held {
        all: held,
        me: Key::new("Service", Some(&namespace), &name),
    };
    let old_spec = old.and_then(|o| o.spec.as_ref());
    let spec = svc.spec.get_or_insert_default();
    defaults(spec);
    cluster_ip(spec, old_spec, net, &others, &fail)?;
    node_ports(spec, old_spec, &others, &fail)?;
    health_check_node_port(spec, old_spec, &others, &fail)?;
    // Status belongs to the system: only the load balancer's address is kept across updates.
    let old_ingress = old
        .filter(|o| o.spec.as_ref().is_some_and(|s| service_type(s) == "LoadBalancer"))
        .and_then(ingress_ip);
    let ingress = load_balancer(spec, old_ingress, net, &others, &fail)?;
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: ingress.map(|ip| {
                vec![LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ip_mode: Some("VIP".into()),
                    ..Default::default()
                }]
            }),
        }),
        ..Default::default()
    });
    Ok(())
}

/// The API server's defaulting (`SetDefaults_Service`).
fn defaults(spec: &mut ServiceSpec) {
    let kind = service_type(spec).to_string();
    spec.type_ = Some(kind.clone());
    spec.session_affinity.get_or_insert_with(|| "None".into());
    for port in spec.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 0,
            Some(IntOrString::String(s)) => s.is_empty(),
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    if kind != "ExternalName" {
        spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        spec.external_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    if kind == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
}

/// Every address and port the stored Services hold, and which Service holds it: kept by the store as Services
/// change, so that admitting one Service looks its requests up instead of reading every other Service.
#[derive(Clone, Debug, Default)]
pub struct Allocations {
    cluster_ips: HashMap<Ipv4Addr, Key>,
    node_ports: HashMap<i32, Key>,
    lb_ips: HashMap<Ipv4Addr, Key>,
}

impl Allocations {
    /// What the Services of `snap` hold.
    pub fn of(snap: &Snapshot) -> Allocations {
        let mut all = Allocations::default();
        for object in snap.of_kind("Service") {
            all.change(None, Some(object));
        }
        all
    }

    /// Follows one object's change: what `old` held is released (where it still holds it), what `new` holds is
    /// taken. Objects other than Services are passed over.
    pub fn change(&mut self, old: Option<&Object>, new: Option<&Object>) {
        if let Some(svc) = old.and_then(as_service) {
            let key = Key::new(
                "Service",
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref().unwrap_or_default(),
            );
            let (ips, ports, lb) = holdings(svc);
            for ip in ips {
                release(&mut self.cluster_ips, ip, &key);
            }
            for port in ports {
                release(&mut self.node_ports, port, &key);
            }
            if let Some(ip) = lb {
                release(&mut self.lb_ips, ip, &key);
            }
        }
        if let Some(svc) = new.and_then(as_service) {
            let key = Key::new(
                "Service",
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref().unwrap_or_default(),
            );
            let (ips, ports, lb) = holdings(svc);
            for ip in ips {
                self.cluster_ips.insert(ip, key.clone());
            }
            for port in ports {
                self.node_ports.insert(port, key.clone());
            }
            if let Some(ip) = lb {
                self.lb_ips.insert(ip, key);
            }
        }
    }
}

fn release<T: std::hash::Hash + Eq>(map: &mut HashMap<T, Key>, value: T, holder: &Key) {
    if map.get(&value) == Some(holder) {
        map.remove(&value);
    }
}

/// The cluster IPs, node ports (health check included) and load balancer address a Service holds.
fn holdings(svc: &Service) -> (Vec<Ipv4Addr>, Vec<i32>, Option<Ipv4Addr>) {
    let Some(spec) = &svc.spec else {
        return (Vec::new(), Vec::new(), None);
    };
    let ips = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
    let ports = spec.ports.iter().flatten().filter_map(|p| p.node_port);
    (
        ips.filter_map(|ip| ip.parse().ok()).collect(),
        ports.chain(spec.health_check_node_port).collect(),
        ingress_ip(svc),
    )
}

/// What the Services other than the one being admitted hold.
struct Held<'a> {
    all: &'a Allocations,
    me: Key,
}

/// A Service holding an address or port.
struct Owner<'a>(&'a Key);

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "Service {}/{}",
            self.0.namespace.as_deref().unwrap_or_default(),
            self.0.name
        )
    }
}

impl Held<'_> {
    fn other<'k>(&self, holder: Option<&'k Key>) -> Option<Owner<'k>> {
        holder.filter(|k| **k != self.me).map(Owner)
    }

    fn cluster_ip(&self, ip: &Ipv4Addr) -> Option<Owner<'_>> {
        self.other(self.all.cluster_ips.get(ip))
    }

    fn node_port(&self, port: i32) -> Option<Owner<'_>> {
        self.other(self.all.node_ports.get(&port))
    }

    fn lb_ip(&self, ip: &Ipv4Addr) -> Option<Owner<'_>> {
        self.other(self.all.lb_ips.get(ip))
    }
}

type Fail<'a> = &'a dyn Fn(&str, String) -> Error;

fn cluster_ip(
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
    net: &ServiceNetwork,
    held: &Held,
    fail: Fail,
) -> Result<()> {
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let first_of_list = spec.cluster_ips.as_ref().and_then(|l| l.first().cloned());
    if let (Some(ip), Some(first)) = (nonempty(&spec.cluster_ip), &first_of_list)
        && &ip != first
    {
        return Err(fail(
            "spec.clusterIPs[0]",
            format!("{first:?} must be the same as spec.clusterIP ({ip:?})"),
        ));
    }
    if spec.cluster_ips.as_ref().is_some_and(|l| l.len() > 1) {
        return Err(fail(
            "spec.clusterIPs",
            "this lab is single-stack IPv4: at most one address".into(),
        ));
    }
    let requested = nonempty(&spec.cluster_ip).or(first_of_list);
    if service_type(spec) == "ExternalName" {
        if let Some(ip) = requested.filter(|ip| ip != "None") {
            return Err(fail(
                "spec.clusterIP",
                format!("{ip:?} may not be set for type ExternalName"),
            ));
        }
        spec.cluster_ip = None;
        spec.cluster_ips = None;
        spec.ip_families = None;
        spec.ip_family_policy = None;
        return Ok(());
    }
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        if family != "IPv4" {
            return Err(fail(
                &format!("spec.ipFamilies[{i}]"),
                format!("{family:?}: this lab is single-stack IPv4"),
            ));
        }
    }
    let headless = requested.as_deref() == Some("None");
    let selectorless = !has_selector(spec);
    match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack" | "PreferDualStack") => {}
        // Headless Services without a selector may ask for both families and get what the cluster has.
        Some("RequireDualStack") if headless => {}
        Some("RequireDualStack") => {
            return Err(fail(
                "spec.ipFamilyPolicy",
                "\"RequireDualStack\": this lab is single-stack IPv4".into(),
            ));
        }
        Some(other) => {
            let msg = format!("{other:?} is not one of SingleStack, PreferDualStack, RequireDualStack");
            return Err(fail("spec.ipFamilyPolicy", msg));
        }
    }
    let before = old
        .filter(|o| service_type(o) != "ExternalName")
        .and_then(|o| nonempty(&o.cluster_ip));
    let ip = match (requested, before) {
        (None, Some(before)) => before,
        (Some(ip), Some(before)) if ip != before => {
            return Err(fail(
                "spec.clusterIP",
                format!("{ip:?}: field is immutable (it is {before:?})"),
            ));
        }
        (Some(ip), _) if ip == "None" => ip,
        (Some(ip), Some(_)) => ip,
        (Some(ip), None) => {
            let addr = requested_cluster_ip(&ip, net, held, fail)?;
            addr.to_string()
        }
        (None, None) => match next_cluster_ip(net.cidr, |ip| held.cluster_ip(&ip).is_some()) {
            Some(addr) => addr.to_string(),
            None => {
                let msg = format!("no free address left in the service CIDR {}", net.cidr);
                return Err(fail("spec.clusterIP", msg));
            }
        },
    };
    spec.cluster_ip = Some(ip.clone());
    spec.cluster_ips = Some(vec![ip]);
    spec.ip_families = Some(vec!["IPv4".into()]);
    let policy = match spec.ip_family_policy.take() {
        Some(p) => p,
        None if headless && selectorless => "RequireDualStack".into(),
        None => "SingleStack".into(),
    };
    spec.ip_family_policy = Some(policy);
    Ok(())
}

fn requested_cluster_ip(ip: &str, net: &ServiceNetwork, held: &Held, fail: Fail) -> Result<Ipv4Addr> {
    let Ok(addr) = ip.parse::<Ipv4Addr>() else {
        return Err(fail(
            "spec.clusterIP",
            format!("{ip:?} is not in the service CIDR {} (this lab is IPv4 only)", net.cidr),
        ));
    };
    if !usable(net.cidr, addr) {
        let msg = format!("{ip:?} is not in the valid range: the service CIDR is {}", net.cidr);
        return Err(fail("spec.clusterIP", msg));
    }
    if let Some(owner) = held.cluster_ip(&addr) {
        return Err(fail(
            "spec.clusterIP",
            format!("{ip:?} is already allocated to {owner}"),
        ));
    }
    Ok(addr)
}

/// An address of `net` other than its network and broadcast addresses.
fn usable(net: Ipv4Net, addr: Ipv4Addr) -> bool {
    net.contains(&addr) && addr != net.network() && addr != net.broadcast()
}

/// The lowest free address from the 17th of the range up, then (only when those are all taken) the lowest of
/// the 16 below it, as Kubernetes prefers the upper band and falls back to the static one.
pub fn next_cluster_ip(cidr: Ipv4Net, taken: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let base = u32::from(cidr.network());
    let hosts = (1u32 << (32 - cidr.prefix_len())).saturating_sub(2);
    let free = |offset: &u32| !taken(Ipv4Addr::from(base + offset));
    let upper = (STATIC_BAND + 1..=hosts).find(free);
    upper
        .or_else(|| (1..=STATIC_BAND.min(hosts)).find(free))
        .map(|offset| Ipv4Addr::from(base + offset))
}

fn node_ports(spec: &mut ServiceSpec, old: Option<&ServiceSpec>, held: &Held, fail: Fail) -> Result<()> {
    let kind = service_type(spec).to_string();
    let ports = spec.ports.get_or_insert_default();
    if !matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        if let Some(i) = ports.iter().position(|p| p.node_port.is_some()) {
            return Err(fail(
                &format!("spec.ports[{i}].nodePort"),
                format!("may not be set for type {kind}"),
            ));
        }
        return Ok(());
    }
    // An update that leaves a node port out keeps the one the port (by name) had, unless another port now
    // asks for it (the API server's `patchAllocatedValues`).
    if let Some(old) = old.filter(|o| needs_node_ports(o)) {
        let asked: HashSet<i32> = ports.iter().filter_map(|p| p.node_port).collect();
        let by_name: HashMap<Option<&str>, i32> = old
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.as_deref().filter(|n| !n.is_empty()), p.node_port?)))
            .collect();
        for port in ports.iter_mut().filter(|p| p.node_port.is_none()) {
            let name = port.name.as_deref().filter(|n| !n.is_empty());
            if let Some(&np) = by_name.get(&name)
                && !asked.contains(&np)
            {
                port.node_port = Some(np);
            }
        }
    }
    let mut mine: HashMap<(i32, String), usize> = HashMap::new();
    let mut used: HashSet<i32> = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let Some(np) = port.node_port else { continue };
        let at = format!("spec.ports[{i}].nodePort");
        if !NODE_PORTS.contains(&np) {
            return Err(fail(&at, format!("{np}: must be in the range 30000-32767")));
        }
        if let Some(owner) = held.node_port(np) {
            return Err(fail(
                &at,
                format!("{np}: provided port is already allocated to {owner}"),
            ));
        }
        let protocol = port.protocol.clone().unwrap_or_default();
        if let Some(j) = mine.insert((np, protocol), i) {
            return Err(fail(&at, format!("{np}: duplicate (spec.ports[{j}] has it too)")));
        }
        used.insert(np);
    }
    let allocate = kind == "NodePort" || spec.allocate_load_balancer_node_ports != Some(false);
    if !allocate {
        return Ok(());
    }
    // Ports with the same number share one node port (53/TCP and 53/UDP), as the API server allocates them.
    let mut by_number: HashMap<i32, i32> = ports.iter().filter_map(|p| Some((p.port, p.node_port?))).collect();
    for port in ports.iter_mut().filter(|p| p.node_port.is_none()) {
        let np = match by_number.get(&port.port) {
            Some(&np) => np,
            None => next_node_port(held, &used).ok_or_else(|| {
                fail(
                    "spec.ports.nodePort",
                    "no free node port left in the range 30000-32767".into(),
                )
            })?,
        };
        used.insert(np);
        by_number.insert(port.port, np);
        port.node_port = Some(np);
    }
    Ok(())
}

fn next_node_port(held: &Held, used: &HashSet<i32>) -> Option<i32> {
    NODE_PORTS
        .clone()
        .find(|p| held.node_port(*p).is_none() && !used.contains(p))
}

fn health_check_node_port(spec: &mut ServiceSpec, old: Option<&ServiceSpec>, held: &Held, fail: Fail) -> Result<()> {
    const AT: &str = "spec.healthCheckNodePort";
    if !needs_health_check_port(spec) {
        if let Some(np) = spec.health_check_node_port {
            let msg = format!("{np}: may only be set for type LoadBalancer with externalTrafficPolicy Local");
            return Err(fail(AT, msg));
        }
        return Ok(());
    }
    let used: HashSet<i32> = spec.ports.iter().flatten().filter_map(|p| p.node_port).collect();
    let before = old
        .filter(|o| needs_health_check_port(o))
        .and_then(|o| o.health_check_node_port);
    let np = match spec.health_check_node_port.or(before) {
        Some(np) => {
            if !NODE_PORTS.contains(&np) {
                return Err(fail(AT, format!("{np}: must be in the range 30000-32767")));
            }
            if let Some(owner) = held.node_port(np) {
                return Err(fail(AT, format!("{np}: provided port is already allocated to {owner}")));
            }
            if used.contains(&np) {
                return Err(fail(AT, format!("{np}: already used by a port of this Service")));
            }
            np
        }
        None => next_node_port(held, &used)
            .ok_or_else(|| fail(AT, "no free node port left in the range 30000-32767".into()))?,
    };
    spec.health_check_node_port = Some(np);
    Ok(())
}

/// The load balancer's address: kept across updates, `spec.loadBalancerIP` when asked for, else the lowest
/// free address of the pool.
fn load_balancer(
    spec: &ServiceSpec,
    before: Option<Ipv4Addr>,
    net: &ServiceNetwork,
    held: &Held,
    fail: Fail,
) -> Result<Option<Ipv4Addr>> {
    if service_type(spec) != "LoadBalancer" {
        return Ok(None);
    }
    const AT: &str = "spec.loadBalancerIP";
    let pool = net.lb_pool;
    let requested = spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty());
    if let Some(ip) = requested {
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| fail(AT, format!("{ip:?} is not an IPv4 address")))?;
        if !usable(pool, addr) {
            return Err(fail(
                AT,
                format!("{ip:?} is not in the lab's load balancer pool {pool}"),
            ));
        }
        if let Some(owner) = held.lb_ip(&addr) {
            return Err(fail(AT, format!("{ip:?} is already allocated to {owner}")));
        }
        return Ok(Some(addr));
    }
    if let Some(ip) = before.filter(|ip| held.lb_ip(ip).is_none()) {
        return Ok(Some(ip));
    }
    let base = u32::from(pool.network());
    let hosts = (1u32 << (32 - pool.prefix_len())).saturating_sub(2);
    (1..=hosts)
        .map(|offset| Ipv4Addr::from(base + offset))
        .find(|ip| held.lb_ip(ip).is_none())
        .map(Some)
        .ok_or_else(|| {
            fail(
                "status.loadBalancer.ingress",
                format!("no free address left in the lab's load balancer pool {pool}"),
            )
        })
}

/// The lab's cloud: for every LoadBalancer address, the node the external host sends its traffic to. With
/// `externalTrafficPolicy: Local` that is the first node (in `nodes` order) with a ready endpoint of the
/// Service; when none has one, or with `Cluster`, the first node (a cloud load balancer whose health checks
/// all fail sends to every node).
pub fn lb_routes(snap: &Snapshot, nodes: &[(String, Ipv4Addr)]) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    let mut routes = BTreeMap::new();
    let Some((_, first)) = nodes.first() else {
        return routes;
    };
    for svc in snap.services() {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = ingress_ip(svc).filter(|_| service_type(spec) == "LoadBalancer") else {
            continue;
        };
        let mut via = *first;
        if spec.external_traffic_policy.as_deref() == Some("Local") {
            let ready = ready_nodes(snap, svc);
            if let Some((_, node_ip)) = nodes.iter().find(|(name, _)| ready.contains(name.as_str())) {
                via = *node_ip;
            }
        }
        routes.insert(ip, via);
    }
    routes
}

/// Whether anything `lb_routes` reads changed from `before` to `snap`: a Service that is or was a LoadBalancer, or
/// a slice of one. Creating 10,000 ClusterIP Services then costs the cloud a diff, not 10,000 walks of them all.
pub fn lb_routes_changed(before: &Snapshot, snap: &Snapshot) -> bool {
    let is_lb = |o: Option<&Object>| match o {
        Some(Object::Service(svc)) => svc
            .spec
            .as_ref()
            .is_some_and(|spec| service_type(spec) == "LoadBalancer"),
        _ => false,
    };
    snap.all_changes_since(before).any(|(old, new)| match old.or(new) {
        Some(Object::Service(_)) => is_lb(old) || is_lb(new),
        Some(Object::EndpointSlice(slice)) => {
            let name = weft_model::object::labels(&slice.metadata)
                .get(crate::endpoints::SERVICE_NAME)
                .cloned();
            let key = Key::new(
                "Service",
                slice.metadata.namespace.as_deref(),
                name.as_deref().unwrap_or_default(),
            );
            is_lb(before.get(&key)) || is_lb(snap.get(&key))
        }
        _ => false,
    })
}

/// Nodes with a ready endpoint of `svc`, from its EndpointSlices.
fn ready_nodes<'a>(snap: &'a Snapshot, svc: &Service) -> HashSet<&'a str> {
    let name = svc.metadata.name.as_deref();
    let ns = svc.metadata.namespace.as_deref();
    snap.endpoint_slices()
        .filter(|s| s.metadata.namespace.as_deref() == ns)
        .filter(|s| {
            weft_model::object::labels(&s.metadata)
                .get(crate::endpoints::SERVICE_NAME)
                .map(String::as_str)
                == name
        })
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .filter_map(|e| e.node_name.as_deref())
        .collect()
}

/// The stored Service behind an object, if it is one.
pub fn as_service(object: &Object) -> Option<&Service> {
    match object {
        Object::Service(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        match weft_model::manifest::from_value(value).unwrap() {
            Object::Service(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    fn svc(name: &str, spec: serde_json::Value) -> Service {
        service(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
    }

    /// Admits `new` into `snap` (as an update when a Service of that name is stored) and stores it.
    fn admit_into(snap: &mut Snapshot, net: &ServiceNetwork, mut new: Service) -> Result<Service> {
        let key = weft_model::Key::new("Service", Some("default"), new.metadata.name.as_deref().unwrap());
        let old = snap.get(&key).and_then(as_service).cloned();
        admit(&Allocations::of(snap), net, old.as_ref(), &mut new)?;
        snap.insert(Object::Service(Box::new(new.clone())));
        Ok(new)
    }

    #[test]
    fn allocations_followed_change_by_change_equal_those_read_from_the_store() {
        let (mut snap, net) = (Snapshot::default(), ServiceNetwork::default());
        let mut followed = Allocations::default();
        let mut track = |snap: &mut Snapshot, new: Service| {
            let key = weft_model::Key::new("Service", Some("default"), new.metadata.name.as_deref().unwrap());
            let old = snap.get(&key).cloned();
            let admitted = admit_into(snap, &net, new).unwrap();
            followed.change(old.as_ref(), Some(&Object::Service(Box::new(admitted))));
        };
        track(
            &mut snap,
            svc("a", json!({"type": "NodePort", "ports": [{"port": 80}]})),
        );
        track(
            &mut snap,
            svc("b", json!({"type": "LoadBalancer", "ports": [{"port": 80}]})),
        );
        track(
            &mut snap,
            svc("a", json!({"type": "ClusterIP", "ports": [{"port": 80}]})),
        );
        let b = snap
            .remove(&weft_model::Key::new("Service", Some("default"), "b"))
            .unwrap();
        followed.change(Some(&b), None);
        let read = Allocations::of(&snap);
        assert_eq!(followed.cluster_ips, read.cluster_ips);
        assert_eq!(followed.node_ports, read.node_ports);
        assert!(read.node_ports.is_empty() && read.lb_ips.is_empty() && followed.lb_ips.is_empty());
        assert_eq!(read.cluster_ips.len(), 1);
    }

    fn spec(s: &Service) -> &ServiceSpec {
        s.spec.as_ref().unwrap()
    }

    #[test]
    fn cluster_ips_requested_dynamic_conflicting_and_immutable() {
        let (mut snap, net) = (Snapshot::default(), ServiceNetwork::default());
        let a = admit_into(&mut snap, &net, svc("a", json!({"ports": [{"port": 80}]}))).unwrap();
        let s = spec(&a);
        assert_eq!(s.cluster_ip.as_deref(), Some("10.96.0.17"));
        assert_eq!(s.cluster_ips, Some(vec!["10.96.0.17".to_string()]));
        assert_eq!(s.ip_families, Some(vec!["IPv4".to_string()]));
        assert_eq!(s.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(s.ports.as_ref().unwrap()[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(s.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
        let dns = admit_into(
            &mut snap,
            &net,
            svc("dns", json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]})),
        );
        assert_eq!(spec(&dns.unwrap()).cluster_ip.as_deref(), Some("10.96.0.10"));
        let b = admit_into(&mut snap, &net, svc("b", json!({"ports": [{"port": 80}]}))).unwrap();
        assert_eq!(spec(&b).cluster_ip.as_deref(), Some("10.96.0.18"));
        // Taken, outside, the network address: refused, naming field, address and holder.
        let taken = admit_into(
            &mut snap,
            &net,
            svc("c", json!({"clusterIP": "10.96.0.10", "ports": [{"port": 1}]})),
        );
        let err = taken.unwrap_err().to_string();
        assert!(
            err.contains("Service/default/c: field spec.clusterIP: \"10.96.0.10\""),
            "{err}"
        );
        assert!(err.contains("already allocated to Service default/dns"), "{err}");
        for bad in ["10.0.0.1", "10.96.0.0", "10.111.255.255"] {
            let out = admit_into(
                &mut snap,
                &net,
                svc("c", json!({"clusterIP": bad, "ports": [{"port": 1}]})),
            );
            assert!(out.unwrap_err().to_string().contains("not in the valid range"), "{bad}");
        }
        // Re-applied without the address: kept. With another: immutable.
        let again = admit_into(&mut snap, &net, svc("a", json!({"ports": [{"port": 8080}]}))).unwrap();
        assert_eq!(spec(&again).cluster_ip.as_deref(), Some("10.96.0.17"));
        let moved = admit_into(
            &mut snap,
            &net,
            svc("a", json!({"clusterIP": "10.96.0.99", "ports": [{"port": 80}]})),
        );
        assert!(moved.unwrap_err().to_string().contains("field is immutable"));
        // Headless and ExternalName get no address.
        let h = admit_into(
            &mut snap,
            &net,
            svc("h", json!({"clusterIP": "None", "selector": {"a": "b"}})),
        )
        .unwrap();
        assert_eq!(spec(&h).cluster_ips, Some(vec!["None".to_string()]));
        assert_eq!(spec(&h).ip_family_policy.as_deref(), Some("SingleStack"));
        let h2 = admit_into(&mut snap, &net, svc("h2", json!({"clusterIP": "None"}))).unwrap();
        assert_eq!(spec(&h2).ip_family_policy.as_deref(), Some("RequireDualStack"));
        let x = svc("x", json!({"type": "ExternalName", "externalName": "example.com"}));
        let x = admit_into(&mut snap, &net, x).unwrap();
        assert_eq!(spec(&x).cluster_ip, None);
        // Released on deletion: the next Service gets the lowest free address again.
        snap.remove(&weft_model::Key::new("Service", Some("default"), "a"));
        let d = admit_into(&mut snap, &net, svc("d", json!({"ports": [{"port": 80}]}))).unwrap();
        assert_eq!(spec(&d).cluster_ip.as_deref(), Some("10.96.0.17"));
    }

    #[test]
    fn a_small_range_fills_the_upper_band_then_the_static_one_then_is_full() {
        let mut snap = Snapshot::default();
        let net = ServiceNetwork {
            cidr: "10.96.0.0/27".parse().unwrap(),
            ..Default::default()
        };
        let mut got = Vec::new();
        for i in 0..30 {
            let s = admit_into(&mut snap, &net, svc(&format!("s{i}"), json!({"ports": [{"port": 80}]}))).unwrap();
            got.push(spec(&s).cluster_ip.clone().unwrap());
        }
        assert_eq!(got[0], "10.96.0.17");
        assert_eq!(got[13], "10.96.0.30");
        assert_eq!(got[14], "10.96.0.1");
        assert_eq!(got[29], "10.96.0.16");
        let full = admit_into(&mut snap, &net, svc("full", json!({"ports": [{"port": 80}]})));
        let err = full.unwrap_err().to_string();
        assert!(
            err.contains("spec.clusterIP: no free address left in the service CIDR 10.96.0.0/27"),
            "{err}"
        );
    }

    #[test]
    fn node_ports_requested_shared_conflicting_preserved_and_released() {
        let (mut snap, net) = (Snapshot::default(), ServiceNetwork::default());
        let np = |s: &Service| -> Vec<Option<i32>> { spec(s).ports.iter().flatten().map(|p| p.node_port).collect() };
        let a = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}),
        );
        let a = admit_into(&mut snap, &net, a).unwrap();
        assert_eq!(np(&a), [Some(30080), Some(30000), Some(30000)]);
        assert_eq!(spec(&a).external_traffic_policy.as_deref(), Some("Cluster"));
        // Same number, another protocol, another Service: refused, naming the holder.
        let b = svc(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "UDP", "nodePort": 30080}]}),
        );
        let err = admit_into(&mut snap, &net, b).unwrap_err().to_string();
        assert!(err.contains("field spec.ports[0].nodePort: 30080"), "{err}");
        assert!(err.contains("already allocated to Service default/a"), "{err}");
        // Re-applied without node ports: each port keeps its own.
        let a2 = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 80}]}),
        );
        assert_eq!(
            np(&admit_into(&mut snap, &net, a2).unwrap()),
            [Some(30000), Some(30080)]
        );
        // A LoadBalancer with Local traffic gets a health check port too.
        let lb = svc(
            "lb",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 443}]}),
        );
        let lb = admit_into(&mut snap, &net, lb).unwrap();
        assert_eq!(np(&lb), [Some(30001)]);
        assert_eq!(spec(&lb).health_check_node_port, Some(30002));
        assert_eq!(ingress_ip(&lb), Some(Ipv4Addr::new(172, 18, 1, 1)));
        // Type change to ClusterIP releases the node ports (and the address of the load balancer).
        let a3 = svc(
            "a",
            json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 80}]}),
        );
        assert_eq!(np(&admit_into(&mut snap, &net, a3).unwrap()), [None, None]);
        let c = svc(
            "c",
            json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30080}]}),
        );
        assert_eq!(np(&admit_into(&mut snap, &net, c).unwrap()), [Some(30080)]);
        let bad = svc(
            "d",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 1, "nodePort": 30100}, {"name": "b", "port": 2, "nodePort": 30100}]}),
        );
        assert!(
            admit_into(&mut snap, &net, bad)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        let hc = svc("e", json!({"healthCheckNodePort": 30500, "ports": [{"port": 1}]}));
        assert!(
            admit_into(&mut snap, &net, hc)
                .unwrap_err()
                .to_string()
                .contains("spec.healthCheckNodePort")
        );
    }

    #[test]
    fn node_ports_run_out() {
        let (mut snap, net) = (Snapshot::default(), ServiceNetwork::default());
        let ports: Vec<serde_json::Value> = (0..=2767)
            .map(|i| json!({"name": format!("p{i}"), "port": i + 1}))
            .collect();
        let all = admit_into(&mut snap, &net, svc("all", json!({"type": "NodePort", "ports": ports}))).unwrap();
        assert_eq!(spec(&all).ports.as_ref().unwrap()[2767].node_port, Some(32767));
        let more = admit_into(
            &mut snap,
            &net,
            svc("more", json!({"type": "NodePort", "ports": [{"port": 1}]})),
        );
        assert!(more.unwrap_err().to_string().contains("no free node port"));
        // No node ports for a LoadBalancer that asks for none.
        let lb = svc(
            "lb",
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 1}]}),
        );
        assert_eq!(
            spec(&admit_into(&mut snap, &net, lb).unwrap()).ports.as_ref().unwrap()[0].node_port,
            None
        );
    }

    #[test]
    fn load_balancer_addresses_requested_kept_exhausted_released() {
        let mut snap = Snapshot::default();
        let net = ServiceNetwork {
            lb_pool: "172.18.1.0/30".parse().unwrap(),
            ..Default::default()
        };
        let lb = |name: &str, extra: serde_json::Value| {
            let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
            spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            svc(name, spec)
        };
        let a = admit_into(&mut snap, &net, lb("a", json!({"loadBalancerIP": "172.18.1.2"}))).unwrap();
        assert_eq!(ingress_ip(&a), Some(Ipv4Addr::new(172, 18, 1, 2)));
        let b = admit_into(&mut snap, &net, lb("b", json!({}))).unwrap();
        assert_eq!(ingress_ip(&b), Some(Ipv4Addr::new(172, 18, 1, 1)));
        // Re-applied: the address stays.
        let b = admit_into(&mut snap, &net, lb("b", json!({}))).unwrap();
        assert_eq!(ingress_ip(&b), Some(Ipv4Addr::new(172, 18, 1, 1)));
        let err = admit_into(&mut snap, &net, lb("c", json!({}))).unwrap_err().to_string();
        assert!(
            err.contains("no free address left in the lab's load balancer pool 172.18.1.0/30"),
            "{err}"
        );
        let err = admit_into(&mut snap, &net, lb("c", json!({"loadBalancerIP": "172.18.1.2"}))).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.loadBalancerIP: \"172.18.1.2\" is already allocated to Service default/a")
        );
        let err = admit_into(&mut snap, &net, lb("c", json!({"loadBalancerIP": "172.18.1.3"}))).unwrap_err();
        assert!(err.to_string().contains("not in the lab's load balancer pool"));
        // A type change releases the address.
        admit_into(&mut snap, &net, svc("a", json!({"ports": [{"port": 80}]}))).unwrap();
        let c = admit_into(&mut snap, &net, lb("c", json!({}))).unwrap();
        assert_eq!(ingress_ip(&c), Some(Ipv4Addr::new(172, 18, 1, 2)));
    }

    #[test]
    fn load_balancer_routes_change_only_with_load_balancers_and_their_slices() {
        let (mut snap, net) = (Snapshot::default(), ServiceNetwork::default());
        let start = snap.clone();
        admit_into(&mut snap, &net, svc("a", json!({"ports": [{"port": 80}]}))).unwrap();
        assert!(!lb_routes_changed(&start, &snap), "a ClusterIP Service");
        let with_cluster_ip = snap.clone();
        let slice = |service: &str| {
            weft_model::manifest::from_value(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{service}-x"), "namespace": "default",
                    "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4", "endpoints": []}))
            .unwrap()
        };
        snap.insert(slice("a"));
        assert!(
            !lb_routes_changed(&with_cluster_ip, &snap),
            "a ClusterIP Service's slice"
        );
        let before_lb = snap.clone();
        admit_into(
            &mut snap,
            &net,
            svc("l", json!({"type": "LoadBalancer", "ports": [{"port": 80}]})),
        )
        .unwrap();
        assert!(lb_routes_changed(&before_lb, &snap), "a LoadBalancer Service");
        let with_lb = snap.clone();
        snap.insert(slice("l"));
        assert!(lb_routes_changed(&with_lb, &snap), "a LoadBalancer Service's slice");
        let mut removed = snap.clone();
        removed.remove(&Key::new("Service", Some("default"), "l"));
        assert!(lb_routes_changed(&snap, &removed), "a LoadBalancer Service removed");
    }

    #[test]
    fn load_balancer_routes_follow_ready_endpoints_for_local_traffic() {
        let (mut snap, net) = (Snapshot::default(), ServiceNetwork::default());
        let nodes: Vec<(String, Ipv4Addr)> = (1..=3)
            .map(|i| (format!("node-{i}"), Ipv4Addr::new(172, 18, 0, 10 + i)))
            .collect();
        let cluster = svc("c", json!({"type": "LoadBalancer", "ports": [{"port": 80}]}));
        admit_into(&mut snap, &net, cluster).unwrap();
        let local = svc(
            "l",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
        );
        admit_into(&mut snap, &net, local).unwrap();
        let routes = lb_routes(&snap, &nodes);
        assert_eq!(routes[&Ipv4Addr::new(172, 18, 1, 1)], nodes[0].1);
        assert_eq!(routes[&Ipv4Addr::new(172, 18, 1, 2)], nodes[0].1);
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "l-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "l"}},
            "addressType": "IPv4", "endpoints": [
                {"addresses": ["10.244.2.5"], "nodeName": "node-2", "conditions": {"ready": false}},
                {"addresses": ["10.244.3.5"], "nodeName": "node-3", "conditions": {"ready": true}}]});
        snap.insert(weft_model::manifest::from_value(slice).unwrap());
        let routes = lb_routes(&snap, &nodes);
        assert_eq!(routes[&Ipv4Addr::new(172, 18, 1, 2)], nodes[2].1);
        assert_eq!(routes[&Ipv4Addr::new(172, 18, 1, 1)], nodes[0].1);
    }
}
