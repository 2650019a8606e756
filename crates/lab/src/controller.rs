//! The lab's controllers, as one pure reconcile step (snapshot in, changes out) plus the few deletions the API
//! itself performs: namespace lifecycle, Deployment → ReplicaSets (`deployment`) → Pods (`replicaset`),
//! DaemonSets (`daemonset`), garbage collection of objects whose owners are gone, scheduling pods to nodes,
//! Services → Endpoints and EndpointSlices (`endpoints`), and expiring old Events (`events`).

use crate::events::{Note, reference};
use crate::store::{Store, now};
use k8s_openapi::api::apps::v1::{DaemonSetStatus, DeploymentStatus, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, HashMap, HashSet};
use weft_model::k8s_openapi;
use weft_model::{Key, Object, Snapshot};

/// The label a Deployment's ReplicaSets and pods carry, naming their template's version.
pub const TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Debug, PartialEq)]
pub enum Change {
    /// Create an object; one without a name gets its `generateName` plus a random suffix. The note, if any,
    /// is recorded with the name appended to its message ("Created pod: ").
    Create(Box<Object>, Option<Box<Note>>),
    /// Ask for a graceful deletion (pods; the node's runtime removes them once stopped).
    MarkDeleted(Key),
    Remove(Key),
    /// Create or replace a controller's object (its content; the stored identity is kept).
    Put(Box<Object>),
    /// Replace a workload's status.
    Status(Key, Box<Status>),
    /// Set a ReplicaSet's `spec.replicas` and merge `annotations` into it.
    Scale {
        key: Key,
        replicas: i32,
        annotations: BTreeMap<String, String>,
    },
    /// Merge annotations into an object.
    Annotate(Key, BTreeMap<String, String>),
    Bind(Key, String),
    Event(Box<Note>),
    /// Create the `default` ServiceAccount of a namespace.
    DefaultServiceAccount(String),
}

/// The status a controller writes.
#[derive(Debug, PartialEq)]
pub enum Status {
    /// Conditions without times: `apply` stamps them (kept while a condition stays the same).
    Deployment(DeploymentStatus),
    ReplicaSet(ReplicaSetStatus),
    DaemonSet(DaemonSetStatus),
    /// A pod no node fits, and the scheduler's message why.
    Unschedulable(String),
}

/// Deletion as the API performs it: pods and namespaces are marked and finished asynchronously, anything else
/// is removed (what it owns follows through garbage collection).
pub fn delete(store: &mut Store, key: &Key) {
    match key.kind.as_str() {
        "Pod" => mark_deleted(store, key),
        "Namespace" => {
            store.update(key, |o| {
                o.meta_mut().deletion_timestamp.get_or_insert_with(now);
                if let Object::Namespace(ns) = o {
                    ns.status.get_or_insert_default().phase = Some("Terminating".into());
                }
            });
        }
        _ => {
            store.remove(key);
        }
    }
}

/// `propagationPolicy: Orphan`, before deleting `key`: what its object owns stops naming it as an owner, so
/// garbage collection leaves it (an orphaned ReplicaSet keeps its pods).
pub fn orphan_dependents(store: &mut Store, key: &Key) {
    let Some(uid) = store.get(key).and_then(|o| o.meta().uid.clone()) else {
        return;
    };
    let names_it = |o: &Object| o.meta().owner_references.iter().flatten().any(|r| r.uid == uid);
    let dependents: Vec<Key> = store
        .view()
        .objects()
        .filter(|o| names_it(o))
        .map(Object::key)
        .collect();
    for dependent in dependents {
        store.update(&dependent, |o| {
            let meta = o.meta_mut();
            let refs = meta.owner_references.take().unwrap_or_default();
            let kept: Vec<OwnerReference> = refs.into_iter().filter(|r| r.uid != uid).collect();
            meta.owner_references = (!kept.is_empty()).then_some(kept);
        });
    }
}

/// Marks a pod for deletion; one never bound to a node has nothing to stop and goes at once.
fn mark_deleted(store: &mut Store, key: &Key) {
    let bound = matches!(store.get(key), Some(Object::Pod(p)) if node_of(p).is_some());
    if bound {
        store.update(key, |o| {
            o.meta_mut().deletion_timestamp.get_or_insert_with(now);
        });
    } else {
        store.remove(key);
    }
}

/// Everything the controllers want changed in `snap`.
pub fn reconcile(before: &Snapshot, snap: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();
    namespaces(snap, &mut changes);
    service_accounts(snap, &mut changes);
    root_ca(snap, &mut changes);
    let terminating: HashSet<&str> = snap
        .namespaces()
        .filter(|n| n.metadata.deletion_timestamp.is_some())
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let live = |o: &Object| !terminating.contains(o.namespace().unwrap_or_default());
    let mut pods_by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in snap.pods() {
        if let Some(uid) = owner_uid(&pod.metadata) {
            pods_by_owner.entry(uid).or_default().push(pod);
        }
    }
    let mut sets_by_owner: HashMap<&str, Vec<&ReplicaSet>> = HashMap::new();
    for object in snap.of_kind("ReplicaSet") {
        let Object::ReplicaSet(rs) = object else { continue };
        if let Some(uid) = owner_uid(&rs.metadata) {
            sets_by_owner.entry(uid).or_default().push(rs);
        }
        if live(object) {
            crate::replicaset::reconcile(rs, owned(&pods_by_owner, &rs.metadata), &mut changes);
        }
    }
    for object in snap.of_kind("Deployment") {
        let Object::Deployment(d) = object else { continue };
        if live(object) {
            crate::deployment::reconcile(d, owned(&sets_by_owner, &d.metadata), &pods_by_owner, &mut changes);
        }
    }
    let nodes: Vec<_> = snap.nodes().collect();
    for object in snap.of_kind("DaemonSet") {
        let Object::DaemonSet(ds) = object else { continue };
        if live(object) {
            crate::daemonset::reconcile(ds, owned(&pods_by_owner, &ds.metadata), &nodes, &mut changes);
        }
    }
    collect_garbage(before, snap, &mut changes);
    schedule(snap, &mut changes);
    crate::endpoints::reconcile(snap, &crate::endpoints::Scope::between(before, snap), &mut changes);
    // Which Events expire changes only with the Events (the newest stands for "now"): not looked at otherwise,
    // as a `lab up` writes hundreds of revisions with as many Events.
    if snap.changes_since(before, "Event").next().is_some() {
        changes.extend(crate::events::expired(snap).into_iter().map(Change::Remove));
    }
    changes
}

/// What `meta`'s object controls, from an index by controller uid.
fn owned<'a, T>(index: &'a HashMap<&str, Vec<&'a T>>, meta: &ObjectMeta) -> &'a [&'a T] {
    meta.uid
        .as_deref()
        .and_then(|uid| index.get(uid))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The garbage collector's background deletion: an object all of whose owners are gone goes too (pods
/// gracefully). Owners are looked up by kind, name and uid, so an owner deleted and made again does not adopt the
/// old dependents. Only what can have become an orphan since `before` is looked at: objects written since, and,
/// when something went away, every object with owners.
fn collect_garbage(before: &Snapshot, snap: &Snapshot, changes: &mut Vec<Change>) {
    let has_owners = |o: &&Object| o.meta().owner_references.as_ref().is_some_and(|r| !r.is_empty());
    let written: Vec<&Object> = snap.all_changes_since(before).filter_map(|(_, new)| new).collect();
    let removed = snap
        .all_changes_since(before)
        .any(|(old, new)| old.is_some() && new.is_none_or(|n| n.meta().uid != old.and_then(|o| o.meta().uid.clone())));
    let candidates: Vec<&Object> = match before.is_empty() || removed {
        true => snap.objects().filter(has_owners).collect(),
        false => written.into_iter().filter(has_owners).collect(),
    };
    for object in candidates {
        let meta = object.meta();
        let orphan = meta
            .owner_references
            .iter()
            .flatten()
            .all(|owner| !owner_exists(snap, object, owner));
        if !orphan || meta.deletion_timestamp.is_some() {
            continue;
        }
        changes.push(match object {
            Object::Pod(_) => Change::MarkDeleted(object.key()),
            _ => Change::Remove(object.key()),
        });
    }
}

/// Whether `owner` of `dependent` is stored: in the dependent's namespace, or cluster-scoped, with its uid.
fn owner_exists(snap: &Snapshot, dependent: &Object, owner: &OwnerReference) -> bool {
    [dependent.namespace(), None].into_iter().any(|ns| {
        snap.get(&Key::new(&owner.kind, ns, &owner.name))
            .is_some_and(|o| o.meta().uid.as_deref() == Some(owner.uid.as_str()))
    })
}

/// A terminating namespace deletes what it holds and goes once empty.
fn namespaces(snap: &Snapshot, changes: &mut Vec<Change>) {
    for ns in snap.namespaces().filter(|n| n.metadata.deletion_timestamp.is_some()) {
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let inside: Vec<&Object> = snap.objects().filter(|o| o.namespace() == Some(name)).collect();
        if inside.is_empty() {
            changes.push(Change::Remove(Key::new("Namespace", None, name)));
        }
        for object in inside {
            match object {
                Object::Pod(p) if p.metadata.deletion_timestamp.is_some() => {}
                Object::Pod(_) => changes.push(Change::MarkDeleted(object.key())),
                _ => changes.push(Change::Remove(object.key())),
            }
        }
    }
}

/// The ServiceAccount controller: every namespace that is not terminating has a `default` ServiceAccount.
fn service_accounts(snap: &Snapshot, changes: &mut Vec<Change>) {
    for ns in snap.namespaces().filter(|n| n.metadata.deletion_timestamp.is_none()) {
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        if snap.get(&Key::new("ServiceAccount", Some(name), "default")).is_none() {
            changes.push(Change::DefaultServiceAccount(name.to_string()));
        }
    }
}

/// The ConfigMap holding the cluster's CA in every namespace, for in-cluster clients (`kube-root-ca.crt`).
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// The root CA publisher: every namespace that is not terminating has a copy of kube-system's `kube-root-ca.crt`
/// (which the supervisor writes from the lab's CA).
fn root_ca(snap: &Snapshot, changes: &mut Vec<Change>) {
    let Some(source) = snap.get(&Key::new("ConfigMap", Some("kube-system"), ROOT_CA)) else {
        return;
    };
    let data = source.to_value().get("data").cloned().unwrap_or_default();
    for ns in snap.namespaces().filter(|n| n.metadata.deletion_timestamp.is_none()) {
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let copy = snap.get(&Key::new("ConfigMap", Some(name), ROOT_CA));
        if copy.is_some_and(|c| c.to_value().get("data") == Some(&data)) {
            continue;
        }
        let value = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ROOT_CA, "namespace": name},
            "data": data,
        });
        if let Ok(object) = weft_model::manifest::from_value(value) {
            changes.push(Change::Put(Box::new(object)));
        }
    }
}

/// The owner reference a controller puts on what it makes.
pub fn controller_ref(kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod of `template`, named `generate_name` plus a suffix, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    generate_name: &str,
    ns: Option<&str>,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.into()),
            namespace: ns.map(str::to_string),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Binds unscheduled pods to the nodes they fit (nodeSelector, taints: see `daemonset::misfit`): pods of one
/// owner spread over the nodes, then the least loaded node wins. A pod no node fits stays Pending with the
/// scheduler's condition and a FailedScheduling Event saying why (once per reason).
fn schedule(snap: &Snapshot, changes: &mut Vec<Change>) {
    let all: Vec<&k8s_openapi::api::core::v1::Node> = snap.nodes().collect();
    if all.is_empty() {
        return;
    }
    let mut load: HashMap<&str, usize> = HashMap::new();
    let mut by_owner: HashMap<(&str, &str), usize> = HashMap::new();
    for pod in snap.pods() {
        if let Some(node) = node_of(pod) {
            *load.entry(node).or_default() += 1;
            if let Some(owner) = owner_uid(&pod.metadata) {
                *by_owner.entry((owner, node)).or_default() += 1;
            }
        }
    }
    for pod in snap
        .pods()
        .filter(|p| node_of(p).is_none() && p.metadata.deletion_timestamp.is_none())
    {
        let owner = owner_uid(&pod.metadata).unwrap_or_default();
        let mut misfits: BTreeMap<String, usize> = BTreeMap::new();
        let mut nodes: Vec<&str> = Vec::new();
        for node in &all {
            match crate::daemonset::misfit(pod.spec.as_ref(), node) {
                Some(why) => *misfits.entry(why).or_default() += 1,
                None => nodes.extend(node.metadata.name.as_deref()),
            }
        }
        if nodes.is_empty() {
            unschedulable(pod, all.len(), &misfits, changes);
            continue;
        }
        let Some(node) = nodes.iter().copied().min_by_key(|n| {
            (
                by_owner.get(&(owner, *n)).copied().unwrap_or(0),
                load.get(n).copied().unwrap_or(0),
                *n,
            )
        }) else {
            continue;
        };
        *load.entry(node).or_default() += 1;
        *by_owner.entry((owner, node)).or_default() += 1;
        changes.push(Change::Bind(pod_key(pod), node.to_string()));
        let message = format!(
            "Successfully assigned {}/{} to {node}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let note = Note::normal(
            reference("v1", "Pod", &pod.metadata),
            "Scheduled",
            message,
            "default-scheduler",
        );
        changes.push(Change::Event(Box::new(note)));
    }
}

/// Records why no node fits `pod`, unless its condition already says so.
fn unschedulable(pod: &Pod, nodes: usize, misfits: &BTreeMap<String, usize>, changes: &mut Vec<Change>) {
    let reasons: Vec<String> = misfits.iter().map(|(why, n)| format!("{n} node(s) {why}")).collect();
    let message = format!("0/{nodes} nodes are available: {}.", reasons.join(", "));
    let said = (pod.status.as_ref().and_then(|s| s.conditions.as_ref()))
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| c.message.as_deref() == Some(message.as_str()));
    if said {
        return;
    }
    let note = Note::warning(
        reference("v1", "Pod", &pod.metadata),
        "FailedScheduling",
        message.clone(),
        "default-scheduler",
    );
    changes.push(Change::Status(pod_key(pod), Box::new(Status::Unschedulable(message))));
    changes.push(Change::Event(Box::new(note)));
}

/// Carries out `changes` on the store.
pub fn apply(store: &mut Store, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::Create(object, note) => create(store, *object, note.map(|n| *n)),
            Change::MarkDeleted(key) => mark_deleted(store, &key),
            Change::Remove(key) => {
                store.remove(&key);
            }
            Change::Put(object) => put(store, *object),
            Change::Status(key, status) => {
                store.update(&key, |o| set_status(o, *status));
            }
            Change::Scale {
                key,
                replicas,
                annotations,
            } => {
                store.update(&key, |o| {
                    let mut resized = false;
                    if let Object::ReplicaSet(rs) = o {
                        let spec = rs.spec.get_or_insert_default();
                        resized = spec.replicas != Some(replicas);
                        spec.replicas = Some(replicas);
                    }
                    let meta = o.meta_mut();
                    meta.annotations.get_or_insert_default().extend(annotations);
                    // A spec change, as through the API: the ReplicaSet's status then observes it.
                    if resized {
                        meta.generation = meta.generation.map(|g| g + 1);
                    }
                });
            }
            Change::Annotate(key, annotations) => {
                store.update(&key, |o| {
                    o.meta_mut().annotations.get_or_insert_default().extend(annotations)
                });
            }
            Change::DefaultServiceAccount(ns) => {
                let sa = serde_json::json!({
                    "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns},
                });
                let created = weft_model::manifest::from_value(sa)
                    .map_err(crate::Error::Invalid)
                    .and_then(|o| store.create(o));
                if let Err(e) = created {
                    eprintln!("weft lab: the default ServiceAccount of {ns}: {e}");
                }
            }
            Change::Bind(key, node) => {
                store.update(&key, |o| {
                    if let Object::Pod(p) = o {
                        p.spec.get_or_insert_default().node_name = Some(node);
                    }
                });
            }
            Change::Event(note) => crate::events::record(store, *note),
        }
    }
}

fn set_status(object: &mut Object, status: Status) {
    match (object, status) {
        (Object::Deployment(d), Status::Deployment(mut new)) => {
            // A condition keeps its transition time while its status holds, its update time while it says
            // the same.
            let at = now();
            let old = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            for c in new.conditions.iter_mut().flatten() {
                let before = old.iter().find(|o| o.type_ == c.type_);
                let same_status = before.is_some_and(|o| o.status == c.status);
                let same_words = same_status && before.is_some_and(|o| o.reason == c.reason && o.message == c.message);
                c.last_transition_time = Some(match before {
                    Some(o) if same_status => o.last_transition_time.clone().unwrap_or_else(|| at.clone()),
                    _ => at.clone(),
                });
                c.last_update_time = Some(match before {
                    Some(o) if same_words => o.last_update_time.clone().unwrap_or_else(|| at.clone()),
                    _ => at.clone(),
                });
            }
            d.status = Some(new);
        }
        (Object::ReplicaSet(rs), Status::ReplicaSet(new)) => rs.status = Some(new),
        (Object::DaemonSet(ds), Status::DaemonSet(new)) => ds.status = Some(new),
        (Object::Pod(pod), Status::Unschedulable(message)) => {
            let status = pod.status.get_or_insert_default();
            status.phase = Some("Pending".into());
            status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message),
                last_transition_time: Some(now()),
                ..Default::default()
            }]);
        }
        _ => {}
    }
}

fn put(store: &mut Store, object: Object) {
    let key = object.key();
    if store.get(&key).is_none() {
        if let Err(e) = store.create(object) {
            eprintln!("weft lab: creating {key}: {e}");
        }
        return;
    }
    store.update(&key, |stored| {
        let old = stored.meta().clone();
        *stored = object;
        let meta = stored.meta_mut();
        meta.uid = old.uid;
        meta.creation_timestamp = old.creation_timestamp;
        meta.resource_version = old.resource_version;
        meta.generation = old.generation.map(|g| g + 1);
    });
}

/// Creates `object`, naming it from `generateName` if it has no name; records `note` with the name.
fn create(store: &mut Store, mut object: Object, note: Option<Note>) {
    let key = object.key();
    let prefix = object.meta_mut().generate_name.take();
    let created = match prefix {
        None if object.meta().name.is_some() => store.create(object).ok().map(|()| key.name),
        _ => {
            let prefix = prefix.unwrap_or_default();
            // The API server's suffix alphabet: no vowels (no words), no look-alike characters.
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            (0..8).find_map(|_| {
                let mut bytes = [0u8; 5];
                crate::store::fill_random(&mut bytes);
                let suffix: String = bytes
                    .iter()
                    .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
                    .collect();
                let name = format!("{prefix}{suffix}");
                object.meta_mut().name = Some(name.clone());
                store.create(object.clone()).ok().map(|()| name)
            })
        }
    };
    if let (Some(name), Some(mut note)) = (created, note) {
        note.message.push_str(&name);
        crate::events::record(store, note);
    }
}

/// A stable short hash of a pod template, so pods of an unchanged template are recognised as current.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let text = template_value(template).to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// A template as Kubernetes compares them: empty lists and objects (`resources: {}`, which `kubectl rollout
/// undo` writes back) are the same as absent ones, as Go's empty structs and slices are.
pub fn template_value(template: &PodTemplateSpec) -> serde_json::Value {
    fn prune(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !prune(v));
                map.is_empty()
            }
            serde_json::Value::Array(list) => {
                list.iter_mut().for_each(|v| {
                    prune(v);
                });
                list.is_empty()
            }
            serde_json::Value::Null => true,
            _ => false,
        }
    }
    let mut value = serde_json::to_value(template).unwrap_or_default();
    prune(&mut value);
    value
}

pub fn owner_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s: &PodSpec| s.node_name.as_deref())
}

pub fn pod_key(pod: &Pod) -> Key {
    Key::new(
        "Pod",
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Succeeded or Failed: the pod runs no more.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Counted by its controller: neither being deleted nor finished.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use std::sync::Arc;
    use weft_model::object::labels;
    use weft_model::parse;

    fn store_with(text: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("weft-ctl-{}", crate::store::new_uid()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(dir.join("o.json")).unwrap();
        for o in parse(text, "t").unwrap() {
            store.apply(o).unwrap();
        }
        (store, dir)
    }

    /// Reconciles until nothing changes, each step looking at what changed since the one before (the first at
    /// everything), as the supervisor's loop does.
    fn settle(store: &mut Store) {
        let mut before = Arc::new(Snapshot::default());
        for _ in 0..20 {
            let snap = store.snapshot();
            let changes = reconcile(&before, &snap);
            before = snap;
            if changes.is_empty() {
                return;
            }
            apply(store, changes);
        }
        panic!("controllers did not settle");
    }

    const LAB: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-1}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
---
apiVersion: v1
kind: Node
metadata: {name: node-3}
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c}]}
";

    fn pods_by_node(store: &mut Store) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in store
            .snapshot()
            .pods()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            *m.entry(node_of(p).unwrap_or("-").to_string()).or_default() += 1;
        }
        m
    }

    #[test]
    fn deployment_pods_spread_over_nodes_and_come_back() {
        let (mut store, dir) = store_with(LAB);
        settle(&mut store);
        assert_eq!(
            pods_by_node(&mut store).values().copied().collect::<Vec<_>>(),
            [1, 1, 1]
        );
        let snap = store.snapshot();
        let pod = snap.pods().next().unwrap();
        assert!(pod.metadata.name.as_deref().unwrap().starts_with("web-"));
        assert_eq!(weft_model::object::labels(&pod.metadata)["app"], "web");
        // Deleting a pod: it is marked, and a replacement is made at once.
        delete(&mut store, &pod_key(pod));
        settle(&mut store);
        assert_eq!(pods_by_node(&mut store).values().sum::<usize>(), 3);
        // Scaling down marks the surplus.
        let scaled = LAB.replace("replicas: 3", "replicas: 1");
        for o in parse(&scaled, "t").unwrap() {
            store.apply(o).unwrap();
        }
        settle(&mut store);
        assert_eq!(pods_by_node(&mut store).values().sum::<usize>(), 1);
        let d = Key::new("Deployment", Some("default"), "web");
        let Some(Object::Deployment(dep)) = store.get(&d) else {
            panic!()
        };
        assert_eq!(dep.status.as_ref().unwrap().replicas, Some(1));
        // Deleting the Deployment takes its pods.
        delete(&mut store, &d);
        settle(&mut store);
        assert_eq!(pods_by_node(&mut store).values().sum::<usize>(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// What the kubelets would do: bound pods become Ready with an address, deleted ones go.
    fn kubelets(store: &mut Store) -> bool {
        let snap = store.snapshot();
        let mut acted = false;
        for (i, pod) in snap.pods().enumerate() {
            if node_of(pod).is_none() {
                continue;
            }
            let key = pod_key(pod);
            if pod.metadata.deletion_timestamp.is_some() {
                store.remove(&key);
                acted = true;
            } else if !is_ready(pod) {
                store.update(&key, |o| {
                    if let Object::Pod(p) = o {
                        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                            phase: Some("Running".into()),
                            pod_ip: Some(format!("10.244.9.{}", i + 2)),
                            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                                type_: "Ready".into(),
                                status: "True".into(),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        });
                    }
                });
                acted = true;
            }
        }
        acted
    }

    /// Controllers and kubelets until nothing moves; `check` sees the store after every controller step.
    fn run_cluster(store: &mut Store, mut check: impl FnMut(&Snapshot)) {
        let mut before = Arc::new(Snapshot::default());
        for _ in 0..200 {
            let snap = store.snapshot();
            let changes = reconcile(&before, &snap);
            before = snap;
            let moved = !changes.is_empty();
            apply(store, changes);
            check(&store.snapshot());
            if !kubelets(store) && !moved {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    fn apply_text(store: &mut Store, text: &str) {
        for o in parse(text, "t").unwrap() {
            store.apply(o).unwrap();
        }
    }

    fn replica_sets(snap: &Snapshot) -> Vec<ReplicaSet> {
        snap.of_kind("ReplicaSet")
            .filter_map(|o| match o {
                Object::ReplicaSet(rs) => Some((**rs).clone()),
                _ => None,
            })
            .collect()
    }

    fn deployment_status(snap: &Snapshot) -> DeploymentStatus {
        match snap.get(&Key::new("Deployment", Some("default"), "web")) {
            Some(Object::Deployment(d)) => d.status.clone().unwrap(),
            _ => panic!("no deployment"),
        }
    }

    fn event_reasons(snap: &Snapshot) -> HashSet<String> {
        snap.of_kind("Event")
            .filter_map(|o| match o {
                Object::Event(e) => e.reason.clone(),
                _ => None,
            })
            .collect()
    }

    fn active_pods(snap: &Snapshot) -> Vec<&Pod> {
        snap.pods().filter(|p| is_active(p)).collect()
    }

    const ROLLING: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-1}
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: v1}]}
";

    #[test]
    fn a_rolling_update_stays_within_surge_and_unavailability_and_can_be_undone() {
        let (mut store, dir) = store_with(ROLLING);
        run_cluster(&mut store, |_| {});
        let snap = store.snapshot();
        let first = replica_sets(&snap);
        assert_eq!(first.len(), 1);
        let rs = &first[0];
        let hash = &labels(&rs.metadata)[TEMPLATE_HASH];
        assert_eq!(rs.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
        assert_eq!(
            rs.metadata.annotations.as_ref().unwrap()[crate::deployment::REVISION],
            "1"
        );
        assert_eq!(
            rs.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()[TEMPLATE_HASH],
            *hash
        );
        assert_eq!(owner_uid(&rs.metadata), deployment_uid(&snap).as_deref());
        for pod in active_pods(&snap) {
            assert!(
                pod.metadata
                    .name
                    .as_deref()
                    .unwrap()
                    .starts_with(&format!("web-{hash}-"))
            );
            assert_eq!(owner_uid(&pod.metadata), rs.metadata.uid.as_deref());
        }
        let status = deployment_status(&snap);
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.available_replicas,
                status.unavailable_replicas
            ),
            (Some(4), Some(4), Some(4), Some(0))
        );
        let reasons: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.reason.clone().unwrap()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("Available", "MinimumReplicasAvailable".into()),
                ("Progressing", "NewReplicaSetAvailable".into())
            ]
        );
        assert!(
            status
                .conditions
                .iter()
                .flatten()
                .all(|c| c.last_transition_time.is_some())
        );
        // A new image: at most 4 + 1 (25% surge) pods, at least 4 - 1 (25% unavailable) ready, at every step.
        apply_text(&mut store, &ROLLING.replace("image: v1", "image: v2"));
        let mut mixed = false;
        run_cluster(&mut store, |snap| {
            let active = active_pods(snap);
            assert!(active.len() <= 5, "{} pods", active.len());
            assert!(active.iter().filter(|p| is_ready(p)).count() >= 3);
            let hashes: HashSet<&str> = active
                .iter()
                .map(|p| labels(&p.metadata)[TEMPLATE_HASH].as_str())
                .collect();
            mixed |= hashes.len() == 2;
        });
        assert!(mixed, "old and new pods ran side by side");
        let snap = store.snapshot();
        let sets = replica_sets(&snap);
        assert_eq!(sets.len(), 2);
        let revisions: BTreeMap<i64, i32> = sets
            .iter()
            .map(|rs| {
                (
                    crate::deployment::revision_of(&rs.metadata),
                    rs.spec.as_ref().unwrap().replicas.unwrap(),
                )
            })
            .collect();
        assert_eq!(revisions, BTreeMap::from([(1, 0), (2, 4)]));
        assert_eq!(crate::deployment::revision_of(&deployment_meta(&snap)), 2);
        assert_eq!(deployment_status(&snap).updated_replicas, Some(4));
        let scaled_up = format!("Scaled up replica set web-{hash} to 4");
        assert!(
            snap.of_kind("Event")
                .any(|o| matches!(o, Object::Event(e) if e.message.as_deref() == Some(scaled_up.as_str()))),
            "{scaled_up}"
        );
        let reasons = event_reasons(&snap);
        for r in ["ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete", "Scheduled"] {
            assert!(reasons.contains(r), "{r} in {reasons:?}");
        }
        // `rollout undo`: the template back as it was (with the empty `resources` kubectl writes); the old
        // ReplicaSet returns as revision 3.
        apply_text(&mut store, &ROLLING.replace("image: v1}", "image: v1, resources: {}}"));
        run_cluster(&mut store, |_| {});
        let snap = store.snapshot();
        let back = replica_sets(&snap)
            .into_iter()
            .find(|rs| rs.metadata.uid == first[0].metadata.uid)
            .unwrap();
        assert_eq!(crate::deployment::revision_of(&back.metadata), 3);
        assert_eq!(back.spec.unwrap().replicas, Some(4));
        // Deleting the Deployment takes its ReplicaSets and their pods.
        delete(&mut store, &Key::new("Deployment", Some("default"), "web"));
        run_cluster(&mut store, |_| {});
        let snap = store.snapshot();
        assert!(replica_sets(&snap).is_empty());
        assert_eq!(snap.pods().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn deployment_meta(snap: &Snapshot) -> ObjectMeta {
        snap.get(&Key::new("Deployment", Some("default"), "web"))
            .unwrap()
            .meta()
            .clone()
    }

    fn deployment_uid(snap: &Snapshot) -> Option<String> {
        deployment_meta(snap).uid
    }

    #[test]
    fn recreate_stops_old_pods_first_and_history_is_pruned() {
        let text = ROLLING.replace(
            "  replicas: 4\n",
            "  replicas: 2\n  revisionHistoryLimit: 1\n  strategy: {type: Recreate}\n",
        );
        let (mut store, dir) = store_with(&text);
        run_cluster(&mut store, |_| {});
        for image in ["v2", "v3"] {
            apply_text(&mut store, &text.replace("image: v1", &format!("image: {image}")));
            run_cluster(&mut store, |snap| {
                // Never pods of two templates at once.
                let hashes: HashSet<&str> = snap
                    .pods()
                    .map(|p| labels(&p.metadata)[TEMPLATE_HASH].as_str())
                    .collect();
                assert!(hashes.len() <= 1, "{hashes:?}");
            });
        }
        let snap = store.snapshot();
        // Revision 3 runs; of the old ones at zero, one (the newest) is kept.
        let mut revisions: Vec<i64> = replica_sets(&snap)
            .iter()
            .map(|rs| crate::deployment::revision_of(&rs.metadata))
            .collect();
        revisions.sort();
        assert_eq!(revisions, [2, 3]);
        assert_eq!(active_pods(&snap).len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pods_go_only_to_nodes_they_fit_and_say_why_none_does() {
        let text = "
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {taints: [{key: node.kubernetes.io/not-ready, effect: NoSchedule}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {disk: hdd}}
spec: {taints: [{key: node.kubernetes.io/not-ready, effect: NoSchedule}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: default}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant, namespace: default}
spec:
  nodeSelector: {disk: hdd}
  tolerations: [{key: node.kubernetes.io/not-ready, operator: Exists}]
  containers: [{name: c}]
";
        let (mut store, dir) = store_with(text);
        settle(&mut store);
        let snap = store.snapshot();
        let pod = |name: &str| {
            snap.pods()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .unwrap()
                .clone()
        };
        assert_eq!(node_of(&pod("tolerant")), Some("node-2"));
        let plain = pod("plain");
        assert_eq!(node_of(&plain), None);
        let scheduled = &plain.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
        assert_eq!(scheduled.reason.as_deref(), Some("Unschedulable"));
        assert_eq!(
            scheduled.message.as_deref(),
            Some("0/2 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.")
        );
        assert!(event_reasons(&snap).contains("FailedScheduling"));
        // Once a node is Ready the pod goes there.
        crate::kubelet::node_status::set(&mut store, "node-1", true);
        settle(&mut store);
        let snap = store.snapshot();
        let plain = snap
            .pods()
            .find(|p| p.metadata.name.as_deref() == Some("plain"))
            .unwrap();
        assert_eq!(node_of(plain), Some("node-1"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_daemon_set_runs_one_pod_per_fitting_node_and_rolls_one_at_a_time() {
        let text = "
apiVersion: v1
kind: Node
metadata: {name: node-1}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {unschedulable: true}
---
apiVersion: v1
kind: Node
metadata: {name: node-3}
spec: {taints: [{key: dedicated, value: db, effect: NoSchedule}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: v1}]}
";
        let (mut store, dir) = store_with(text);
        run_cluster(&mut store, |_| {});
        let snap = store.snapshot();
        let mut nodes: Vec<&str> = active_pods(&snap).iter().filter_map(|p| node_of(p)).collect();
        nodes.sort();
        // The unschedulable node is tolerated; the tainted one is not.
        assert_eq!(nodes, ["node-1", "node-2"]);
        let pod = active_pods(&snap)[0];
        assert!(pod.metadata.name.as_deref().unwrap().starts_with("agent-"));
        let Some(Object::DaemonSet(ds)) = snap.get(&Key::new("DaemonSet", Some("default"), "agent")) else {
            panic!()
        };
        let status = ds.status.clone().unwrap();
        assert_eq!(
            (
                status.desired_number_scheduled,
                status.current_number_scheduled,
                status.number_ready,
                status.updated_number_scheduled
            ),
            (2, 2, 2, Some(2))
        );
        // A new template: one node at a time is without a ready pod.
        apply_text(&mut store, &text.replace("image: v1", "image: v2"));
        run_cluster(&mut store, |snap| {
            let ready = active_pods(snap).iter().filter(|p| is_ready(p)).count();
            assert!(ready >= 1, "{ready} ready");
        });
        let snap = store.snapshot();
        let images: Vec<_> = active_pods(&snap)
            .iter()
            .map(|p| p.spec.as_ref().unwrap().containers[0].image.clone().unwrap())
            .collect();
        assert_eq!(images, ["v2", "v2"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_orphaned_replica_set_keeps_its_pods() {
        let (mut store, dir) = store_with(ROLLING);
        run_cluster(&mut store, |_| {});
        let key = Key::new("Deployment", Some("default"), "web");
        orphan_dependents(&mut store, &key);
        delete(&mut store, &key);
        run_cluster(&mut store, |_| {});
        let snap = store.snapshot();
        let sets = replica_sets(&snap);
        assert_eq!(sets.len(), 1);
        assert!(sets[0].metadata.owner_references.is_none());
        assert_eq!(active_pods(&snap).len(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn objects_whose_owners_are_gone_are_collected() {
        let text = "
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: stray, namespace: default, ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: gone, uid: no-such-uid, controller: true}]}
spec:
  replicas: 1
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c}]}
";
        let (mut store, dir) = store_with(text);
        run_cluster(&mut store, |_| {});
        let snap = store.snapshot();
        assert!(replica_sets(&snap).is_empty());
        assert_eq!(snap.pods().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_owner_deleted_after_a_reconcile_takes_its_dependents_in_the_next() {
        let (mut store, dir) = store_with(ROLLING);
        run_cluster(&mut store, |_| {});
        let before = store.snapshot();
        assert_eq!(replica_sets(&before).len(), 1);
        delete(&mut store, &Key::new("Deployment", Some("default"), "web"));
        let changes = reconcile(&before, &store.snapshot());
        let set = replica_sets(&before)[0].metadata.name.clone().unwrap();
        let removed = Key::new("ReplicaSet", Some("default"), &set);
        assert!(
            changes.iter().any(|c| matches!(c, Change::Remove(k) if *k == removed)),
            "{changes:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    const WEB_SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n";

    fn slices(store: &mut Store) -> Vec<EndpointSlice> {
        store.snapshot().endpoint_slices().cloned().collect()
    }

    #[test]
    fn services_get_slices_that_follow_their_pods() {
        let (mut store, dir) = store_with(&format!("{LAB}---\n{WEB_SVC}"));
        settle(&mut store);
        // Pods without addresses yet: the placeholder slice.
        let placeholder = slices(&mut store);
        assert_eq!(placeholder.len(), 1);
        assert!(placeholder[0].endpoints.is_empty());
        // The kubelets report addresses and readiness.
        let pods: Vec<Key> = store.snapshot().pods().map(pod_key).collect();
        for (i, key) in pods.iter().enumerate() {
            store.update(key, |o| {
                if let Object::Pod(p) = o {
                    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                        pod_ip: Some(format!("10.244.{}.2", i + 1)),
                        conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                            type_: "Ready".into(),
                            status: "True".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    });
                }
            });
        }
        settle(&mut store);
        let got = slices(&mut store);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].endpoints.len(), 3);
        assert_eq!(got[0].ports.as_ref().unwrap()[0].port, Some(8080));
        let uid = got[0].metadata.uid.clone();
        // Re-applying the Service changes nothing; deleting a pod makes its endpoint terminating.
        for o in parse(WEB_SVC, "t").unwrap() {
            assert_eq!(store.apply(o).unwrap(), crate::store::Applied::Unchanged);
        }
        delete(&mut store, &pods[0]);
        settle(&mut store);
        let got = slices(&mut store);
        assert_eq!(got[0].metadata.uid, uid, "the slice is updated in place");
        let terminating: Vec<bool> = got[0]
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().terminating.unwrap())
            .collect();
        assert_eq!(terminating, [true, false, false]);
        assert_eq!(got[0].endpoints[0].conditions.as_ref().unwrap().ready, Some(false));
        // The Service gone: its slices go.
        delete(&mut store, &Key::new("Service", Some("default"), "web"));
        settle(&mut store);
        assert!(slices(&mut store).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refused_service_undoes_the_whole_batch() {
        let (mut store, dir) = store_with(WEB_SVC);
        let before = store.revision();
        let batch = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: default}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n";
        let err = store
            .transaction(|store| {
                for o in parse(batch, "t").unwrap() {
                    store.apply(o)?;
                }
                Ok(())
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("Service/default/b: field spec.clusterIP"), "{err}");
        assert_eq!(store.revision(), before);
        assert!(store.get(&Key::new("Service", Some("default"), "a")).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_terminating_namespace_empties_then_goes() {
        let (mut store, dir) = store_with(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec: {containers: [{name: c}]}\n",
        );
        delete(&mut store, &Key::new("Namespace", None, "x"));
        settle(&mut store);
        // The pod was never bound to a node, so nothing had to stop: both are gone.
        assert!(store.get(&Key::new("Namespace", None, "x")).is_none());
        assert_eq!(store.snapshot().pods().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
