//! `weft bench lab`: how long `lab up` takes until every pod is Running and reachable, for a few sizes, what the
//! control plane and the agents cost in memory, and how long `lab down` takes. Each size gets its own lab.

use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// Pod counts to measure, each in a fresh lab.
    #[arg(long, value_delimiter = ',', default_value = "30,300")]
    pods: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    nodes: u8,
    #[arg(long, default_value = "host-gw")]
    overlay: String,
    /// Runs per size, each a fresh lab; the summary gives each figure's median and range.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// What docs/benchmarks.md publishes for 3 nodes, host-gw (2026-12-03, the lab bootstrapped by deploy/weft.yaml,
/// load 0.2–4.9): up, reach, down, supervisor and agent peak RSS; none for other sizes.
fn anchors(pods: usize) -> [(&'static str, &'static str, &'static str); 5] {
    let (up, down) = match pods {
        30 => ("2.51–2.60 s", "0.06–0.07 s"),
        300 => ("11.7–12.4 s", "0.45–0.51 s"),
        _ => ("-", "-"),
    };
    [
        ("up", " s", up),
        ("reach", " s", "-"),
        ("down", " s", down),
        ("control peak RSS", " MB", "27–44 MB"),
        ("agent peak RSS", " MB", "19–23 MB"),
    ]
}

pub fn run(args: Args) -> Result<()> {
    let me = std::env::current_exe().context("finding the weft binary")?;
    println!("nodes {} overlay {}", args.nodes, args.overlay);
    println!(
        "{:>6} {:>9} {:>11} {:>9} {:>13} {:>12}",
        "pods", "up (s)", "reach (s)", "down (s)", "control (MB)", "agent (MB)"
    );
    let mut sizes = Vec::new();
    for &pods in &args.pods {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            runs.push(once(&me, pods, &args)?);
        }
        sizes.push((pods, runs));
    }
    println!("up: `lab up` until every pod is Running and Ready; reach: until node-1 has connected to every pod too");
    println!("control: peak RSS of the supervisor; agent: the largest agent's peak RSS");
    let published = args.overlay == "host-gw" && args.nodes == 3;
    for (pods, runs) in &sizes {
        println!("{pods} pods:");
        let anchors = anchors(if published { *pods } else { 0 });
        super::peer::print_runs(
            "published: 3 nodes, host-gw, 2-core machine, 2026-12-03",
            &anchors,
            runs,
        );
    }
    Ok(())
}

/// One lab of `pods` pods, up and down; prints its line and returns up, reach, down (s), control and agent (MB).
fn once(me: &std::path::Path, pods: usize, args: &Args) -> Result<[f64; 5]> {
    let lab = format!("bench-{}", std::process::id() % 100_000);
    let paths = Paths::new(&lab);
    let manifest = std::env::temp_dir().join(format!("weft-bench-{lab}.yaml"));
    std::fs::write(&manifest, deployment(pods)).context("writing the manifest")?;
    let weft = |args: &[&str]| -> Result<()> {
        let out = Command::new(me).arg("--lab").arg(&lab).args(args).output()?;
        if !out.status.success() {
            bail!("weft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let started = Instant::now();
    let up = weft(&[
        "lab",
        "up",
        "--nodes",
        &args.nodes.to_string(),
        "--overlay",
        &args.overlay,
        "-f",
        &manifest.display().to_string(),
    ]);
    let up_time = started.elapsed();
    let measured = up.and_then(|()| {
        reach_all(&paths)?;
        let reach = started.elapsed();
        let control = peak_rss_mb(&[supervisor_pid(&paths)?]);
        let agents = peak_rss_mb(&agent_pids(&paths));
        let down_started = Instant::now();
        weft(&["lab", "down"])?;
        Ok((reach, control, agents, down_started.elapsed()))
    });
    let _ = std::fs::remove_file(&manifest);
    let (reach, control, agents, down) = match measured {
        Ok(m) => m,
        Err(e) => {
            let _ = weft(&["lab", "down"]);
            return Err(e);
        }
    };
    println!(
        "{pods:>6} {:>9.2} {:>11.2} {:>9.2} {control:>13.1} {agents:>12.1}",
        up_time.as_secs_f64(),
        reach.as_secs_f64(),
        down.as_secs_f64()
    );
    Ok([
        up_time.as_secs_f64(),
        reach.as_secs_f64(),
        down.as_secs_f64(),
        control,
        agents,
    ])
}

fn deployment(replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bench}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: bench}}}}\n  template:\n    metadata: {{labels: {{app: bench}}}}\n    spec: {{containers: [{{name: web, image: nginx, ports: [{{containerPort: 80}}]}}]}}\n"
    )
}

/// Connects from node-1 to port 80 of every pod of the benchmark (retrying until each answers).
fn reach_all(paths: &Paths) -> Result<()> {
    let pods = crate::objects::list(&crate::client::Api::connect(paths)?, "Pod", Some("default"))?;
    let addrs: Vec<SocketAddr> = pods
        .iter()
        .filter(|p| p.pointer("/metadata/labels/app").and_then(|v| v.as_str()) == Some("bench"))
        .filter_map(|p| p.pointer("/status/podIP")?.as_str()?.parse().ok())
        .map(|ip| SocketAddr::new(ip, 80))
        .collect();
    let node = weft_netlink::Netns::open(&format!("/run/netns/{}", paths.node_netns("node-1")))?;
    let unreachable = node.run(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut left = addrs.clone();
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(500)).is_err());
        }
        Ok(left)
    })?;
    if !unreachable.is_empty() {
        bail!(
            "{} pods unreachable from node-1, e.g. {}",
            unreachable.len(),
            unreachable[0]
        );
    }
    Ok(())
}

pub(super) fn supervisor_pid(paths: &Paths) -> Result<i32> {
    weft_lab::teardown::supervisor_pid(paths).context("the supervisor is not running")
}

/// The pids of the weft-node DaemonSet's agents (none when the API does not answer).
pub(super) fn agent_pids(paths: &Paths) -> Vec<i32> {
    let pods = crate::client::Api::connect(paths)
        .and_then(|api| crate::objects::list(&api, "Pod", Some("weft-system")))
        .unwrap_or_default();
    pods.iter()
        .filter(|p| {
            p.pointer("/metadata/labels/app.kubernetes.io~1name")
                .and_then(|v| v.as_str())
                == Some("weft-node")
        })
        .filter_map(|p| p.pointer("/metadata/uid")?.as_str())
        .filter_map(|uid| weft_lab::kubelet::container_pid(paths, uid, "agent"))
        .map(|pid| pid as i32)
        .collect()
}

/// The largest VmHWM among `pids`, in MB.
pub(super) fn peak_rss_mb(pids: &[i32]) -> f64 {
    pids.iter()
        .filter_map(|pid| super::peak_rss_of(&pid.to_string()))
        .fold(0.0, f64::max)
}
