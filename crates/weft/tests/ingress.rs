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

/// A self-signed certificate for `HOST` and its key, in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    self_signed(dir, &[HOST])
}

#[test]
fn the_notes_ingress_walk_through() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", "");
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/ingress.yaml")]);
    lab.kubectl_ok(&["get", "pods", "-n", "weft-ingress"]);
    lab.kubectl_ok(&["apply", "-f", &example("09-ingress/webserver.yaml")]);
    rolled_out(&lab);
    let services = lab.kubectl_ok(&["get", "services", "-n", "weft-ingress"]);
    assert!(services.contains("NodePort"), "{services}");
    let (http, https) = (node_port(&lab, "http"), node_port(&lab, "https"));
    let node = lab.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[1].status.addresses[0].address}"]);
    let plain = format!("http://{node}:{http}/");
    let secure = format!("https://{node}:{https}/");

    // No class, and no default class: the Ingress is nobody's, so the default backend answers.
    lab.kubectl_ok(&["apply", "-f", &example("09-ingress/ingress-webserver.yaml")]);
    assert!(lab.kubectl_ok(&["get", "ingress"]).contains("<none>"));
    assert_eq!(curl(&lab, &[&plain]).0, "404");
    assert_eq!(curl(&lab, &[&format!("{plain}healthz")]).0, "200");

    // With ingressClassName: nginx the webserver answers, on both nodes' NodePort.
    lab.kubectl_ok(&["apply", "-f", &example("09-ingress/ingress-with-class.yaml")]);
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
    lab.kubectl_ok(&["delete", "-f", &example("09-ingress/ingress-with-class.yaml")]);

    // By host name: a request without the Host gets 404, with it the webserver.
    lab.kubectl_ok(&["apply", "-f", &example("09-ingress/ingress-with-hostname.yaml")]);
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
    lab.kubectl_ok(&["apply", "-f", &example("09-ingress/ingress-with-tls.yaml")]);
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

/// Runs `during` while `parallel` clients on the lab's external host send requests to `url` (with curl's
/// `args`), each in batches of `batch` on one keep-alive connection, one batch after another; returns a line per
/// request — the status code (000: no HTTP answer), the connections curl opened for it (0: the batch's
/// connection reused), curl's error message if any — and what `during` returned.
fn under_load<T>(
    lab: &Lab,
    parallel: usize,
    batch: usize,
    args: &str,
    url: &str,
    during: impl FnOnce() -> T,
) -> (String, T) {
    let stop = Remove(std::env::temp_dir().join(format!("weft-{}-stop", lab.name)));
    let requests = vec![format!("-o /dev/null {url}"); batch].join(" ");
    let client = format!(
        "until [ -e {} ]; do curl -sS --max-time 5 {args} -w '%{{http_code}} %{{num_connects}} %{{errormsg}}\\n' {requests}; done",
        stop.0.display()
    );
    let clients = format!("for i in $(seq {parallel}); do ({client}) & done; wait");
    std::thread::scope(|scope| {
        let asking = scope.spawn(|| text(&lab.node_exec("external", &["sh", "-c", &clients]).stdout));
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(during));
        // The clients stop, also when `during` failed (the scope would wait for them forever).
        std::fs::write(&stop.0, "").unwrap();
        let lines = asking.join().unwrap();
        match done {
            Ok(done) => (lines, done),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Asserts that every request of `under_load`'s `lines` got a 200, and that there were more than `least`.
fn all_answered(lines: &str, least: usize) {
    let answered = lines.lines().filter(|c| c.starts_with("200 ")).count();
    let failed: Vec<&str> = lines.lines().filter(|c| !c.starts_with("200 ")).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answered + failed.len()
    );
    assert!(answered > least, "only {answered} requests made");
}

/// Requests keep being answered while the backend Deployment and then the controller itself roll, until their old
/// pods are gone: four clients on the external host ask through the NodePort the whole time, each on keep-alive
/// connections of 20 requests (one connection after another), and every answer is 200.
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
    let (lines, ()) = under_load(&lab, 4, 20, "", &url, || {
        for (deployment, namespace) in [("webserver", "default"), ("weft-ingress", "weft-ingress")] {
            let target = format!("deployment/{deployment}");
            lab.kubectl_ok(&["rollout", "restart", &target, "-n", namespace]);
            lab.kubectl_ok(&["rollout", "status", &target, "-n", namespace, "--timeout=90s"]);
            // The rollout is complete once the new pods are ready; the old ones still drain (the controller's for
            // its lameduck period, then until its connections finish), and the load goes on until they are gone.
            lab.wait(60, "the old pods to be gone", || {
                let pods = lab.kubectl_ok(&["get", "pods", "-n", namespace, "-o", "name"]);
                (pods.lines().count() == 2).then_some(())
            });
        }
    });
    all_answered(&lines, 200);
}

/// The lab's external host, the client of every request from outside the cluster.
const EXTERNAL: &str = "172.18.0.100";

/// The client address at the backend: with `externalTrafficPolicy: Cluster` on the controller's Service a NodePort
/// connection is masqueraded, so X-Forwarded-For is a node's address; with `Local` it is the external host's.
/// Then a TLS Secret rotated under load: clients making new TLS connections all along (trusting the old and the
/// new certificate) and one connection held open across the change all get 200, the held connection is never
/// replaced, and the new certificate is served within 1 s of the API accepting it.
#[test]
fn local_traffic_policy_keeps_the_client_and_a_secret_rotates_under_load() {
    if !root() {
        return;
    }
    let manifests = [
        "deploy/ingress.yaml",
        "examples/09-ingress/webserver.yaml",
        "examples/09-ingress/ingress-with-tls.yaml",
    ]
    .map(|path| std::fs::read_to_string(repo(path)).unwrap())
    .join("\n---\n");
    let lab = Lab::up(2, "host-gw", &manifests);
    let dir = std::env::temp_dir().join(format!("weft-{}-rotate", lab.name));
    let (old_crt, old_key) = certificate(&dir.join("old"));
    let (new_crt, new_key) = certificate(&dir.join("new"));
    let both = dir.join("both.crt");
    let pem = |path: &Path| std::fs::read_to_string(path).unwrap();
    std::fs::write(&both, pem(&old_crt) + &pem(&new_crt)).unwrap();
    let secret = |crt: &Path, key: &Path| {
        let yaml = lab.kubectl_ok(&[
            "create",
            "secret",
            "tls",
            "my-tls",
            &format!("--cert={}", crt.display()),
            &format!("--key={}", key.display()),
            "--dry-run=client",
            "-o",
            "yaml",
        ]);
        let file = dir.join("secret.yaml");
        std::fs::write(&file, yaml).unwrap();
        lab.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    };
    secret(&old_crt, &old_key);
    rolled_out(&lab);

    // A node with a controller pod: with Local, only its own pods take the node's NodePort connections.
    let on = lab.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "weft-ingress",
        "-o",
        "jsonpath={.items[0].spec.nodeName}",
    ]);
    let node = lab.kubectl_ok(&[
        "get",
        "node",
        &on,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let https = node_port(&lab, "https");
    let resolve = format!("{HOST}:{https}:{node}");
    let url = format!("https://{HOST}:{https}/");
    let trusting = |crt: &Path, path: &str| {
        curl(
            &lab,
            &[
                "--resolve",
                &resolve,
                "--cacert",
                &crt.to_string_lossy(),
                &format!("{url}{path}"),
            ],
        )
    };
    let forwarded_for = "header?key=x-forwarded-for";
    let masqueraded = lab.wait(30, "the webserver through the Ingress", || {
        let (code, body) = trusting(&old_crt, forwarded_for);
        (code == "200").then_some(body)
    });
    assert_ne!(masqueraded, EXTERNAL, "externalTrafficPolicy: Cluster masquerades");
    lab.kubectl_ok(&[
        "patch",
        "-n",
        "weft-ingress",
        "service",
        "weft-ingress",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    lab.wait(30, "X-Forwarded-For to be the external host", || {
        (trusting(&old_crt, forwarded_for) == ("200".into(), EXTERNAL.into())).then_some(())
    });
    assert_eq!(
        trusting(&old_crt, "header?key=x-real-ip"),
        ("200".into(), EXTERNAL.into())
    );

    // The rotation, under load.
    let trust_both = format!("--resolve {resolve} --cacert {}", both.display());
    let (lines, (held, took)) = under_load(&lab, 2, 5, &trust_both, &url, || {
        // One connection for 30 requests, 5 a second: open before the change and after it.
        let mut requests = vec!["--rate", "5/s", "-w", "%{http_code} %{num_connects}\\n"];
        requests.extend(std::iter::repeat_n(["-o", "/dev/null", url.as_str()], 30).flatten());
        std::thread::scope(|scope| {
            let held = scope.spawn(|| {
                let mut command = vec!["curl", "-sS", "--resolve", &resolve, "--cacert"];
                let both = both.to_string_lossy();
                command.push(&both);
                command.extend(&requests);
                text(&lab.node_exec("external", &command).stdout)
            });
            // Let the held connection and the clients start on the old certificate.
            lab.wait(10, "the old certificate in use", || {
                (trusting(&old_crt, "").0 == "200").then_some(())
            });
            secret(&new_crt, &new_key);
            let accepted = std::time::Instant::now();
            // Served by the pods the node's NodePort reaches: five new connections in a row trust only the new one.
            let (mut in_a_row, mut streak_began) = (0, None);
            lab.wait(10, "the new certificate", || {
                if trusting(&new_crt, "").0 == "200" {
                    streak_began.get_or_insert(accepted.elapsed());
                    in_a_row += 1;
                } else {
                    (in_a_row, streak_began) = (0, None);
                }
                (in_a_row == 5).then_some(())
            });
            (held.join().unwrap(), streak_began.unwrap_or_default())
        })
    });
    all_answered(&lines, 20);
    all_answered(&held, 29);
    let connections: usize = held
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<usize>().ok())
        .sum();
    assert_eq!(connections, 1, "the held connection was replaced: {held}");
    // From the API's answer to the first of the new connections that trusted only the new certificate (and all
    // after it did too).
    assert!(
        took < std::time::Duration::from_secs(1),
        "the new certificate served after {took:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
