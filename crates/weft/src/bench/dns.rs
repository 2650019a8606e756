//! `weft bench dns`: `weft dns --objects` with N generated Services on loopback beside its peer, unbound serving the
//! same names as static local data. Each is loaded in turn (interleaved rounds) by dnsperf (when installed) or by
//! an in-process load generator, while a probe samples latency at a low rate beside the load. Prints queries/s,
//! p50/p99 latency of both and their ratios, and peak RSS.

use super::peer::{Better, Paired, header};
use super::quantile;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Length of the load phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Use the in-process load generator even when dnsperf is installed.
    #[arg(long)]
    no_dnsperf: bool,
    /// UDP worker threads of the server, and unbound's threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Load phases of each server, interleaved (weft dns, unbound, weft dns, …).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Kills the server whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `N` ports free on 127.0.0.1 for both UDP and TCP (the servers bind both), below the kernel's ephemeral
/// range: a port the kernel hands out for UDP may be the local port of an outgoing TCP connection, which on a
/// busy machine made a server's TCP bind fail.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let start = (std::process::id() % 12_000) as u16;
    let mut free = (0..12_000u16).map(|i| 20_000 + (start + i) % 12_000).filter(|&port| {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
    });
    let mut ports = [0; N];
    for port in &mut ports {
        *port = free
            .next()
            .context("no port free for both UDP and TCP on 127.0.0.1 in 20000-31999")?;
    }
    Ok(ports)
}

/// A `List` in JSON (YAML streams are limited to 1024 documents) of a namespace `bench` and its Services `svc-N`,
/// with fixed ClusterIPs (`cluster_ips`) or left to the API to allocate.
pub(super) fn manifest(services: usize, cluster_ips: bool) -> String {
    let mut items = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})];
    for i in 0..services {
        let mut spec = json!({"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]});
        if cluster_ips {
            spec["clusterIP"] = json!(cluster_ip(i));
        }
        items.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": spec,
        }));
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

pub(super) fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A memory figure of /proc/PID/status (`VmHWM:` peak RSS, `VmRSS:` now), in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A query for `svc-{i}.bench.svc.cluster.local` A, with ID `id` (no EDNS, RD set).
fn query(id: u16, i: usize) -> Vec<u8> {
    query_name(id, &format!("svc-{i}.bench.svc.cluster.local"))
}

/// A query for `name` A, with ID `id` (no EDNS, RD set).
pub(super) fn query_name(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Cheap pseudo-random indexes (xorshift), the same sequence every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Closed-loop load: each thread keeps `window` queries outstanding. Returns (answered, latencies in seconds).
fn generate(addr: SocketAddr, services: usize, threads: usize, window: usize, dur: Duration) -> (u64, Vec<f64>) {
    let answered = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let answered = answered.clone();
            std::thread::spawn(move || -> Vec<f64> {
                let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
                    return vec![];
                };
                let _ = sock.connect(addr);
                let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
                let mut rng = Rng(0x9e3779b97f4a7c15 ^ (t as u64 + 1));
                let mut sent: HashMap<u16, Instant> = HashMap::new();
                let mut lat = Vec::new();
                let mut id: u16 = 0;
                let end = Instant::now() + dur;
                let mut buf = [0u8; 1500];
                while Instant::now() < end {
                    while sent.len() < window {
                        id = id.wrapping_add(1);
                        let _ = sock.send(&query(id, rng.below(services)));
                        sent.insert(id, Instant::now());
                    }
                    match sock.recv(&mut buf) {
                        Ok(n) if n >= 2 => {
                            if let Some(at) = sent.remove(&u16::from_be_bytes([buf[0], buf[1]])) {
                                lat.push(at.elapsed().as_secs_f64());
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => sent.retain(|_, at| at.elapsed() < Duration::from_millis(500)),
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<f64> = handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    lat.sort_by(f64::total_cmp);
    (answered.load(Ordering::Relaxed), lat)
}

/// One query at a time at about `rate` per second until `stop`: latency beside the load.
fn probe(addr: SocketAddr, services: usize, rate: u32, stop: Arc<AtomicBool>) -> Vec<f64> {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return vec![];
    };
    let _ = sock.connect(addr);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut rng = Rng(42);
    let mut lat = Vec::new();
    let mut buf = [0u8; 1500];
    let pause = Duration::from_secs(1) / rate;
    let mut id = 0u16;
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let at = Instant::now();
        let _ = sock.send(&query(id, rng.below(services)));
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                    lat.push(at.elapsed().as_secs_f64());
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        std::thread::sleep(pause);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

fn dnsperf_installed() -> bool {
    Command::new("dnsperf")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The ClusterIP `manifest` gives Service `i`.
fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", (i / 250) % 256, i % 250 + 2)
}

/// unbound's configuration: the same names as static local data (the TTL `weft dns` uses, 5 s), nothing
/// recursive or validated, as many threads as weft dns has workers, each on a socket of its own (SO_REUSEPORT,
/// as weft dns) with the 4 MiB receive buffer weft dns asks for, in the foreground without chroot or syslog.
fn unbound_conf(dir: &Path, port: u16, services: usize, threads: usize) -> String {
    let mut c = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  chroot: \"\"\n  \
         username: \"\"\n  directory: \"{}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  \
         num-threads: {threads}\n  so-reuseport: yes\n  so-rcvbuf: 4m\n  so-sndbuf: 4m\n  \
         module-config: \"iterator\"\n  \
         access-control: 127.0.0.0/8 allow\n  local-zone: \"cluster.local.\" static\n",
        dir.display()
    );
    for i in 0..services {
        let _ = writeln!(
            c,
            "  local-data: \"svc-{i}.bench.svc.cluster.local. 5 IN A {}\"",
            cluster_ip(i)
        );
    }
    c.push_str("remote-control:\n  control-enable: no\n");
    c
}

/// Waits until `addr` answers a query for Service 0 (or the server exits, or 60 s pass).
fn wait_answering(addr: SocketAddr, server: &mut Server, what: &str, log: &Path) -> Result<Duration> {
    let started = Instant::now();
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut buf = [0u8; 1500];
    loop {
        let _ = sock.send_to(&query(1, 0), addr);
        if sock
            .recv(&mut buf)
            .is_ok_and(|n| n > 12 && buf[3] & 0x0f == 0 && buf[7] > 0)
        {
            return Ok(started.elapsed());
        }
        if server.0.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{what} did not answer within 60 s:\n{log}");
        }
    }
}

/// One load phase against `addr`: queries/s, the p50 and p99 (ms) of the probe beside the load, and the
/// server's CPU time (user and system) per answered query in µs. The last is what a shared machine moves least:
/// queries/s also depends on the CPU share the load generator gets beside the server.
struct Sample {
    qps: f64,
    p50: f64,
    p99: f64,
    cpu_us: f64,
}

fn load(addr: SocketAddr, pid: u32, args: &Args, queries: Option<&Path>) -> Result<Sample> {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let services = args.services;
        std::thread::spawn(move || probe(addr, services, 1000, stop))
    };
    let cpu = || super::apply::process_cpu(pid as i32);
    let cpu_before = cpu();
    let (qps, answered) = match queries {
        Some(queries) => {
            let out = Command::new("dnsperf")
                .args(["-s", "127.0.0.1", "-p", &addr.port().to_string(), "-d"])
                .arg(queries)
                .args(["-l", &args.seconds.to_string(), "-c", "8", "-T", "2", "-q", "200"])
                .output()
                .context("running dnsperf");
            let text = String::from_utf8_lossy(&out?.stdout).to_string();
            // `  Queries per second:   123.4` and `  Queries completed:    1234 (99.9%)`.
            let figure = |label: &str| -> f64 {
                let line = text.lines().find(|l| l.trim_start().starts_with(label));
                line.and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            (figure("Queries per second"), figure("Queries completed"))
        }
        None => {
            let seconds = Duration::from_secs(args.seconds);
            let answered = generate(addr, args.services, 2, 64, seconds).0 as f64;
            (answered / seconds.as_secs_f64(), answered)
        }
    };
    let cpu_us = (cpu() - cpu_before) / answered * 1e6;
    stop.store(true, Ordering::Relaxed);
    let lat = prober.join().unwrap_or_default();
    Ok(Sample {
        qps,
        p50: quantile(&lat, 0.5) * 1e3,
        p99: quantile(&lat, 0.99) * 1e3,
        cpu_us,
    })
}

pub fn run(args: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("weft-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(args: &Args, dir: &Path) -> Result<()> {
    let objects = dir.join("objects.json");
    std::fs::write(&objects, manifest(args.services, true))?;
    let [port, http_port, peer_port] = free_ports()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let peer: SocketAddr = ([127, 0, 0, 1], peer_port).into();
    let threads = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["dns", "--objects"])
        .arg(&objects)
        .args(["--listen", &addr.to_string(), "--http", &http.to_string()])
        // Nothing is forwarded in this benchmark; a discard port keeps the host's resolvers out of it.
        .args(["--upstream", "127.0.0.1:9", "--workers", &threads.to_string()])
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .context("starting weft dns")?;
    let mut server = Server(child);
    let ready = wait_answering(addr, &mut server, "weft dns", &dir.join("server.log"))?;
    let rss_ready = status_kib(server.0.id(), "VmRSS:").unwrap_or(0);

    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(dir, peer_port, args.services, threads))?;
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&conf)
        .stderr(std::fs::File::create(dir.join("unbound.log"))?)
        .spawn()
        .context("starting unbound (scripts/deps.sh installs it)")?;
    let mut unbound = Server(child);
    let peer_ready = wait_answering(peer, &mut unbound, "unbound", &dir.join("unbound.log"))?;
    println!(
        "services {}; {threads} threads each; answering after {:.0} ms (weft dns), {:.0} ms (unbound); RSS then \
         {:.1} MiB (weft dns), {:.1} MiB (unbound)",
        args.services,
        ready.as_secs_f64() * 1e3,
        peer_ready.as_secs_f64() * 1e3,
        rss_ready as f64 / 1024.0,
        status_kib(unbound.0.id(), "VmRSS:").unwrap_or(0) as f64 / 1024.0,
    );

    let queries = if dnsperf_installed() && !args.no_dnsperf {
        let queries = dir.join("queries.txt");
        let mut text = String::new();
        let mut rng = Rng(7);
        for _ in 0..100_000 {
            let _ = writeln!(text, "svc-{}.bench.svc.cluster.local A", rng.below(args.services));
        }
        std::fs::write(&queries, text)?;
        Some(queries)
    } else {
        None
    };
    println!(
        "load: {} for {} s, {} rounds of weft dns then unbound; latency: one query at a time beside the load (~1000/s)",
        if queries.is_some() {
            "dnsperf (-c 8 -T 2 -q 200)"
        } else {
            "in-process generator (2 threads x 64 outstanding)"
        },
        args.seconds,
        args.rounds
    );
    let (mut qps, mut p50, mut p99, mut cpu) = (Paired::new(), Paired::new(), Paired::new(), Paired::new());
    for round in 0..args.rounds {
        let w = load(addr, server.0.id(), args, queries.as_deref())?;
        let u = load(peer, unbound.0.id(), args, queries.as_deref())?;
        println!(
            "round {}: weft dns {:.0} q/s p99 {:.2} ms {:.2} µs CPU/query; unbound {:.0} q/s p99 {:.2} ms {:.2} µs \
             CPU/query; load average {}",
            round + 1,
            w.qps,
            w.p99,
            w.cpu_us,
            u.qps,
            u.p99,
            u.cpu_us,
            super::peer::load_average()
        );
        qps.push(w.qps, u.qps);
        cpu.push(w.cpu_us, u.cpu_us);
        p50.push(w.p50, u.p50);
        p99.push(w.p99, u.p99);
    }
    header("unbound", Better::Higher);
    qps.print("queries/s", "", Better::Higher);
    header("unbound", Better::Lower);
    p50.print("latency beside the load p50", " ms", Better::Lower);
    p99.print("latency beside the load p99", " ms", Better::Lower);
    cpu.print("server CPU per answered query", " µs", Better::Lower);
    println!(
        "peak RSS: {:.1} MiB (weft dns, including reading the manifest), {:.1} MiB (unbound)",
        status_kib(server.0.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0,
        status_kib(unbound.0.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0
    );
    if let Some(m) = http_get(http, "/metrics") {
        for l in m
            .lines()
            .filter(|l| l.starts_with("weft_dns_sync_duration_seconds_sum"))
        {
            println!(
                "table build ({} services): {} s",
                args.services,
                l.split_whitespace().nth(1).unwrap_or("?")
            );
        }
    }
    Ok(())
}
