//! The Prometheus text exposition format (0.0.4), written by hand: counters and gauges are atomics the components
//! own, histograms are fixed buckets of atomics, and a scrape renders them all. Small enough not to need a metrics
//! library, and it keeps the DNS workers' per-thread counters (summed at scrape time) possible.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds, in seconds, for the fast path: a DNS answer, a table build (10 µs to 2 s).
pub const FAST: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.0,
];

/// Upper bounds, in seconds, for syncs and change propagation (1 ms to 1 min).
pub const SLOW: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A histogram of durations over fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, and one for +Inf.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| s <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new(FAST)
    }
}

#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Labels of one series: `(name, value)` pairs.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A scrape being written.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A metric family's `# HELP` and `# TYPE` lines; its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: Labels, value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Counter);
        self.sample(name, &[], value);
    }

    /// A family of one unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, help, Kind::Gauge);
        self.sample(name, &[], value);
    }

    /// A histogram family; each series is the sum of its parts (e.g. one histogram per worker thread).
    pub fn histogram(&mut self, name: &str, help: &str, series: &[(Labels, &[&Histogram])]) {
        self.family(name, help, Kind::Histogram);
        for (labels, parts) in series {
            self.buckets(name, labels, parts);
        }
    }

    /// One series of a histogram family (after its `family`): the sum of `parts`, which share their bounds.
    pub fn buckets(&mut self, name: &str, labels: Labels, parts: &[&Histogram]) {
        let Some(first) = parts.first() else { return };
        let mut cumulative = 0;
        let bounds = first.bounds.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]);
        for (i, bound) in bounds.enumerate() {
            cumulative += parts
                .iter()
                .filter_map(|h| h.counts.get(i))
                .map(|c| c.load(Relaxed))
                .sum::<u64>();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &bound));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative);
        }
        let sum: u64 = parts.iter().map(|h| h.sum_ns.load(Relaxed)).sum();
        self.sample(&format!("{name}_sum"), labels, sum as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Something that writes metric families into a scrape.
pub trait Collect: Send + Sync {
    fn collect(&self, out: &mut Exposition);
}

/// Everything one process exposes on `/metrics`: each component registers its collector (the server's own
/// metrics, the API source's watch counters), and a scrape asks each in turn.
#[derive(Clone, Default)]
pub struct Registry {
    collectors: Arc<Mutex<Vec<Arc<dyn Collect>>>>,
}

impl Registry {
    pub fn register(&self, collector: Arc<dyn Collect>) {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(collector);
    }

    /// The whole scrape.
    pub fn render(&self) -> String {
        let collectors = self.collectors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Exposition::default();
        for c in collectors {
            c.collect(&mut out);
        }
        out.into_text()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.collectors.lock().map(|c| c.len()).unwrap_or_default();
        write!(f, "Registry({n} collectors)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_sum_their_parts() {
        let (a, b) = (Histogram::new(&[0.01, 1.0]), Histogram::new(&[0.01, 1.0]));
        a.observe(Duration::from_millis(5));
        b.observe(Duration::from_millis(500));
        b.observe(Duration::from_secs(3));
        let mut out = Exposition::default();
        out.histogram("t_seconds", "Test.", &[(&[("part", "x")], &[&a, &b])]);
        assert_eq!(
            out.into_text(),
            "# HELP t_seconds Test.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{part=\"x\",le=\"0.01\"} 1\n\
             t_seconds_bucket{part=\"x\",le=\"1\"} 2\n\
             t_seconds_bucket{part=\"x\",le=\"+Inf\"} 3\n\
             t_seconds_sum{part=\"x\"} 3.505\n\
             t_seconds_count{part=\"x\"} 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("what", "a \"b\"\\\n")], 1);
        assert_eq!(out.into_text(), "m{what=\"a \\\"b\\\"\\\\\\n\"} 1\n");
    }

    #[test]
    fn a_registry_renders_every_collector() {
        struct One(&'static str);
        impl Collect for One {
            fn collect(&self, out: &mut Exposition) {
                out.counter(self.0, "A test counter.", 7);
            }
        }
        let registry = Registry::default();
        registry.register(Arc::new(One("a_total")));
        registry.register(Arc::new(One("b_total")));
        let text = registry.render();
        assert!(text.contains("# TYPE a_total counter\na_total 7\n"), "{text}");
        assert!(text.contains("b_total 7\n"), "{text}");
    }
}
