//! The store loses nothing: a supervisor SIGKILLed while `weft apply`s come in, then `weft lab up` again over the
//! same namespaces. Every apply that returned success is there, the pods are the same ones (uid, address, no
//! restart: their processes were adopted, and are restarted when they exit) and reach each other, one agent runs
//! per node, new pods start, and `lab down` removes everything.

mod lab;

use lab::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// ConfigMaps applied one `weft apply` at a time while the supervisor is killed.
const WRITES: usize = 120;

#[test]
fn a_killed_supervisor_resumes_with_every_acknowledged_write() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "host-gw", WEB);
    let before: BTreeMap<String, (String, String, i64)> = lab.ready_pods().iter().map(identity).collect();
    assert_eq!(before.keys().filter(|n| n.starts_with("web-")).count(), 3);

    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..WRITES {
                let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{n: '{i}'}}\n");
                if lab.apply(&cm).status.success() {
                    acked.lock().unwrap().push(i);
                }
            }
        });
        // Killed once a quarter of the writes are acknowledged, with the rest still coming.
        lab.wait(60, "a quarter of the writes", || {
            (acked.lock().unwrap().len() >= WRITES / 4).then_some(())
        });
        let pid = supervisor_pid(&lab.name);
        // SAFETY: kill(2) on the lab's own supervisor.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        // Until the kernel has torn it down, `lab up` takes it for a running supervisor.
        lab.wait(10, "the supervisor gone", || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.is_empty().then_some(())
        });
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() < WRITES, "the kill came before the last write");
    eprintln!("{} of {WRITES} writes acknowledged before the kill", acked.len());

    lab.ok(&["lab", "up", "--nodes", "2"]);
    let list: Value = serde_json::from_str(&lab.ok(&["get", "configmaps", "-o", "json"])).unwrap();
    let stored: Vec<String> = list["items"].as_array().unwrap().iter().map(name).collect();
    for i in &acked {
        assert!(stored.contains(&format!("cm-{i}")), "acknowledged cm-{i} is lost");
    }

    // The same pods, adopted: same uid and address, not restarted, all Ready again.
    let after: BTreeMap<String, (String, String, i64)> = lab.ready_pods().iter().map(identity).collect();
    assert_eq!(after, before);
    eprintln!("pods after resuming: {after:?}");
    for node in ["node-1", "node-2"] {
        assert_eq!(lab.agent_pids(node).len(), 1, "one agent on {node}");
    }
    for (pod, (_, ip, _)) in before.iter().filter(|(n, _)| n.starts_with("web-")) {
        let target = format!("http://{ip}");
        assert!(
            lab.wait(30, "client reaches web", || lab
                .reaches("client", &target, "2s")
                .then_some(true)),
            "client reaches {pod}"
        );
    }

    // An adopted process is watched: killed, it is restarted as restartPolicy says.
    let client_uid = &before["client"].0;
    let pid_file = format!("/run/weft/labs/{}/pods/{client_uid}/c.pid", lab.name);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the client pod's process, whose pid the lab recorded.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    lab.wait(30, "the client restarted", || {
        let pod = lab.pod("client");
        (ready(&pod) && identity(&pod).1.2 == 1).then_some(())
    });

    // The resumed lab runs new pods too.
    let late = "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec: {containers: [{name: c, image: busybox, command: [sleep, infinity]}]}\n";
    assert!(lab.apply(late).status.success());
    lab.wait(60, "the new pod Ready", || ready(&lab.pod("late")).then_some(()));
    let web = before.iter().find(|(n, _)| n.starts_with("web-")).unwrap();
    let target = format!("http://{}", web.1.1);
    lab.wait(30, "late reaches web", || {
        lab.reaches("late", &target, "2s").then_some(())
    });

    lab.ok(&["lab", "down"]);
    assert_eq!(leftovers(&lab.name), Vec::<String>::new());
    assert!(lab.agent_pids("node-1").is_empty());
}

/// A pod's name, with its uid, address and restarts.
fn identity(pod: &Value) -> (String, (String, String, i64)) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(-1);
    (name(pod), (uid, ip(pod), restarts))
}

fn supervisor_pid(lab: &str) -> i32 {
    std::fs::read_to_string(format!("/run/weft/labs/{lab}/supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
