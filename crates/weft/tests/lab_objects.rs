//! The lab as kubectl users see it: apply/get/delete/exec/logs, Deployments that heal, restarts, invalid
//! input refused whole, agents and supervisors that die, and `lab down` leaving nothing behind.

mod lab;

use lab::*;
use serde_json::Value;

#[test]
fn objects_pods_and_processes() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", WEB);
    let pods = lab.ready_pods();
    let web_before: Vec<String> = pods.iter().map(name).filter(|n| n.starts_with("web-")).collect();
    assert_eq!(web_before.len(), 3);

    // Invalid input: refused whole, the field named, nothing applied.
    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: fine}\nspec: {containers: [{name: c, command: [sleep, '9']}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec: {containers: [{name: c, ports: [{containerPort: 99999}]}]}\n";
    let out = lab.apply(bad);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("spec.containers[0].ports[0].containerPort"), "{err}");
    assert!(
        lab.weft(&["get", "pod", "fine"]).status.code() != Some(0),
        "nothing from a refused file is applied"
    );

    // Kinds the API does not serve are refused until a CRD serves them; then they are listed with its printer
    // columns.
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 2}\n";
    let out = lab.apply(widget);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no matches for kind \"Widget\" in version \"example.com/v1\""),
        "{err}"
    );
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n\
        spec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions:\n  \
        - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n    \
        additionalPrinterColumns: [{name: Size, type: integer, jsonPath: .spec.size}]\n";
    assert!(lab.apply(crd).status.success());
    let out = lab.apply(widget);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Vec<String>> = lab
        .ok(&["get", "widgets"])
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(rows, [["NAME", "SIZE"], ["w1", "2"]]);

    // Pods: hostname, resolv.conf and hosts as kubelet writes them; exit codes pass through.
    let out = lab.exec("client", &["hostname"]);
    assert_eq!(text(&out.stdout).trim(), "client");
    let resolv = text(&lab.exec("client", &["cat", "/etc/resolv.conf"]).stdout);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    let hosts = text(&lab.exec("client", &["cat", "/etc/hosts"]).stdout);
    let client_ip = ip(&lab.pod("client"));
    assert!(hosts.contains(&format!("{client_ip}\tclient")), "{hosts}");
    assert_eq!(lab.exec("client", &["sh", "-c", "exit 3"]).status.code(), Some(3));

    // A Deployment's deleted pod comes back under a new name.
    lab.ok(&["delete", "pod", &web_before[0]]);
    let web_after = lab.wait(30, "a replacement pod", || {
        let pods = lab.pods();
        let web: Vec<String> = pods
            .iter()
            .filter(|p| ready(p))
            .map(name)
            .filter(|n| n.starts_with("web-"))
            .collect();
        (web.len() == 3 && !web.contains(&web_before[0])).then_some(web)
    });
    assert!(web_after.iter().any(|n| !web_before.contains(n)));

    // Scaling the Deployment (apply with new replicas) adds and removes pods.
    let scaled = WEB.replace("replicas: 3", "replicas: 1");
    assert!(lab.apply(&scaled).status.success());
    lab.wait(30, "scale down to 1", || {
        let n = lab.pods().iter().filter(|p| name(p).starts_with("web-")).count();
        (n == 1).then_some(())
    });
    let deploy: Value = serde_json::from_str(&lab.ok(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 1);

    // A process that exits is restarted, and logs keep its output.
    let crasher = "apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec: {containers: [{name: c, image: busybox, command: [sh, -c, 'echo started; exit 1']}]}\n";
    assert!(lab.apply(crasher).status.success());
    lab.wait(30, "restarts", || {
        let pod = lab.pod("crasher");
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0);
        (restarts >= 2).then_some(())
    });
    let logs = lab.ok(&["logs", "crasher"]);
    assert!(logs.matches("started").count() >= 2, "{logs}");

    // Tables and object output as kubectl prints them.
    let wide = lab.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.starts_with("NAME") && wide.contains(" IP ") && wide.contains("NODE"),
        "{wide}"
    );
    let nodes = lab.ok(&["get", "nodes", "-o", "wide"]);
    // kubectl's node columns: the internal IP is a wide one.
    assert!(
        nodes.contains("INTERNAL-IP") && nodes.contains("172.18.0.11") && nodes.contains(" Ready "),
        "{nodes}"
    );
    let yaml = lab.ok(&["get", "pods", "-o", "yaml"]);
    assert!(yaml.contains("kind: List"), "{yaml}");
    let ns: Value = serde_json::from_str(&lab.ok(&["get", "namespace", "default", "-o", "json"])).unwrap();
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "default");

    lab.ok(&["delete", "pod", "crasher"]);
    assert!(lab.weft(&["get", "pod", "crasher"]).status.code() != Some(0));

    // hostNetwork pods run in the node's namespace and report the node's address.
    let host = "apiVersion: v1\nkind: Pod\nmetadata: {name: hostnet}\nspec:\n  hostNetwork: true\n  containers: [{name: c, image: busybox, command: [sleep, infinity]}]\n";
    assert!(lab.apply(host).status.success());
    let pod = lab.wait(30, "the hostNetwork pod", || Some(lab.pod("hostnet")).filter(ready));
    assert_eq!(ip(&pod), pod["status"]["hostIP"].as_str().unwrap());
    let addrs = text(&lab.exec("hostnet", &["ip", "-br", "addr", "show", "eth0"]).stdout);
    assert!(addrs.contains(&format!("{}/24", ip(&pod))), "{addrs}");

    // Deleting by manifest removes what it names; `lab status` tells the lab's shape.
    let manifest = std::env::temp_dir().join(format!("weft-{}-host.yaml", lab.name));
    std::fs::write(&manifest, host).unwrap();
    lab.ok(&["delete", "-f", manifest.to_str().unwrap()]);
    let _ = std::fs::remove_file(&manifest);
    assert!(lab.weft(&["get", "pod", "hostnet"]).status.code() != Some(0));
    let status = lab.ok(&["lab", "status"]);
    assert!(
        status.contains("supervisor: running") && status.contains("node-2:") && status.contains("172.18.0.100"),
        "{status}"
    );
}

#[test]
fn containers_exiting_at_once_are_each_restarted_or_recorded() {
    if !root() {
        return;
    }
    // Every container holds this FIFO open for reading and exits when its one writer, the test, closes it: all
    // at the same moment. A restarted container then waits in open(2), running, for a writer that never comes.
    let mut fifo = Fifo::new();
    let wait_then = |code: i32| format!("exec 3<{}; read line <&3; exit {code}", fifo.path.display());
    let mut manifests = String::new();
    let pods = [
        ("always", "Always", 3, 8),
        ("never", "Never", 3, 6),
        ("onfailure", "OnFailure", 0, 6),
    ];
    for (prefix, policy, code, count) in pods {
        for i in 0..count {
            let command = format!("[sh, -c, '{}']", wait_then(code));
            let containers = if prefix == "always" {
                format!("[{{name: a, command: {command}}}, {{name: b, command: {command}}}]")
            } else {
                format!("[{{name: a, command: {command}}}]")
            };
            manifests += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {prefix}-{i}}}\nspec: {{restartPolicy: {policy}, containers: {containers}}}\n"
            );
        }
    }
    let lab = Lab::up(2, "host-gw", &manifests);
    lab.wait(60, "every container to open the FIFO", || {
        (fifo.readers() == 8 * 2 + 6 + 6).then_some(())
    });
    fifo.close();

    let statuses = |pod: &Value| -> Vec<Value> {
        pod["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    lab.wait(60, "every exit restarted or recorded", || {
        let pods = lab.pods();
        let settled = pods.iter().all(|p| {
            let n = name(p);
            let phase = p["status"]["phase"].as_str().unwrap_or_default();
            let exit = |c: &Value| c["state"]["terminated"]["exitCode"].as_i64();
            if n.starts_with("always-") {
                ready(p) && statuses(p).iter().all(|c| c["restartCount"] == 1)
            } else if n.starts_with("never-") {
                phase == "Failed" && statuses(p).iter().all(|c| exit(c) == Some(3) && c["restartCount"] == 0)
            } else if n.starts_with("onfailure-") {
                phase == "Succeeded" && statuses(p).iter().all(|c| exit(c) == Some(0) && c["restartCount"] == 0)
            } else {
                true
            }
        });
        settled.then_some(())
    });
}

/// A FIFO in the temp dir, held open for writing (and reading, so that opening it does not block) by the test.
struct Fifo {
    path: std::path::PathBuf,
    writer: Option<std::fs::File>,
}

impl Fifo {
    fn new() -> Fifo {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("weft-exits-{}-{n}.fifo", std::process::id()));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
        let writer = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        Fifo {
            path,
            writer: Some(writer),
        }
    }

    /// Closes the test's end: every reader sees end of file.
    fn close(&mut self) {
        self.writer = None;
    }

    /// How many other processes have the FIFO open.
    fn readers(&self) -> usize {
        let me = std::process::id().to_string();
        let procs = std::fs::read_dir("/proc").unwrap().flatten();
        procs
            .filter(|p| {
                p.file_name()
                    .to_str()
                    .is_some_and(|n| n != me && n.parse::<u32>().is_ok())
            })
            .filter(|p| {
                std::fs::read_dir(p.path().join("fd"))
                    .map(|fds| {
                        fds.flatten()
                            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == self.path))
                    })
                    .unwrap_or(false)
            })
            .count()
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn agents_restart_without_breaking_flows_and_down_cleans_a_crashed_lab() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "vxlan", WEB);
    let pods = lab.ready_pods();
    let remote = pods
        .iter()
        .find(|p| node(p) == "node-2" && name(p).starts_with("web-"))
        .unwrap();
    let routes_before = text(&lab.node_exec("node-1", &["ip", "route"]).stdout);
    // An established connection across nodes, kept open while the agent dies and comes back.
    let mut conn = lab
        .cmd(&["exec", "client", "--", "socat", "-", &format!("TCP:{}:80", ip(remote))])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    lab.wait(10, "the connection to be established", || {
        let ss = text(&lab.exec("client", &["ss", "-Htn", "state", "established"]).stdout);
        ss.contains(&format!("{}:80", ip(remote))).then_some(())
    });
    let agent = lab.agent_pid("node-1");
    // SAFETY: kill(2) on the agent process found in the node's namespace by its command line.
    unsafe { libc::kill(agent, libc::SIGKILL) };
    lab.wait(10, "a new agent", || {
        lab.agent_pid_opt("node-1").filter(|p| *p != agent)
    });
    let routes_after = text(&lab.node_exec("node-1", &["ip", "route"]).stdout);
    assert_eq!(routes_before, routes_after, "a restarted agent adopts its routes");
    use std::io::{Read, Write};
    let mut stdin = conn.stdin.take().unwrap();
    stdin.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").unwrap();
    drop(stdin);
    let mut answer = String::new();
    conn.stdout.take().unwrap().read_to_string(&mut answer).unwrap();
    assert!(conn.wait().unwrap().success());
    assert!(
        answer.ends_with(&name(remote)),
        "the established flow survived: {answer}"
    );

    // A supervisor killed with SIGKILL: `lab down` still removes everything, and the lab can be rebuilt.
    let pid: i32 = std::fs::read_to_string(format!("/run/weft/labs/{}/supervisor.pid", lab.name))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the lab's own supervisor.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    lab.ok(&["lab", "down"]);
    assert_eq!(leftovers(&lab.name), Vec::<String>::new());
    assert!(lab.agent_pid_opt("node-1").is_none(), "agents are gone");
    lab.ok(&["lab", "up", "--nodes", "1"]);
    assert!(lab.ok(&["get", "nodes"]).contains("node-1"));
    lab.ok(&["lab", "down"]);
    lab.ok(&["lab", "down"]); // idempotent
    assert_eq!(leftovers(&lab.name), Vec::<String>::new());
}

/// The node components' `KubeSource` (kube-rs watchers through the lab's Kubernetes API) delivers snapshots that
/// hold exactly what a fresh list gives, through creates, updates, deletes and cascades, and that share the
/// objects that did not change.
#[test]
fn kube_source_snapshots_add_up_to_the_store() {
    use std::sync::{Arc, mpsc};
    use weft_kube::{ClientOptions, KubeSource};
    use weft_lab::spec::Paths;
    use weft_model::{Key, Object, Snapshot, Source};
    if !root() {
        return;
    }
    let lab = Lab::up(1, "host-gw", "");
    const KINDS: &[&str] = &["Namespace", "Service", "ConfigMap"];
    let options = ClientOptions {
        kubeconfig: Some(Paths::new(&lab.name).kubeconfig()),
        ..ClientOptions::default()
    };
    let (tx, rx) = mpsc::channel();
    let mut watch = KubeSource::start(&options, KINDS, &[]).unwrap();
    let first = watch.next(0).unwrap();
    let default = Key::new("Namespace", None, "default");
    let default_before = first.get_shared(&default).unwrap().clone();
    std::thread::spawn(move || {
        let mut at = first.revision;
        while let Ok(snap) = watch.next(at) {
            assert!(snap.revision > at, "each snapshot is newer");
            at = snap.revision;
            if tx.send(snap).is_err() {
                break;
            }
        }
    });
    let service = |ns: &str, name: &str, label: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, labels: {{v: \"{label}\"}}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )
    };
    let ns = |name: &str| format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    let config = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n";
    assert!(
        lab.apply(
            &[
                ns("one"),
                ns("two"),
                service("one", "s1", "1"),
                service("two", "s2", "1"),
                config.into()
            ]
            .concat()
        )
        .status
        .success()
    );
    assert!(lab.apply(&service("one", "s1", "2")).status.success());
    lab.ok(&["delete", "service", "-n", "one", "s1"]);
    lab.ok(&["delete", "namespace", "two"]);
    lab.ok(&["delete", "configmap", "c"]);
    assert!(lab.apply(&service("one", "s3", "1")).status.success());

    let objects = |s: &Snapshot| s.objects().cloned().collect::<Vec<Object>>();
    let mut latest: Option<Arc<Snapshot>> = None;
    lab.wait(20, "the watched snapshot to equal a whole list", || {
        let whole = KubeSource::start(&options, KINDS, &[]).unwrap().next(0).unwrap();
        while let Ok(snap) = rx.try_recv() {
            latest = Some(snap);
        }
        let latest = latest.as_ref()?;
        let done = whole.get(&Key::new("Namespace", None, "two")).is_none();
        (done && objects(latest) == objects(&whole)).then_some(())
    });
    let latest = latest.unwrap();
    assert!(
        Arc::ptr_eq(&default_before, latest.get_shared(&default).unwrap()),
        "an object that did not change is the same one in every snapshot"
    );
}

#[test]
fn workloads_roll_out_through_replica_sets_and_leave_events() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", WEB);
    lab.ready_pods();
    let list = |kind: &str| -> Vec<Value> {
        let v: Value = serde_json::from_str(&lab.ok(&["get", kind, "-o", "json"])).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    };
    let revision = |o: &Value| o["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
    let sets = list("rs");
    assert_eq!(sets.len(), 1);
    assert_eq!(revision(&sets[0]), "1");
    let table = lab.ok(&["get", "replicasets"]);
    assert!(
        table.contains("DESIRED") && table.contains(name(&sets[0]).as_str()),
        "{table}"
    );

    // A new template rolls out to a second ReplicaSet; the Deployment reports it complete.
    assert!(
        lab.apply(&WEB.replace("image: nginx", "image: nginx:2"))
            .status
            .success()
    );
    let deploy = lab.wait(60, "the rollout", || {
        let d: Value = serde_json::from_str(&lab.ok(&["get", "deployment", "web", "-o", "json"])).unwrap();
        let s = &d["status"];
        let done = s["updatedReplicas"] == 3 && s["availableReplicas"] == 3 && s["replicas"] == 3;
        let progressed = s["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["reason"] == "NewReplicaSetAvailable"));
        (done && progressed && list("rs").len() == 2).then_some(d)
    });
    assert_eq!(revision(&deploy), "2");
    let web: Vec<Value> = lab.pods().into_iter().filter(|p| name(p).starts_with("web-")).collect();
    let new_rs = list("rs").into_iter().find(|rs| revision(rs) == "2").unwrap();
    assert!(web.iter().all(|p| name(p).starts_with(&format!("{}-", name(&new_rs)))));

    // A Service with a selector gets Endpoints; a DaemonSet a pod per node.
    let svc =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n";
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec: {containers: [{name: c, image: busybox, command: [sleep, infinity]}]}\n";
    assert!(lab.apply(&format!("{svc}---\n{ds}")).status.success());
    lab.wait(30, "the Service's Endpoints", || {
        let out = lab.weft(&["get", "endpoints", "web", "-o", "json"]);
        let ep: Value = serde_json::from_slice(&out.stdout).ok()?;
        let n = ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
        (n == 3).then_some(())
    });
    lab.wait(30, "a daemon pod per node", || {
        let mut nodes: Vec<String> = lab
            .pods()
            .iter()
            .filter(|p| name(p).starts_with("agent-") && ready(p))
            .map(node)
            .collect();
        nodes.sort();
        (nodes == ["node-1", "node-2"]).then_some(())
    });

    let reasons: Vec<String> = list("events")
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    for r in [
        "Scheduled",
        "Started",
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Killing",
    ] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }

    // Deleting the Deployment takes its ReplicaSets and pods.
    lab.ok(&["delete", "deployment", "web"]);
    lab.wait(60, "the Deployment's pods gone", || {
        let left = lab.pods().iter().filter(|p| name(p).starts_with("web-")).count();
        (left == 0 && list("rs").is_empty()).then_some(())
    });
}
