//! A bare lab (`weft lab up --bare`) as a kubeadm cluster before its CNI: NotReady nodes, pods that wait, and a
//! kubelet that runs a networking DaemonSet the way a real one does (host network, hostPath, init containers,
//! env from ConfigMaps and the downward API, projected ServiceAccount tokens, weft's image, an exec readiness
//! probe); a CNI config
//! dropped into a node's /etc/cni/net.d makes that node Ready and its waiting pods start. Root only.

mod lab;

use lab::{Lab, root, text};
use serde_json::Value;

/// A node installer as a CNI's DaemonSet is written: its init container copies plugins from weft's image into
/// the node's /opt/cni/bin; the container reports what it sees into the node's /var/lib/kb-probe.
const DAEMONSET: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kb-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: node-probe, namespace: kb-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: probe-config, namespace: kb-system}
data: {mode: vxlan, greeting: hello}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-probe, namespace: kb-system}
spec:
  selector: {matchLabels: {app: node-probe}}
  template:
    metadata: {labels: {app: node-probe}}
    spec:
      hostNetwork: true
      serviceAccountName: node-probe
      tolerations: [{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoSchedule}]
      initContainers:
      - name: install
        image: ghcr.io/weft-project/weft:test
        command: [sh, -c, "cp /usr/local/bin/weft-cni /host/opt/cni/bin/bridge && cp /usr/local/bin/weft-cni /host/opt/cni/bin/host-local && echo $(NODE) > /host/out/init"]
        env:
        - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        volumeMounts:
        - {name: cni-bin, mountPath: /host/opt/cni/bin}
        - {name: out, mountPath: /host/out}
      containers:
      - name: probe
        image: ghcr.io/weft-project/weft:test
        command: [sh, -c]
        args:
        - >-
          echo "$(NODE) $(MODE) $(POD_IP) $(HOST_IP) $(POD_NAME) $(SA) $(CFG_greeting)" > /host/out/env;
          cp /var/run/secrets/tokens/token /var/run/secrets/tokens/ca.crt /var/run/secrets/tokens/namespace /host/out/;
          (touch /host/etc/cni/net.d/x 2>/dev/null && echo writable || echo read-only) > /host/out/net.d;
          /usr/local/bin/weft --version > /host/out/weft 2>&1;
          exec sleep infinity
        readinessProbe: {exec: {command: [test, -s, /host/out/weft]}, periodSeconds: 1}
        env:
        - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
        - {name: MODE, valueFrom: {configMapKeyRef: {name: probe-config, key: mode}}}
        envFrom:
        - {configMapRef: {name: probe-config}, prefix: CFG_}
        volumeMounts:
        - {name: cni-bin, mountPath: /host/opt/cni/bin, readOnly: true}
        - {name: net-d, mountPath: /host/etc/cni/net.d, readOnly: true}
        - {name: out, mountPath: /host/out}
        - {name: tokens, mountPath: /var/run/secrets/tokens}
      volumes:
      - {name: cni-bin, hostPath: {path: /opt/cni/bin, type: DirectoryOrCreate}}
      - {name: net-d, hostPath: {path: /etc/cni/net.d}}
      - {name: out, hostPath: {path: /var/lib/kb-probe, type: DirectoryOrCreate}}
      - name: tokens
        projected:
          sources:
          - serviceAccountToken: {path: token, audience: kb-test, expirationSeconds: 3600}
          - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
          - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
"#;

/// One pod the scheduler has no Ready node for, one pinned to node-1 that needs a network, and one there whose
/// liveness probe fails (nothing listens on its port).
const WAITING: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: unscheduled}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  nodeName: node-1
  containers:
  - name: c
    image: busybox
    command: [sleep, infinity]
    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 1}
"#;

/// A network for node-1 from the plugins the DaemonSet installed (weft-cni's `bridge` and `host-local`).
const CONFLIST: &str = r#"{"cniVersion": "1.0.0", "name": "kbnet", "plugins": [{"type": "bridge", "bridge": "kb0",
 "isGateway": true, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]]}}]}"#;

fn condition<'a>(object: &'a Value, kind: &str) -> &'a Value {
    let conditions = object["status"]["conditions"].as_array();
    conditions
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

fn not_ready_taint(node: &Value) -> bool {
    let taints = node["spec"]["taints"].as_array();
    taints.is_some_and(|t| {
        t.iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoSchedule")
    })
}

/// The reasons and messages of the Events about pod `pod` (in `default`).
fn events_of(lab: &Lab, pod: &str) -> String {
    let events = lab.get_json(&["events"]);
    let events = events["items"].as_array().cloned().unwrap_or_default();
    events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .map(|e| format!("{}: {}\n", e["reason"], e["message"]))
        .collect()
}

#[test]
fn a_bare_lab_runs_a_node_daemonset_and_waits_for_its_cni() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let lab = Lab::bare(2);

    // NotReady nodes, in kubelet's words, tainted; no agent or DNS runs.
    for node in ["node-1", "node-2"] {
        let node = lab.get_json(&["node", node]);
        let ready = condition(&node, "Ready");
        assert_eq!(ready["status"], "False", "{node}");
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or_default()
                .contains("cni plugin not initialized"),
            "{ready}"
        );
        assert!(not_ready_taint(&node), "{node}");
    }
    assert!(lab.pods().is_empty(), "a bare lab runs no pods of its own");

    let out = lab.apply(WAITING);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lab.apply(DAEMONSET);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The DaemonSet runs on every node, networked or not.
    let probes = lab.wait(60, "the DaemonSet's pods on both nodes", || {
        let pods = lab.get_json(&["pods", "-n", "kb-system", "-l", "app=node-probe"]);
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        (pods.len() == 2 && pods.iter().all(lab::ready)).then_some(pods)
    });
    for pod in &probes {
        let (name, node) = (lab::name(pod), lab::node(pod));
        let node_ip = if node == "node-1" { "172.18.0.11" } else { "172.18.0.12" };
        assert_eq!(lab::ip(pod), node_ip, "a host-network pod has its node's address");
        let out = |file: &str| lab.node_path(&node, &format!("/var/lib/kb-probe/{file}"));
        let read = |file: &str| {
            lab.wait(20, &format!("{node}'s {file}"), || {
                std::fs::read_to_string(out(file)).ok().filter(|t| !t.is_empty())
            })
        };
        assert_eq!(
            read("init").trim(),
            node,
            "the init container ran first, with the downward API"
        );
        assert!(
            lab.node_path(&node, "/opt/cni/bin/bridge").is_file(),
            "installed into the node's own /opt/cni/bin"
        );
        assert_eq!(
            read("env").trim(),
            format!("{node} vxlan {node_ip} {node_ip} {name} node-probe hello"),
            "env from the ConfigMap and the downward API, $(VAR) expanded"
        );
        assert_eq!(read("net.d").trim(), "read-only");
        assert!(read("weft").starts_with("weft "), "weft's image holds the built weft");
        assert_eq!(read("namespace"), "kb-system");
        assert!(read("ca.crt").contains("BEGIN CERTIFICATE"));
        let token = read("token");
        let claims = token.split('.').nth(1).expect("a JWT");
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap();
        let claims: Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:kb-system:node-probe");
        assert_eq!(claims["aud"], serde_json::json!(["kb-test"]));
        // kubectl exec sees the container's mounts.
        let listed = lab.kubectl_ok(&["exec", "-n", "kb-system", &name, "--", "ls", "/host/opt/cni/bin"]);
        assert!(listed.contains("host-local"), "{listed}");
    }

    // Pods that need a network wait, saying why.
    let pinned = lab.get_json(&["pod", "pinned"]);
    assert_eq!(pinned["status"]["phase"], "Pending");
    assert!(events_of(&lab, "pinned").contains("NetworkNotReady"));
    let unscheduled = lab.get_json(&["pod", "unscheduled"]);
    assert!(unscheduled["spec"]["nodeName"].is_null());
    assert_eq!(condition(&unscheduled, "PodScheduled")["reason"], "Unschedulable");
    assert!(events_of(&lab, "unscheduled").contains("untolerated taint"));

    // A CNI config on node-1: it is Ready, and the waiting pods run there, networked.
    let net_d = lab.node_path("node-1", "/etc/cni/net.d");
    std::fs::write(net_d.join("10-kbnet.conflist"), CONFLIST).unwrap();
    lab.wait(20, "node-1 Ready", || {
        let node = lab.get_json(&["node", "node-1"]);
        (condition(&node, "Ready")["status"] == "True" && !not_ready_taint(&node)).then_some(())
    });
    for pod in ["pinned", "unscheduled"] {
        let pod = lab.wait(30, &format!("{pod} running"), || {
            let pod = lab.get_json(&["pod", pod]);
            lab::ready(&pod).then_some(pod)
        });
        assert_eq!(lab::node(&pod), "node-1");
        assert!(lab::ip(&pod).starts_with("10.244.1."), "{}", lab::ip(&pod));
    }
    assert_eq!(
        condition(&lab.get_json(&["node", "node-2"]), "Ready")["status"],
        "False"
    );

    // The failing liveness probe restarts its container.
    lab.wait(30, "the unhealthy pod restarted", || {
        let pod = lab.get_json(&["pod", "unhealthy"]);
        (pod["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(())
    });
    assert!(events_of(&lab, "unhealthy").contains("failed liveness probe"));

    // `lab down` under another $KUBECONFIG still takes the context out of the file `lab up` merged it into.
    let context = format!("weft-{}", lab.name);
    assert!(std::fs::read_to_string(lab.kubeconfig()).unwrap().contains(&context));
    let elsewhere = std::env::temp_dir().join(format!("weft-{}-elsewhere.kubeconfig", lab.name));
    let down = lab
        .cmd(&["lab", "down"])
        .env("KUBECONFIG", &elsewhere)
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(!std::fs::read_to_string(lab.kubeconfig()).unwrap().contains(&context));
    assert!(!elsewhere.exists(), "nothing written where the lab never was");
}
