//! The invocation: the CNI_* environment variables a runtime sets, validated as the spec says.

use super::error::{CniError, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Result<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::env(format!(
                    "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
                )));
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Path of the container's network namespace; may be empty for DEL.
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
    /// Directories searched for delegated plugins (CNI_PATH).
    pub path: Vec<PathBuf>,
}

impl Invocation {
    /// Reads and validates the environment through `get` (std::env::var in the binary).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Invocation> {
        let command = Command::parse(&get("CNI_COMMAND").unwrap_or_default())?;
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |key: &str| -> Result<String> {
            match get(key) {
                Some(v) if !v.is_empty() => Ok(v),
                _ if needs_container => Err(CniError::env(format!("{key} must be set for this command"))),
                _ => Ok(String::new()),
            }
        };
        let container_id = required("CNI_CONTAINERID")?;
        let ifname = required("CNI_IFNAME")?;
        let netns = match command {
            Command::Add | Command::Check => required("CNI_NETNS")?,
            _ => get("CNI_NETNS").unwrap_or_default(),
        };
        if needs_container {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Invocation {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// The spec: non-empty, alphanumerics plus `_ . -`, starting with an alphanumeric.
fn validate_container_id(id: &str) -> Result<()> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CniError::env(format!(
            "CNI_CONTAINERID {id:?} is invalid: use letters, digits, '_', '.', '-', starting with a letter or digit"
        )))
    }
}

/// The kernel's rules for an interface name (IFNAMSIZ, no '/', ':' or whitespace).
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::env(format!(
            "interface name {name:?} is invalid: 1-15 characters, no '/', ':' or spaces"
        )))
    }
}

/// CNI_ARGS: `KEY=VALUE` pairs separated by ';'. Unknown keys are refused unless IgnoreUnknown is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pairs: BTreeMap<String, String>,
}

/// Keys weft understands; kubelet's K8S_* keys and the reference plugins' IP and MAC.
const KNOWN_ARGS: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
    "IP",
    "MAC",
];

impl CniArgs {
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = BTreeMap::new();
        for item in s.split(';').filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| CniError::env(format!("CNI_ARGS item {item:?} is not KEY=VALUE")))?;
            if k.is_empty() {
                return Err(CniError::env(format!("CNI_ARGS item {item:?} has an empty key")));
            }
            pairs.insert(k.to_string(), v.to_string());
        }
        let ignore_unknown = pairs
            .get("IgnoreUnknown")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
        if !ignore_unknown && let Some(k) = pairs.keys().find(|k| !KNOWN_ARGS.contains(&k.as_str())) {
            return Err(CniError::env(format!(
                "CNI_ARGS key {k:?} is unknown (set IgnoreUnknown=1 to allow it)"
            )));
        }
        Ok(CniArgs { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::error::Code;

    fn env(vars: &[(&str, &str)]) -> Result<Invocation> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Invocation::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let err = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", "/x")]).unwrap_err();
        assert_eq!(err.code, Code::InvalidEnvironment);
        assert!(err.msg.contains("CNI_CONTAINERID"), "{err}");
        let err = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert!(err.msg.contains("CNI_NETNS"), "{err}");
    }

    #[test]
    fn del_does_not_need_a_netns() {
        let inv = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(inv.command, Command::Del);
        assert!(inv.netns.is_empty());
    }

    #[test]
    fn version_needs_nothing_else() {
        assert_eq!(env(&[("CNI_COMMAND", "VERSION")]).unwrap().command, Command::Version);
    }

    #[test]
    fn bad_command_container_id_and_ifname_are_named() {
        assert!(env(&[("CNI_COMMAND", "ATTACH")]).unwrap_err().msg.contains("ATTACH"));
        let base = [("CNI_COMMAND", "DEL"), ("CNI_IFNAME", "eth0")];
        let err = env(&[base[0], base[1], ("CNI_CONTAINERID", "-bad")]).unwrap_err();
        assert!(err.msg.contains("CNI_CONTAINERID"), "{err}");
        for ifname in ["", "a/b", "veryveryverylong0", "..", "a b"] {
            let err = env(&[base[0], ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", ifname)]).unwrap_err();
            assert_eq!(err.code, Code::InvalidEnvironment, "{ifname:?}");
        }
    }

    #[test]
    fn cni_args_parse_and_refuse_unknown_keys_unless_told() {
        let a = CniArgs::parse("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0").unwrap();
        assert_eq!(a.get("K8S_POD_NAME"), Some("web-0"));
        assert!(CniArgs::parse("FOO=1").unwrap_err().msg.contains("FOO"));
        assert_eq!(CniArgs::parse("IgnoreUnknown=1;FOO=1").unwrap().get("FOO"), Some("1"));
        assert_eq!(
            CniArgs::parse("IgnoreUnknown=true;FOO=1").unwrap().get("FOO"),
            Some("1")
        );
        assert!(CniArgs::parse("novalue").is_err());
        assert!(CniArgs::parse("=v").is_err());
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }
}
