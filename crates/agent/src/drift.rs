//! Drift repair: the kernel objects the agent owns are put back when something else (an admin's
//! `nft flush ruleset`, firewalld, an `iptables-restore`, `ip route del`) changes or removes them.
//!
//! A thread watches the kernel's notifications (`weft_netlink::monitor`) and turns those about weft's objects,
//! made by another process, into a [`Dirty`] for the agent's loop, which repairs from its last snapshot:
//! - the service proxy's table `inet weft` and NetworkPolicy's `inet weft-policy`: any change to them by another
//!   process means the remembered state is wrong, so the table is replaced whole (one atomic transaction:
//!   established flows keep their conntrack entries and the policy table accepts them first);
//! - weft-cni's `inet weft-cni`: changes to its chains, rules or sets, or element changes made with `nft`
//!   (weft-cni changes elements itself, over nfnetlink), rebuild it from weft-cni's journals;
//! - routes of protocol 247, the VXLAN device `weft.1`, permanent neighbours and FDB entries: the overlay sync,
//!   which changes only what differs; the overlay's table `inet weft-overlay` is written again whole;
//! - IPv4 netconf changes (forwarding): the sysctls are set again.
//!
//! Notifications can be lost (the kernel drops them when the socket's buffer is full, as during a full sync of
//! a large table) and some settings have none (`route_localnet`), so a periodic check backs them up: see
//! [`BACKSTOP`].

use crate::node::{Agent, Config};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_model::Snapshot;
use weft_netlink::monitor::{Event, Monitor};

/// The periodic full check. Notifications wake repairs within milliseconds; this only catches what they
/// cannot report (a sysctl without notifications, notifications the kernel dropped, a monitor that died), so
/// it can be rare: a minute, between kube-proxy's canary check (up to a minute) and Calico's 90 s refresh,
/// costs one dump of the nftables tables, one overlay diff and two sysctl reads a minute.
pub const BACKSTOP: Duration = Duration::from_secs(60);

/// After a notification, further ones are gathered until none came for this long (a burst such as a
/// firewall reload is one repair)...
const QUIET: Duration = Duration::from_millis(5);
/// ...or for at most this long, so a steady stream of changes does not hold a repair back.
const MAX_GATHER: Duration = Duration::from_millis(30);

/// The sysctls the agent needs: forwarding between pods and nodes, and NodePorts on 127.0.0.1 (as
/// `curl localhost:NODEPORT` on a node expects: loopback-sourced packets may then be routed out once DNATed;
/// the proxy's table drops anything else aimed at 127.0.0.0/8 from outside).
pub const SYSCTLS: [(&str, &str); 2] = [("net/ipv4/ip_forward", "1"), ("net/ipv4/conf/all/route_localnet", "1")];

/// Which parts of the node's dataplane to repair (`check`: to check, and repair what is wrong).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dirty {
    pub proxy: bool,
    pub policy: bool,
    pub cni: bool,
    pub overlay: bool,
    /// The overlay's nftables table (`inet weft-overlay`) was changed by someone else: rewrite it whole.
    pub notrack: bool,
    pub sysctls: bool,
    pub check: bool,
}

impl Dirty {
    pub fn any(&self) -> bool {
        self.proxy || self.policy || self.cni || self.overlay || self.notrack || self.sysctls || self.check
    }

    pub fn merge(&mut self, other: Dirty) {
        self.proxy |= other.proxy;
        self.policy |= other.policy;
        self.cni |= other.cni;
        self.overlay |= other.overlay;
        self.notrack |= other.notrack;
        self.sysctls |= other.sysctls;
        self.check |= other.check;
    }

    /// Everything to check (the backstop, or notifications lost).
    pub fn check() -> Dirty {
        Dirty {
            check: true,
            ..Dirty::default()
        }
    }
}

/// `inet`, as nfnetlink numbers families.
const NFPROTO_INET: u8 = 1;

/// Turns notifications into what to repair. nftables notifications of one transaction come before the one
/// naming the process that committed it, so they are held until then.
pub struct Classifier {
    /// Tables touched by the transaction under way: (name, only elements).
    pending: BTreeSet<(String, bool)>,
    /// Whether a process (thread) id is this agent's or one of its `nft` children.
    ours: fn(u32) -> bool,
    /// The VXLAN device's index, as last seen: a deleted neighbour is announced in state FAILED, no longer
    /// permanent, so neighbours are told weft's by their device.
    pub vxlan: Option<u32>,
}

impl Default for Classifier {
    fn default() -> Classifier {
        Classifier::new(own_process)
    }
}

/// This process, one of its threads, or an `nft` it ran.
fn own_process(pid: u32) -> bool {
    pid == std::process::id()
        || weft_netlink::nft::spawned_here(pid)
        || std::path::Path::new(&format!("/proc/self/task/{pid}")).exists()
}

impl Classifier {
    pub fn new(ours: fn(u32) -> bool) -> Classifier {
        Classifier {
            pending: BTreeSet::new(),
            ours,
            vxlan: None,
        }
    }

    pub fn feed(&mut self, events: &[Event]) -> Dirty {
        let mut dirty = Dirty::default();
        for event in events {
            match event {
                Event::Nft {
                    family,
                    table,
                    elements,
                } if *family == NFPROTO_INET => {
                    self.pending.insert((table.clone(), *elements));
                }
                Event::Nft { .. } => {}
                Event::Generation { pid, process } => {
                    let pending = std::mem::take(&mut self.pending);
                    if (self.ours)(*pid) {
                        continue;
                    }
                    for (table, elements) in pending {
                        match table.as_str() {
                            "weft" => dirty.proxy = true,
                            "weft-policy" => dirty.policy = true,
                            crate::overlay::notrack::TABLE => dirty.notrack = true,
                            // weft-cni changes its elements itself; `nft` is an admin's (or weft-cni's full
                            // transaction, which the restore repeats harmlessly).
                            "weft-cni" if !elements || process == "nft" => dirty.cni = true,
                            _ => {}
                        }
                    }
                }
                Event::Route { protocol } => dirty.overlay |= *protocol == crate::overlay::ROUTE_PROTOCOL,
                Event::Link { index, name } if name.as_deref() == Some(crate::overlay::VXLAN_DEVICE) => {
                    self.vxlan = Some(*index);
                    dirty.overlay = true;
                }
                Event::Link { .. } => {}
                Event::Neighbour { index, permanent, .. } => {
                    dirty.overlay |= *permanent || self.vxlan == Some(*index);
                }
                Event::Netconf => dirty.sysctls = true,
                Event::Lost => {
                    self.pending.clear();
                    dirty.check = true;
                }
            }
        }
        dirty
    }
}

/// Watches the calling thread's network namespace and calls `send` with what to repair, until `send` returns
/// false (the agent's loop is gone) or the notification sockets fail.
pub fn watch(mut send: impl FnMut(Dirty) -> bool) -> weft_netlink::Result<()> {
    let mut monitor = Monitor::open()?;
    let mut classifier = Classifier {
        vxlan: weft_netlink::Handle::new()?
            .link_by_name(crate::overlay::VXLAN_DEVICE)?
            .map(|l| l.index),
        ..Classifier::default()
    };
    let mut events = Vec::new();
    loop {
        events.clear();
        monitor.wait(None, &mut events)?;
        let mut dirty = classifier.feed(&events);
        if !dirty.any() {
            continue;
        }
        let first = Instant::now();
        while first.elapsed() < MAX_GATHER {
            events.clear();
            monitor.wait(Some(QUIET), &mut events)?;
            if events.is_empty() {
                break;
            }
            dirty.merge(classifier.feed(&events));
        }
        if !send(dirty) {
            return Ok(());
        }
    }
}

/// Sets the [`SYSCTLS`] that differ; how many did.
pub fn restore_sysctls() -> Result<usize, String> {
    let mut changed = 0;
    for (key, value) in SYSCTLS {
        if weft_netlink::sysctl::get(key).map_err(|e| e.to_string())? != value {
            weft_netlink::sysctl::set(key, value).map_err(|e| e.to_string())?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// The `inet` tables of the calling thread's network namespace, as `inet NAME`.
fn tables() -> Result<BTreeSet<String>, String> {
    let all = weft_netlink::nftables::tables().map_err(|e| e.to_string())?;
    Ok(all
        .into_iter()
        .filter(|(family, _)| *family == NFPROTO_INET)
        .map(|(_, name)| format!("inet {name}"))
        .collect())
}

/// What the agent says about its enforcement, beside the CNI settings (`agent-status.json`): the parts being
/// restored right now.
pub fn status_file(config: &Config) -> PathBuf {
    config.node_config.with_file_name("agent-status.json")
}

fn write_status(config: &Config, restoring: &[&str]) {
    let status = serde_json::json!({ "restoring": restoring });
    if let Err(e) = crate::node::write_if_changed(&status_file(config), &status.to_string()) {
        tracing::warn!(error = %e, "writing the agent's status");
    }
}

impl Agent {
    /// Repairs what `dirty` names from `snap` (the last snapshot), checking first when `dirty.check` says so.
    /// Each part is one transaction or netlink batch, so a repair never leaves a part half built.
    pub fn repair(&mut self, mut dirty: Dirty, snap: &Arc<Snapshot>, config: &Config) {
        let started = Instant::now();
        if dirty.check {
            dirty.sysctls = true;
            dirty.overlay = true;
            match tables() {
                Ok(present) => {
                    dirty.proxy |= !present.contains(weft_proxy::ruleset::TABLE);
                    dirty.policy |= !present.contains(weft_policy::plan::TABLE);
                    dirty.cni |= !present.contains(weft_cni::firewall::TABLE);
                    dirty.notrack |= !present.contains(&format!("inet {}", crate::overlay::notrack::TABLE));
                }
                Err(e) => tracing::warn!(error = %e, "drift check: listing nftables tables"),
            }
        }
        if dirty.notrack {
            // Forgotten, so the overlay sync writes it again (or removes it, without VXLAN).
            self.notrack = None;
            dirty.overlay = true;
        }
        let mut restoring = Vec::new();
        for (part, flag) in [
            ("services", dirty.proxy),
            ("network policy", dirty.policy),
            ("weft-cni", dirty.cni),
        ] {
            if flag {
                restoring.push(part);
            }
        }
        if !restoring.is_empty() {
            write_status(config, &restoring);
        }
        let mut repaired: Vec<String> = Vec::new();
        // The tables first, policy's among them: until it is back, connections it denies go through.
        self.restore_tables(&mut dirty, config, &mut repaired);
        // What the one transaction did not restore, each on its own; policy first.
        if dirty.policy {
            self.policy.reset();
            match self.sync_policy(snap, config) {
                Ok(()) => repaired.push("network policy".into()),
                Err(e) => tracing::warn!(part = "network policy", error = %e, "drift repair failed"),
            }
        }
        if dirty.sysctls {
            match restore_sysctls() {
                Ok(0) => {}
                Ok(_) => repaired.push("sysctls".into()),
                Err(e) => tracing::warn!(part = "sysctls", error = %e, "drift repair failed"),
            }
        }
        if dirty.overlay {
            match self.sync_overlay(snap, config) {
                Ok(0) => {}
                Ok(_) => repaired.push("overlay".into()),
                Err(e) => tracing::warn!(part = "overlay", error = %e, "drift repair failed"),
            }
        }
        if dirty.proxy {
            self.proxier.reset();
            match self.sync_services(snap, config) {
                Ok(()) => repaired.push("services".into()),
                Err(e) => tracing::warn!(part = "services", error = %e, "drift repair failed"),
            }
        }
        if dirty.cni {
            let before = cni_listing();
            let exclude = ipnet::IpNet::V4(config.cluster_cidr);
            match weft_cni::firewall::restore(&config.cni_state_dir, exclude) {
                Ok(r) => repaired.extend(cni_repaired(before, &r)),
                Err(e) => tracing::warn!(part = "weft-cni", error = %e, "drift repair failed"),
            }
        }
        for what in &repaired {
            self.metrics.drift_repaired(what.split(" (").next().unwrap_or(what));
        }
        if !restoring.is_empty() || !repaired.is_empty() {
            write_status(config, &[]);
        }
        if !repaired.is_empty() {
            tracing::warn!(took = ?started.elapsed(), repaired = %repaired.join(", "), "drift repaired");
        }
    }

    /// Puts back the nftables tables `dirty` names in one transaction (each `nft` run is a process and a
    /// commit: three in a row were most of the repair of a flushed ruleset), the proxy's and policy's as last
    /// applied: the kernel changed, not the cluster, so nothing is planned again. Clears the parts it restored;
    /// the others (not yet synced once, or the transaction failed) are left to their own repair.
    fn restore_tables(&mut self, dirty: &mut Dirty, config: &Config, repaired: &mut Vec<String>) {
        let policy = dirty.policy.then(|| self.policy.restore_script()).flatten();
        let proxy = dirty.proxy.then(|| self.proxier.restore_script()).flatten();
        if policy.is_none() && proxy.is_none() {
            // weft-cni's alone: its own path, which also copes with elements that conflict.
            return;
        }
        let cni = dirty.cni.then(|| {
            let before = cni_listing();
            let exclude = ipnet::IpNet::V4(config.cluster_cidr);
            weft_cni::firewall::Restoration::prepare(&config.cni_state_dir, exclude)
                .inspect_err(|e| tracing::warn!(part = "weft-cni", error = %e, "drift repair: reading the journals"))
                .ok()
                .map(|r| (before, r))
        });
        let cni = cni.flatten();
        let mut script = String::new();
        for part in [policy.as_deref(), proxy.as_deref()].into_iter().flatten() {
            script.push_str(part);
        }
        if let Some((_, restoration)) = &cni {
            script.push_str(&restoration.script());
        }
        if let Err(e) = weft_netlink::nft::apply(&script) {
            tracing::warn!(error = %e, "restoring the nftables tables in one transaction failed; each on its own");
            return;
        }
        if policy.is_some() {
            dirty.policy = false;
            repaired.push("network policy".into());
        }
        if proxy.is_some() {
            dirty.proxy = false;
            repaired.push("services".into());
        }
        if let Some((before, restoration)) = cni {
            dirty.cni = false;
            let restored = restoration.restored();
            // The journals' lock goes before the listing.
            drop(restoration);
            repaired.extend(cni_repaired(before, &restored));
        }
    }
}

/// weft-cni's table as nft lists it; none when it is not there (told over netlink: no `nft` run for that).
fn cni_listing() -> Option<String> {
    let name = weft_cni::firewall::TABLE.trim_start_matches("inet ");
    let present = weft_netlink::nftables::tables()
        .map(|all| {
            all.iter()
                .any(|(family, table)| *family == NFPROTO_INET && table == name)
        })
        .unwrap_or(true);
    if !present {
        return None;
    }
    weft_netlink::nft::run(&["list", "table", weft_cni::firewall::TABLE], "").ok()
}

/// What a restore of weft-cni's table repaired. Its own full transaction (its first pod on the node) wakes a
/// repair too: a repair only if the table was not already whole (`before`, its listing then).
fn cni_repaired(before: Option<String>, restored: &weft_cni::firewall::Restored) -> Option<String> {
    if before.is_some() && cni_listing() == before {
        return None;
    }
    Some(format!(
        "weft-cni ({} elements{})",
        restored.elements,
        if restored.skipped > 0 {
            format!(", {} left out", restored.skipped)
        } else {
            String::new()
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nft(table: &str, elements: bool) -> Event {
        Event::Nft {
            family: NFPROTO_INET,
            table: table.into(),
            elements,
        }
    }

    fn generation(pid: u32, process: &str) -> Event {
        Event::Generation {
            pid,
            process: process.into(),
        }
    }

    #[test]
    fn only_others_changes_to_weft_tables_need_repair() {
        let mut c = Classifier::new(|pid| pid == 1);
        // Our own sync: nothing to do.
        assert!(
            !c.feed(&[nft("weft", false), nft("weft-policy", true), generation(1, "weft")])
                .any()
        );
        // `nft flush ruleset`: every table, then the generation, maybe in two reads.
        assert_eq!(c.feed(&[nft("weft", false), nft("weft-cni", false)]), Dirty::default());
        let dirty = c.feed(&[
            nft("weft-policy", false),
            nft("firewalld", false),
            generation(77, "nft"),
        ]);
        assert!(dirty.proxy && dirty.policy && dirty.cni && !dirty.overlay && !dirty.notrack);
        // The overlay's table, changed by an admin, is written again whole.
        assert!(c.feed(&[nft("weft-overlay", false), generation(80, "nft")]).notrack);
        // weft-cni adding a pod's elements is not drift; an admin deleting one with nft is.
        assert!(!c.feed(&[nft("weft-cni", true), generation(78, "weft")]).any());
        assert!(c.feed(&[nft("weft-cni", true), generation(79, "nft")]).cni);
        // Other families and tables are not ours.
        let ip = Event::Nft {
            family: 2,
            table: "weft".into(),
            elements: false,
        };
        assert!(!c.feed(&[ip, nft("filter", false), generation(80, "nft")]).any());
    }

    #[test]
    fn routes_devices_neighbours_and_netconf() {
        let mut c = Classifier::new(|_| false);
        assert!(c.feed(&[Event::Route { protocol: 247 }]).overlay);
        assert!(!c.feed(&[Event::Route { protocol: 3 }]).any());
        let link = |name: &str| Event::Link {
            index: 4,
            name: Some(name.into()),
        };
        assert!(c.feed(&[link("weft.1")]).overlay);
        assert!(!c.feed(&[link("vethab12")]).any());
        let neighbour = |permanent| Event::Neighbour {
            index: 4,
            bridge: false,
            permanent,
        };
        assert!(c.feed(&[neighbour(true)]).overlay);
        // Deleted, a neighbour of the device is announced FAILED.
        assert!(c.feed(&[neighbour(false)]).overlay);
        c.vxlan = Some(5);
        assert!(!c.feed(&[neighbour(false)]).any());
        assert!(c.feed(&[Event::Netconf]).sysctls);
        assert_eq!(c.feed(&[nft("weft", false), Event::Lost]), Dirty::check());
        // What was pending before the loss is dropped with it: the check covers it.
        assert!(!c.feed(&[generation(5, "nft")]).any());
    }
}
