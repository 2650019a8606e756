//! Calling CNI plugins the way containerd does (through libcni): the network is the lexicographically first
//! `*.conflist`/`*.conf`/`*.json` of the node's /etc/cni/net.d (none: the network is not ready), plugins come
//! from the node's /opt/cni/bin; ADD runs the loopback network first, then every plugin of the list in order
//! with `name`, `cniVersion`, `prevResult` and the `runtimeConfig` of the capabilities it declares; DEL runs
//! in reverse order with the cached ADD result.

use crate::error::{Error, Result, io};
use crate::node_fs::NodeFs;
use crate::sandbox::{Env, Sandbox};
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
    /// The node's filesystem: its net.d, bin dir, and what plugins see.
    pub fs: NodeFs,
}

const LOOPBACK: &str = r#"{"cniVersion":"1.1.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}"#;

impl Runtime {
    /// The network list of the node: its net.d's first config, as a list; None when there is none yet.
    pub fn network(&self) -> Result<Option<Value>> {
        network(&self.fs.net_d())
    }

    fn network_or_not_ready(&self) -> Result<Value> {
        self.network()?.ok_or_else(|| Error::Invalid(NOT_READY.into()))
    }

    /// ADD through loopback and the conflist; returns the final result (what the runtime caches).
    pub fn add(&self, a: &Attachment) -> Result<Value> {
        let conflist = self.network_or_not_ready()?;
        let loopback: Value = serde_json::from_str(LOOPBACK).map_err(|e| Error::Invalid(e.to_string()))?;
        let lo = Attachment {
            ifname: "lo",
            runtime_config: Value::Null,
            ..*a
        };
        self.run_list("ADD", &loopback, &lo, None)?;
        self.run_list("ADD", &conflist, a, None)
    }

    /// DEL in reverse plugin order, given the cached ADD result (or none when ADD never finished).
    pub fn del(&self, a: &Attachment, cached: Option<&Value>) -> Result<()> {
        self.run_list("DEL", &self.network_or_not_ready()?, a, cached)?;
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
        let bin_dir = self.fs.cni_bin_dir();
        let program = bin_dir.join(kind);
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
        );
        let node = Sandbox {
            netns: self.node_netns.clone(),
            binds: self.fs.plugin_view(),
            ..Default::default()
        };
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", a.container_id.to_string()),
            ("CNI_NETNS", a.netns.display().to_string()),
            ("CNI_IFNAME", a.ifname.to_string()),
            ("CNI_ARGS", args),
            ("CNI_PATH", bin_dir.display().to_string()),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
        ];
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut child = node.spawn(&[program.display().to_string()], Env::Only(env), |mut c| {
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(io(format!("running CNI plugin {}", program.display())))
        })?;
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

/// What containerd answers while no network config is loaded (kubelet puts it in the node's Ready condition).
pub const NOT_READY: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady \
     message:Network plugin returns error: cni plugin not initialized";

/// The first network config in `net_d` (file names in byte order, as libcni sorts them), a single-plugin
/// `.conf` made a list of one; None when the directory holds none.
pub fn network(net_d: &Path) -> Result<Option<Value>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(net_d) {
        Ok(dir) => dir.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("reading {}", net_d.display()))(e)),
    };
    files.retain(|f| {
        let ext = f.extension().and_then(|e| e.to_str());
        matches!(ext, Some("conflist" | "conf" | "json")) && f.is_file()
    });
    files.sort();
    let Some(file) = files.first() else { return Ok(None) };
    let text = std::fs::read(file).map_err(io(format!("reading {}", file.display())))?;
    let conf: Value = serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
    Ok(Some(as_list(conf)))
}

/// A network config as a list: a `.conflist` as it is, a single plugin's config wrapped as libcni does.
fn as_list(conf: Value) -> Value {
    if conf.get("plugins").is_some() {
        return conf;
    }
    json!({
        "cniVersion": conf.get("cniVersion").cloned().unwrap_or(json!("1.1.0")),
        "name": conf.get("name").cloned().unwrap_or(Value::Null),
        "plugins": [conf],
    })
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
    fn the_first_config_in_net_d_is_the_network() {
        let dir = std::env::temp_dir().join(format!("weft-net-d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(network(&dir).unwrap(), None);
        assert_eq!(network(&dir.join("missing")).unwrap(), None);
        std::fs::write(dir.join("README"), "not a config").unwrap();
        std::fs::write(dir.join("20-b.conflist"), r#"{"name":"b","plugins":[{"type":"b"}]}"#).unwrap();
        assert_eq!(network(&dir).unwrap().unwrap()["name"], "b");
        std::fs::write(
            dir.join("10-a.conf"),
            r#"{"cniVersion":"1.0.0","name":"a","type":"bridge"}"#,
        )
        .unwrap();
        let list = network(&dir).unwrap().unwrap();
        assert_eq!(list["plugins"][0]["type"], "bridge");
        assert_eq!(list["cniVersion"], "1.0.0");
        std::fs::write(dir.join("00-bad.json"), "{").unwrap();
        assert!(network(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_result_ip_is_the_first_v4_address() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.244.1.5/24"}]});
        assert_eq!(result_ip(&r).as_deref(), Some("10.244.1.5"));
        assert_eq!(result_ip(&json!({})), None);
    }
}
