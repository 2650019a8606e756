//! The kernel half of the overlay: diff a `Desired` against what weft owns in one network namespace and change
//! only the difference. Owned means: main-table routes with protocol `ROUTE_PROTOCOL`, and the VXLAN device
//! `weft.1` with everything on it. Nothing is flushed, so a restarted agent re-adopts its state and traffic
//! keeps flowing while it does.

use super::plan::{Desired, PlannedRoute, ROUTE_PROTOCOL, RouteDevice, VXLAN_DEVICE, VxlanPlan};
use crate::error::{Error, Result};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use weft_netlink::link::format_mac;
use weft_netlink::{Handle, Route, VxlanConfig};

/// Changes to one kind of object.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub added: usize,
    /// Changed in place (a route replaced, a neighbour's MAC corrected, the device's MTU set).
    pub updated: usize,
    pub removed: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.added + self.updated + self.removed
    }
}

/// What one sync changed, for the caller to log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub device: Counts,
    pub addresses: Counts,
    pub routes: Counts,
    pub neighbours: Counts,
    pub fdb: Counts,
    /// Desired routes left out because a route weft does not own already holds the destination.
    pub conflicts: Vec<String>,
}

impl Report {
    /// Number of changes made; zero when the namespace already matched.
    pub fn changes(&self) -> usize {
        self.kinds().iter().map(|(_, c)| c.total()).sum()
    }

    fn kinds(&self) -> [(&'static str, Counts); 5] {
        [
            ("device", self.device),
            ("addresses", self.addresses),
            ("routes", self.routes),
            ("neighbours", self.neighbours),
            ("fdb", self.fdb),
        ]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .kinds()
            .iter()
            .filter(|(_, c)| c.total() > 0)
            .map(|(name, c)| format!("{name} +{} ~{} -{}", c.added, c.updated, c.removed))
            .collect();
        if !self.conflicts.is_empty() {
            parts.push(format!("{} conflicting", self.conflicts.len()));
        }
        if parts.is_empty() {
            f.write_str("no changes")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Makes the namespace `handle` is bound to match `desired`. `uplink` is the node's underlay link (host-gw
/// routes leave by it, the VXLAN device sends through it). Failures of single changes do not stop the sync:
/// they are collected and returned together as `Error::Incomplete`, with the report of what did succeed.
pub fn sync(handle: &mut Handle, uplink: &str, desired: &Desired) -> Result<Report> {
    let uplink = handle
        .link_by_name(uplink)
        .map_err(Error::kernel(format!("looking up uplink {uplink}")))?
        .ok_or_else(|| Error::UplinkMissing(uplink.to_string()))?;
    let mut run = Run {
        handle,
        report: Report::default(),
        errors: Vec::new(),
    };

    // Device, then its neighbours and FDB, then routes: a route only appears once traffic through it can flow.
    let vxlan_index = match &desired.vxlan {
        Some(plan) => {
            let index = run.device(plan, uplink.index)?;
            run.address(index, plan)?;
            run.neighbours(index, plan)?;
            run.fdb(index, plan)?;
            Some(index)
        }
        None => None,
    };
    run.routes(&desired.routes, uplink.index, vxlan_index)?;
    // Removed last, so on a switch to host-gw the routes above have already moved to the uplink.
    if desired.vxlan.is_none() {
        run.remove_device()?;
    }

    if run.errors.is_empty() {
        Ok(run.report)
    } else {
        Err(Error::Incomplete {
            report: Box::new(run.report),
            errors: run.errors,
        })
    }
}

struct Run<'a> {
    handle: &'a mut Handle,
    report: Report,
    errors: Vec<Error>,
}

/// Records a failed change and goes on; true when the change was made.
fn note(errors: &mut Vec<Error>, result: weft_netlink::Result<()>, context: impl FnOnce() -> String) -> bool {
    match result {
        Ok(()) => true,
        Err(source) => {
            errors.push(Error::Kernel {
                context: context(),
                source,
            });
            false
        }
    }
}

impl Run<'_> {
    /// Ensures the VXLAN device exists as planned and is up; returns its index. A device whose identity (VNI,
    /// port, addresses, underlay, MAC, learning) differs is recreated: the kernel cannot change those in place.
    fn device(&mut self, plan: &VxlanPlan, underlay: u32) -> Result<u32> {
        let d = &plan.device;
        let want = VxlanConfig {
            name: d.name.clone(),
            vni: d.vni,
            local: d.local,
            underlay,
            port: d.port,
            mac: d.mac,
            mtu: d.mtu,
        };
        let lookup = |h: &mut Handle| {
            h.vxlan(&d.name)
                .map_err(Error::kernel(format!("looking up {}", d.name)))
        };
        let mut found = lookup(self.handle)?;
        if found.is_none()
            && let Some(other) = self
                .handle
                .link_by_name(&d.name)
                .map_err(Error::kernel(format!("looking up {}", d.name)))?
        {
            return Err(Error::Foreign {
                name: d.name.clone(),
                kind: other.kind.unwrap_or_else(|| "plain".into()),
            });
        }
        if let Some(have) = &found {
            let same_identity = !have.learning
                && VxlanConfig {
                    mtu: want.mtu,
                    ..have.config.clone()
                } == want;
            if !same_identity {
                self.handle
                    .delete_link(have.index)
                    .map_err(Error::kernel(format!("removing outdated {}", d.name)))?;
                self.report.device.removed += 1;
                found = None;
            }
        }
        let have = match found {
            Some(have) => {
                if have.config.mtu != want.mtu {
                    self.handle
                        .set_mtu(have.index, want.mtu)
                        .map_err(Error::kernel(format!("setting MTU of {}", d.name)))?;
                    self.report.device.updated += 1;
                }
                if !have.up {
                    self.handle
                        .set_up(have.index)
                        .map_err(Error::kernel(format!("bringing up {}", d.name)))?;
                    self.report.device.updated += 1;
                }
                have
            }
            None => {
                self.handle
                    .add_vxlan(&want)
                    .map_err(Error::kernel(format!("creating {}", d.name)))?;
                self.report.device.added += 1;
                let have = lookup(self.handle)?.ok_or_else(|| Error::Kernel {
                    context: format!("creating {}", d.name),
                    source: weft_netlink::Error::NotFound(d.name.clone()),
                })?;
                self.handle
                    .set_up(have.index)
                    .map_err(Error::kernel(format!("bringing up {}", d.name)))?;
                have
            }
        };
        Ok(have.index)
    }

    /// Exactly the planned IPv4 address on the device (IPv6 link-local addresses are the kernel's business).
    fn address(&mut self, index: u32, plan: &VxlanPlan) -> Result<()> {
        let want = IpNet::V4(plan.device.address);
        let have: Vec<IpNet> = self
            .handle
            .addresses(index)
            .map_err(Error::kernel(format!("listing addresses of {}", plan.device.name)))?
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| matches!(a, IpNet::V4(_)))
            .collect();
        for addr in have.iter().filter(|a| **a != want) {
            if note(&mut self.errors, self.handle.delete_address(index, *addr), || {
                format!("removing {addr}")
            }) {
                self.report.addresses.removed += 1;
            }
        }
        if !have.contains(&want)
            && note(&mut self.errors, self.handle.add_address(index, want), || {
                format!("adding {want}")
            })
        {
            self.report.addresses.added += 1;
        }
        Ok(())
    }

    /// Permanent neighbours on the device are weft's: stale ones go, missing ones come, wrong MACs are fixed.
    fn neighbours(&mut self, index: u32, plan: &VxlanPlan) -> Result<()> {
        let have: BTreeMap<IpAddr, Option<[u8; 6]>> = self
            .handle
            .neighbours(index)
            .map_err(Error::kernel(format!("listing neighbours on {}", plan.device.name)))?
            .into_iter()
            .filter(|n| n.permanent)
            .map(|n| (n.ip, n.mac))
            .collect();
        let want: BTreeMap<IpAddr, [u8; 6]> = plan.neighbours.iter().map(|n| (IpAddr::V4(n.ip), n.mac)).collect();
        for ip in have.keys().filter(|ip| !want.contains_key(ip)) {
            if note(&mut self.errors, self.handle.delete_neighbour(index, *ip), || {
                format!("removing stale neighbour {ip}")
            }) {
                self.report.neighbours.removed += 1;
            }
        }
        for (ip, mac) in &want {
            let present = have.get(ip);
            if present == Some(&Some(*mac)) {
                continue;
            }
            if note(&mut self.errors, self.handle.set_neighbour(index, *ip, *mac), || {
                format!("setting neighbour {ip} at {}", format_mac(mac))
            }) {
                match present {
                    Some(_) => self.report.neighbours.updated += 1,
                    None => self.report.neighbours.added += 1,
                }
            }
        }
        Ok(())
    }

    /// The device's FDB, compared per (MAC, remote). Stale remotes are deleted before missing ones are set, so
    /// a MAC never ends up with two remotes.
    fn fdb(&mut self, index: u32, plan: &VxlanPlan) -> Result<()> {
        let have: BTreeSet<([u8; 6], Option<IpAddr>)> = self
            .handle
            .fdb_entries(index)
            .map_err(Error::kernel(format!("listing fdb of {}", plan.device.name)))?
            .into_iter()
            .map(|e| (e.mac, e.dst))
            .collect();
        let want: BTreeSet<([u8; 6], Option<IpAddr>)> =
            plan.fdb.iter().map(|e| (e.mac, Some(IpAddr::V4(e.dst)))).collect();
        for (mac, dst) in have.difference(&want) {
            if note(&mut self.errors, self.handle.delete_fdb(index, *mac, *dst), || {
                format!("removing stale fdb entry {}", format_mac(mac))
            }) {
                self.report.fdb.removed += 1;
            }
        }
        for (mac, dst) in want.difference(&have) {
            let Some(dst) = dst else { continue };
            if note(&mut self.errors, self.handle.set_fdb(index, *mac, *dst), || {
                format!("setting fdb entry {} dst {dst}", format_mac(mac))
            }) {
                self.report.fdb.added += 1;
            }
        }
        Ok(())
    }

    fn routes(&mut self, planned: &[PlannedRoute], uplink: u32, vxlan: Option<u32>) -> Result<()> {
        let all = self.handle.routes().map_err(Error::kernel("listing routes"))?;
        let (owned, foreign): (Vec<Route>, Vec<Route>) = all.into_iter().partition(|r| r.protocol == ROUTE_PROTOCOL);
        let mut wanted = BTreeSet::new();
        for p in planned {
            let oif = match p.device {
                RouteDevice::Uplink => uplink,
                // The device step failed and its error is already recorded.
                RouteDevice::Vxlan => match vxlan {
                    Some(index) => index,
                    None => continue,
                },
            };
            let want = Route {
                onlink: p.onlink,
                oif: Some(oif),
                protocol: ROUTE_PROTOCOL,
                ..Route::via(IpNet::V4(p.dst), IpAddr::V4(p.gateway))
            };
            wanted.insert(want.dst);
            // Same destination and no metric: the kernel's key for replacing a route.
            let same_key = |r: &&Route| r.dst == want.dst && r.metric.is_none();
            match owned.iter().find(same_key) {
                Some(have) if same_route(have, &want) => {}
                Some(_) => {
                    if note(&mut self.errors, self.handle.replace_route(&want), || {
                        format!("replacing route to {}", want.dst)
                    }) {
                        self.report.routes.updated += 1;
                    }
                }
                None if foreign.iter().any(|r| same_key(&r)) => {
                    self.report
                        .conflicts
                        .push(format!("route to {} exists and is not weft's; left alone", want.dst));
                }
                None => {
                    if note(&mut self.errors, self.handle.add_route(&want), || {
                        format!("adding route to {}", want.dst)
                    }) {
                        self.report.routes.added += 1;
                    }
                }
            }
        }
        for stale in owned
            .iter()
            .filter(|r| !(wanted.contains(&r.dst) && r.metric.is_none()))
        {
            if note(&mut self.errors, self.handle.delete_route(stale), || {
                format!("removing stale route to {}", stale.dst)
            }) {
                self.report.routes.removed += 1;
            }
        }
        Ok(())
    }

    fn remove_device(&mut self) -> Result<()> {
        let found = self
            .handle
            .vxlan(VXLAN_DEVICE)
            .map_err(Error::kernel(format!("looking up {VXLAN_DEVICE}")))?;
        if let Some(have) = found
            && note(&mut self.errors, self.handle.delete_link(have.index), || {
                format!("removing {VXLAN_DEVICE}")
            })
        {
            self.report.device.removed += 1;
        }
        Ok(())
    }
}

/// The fields weft sets; the kernel reports the rest (scope, MTU metrics) its own way.
fn same_route(have: &Route, want: &Route) -> bool {
    have.dst == want.dst && have.gateway == want.gateway && have.oif == want.oif && have.onlink == want.onlink
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_and_prints_only_what_changed() {
        let mut report = Report::default();
        assert_eq!((report.changes(), report.to_string()), (0, "no changes".to_string()));
        report.routes = Counts {
            added: 2,
            updated: 1,
            removed: 1,
        };
        report.fdb.removed = 1;
        report.conflicts.push("route to 10.0.0.0/24".into());
        assert_eq!(report.changes(), 5);
        assert_eq!(report.to_string(), "routes +2 ~1 -1, fdb +0 ~0 -1, 1 conflicting");
    }
}
