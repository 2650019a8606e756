//! `weft bench dns-change` (root): in a lab holding N Services, how long a Service created or deleted takes to
//! reach the answers of both `weft dns` pods, asked straight from node-1 every millisecond until each answers with
//! an address (or NXDOMAIN), timed from starting `weft apply` (`weft delete`); and the pods' own
//! `weft_dns_change_to_answer_seconds`, from when the API accepted each change to the table serving it.

use super::dns::{http_get, manifest, query_name};
use super::quantile;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// Services created, then deleted, one at a time.
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Services in the lab beside them (every change rebuilds the table of all of them).
    #[arg(long, default_value_t = 1000)]
    services: usize,
}

/// What the DNS pods measure: from the API accepting a change to its table being served, and of that the table
/// build from the snapshot's arrival.
const METRICS: [&str; 2] = ["weft_dns_change_to_answer_seconds", "weft_dns_sync_duration_seconds"];

/// A lab of this benchmark, taken down whatever happens.
pub(super) struct Lab {
    pub weft: PathBuf,
    pub name: String,
}

impl Lab {
    /// Runs `weft --lab NAME ARGS`, with `stdin` on its standard input.
    pub fn weft(&self, args: &[&str], stdin: &str) -> Result<()> {
        let mut child = Command::new(&self.weft)
            .arg("--lab")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running weft {}", args.join(" ")))?;
        child
            .stdin
            .take()
            .context("weft's stdin")?
            .write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("weft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.weft(&["lab", "down"], "") {
            eprintln!("{e}");
        }
    }
}

/// Asks each of `pods` for `name` A until it answers as `done(rcode, answers)` says; the time since `since`.
fn until_answered(
    sock: &UdpSocket,
    pods: &[SocketAddr],
    name: &str,
    since: Instant,
    done: impl Fn(u8, u16) -> bool,
) -> Result<Duration> {
    let mut left = pods.to_vec();
    let mut buf = [0u8; 1500];
    let mut id = 0u16;
    while let Some(&pod) = left.first() {
        if since.elapsed() > Duration::from_secs(10) {
            bail!("{name}: not answered as expected within 10 s by {left:?}");
        }
        id = id.wrapping_add(1);
        sock.send_to(&query_name(id, name), pod)?;
        if let Ok((n, from)) = sock.recv_from(&mut buf)
            && n >= 12
            && from == pod
            && buf[..2] == id.to_be_bytes()
            && done(buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]]))
        {
            left.remove(0);
            continue;
        }
        // Asked again a millisecond later, as a client retrying would: back to back, the questions kept a core of
        // this 2-core machine busy and slowed the very rebuild being timed.
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(since.elapsed())
}

/// A histogram of one DNS pod: the cumulative bucket counts (bound in seconds), then the sum.
fn histogram(pod: IpAddr, metric: &str) -> Result<(Vec<(f64, f64)>, f64)> {
    let text = http_get(SocketAddr::new(pod, 8080), "/metrics").with_context(|| format!("metrics of {pod}"))?;
    let mut buckets = Vec::new();
    let mut sum = f64::NAN;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        if let Some(bound) = key
            .strip_prefix(metric)
            .and_then(|k| k.strip_prefix("_bucket{le=\""))
            .and_then(|k| k.strip_suffix("\"}"))
        {
            buckets.push((bound.parse().unwrap_or(f64::INFINITY), value));
        } else if key == format!("{metric}_sum") {
            sum = value;
        }
    }
    Ok((buckets, sum))
}

/// What one pod observed between two scrapes: count, mean, and the bucket bounds holding half and 99 %.
fn observed(before: &(Vec<(f64, f64)>, f64), after: &(Vec<(f64, f64)>, f64)) -> String {
    let counts: Vec<(f64, f64)> = after.0.iter().zip(&before.0).map(|(a, b)| (a.0, a.1 - b.1)).collect();
    let count = counts.last().map_or(0.0, |c| c.1);
    let bound = |q: f64| {
        counts
            .iter()
            .find(|(_, n)| *n >= q * count)
            .map_or("?".into(), |(b, _)| format!("{:.1} ms", b * 1e3))
    };
    format!(
        "{count} observations, mean {:.1} ms, p50 ≤ {}, p99 ≤ {}",
        (after.1 - before.1) / count * 1e3,
        bound(0.5),
        bound(0.99)
    )
}

/// The addresses of the two `weft dns` pods, once both are Ready.
fn dns_pods(paths: &Paths) -> Result<Vec<IpAddr>> {
    ready_pods(paths, "kube-system", ("k8s-app", "kube-dns"), 2)
}

/// The addresses of the `count` pods of `namespace` labelled `label` (key, value), once that many are Ready.
pub(super) fn ready_pods(paths: &Paths, namespace: &str, label: (&str, &str), count: usize) -> Result<Vec<IpAddr>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (key, value) = label;
    loop {
        let ready: Vec<IpAddr> = crate::objects::list(&crate::client::Api::connect(paths)?, "Pod", Some(namespace))?
            .iter()
            .filter(|p| p["metadata"]["labels"][key].as_str() == Some(value))
            .filter(|p| {
                let conditions = p.pointer("/status/conditions").and_then(|c| c.as_array());
                conditions.is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .filter_map(|p| p.pointer("/status/podIP")?.as_str()?.parse().ok())
            .collect();
        if ready.len() == count {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            bail!("{count} pods {key}={value} in {namespace} were not Ready within 60 s (ready: {ready:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn ms(sorted: &[f64]) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(sorted, 0.5) * 1e3,
        quantile(sorted, 0.99) * 1e3,
        sorted.last().unwrap_or(&f64::NAN) * 1e3
    )
}

pub fn run(args: Args) -> Result<()> {
    let lab = Lab {
        weft: std::env::current_exe().context("finding the weft binary")?,
        name: format!("bench-dns-{}", std::process::id() % 100_000),
    };
    lab.weft(&["lab", "up", "--nodes", "2"], "")?;
    if args.services > 0 {
        lab.weft(&["apply", "-f", "-"], &manifest(args.services, false))?;
    }
    let paths = Paths::new(&lab.name);
    let pods = dns_pods(&paths)?;
    let dns: Vec<SocketAddr> = pods.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
    let node = weft_netlink::Netns::open(&format!("/run/netns/{}", paths.node_netns("node-1")))?;
    // Queries from node-1, which routes to every pod; `weft` itself runs in this namespace (the host's), where the
    // lab's API listens on the loopback.
    let host = weft_netlink::Netns::open("/proc/thread-self/ns/net")?;
    let measured = node.run(|| {
        Ok((|| -> Result<_> {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            if args.services > 0 {
                let last = format!("svc-{}.bench.svc.cluster.local", args.services - 1);
                until_answered(&sock, &dns, &last, Instant::now(), |rcode, n| rcode == 0 && n > 0)?;
            }
            let scrape = || -> Result<Vec<_>> {
                let each = pods.iter().flat_map(|p| METRICS.map(|m| histogram(*p, m)));
                each.collect()
            };
            let before = scrape()?;
            let (mut created, mut deleted, mut commands) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..args.changes {
                let service = format!(
                    "apiVersion: v1\nkind: Service\nmetadata: {{name: change-{i}, namespace: bench}}\nspec: {{ports: [{{port: 80}}]}}\n"
                );
                let started = Instant::now();
                host.run(|| Ok(lab.weft(&["apply", "-f", "-"], &service)))??;
                commands.push(started.elapsed().as_secs_f64());
                let name = format!("change-{i}.bench.svc.cluster.local");
                created.push(until_answered(&sock, &dns, &name, started, |rcode, n| rcode == 0 && n > 0)?);
            }
            for i in 0..args.changes {
                let started = Instant::now();
                let name = format!("change-{i}");
                host.run(|| Ok(lab.weft(&["delete", "service", &name, "-n", "bench"], "")))??;
                commands.push(started.elapsed().as_secs_f64());
                let name = format!("change-{i}.bench.svc.cluster.local");
                deleted.push(until_answered(&sock, &dns, &name, started, |rcode, _| rcode == 3)?);
            }
            let after = scrape()?;
            Ok((created, deleted, commands, before, after))
        })())
    })??;
    let (created, deleted, mut commands, before, after) = measured;
    let secs = |d: Vec<Duration>| {
        let mut v: Vec<f64> = d.iter().map(Duration::as_secs_f64).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    commands.sort_by(f64::total_cmp);
    println!(
        "{} Services in namespace bench beside the changes; {} creates, then {} deletes, one at a time",
        args.services, args.changes, args.changes
    );
    println!(
        "create → both DNS pods answer it (from starting `weft apply`): {}",
        ms(&secs(created))
    );
    println!(
        "delete → both DNS pods answer NXDOMAIN (from starting `weft delete`): {}",
        ms(&secs(deleted))
    );
    println!("the `weft apply` / `weft delete` commands alone: {}", ms(&commands));
    let pod_metrics = pods.iter().flat_map(|p| METRICS.map(|m| (p, m)));
    for ((pod, metric), (b, a)) in pod_metrics.zip(before.iter().zip(&after)) {
        println!("{metric} of the DNS pod {pod}: {}", observed(b, a));
    }
    Ok(())
}
