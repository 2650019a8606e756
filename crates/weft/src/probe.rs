//! `weft probe`: one connection attempt (placeholder until implemented).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("weft probe is not implemented yet")
}
