//! Calling another plugin binary from CNI_PATH, the way a runtime would, for IPAM types weft does not
//! serve itself (dhcp, static, whereabouts, ...).

use crate::spec::{CniError, CniResult, Code, Command, Invocation, NetConf, Result};
use std::io::Write;
use std::process::{Command as Process, Stdio};

pub fn call(plugin: &str, command: Command, inv: &Invocation, conf: &NetConf) -> Result<Option<CniResult>> {
    let path = inv
        .path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::config(format!("plugin {plugin:?} was not found in CNI_PATH")))?;
    let verb = match command {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Status => "STATUS",
        Command::Gc => "GC",
        Command::Version => "VERSION",
    };
    let input = serde_json::to_vec(&conf.raw).map_err(|e| CniError::internal("cannot encode config", e))?;
    let mut child = Process::new(&path)
        .env("CNI_COMMAND", verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::io(format!("cannot run {}", path.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| CniError::io(format!("writing to {plugin}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(format!("waiting for {plugin}"), e))?;
    let reply: serde_json::Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out.stdout).map_err(|e| {
            CniError::new(Code::Decode, format!("{plugin} printed something that is not JSON")).with_details(e)
        })?
    };
    if !out.status.success() {
        let msg = reply["msg"].as_str().unwrap_or("failed without an error object");
        let code = reply["code"].as_u64().unwrap_or(Code::Internal as u64);
        return Err(CniError::new(Code::Internal, format!("{plugin}: {msg} (code {code})")));
    }
    if command == Command::Add {
        CniResult::from_json(&reply).map(Some)
    } else {
        Ok(None)
    }
}
