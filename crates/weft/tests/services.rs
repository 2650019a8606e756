//! Services through the real proxy: every kind of Service end to end, through real pods, nodes and the
//! external host, on a 3-node lab.

mod lab;

use lab::*;
use serde_json::Value;
use std::collections::BTreeSet;

const APP: &str = "
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
      - name: serve
        image: agnhost
        ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: dns, port: 53, targetPort: dns, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: nothing}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  externalIPs: [172.18.0.12]
  ports: [{port: 8081, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}
  ports: [{port: 80, targetPort: 8080}]
";

fn service(lab: &Lab, name: &str) -> Value {
    serde_json::from_str(&lab.ok(&["get", "svc", name, "-o", "json"])).unwrap()
}

fn cluster_ip(lab: &Lab, name: &str) -> String {
    service(lab, name)["spec"]["clusterIP"].as_str().unwrap().to_string()
}

/// Probes `url` from `pod` (or, with a `node-`/`external` prefix, from there) and returns serve's answer.
fn probe(lab: &Lab, from: &str, url: &str) -> Option<String> {
    let args = ["weft", "probe", "--timeout", "2s", url];
    let out = if from.starts_with("node-") || from == "external" {
        lab.node_exec(from, &args)
    } else {
        lab.exec(from, &args)
    };
    out.status.success().then(|| text(&out.stdout))
}

/// The pods that answer `url` over `tries` attempts.
fn answering(lab: &Lab, from: &str, url: &str, tries: usize) -> BTreeSet<String> {
    (0..tries)
        .filter_map(|_| probe(lab, from, url))
        .filter_map(|a| field(&a, "pod"))
        .collect()
}

#[test]
fn services_end_to_end() {
    if !root() {
        return;
    }
    let lab = Lab::up(3, "host-gw", APP);
    let pods = lab.ready_pods();
    let web: BTreeSet<String> = pods.iter().map(name).filter(|n| n.starts_with("web-")).collect();
    let client_ip = ip(&lab.pod("client"));
    let web_ip = cluster_ip(&lab, "web");

    // ClusterIP, TCP: random balancing reaches every endpoint; the server sees the client pod's own address.
    let url = format!("http://{web_ip}/");
    let seen = lab.wait(30, "every endpoint to answer", || {
        let seen = answering(&lab, "client", &url, 12);
        (seen == web).then_some(seen)
    });
    assert_eq!(seen.len(), 3);
    let answer = probe(&lab, "client", &url).unwrap();
    assert_eq!(
        field(&answer, "client").unwrap().split(':').next(),
        Some(client_ip.as_str())
    );

    // UDP on the named port of the same Service.
    let udp = probe(&lab, "client", &format!("udp://{web_ip}:53")).expect("UDP through the ClusterIP");
    assert!(web.contains(udp.trim()), "{udp}");

    // From outside the pod network (a node) the ClusterIP works too, masqueraded.
    assert!(probe(&lab, "node-2", &url).is_some());

    // No endpoints: refused at once, not a timeout.
    let nothing = cluster_ip(&lab, "nothing");
    let started = std::time::Instant::now();
    let out = lab.exec(
        "client",
        &["weft", "probe", "--timeout", "5s", &format!("tcp://{nothing}:80")],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("refused"), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    // NodePort on every node, and an external IP, from the external host; the source is masqueraded.
    for node_ip in ["172.18.0.11", "172.18.0.12", "172.18.0.13"] {
        let answer = probe(&lab, "external", &format!("http://{node_ip}:30080/")).expect("NodePort");
        assert_ne!(
            field(&answer, "client").unwrap().split(':').next(),
            Some("172.18.0.100")
        );
    }
    assert!(
        probe(&lab, "external", "http://172.18.0.12:8081/").is_some(),
        "external IP"
    );

    // LoadBalancer: the ingress IP answers from the external host.
    let lb = lab.wait(10, "a load-balancer IP", || {
        service(&lab, "web-lb")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    // The lab's cloud routes it to a node asynchronously: poll.
    lab.wait(10, "the load-balancer IP to answer", || {
        probe(&lab, "external", &format!("http://{lb}/"))
    });

    // Session affinity: one client, one endpoint.
    let sticky = cluster_ip(&lab, "web-sticky");
    let seen = answering(&lab, "client", &format!("http://{sticky}/"), 10);
    assert_eq!(seen.len(), 1, "{seen:?}");

    // Hairpin: a pod reaches itself through its own Service.
    let first = web.iter().next().unwrap();
    lab.wait(30, "a pod answering itself through the Service", || {
        answering(&lab, first, &url, 6).contains(first).then_some(())
    });

    // Scaling down: within a second, removed pods get no new connections.
    let scaled = APP.replace("replicas: 3", "replicas: 1");
    assert!(lab.apply(&scaled).status.success());
    let left = lab.wait(30, "one endpoint", || {
        let pods = lab.pods();
        let web: Vec<String> = pods.iter().map(name).filter(|n| n.starts_with("web-")).collect();
        (web.len() == 1).then(|| web[0].clone())
    });
    let started = std::time::Instant::now();
    lab.wait(5, "only the remaining endpoint to answer", || {
        let seen = answering(&lab, "client", &url, 6);
        (seen.len() == 1 && seen.contains(&left)).then_some(())
    });
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn local_traffic_policies_keep_the_client_address_and_stay_on_the_node() {
    if !root() {
        return;
    }
    let app = "
apiVersion: v1
kind: Pod
metadata: {name: only, labels: {app: one}}
spec:
  nodeName: node-2
  containers: [{name: s, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Service
metadata: {name: local-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: one}
  ports: [{port: 80, nodePort: 30090}]
---
apiVersion: v1
kind: Service
metadata: {name: local-internal}
spec:
  internalTrafficPolicy: Local
  selector: {app: one}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: guarded}
spec:
  type: LoadBalancer
  selector: {app: one}
  loadBalancerSourceRanges: [10.0.0.0/8]
  ports: [{port: 80}]
";
    let lab = Lab::up(2, "vxlan", app);
    lab.ready_pods();
    let svc = service(&lab, "local-lb");
    // The node with the endpoint answers and the server sees the external client's own address.
    let answer = lab.wait(10, "the NodePort on the endpoint's node", || {
        probe(&lab, "external", "http://172.18.0.12:30090/")
    });
    assert_eq!(
        field(&answer, "client").unwrap().split(':').next(),
        Some("172.18.0.100")
    );
    // The node without one does not forward external traffic.
    assert!(probe(&lab, "external", "http://172.18.0.11:30090/").is_none());
    // Health checks tell a load balancer which node to use.
    let hc = svc["spec"]["healthCheckNodePort"]
        .as_i64()
        .expect("healthCheckNodePort");
    let code = |node: &str| {
        let out = lab.node_exec(
            "external",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{node}:{hc}/"),
            ],
        );
        text(&out.stdout)
    };
    assert_eq!(code("172.18.0.12"), "200");
    assert_eq!(code("172.18.0.11"), "503");
    // Pods still reach it from any node (they are not external).
    let lb_cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(probe(&lab, "client", &format!("http://{lb_cluster_ip}/")).is_some());
    // internalTrafficPolicy: Local from a node without a local endpoint: no answer.
    let internal = cluster_ip(&lab, "local-internal");
    assert!(probe(&lab, "client", &format!("http://{internal}/")).is_none());
    // Source ranges that exclude the external host keep it out.
    let guarded = lab.wait(10, "a load-balancer IP", || {
        service(&lab, "guarded")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    assert!(probe(&lab, "external", &format!("http://{guarded}/")).is_none());
    // ... and ranges that include it let it in.
    let opened = app.replace(
        "loadBalancerSourceRanges: [10.0.0.0/8]",
        "loadBalancerSourceRanges: [172.18.0.0/24]",
    );
    assert!(lab.apply(&opened).status.success());
    lab.wait(10, "the widened source range", || {
        probe(&lab, "external", &format!("http://{guarded}/"))
    });
}

#[test]
fn syncs_spare_established_flows_and_clear_stale_udp_entries() {
    if !root() {
        return;
    }
    let app = APP.replace("replicas: 3", "replicas: 1");
    let lab = Lab::up(2, "host-gw", &app);
    lab.ready_pods();
    let web_ip = cluster_ip(&lab, "web");
    let url = format!("http://{web_ip}/");
    lab.wait(30, "the Service to answer", || probe(&lab, "client", &url));

    // An established connection through the ClusterIP, kept open across syncs of other Services.
    let mut conn = lab
        .cmd(&["exec", "client", "--", "socat", "-", &format!("TCP:{web_ip}:80")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    lab.wait(10, "the connection to be established", || {
        let ss = text(&lab.exec("client", &["ss", "-Htn", "state", "established"]).stdout);
        ss.contains(&format!("{web_ip}:80")).then_some(())
    });
    let other = "apiVersion: v1\nkind: Service\nmetadata: {name: other}\nspec:\n  selector: {app: web}\n  ports: [{port: 81, targetPort: 8080}]\n";
    assert!(lab.apply(other).status.success());
    let other_ip = cluster_ip(&lab, "other");
    lab.wait(30, "the new Service to be programmed", || {
        probe(&lab, "client", &format!("http://{other_ip}:81/"))
    });
    lab.ok(&["delete", "service", "other"]);
    use std::io::{Read, Write};
    let mut stdin = conn.stdin.take().unwrap();
    stdin.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").unwrap();
    drop(stdin);
    let mut answer = String::new();
    conn.stdout.take().unwrap().read_to_string(&mut answer).unwrap();
    assert!(conn.wait().unwrap().success());
    assert!(
        answer.contains("200 OK"),
        "the established flow survived the syncs: {answer}"
    );

    // UDP from a fixed source port: when the endpoint is replaced, the stale conntrack entry is cleared and the
    // very same flow reaches the new endpoint at once.
    let udp = |lab: &Lab| {
        let out = lab.exec(
            "client",
            &[
                "sh",
                "-c",
                &format!("echo hostname | socat -T2 - UDP:{web_ip}:53,sourceport=40053"),
            ],
        );
        text(&out.stdout).trim().to_string()
    };
    let before = lab.wait(10, "a UDP answer", || Some(udp(&lab)).filter(|a| a.starts_with("web-")));
    lab.ok(&["delete", "pod", &before]);
    let after = lab.wait(30, "the replacement to answer the same UDP flow", || {
        Some(udp(&lab)).filter(|a| a.starts_with("web-") && *a != before)
    });
    assert_ne!(after, before);
}
