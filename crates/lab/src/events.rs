//! core/v1 Events as the components' event recorders write them: one Event per (object, reason, message,
//! component), whose `count` and `lastTimestamp` grow when it happens again, kept bounded by age and number.

use crate::store::{Store, now};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::HashMap;
use weft_model::k8s_openapi;
use weft_model::{Key, Object, Snapshot};

/// Events last seen longer ago than this (before the newest event) are removed, as the API server's event TTL.
pub const EVENT_TTL_SECS: i64 = 3600;
/// At most this many Events per namespace; the oldest go first.
pub const MAX_EVENTS_PER_NAMESPACE: usize = 1000;

/// Something worth an Event: what happened to which object, and who saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub regarding: ObjectReference,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// `source.component` (and `reportingComponent`): `default-scheduler`, `kubelet`, `replicaset-controller`...
    pub component: &'static str,
    /// `source.host`: the node, for kubelets.
    pub host: Option<String>,
}

impl Note {
    pub fn normal(regarding: ObjectReference, reason: &'static str, message: String, component: &'static str) -> Note {
        Note {
            regarding,
            type_: "Normal",
            reason,
            message,
            component,
            host: None,
        }
    }

    pub fn warning(regarding: ObjectReference, reason: &'static str, message: String, component: &'static str) -> Note {
        Note {
            type_: "Warning",
            ..Note::normal(regarding, reason, message, component)
        }
    }

    pub fn on(mut self, host: &str) -> Note {
        self.host = Some(host.to_string());
        self
    }
}

/// A reference to `meta`'s object of `kind` (`apiVersion` as the API serves it), for `involvedObject`.
pub fn reference(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

/// Records `note`: a new Event, or one more occurrence of the same one.
pub fn record(store: &mut Store, note: Note) {
    let name = event_name(&note);
    // Events of cluster-scoped objects (Nodes) live in `default`, as the recorders put them.
    let namespace = note.regarding.namespace.clone().unwrap_or_else(|| "default".into());
    let key = Key::new("Event", Some(&namespace), &name);
    let at = now();
    let repeated = store.update(&key, |o| {
        if let Object::Event(e) = o {
            e.count = Some(e.count.unwrap_or(1) + 1);
            e.last_timestamp = Some(at.clone());
        }
    });
    if repeated || store.get(&key).is_some() {
        return;
    }
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: note.regarding,
        type_: Some(note.type_.into()),
        reason: Some(note.reason.into()),
        message: Some(note.message),
        source: Some(EventSource {
            component: Some(note.component.into()),
            host: note.host.clone(),
        }),
        reporting_component: Some(note.component.into()),
        reporting_instance: Some(note.host.unwrap_or_else(|| note.component.into())),
        first_timestamp: Some(at.clone()),
        last_timestamp: Some(at),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = store.create(Object::Event(Box::new(event))) {
        eprintln!("weft lab: recording an event: {e}");
    }
}

/// `<object>.<16 hex digits>`, the digits a hash of what makes two events the same one.
fn event_name(note: &Note) -> String {
    let text = format!(
        "{}\0{}\0{}\0{}\0{}",
        note.regarding.uid.as_deref().unwrap_or_default(),
        note.regarding.name.as_deref().unwrap_or_default(),
        note.reason,
        note.message,
        note.component
    );
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{}.{h:016x}", note.regarding.name.as_deref().unwrap_or("event"))
}

/// The Events to remove: those last seen more than `EVENT_TTL_SECS` before the newest one, and the oldest of
/// any namespace holding more than `MAX_EVENTS_PER_NAMESPACE`. Pure: the newest event stands for "now".
pub fn expired(snap: &Snapshot) -> Vec<Key> {
    let seen = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .or(e.first_timestamp.as_ref())
            .map_or(0, |t| t.0.as_second())
    };
    let events = || {
        snap.of_kind("Event").filter_map(|o| match o {
            Object::Event(e) => Some((o, seen(e))),
            _ => None,
        })
    };
    // Runs whenever an Event changed: first a pass that allocates nothing, which usually finds nothing to do.
    let (mut newest, mut oldest) = (i64::MIN, i64::MAX);
    let mut per_ns: HashMap<&str, usize> = HashMap::new();
    for (o, at) in events() {
        newest = newest.max(at);
        oldest = oldest.min(at);
        *per_ns.entry(o.namespace().unwrap_or_default()).or_default() += 1;
    }
    let cutoff = newest.saturating_sub(EVENT_TTL_SECS);
    if oldest >= cutoff && per_ns.values().all(|n| *n <= MAX_EVENTS_PER_NAMESPACE) {
        return Vec::new();
    }
    let mut by_ns: HashMap<&str, Vec<(i64, Key)>> = HashMap::new();
    for (o, at) in events() {
        by_ns
            .entry(o.namespace().unwrap_or_default())
            .or_default()
            .push((at, o.key()));
    }
    let mut gone = Vec::new();
    for (_, mut events) in by_ns {
        events.sort();
        let surplus = events.len().saturating_sub(MAX_EVENTS_PER_NAMESPACE);
        for (i, (at, key)) in events.into_iter().enumerate() {
            if i < surplus || at < cutoff {
                gone.push(key);
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_ref(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    #[test]
    fn repeats_count_and_old_or_surplus_events_expire() {
        let dir = std::env::temp_dir().join(format!("weft-events-{}", crate::store::new_uid()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(dir.join("o.json")).unwrap();
        let note = Note::warning(
            pod_ref("p"),
            "BackOff",
            "Back-off restarting failed container".into(),
            "kubelet",
        );
        record(&mut store, note.clone().on("node-1"));
        record(&mut store, note.on("node-1"));
        let events: Vec<Event> = store
            .view()
            .of_kind("Event")
            .filter_map(|o| match o {
                Object::Event(e) => Some((**e).clone()),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.count, Some(2));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.source.as_ref().unwrap().host.as_deref(), Some("node-1"));
        assert_eq!(e.involved_object.name.as_deref(), Some("p"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("p."));
        assert!(expired(&store.snapshot()).is_empty());
        // An event seen two hours before the newest one expires.
        let key = Key::new("Event", Some("default"), e.metadata.name.as_deref().unwrap());
        store.update(&key, |o| {
            if let Object::Event(e) = o {
                let old =
                    k8s_openapi::jiff::Timestamp::from_second(e.last_timestamp.as_ref().unwrap().0.as_second() - 7200);
                e.last_timestamp = old.ok().map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
            }
        });
        record(
            &mut store,
            Note::normal(pod_ref("q"), "Started", "Started container c".into(), "kubelet"),
        );
        assert_eq!(expired(&store.snapshot()), [key]);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
