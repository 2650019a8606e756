//! What the agent reports about itself: Prometheus metrics on `/metrics` (sync durations and failures per part,
//! nftables sizes, drift repairs, snapshot revision, change-to-dataplane latency) and the answers of `/healthz`
//! (no sync stuck) and `/readyz` (every part synced once). The main loop calls in a few places; the HTTP side is
//! weft-daemon's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};
use weft_daemon::metrics::{Collect, Exposition, Histogram, Kind, SLOW};
use weft_daemon::{Liveness, Probes};
use weft_model::Snapshot;

/// The independent parts of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Node-to-node routes or VXLAN, and the CNI settings file.
    Overlay,
    /// The service proxy's table and health-check ports.
    Services,
    /// The NetworkPolicy table.
    Policy,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Overlay, Part::Services, Part::Policy];

    pub fn name(self) -> &'static str {
        match self {
            Part::Overlay => "overlay",
            Part::Services => "services",
            Part::Policy => "policy",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Part::Overlay => "overlay sync",
            Part::Services => "services sync",
            Part::Policy => "policy sync",
        }
    }
}

/// A sync that runs this long means the agent is stuck (a full sync of 10,000 Services takes a few seconds).
pub const STUCK: Duration = Duration::from_secs(60);

pub struct Metrics {
    sync: [Histogram; 3],
    errors: [AtomicU64; 3],
    /// Whether each part has synced once: the agent is ready when all have.
    synced: [AtomicBool; 3],
    revision: AtomicU64,
    change_to_dataplane: Histogram,
    source_errors: AtomicU64,
    /// nftables table → (chains, rules, set and map elements) as last synced.
    tables: Mutex<BTreeMap<&'static str, (usize, usize, usize)>>,
    overlay_routes: AtomicU64,
    /// What was repaired (e.g. "nft table inet weft", "route") → how often.
    drift: Mutex<BTreeMap<String, u64>>,
    liveness: Liveness,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            sync: Part::ALL.map(|_| Histogram::new(SLOW)),
            errors: Default::default(),
            synced: Default::default(),
            revision: AtomicU64::new(0),
            change_to_dataplane: Histogram::new(SLOW),
            source_errors: AtomicU64::new(0),
            tables: Mutex::default(),
            overlay_routes: AtomicU64::new(0),
            drift: Mutex::default(),
            liveness: Liveness::new(STUCK),
        }
    }
}

impl Metrics {
    /// Runs `sync`, one part's sync of `revision`: timed, watched by `/healthz`, its failure counted and logged.
    pub fn sync<T>(&self, part: Part, revision: u64, sync: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        let i = part as usize;
        let turn = self.liveness.turn(part.what());
        let started = Instant::now();
        let outcome = sync();
        self.sync[i].observe(started.elapsed());
        drop(turn);
        match &outcome {
            Ok(_) => {
                if !self.synced[i].swap(true, Relaxed) {
                    tracing::info!(revision, part = part.name(), "first sync done");
                }
            }
            Err(e) => {
                self.errors[i].fetch_add(1, Relaxed);
                tracing::error!(revision, part = part.name(), error = %e, "sync failed");
            }
        }
        outcome
    }

    /// A snapshot whose every part is in the kernel: its revision, and how long each change it carries took from
    /// reaching the agent's watch to here.
    pub fn applied(&self, snap: &Snapshot) {
        self.revision.store(snap.revision, Relaxed);
        let now = SystemTime::now();
        for changed in &snap.changes {
            // A change stamped after now (another host's clock) counts as immediate.
            self.change_to_dataplane
                .observe(now.duration_since(*changed).unwrap_or_default());
        }
    }

    /// The size of an nftables table the agent just synced.
    pub fn nft_table(&self, table: &'static str, (chains, rules, elements): (usize, usize, usize)) {
        lock(&self.tables).insert(table, (chains, rules, elements));
    }

    /// Routes the overlay holds to other nodes.
    pub fn overlay_routes(&self, routes: usize) {
        self.overlay_routes.store(routes as u64, Relaxed);
    }

    /// The source failed (the watch is retried).
    pub fn source_error(&self) {
        self.source_errors.fetch_add(1, Relaxed);
    }

    /// Counts one repair of kernel state someone else changed or removed; `what` names the object's kind (e.g.
    /// "nft table inet weft", "route", "vxlan device"), not the object, so that the series stay few.
    pub fn drift_repaired(&self, what: &str) {
        *lock(&self.drift).entry(what.to_string()).or_default() += 1;
    }

    /// What `/healthz` watches; also what a terminating agent waits on to let a sync finish.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Probes for Metrics {
    fn healthy(&self) -> Result<(), String> {
        self.liveness.check()
    }

    fn ready(&self) -> Result<(), String> {
        let waiting: Vec<&str> = Part::ALL
            .iter()
            .filter(|p| !self.synced[**p as usize].load(Relaxed))
            .map(|p| p.name())
            .collect();
        match waiting.is_empty() {
            true => Ok(()),
            false => Err(format!("waiting for the first sync of: {}", waiting.join(", "))),
        }
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Exposition) {
        let name = "weft_agent_sync_duration_seconds";
        out.family(
            name,
            "Time one part of a sync took (overlay: routes, VXLAN and CNI settings; services: the proxy's table; \
             policy: the NetworkPolicy table), failed ones included.",
            Kind::Histogram,
        );
        for p in Part::ALL {
            out.buckets(name, &[("part", p.name())], &[&self.sync[p as usize]]);
        }
        let name = "weft_agent_sync_errors_total";
        out.family(
            name,
            "Syncs of a part that failed (retried with the next snapshot).",
            Kind::Counter,
        );
        for p in Part::ALL {
            out.sample(name, &[("part", p.name())], self.errors[p as usize].load(Relaxed));
        }
        out.histogram(
            "weft_agent_change_to_dataplane_seconds",
            "Time from a change reaching the agent's watch to every part of the dataplane holding it (one per change).",
            &[(&[], &[&self.change_to_dataplane])],
        );
        out.gauge(
            "weft_agent_snapshot_revision",
            "Revision of the last snapshot every part synced.",
            self.revision.load(Relaxed),
        );
        let tables = lock(&self.tables).clone();
        for (name, help, field) in [
            (
                "weft_agent_nft_chains",
                "Chains in an nftables table the agent owns.",
                0,
            ),
            ("weft_agent_nft_rules", "Rules in an nftables table the agent owns.", 1),
            (
                "weft_agent_nft_elements",
                "Set and map elements in an nftables table the agent owns.",
                2,
            ),
        ] {
            out.family(name, help, Kind::Gauge);
            for (table, counts) in &tables {
                let value = [counts.0, counts.1, counts.2][field];
                out.sample(name, &[("table", table)], value);
            }
        }
        out.gauge(
            "weft_agent_overlay_routes",
            "Routes to other nodes' pod CIDRs.",
            self.overlay_routes.load(Relaxed),
        );
        let name = "weft_agent_drift_repairs_total";
        out.family(
            name,
            "Kernel objects the agent owns that something else changed or removed, repaired.",
            Kind::Counter,
        );
        for (what, n) in lock(&self.drift).iter() {
            out.sample(name, &[("what", what)], n);
        }
        out.counter(
            "weft_agent_source_errors_total",
            "Failures of the cluster state source (the Kubernetes API watch); retried with back-off.",
            self.source_errors.load(Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(m: &Metrics) -> String {
        let mut out = Exposition::default();
        m.collect(&mut out);
        out.into_text()
    }

    #[test]
    fn ready_once_every_part_synced_and_failures_counted() {
        let m = Metrics::default();
        assert_eq!(
            m.ready(),
            Err("waiting for the first sync of: overlay, services, policy".into())
        );
        assert!(m.sync(Part::Overlay, 3, || Ok(())).is_ok());
        assert!(m.sync(Part::Services, 3, || Err::<(), _>("nft failed".into())).is_err());
        assert!(m.sync(Part::Policy, 3, || Ok(())).is_ok());
        assert_eq!(m.ready(), Err("waiting for the first sync of: services".into()));
        assert!(m.sync(Part::Services, 4, || Ok(())).is_ok());
        assert_eq!(m.ready(), Ok(()));
        assert_eq!(m.healthy(), Ok(()));
        let text = scrape(&m);
        assert!(
            text.contains("weft_agent_sync_errors_total{part=\"services\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_sync_errors_total{part=\"overlay\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_sync_duration_seconds_count{part=\"services\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn applied_snapshots_time_their_changes_and_tables_drift_are_exposed() {
        let m = Metrics::default();
        let mut snap = Snapshot::default();
        snap.revision = 9;
        let now = SystemTime::now();
        snap.changes = vec![now - Duration::from_millis(300), now + Duration::from_secs(5)];
        m.applied(&snap);
        m.nft_table("inet weft", (12, 40, 300));
        m.drift_repaired("route");
        m.drift_repaired("route");
        m.drift_repaired("nft table \"inet weft\"");
        let text = scrape(&m);
        assert!(text.contains("weft_agent_snapshot_revision 9\n"), "{text}");
        assert!(
            text.contains("weft_agent_change_to_dataplane_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_change_to_dataplane_seconds_bucket{le=\"0.25\"} 1\n"),
            "the future change counts as immediate, the other took 300 ms: {text}"
        );
        assert!(
            text.contains("weft_agent_change_to_dataplane_seconds_bucket{le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_nft_rules{table=\"inet weft\"} 40\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_nft_elements{table=\"inet weft\"} 300\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_drift_repairs_total{what=\"route\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_agent_drift_repairs_total{what=\"nft table \\\"inet weft\\\"\"} 1\n"),
            "{text}"
        );
    }
}
