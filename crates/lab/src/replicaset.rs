//! The ReplicaSet controller, pure: keeps `spec.replicas` pods of the template, each owned by the ReplicaSet
//! (named `<rs>-<5 chars>`), deletes the surplus (not-ready, unscheduled and newest first) and reports status.

use crate::controller::{Change, Status, controller_ref, is_active, is_ready, node_of, pod_from_template, pod_key};
use crate::events::{Note, reference};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use std::cmp::Reverse;
use weft_model::k8s_openapi;
use weft_model::object::labels;
use weft_model::{Key, Object};

pub const COMPONENT: &str = "replicaset-controller";

/// The changes that bring `rs`'s pods (`owned`: the pods whose controller it is) to its spec.
pub fn reconcile(rs: &ReplicaSet, owned: &[&Pod], changes: &mut Vec<Change>) {
    let Some(spec) = &rs.spec else { return };
    if rs.metadata.deletion_timestamp.is_some() {
        return;
    }
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let ns = rs.metadata.namespace.as_deref();
    let me = reference("apps/v1", "ReplicaSet", &rs.metadata);
    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let template = spec.template.clone().unwrap_or_default();
    for _ in active.len()..want {
        let pod = pod_from_template(
            &template,
            &format!("{name}-"),
            ns,
            controller_ref("ReplicaSet", &rs.metadata),
        );
        let note = Note::normal(me.clone(), "SuccessfulCreate", "Created pod: ".into(), COMPONENT);
        changes.push(Change::Create(
            Box::new(Object::Pod(Box::new(pod))),
            Some(Box::new(note)),
        ));
    }
    if active.len() > want {
        // The ReplicaSet controller's preference: unscheduled, then not running, then not ready, then the
        // most restarted, then the newest.
        active.sort_by_key(|p| {
            (
                node_of(p).is_some(),
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
                is_ready(p),
                Reverse(restarts(p)),
                Reverse(p.metadata.creation_timestamp.clone()),
            )
        });
        for pod in active.drain(..active.len() - want) {
            let message = format!("Deleted pod: {}", pod.metadata.name.as_deref().unwrap_or_default());
            changes.push(Change::MarkDeleted(pod_key(pod)));
            changes.push(Change::Event(Box::new(Note::normal(
                me.clone(),
                "SuccessfulDelete",
                message,
                COMPONENT,
            ))));
        }
    }
    let template_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let ready = active.iter().filter(|p| is_ready(p)).count() as i32;
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(
            active
                .iter()
                .filter(|p| {
                    let have = labels(&p.metadata);
                    template_labels.iter().all(|(k, v)| have.get(k) == Some(v))
                })
                .count() as i32,
        ),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        observed_generation: rs.metadata.generation,
        ..Default::default()
    };
    if rs.status.as_ref() != Some(&status) {
        changes.push(Change::Status(
            Key::new("ReplicaSet", ns, name),
            Box::new(Status::ReplicaSet(status)),
        ));
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum()
}

/// A ReplicaSet's `spec.replicas` (1 when unset, as defaulted).
pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Its pods available now, per its status.
pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}
