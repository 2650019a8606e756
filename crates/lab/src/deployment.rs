//! The Deployment controller, pure: one ReplicaSet per pod template (`<deployment>-<pod-template-hash>`),
//! rolled from the old ones to the new one as Kubernetes does (RollingUpdate within maxSurge/maxUnavailable,
//! or Recreate), revisions in the `deployment.kubernetes.io/revision` annotation (what `kubectl rollout
//! history/undo` read), old ReplicaSets pruned beyond `revisionHistoryLimit`, and the Deployment's status and
//! conditions (what `kubectl rollout status` waits for).

use crate::controller::{Change, Status, TEMPLATE_HASH, controller_ref, is_terminal, template_hash, template_value};
use crate::events::{Note, reference};
use crate::replicaset::{available, replicas as rs_replicas};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap};
use weft_model::k8s_openapi;
use weft_model::{Key, Object};

pub const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision-history",
];

/// The changes for Deployment `d`, given the ReplicaSets it controls and the pods (by controller uid).
pub fn reconcile(d: &Deployment, owned: &[&ReplicaSet], pods: &HashMap<&str, Vec<&Pod>>, changes: &mut Vec<Change>) {
    let Some(spec) = &d.spec else { return };
    if d.metadata.deletion_timestamp.is_some() {
        return;
    }
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let ns = d.metadata.namespace.as_deref();
    let me = reference("apps/v1", "Deployment", &d.metadata);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let (surge, unavailable) = fenceposts(d, replicas);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let new_rs = owned.iter().copied().find(|rs| same_template(rs, &spec.template));
    let mut old: Vec<&ReplicaSet> = owned
        .iter()
        .copied()
        .filter(|rs| !new_rs.is_some_and(|n| std::ptr::eq(n, *rs)))
        .collect();
    old.sort_by_key(|rs| (rs.metadata.creation_timestamp.clone(), rs.metadata.name.clone()));
    let revision = old.iter().map(|rs| revision_of(&rs.metadata)).max().unwrap_or(0) + 1;
    let annotations = |r: i64| {
        BTreeMap::from([
            (REVISION.to_string(), r.to_string()),
            (DESIRED_REPLICAS.to_string(), replicas.to_string()),
            (MAX_REPLICAS.to_string(), (replicas + surge).to_string()),
        ])
    };
    let scale = |rs: &ReplicaSet, to: i32, revision: i64, changes: &mut Vec<Change>| {
        let from = rs_replicas(rs);
        let rs_name = rs.metadata.name.as_deref().unwrap_or_default();
        changes.push(Change::Scale {
            key: Key::new("ReplicaSet", ns, rs_name),
            replicas: to,
            annotations: annotations(revision),
        });
        changes.push(Change::Event(Box::new(Note::normal(
            me.clone(),
            "ScalingReplicaSet",
            scaling_message(rs_name, from, to),
            COMPONENT,
        ))));
    };
    let paused = spec.paused == Some(true);
    // Recreate waits until no old pod runs, terminating ones included.
    let old_running = old
        .iter()
        .any(|rs| pods_of(pods, &rs.metadata).iter().any(|p| !is_terminal(p)));
    let mut new_revision = new_rs.map_or(0, |rs| revision_of(&rs.metadata));
    let mut created = None;
    let mut scaled = false;
    if !paused {
        if recreate {
            for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
                scale(rs, 0, revision_of(&rs.metadata), changes);
                scaled = true;
            }
        }
        let wait_for_old = recreate && (scaled || old_running);
        match new_rs {
            None if !wait_for_old => {
                let current: i32 = old.iter().map(|rs| rs_replicas(rs)).sum();
                let initial = if recreate {
                    replicas
                } else {
                    rolling_scale_up(0, current, replicas, surge)
                };
                let rs = new_replica_set(d, &spec.template, initial, annotations(revision));
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                changes.push(Change::Create(Box::new(Object::ReplicaSet(Box::new(rs))), None));
                if initial > 0 {
                    changes.push(Change::Event(Box::new(Note::normal(
                        me.clone(),
                        "ScalingReplicaSet",
                        scaling_message(&rs_name, 0, initial),
                        COMPONENT,
                    ))));
                }
                created = Some(rs_name);
                new_revision = revision;
                scaled = true;
            }
            None => {}
            Some(rs) if !wait_for_old => {
                let have = rs_replicas(rs);
                let current: i32 = old.iter().map(|rs| rs_replicas(rs)).sum::<i32>() + have;
                let want = if recreate || have > replicas {
                    replicas
                } else {
                    rolling_scale_up(have, current, replicas, surge)
                };
                // An old ReplicaSet brought back (`rollout undo`) takes the next revision.
                let stale_revision = revision_of(&rs.metadata) < revision;
                if stale_revision {
                    new_revision = revision;
                }
                if want != have || stale_revision || stale_counts(rs, replicas, surge) {
                    if want != have {
                        scale(rs, want, new_revision, changes);
                        scaled = true;
                    } else {
                        changes.push(Change::Scale {
                            key: Key::new("ReplicaSet", ns, rs.metadata.name.as_deref().unwrap_or_default()),
                            replicas: want,
                            annotations: annotations(new_revision),
                        });
                    }
                }
                if !recreate && !scaled {
                    scaled = scale_down_old(rs, &old, replicas, unavailable, &scale, changes);
                }
            }
            Some(_) => {}
        }
    }
    if new_revision > 0 && revision_of(&d.metadata) != new_revision {
        changes.push(Change::Annotate(
            Key::new("Deployment", ns, name),
            BTreeMap::from([(REVISION.to_string(), new_revision.to_string())]),
        ));
    }
    let status = status(d, new_rs, created.as_deref(), &old, replicas, unavailable, scaled);
    if complete(&status, replicas) && !scaled {
        prune_history(d, &old, changes);
    }
    let stored = d.status.as_ref().map(without_times);
    if stored.as_ref() != Some(&status) {
        changes.push(Change::Status(
            Key::new("Deployment", ns, name),
            Box::new(Status::Deployment(status)),
        ));
    }
}

/// RollingUpdate's new ReplicaSet size (`NewRSNewReplicas`): up to `replicas + maxSurge` pods in all.
fn rolling_scale_up(have: i32, current: i32, replicas: i32, surge: i32) -> i32 {
    let max_total = replicas + surge;
    if current >= max_total {
        return have;
    }
    have + (max_total - current).min(replicas - have).max(0)
}

/// Scales the old ReplicaSets down as far as availability allows (`reconcileOldReplicaSets`): first their
/// unavailable pods, then available ones down to `replicas - maxUnavailable` available in all.
fn scale_down_old(
    new_rs: &ReplicaSet,
    old: &[&ReplicaSet],
    replicas: i32,
    unavailable: i32,
    scale: &impl Fn(&ReplicaSet, i32, i64, &mut Vec<Change>),
    changes: &mut Vec<Change>,
) -> bool {
    let mut sizes: Vec<i32> = old.iter().map(|rs| rs_replicas(rs)).collect();
    if sizes.iter().sum::<i32>() == 0 {
        return false;
    }
    let all = rs_replicas(new_rs) + sizes.iter().sum::<i32>();
    let min_available = replicas - unavailable;
    let new_unavailable = rs_replicas(new_rs) - available(new_rs);
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return false;
    }
    for (size, rs) in sizes.iter_mut().zip(old) {
        let unhealthy = (*size - available(rs)).min(budget);
        if unhealthy > 0 {
            *size -= unhealthy;
            budget -= unhealthy;
        }
    }
    let available_now: i32 = available(new_rs) + old.iter().map(|rs| available(rs)).sum::<i32>();
    let mut down = (available_now - min_available).max(0);
    for size in sizes.iter_mut() {
        let cut = (*size).min(down);
        *size -= cut;
        down -= cut;
    }
    let mut scaled = false;
    for (size, rs) in sizes.into_iter().zip(old) {
        if size != rs_replicas(rs) {
            scale(rs, size, revision_of(&rs.metadata), changes);
            scaled = true;
        }
    }
    scaled
}

/// Old ReplicaSets at zero beyond `revisionHistoryLimit` (10 by default), oldest revision first.
fn prune_history(d: &Deployment, old: &[&ReplicaSet], changes: &mut Vec<Change>) {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs_replicas(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0))
        .collect();
    idle.sort_by_key(|rs| revision_of(&rs.metadata));
    for rs in idle.iter().take(idle.len().saturating_sub(limit)) {
        changes.push(Change::Remove(Key::new(
            "ReplicaSet",
            rs.metadata.namespace.as_deref(),
            rs.metadata.name.as_deref().unwrap_or_default(),
        )));
    }
}

fn status(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    created: Option<&str>,
    old: &[&ReplicaSet],
    replicas: i32,
    unavailable: i32,
    scaled: bool,
) -> DeploymentStatus {
    let counts = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let all = new_rs.into_iter().chain(old.iter().copied());
    let total: i32 = all.clone().map(|rs| counts(rs).replicas).sum();
    let ready: i32 = all.clone().map(|rs| counts(rs).ready_replicas.unwrap_or(0)).sum();
    let available: i32 = all.map(|rs| counts(rs).available_replicas.unwrap_or(0)).sum();
    let updated = new_rs.map_or(0, |rs| counts(rs).replicas);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        ..Default::default()
    };
    let condition = |type_: &str, ok: bool, reason: &str, message: String| DeploymentCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        ..Default::default()
    };
    let available_condition = if available >= replicas - unavailable {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let previous = d
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.type_ == "Progressing")
        .map(|c| {
            let mut c = c.clone();
            c.last_update_time = None;
            c.last_transition_time = None;
            c
        });
    let new_name = created.or(new_rs.and_then(|rs| rs.metadata.name.as_deref()));
    let progressing = match new_name {
        Some(rs) if created.is_some() => Some(condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs}\""),
        )),
        Some(rs) if complete(&status, replicas) => Some(condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
        )),
        Some(rs) if scaled || progressed(d.status.as_ref(), &status) => Some(condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
        )),
        Some(rs)
            if previous
                .as_ref()
                .is_none_or(|c| !c.message.as_deref().unwrap_or_default().contains(rs)) =>
        {
            Some(condition(
                "Progressing",
                true,
                "FoundNewReplicaSet",
                format!("Found new replica set \"{rs}\""),
            ))
        }
        _ => previous,
    };
    status.conditions = Some(std::iter::once(available_condition).chain(progressing).collect());
    status
}

/// Whether the rollout moved since `before` (`DeploymentProgressing`).
fn progressed(before: Option<&DeploymentStatus>, now: &DeploymentStatus) -> bool {
    let Some(b) = before else { return true };
    now.updated_replicas > b.updated_replicas
        || now.ready_replicas > b.ready_replicas
        || now.available_replicas > b.available_replicas
        || now.replicas.unwrap_or(0) - now.updated_replicas.unwrap_or(0)
            < b.replicas.unwrap_or(0) - b.updated_replicas.unwrap_or(0)
}

/// Every pod updated and available, no old ones left (`DeploymentComplete`).
fn complete(status: &DeploymentStatus, replicas: i32) -> bool {
    status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
}

/// A status as compared with the controller's: the conditions' times are the store's business.
pub fn without_times(status: &DeploymentStatus) -> DeploymentStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_update_time = None;
        c.last_transition_time = None;
    }
    s
}

/// maxSurge rounded up and maxUnavailable rounded down from their percentages (25% each by default), never
/// both zero (`ResolveFenceposts`).
fn fenceposts(d: &Deployment, replicas: i32) -> (i32, i32) {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(rolling.max_surge.as_ref().unwrap_or(&quarter), replicas, true);
    let unavailable = scaled_value(rolling.max_unavailable.as_ref().unwrap_or(&quarter), replicas, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// An int-or-percent against `total`; malformed percentages count as zero.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let product = percent.max(0) * i64::from(total);
            let value = if round_up { (product + 99) / 100 } else { product / 100 };
            value as i32
        }
    }
}

fn scaling_message(rs: &str, from: i32, to: i32) -> String {
    let direction = if to > from { "up" } else { "down" };
    if from == 0 {
        format!("Scaled {direction} replica set {rs} to {to}")
    } else {
        format!("Scaled {direction} replica set {rs} to {to} from {from}")
    }
}

/// Whether a ReplicaSet's desired/max-replicas annotations are behind the Deployment's.
fn stale_counts(rs: &ReplicaSet, replicas: i32, surge: i32) -> bool {
    let get = |k: &str| rs.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    get(DESIRED_REPLICAS) != Some(replicas.to_string()) || get(MAX_REPLICAS) != Some((replicas + surge).to_string())
}

/// The revision an object's annotation names (0 when none).
pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether a ReplicaSet runs `template` (its own carries the `pod-template-hash` label on top).
fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut theirs) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return false;
    };
    if let Some(labels) = theirs.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH);
    }
    template_value(&theirs) == template_value(template)
}

fn new_replica_set(
    d: &Deployment,
    template: &PodTemplateSpec,
    replicas: i32,
    annotations: BTreeMap<String, String>,
) -> ReplicaSet {
    let hash = template_hash(template);
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_default();
    meta.labels
        .get_or_insert_default()
        .insert(TEMPLATE_HASH.into(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector: LabelSelector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_default()
        .insert(TEMPLATE_HASH.into(), hash.clone());
    let mut all_annotations: BTreeMap<String, String> = d
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all_annotations.extend(annotations);
    let name = d.metadata.name.as_deref().unwrap_or_default();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: Some(all_annotations),
            owner_references: Some(vec![controller_ref("Deployment", &d.metadata)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

fn pods_of<'a>(pods: &'a HashMap<&str, Vec<&'a Pod>>, meta: &ObjectMeta) -> &'a [&'a Pod] {
    meta.uid
        .as_deref()
        .and_then(|uid| pods.get(uid))
        .map(Vec::as_slice)
        .unwrap_or_default()
}
