//! Calling CNI plugins the way containerd does (through libcni): the loopback network first, then every plugin
//! of the node's conflist in order with `name`, `cniVersion`, `prevResult` and the `runtimeConfig` of the
//! capabilities it declares; DEL in reverse order with the cached ADD result.

use crate::error::{Error, Result, io};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// One pod attachment, as the runtime describes it.
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub pod_namespace: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
    /// Capability arguments (`portMappings`, `bandwidth`, ...).
    pub runtime_config: Value,
}

pub struct Runtime {
    /// The node's network namespace: plugins run inside it, as they run on a node's host network.
    pub node_netns: PathBuf,
    pub bin_dir: PathBuf,
    /// The network list (a parsed .conflist).
    pub conflist: Value,
}

const LOOPBACK: &str = r#"{"cniVersion":"1.1.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}"#;

impl Runtime {
    /// ADD through loopback and the conflist; returns the final result (what the runtime caches).
    pub fn add(&self, a: &Attachment) -> Result<Value> {
        let loopback: Value = serde_json::from_str(LOOPBACK).map_err(|e| Error::Invalid(e.to_string()))?;
        let lo = Attachment {
            ifname: "lo",
            runtime_config: Value::Null,
            ..*a
        };
        self.run_list("ADD", &loopback, &lo, None)?;
        self.run_list("ADD", &self.conflist, a, None)
    }

    /// DEL in reverse plugin order, given the cached ADD result (or none when ADD never finished).
    pub fn del(&self, a: &Attachment, cached: Option<&Value>) -> Result<()> {
        self.run_list("DEL", &self.conflist, a, cached)?;
        Ok(())
    }

    fn run_list(&self, command: &str, list: &Value, a: &Attachment, cached: Option<&Value>) -> Result<Value> {
        let name = list.get("name").cloned().unwrap_or(Value::Null);
        let version = list.get("cniVersion").cloned().unwrap_or(json!("1.1.0"));
        let plugins = list
            .get("plugins")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let order: Vec<&Value> = if command == "DEL" {
            plugins.iter().rev().collect()
        } else {
            plugins.iter().collect()
        };
        let mut prev = cached.cloned();
        for plugin in order {
            let mut conf = plugin.clone();
            let Some(obj) = conf.as_object_mut() else {
                return Err(Error::Invalid("a conflist plugin entry is not an object".into()));
            };
            obj.insert("name".into(), name.clone());
            obj.insert("cniVersion".into(), version.clone());
            if let Some(p) = &prev {
                obj.insert("prevResult".into(), p.clone());
            }
            let wanted = runtime_config(plugin, &a.runtime_config);
            if !wanted.is_empty() {
                obj.insert("runtimeConfig".into(), Value::Object(wanted));
            }
            let kind = plugin.get("type").and_then(Value::as_str).unwrap_or_default();
            let out = self.exec(kind, command, a, &conf)?;
            if command == "ADD" {
                prev = Some(out);
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    fn exec(&self, kind: &str, command: &str, a: &Attachment, conf: &Value) -> Result<Value> {
        let program = self.bin_dir.join(kind);
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
        );
        let node = crate::sandbox::Sandbox {
            netns: self.node_netns.clone(),
            files: None,
            hostname: None,
            service_account: None,
        };
        let mut child = node
            .command(&[program.display().to_string()])?
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", a.container_id)
            .env("CNI_NETNS", a.netns)
            .env("CNI_IFNAME", a.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", &self.bin_dir)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("running CNI plugin {}", program.display())))?;
        let input = serde_json::to_vec(conf).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .map_err(io(format!("writing to CNI plugin {kind}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io(format!("waiting for CNI plugin {kind}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let msg = serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| {
                    let m = v.get("msg")?.as_str()?.to_string();
                    let d = v.get("details").and_then(Value::as_str).unwrap_or_default().to_string();
                    Some(if d.is_empty() { m } else { format!("{m}: {d}") })
                })
                .unwrap_or_else(|| format!("{}{}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim()));
            return Err(Error::Invalid(format!(
                "CNI {command} ({kind}) for {}: {msg}",
                a.pod_name
            )));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout).map_err(|e| Error::Invalid(format!("CNI {kind} printed no JSON result: {e}")))
    }
}

/// The runtime arguments for the capabilities a plugin declares (`"capabilities": {"portMappings": true}`).
fn runtime_config(plugin: &Value, offered: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) else {
        return out;
    };
    for (cap, on) in caps {
        if on.as_bool() == Some(true)
            && let Some(v) = offered.get(cap)
        {
            out.insert(cap.clone(), v.clone());
        }
    }
    out
}

/// The first IPv4 address of a CNI result (without its prefix length).
pub fn result_ip(result: &Value) -> Option<String> {
    result
        .get("ips")?
        .as_array()?
        .iter()
        .filter_map(|ip| ip.get("address")?.as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .find(|a| !a.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_capabilities_are_passed() {
        let plugin = json!({"type": "weft", "capabilities": {"portMappings": true, "bandwidth": false}});
        let offered = json!({"portMappings": [{"hostPort": 8080}], "bandwidth": {"ingressRate": 1}});
        let rc = runtime_config(&plugin, &offered);
        assert!(rc.contains_key("portMappings"));
        assert!(!rc.contains_key("bandwidth"));
        assert!(runtime_config(&json!({"type": "x"}), &offered).is_empty());
    }

    #[test]
    fn the_result_ip_is_the_first_v4_address() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.244.1.5/24"}]});
        assert_eq!(result_ip(&r).as_deref(), Some("10.244.1.5"));
        assert_eq!(result_ip(&json!({})), None);
    }
}
