//! Applying rulesets: the whole table once (at start, or after a failure), then one transaction of
//! differences per sync, so an unchanged Service's rules and map entries are never touched.

use crate::ruleset::Ruleset;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Proxier {
    /// What the kernel holds, as far as we know; none until the first full sync succeeds.
    applied: Option<Ruleset>,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct Report {
    pub full: bool,
    /// Bytes of nft script sent (0: nothing changed).
    pub script: usize,
    pub elapsed: Duration,
    /// UDP endpoints whose conntrack entries were cleared.
    pub conntrack_cleared: usize,
}

impl Proxier {
    pub fn new() -> Proxier {
        Proxier::default()
    }

    /// Makes the calling thread's network namespace hold `desired`. An incremental transaction that fails
    /// (someone changed our table) is followed at once by a full one.
    pub fn sync(&mut self, desired: Ruleset) -> weft_netlink::Result<Report> {
        let started = Instant::now();
        let mut report = Report::default();
        let script = match &self.applied {
            Some(old) => old.diff(&desired),
            None => {
                report.full = true;
                Some(desired.full())
            }
        };
        if let Some(script) = script {
            report.script = script.len();
            if let Err(e) = weft_netlink::nft::apply(&script) {
                if report.full {
                    self.applied = None;
                    return Err(e);
                }
                let full = desired.full();
                report.full = true;
                report.script = full.len();
                weft_netlink::nft::apply(&full).inspect_err(|_| self.applied = None)?;
            }
        }
        // Entries of UDP flows to endpoints that are gone would keep steering the client to them.
        let gone: Vec<(std::net::Ipv4Addr, u16)> = match &self.applied {
            Some(old) => old.udp_endpoints.difference(&desired.udp_endpoints).copied().collect(),
            None => Vec::new(),
        };
        for (ip, port) in &gone {
            let (ip, port) = (ip.to_string(), port.to_string());
            weft_netlink::conntrack::delete(&["-p", "udp", "--reply-src", &ip, "--reply-port-src", &port])?;
        }
        report.conntrack_cleared = gone.len();
        self.applied = Some(desired);
        report.elapsed = started.elapsed();
        Ok(report)
    }
}
