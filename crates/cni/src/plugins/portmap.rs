//! The `portmap` type: a chained plugin that maps host ports (the `portMappings` capability) to the pod.

use super::Plugin;
use crate::firewall::portmap::{Mapping, flush_udp_conntrack};
use crate::firewall::{Change, Journal, undo};
use crate::spec::{CniError, CniResult, Code, Invocation, NetConf, Result};
use crate::state::DEFAULT_STATE_DIR;
use serde::Deserialize;
use std::path::PathBuf;
use weft_netlink::sysctl;

pub(crate) const KIND: &str = "portmap";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortmapConf {
    /// Masquerade hairpin and localhost traffic (the reference default).
    #[serde(default = "yes")]
    snat: bool,
    /// Accepted for compatibility with the reference plugin; weft always uses nftables.
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl PortmapConf {
    fn parse(conf: &NetConf) -> Result<PortmapConf> {
        let c: PortmapConf = conf.plugin("portmap")?;
        if let Some(b) = &c.backend
            && b != "nftables"
            && b != "iptables"
        {
            return Err(CniError::config(format!(
                "portmap config: backend {b:?} is not nftables or iptables"
            )));
        }
        Ok(c)
    }

    fn journal(&self, conf: &NetConf, inv: &Invocation) -> Result<Journal> {
        let dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        Journal::new(&dir, &conf.name, KIND, &inv.container_id, &inv.ifname)
    }
}

/// Validated mappings from the runtime's capability.
pub fn mappings(conf: &NetConf) -> Result<Vec<Mapping>> {
    conf.runtime_config()?
        .port_mappings
        .iter()
        .map(Mapping::parse)
        .collect()
}

/// Lets the node reach mappings through 127.0.0.1: packets from a loopback source may then be routed
/// out of `host_if` (they are masqueraded on the way).
pub fn allow_localhost(host_if: &str) -> Result<()> {
    Ok(sysctl::set(&format!("net/ipv4/conf/{host_if}/route_localnet"), "1")?)
}

pub struct Portmap;

impl Plugin for Portmap {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult> {
        let c = PortmapConf::parse(conf)?;
        let maps = mappings(conf)?;
        let prev = conf.prev_result()?;
        if maps.is_empty() {
            return Ok(prev.unwrap_or_default());
        }
        let prev =
            prev.ok_or_else(|| CniError::config("portmap needs prevResult (it must follow an interface plugin)"))?;
        let pod_ips: Vec<_> = prev.ips.iter().map(|ip| ip.address.addr()).collect();
        if pod_ips.is_empty() {
            return Err(CniError::config(
                "portmap: prevResult has no IP address to map ports to",
            ));
        }
        if let Some(host_if) = prev.interfaces.iter().find(|i| i.sandbox.is_empty()) {
            allow_localhost(&host_if.name)?;
        }
        let mut change = Change::default();
        change.port_mappings(&maps, &pod_ips, c.snat);
        let elements = change.elements.clone();
        change.commit(&c.journal(conf, inv)?)?;
        flush_udp_conntrack(&elements)?;
        Ok(prev)
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let c = PortmapConf::parse(conf)?;
        let removed = undo(&c.journal(conf, inv)?)?;
        flush_udp_conntrack(&removed)
    }

    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let c = PortmapConf::parse(conf)?;
        if mappings(conf)?.is_empty() {
            return Ok(());
        }
        let journal = c.journal(conf, inv)?;
        let want = journal.read()?;
        if want.is_empty() {
            return Err(CniError::new(
                Code::Internal,
                format!("no port mappings are recorded for {}/{}", inv.container_id, inv.ifname),
            ));
        }
        let table = weft_netlink::nft::run(&["list", "table", crate::firewall::TABLE], "")?;
        for line in want {
            let element = line.split_once('\t').map_or(line.as_str(), |(_, text)| text);
            if !crate::firewall::listed(&table, element) {
                return Err(CniError::new(
                    Code::Internal,
                    format!("port mapping {element} is missing"),
                ));
            }
        }
        Ok(())
    }

    fn gc(&self, conf: &NetConf) -> Result<()> {
        let c = PortmapConf::parse(conf)?;
        let dir = c.state_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        for journal in Journal::stale(&dir, &conf.name, KIND, &conf.valid_attachments()?)? {
            flush_udp_conntrack(&undo(&journal)?)?;
        }
        Ok(())
    }
}
