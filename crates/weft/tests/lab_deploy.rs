//! weft installed as on any cluster: a bare lab (a kubeadm cluster before its CNI) and `kubectl apply -f
//! deploy/weft.yaml`, with only the ConfigMap's API server address filled in, as on a cluster without kube-proxy.
//! The nodes turn Ready, weft-node is Ready on each, an example Deployment and Service are networked across nodes
//! and reachable through the ClusterIP, and kube-dns answers for the Service. The lab enforces RBAC for the
//! manifests' ServiceAccounts, so a permission the manifests miss fails this test. Uninstalling (`kubectl delete`,
//! then deploy/weft-cleanup.yaml) leaves no weft table, route, device or file on the nodes. Root only.

mod lab;

use lab::{Lab, WEFT_NODE_LABEL, root, text};

const WEBSERVER: &str = include_str!("../../../examples/06-services/webserver.yaml");
const CLIENT: &str = include_str!("../../../examples/quickstart/client.yaml");
const CLEANUP: &str = include_str!("../../../deploy/weft-cleanup.yaml");

fn can_i(lab: &Lab, who: &str, verb: &str, resource: &str) -> bool {
    let out = lab.kubectl(&["auth", "can-i", verb, resource, "--as", who]);
    text(&out.stdout).trim() == "yes"
}

#[test]
fn bare_lab_bootstrapped_by_deploy_weft_yaml() {
    if !root() {
        return;
    }
    let lab = Lab::installed(2);
    let agents = lab.kubectl_ok(&["logs", "-n", "weft-system", "-l", WEFT_NODE_LABEL, "--tail=-1"]);
    assert!(
        !agents.to_lowercase().contains("forbidden"),
        "the agents were refused something: {agents}"
    );

    // The example, applied as a user would, networked across nodes.
    for example in [WEBSERVER, CLIENT] {
        let out = lab.apply(example);
        assert!(out.status.success(), "apply: {}", text(&out.stderr));
    }
    let pods = lab.ready_pods();
    let on = |prefix: &str| -> Vec<String> {
        let mut nodes: Vec<String> = pods
            .iter()
            .filter(|p| lab::name(p).starts_with(prefix))
            .map(lab::node)
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    };
    assert_eq!(on("webserver-"), ["node-1", "node-2"], "webserver pods on both nodes");
    for pod in pods.iter().filter(|p| lab::name(p).starts_with("webserver-")) {
        let target = format!("http://{}:80", lab::ip(pod));
        assert!(
            lab.reaches("client", &target, "3s"),
            "client reaches {} on {}",
            lab::name(pod),
            lab::node(pod)
        );
    }
    let svc = lab.get_json(&["service", "webserver-service"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(
        lab.reaches("client", &format!("http://{cluster_ip}:80"), "3s"),
        "through the ClusterIP"
    );

    // kube-dns answers for the Service, through the search path kubelet writes.
    let resolved = lab.wait(30, "webserver-service resolved", || {
        let out = lab.exec("client", &["getent", "hosts", "webserver-service"]);
        let answer = text(&out.stdout);
        answer.contains(&cluster_ip).then_some(answer)
    });
    assert!(
        resolved.contains("webserver-service.default.svc.cluster.local"),
        "{resolved}"
    );
    assert!(lab.reaches("client", "http://webserver-service", "3s"), "by name");

    // weft-node may do what it needs and no more.
    let node_sa = "system:serviceaccount:weft-system:weft-node";
    for (verb, resource) in [
        ("watch", "nodes"),
        ("list", "endpointslices.discovery.k8s.io"),
        ("create", "podcidrblocks.weft.dev"),
    ] {
        assert!(can_i(&lab, node_sa, verb, resource), "weft-node may {verb} {resource}");
    }
    for (verb, resource) in [
        ("create", "pods"),
        ("get", "secrets"),
        ("list", "secrets"),
        ("delete", "nodes"),
    ] {
        assert!(
            !can_i(&lab, node_sa, verb, resource),
            "weft-node may not {verb} {resource}"
        );
    }

    // Uninstall: the manifests' objects, then the cleanup DaemonSet once no agent is left to put things back.
    let file = std::env::temp_dir().join(format!("weft-{}-deploy.yaml", lab.name));
    std::fs::write(&file, lab.weft_yaml()).unwrap();
    lab.kubectl_ok(&["delete", "--ignore-not-found", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    lab.wait(60, "weft-node pods gone", || {
        let pods = lab.get_json(&["pods", "-A", "-l", WEFT_NODE_LABEL]);
        pods["items"].as_array().is_some_and(Vec::is_empty).then_some(())
    });
    let out = lab.apply(CLEANUP);
    assert!(out.status.success(), "apply cleanup: {}", text(&out.stderr));
    lab.wait(60, "weft-cleanup Ready on both nodes", || {
        let d = lab.get_json(&["daemonset", "-n", "kube-system", "weft-cleanup"]);
        (d["status"]["numberReady"] == 2).then_some(())
    });
    for node in ["node-1", "node-2"] {
        let tables = text(&lab.node_exec(node, &["nft", "list", "tables"]).stdout);
        assert!(!tables.contains("weft"), "{node} keeps weft's tables: {tables}");
        let routes = text(
            &lab.node_exec(node, &["ip", "route", "show", "proto", "247", "table", "all"])
                .stdout,
        );
        assert!(routes.trim().is_empty(), "{node} keeps weft's routes: {routes}");
        let links = text(&lab.node_exec(node, &["ip", "-o", "link", "show"]).stdout);
        let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
        assert!(
            !names.iter().any(|n| n.starts_with("weft")),
            "{node} keeps weft's devices: {names:?}"
        );
        for path in [
            "/etc/cni/net.d/10-weft.conflist",
            "/opt/cni/bin/weft",
            "/run/weft",
            "/var/lib/cni/weft",
        ] {
            assert!(!lab.node_path(node, path).exists(), "{node} keeps {path}");
        }
    }
}
