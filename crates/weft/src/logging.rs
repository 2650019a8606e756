//! The logging flags of the long-running commands (`weft agent`, `weft dns`).

use anyhow::Result;
use weft_daemon::log::Format;

#[derive(clap::Args)]
pub struct Logging {
    /// What to log: a level (error, warn, info, debug, trace) or per-module directives as in RUST_LOG (e.g.
    /// `info,weft_agent=debug,kube=warn`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// `text` (one line per event) or `json` (one object per line).
    #[arg(long, default_value = "text")]
    log_format: Format,
}

impl Logging {
    /// Installs the logger: events go to stderr.
    pub fn init(&self) -> Result<()> {
        Ok(weft_daemon::log::init(&self.log_level, self.log_format)?)
    }
}
