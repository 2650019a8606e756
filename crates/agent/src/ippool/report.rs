//! What the agent writes about pools to the API: the default pool when there is none, its Node's underlay address
//! (the annotation other agents read subnets from), the pools' `Routable` condition and a Warning Event on its
//! Node naming the peers a pool leaves unreachable. The sync loop decides what to write (`Write`); a thread of
//! the `weft agent` binary sends it, so a slow API never holds up the dataplane.

use super::resource::{Condition, DEFAULT_POOL, IPPool, IPPoolSpec, IPPoolStatus};
use super::{ADDRESS_ANNOTATION, VxlanMode};
use crate::overlay::Skipped;
use ipnet::Ipv4Net;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_model::k8s_openapi::api::core::v1::{Event, Node};
use weft_model::k8s_openapi::jiff::Timestamp;

/// The Event (on the agent's Node) that names the peers a pool leaves unreachable.
const UNREACHABLE_REASON: &str = "PodsUnreachable";
const UNREACHABLE_SUFFIX: &str = "weft-pods-unreachable";

/// One change for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The node's underlay address with its prefix, for its Node's annotation.
    Address { node: String, address: Ipv4Net },
    /// A pool's condition, differing from what its status says.
    Condition { pool: String, condition: Condition },
    /// The peers this node cannot reach through the pools (none: the Event goes).
    Unreachable { node: String, peers: Vec<Skipped> },
}

/// Creates the default pool (`default-ipv4-ippool`: the cluster CIDR, `vxlanMode` from the configured overlay)
/// when the cluster has no pool, as calico-node does at start. Returns whether it did; one agent of those
/// starting together wins, the others see `409 AlreadyExists`.
pub async fn ensure_default(client: &kube::Client, cidr: Ipv4Net, mode: VxlanMode) -> Result<bool, kube::Error> {
    let pools: Api<IPPool> = Api::all(client.clone());
    if !pools.list(&ListParams::default().limit(1)).await?.items.is_empty() {
        return Ok(false);
    }
    let pool = IPPool::new(
        DEFAULT_POOL,
        IPPoolSpec {
            cidr: cidr.to_string(),
            vxlan_mode: mode,
        },
    );
    match pools.create(&PostParams::default(), &pool).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends one change.
pub async fn write(client: &kube::Client, write: &Write) -> Result<(), kube::Error> {
    match write {
        Write::Address { node, address } => {
            let patch = json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: address.to_string()}}});
            Api::<Node>::all(client.clone())
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        }
        Write::Condition { pool, condition } => {
            let pools: Api<IPPool> = Api::all(client.clone());
            let mut status = pools.get_status(pool).await?.status.unwrap_or_default();
            set_condition(&mut status, condition.clone(), &now());
            let patch = json!({"status": status});
            pools
                .patch_status(pool, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        }
        Write::Unreachable { node, peers } if peers.is_empty() => {
            let events: Api<Event> = Api::namespaced(client.clone(), "default");
            match events
                .delete(&format!("{node}.{UNREACHABLE_SUFFIX}"), &Default::default())
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                other => other.map(drop),
            }
        }
        Write::Unreachable { node, peers } => {
            let message = unreachable_message(peers);
            crate::node_event::record(client, node, UNREACHABLE_REASON, UNREACHABLE_SUFFIX, &message).await
        }
    }
}

/// The Event's text: every peer and why.
pub fn unreachable_message(peers: &[Skipped]) -> String {
    let each: Vec<String> = peers.iter().map(|p| format!("{}: {}", p.node, p.reason)).collect();
    format!(
        "pods of {} node(s) cannot be reached from this node: {}",
        peers.len(),
        each.join("; ")
    )
}

/// Whether `status` already says what `condition` says (the time aside).
pub fn says(status: Option<&IPPoolStatus>, condition: &Condition) -> bool {
    status.into_iter().flat_map(|s| &s.conditions).any(|c| {
        c.type_ == condition.type_
            && c.status == condition.status
            && c.reason == condition.reason
            && c.message == condition.message
    })
}

/// Puts `new` in place of the condition of its type, keeping the transition time while the status stays.
fn set_condition(status: &mut IPPoolStatus, mut new: Condition, now: &str) {
    match status.conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                Some(now.to_string())
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Some(now.to_string());
            status.conditions.push(new);
        }
    }
}

/// RFC 3339, to the second (jiff is built without its clock: the time from std).
fn now() -> String {
    let now = Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH);
    Timestamp::from_second(now.as_second())
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(status: &str, message: &str) -> Condition {
        Condition {
            type_: "Routable".into(),
            status: status.into(),
            reason: "R".into(),
            message: message.into(),
            last_transition_time: None,
        }
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut status = IPPoolStatus::default();
        set_condition(&mut status, condition("True", "a"), "t1");
        set_condition(&mut status, condition("True", "b"), "t2");
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time.as_deref(), Some("t1"));
        assert!(says(Some(&status), &condition("True", "b")));
        assert!(!says(Some(&status), &condition("True", "a")));
        set_condition(&mut status, condition("False", "b"), "t3");
        assert_eq!(status.conditions[0].last_transition_time.as_deref(), Some("t3"));
        assert!(!says(None, &condition("False", "b")));
        assert!(now().ends_with('Z') && now().len() == 20, "{}", now());
    }
}
