//! The cluster as a component's watchers have shown it: watch events in, snapshots out. Kept apart from the
//! watchers themselves so that the rules (one snapshot only once every kind is listed, unchanged objects shared,
//! a relist applied as it arrives) are tested without an API server.

use kube::runtime::watcher::Event;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;
use weft_model::{Key, Object, Snapshot};

/// One watcher per kind feeds one `Mirror`; the kinds are numbered as `Mirror::new` was given them.
pub struct Mirror {
    kinds: Vec<Listing>,
    current: Snapshot,
    /// When the changes made since the last snapshot was taken arrived (see `Snapshot::changes`).
    pending: Vec<SystemTime>,
    /// The last snapshot taken, handed out again until something changes.
    taken: Option<Arc<Snapshot>>,
    /// The revision of the last snapshot handed out: the next one's must be greater.
    handed: u64,
}

/// Where one kind's watcher is in its (re)list.
#[derive(Default)]
struct Listing {
    kind: String,
    /// Whether a list of this kind has ever been completed: no snapshot before every kind's has.
    listed: bool,
    /// During a (re)list: the keys listed so far (what the mirror holds of the kind and is not among them at the
    /// end is gone).
    relist: Option<BTreeSet<Key>>,
}

impl Mirror {
    pub fn new(kinds: &[&str]) -> Mirror {
        Mirror {
            kinds: kinds
                .iter()
                .map(|k| Listing {
                    kind: k.to_string(),
                    ..Listing::default()
                })
                .collect(),
            current: Snapshot::default(),
            pending: Vec::new(),
            taken: None,
            handed: 0,
        }
    }

    /// Applies one event of the watcher of kind number `kind` (an index into `Mirror::new`'s kinds), which
    /// arrived at `at`.
    pub fn apply(&mut self, kind: usize, event: Event<Object>, at: SystemTime) {
        let Some(listing) = self.kinds.get_mut(kind) else {
            return;
        };
        match event {
            Event::Init => listing.relist = Some(BTreeSet::new()),
            Event::InitApply(object) => {
                let key = object.key();
                let changed = !self.current.get_shared(&key).is_some_and(|o| same_version(o, &object));
                listing.relist.get_or_insert_default().insert(key);
                // An object that differs replaces the one held at once, as a watch event would: the old version
                // goes as soon as no snapshot holds it, so a relist never holds a second copy of its kind. A list
                // says what is, not when it changed: no change time.
                if changed {
                    let version = version(&object).unwrap_or(0);
                    self.current.insert(object);
                    self.advance(version);
                }
            }
            Event::InitDone => {
                listing.listed = true;
                let seen = listing.relist.take().unwrap_or_default();
                let gone: Vec<Key> = self
                    .current
                    .of_kind(&listing.kind)
                    .map(Object::key)
                    .filter(|k| !seen.contains(k))
                    .collect();
                if gone.is_empty() {
                    return;
                }
                for key in &gone {
                    self.current.remove_shared(key);
                }
                self.advance(0);
            }
            Event::Apply(object) => {
                let key = object.key();
                if self.current.get_shared(&key).is_some_and(|o| same_version(o, &object)) {
                    return;
                }
                let version = version(&object).unwrap_or(0);
                self.current.insert(object);
                self.advance(version);
                self.pending.push(at);
            }
            Event::Delete(object) => {
                if self.current.remove_shared(&object.key()).is_some() {
                    // A deletion's event carries the revision of the deletion as its resourceVersion.
                    self.advance(version(&object).unwrap_or(0));
                    self.pending.push(at);
                }
            }
        }
    }

    /// The revision after a change: the API's resourceVersion of the change (so that it reads as the API
    /// server's revision), unless that would not tell the new contents from a snapshot already handed out (a
    /// change of one kind may arrive after a newer one of another kind, on another watch): then one more.
    fn advance(&mut self, version: u64) {
        let mut revision = version.max(self.current.revision);
        if revision <= self.handed {
            revision = self.handed + 1;
        }
        self.current.revision = revision;
        self.taken = None;
    }

    /// Whether every kind has been listed once.
    pub fn ready(&self) -> bool {
        self.kinds.iter().all(|k| k.listed)
    }

    pub fn revision(&self) -> u64 {
        self.current.revision
    }

    /// The cluster now, once every kind has been listed: objects are shared with the mirror and with every
    /// earlier snapshot that holds them unchanged.
    pub fn snapshot(&mut self) -> Option<Arc<Snapshot>> {
        if !self.ready() {
            return None;
        }
        if let Some(taken) = &self.taken {
            return Some(taken.clone());
        }
        // Even an empty cluster is newer than "nothing yet".
        self.current.revision = self.current.revision.max(1);
        self.handed = self.current.revision;
        let mut snapshot = self.current.clone();
        snapshot.changes = std::mem::take(&mut self.pending);
        let snapshot = Arc::new(snapshot);
        self.taken = Some(snapshot.clone());
        Some(snapshot)
    }
}

/// An object's resourceVersion as the revision it was written at (the API's versions are opaque strings; one
/// that is not a number counts as none).
fn version(object: &Object) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// Whether the mirror's object is already this version of it.
fn same_version(held: &Object, new: &Object) -> bool {
    held.meta().resource_version.is_some() && held.meta().resource_version == new.meta().resource_version
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, name: &str, version: u64) -> Object {
        let text = match kind {
            "Namespace" => {
                format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, resourceVersion: \"{version}\"}}\n")
            }
            _ => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: x, resourceVersion: \"{version}\"}}\nspec: {{ports: [{{port: 80}}]}}\n"
            ),
        };
        weft_model::parse(&text, "test").unwrap().remove(0)
    }

    fn list(mirror: &mut Mirror, kind: usize, objects: Vec<Object>) {
        mirror.apply(kind, Event::Init, SystemTime::now());
        for o in objects {
            mirror.apply(kind, Event::InitApply(o), SystemTime::now());
        }
        mirror.apply(kind, Event::InitDone, SystemTime::now());
    }

    fn names(snapshot: &Snapshot) -> Vec<&str> {
        snapshot.objects().map(Object::name).collect()
    }

    const NS: usize = 0;
    const SVC: usize = 1;

    #[test]
    fn no_snapshot_until_every_kind_is_listed() {
        let mut mirror = Mirror::new(&["Namespace", "Service"]);
        list(&mut mirror, NS, vec![object("Namespace", "x", 3)]);
        mirror.apply(SVC, Event::Init, SystemTime::now());
        mirror.apply(SVC, Event::InitApply(object("Service", "a", 5)), SystemTime::now());
        assert!(mirror.snapshot().is_none(), "a partial list is never planned from");
        mirror.apply(SVC, Event::InitDone, SystemTime::now());
        let first = mirror.snapshot().unwrap();
        assert_eq!(names(&first), ["x", "a"]);
        assert_eq!(first.revision, 5, "the newest resourceVersion listed");
        assert!(first.changes.is_empty(), "a list carries no change times");
        assert!(
            Arc::ptr_eq(&first, &mirror.snapshot().unwrap()),
            "nothing changed, the same snapshot"
        );
        // An empty cluster is a snapshot too, newer than "nothing yet".
        let mut empty = Mirror::new(&["Service"]);
        list(&mut empty, 0, Vec::new());
        assert_eq!(empty.snapshot().unwrap().revision, 1);
    }

    #[test]
    fn events_change_one_object_and_share_the_rest() {
        let mut mirror = Mirror::new(&["Namespace", "Service"]);
        list(&mut mirror, NS, vec![object("Namespace", "x", 1)]);
        list(
            &mut mirror,
            SVC,
            vec![object("Service", "a", 2), object("Service", "b", 3)],
        );
        let first = mirror.snapshot().unwrap();
        let at = SystemTime::now();
        mirror.apply(SVC, Event::Apply(object("Service", "b", 7)), at);
        mirror.apply(SVC, Event::Apply(object("Service", "c", 8)), at);
        // Delivered twice (a resumed watch): no change.
        mirror.apply(SVC, Event::Apply(object("Service", "c", 8)), at);
        mirror.apply(NS, Event::Delete(object("Namespace", "x", 9)), at);
        let next = mirror.snapshot().unwrap();
        assert_eq!(
            (next.revision, next.changes.len()),
            (9, 3),
            "one change time per change"
        );
        assert_eq!(names(&next), ["a", "b", "c"]);
        let a = Key::new("Service", Some("x"), "a");
        assert!(Arc::ptr_eq(first.get_shared(&a).unwrap(), next.get_shared(&a).unwrap()));
        let changed: Vec<_> = next
            .changes_since(&first, "Service")
            .map(|(old, new)| (old.map(Object::name), new.map(Object::name)))
            .collect();
        assert_eq!(changed, [(Some("b"), Some("b")), (None, Some("c"))]);
        // A change of one kind arriving after a newer one of another still makes a newer snapshot.
        mirror.apply(SVC, Event::Apply(object("Service", "d", 6)), at);
        let later = mirror.snapshot().unwrap();
        assert_eq!((later.revision, later.changes.len()), (10, 1));
        // Deleting what is not there changes nothing.
        mirror.apply(NS, Event::Delete(object("Namespace", "gone", 11)), at);
        assert_eq!(mirror.revision(), 10);
    }

    #[test]
    fn a_relist_applies_what_changed_as_it_comes_and_keeps_what_did_not() {
        let mut mirror = Mirror::new(&["Namespace", "Service"]);
        list(&mut mirror, NS, vec![object("Namespace", "x", 1)]);
        list(
            &mut mirror,
            SVC,
            vec![
                object("Service", "a", 2),
                object("Service", "b", 3),
                object("Service", "c", 4),
            ],
        );
        let first = mirror.snapshot().unwrap();
        // The watch expired (410): the watcher lists again. An object listed as it is held changes nothing; one
        // that changed replaces the held one at once (the mirror never holds two versions of it), with no change
        // time; what was not listed goes at the end.
        mirror.apply(SVC, Event::Init, SystemTime::now());
        mirror.apply(SVC, Event::InitApply(object("Service", "a", 2)), SystemTime::now());
        assert!(Arc::ptr_eq(&first, &mirror.snapshot().unwrap()));
        mirror.apply(SVC, Event::InitApply(object("Service", "c", 12)), SystemTime::now());
        let during = mirror.snapshot().unwrap();
        assert_eq!((names(&during), during.revision), (vec!["x", "a", "b", "c"], 12));
        assert!(during.changes.is_empty(), "a list carries no change times");
        let c = Key::new("Service", Some("x"), "c");
        assert_eq!(during.get(&c).unwrap().meta().resource_version.as_deref(), Some("12"));
        mirror.apply(SVC, Event::InitDone, SystemTime::now());
        let next = mirror.snapshot().unwrap();
        assert_eq!(names(&next), ["x", "a", "c"], "b went while the watch was down");
        assert_eq!(next.revision, 13);
        for name in ["a", "x"] {
            let kind = if name == "x" { "Namespace" } else { "Service" };
            let key = Key::new(kind, (kind == "Service").then_some("x"), name);
            assert!(Arc::ptr_eq(
                first.get_shared(&key).unwrap(),
                next.get_shared(&key).unwrap()
            ));
        }
        // A relist that finds what the mirror holds changes nothing, not even the revision.
        list(
            &mut mirror,
            SVC,
            vec![object("Service", "a", 2), object("Service", "c", 12)],
        );
        assert!(Arc::ptr_eq(&next, &mirror.snapshot().unwrap()));
        // One that only lost objects still makes a newer snapshot.
        list(&mut mirror, SVC, vec![object("Service", "a", 2)]);
        let last = mirror.snapshot().unwrap();
        assert_eq!((names(&last), last.revision), (vec!["x", "a"], 14));
    }
}
