//! NetworkPolicy enforced by the agents, through real pods: the Kubernetes docs' walk-through (an nginx
//! Service, a default deny, access only for pods labelled `access: "true"`), same node and across nodes, direct
//! and through the ClusterIP, plus egress isolation.

mod lab;

use lab::*;

const APP: &str = concat!(
    include_str!("lab/policy_app.yaml"),
    r#"---
apiVersion: v1
kind: Pod
metadata: {name: neighbour}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"#
);

const ACCESS_NGINX: &str = include_str!("lab/access_nginx.yaml");

fn reaches(lab: &Lab, from: &str, url: &str) -> bool {
    lab.reaches(from, url, "1s")
}

#[test]
fn policies_allow_labelled_clients_only() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "vxlan", APP);
    lab.ready_pods();
    let nginx_ip = ip(&lab.pod("nginx"));
    let svc: serde_json::Value = serde_json::from_str(&lab.ok(&["get", "svc", "nginx", "-o", "json"])).unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let direct = format!("http://{nginx_ip}/");
    let via_service = format!("http://{cluster_ip}/");
    lab.wait(30, "the Service", || reaches(&lab, "other", &via_service).then_some(()));
    for from in ["allowed", "other", "neighbour"] {
        assert!(reaches(&lab, from, &direct), "{from} before any policy");
    }

    assert!(lab.apply(ACCESS_NGINX).status.success());
    lab.wait(10, "the policy to be enforced", || {
        (!reaches(&lab, "other", &direct)).then_some(())
    });
    assert!(reaches(&lab, "allowed", &direct), "labelled client, another node");
    assert!(
        reaches(&lab, "allowed", &via_service),
        "through the ClusterIP, judged on the endpoint"
    );
    assert!(!reaches(&lab, "other", &via_service));
    assert!(
        !reaches(&lab, "neighbour", &direct),
        "same node, unlabelled: as strict as across nodes"
    );
    // `weft trace` says the same, and names the rule or the isolation.
    let trace = |from: &str, to: &str| {
        let out = lab.weft(&["trace", from, to]);
        (out.status.success(), text(&out.stdout))
    };
    let (ok, why) = trace("allowed", &format!("{cluster_ip}:80"));
    assert!(
        ok && why.contains("Service default/nginx")
            && why.contains("allowed by default/access-nginx ingress[0] from[0]"),
        "{why}"
    );
    let (ok, why) = trace("neighbour", "nginx:80");
    assert!(
        !ok && why.contains("isolated by default/access-nginx; no rule allows it"),
        "{why}"
    );
    // The node reaches its own pods (probes).
    assert!(
        lab.node_exec("node-1", &["weft", "probe", "--timeout", "1s", &direct])
            .status
            .success()
    );

    // Labels change: the neighbour gets access within a second or so.
    let labelled = APP.replace(
        "metadata: {name: neighbour}",
        "metadata: {name: neighbour, labels: {access: \"true\"}}",
    );
    assert!(lab.apply(&labelled).status.success());
    lab.wait(10, "the relabelled pod to be let in", || {
        reaches(&lab, "neighbour", &direct).then_some(())
    });

    // Egress isolation: `other` may talk to nothing but DNS.
    let deny_egress = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: other-egress}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: 53, protocol: UDP}]}]\n";
    assert!(lab.apply(deny_egress).status.success());
    lab.wait(10, "egress to be isolated", || {
        (!reaches(&lab, "allowed", &direct)).then_some(())
    });

    // A new pod is under the policies before its process starts: its very first connection is refused.
    let eager = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: eager}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: busybox, command: [sh, -c, 'if weft probe --timeout 1s {direct}; then echo LEAKED; else echo BLOCKED; fi']}}]\n"
    );
    // With node-2's agent stopped, the pod gets its address but its process does not start.
    let agent = lab.agent_pid("node-2");
    // SAFETY: kill(2) on the lab's own agent process.
    unsafe { libc::kill(agent, libc::SIGSTOP) };
    let eager = eager.replace("spec:\n", "spec:\n  nodeName: node-2\n");
    assert!(lab.apply(&eager).status.success());
    lab.wait(10, "the eager pod's address", || {
        (!ip(&lab.pod("eager")).is_empty()).then_some(())
    });
    let watched = std::time::Instant::now();
    while watched.elapsed() < std::time::Duration::from_millis(1500) {
        assert_eq!(
            lab.ok(&["logs", "eager"]),
            "",
            "the process ran before the agent put the pod under its policies"
        );
    }
    // SAFETY: as above.
    unsafe { libc::kill(agent, libc::SIGCONT) };
    let logs = lab.wait(20, "the eager pod's first probe", || {
        let logs = lab.ok(&["logs", "eager"]);
        (logs.contains("LEAKED") || logs.contains("BLOCKED")).then_some(logs)
    });
    assert!(logs.contains("BLOCKED"), "{logs}");

    // Deleting the policies opens everything again.
    lab.ok(&["delete", "networkpolicy", "access-nginx", "other-egress"]);
    lab.wait(10, "the policies to be gone", || {
        reaches(&lab, "other", &direct).then_some(())
    });
}
