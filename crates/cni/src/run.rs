//! One invocation from start to finish: read the environment and stdin, pick the plugin type, run the
//! command, and print the result or the spec's error object. Nothing else writes to stdout.

use crate::plugins;
use crate::spec::{CniError, Code, Command, Invocation, NetConf, Result, version};
use std::io::{Read, Write};
use std::path::Path;

/// What the process prints and exits with.
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs the plugin the way a runtime calls it: `argv0` is the name it was called under.
pub fn run(argv0: &str, env: impl Fn(&str) -> Option<String>, stdin: &mut dyn Read) -> Outcome {
    let mut version_for_errors = version::LATEST.to_string();
    match execute(argv0, env, stdin, &mut version_for_errors) {
        Ok(Some(json)) => Outcome {
            stdout: json.to_string(),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(err) => Outcome {
            stdout: err.to_json(&version_for_errors).to_string(),
            exit_code: 1,
        },
    }
}

fn execute(
    argv0: &str,
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    version_for_errors: &mut String,
) -> Result<Option<serde_json::Value>> {
    let inv = Invocation::from_env(env)?;
    let mut input = Vec::new();
    stdin
        .read_to_end(&mut input)
        .map_err(|e| CniError::io("cannot read the network configuration from stdin", e))?;
    if inv.command == Command::Version {
        return Ok(Some(NetConf::supported_versions_json()));
    }
    let conf = NetConf::parse(&input)?;
    *version_for_errors = conf.cni_version.clone();
    let kind = plugin_kind(argv0, &conf.plugin_type)?;
    let plugin = plugins::by_name(kind).ok_or_else(|| {
        CniError::config(format!(
            "plugin type {kind:?} is not served by weft-cni ({})",
            plugins::NAMES.join(", ")
        ))
    })?;
    match inv.command {
        Command::Add => plugin.add(&inv, &conf)?.to_json(&conf.cni_version).map(Some),
        Command::Del => plugin.del(&inv, &conf).map(|()| None),
        Command::Check => {
            if !conf.version.supports_check() {
                return Err(CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "CHECK needs cniVersion 0.4.0 or later, the config says {}",
                        conf.cni_version
                    ),
                ));
            }
            plugin.check(&inv, &conf).map(|()| None)
        }
        Command::Status | Command::Gc => {
            if !conf.version.supports_status_and_gc() {
                return Err(CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "STATUS and GC need cniVersion 1.1.0, the config says {}",
                        conf.cni_version
                    ),
                ));
            }
            let done = if inv.command == Command::Status {
                plugin.status(&conf)
            } else {
                plugin.gc(&conf)
            };
            done.map(|()| None)
        }
        Command::Version => unreachable!("answered above"),
    }
}

/// The plugin type: the program name when it is one we serve (a symlink per type in /opt/cni/bin), else
/// the config's `type`.
fn plugin_kind<'a>(argv0: &'a str, config_type: &'a str) -> Result<&'a str> {
    let called_as = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if plugins::NAMES.contains(&called_as) {
        return Ok(called_as);
    }
    if config_type.is_empty() {
        return Err(CniError::config("network configuration has no \"type\""));
    }
    Ok(config_type)
}

/// The binary's main: real environment, real stdin, result on stdout. The kernel's release-time waits are
/// left to a detached helper (see [`crate::detach`]).
pub fn main() -> i32 {
    crate::detach::enable();
    let argv0 = std::env::args().next().unwrap_or_default();
    let outcome = run(&argv0, |k| std::env::var(k).ok(), &mut std::io::stdin().lock());
    let mut out = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        let _ = writeln!(out, "{}", outcome.stdout);
    }
    let _ = out.flush();
    outcome.exit_code
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn invoke(argv0: &str, vars: &[(&str, &str)], stdin: &str) -> (serde_json::Value, i32) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let out = run(argv0, |k| map.get(k).cloned(), &mut stdin.as_bytes());
        let json = if out.stdout.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&out.stdout).unwrap()
        };
        (json, out.exit_code)
    }

    #[test]
    fn version_lists_every_supported_version() {
        let (json, code) = invoke("weft-cni", &[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(code, 0);
        assert_eq!(
            json["supportedVersions"].as_array().unwrap().len(),
            version::SUPPORTED.len()
        );
    }

    #[test]
    fn unknown_type_is_code_7_naming_it_in_the_configs_version() {
        let env = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ];
        let (json, code) = invoke(
            "weft-cni",
            &env,
            r#"{"cniVersion":"0.4.0","name":"n","type":"macvlan"}"#,
        );
        assert_eq!(code, 1);
        assert_eq!(json["code"], 7);
        assert_eq!(json["cniVersion"], "0.4.0");
        assert!(json["msg"].as_str().unwrap().contains("macvlan"));
    }

    #[test]
    fn check_before_040_and_gc_before_110_are_incompatible() {
        let env = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/x"),
        ];
        let (json, _) = invoke(
            "weft-cni",
            &env,
            r#"{"cniVersion":"0.3.1","name":"n","type":"loopback"}"#,
        );
        assert_eq!(json["code"], 1);
        let (json, _) = invoke(
            "weft-cni",
            &[("CNI_COMMAND", "GC")],
            r#"{"cniVersion":"1.0.0","name":"n","type":"loopback"}"#,
        );
        assert_eq!(json["code"], 1);
    }

    #[test]
    fn program_name_wins_over_config_type() {
        assert_eq!(plugin_kind("/opt/cni/bin/loopback", "bridge").unwrap(), "loopback");
        assert_eq!(plugin_kind("/opt/cni/bin/weft-cni", "bridge").unwrap(), "bridge");
        assert!(plugin_kind("weft-cni", "").is_err());
    }
}
