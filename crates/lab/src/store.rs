//! The lab's object store: what the API server and etcd are in a cluster. One writer (the supervisor), a
//! revision that grows with every change. Reads are served from memory; every change is committed to disk
//! (`disk`, one record per object) before the write that made it returns, so a restarted supervisor has every
//! acknowledged write, at the same revisions, with the change log.
//!
//! Writers change `snap` in memory; readers (`snapshot`, `changes_since`) see only what is on disk. A commit
//! (`begin_commit` … `end_commit`) writes every change since the last one in one durable transaction, outside
//! the caller's lock, so the writes that arrive during one fsync share the next (group commit).

use crate::disk::Disk;

use crate::error::{Error, Result, io};
use crate::services::ServiceNetwork;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_model::k8s_openapi;
use weft_model::snapshot::Stored;
use weft_model::{Key, Object, Snapshot};

pub struct Store {
    /// The latest state, with the changes not on disk yet: what writers see.
    snap: Snapshot,
    disk: Arc<Disk>,
    /// The state on disk, shared with readers.
    published: Arc<Snapshot>,
    /// Where Services get their addresses (admission).
    services: ServiceNetwork,
    /// What the stored Services hold (admission looks requests up here).
    held: crate::services::Allocations,
    /// The latest revisions: the object each changed (before and after) and when, so a watch can send only what
    /// changed, say how old those changes are, and the Kubernetes API can send one event per revision.
    changes: VecDeque<Logged>,
    /// The objects changed since the last commit to disk (repeats included), in order.
    pending: Vec<Key>,
    /// In a `batch` or `transaction`: changes are committed when it ends, not one by one.
    batching: bool,
    /// A commit is being written (by the holder of the `Commit`).
    committing: bool,
    /// The revision on disk when each epoch ended with a failed commit: the epoch (this one's length) a change
    /// was made in tells whether it reached the disk.
    epoch_ends: Vec<u64>,
}

/// One commit in progress: the state to write and the keys that changed since the last.
pub struct Commit {
    disk: Arc<Disk>,
    snap: Arc<Snapshot>,
    keys: Vec<Key>,
}

impl Commit {
    /// Writes the commit in one durable transaction; the store's lock need not be held.
    pub fn write(&self) -> Result<()> {
        let keys: BTreeSet<&Key> = self.keys.iter().collect();
        self.disk.commit(&self.snap, keys.into_iter())
    }
}

/// One revision in the change log: the object before and after it.
struct Logged {
    revision: u64,
    old: Option<Arc<Object>>,
    new: Option<Arc<Object>>,
}

/// How many revisions the change log remembers (a Kubernetes watch further behind gets `410 Expired` and relists).
const CHANGES_KEPT: usize = 4096;

/// What `apply` did, in kubectl's words.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Store {
    /// Opens the store in `file` (a redb file), empty when there is none. A store saved whole as JSON by an
    /// older supervisor (`file` with the extension `json`) is moved into it once.
    pub fn open(file: PathBuf) -> Result<Store> {
        let legacy = file.with_extension("json");
        let migrate = !file.exists() && legacy.exists();
        let disk = Arc::new(Disk::open(&file)?);
        let loaded = disk.load()?;
        let mut store = Store {
            published: Arc::new(loaded.snap.clone()),
            snap: loaded.snap,
            disk,
            services: ServiceNetwork::default(),
            held: crate::services::Allocations::default(),
            changes: VecDeque::new(),
            pending: Vec::new(),
            batching: false,
            committing: false,
            epoch_ends: Vec::new(),
        };
        if migrate {
            store.snap = read_json(&legacy)?;
            store.pending = store.snap.objects().map(Object::key).collect();
            store.flush()?;
            std::fs::remove_file(&legacy).map_err(io(format!("removing {}", legacy.display())))?;
        }
        store.held = crate::services::Allocations::of(&store.snap);
        Ok(store)
    }

    /// Sets the ranges Services are given addresses from (the lab's spec; defaults otherwise).
    pub fn set_service_network(&mut self, services: ServiceNetwork) {
        self.services = services;
    }

    /// The latest revision, on disk or not.
    pub fn revision(&self) -> u64 {
        self.snap.revision
    }

    /// The revision on disk: what readers see.
    pub fn durable(&self) -> u64 {
        self.published.revision
    }

    /// Counts failed commits (see `saved`).
    pub fn epoch(&self) -> usize {
        self.epoch_ends.len()
    }

    /// Whether revision `revision`, made in `epoch`, is on disk: Some(true) when it is, Some(false) when a
    /// failed commit lost it, None while it is on its way.
    pub fn saved(&self, revision: u64, epoch: usize) -> Option<bool> {
        match self.epoch_ends.get(epoch) {
            Some(&end) => Some(revision <= end),
            None => (revision <= self.published.revision).then_some(true),
        }
    }

    /// The state on disk, shared.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.clone()
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
            admit(&self.held, &self.services, None, &mut object)?;
            stamp(&mut object);
            self.commit(object);
            self.autocommit()?;
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
        self.autocommit()?;
        Ok(Applied::Configured)
    }

    /// Runs `f`; if it fails, the store is as it was before (a refused object in a batch applies none) and
    /// nothing of it reaches the disk.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        // The state to go back to: a copy of the persistent map's root.
        let saved = self.snap.clone();
        let pending = self.pending.len();
        let batching = std::mem::replace(&mut self.batching, true);
        let out = f(self);
        self.batching = batching;
        if out.is_err() && self.snap.revision != saved.revision {
            self.changes.retain(|c| c.revision <= saved.revision);
            self.pending.truncate(pending);
            self.snap = saved;
            self.held = crate::services::Allocations::of(&self.snap);
        }
        let out = out?;
        self.autocommit()?;
        Ok(out)
    }

    /// Runs `f` without committing its changes one by one: the caller commits them at once (one commit for a
    /// controller's whole reconcile instead of one per object) with `begin_commit` … `end_commit`.
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Store) -> T) -> T {
        // Not nested (the supervisor's `Shared::write` holds the only handle): set, not saved and restored, so a
        // writer that panicked leaves its changes to the next batch's commit.
        self.batching = true;
        let out = f(self);
        self.batching = false;
        out
    }

    /// Starts a commit of every change not on disk yet: None when there is none or another commit is being
    /// written. The caller writes it (`Commit::write`, without the store's lock) and hands the outcome to
    /// `end_commit`.
    pub fn begin_commit(&mut self) -> Option<Commit> {
        if self.committing || self.pending.is_empty() {
            return None;
        }
        self.committing = true;
        Some(Commit {
            disk: self.disk.clone(),
            snap: Arc::new(self.snap.clone()),
            keys: std::mem::take(&mut self.pending),
        })
    }

    /// Ends a commit: once it is on disk, readers see its state. When it failed, the store goes back to what is
    /// on disk, changes made meanwhile included (their writers learn it from the epoch).
    pub fn end_commit(&mut self, commit: Commit, written: Result<()>) -> Result<()> {
        self.committing = false;
        match written {
            Ok(()) => {
                self.published = commit.snap;
                Ok(())
            }
            Err(e) => {
                self.epoch_ends.push(self.published.revision);
                self.reload();
                Err(e)
            }
        }
    }

    /// `new` as it would be stored over `old`: merged, admitted, its generation counted.
    pub fn updated(&self, old: &Object, new: Object) -> Result<Object> {
        let mut merged = merge(old, new);
        weft_model::validate_update(old, &merged).map_err(Error::Invalid)?;
        admit(&self.held, &self.services, Some(old), &mut merged)?;
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
        self.autocommit()
    }

    /// The object as `create` would store it (admitted and stamped, not yet given a resourceVersion).
    pub fn admitted(&self, mut object: Object) -> Result<Object> {
        admit(&self.held, &self.services, None, &mut object)?;
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
        self.autocommit_logged();
        true
    }

    pub fn remove(&mut self, key: &Key) -> Option<Arc<Object>> {
        let gone = self.snap.remove_shared(key)?;
        self.held.change(Some(&gone), None);
        self.bump(key.clone(), Some(gone.clone()), None);
        self.autocommit_logged();
        Some(gone)
    }

    /// Whether the log holds every revision after `after`.
    fn remembers(&self, after: u64) -> bool {
        let oldest = self.changes.front().map_or(self.snap.revision + 1, |c| c.revision);
        oldest <= after + 1
    }

    /// Every change on disk after revision `after`, oldest first, or None when the log no longer reaches back to it (it
    /// holds only this supervisor's revisions: a watcher from before relists).
    pub fn changes_since(&self, after: u64) -> Option<Vec<weft_apiserver::Change>> {
        if !self.remembers(after) {
            return None;
        }
        // The log is in revision order: skip to the first one after `after`.
        let start = self.changes.partition_point(|c| c.revision <= after);
        Some(
            self.changes
                .range(start..)
                .take_while(|c| c.revision <= self.published.revision)
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
        let key = object.key();
        let new = Arc::new(object);
        let old = self.snap.insert_shared(new.clone());
        self.held.change(old.as_deref(), Some(&new));
        self.bump(key, old, Some(new));
    }

    fn bump(&mut self, key: Key, old: Option<Arc<Object>>, new: Option<Arc<Object>>) {
        self.snap.revision += 1;
        if self.changes.len() == CHANGES_KEPT {
            self.changes.pop_front();
        }
        self.pending.push(key);
        self.changes.push_back(Logged {
            revision: self.snap.revision,
            old,
            new,
        });
    }

    /// Commits a change made outside any batch or transaction at once.
    fn autocommit(&mut self) -> Result<()> {
        if self.batching { Ok(()) } else { self.flush() }
    }

    /// `autocommit` for the changes whose callers take no errors (they see the store as it is on disk after a
    /// failed commit).
    fn autocommit_logged(&mut self) {
        if let Err(e) = self.autocommit() {
            eprintln!("weft lab: {e}");
        }
    }

    /// Commits the pending changes now, in one durable transaction (a store used without the supervisor's
    /// group commit); when that fails, goes back to what is on disk.
    fn flush(&mut self) -> Result<()> {
        match self.begin_commit() {
            Some(commit) => {
                let written = commit.write();
                self.end_commit(commit, written)
            }
            None => Ok(()),
        }
    }

    /// Back to the store on disk: nobody saw the changes that did not get there, the revisions they took are
    /// handed out again.
    fn reload(&mut self) {
        match self.disk.load() {
            Ok(loaded) => {
                self.snap = loaded.snap;
                self.held = crate::services::Allocations::of(&self.snap);
                self.changes.clear();
                self.pending.clear();
                self.published = Arc::new(self.snap.clone());
            }
            Err(e) => eprintln!("weft lab: the store in memory is ahead of the disk: {e}"),
        }
    }
}

fn stamp(object: &mut Object) {
    let meta = object.meta_mut();
    meta.uid = Some(new_uid());
    meta.creation_timestamp = Some(now());
    meta.generation = Some(1);
}

/// A store saved whole as JSON (by supervisors before the redb file).
fn read_json(file: &Path) -> Result<Snapshot> {
    let bytes = std::fs::read(file).map_err(io(format!("reading {}", file.display())))?;
    let stored: Stored =
        serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
    Snapshot::from_stored(stored).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))
}

/// What the API server adds on the way in: a namespace is labelled with its own name; a Service gets its
/// defaults and allocations (`services`), or is refused.
fn admit(
    held: &crate::services::Allocations,
    services: &ServiceNetwork,
    old: Option<&Object>,
    object: &mut Object,
) -> Result<()> {
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
            crate::services::admit(held, services, old, svc)?;
        }
        // A new pod's status is the API server's, as kube-apiserver's PrepareForCreate sets it: Pending with its
        // QoS class (`kubectl get -w` shows Pending from the first event).
        Object::Pod(pod) if old.is_none() => {
            let qos = qos_class(pod.spec.as_ref());
            pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".into()),
                qos_class: Some(qos.into()),
                ..Default::default()
            });
        }
        _ => {}
    }
    Ok(())
}

/// A pod's QoS class: Guaranteed when every container limits CPU and memory and requests what it limits (or
/// nothing, quantities compared as written), BestEffort when none requests or limits either, else Burstable.
fn qos_class(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> &'static str {
    let containers: Vec<_> = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .collect();
    let amount = |list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
                  name: &str| list.and_then(|l| l.get(name)).map(|q| q.0.clone());
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let resources = c.resources.as_ref();
        let (limits, requests) = (
            resources.and_then(|r| r.limits.as_ref()),
            resources.and_then(|r| r.requests.as_ref()),
        );
        for name in ["cpu", "memory"] {
            let (limit, request) = (amount(limits, name), amount(requests, name));
            any |= limit.is_some() || request.is_some();
            guaranteed &= limit.is_some() && (request.is_none() || request == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
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
        (Object::ReplicaSet(old), Object::ReplicaSet(new)) => new.status = old.status.clone(),
        (Object::DaemonSet(old), Object::DaemonSet(new)) => new.status = old.status.clone(),
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
    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";

    /// A state dir of its own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let dir = std::env::temp_dir().join(format!("weft-store-{}", new_uid()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("objects.redb")
        }

        fn open(&self) -> Store {
            Store::open(self.file()).unwrap()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn apply_creates_then_configures_then_is_unchanged() {
        let dir = Dir::new();
        let mut store = dir.open();
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
    }

    #[test]
    fn a_new_pod_is_pending_with_its_qos_class() {
        let dir = Dir::new();
        let mut store = dir.open();
        let status = |store: &Store, name: &str| {
            let pod = store
                .view()
                .pods()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .cloned();
            let status = pod.and_then(|p| p.status).unwrap_or_default();
            (status.phase.unwrap_or_default(), status.qos_class.unwrap_or_default())
        };
        let pod = |name: &str, resources: &str| {
            object(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n\
                 spec: {{containers: [{{name: c, image: i, resources: {resources}}}]}}\n"
            ))
        };
        store.apply(pod("none", "{}")).unwrap();
        store.apply(pod("some", "{requests: {cpu: 100m}}")).unwrap();
        let all = "{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1, memory: 1Gi}}";
        store.apply(pod("all", all)).unwrap();
        store.apply(pod("limits", "{limits: {cpu: 1, memory: 1Gi}}")).unwrap();
        for (name, qos) in [
            ("none", "BestEffort"),
            ("some", "Burstable"),
            ("all", "Guaranteed"),
            ("limits", "Guaranteed"),
        ] {
            assert_eq!(status(&store, name), ("Pending".to_string(), qos.to_string()), "{name}");
        }
    }

    #[test]
    fn the_change_log_is_one_entry_per_revision_or_says_none() {
        let dir = Dir::new();
        let mut store = dir.open();
        store.apply(object(POD)).unwrap();
        store.apply(object(NS)).unwrap();
        let pod = Key::new("Pod", Some("default"), "p");
        store.remove(&pod);
        let kinds = |after: u64, store: &Store| -> Vec<(u64, bool, bool)> {
            let changes = store.changes_since(after).unwrap();
            changes
                .iter()
                .map(|c| (c.revision, c.old.is_some(), c.new.is_some()))
                .collect()
        };
        assert_eq!(kinds(0, &store), [(1, false, true), (2, false, true), (3, true, false)]);
        assert_eq!(kinds(2, &store), [(3, true, false)]);
        assert!(kinds(3, &store).is_empty());
        // A refused batch takes its revisions back with it.
        let refused = store.transaction(|s| {
            s.remove(&Key::new("Namespace", None, "x"));
            Err::<(), _>(Error::Invalid("refused".into()))
        });
        assert!(refused.is_err());
        assert!(kinds(3, &store).is_empty());
        // Once the log has forgotten a revision, a watcher from before it relists.
        store.batch(|s| {
            for i in 0..CHANGES_KEPT {
                s.update(&Key::new("Namespace", None, "x"), |o| {
                    o.meta_mut()
                        .labels
                        .get_or_insert_default()
                        .insert("i".into(), i.to_string());
                });
            }
        });
        store.flush().unwrap();
        assert!(store.changes_since(1).is_none());
        assert!(store.changes_since(store.revision() - 1).is_some());
    }

    #[test]
    fn a_reopened_store_has_every_object_the_revision_and_the_change_log() {
        let dir = Dir::new();
        let mut store = dir.open();
        store.apply(object(POD)).unwrap();
        let pod = Key::new("Pod", Some("default"), "p");
        let ns = Key::new("Namespace", None, "x");
        // A batch is one commit, and what it did is all there after it.
        store.batch(|s| {
            s.create(object(NS)).unwrap();
            s.update(&pod, |o| o.meta_mut().finalizers = Some(vec!["f".into()]));
        });
        store.flush().unwrap();
        store.apply(object(&POD.replace("name: p,", "name: q,"))).unwrap();
        store.remove(&Key::new("Pod", Some("default"), "q"));
        let (revision, snap) = (store.revision(), store.snapshot());
        drop(store);
        let again = dir.open();
        assert_eq!(again.revision(), revision);
        assert_eq!(again.view().len(), 2);
        assert_eq!(again.get(&pod), snap.get(&pod));
        assert_eq!(again.get(&ns), snap.get(&ns));
        assert_eq!(again.get(&pod).unwrap().meta().resource_version.as_deref(), Some("3"));
        // The log holds this supervisor's revisions only: a watcher from before relists.
        assert!(again.changes_since(1).is_none());
        assert!(again.changes_since(revision).unwrap().is_empty());
    }

    #[test]
    fn readers_see_a_change_once_its_commit_is_on_disk_and_a_failed_commit_loses_what_came_after() {
        let dir = Dir::new();
        let mut store = dir.open();
        store.apply(object(NS)).unwrap();
        let pod = Key::new("Pod", Some("default"), "p");
        store.batch(|s| s.apply(object(POD)).unwrap());
        let (revision, epoch) = (store.revision(), store.epoch());
        assert_eq!((store.durable(), store.saved(revision, epoch)), (1, None));
        assert!(store.snapshot().get(&pod).is_none() && store.get(&pod).is_some());
        let commit = store.begin_commit().unwrap();
        assert!(store.begin_commit().is_none(), "one commit at a time");
        // A change made while the commit is written waits for the next one.
        store.batch(|s| s.update(&pod, |o| o.meta_mut().finalizers = Some(vec!["f".into()])));
        let written = commit.write();
        store.end_commit(commit, written).unwrap();
        assert_eq!((store.durable(), store.saved(revision, epoch)), (2, Some(true)));
        assert_eq!(
            store.changes_since(1).unwrap().len(),
            1,
            "the change not on disk is not told"
        );
        assert!(store.saved(3, epoch).is_none());
        // A commit that fails loses its changes and the ones made meanwhile; the revisions are handed out again.
        let commit = store.begin_commit().unwrap();
        store.batch(|s| s.remove(&Key::new("Namespace", None, "x")));
        let failed = store.end_commit(commit, Err(Error::Invalid("disk full".into())));
        assert!(failed.is_err());
        assert_eq!(
            (store.saved(3, epoch), store.saved(4, epoch)),
            (Some(false), Some(false))
        );
        assert_eq!((store.revision(), store.durable(), store.epoch()), (2, 2, epoch + 1));
        assert!(store.get(&Key::new("Namespace", None, "x")).is_some());
        assert_eq!(store.get(&pod).unwrap().meta().finalizers, None);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_nothing_on_disk() {
        let dir = Dir::new();
        let mut store = dir.open();
        store.apply(object(NS)).unwrap();
        let refused = store.batch(|s| {
            s.transaction(|s| {
                s.apply(object(POD))?;
                s.remove(&Key::new("Namespace", None, "x"));
                Err::<(), _>(Error::Invalid("refused".into()))
            })
        });
        assert!(refused.is_err());
        store.flush().unwrap();
        // Outside any batch: a transaction alone, refused by its second object.
        let refused = store.transaction(|s| {
            s.apply(object(POD))?;
            s.create(object(NS))
        });
        assert!(refused.unwrap_err().to_string().contains("already exists"));
        drop(store);
        let again = dir.open();
        assert_eq!(again.revision(), 1);
        assert_eq!(again.view().len(), 1);
        assert!(again.get(&Key::new("Namespace", None, "x")).is_some());
    }

    #[test]
    fn a_store_saved_as_json_is_moved_in_once() {
        let dir = Dir::new();
        let pod = object(POD);
        let snap = Snapshot::new(7, [pod.clone()]);
        let legacy = dir.0.join("objects.json");
        std::fs::write(&legacy, snap.to_json(|_| true).unwrap()).unwrap();
        let mut store = dir.open();
        assert_eq!(store.revision(), 7);
        assert_eq!(store.get(&pod.key()), Some(&pod));
        assert!(!legacy.exists());
        store.apply(object(NS)).unwrap();
        drop(store);
        let again = dir.open();
        assert_eq!(again.revision(), 8);
        assert_eq!(again.view().len(), 2);
        assert!(again.changes_since(7).is_none(), "the log starts with this supervisor");
    }

    #[test]
    fn an_ingress_class_keeps_its_controller() {
        let dir = Dir::new();
        let mut store = dir.open();
        let class = |controller: &str, labels: &str| {
            object(&format!(
                "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: weft, labels: {{{labels}}}}}\nspec: {{controller: {controller}}}\n"
            ))
        };
        store.apply(class("weft.dev/ingress", "")).unwrap();
        assert_eq!(
            store.apply(class("weft.dev/ingress", "a: b")).unwrap(),
            Applied::Configured
        );
        let Err(Error::Invalid(msg)) = store.apply(class("nginx.org/ingress", "")) else {
            panic!("a new controller was accepted");
        };
        assert_eq!(
            msg,
            "field spec.controller: Invalid value: \"nginx.org/ingress\": field is immutable"
        );
        let stored = store.get(&Key::new("IngressClass", None, "weft")).unwrap().to_value();
        assert_eq!(stored["spec"]["controller"], "weft.dev/ingress");
    }
}
