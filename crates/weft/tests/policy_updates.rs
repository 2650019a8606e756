//! NetworkPolicy updates as a running application sees them: an established connection that the new policy
//! still allows keeps working through every update, and a client that both the old and the new policy deny never
//! gets a connection in while the rules change (it probes the whole time).

mod lab;

use lab::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: node-1
  containers: [{name: echo, image: alpine/socat, command: [socat, 'TCP-LISTEN:9000,fork,reuseaddr', 'EXEC:cat']}]
---
apiVersion: v1
kind: Pod
metadata: {name: keeper, labels: {role: keeper}}
spec:
  nodeName: node-2
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, labels: {role: other}}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: outsider, labels: {role: outsider}}
spec:
  nodeName: node-2
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
";

/// The policy on the server, admitting the roles given.
fn admit(roles: &[&str], also_by_namespace: bool) -> String {
    let mut peers = format!(
        "[{{podSelector: {{matchExpressions: [{{key: role, operator: In, values: [{}]}}]}}}}",
        roles.join(", ")
    );
    if also_by_namespace {
        peers.push_str(", {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}, podSelector: {matchLabels: {role: keeper}}}");
    }
    peers.push(']');
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: server}}\nspec:\n  podSelector: {{matchLabels: {{app: server}}}}\n  ingress: [{{from: {peers}, ports: [{{port: 9000}}]}}]\n"
    )
}

fn connects(lab: &Lab, pod: &str, target: &str) -> bool {
    lab.reaches(pod, &format!("tcp://{target}"), "300ms")
}

#[test]
fn updates_keep_allowed_connections_and_never_open_a_window() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", PODS);
    lab.ready_pods();
    let server = format!("{}:9000", ip(&lab.pod("server")));
    let apply = |yaml: &str| assert!(lab.apply(yaml).status.success());

    apply(&admit(&["keeper"], false));
    lab.wait(10, "the first policy to be enforced", || {
        (!connects(&lab, "other", &server)).then_some(())
    });
    let mut held = Connection::open(&lab, "keeper", &server);
    assert_eq!(held.echo("one"), "one");

    // The outsider probes (three at a time) all the time the policy changes; every version denies it.
    let stop = AtomicBool::new(false);
    let (probes, leaks) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if connects(&lab, "outsider", &server) {
                        leaks.fetch_add(1, Ordering::Relaxed);
                    }
                    probes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut step = |what: &str, yaml: String, other_allowed: bool, line: &str| {
            apply(&yaml);
            lab.wait(10, what, || {
                (connects(&lab, "other", &server) == other_allowed).then_some(())
            });
            assert_eq!(held.echo(line), line, "the established connection after {what}");
        };
        step(
            "keeper and other admitted",
            admit(&["keeper", "other"], false),
            true,
            "two",
        );
        step("other dropped again", admit(&["keeper"], false), false, "three");
        step(
            "keeper admitted through a second peer",
            admit(&["nobody"], true),
            false,
            "four",
        );
        step(
            "back to the first form",
            admit(&["keeper", "other"], false),
            true,
            "five",
        );
        // A few more outsider probes after the last change, then stop it.
        let seen = probes.load(Ordering::Relaxed);
        lab.wait(10, "more outsider probes", || {
            (probes.load(Ordering::Relaxed) >= seen + 3).then_some(())
        });
        stop.store(true, Ordering::Relaxed);
    });
    let probes = probes.load(Ordering::Relaxed);
    assert!(probes >= 5, "the outsider probed only {probes} times");
    assert_eq!(
        leaks.load(Ordering::Relaxed),
        0,
        "of {probes} outsider probes during policy updates, some connected"
    );
}
