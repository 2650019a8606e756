//! The upstream network-policy end-to-end model: namespaces x, y, z with pods a, b, c serving ports 80 and 81
//! over TCP and UDP, every pod probing every pod, and the expected matrix given by `weft trace` (the CLI, so the
//! explanation users read is what is checked against real probes over the whole table), with a readable diff
//! when they disagree. A few cells of each case are also asserted by hand so the model is not only checked
//! against itself.

mod lab;

use lab::*;
use std::collections::BTreeMap;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// The namespaces (labelled `ns: NAME`) and pods (labelled `pod: NAME`, a on node-1, b on node-2, c on node-3),
/// with the upstream port names serve-80-tcp, serve-81-udp and so on.
fn cluster() -> String {
    let mut text = String::new();
    for ns in NAMESPACES {
        text.push_str(&namespace(ns, ns));
        for (i, pod) in PODS.iter().enumerate() {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: \"{ns}\", labels: {{pod: {pod}}}}}\nspec:\n  nodeName: node-{}\n  containers: [{{name: s, image: agnhost, ports: [{}]}}]\n",
                i + 1,
                ["TCP", "UDP"]
                    .iter()
                    .flat_map(|proto| [80, 81].map(|port| format!(
                        "{{name: serve-{port}-{}, containerPort: {port}, protocol: {proto}}}",
                        proto.to_lowercase()
                    )))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    text
}

fn namespace(name: &str, label: &str) -> String {
    format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{name}\", labels: {{ns: \"{label}\"}}}}\n")
}

type Matrix = BTreeMap<(String, String), bool>;

fn names() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

fn pairs() -> Vec<(String, String)> {
    names()
        .iter()
        .flat_map(|f| names().into_iter().map(move |t| (f.clone(), t)))
        .collect()
}

/// A lab holding the upstream cluster, and the pods' addresses.
struct Table {
    lab: Lab,
    ips: BTreeMap<String, String>,
}

impl Table {
    fn up() -> Table {
        let lab = Lab::up(3, "host-gw", &cluster());
        let ips = lab
            .ready_pods()
            .iter()
            .map(|p| {
                (
                    format!("{}/{}", p["metadata"]["namespace"].as_str().unwrap(), name(p)),
                    ip(p),
                )
            })
            .collect();
        Table { lab, ips }
    }

    fn apply(&self, yaml: &str) {
        let out = self.lab.apply(yaml);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    /// Applies a NetworkPolicy `name` in `ns` with the given spec (YAML, indented two spaces).
    fn policy(&self, ns: &str, name: &str, spec: &str) {
        self.apply(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: \"{ns}\"}}\nspec:\n{spec}"
        ));
    }

    fn delete_policy(&self, ns: &str, name: &str) {
        self.lab.ok(&["delete", "networkpolicy", "-n", ns, name]);
    }

    /// Runs `run(from, to)` for every pair, 27 at a time.
    fn each_pair(&self, run: impl Fn(&str, &str) -> bool + Sync) -> Matrix {
        let run = &run;
        let mut m = Matrix::new();
        for chunk in pairs().chunks(27) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(from, to)| s.spawn(move || ((from.clone(), to.clone()), run(from, to))))
                    .collect();
                m.extend(handles.into_iter().map(|h| h.join().unwrap()));
            });
        }
        m
    }

    /// What `weft trace` says for every pair.
    fn traced(&self, port: u16, proto: &str) -> Matrix {
        self.each_pair(|from, to| {
            let dest = format!("{}:{port}/{proto}", self.ips[to]);
            let out = self.lab.weft(&["trace", from, &dest]);
            let said = text(&out.stdout);
            let verdict = said.lines().find_map(|l| match l.trim_start().split(':').next() {
                Some("ALLOWED") => Some(true),
                Some("DENIED") => Some(false),
                _ => None,
            });
            let allowed = verdict.unwrap_or_else(|| panic!("weft trace {from} {dest}: {said}{}", text(&out.stderr)));
            assert_eq!(
                out.status.success(),
                allowed,
                "weft trace's exit code must match its verdict: {said}"
            );
            allowed
        })
    }

    /// What real connections (TCP) or datagrams (UDP, answered by an echo) do.
    fn probed(&self, port: u16, proto: &str) -> Matrix {
        self.each_pair(|from, to| {
            let target = format!("{}://{}:{port}", proto.to_lowercase(), self.ips[to]);
            self.lab.reaches(from, &target, "500ms")
        })
    }

    /// Checks probes against `weft trace` on `port`/`proto`, re-probing until they agree (a new policy takes a
    /// moment to reach every node, and a loaded machine may lose a connect), and returns the matrix.
    fn check(&self, case: &str, port: u16, proto: &str) -> Matrix {
        let want = self.traced(port, proto);
        self.lab
            .wait(15, &format!("{case}: probes to agree with weft trace"), || {
                let got = self.probed(port, proto);
                if got == want {
                    return Some(got);
                }
                eprintln!(
                    "{case}, port {port}/{proto} (. allowed, X denied, ! disagrees):\nweft trace\n{}\nprobed\n{}",
                    render(&want, &got),
                    render(&got, &want)
                );
                None
            })
    }
}

fn render(m: &Matrix, other: &Matrix) -> String {
    let mut out = format!("{:>5}", "");
    for to in names() {
        out.push_str(&format!(" {to:>4}"));
    }
    for from in names() {
        out.push_str(&format!("\n{from:>5}"));
        for to in names() {
            let k = (from.clone(), to.clone());
            let cell = match (m[&k], m[&k] == other[&k]) {
                (true, true) => ".",
                (false, true) => "X",
                (true, false) => "!.",
                (false, false) => "!X",
            };
            out.push_str(&format!(" {cell:>4}"));
        }
    }
    out
}

fn allowed(m: &Matrix, from: &str, to: &str) -> bool {
    m[&(from.to_string(), to.to_string())]
}

/// Every pair allowed except those into `ns` (or out of it, for `out`); a pod always reaches itself (over its
/// own loopback, as upstream's model allows).
fn all_but(m: &Matrix, ns: &str, out: bool) -> bool {
    m.iter().all(|((from, to), ok)| {
        let side = if out { from } else { to };
        *ok == (from == to || !side.starts_with(&format!("{ns}/")))
    })
}

#[test]
fn ingress() {
    if !root() {
        return;
    }
    let t = Table::up();
    for proto in ["TCP", "UDP"] {
        let m = t.check("no policy", 80, proto);
        assert!(m.values().all(|v| *v));
    }

    t.policy("x", "deny-all", "  podSelector: {}\n");
    for proto in ["TCP", "UDP"] {
        let m = t.check("default deny ingress in x", 81, proto);
        assert!(all_but(&m, "x", false), "x/a -> x/b is denied too");
    }

    // Multiple policies are a union: an allow-all next to the deny-all opens x again.
    t.policy("x", "allow-all", "  podSelector: {}\n  ingress: [{}]\n");
    let m = t.check("allow all ingress in x beside deny all", 80, "TCP");
    assert!(m.values().all(|v| *v));
    t.delete_policy("x", "allow-all");

    t.policy(
        "x",
        "a-from-b",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n",
    );
    let m = t.check("x/a from pods b of its own namespace", 80, "TCP");
    assert!(allowed(&m, "x/b", "x/a") && !allowed(&m, "y/b", "x/a") && !allowed(&m, "x/c", "x/a"));

    t.policy(
        "x",
        "a-from-y",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]}]\n",
    );
    let m = t.check("x/a from namespace y, and from x/b", 80, "TCP");
    assert!(allowed(&m, "y/c", "x/a") && allowed(&m, "x/b", "x/a") && !allowed(&m, "z/c", "x/a"));
    assert!(!allowed(&m, "y/c", "x/b"));

    // Both selectors in one peer: pods b of any namespace, only on the named port serve-81-tcp.
    t.policy(
        "x",
        "b-from-b-anywhere",
        "  podSelector: {matchLabels: {pod: b}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}], ports: [{port: serve-81-tcp}]}]\n",
    );
    for port in [80, 81] {
        let m = t.check("x/b from pods b anywhere, named port serve-81-tcp", port, "TCP");
        assert_eq!(allowed(&m, "z/b", "x/b"), port == 81);
        assert!(!allowed(&m, "z/a", "x/b"));
    }
    let m = t.check("the named TCP port opens no UDP", 81, "UDP");
    assert!(!allowed(&m, "z/b", "x/b"));

    // A named UDP port and an endPort range on x/c.
    t.policy(
        "x",
        "c-ports",
        "  podSelector: {matchLabels: {pod: c}}\n  ingress: [{ports: [{port: serve-81-udp, protocol: UDP}, {port: 79, endPort: 80, protocol: TCP}]}]\n",
    );
    let m = t.check("x/c on UDP serve-81-udp", 81, "UDP");
    assert!(allowed(&m, "y/a", "x/c") && !allowed(&m, "y/a", "x/b"));
    let m = t.check("x/c on UDP 80, not listed", 80, "UDP");
    assert!(!allowed(&m, "y/a", "x/c"));
    for port in [80, 81] {
        let m = t.check("x/c on TCP 79-80 (endPort)", port, "TCP");
        assert_eq!(allowed(&m, "y/a", "x/c"), port == 80);
    }

    // A policy that allows only SCTP isolates the pod for TCP and opens nothing there.
    t.policy(
        "y",
        "a-sctp-only",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: 80, protocol: SCTP}]}]\n",
    );
    let m = t.check("y/a allows SCTP 80 only", 80, "TCP");
    assert!(!allowed(&m, "y/b", "y/a") && !allowed(&m, "z/a", "y/a") && allowed(&m, "z/a", "y/b"));
}

#[test]
fn egress() {
    if !root() {
        return;
    }
    let t = Table::up();

    t.policy("y", "deny-egress", "  podSelector: {}\n  policyTypes: [Egress]\n");
    let m = t.check("default deny egress in y", 80, "TCP");
    assert!(all_but(&m, "y", true), "others still reach y: replies are allowed");
    let m = t.check("default deny egress in y", 81, "UDP");
    assert!(all_but(&m, "y", true));

    // Egress to DNS: resolution through the kube-dns ClusterIP works, everything else stays denied.
    let lookup = || {
        let dig = [
            "dig",
            "+short",
            "+time=1",
            "+tries=1",
            "kube-dns.kube-system.svc.cluster.local",
        ];
        t.lab.weft(&[&["exec", "-n", "y", "a", "--"][..], &dig].concat())
    };
    assert!(!lookup().status.success(), "DNS is denied before the DNS policy");
    t.policy(
        "y",
        "allow-dns",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}], ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]\n",
    );
    let answer = t.lab.wait(15, "y/a to resolve kube-dns through an egress policy", || {
        let out = lookup();
        out.status.success().then(|| text(&out.stdout).trim().to_string())
    });
    assert_eq!(answer, "10.96.0.10");
    let m = t.check("y egress to DNS only", 80, "TCP");
    assert!(all_but(&m, "y", true));
    t.delete_policy("y", "deny-egress");
    t.delete_policy("y", "allow-dns");

    // ipBlock with except, applied to pod addresses: node-2's pods (the b's) are cut out.
    t.policy(
        "z",
        "z-egress",
        "  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}}], ports: [{port: 80}]}]\n",
    );
    let m = t.check("z egress to 10.244/16 except node-2's pods, port 80", 80, "TCP");
    assert!(allowed(&m, "z/a", "y/a") && !allowed(&m, "z/a", "y/b"));
    let m = t.check("the same on port 81", 81, "TCP");
    assert!(!allowed(&m, "z/a", "y/a"));
    t.delete_policy("z", "z-egress");

    // A named port with an empty `to` resolves on each destination pod.
    t.policy(
        "z",
        "z-named",
        "  podSelector: {matchLabels: {pod: a}}\n  egress: [{ports: [{port: serve-81-tcp}]}]\n",
    );
    for port in [80, 81] {
        let m = t.check("z/a egress to serve-81-tcp anywhere", port, "TCP");
        assert_eq!(allowed(&m, "z/a", "x/b"), port == 81);
        assert!(allowed(&m, "z/b", "x/b"));
    }
}

#[test]
fn updates_and_labels() {
    if !root() {
        return;
    }
    let t = Table::up();

    let from_ns = |ns: &str| {
        format!(
            "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: \"{ns}\"}}}}}}]}}]\n"
        )
    };
    t.policy("x", "a-from", &from_ns("y"));
    let m = t.check("x/a from namespace y", 80, "TCP");
    assert!(allowed(&m, "y/b", "x/a") && !allowed(&m, "z/b", "x/a"));

    // The same policy updated in place.
    t.policy("x", "a-from", &from_ns("z"));
    let m = t.check("x/a updated to from namespace z", 80, "TCP");
    assert!(!allowed(&m, "y/b", "x/a") && allowed(&m, "z/b", "x/a"));

    // Namespace label change: y takes the label ns=z and with it the policy's ingress.
    t.apply(&namespace("y", "z"));
    let m = t.check("namespace y relabelled ns=z", 80, "TCP");
    assert!(allowed(&m, "y/b", "x/a"));
    t.apply(&namespace("y", "y"));
    let m = t.check("namespace y labelled back", 80, "TCP");
    assert!(!allowed(&m, "y/b", "x/a"));

    // Pod label change: x/c gets the label pod=a and with it the policy's isolation.
    t.apply(&cluster().replace(
        "metadata: {name: c, namespace: \"x\", labels: {pod: c}}",
        "metadata: {name: c, namespace: \"x\", labels: {pod: a}}",
    ));
    let m = t.check("x/c relabelled pod=a", 80, "TCP");
    assert!(!allowed(&m, "y/b", "x/c") && allowed(&m, "z/b", "x/c"));

    t.delete_policy("x", "a-from");
    let m = t.check("policy deleted", 80, "TCP");
    assert!(m.values().all(|v| *v));
}
