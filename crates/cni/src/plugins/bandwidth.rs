//! The `bandwidth` type: token-bucket shaping of a pod's traffic with tc. Traffic into the pod is shaped
//! on the host veth's egress; traffic from the pod is redirected from the host veth's ingress to an IFB
//! device and shaped on its egress, as the reference plugin does.

use super::Plugin;
use crate::attach::fnv1a;
use crate::journal::{Journal, remove_links};
use crate::spec::config::Bandwidth;
use crate::spec::{CniError, CniResult, Code, Invocation, NetConf, Result};
use crate::state::DEFAULT_STATE_DIR;
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use weft_netlink::Handle;

const KIND: &str = "ifb";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BandwidthConf {
    #[serde(default)]
    ingress_rate: u64,
    #[serde(default)]
    ingress_burst: u64,
    #[serde(default)]
    egress_rate: u64,
    #[serde(default)]
    egress_burst: u64,
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

impl BandwidthConf {
    fn parse(conf: &NetConf) -> Result<(BandwidthConf, Bandwidth)> {
        let c: BandwidthConf = conf.plugin("bandwidth")?;
        // The runtime's capability wins over the static config.
        let limits = conf.runtime_config()?.bandwidth.unwrap_or(Bandwidth {
            ingress_rate: c.ingress_rate,
            ingress_burst: c.ingress_burst,
            egress_rate: c.egress_rate,
            egress_burst: c.egress_burst,
        });
        validate(&limits)?;
        Ok((c, limits))
    }

    fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    fn journal(&self, network: &str, container_id: &str, ifname: &str) -> Result<Journal> {
        Journal::new(&self.state_dir(), network, KIND, container_id, ifname)
    }
}

/// The IFB device's name, derived from the attachment so DEL finds it.
pub fn ifb_name(container_id: &str, ifname: &str) -> String {
    format!(
        "weftb{:010x}",
        fnv1a(&[container_id.as_bytes(), b"/", ifname.as_bytes()]) >> 24
    )
}

/// tbf with the reference plugin's latency bound (25 ms) deciding the queue limit.
fn tbf(dev: &str, rate_bits: u64, burst_bits: u64) -> String {
    let burst = burst_bits / 8;
    let limit = rate_bits / 8 * 25 / 1000 + burst;
    format!("qdisc replace dev {dev} root tbf rate {rate_bits}bit burst {burst} limit {limit}\n")
}

fn tc_batch(script: &str) -> Result<()> {
    let run = || -> std::io::Result<std::process::Output> {
        let mut child = Command::new("tc")
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .map(|mut s| s.write_all(script.as_bytes()))
            .transpose()?;
        child.wait_with_output()
    };
    let out = run().map_err(|e| CniError::io("cannot run tc (is iproute2 installed?)", e))?;
    if !out.status.success() {
        return Err(CniError::new(Code::Internal, "tc refused the shaping rules")
            .with_details(String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Shapes the pod behind host veth `veth`: ingress on its egress, egress through IFB `ifb` (journaled first
/// in `journal`). One `tc -batch` exec; on failure the IFB is removed again.
pub fn shape(
    host: &mut Handle,
    veth: &weft_netlink::Link,
    limits: &Bandwidth,
    journal: &Journal,
    ifb: &str,
) -> Result<()> {
    let mut script = String::new();
    if limits.ingress_rate > 0 {
        script.push_str(&tbf(&veth.name, limits.ingress_rate, limits.ingress_burst));
    }
    if limits.egress_rate > 0 {
        journal.write(&[ifb.to_string()])?;
        host.delete_link_named(ifb)?;
        host.add_ifb(ifb, veth.mtu)?;
        let link = host
            .link_by_name(ifb)?
            .ok_or_else(|| CniError::new(Code::Io, format!("{ifb} vanished")))?;
        host.set_up(link.index)?;
        script.push_str(&format!("qdisc add dev {} handle ffff: ingress\n", veth.name));
        script.push_str(&format!(
            "filter add dev {} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev {ifb}\n",
            veth.name
        ));
        script.push_str(&tbf(ifb, limits.egress_rate, limits.egress_burst));
    }
    if script.is_empty() {
        return Ok(());
    }
    tc_batch(&script).inspect_err(|_| {
        let _ = remove_links(journal);
    })
}

/// Checks a bandwidth config the way the reference plugin does; shared with the weft type.
pub fn validate(limits: &Bandwidth) -> Result<()> {
    for (dir, rate, burst) in [
        ("ingress", limits.ingress_rate, limits.ingress_burst),
        ("egress", limits.egress_rate, limits.egress_burst),
    ] {
        if rate > 0 && burst == 0 {
            return Err(CniError::config(format!("bandwidth: {dir}Rate needs {dir}Burst")));
        }
        if burst > 0 && rate == 0 {
            return Err(CniError::config(format!("bandwidth: {dir}Burst needs {dir}Rate")));
        }
        if burst / 8 >= u64::from(u32::MAX) {
            return Err(CniError::config(format!(
                "bandwidth: {dir}Burst {burst} is too large (at most 4 GiB in bits)"
            )));
        }
    }
    Ok(())
}

pub struct BandwidthPlugin;

impl Plugin for BandwidthPlugin {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult> {
        let (c, limits) = BandwidthConf::parse(conf)?;
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::config("bandwidth needs prevResult (it must follow an interface plugin)"))?;
        if limits.ingress_rate == 0 && limits.egress_rate == 0 {
            return Ok(prev);
        }
        let mut host = Handle::new()?;
        let mut veth = None;
        for i in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
            if let Some(link) = host.link_by_name(&i.name)?
                && link.kind.as_deref() == Some("veth")
            {
                veth = Some(link);
            }
        }
        let veth = veth.ok_or_else(|| CniError::config("bandwidth: prevResult names no host-side veth"))?;
        shape(
            &mut host,
            &veth,
            &limits,
            &c.journal(&conf.name, &inv.container_id, &inv.ifname)?,
            &ifb_name(&inv.container_id, &inv.ifname),
        )?;
        Ok(prev)
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let (c, _) = BandwidthConf::parse(conf)?;
        remove_links(&c.journal(&conf.name, &inv.container_id, &inv.ifname)?)
    }

    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let (_, limits) = BandwidthConf::parse(conf)?;
        if limits.egress_rate > 0 {
            let ifb = ifb_name(&inv.container_id, &inv.ifname);
            if Handle::new()?.link_by_name(&ifb)?.is_none() {
                return Err(CniError::new(Code::Internal, format!("IFB device {ifb} is missing")));
            }
        }
        Ok(())
    }

    fn gc(&self, conf: &NetConf) -> Result<()> {
        let (c, _) = BandwidthConf::parse(conf)?;
        for journal in Journal::stale(&c.state_dir(), &conf.name, KIND, &conf.valid_attachments()?)? {
            remove_links(&journal)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifb_names_fit_and_differ() {
        let a = ifb_name("c1", "eth0");
        assert_eq!(a.len(), 15);
        assert_eq!(a, ifb_name("c1", "eth0"));
        assert_ne!(a, ifb_name("c2", "eth0"));
    }

    #[test]
    fn tbf_takes_bytes_for_burst() {
        assert_eq!(
            tbf("veth0", 8_000_000, 80_000),
            "qdisc replace dev veth0 root tbf rate 8000000bit burst 10000 limit 35000\n"
        );
    }
}
