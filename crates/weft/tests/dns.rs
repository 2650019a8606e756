//! Cluster DNS in the lab: `weft dns` pods behind kube-system/kube-dns, queried from a pod with `dig`, glibc's
//! resolver (`getent`, with the search path kubelet writes) and `nslookup`, as the DNS specification lays out.

mod lab;

use lab::*;
use std::time::{Duration, Instant};

const APP: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: s, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: named, labels: {app: web}}
spec:
  hostname: named
  subdomain: web-headless
  containers: [{name: s, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere}
spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
";

fn dig(lab: &Lab, args: &[&str]) -> String {
    let mut cmd = vec!["dig", "+short"];
    cmd.extend_from_slice(args);
    text(&lab.exec("client", &cmd).stdout)
}

fn status(lab: &Lab, name: &str) -> String {
    let out = text(&lab.exec("client", &["dig", name]).stdout);
    out.lines()
        .find_map(|l| {
            l.split("status: ")
                .nth(1)
                .map(|s| s.split(',').next().unwrap_or_default().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn the_dns_specification_from_a_pod() {
    if !is_root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", APP);
    let pods = lab.ready_pods();
    let svc: serde_json::Value = serde_json::from_str(&lab.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let web_ips: Vec<String> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "web")
        .map(ip)
        .collect();

    // resolv.conf as kubelet writes it, pointing at kube-dns.
    let resolv = text(&lab.exec("client", &["cat", "/etc/resolv.conf"]).stdout);
    assert!(resolv.starts_with("nameserver 10.96.0.10\n"), "{resolv}");

    assert_eq!(dig(&lab, &["TXT", "dns-version.cluster.local"]).trim(), "\"1.1.0\"");
    assert_eq!(dig(&lab, &["web.default.svc.cluster.local"]).trim(), cluster_ip);
    assert_eq!(
        dig(&lab, &["SRV", "_http._tcp.web.default.svc.cluster.local"]).trim(),
        "0 100 80 web.default.svc.cluster.local."
    );
    let reverse = dig(&lab, &["-x", &cluster_ip]);
    assert_eq!(reverse.trim(), "web.default.svc.cluster.local.");
    // Headless: one A per ready endpoint, and the named pod's own record.
    let mut headless: Vec<String> = dig(&lab, &["web-headless.default.svc.cluster.local"])
        .lines()
        .map(str::to_string)
        .collect();
    headless.sort();
    let mut expected = web_ips.clone();
    expected.sort();
    assert_eq!(headless, expected);
    let named_ip = ip(&lab.pod("named"));
    assert_eq!(
        dig(&lab, &["named.web-headless.default.svc.cluster.local"]).trim(),
        named_ip
    );
    // ExternalName: a CNAME (followed here, since it points inside the cluster).
    let cname = dig(&lab, &["elsewhere.default.svc.cluster.local"]);
    assert!(cname.starts_with("web.default.svc.cluster.local."), "{cname}");
    // Pod records, NXDOMAIN and NODATA as CoreDNS answers them.
    let dashed = format!("{}.default.pod.cluster.local", named_ip.replace('.', "-"));
    assert_eq!(dig(&lab, &[&dashed]).trim(), named_ip);
    assert_eq!(status(&lab, "nothing.default.svc.cluster.local"), "NXDOMAIN");
    let nodata = text(
        &lab.exec("client", &["dig", "AAAA", "web.default.svc.cluster.local"])
            .stdout,
    );
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );

    // glibc through the search path, and nslookup.
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let out = text(&lab.exec("client", &["getent", "hosts", name]).stdout);
        assert!(out.starts_with(&cluster_ip), "getent hosts {name}: {out}");
    }
    let ns = text(&lab.exec("client", &["nslookup", "web"]).stdout);
    assert!(ns.contains(&cluster_ip), "{ns}");

    // Live changes: a new Service resolves at once; a deleted one is NXDOMAIN within a second.
    let new = "apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec:\n  selector: {app: web}\n  ports: [{port: 81}]\n";
    assert!(lab.apply(new).status.success());
    let fresh_ip = serde_json::from_str::<serde_json::Value>(&lab.ok(&["get", "svc", "fresh", "-o", "json"])).unwrap()
        ["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    lab.wait(1, "the new Service to resolve", || {
        (dig(&lab, &["fresh.default.svc.cluster.local"]).trim() == fresh_ip).then_some(())
    });
    lab.ok(&["delete", "service", "fresh"]);
    let deleted = Instant::now();
    lab.wait(2, "NXDOMAIN for the deleted Service", || {
        (status(&lab, "fresh.default.svc.cluster.local") == "NXDOMAIN").then_some(())
    });
    assert!(
        deleted.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
        "{:?}",
        deleted.elapsed()
    );
}
