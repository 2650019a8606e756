//! `weft bench dns`: `weft dns --objects` with N generated Services on loopback, loaded by dnsperf (when installed)
//! or by an in-process load generator, while a probe samples latency at a low rate beside the load. Prints
//! queries/s, p50/p99 latency and the server's peak RSS.

use super::quantile;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
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
    /// UDP worker threads of the server (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// Kills the server whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `List` in JSON (YAML streams are limited to 1024 documents) of a namespace `bench` and its Services `svc-N`,
/// with fixed ClusterIPs (`cluster_ips`) or left to the API to allocate.
pub(super) fn manifest(services: usize, cluster_ips: bool) -> String {
    let mut items = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})];
    for i in 0..services {
        let mut spec = json!({"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]});
        if cluster_ips {
            spec["clusterIP"] = json!(format!("10.96.{}.{}", (i / 250) % 256, i % 250 + 2));
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

pub fn run(args: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("weft-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let objects = dir.join("objects.json");
    std::fs::write(&objects, manifest(args.services, true))?;
    let (port, http_port) = (free_port()?, free_port()?);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["dns", "--objects"])
        .arg(&objects)
        .args(["--listen", &addr.to_string(), "--http", &http.to_string()])
        // Nothing is forwarded in this benchmark; a discard port keeps the host's resolvers out of it.
        .args(["--upstream", "127.0.0.1:9", "--workers", &args.workers.to_string()])
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .context("starting weft dns")?;
    let mut server = Server(child);
    let started = Instant::now();
    while !http_get(http, "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        if server.0.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            bail!("weft dns did not become ready within 60 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = started.elapsed();
    let rss_ready = status_kib(server.0.id(), "VmRSS:").unwrap_or(0);
    println!(
        "services {}; ready after {:.0} ms; RSS when ready {:.1} MiB",
        args.services,
        ready.as_secs_f64() * 1e3,
        rss_ready as f64 / 1024.0
    );

    let seconds = Duration::from_secs(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let services = args.services;
        std::thread::spawn(move || probe(addr, services, 1000, stop))
    };
    let (tool, qps, loaded_lat) = if dnsperf_installed() && !args.no_dnsperf {
        let queries = dir.join("queries.txt");
        let mut text = String::new();
        let mut rng = Rng(7);
        for _ in 0..100_000 {
            let _ = writeln!(text, "svc-{}.bench.svc.cluster.local A", rng.below(args.services));
        }
        std::fs::write(&queries, text)?;
        let out = Command::new("dnsperf")
            .args(["-s", "127.0.0.1", "-p", &port.to_string(), "-d"])
            .arg(&queries)
            .args(["-l", &args.seconds.to_string(), "-c", "8", "-T", "2", "-q", "200"])
            .output()
            .context("running dnsperf")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |label: &str| -> Option<f64> {
            let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
            line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
        };
        let qps = field("Queries per second").unwrap_or(f64::NAN);
        let lost = text
            .lines()
            .find(|l| l.contains("Queries lost"))
            .unwrap_or("")
            .trim()
            .to_string();
        let avg = field("Average Latency (s)").unwrap_or(f64::NAN);
        println!("dnsperf: {lost}; average latency {:.3} ms", avg * 1e3);
        ("dnsperf (-c 8 -T 2 -q 200)", qps, None)
    } else {
        let (answered, lat) = generate(addr, args.services, 2, 64, seconds);
        (
            "in-process generator (2 threads x 64 outstanding)",
            answered as f64 / seconds.as_secs_f64(),
            Some(lat),
        )
    };
    stop.store(true, Ordering::Relaxed);
    let probe_lat = prober.join().unwrap_or_default();
    let rss_peak = status_kib(server.0.id(), "VmHWM:").unwrap_or(0);
    let rss_now = status_kib(server.0.id(), "VmRSS:").unwrap_or(0);
    println!("load: {tool} for {} s", args.seconds);
    println!("queries/s: {qps:.0}");
    if let Some(lat) = loaded_lat {
        println!(
            "latency under full load (generator): p50 {:.3} ms, p99 {:.3} ms",
            quantile(&lat, 0.5) * 1e3,
            quantile(&lat, 0.99) * 1e3
        );
    }
    println!(
        "latency beside the load (1 query at a time, ~1000/s, {} samples): p50 {:.3} ms, p99 {:.3} ms",
        probe_lat.len(),
        quantile(&probe_lat, 0.5) * 1e3,
        quantile(&probe_lat, 0.99) * 1e3
    );
    println!(
        "server RSS after the load: {:.1} MiB; peak RSS (including reading the manifest): {:.1} MiB",
        rss_now as f64 / 1024.0,
        rss_peak as f64 / 1024.0
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
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
