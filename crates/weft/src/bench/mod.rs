//! Benchmarks: commands that print figures (no pass/fail thresholds; those live in docs/benchmarks.md).

mod agent_memory;
mod api;
mod apply;
mod cni;
mod datapath;
mod dns;
mod dns_change;
mod drift;
mod ingress;
mod ingress_change;
mod lab;
mod observe;
mod peer;
mod policy;
mod proxy;

use clap::Subcommand;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum What {
    /// The node agent's memory at 10,000 Services × 5 endpoints, following the API through kube-rs (no root).
    AgentMemory(agent_memory::Args),
    /// The lab's Kubernetes API with its store, in process: writes at 10,000 Services with watchers, a Table
    /// list of 1,000 pods, memory.
    Api(api::Args),
    /// In a lab (root): 10,000 Services in one `kubectl apply -f` of a List, until stored and until programmed by
    /// every agent; `kubectl get services` of them; control-plane and agent memory.
    Apply(apply::Args),
    /// Sequential ADD/DEL of N pods through weft's CNI plugins and the reference plugins, interleaved, with and
    /// without port mappings.
    Cni(cni::Args),
    /// `lab up` until every pod is Running and reachable, `lab down`, and the control plane's memory.
    Lab(lab::Args),
    /// The service proxy at 10,000 Services: plan and apply times, rule counts, connect latency, memory.
    Proxy(proxy::Args),
    /// NetworkPolicy at 1,000 policies over 1,000 pods: apply to enforced, one change, connect latency.
    Policy(policy::Args),
    /// In labs (root): iperf3 between pods on one node and across nodes (host-gw, VXLAN), each beside a bare path
    /// built by hand the same way, interleaved; again with 10,000 Services and 1,000 NetworkPolicies loaded.
    Datapath(datapath::Args),
    /// weft dns beside unbound at 10,000 Services on loopback, interleaved: queries/s, p50/p99 latency, RSS
    /// (dnsperf when installed).
    Dns(dns::Args),
    /// In a lab (root): how long a Service change takes to reach the answers of the `weft dns` pods.
    DnsChange(dns_change::Args),
    /// weft ingress beside nginx, HAProxy and Envoy on loopback: requests/s, p50/p99 latency, new TLS
    /// handshakes/s, memory per idle keep-alive connection, requests/s while routes change 10 times a second.
    Ingress(ingress::Args),
    /// In a lab (root): how long the agent takes to repair its nftables tables after `nft flush ruleset`, a
    /// deleted overlay route, and (`--overlay vxlan`) a deleted VXLAN device.
    Drift(drift::Args),
    /// In namespaces of its own (root): TCP connect latency with the agent's flow collector listening vs not,
    /// and the collector's CPU at 10,000 new connections a second.
    Observe(observe::Args),
    /// In a lab (root): how long a new Ingress takes to be served by both `weft ingress` pods.
    IngressChange(ingress_change::Args),
}

pub fn run(what: What) -> anyhow::Result<()> {
    match what {
        What::AgentMemory(args) => agent_memory::run(args),
        What::Api(args) => api::run(args),
        What::Apply(args) => apply::run(args),
        What::Cni(args) => cni::run(args),
        What::Lab(args) => lab::run(args),
        What::Proxy(args) => proxy::run(args),
        What::Policy(args) => policy::run(args),
        What::Datapath(args) => datapath::run(args),
        What::Dns(args) => dns::run(args),
        What::DnsChange(args) => dns_change::run(args),
        What::Drift(args) => drift::run(args),
        What::IngressChange(args) => ingress_change::run(args),
        What::Ingress(args) => ingress::run(args),
        What::Observe(args) => observe::run(args),
    }
}

/// The value at quantile `q` (0..=1) of sorted `xs`.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let idx = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[idx.min(xs.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Microseconds per TCP connect to `target` from the calling thread's namespace, sorted; failures are
/// counted and left out.
pub fn connect_latency(target: SocketAddr, n: usize) -> Vec<f64> {
    let mut failed = None;
    let mut xs: Vec<f64> = (0..n)
        .filter_map(|_| {
            let started = Instant::now();
            let stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                .map_err(|e| failed = Some(e))
                .ok()?;
            let took = started.elapsed().as_secs_f64() * 1e6;
            drop(stream);
            Some(took)
        })
        .collect();
    if let Some(e) = failed {
        eprintln!("{} of {n} connects to {target} failed, e.g.: {e}", n - xs.len());
    }
    xs.sort_by(f64::total_cmp);
    xs
}

/// `connect WHAT: p50 …, p99 …` of sorted connect times in µs.
pub fn print_latency(what: &str, xs: &[f64]) {
    println!(
        "connect {what}: p50 {:.1} µs, p99 {:.1} µs",
        quantile(xs, 0.5),
        quantile(xs, 0.99)
    );
}

/// This process's peak resident memory in MB.
pub fn peak_rss_mb() -> f64 {
    peak_rss_of("self").unwrap_or(0.0)
}

/// The VmHWM of process `pid` ("self" for this one) in MB.
pub fn peak_rss_of(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
