//! Rolling restarts of weft itself under traffic (root): on a lab with deploy/weft.yaml applied,
//! `kubectl -n weft-system rollout restart ds/weft-node` while clients open one new connection after another
//! through a ClusterIP (from a pod) and a NodePort (from the external host, to every node) and query kube-dns
//! back to back, then the same for `kubectl -n kube-system rollout restart deploy/weft-dns`. The client pod is
//! held by a NetworkPolicy to the backend and kube-dns. Not one connection or query may fail, and each kind keeps
//! being answered while the rollout runs: an agent leaves the dataplane in place when it stops and its successor
//! adopts it; a DNS pod takes no new queries once terminating, answers the ones already sent to it, and turns
//! unready (its UDP flows let go) before it stops answering. See docs/operations.md.

mod lab;

use lab::{Lab, Remove, WEFT_NODE_LABEL, root, text};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const BACKEND: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: serve, image: nginx, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, infinity]}
---
# The client may reach the web pods and kube-dns only: each agent's successor must hold the policy from its
# first sync on, new DNS pods included.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80, protocol: TCP}]
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{port: 53, protocol: UDP}]
";

/// How long one connection or query may take before it counts as failed.
const TIMEOUT_SECS: u32 = 2;

/// DNS queries per attempt of the kube-dns loop.
const QUERIES: usize = 20;

/// What a client loop has seen so far.
#[derive(Default)]
struct Counts {
    ok: usize,
    failures: Vec<String>,
}

/// A client loop (a shell script printing `ok` or `FAIL ...` per attempt) run until the stop file appears;
/// its lines are counted as they come.
struct Traffic {
    what: &'static str,
    child: Child,
    stop: std::path::PathBuf,
    counts: Arc<Mutex<Counts>>,
    reader: Option<JoinHandle<()>>,
}

impl Traffic {
    /// Runs `attempt` (a shell command whose success is one answered connection or query) over and over through
    /// `runner` (`weft exec POD --` or `weft lab exec NODE --`).
    fn start(lab: &Lab, what: &'static str, runner: &[&str], attempt: &str) -> Traffic {
        let slug = what.replace(' ', "-");
        let stop = std::env::temp_dir().join(format!("weft-{}-{slug}-stop", lab.name));
        let _ = std::fs::remove_file(&stop);
        let script = format!(
            "while [ ! -e {stop} ]; do if out=$({attempt} 2>&1); then echo ok; \
             else echo \"FAIL $(date +%T.%N) $(echo $out | tr '\\n' ' ')\"; fi; done",
            stop = stop.display()
        );
        let mut args = runner.to_vec();
        args.extend(["sh", "-c", &script]);
        let mut child = lab.cmd(&args).stdout(Stdio::piped()).spawn().unwrap();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let out = child.stdout.take().unwrap();
        let seen = counts.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut counts = seen.lock().unwrap();
                if line == "ok" {
                    counts.ok += 1;
                } else {
                    counts.failures.push(line);
                }
            }
        });
        Traffic {
            what,
            child,
            stop,
            counts,
            reader: Some(reader),
        }
    }

    fn ok(&self) -> usize {
        self.counts.lock().unwrap().ok
    }

    /// Stops the loop and returns its answers and failures.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.end();
        let counts = std::mem::take(&mut *self.counts.lock().unwrap());
        (counts.ok, counts.failures)
    }

    fn end(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(u64::from(TIMEOUT_SECS) + 10);
        while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.stop);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.end();
    }
}

/// The time of day (UTC), as the client loops' `date +%T.%N` stamps their failures.
fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let (secs, millis) = (now.as_secs() % 86_400, now.subsec_millis());
    format!("{:02}:{:02}:{:02}.{millis:03}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The names of the pods of `namespace` matching `selector`.
fn pod_names(lab: &Lab, namespace: &str, selector: &str) -> Vec<String> {
    let pods = lab.get_json(&["pods", "-n", namespace, "-l", selector]);
    let mut names: Vec<String> = pods["items"].as_array().into_iter().flatten().map(lab::name).collect();
    names.sort();
    names
}

/// `kubectl rollout restart` of `workload`, `kubectl rollout status` to its end and the old pods (`selector`)
/// gone, under `traffic`: each loop answered at least once meanwhile.
fn restart_under_traffic(lab: &Lab, namespace: &str, workload: &str, selector: &str, traffic: &[Traffic]) {
    let pods_before = pod_names(lab, namespace, selector);
    let before: Vec<usize> = traffic.iter().map(Traffic::ok).collect();
    eprintln!("{} rollout restart {workload}", clock());
    lab.kubectl_ok(&["-n", namespace, "rollout", "restart", workload]);
    let status = lab.kubectl(&["-n", namespace, "rollout", "status", workload, "--timeout=180s"]);
    assert!(
        status.status.success(),
        "rollout status {workload}: {}{}",
        text(&status.stdout),
        text(&status.stderr)
    );
    eprintln!("{} rollout of {workload} complete", clock());
    // The rollout is complete with the old pods still terminating (draining); the traffic runs on until
    // they are gone.
    lab.wait(60, &format!("the old pods of {workload} gone"), || {
        let pods_after = pod_names(lab, namespace, selector);
        pods_after.iter().all(|p| !pods_before.contains(p)).then_some(())
    });
    eprintln!("{} old pods of {workload} gone", clock());
    for (t, before) in traffic.iter().zip(before) {
        let during = t.ok() - before;
        eprintln!(
            "{workload}: {during} tries through {} answered during the rollout",
            t.what
        );
        assert!(
            during > 0,
            "{} kept being answered during the rollout of {workload}",
            t.what
        );
    }
}

#[test]
fn rollout_restarts_of_weft_node_and_weft_dns_fail_no_connection() {
    if !root() {
        return;
    }
    let lab = Lab::installed(2);
    let out = lab.apply(BACKEND);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    lab.ready_pods();
    let jsonpath = |args: &[&str]| {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        lab.kubectl_ok(&all)
    };
    let cluster_ip = jsonpath(&["service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = jsonpath(&["service", "web-nodeport", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let node_ips = jsonpath(&[
        "nodes",
        "-o",
        "jsonpath={.items[*].status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let dns_ip = jsonpath(&[
        "service",
        "-n",
        "kube-system",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(node_ips.split_whitespace().count(), 2, "{node_ips}");

    let probe = |url: &str| format!("weft probe --timeout {TIMEOUT_SECS}s {url}");
    let through_nodes: Vec<String> = node_ips
        .split_whitespace()
        .map(|ip| probe(&format!("http://{ip}:{node_port}/")))
        .collect();
    // Queries back to back (`dig -f`, a new socket each), so that one is nearly always in flight.
    let queries = Remove(std::env::temp_dir().join(format!("weft-{}-queries", lab.name)));
    std::fs::write(&queries.0, "web.default.svc.cluster.local A\n".repeat(QUERIES)).unwrap();
    // Fails with what dig said instead of the address.
    let query = format!(
        "a=$(dig +tries=1 +timeout={TIMEOUT_SECS} +short @{dns_ip} -f {}); \
         test \"$(echo \"$a\" | grep -cx {cluster_ip})\" = {QUERIES} || {{ echo \"$a\" | grep -vx {cluster_ip}; false; }}",
        queries.0.display()
    );
    let traffic = [
        Traffic::start(
            &lab,
            "the ClusterIP",
            &["exec", "client", "--"],
            &probe(&format!("http://{cluster_ip}:80/")),
        ),
        // From outside the cluster, to each node in turn.
        Traffic::start(
            &lab,
            "the NodePort",
            &["lab", "exec", "external", "--"],
            &through_nodes.join(" && "),
        ),
        Traffic::start(&lab, "kube-dns", &["exec", "client", "--"], &query),
    ];
    lab.wait(60, "every client answered", || {
        traffic.iter().all(|t| t.ok() >= 3).then_some(())
    });

    restart_under_traffic(&lab, "weft-system", "ds/weft-node", WEFT_NODE_LABEL, &traffic);
    restart_under_traffic(&lab, "kube-system", "deploy/weft-dns", "k8s-app=kube-dns", &traffic);

    let mut failed = Vec::new();
    for t in traffic {
        let what = t.what;
        let (ok, failures) = t.finish();
        eprintln!("{what}: {ok} tries answered, {} failed", failures.len());
        failed.extend(failures.into_iter().map(|f| format!("{what}: {f}")));
    }
    assert!(failed.is_empty(), "failed during the rollouts:\n{}", failed.join("\n"));
}
