//! Keeps the routing table current: each new snapshot of the cluster becomes a new table, swapped in whole.

use crate::table::{Config, Table};
use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft_model::Source;

/// The kinds the table is made of.
pub const KINDS: [&str; 5] = ["IngressClass", "Ingress", "Service", "EndpointSlice", "Secret"];

/// Builds a table from every snapshot `source` delivers and installs it in `table`; sets `ready` after the
/// first. Problems are logged when they first appear, not on every change.
pub fn follow(source: &mut dyn Source, config: &Config, table: &ArcSwap<Table>, ready: &AtomicBool) -> ! {
    let mut after = 0;
    let mut reported = BTreeSet::new();
    loop {
        match source.next(after) {
            Ok(snapshot) => {
                let start = Instant::now();
                let next = Table::build(&snapshot, config);
                let problems: BTreeSet<String> = next.problems().iter().cloned().collect();
                for problem in problems.difference(&reported) {
                    tracing::warn!(%problem, "ingress");
                }
                reported = problems;
                table.store(Arc::new(next));
                ready.store(true, Ordering::Relaxed);
                tracing::debug!(revision = snapshot.revision, took = ?start.elapsed(), "routing table swapped");
                after = snapshot.revision;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster state source failed; retrying in 1s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
