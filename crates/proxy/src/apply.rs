//! Applying rulesets: the whole table once (at start, or after a failure) through `nft` (its text streamed into
//! `nft` as it is written), then one transaction of differences per sync, so an unchanged Service's rules and map
//! entries are never touched. The differences
//! go to the kernel as one nfnetlink batch from this process when every rule in them has a shape
//! `weft_netlink::nft_rules` knows (`nft` would first read the whole table's chain list: 0.6 s at 10,000
//! Services), else as an nft script.

use crate::ruleset::{self, Change, Ruleset, Value};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};
use weft_netlink::nft_rules::{self, Field, Rule, Verdict, concat};
use weft_netlink::nftables::{self, Data, Elements, Op, SetSpec};

/// `inet`, as nfnetlink numbers families.
const NFPROTO_INET: u8 = 1;

/// Changes beyond this many go through `nft` instead: every message of a batch is acknowledged, and the kernel
/// queues all acknowledgements before the sender reads one (a few hundred bytes of socket memory each), while
/// reading the table's chain list first is cheap next to the parsing of so large a change.
const MAX_NETLINK_STEPS: usize = 5000;

#[derive(Default)]
pub struct Proxier {
    /// What the kernel holds, as far as we know; none until the first full sync succeeds.
    applied: Option<Ruleset>,
    /// The nfnetlink socket of the last batch and the network namespace it belongs to (by inode), kept open:
    /// closing one after a transaction that deleted something waits for an RCU grace period.
    socket: Option<(u64, OwnedFd)>,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct Report {
    pub full: bool,
    /// Size of the change as nft script (0: nothing changed); sent to `nft`, or encoded as one netlink batch
    /// instead when `netlink` is set.
    pub script: usize,
    /// The change went to the kernel as an nfnetlink batch from this process (no `nft`).
    pub netlink: bool,
    pub elapsed: Duration,
    /// Why the incremental transaction failed, when a full one had to follow.
    pub fallback: Option<String>,
    /// UDP endpoints whose conntrack entries were cleared.
    pub conntrack_cleared: usize,
}

impl Proxier {
    pub fn new() -> Proxier {
        Proxier::default()
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
        self.applied.as_ref().map(Ruleset::full)
    }

    /// Whether nothing is known to be applied (before the first sync, or after `reset`).
    pub fn is_fresh(&self) -> bool {
        self.applied.is_none()
    }

    /// As [`Proxier::sync`]; when nothing is applied yet (an agent's first sync), `other`, the whole script of
    /// another table, goes to the kernel in the same `nft` transaction, so an agent starts with one `nft` instead
    /// of one per table. Returns whether `other` was applied: when the joint transaction fails, this table is
    /// applied on its own (the report's `fallback` says why) and `other` is left to its owner.
    pub fn sync_with(&mut self, desired: Ruleset, other: &str) -> weft_netlink::Result<(Report, bool)> {
        if self.applied.is_some() {
            return Ok((self.sync(desired)?, false));
        }
        let started = Instant::now();
        let mut report = Report {
            full: true,
            ..Default::default()
        };
        match apply_full(&desired, &mut report.script, other) {
            Ok(()) => {
                self.applied = Some(desired);
                report.elapsed = started.elapsed();
                Ok((report, true))
            }
            Err(e) => {
                let mut alone = self.sync(desired)?;
                alone.fallback = Some(e.to_string());
                Ok((alone, false))
            }
        }
    }

    /// Makes the calling thread's network namespace hold `desired`. An incremental transaction that fails
    /// (someone changed our table) is followed at once by a full one.
    pub fn sync(&mut self, desired: Ruleset) -> weft_netlink::Result<Report> {
        let started = Instant::now();
        let mut report = Report::default();
        let result = match &self.applied {
            Some(old) => {
                let changes = old.changes(&desired);
                if changes.is_empty() {
                    Ok(())
                } else {
                    let script = ruleset::script(&changes);
                    report.script = script.len();
                    match Batch::of(&changes) {
                        Some(batch) => {
                            report.netlink = true;
                            send(&mut self.socket, &batch)
                        }
                        None => weft_netlink::nft::apply(&script),
                    }
                }
            }
            None => {
                report.full = true;
                apply_full(&desired, &mut report.script, "")
            }
        };
        if let Err(e) = result {
            if report.full {
                self.applied = None;
                return Err(e);
            }
            report.fallback = Some(e.to_string());
            report.full = true;
            report.netlink = false;
            apply_full(&desired, &mut report.script, "").inspect_err(|_| self.applied = None)?;
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
        if let Some(old) = self.applied.replace(desired) {
            // Freeing a 10,000-Service ruleset (a few hundred thousand strings) takes ~30 ms: not on the
            // sync's time.
            let _ = std::thread::Builder::new()
                .name("proxy-free".into())
                .spawn(move || drop(old));
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Replaces the whole table with `desired`, its text streamed into `nft` as it is written, and `also` (another
/// table's script, or nothing) in the same transaction; `size` is set to the size of `desired`'s text.
fn apply_full(desired: &Ruleset, size: &mut usize, also: &str) -> weft_netlink::Result<()> {
    weft_netlink::nft::apply_streamed(|out| {
        *size = desired.write_full(out)?;
        out.write_all(also.as_bytes())
    })
}

/// Sends `batch` on the kept socket when it belongs to the calling thread's namespace, else on a new one.
fn send(kept: &mut Option<(u64, OwnedFd)>, batch: &Batch) -> weft_netlink::Result<()> {
    let netns = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    let socket = kept.take().filter(|(ns, _)| *ns == netns).map(|(_, fd)| fd);
    let table = ruleset::TABLE.trim_start_matches("inet ");
    let fd = nftables::send(socket, table, NFPROTO_INET, &batch.ops())?;
    *kept = Some((netns, fd));
    Ok(())
}

/// A transaction as nfnetlink messages: the owned data the [`Op`]s borrow.
enum Step<'a> {
    AddSet(SetSpec),
    DeleteSet(&'a str),
    AddChain(&'a str),
    FlushChain(&'a str),
    DeleteChain(&'a str),
    AddRule(&'a str, Vec<u8>),
    AddElements(Elements),
    DeleteElements(Elements),
}

struct Batch<'a>(Vec<Step<'a>>);

impl<'a> Batch<'a> {
    /// The batch doing `changes`, or `None` when one of them has no netlink encoding here (a rule of another
    /// shape, such as `ip saddr != { A, B } drop`; a set declaration or map key of another type) or when there
    /// are too many of them.
    fn of(changes: &[Change<'a>]) -> Option<Batch<'a>> {
        if changes.len() > MAX_NETLINK_STEPS {
            return None;
        }
        let mut steps = Vec::with_capacity(changes.len());
        for change in changes {
            steps.push(match change {
                Change::AddSet { name, decl } => Step::AddSet(nft_rules::parse_set(name, decl)?),
                Change::DeleteSet(name) => Step::DeleteSet(name),
                Change::AddChain(name) => Step::AddChain(name),
                Change::FlushChain(name) => Step::FlushChain(name),
                Change::DeleteChain(name) => Step::DeleteChain(name),
                Change::AddRule { chain, rule } => Step::AddRule(chain, Rule::parse(rule)?.expressions()),
                Change::AddElements { map, elements } => Step::AddElements(Elements {
                    set: map.to_string(),
                    elements: elements
                        .iter()
                        .map(|(key, verdict)| {
                            let data = match verdict {
                                Some(Value::Verdict(v)) => Some(Verdict::parse(v)?.data()),
                                Some(Value::Target(addr, port)) => {
                                    Some(Data::Value(concat(&[Field::Addr(*addr), Field::Port(*port)])))
                                }
                                None => None,
                            };
                            Some((key.bytes(), data))
                        })
                        .collect::<Option<_>>()?,
                }),
                Change::DeleteElements { map, keys } => Step::DeleteElements(Elements {
                    set: map.to_string(),
                    elements: keys.iter().map(|key| (key.bytes(), None)).collect(),
                }),
            });
        }
        Some(Batch(steps))
    }

    fn ops(&self) -> Vec<Op<'_>> {
        self.0
            .iter()
            .map(|step| match step {
                Step::AddSet(spec) => Op::AddSet(spec),
                Step::DeleteSet(name) => Op::DeleteSet(name),
                Step::AddChain(name) => Op::AddChain(name),
                Step::FlushChain(name) => Op::FlushChain(name),
                Step::DeleteChain(name) => Op::DeleteChain(name),
                Step::AddRule(chain, expressions) => Op::AddRule { chain, expressions },
                Step::AddElements(elements) => Op::AddElements(elements),
                Step::DeleteElements(elements) => Op::DeleteElements(elements),
            })
            .collect()
    }
}
