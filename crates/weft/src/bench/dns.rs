//! `weft bench dns`: `weft dns --objects` with N generated Services on loopback beside its peer, unbound serving the
//! same names as static local data. Each is loaded in turn (interleaved rounds) by dnsperf (when installed) or by
//! an in-process load generator, while a probe samples latency at a low rate beside the load: flat out, then at
//! offered rates (dnsperf -Q) searched for the highest whose p99 stays within a bound (2 ms), the two servers
//! alternating step by step. Prints queries/s at the bound and flat out, p50/p99 latency, CPU per query of each
//! server and of the load generator, their ratios, and peak RSS.

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
    /// Length of each flat-out load phase.
    #[arg(long, default_value_t = 5)]
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
    /// The latency bound of the rate search: the highest offered rate whose p99 stays within it.
    #[arg(long, default_value_t = 2.0)]
    p99_ms: f64,
    /// Bisection steps of the rate search per server and round (0: flat out only).
    #[arg(long, default_value_t = 7)]
    steps: usize,
    /// Length of each step of the rate search.
    #[arg(long, default_value_t = 3)]
    step_seconds: u64,
    /// Servers on the last CPU, the load generator and the probe on the others (both servers alike; workers
    /// default to 1).
    #[arg(long)]
    pin: bool,
    /// The weft binary whose `weft dns` is measured (default: this one), e.g. an earlier build for before/after.
    #[arg(long)]
    weft_bin: Option<std::path::PathBuf>,
    /// A further argument for `weft dns` (repeatable), e.g. `--weft-arg=--linger-us=100`.
    #[arg(long, allow_hyphen_values = true)]
    weft_arg: Vec<String>,
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

/// One load phase against `addr`: the queries/s answered, the p50 and p99 (ms) of the probe beside the load, the
/// share of the queries sent that were answered, and CPU time (user and system) per answered query in µs of the
/// server and of the load generator. The CPU figures are what a shared machine moves least: queries/s also
/// depends on the CPU share the load generator gets beside the server.
struct Sample {
    qps: f64,
    p50: f64,
    p99: f64,
    answered_share: f64,
    cpu_us: f64,
    /// The part of `cpu_us` spent in the kernel.
    system_us: f64,
    load_cpu_us: f64,
}

/// The load of one phase: flat out, or at an offered rate (queries/s, dnsperf only).
#[derive(Clone, Copy)]
enum Offered {
    FlatOut,
    Rate(f64),
}

/// What every load phase shares.
struct Load<'a> {
    args: &'a Args,
    queries: Option<&'a Path>,
    /// `taskset -c` list for the load generator when servers and load are pinned apart.
    load_cpus: Option<String>,
}

impl Load<'_> {
    fn run(&self, addr: SocketAddr, pid: u32, offered: Offered, seconds: u64) -> Result<Sample> {
        let stop = Arc::new(AtomicBool::new(false));
        let prober = {
            let stop = stop.clone();
            let services = self.args.services;
            std::thread::spawn(move || probe(addr, services, 1000, stop))
        };
        let cpu = || super::apply::process_times(pid as i32).unwrap_or((f64::NAN, f64::NAN));
        let (cpu_before, load_before) = (cpu(), super::apply::children_cpu());
        let (qps, answered, sent) = match self.queries {
            Some(queries) => {
                let mut cmd = command_on(self.load_cpus.as_deref(), Path::new("dnsperf"));
                cmd.args(["-s", "127.0.0.1", "-p", &addr.port().to_string(), "-d"])
                    .arg(queries)
                    .args(["-l", &seconds.to_string(), "-c", "8", "-T", "2", "-q", "200"]);
                if let Offered::Rate(rate) = offered {
                    cmd.args(["-Q", &format!("{rate:.0}")]);
                }
                let out = cmd.output().context("running dnsperf")?;
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                // `  Queries per second:   123.4`, `  Queries sent:         1234`, `  Queries completed:    1234 (99.9%)`.
                let figure = |label: &str| -> f64 {
                    let line = text.lines().find(|l| l.trim_start().starts_with(label));
                    line.and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
                        .unwrap_or(f64::NAN)
                };
                (
                    figure("Queries per second"),
                    figure("Queries completed"),
                    figure("Queries sent"),
                )
            }
            None => {
                let duration = Duration::from_secs(seconds);
                let answered = generate(addr, self.args.services, 2, 64, duration).0 as f64;
                (answered / duration.as_secs_f64(), answered, f64::NAN)
            }
        };
        let cpu_after = cpu();
        let per_query = |seconds: f64| seconds / answered * 1e6;
        let (user_us, system_us) = (
            per_query(cpu_after.0 - cpu_before.0),
            per_query(cpu_after.1 - cpu_before.1),
        );
        let load_cpu_us = per_query(super::apply::children_cpu() - load_before);
        stop.store(true, Ordering::Relaxed);
        let lat = prober.join().unwrap_or_default();
        Ok(Sample {
            qps,
            p50: quantile(&lat, 0.5) * 1e3,
            p99: quantile(&lat, 0.99) * 1e3,
            answered_share: answered / sent,
            cpu_us: user_us + system_us,
            system_us,
            load_cpu_us,
        })
    }
}

/// The search for one server's highest offered rate whose p99 stays within the bound: bisection between the
/// highest rate that passed (0 at first) and the lowest that failed (the ceiling at first).
struct Search {
    passed: f64,
    failed: f64,
    /// The p99 at `passed`.
    p99: f64,
}

impl Search {
    fn new(ceiling: f64) -> Search {
        Search {
            passed: 0.0,
            failed: ceiling,
            p99: f64::NAN,
        }
    }

    fn next(&self) -> f64 {
        (self.passed + self.failed) / 2.0
    }

    /// Runs the next step; a step passes when the probe's p99 is within `bound_ms`, at least 99.9 % of the
    /// queries sent were answered, and at least 95 % of the offered rate was reached. A step that fails is run
    /// once more and fails only if that fails too: on a shared machine one burst of other work fails a rate
    /// that passes otherwise, and bisection never comes back above a rate that failed. Returns the step's line.
    fn step(&mut self, load: &Load, addr: SocketAddr, pid: u32, bound_ms: f64) -> Result<String> {
        let rate = self.next();
        let mut line = String::new();
        for attempt in 0..2 {
            let s = load.run(addr, pid, Offered::Rate(rate), load.args.step_seconds)?;
            let ok = s.p99 <= bound_ms && s.answered_share >= 0.999 && s.qps >= 0.95 * rate;
            let _ = write!(
                line,
                "{}{rate:.0}/s: p99 {:.2} ms, {:.0} q/s, {:.2} % answered, {:.2} µs CPU/query: {}",
                if attempt > 0 { ", again " } else { "" },
                s.p99,
                s.qps,
                s.answered_share * 100.0,
                s.cpu_us,
                if ok { "pass" } else { "fail" }
            );
            if ok {
                (self.passed, self.p99) = (rate, s.p99);
                return Ok(line);
            }
        }
        self.failed = rate;
        Ok(line)
    }
}

pub fn run(args: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("weft-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// With `--pin`: this thread (and so the probe and dnsperf, started from it later) on every CPU but the last,
/// which the servers get (`taskset`). Returns the servers' and the load's `taskset -c` lists.
fn pin() -> Result<(String, String)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!("--pin needs at least 2 CPUs");
    }
    // SAFETY: cpu_set_t is plain old data; CPU_ZERO/CPU_SET write inside it, sched_setaffinity reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for cpu in 0..cpus - 1 {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(((cpus - 1).to_string(), format!("0-{}", cpus - 2)))
}

/// `program` started on `cpus` (`taskset -c`) when given.
fn command_on(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn measure(args: &Args, dir: &Path) -> Result<()> {
    let (server_cpus, load_cpus) = if args.pin {
        let (s, l) = pin()?;
        (Some(s), Some(l))
    } else {
        (None, None)
    };
    let objects = dir.join("objects.json");
    std::fs::write(&objects, manifest(args.services, true))?;
    let [port, http_port, peer_port] = free_ports()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let peer: SocketAddr = ([127, 0, 0, 1], peer_port).into();
    let threads = match (args.workers, args.pin) {
        (0, true) => 1,
        (0, false) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        (n, _) => n,
    };
    let exe = match &args.weft_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?,
    };
    let child = command_on(server_cpus.as_deref(), &exe)
        .args(["dns", "--objects"])
        .arg(&objects)
        .args(["--listen", &addr.to_string(), "--http", &http.to_string()])
        // Nothing is forwarded in this benchmark; a discard port keeps the host's resolvers out of it.
        .args(["--upstream", "127.0.0.1:9", "--workers", &threads.to_string()])
        .args(&args.weft_arg)
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .context("starting weft dns")?;
    let mut server = Server(child);
    let ready = wait_answering(addr, &mut server, "weft dns", &dir.join("server.log"))?;
    let rss_ready = status_kib(server.0.id(), "VmRSS:").unwrap_or(0);

    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(dir, peer_port, args.services, threads))?;
    let child = command_on(server_cpus.as_deref(), Path::new("unbound"))
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
    if let (Some(s), Some(l)) = (&server_cpus, &load_cpus) {
        println!("pinned: servers on CPU {s}, load generator and probe on CPU {l}");
    }

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
    let search = queries.is_some() && args.steps > 0;
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
    if search {
        println!(
            "then per round the highest offered rate (dnsperf -Q) with p99 <= {} ms, >= 99.9 % answered and >= 95 % \
             of the rate reached: {} bisection steps of {} s each (a failed step run again, failing only twice) \
             between 0 and 1.25 x the round's best flat-out rate, weft dns and unbound alternating step by step",
            args.p99_ms, args.steps, args.step_seconds
        );
    }
    let load = Load {
        args,
        queries: queries.as_deref(),
        load_cpus,
    };
    let mut flat = [(); 6].map(|_| Paired::new());
    let (mut at_bound, mut predicted, mut ceiling) = (Paired::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let w = load.run(addr, server.0.id(), Offered::FlatOut, args.seconds)?;
        let u = load.run(peer, unbound.0.id(), Offered::FlatOut, args.seconds)?;
        println!(
            "round {}: flat out: weft dns {:.0} q/s p99 {:.2} ms {:.2} µs CPU/query ({:.2} in the kernel; dnsperf {:.2} \
             µs); unbound {:.0} q/s p99 {:.2} ms {:.2} µs CPU/query ({:.2} in the kernel; dnsperf {:.2} µs); load \
             average {}",
            round + 1,
            w.qps,
            w.p99,
            w.cpu_us,
            w.system_us,
            w.load_cpu_us,
            u.qps,
            u.p99,
            u.cpu_us,
            u.system_us,
            u.load_cpu_us,
            super::peer::load_average()
        );
        for (p, (a, b)) in flat.iter_mut().zip([
            (w.qps, u.qps),
            (w.p50, u.p50),
            (w.p99, u.p99),
            (w.cpu_us, u.cpu_us),
            (w.system_us, u.system_us),
            (w.load_cpu_us, u.load_cpu_us),
        ]) {
            p.push(a, b);
        }
        // What the cores allow a closed loop sharing them: queries/s goes as 1 / (load generator's + server's CPU
        // per query), and the load generator's is paid whichever server answers, even by a server that costs nothing.
        predicted.push((u.load_cpu_us + u.cpu_us) / (w.load_cpu_us + w.cpu_us));
        ceiling.push((u.load_cpu_us + u.cpu_us) / w.load_cpu_us);
        if !search {
            continue;
        }
        let top = 1.25 * w.qps.max(u.qps);
        let (mut ws, mut us) = (Search::new(top), Search::new(top));
        for step in 0..args.steps {
            let wl = ws.step(&load, addr, server.0.id(), args.p99_ms)?;
            let ul = us.step(&load, peer, unbound.0.id(), args.p99_ms)?;
            println!(
                "  step {}: weft dns {wl}; unbound {ul}; load average {}",
                step + 1,
                super::peer::load_average()
            );
        }
        println!(
            "round {}: at p99 <= {} ms: weft dns {:.0} q/s (p99 {:.2} ms), unbound {:.0} q/s (p99 {:.2} ms)",
            round + 1,
            args.p99_ms,
            ws.passed,
            ws.p99,
            us.passed,
            us.p99
        );
        // A round where neither passed even the lowest rate tried says nothing about either (the machine's other
        // work decided it): it is left out of the ratio, as the line above shows.
        if ws.passed > 0.0 || us.passed > 0.0 {
            at_bound.push(ws.passed, us.passed);
        }
    }
    let [qps, p50, p99, cpu, system, load_cpu] = flat;
    header("unbound", Better::Higher);
    if search {
        at_bound.print(&format!("queries/s at p99 <= {} ms", args.p99_ms), "", Better::Higher);
    }
    qps.print("queries/s flat out", "", Better::Higher);
    header("unbound", Better::Lower);
    p50.print("latency beside the flat-out load p50", " ms", Better::Lower);
    p99.print("latency beside the flat-out load p99", " ms", Better::Lower);
    cpu.print("server CPU per answered query (flat out)", " µs", Better::Lower);
    system.print("  of which in the kernel", " µs", Better::Lower);
    load_cpu.print("dnsperf CPU per answered query (flat out)", " µs", Better::Lower);
    println!(
        "{:<50} {:>26}",
        "flat-out weft/unbound from CPU per query",
        super::peer::spread(&predicted, "")
    );
    println!(
        "{:<50} {:>26}",
        "  and were weft dns's CPU per query 0",
        super::peer::spread(&ceiling, "")
    );
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
