//! The notes' Ingress walk-through against the lab, with kubectl and curl as a user types them: `weft ingress`
//! installed from deploy/ingress.yaml, reached on its NodePorts from the lab's external host; an Ingress without a
//! class gets the default backend's 404, with `ingressClassName: nginx` the webserver answers, then by Host
//! header only; HTTPS with the controller's self-signed certificate (`curl -k`), then with a user's TLS Secret
//! (`curl --resolve --cacert`), plain HTTP redirected to HTTPS; the Ingress's ADDRESS, from the nodes and then,
//! after the notes' patch to a LoadBalancer, from the balancer; a Warning event on an Ingress whose Service does not
//! exist. And `weft ingress --objects` as a plain process (no lab): readiness, the access log, SIGTERM.

mod lab;

use lab::*;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

fn example(file: &str) -> String {
    repo(&format!("examples/09-ingress/{file}"))
}

/// Waits until the controller's and the webserver's Deployments have rolled out.
fn rolled_out(lab: &Lab) {
    for (deployment, namespace) in [("weft-ingress", "weft-ingress"), ("webserver", "default")] {
        let target = format!("deployment/{deployment}");
        lab.kubectl_ok(&["rollout", "status", &target, "-n", namespace, "--timeout=60s"]);
    }
}

/// The node port of the controller Service's port `name` (`http` or `https`).
fn node_port(lab: &Lab, name: &str) -> String {
    let path = format!("jsonpath={{.spec.ports[?(@.name==\"{name}\")].nodePort}}");
    lab.kubectl_ok(&["get", "service", "weft-ingress", "-n", "weft-ingress", "-o", &path])
}

const HOST: &str = "hwsw-k8s.leannet.eu";

/// curl on the lab's external host: (status code, body).
fn curl(lab: &Lab, args: &[&str]) -> (String, String) {
    let mut command = vec!["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}"];
    command.extend_from_slice(args);
    let out = lab.node_exec("external", &command);
    let stdout = text(&out.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", "000"));
    (code.to_string(), body.to_string())
}

/// Polls curl until it answers `code` (a change takes effect once the controllers have seen it).
fn until(lab: &Lab, code: &str, args: &[&str]) -> String {
    lab.wait(30, &format!("{code} from curl {args:?}"), || {
        let (got, body) = curl(lab, args);
        (got == code).then_some(body)
    })
}

/// A self-signed certificate for `HOST` and its key, made as a user would (openssl), in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
        .args([
            "-subj",
            &format!("/CN={HOST}"),
            "-addext",
            &format!("subjectAltName=DNS:{HOST}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (crt, key)
}

#[test]
fn the_notes_ingress_walk_through() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", "");
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/ingress.yaml")]);
    lab.kubectl_ok(&["get", "pods", "-n", "weft-ingress"]);
    lab.kubectl_ok(&["apply", "-f", &example("webserver.yaml")]);
    rolled_out(&lab);
    let services = lab.kubectl_ok(&["get", "services", "-n", "weft-ingress"]);
    assert!(services.contains("NodePort"), "{services}");
    let (http, https) = (node_port(&lab, "http"), node_port(&lab, "https"));
    let node = lab.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[1].status.addresses[0].address}"]);
    let plain = format!("http://{node}:{http}/");
    let secure = format!("https://{node}:{https}/");

    // No class, and no default class: the Ingress is nobody's, so the default backend answers.
    lab.kubectl_ok(&["apply", "-f", &example("ingress-webserver.yaml")]);
    assert!(lab.kubectl_ok(&["get", "ingress"]).contains("<none>"));
    assert_eq!(curl(&lab, &[&plain]).0, "404");
    assert_eq!(curl(&lab, &[&format!("{plain}healthz")]).0, "200");

    // With ingressClassName: nginx the webserver answers, on both nodes' NodePort.
    lab.kubectl_ok(&["apply", "-f", &example("ingress-with-class.yaml")]);
    let body = until(&lab, "200", &[&plain]);
    assert!(body.contains("pod: webserver-"), "{body}");
    // `kubectl get ingress` shows an ADDRESS: the nodes', while the controller's Service is a NodePort.
    let address = || {
        lab.kubectl_ok(&[
            "get",
            "ingress",
            "webserver-ingress",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
    };
    lab.wait(30, "the Ingress's address", || {
        address().split(' ').any(|a| a == node).then_some(())
    });
    lab.kubectl_ok(&["delete", "-f", &example("ingress-with-class.yaml")]);

    // By host name: a request without the Host gets 404, with it the webserver.
    lab.kubectl_ok(&["apply", "-f", &example("ingress-with-hostname.yaml")]);
    until(&lab, "404", &[&plain]);
    let host = format!("Host: {HOST}");
    let body = until(&lab, "200", &["-H", &host, &plain]);
    assert!(body.contains("pod: webserver-"), "{body}");

    // HTTPS with the controller's self-signed certificate: refused by curl, served with -k.
    let refused = lab.node_exec("external", &["curl", "-sS", "--max-time", "5", "-H", &host, &secure]);
    assert!(!refused.status.success(), "the default certificate is self-signed");
    assert_eq!(curl(&lab, &["-k", "-H", &host, &secure]).0, "200");

    // The user's own certificate, from a kubernetes.io/tls Secret, chosen by SNI.
    let dir = std::env::temp_dir().join(format!("weft-{}-tls", lab.name));
    let (crt, key) = certificate(&dir);
    let (crt, key) = (crt.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    lab.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "my-tls",
        &format!("--cert={crt}"),
        &format!("--key={key}"),
    ]);
    lab.kubectl_ok(&["apply", "-f", &example("ingress-with-tls.yaml")]);
    let resolve = format!("{HOST}:{https}:{node}");
    let by_name = format!("https://{HOST}:{https}/");
    let body = until(&lab, "200", &["--resolve", &resolve, "--cacert", &crt, &by_name]);
    assert!(body.contains("pod: webserver-"), "{body}");
    // Plain HTTP to an Ingress with tls: 308 to HTTPS.
    let out = lab.node_exec(
        "external",
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            &host,
            &plain,
        ],
    );
    assert_eq!(text(&out.stdout), format!("308 https://{HOST}/"));

    // The notes' patch to a LoadBalancer: the Ingress's address becomes the balancer's, which answers on 80.
    lab.kubectl_ok(&[
        "patch",
        "-n",
        "weft-ingress",
        "service",
        "weft-ingress",
        "-p",
        r#"{"spec":{"type":"LoadBalancer"}}"#,
    ]);
    let balancer = lab.wait(30, "a LoadBalancer address", || {
        let ip = lab.kubectl_ok(&[
            "get",
            "service",
            "weft-ingress",
            "-n",
            "weft-ingress",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (!ip.is_empty()).then_some(ip)
    });
    lab.wait(30, "the Ingress's address to be the balancer's", || {
        let shown = lab.kubectl_ok(&[
            "get",
            "ingress",
            "webserver-ingress",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]);
        (shown == balancer).then_some(())
    });
    let body = until(
        &lab,
        "200",
        &[
            "--resolve",
            &format!("{HOST}:443:{balancer}"),
            "--cacert",
            &crt,
            &format!("https://{HOST}/"),
        ],
    );
    assert!(body.contains("pod: webserver-"), "{body}");

    // An Ingress naming a Service that does not exist: 503 for its path, and a Warning event on it.
    let missing = dir.join("missing.yaml");
    std::fs::write(&missing, MISSING).unwrap();
    lab.kubectl_ok(&["apply", "-f", &missing.to_string_lossy()]);
    until(&lab, "503", &["-H", "Host: missing.example", &plain]);
    lab.wait(30, "a Warning event on the Ingress", || {
        let events = lab.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=missing"]);
        (events.contains("Warning") && events.contains("BackendNotFound") && events.contains("Service default/nosuch"))
            .then_some(())
    });
    let described = lab.kubectl_ok(&["describe", "ingress", "missing"]);
    assert!(described.contains("BackendNotFound"), "{described}");
    let _ = std::fs::remove_dir_all(&dir);
}

const MISSING: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: missing}
spec:
  ingressClassName: nginx
  rules:
  - host: missing.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: nosuch, port: {number: 80}}}}
";

/// `weft ingress` as a process, without a cluster (`--objects`): ready once its table is built, routes and logs
/// requests, and on SIGTERM stops serving and exits 0 after the lameduck period.
#[test]
fn weft_ingress_serves_a_manifest_and_exits_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("weft-ingress-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let objects = dir.join("objects.yaml");
    std::fs::write(&objects, format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: nginx}}\nspec: {{controller: weft.dev/ingress}}\n---\n{MISSING}")).unwrap();
    // Free ports, found by binding port 0 (released at once for weft to bind).
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http, https, status) = (port(), port(), port());
    let log = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = Reaped(
        std::process::Command::new(WEFT)
            .args([
                "ingress",
                "--objects",
                &objects.to_string_lossy(),
                "--lameduck",
                "0",
                "--access-log",
            ])
            .args([
                "--http",
                &format!("127.0.0.1:{http}"),
                "--https",
                &format!("127.0.0.1:{https}"),
            ])
            .args(["--status", &format!("127.0.0.1:{status}")])
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let code = |url: &str, host: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Host: {host}"),
                url,
            ])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    let within = std::time::Duration::from_secs(20);
    let ready = weft_testkit::eventually(within, || {
        code(&format!("http://127.0.0.1:{status}/readyz"), "x") == "200"
    });
    assert!(ready, "weft ingress not ready");
    assert_eq!(code(&format!("http://127.0.0.1:{http}/"), "missing.example"), "503");
    assert_eq!(code(&format!("http://127.0.0.1:{http}/"), "other.example"), "404");
    // SAFETY: a plain signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let mut exit = None;
    let exited = weft_testkit::eventually(within, || {
        exit = child.0.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exited, "weft ingress still running after SIGTERM");
    let exit = exit.unwrap();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(exit.success(), "{exit}: {stderr}");
    assert!(stderr.contains("BackendNotFound"), "{stderr}");
    assert!(
        stderr.contains("host=missing.example uri=/ version=HTTP/1.1 status=503 ingress=default/missing"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed and waited for when the test ends, passed or failed.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Requests keep being answered while the backend Deployment and then the controller itself roll: a client on the
/// external host asks one request after another through the NodePort the whole time, and every answer is 200.
#[test]
fn rolling_the_backend_and_the_controller_fails_no_request() {
    if !root() {
        return;
    }
    let manifests = [
        "deploy/ingress.yaml",
        "examples/09-ingress/webserver.yaml",
        "examples/09-ingress/ingress-with-class.yaml",
    ]
    .map(|path| std::fs::read_to_string(repo(path)).unwrap())
    .join("\n---\n");
    let lab = Lab::up(2, "host-gw", &manifests);
    rolled_out(&lab);
    let port = node_port(&lab, "http");
    let node = lab.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].status.addresses[0].address}"]);
    let url = format!("http://{node}:{port}/");
    until(&lab, "200", &[&url]);
    let stop = Remove(std::env::temp_dir().join(format!("weft-{}-stop", lab.name)));
    let client = format!(
        "until [ -e {} ]; do curl -s -o /dev/null --max-time 5 -w '%{{http_code}} %{{errormsg}}\\n' {url}; done",
        stop.0.display()
    );
    let codes = std::thread::scope(|scope| {
        let asking = scope.spawn(|| text(&lab.node_exec("external", &["sh", "-c", &client]).stdout));
        let rolled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (deployment, namespace) in [("webserver", "default"), ("weft-ingress", "weft-ingress")] {
                let target = format!("deployment/{deployment}");
                lab.kubectl_ok(&["rollout", "restart", &target, "-n", namespace]);
                lab.kubectl_ok(&["rollout", "status", &target, "-n", namespace, "--timeout=90s"]);
            }
        }));
        // The client stops, also when a rollout failed (the scope would wait for it forever).
        std::fs::write(&stop.0, "").unwrap();
        let codes = asking.join().unwrap();
        if let Err(panic) = rolled {
            std::panic::resume_unwind(panic);
        }
        codes
    });
    // A line per request: the status code (000: no HTTP answer), then curl's error message if any.
    let answered = codes.lines().filter(|c| c.starts_with("200 ")).count();
    let failed: Vec<&str> = codes.lines().filter(|c| !c.starts_with("200 ")).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answered + failed.len()
    );
    assert!(answered > 20, "only {answered} requests made during the rollouts");
}
