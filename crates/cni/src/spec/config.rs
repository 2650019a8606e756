//! The network configuration a runtime writes on stdin: the keys every plugin shares, and typed access to
//! the plugin's own keys, runtime capabilities and prevResult.

use super::error::{CniError, Code, Result};
use super::result::CniResult;
use super::version::{self, Version};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Keys the runtime or the spec puts in every plugin's config; plugins never see them as their own.
const COMMON_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "args",
    "dns",
    "ipMasq",
    "ipam",
    "prevResult",
    "runtimeConfig",
    "capabilities",
    "disableCheck",
    "disableGC",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
];

#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub version: Version,
    pub name: String,
    pub plugin_type: String,
    pub raw: Map<String, Value>,
}

impl NetConf {
    /// Parses stdin. Decoding failures are code 6, a bad or missing version code 1, bad shapes code 7.
    pub fn parse(input: &[u8]) -> Result<NetConf> {
        let value: Value = serde_json::from_slice(input).map_err(|e| {
            CniError::new(Code::Decode, "network configuration on stdin is not valid JSON").with_details(e)
        })?;
        let Value::Object(raw) = value else {
            return Err(CniError::new(
                Code::Decode,
                "network configuration must be a JSON object",
            ));
        };
        let text = |key: &str, required: bool| -> Result<String> {
            match raw.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                None if !required => Ok(String::new()),
                None => Err(CniError::config(format!("network configuration has no {key:?}"))),
                Some(other) => Err(CniError::config(format!("{key:?} must be a string, not {other}"))),
            }
        };
        let cni_version = match text("cniVersion", false)? {
            v if v.is_empty() => "0.1.0".to_string(), // the spec's default for configs without one
            v => v,
        };
        let version = Version::parse(&cni_version)?;
        let name = text("name", false)?;
        let plugin_type = text("type", false)?;
        Ok(NetConf {
            cni_version,
            version,
            name,
            plugin_type,
            raw,
        })
    }

    /// The plugin's own keys deserialized into `T` (which denies unknown fields): an unknown key is code 2, a
    /// bad value code 7, each naming the key.
    pub fn plugin<T: DeserializeOwned>(&self, plugin: &str) -> Result<T> {
        let mut own = self.raw.clone();
        own.retain(|k, _| !COMMON_KEYS.contains(&k.as_str()));
        typed(Value::Object(own), &format!("{plugin} config"))
    }

    /// A shared key (ipam, dns, ...), typed.
    pub fn common<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => typed(v.clone(), key).map(Some),
        }
    }

    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        match self.raw.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::from_json(v).map(Some),
        }
    }

    pub fn runtime_config(&self) -> Result<RuntimeConfig> {
        Ok(self.common("runtimeConfig")?.unwrap_or_default())
    }

    /// IPs requested through `args.cni.ips` (the `ips` capability arrives in runtimeConfig instead).
    pub fn requested_ips(&self) -> Result<Vec<IpAddr>> {
        let mut ips = self
            .runtime_config()?
            .ips
            .into_iter()
            .map(strip_prefix)
            .collect::<Result<Vec<_>>>()?;
        if let Some(v) = self
            .raw
            .get("args")
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips"))
        {
            let listed: Vec<String> =
                Vec::deserialize(v).map_err(|e| CniError::config(format!("args.cni.ips: {e}")))?;
            for ip in listed {
                ips.push(strip_prefix(ip)?);
            }
        }
        Ok(ips)
    }

    /// GC's list of attachments that are still in use.
    pub fn valid_attachments(&self) -> Result<Vec<Attachment>> {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            if let Some(list) = self.common::<Vec<Attachment>>(key)? {
                return Ok(list);
            }
        }
        Ok(Vec::new())
    }

    pub fn supported_versions_json() -> Value {
        serde_json::json!({ "cniVersion": version::LATEST, "supportedVersions": version::SUPPORTED })
    }
}

/// Deserializes `value`, naming the offending key: an unknown key is code 2, a bad value code 7.
pub fn typed<T: DeserializeOwned>(value: Value, context: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let code = if inner.starts_with("unknown field") {
            Code::UnsupportedField
        } else {
            Code::InvalidConfig
        };
        let at = if path == "." {
            String::new()
        } else {
            format!(" at {path}")
        };
        CniError::new(code, format!("{context}{at}: {inner}"))
    })
}

fn strip_prefix(ip: String) -> Result<IpAddr> {
    let bare = ip.split('/').next().unwrap_or_default();
    bare.parse()
        .map_err(|_| CniError::config(format!("requested IP {ip:?} is not an IP address")))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Capabilities the runtime fills in (`runtimeConfig`); unknown capabilities are ignored, as the spec says.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

/// Rates in bits per second, bursts in bits, as the reference bandwidth plugin takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bandwidth {
    #[serde(default)]
    pub ingress_rate: u64,
    #[serde(default)]
    pub ingress_burst: u64,
    #[serde(default)]
    pub egress_rate: u64,
    #[serde(default)]
    pub egress_burst: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Own {
        #[serde(default)]
        bridge: String,
        #[serde(default, rename = "hairpinMode")]
        hairpin_mode: bool,
    }

    #[test]
    fn decode_version_and_shape_errors_have_their_codes() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, Code::Decode);
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code, Code::Decode);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"9.9.9"}"#).unwrap_err().code,
            Code::IncompatibleVersion
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":1}"#).unwrap_err().code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn unknown_plugin_key_is_code_2_and_wrong_type_is_code_7() {
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","hairpinMod":true}"#).unwrap();
        let err = c.plugin::<Own>("bridge").unwrap_err();
        assert_eq!(err.code, Code::UnsupportedField);
        assert!(err.msg.contains("hairpinMod"), "{err}");
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","hairpinMode":"yes"}"#).unwrap();
        let err = c.plugin::<Own>("bridge").unwrap_err();
        assert_eq!(err.code, Code::InvalidConfig);
        let c =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"cni0","ipam":{}}"#).unwrap();
        assert_eq!(c.plugin::<Own>("bridge").unwrap().bridge, "cni0");
    }

    #[test]
    fn requested_ips_come_from_capability_and_args() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","runtimeConfig":{"ips":["10.0.0.9/24"]},"args":{"cni":{"ips":["10.0.0.10"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.requested_ips().unwrap(),
            vec!["10.0.0.9".parse::<IpAddr>().unwrap(), "10.0.0.10".parse().unwrap()]
        );
    }

    #[test]
    fn gc_reads_either_attachment_key() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let text = format!(r#"{{"cniVersion":"1.1.0","{key}":[{{"containerID":"c1","ifname":"eth0"}}]}}"#);
            let c = NetConf::parse(text.as_bytes()).unwrap();
            assert_eq!(c.valid_attachments().unwrap()[0].container_id, "c1");
        }
    }
}
