//! Operating the node components as a cluster would (root): the agent's and DNS's `/healthz`, `/readyz` and
//! `/metrics`, their logs, and an agent terminated under traffic that leaves the dataplane in place for its
//! successor.

mod lab;

use lab::*;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

const SERVICE: &str = "
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
";

/// The agent's HTTP port on every node.
const AGENT: &str = "127.0.0.1:9654";

/// `GET http://ADDR/PATH` from inside `node`'s network namespace: status code and body.
fn get(lab: &Lab, node: &str, addr: &str, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let out = lab.node_exec(node, &["curl", "-s", "-m", "2", "-w", "\n%{http_code}", &url]);
    let out = text(&out.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of the sample `series` (name and labels, exactly as written) in a scrape.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn ready_agent(lab: &Lab, node: &str) {
    lab.wait(30, &format!("{node}'s agent ready"), || {
        (get(lab, node, AGENT, "/readyz") == (200, "ready\n".into())).then_some(())
    });
}

#[test]
fn agent_and_dns_serve_health_readiness_and_metrics() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "vxlan", &format!("{WEB}{SERVICE}"));
    lab.ready_pods();
    for node in ["node-1", "node-2"] {
        ready_agent(&lab, node);
        assert_eq!(get(&lab, node, AGENT, "/healthz"), (200, "ok\n".into()));
        let (code, metrics) = get(&lab, node, AGENT, "/metrics");
        assert_eq!(code, 200);
        for part in ["overlay", "services", "policy"] {
            let synced = sample(
                &metrics,
                &format!("weft_agent_sync_duration_seconds_count{{part=\"{part}\"}}"),
            );
            assert!(synced.is_some_and(|n| n >= 1.0), "{part} synced: {metrics}");
            let errors = sample(&metrics, &format!("weft_agent_sync_errors_total{{part=\"{part}\"}}"));
            assert_eq!(errors, Some(0.0), "{part}: {metrics}");
        }
        // The proxy's table holds the web Service's chains and rules; the policy table at least its skeleton.
        let rules = sample(&metrics, "weft_agent_nft_rules{table=\"inet weft\"}").unwrap_or(0.0);
        assert!(rules > 0.0, "{metrics}");
        assert!(sample(&metrics, "weft_agent_nft_chains{table=\"inet weft-policy\"}").is_some_and(|n| n >= 1.0));
        assert_eq!(
            sample(&metrics, "weft_agent_overlay_routes"),
            Some(1.0),
            "one route to the other node"
        );
        assert!(sample(&metrics, "weft_agent_snapshot_revision").is_some_and(|r| r > 0.0));
        assert!(sample(&metrics, "weft_kube_watch_events_total{kind=\"Service\"}").is_some_and(|n| n >= 1.0));
        assert_eq!(sample(&metrics, "weft_kube_relists_total{kind=\"Node\"}"), Some(0.0));
        assert!(
            metrics.contains("# TYPE weft_agent_drift_repairs_total counter\n"),
            "{metrics}"
        );
    }
    // A change after the first sync is timed from the agent's watch to the dataplane.
    lab.kubectl_ok(&["scale", "deployment/web", "--replicas=4"]);
    lab.wait(30, "a change timed to the dataplane", || {
        let (_, metrics) = get(&lab, "node-1", AGENT, "/metrics");
        sample(&metrics, "weft_agent_change_to_dataplane_seconds_count").filter(|n| *n > 0.0)
    });
    // Logs are tracing events with levels and fields.
    let log = lab.agent_log("node-1");
    assert!(
        log.contains(" INFO weft::agent: agent started node=node-1 overlay=vxlan"),
        "{log}"
    );
    assert!(
        log.contains("first sync done") && log.contains("part=\"policy\""),
        "{log}"
    );

    // DNS, from a node (its pods' addresses are routed there).
    let dns: Vec<String> = lab
        .pods()
        .iter()
        .filter(|p| p["metadata"]["namespace"] == "kube-system" && name(p).starts_with("weft-dns"))
        .map(ip)
        .collect();
    assert_eq!(dns.len(), 2, "two DNS pods");
    for pod in &dns {
        let http = format!("{pod}:8080");
        assert_eq!(get(&lab, "node-1", &http, "/readyz"), (200, "ready\n".into()));
        assert_eq!(get(&lab, "node-1", &http, "/healthz"), (200, "ok\n".into()));
        let (code, metrics) = get(&lab, "node-1", &http, "/metrics");
        assert_eq!(code, 200);
        assert!(
            sample(&metrics, "weft_dns_snapshot_revision").is_some_and(|r| r > 0.0),
            "{metrics}"
        );
        assert!(sample(&metrics, "weft_kube_watch_events_total{kind=\"Service\"}").is_some_and(|n| n >= 1.0));
        assert_eq!(sample(&metrics, "weft_dns_source_errors_total"), Some(0.0));
    }
}

/// A process whose output goes to a file, killed on drop.
struct Recorder {
    child: Child,
    path: std::path::PathBuf,
}

impl Recorder {
    /// Runs `command` in the namespace `netns`.
    fn start(netns: &str, command: &[&str], name: &str) -> Recorder {
        let path = std::env::temp_dir().join(format!("weft-{netns}-{name}.txt"));
        let file = File::create(&path).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(command)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Recorder { child, path }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The weft tables an nft transaction deleted without adding them back in the same transaction (`nft monitor`
/// ends each transaction with a `# new generation` line).
fn tables_left_deleted(monitor: &str) -> Vec<String> {
    let mut left = Vec::new();
    let mut deleted: Vec<&str> = Vec::new();
    for line in monitor.lines() {
        if let Some(table) = line.strip_prefix("delete table ") {
            deleted.push(table);
        } else if let Some(table) = line.strip_prefix("add table ") {
            deleted.retain(|t| *t != table);
        } else if line.starts_with("# new generation") {
            left.extend(deleted.drain(..).filter(|t| t.contains("weft")).map(str::to_string));
        }
    }
    left
}

#[test]
fn nft_transactions_that_replace_a_table_are_not_removals() {
    let monitor = "delete table inet weft\nadd table inet weft\nadd chain inet weft x\n# new generation 5 by process 1 (nft)\n\
                   delete table inet other\n# new generation 6 by process 2 (nft)\n\
                   delete table inet weft-policy\n# new generation 7 by process 3 (nft)\n";
    assert_eq!(tables_left_deleted(monitor), vec!["inet weft-policy"]);
}

#[test]
fn a_terminated_agent_leaves_the_dataplane_and_its_successor_adopts_it() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "vxlan", &format!("{WEB}{SERVICE}"));
    let pods = lab.ready_pods();
    let client = pods.iter().find(|p| name(p) == "client").unwrap();
    let node = node(client);
    let netns = format!("weft-{}-{node}", lab.name);
    ready_agent(&lab, &node);
    let cluster_ip = lab.kubectl_ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let service = format!("http://{cluster_ip}:80/hostname");

    // Every change to links, addresses, routes, neighbours, FDB entries and nftables in the node, from here on.
    let ip_monitor = Recorder::start(&netns, &["ip", "monitor", "link", "address", "route", "neigh"], "ip");
    let fdb_monitor = Recorder::start(&netns, &["bridge", "monitor", "fdb"], "fdb");
    let nft_monitor = Recorder::start(&netns, &["nft", "monitor"], "nft");
    // The monitors are listening once they see a change made after they started.
    let canary = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    lab.wait(10, "the monitors to listen", || {
        canary(&["ip", "link", "add", "opcanary0", "type", "bridge"]);
        canary(&["ip", "link", "del", "opcanary0"]);
        canary(&["nft", "add", "table", "inet", "opcanary"]);
        canary(&["nft", "delete", "table", "inet", "opcanary"]);
        (ip_monitor.text().contains("opcanary0") && nft_monitor.text().contains("inet opcanary")).then_some(())
    });

    // An established connection through the ClusterIP, used after the restart.
    let mut established = lab
        .cmd(&["exec", "client", "--", "socat", "-", &format!("TCP:{cluster_ip}:80")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    lab.wait(10, "the connection to be established", || {
        let ss = text(&lab.exec("client", &["ss", "-Htn", "state", "established"]).stdout);
        ss.contains(&format!("{cluster_ip}:80")).then_some(())
    });
    // New connections through the ClusterIP, one after another, until the stop file appears.
    let stop = Remove(std::env::temp_dir().join(format!("weft-{}-stop", lab.name)));
    let script = format!(
        "while [ ! -e {} ]; do if weft probe --timeout 1s {service} >/dev/null 2>&1; then echo ok; else echo FAIL; fi; done",
        stop.0.display()
    );
    let mut traffic = lab
        .cmd(&["exec", "client", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answers = traffic.stdout.take().unwrap();
    let mut seen = String::new();
    let mut read_answers = |at_least: usize, what: &str| {
        let mut buf = [0u8; 256];
        lab.wait(60, what, || {
            let n = answers.read(&mut buf).unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            (seen.matches("ok\n").count() >= at_least || n == 0).then_some(())
        });
        seen.matches("ok\n").count()
    };
    let before = read_answers(3, "connections before the restart");

    let agent = lab.agent_pid_opt(&node).unwrap();
    // SAFETY: kill(2) on this lab's agent, found in the node's namespace by its command line.
    assert_eq!(unsafe { libc::kill(agent, libc::SIGTERM) }, 0);
    let signalled = std::time::Instant::now();
    lab.wait(5, "the agent to exit on SIGTERM", || {
        (!std::path::Path::new(&format!("/proc/{agent}")).exists()).then_some(())
    });
    let exited = signalled.elapsed();
    let successor = lab.wait(30, "a new agent", || lab.agent_pid_opt(&node).filter(|p| *p != agent));
    ready_agent(&lab, &node);
    let log = lab.agent_log(&node);
    assert!(
        log.contains("signal=SIGTERM"),
        "the agent logged its termination: {log}"
    );
    // Traffic after the successor is ready, then stop.
    read_answers(before + 10, "connections after the restart");
    std::fs::write(&stop.0, "").unwrap();
    assert!(traffic.wait().unwrap().success());
    let mut rest = String::new();
    answers.read_to_string(&mut rest).unwrap();
    seen.push_str(&rest);
    assert!(
        !seen.contains("FAIL"),
        "every connection through the ClusterIP answered: {seen}"
    );
    eprintln!(
        "agent gone {exited:.0?} after SIGTERM; {} connections through the ClusterIP, none failed",
        seen.matches("ok\n").count()
    );

    let mut stdin = established.stdin.take().unwrap();
    stdin.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").unwrap();
    drop(stdin);
    let mut answer = String::new();
    established.stdout.take().unwrap().read_to_string(&mut answer).unwrap();
    assert!(established.wait().unwrap().success());
    assert!(
        answer.contains("200 OK"),
        "the established connection survived: {answer}"
    );

    // Nothing weft owns was removed, at any moment: no weft link, route (protocol 247) or VXLAN neighbour or FDB
    // entry deleted; a weft table deleted only in the transaction that adds it back (the successor's first sync
    // replaces the table whole, atomically).
    assert_eq!(lab.agent_pid_opt(&node), Some(successor));
    let changes = ip_monitor.text();
    let removed: Vec<&str> = changes
        .lines()
        .filter(|l| l.starts_with("Deleted") && (l.contains("weft") || l.contains("proto 247")))
        .collect();
    assert!(removed.is_empty(), "removed: {removed:?}\n{changes}");
    let fdb = fdb_monitor.text();
    assert!(
        !fdb.lines().any(|l| l.starts_with("Deleted") && l.contains("weft")),
        "{fdb}"
    );
    let nft = nft_monitor.text();
    assert!(
        nft.contains("add table inet weft\n"),
        "the successor's first sync was watched: {nft}"
    );
    assert_eq!(tables_left_deleted(&nft), Vec::<String>::new(), "{nft}");
    let tables = text(&lab.node_exec(&node, &["nft", "list", "tables"]).stdout);
    for table in ["inet weft", "inet weft-policy", "inet weft-cni"] {
        assert!(tables.contains(&format!("table {table}\n")), "{table}: {tables}");
    }
}
