//! The real kubectl's typed commands against a lab: `create configmap|secret|deployment|service|...`,
//! `auth can-i|whoami` and `create token` send Kubernetes protobuf bodies (`run` sends JSON, checked alongside),
//! and what they asked for is stored.

mod lab;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use lab::*;
use serde_json::Value;
use std::process::{Command, Output};

/// kubectl with the lab's own kubeconfig, so that no user's configuration is read or changed.
struct Kubectl {
    config: String,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

#[test]
fn kubectl_typed_commands_send_protobuf() {
    if !root() || Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        return;
    }
    let lab = Lab {
        name: format!("kc{}", std::process::id() % 100_000),
    };
    let dir = std::env::temp_dir().join(format!("weft-{}", lab.name));
    std::fs::create_dir_all(&dir).unwrap();
    // `lab up` merges its context into $KUBECONFIG: a private one keeps the user's untouched.
    let up = lab
        .cmd(&["lab", "up", "--nodes", "1"])
        .env("KUBECONFIG", dir.join("merged"))
        .output()
        .unwrap();
    assert!(up.status.success(), "lab up failed: {}", text(&up.stderr));
    let config = write(&dir, "config", &lab.ok(&["lab", "kubeconfig"]));
    let k = Kubectl {
        config: config.display().to_string(),
    };

    // ConfigMap: text and binary data.
    let bin = dir.join("bin");
    std::fs::write(&bin, b"abc\0\xff").unwrap();
    k.ok(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=a=1",
        &format!("--from-file=bin={}", bin.display()),
    ]);
    let cm = k.json(&["get", "configmap", "cm"]);
    assert_eq!(cm["data"]["a"], "1");
    assert_eq!(cm["binaryData"]["bin"], "YWJjAP8=");

    // Secrets: generic, and TLS with the lab's admin certificate and key.
    k.ok(&["create", "secret", "generic", "s", "--from-literal=user=admin"]);
    let s = k.json(&["get", "secret", "s"]);
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    for (file, key) in [("tls.crt", "client-certificate-data"), ("tls.key", "client-key-data")] {
        let data = k.ok(&[
            "config",
            "view",
            "--raw",
            "-o",
            &format!("jsonpath={{.users[0].user.{key}}}"),
        ]);
        let pem = BASE64.decode(data.trim()).unwrap();
        std::fs::write(dir.join(file), pem).unwrap();
    }
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    k.ok(&[
        "create",
        "secret",
        "tls",
        "t",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ]);
    let t = k.json(&["get", "secret", "t"]);
    assert_eq!(t["type"], "kubernetes.io/tls");
    assert!(t["data"]["tls.crt"].as_str().is_some_and(|c| !c.is_empty()), "{t}");

    // Workloads.
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
        "--port=80",
    ]);
    let d = k.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (&container["image"], &container["ports"][0]["containerPort"]),
        (&"nginx".into(), &80.into())
    );
    k.ok(&["create", "job", "once", "--image=busybox", "--", "echo", "hi"]);
    let j = k.json(&["get", "job", "once"]);
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    k.ok(&[
        "run",
        "solo",
        "--image=nginx",
        "--port=80",
        "--env=A=1",
        "--labels=app=solo",
    ]);
    let p = k.json(&["get", "pod", "solo"]);
    assert_eq!(p["metadata"]["labels"]["app"], "solo");
    assert_eq!(
        p["spec"]["containers"][0]["env"][0],
        serde_json::json!({"name": "A", "value": "1"})
    );

    // Services, namespaces, service accounts.
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let svc = k.json(&["get", "service", "np"]);
    assert_eq!(svc["spec"]["type"], "NodePort");
    let port = &svc["spec"]["ports"][0];
    assert_eq!((&port["port"], &port["targetPort"]), (&80.into(), &8080.into()));
    assert!(
        port["nodePort"].as_i64().is_some_and(|p| p >= 30000),
        "a node port is allocated: {svc}"
    );
    k.ok(&["create", "namespace", "team"]);
    assert_eq!(k.json(&["get", "namespace", "team"])["metadata"]["name"], "team");
    k.ok(&["create", "serviceaccount", "bot"]);
    assert_eq!(k.json(&["get", "serviceaccount", "bot"])["metadata"]["name"], "bot");

    // RBAC.
    k.ok(&["create", "role", "reader", "--verb=get,list", "--resource=pods"]);
    let role = k.json(&["get", "role", "reader"]);
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get", "list"]));
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    k.ok(&[
        "create",
        "rolebinding",
        "bot-reads",
        "--role=reader",
        "--serviceaccount=default:bot",
    ]);
    let rb = k.json(&["get", "rolebinding", "bot-reads"]);
    assert_eq!(rb["roleRef"]["name"], "reader");
    assert_eq!(rb["subjects"][0]["kind"], "ServiceAccount");
    k.ok(&["create", "clusterrole", "node-reader", "--verb=get", "--resource=nodes"]);
    assert_eq!(
        k.json(&["get", "clusterrole", "node-reader"])["rules"][0]["resources"],
        serde_json::json!(["nodes"])
    );

    // Reviews and tokens.
    assert_eq!(k.ok(&["auth", "can-i", "get", "pods"]).trim(), "yes");
    let whoami = k.json(&["auth", "whoami"]);
    assert!(whoami["status"]["userInfo"]["username"].is_string(), "{whoami}");
    // The lab issues no tokens yet; the TokenRequest body is read all the same (its decoding is unit-tested in
    // weft-apiserver): whatever the answer, it is not about the body's format.
    let token = k.run(&["create", "token", "default"]);
    let err = text(&token.stderr);
    assert!(
        token.status.success() || !(err.contains("format") || err.contains("protobuf")),
        "{err}"
    );

    let _ = std::fs::remove_dir_all(&dir);
    // `lab` is taken down on drop, also when an assertion above failed.
}

fn write(dir: &std::path::Path, name: &str, data: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}
