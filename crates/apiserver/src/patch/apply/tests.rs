use super::*;
use crate::patch::Status;
use serde_json::json;

const T1: &str = "2026-12-03T10:00:00Z";
const T2: &str = "2026-12-03T11:00:00Z";

fn config(replicas: u32, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"replicas": replicas,
                    "template": {"spec": {"containers": containers}}}})
}

fn web() -> Value {
    json!([{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}])
}

fn ssa(current: Option<&Value>, applied: &Value, manager: &str, force: bool) -> Result<Value, PatchError> {
    server_side_apply("apps", "Deployment", current, applied, manager, force, T2)
}

fn managed(object: &Value, manager: &str, operation: &str) -> Option<Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .cloned()
}

#[test]
fn apply_creates_the_object_and_records_what_it_applied() {
    let created = server_side_apply("apps", "Deployment", None, &config(2, web()), "kubectl", false, T1).unwrap();
    assert_eq!(created["spec"]["replicas"], 2);
    assert_eq!(created["metadata"]["name"], "web");
    let entry = managed(&created, "kubectl", "Apply").unwrap();
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["time"], T1);
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                   ".": {}, "f:image": {}, "f:name": {},
                   "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}})
    );
}

#[test]
fn reapply_updates_values_and_keeps_fields_of_others() {
    let created = ssa(None, &config(2, web()), "kubectl", false).unwrap();
    let mut live = created.clone();
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
    let updated = ssa(Some(&live), &config(3, web()), "kubectl", false).unwrap();
    assert_eq!(updated["spec"]["replicas"], 3);
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    assert_eq!(updated["metadata"]["managedFields"].as_array().unwrap().len(), 1);
}

#[test]
fn changing_a_field_another_manager_owns_conflicts_unless_forced() {
    let created = ssa(None, &config(2, web()), "kubectl", false).unwrap();
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(
        "apps",
        "Deployment",
        Some(&created),
        &mut scaled,
        "kube-controller-manager",
        T2,
    );

    let err = ssa(Some(&scaled), &config(3, web()), "kubectl", false).unwrap_err();
    assert_eq!(err.status(), Status::Conflict);
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" using apps/v1: .spec.replicas"
    );
    let PatchError::Conflict { conflicts, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        conflicts,
        &[Conflict {
            message: "conflict with \"kube-controller-manager\" using apps/v1".into(),
            field: ".spec.replicas".into()
        }]
    );

    // The same value is shared ownership, not a conflict.
    let shared = ssa(Some(&scaled), &config(5, web()), "kubectl", false).unwrap();
    assert_eq!(shared["spec"]["replicas"], 5);

    let forced = ssa(Some(&scaled), &config(3, web()), "kubectl", true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(managed(&forced, "kube-controller-manager", "Update").is_none());
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let created = ssa(None, &config(2, web()), "a", false).unwrap();
    let err = ssa(
        Some(&created),
        &config(3, json!([{"name": "web", "image": "nginx:2"}])),
        "b",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
    let two = json!([{"name": "web", "image": "nginx:1"}, {"name": "sidecar", "image": "busybox"}]);
    let mut cfg = config(2, two);
    cfg["metadata"]["labels"]["tier"] = json!("fe");
    let created = ssa(None, &cfg, "kubectl", false).unwrap();
    let updated = ssa(
        Some(&created),
        &config(2, json!([{"name": "web", "image": "nginx:1"}])),
        "kubectl",
        false,
    )
    .unwrap();
    assert_eq!(updated["metadata"]["labels"], json!({"app": "web"}));
    let names: Vec<&str> = updated["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);

    // Another applier also owning the label keeps it.
    let other =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "fe"}}});
    let both = ssa(Some(&created), &other, "other", false).unwrap();
    let kept = ssa(
        Some(&both),
        &config(2, json!([{"name": "web", "image": "nginx:1"}])),
        "kubectl",
        false,
    )
    .unwrap();
    assert_eq!(kept["metadata"]["labels"]["tier"], "fe");
}

#[test]
fn service_ports_are_keyed_by_port_and_protocol() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                     "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let created = server_side_apply("", "Service", None, &svc, "kubectl", false, T1).unwrap();
    let fields = &managed(&created, "kubectl", "Apply").unwrap()["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    assert!(
        fields["f:spec"]["f:ports"]
            .get("k:{\"port\":80,\"protocol\":\"TCP\"}")
            .is_some()
    );
    let mut live = created.clone();
    live["spec"]["ports"][0]["protocol"] = json!("TCP");
    let mut changed = svc.clone();
    changed["spec"]["ports"][0]["targetPort"] = json!(9090);
    let out = server_side_apply("", "Service", Some(&live), &changed, "kubectl", false, T2).unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090, "protocol": "TCP"}])
    );
}

#[test]
fn applied_managed_fields_are_refused() {
    let mut cfg = config(1, web());
    cfg["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        ssa(None, &cfg, "kubectl", false).unwrap_err(),
        PatchError::BadRequest("metadata.managedFields must be nil".into())
    );
}

#[test]
fn apply_bodies_are_yaml_or_json() {
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
    assert_eq!(parse_apply_body(yaml).unwrap()["data"]["a"], "1");
    assert_eq!(
        parse_apply_body(br#"{"kind":"ConfigMap"}"#).unwrap()["kind"],
        "ConfigMap"
    );
    for bad in [&b"- a\n- b\n"[..], b"a: [", b""] {
        assert_eq!(parse_apply_body(bad).unwrap_err().status(), Status::BadRequest);
    }
}

#[test]
fn updates_take_changed_fields_from_other_managers_and_removed_fields_from_all() {
    let mut created = config(2, web());
    record_update("apps", "Deployment", None, &mut created, "kubectl-create", T1);
    let entry = managed(&created, "kubectl-create", "Update").unwrap();
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["fieldsV1"]["f:spec"]["f:replicas"], json!({}));

    let mut patched = created.clone();
    patched["spec"]["replicas"] = json!(4);
    patched["metadata"]["labels"] = json!({});
    record_update("apps", "Deployment", Some(&created), &mut patched, "kubectl-patch", T2);
    let create = managed(&patched, "kubectl-create", "Update").unwrap();
    assert!(create["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert!(create["fieldsV1"]["f:metadata"].get("f:labels").is_none());
    let patch = managed(&patched, "kubectl-patch", "Update").unwrap();
    assert_eq!(patch["fieldsV1"]["f:spec"], json!({"f:replicas": {}}));
    assert_eq!(patch["time"], T2);

    // A write that changes nothing adds no entry.
    let mut same = patched.clone();
    record_update("apps", "Deployment", Some(&patched), &mut same, "noop", T2);
    assert!(managed(&same, "noop", "Update").is_none());
}

#[test]
fn applied_items_keep_the_applied_order_around_live_only_items() {
    let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                      "spec": {"template": {"spec": {"containers": [
                          {"name": "web", "image": "a"}, {"name": "injected", "image": "b"}]}}}});
    let cfg = config(1, json!([{"name": "new", "image": "c"}, {"name": "web", "image": "a"}]));
    let out = ssa(Some(&live), &cfg, "kubectl", false).unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new", "web", "injected"]);
}

#[test]
fn kubectl_takes_over_fields_its_client_side_apply_set() {
    let mut last = config(2, web());
    let mut live = last.clone();
    live["metadata"]["annotations"] = json!({LAST_APPLIED: last.to_string()});
    record_update("apps", "Deployment", None, &mut live, "kubectl-client-side-apply", T1);

    // kubectl (not another manager) may change what its last-applied-configuration set.
    let upgraded = ssa(Some(&live), &config(3, web()), "kubectl", false).unwrap();
    assert_eq!(upgraded["spec"]["replicas"], 3);
    let annotation: Value = serde_json::from_str(last_applied(&upgraded).unwrap()).unwrap();
    assert_eq!(annotation, config(3, web()));
    assert_eq!(
        ssa(Some(&live), &config(3, web()), "helm", false).unwrap_err().status(),
        Status::Conflict
    );

    // A field changed since the last client-side apply stays a conflict.
    last["spec"]["replicas"] = json!(7);
    live["metadata"]["annotations"][LAST_APPLIED] = json!(last.to_string());
    let err = ssa(Some(&live), &config(3, web()), "kubectl", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
}
