//! Benchmarks: commands that print figures (no pass/fail thresholds; those live in docs/benchmarks.md).

mod cni;
mod dns;
mod lab;
mod proxy;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum What {
    /// Sequential ADD/DEL of N pods through a CNI plugin binary, with and without port mappings.
    Cni(cni::Args),
    /// `lab up` until every pod is Running and reachable, `lab down`, and the control plane's memory.
    Lab(lab::Args),
    /// The service proxy at 10,000 Services: plan and apply times, rule counts, connect latency, memory.
    Proxy(proxy::Args),
    /// weft dns at 10,000 Services on loopback: queries/s, p50/p99 latency, RSS (dnsperf when installed).
    Dns(dns::Args),
}

pub fn run(what: What) -> anyhow::Result<()> {
    match what {
        What::Cni(args) => cni::run(args),
        What::Lab(args) => lab::run(args),
        What::Proxy(args) => proxy::run(args),
        What::Dns(args) => dns::run(args),
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
