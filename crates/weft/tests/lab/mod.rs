//! A lab per test: a unique name, `weft lab up` with the given manifests, `weft lab down` on drop (also when
//! the test fails), or one lab shared by a test binary's tests (`shared`); and helpers that drive the real CLI as a user would.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// What `kubectl apply -f` installs weft from on any cluster.
pub const WEFT_YAML: &str = include_str!("../../../../deploy/weft.yaml");
/// The label of the `weft-node` DaemonSet's pods.
pub const WEFT_NODE_LABEL: &str = "app.kubernetes.io/name=weft-node";

pub use weft_testkit::root;

pub struct Lab {
    pub name: String,
}

impl Lab {
    /// Brings up a lab of `nodes` nodes over `overlay` with manifests (YAML text) applied.
    pub fn up(nodes: u8, overlay: &str, manifests: &str) -> Lab {
        Lab::start(&["--nodes", &nodes.to_string(), "--overlay", overlay], manifests)
    }

    /// Brings up a bare lab (`lab up --bare`) of `nodes` nodes: no agents, DNS or CNI config.
    pub fn bare(nodes: u8) -> Lab {
        Lab::start(&["--bare", "--nodes", &nodes.to_string()], "")
    }

    /// Brings up a lab with `lab up` flags of its own and manifests (YAML text) applied.
    pub fn start(flags: &[&str], manifests: &str) -> Lab {
        static N: AtomicUsize = AtomicUsize::new(0);
        // `WEFT_TEST_LAB_PREFIX` (default `t`) sets apart the labs of test runs that share a machine.
        let prefix = std::env::var("WEFT_TEST_LAB_PREFIX").unwrap_or_else(|_| "t".into());
        let name = format!(
            "{prefix}{}-{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab { name };
        let file = std::env::temp_dir().join(format!("weft-{}.yaml", lab.name));
        std::fs::write(&file, manifests).unwrap();
        let mut args = vec!["lab", "up"];
        args.extend_from_slice(flags);
        if !manifests.is_empty() {
            args.extend(["-f", file.to_str().unwrap()]);
        }
        let out = lab.weft(&args);
        let _ = std::fs::remove_file(&file);
        assert!(out.status.success(), "lab up failed: {}", text(&out.stderr));
        lab
    }

    /// A lab with weft installed as on any cluster: a bare lab of `nodes` nodes, then `kubectl apply -f
    /// deploy/weft.yaml` (`weft_yaml`); returns once every node is Ready, `weft-node` is Ready on each and
    /// kube-dns has its replicas ready. The one place tests bootstrap weft from its manifests.
    pub fn installed(nodes: u8) -> Lab {
        let lab = Lab::bare(nodes);
        let file = std::env::temp_dir().join(format!("weft-{}-deploy.yaml", lab.name));
        std::fs::write(&file, lab.weft_yaml()).unwrap();
        let applied = lab.kubectl(&["apply", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(&file);
        assert!(applied.status.success(), "kubectl apply: {}", text(&applied.stderr));
        let expected: Vec<String> = (1..=nodes).map(|n| format!("node-{n}")).collect();
        lab.wait(90, "every node Ready", || {
            let nodes = lab.get_json(&["nodes"]);
            let items = nodes["items"].as_array().cloned().unwrap_or_default();
            (items.len() == expected.len() && items.iter().all(|n| condition(n, "Ready"))).then_some(())
        });
        lab.wait(90, "weft-node Ready on each node", || {
            let pods = lab.get_json(&["pods", "-n", "weft-system", "-l", WEFT_NODE_LABEL]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let mut on: Vec<String> = items.iter().filter(|p| ready(p)).map(node).collect();
            on.sort();
            (on == expected).then_some(())
        });
        lab.wait(90, "kube-dns ready", || {
            let d = lab.get_json(&["deployment", "-n", "kube-system", "weft-dns"]);
            (d["status"]["readyReplicas"] == d["spec"]["replicas"]).then_some(())
        });
        lab
    }

    /// deploy/weft.yaml with this lab's API server address filled into the ConfigMap (the lab runs no
    /// kube-proxy, so the agent cannot reach the API through the `kubernetes` Service before it runs itself).
    pub fn weft_yaml(&self) -> String {
        let api = self.get_json(&["endpoints", "kubernetes"]);
        let host = api["subsets"][0]["addresses"][0]["ip"].as_str().unwrap().to_string();
        let port = api["subsets"][0]["ports"][0]["port"].to_string();
        let host_line = "  # apiServerHost: \"192.0.2.10\"";
        let port_line = "  # apiServerPort: \"6443\"";
        assert!(
            WEFT_YAML.contains(host_line) && WEFT_YAML.contains(port_line),
            "deploy/weft.yaml's ConfigMap no longer has the commented apiServerHost/apiServerPort lines"
        );
        WEFT_YAML
            .replace(host_line, &format!("  apiServerHost: \"{host}\""))
            .replace(port_line, &format!("  apiServerPort: \"{port}\""))
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).unwrap()
    }

    /// Where a path of `node`'s own filesystem (a hostPath) is on this host.
    pub fn node_path(&self, node: &str, path: &str) -> std::path::PathBuf {
        std::path::Path::new(&format!("/run/weft/labs/{}/nodes/{node}/root", self.name))
            .join(path.trim_start_matches('/'))
    }

    /// The kubeconfig of this lab's test: `lab up` merges the lab's context into it (not into the user's), so
    /// labs of tests running side by side do not race for one file and kubectl here talks to this lab.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("weft-{}.kubeconfig", self.name))
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(WEFT);
        c.arg("--lab")
            .arg(&self.name)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
        c
    }

    /// The real kubectl against this lab.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args).env("KUBECONFIG", self.kubeconfig()).stdin(Stdio::null());
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().unwrap()
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn weft(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn apply(&self, manifests: &str) -> Output {
        let mut child = self
            .cmd(&["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(manifests.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// All pods as Kubernetes JSON.
    pub fn pods(&self) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.ok(&["get", "pods", "-A", "-o", "json"])).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    pub fn pod(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", "pod", name, "-o", "json"])).unwrap()
    }

    /// Polls `check` until it returns Some, failing the test after `secs`.
    pub fn wait<T>(&self, secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every pod is Ready and returns them.
    pub fn ready_pods(&self) -> Vec<Value> {
        self.wait(60, "all pods ready", || {
            let pods = self.pods();
            pods.iter().all(ready).then_some(pods)
        })
    }

    /// One `weft probe` from `pod` (NAME or NAMESPACE/NAME) to `target` (a probe URL); true when it answered.
    pub fn reaches(&self, pod: &str, target: &str, timeout: &str) -> bool {
        let (ns, name) = pod.split_once('/').unwrap_or(("default", pod));
        let probe = ["weft", "probe", "--timeout", timeout, target];
        self.weft(&[&["exec", "-n", ns, name, "--"][..], &probe].concat())
            .status
            .success()
    }

    pub fn exec(&self, pod: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(command);
        self.weft(&args)
    }

    /// The pids of the `weft agent`s running on `node` (in its network namespace): the weft-node DaemonSet's
    /// container there. None once the lab is down.
    pub fn agent_pids(&self, node: &str) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(netns) = std::fs::metadata(format!("/run/netns/weft-{}-{node}", self.name)) else {
            return Vec::new();
        };
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let mut argv = cmdline.split(|b| *b == 0);
                let weft = argv.next().is_some_and(|a| a.ends_with(b"weft"));
                let inside = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|m| (m.dev(), m.ino()) == (netns.dev(), netns.ino()));
                weft && argv.next() == Some(b"agent") && inside
            })
            .collect();
        pids.sort();
        pids
    }

    /// The pid of the `weft agent` of `node`, if one runs.
    pub fn agent_pid_opt(&self, node: &str) -> Option<i32> {
        self.agent_pids(node).first().copied()
    }

    /// The pid of the `weft agent` of `node`.
    pub fn agent_pid(&self, node: &str) -> i32 {
        self.agent_pid_opt(node).expect("agent running")
    }

    /// What the agent of `node` logged, every run of it (`kubectl logs` of the weft-node pod there).
    pub fn agent_log(&self, node: &str) -> String {
        let pods: Value = serde_json::from_str(&self.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "weft-system",
            "-l",
            "app.kubernetes.io/name=weft-node",
            "-o",
            "json",
        ]))
        .unwrap();
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        let pod = pods
            .iter()
            .find(|p| p["spec"]["nodeName"] == node)
            .expect("a weft-node pod on the node");
        self.kubectl_ok(&["logs", "-n", "weft-system", &name(pod), "-c", "agent"])
    }

    /// `weft lab down`; failures are reported, never a panic (it also runs at exit).
    pub fn down(&self) {
        match self.cmd(&["lab", "down"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("lab down {} failed: {}", self.name, text(&out.stderr)),
            Err(e) => eprintln!("lab down {}: {e}", self.name),
        }
        let _ = std::fs::remove_file(self.kubeconfig());
    }

    pub fn node_exec(&self, node: &str, command: &[&str]) -> Output {
        let mut args = vec!["lab", "exec", node, "--"];
        args.extend_from_slice(command);
        self.weft(&args)
    }
}

/// One TCP connection from a pod, held open by `socat` with a line-echo server on the other end.
pub struct Connection {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::BufReader<std::process::ChildStdout>,
}

impl Connection {
    pub fn open(lab: &Lab, pod: &str, target: &str) -> Connection {
        let mut child = lab
            .cmd(&["exec", pod, "--", "socat", "-", &format!("TCP:{target}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap());
        Connection { child, stdin, lines }
    }

    /// Sends a line and reads the echo (a dropped connection ends socat, so the read sees end of file).
    pub fn echo(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{line}").unwrap();
        let mut back = String::new();
        self.lines.read_line(&mut back).unwrap();
        back.trim_end().to_string()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab of `shared`, or why it could not be brought up.
static SHARED: OnceLock<Result<Lab, String>> = OnceLock::new();

/// One lab for every test of a test binary: brought up by the first test that asks (all pods Ready), taken
/// down when the binary exits, whether the tests passed or not (libtest ends the process with `exit`, which
/// runs `atexit` handlers; a static is never dropped). None when not root.
pub fn shared(nodes: u8, overlay: &str, manifests: &str) -> Option<&'static Lab> {
    shared_with(&["--nodes", &nodes.to_string(), "--overlay", overlay], manifests)
}

/// `shared` with `lab up` flags of its own.
pub fn shared_with(flags: &[&str], manifests: &str) -> Option<&'static Lab> {
    if !root() {
        return None;
    }
    let lab = SHARED.get_or_init(|| {
        // A lab that fails to come up is taken down by `Lab`'s drop as the panic unwinds.
        let up = std::panic::catch_unwind(|| {
            let lab = Lab::start(flags, manifests);
            lab.ready_pods();
            lab
        });
        let lab = up.map_err(|e| {
            let msg = e.downcast_ref::<String>().map(String::as_str);
            msg.or(e.downcast_ref::<&str>().copied())
                .unwrap_or("panicked")
                .to_string()
        })?;
        extern "C" fn down() {
            if let Some(Ok(lab)) = SHARED.get() {
                lab.down();
            }
        }
        // SAFETY: `down` is a plain function that does not unwind.
        unsafe { libc::atexit(down) };
        Ok(lab)
    });
    match lab {
        Ok(lab) => Some(lab),
        Err(e) => panic!("the shared lab did not come up: {e}"),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// Removes a file on drop.
pub struct Remove(pub std::path::PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A path of the repository, as an absolute path (for `kubectl apply -f`).
pub fn repo(path: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// A file of examples/ (`DIR/FILE`), as an absolute path.
pub fn example(path: &str) -> String {
    repo(&format!("examples/{path}"))
}

/// A self-signed certificate for `hosts` (the first its CN) and its key, made as a user would (openssl), in `dir`.
pub fn self_signed(dir: &std::path::Path, hosts: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let sans: Vec<String> = hosts.iter().map(|h| format!("DNS:{h}")).collect();
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
        .args(["-subj", &format!("/CN={}", hosts[0])])
        .args(["-addext", &format!("subjectAltName={}", sans.join(","))])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (crt, key)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn ready(pod: &Value) -> bool {
    condition(pod, "Ready")
}

/// Whether an object's status condition `kind` is True.
pub fn condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

pub fn name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

pub fn ip(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().unwrap_or_default().to_string()
}

pub fn node(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string()
}

/// The value of `key: value` in `weft serve`'s answer.
pub fn field(answer: &str, key: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_string))
}

/// The lab's namespaces, processes and files, by name (what `lab down` must remove).
pub fn leftovers(lab: &str) -> Vec<String> {
    let prefix = format!("weft-{lab}-");
    let mut left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    let dir = format!("/run/weft/labs/{lab}");
    if std::path::Path::new(&dir).exists() {
        left.push(dir);
    }
    left
}

pub const WEB: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, infinity]}
";
