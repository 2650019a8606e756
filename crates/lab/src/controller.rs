//! The lab's controllers, as one pure reconcile step (snapshot in, changes out) plus the few deletions the API
//! itself performs: namespace lifecycle, Deployment → Pods (no ReplicaSet in between), garbage collection of
//! orphaned pods, scheduling pods to nodes, and Services → EndpointSlices (`endpoints`).

use crate::store::{Store, now};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, HashMap, HashSet};
use weft_model::k8s_openapi;
use weft_model::{Key, Object, Snapshot};

/// The label a Deployment's pods carry, naming their template's version.
pub const TEMPLATE_HASH: &str = "pod-template-hash";

/// Kinds something in the lab acts on (others are stored with a warning).
pub fn acts_on(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace" | "Node" | "Pod" | "Deployment" | "Service" | "Endpoints" | "EndpointSlice" | "NetworkPolicy"
    )
}

#[derive(Debug, PartialEq)]
pub enum Change {
    /// Create a pod whose name is `generateName` plus a random suffix.
    CreatePod(Box<Pod>),
    /// Ask for a graceful deletion (pods; the node's runtime removes them once stopped).
    MarkDeleted(Key),
    Remove(Key),
    DeploymentStatus(Key, DeploymentStatus),
    Bind(Key, String),
    /// Create or replace an EndpointSlice (the controller's own fields; the stored identity is kept).
    PutSlice(Box<EndpointSlice>),
    /// Create the `default` ServiceAccount of a namespace.
    DefaultServiceAccount(String),
}

/// Deletion as the API performs it: pods and namespaces are marked and finished asynchronously, a Deployment
/// goes at once and takes its pods with it, anything else is removed.
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
        "Deployment" => {
            let uid = store.get(key).and_then(|o| o.meta().uid.clone());
            let owned: Vec<Key> = store
                .view()
                .pods()
                .filter(|p| uid.is_some() && owner_uid(&p.metadata) == uid.as_deref())
                .map(pod_key)
                .collect();
            store.remove(key);
            for pod in owned {
                mark_deleted(store, &pod);
            }
        }
        _ => {
            store.remove(key);
        }
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

/// Everything the controllers want changed in `snap`. `nodes` are the schedulable node names.
pub fn reconcile(snap: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();
    namespaces(snap, &mut changes);
    service_accounts(snap, &mut changes);
    let terminating: HashSet<&str> = snap
        .namespaces()
        .filter(|n| n.metadata.deletion_timestamp.is_some())
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let mut owners = HashSet::new();
    for object in snap.of_kind("Deployment") {
        let Object::Deployment(d) = object else { continue };
        if let Some(uid) = d.metadata.uid.as_deref() {
            owners.insert(uid);
        }
        if !terminating.contains(object.namespace().unwrap_or_default()) {
            deployment(snap, d, &mut changes);
        }
    }
    for pod in snap.pods() {
        let orphan = owner_uid(&pod.metadata).is_some_and(|uid| !owners.contains(uid));
        if orphan && pod.metadata.deletion_timestamp.is_none() {
            changes.push(Change::MarkDeleted(pod_key(pod)));
        }
    }
    schedule(snap, &mut changes);
    crate::endpoints::reconcile(snap, &mut changes);
    changes
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

fn deployment(snap: &Snapshot, d: &Deployment, changes: &mut Vec<Change>) {
    let Some(spec) = &d.spec else { return };
    let uid = d.metadata.uid.as_deref();
    let name = d.metadata.name.clone().unwrap_or_default();
    let ns = d.metadata.namespace.clone();
    let hash = template_hash(&spec.template);
    let owned: Vec<&Pod> = snap
        .pods()
        .filter(|p| uid.is_some() && owner_uid(&p.metadata) == uid)
        .collect();
    let active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let (current, old): (Vec<&Pod>, Vec<&Pod>) = active
        .iter()
        .partition(|p| weft_model::object::labels(&p.metadata).get(TEMPLATE_HASH) == Some(&hash));
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    for _ in current.len()..want {
        changes.push(Change::CreatePod(Box::new(pod_from_template(
            d,
            &name,
            ns.as_deref(),
            &hash,
        ))));
    }
    // Surplus pods: the unscheduled and the youngest go first, as the ReplicaSet controller prefers.
    let mut surplus = current.clone();
    surplus.sort_by_key(|p| {
        (
            node_of(p).is_some(),
            std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
        )
    });
    for pod in surplus.iter().take(current.len().saturating_sub(want)) {
        changes.push(Change::MarkDeleted(pod_key(pod)));
    }
    for pod in old {
        changes.push(Change::MarkDeleted(pod_key(pod)));
    }
    let ready = current.iter().filter(|p| is_ready(p)).count() as i32;
    let status = DeploymentStatus {
        replicas: Some(active.len() as i32),
        updated_replicas: Some(current.len().min(want) as i32),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        observed_generation: d.metadata.generation,
        ..Default::default()
    };
    if d.status.as_ref() != Some(&status) {
        changes.push(Change::DeploymentStatus(
            Key::new("Deployment", ns.as_deref(), &name),
            status,
        ));
    }
}

fn pod_from_template(d: &Deployment, name: &str, ns: Option<&str>, hash: &str) -> Pod {
    let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(TEMPLATE_HASH.into(), hash.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-{hash}-")),
            namespace: ns.map(str::to_string),
            labels: Some(labels),
            annotations: template.metadata.as_ref().and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: name.into(),
                uid: d.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Binds unscheduled pods: a Deployment's pods spread over the nodes, then the least loaded node wins.
fn schedule(snap: &Snapshot, changes: &mut Vec<Change>) {
    let nodes: Vec<&str> = snap.nodes().filter_map(|n| n.metadata.name.as_deref()).collect();
    if nodes.is_empty() {
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
    }
}

/// Carries out `changes` on the store.
pub fn apply(store: &mut Store, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::CreatePod(pod) => create_pod(store, *pod),
            Change::MarkDeleted(key) => mark_deleted(store, &key),
            Change::Remove(key) => {
                store.remove(&key);
            }
            Change::DeploymentStatus(key, status) => {
                store.update(&key, |o| {
                    if let Object::Deployment(d) = o {
                        d.status = Some(status);
                    }
                });
            }
            Change::PutSlice(slice) => put_slice(store, *slice),
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
        }
    }
}

fn put_slice(store: &mut Store, slice: EndpointSlice) {
    let object = Object::EndpointSlice(Box::new(slice));
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

fn create_pod(store: &mut Store, mut pod: Pod) {
    let prefix = pod.metadata.generate_name.take().unwrap_or_default();
    // The API server's suffix alphabet: no vowels (no words), no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    for _ in 0..8 {
        let mut bytes = [0u8; 5];
        crate::store::fill_random(&mut bytes);
        let suffix: String = bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        pod.metadata.name = Some(format!("{prefix}{suffix}"));
        if store.create(Object::Pod(Box::new(pod.clone()))).is_ok() {
            return;
        }
    }
}

/// A stable short hash of a pod template, so pods of an unchanged template are recognised as current.
pub fn template_hash(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
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

    fn settle(store: &mut Store) {
        for _ in 0..10 {
            let changes = reconcile(&store.snapshot());
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
