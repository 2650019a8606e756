//! Applying a node's policy table: the whole table through `nft` once (at start, or after a failure), then
//! one transaction per change holding only the chains, sets and elements that differ: through `nft` when
//! chains change, as one nfnetlink batch from this process when only elements do (most label and pod changes).

use crate::plan::PolicyRules;
use std::time::{Duration, Instant};
use weft_netlink::nftables::Elements;

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
    /// The change went to the kernel as one nfnetlink batch of elements from this process (no `nft`).
    pub netlink: bool,
    /// Why the incremental transaction failed, when a full one had to follow.
    pub fallback: Option<String>,
}

impl Report {
    /// How the transaction went: `full`, `incremental nfnetlink` or `incremental nft`.
    pub fn kind(&self) -> &'static str {
        match (self.full, self.netlink) {
            (true, _) => "full",
            (false, true) => "incremental nfnetlink",
            (false, false) => "incremental nft",
        }
    }
}

impl Enforcer {
    pub fn new() -> Enforcer {
        Enforcer::default()
    }

    /// Forgets what the kernel holds, so the next sync replaces the whole table: after someone else changed
    /// it, differences from the remembered state would leave their change in place.
    pub fn reset(&mut self) {
        self.applied = None;
    }

    /// The whole table as last applied, to put back after someone else removed or changed it: the kernel
    /// changed, not the cluster, so nothing is planned again. Applied by the caller (with other tables, in one
    /// transaction); should that fail, `reset` and `sync` replace the table on its own. None before the first
    /// sync succeeded.
    pub fn restore_script(&self) -> Option<String> {
        self.applied.as_ref().map(PolicyRules::full)
    }

    /// Whether nothing is known to be applied (before the first sync, or after `reset`).
    pub fn is_fresh(&self) -> bool {
        self.applied.is_none()
    }

    /// Records that the caller applied `desired` whole (its `PolicyRules::full`, in another table's transaction:
    /// an agent's first sync); the next sync is a change from it.
    pub fn applied_whole(&mut self, desired: PolicyRules) {
        self.applied = Some(desired);
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
                let sent = match self.applied.as_ref().and_then(|old| old.element_changes(&desired)) {
                    Some((add, delete)) => {
                        report.netlink = true;
                        send_elements(&add, &delete)
                    }
                    None => weft_netlink::nft::apply(&script),
                };
                if let Err(e) = sent {
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
        report.netlink = false;
        report.script = full.len();
        weft_netlink::nft::apply(&full)
    }
}

/// Adds and deletes set and map elements in one nfnetlink transaction. The socket is closed on another thread:
/// closing one after a transaction that deleted something waits for an RCU grace period.
fn send_elements(add: &[Elements], delete: &[Elements]) -> weft_netlink::Result<()> {
    let table = crate::plan::TABLE.trim_start_matches("inet ");
    let socket = weft_netlink::nftables::transact(table, NFPROTO_INET, add, delete)?;
    let _ = std::thread::Builder::new()
        .name("policy-close".into())
        .spawn(move || drop(socket));
    Ok(())
}

/// `inet`, as nfnetlink numbers families.
const NFPROTO_INET: u8 = 1;
