//! Deleting conntrack entries through the `conntrack` binary (Debian package `conntrack`), in the calling
//! thread's network namespace.

use crate::error::{Error, Result};
use std::process::Command;

/// `conntrack -D FILTER...`. Finding nothing to delete is not an error (conntrack exits 1 then); failing to
/// run the tool is.
pub fn delete(filter: &[&str]) -> Result<()> {
    Command::new("conntrack")
        .arg("-D")
        .args(filter)
        .output()
        .map(drop)
        .map_err(|e| Error::Command {
            program: "conntrack".into(),
            msg: format!("cannot run conntrack (is the conntrack package installed?): {e}"),
        })
}
