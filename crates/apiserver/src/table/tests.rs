//! Tables per kind, with objects as the API writes them.

use super::*;
use serde_json::json;
use std::time::Duration;

/// 2026-01-01T01:00:00Z; the objects below were created an hour earlier.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_229_200)
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": format!("uid-{name}"),
           "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": name}})
}

fn with_meta(name: &str, mut body: Value) -> Value {
    body["metadata"] = meta(name);
    body
}

/// The table as JSON, from the bytes the server sends.
fn table<'a, S: Into<Source<'a>>>(
    kind: &str,
    objects: impl IntoIterator<Item = S>,
    include: IncludeObject,
    columns: Option<&[PrinterColumn]>,
    headers: bool,
    now: SystemTime,
    list_meta: Value,
) -> Value {
    let bytes = super::table(kind, objects, include, columns, headers, now, &list_meta);
    serde_json::from_slice(&bytes).unwrap()
}

fn build(kind: &str, objects: &[Value]) -> Value {
    table(
        kind,
        objects,
        IncludeObject::Metadata,
        None,
        true,
        now(),
        json!({"resourceVersion": "42"}),
    )
}

/// Column names, and each row's cells as text.
fn grid(t: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let names = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let rows = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    (names, rows)
}

#[test]
fn table_shape_and_column_definitions() {
    let t = build("Pod", &[with_meta("web-1", json!({"apiVersion": "v1", "kind": "Pod"}))]);
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
    let defs = t["columnDefinitions"].as_array().unwrap();
    assert_eq!(defs[0]["format"], "name");
    assert_eq!(defs[1]["format"], "");
    let wide: Vec<&str> = defs
        .iter()
        .filter(|d| d["priority"] == 1)
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert!(
        defs.iter()
            .all(|d| d["description"].as_str().is_some_and(|s| !s.is_empty()))
    );
    // Every row has one cell per column.
    assert_eq!(t["rows"][0]["cells"].as_array().unwrap().len(), defs.len());
}

#[test]
fn include_object_modes() {
    assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("")), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
    assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
    assert_eq!(
        IncludeObject::parse(Some("object")),
        Err("unrecognized includeObject value: \"object\"".into())
    );

    let svc = with_meta(
        "web",
        json!({"apiVersion": "v1", "kind": "Service", "spec": {"clusterIPs": ["10.96.0.1"]}}),
    );
    let at = |include| table("Service", [&svc], include, None, true, now(), json!({}))["rows"][0].clone();
    let partial = at(IncludeObject::Metadata)["object"].clone();
    assert_eq!(partial["kind"], "PartialObjectMetadata");
    assert_eq!(partial["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(partial["metadata"], svc["metadata"]);
    assert!(partial.get("spec").is_none());
    assert_eq!(at(IncludeObject::Object)["object"], svc);
    assert!(at(IncludeObject::None).get("object").is_none());
}

#[test]
fn stored_objects_print_as_their_json_does() {
    let svc = with_meta(
        "web",
        json!({"apiVersion": "v1", "kind": "Service",
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                        "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}}}),
    );
    let stored = weft_model::manifest::from_value(svc.clone()).unwrap();
    for include in [IncludeObject::None, IncludeObject::Metadata, IncludeObject::Object] {
        let from_json = table("Service", [&svc], include, None, true, now(), json!({}));
        let from_stored = table("Service", [&stored], include, None, true, now(), json!({}));
        assert_eq!(from_stored, from_json, "{include:?}");
    }
}

#[test]
fn watch_events_after_the_first_carry_no_headers() {
    let ns = with_meta("team-a", json!({"status": {"phase": "Terminating"}}));
    let t = table(
        "Namespace",
        [&ns],
        IncludeObject::Metadata,
        None,
        false,
        now(),
        json!({}),
    );
    assert_eq!(t["columnDefinitions"], json!([]));
    assert_eq!(t["rows"][0]["cells"], json!(["team-a", "Terminating", "60m"]));
}

#[test]
fn services_of_every_type() {
    let svc = |name: &str, spec: Value, status: Value| with_meta(name, json!({"spec": spec, "status": status}));
    let (names, rows) = grid(&build(
        "Service",
        &[
            svc(
                "web",
                json!({"type": "ClusterIP", "clusterIP": "10.96.0.17", "clusterIPs": ["10.96.0.17"],
                       "selector": {"app": "web", "tier": "fe"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
                json!({}),
            ),
            svc(
                "np",
                json!({"type": "NodePort", "clusterIPs": ["10.96.0.18"], "externalIPs": ["192.0.2.7"],
                       "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
                json!({}),
            ),
            svc(
                "lb",
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.19"], "ports": [{"port": 443, "protocol": "TCP", "nodePort": 30443}]}),
                json!({"loadBalancer": {"ingress": [{"ip": "172.18.1.2"}, {"hostname": "lb.example.com"}, {"ip": "172.18.1.1"}]}}),
            ),
            svc(
                "pending",
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"], "ports": [{"port": 1, "protocol": "TCP", "nodePort": 31000}]}),
                json!({"loadBalancer": {}}),
            ),
            svc(
                "db",
                json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
                json!({}),
            ),
            svc(
                "ext",
                json!({"type": "ExternalName", "externalName": "example.com"}),
                json!({}),
            ),
        ],
    ));
    assert_eq!(
        names,
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    assert_eq!(
        rows[0],
        [
            "web",
            "ClusterIP",
            "10.96.0.17",
            "<none>",
            "80/TCP",
            "60m",
            "app=web,tier=fe"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "np",
            "NodePort",
            "10.96.0.18",
            "192.0.2.7",
            "80:30080/TCP,53:30053/UDP",
            "60m",
            "<none>"
        ]
    );
    // The server's cells are wide: load balancer addresses sorted and not clipped.
    assert_eq!(rows[2][3], "172.18.1.1,172.18.1.2,lb.example.com");
    assert_eq!(rows[2][4], "443:30443/TCP");
    assert_eq!(rows[3][3], "<pending>");
    assert_eq!(rows[4][2..5], ["None", "<none>", "<none>"]);
    assert_eq!(rows[5][1..5], ["ExternalName", "<none>", "example.com", "<none>"]);
}

#[test]
fn endpoints_and_slices_list_three_then_count_the_rest() {
    let ep = |ip: &str| json!({"addresses": [ip], "conditions": {"ready": true}});
    let (names, rows) = grid(&build(
        "EndpointSlice",
        &[
            with_meta(
                "web-abc",
                json!({"addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics"}, {}],
                       "endpoints": [ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2"), ep("10.244.1.3"), ep("10.244.2.3")]}),
            ),
            with_meta("web-empty", json!({"addressType": "IPv6", "endpoints": []})),
        ],
    ));
    assert_eq!(names, ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
    assert_eq!(
        rows[0],
        [
            "web-abc",
            "IPv4",
            "8080,metrics,*",
            "10.244.1.2,10.244.2.2,10.244.3.2 + 2 more...",
            "60m"
        ]
    );
    assert_eq!(rows[1], ["web-empty", "IPv6", "<unset>", "<unset>", "60m"]);

    let (names, rows) = grid(&build(
        "Endpoints",
        &[
            with_meta(
                "web",
                json!({"subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}],
                                    "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}]}),
            ),
            with_meta("headless", json!({"subsets": [{"addresses": [{"ip": "fd00::5"}]}]})),
            with_meta(
                "v6",
                json!({"subsets": [{"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 53}]}]}),
            ),
            with_meta("none", json!({})),
        ],
    ));
    assert_eq!(names, ["Name", "Endpoints", "Age"]);
    assert_eq!(rows[0][1], "10.244.1.2:80,10.244.2.2:80,10.244.1.2:443 + 1 more...");
    assert_eq!(rows[1][1], "fd00::5");
    assert_eq!(rows[2][1], "[fd00::5]:53");
    assert_eq!(rows[3][1], "<none>");
}

#[test]
fn nodes_status_roles_and_system_info() {
    let node = |name: &str, labels: Value, spec: Value, conditions: Value| {
        let mut n = with_meta(
            name,
            json!({"spec": spec, "status": {"conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": "172.18.0.11"}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 13 (trixie)",
                             "kernelVersion": "6.12.0", "containerRuntimeVersion": "weft://0.1.0"}}}),
        );
        n["metadata"]["labels"] = labels;
        n
    };
    let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
    let (names, rows) = grid(&build(
        "Node",
        &[
            node(
                "node-1",
                json!({"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge"}),
                json!({"podCIDR": "10.244.1.0/24"}),
                ready.clone(),
            ),
            node("node-2", json!({}), json!({"unschedulable": true}), ready),
            node(
                "node-3",
                json!({"node-role.kubernetes.io/": "x"}),
                json!({}),
                json!([{"type": "Ready", "status": "Unknown"}]),
            ),
            node("node-4", json!({}), json!({}), json!([])),
        ],
    ));
    assert_eq!(
        names,
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    assert_eq!(
        rows[0],
        [
            "node-1",
            "Ready",
            "control-plane,edge,worker",
            "60m",
            "v1.33.0",
            "172.18.0.11",
            "<none>",
            "Debian GNU/Linux 13 (trixie)",
            "6.12.0",
            "weft://0.1.0"
        ]
    );
    assert_eq!(rows[1][1..3], ["Ready,SchedulingDisabled", "<none>"]);
    assert_eq!(rows[2][1..3], ["NotReady", "<none>"]);
    assert_eq!(rows[3][1], "Unknown");
}

#[test]
fn workloads_count_replicas() {
    let template =
        json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}});
    let (names, rows) = grid(&build(
        "Deployment",
        &[
            with_meta(
                "web",
                json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
                       "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
            ),
            with_meta("fresh", json!({"spec": {"template": template}, "status": {}})),
        ],
    ));
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        rows[0],
        [
            "web",
            "2/3",
            "3",
            "2",
            "60m",
            "web,log",
            "nginx:1.27,busybox",
            "app=web"
        ]
    );
    assert_eq!(rows[1][..4], ["fresh", "0/1", "0", "0"]);
    assert_eq!(rows[1][7], "");

    let (_, rows) = grid(&build(
        "ReplicaSet",
        &[with_meta(
            "web-5d4f",
            json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}}, "template": template},
                   "status": {"replicas": 3, "readyReplicas": 1}}),
        )],
    ));
    assert_eq!(rows[0][..4], ["web-5d4f", "3", "3", "1"]);
    assert_eq!(rows[0][7], "app=web,pod-template-hash=5d4f");

    let (names, rows) = grid(&build(
        "DaemonSet",
        &[with_meta(
            "agent",
            json!({"spec": {"selector": {"matchLabels": {"app": "agent"}},
                            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "weft"}]}}},
                   "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}),
        )],
    ));
    assert_eq!(names[6], "Node Selector");
    assert_eq!(
        rows[0][..8],
        ["agent", "3", "3", "2", "3", "2", "kubernetes.io/os=linux", "60m"]
    );

    let (_, rows) = grid(&build(
        "StatefulSet",
        &[with_meta(
            "db",
            json!({"spec": {"replicas": 2, "template": template}, "status": {"readyReplicas": 2}}),
        )],
    ));
    assert_eq!(rows[0][..3], ["db", "2/2", "60m"]);
}

#[test]
fn jobs_and_cron_jobs() {
    let job = |name: &str, spec: Value, status: Value| with_meta(name, json!({"spec": spec, "status": status}));
    let (names, rows) = grid(&build(
        "Job",
        &[
            job(
                "done",
                json!({"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}),
                json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
            ),
            job(
                "running",
                json!({"parallelism": 3}),
                json!({"startTime": "2026-01-01T00:30:00Z", "active": 3}),
            ),
            job("new", json!({}), json!({})),
            job(
                "failed",
                json!({"completions": 2}),
                json!({"succeeded": 1, "conditions": [{"type": "Failed", "status": "True"}]}),
            ),
        ],
    ));
    assert_eq!(names[..5], ["Name", "Status", "Completions", "Duration", "Age"]);
    assert_eq!(rows[0][..5], ["done", "Complete", "1/1", "42s", "60m"]);
    assert_eq!(rows[0][7], "batch.kubernetes.io/controller-uid=u1");
    assert_eq!(rows[1][1..4], ["Running", "0/1 of 3", "30m"]);
    assert_eq!(rows[2][1..4], ["Running", "0/1", ""]);
    assert_eq!(rows[3][1..3], ["Failed", "1/2"]);

    let (names, rows) = grid(&build(
        "CronJob",
        &[
            with_meta(
                "nightly",
                json!({"spec": {"schedule": "0 3 * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "backup"}]}}}}},
                       "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2026-01-01T00:55:00Z"}}),
            ),
            with_meta(
                "tz",
                json!({"spec": {"schedule": "@hourly", "timeZone": "Etc/UTC", "suspend": true}}),
            ),
        ],
    ));
    assert_eq!(
        names[..7],
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age"
        ]
    );
    assert_eq!(
        rows[0][..7],
        ["nightly", "0 3 * * *", "<none>", "False", "1", "5m", "60m"]
    );
    assert_eq!(rows[0][7..], ["b", "backup", "<none>"]);
    assert_eq!(rows[1][..6], ["tz", "@hourly", "Etc/UTC", "True", "0", "<none>"]);
}

#[test]
fn ingresses_and_classes() {
    let (names, rows) = grid(&build(
        "Ingress",
        &[
            with_meta(
                "shop",
                json!({"spec": {"ingressClassName": "weft", "tls": [{"hosts": ["shop.example"]}],
                                "rules": [{"host": "shop.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}]},
                       "status": {"loadBalancer": {"ingress": [{"ip": "172.18.1.5"}]}}}),
            ),
            with_meta("any", json!({"spec": {"defaultBackend": {"service": {"name": "web"}}}})),
        ],
    ));
    assert_eq!(names, ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
    assert_eq!(
        rows[0],
        [
            "shop",
            "weft",
            "shop.example,b.example,c.example + 2 more...",
            "172.18.1.5",
            "80, 443",
            "60m"
        ]
    );
    assert_eq!(rows[1], ["any", "<none>", "*", "", "80", "60m"]);

    let (_, rows) = grid(&build(
        "IngressClass",
        &[
            with_meta(
                "weft",
                json!({"spec": {"controller": "weft.dev/ingress",
                "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external"}}}),
            ),
            with_meta("plain", json!({"spec": {"controller": "example.com/ingress"}})),
        ],
    ));
    assert_eq!(
        rows[0][1..3],
        ["weft.dev/ingress", "IngressParameters.k8s.example.com/external"]
    );
    assert_eq!(rows[1][2], "<none>");
}

#[test]
fn network_policies_show_their_pod_selector() {
    let (names, rows) = grid(&build(
        "NetworkPolicy",
        &[
            with_meta("db", json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}})),
            with_meta("deny-all", json!({"spec": {"podSelector": {}}})),
        ],
    ));
    assert_eq!(names, ["Name", "Pod-Selector", "Age"]);
    assert_eq!(rows[0], ["db", "role=db", "60m"]);
    assert_eq!(rows[1], ["deny-all", "<none>", "60m"]);
}

#[test]
fn events_of_both_apis() {
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web-1.17a"),
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "message": "Container image \"nginx\" already present\n", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2026-01-01T00:50:00Z", "lastTimestamp": "2026-01-01T00:58:00Z", "count": 3});
    let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("web.17b"),
        "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet", "note": "Scaled up",
        "type": "Normal", "reportingController": "deployment-controller", "eventTime": "2026-01-01T00:59:00.000000Z"});
    let (names, rows) = grid(&build("Event", &[core, new]));
    assert_eq!(
        names,
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    assert_eq!(
        rows[0],
        [
            "2m",
            "Normal",
            "Pulled",
            "pod/web-1",
            "spec.containers{web}",
            "kubelet, node-1",
            "Container image \"nginx\" already present",
            "10m",
            "3",
            "web-1.17a"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "60s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up",
            "60s",
            "1",
            "web.17b"
        ]
    );
}

#[test]
fn config_secrets_accounts_bindings_leases_budgets() {
    let (_, rows) = grid(&build(
        "ConfigMap",
        &[with_meta(
            "cfg",
            json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
        )],
    ));
    assert_eq!(rows[0], ["cfg", "3", "60m"]);
    let (names, rows) = grid(&build(
        "Secret",
        &[
            with_meta(
                "tls",
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
            ),
            with_meta(
                "opaque",
                json!({"stringData": {"password": "x"}, "data": {"password": "eA=="}}),
            ),
        ],
    ));
    assert_eq!(names, ["Name", "Type", "Data", "Age"]);
    assert_eq!(rows[0], ["tls", "kubernetes.io/tls", "2", "60m"]);
    assert_eq!(rows[1], ["opaque", "Opaque", "1", "60m"]);
    let (_, rows) = grid(&build("ServiceAccount", &[with_meta("default", json!({}))]));
    assert_eq!(rows[0], ["default", "0", "60m"]);

    let binding = with_meta(
        "read",
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}, {"kind": "User", "name": "bob"}]}),
    );
    let (names, rows) = grid(&build("RoleBinding", std::slice::from_ref(&binding)));
    assert_eq!(names, ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]);
    assert_eq!(
        rows[0],
        ["read", "ClusterRole/view", "60m", "alice, bob", "devs", "tools/ci"]
    );
    let (_, rows) = grid(&build("ClusterRoleBinding", &[binding]));
    assert_eq!(rows[0][1], "ClusterRole/view");

    let (_, rows) = grid(&build(
        "Lease",
        &[with_meta("node-1", json!({"spec": {"holderIdentity": "node-1"}}))],
    ));
    assert_eq!(rows[0], ["node-1", "node-1", "60m"]);
    let (names, rows) = grid(&build(
        "PodDisruptionBudget",
        &[
            with_meta(
                "web",
                json!({"spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}}),
            ),
            with_meta("db", json!({"spec": {"maxUnavailable": "50%"}, "status": {}})),
        ],
    ));
    assert_eq!(names[1..4], ["Min Available", "Max Unavailable", "Allowed Disruptions"]);
    assert_eq!(rows[0], ["web", "2", "N/A", "1", "60m"]);
    assert_eq!(rows[1], ["db", "N/A", "50%", "0", "60m"]);
}

#[test]
fn kinds_without_a_printer_show_when_they_were_created() {
    for kind in ["Role", "ClusterRole", "CustomResourceDefinition", "PriorityClass"] {
        let t = build(kind, &[with_meta("x", json!({}))]);
        let (names, rows) = grid(&t);
        assert_eq!(names, ["Name", "Created At"], "{kind}");
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(rows[0], ["x", "2026-01-01T00:00:00Z"]);
    }
    let (_, rows) = grid(&build("Role", &[json!({"metadata": {"name": "bare"}})]));
    assert_eq!(rows[0][1], "0001-01-01T00:00:00Z");
}

#[test]
fn custom_resources_print_their_columns() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "spec": {"group": "example.com", "versions": [
            {"name": "v1alpha1", "served": true, "storage": false},
            {"name": "v1", "served": true, "storage": true, "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
                 "description": "Whether the widget is ready"},
                {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
                {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
                {"name": "Ports", "type": "string", "jsonPath": ".spec.ports"},
                {"name": "Started", "type": "date", "jsonPath": ".status.startedAt"},
                {"name": "Broken", "jsonPath": ".spec.size"}]}]}});
    let columns = PrinterColumn::from_crd(&crd, "v1");
    assert_eq!(columns.len(), 6, "the column without a type is left out");
    assert!(PrinterColumn::from_crd(&crd, "v1alpha1").is_empty());

    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta("w1"),
        "spec": {"size": 2, "ratio": 0.5, "paused": false, "ports": [80, 443]},
        "status": {"startedAt": "2026-01-01T00:58:00Z", "conditions": [{"type": "Ready", "status": "True"}]}});
    let bare = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta("w2")});
    let t = table(
        "Widget",
        [&widget, &bare],
        IncludeObject::Metadata,
        Some(&columns),
        true,
        now(),
        json!({}),
    );
    let defs = &t["columnDefinitions"];
    assert_eq!(defs[0]["name"], "Name");
    assert_eq!(
        defs[1]["description"],
        "Custom resource definition column (in JSONPath format): .spec.size"
    );
    assert_eq!(defs[2]["description"], "Whether the widget is ready");
    assert_eq!(defs[3]["priority"], 1);
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["w1", 2, "True", 0.5, false, "[80,443]", "2m"])
    );
    assert_eq!(t["rows"][1]["cells"], json!(["w2", null, null, null, null, null, null]));

    // A CRD without columns (or a kind the lab stores without a CRD) shows Age.
    let t = table(
        "Widget",
        [&bare],
        IncludeObject::None,
        Some(&[]),
        true,
        now(),
        json!({}),
    );
    let (names, rows) = grid(&t);
    assert_eq!(names, ["Name", "Age"]);
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    assert_eq!(rows[0], ["w2", "60m"]);
}

#[test]
fn every_printer_fills_every_column_even_for_malformed_objects() {
    let kinds = [
        "Pod",
        "Service",
        "Endpoints",
        "Node",
        "Namespace",
        "Event",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "CronJob",
        "EndpointSlice",
        "Ingress",
        "IngressClass",
        "NetworkPolicy",
        "RoleBinding",
        "ClusterRoleBinding",
        "Lease",
        "PodDisruptionBudget",
        "Role",
    ];
    let odd = [
        json!({}),
        json!(null),
        json!({"metadata": 5, "spec": "x", "status": [], "subsets": {}, "endpoints": "y"}),
        json!({"metadata": {"creationTimestamp": "soon"}, "spec": {"containers": [7], "ports": [null]},
               "status": {"containerStatuses": [{"state": {"terminated": "no"}}], "conditions": [1]}}),
    ];
    for kind in kinds {
        let t = table(kind, &odd, IncludeObject::Object, None, true, now(), json!({}));
        let width = t["columnDefinitions"].as_array().unwrap().len();
        for row in t["rows"].as_array().unwrap() {
            assert_eq!(row["cells"].as_array().unwrap().len(), width, "{kind}: {row}");
        }
    }
}
