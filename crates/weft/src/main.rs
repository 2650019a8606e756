//! The `weft` command line.

mod bench;
mod probe;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Kubernetes pod networking: CNI plugin, node agent, lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure weft's components and print the figures.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
    /// Serve HTTP on TCP ports and echo on UDP ports, answering who and where this pod is.
    Serve(serve::Args),
    /// One connection attempt to a URL, tcp://IP:PORT or udp://IP:PORT; exit 0 when it answered.
    Probe(probe::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Bench { what } => bench::run(what),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Probe(args) => probe::run(args),
    }
}
