//! Snapshot → Ruleset: kube-proxy's nftables layout. For each Service port:
//!
//! - `svc-…`: cluster-wide endpoint choice (affinity sets first, then `numgen random`), masquerading traffic
//!   that does not come from the pod network;
//! - `local-…`: the same over this node's endpoints only (`internalTrafficPolicy`/`externalTrafficPolicy:
//!   Local`), `drop` when there are none;
//! - `ext-…`: entry for NodePorts, externalIPs and load-balancer IPs: masquerade and go cluster-wide, or for
//!   `externalTrafficPolicy: Local` keep the client address and go to local endpoints only;
//! - `fw-…`: `loadBalancerSourceRanges` in front of `ext-…`;
//! - `ep-…`: one per endpoint: hairpin masquerade, affinity bookkeeping, DNAT.
//!
//! The skeleton's maps send `address . protocol . port` (and `protocol . port` on node addresses) to these
//! chains; a Service port without usable endpoints is put in the no-endpoint maps instead, which reject.

use crate::endpoints::{self, Endpoint};
use crate::ruleset::{NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, Ruleset, SERVICE_IPS, SERVICE_NODEPORTS};
use ipnet::Ipv4Net;
use weft_model::Snapshot;
use weft_model::k8s_openapi::api::core::v1::{Service, ServicePort};

/// What the plan needs to know about the node it is for.
#[derive(Clone, Debug)]
pub struct Context {
    pub node: String,
    /// Traffic from outside it is masqueraded on its way to a Service (so replies come back through this node).
    pub cluster_cidr: Ipv4Net,
}

/// Kubernetes' default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

pub fn plan(snap: &Snapshot, ctx: &Context) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let slices = endpoints::Slices::index(snap);
    for svc in snap.services() {
        for port in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
            service_port(&mut ruleset, &slices, ctx, svc, port);
        }
    }
    ruleset
}

/// The Service's proxied addresses: its ClusterIP, or none for headless and ExternalName Services.
fn cluster_ip(svc: &Service) -> Option<&str> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None" && !ip.contains(':'))
}

fn service_port(ruleset: &mut Ruleset, slices: &endpoints::Slices, ctx: &Context, svc: &Service, port: &ServicePort) {
    let Some(cluster_ip) = cluster_ip(svc) else { return };
    let Some(spec) = svc.spec.as_ref() else { return };
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let proto = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
    let port_id = port
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| port.port.to_string());
    let base = format!("{ns}/{name}/{proto}/{port_id}");
    let id = format!("{}-{base}", short_hash(&base));
    let all = slices.for_port(ns, name, port, &ctx.node);
    let usable = endpoints::usable(&all);
    let local: Vec<Endpoint> = usable.iter().filter(|e| e.local).cloned().collect();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let node_ports: Vec<i32> = port.node_port.into_iter().collect();
    let mut externals: Vec<&str> = spec.external_ips.iter().flatten().map(String::as_str).collect();
    let lb_ips: Vec<&str> = svc
        .status
        .iter()
        .flat_map(|s| s.load_balancer.iter().flat_map(|lb| lb.ingress.iter().flatten()))
        .filter_map(|i| i.ip.as_deref())
        .collect();
    externals.retain(|ip| !ip.contains(':'));
    let key = |ip: &str| format!("{ip} . {proto} . {}", port.port);

    if usable.is_empty() {
        // Nothing to send it to: connections are refused at once instead of timing out.
        let reject = "goto reject-chain".to_string();
        for ip in std::iter::once(cluster_ip)
            .chain(externals.iter().copied())
            .chain(lb_ips.iter().copied())
        {
            ruleset.element(NO_ENDPOINT_SERVICES, key(ip), reject.clone());
        }
        for np in &node_ports {
            ruleset.element(NO_ENDPOINT_NODEPORTS, format!("{proto} . {np}"), reject.clone());
        }
        return;
    }

    let svc_chain = format!("svc-{id}");
    let local_chain = format!("local-{id}");
    let mut svc_rules = vec![format!("ip saddr != {} jump mark-for-masquerade", ctx.cluster_cidr)];
    svc_rules.extend(choose(ruleset, &id, &proto, &usable, affinity));
    ruleset.chains.insert(svc_chain.clone(), svc_rules);
    let needs_local =
        internal_local || (external_local && !(node_ports.is_empty() && externals.is_empty() && lb_ips.is_empty()));
    if needs_local {
        let rules = if local.is_empty() {
            vec!["drop".to_string()]
        } else {
            choose(ruleset, &id, &proto, &local, affinity)
        };
        ruleset.chains.insert(local_chain.clone(), rules);
    }
    let internal_target = if internal_local { &local_chain } else { &svc_chain };
    ruleset.element(SERVICE_IPS, key(cluster_ip), format!("goto {internal_target}"));

    if node_ports.is_empty() && externals.is_empty() && lb_ips.is_empty() {
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
    ruleset.chains.insert(ext_chain.clone(), ext_rules);
    for ip in &externals {
        ruleset.element(SERVICE_IPS, key(ip), format!("goto {ext_chain}"));
    }
    let ranges: Vec<&str> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|r| !r.contains(':'))
        .collect();
    let lb_target = if ranges.is_empty() {
        ext_chain.clone()
    } else {
        let fw_chain = format!("fw-{id}");
        let rules = vec![
            format!("ip saddr != {{ {} }} drop", ranges.join(", ")),
            format!("goto {ext_chain}"),
        ];
        ruleset.chains.insert(fw_chain.clone(), rules);
        fw_chain
    };
    for ip in &lb_ips {
        ruleset.element(SERVICE_IPS, key(ip), format!("goto {lb_target}"));
    }
    for np in &node_ports {
        ruleset.element(
            SERVICE_NODEPORTS,
            format!("{proto} . {np}"),
            format!("goto {ext_chain}"),
        );
    }
}

/// Rules that pick one of `eps` (creating their endpoint chains): a client with affinity goes back to its
/// endpoint, anyone else to a random one.
fn choose(ruleset: &mut Ruleset, id: &str, proto: &str, eps: &[Endpoint], affinity: Option<i32>) -> Vec<String> {
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    for ep in eps {
        let target = format!("{}:{}", ep.ip, ep.port);
        let ep_id = format!("{}-{id}__{}/{}", short_hash(&format!("{id}{target}")), ep.ip, ep.port);
        let chain = format!("ep-{ep_id}");
        let mut ep_rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
        if let Some(timeout) = affinity {
            // The timeout is in the set's name, so a changed timeout is a new set, never a changed one.
            let set = format!("aff-{timeout}-{ep_id}");
            ruleset.sets.insert(
                set.clone(),
                format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            );
            ep_rules.push(format!("update @{set} {{ ip saddr }}"));
            rules.push(format!("ip saddr @{set} goto {chain}"));
        }
        ep_rules.push(format!("meta l4proto {proto} dnat ip to {target}"));
        ruleset.chains.insert(chain.clone(), ep_rules);
        if proto == "udp" {
            ruleset.udp_endpoints.insert((ep.ip, ep.port));
        }
        chains.push(chain);
    }
    // Uniform choice without an anonymous verdict map (the kernel validates each of those against the whole
    // table, which made a 10,000-Service sync quadratic): endpoint i of n is taken with probability 1/(n-i)
    // among those left, which is 1/n overall.
    let n = chains.len();
    for (i, chain) in chains.iter().enumerate() {
        if i + 1 == n {
            rules.push(format!("goto {chain}"));
        } else {
            rules.push(format!("numgen random mod {} 0 goto {chain}", n - i));
        }
    }
    rules
}

/// Eight base-32 characters of a hash: chain names stay unique even when truncated views of them collide.
fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8)
        .map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}
