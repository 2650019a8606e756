//! Pods: READY, STATUS and RESTARTS as kubectl derives them from the pod's status (printers.go `printPod`).

use super::age::{between, human_duration, parse};
use super::cells::{age, int_at, items, name, or, str_at};
use super::{AGE, Col, NAME, col, wide};
use serde_json::{Value, json};
use std::time::SystemTime;
use weft_model::k8s_openapi::jiff::Timestamp;

pub const COLUMNS: &[Col] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

/// Restart counts and the latest restart (a container's last termination).
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "/restartCount");
        let finished = status
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(parse);
        self.last = self.last.max(finished);
    }
}

pub fn row(pod: &Value, now: SystemTime) -> Vec<Value> {
    let spec_inits = items(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        spec_inits
            .iter()
            .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
    };
    let mut total = items(pod, "/spec/containers").len();
    total += spec_inits
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0;

    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if items(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    // Init containers: the first one not done decides the status (`Init:reason` or `Init:i/n`).
    let mut all = Restarts::default();
    let mut sidecars = Restarts::default();
    let mut initializing = false;
    for (i, c) in items(pod, "/status/initContainerStatuses").iter().enumerate() {
        all.add(c);
        let sidecar = restartable(str_at(c, "/name"));
        if sidecar {
            sidecars.add(c);
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = match terminated {
            Some(t) => format!("Init:{}", terminated_reason(t)),
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                format!("Init:{waiting_reason}")
            }
            None => format!("Init:{i}/{}", spec_inits.len()),
        };
        initializing = true;
        break;
    }

    let mut restarts = all;
    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecars;
        let mut running = false;
        for c in items(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(c);
            let waiting_reason = str_at(c, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = terminated_reason(t);
            } else if c["ready"] == true && c.pointer("/state/running").is_some() {
                running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is not Completed.
        if reason == "Completed" && running {
            reason = if condition_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        if str_at(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, human_duration(between(last, now)))
        }
        _ => restarts.count.to_string(),
    };
    // podIPs[0] is what kubectl shows; podIP is its mirror for objects written without podIPs.
    let ip = match items(pod, "/status/podIPs").first() {
        Some(first) => str_at(first, "/ip"),
        None => str_at(pod, "/status/podIP"),
    };
    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(pod, now),
        or(ip, "<none>"),
        or(str_at(pod, "/spec/nodeName"), "<none>"),
        or(str_at(pod, "/status/nominatedNodeName"), "<none>"),
        readiness_gates(pod).into(),
    ]
}

/// A terminated container's reason, else `Signal:N` or `ExitCode:N`.
fn terminated_reason(terminated: &Value) -> String {
    match str_at(terminated, "/reason") {
        "" => match int_at(terminated, "/signal") {
            0 => format!("ExitCode:{}", int_at(terminated, "/exitCode")),
            signal => format!("Signal:{signal}"),
        },
        reason => reason.to_string(),
    }
}

fn condition_true(pod: &Value, type_: &str) -> bool {
    items(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == "True")
}

/// `<none>`, or how many of the pod's readiness gates have their condition True, as `k/n`.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = items(pod, "/status/conditions");
    let passed = gates
        .iter()
        .filter(|g| {
            let type_ = str_at(g, "/conditionType");
            conditions
                .iter()
                .find(|c| str_at(c, "/type") == type_)
                .is_some_and(|c| str_at(c, "/status") == "True")
        })
        .count();
    format!("{passed}/{}", gates.len())
}

/// The row conditions kubectl's printer attaches to finished pods.
pub fn conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-01-01T01:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_229_200)
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec, "status": status})
    }

    fn cells(p: &Value) -> Vec<String> {
        row(p, now())
            .into_iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}}})
    }

    #[test]
    fn running_pod_with_wide_cells() {
        let p = pod(
            json!({"containers": [{"name": "c"}], "nodeName": "node-2"}),
            json!({"phase": "Running", "podIP": "10.244.2.5", "podIPs": [{"ip": "10.244.2.5"}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [running("c", true, 0)]}),
        );
        assert_eq!(
            cells(&p),
            [
                "web-1",
                "1/1",
                "Running",
                "0",
                "60m",
                "10.244.2.5",
                "node-2",
                "<none>",
                "<none>"
            ]
        );
        assert_eq!(conditions(&p), None);
    }

    #[test]
    fn pending_pod_waits_in_container_creating() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"}),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        let c = cells(&p);
        assert_eq!(c[1..4], ["0/2", "ContainerCreating", "0"]);
        assert_eq!(c[5], "<none>");
        let unscheduled = pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Pending"}));
        assert_eq!(cells(&unscheduled)[1..4], ["0/1", "Pending", "0"]);
    }

    #[test]
    fn crash_loop_shows_restarts_and_when() {
        let p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:55:00Z"}}}]}),
        );
        assert_eq!(cells(&p)[1..4], ["0/1", "CrashLoopBackOff", "4 (5m ago)"]);
    }

    #[test]
    fn completed_and_failed_pods() {
        let done = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(cells(&done)[1..4], ["0/1", "Completed", "0"]);
        assert_eq!(conditions(&done).unwrap()[0]["reason"], "Succeeded");
        let killed = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        );
        assert_eq!(cells(&killed)[2], "Signal:9");
        let exited = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(cells(&exited)[2], "ExitCode:3");
    }

    #[test]
    fn one_container_done_another_running_is_running_or_not_ready() {
        let status = |ready: &str| {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [running("a", true, 0),
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
        };
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(cells(&pod(spec.clone(), status("True")))[1..3], ["1/2", "Running"]);
        assert_eq!(cells(&pod(spec, status("False")))[1..3], ["1/2", "NotReady"]);
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let spec = json!({"initContainers": [{"name": "setup"}], "containers": [{"name": "c"}]});
        let waiting = |reason: &str| {
            json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "setup", "restartCount": 0, "state": {"waiting": {"reason": reason}}}],
                "containerStatuses": [{"name": "c", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]})
        };
        assert_eq!(
            cells(&pod(spec.clone(), waiting("PodInitializing")))[1..3],
            ["0/1", "Init:0/1"]
        );
        assert_eq!(
            cells(&pod(spec.clone(), waiting("ImagePullBackOff")))[2],
            "Init:ImagePullBackOff"
        );
        let failed = json!({"phase": "Pending", "initContainerStatuses": [{"name": "setup", "restartCount": 2,
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:59:00Z"}}}]});
        assert_eq!(cells(&pod(spec.clone(), failed))[2..4], ["Init:Error", "2 (60s ago)"]);
        let done = json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [running("c", true, 0)]});
        assert_eq!(cells(&pod(spec, done))[1..3], ["1/1", "Running"]);
    }

    #[test]
    fn sidecars_count_as_containers() {
        let spec =
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "c"}]});
        let status = json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:30:00Z"}}}],
            "containerStatuses": [running("c", true, 0)]});
        assert_eq!(cells(&pod(spec, status))[1..4], ["2/2", "Running", "1 (30m ago)"]);
    }

    #[test]
    fn deleted_pods_are_terminating_unless_finished_or_lost() {
        let mut p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Running", "containerStatuses": [running("c", true, 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:59:30Z");
        assert_eq!(cells(&p)[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&p)[2], "Unknown");
        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(cells(&p)[2], "Succeeded");
    }

    #[test]
    fn readiness_gates_and_nominated_node() {
        let p = pod(
            json!({"containers": [{"name": "c"}], "readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "x"}]}),
            json!({"phase": "Pending", "nominatedNodeName": "node-3",
                   "conditions": [{"type": "lb/ready", "status": "True"}, {"type": "x", "status": "False"}]}),
        );
        assert_eq!(cells(&p)[7..], ["node-3", "1/2"]);
    }

    #[test]
    fn scheduling_gated_pods_say_so() {
        let p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(cells(&p)[2], "SchedulingGated");
    }
}
