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
