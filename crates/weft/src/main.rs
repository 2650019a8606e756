//! The `weft` command line.

mod bench;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Bench { what } => bench::run(what),
    }
}
