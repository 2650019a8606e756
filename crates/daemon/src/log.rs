//! Logging for the node components: `tracing` events to stderr (what `kubectl logs` shows), filtered by level per
//! module with `tracing-subscriber`'s `EnvFilter` (the `RUST_LOG` syntax: `info`, `debug,kube=warn`), as plain
//! text lines or as JSON lines for a log pipeline.

use std::str::FromStr;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-03T14:46:49.123456Z  INFO weft_agent::node: services synced revision=42 ...`
    #[default]
    Text,
    /// One JSON object per line, fields as keys.
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("log format {other}: not text or json")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("log level {directives:?}: {msg}")]
    Filter { directives: String, msg: String },
    #[error("a logger is already installed")]
    Installed,
}

/// Installs the process's logger: events at or above `directives` (e.g. `info`, `weft_agent=debug,info`) go
/// to stderr in `format`. No colours: the lines end up in files and `kubectl logs`.
pub fn init(directives: &str, format: Format) -> Result<(), Error> {
    let filter = EnvFilter::builder().parse(directives).map_err(|e| Error::Filter {
        directives: directives.to_string(),
        msg: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| Error::Installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_level_is_refused_with_its_text() {
        let e = init("info,weft=loud", Format::Text).unwrap_err();
        assert!(e.to_string().starts_with("log level \"info,weft=loud\""), "{e}");
        assert_eq!("json".parse(), Ok(Format::Json));
        assert!("yaml".parse::<Format>().is_err());
    }
}
