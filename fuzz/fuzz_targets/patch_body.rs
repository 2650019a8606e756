//! Arbitrary bytes as a PATCH body of each patch type against a fixed Deployment and Service: weft-apiserver's
//! patch engines must answer with an object or an error, never panic; a patched object must also survive the
//! ownership bookkeeping every write does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use weft_apiserver::patch::{PatchType, parse_apply_body, patch, record_update, server_side_apply};

const NOW: &str = "2026-01-01T00:00:00Z";

fuzz_target!(|data: &[u8]| {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["a"], "labels": {"app": "web"}},
        "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                 "template": {"spec": {"containers": [{"name": "web", "image": "nginx",
                     "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]}]}}}});
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
    for (group, kind, current) in [("apps", "Deployment", &deployment), ("", "Service", &service)] {
        for patch_type in [PatchType::Json, PatchType::Merge, PatchType::Strategic] {
            if let Ok(mut patched) = patch(group, kind, current, patch_type, data) {
                record_update(group, kind, Some(current), &mut patched, "fuzz", NOW);
            }
        }
        if let Ok(applied) = parse_apply_body(data) {
            for force in [false, true] {
                let _ = server_side_apply(group, kind, Some(current), &applied, "fuzz", force, NOW);
            }
            let _ = server_side_apply(group, kind, None, &applied, "fuzz", false, NOW);
        }
    }
});
