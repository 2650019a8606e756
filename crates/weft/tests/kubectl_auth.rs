//! Authorization with the real kubectl: `auth can-i` and `--as` for a ServiceAccount before and after a
//! RoleBinding, `auth whoami`, `create token` used as a bearer token, a 401 without credentials, and the token a
//! pod finds at /var/run/secrets/kubernetes.io/serviceaccount reaching the API through the `kubernetes` Service.

mod lab;

use lab::*;
use std::process::{Command, Output};

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'env; exec sleep infinity']}
---
apiVersion: v1
kind: Pod
metadata: {name: tokenless}
spec:
  automountServiceAccountToken: false
  containers:
  - {name: c, image: busybox, command: [sleep, infinity]}
";

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

struct Kubectl {
    config: std::path::PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

/// `curl -sk` against the API on the host; answers the HTTP code and the body.
fn curl(url: &str, headers: &[String]) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-sk", "-w", "\n%{http_code}", url]);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = text(&c.output().unwrap().stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or_default();
    (code.to_string(), body.to_string())
}

#[test]
fn service_accounts_tokens_and_rbac_with_kubectl() {
    if !root() {
        return;
    }
    // The lab's test kubeconfig: `lab up` merges its context there, not into the user's.
    let lab = Lab::up(1, "host-gw", PODS);
    let kubectl = Kubectl {
        config: lab.kubeconfig(),
    };
    lab.ready_pods();
    let server = kubectl.ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");

    // The ServiceAccount controller made `default`; RBAC gives it nothing yet.
    lab.wait(30, "the default ServiceAccount", || {
        kubectl.run(&["get", "sa", "default"]).status.success().then_some(())
    });
    let sa = "system:serviceaccount:default:default";
    let out = kubectl.run(&["auth", "can-i", "list", "pods", "--as", sa]);
    assert_eq!((text(&out.stdout).trim(), out.status.code()), ("no", Some(1)));
    assert_eq!(kubectl.ok(&["auth", "can-i", "list", "pods"]).trim(), "yes");
    let who = kubectl.ok(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert!(
        who.starts_with("kubernetes-admin ") && who.contains("system:masters"),
        "{who}"
    );
    let who = kubectl.ok(&["auth", "whoami", "--as", sa, "-o", "jsonpath={.status.userInfo.groups}"]);
    assert!(who.contains("system:serviceaccounts:default"), "{who}");

    // A token from `kubectl create token` is a bearer credential for the ServiceAccount.
    let token = kubectl.ok(&["create", "token", "default"]).trim().to_string();
    let bearer = vec![format!("Authorization: Bearer {token}")];
    let pods_url = format!("{server}/api/v1/namespaces/default/pods");
    let (code, body) = curl(&pods_url, &bearer);
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains(
            "pods is forbidden: User \\\"system:serviceaccount:default:default\\\" cannot list resource \\\"pods\\\" in API group \\\"\\\" in the namespace \\\"default\\\""
        ),
        "{body}"
    );
    // Discovery is open to every authenticated user; impersonation is not.
    assert_eq!(curl(&format!("{server}/apis"), &bearer).0, "200");
    let as_admin = [bearer.clone(), vec!["Impersonate-User: kubernetes-admin".to_string()]].concat();
    assert_eq!(curl(&pods_url, &as_admin).0, "403");
    // No credentials, or a bad token: 401.
    assert_eq!(curl(&format!("{server}/api/v1/pods"), &[]).0, "401");
    assert_eq!(curl(&pods_url, &[format!("Authorization: Bearer {token}x")]).0, "401");
    // `--duration` is the token's life, 10 minutes at least, as kube-apiserver bounds it.
    let life = |token: &str| {
        let c = claims(token);
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap()
    };
    assert_eq!(
        life(&kubectl.ok(&["create", "token", "default", "--duration=10m"])),
        600
    );
    assert_eq!(life(&token), 3600);
    let out = kubectl.run(&["create", "token", "default", "--duration=5m"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("may not specify a duration less than 10 minutes"),
        "{}",
        text(&out.stderr)
    );

    // Bound to `view` in its namespace, it may list pods there and nowhere else.
    kubectl.ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    assert_eq!(kubectl.ok(&["auth", "can-i", "list", "pods", "--as", sa]).trim(), "yes");
    let out = kubectl.run(&["auth", "can-i", "list", "pods", "--as", sa, "-n", "kube-system"]);
    assert_eq!(text(&out.stdout).trim(), "no");
    let rules = kubectl.ok(&["auth", "can-i", "--list", "--as", sa]);
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{rules}"
    );
    let (code, body) = curl(&pods_url, &bearer);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"client\""), "{body}");

    // Allowed to write Roles and RoleBindings, it still cannot grant more than it holds (RBAC's escalation check).
    kubectl.ok(&[
        "create",
        "role",
        "rbac-writer",
        "--verb=create",
        "--resource=roles,rolebindings",
    ]);
    kubectl.ok(&[
        "create",
        "rolebinding",
        "sa-rbac-writer",
        "--role=rbac-writer",
        "--serviceaccount=default:default",
    ]);
    kubectl.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get",
        "--resource=pods",
        "--as",
        sa,
    ]);
    let out = kubectl.run(&[
        "create",
        "role",
        "pod-deleter",
        "--verb=delete",
        "--resource=pods",
        "--as",
        sa,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        text(&out.stderr)
    );
    let out = kubectl.run(&[
        "create",
        "rolebinding",
        "self-admin",
        "--clusterrole=admin",
        "--serviceaccount=default:default",
        "--as",
        sa,
    ]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("forbidden"),
        "{}",
        text(&out.stderr)
    );
    let out = kubectl.run(&["auth", "can-i", "delete", "pods", "--as", sa]);
    assert_eq!(text(&out.stdout).trim(), "no");

    // Inside a pod: its own token, the CA and the namespace, and the API behind the `kubernetes` Service.
    assert_eq!(
        text(&lab.exec("client", &["cat", &format!("{SA_DIR}/namespace")]).stdout),
        "default"
    );
    // The container's environment, as its command printed it.
    let env = kubectl.ok(&["logs", "client"]);
    assert!(
        env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1\n") && env.contains("KUBERNETES_SERVICE_PORT=443\n"),
        "{env}"
    );
    let in_pod = format!(
        "curl -s -w '\\n%{{http_code}}' --cacert {SA_DIR}/ca.crt -H \"Authorization: Bearer $(cat {SA_DIR}/token)\" \
         https://kubernetes.default.svc/api/v1/namespaces/default/pods"
    );
    let out = text(&lab.exec("client", &["sh", "-c", &in_pod]).stdout);
    assert!(out.ends_with("\n200") && out.contains("\"tokenless\""), "{out}");
    // The pod that opted out has nothing mounted.
    let out = lab.exec("tokenless", &["ls", SA_DIR]);
    assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));

    // The pod's token dies with its pod; it lives as long as kubelet asks (the kubelet renews it before that).
    let pod_token = text(&lab.exec("client", &["cat", &format!("{SA_DIR}/token")]).stdout);
    assert_eq!(life(&pod_token), 3607);
    let pod_bearer = vec![format!("Authorization: Bearer {pod_token}")];
    assert_eq!(curl(&pods_url, &pod_bearer).0, "200");
    kubectl.ok(&["delete", "pod", "client", "--wait=true"]);
    assert_eq!(curl(&pods_url, &pod_bearer).0, "401");

    drop(lab);
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let body = token.trim().split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .expect("base64url");
    serde_json::from_slice(&json).expect("JSON claims")
}
