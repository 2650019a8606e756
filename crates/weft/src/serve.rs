//! `weft serve`: the default workload of lab pods (placeholder until implemented).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("weft serve is not implemented yet")
}
