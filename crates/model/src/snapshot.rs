//! A consistent view of the cluster at one revision, and the `Source` that delivers successive views to a node
//! component. The lab's control plane is one source; a Kubernetes API server (kube-rs reflectors) is another.

use crate::object::{Key, Object};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Grows with every change; equal revisions mean equal contents.
    pub revision: u64,
    /// When the API accepted each change this snapshot carries over the one its watcher delivered before
    /// (empty when not known, e.g. a watch's first snapshot): how long a change took to reach the dataplane.
    pub changes: Vec<SystemTime>,
    /// A persistent map shared between snapshots: a copy costs a pointer (the tree's root), and a change copies
    /// only the path to it, so the store can publish a snapshot per revision at 10,000s of objects.
    objects: imbl::OrdMap<Key, Version>,
}

/// A stored object as the map holds it: equal to another when it is the same version of the object (see
/// `same_version`), which is what lets `imbl`'s diff tell changes apart without reading unchanged objects.
#[derive(Clone, Debug)]
struct Version(Arc<Object>);

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        same_version(&self.0, &other.0)
    }
}

/// The disk form of a snapshot: the revision and the objects as the Kubernetes API writes them.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub revision: u64,
    pub objects: Vec<serde_json::Value>,
}

impl Snapshot {
    pub fn new(revision: u64, objects: impl IntoIterator<Item = Object>) -> Snapshot {
        let objects = objects.into_iter().map(|o| (o.key(), Version(Arc::new(o)))).collect();
        Snapshot {
            revision,
            changes: Vec::new(),
            objects,
        }
    }

    pub fn get(&self, key: &Key) -> Option<&Object> {
        self.objects.get(key).map(|o| &*o.0)
    }

    /// The shared object under `key` (a watch event carries it without copying).
    pub fn get_shared(&self, key: &Key) -> Option<&Arc<Object>> {
        self.objects.get(key).map(|o| &o.0)
    }

    /// Adds or replaces a shared object under its key, returning the one it replaced.
    pub fn insert_shared(&mut self, object: Arc<Object>) -> Option<Arc<Object>> {
        self.objects.insert(object.key(), Version(object)).map(|o| o.0)
    }

    /// Removes the object under `key`, returning it shared (no copy when something else holds it too).
    pub fn remove_shared(&mut self, key: &Key) -> Option<Arc<Object>> {
        self.objects.remove(key).map(|o| o.0)
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut Object> {
        self.objects.get_mut(key).map(|o| Arc::make_mut(&mut o.0))
    }

    /// Adds or replaces the object under its key.
    pub fn insert(&mut self, object: Object) -> Option<Object> {
        self.objects
            .insert(object.key(), Version(Arc::new(object)))
            .map(|o| Arc::unwrap_or_clone(o.0))
    }

    pub fn remove(&mut self, key: &Key) -> Option<Object> {
        self.objects.remove(key).map(|o| Arc::unwrap_or_clone(o.0))
    }

    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values().map(|o| &*o.0)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Objects of one kind, in key order.
    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.range(kind_range(kind)).map(|(_, o)| &*o.0)
    }

    /// Objects from `key` on, in key order (a prefix of names in one namespace: start at the prefix and stop at the
    /// first name without it).
    pub fn from_key<'a>(&'a self, key: &Key) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.range(key.clone()..).map(|(_, o)| &*o.0)
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.of_kind("Pod").filter_map(|o| match o {
            Object::Pod(p) => Some(&**p),
            _ => None,
        })
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.of_kind("Node").filter_map(|o| match o {
            Object::Node(n) => Some(&**n),
            _ => None,
        })
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.of_kind("Service").filter_map(|o| match o {
            Object::Service(s) => Some(&**s),
            _ => None,
        })
    }

    pub fn endpoint_slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.of_kind("EndpointSlice").filter_map(|o| match o {
            Object::EndpointSlice(s) => Some(&**s),
            _ => None,
        })
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.of_kind("Namespace").filter_map(|o| match o {
            Object::Namespace(n) => Some(&**n),
            _ => None,
        })
    }

    /// The objects of `kind` that differ from `older` to this snapshot, in key order: each as it was there and as
    /// it is here (none where absent). An object both share (the same `Arc`, as a watch delta leaves unchanged
    /// objects) is passed over without reading it, and so is every subtree of the map both share, so the cost is
    /// in what changed, not in what exists; objects decoded anew count as unchanged when both carry the same
    /// resourceVersion.
    pub fn changes_since<'a>(
        &'a self,
        older: &'a Snapshot,
        kind: &'a str,
    ) -> impl Iterator<Item = (Option<&'a Object>, Option<&'a Object>)> + 'a {
        self.all_changes_since(older)
            .filter(move |(old, new)| old.or(*new).is_some_and(|o| o.kind() == kind))
    }

    /// `changes_since` over every kind.
    pub fn all_changes_since<'a>(
        &'a self,
        older: &'a Snapshot,
    ) -> impl Iterator<Item = (Option<&'a Object>, Option<&'a Object>)> + 'a {
        older.objects.diff(&self.objects).map(|item| match item {
            imbl::ordmap::DiffItem::Add(_, new) => (None, Some(&*new.0)),
            imbl::ordmap::DiffItem::Update { old, new } => (Some(&*old.1.0), Some(&*new.1.0)),
            imbl::ordmap::DiffItem::Remove(_, old) => (Some(&*old.0), None),
        })
    }

    /// The stored form as JSON, of the objects `keep` selects, written straight from the typed objects (no
    /// intermediate JSON tree: that would cost several times the objects' size for large stores).
    pub fn to_json(&self, keep: impl Fn(&Object) -> bool) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct View<'a> {
            revision: u64,
            objects: Vec<&'a Object>,
        }
        serde_json::to_vec(&View {
            revision: self.revision,
            objects: self.objects().filter(|o| keep(o)).collect(),
        })
    }

    /// Rebuilds a snapshot; objects that no longer decode are reported, not dropped silently.
    pub fn from_stored(stored: Stored) -> Result<Snapshot, String> {
        let objects = stored
            .objects
            .into_iter()
            .map(crate::manifest::from_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot::new(stored.revision, objects))
    }
}

/// The keys of one kind: from the first possible key of `kind` up to (not including) that of `kind` followed by
/// NUL, which sorts after every key of `kind` and before any other kind's. Bounds instead of comparing each
/// key's kind on the way: at 10,000s of objects every key read is a cache miss.
fn kind_range(kind: &str) -> std::ops::Range<Key> {
    Key::new(kind, None, "")..Key::new(&format!("{kind}\0"), None, "")
}

/// Whether two objects under one key are the same version: the same `Arc`, or equal resourceVersions.
fn same_version(a: &Arc<Object>, b: &Arc<Object>) -> bool {
    Arc::ptr_eq(a, b) || (a.meta().resource_version.is_some() && a.meta().resource_version == b.meta().resource_version)
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cluster state source {what}: {msg}")]
    Unavailable { what: String, msg: String },
}

/// Delivers the cluster's state to a node component.
pub trait Source {
    /// Blocks until a snapshot newer than `after` exists and returns it (at once when `after` is older).
    fn next(&mut self, after: u64) -> Result<Arc<Snapshot>, SourceError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn kinds_are_listed_separately_and_round_trip() {
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: [{name: c}]}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
        let snap = Snapshot::new(7, parse(text, "t").unwrap());
        assert_eq!(snap.pods().count(), 1);
        assert_eq!(snap.nodes().count(), 1);
        assert_eq!(snap.namespaces().count(), 1);
        assert_eq!(snap.of_kind("Service").count(), 0);
        let stored: Stored = serde_json::from_slice(&snap.to_json(|_| true).unwrap()).unwrap();
        let back = Snapshot::from_stored(stored).unwrap();
        let nodes_only: Stored = serde_json::from_slice(&snap.to_json(|o| o.kind() == "Node").unwrap()).unwrap();
        assert_eq!(nodes_only.objects.len(), 1);
        assert_eq!(back.revision, 7);
        assert_eq!(back.len(), 3);
        assert_eq!(back.get(&Key::new("Pod", Some("x"), "a")).unwrap().name(), "a");
    }

    #[test]
    fn changes_since_reads_only_what_differs() {
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: \"y\"}\n";
        let base = Snapshot::new(3, parse(text, "t").unwrap());
        let mut next = base.clone();
        next.remove(&Key::new("Namespace", None, "y"));
        next.insert(
            parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: z}\n", "t")
                .unwrap()
                .remove(0),
        );
        let n1 = Key::new("Node", None, "n1");
        next.get_mut(&n1).unwrap().meta_mut().labels = Some([("a".to_string(), "b".to_string())].into());
        let x = Key::new("Namespace", None, "x");
        assert!(
            Arc::ptr_eq(&base.objects[&x].0, &next.objects[&x].0),
            "unchanged objects are shared"
        );
        let changed: Vec<_> = next
            .changes_since(&base, "Namespace")
            .map(|(a, b)| (a.map(Object::name), b.map(Object::name)))
            .collect();
        assert_eq!(changed, [(Some("y"), None), (None, Some("z"))]);
        let nodes: Vec<_> = next
            .changes_since(&base, "Node")
            .map(|(a, b)| (a.is_some(), b.is_some()))
            .collect();
        assert_eq!(nodes, [(true, true)], "a changed object is both");
        assert_eq!(base.changes_since(&base.clone(), "Namespace").count(), 0);
    }

    /// imbl before 7.0.2 lost the first difference after a run of shared nodes (jneem/imbl#160): a controller
    /// then never saw a new object. Every position of a map several leaves wide is checked, for a change, an
    /// addition and a removal.
    #[test]
    fn changes_since_sees_a_change_at_every_position_of_a_shared_map() {
        let namespace = |name: &str| {
            let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
            parse(&text, "t").unwrap().remove(0)
        };
        let base = Snapshot::new(1, (0..100).map(|i| namespace(&format!("n{i:03}"))));
        for i in 0..100 {
            let key = Key::new("Namespace", None, &format!("n{i:03}"));
            let mut changed = base.clone();
            changed.get_mut(&key).unwrap().meta_mut().labels = Some([("a".to_string(), "b".to_string())].into());
            let mut added = base.clone();
            added.insert(namespace(&format!("n{i:03}x")));
            let mut removed = base.clone();
            removed.remove(&key);
            for (next, what) in [(changed, "change"), (added, "addition"), (removed, "removal")] {
                assert_eq!(next.all_changes_since(&base).count(), 1, "the {what} at {i}");
            }
        }
    }
}
