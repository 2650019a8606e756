//! The collecting thread: kernel events in, named flows into the ring.

use super::Flows;
use super::names::Names;
use super::record::{Counters, Event, Flow, PolicyRef, Verdict, protocol_name};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_model::Snapshot;
use weft_netlink::flow_events::{self, Connection, FlowEvents, Logged};
use weft_policy::{Cluster, Direction, Endpoint, Protocol, Side, decide};

use weft_policy::plan::DROP_LOG_PREFIX;

/// How long the thread lets events queue in the kernel after each batch: one wakeup per pause instead of one per
/// event keeps the collector off the CPUs that the connections themselves need (each conntrack event is a
/// datagram, and a wakeup each cost connect latency on a busy node); flows reach the ring at most this late.
const PAUSE: Duration = Duration::from_millis(5);

pub fn run(mut events: FlowEvents, flows: &Arc<Flows>) {
    let mut batch = Vec::new();
    let mut names: Option<(u64, Arc<Names>)> = None;
    loop {
        batch.clear();
        if let Err(e) = events.recv(&mut batch) {
            tracing::error!(error = %e, "flow events stopped");
            return;
        }
        let snap = flows.snapshot();
        let names = match (&snap, &names) {
            (Some(s), Some((rev, n))) if *rev == s.revision => n.clone(),
            (Some(s), _) => {
                let n = Arc::new(Names::of(s));
                names = Some((s.revision, n.clone()));
                n
            }
            (None, _) => Arc::new(Names::default()),
        };
        let time = now_ms();
        let mut out = Vec::with_capacity(batch.len());
        for event in batch.drain(..) {
            let flow = match event {
                flow_events::Event::New(c) => connection(&names, flows.node(), time, Event::New, &c),
                flow_events::Event::Destroy(c) => connection(&names, flows.node(), time, Event::End, &c),
                flow_events::Event::Logged(l) => drop_flow(&names, snap.as_deref(), flows.node(), time, &l),
                flow_events::Event::Lost => {
                    flows.lost.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            out.extend(flow);
        }
        flows.seen.fetch_add(out.len() as u64, Ordering::Relaxed);
        flows.ring.extend(out);
        std::thread::sleep(PAUSE);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A conntrack event as a flow; none for traffic that never leaves the node: loopback (a client of this
/// endpoint) and the node to its own address (kubelet's probes of host-network pods).
pub fn connection(names: &Names, node: &str, time: u64, event: Event, c: &Connection) -> Option<Flow> {
    let (o, r) = (&c.original, &c.reply);
    if o.src.is_loopback() || o.dst.is_loopback() || o.src == o.dst {
        return None;
    }
    // After a DNAT the reply comes from where the destination was translated to.
    let translated = r.src != o.dst || r.sport != o.dport;
    let (verdict, service, destination) = if translated {
        (
            Verdict::Translated,
            names.service(o.dst, o.dport, c.protocol),
            names.peer(r.src, r.sport),
        )
    } else {
        (Verdict::Forwarded, None, names.peer(o.dst, o.dport))
    };
    Some(Flow {
        seq: 0,
        time,
        node: node.to_string(),
        event,
        verdict,
        protocol: protocol_name(c.protocol),
        source: names.peer(o.src, o.sport),
        destination,
        service,
        policy: None,
        counters: c.counters.map(|c| Counters {
            packets: c.packets,
            bytes: c.bytes,
            reply_packets: c.reply_packets,
            reply_bytes: c.reply_bytes,
        }),
    })
}

/// A packet a policy chain logged before dropping it, naming the policies as `weft trace` does.
pub fn drop_flow(names: &Names, snap: Option<&Snapshot>, node: &str, time: u64, l: &Logged) -> Option<Flow> {
    let chain = l.prefix.strip_prefix(DROP_LOG_PREFIX)?.trim();
    let direction = if chain.starts_with("egr-") {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let p = &l.packet;
    let source = names.peer(p.src, p.sport);
    let destination = names.peer(p.dst, p.dport);
    let isolated = if direction == Direction::Egress {
        &source
    } else {
        &destination
    };
    let pod = match (&isolated.namespace, &isolated.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => isolated.ip.to_string(),
    };
    let policies = snap
        .map(|s| policies(s, direction, p.src, p.dst, p.dport, l.protocol))
        .unwrap_or_default();
    Some(Flow {
        seq: 0,
        time,
        node: node.to_string(),
        event: Event::Drop,
        verdict: Verdict::Dropped,
        protocol: protocol_name(l.protocol),
        source,
        destination,
        service: None,
        policy: Some(PolicyRef {
            direction: direction.to_string(),
            pod,
            policies,
            rule: "default-deny".into(),
        }),
        counters: None,
    })
}

/// The policies isolating the dropping side, judged by the same model the rules come from.
fn policies(snap: &Snapshot, direction: Direction, src: IpAddr, dst: IpAddr, port: u16, protocol: u8) -> Vec<String> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else {
        return Vec::new();
    };
    let protocol = match protocol {
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => Protocol::Tcp,
    };
    let cluster = Cluster::index(snap);
    let endpoint = |ip| match cluster.pod_by_ip(ip) {
        Some(pod) => Endpoint::Pod(pod),
        None => Endpoint::Address(ip),
    };
    let decision = decide(&cluster, &endpoint(src), &endpoint(dst), port, protocol);
    let side = if direction == Direction::Egress {
        decision.egress
    } else {
        decision.ingress
    };
    match side {
        Side::Isolated { policies, .. } => policies,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_netlink::flow_events::Tuple4;

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple4 {
        Tuple4 {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
        }
    }

    const CLUSTER: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: app}\nspec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIP: 10.244.1.5}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: app, labels: {app: web}}\nspec: {nodeName: node-2, containers: [{name: c}]}\nstatus: {podIP: 10.244.2.7}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: app}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80, targetPort: 8080}]}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-deny, namespace: app}\nspec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}\n";

    #[test]
    fn a_translated_connection_names_its_service_and_backend() {
        let snap = Snapshot::new(1, weft_model::parse(CLUSTER, "t").unwrap());
        let names = Names::of(&snap);
        let c = Connection {
            protocol: 6,
            original: tuple("10.244.1.5", 40000, "10.96.0.20", 80),
            reply: tuple("10.244.2.7", 8080, "10.244.1.5", 40000),
            counters: None,
        };
        let f = connection(&names, "node-1", 1, Event::New, &c).unwrap();
        assert_eq!(f.verdict, Verdict::Translated);
        assert_eq!(f.source.label(), "app/client:40000");
        assert_eq!(f.destination.label(), "app/web-1:8080");
        let svc = f.service.unwrap();
        assert_eq!((svc.name.as_str(), svc.port), ("web", 80));
        let plain = Connection {
            reply: tuple("10.96.0.20", 80, "10.244.1.5", 40000),
            ..c.clone()
        };
        let f = connection(&names, "node-1", 1, Event::New, &plain).unwrap();
        assert_eq!(f.verdict, Verdict::Forwarded);
        let lo = Connection {
            original: tuple("127.0.0.1", 1, "127.0.0.1", 9654),
            ..c
        };
        assert!(
            connection(&names, "node-1", 1, Event::New, &lo).is_none(),
            "loopback is not a flow"
        );
    }

    #[test]
    fn a_logged_drop_names_the_isolating_policy() {
        let snap = Snapshot::new(1, weft_model::parse(CLUSTER, "t").unwrap());
        let names = Names::of(&snap);
        let logged = Logged {
            prefix: format!("{DROP_LOG_PREFIX}ing-app/web-1"),
            protocol: 6,
            packet: tuple("10.244.1.5", 40000, "10.244.2.7", 8080),
        };
        let f = drop_flow(&names, Some(&snap), "node-2", 1, &logged).unwrap();
        assert_eq!(f.verdict, Verdict::Dropped);
        let policy = f.policy.unwrap();
        assert_eq!(policy.direction, "Ingress");
        assert_eq!(policy.pod, "app/web-1");
        assert_eq!(policy.policies, ["app/web-deny"]);
        let other = Logged {
            prefix: "someone else's".into(),
            ..logged
        };
        assert!(drop_flow(&names, Some(&snap), "node-2", 1, &other).is_none());
    }
}
