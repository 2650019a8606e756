//! `weft bench ingress-change` (root): in a lab running deploy/ingress.yaml beside N Ingresses, how long a new
//! Ingress takes to be served by both `weft ingress` pods — asked straight from node-1 every millisecond, with its
//! host, until each answers 200 instead of the default backend's 404 — timed from starting `weft apply` and from
//! its return (by then the API has accepted the Ingress: the issue's "a new route serves within 100 ms of the API
//! accepting it").

use super::dns_change::{Lab, ms, ready_pods};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// Ingresses created one at a time.
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Ingresses in the lab beside them (every change rebuilds the routing table of all of them).
    #[arg(long, default_value_t = 100)]
    ingresses: usize,
}

const CONTROLLER: &str = include_str!("../../../../deploy/ingress.yaml");

const BACKEND: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80}]
";

/// An Ingress of class `weft` routing host `NAME.bench` to the backend.
fn ingress(name: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default}}
spec:
  ingressClassName: weft
  rules:
  - host: {name}.bench
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
"
    )
}

/// The status code `pod` answers a GET of `/` for `host` with (none when it does not answer).
fn status(pod: SocketAddr, host: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&pod, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Asks each of `pods` for `host` until it answers 200; the time since `since`.
fn until_served(pods: &[SocketAddr], host: &str, since: Instant) -> Result<Duration> {
    let mut left = pods.to_vec();
    while let Some(&pod) = left.first() {
        if since.elapsed() > Duration::from_secs(10) {
            bail!("{host}: not served within 10 s by {left:?}");
        }
        if status(pod, host) == Some(200) {
            left.remove(0);
            continue;
        }
        // Asked again a millisecond later: back to back, the requests would take a core of the 2 the
        // controllers' own rebuild needs.
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(since.elapsed())
}

pub fn run(args: Args) -> Result<()> {
    let lab = Lab {
        weft: std::env::current_exe().context("finding the weft binary")?,
        name: format!("bench-ing-{}", std::process::id() % 100_000),
    };
    lab.weft(&["lab", "up", "--nodes", "2"], "")?;
    let beside: String = (0..args.ingresses).map(|i| ingress(&format!("beside-{i}"))).collect();
    lab.weft(
        &["apply", "-f", "-"],
        &format!("{CONTROLLER}\n---\n{BACKEND}\n---\n{beside}"),
    )?;
    let paths = Paths::new(&lab.name);
    ready_pods(&paths, "default", ("app", "web"), 1)?;
    let pods: Vec<SocketAddr> = ready_pods(&paths, "weft-ingress", ("app.kubernetes.io/name", "weft-ingress"), 2)?
        .into_iter()
        .map(|ip: IpAddr| SocketAddr::new(ip, 80))
        .collect();
    let node = weft_netlink::Netns::open(&format!("/run/netns/{}", paths.node_netns("node-1")))?;
    // Requests from node-1, which routes to every pod; `weft apply` runs in this namespace (the host's), where the
    // lab's API listens on the loopback.
    let host = weft_netlink::Netns::open("/proc/thread-self/ns/net")?;
    let measured = node.run(|| {
        Ok((|| -> Result<_> {
            if let Some(last) = args.ingresses.checked_sub(1) {
                until_served(&pods, &format!("beside-{last}.bench"), Instant::now())?;
            }
            let (mut from_start, mut from_accepted, mut commands) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..args.changes {
                let name = format!("change-{i}");
                let started = Instant::now();
                host.run(|| Ok(lab.weft(&["apply", "-f", "-"], &ingress(&name))))??;
                let accepted = Instant::now();
                commands.push((accepted - started).as_secs_f64());
                until_served(&pods, &format!("{name}.bench"), started)?;
                from_start.push(started.elapsed().as_secs_f64());
                from_accepted.push(accepted.elapsed().as_secs_f64());
            }
            Ok((from_start, from_accepted, commands))
        })())
    })??;
    let (mut from_start, mut from_accepted, mut commands) = measured;
    for v in [&mut from_start, &mut from_accepted, &mut commands] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{} Ingresses beside the changes; {} new Ingresses, one at a time, each asked of both controller pods",
        args.ingresses, args.changes
    );
    println!(
        "new Ingress → served by both pods, from `weft apply`'s return (the API accepted it): {}",
        ms(&from_accepted)
    );
    println!("  ... from starting `weft apply`: {}", ms(&from_start));
    println!("the `weft apply` commands alone: {}", ms(&commands));
    Ok(())
}
