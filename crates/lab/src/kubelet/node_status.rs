//! The node's Ready condition, as kubelet decides it: Ready once the container runtime has a network config
//! (a file in the node's /etc/cni/net.d), NotReady with containerd's words before. While NotReady the node
//! carries the `node.kubernetes.io/not-ready:NoSchedule` taint (the node lifecycle controller's part in a
//! cluster, done here by the kubelet that knows), so only pods tolerating it are scheduled there.

use crate::store::{Store, now};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use serde_json::{Value, json};
use weft_model::k8s_openapi;
use weft_model::{Key, Object};

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

pub fn not_ready_taint() -> Value {
    json!({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
}

/// The Ready condition as kubelet words it.
pub fn ready_condition(ready: bool) -> Value {
    match ready {
        true => json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                       "message": "kubelet is posting ready status"}),
        false => json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                        "message": crate::cni::NOT_READY}),
    }
}

/// Whether the stored node already says `ready` (its condition and its taint).
pub fn says(node: &Node, ready: bool) -> bool {
    let condition = (node.status.as_ref().and_then(|s| s.conditions.as_ref()))
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == if ready { "True" } else { "False" });
    let tainted = (node.spec.as_ref().and_then(|s| s.taints.as_ref()))
        .is_some_and(|t| t.iter().any(|t| t.key == NOT_READY_TAINT && t.effect == "NoSchedule"));
    condition && tainted != ready
}

/// Writes the node's Ready condition and not-ready taint.
pub fn set(store: &mut Store, node: &str, ready: bool) {
    store.update(&Key::new("Node", None, node), |o| {
        let Object::Node(n) = o else { return };
        let Ok(mut condition) = serde_json::from_value::<NodeCondition>(ready_condition(ready)) else {
            return;
        };
        let at = now();
        condition.last_heartbeat_time = Some(at.clone());
        condition.last_transition_time = Some(at);
        let status = n.status.get_or_insert_default();
        let conditions = status.conditions.get_or_insert_default();
        conditions.retain(|c| c.type_ != "Ready");
        conditions.push(condition);
        let spec = n.spec.get_or_insert_default();
        let mut taints = spec.taints.take().unwrap_or_default();
        taints.retain(|t| !(t.key == NOT_READY_TAINT && t.effect == "NoSchedule"));
        if !ready {
            taints.push(Taint {
                key: NOT_READY_TAINT.into(),
                effect: "NoSchedule".into(),
                time_added: Some(now()),
                ..Default::default()
            });
        }
        spec.taints = Some(taints).filter(|t| !t.is_empty());
    });
}
