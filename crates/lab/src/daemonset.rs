//! The DaemonSet controller, pure: one pod per node the template fits (nodeSelector, taints against the
//! template's tolerations plus those the controller adds), bound to that node at creation and named
//! `<ds>-<5 chars>`; on a template change, RollingUpdate replaces them at most `maxUnavailable` (1) at a time,
//! each node's new pod created once its old one is gone.

use crate::controller::{
    Change, Status, controller_ref, is_active, is_ready, node_of, pod_from_template, pod_key, template_hash,
};
use crate::deployment::scaled_value;
use crate::events::{Note, reference};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use weft_model::k8s_openapi;
use weft_model::object::labels;
use weft_model::{Key, Object};

pub const COMPONENT: &str = "daemonset-controller";
/// The label naming the template revision of a DaemonSet's pod.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// The tolerations the DaemonSet controller adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        exists("node.kubernetes.io/not-ready", "NoExecute"),
        exists("node.kubernetes.io/unreachable", "NoExecute"),
        exists("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(exists("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

pub fn reconcile(ds: &DaemonSet, owned: &[&Pod], nodes: &[&Node], changes: &mut Vec<Change>) {
    let Some(spec) = &ds.spec else { return };
    if ds.metadata.deletion_timestamp.is_some() {
        return;
    }
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let ns = ds.metadata.namespace.as_deref();
    let hash = template_hash(&spec.template);
    let me = reference("apps/v1", "DaemonSet", &ds.metadata);
    let delete = |pod: &Pod, changes: &mut Vec<Change>| {
        let message = format!("Deleted pod: {}", pod.metadata.name.as_deref().unwrap_or_default());
        changes.push(Change::MarkDeleted(pod_key(pod)));
        changes.push(Change::Event(Box::new(Note::normal(
            me.clone(),
            "SuccessfulDelete",
            message,
            COMPONENT,
        ))));
    };
    let mut template = spec.template.clone();
    template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(REVISION_HASH.into(), hash.clone());
    let pod_spec = template.spec.get_or_insert_default();
    let mut tolerations = pod_spec.tolerations.clone().unwrap_or_default();
    for t in daemon_tolerations(pod_spec.host_network == Some(true)) {
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
    pod_spec.tolerations = Some(tolerations);
    let fits: Vec<&str> = nodes
        .iter()
        .filter(|n| fits(template.spec.as_ref(), n))
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    // A node whose pod is still terminating gets its next one only once that one is gone, as the DaemonSet
    // controller waits (without surge): a node agent's successor must not start while it still runs.
    let terminating: Vec<&str> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter_map(|p| node_of(p))
        .collect();
    let mut by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in owned.iter().copied().filter(|p| is_active(p)) {
        match node_of(pod) {
            Some(node) if fits.contains(&node) => by_node.entry(node).or_default().push(pod),
            // On a node it no longer fits (or none): it goes.
            _ => delete(pod, changes),
        }
    }
    let current = |p: &Pod| labels(&p.metadata).get(REVISION_HASH) == Some(&hash);
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    let rolling_update = strategy.and_then(|s| s.rolling_update.as_ref());
    let scaled = |v: &IntOrString| scaled_value(v, fits.len() as i32, true).max(0) as usize;
    // A positive maxSurge takes kube-controller-manager's surge path, where maxUnavailable plays no part.
    let max_surge = rolling_update.and_then(|r| r.max_surge.as_ref()).map_or(0, scaled);
    let max_surge = if rolling { max_surge } else { 0 };
    let max_unavailable = rolling_update
        .and_then(|r| r.max_unavailable.as_ref())
        .map_or(1, scaled)
        .max(1);
    let unavailable = fits
        .iter()
        .filter(|n| !by_node.get(*n).is_some_and(|pods| pods.iter().any(|p| is_ready(p))))
        .count();
    let mut budget = max_unavailable.saturating_sub(unavailable);
    let create = |node: &str, changes: &mut Vec<Change>| {
        let mut pod = pod_from_template(
            &template,
            &format!("{name}-"),
            ns,
            controller_ref("DaemonSet", &ds.metadata),
        );
        pod.spec.get_or_insert_with(PodSpec::default).node_name = Some(node.to_string());
        let note = Note::normal(me.clone(), "SuccessfulCreate", "Created pod: ".into(), COMPONENT);
        changes.push(Change::Create(
            Box::new(Object::Pod(Box::new(pod))),
            Some(Box::new(note)),
        ));
    };
    // Surging: nodes whose new pod is not ready yet beside its old one, and nodes whose ready old pod may get
    // its successor beside it.
    let (mut surging, mut candidates) = (0, Vec::new());
    let (mut scheduled, mut ready, mut updated) = (0, 0, 0);
    for node in &fits {
        let Some(pods) = by_node.get_mut(node) else {
            if !terminating.contains(node) {
                create(node, changes);
            }
            continue;
        };
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        scheduled += 1;
        if max_surge > 0 {
            // At most two pods per node: the oldest of the current revision beside the oldest of an old one.
            let (news, olds): (Vec<&Pod>, Vec<&Pod>) = pods.iter().partition(|p| current(p));
            for extra in news.iter().skip(1).chain(olds.iter().skip(1)) {
                delete(extra, changes);
            }
            let (new, old) = (news.first().copied(), olds.first().copied());
            ready += i32::from(new.is_some_and(is_ready) || old.is_some_and(is_ready));
            updated += i32::from(new.is_some());
            match (new, old) {
                // The old pod goes once its successor is ready, or at once if it is not ready itself.
                (Some(new), Some(old)) if is_ready(new) || !is_ready(old) => delete(old, changes),
                (Some(_), Some(_)) => surging += 1,
                // An old pod that is not ready costs no availability: its successor starts now.
                (None, Some(old)) if !is_ready(old) => create(node, changes),
                (None, Some(_)) => candidates.push(*node),
                _ => {}
            }
            continue;
        }
        // One pod per node: the oldest stays.
        for extra in pods.drain(1..) {
            delete(extra, changes);
        }
        let pod = pods[0];
        ready += i32::from(is_ready(pod));
        updated += i32::from(current(pod));
        if rolling && !current(pod) {
            // An old pod that is not ready anyway costs no availability; a ready one spends the budget.
            if !is_ready(pod) {
                delete(pod, changes);
            } else if budget > 0 {
                budget -= 1;
                delete(pod, changes);
            }
        }
    }
    for node in candidates.into_iter().take(max_surge.saturating_sub(surging)) {
        create(node, changes);
    }
    let desired = fits.len() as i32;
    let status = DaemonSetStatus {
        current_number_scheduled: scheduled,
        desired_number_scheduled: desired,
        number_misscheduled: 0,
        number_ready: ready,
        number_available: Some(ready),
        number_unavailable: Some(desired - ready).filter(|n| *n > 0),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        ..Default::default()
    };
    if ds.status.as_ref() != Some(&status) {
        changes.push(Change::Status(
            Key::new("DaemonSet", ns, name),
            Box::new(Status::DaemonSet(status)),
        ));
    }
}

/// Whether a pod of `spec` may run on `node`: its nodeSelector matches and every NoSchedule/NoExecute taint
/// (an unschedulable node counts as tainted) is tolerated.
fn fits(spec: Option<&PodSpec>, node: &Node) -> bool {
    misfit(spec, node).is_none()
}

/// Why a pod of `spec` may not run on `node`, in the scheduler's words; None when it may.
pub fn misfit(spec: Option<&PodSpec>, node: &Node) -> Option<String> {
    let node_labels = labels(&node.metadata);
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| node_labels.get(k) == Some(v)));
    if !selector_ok {
        return Some("didn't match Pod's node affinity/selector".into());
    }
    let node_spec = node.spec.clone().unwrap_or_default();
    let mut taints = node_spec.taints.unwrap_or_default();
    if node_spec.unschedulable == Some(true) {
        taints.push(Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    let tolerations = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .map(|t| {
            format!(
                "had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )
        })
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = tol.key.as_deref().unwrap_or_default();
    let operator = tol.operator.as_deref().unwrap_or("Equal");
    let key_ok = key == taint.key || (key.is_empty() && operator == "Exists");
    let value_ok =
        operator == "Exists" || tol.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default();
    effect_ok && key_ok && value_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, hash: &str, deleting: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system", "labels": {REVISION_HASH: hash}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        if deleting {
            pod.metadata.deletion_timestamp = Some(crate::store::now());
        }
        pod
    }

    /// The DaemonSet `agent` with this `updateStrategy` (null: the default).
    fn daemon_set(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c"}]}}},
        }))
        .unwrap()
    }

    fn two_nodes() -> Vec<Node> {
        ["node-1", "node-2"]
            .iter()
            .map(|n| serde_json::from_value(json!({"metadata": {"name": n}})).unwrap())
            .collect()
    }

    #[test]
    fn a_node_gets_its_new_pod_only_once_the_old_one_is_gone() {
        let ds = daemon_set(json!(null));
        let nodes = two_nodes();
        let nodes: Vec<&Node> = nodes.iter().collect();
        let creates = |owned: &[&Pod]| {
            let mut changes = Vec::new();
            reconcile(&ds, owned, &nodes, &mut changes);
            changes.iter().filter(|c| matches!(c, Change::Create(..))).count()
        };
        // node-1's old pod is stopping (a rolling update deleted it): node-1 waits, node-2 keeps its pod.
        let stopping = pod("agent-old", "node-1", "old", true);
        let other = pod("agent-two", "node-2", "old", false);
        assert_eq!(creates(&[&stopping, &other]), 0);
        // Gone: node-1 gets its new pod.
        assert_eq!(creates(&[&other]), 1);
    }

    /// The pods a reconcile creates (by node) and deletes (by name).
    fn outcome(ds: &DaemonSet, owned: &[&Pod], nodes: &[&Node]) -> (Vec<String>, Vec<String>) {
        let mut changes = Vec::new();
        reconcile(ds, owned, nodes, &mut changes);
        let (mut created, mut deleted) = (Vec::new(), Vec::new());
        for change in changes {
            match change {
                Change::Create(object, _) => {
                    let Object::Pod(pod) = *object else { continue };
                    created.push(pod.spec.and_then(|s| s.node_name).unwrap_or_default());
                }
                Change::MarkDeleted(key) => deleted.push(key.name.to_string()),
                _ => {}
            }
        }
        (created, deleted)
    }

    #[test]
    fn max_surge_starts_each_new_pod_beside_the_old_one_and_deletes_the_old_once_the_new_is_ready() {
        let surge = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}});
        let ds = daemon_set(surge);
        let hash = template_hash(&ds.spec.as_ref().unwrap().template);
        let nodes = two_nodes();
        let nodes: Vec<&Node> = nodes.iter().collect();
        let (old1, old2) = (
            pod("agent-a", "node-1", "old", false),
            pod("agent-b", "node-2", "old", false),
        );
        // 50 % of 2 nodes: one node surges; nothing is deleted while every old pod is the only one ready.
        assert_eq!(outcome(&ds, &[&old1, &old2], &nodes), (vec!["node-1".into()], vec![]));
        // node-1's new pod is not ready yet: the surge is spent, both old pods stay.
        let mut new1 = pod("agent-c", "node-1", &hash, false);
        new1.status = None;
        assert_eq!(outcome(&ds, &[&old1, &old2, &new1], &nodes), (vec![], vec![]));
        // Ready: node-1's old pod goes and node-2 surges in the same pass.
        let new1 = pod("agent-c", "node-1", &hash, false);
        let expected = (vec!["node-2".into()], vec!["agent-a".into()]);
        assert_eq!(outcome(&ds, &[&old1, &old2, &new1], &nodes), expected);
        // An old pod that is not ready costs no availability: its successor starts beside it beyond the surge,
        // and then it goes at once.
        let mut sick2 = pod("agent-b", "node-2", "old", false);
        sick2.status = None;
        let mut new1 = pod("agent-c", "node-1", &hash, false);
        new1.status = None;
        assert_eq!(
            outcome(&ds, &[&old1, &sick2, &new1], &nodes),
            (vec!["node-2".into()], vec![])
        );
        let new2 = pod("agent-d", "node-2", &hash, false);
        assert_eq!(outcome(&ds, &[&sick2, &new2], &nodes).1, vec!["agent-b".to_string()]);
    }

    #[test]
    fn without_max_surge_a_ready_old_pod_is_deleted_before_its_successor_starts() {
        let ds = daemon_set(json!(null));
        let nodes = two_nodes();
        let nodes: Vec<&Node> = nodes.iter().collect();
        let (old1, old2) = (
            pod("agent-a", "node-1", "old", false),
            pod("agent-b", "node-2", "old", false),
        );
        // maxUnavailable 1 (the default): one old pod goes, nothing new yet.
        assert_eq!(outcome(&ds, &[&old1, &old2], &nodes), (vec![], vec!["agent-a".into()]));
    }
}
