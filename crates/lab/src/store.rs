//! The lab's object store: what the API server and etcd are in a cluster. One writer (the supervisor), a
//! revision that grows with every change, written to disk after each change so a restarted supervisor (or a
//! cleanup) sees the same objects.

use crate::error::{Error, Result, io};
use crate::services::ServiceNetwork;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_model::k8s_openapi;
use weft_model::snapshot::Stored;
use weft_model::{Key, Object, Snapshot};

pub struct Store {
    snap: Snapshot,
    file: PathBuf,
    /// Shared with readers until the next change.
    published: Option<Arc<Snapshot>>,
    /// Where Services get their addresses (admission).
    services: ServiceNetwork,
    /// The latest revisions and the object each changed (before and after), so that the Kubernetes API can send
    /// one watch event per revision.
    changes: VecDeque<Logged>,
}

/// One revision in the change log.
struct Logged {
    revision: u64,
    old: Option<Arc<Object>>,
    new: Option<Arc<Object>>,
}

/// How many revisions the change log remembers (a Kubernetes watch further behind gets `410 Gone` and relists).
const CHANGES_KEPT: usize = 4096;

/// What `apply` did, in kubectl's words.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Store {
    /// Opens the store at `file`, empty when the file does not exist.
    pub fn open(file: PathBuf) -> Result<Store> {
        let snap = match std::fs::read(&file) {
            Ok(bytes) => {
                let stored: Stored =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
                Snapshot::from_stored(stored).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(io(format!("reading {}", file.display()))(e)),
        };
        Ok(Store {
            snap,
            file,
            published: None,
            services: ServiceNetwork::default(),
            changes: VecDeque::new(),
        })
    }

    /// Sets the ranges Services are given addresses from (the lab's spec; defaults otherwise).
    pub fn set_service_network(&mut self, services: ServiceNetwork) {
        self.services = services;
    }

    pub fn revision(&self) -> u64 {
        self.snap.revision
    }

    /// The current state, shared.
    pub fn snapshot(&mut self) -> Arc<Snapshot> {
        self.published
            .get_or_insert_with(|| Arc::new(self.snap.clone()))
            .clone()
    }

    pub fn get(&self, key: &Key) -> Option<&Object> {
        self.snap.get(key)
    }

    pub fn view(&self) -> &Snapshot {
        &self.snap
    }

    /// Creates the object or updates what the user owns (metadata labels/annotations, spec), keeping what the
    /// system owns (uid, creation time, owner references, status, allocated addresses and ports).
    pub fn apply(&mut self, mut object: Object) -> Result<Applied> {
        let key = object.key();
        let Some(old) = self.snap.get(&key) else {
            admit(&self.snap, &self.services, None, &mut object)?;
            stamp(&mut object);
            self.commit(object);
            return Ok(Applied::Created);
        };
        if old.meta().deletion_timestamp.is_some() {
            return Err(Error::Invalid(format!(
                "{key} is being deleted; apply it again once it is gone"
            )));
        }
        let merged = self.updated(old, object)?;
        if Some(&merged) == self.snap.get(&key) {
            return Ok(Applied::Unchanged);
        }
        self.commit(merged);
        Ok(Applied::Configured)
    }

    /// Runs `f`; if it fails, the store is as it was before (a refused object in a batch applies none).
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        // The state to go back to is the one readers share (usually published already, for the watchers): a
        // pointer now, a copy only when a batch fails.
        let saved = self.snapshot();
        let out = f(self);
        if out.is_err() && self.snap.revision != saved.revision {
            self.changes.retain(|c| c.revision <= saved.revision);
            self.snap = (*saved).clone();
            self.published = Some(saved);
        }
        out
    }

    /// `new` as it would be stored over `old`: merged, admitted, its generation counted.
    pub fn updated(&self, old: &Object, new: Object) -> Result<Object> {
        let mut merged = merge(old, new);
        admit(&self.snap, &self.services, Some(old), &mut merged)?;
        let spec_changed = !same_spec(old, &merged);
        if spec_changed && let Object::Pod(pod) = &merged {
            return Err(Error::Invalid(format!(
                "Pod {}: spec is immutable once created (delete the pod and apply it again)",
                pod.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        merged.meta_mut().generation = old.meta().generation.map(|g| if spec_changed { g + 1 } else { g });
        Ok(merged)
    }

    /// Creates an object (fails if the name is taken).
    pub fn create(&mut self, object: Object) -> Result<()> {
        let object = self.admitted(object)?;
        self.commit(object);
        Ok(())
    }

    /// The object as `create` would store it (admitted and stamped, not yet given a resourceVersion).
    pub fn admitted(&self, mut object: Object) -> Result<Object> {
        admit(&self.snap, &self.services, None, &mut object)?;
        if self.snap.get(&object.key()).is_some() {
            return Err(Error::Exists(object.key()));
        }
        stamp(&mut object);
        Ok(object)
    }

    /// Stores an object already merged and admitted (by `updated`), if it changed anything.
    pub fn replace(&mut self, object: Object) {
        if self.snap.get(&object.key()) != Some(&object) {
            self.commit(object);
        }
    }

    /// Changes a stored object in place (status updates, deletion marks); no change, no new revision.
    pub fn update(&mut self, key: &Key, change: impl FnOnce(&mut Object)) -> bool {
        let Some(old) = self.snap.get(key) else { return false };
        let mut new = old.clone();
        change(&mut new);
        if &new == old {
            return false;
        }
        self.commit(new);
        true
    }

    pub fn remove(&mut self, key: &Key) -> Option<Arc<Object>> {
        let gone = self.snap.remove_shared(key)?;
        self.bump(Some(gone.clone()), None);
        Some(gone)
    }

    /// Whether the log holds every revision after `after`.
    fn remembers(&self, after: u64) -> bool {
        let oldest = self.changes.front().map_or(self.snap.revision + 1, |c| c.revision);
        oldest <= after + 1
    }

    /// Every change after revision `after`, oldest first, or None when the log no longer reaches back to it.
    pub fn changes_since(&self, after: u64) -> Option<Vec<weft_apiserver::Change>> {
        if !self.remembers(after) {
            return None;
        }
        // The log is in revision order: skip to the first one after `after`.
        let start = self.changes.partition_point(|c| c.revision <= after);
        Some(
            self.changes
                .range(start..)
                .map(|c| weft_apiserver::Change {
                    revision: c.revision,
                    old: c.old.clone(),
                    new: c.new.clone(),
                })
                .collect(),
        )
    }

    fn commit(&mut self, mut object: Object) {
        object.meta_mut().resource_version = Some((self.snap.revision + 1).to_string());
        let new = Arc::new(object);
        let old = self.snap.insert_shared(new.clone());
        self.bump(old, Some(new));
    }

    fn bump(&mut self, old: Option<Arc<Object>>, new: Option<Arc<Object>>) {
        self.snap.revision += 1;
        self.published = None;
        if self.changes.len() == CHANGES_KEPT {
            self.changes.pop_front();
        }
        self.changes.push_back(Logged {
            revision: self.snap.revision,
            old,
            new,
        });
    }

    /// Writes the store to disk (atomically: a reader never sees half a file).
    pub fn save(&self) -> Result<()> {
        save(&self.file, &self.snap)
    }

    /// What [`save`] needs, so that the writing can happen without holding the store: serialising thousands of
    /// objects takes milliseconds every API write would otherwise wait for.
    pub fn to_save(&mut self) -> (PathBuf, Arc<Snapshot>) {
        (self.file.clone(), self.snapshot())
    }
}

fn stamp(object: &mut Object) {
    let meta = object.meta_mut();
    meta.uid = Some(new_uid());
    meta.creation_timestamp = Some(now());
    meta.generation = Some(1);
}

/// Writes `snap` to `file` (atomically: a reader never sees half a file). One writer at a time: the temporary
/// file is shared.
pub fn save(file: &Path, snap: &Snapshot) -> Result<()> {
    let bytes = snap.to_json(|_| true).map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, file).map_err(io(format!("writing {}", file.display())))
}

/// What the API server adds on the way in: a namespace is labelled with its own name; a Service gets its
/// defaults and allocations (`services`), or is refused.
fn admit(snap: &Snapshot, services: &ServiceNetwork, old: Option<&Object>, object: &mut Object) -> Result<()> {
    match object {
        Object::Namespace(ns) => {
            let name = ns.metadata.name.clone().unwrap_or_default();
            ns.metadata
                .labels
                .get_or_insert_default()
                .insert("kubernetes.io/metadata.name".into(), name);
        }
        Object::Service(svc) => {
            let old = old.and_then(crate::services::as_service);
            crate::services::admit(snap, services, old, svc)?;
        }
        _ => {}
    }
    Ok(())
}

/// The stored object with the user's new intent applied.
fn merge(old: &Object, new: Object) -> Object {
    let mut merged = new;
    // The scheduler's binding is part of the stored spec but not of what users write.
    if let (Object::Pod(old), Object::Pod(new)) = (old, &mut merged)
        && let (Some(old_spec), Some(new_spec)) = (&old.spec, &mut new.spec)
        && new_spec.node_name.is_none()
    {
        new_spec.node_name = old_spec.node_name.clone();
    }
    let (o, m) = (old.meta(), merged.meta_mut());
    m.uid = o.uid.clone();
    m.creation_timestamp = o.creation_timestamp.clone();
    m.resource_version = o.resource_version.clone();
    if m.owner_references.is_none() {
        m.owner_references = o.owner_references.clone();
    }
    match (old, &mut merged) {
        (Object::Pod(old), Object::Pod(new)) => new.status = old.status.clone(),
        (Object::Deployment(old), Object::Deployment(new)) => new.status = old.status.clone(),
        (Object::Node(old), Object::Node(new)) => new.status = old.status.clone(),
        (Object::Namespace(old), Object::Namespace(new)) => new.status = old.status.clone(),
        // A Service's status is rebuilt by admission.
        _ => {}
    }
    merged
}

fn same_spec(a: &Object, b: &Object) -> bool {
    let spec = |o: &Object| o.to_value().get("spec").cloned();
    spec(a) == spec(b)
}

pub fn now() -> Time {
    // jiff is built without its clock here: take the time from std.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

pub use weft_apiserver::names::{fill_random, new_uid};

/// A metadata block with a name, namespace and labels (for objects controllers make).
pub fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Object {
        weft_model::parse(text, "t").unwrap().remove(0)
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, labels: {a: b}}\nspec: {containers: [{name: c}]}\n";

    #[test]
    fn apply_creates_then_configures_then_is_unchanged() {
        let dir = std::env::temp_dir().join(format!("weft-store-{}", new_uid()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(dir.join("o.json")).unwrap();
        assert_eq!(store.apply(object(POD)).unwrap(), Applied::Created);
        let uid = store.view().pods().next().unwrap().metadata.uid.clone();
        assert!(uid.is_some());
        assert_eq!(store.apply(object(POD)).unwrap(), Applied::Unchanged);
        let relabelled = POD.replace("{a: b}", "{a: c}");
        assert_eq!(store.apply(object(&relabelled)).unwrap(), Applied::Configured);
        assert_eq!(store.view().pods().next().unwrap().metadata.uid, uid);
        let respecced = POD.replace("name: c}", "name: d}");
        assert!(
            store
                .apply(object(&respecced))
                .unwrap_err()
                .to_string()
                .contains("immutable")
        );
        store.save().unwrap();
        let again = Store::open(dir.join("o.json")).unwrap();
        assert_eq!(again.revision(), store.revision());
        assert_eq!(again.view().pods().next().unwrap().metadata.uid, uid);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_change_log_covers_every_revision_or_says_none() {
        let dir = std::env::temp_dir().join(format!("weft-store-{}", new_uid()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(dir.join("o.json")).unwrap();
        store.apply(object(POD)).unwrap();
        store
            .apply(object("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"))
            .unwrap();
        let pod = Key::new("Pod", Some("default"), "p");
        // A refused batch takes its changes back with it.
        let refused = store.transaction(|s| {
            s.remove(&pod);
            Err::<(), _>(Error::Invalid("refused".into()))
        });
        assert!(refused.is_err());
        store.remove(&pod);
        let upto = store.revision();
        let log = store.changes_since(0).unwrap();
        let revisions: Vec<u64> = log.iter().map(|c| c.revision).collect();
        assert_eq!(revisions, [1, 2, 3]);
        assert!(
            log[2].old.is_some() && log[2].new.is_none(),
            "a removal is the object before, none after"
        );
        assert_eq!(store.changes_since(2).unwrap().len(), 1);
        assert!(store.changes_since(upto).unwrap().is_empty());
        // A store opened from disk has no log: a watch from before it must relist.
        store.save().unwrap();
        let again = Store::open(dir.join("o.json")).unwrap();
        assert!(again.changes_since(1).is_none());
        assert!(again.changes_since(upto).unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
