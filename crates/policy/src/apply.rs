//! Applying a node's policy table: the whole table through `nft` once (at start, or after a failure), then
//! one transaction per change holding only the chains and map elements that differ.

use crate::plan::PolicyRules;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Enforcer {
    /// What the kernel holds, as far as we know; none until the first full sync succeeds.
    applied: Option<PolicyRules>,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct Report {
    pub full: bool,
    /// Size of the transaction as nft script (0: nothing changed).
    pub script: usize,
    pub elapsed: Duration,
    /// Why the incremental transaction failed, when a full one had to follow.
    pub fallback: Option<String>,
}

impl Enforcer {
    pub fn new() -> Enforcer {
        Enforcer::default()
    }

    /// Makes the calling thread's network namespace hold `desired`. An incremental transaction that fails
    /// (someone changed our table) is followed at once by a full one.
    pub fn sync(&mut self, desired: PolicyRules) -> weft_netlink::Result<Report> {
        let started = Instant::now();
        let mut report = Report::default();
        let incremental = self.applied.as_ref().map(|old| old.diff(&desired));
        match incremental {
            Some(None) => return Ok(report),
            Some(Some(script)) => {
                report.script = script.len();
                if let Err(e) = weft_netlink::nft::apply(&script) {
                    report.fallback = Some(e.to_string());
                    self.full(&desired, &mut report)?;
                }
            }
            None => self.full(&desired, &mut report)?,
        }
        self.applied = Some(desired);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    fn full(&mut self, desired: &PolicyRules, report: &mut Report) -> weft_netlink::Result<()> {
        self.applied = None;
        let full = desired.full();
        report.full = true;
        report.script = full.len();
        weft_netlink::nft::apply(&full)
    }
}
