//! Snapshot → Ruleset: kube-proxy's nftables layout. For each Service port:
//!
//! - `svc-…`: cluster-wide endpoint choice, masquerading traffic that does not come from the pod network. The
//!   choice is one DNAT to `numgen random` of the Service port's block of numbers in the endpoints map; with
//!   session affinity it is the affinity sets first, then `numgen random` over one chain per endpoint (`ep-…`:
//!   affinity bookkeeping, DNAT);
//! - `local-…`: the same over this node's endpoints only (`internalTrafficPolicy`/`externalTrafficPolicy:
//!   Local`), `drop` when there are none;
//! - `ext-…`: entry for NodePorts, externalIPs and load-balancer IPs: masquerade and go cluster-wide, or for
//!   `externalTrafficPolicy: Local` keep the client address and go to local endpoints only;
//! - `fw-…`: `loadBalancerSourceRanges` in front of `ext-…`.
//!
//! The skeleton's maps send `address . protocol . port` (and `protocol . port` on node addresses) to these
//! chains; a Service port without usable endpoints is put in the no-endpoint maps instead, which reject. Every
//! endpoint's `address . address` goes into the hairpin set.
//!
//! [`Planner`] re-plans only the Services whose Service object or EndpointSlices changed since its last plan,
//! and keeps their blocks of endpoint numbers, so a changed endpoint is a changed map element; [`plan`] is the
//! same without memory. A change of many Services (a relist after an expired watch) is planned and applied in
//! parts ([`Planner::plan_in_parts`]), so the rules from before and after it are never both held whole.

use crate::endpoints::{self, Endpoint, ServiceId, SliceIndex, Slices};
use crate::ruleset::{
    Claims, ENDPOINT_SHARDS, HAIRPIN, Key, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, Ruleset, SERVICE_IPS,
    SERVICE_NODEPORTS, ServiceRules, Services, endpoints_map,
};
use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use weft_model::compact::{Service, ServicePort, ServiceType};
use weft_model::object::Key as ObjectKey;
use weft_model::{Object, Snapshot};
use weft_netlink::nft_rules::{L4, Rule};
use weft_netlink::nftables::short_hash;

/// What the plan needs to know about the node it is for.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    pub node: String,
    /// Traffic from outside it is masqueraded on its way to a Service (so replies come back through this node).
    pub cluster_cidr: Ipv4Net,
}

/// The whole ruleset of `snap`, planned from nothing.
pub fn plan(snap: &Snapshot, ctx: &Context) -> Ruleset {
    Planner::default().plan(&Arc::new(snap.clone()), ctx)
}

/// A planner that re-plans only the Services whose objects changed since its last plan, found by comparing the
/// snapshot with the one it last planned from (objects a watch did not change are shared between the two, so
/// this costs what changed, not what exists).
#[derive(Default)]
pub struct Planner {
    /// The context the remembered parts were planned for.
    ctx: Option<Context>,
    /// The snapshot of the last plan.
    last: Option<Arc<Snapshot>>,
    slices: SliceIndex,
    /// Each Service's part, by `namespace/name`.
    services: Services,
    /// The blocks of endpoint numbers each Service's chains hold.
    blocks: HashMap<Arc<str>, Blocks>,
    claims: Claims,
    slots: Slots,
    /// Services whose objects changed since they were last planned and that are not planned again yet.
    pending: BTreeSet<ServiceId>,
}

/// How many changed Services the agent plans before it applies their rules ([`Planner::plan_in_parts`]): a
/// transaction of a few thousand steps, and a tenth of the rules at 10,000 Services held twice at most.
pub const SERVICES_PER_PART: usize = 1000;

impl Planner {
    /// A ruleset that does what [`plan`]'s does (endpoint numbers may differ).
    pub fn plan(&mut self, snap: &Arc<Snapshot>, ctx: &Context) -> Ruleset {
        self.plan_part(snap, ctx, usize::MAX)
    }

    /// Plans `snap` as [`Planner::plan`] does, re-planning at most `part` of the changed Services at a time and
    /// handing each part's ruleset to `apply` (which applies it and drops the one before): of the rules a large
    /// change replaces, only one part's are held twice. The first plan (and one for another context) is whole:
    /// the ruleset it hands over replaces the whole table. Stops at the first error; the Services not planned
    /// yet are planned by the next call.
    pub fn plan_in_parts<E>(
        &mut self,
        snap: &Arc<Snapshot>,
        ctx: &Context,
        part: usize,
        mut apply: impl FnMut(Ruleset) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            apply(self.plan_part(snap, ctx, part))?;
            if self.pending.is_empty() {
                return Ok(());
            }
        }
    }

    /// The ruleset with at most `part` more of the changed Services planned again (all of them in a first
    /// plan).
    fn plan_part(&mut self, snap: &Arc<Snapshot>, ctx: &Context, part: usize) -> Ruleset {
        let last = self.last.take().filter(|_| self.ctx.as_ref() == Some(ctx));
        let part = match last {
            Some(last) => {
                let changed = self.changed(&last, snap);
                self.pending.extend(changed);
                part
            }
            None => {
                *self = Planner {
                    ctx: Some(ctx.clone()),
                    slices: SliceIndex::of(snap),
                    ..Planner::default()
                };
                self.pending = snap
                    .of_kind("Service")
                    .map(|s| (s.namespace().map(str::to_string), s.name().to_string()))
                    .collect();
                usize::MAX
            }
        };
        // The last snapshot goes before anything is planned: what only it held (the versions a relist replaced)
        // is freed now.
        self.last = Some(Arc::clone(snap));
        for _ in 0..part {
            let Some((namespace, name)) = self.pending.pop_first() else {
                break;
            };
            self.replan(snap, ctx, namespace.as_deref(), &name);
        }
        Ruleset::with_claims(self.services.clone(), &self.claims)
    }

    /// The Services whose Service object or EndpointSlices differ between `last` and `snap`; keeps the slice
    /// index up to date on the way.
    fn changed(&mut self, last: &Snapshot, snap: &Snapshot) -> BTreeSet<ServiceId> {
        let mut changed = BTreeSet::new();
        for (was, now) in snap.changes_since(last, "Service") {
            let ids = [was, now].into_iter().flatten();
            changed.extend(ids.map(|o| (o.namespace().map(str::to_string), o.name().to_string())));
        }
        for (was, now) in snap.changes_since(last, "EndpointSlice") {
            if let Some(slice) = was.and_then(Object::endpoint_slice) {
                changed.extend(self.slices.remove(&slice));
            }
            if let Some(slice) = now.and_then(Object::endpoint_slice) {
                changed.extend(self.slices.insert(&slice));
            }
        }
        changed
    }

    /// Plans one Service again (or forgets it when it is gone), keeping the endpoint numbers of its chains.
    fn replan(&mut self, snap: &Snapshot, ctx: &Context, namespace: Option<&str>, name: &str) {
        let id: Arc<str> = Arc::from(format!("{}/{name}", namespace.unwrap_or("default")));
        if let Some(old) = self.services.remove(&id) {
            self.claims.remove(&id, &old);
        }
        let mut taker = Taker {
            held: self.blocks.remove(&id).unwrap_or_default(),
            taken: Vec::new(),
            slots: &mut self.slots,
        };
        let Some(svc) = snap
            .get(&ObjectKey::new("Service", namespace, name))
            .and_then(Object::service)
        else {
            taker.finish();
            return;
        };
        let slices = self.slices.slices(snap, namespace, name);
        let rules = Arc::new(service(&slices, ctx, &svc, &mut taker));
        self.blocks.insert(Arc::clone(&id), taker.finish());
        self.claims.add(&id, &rules);
        self.services.insert(id, rules);
    }
}

/// One Service's blocks of endpoint numbers: (chain, (first, length)), a chain or two (a list: a map per Service
/// would cost more than its entries).
type Blocks = Vec<(String, (u32, u32))>;

/// The numbers of the endpoints maps, handed out in blocks a power of two long (so a freed block fits the next
/// Service port of that size).
#[derive(Default)]
struct Slots {
    free: HashMap<u32, Vec<u32>>,
    next: u32,
}

impl Slots {
    fn take(&mut self, len: u32) -> Option<u32> {
        if let Some(first) = self.free.get_mut(&len).and_then(Vec::pop) {
            return Some(first);
        }
        let first = self.next;
        self.next = first.checked_add(len)?;
        Some(first)
    }

    fn release(&mut self, first: u32, len: u32) {
        self.free.entry(len).or_default().push(first);
    }
}

/// The blocks of one Service being planned: it keeps those of its chains that still fit.
struct Taker<'s> {
    held: Blocks,
    taken: Blocks,
    slots: &'s mut Slots,
}

impl Taker<'_> {
    /// The first of `count` consecutive numbers for `chain` and the length of its block; none when all 2^32
    /// are taken.
    fn take(&mut self, chain: &str, count: u32) -> Option<(u32, u32)> {
        let len = count.checked_next_power_of_two()?;
        let held = self.held.iter().position(|(c, _)| c == chain);
        let first = match held.map(|i| self.held.swap_remove(i).1) {
            Some((first, held)) if held == len => first,
            other => {
                if let Some((first, held)) = other {
                    self.slots.release(first, held);
                }
                self.slots.take(len)?
            }
        };
        self.taken.push((chain.to_string(), (first, len)));
        Some((first, len))
    }

    /// The blocks taken; the others held before go back.
    fn finish(mut self) -> Blocks {
        for (_, (first, len)) in self.held {
            self.slots.release(first, len);
        }
        self.taken.shrink_to_fit();
        self.taken
    }
}

/// The Service's proxied addresses: its ClusterIP, or none for headless and ExternalName Services.
fn cluster_ip(svc: &Service) -> Option<Ipv4Addr> {
    match (svc.type_, svc.cluster_ip?) {
        (ServiceType::ExternalName, _) => None,
        (_, IpAddr::V4(ip)) => Some(ip),
        (_, IpAddr::V6(_)) => None,
    }
}

/// The IPv4 addresses of `ips`.
fn v4(ips: &[IpAddr]) -> Vec<Ipv4Addr> {
    ips.iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(ip) => Some(*ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

fn service(slices: &Slices, ctx: &Context, svc: &Service, slots: &mut Taker) -> ServiceRules {
    let mut out = ServiceRules {
        health_check: health_check(slices, ctx, svc),
        ..ServiceRules::default()
    };
    for port in &svc.ports {
        service_port(&mut out, slices, ctx, svc, port, slots);
    }
    out.shrink_to_fit();
    out
}

/// The health-check node port of an `externalTrafficPolicy: Local` Service and the number of this node's ready
/// endpoints it reports.
fn health_check(slices: &Slices, ctx: &Context, svc: &Service) -> Option<(u16, usize)> {
    let port = svc.health_check_node_port?;
    if !svc.external_local {
        return None;
    }
    let local: BTreeSet<Ipv4Addr> = svc
        .ports
        .iter()
        .flat_map(|p| endpoints::for_port(slices, p, &ctx.node))
        .filter(|e| e.local && e.ready)
        .map(|e| e.ip)
        .collect();
    Some((port, local.len()))
}

fn service_port(
    out: &mut ServiceRules,
    slices: &Slices,
    ctx: &Context,
    svc: &Service,
    port: &ServicePort,
    slots: &mut Taker,
) {
    let Some(cluster_ip) = cluster_ip(svc) else { return };
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let Some(proto) = L4::parse(&port.protocol.as_str().to_ascii_lowercase()) else {
        return;
    };
    let number = port.port;
    let port_id = match &*port.name {
        "" => number.to_string(),
        named => named.to_string(),
    };
    let base = format!("{ns}/{name}/{}/{port_id}", proto.name());
    let id = format!("{}-{base}", short_hash(&base));
    let all = endpoints::for_port(slices, port, &ctx.node);
    let usable = endpoints::usable(&all);
    let local: Vec<Endpoint> = usable.iter().filter(|e| e.local).cloned().collect();
    let affinity = svc.affinity_timeout;
    let (internal_local, external_local) = (svc.internal_local, svc.external_local);
    let node_ports: Vec<u16> = port.node_port.into_iter().collect();
    let externals = v4(&svc.external_ips);
    let lb_ips = v4(&svc.load_balancer_ips);
    let key = |ip: Ipv4Addr| Key::Address(ip, proto, number);
    let goto = |chain: &str| Some(Arc::<str>::from(format!("goto {chain}")));
    if proto == L4::Udp {
        // Flows stay with every endpoint that still serves, new traffic or not (as kube-proxy's conntrack
        // cleanup): a terminating pod answers the queries already sent to it while it drains.
        let serving = all.iter().filter(|e| e.serving);
        out.udp_endpoints.extend(serving.map(|e| (e.ip, e.port)));
    }

    if usable.is_empty() {
        // Nothing to send it to: connections are refused at once instead of timing out.
        let reject = goto("reject-chain");
        for ip in std::iter::once(cluster_ip).chain(externals).chain(lb_ips) {
            out.element(NO_ENDPOINT_SERVICES, key(ip), reject.clone());
        }
        for np in node_ports {
            out.element(NO_ENDPOINT_NODEPORTS, Key::NodePort(proto, np), reject.clone());
        }
        return;
    }
    let has_external = !(node_ports.is_empty() && externals.is_empty() && lb_ips.is_empty());
    for ep in &usable {
        // A pod's connection comes back to it only through its own node, or (unmasqueraded, so needing the
        // hairpin) through the external entry of an `externalTrafficPolicy: Local` Service on another node.
        if ep.local || (external_local && has_external) {
            out.element(HAIRPIN, Key::Hairpin(ep.ip), None);
        }
    }

    let svc_chain = format!("svc-{id}");
    let local_chain = format!("local-{id}");
    let mut svc_rules = vec![format!("ip saddr != {} jump mark-for-masquerade", ctx.cluster_cidr)];
    svc_rules.extend(choose(out, &svc_chain, &id, proto, &usable, affinity, slots));
    out.add_chain(svc_chain.clone(), svc_rules);
    if internal_local || (external_local && has_external) {
        let rules = if local.is_empty() {
            vec!["drop".to_string()]
        } else {
            choose(out, &local_chain, &id, proto, &local, affinity, slots)
        };
        out.add_chain(local_chain.clone(), rules);
    }
    let internal_target = if internal_local { &local_chain } else { &svc_chain };
    out.element(SERVICE_IPS, key(cluster_ip), goto(internal_target));

    if !has_external {
        return;
    }
    let ext_chain = format!("ext-{id}");
    let ext_rules = if external_local {
        vec![
            // Pods and the node itself are not "external": they may use any endpoint.
            format!("ip saddr {} goto {svc_chain}", ctx.cluster_cidr),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {svc_chain}"),
            format!("goto {local_chain}"),
        ]
    } else {
        vec!["jump mark-for-masquerade".to_string(), format!("goto {svc_chain}")]
    };
    out.add_chain(ext_chain.clone(), ext_rules);
    let to_ext = goto(&ext_chain);
    for ip in externals {
        out.element(SERVICE_IPS, key(ip), to_ext.clone());
    }
    let ranges: Vec<String> = (svc.load_balancer_source_ranges.iter())
        .filter(|r| matches!(r, IpNet::V4(_)))
        .map(IpNet::to_string)
        .collect();
    let lb_target = if ranges.is_empty() {
        to_ext.clone()
    } else {
        let fw_chain = format!("fw-{id}");
        let rules = vec![
            format!("ip saddr != {{ {} }} drop", ranges.join(", ")),
            format!("goto {ext_chain}"),
        ];
        out.add_chain(fw_chain.clone(), rules);
        goto(&fw_chain)
    };
    for ip in lb_ips {
        out.element(SERVICE_IPS, key(ip), lb_target.clone());
    }
    for np in node_ports {
        out.element(SERVICE_NODEPORTS, Key::NodePort(proto, np), to_ext.clone());
    }
}

/// Rules of `chain` that send the packet to one of `eps`. Without affinity, one DNAT to a random one of their
/// numbers in the endpoints map. With affinity, a client with a recent connection goes back to its endpoint,
/// anyone else to a random one; each endpoint then has a chain of its own (created here) that records the
/// client.
fn choose(
    out: &mut ServiceRules,
    chain: &str,
    id: &str,
    proto: L4,
    eps: &[Endpoint],
    affinity: Option<i32>,
    slots: &mut Taker,
) -> Vec<String> {
    let n = eps.len() as u32;
    let Some(timeout) = affinity else {
        if let Some((first, len)) = slots.take(chain, n) {
            // Consecutive blocks of one size go to consecutive shards.
            let map = endpoints_map(proto, (first / len) % ENDPOINT_SHARDS);
            out.endpoints
                .extend(eps.iter().zip(first..).map(|(ep, slot)| (map, slot, ep.ip, ep.port)));
            let rule = Rule::DnatMap {
                proto,
                modulus: n,
                offset: first,
                map: map.to_string(),
            };
            return vec![rule.to_string()];
        }
        // Every number taken (not in practice): one rule per endpoint instead, endpoint i of n taken with
        // probability 1/(n-i) among those left, which is 1/n overall; `dnat` ends the chain.
        return eps
            .iter()
            .zip(0..)
            .map(|(ep, i)| {
                let (addr, port) = (ep.ip, ep.port);
                let rule = if i + 1 == n {
                    Rule::Dnat { proto, addr, port }
                } else {
                    Rule::NumgenDnat {
                        modulus: n - i,
                        value: 0,
                        proto,
                        addr,
                        port,
                    }
                };
                rule.to_string()
            })
            .collect();
    };
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    for ep in eps {
        let target = format!("{}:{}", ep.ip, ep.port);
        let ep_id = format!("{}-{id}__{}/{}", short_hash(&format!("{id}{target}")), ep.ip, ep.port);
        let chain = format!("ep-{ep_id}");
        // The timeout is in the set's name, so a changed timeout is a new set, never a changed one.
        let set = format!("aff-{timeout}-{ep_id}");
        out.sets.insert(
            set.clone(),
            format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
        );
        rules.push(format!("ip saddr @{set} goto {chain}"));
        let dnat = Rule::Dnat {
            proto,
            addr: ep.ip,
            port: ep.port,
        };
        out.add_chain(
            chain.clone(),
            vec![format!("update @{set} {{ ip saddr }}"), dnat.to_string()],
        );
        chains.push(chain);
    }
    // The same uniform choice as above, over the endpoint chains (an anonymous verdict map would be validated
    // against the whole table, per map).
    for (ep_chain, i) in chains.iter().zip(0..) {
        if i + 1 == n {
            rules.push(format!("goto {ep_chain}"));
        } else {
            rules.push(format!("numgen random mod {} 0 goto {ep_chain}", n - i));
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_every_endpoint_number_taken_a_service_port_gets_one_rule_per_endpoint() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.244.1.5]}, {addresses: [10.244.2.5]}]\n";
        let snap = Snapshot::new(1, weft_model::parse(text, "t").unwrap());
        let ctx = Context {
            node: "n".into(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        };
        let snap = Arc::new(snap);
        let mut planner = Planner::default();
        planner.plan(&Arc::new(Snapshot::default()), &ctx);
        planner.slots.next = u32::MAX - 1;
        let r = planner.plan(&snap, &ctx);
        let (_, rules) = r.chains().next().unwrap();
        assert_eq!(
            rules[1..],
            [
                "numgen random mod 2 0 meta l4proto tcp dnat ip to 10.244.1.5:8080",
                "meta l4proto tcp dnat ip to 10.244.2.5:8080"
            ]
        );
        assert!(r.services["default/web"].endpoints.is_empty());
        // The same plan in a planner with numbers to spare uses the endpoints map.
        assert!(
            plan(&snap, &ctx)
                .chains()
                .any(|(_, rules)| rules[1].contains("map @endpoints-tcp-"))
        );
    }

    #[test]
    fn udp_flows_stay_with_every_serving_endpoint_whether_or_not_it_takes_new_ones() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: default}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: dns-1, namespace: default, labels: {kubernetes.io/service-name: dns}}\naddressType: IPv4\nports: [{port: 53, protocol: UDP}]\nendpoints:\n- {addresses: [10.244.1.5]}\n- {addresses: [10.244.2.5], conditions: {ready: false, serving: true, terminating: true}}\n- {addresses: [10.244.2.6], conditions: {ready: false, serving: false, terminating: true}}\n";
        let snap = Snapshot::new(1, weft_model::parse(text, "t").unwrap());
        let ctx = Context {
            node: "n".into(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        };
        let r = plan(&Arc::new(snap), &ctx);
        // New queries go to the ready endpoint only; the draining one keeps the flows it has.
        let chosen: Vec<Ipv4Addr> = r.services["default/dns"].endpoints.iter().map(|e| e.2).collect();
        assert_eq!(chosen, [Ipv4Addr::new(10, 244, 1, 5)]);
        let kept: Vec<(Ipv4Addr, u16)> = r.udp_endpoints.iter().copied().collect();
        assert_eq!(
            kept,
            [(Ipv4Addr::new(10, 244, 1, 5), 53), (Ipv4Addr::new(10, 244, 2, 5), 53)]
        );
    }
}
