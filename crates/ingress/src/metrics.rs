//! Per-route request metrics for `/metrics`: responses by status class, time to the response's head and the
//! upstream's share of it, per Ingress, host and path. A route's series outlive table swaps (each new table's route picks up its series by
//! name), so counters are not reset by a change; series of routes that no longer exist are dropped at the swap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_daemon::metrics::{Collect, Exposition, Histogram, Kind, SLOW};

/// Ingress (`namespace/name`), host, path; all empty for the built-in default backend.
pub type RouteKey = (String, String, String);

pub struct RouteMetrics {
    /// Whose series this is.
    pub key: RouteKey,
    /// Responses by status class: 1xx to 5xx.
    classes: [AtomicU64; 5],
    latency: Histogram,
    /// From a request sent upstream to the upstream's response head (answered attempts only).
    upstream: Histogram,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteMetrics")
    }
}

impl RouteMetrics {
    fn new(key: RouteKey) -> RouteMetrics {
        RouteMetrics {
            key,
            classes: Default::default(),
            latency: Histogram::new(SLOW),
            upstream: Histogram::new(SLOW),
        }
    }

    /// One response of `status`, `took` after the request arrived.
    pub fn record(&self, status: u16, took: Duration) {
        if let Some(class) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.classes.get(usize::from(i)))
        {
            class.fetch_add(1, Relaxed);
        }
        self.latency.observe(took);
    }

    /// An upstream's response head came `took` after the request went to it.
    pub fn record_upstream(&self, took: Duration) {
        self.upstream.observe(took);
    }
}

/// One of a route's histograms.
type Pick = fn(&RouteMetrics) -> &Histogram;

/// Every route's series.
pub struct Metrics {
    routes: Mutex<BTreeMap<RouteKey, Arc<RouteMetrics>>>,
    /// Requests no route took (the built-in default backend).
    pub unrouted: Arc<RouteMetrics>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            routes: Mutex::default(),
            unrouted: Arc::new(RouteMetrics::new(RouteKey::default())),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RouteKey, Arc<RouteMetrics>>> {
        // A map of counters: a panic elsewhere cannot leave it half-changed.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series of a route, made on first use.
    pub fn route(&self, key: RouteKey) -> Arc<RouteMetrics> {
        self.lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(RouteMetrics::new(key)))
            .clone()
    }

    /// Drops the series of routes not in `live` (the routes of the table just swapped in).
    pub fn retain(&self, live: &BTreeSet<RouteKey>) {
        self.lock().retain(|key, _| live.contains(key));
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Exposition) {
        let routes = self.lock().clone();
        let all: Vec<(&RouteKey, &Arc<RouteMetrics>)> =
            routes.iter().chain([(&self.unrouted.key, &self.unrouted)]).collect();
        let name = "weft_ingress_requests_total";
        out.family(
            name,
            "Responses, by Ingress, host, path and status class.",
            Kind::Counter,
        );
        for ((ingress, host, path), m) in &all {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let labels = [
                    ("ingress", ingress.as_str()),
                    ("host", host.as_str()),
                    ("path", path.as_str()),
                    ("code", class),
                ];
                out.sample(name, &labels, m.classes[i].load(Relaxed));
            }
        }
        let histograms: [(&str, &str, Pick); 2] = [
            (
                "weft_ingress_request_duration_seconds",
                "Time from a request's arrival to its response's head, by Ingress, host and path.",
                |m| &m.latency,
            ),
            (
                "weft_ingress_upstream_duration_seconds",
                "Time from a request sent upstream to the upstream's response head, by Ingress, host and path.",
                |m| &m.upstream,
            ),
        ];
        for (name, help, histogram) in histograms {
            out.family(name, help, Kind::Histogram);
            for ((ingress, host, path), m) in &all {
                let labels = [
                    ("ingress", ingress.as_str()),
                    ("host", host.as_str()),
                    ("path", path.as_str()),
                ];
                out.buckets(name, &labels, &[histogram(m)]);
            }
        }
    }
}
