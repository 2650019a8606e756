//! The plugin types weft-cni serves, chosen by the name it was called under or the config's `type`.

use crate::spec::{CniResult, Invocation, NetConf, Result};

/// One CNI plugin type. ADD returns the result to print; chained plugins return prevResult, amended.
pub trait Plugin {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult>;
    /// Must succeed when the netns or prevResult is gone and when called twice.
    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()>;
    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<()>;
    /// Frees everything of this network that belongs to no attachment in `conf.valid_attachments()`.
    fn gc(&self, _conf: &NetConf) -> Result<()> {
        Ok(())
    }
    /// Err(code 50/51) when the plugin cannot serve ADDs.
    fn status(&self, _conf: &NetConf) -> Result<()> {
        Ok(())
    }
}

pub mod bandwidth;
pub mod bridge;
pub mod loopback;
pub mod portmap;
pub mod weft;

/// Every type this binary serves; install one symlink per name in /opt/cni/bin.
pub const NAMES: &[&str] = &["bridge", "host-local", "loopback", "portmap", "bandwidth", "weft"];

pub fn by_name(name: &str) -> Option<Box<dyn Plugin>> {
    Some(match name {
        "bridge" => Box::new(bridge::Bridge),
        "host-local" => Box::new(crate::ipam::HostLocal),
        "loopback" => Box::new(loopback::Loopback),
        "portmap" => Box::new(portmap::Portmap),
        "bandwidth" => Box::new(bandwidth::BandwidthPlugin),
        "weft" => Box::new(weft::Weft),
        _ => return None,
    })
}
