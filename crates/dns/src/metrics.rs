//! Counters kept per worker thread (no shared cache line on the hot path) and summed when scraped, written in the
//! Prometheus text format.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_daemon::metrics::{Collect, Exposition, Histogram, Kind};

const TYPES: [&str; 10] = ["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "SOA", "NS", "ANY", "other"];
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other", "DROPPED",
];

fn type_index(t: Option<RecordType>) -> usize {
    match t {
        Some(RecordType::A) => 0,
        Some(RecordType::AAAA) => 1,
        Some(RecordType::SRV) => 2,
        Some(RecordType::PTR) => 3,
        Some(RecordType::TXT) => 4,
        Some(RecordType::CNAME) => 5,
        Some(RecordType::SOA) => 6,
        Some(RecordType::NS) => 7,
        Some(RecordType::ANY) => 8,
        _ => 9,
    }
}

fn rcode_index(r: Option<ResponseCode>) -> usize {
    match r {
        Some(ResponseCode::NoError) => 0,
        Some(ResponseCode::FormErr) => 1,
        Some(ResponseCode::ServFail) => 2,
        Some(ResponseCode::NXDomain) => 3,
        Some(ResponseCode::NotImp) => 4,
        Some(ResponseCode::Refused) => 5,
        Some(_) => 6,
        None => 7,
    }
}

/// One worker's counters.
#[derive(Default)]
pub struct Worker {
    queries: [[AtomicU64; RCODES.len()]; TYPES.len()],
    latency: Histogram,
}

impl Worker {
    /// Counts one answered (or dropped) query and the time spent on it.
    pub fn query(&self, qtype: Option<RecordType>, rcode: Option<ResponseCode>, took: Duration) {
        self.queries[type_index(qtype)][rcode_index(rcode)].fetch_add(1, Relaxed);
        self.latency.observe(took);
    }
}

/// Everything the server counts.
#[derive(Default)]
pub struct Metrics {
    workers: Mutex<Vec<Arc<Worker>>>,
    /// From a snapshot's arrival to its table being served.
    pub sync: Histogram,
    /// From an object change (when the API accepted it) to the table with it being served.
    pub change_to_answer: Histogram,
    pub revision: AtomicU64,
    pub names: AtomicU64,
    pub forwarded: AtomicU64,
    pub cache_hits: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub loops: AtomicU64,
    pub truncated: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub source_errors: AtomicU64,
}

impl Metrics {
    /// A new worker's counters, included in every scrape from now on.
    pub fn worker(&self) -> Arc<Worker> {
        let w = Arc::new(Worker::default());
        if let Ok(mut ws) = self.workers.lock() {
            ws.push(w.clone());
        }
        w
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Exposition) {
        let workers = self.workers.lock().map(|w| w.clone()).unwrap_or_default();
        let name = "weft_dns_queries_total";
        out.family(name, "DNS queries by question type and response code.", Kind::Counter);
        for (t, tname) in TYPES.iter().enumerate() {
            for (r, rname) in RCODES.iter().enumerate() {
                let n: u64 = workers.iter().map(|w| w.queries[t][r].load(Relaxed)).sum();
                if n > 0 {
                    out.sample(name, &[("type", tname), ("rcode", rname)], n);
                }
            }
        }
        let latency: Vec<&Histogram> = workers.iter().map(|w| &w.latency).collect();
        out.histogram(
            "weft_dns_request_duration_seconds",
            "Time from receiving a query to sending its answer (forwarded queries: until the upstream answered).",
            &[(&[], &latency)],
        );
        out.histogram(
            "weft_dns_sync_duration_seconds",
            "Time from a cluster snapshot's arrival to its records being served.",
            &[(&[], &[&self.sync])],
        );
        out.histogram(
            "weft_dns_change_to_answer_seconds",
            "Time from an object change, when the API accepted it, to the answers including it (one per change).",
            &[(&[], &[&self.change_to_answer])],
        );
        out.gauge(
            "weft_dns_snapshot_revision",
            "Revision of the snapshot being served.",
            self.revision.load(Relaxed),
        );
        out.gauge("weft_dns_names", "Names in the record table.", self.names.load(Relaxed));
        for (name, help, v) in [
            (
                "weft_dns_forwarded_total",
                "Queries sent to upstream resolvers.",
                &self.forwarded,
            ),
            (
                "weft_dns_cache_hits_total",
                "Upstream answers served from the cache.",
                &self.cache_hits,
            ),
            (
                "weft_dns_upstream_timeouts_total",
                "Upstream queries that got no answer in time.",
                &self.upstream_timeouts,
            ),
            (
                "weft_dns_forward_loops_total",
                "Forwarding loops detected and refused.",
                &self.loops,
            ),
            (
                "weft_dns_truncated_total",
                "UDP answers sent truncated (TC).",
                &self.truncated,
            ),
            (
                "weft_dns_tcp_connections_total",
                "TCP connections accepted.",
                &self.tcp_connections,
            ),
            (
                "weft_dns_source_errors_total",
                "Errors from the cluster state source.",
                &self.source_errors,
            ),
        ] {
            out.counter(name, help, v.load(Relaxed));
        }
    }
}
