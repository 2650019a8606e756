//! The streaming pod subresources as the real kubectl drives them: exec (pipes, stdin, a terminal with its size,
//! exit codes), attach with and without stdin or a terminal (`run -i --rm`, `run -it --rm`), and port-forward to
//! a pod and to a Service, over the WebSocket tunnel and over plain SPDY.

mod lab;

use lab::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
    spec: {selector: {app: web}, ports: [{port: 8080, targetPort: 80}]}\n";

struct Kubectl {
    context: String,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--context").arg(&self.context).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// A running `kubectl port-forward`, stopped on drop.
struct Forward {
    child: Child,
    port: u16,
    /// kubectl's output, kept open: it writes more lines, and a closed pipe would end it.
    _stdout: BufReader<ChildStdout>,
}

impl Forward {
    fn start(k: &Kubectl, target: &str, remote: u16, websockets: bool) -> Forward {
        let port = free_port();
        let mut child = k
            .cmd(&["port-forward", target, &format!("{port}:{remote}")])
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // kubectl prints `Forwarding from 127.0.0.1:PORT -> REMOTE` once it listens.
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("Forwarding from"), "port-forward {target}: {line:?}");
        Forward {
            child,
            port,
            _stdout: out,
        }
    }

    /// One HTTP request through the forward; the answer's body.
    fn get(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", &format!("http://127.0.0.1:{}/", self.port)])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// Stops kubectl and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn kubectl_exec_and_port_forward() {
    if !root() {
        return;
    }
    // The lab's test kubeconfig (lab up merges its context there), for every kubectl this test runs.
    let lab = Lab::up(2, "host-gw", &format!("{WEB}---\n{SERVICE}"));
    // SAFETY: this binary's only test sets it before any thread of its own runs.
    unsafe { std::env::set_var("KUBECONFIG", lab.kubeconfig()) };
    let k = Kubectl {
        context: format!("weft-{}", lab.name),
    };
    let pods = lab.ready_pods();
    let web = pods
        .iter()
        .map(name)
        .find(|n| n.starts_with("web-"))
        .expect("a web pod");

    // stdout and stderr apart, the exit code passed through.
    let out = k.run(&["exec", "client", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(text(&out.stdout), "out\n");
    let err = text(&out.stderr);
    assert!(err.starts_with("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    assert_eq!(out.status.code(), Some(3));
    let out = k.run(&["exec", "client", "-c", "c", "--", "hostname"]);
    assert_eq!((text(&out.stdout).as_str(), out.status.code()), ("client\n", Some(0)));

    // The command gets the container's environment, as kubelet's exec gives it: the `kubernetes` Service's
    // variables, the pod's own, and the pod's PATH, on which `weft probe` is found as in the notes.
    let api_ip = k.run(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    let script = "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $WEFT_POD_NAME; command -v weft";
    let out = k.run(&["exec", "client", "--", "sh", "-c", script]);
    let shown = text(&out.stdout);
    let mut lines = shown.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{}:443 client", text(&api_ip.stdout)).as_str()),
        "{shown}"
    );
    assert!(lines.next().is_some_and(|l| l.ends_with("/weft")), "{shown}");

    // stdin, to its end.
    let out = k.run_with_input(
        &["exec", "-i", "client", "--", "sh", "-c", "cat; echo done"],
        b"one\ntwo\n",
    );
    assert_eq!(text(&out.stdout), "one\ntwo\ndone\n", "{}", text(&out.stderr));
    assert!(out.status.success());

    // Refusals kubectl shows: an unknown container, a command that does not exist.
    let out = k.run(&["exec", "client", "-c", "nope", "--", "true"]);
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod client"),
        "{}",
        text(&out.stderr)
    );
    let out = k.run(&["exec", "client", "--", "no-such-command"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-command"), "{}", text(&out.stderr));

    // A terminal: kubectl under `script` has one; its size reaches the command's terminal.
    let inner = format!(
        "stty rows 21 cols 77; kubectl --context {} exec -it client -- sh -c 'tty; stty size; exit 4'",
        k.context
    );
    // script's input stays open until kubectl is done: at its end script would type a NUL into the terminal.
    let mut script = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = script.stdin.take();
    let out = script.wait_with_output().unwrap();
    drop(input);
    let shown = text(&out.stdout);
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert!(shown.contains("21 77"), "{shown}");
    assert!(shown.contains("command terminated with exit code 4"), "{shown}");

    // attach -i: a container started without stdin has none to attach to.
    let out = k.run(&["attach", "-i", "client"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has no stdin to attach to"),
        "{}",
        text(&out.stderr)
    );

    // `run -i --rm` makes a pod with stdin (once), attaches to it, and deletes it when its run ends: the
    // container reads what kubectl was given, then EOF once kubectl's stdin ends.
    let out = k.run_with_input(
        &[
            "run",
            "once",
            "-i",
            "--rm",
            "--restart=Never",
            "--image=busybox",
            "--request-timeout=60s",
            "--",
            "sh",
            "-c",
            "while read l; do echo got:$l; done; echo bye",
        ],
        b"one\ntwo\n",
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains("got:one\ngot:two\nbye\n"),
        "{shown}\n{}",
        text(&out.stderr)
    );
    let said = format!("{shown}{}", text(&out.stderr));
    assert!(said.contains("pod \"once\" deleted"), "{said}");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // `run -it --rm` on a terminal: the container runs on one, whose size is kubectl's, and takes its input.
    // script runs `$SHELL -c` (set: CI's environment may have none, and dash does not exec the last command);
    // `timeout --foreground` keeps kubectl in the terminal's foreground group, where making it raw does not stop it.
    let inner = format!(
        "stty rows 19 cols 83; timeout --foreground 60 kubectl --context {} run term -it --rm --restart=Never --image=busybox \
         -- sh -c 'read l; stty size; echo got:$l'",
        k.context
    );
    let mut script = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = script.stdin.take().unwrap();
    input.write_all(b"hi\n").unwrap();
    let out = script.wait_with_output().unwrap();
    drop(input);
    let shown = text(&out.stdout);
    assert!(shown.contains("19 83"), "{shown}");
    assert!(shown.contains("got:hi"), "{shown}");
    assert!(shown.contains("pod \"term\" deleted"), "{shown}");

    // port-forward to a pod, in the WebSocket tunnel and over plain SPDY, several connections each (once the
    // pod serves: a refused connection ends kubectl's port-forward).
    let web_ip = ip(&lab.pod(&web));
    lab.wait(30, "the web pod serving", || {
        lab.reaches("client", &format!("http://{web_ip}:80/"), "1s")
            .then_some(())
    });
    for websockets in [true, false] {
        let f = Forward::start(&k, &format!("pod/{web}"), 80, websockets);
        for _ in 0..3 {
            let body = f.get();
            assert!(body.contains(&web), "websockets={websockets}: {body:?}");
        }
        f.stop();
    }
    // To a Service: kubectl picks one of its pods and maps the Service port to the target port.
    let f = Forward::start(&k, "svc/web", 8080, true);
    assert!(f.get().contains("web-"));
    f.stop();
    // attach without stdin: what the container writes from now on (weft serve logs every request it answers).
    let mut attach = k
        .cmd(&["attach", &web])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(attach.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let f = Forward::start(&k, &format!("pod/{web}"), 80, true);
    let seen = lab.wait(30, "a request in attach's output", || {
        f.get();
        rx.recv_timeout(std::time::Duration::from_millis(200)).ok()
    });
    assert!(!seen.is_empty());
    f.stop();
    let _ = attach.kill();
    let _ = attach.wait();
    // A port nobody listens on: kubelet's message on the error stream.
    let f = Forward::start(&k, &format!("pod/{web}"), 81, true);
    assert_eq!(f.get(), "");
    let err = f.stop();
    assert!(err.contains(&format!("error forwarding port 81 to pod {web}")), "{err}");

    drop(lab);
}
