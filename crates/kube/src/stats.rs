//! What the watchers of a `KubeSource` went through, per kind: lists (the first, and every relist after a
//! `410 Gone` or a broken watch), failures (each followed by a back-off and a new watch or list) and events; on
//! `/metrics` of the component that follows the source.

use kube::runtime::watcher::Event;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use weft_daemon::metrics::{Collect, Exposition, Kind};

pub struct WatchStats {
    kinds: Vec<PerKind>,
}

struct PerKind {
    name: String,
    lists: AtomicU64,
    errors: AtomicU64,
    events: AtomicU64,
}

impl WatchStats {
    pub fn new(kinds: &[&str]) -> WatchStats {
        let per_kind = |k: &&str| PerKind {
            name: k.to_string(),
            lists: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            events: AtomicU64::new(0),
        };
        WatchStats {
            kinds: kinds.iter().map(per_kind).collect(),
        }
    }

    /// The name of kind number `kind`.
    pub fn kind(&self, kind: usize) -> &str {
        self.kinds.get(kind).map_or("?", |k| k.name.as_str())
    }

    /// Counts one of kind `kind`'s watch events; answers whether it begins a relist (a list after the first).
    pub fn event<K>(&self, kind: usize, event: &Event<K>) -> bool {
        let Some(k) = self.kinds.get(kind) else { return false };
        k.events.fetch_add(1, Relaxed);
        matches!(event, Event::Init) && k.lists.fetch_add(1, Relaxed) > 0
    }

    /// Counts a failed watch or list of kind `kind`.
    pub fn error(&self, kind: usize) {
        if let Some(k) = self.kinds.get(kind) {
            k.errors.fetch_add(1, Relaxed);
        }
    }
}

impl Collect for WatchStats {
    fn collect(&self, out: &mut Exposition) {
        /// What a family counts, from a kind's counters.
        type Value = fn(&PerKind) -> u64;
        let families: [(&str, &str, Value); 3] = [
            (
                "weft_kube_relists_total",
                "Lists of a kind after its first: after 410 Gone or a watch that could not resume.",
                |k| k.lists.load(Relaxed).saturating_sub(1),
            ),
            (
                "weft_kube_watch_errors_total",
                "Failed watches or lists of a kind; each is retried after a back-off (a watch restart).",
                |k| k.errors.load(Relaxed),
            ),
            (
                "weft_kube_watch_events_total",
                "Watch events received for a kind (list items included).",
                |k| k.events.load(Relaxed),
            ),
        ];
        for (name, help, value) in families {
            out.family(name, help, Kind::Counter);
            for k in &self.kinds {
                out.sample(name, &[("kind", &k.name)], value(k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_after_the_first_are_relists() {
        let stats = WatchStats::new(&["Service", "Node"]);
        assert!(!stats.event::<()>(0, &Event::Init), "the first list");
        assert!(!stats.event(0, &Event::InitApply(())));
        assert!(!stats.event::<()>(0, &Event::InitDone));
        stats.error(0);
        assert!(stats.event::<()>(0, &Event::Init), "a relist");
        let mut out = Exposition::default();
        stats.collect(&mut out);
        let text = out.into_text();
        assert!(text.contains("weft_kube_relists_total{kind=\"Service\"} 1\n"), "{text}");
        assert!(text.contains("weft_kube_relists_total{kind=\"Node\"} 0\n"), "{text}");
        assert!(
            text.contains("weft_kube_watch_errors_total{kind=\"Service\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("weft_kube_watch_events_total{kind=\"Service\"} 4\n"),
            "{text}"
        );
    }
}
