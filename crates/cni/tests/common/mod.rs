//! Test harness: throwaway network namespaces (always deleted, even when a test fails) and the real
//! weft-cni binary, run inside a "node" namespace exactly as a runtime runs it.
#![allow(dead_code)] // each test binary uses a different part of the harness

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_weft-cni");

pub use weft_testkit::{Ns, eventually, root, unique};

/// One TCP connection with socat; what the server said, or None when it failed.
pub fn tcp(from: &Ns, addr: &str, port: u16) -> Option<String> {
    let out = from.run(&["socat", "-T2", "-", &format!("TCP4:{addr}:{port},connect-timeout=2")]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node: its namespace with an uplink address, and a state directory for weft-cni.
pub struct Node {
    pub ns: Ns,
    pub dir: TempDir,
    pub addr: &'static str,
}

impl Node {
    /// The node's "eth0" (one end of a veth pair; not every kernel has dummy devices) holds
    /// 192.168.77.2/24, so the node has an address of its own as on a real machine.
    pub fn new() -> Node {
        let ns = Ns::new("node");
        ns.ok(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink"]);
        ns.ok(&["ip", "link", "set", "uplink", "up"]);
        ns.ok(&["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
        ns.ok(&["ip", "link", "set", "eth0", "up"]);
        Node {
            ns,
            dir: TempDir::new("state"),
            addr: "192.168.77.2",
        }
    }

    /// An "external host": the other end of the node's eth0 moved into its own namespace as 192.168.77.3.
    pub fn external(&self) -> Ns {
        let ext = Ns::new("ext");
        self.ns.ok(&["ip", "link", "set", "uplink", "netns", &ext.name]);
        ext.ok(&["ip", "addr", "add", "192.168.77.3/24", "dev", "uplink"]);
        ext.ok(&["ip", "link", "set", "uplink", "up"]);
        ext
    }

    pub fn data_dir(&self) -> String {
        self.dir.path().join("ipam").display().to_string()
    }

    pub fn state_dir(&self) -> String {
        self.dir.path().join("weft").display().to_string()
    }

    /// A bridge + host-local config like flannel's cbr0, with this node's directories.
    pub fn bridge_conf(&self, version: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "cbr0",
            "type": "bridge",
            "bridge": "cni0",
            "isDefaultGateway": true,
            "hairpinMode": true,
            "ipMasq": true,
            "stateDir": self.state_dir(),
            "ipam": { "type": "host-local", "subnet": subnet, "dataDir": self.data_dir() }
        })
    }

    /// Calls the plugin inside the node's namespace, like a runtime would.
    pub fn cni(&self, command: &str, container: &str, netns: &str, conf: &Value) -> Reply {
        self.cni_as(BIN, command, container, netns, conf, &[])
    }

    pub fn cni_as(
        &self,
        bin: &str,
        command: &str,
        container: &str,
        netns: &str,
        conf: &Value,
        extra_env: &[(&str, &str)],
    ) -> Reply {
        let child = self.start(bin, command, container, netns, conf, extra_env);
        let out = child.wait_with_output().unwrap();
        Reply::from(out)
    }

    /// Starts the plugin with `conf` written to its stdin; the caller waits for it (or kills it).
    pub fn start(
        &self,
        bin: &str,
        command: &str,
        container: &str,
        netns: &str,
        conf: &Value,
        extra_env: &[(&str, &str)],
    ) -> std::process::Child {
        let mut child = self
            .cni_command(bin, command, container, netns, extra_env)
            .spawn()
            .expect("spawn weft-cni");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child
    }

    pub fn cni_command(
        &self,
        bin: &str,
        command: &str,
        container: &str,
        netns: &str,
        extra_env: &[(&str, &str)],
    ) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name, bin])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", Path::new(BIN).parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Names of the pods' veth links on the node (the uplink pair is not counted).
    pub fn veths(&self) -> Vec<String> {
        self.ns
            .ok(&["ip", "-o", "link", "show", "type", "veth"])
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .filter(|n| n != "eth0" && n != "uplink")
            .collect()
    }

    /// Every IP reservation file host-local keeps for the network.
    pub fn reservations(&self, network: &str) -> Vec<String> {
        let dir = self.dir.path().join("ipam").join(network);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut ips: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        ips.sort();
        ips
    }

    /// The node's nftables ruleset as text ("" when there is none).
    pub fn ruleset(&self) -> String {
        self.ns.ok(&["nft", "list", "ruleset"])
    }
}

pub struct Reply {
    pub code: i32,
    pub json: Value,
    pub stderr: String,
}

impl From<Output> for Reply {
    fn from(out: Output) -> Reply {
        let text = String::from_utf8_lossy(&out.stdout);
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
        };
        Reply {
            code: out.status.code().unwrap_or(-1),
            json,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Reply {
    pub fn ok(self) -> Value {
        assert_eq!(self.code, 0, "plugin failed: {} {}", self.json, self.stderr);
        self.json
    }

    /// The pod address in a 1.x result (first IPv4 `ips` entry, without prefix).
    pub fn ip(json: &Value) -> String {
        json["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }
}
