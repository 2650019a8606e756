//! Workloads: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job and CronJob.

use super::age::{between, human_duration, parse};
use super::cells::{age, containers, format_selector, int_at, items, labels, name, selector, since, str_at};
use super::{AGE, CONTAINERS, Col, IMAGES, NAME, col, wide};
use serde_json::Value;
use std::time::SystemTime;

/// `spec.replicas`, which the API defaults to 1.
fn replicas(v: &Value) -> i64 {
    v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

fn template_spec(v: &Value) -> Option<&Value> {
    v.pointer("/spec/template/spec")
}

pub const DEPLOYMENT: &[Col] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", "Label selector for pods."),
];

pub fn deployment(d: &Value, now: SystemTime) -> Vec<Value> {
    let [names, images] = containers(template_spec(d));
    let ready = format!("{}/{}", int_at(d, "/status/readyReplicas"), replicas(d));
    vec![
        name(d),
        ready.into(),
        int_at(d, "/status/updatedReplicas").into(),
        int_at(d, "/status/availableReplicas").into(),
        age(d, now),
        names,
        images,
        selector(d.pointer("/spec/selector"))
            .unwrap_or_else(|| "<invalid>".into())
            .into(),
    ]
}

pub const REPLICA_SET: &[Col] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired pods."),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

pub fn replica_set(rs: &Value, now: SystemTime) -> Vec<Value> {
    let [names, images] = containers(template_spec(rs));
    vec![
        name(rs),
        replicas(rs).into(),
        int_at(rs, "/status/replicas").into(),
        int_at(rs, "/status/readyReplicas").into(),
        age(rs, now),
        names,
        images,
        format_selector(rs.pointer("/spec/selector")).into(),
    ]
}

pub const DAEMON_SET: &[Col] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
    ),
];

pub fn daemon_set(ds: &Value, now: SystemTime) -> Vec<Value> {
    let [names, images] = containers(template_spec(ds));
    vec![
        name(ds),
        int_at(ds, "/status/desiredNumberScheduled").into(),
        int_at(ds, "/status/currentNumberScheduled").into(),
        int_at(ds, "/status/numberReady").into(),
        int_at(ds, "/status/updatedNumberScheduled").into(),
        int_at(ds, "/status/numberAvailable").into(),
        labels(ds.pointer("/spec/template/spec/nodeSelector")).into(),
        age(ds, now),
        names,
        images,
        format_selector(ds.pointer("/spec/selector")).into(),
    ]
}

pub const STATEFUL_SET: &[Col] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub fn stateful_set(ss: &Value, now: SystemTime) -> Vec<Value> {
    let [names, images] = containers(template_spec(ss));
    let ready = format!("{}/{}", int_at(ss, "/status/readyReplicas"), replicas(ss));
    vec![name(ss), ready.into(), age(ss, now), names, images]
}

pub const JOB: &[Col] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

pub fn job(job: &Value, now: SystemTime) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int_at(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |pointer: &str| job.pointer(pointer).and_then(Value::as_str).and_then(parse);
    let duration = match (time("/status/startTime"), time("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(between(start, now)),
        (Some(start), Some(end)) => {
            let nanos = end.as_nanosecond() - start.as_nanosecond();
            human_duration(nanos.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
        }
    };
    let condition = |type_: &str| {
        items(job, "/status/conditions")
            .iter()
            .find(|c| str_at(c, "/type") == type_)
            .is_some_and(|c| str_at(c, "/status") == "True")
    };
    let status = if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if job.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if condition("Suspended") {
        "Suspended"
    } else if condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = containers(template_spec(job));
    vec![
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        names,
        images,
        format_selector(job.pointer("/spec/selector")).into(),
    ]
}

pub const CRON_JOB: &[Col] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col("Timezone", "string", "The time zone name for the given schedule."),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

pub fn cron_job(cj: &Value, now: SystemTime) -> Vec<Value> {
    let suspend = match cj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last_schedule = match cj.pointer("/status/lastScheduleTime") {
        Some(Value::String(_)) => since(cj, "/status/lastScheduleTime", now),
        _ => "<none>".into(),
    };
    let timezone = match str_at(cj, "/spec/timeZone") {
        "" => "<none>",
        tz => tz,
    };
    let [names, images] = containers(cj.pointer("/spec/jobTemplate/spec/template/spec"));
    vec![
        name(cj),
        str_at(cj, "/spec/schedule").into(),
        timezone.into(),
        suspend.into(),
        items(cj, "/status/active").len().into(),
        last_schedule,
        age(cj, now),
        names,
        images,
        format_selector(cj.pointer("/spec/jobTemplate/spec/selector")).into(),
    ]
}
