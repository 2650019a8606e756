//! Cluster DNS in the lab: `weft dns` pods behind kube-system/kube-dns, asked from a pod with `dig` against the
//! Service IP, one test per record of the Kubernetes DNS specification 1.1.0; glibc's resolver (`getent`, with
//! the search path kubelet writes) and `nslookup`; live changes and the change-to-answer metric. All tests share
//! one lab, taken down when the binary exits.

mod lab;

use lab::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Beside `lab::WEB` (Deployment `web` of three pods, pod `client`).
const DNS_OBJECTS: &str = "
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
metadata: {name: nobody}
spec:
  clusterIP: None
  selector: {app: nobody}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: manual-v4, labels: {kubernetes.io/service-name: manual}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [10.244.200.1]
- addresses: [10.244.200.2]
  conditions: {ready: false}
- addresses: [10.244.200.3]
  conditions: {ready: true}
  hostname: db-0
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: manual-v6, labels: {kubernetes.io/service-name: manual}}
addressType: IPv6
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints: [{addresses: ['fd00:10:244::5']}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere}
spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec: {type: ExternalName, externalName: example.org}
";

/// The cluster DNS Service's address (the service CIDR's 10th).
const KUBE_DNS: &str = "10.96.0.10";

fn cluster() -> Option<&'static Lab> {
    lab::shared(2, "host-gw", &format!("{WEB}---{DNS_OBJECTS}"))
}

/// One resource record as dig prints it.
#[derive(Debug)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// dig's answer: the status and the three sections.
#[derive(Debug, Default)]
struct Reply {
    status: String,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
}

impl Reply {
    /// The answer's data of records of `rtype`, sorted.
    fn data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }

    /// The additional section's addresses, `owner address`, sorted.
    fn glue(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .additional
            .iter()
            .filter(|r| r.rtype == "A" || r.rtype == "AAAA")
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        v.sort();
        v
    }

    /// A negative answer as CoreDNS gives it: no answer, the zone's SOA (negative TTL 5 s) in the authority.
    fn assert_negative(&self, status: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.answer.is_empty(), "{self:?}");
        let [soa] = &self.authority[..] else {
            panic!("one SOA in the authority: {self:?}")
        };
        assert_eq!((soa.name.as_str(), soa.rtype.as_str()), ("cluster.local.", "SOA"));
        assert!(
            soa.data.starts_with("ns.dns.cluster.local. hostmaster.cluster.local. "),
            "{soa:?}"
        );
        assert!(soa.data.ends_with(" 5"), "negative TTL: {soa:?}");
    }
}

/// The answer's data for `name` of type `ty`, sorted.
fn answers(lab: &Lab, ty: &str, name: &str) -> Vec<String> {
    dig(lab, &[ty, name]).data(ty)
}

/// `dig @10.96.0.10 ARGS` in the client pod.
fn dig(lab: &Lab, args: &[&str]) -> Reply {
    let mut cmd = vec!["dig", "@10.96.0.10", "+time=2", "+tries=2"];
    cmd.extend_from_slice(args);
    let out = lab.exec("client", &cmd);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "dig {args:?}: {stdout}{}", text(&out.stderr));
    let mut reply = Reply::default();
    let mut section = None;
    for line in stdout.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            reply.status = rest.split(',').next().unwrap_or_default().to_string();
        } else if let Some(name) = line.strip_prefix(";; ").and_then(|l| l.strip_suffix(" SECTION:")) {
            section = Some(name.to_string());
        } else if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = None;
            }
        } else if let Some(section) = &section {
            let f: Vec<&str> = line.split_whitespace().collect();
            let rr = Rr {
                name: f[0].to_string(),
                ttl: f[1].parse().unwrap_or_else(|_| panic!("a TTL in {line:?}")),
                rtype: f[3].to_string(),
                data: f[4..].join(" "),
            };
            match section.as_str() {
                "ANSWER" => reply.answer.push(rr),
                "AUTHORITY" => reply.authority.push(rr),
                "ADDITIONAL" => reply.additional.push(rr),
                _ => {}
            }
        }
    }
    reply
}

/// The ClusterIP of `service` (`NAME` in default, or `NS/NAME`).
fn cluster_ip(lab: &Lab, service: &str) -> String {
    let (ns, name) = service.split_once('/').unwrap_or(("default", service));
    let svc: Value = serde_json::from_str(&lab.ok(&["get", "svc", name, "-n", ns, "-o", "json"])).unwrap();
    svc["spec"]["clusterIP"].as_str().unwrap().to_string()
}

/// The addresses of the pods labelled `app=web` (the Deployment's and `named`).
fn web_ips(lab: &Lab) -> Vec<String> {
    let mut ips: Vec<String> = lab
        .pods()
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "web")
        .map(ip)
        .collect();
    ips.sort();
    ips
}

/// The headless record label CoreDNS generates for an endpoint without a hostname.
fn dashed(ip: &str) -> String {
    ip.replace('.', "-")
}

#[test]
fn pods_resolve_through_kube_dns() {
    let Some(lab) = cluster() else { return };
    let resolv = text(&lab.exec("client", &["cat", "/etc/resolv.conf"]).stdout);
    assert_eq!(
        resolv,
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
    assert_eq!(cluster_ip(lab, "kube-system/kube-dns").as_str(), KUBE_DNS);
}

#[test]
fn dns_version_txt() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["TXT", "dns-version.cluster.local"]);
    assert_eq!(r.status, "NOERROR");
    assert_eq!(r.data("TXT"), vec!["\"1.1.0\""]);
}

#[test]
fn cluster_ip_a() {
    let Some(lab) = cluster() else { return };
    assert_eq!(
        answers(lab, "A", "web.default.svc.cluster.local"),
        vec![cluster_ip(lab, "web")]
    );
}

/// The lab is single-stack IPv4, so a ClusterIP Service has no AAAA: NODATA (dual-stack ClusterIPs are answered
/// in crates/dns/tests/server.rs). Headless AAAA records come from IPv6 EndpointSlices, as here.
#[test]
fn aaaa_of_a_headless_service_from_an_ipv6_slice() {
    let Some(lab) = cluster() else { return };
    assert_eq!(
        answers(lab, "AAAA", "manual.default.svc.cluster.local"),
        vec!["fd00:10:244::5"]
    );
}

#[test]
fn cluster_ip_srv_for_a_named_port() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["SRV", "_http._tcp.web.default.svc.cluster.local"]);
    assert_eq!(r.data("SRV"), vec!["0 100 80 web.default.svc.cluster.local."]);
    let ip = cluster_ip(lab, "web");
    assert_eq!(r.glue(), vec![format!("web.default.svc.cluster.local. {ip}")]);
    // A port without that name or protocol: the name does not exist.
    dig(lab, &["SRV", "_http._udp.web.default.svc.cluster.local"]).assert_negative("NXDOMAIN");
}

#[test]
fn cluster_ip_ptr() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["-x", &cluster_ip(lab, "web")]);
    assert_eq!(r.data("PTR"), vec!["web.default.svc.cluster.local."]);
}

#[test]
fn headless_a_per_ready_endpoint() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["A", "web-headless.default.svc.cluster.local"]);
    let ips = web_ips(lab);
    assert_eq!(ips.len(), 4);
    assert_eq!(r.data("A"), ips);
    // The not-ready endpoint of the selector-less Service is left out.
    assert_eq!(
        answers(lab, "A", "manual.default.svc.cluster.local"),
        vec!["10.244.200.1", "10.244.200.3"]
    );
}

#[test]
fn missing_ready_condition_counts_as_ready() {
    let Some(lab) = cluster() else { return };
    // manual-v4's first endpoint has no conditions at all.
    assert_eq!(
        answers(lab, "A", "10-244-200-1.manual.default.svc.cluster.local"),
        vec!["10.244.200.1"]
    );
    dig(lab, &["A", "10-244-200-2.manual.default.svc.cluster.local"]).assert_negative("NXDOMAIN");
}

#[test]
fn headless_hostname_records() {
    let Some(lab) = cluster() else { return };
    // A pod with hostname + subdomain naming the headless Service.
    assert_eq!(
        answers(lab, "A", "named.web-headless.default.svc.cluster.local"),
        vec![ip(&lab.pod("named"))]
    );
    // An endpoint's hostname set in the slice.
    assert_eq!(
        answers(lab, "A", "db-0.manual.default.svc.cluster.local"),
        vec!["10.244.200.3"]
    );
    // Endpoints without a hostname are named by their address.
    let other = web_ips(lab).into_iter().find(|i| *i != ip(&lab.pod("named"))).unwrap();
    let r = dig(
        lab,
        &[
            "A",
            &format!("{}.web-headless.default.svc.cluster.local", dashed(&other)),
        ],
    );
    assert_eq!(r.data("A"), vec![other]);
}

#[test]
fn headless_srv_per_ready_endpoint() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["SRV", "_http._tcp.web-headless.default.svc.cluster.local"]);
    let named = ip(&lab.pod("named"));
    let target = |i: &String| {
        let label = if *i == named { "named".to_string() } else { dashed(i) };
        format!("{label}.web-headless.default.svc.cluster.local.")
    };
    let ips = web_ips(lab);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let weight = 100 / ips.len();
    let srv = ips.iter().map(|i| format!("0 {weight} 80 {}", target(i))).collect();
    assert_eq!(r.data("SRV"), sorted(srv));
    let glue = ips.iter().map(|i| format!("{} {i}", target(i))).collect();
    assert_eq!(r.glue(), sorted(glue));
    assert_eq!(
        answers(lab, "SRV", "_pg._tcp.manual.default.svc.cluster.local"),
        vec![
            "0 33 5432 10-244-200-1.manual.default.svc.cluster.local.",
            "0 33 5432 db-0.manual.default.svc.cluster.local.",
            "0 33 5432 fd00-10-244--5.manual.default.svc.cluster.local.",
        ]
    );
}

#[test]
fn headless_endpoint_ptr() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["-x", &ip(&lab.pod("named"))]);
    assert_eq!(r.data("PTR"), vec!["named.web-headless.default.svc.cluster.local."]);
    let r = dig(lab, &["-x", "10.244.200.1"]);
    assert_eq!(r.data("PTR"), vec!["10-244-200-1.manual.default.svc.cluster.local."]);
}

#[test]
fn headless_without_ready_endpoint_is_nxdomain() {
    let Some(lab) = cluster() else { return };
    dig(lab, &["A", "nobody.default.svc.cluster.local"]).assert_negative("NXDOMAIN");
    dig(lab, &["SRV", "_http._tcp.nobody.default.svc.cluster.local"]).assert_negative("NXDOMAIN");
}

#[test]
fn external_name_cname() {
    let Some(lab) = cluster() else { return };
    assert_eq!(
        answers(lab, "CNAME", "outside.default.svc.cluster.local"),
        vec!["example.org."]
    );
}

#[test]
fn external_name_chased() {
    let Some(lab) = cluster() else { return };
    // The target is inside the cluster, so the answer holds the CNAME and the target's A.
    let r = dig(lab, &["A", "elsewhere.default.svc.cluster.local"]);
    assert_eq!(r.data("CNAME"), vec!["web.default.svc.cluster.local."]);
    assert_eq!(r.data("A"), vec![cluster_ip(lab, "web")]);
    assert_eq!(r.answer[0].rtype, "CNAME", "the CNAME first: {r:?}");
}

#[test]
fn pod_records() {
    let Some(lab) = cluster() else { return };
    let client = ip(&lab.pod("client"));
    assert_eq!(
        answers(lab, "A", &format!("{}.default.pod.cluster.local", dashed(&client))),
        vec![client.clone()]
    );
    // `pods insecure`: any address in an existing namespace; none in a namespace that does not exist.
    assert_eq!(
        answers(lab, "A", "10-244-99-99.default.pod.cluster.local"),
        vec!["10.244.99.99"]
    );
    dig(lab, &["A", &format!("{}.nope.pod.cluster.local", dashed(&client))]).assert_negative("NXDOMAIN");
}

#[test]
fn nxdomain_with_the_soa() {
    let Some(lab) = cluster() else { return };
    for name in [
        "nothing.default.svc.cluster.local",
        "web.nope.svc.cluster.local",
        "x.web.default.svc.cluster.local",
    ] {
        dig(lab, &["A", name]).assert_negative("NXDOMAIN");
    }
}

#[test]
fn nodata_with_the_soa() {
    let Some(lab) = cluster() else { return };
    // Names that exist without a record of the type asked: NOERROR, no answer.
    for (ty, name) in [
        ("AAAA", "web.default.svc.cluster.local"),
        ("TXT", "web.default.svc.cluster.local"),
        ("A", "default.svc.cluster.local"),
        ("A", "svc.cluster.local"),
        ("SRV", "_tcp.web.default.svc.cluster.local"),
    ] {
        dig(lab, &[ty, name]).assert_negative("NOERROR");
    }
}

#[test]
fn names_are_case_insensitive() {
    let Some(lab) = cluster() else { return };
    let r = dig(lab, &["A", "WeB.DEFAULT.Svc.Cluster.LOCAL"]);
    assert_eq!(r.data("A"), vec![cluster_ip(lab, "web")]);
    let owner = &r.answer[0].name;
    assert_eq!(owner, "WeB.DEFAULT.Svc.Cluster.LOCAL.", "owned by the name as asked");
    let r = dig(lab, &["SRV", "_HTTP._Tcp.web-HEADLESS.default.svc.cluster.local"]);
    assert_eq!(r.data("SRV").len(), web_ips(lab).len());
}

#[test]
fn records_have_a_ttl_of_5_seconds() {
    let Some(lab) = cluster() else { return };
    for (ty, name) in [
        ("A", "web.default.svc.cluster.local"),
        ("A", "web-headless.default.svc.cluster.local"),
        ("SRV", "_http._tcp.web.default.svc.cluster.local"),
        ("TXT", "dns-version.cluster.local"),
    ] {
        let r = dig(lab, &[ty, name]);
        assert!(!r.answer.is_empty(), "{r:?}");
        assert!(r.answer.iter().chain(&r.additional).all(|rr| rr.ttl == 5), "{r:?}");
    }
}

#[test]
fn getent_through_the_search_path() {
    let Some(lab) = cluster() else { return };
    let ip = cluster_ip(lab, "web");
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let out = text(&lab.exec("client", &["getent", "hosts", name]).stdout);
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            vec![ip.as_str(), "web.default.svc.cluster.local"],
            "getent hosts {name}"
        );
    }
}

/// The lab has no way out, so its DNS pods forward nothing: a name outside the cluster gets SERVFAIL at once, not
/// after an upstream timeout (which every AAAA search of glibc through the search path would wait for).
#[test]
fn names_outside_the_cluster_fail_at_once() {
    let Some(lab) = cluster() else { return };
    for name in ["example.com", "web"] {
        // One try of one second: an answer, not "no servers could be reached".
        let reply = dig(lab, &["+time=1", "+tries=1", "A", name]);
        assert_eq!(reply.status, "SERVFAIL", "{name}: {reply:?}");
    }
}

#[test]
fn nslookup_answers() {
    let Some(lab) = cluster() else { return };
    let out = lab.exec("client", &["nslookup", "web"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("Server:\t\t{KUBE_DNS}\n")), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "Name:\tweb.default.svc.cluster.local\nAddress: {}\n",
            cluster_ip(lab, "web")
        )),
        "{stdout}"
    );
}

#[test]
fn a_created_service_resolves_at_once_and_a_deleted_one_is_gone_within_a_second() {
    let Some(lab) = cluster() else { return };
    let name = "fresh.default.svc.cluster.local";
    let new = "apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec:\n  selector: {app: web}\n  ports: [{port: 81}]\n";
    assert!(lab.apply(new).status.success());
    let fresh_ip = cluster_ip(lab, "fresh");
    lab.wait(1, "the new Service to resolve", || {
        (dig(lab, &["A", name]).data("A") == [fresh_ip.as_str()]).then_some(())
    });
    lab.ok(&["delete", "service", "fresh"]);
    let deleted = Instant::now();
    lab.wait(2, "NXDOMAIN for the deleted Service", || {
        (dig(lab, &["A", name]).status == "NXDOMAIN").then_some(())
    });
    // One second, and the time `weft exec` + dig take to ask.
    assert!(
        deleted.elapsed() < Duration::from_millis(1500),
        "{:?}",
        deleted.elapsed()
    );
}

/// `weft_dns_change_to_answer_seconds` of each DNS pod: (count, sum).
fn change_to_answer(lab: &Lab) -> Vec<(u64, f64)> {
    let dns_pods = lab
        .pods()
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["k8s-app"] == "kube-dns");
    dns_pods
        .map(|p| {
            let url = format!("http://{}:8080/metrics", ip(&p));
            let metrics = lab.ok(&["exec", "client", "--", "curl", "-sf", &url]);
            let value = |name: &str| {
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                    .unwrap_or_else(|| panic!("{name} in {metrics}"))
                    .to_string()
            };
            let count = value("weft_dns_change_to_answer_seconds_count").parse().unwrap();
            let sum = value("weft_dns_change_to_answer_seconds_sum").parse().unwrap();
            (count, sum)
        })
        .collect()
}

#[test]
fn change_to_answer_is_measured_from_the_object_change() {
    let Some(lab) = cluster() else { return };
    let before = change_to_answer(lab);
    assert_eq!(before.len(), 2, "two DNS pods");
    let new = "apiVersion: v1\nkind: Service\nmetadata: {name: timed}\nspec:\n  selector: {app: web}\n  ports: [{port: 82}]\n";
    assert!(lab.apply(new).status.success());
    // Each DNS pod times the change the watch carried (a change the pod's first snapshot held is not timed).
    lab.wait(5, "both DNS pods to time the change", || {
        let after = change_to_answer(lab);
        after
            .iter()
            .zip(&before)
            .all(|(a, b)| a.0 > b.0 && a.1 > b.1)
            .then_some(())
    });
    lab.ok(&["delete", "service", "timed"]);
}
