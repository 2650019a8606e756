//! The `loopback` type: brings up `lo` in the pod's namespace.

use super::Plugin;
use crate::spec::result::{Interface, IpConfig};
use crate::spec::{CniError, CniResult, Code, Invocation, NetConf, Result};
use weft_netlink::Netns;

pub struct Loopback;

fn lo_state(netns: &str) -> Result<Option<weft_netlink::Link>> {
    Ok(Netns::open(netns)?.handle()?.link_by_name("lo")?)
}

impl Plugin for Loopback {
    fn add(&self, inv: &Invocation, _conf: &NetConf) -> Result<CniResult> {
        let mut handle = Netns::open(&inv.netns)?.handle()?;
        let lo = handle
            .link_by_name("lo")?
            .ok_or_else(|| CniError::new(Code::Io, "no lo device in the pod's namespace"))?;
        handle.set_up(lo.index)?;
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                mtu: None,
                sandbox: inv.netns.clone(),
            }],
            ips: ["127.0.0.1/8", "::1/128"]
                .iter()
                .filter_map(|a| a.parse().ok())
                .map(|address| IpConfig {
                    address,
                    gateway: None,
                    interface: Some(0),
                })
                .collect(),
            ..Default::default()
        })
    }

    /// Nothing on the host belongs to lo; the namespace takes it along when it goes.
    fn del(&self, _inv: &Invocation, _conf: &NetConf) -> Result<()> {
        Ok(())
    }

    fn check(&self, inv: &Invocation, _conf: &NetConf) -> Result<()> {
        match lo_state(&inv.netns)? {
            Some(lo) if lo.up => Ok(()),
            _ => Err(CniError::new(Code::Internal, "lo is not up in the pod's namespace")),
        }
    }
}
