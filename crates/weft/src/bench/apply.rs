//! `weft bench apply` (root): N Services in one `kubectl apply -f` of a `List`, in a lab: how long until the API has
//! stored them all (kubectl returns) and until every node's agent has programmed them (its `agent-revision` file,
//! written after each whole sync, reaches the revision of the last Service); then a `kubectl get services` of
//! them all, and what the control plane and the agents hold in memory.

use super::dns_change::Lab;
use super::ms;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    #[arg(long, default_value_t = 2)]
    nodes: u8,
}

pub fn run(args: Args) -> Result<()> {
    let lab = Lab {
        weft: std::env::current_exe().context("finding the weft binary")?,
        name: format!("bench-apply-{}", std::process::id() % 100_000),
    };
    lab.weft(&["lab", "up", "--nodes", &args.nodes.to_string()], "")?;
    let paths = Paths::new(&lab.name);
    let list = std::env::temp_dir().join(format!("weft-{}-services.json", lab.name));
    std::fs::write(&list, services(args.services).to_string())?;
    let measured = measure(&paths, &list, &args);
    let _ = std::fs::remove_file(&list);
    measured
}

fn measure(paths: &Paths, list: &std::path::Path, args: &Args) -> Result<()> {
    let supervisor = super::lab::supervisor_pid(paths).ok();
    let (kubectl_cpu, supervisor_cpu) = (children_cpu(), supervisor.map(process_cpu));
    let started = Instant::now();
    kubectl(paths, &["apply", "-f", &list.display().to_string()])?;
    let stored = started.elapsed();
    let kubectl_cpu = children_cpu() - kubectl_cpu;
    let supervisor_cpu = supervisor.map(process_cpu).zip(supervisor_cpu).map(|(b, a)| b - a);
    let last = kubectl(
        paths,
        &[
            "get",
            "service",
            &format!("svc-{}", args.services - 1),
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )?;
    let revision: u64 = last.trim().parse().context("the last Service's resourceVersion")?;
    let nodes: Vec<String> = (1..=args.nodes).map(|n| format!("node-{n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut left = nodes.clone();
    while !left.is_empty() {
        left.retain(|node| synced(paths, node) < revision);
        if Instant::now() > deadline {
            bail!("agents on {left:?} did not program revision {revision} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let programmed = started.elapsed();
    let listed = Instant::now();
    let rows = kubectl(paths, &["get", "services", "--no-headers"])?.lines().count();
    let get = listed.elapsed();
    if rows != args.services + 1 {
        bail!("kubectl get services: {rows} rows, expected {}", args.services + 1);
    }
    println!(
        "{} Services in one kubectl apply -f of a List, {} nodes:",
        args.services, args.nodes
    );
    println!("  stored (kubectl apply returned): {:.0} ms", ms(stored));
    println!(
        "    CPU meanwhile: kubectl's own {:.0} ms (it sends a GET and a POST per object, one at a time), \
         the control plane's {:.0} ms",
        kubectl_cpu * 1e3,
        supervisor_cpu.unwrap_or(f64::NAN) * 1e3
    );
    println!("  programmed by every agent: {:.0} ms", ms(programmed));
    println!("  kubectl get services of them all: {:.0} ms", ms(get));
    let control = super::lab::supervisor_pid(paths)
        .ok()
        .and_then(|pid| super::peak_rss_of(&pid.to_string()));
    let agents = super::lab::peak_rss_mb(&super::lab::agent_pids(paths));
    println!(
        "  peak RSS: control plane (supervisor with the API) {:.1} MB, largest agent {agents:.1} MB",
        control.unwrap_or(f64::NAN)
    );
    Ok(())
}

/// The revision a node's agent last programmed whole (0 before its first sync).
pub(super) fn synced(paths: &Paths, node: &str) -> u64 {
    let file = weft_lab::node_fs::NodeFs::new(paths, node).path("/run/weft/agent-revision");
    file.and_then(|f| std::fs::read_to_string(f).map_err(|e| weft_lab::Error::Invalid(e.to_string())))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) of the children this process has waited for.
pub(super) fn children_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(f64::NAN, |u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    })
}

/// CPU seconds (user and system) of a running process, from /proc/PID/stat.
fn process_cpu(pid: i32) -> f64 {
    process_times(pid).map_or(f64::NAN, |(user, system)| user + system)
}

/// CPU seconds of a running process in user space and in the kernel, from /proc/PID/stat.
pub(super) fn process_times(pid: i32) -> Option<(f64, f64)> {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| Some(fields.get(i)?.parse::<f64>().ok()? / ticks);
    Some((field(11)?, field(12)?))
}

/// Runs the real kubectl against the lab, returning its standard output.
fn kubectl(paths: &Paths, args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", paths.kubeconfig())
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `List` of `n` ClusterIP Services, each selecting pods of its own.
fn services(n: usize) -> serde_json::Value {
    let items: Vec<_> = (0..n)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
                "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}
