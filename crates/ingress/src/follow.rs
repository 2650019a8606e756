//! Keeps the routing table current: each new snapshot of the cluster in which an object of the table's kinds
//! changed becomes a new table, swapped in whole.

use crate::table::{Config, Problem, Table};
use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft_model::{Snapshot, Source};

/// The kinds the routing table is made of.
pub const TABLE_KINDS: [&str; 15] = [
    "IngressClass",
    "Ingress",
    "Service",
    "EndpointSlice",
    "Secret",
    "Namespace",
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "ReferenceGrant",
    "BackendTLSPolicy",
    "ConfigMap",
];
/// Every kind followed: the table's, and Nodes, whose addresses go in the Ingresses' status.
pub const KINDS: [&str; 6] = ["IngressClass", "Ingress", "Service", "EndpointSlice", "Secret", "Node"];
/// The built-in kinds followed too when the Gateway API is served: Namespaces, for listeners' selectors, and
/// ConfigMaps, for BackendTLSPolicies' CA certificates.
pub const GATEWAY_KINDS: [&str; 2] = ["Namespace", "ConfigMap"];

/// Builds a table from every snapshot `source` delivers (when one of the table's kinds changed) and installs it
/// in `table`; sets `ready` after the first; then hands the snapshot to `then` with the problems that appeared
/// in it (each is logged, once: not again on every change).
pub fn follow(
    source: &mut dyn Source,
    config: &Config,
    table: &ArcSwap<Table>,
    ready: &AtomicBool,
    mut then: impl FnMut(&Snapshot, &[Problem]),
) -> ! {
    let mut previous: Option<Arc<Snapshot>> = None;
    let mut reported = BTreeSet::new();
    loop {
        match source.next(previous.as_ref().map_or(0, |p| p.revision)) {
            Ok(snapshot) => {
                let changed = previous.as_ref().is_none_or(|p| {
                    TABLE_KINDS
                        .iter()
                        .any(|k| snapshot.changes_since(p, k).next().is_some())
                });
                let mut appeared = Vec::new();
                if changed {
                    let start = Instant::now();
                    let next = Table::build(&snapshot, config);
                    let problems: BTreeSet<Problem> = next.problems().iter().cloned().collect();
                    appeared.extend(problems.difference(&reported).cloned());
                    for problem in &appeared {
                        let ingress = problem.ingress.as_ref().map(|(ns, name)| format!("{ns}/{name}"));
                        tracing::warn!(
                            ingress = ingress.unwrap_or_default(),
                            reason = problem.reason,
                            "{}",
                            problem.message
                        );
                    }
                    reported = problems;
                    table.store(Arc::new(next));
                    tracing::debug!(revision = snapshot.revision, took = ?start.elapsed(), "routing table swapped");
                }
                ready.store(true, Ordering::Relaxed);
                then(&snapshot, &appeared);
                previous = Some(snapshot);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster state source failed; retrying in 1s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
