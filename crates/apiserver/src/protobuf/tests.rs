//! Bodies the real kubectl sent (captured from `kubectl create ...` into testdata/) and hand-built ones for
//! the special forms and malformed input.

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/src/protobuf/testdata/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    decode(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

use super::wire::{int, len, varint};

fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [len(1, api_version.as_bytes()), len(2, kind.as_bytes())].concat();
    [MAGIC.to_vec(), len(1, &type_meta), len(2, raw)].concat()
}

#[test]
fn configmaps_and_secrets_from_kubectl() {
    // kubectl create configmap cm1 --from-literal=a=1 --from-literal=b=two --from-file=bin=<abc\0\xff>
    assert_eq!(
        fixture("configmap"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"},
               "data": {"a": "1", "b": "two"}, "binaryData": {"bin": "YWJjAP8="}})
    );
    // kubectl create secret generic s1 --from-literal=user=admin --from-literal=pass=p@ss
    assert_eq!(
        fixture("secret-generic"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
               "data": {"pass": "cEBzcw==", "user": "YWRtaW4="}})
    );
    // kubectl create secret tls t1 --cert=tls.crt --key=tls.key (a throwaway self-signed pair)
    let tls = fixture("secret-tls");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let pem = |key: &str| BASE64.decode(tls["data"][key].as_str().unwrap()).unwrap();
    assert!(pem("tls.crt").starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert!(pem("tls.key").starts_with(b"-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn workloads_from_kubectl() {
    // kubectl create deployment web --image=nginx --replicas=2 --port=80
    let template = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]}});
    assert_eq!(
        fixture("deployment"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template, "strategy": {}},
               "status": {}})
    );
    // kubectl create job j1 --image=busybox -- echo hi
    assert_eq!(
        fixture("job"),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j1"},
               "spec": {"template": {"metadata": {}, "spec": {"restartPolicy": "Never",
                   "containers": [{"name": "j1", "image": "busybox", "command": ["echo", "hi"], "resources": {}}]}}},
               "status": {}})
    );
    // kubectl create cronjob cj --image=busybox --schedule='*/1 * * * *' -- date
    let cronjob = fixture("cronjob");
    assert_eq!(cronjob["spec"]["schedule"], "*/1 * * * *");
    assert_eq!(
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
}

#[test]
fn services_namespaces_and_accounts_from_kubectl() {
    // kubectl create service nodeport x --tcp=80:8080: no nodePort (zero, left out), targetPort a number.
    assert_eq!(
        fixture("service-nodeport"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "labels": {"app": "x"}},
               "spec": {"type": "NodePort", "selector": {"app": "x"},
                        "ports": [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
               "status": {"loadBalancer": {}}})
    );
    assert_eq!(
        fixture("namespace"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}, "spec": {}, "status": {}})
    );
    assert_eq!(
        fixture("serviceaccount"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}})
    );
    // kubectl create ingress ig --rule=foo.com/bar=svc1:8080: the rule's value is inlined as in JSON.
    assert_eq!(
        fixture("ingress")["spec"]["rules"][0],
        json!({"host": "foo.com", "http": {"paths": [{"path": "/bar", "pathType": "Exact",
               "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}})
    );
    assert_eq!(
        fixture("resourcequota")["spec"]["hard"],
        json!({"cpu": "1", "memory": "1G", "pods": "2"})
    );
    assert_eq!(fixture("poddisruptionbudget")["spec"]["minAvailable"], 1);
    assert_eq!(fixture("priorityclass")["value"], 1000);
}

#[test]
fn rbac_from_kubectl() {
    assert_eq!(
        fixture("role"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r1"},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    );
    assert_eq!(
        fixture("clusterrole")["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    );
    assert_eq!(
        fixture("rolebinding"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb1"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"},
               "subjects": [{"kind": "ServiceAccount", "name": "sa1", "namespace": "default"}]})
    );
    assert_eq!(
        fixture("clusterrolebinding")["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}])
    );
}

#[test]
fn reviews_and_token_requests_from_kubectl() {
    // kubectl auth can-i get pods
    assert_eq!(
        fixture("selfsubjectaccessreview"),
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
               "spec": {"resourceAttributes": {"namespace": "default", "resource": "pods", "verb": "get"}},
               "status": {"allowed": false}})
    );
    // kubectl auth whoami
    assert_eq!(
        fixture("selfsubjectreview"),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
               "status": {"userInfo": {}}})
    );
    // kubectl create token default [--duration=10m --audience=api]
    assert_eq!(fixture("tokenrequest")["spec"], json!({}));
    assert_eq!(
        fixture("tokenrequest-duration")["spec"],
        json!({"audiences": ["api"], "expirationSeconds": 600})
    );
}

#[test]
fn special_forms_as_go_writes_them_in_json() {
    let time = |seconds: i64, nanos: i64| [int(1, seconds), int(2, nanos)].concat();
    // An Event: MicroTime eventTime (10), Time firstTimestamp (6), a zero Time lastTimestamp (7).
    let event = [
        len(
            1,
            &[len(1, b"e"), len(8, &time(1_796_300_000, 0)), len(3, b"default")].concat(),
        ),
        len(6, &time(1_796_300_000, 0)),
        len(7, &[]),
        len(10, &time(1_796_300_000, 123_456_789)),
        int(8, -1),
    ]
    .concat();
    let v = decode(&body("v1", "Event", &event)).unwrap();
    assert_eq!(v["metadata"]["creationTimestamp"], "2026-12-03T12:13:20Z");
    assert_eq!(v["firstTimestamp"], "2026-12-03T12:13:20Z");
    assert_eq!(v["eventTime"], "2026-12-03T12:13:20.123456Z");
    assert!(v.get("lastTimestamp").is_none(), "a zero Time is left out: {v}");
    assert_eq!(v["count"], -1, "int32s are sign-extended on the wire");

    // A Service port's targetPort as a string (IntOrString type 1) and as a number.
    let port = |target: Vec<u8>| len(1, &[len(1, b"http"), int(3, 80), len(4, &target)].concat());
    let spec = [
        port([int(1, 1), len(3, b"web")].concat()),
        port([int(1, 0), int(2, 8080)].concat()),
    ]
    .concat();
    let v = decode(&body("v1", "Service", &len(2, &spec))).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], "web");
    assert_eq!(v["spec"]["ports"][1]["targetPort"], 8080);

    // Quantities in a map, a RawExtension's embedded JSON, bytes as base64.
    let limits = len(1, &[len(1, b"cpu"), len(2, &len(1, b"500m"))].concat());
    let container = [len(1, b"c"), len(8, &limits)].concat();
    let pod_spec = len(2, &container);
    let v = decode(&body("v1", "Pod", &len(2, &pod_spec))).unwrap();
    assert_eq!(v["spec"]["containers"][0]["resources"]["limits"]["cpu"], "500m");
    let revision = [len(2, &len(1, br#"{"spec":{"x":1}}"#)), int(3, 4)].concat();
    let v = decode(&body("apps/v1", "ControllerRevision", &revision)).unwrap();
    assert_eq!(v["data"], json!({"spec": {"x": 1}}));
    assert_eq!(v["revision"], 4);
}

#[test]
fn zero_scalars_go_leaves_out_are_left_out_and_pointers_kept() {
    // ObjectMeta name "" and generation 0 (non-pointer, omitempty): left out. Deployment replicas 0 (a
    // pointer): kept. Container stdin false (omitempty): left out.
    let meta = len(1, &[len(1, b""), len(2, b"web-"), int(7, 0)].concat());
    let template = len(3, &len(2, &len(2, &[len(1, b"c"), int(16, 0)].concat())));
    let spec = len(2, &[int(1, 0), template].concat());
    let v = decode(&body("apps/v1", "Deployment", &[meta, spec].concat())).unwrap();
    assert_eq!(v["metadata"], json!({"generateName": "web-"}));
    assert_eq!(v["spec"]["replicas"], 0);
    assert_eq!(v["spec"]["template"]["spec"]["containers"][0], json!({"name": "c"}));
}

#[test]
fn packed_and_unpacked_repeated_numbers() {
    // A Pod's securityContext supplementalGroups (repeated int64): two packed, one not.
    let packed = len(4, &[varint(1), varint(2)].concat());
    let ctx = [packed, int(4, 3)].concat();
    let v = decode(&body("v1", "Pod", &len(2, &len(14, &ctx)))).unwrap();
    assert_eq!(v["spec"]["securityContext"]["supplementalGroups"], json!([1, 2, 3]));
}

#[test]
fn malformed_bodies_are_named_errors() {
    assert_eq!(decode(b"{\"kind\": \"ConfigMap\"}"), Err(ProtobufError::Prefix));
    assert_eq!(
        decode(&body("example.com/v1", "Widget", &[])),
        Err(ProtobufError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    assert_eq!(
        decode(&body("v1", "ConfigMap", &[0x0a, 0x05, 0x0a])),
        Err(WireError::Truncated(2).into())
    );
    // A string field sent as a varint.
    let err = decode(&body("v1", "ConfigMap", &len(1, &int(1, 5)))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta.name: wire type Varint where Len was expected"
    );
    // Groups (wire types 3 and 4) and field number 0.
    assert!(matches!(
        decode(&body("v1", "ConfigMap", &[0x0b])),
        Err(ProtobufError::Wire(WireError::WireType { .. }))
    ));
    assert!(matches!(
        decode(&body("v1", "ConfigMap", &[0x02, 0x00])),
        Err(ProtobufError::Wire(WireError::FieldZero(0)))
    ));
    let gzip = [MAGIC.to_vec(), len(3, b"gzip")].concat();
    assert_eq!(decode(&gzip), Err(ProtobufError::Encoding("gzip".into())));
    let long = [MAGIC, &[0x80; 11]].concat();
    assert_eq!(decode(&long), Err(WireError::LongVarint(0).into()));
    let raw = body("apps/v1", "ControllerRevision", &len(2, &len(1, b"{not json")));
    assert!(
        decode(&raw)
            .unwrap_err()
            .to_string()
            .starts_with("k8s.io.api.apps.v1.ControllerRevision.data: embedded object is not JSON")
    );
}

#[test]
fn unknown_fields_are_skipped() {
    // Field 99 of every wire type, then the name.
    let meta = [
        int(99, 1),
        vec![0x99, 0x06],
        vec![0; 8],
        vec![0x9d, 0x06],
        vec![0; 4],
        len(99, b"x"),
        len(1, b"cm"),
    ]
    .concat();
    let v = decode(&body("v1", "ConfigMap", &len(1, &meta))).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    );
}

/// Every truncation and many byte flips of the captured bodies: an object or an error, never a panic.
#[test]
fn damaged_bodies_never_panic() {
    let dir = format!("{}/src/protobuf/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for entry in std::fs::read_dir(dir).unwrap() {
        let good = std::fs::read(entry.unwrap().path()).unwrap();
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
        for _ in 0..500 {
            let mut bad = good.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % bad.len() as u64) as usize;
                bad[i] = (seed >> 32) as u8;
            }
            let _ = decode(&bad);
        }
    }
}
