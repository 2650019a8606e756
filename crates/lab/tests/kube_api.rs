//! The lab's store behind the real API server, driven by the real kubectl and curl over HTTPS, without building a
//! lab's network (no root needed): custom resources, conflicts, dry runs, finalizers, watches, bad input.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use weft_apiserver::pki::{Pki, ServerNames};
use weft_lab::kube_api::LabCluster;
use weft_lab::store::Store;
use weft_lab::supervisor::Shared;

struct Server {
    dir: PathBuf,
    kubeconfig: PathBuf,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// A store with the built-in namespaces behind an API server on 127.0.0.1, and an admin kubeconfig.
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!("weft-kube-api-{}", weft_apiserver::names::new_uid()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec: weft_lab::LabSpec = serde_json::from_value(json!({
            "name": format!("api-{}", &weft_apiserver::names::new_uid()[..8]),
            "nodes": 1, "overlay": "host-gw", "clusterCidr": "10.244.0.0/16",
            "cniBin": "/nonexistent", "weftBin": "/nonexistent",
        }))
        .unwrap();
        let shared = Arc::new(Shared::new(spec, Store::open(dir.join("objects.json")).unwrap()));
        shared.write(|store| {
            for ns in ["default", "kube-system"] {
                let value = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                store.create(weft_model::manifest::from_value(value).unwrap()).unwrap();
            }
        });
        let names = ServerNames::for_lab([127, 0, 0, 1].into(), [10, 96, 0, 1].into(), "cluster.local");
        let pki = Pki::load_or_create(&dir.join("pki"), "test", &names).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = weft_apiserver::Api::new(Arc::new(LabCluster(shared)), None);
        let running = weft_apiserver::server::start(vec![listener], pki.server_config(), Arc::new(api), 1).unwrap();
        let url = format!("https://{}", running.addresses[0]);
        let admin = pki.admin();
        let kubeconfig = dir.join("kubeconfig");
        let text = weft_apiserver::kubeconfig::standalone("test", &url, pki.ca_pem(), &admin.cert_pem, &admin.key_pem)
            .unwrap();
        std::fs::write(&kubeconfig, text).unwrap();
        for (name, body) in [
            ("ca.crt", pki.ca_pem()),
            ("admin.crt", &admin.cert_pem),
            ("admin.key", &admin.key_pem),
        ] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        Server { dir, kubeconfig, url }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env("HOME", &self.dir).env("KUBECACHEDIR", self.dir.join("cache"));
        run(cmd, stdin)
    }

    /// kubectl that must succeed; its stdout.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; its stderr.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A raw request with curl as the admin (or anonymously): (HTTP code, body).
    fn curl(&self, method: &str, path: &str, headers: &[&str], body: Option<&[u8]>, admin: bool) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert"]);
        cmd.arg(self.dir.join("ca.crt"));
        if admin {
            cmd.arg("--cert").arg(self.dir.join("admin.crt"));
            cmd.arg("--key").arg(self.dir.join("admin.key"));
        }
        for h in headers {
            cmd.args(["-H", h]);
        }
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{path}", self.url));
        let out = run(cmd, body.map(|b| std::str::from_utf8(b).unwrap_or_default()));
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

impl Server {
    /// The events of a watch that ends by itself (`timeoutSeconds` in `path`), as the admin.
    fn watch(&self, path: &str) -> Vec<Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--cacert"]).arg(self.dir.join("ca.crt"));
        cmd.arg("--cert").arg(self.dir.join("admin.crt"));
        cmd.arg("--key").arg(self.dir.join("admin.key"));
        cmd.arg(format!("{}{path}", self.url));
        let out = run(cmd, None);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

fn tools() -> bool {
    let ok = have("kubectl") && have("curl");
    if !ok {
        eprintln!("SKIPPED: needs kubectl and curl (scripts/deps.sh installs them)");
    }
    ok
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, default: red}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

#[test]
fn a_custom_resource_is_served_validated_defaulted_and_printed_once_defined() {
    if !tools() {
        return;
    }
    let s = Server::start();
    s.ok(&["apply", "-f", "-"], Some(CRD));
    let crd: Value = serde_json::from_str(&s.ok(&["get", "crd", "widgets.example.com", "-o", "json"], None)).unwrap();
    assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
    s.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 2}\n"),
    );
    let table = s.ok(&["get", "wd"], None);
    assert!(table.starts_with("NAME") && table.contains("SIZE"), "{table}");
    assert!(
        table.lines().any(|l| l.split_whitespace().take(2).eq(["w1", "2"])),
        "{table}"
    );
    let w1: Value = serde_json::from_str(&s.ok(&["get", "widget", "w1", "-o", "json"], None)).unwrap();
    assert_eq!(w1["spec"]["color"], "red", "defaulted from the schema");
    let err = s.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0}\n"),
    );
    assert!(err.contains("Invalid") && err.contains("spec.size"), "{err}");
    let err = s.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {size: 1, colour: blue}\n"),
    );
    assert!(err.contains("unknown field") && err.contains("spec.colour"), "{err}");
    assert!(s.fails(&["get", "widget", "w3"], None).contains("NotFound"));
    // The status subresource changes status only.
    let patch = r#"{"status":{"ready":true},"spec":{"size":9}}"#;
    s.ok(
        &[
            "patch",
            "widget",
            "w1",
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ],
        None,
    );
    let w1: Value = serde_json::from_str(&s.ok(&["get", "widget", "w1", "-o", "json"], None)).unwrap();
    assert_eq!(
        (w1["status"]["ready"].as_bool(), w1["spec"]["size"].as_i64()),
        (Some(true), Some(2))
    );
}

#[test]
fn writes_follow_resource_versions_dry_runs_and_finalizers() {
    if !tools() {
        return;
    }
    let s = Server::start();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}});
    let body = serde_json::to_vec(&cm).unwrap();
    let json = "Content-Type: application/json";
    let (code, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        &[json],
        Some(&body),
        true,
    );
    assert_eq!(code, 201);
    assert_eq!(
        s.curl("GET", "/api/v1/namespaces/default/configmaps/c", &[], None, true)
            .0,
        404,
        "a dry run stores nothing"
    );
    let (code, created) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[json],
        Some(&body),
        true,
    );
    assert_eq!(code, 201);
    let (code, again) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[json],
        Some(&body),
        true,
    );
    assert_eq!((code, again["reason"].as_str()), (409, Some("AlreadyExists")));
    // An update from a stale resourceVersion is a conflict; from the current one it goes through.
    let mut stale = created.clone();
    stale["data"]["a"] = json!("2");
    let (code, _) = s.curl(
        "PUT",
        "/api/v1/namespaces/default/configmaps/c",
        &[json],
        Some(&serde_json::to_vec(&stale).unwrap()),
        true,
    );
    assert_eq!(code, 200);
    let (code, conflict) = s.curl(
        "PUT",
        "/api/v1/namespaces/default/configmaps/c",
        &[json],
        Some(&serde_json::to_vec(&stale).unwrap()),
        true,
    );
    assert_eq!((code, conflict["reason"].as_str()), (409, Some("Conflict")));
    // A finalizer holds a deleted object until it is removed.
    s.ok(
        &[
            "patch",
            "cm",
            "c",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ],
        None,
    );
    s.ok(&["delete", "cm", "c", "--wait=false"], None);
    let held: Value = serde_json::from_str(&s.ok(&["get", "cm", "c", "-o", "json"], None)).unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    s.ok(
        &[
            "patch",
            "cm",
            "c",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    assert!(s.fails(&["get", "cm", "c"], None).contains("NotFound"));
}

#[test]
fn bad_input_gets_the_status_kubectl_prints_and_nothing_is_stored() {
    if !tools() {
        return;
    }
    let s = Server::start();
    let (code, status) = s.curl("GET", "/api/v1/namespaces/default/pods", &[], None, false);
    assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")));
    assert_eq!(s.curl("GET", "/version", &[], None, false).0, 200, "version is public");
    let json = "Content-Type: application/json";
    let (code, status) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[json],
        Some(b"{not json"),
        true,
    );
    assert_eq!((code, status["kind"].as_str()), (400, Some("Status")));
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let (code, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[json],
        Some(&big),
        true,
    );
    assert_eq!(code, 413);
    let wrong = br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    assert_eq!(
        s.curl(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[json],
            Some(wrong),
            true
        )
        .0,
        400
    );
    let bad_name = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_A_Name"}}"#;
    let (code, status) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[json],
        Some(bad_name),
        true,
    );
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    let patch = "Content-Type: application/json-patch+json";
    s.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\ndata: {a: '1'}\n"),
    );
    let (code, _) = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/p",
        &[patch],
        Some(br#"[{"op":"test","path":"/data/a","value":"2"}]"#),
        true,
    );
    assert_eq!(code, 422);
    let (code, _) = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/p",
        &["Content-Type: text/plain"],
        Some(b"x"),
        true,
    );
    assert_eq!(code, 415);
    let err = s.fails(&["get", "pods", "-l", "a in b"], None);
    assert!(err.contains("BadRequest") || err.contains("unable to parse"), "{err}");
    let cms: Value = serde_json::from_str(&s.ok(&["get", "cm", "-o", "json"], None)).unwrap();
    assert_eq!(
        cms["items"].as_array().map(Vec::len),
        Some(1),
        "only p was stored: {cms}"
    );
}

#[test]
fn watches_resume_from_a_resource_version_and_see_each_change_once() {
    if !tools() {
        return;
    }
    let s = Server::start();
    let (_, list) = s.curl("GET", "/api/v1/namespaces/default/configmaps", &[], None, true);
    let from = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    s.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: '1'}\n"),
    );
    s.ok(&["label", "configmap", "a", "x=y"], None);
    s.ok(&["delete", "configmap", "a"], None);
    let path = format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}&timeoutSeconds=1");
    let events = s.watch(&path);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{events:?}");
    assert_eq!(events[1]["object"]["metadata"]["labels"]["x"], "y");
    // A selector sees the object enter and leave it.
    let events = s.watch(&format!("{path}&labelSelector=x%3Dy"));
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED"]);
}

/// weft's own pod CIDR allocation against the API: agents of six nodes claiming at once get six distinct blocks,
/// each owned by its Node; a restarted agent keeps its block; a node holding two keeps the lower and releases the
/// other; a full pool says so.
#[test]
fn agents_claiming_pod_cidr_blocks_at_once_each_get_their_own() {
    use kube::CustomResourceExt;
    use weft_agent::ipam::{ClaimError, PodCIDRBlock, Pool, claim};
    if !tools() {
        return;
    }
    let s = Server::start();
    s.ok(
        &["apply", "-f", "-"],
        Some(&serde_json::to_string(&PodCIDRBlock::crd()).unwrap()),
    );
    let nodes: Vec<String> = (1..=6).map(|i| format!("node-{i}")).collect();
    for node in &nodes {
        s.ok(
            &["create", "-f", "-"],
            Some(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}).to_string()),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let file = kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let pool = Pool::new("10.244.0.0/21".parse().unwrap(), 24).unwrap();
    let claimed: std::collections::BTreeMap<String, String> = runtime.block_on(async {
        let mut racing = tokio::task::JoinSet::new();
        for node in nodes.clone() {
            let client = client.clone();
            racing.spawn(async move { (node.clone(), claim(&client, &pool, &node).await.map(|c| c.to_string())) });
        }
        let mut claimed = std::collections::BTreeMap::new();
        while let Some(joined) = racing.join_next().await {
            let (node, cidr) = joined.unwrap();
            claimed.insert(node, cidr.unwrap());
        }
        claimed
    });
    let distinct: std::collections::BTreeSet<&String> = claimed.values().collect();
    assert_eq!(distinct.len(), 6, "one block each: {claimed:?}");
    let blocks: Value = serde_json::from_str(&s.ok(&["get", "podcidrblocks", "-o", "json"], None)).unwrap();
    let items = blocks["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "no block left over from a lost race");
    for block in items {
        let node = block["spec"]["node"].as_str().unwrap();
        assert_eq!(block["spec"]["cidr"].as_str(), Some(claimed[node].as_str()));
        assert_eq!(
            block["metadata"]["ownerReferences"][0]["name"], node,
            "owned by its Node"
        );
    }
    let table = s.ok(&["get", "pcb"], None);
    assert!(
        table.starts_with("NAME") && table.contains("CIDR") && table.contains("NODE"),
        "{table}"
    );

    // A restarted agent keeps its block.
    let again = runtime.block_on(claim(&client, &pool, "node-3")).unwrap();
    assert_eq!(again.to_string(), claimed["node-3"]);
    // A second block of node-1 (two of its agents raced): the lower one stays, the other goes.
    let uid = s.ok(&["get", "node", "node-1", "-o", "jsonpath={.metadata.uid}"], None);
    let extra = json!({
        "apiVersion": "weft.dev/v1alpha1", "kind": "PodCIDRBlock",
        "metadata": {"name": "10-244-7-0-24",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": uid}]},
        "spec": {"cidr": "10.244.7.0/24", "node": "node-1"},
    });
    s.ok(&["create", "-f", "-"], Some(&extra.to_string()));
    let kept = runtime.block_on(claim(&client, &pool, "node-1")).unwrap();
    assert_eq!(kept.to_string(), claimed["node-1"], "the lower block stays");
    assert!(s.fails(&["get", "pcb", "10-244-7-0-24"], None).contains("NotFound"));
    // The pool's eight blocks: six taken, two more nodes fit, the next finds none.
    for node in ["node-7", "node-8", "node-9"] {
        s.ok(
            &["create", "-f", "-"],
            Some(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}).to_string()),
        );
    }
    runtime.block_on(claim(&client, &pool, "node-7")).unwrap();
    runtime.block_on(claim(&client, &pool, "node-8")).unwrap();
    let full = runtime.block_on(claim(&client, &pool, "node-9"));
    assert!(matches!(full, Err(ClaimError::Exhausted(_))), "{full:?}");
}
