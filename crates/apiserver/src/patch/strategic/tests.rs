use super::*;
use crate::patch::Status;
use serde_json::json;

fn smp(group: &str, kind: &str, current: Value, body: Value) -> Result<Value> {
    let out = patch(group, kind, &current, body.to_string().as_bytes());
    if let Ok(v) = &out {
        assert_no_directives(v);
    }
    out
}

fn assert_no_directives(v: &Value) {
    match v {
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            assert!(!k.starts_with('$'), "directive {k} left in the object");
            assert_no_directives(v);
        }),
        Value::Array(items) => items.iter().for_each(assert_no_directives),
        _ => {}
    }
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "annotations": {"a": "1"}},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "finalizers": ["a", "b"]},
           "spec": {"replicas": 2,
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"tolerations": [{"key": "a"}, {"key": "b"}],
                                          "containers": [
                    {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "busybox"}]}}}})
}

fn containers(d: &Value) -> &Vec<Value> {
    d["spec"]["template"]["spec"]["containers"].as_array().unwrap()
}

#[test]
fn client_side_apply_of_a_changed_service_port_keeps_the_rest_of_the_port() {
    let body = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                      "spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"port": 80, "targetPort": 9090}]}});
    let out = smp("", "Service", service(), body).unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}])
    );
    assert_eq!(out["metadata"]["annotations"]["a"], "1");
    assert_eq!(out["spec"]["selector"], json!({"app": "web"}));
}

#[test]
fn client_side_apply_of_a_deployment_merges_containers_by_name() {
    let body = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"name": "web", "image": "nginx:2",
                        "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                        "env": [{"name": "C", "value": "3"}]}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    let c = containers(&out);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["image"], "nginx:2");
    assert_eq!(c[0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
    assert_eq!(c[0]["readinessProbe"]["httpGet"]["port"], 80);
    let env: Vec<&str> = c[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["A", "C", "B"]);
    assert_eq!(c[1]["name"], "sidecar");
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items_in_place() {
    let current = json!({"kind": "Pod", "spec": {"containers": [
        {"name": "a"}, {"name": "server"}, {"name": "b"}, {"name": "c"}]}});
    let body = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}});
    let out = smp("", "Pod", current, body).unwrap();
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // The server had "server" before "c": apimachinery places it first.
    assert_eq!(names, ["server", "c", "a", "b"]);
}

#[test]
fn set_element_order_inconsistent_with_the_patch_list_is_refused() {
    let body = json!({"spec": {"$setElementOrder/ports": [{"port": 80}],
                               "ports": [{"port": 81, "targetPort": 1}]}});
    let err = smp("", "Service", service(), body).unwrap_err();
    assert_eq!(err.status(), Status::InternalError);
    assert_eq!(
        err.to_string(),
        "The order in patch list:\n[map[port:81 targetPort:1]]\n doesn't match $setElementOrder list:\n[map[port:80]]\n"
    );
    let body = json!({"spec": {"$setElementOrder/ports": "80"}});
    assert_eq!(
        smp("", "Service", service(), body).unwrap_err().to_string(),
        "expected a []interface {}, but received a string"
    );
}

#[test]
fn null_deletes_and_maps_merge() {
    let body =
        json!({"metadata": {"annotations": {"a": null, "b": "2"}}, "spec": {"selector": null, "type": "NodePort"}});
    let out = smp("", "Service", service(), body).unwrap();
    assert_eq!(out["metadata"]["annotations"], json!({"b": "2"}));
    assert!(out["spec"].get("selector").is_none());
    assert_eq!(out["spec"]["type"], "NodePort");
    assert_eq!(out["spec"]["ports"][0]["port"], 80);
}

#[test]
fn nulls_in_new_values_are_dropped() {
    let body = json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": null}, "x": 1}}});
    let out = smp("", "Service", service(), body).unwrap();
    assert_eq!(out["spec"]["sessionAffinityConfig"], json!({"clientIP": {}, "x": 1}));
}

#[test]
fn primitive_lists_with_merge_strategy_union_and_delete() {
    let body = json!({"metadata": {"finalizers": ["b", "c"]}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let body = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["d", "b"]));
    let body =
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "$setElementOrder/finalizers": ["b"]}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    let body = json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}});
    assert_eq!(
        smp("apps", "Deployment", deployment(), body).unwrap_err(),
        PatchError::BadRequest("invalid patch format of primitive list".into())
    );
}

#[test]
fn lists_without_strategy_are_replaced() {
    let body = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "c"}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "c"}]));
}

#[test]
fn patch_delete_removes_a_container() {
    let body = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    let c = containers(&out);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["name"], "web");
    let body = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}});
    assert_eq!(
        smp("apps", "Deployment", deployment(), body).unwrap_err().to_string(),
        "map: map[$patch:delete] does not contain declared merge key: name"
    );
}

#[test]
fn patch_replace_on_a_list_and_on_a_map() {
    let body = json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(containers(&out), &vec![json!({"name": "only", "image": "x"})]);
    let body = json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let body = json!({"spec": {"strategy": {"$patch": "delete"}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({}));
    let body = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "merge"}]}}}});
    assert_eq!(
        smp("apps", "Deployment", deployment(), body).unwrap_err().to_string(),
        "merging lists cannot yet be specified in the patch"
    );
    let body = json!({"spec": {"strategy": {"$patch": "bogus"}}});
    assert_eq!(
        smp("apps", "Deployment", deployment(), body).unwrap_err().to_string(),
        "Unknown patch type: bogus in map: map[$patch:bogus]"
    );
}

#[test]
fn retain_keys_drops_rolling_update_when_switching_to_recreate() {
    let body = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let body = json!({"spec": {"strategy": {"$retainKeys": ["type"]}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "RollingUpdate"}));
    let body = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}});
    assert_eq!(
        smp("apps", "Deployment", deployment(), body).unwrap_err(),
        PatchError::BadRequest("invalid patch format of retainKeys".into())
    );
}

#[test]
fn new_items_and_fields_lose_their_directives() {
    let body = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "new", "$setElementOrder/ports": [{"containerPort": 1}], "ports": [{"containerPort": 1}]}],
        "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    assert_eq!(
        containers(&out)[0],
        json!({"name": "new", "ports": [{"containerPort": 1}]})
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "v", "emptyDir": {}}])
    );
}

#[test]
fn patch_items_keep_the_patch_order_and_go_first() {
    let body =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "new"}, {"name": "web", "image": "x"}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    let names: Vec<&str> = containers(&out).iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["new", "web", "sidecar"]);
}

#[test]
fn node_status_conditions_merge_by_type() {
    let node = json!({"kind": "Node", "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
                                                 "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
    let body = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}],
                                 "addresses": [{"type": "Hostname", "address": "n1"}]}});
    let out = smp("", "Node", node, body).unwrap();
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
    );
    assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
}

#[test]
fn kinds_without_a_go_struct_are_unsupported() {
    let err = smp("cert-manager.io", "Certificate", json!({}), json!({"spec": {}})).unwrap_err();
    assert_eq!(err.status(), Status::UnsupportedMediaType);
    assert_eq!(
        err.to_string(),
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    assert!(
        PatchError::unsupported_media_type("apps", "Deployment")
            .to_string()
            .contains("strategic-merge-patch")
    );
}

#[test]
fn built_in_kinds_without_list_facts_merge_as_maps() {
    let cm = json!({"kind": "ConfigMap", "data": {"a": "1", "b": "2"}});
    let out = smp("", "ConfigMap", cm, json!({"data": {"a": null, "c": "3"}})).unwrap();
    assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
}

#[test]
fn malformed_patches_get_the_apiservers_errors() {
    let cases: &[(&[u8], Status, &str)] = &[
        (b"{", Status::BadRequest, "unexpected end of JSON input"),
        (
            b"[1]",
            Status::BadRequest,
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        (
            b"{\"spec\":{\"ports\":[[1]]}}",
            Status::Invalid,
            "the server rejected our request due to an error in our request",
        ),
        (
            b"{\"spec\":{\"ports\":[1,\"a\"]}}",
            Status::InternalError,
            "list element types are not identical: [[map[name:http port:80 protocol:TCP targetPort:8080]] [1 a]]",
        ),
        (
            b"{\"spec\":{\"ports\":[{\"name\":\"x\"}]}}",
            Status::InternalError,
            "map: map[name:x] does not contain declared merge key: port",
        ),
    ];
    for (body, status, message) in cases {
        let err = patch("", "Service", &service(), body).unwrap_err();
        assert_eq!((err.status(), err.to_string().as_str()), (*status, *message));
    }
    assert_eq!(patch("", "Service", &service(), b"null").unwrap(), service());
}

#[test]
fn client_side_apply_removing_a_port_and_an_env_var() {
    let body = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"name": "web",
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"$patch": "delete", "name": "B"}],
                        "ports": [{"$patch": "delete", "containerPort": 80}],
                        "readinessProbe": null}]}}}});
    let out = smp("apps", "Deployment", deployment(), body).unwrap();
    let web = &containers(&out)[0];
    assert_eq!(web["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(web["ports"], json!([]));
    assert!(web.get("readinessProbe").is_none());
    assert_eq!(web["image"], "nginx:1");
}

#[test]
fn owner_references_merge_by_uid() {
    let current = json!({"kind": "Pod", "metadata": {"ownerReferences": [{"uid": "1", "name": "rs-a"}, {"uid": "2", "name": "rs-b"}]}});
    let body =
        json!({"metadata": {"ownerReferences": [{"uid": "2", "controller": true}, {"uid": "1", "$patch": "delete"}]}});
    let out = smp("", "Pod", current, body).unwrap();
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "2", "name": "rs-b", "controller": true}])
    );
}
