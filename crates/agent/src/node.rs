//! The agent's main loop on one node: every snapshot from the `Source` is turned into the node's overlay
//! (routes or VXLAN to every other node), the CNI settings file weft-cni reads for this node's pods, and the
//! service proxy's nftables table.
//! Syncs are idempotent, so a restarted agent adopts what its predecessor made without breaking flows, and
//! what someone else changes is repaired by running them again (see `drift.rs`).

use crate::drift::Dirty;
use crate::health::Health;
use crate::ippool::{self, report::Write};
use crate::metrics::{Metrics, Part};
use crate::overlay::{self, Mode, NodeNet};
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};
use weft_model::k8s_openapi::api::core::v1::Node;
use weft_model::{Snapshot, Source};
use weft_netlink::Handle;
use weft_proxy::{Planner, Proxier};

/// The kinds the agent plans from.
pub const KINDS: &[&str] = &["Node", "Service", "EndpointSlice", "Pod", "Namespace", "NetworkPolicy"];

pub struct Config {
    /// This node's name (its Node object).
    pub node: String,
    pub overlay: Mode,
    pub cluster_cidr: Ipv4Net,
    /// The link that carries node-to-node traffic.
    pub uplink: String,
    /// Where weft-cni reads this node's settings.
    pub node_config: PathBuf,
    /// weft-cni's state (IPAM, journals) on this node.
    pub cni_state_dir: PathBuf,
    /// Where what the overlay sync found for the API goes (IP pool conditions, this node's address and
    /// unreachable peers); None: nowhere.
    pub reports: Option<mpsc::Sender<Write>>,
    /// The UDP port of VXLAN (with `Mode::Vxlan`).
    pub vxlan_port: u16,
    /// The node's flows, named from each snapshot the loop syncs (none: observation off).
    pub flows: Option<Arc<crate::flows::Flows>>,
}

/// What wakes the agent's loop.
enum Wake {
    Snapshot(Arc<Snapshot>),
    /// Something else changed or removed kernel objects the agent owns.
    Drift(Dirty),
}

/// Runs for good: the source on a thread of its own (transient errors retried), kernel notifications on
/// another, and the syncs on this one, woken by either and by the periodic drift check. `metrics` sees every
/// sync and repair.
pub fn run(source: &mut (dyn Source + Send), config: &Config, metrics: &Arc<Metrics>) -> Result<(), String> {
    crate::drift::restore_sysctls()?;
    let mut agent = Agent {
        handle: Handle::new().map_err(|e| e.to_string())?,
        planner: Planner::default(),
        proxier: Proxier::new(),
        health: Health::default(),
        policy: weft_policy::Enforcer::new(),
        metrics: metrics.clone(),
        notrack: None,
        reported: Vec::new(),
        reported_at: Instant::now(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let snapshots = tx.clone();
        scope.spawn(move || follow(source, metrics, |snap| snapshots.send(Wake::Snapshot(snap)).is_ok()));
        std::thread::Builder::new()
            .name("drift-watch".into())
            .spawn(move || {
                // Without notifications the periodic check still repairs, only later.
                if let Err(e) = crate::drift::watch(|dirty| tx.send(Wake::Drift(dirty)).is_ok()) {
                    tracing::error!(error = %e, "kernel notifications failed; repairs wait for the periodic check");
                }
            })
            .map_err(|e| e.to_string())?;
        let mut last: Option<Arc<Snapshot>> = None;
        let mut next_check = Instant::now() + crate::drift::BACKSTOP;
        loop {
            let wake = match rx.recv_timeout(next_check.saturating_duration_since(Instant::now())) {
                Ok(wake) => wake,
                Err(RecvTimeoutError::Timeout) => {
                    next_check = Instant::now() + crate::drift::BACKSTOP;
                    Wake::Drift(Dirty::check())
                }
                Err(RecvTimeoutError::Disconnected) => return Err("the source stopped".to_string()),
            };
            // What queued up during the last sync is taken together: only the newest snapshot is worth syncing.
            let (mut newest, mut dirty) = (None, Dirty::default());
            for wake in std::iter::once(wake).chain(rx.try_iter()) {
                match wake {
                    Wake::Snapshot(snap) => newest = Some(snap),
                    Wake::Drift(d) => dirty.merge(d),
                }
            }
            if let Some(snap) = newest {
                if let Some(flows) = &config.flows {
                    flows.follow(snap.clone());
                }
                // The snapshot before goes first: what only it holds (the versions a relist replaced) is freed
                // before the sync plans the new ones.
                let snap = last.insert(snap);
                agent.sync(snap, config);
            }
            // Before the first snapshot there is nothing to repair: its sync makes everything.
            if let Some(snap) = last.as_ref().filter(|_| dirty.any()) {
                agent.repair(dirty, snap, config);
            }
        }
    })
}

/// Hands every new snapshot of `source` to `send` until it returns false; transient errors are retried.
fn follow(source: &mut (dyn Source + Send), metrics: &Metrics, send: impl Fn(Arc<Snapshot>) -> bool) {
    let mut after = 0;
    let mut retry = Duration::from_millis(100);
    loop {
        let snap = match source.next(after) {
            Ok(snap) => snap,
            Err(e) => {
                metrics.source_error();
                tracing::warn!(error = %e, retry = ?retry, "cluster state source failed; retrying");
                std::thread::sleep(retry);
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        retry = Duration::from_millis(100);
        after = snap.revision;
        if !send(snap) {
            return;
        }
    }
}

/// The agent's kernel-facing state between syncs.
pub struct Agent {
    handle: Handle,
    /// Re-plans only the Services whose objects changed.
    planner: Planner,
    pub(crate) proxier: Proxier,
    health: Health,
    pub(crate) policy: weft_policy::Enforcer,
    pub(crate) metrics: Arc<Metrics>,
    /// The `inet weft-overlay` script in place (None: none, or not known to be; the next sync writes it).
    pub(crate) notrack: Option<String>,
    /// What the last overlay sync sent to the API, so a repeat is not sent again until the snapshot says it
    /// has arrived (or something else changed).
    reported: Vec<Write>,
    /// When `reported` was last sent in whole: after `RESEND`, what is still missing is sent again (a write
    /// that failed, or one someone undid).
    reported_at: Instant,
}

/// How long a write the API does not show yet is taken to be on its way.
const RESEND: Duration = Duration::from_secs(30);

impl Agent {
    /// Every part for a new snapshot. The parts are independent: a failing overlay must not hold back
    /// Services, nor the reverse.
    fn sync(&mut self, snap: &Arc<Snapshot>, config: &Config) {
        let (after, metrics) = (snap.revision, self.metrics.clone());
        let overlay = metrics.sync(Part::Overlay, after, || self.sync_overlay(snap, config));
        let services = metrics.sync(Part::Services, after, || self.sync_services(snap, config));
        let policy = metrics.sync(Part::Policy, after, || self.sync_policy(snap, config));
        // Tells the node's pod runtime that pods known at this revision are under their policies now.
        if policy.is_ok()
            && let Err(e) = write_if_changed(&synced_file(config), &after.to_string())
        {
            tracing::warn!(revision = after, error = %e, "recording the synced revision");
        }
        if overlay.is_ok() && services.is_ok() && policy.is_ok() {
            metrics.applied(snap);
        }
    }

    /// Node-to-node routes or VXLAN, then the CNI settings file; returns the number of kernel changes.
    pub fn sync_overlay(&mut self, snap: &Snapshot, config: &Config) -> Result<usize, String> {
        let handle = &mut self.handle;
        let cidrs = crate::ipam::pod_cidrs(snap);
        let nodes: Vec<NodeNet> = snap.nodes().filter_map(|n| node_net(n, &cidrs)).collect();
        let Some(me) = nodes.iter().find(|n| n.name == config.node) else {
            return Err(format!(
                "node {} has no Node object with an InternalIP and a pod CIDR (its podCIDR or a PodCIDRBlock) yet",
                config.node
            ));
        };
        let uplink = handle
            .link_by_name(&config.uplink)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("uplink {} not found", config.uplink))?;
        // The node's subnet on the underlay: the uplink's address that is the node's InternalIP.
        let address = handle
            .addresses(uplink.index)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find_map(|(_, a)| match a {
                IpNet::V4(a) if a.addr() == me.ip => Some(a),
                _ => None,
            });
        let pools = ippool::pools(snap);
        let encap = ippool::encapsulation(&pools, config.overlay, address.map(|a| a.trunc()));
        let mut desired = overlay::plan(me, &nodes, &encap, uplink.mtu).map_err(|e| e.to_string())?;
        // The plan uses the IANA port; the configured one wins (a changed port recreates the device).
        if let Some(vxlan) = desired.vxlan.as_mut() {
            vxlan.device.port = config.vxlan_port;
        }
        let report = overlay::sync(handle, &config.uplink, &desired).map_err(|e| e.to_string())?;
        self.report(snap, config, address, &pools, &desired);
        let notrack = desired
            .vxlan
            .as_ref()
            .map(|v| overlay::notrack::script(&config.uplink, v.device.local, v.device.port));
        let mut changes = report.changes();
        if notrack != self.notrack {
            let present = overlay::notrack::present().map_err(|e| e.to_string())?;
            overlay::notrack::apply(notrack.as_deref(), present).map_err(|e| e.to_string())?;
            changes += usize::from(notrack.is_some() || present);
            self.notrack = notrack;
        }
        self.metrics.overlay_routes(desired.routes.len());
        if report.changes() > 0 {
            tracing::info!(revision = snap.revision, part = "overlay", changes = %report, "synced");
        }
        let settings = json!({
            "podCIDR": IpNet::V4(me.pod_cidr).to_string(),
            "clusterCIDR": IpNet::V4(config.cluster_cidr).to_string(),
            "mtu": desired.pod_mtu,
            "stateDir": config.cni_state_dir,
            "attachment": "routed",
        });
        write_if_changed(&config.node_config, &settings.to_string())?;
        Ok(changes)
    }

    /// Sends what the API should learn of this sync and does not know yet: this node's address, the pools'
    /// conditions, the peers the pools leave unreachable from here.
    fn report(
        &mut self,
        snap: &Snapshot,
        config: &Config,
        address: Option<Ipv4Net>,
        pools: &[ippool::IPPool],
        desired: &overlay::Desired,
    ) {
        let Some(reports) = &config.reports else { return };
        if self.reported_at.elapsed() >= RESEND {
            self.reported.clear();
            self.reported_at = Instant::now();
        }
        let mut writes = Vec::new();
        let own = snap
            .nodes()
            .find(|n| n.metadata.name.as_deref() == Some(config.node.as_str()));
        let annotated = own
            .and_then(|n| n.metadata.annotations.as_ref())
            .and_then(|a| a.get(ippool::ADDRESS_ANNOTATION));
        if let Some(address) = address
            && annotated != Some(&address.to_string())
        {
            writes.push(Write::Address {
                node: config.node.clone(),
                address,
            });
        }
        let subnets = ippool::routable::subnets(snap.nodes());
        for pool in pools {
            let condition = ippool::routable::condition(pool, &subnets);
            if !ippool::report::says(pool.status.as_ref(), &condition)
                && let Some(name) = pool.metadata.name.clone()
            {
                writes.push(Write::Condition { pool: name, condition });
            }
        }
        for write in &writes {
            if !self.reported.contains(write) {
                // The receiver lives as long as the agent; a send that fails has nobody to tell.
                let _ = reports.send(write.clone());
            }
        }
        let unreachable = Write::Unreachable {
            node: config.node.clone(),
            peers: desired.unreachable.clone(),
        };
        let before = self.reported.iter().find(|w| matches!(w, Write::Unreachable { .. }));
        // Sent when it changes (an agent starting with none says nothing).
        if before.map_or(!desired.unreachable.is_empty(), |b| *b != unreachable) {
            for peer in &desired.unreachable {
                tracing::warn!(peer = %peer.node, reason = %peer.reason, "pods of a node cannot be reached");
            }
            let _ = reports.send(unreachable.clone());
        }
        writes.push(unreachable);
        self.reported = writes;
    }

    /// The NetworkPolicy table of this node's pods: whole at start, then only what each change touches.
    pub fn sync_policy(&mut self, snap: &Snapshot, config: &Config) -> Result<(), String> {
        let cluster = weft_policy::Cluster::index(snap);
        let desired = weft_policy::plan::plan(&cluster, &config.node);
        let counts = desired.counts();
        let report = self.policy.sync(desired).map_err(|e| e.to_string())?;
        self.metrics.nft_table(weft_policy::plan::TABLE, counts);
        if report.script > 0 {
            tracing::info!(
                revision = snap.revision,
                part = "policy",
                chains = counts.0,
                rules = counts.1,
                elements = counts.2,
                kind = report.kind(),
                bytes = report.script,
                took = ?report.elapsed,
                fallback = report.fallback.as_deref(),
                "synced"
            );
        }
        Ok(())
    }

    /// The service proxy's table, and the health-check ports of `externalTrafficPolicy: Local` Services.
    pub fn sync_services(&mut self, snap: &Arc<Snapshot>, config: &Config) -> Result<(), String> {
        let ctx = weft_proxy::Context {
            node: config.node.clone(),
            cluster_cidr: config.cluster_cidr,
        };
        // The first sync puts the policy table in the services table's transaction (one `nft` at start);
        // `sync_policy` then finds it in place.
        let mut policy_first = (self.proxier.is_fresh() && self.policy.is_fresh())
            .then(|| weft_policy::plan::plan(&weft_policy::Cluster::index(snap), &config.node));
        // A change of many Services goes to the kernel in parts (see `Planner::plan_in_parts`).
        let (proxier, metrics, health, policy) = (&mut self.proxier, &self.metrics, &mut self.health, &mut self.policy);
        self.planner
            .plan_in_parts(snap, &ctx, weft_proxy::SERVICES_PER_PART, |desired| {
                let counts = desired.counts();
                let checks = crate::health::desired(&desired);
                let (report, with_policy) = match policy_first.take() {
                    Some(rules) => {
                        let (report, joint) = proxier.sync_with(desired, &rules.full()).map_err(|e| e.to_string())?;
                        if joint {
                            policy.applied_whole(rules);
                        }
                        (report, joint)
                    }
                    None => (proxier.sync(desired).map_err(|e| e.to_string())?, false),
                };
                metrics.nft_table(weft_proxy::ruleset::TABLE, counts);
                if report.script > 0 {
                    tracing::info!(
                        revision = snap.revision,
                        part = "services",
                        chains = counts.0,
                        rules = counts.1,
                        elements = counts.2,
                        kind = if report.full { "full" } else { "incremental" },
                        with_policy,
                        bytes = report.script,
                        took = ?report.elapsed,
                        conntrack_cleared = report.conntrack_cleared,
                        fallback = report.fallback.as_deref(),
                        "synced"
                    );
                }
                health.sync(checks);
                Ok(())
            })
    }
}

/// Where the agent records the last revision whose NetworkPolicy rules are in place (beside the CNI settings):
/// the node's pod runtime waits for it before starting a new pod's processes.
pub fn synced_file(config: &Config) -> PathBuf {
    config.node_config.with_file_name("agent-revision")
}

/// A Node's name, InternalIP and IPv4 pod CIDR (from `cidrs`, every node's: see `ipam::pod_cidrs`), when it has
/// all three.
pub fn node_net(node: &Node, cidrs: &BTreeMap<String, Ipv4Net>) -> Option<NodeNet> {
    let name = node.metadata.name.clone()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    let pod_cidr = *cidrs.get(&name)?;
    Some(NodeNet { name, ip, pod_cidr })
}

/// Writes `text` atomically unless the file already holds it (weft-cni may read it at any moment).
pub(crate) fn write_if_changed(path: &std::path::Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_needs_an_internal_ip_and_a_pod_cidr() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1"},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "172.18.0.11"}]}
        }))
        .unwrap();
        let cidrs = crate::ipam::pod_cidrs(&Snapshot::new(1, [weft_model::Object::Node(Box::new(node.clone()))]));
        let net = node_net(&node, &cidrs).unwrap();
        assert_eq!(net.ip.to_string(), "172.18.0.11");
        assert_eq!(net.pod_cidr.to_string(), "10.244.1.0/24");
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        assert!(node_net(&bare, &cidrs).is_none());
    }
}
