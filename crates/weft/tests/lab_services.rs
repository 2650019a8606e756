//! Services and EndpointSlices as the lab's control plane makes them: addresses and ports allocated at apply
//! (requested ones honoured, conflicts refused whole), slices that follow the pods, mirrored Endpoints,
//! `weft expose`, and the external host's routes to LoadBalancer addresses. Traffic to Services is the node
//! proxy's part and is not tested here.

mod lab;

use lab::*;
use serde_json::Value;

const APPS: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: serve
        ports: [{name: http, containerPort: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: solo}
spec:
  replicas: 1
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      containers:
      - name: serve
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-ip}
spec:
  clusterIP: 10.96.0.11
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ext}
subsets:
- addresses: [{ip: 192.0.2.10}, {ip: 192.0.2.11}]
  ports: [{port: 5432}]
";

fn items(lab: &Lab, args: &[&str]) -> Vec<Value> {
    let list: Value = serde_json::from_str(&lab.ok(args)).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn services(lab: &Lab) -> Vec<Value> {
    items(lab, &["get", "svc", "-o", "json"])
}

fn service(lab: &Lab, name: &str) -> Value {
    serde_json::from_str(&lab.ok(&["get", "svc", name, "-o", "json"])).unwrap()
}

/// The EndpointSlices of one Service.
fn slices(lab: &Lab, svc: &str) -> Vec<Value> {
    items(lab, &["get", "endpointslices", "-o", "json"])
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
        .collect()
}

/// (address, ready, terminating) of every endpoint of a Service, sorted.
fn endpoints(lab: &Lab, svc: &str) -> Vec<(String, bool, bool)> {
    let mut out: Vec<(String, bool, bool)> = slices(lab, svc)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                e["conditions"]["ready"] == true,
                e["conditions"]["terminating"] == true,
            )
        })
        .collect();
    out.sort();
    out
}

fn web_pod_ips(lab: &Lab) -> Vec<String> {
    let mut ips: Vec<String> = lab
        .pods()
        .iter()
        .filter(|p| name(p).starts_with("web-") && p["metadata"]["deletionTimestamp"].is_null() && ready(p))
        .map(ip)
        .collect();
    ips.sort();
    ips
}

fn external_routes(lab: &Lab) -> String {
    text(&lab.node_exec("external", &["ip", "route"]).stdout)
}

#[test]
fn services_get_addresses_ports_slices_and_routes() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", APPS);
    lab.ready_pods();

    // Addresses and ports as the API server and the lab's cloud give them.
    let web_ip = service(&lab, "web-ip");
    assert_eq!(web_ip["spec"]["clusterIP"], "10.96.0.11");
    assert_eq!(web_ip["spec"]["clusterIPs"], serde_json::json!(["10.96.0.11"]));
    assert_eq!(web_ip["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(web_ip["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(web_ip["spec"]["type"], "ClusterIP");
    let np = service(&lab, "web-np");
    assert_eq!(np["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(
        np["spec"]["clusterIP"], "10.96.0.17",
        "dynamic addresses start above the static band"
    );
    let lb = service(&lab, "web-lb");
    let lb_port = lb["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&lb_port) && lb_port != 30080, "{lb}");
    assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ip"], "172.18.1.1");
    let solo = service(&lab, "solo-lb");
    assert_eq!(solo["status"]["loadBalancer"]["ingress"][0]["ip"], "172.18.1.2");
    assert!(solo["spec"]["healthCheckNodePort"].as_i64().is_some(), "{solo}");
    let headless = service(&lab, "web-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    // Six of the test's and the `kubernetes` Service every cluster has.
    assert_eq!(services(&lab).len(), 7);

    // A conflicting request is refused naming the field and the holder; nothing of the batch is applied.
    let conflicting = "apiVersion: v1\nkind: Service\nmetadata: {name: fine}\nspec: {selector: {app: web}, ports: [{port: 1}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: dup}\nspec: {clusterIP: 10.96.0.11, selector: {app: web}, ports: [{port: 1}]}\n";
    let out = lab.apply(conflicting);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("spec.clusterIP"), "{err}");
    assert!(err.contains("already allocated to Service default/web-ip"), "{err}");
    assert!(lab.weft(&["get", "svc", "fine"]).status.code() != Some(0));
    let out = lab.apply("apiVersion: v1\nkind: Service\nmetadata: {name: np2}\nspec: {type: NodePort, selector: {app: web}, ports: [{port: 1, protocol: UDP, nodePort: 30080}]}\n");
    assert!(text(&out.stderr).contains("already allocated to Service default/web-np"));
    // Re-applying keeps what was allocated.
    let out = lab.apply(APPS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("service/web-lb unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(service(&lab, "web-lb")["spec"]["ports"][0]["nodePort"], lb_port);

    // Slices list the ready pods with the resolved target port.
    let ips = web_pod_ips(&lab);
    assert_eq!(ips.len(), 3);
    let want: Vec<(String, bool, bool)> = ips.iter().map(|ip| (ip.clone(), true, false)).collect();
    lab.wait(30, "web-ip's slices", || {
        (endpoints(&lab, "web-ip") == want).then_some(())
    });
    let slice = &slices(&lab, "web-ip")[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 80);
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["targetRef"]["kind"], "Pod");
    assert!(endpoint["nodeName"].as_str().unwrap().starts_with("node-"));
    assert_eq!(endpoints(&lab, "web-headless"), want);
    assert_eq!(
        slices(&lab, "web-headless")[0]["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    // The selector-less Service's Endpoints, mirrored.
    let mirror = slices(&lab, "ext");
    assert_eq!(mirror.len(), 1);
    assert_eq!(mirror[0]["metadata"]["name"], "ext-mirror");
    assert_eq!(
        mirror[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(endpoints(&lab, "ext").len(), 2);

    // Tables as kubectl prints them.
    let table = lab.ok(&["get", "svc", "-o", "wide"]);
    assert!(table.starts_with("NAME") && table.contains("SELECTOR"), "{table}");
    assert!(
        table.contains("80:30080/TCP") && table.contains("172.18.1.1") && table.contains("app=web"),
        "{table}"
    );
    let table = lab.ok(&["get", "endpointslices"]);
    assert!(
        table.contains("ADDRESSTYPE") && table.contains("ext-mirror") && table.contains("192.0.2.10"),
        "{table}"
    );
    let status = lab.ok(&["lab", "status"]);
    assert!(
        status.contains("10.96.0.0/12") && status.contains("172.18.1.0/24"),
        "{status}"
    );

    // The external host routes LoadBalancer addresses: Cluster via node-1, Local via the node with the pod.
    lab.wait(30, "the route to web-lb", || {
        external_routes(&lab)
            .contains("172.18.1.1 via 172.18.0.11")
            .then_some(())
    });
    let solo_pod = lab.pods().into_iter().find(|p| name(p).starts_with("solo-")).unwrap();
    let solo_node_ip = solo_pod["status"]["hostIP"].as_str().unwrap().to_string();
    lab.wait(30, "the route to solo-lb", || {
        external_routes(&lab)
            .contains(&format!("172.18.1.2 via {solo_node_ip}"))
            .then_some(())
    });

    // Scaling updates the slices.
    assert!(lab.apply(&APPS.replace("replicas: 3", "replicas: 2")).status.success());
    lab.wait(30, "two endpoints", || {
        let eps = endpoints(&lab, "web-ip");
        (eps.len() == 2 && eps.iter().all(|e| e.1)).then_some(())
    });

    // A deleted pod's endpoint is terminating (not ready) until it is gone, then it is gone.
    let victim = lab
        .pods()
        .into_iter()
        .find(|p| name(p).starts_with("web-") && ready(p))
        .unwrap();
    let victim_ip = ip(&victim);
    lab.ok(&["delete", "pod", &name(&victim), "--wait=false"]);
    lab.wait(30, "the deleted pod's endpoint to terminate", || {
        let eps = endpoints(&lab, "web-ip");
        eps.iter().all(|e| e.0 != victim_ip || (!e.1 && e.2)).then_some(())
    });
    lab.wait(60, "the deleted pod's endpoint to go", || {
        endpoints(&lab, "web-ip").iter().all(|e| e.0 != victim_ip).then_some(())
    });
    lab.wait(60, "the replacement's endpoint", || {
        let eps = endpoints(&lab, "web-ip");
        (eps.len() == 2 && eps.iter().all(|e| e.1)).then_some(())
    });

    // weft expose makes the Service kubectl would.
    let out = lab.ok(&[
        "expose",
        "deployment/web",
        "--port",
        "8080",
        "--target-port",
        "80",
        "--name",
        "web-exp",
    ]);
    assert_eq!(out.trim(), "service/web-exp exposed");
    let exp = service(&lab, "web-exp");
    assert_eq!(exp["spec"]["selector"]["app"], "web");
    assert_eq!(exp["spec"]["ports"][0]["port"], 8080);
    assert_eq!(exp["spec"]["ports"][0]["targetPort"], 80);
    lab.wait(30, "web-exp's slices", || {
        (endpoints(&lab, "web-exp").len() == 2).then_some(())
    });
    assert!(
        lab.weft(&["expose", "deployment/web", "--port", "1", "--name", "web-exp"])
            .status
            .code()
            != Some(0)
    );
    let out = lab.ok(&["expose", "pod", &name(&solo_pod), "--type", "NodePort"]);
    assert!(out.contains("exposed"), "{out}");
    assert_eq!(service(&lab, &name(&solo_pod))["spec"]["ports"][0]["port"], 8080);

    // Deleting a Service releases its address and removes its slices and route.
    lab.ok(&["delete", "svc", "web-lb"]);
    lab.wait(30, "web-lb's route to go", || {
        (!external_routes(&lab).contains("172.18.1.1 ")).then_some(())
    });
    lab.wait(30, "web-lb's slices to go", || {
        slices(&lab, "web-lb").is_empty().then_some(())
    });
    lab.ok(&["delete", "endpoints", "ext"]);
    lab.wait(30, "the mirror to go", || slices(&lab, "ext").is_empty().then_some(()));
    let out = lab.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: again}\nspec: {type: LoadBalancer, ports: [{port: 1}]}\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        service(&lab, "again")["status"]["loadBalancer"]["ingress"][0]["ip"],
        "172.18.1.1"
    );
}
