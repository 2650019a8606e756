//! host-local IPAM: addresses from configured ranges, remembered in files on the node. It runs inside
//! weft-cni's own process when the bridge or weft type uses it, and as the `host-local` type for runtimes.
//!
//! ADD takes one address per range set: the attachment's own if it already has one there (a retried ADD),
//! else the requested one, else the next free one after where the set's last search stopped. Crash safety
//! and the on-disk layout are described in [`store`].

pub mod config;
pub mod store;

use crate::plugins::Plugin;
use crate::spec::config::Attachment;
use crate::spec::result::{Dns, IpConfig, Route};
use crate::spec::{CniError, CniResult, Code, Invocation, NetConf, Result};
pub use config::parse_resolv_conf;
use config::{IpamConf, Range, from_u128, set_label, to_u128};
use ipnet::IpNet;
use std::net::IpAddr;
use store::{Owner, Store};

/// What an ADD hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// One per range set, in the config's order: address/prefix of its subnet, with the range's gateway.
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn in_set(set: &[Range], ip: IpAddr) -> bool {
    set.iter().any(|r| r.contains(ip))
}

fn ip_config(set: &[Range], ip: IpAddr) -> Result<IpConfig> {
    let range = set
        .iter()
        .find(|r| r.contains(ip))
        .ok_or_else(|| CniError::internal("ipam: address outside its range set", ip))?;
    let address =
        IpNet::new(ip, range.subnet.prefix_len()).map_err(|e| CniError::internal("ipam: address prefix", e))?;
    Ok(IpConfig {
        address,
        gateway: Some(range.gateway),
        interface: None,
    })
}

/// Assigns each requested address to its range set (code 7 when it fits none, is never handed out, or a
/// set is asked for twice).
fn requested_per_set(conf: &IpamConf, requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>> {
    let mut wanted: Vec<Option<IpAddr>> = vec![None; conf.ranges.len()];
    for &ip in requested {
        let found = conf
            .ranges
            .iter()
            .enumerate()
            .find_map(|(i, set)| set.iter().find(|r| r.contains(ip)).map(|r| (i, r)));
        let Some((i, range)) = found else {
            let all: Vec<String> = conf.ranges.iter().map(|s| set_label(s)).collect();
            return Err(CniError::config(format!(
                "requested IP {ip} is in no range set ({})",
                all.join("; ")
            )));
        };
        if let Some(role) = range.reserved_role(ip) {
            return Err(CniError::config(format!(
                "requested IP {ip} is the {role} of {} and is never handed out",
                range.subnet
            )));
        }
        match wanted[i] {
            Some(other) if other != ip => {
                return Err(CniError::config(format!(
                    "requested IPs {other} and {ip} are both in range set {}: an attachment gets one address per set",
                    set_label(&conf.ranges[i])
                )));
            }
            _ => wanted[i] = Some(ip),
        }
    }
    Ok(wanted)
}

/// Candidates of a set in allocation order: from just after `last` (when it lies in the set) through the
/// end of its range, the following ranges, then around to `last` itself; each address once.
fn candidates(set: &[Range], last: Option<IpAddr>) -> impl Iterator<Item = IpAddr> + '_ {
    let n = set.len();
    let bounds = |j: usize| (to_u128(set[j].start), to_u128(set[j].end));
    let mut segments: Vec<(usize, u128, u128)> = Vec::with_capacity(n + 1);
    match last.and_then(|l| set.iter().position(|r| r.contains(l)).map(|i| (i, to_u128(l)))) {
        Some((i, l)) => {
            let (start, end) = bounds(i);
            if l < end {
                segments.push((i, l + 1, end));
            }
            segments.extend((1..n).map(|k| (i + k) % n).map(|j| (j, bounds(j).0, bounds(j).1)));
            segments.push((i, start, l));
        }
        None => segments.extend((0..n).map(|j| (j, bounds(j).0, bounds(j).1))),
    }
    segments.into_iter().flat_map(move |(j, lo, hi)| {
        let range = &set[j];
        (lo..=hi)
            .map(move |v| from_u128(v, range.is_ipv4()))
            .filter(move |ip| range.allocatable(*ip))
    })
}

/// One ADD's work on a locked store: what it reserved, and what the index lists.
struct Claims<'a> {
    store: &'a Store,
    owner: &'a Owner,
    /// What the attachment keeps: held before, plus what this ADD claims.
    index: Vec<IpAddr>,
    /// The index file's content as last read or written.
    on_disk: Vec<IpAddr>,
    /// Reservations this ADD created, undone if it fails.
    fresh: Vec<IpAddr>,
}

impl Claims<'_> {
    fn list(&mut self, ip: IpAddr) -> Result<()> {
        self.index.push(ip);
        self.store.write_index(self.owner, &self.index)?;
        self.on_disk.clone_from(&self.index);
        Ok(())
    }

    /// Lists `ip` in the index, then reserves it: a crash in between leaves an intent GC drops, never an
    /// unlisted reservation. Ok(false) when someone else holds it.
    fn claim(&mut self, ip: IpAddr) -> Result<bool> {
        self.list(ip)?;
        if self.store.reserve(ip, self.owner)? {
            self.fresh.push(ip);
            return Ok(true);
        }
        if self.store.owner(ip)?.as_ref() == Some(self.owner) {
            return Ok(true);
        }
        self.index.pop();
        Ok(false)
    }

    fn requested(&mut self, ip: IpAddr) -> Result<()> {
        let holder = self.store.owner(ip)?;
        if holder.as_ref() == Some(self.owner) {
            // Reserved by an earlier ADD of ours that died before its index named it.
            return self.list(ip);
        }
        if !self.store.is_reserved(ip)? && self.claim(ip)? {
            return Ok(());
        }
        let by = match self.store.owner(ip)? {
            Some(o) => format!("container {} ({})", o.container_id(), o.ifname()),
            None => "another attachment".to_string(),
        };
        Err(CniError::config(format!(
            "requested IP {ip} is already reserved by {by}"
        )))
    }

    fn next_free(&mut self, set: usize, ranges: &[Range]) -> Result<IpAddr> {
        let last = self.store.last_reserved(set)?;
        for ip in candidates(ranges, last) {
            if !self.store.is_reserved(ip)? && self.claim(ip)? {
                return Ok(ip);
            }
        }
        let reserved = self
            .store
            .reserved()?
            .into_iter()
            .filter(|ip| ranges.iter().any(|r| r.allocatable(*ip)))
            .count();
        Err(CniError::new(
            Code::Internal,
            format!(
                "no free address in range set {} ({reserved} reserved)",
                set_label(ranges)
            ),
        ))
    }
}

pub fn add(
    network: &str,
    conf: &IpamConf,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Allocation> {
    conf.validate()?;
    let owner = Owner::new(container_id, ifname)?;
    let wanted = requested_per_set(conf, requested)?;
    // Read before reserving, so a bad resolvConf leaves nothing behind.
    let dns = conf.dns()?;
    let store = Store::open(&conf.data_dir, network)?;
    let listed = store.listed(&owner)?.unwrap_or_default();
    let held = store.held_of(&owner, &listed)?;
    let mut picks: Vec<Option<IpAddr>> = conf
        .ranges
        .iter()
        .map(|set| held.iter().copied().find(|ip| in_set(set, *ip)))
        .collect();
    for (i, (have, want)) in picks.iter().zip(&wanted).enumerate() {
        if let (Some(have), Some(want)) = (have, want)
            && have != want
        {
            return Err(CniError::config(format!(
                "requested IP {want}, but {container_id} ({ifname}) already holds {have} in range set {}: DEL it first",
                set_label(&conf.ranges[i])
            )));
        }
    }
    let mut claims = Claims {
        store: &store,
        owner: &owner,
        index: held.clone(),
        on_disk: listed,
        fresh: Vec::new(),
    };
    let mut claimed = Vec::new();
    let outcome = (|| -> Result<()> {
        for (i, set) in conf.ranges.iter().enumerate() {
            if picks[i].is_some() {
                continue;
            }
            let ip = match wanted[i] {
                Some(ip) => {
                    claims.requested(ip)?;
                    ip
                }
                None => claims.next_free(i, set)?,
            };
            picks[i] = Some(ip);
            claimed.push((i, ip));
        }
        Ok(())
    })();
    if let Err(err) = outcome {
        // Undo this ADD only; what the attachment held before stays. A failure here is left to GC.
        for ip in &claims.fresh {
            let _ = store.release(*ip);
        }
        let _ = if held.is_empty() {
            store.remove_index(&owner)
        } else {
            store.write_index(&owner, &held)
        };
        return Err(err);
    }
    // Every claim is listed already; this only drops stale intents, which GC would drop as well.
    if claims.on_disk != claims.index {
        let _ = store.write_index(&owner, &claims.index);
    }
    for (set, ip) in claimed {
        // Only a hint for the next search: failing to move it must not fail a completed ADD.
        let _ = store.set_last_reserved(set, ip);
    }
    let ips = conf
        .ranges
        .iter()
        .zip(&picks)
        .map(|(set, ip)| {
            let ip = ip.ok_or_else(|| CniError::internal("ipam: range set left without address", set_label(set)))?;
            ip_config(set, ip)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Allocation {
        ips,
        routes: conf.routes.clone(),
        dns,
    })
}

/// Releases the attachment's addresses; Ok when it has none (DEL is idempotent).
pub fn del(network: &str, conf: &IpamConf, container_id: &str, ifname: &str) -> Result<()> {
    let owner = Owner::new(container_id, ifname)?;
    match Store::open_existing(&conf.data_dir, network)? {
        Some(store) => store.release_attachment(&owner),
        None => Ok(()),
    }
}

/// The attachment's addresses; code 3 when it has none.
pub fn check(network: &str, conf: &IpamConf, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    let owner = Owner::new(container_id, ifname)?;
    let held = match Store::open_existing(&conf.data_dir, network)? {
        Some(store) => store.held(&owner)?,
        None => Vec::new(),
    };
    if held.is_empty() {
        return Err(CniError::new(
            Code::UnknownContainer,
            format!("ipam: no address is reserved for {container_id} ({ifname}) in network {network}"),
        ));
    }
    Ok(held)
}

/// Frees every address no attachment in `valid` holds, and what killed processes left (see [`Store::gc`]).
pub fn gc(network: &str, conf: &IpamConf, valid: &[Attachment]) -> Result<()> {
    match Store::open_existing(&conf.data_dir, network)? {
        Some(store) => store.gc(valid),
        None => Ok(()),
    }
}

/// Code 50 when any range set has no free address left.
pub fn status(network: &str, conf: &IpamConf) -> Result<()> {
    conf.validate()?;
    let Some(store) = Store::open_existing(&conf.data_dir, network)? else {
        return Ok(());
    };
    let reserved = store.reserved()?;
    for set in &conf.ranges {
        let capacity: u128 = set.iter().map(Range::capacity).sum();
        let used = reserved
            .iter()
            .filter(|ip| set.iter().any(|r| r.allocatable(**ip)))
            .count() as u128;
        if used >= capacity {
            return Err(CniError::new(
                Code::NotAvailable,
                format!("no free address in range set {} ({used} reserved)", set_label(set)),
            ));
        }
    }
    Ok(())
}

/// Addresses asked for through the `ips` capability, `args.cni.ips` or CNI_ARGS `IP=` (comma separated;
/// a prefix length is ignored).
pub fn requested_ips(inv: &Invocation, conf: &NetConf) -> Result<Vec<IpAddr>> {
    let mut ips = conf.requested_ips()?;
    if let Some(list) = inv.args.get("IP") {
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bare = item.split('/').next().unwrap_or_default();
            ips.push(
                bare.parse()
                    .map_err(|_| CniError::env(format!("CNI_ARGS IP={item:?} is not an IP address")))?,
            );
        }
    }
    Ok(ips)
}

/// The `host-local` type, for runtimes and other plugins that call it as a binary.
pub struct HostLocal;

impl Plugin for HostLocal {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult> {
        let ipam = IpamConf::from_netconf(conf)?;
        let requested = requested_ips(inv, conf)?;
        let a = add(&conf.name, &ipam, &inv.container_id, &inv.ifname, &requested)?;
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: a.ips,
            routes: a.routes,
            dns: a.dns,
        })
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        del(
            &conf.name,
            &IpamConf::from_netconf(conf)?,
            &inv.container_id,
            &inv.ifname,
        )
    }

    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        check(
            &conf.name,
            &IpamConf::from_netconf(conf)?,
            &inv.container_id,
            &inv.ifname,
        )
        .map(drop)
    }

    fn gc(&self, conf: &NetConf) -> Result<()> {
        gc(&conf.name, &IpamConf::from_netconf(conf)?, &conf.valid_attachments()?)
    }

    fn status(&self, conf: &NetConf) -> Result<()> {
        status(&conf.name, &IpamConf::from_netconf(conf)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("weft-ipam-{}-{tag}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn range(subnet: &str) -> Range {
        Range::new(subnet.parse().expect("test subnet"), None, None, None).expect("test range")
    }

    fn conf(t: &TempDir, sets: Vec<Vec<Range>>) -> IpamConf {
        IpamConf::new(sets, Vec::new(), t.path().to_path_buf(), None).expect("test conf")
    }

    fn one(t: &TempDir, subnet: &str) -> IpamConf {
        conf(t, vec![vec![range(subnet)]])
    }

    /// The single address ADD gave `id`.
    fn add1(c: &IpamConf, id: &str) -> Result<IpAddr> {
        add("net", c, id, "eth0", &[]).map(|a| a.ips[0].address.addr())
    }

    fn net_files(t: &TempDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(t.path().join("net"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn reservations(t: &TempDir) -> Vec<String> {
        net_files(t)
            .into_iter()
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    fn indexes(t: &TempDir) -> usize {
        std::fs::read_dir(t.path().join("net/attachments"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn allocation_goes_in_order_then_round_robin_and_never_hands_out_gateway_network_or_broadcast() {
        let t = TempDir::new("order");
        let c = one(&t, "10.0.0.0/29"); // .0 network, .1 gateway, .7 broadcast: .2-.6 usable
        let a = add("net", &c, "a", "eth0", &[]).unwrap();
        assert_eq!(a.ips[0].address, "10.0.0.2/29".parse::<IpNet>().unwrap());
        assert_eq!((a.ips[0].gateway, a.ips[0].interface), (Some(ip("10.0.0.1")), None));
        assert_eq!(
            (add1(&c, "b").unwrap(), add1(&c, "c").unwrap()),
            (ip("10.0.0.3"), ip("10.0.0.4"))
        );
        del("net", &c, "b", "eth0").unwrap();
        // Continues after the last one rather than reusing the freed .3 at once.
        assert_eq!(add1(&c, "d").unwrap(), ip("10.0.0.5"));
        assert_eq!(add1(&c, "e").unwrap(), ip("10.0.0.6"));
        assert_eq!(
            std::fs::read_to_string(t.path().join("net/last_reserved_ip.0")).unwrap(),
            "10.0.0.6"
        );
        // Wraps past the broadcast and the gateway to the freed address.
        assert_eq!(add1(&c, "f").unwrap(), ip("10.0.0.3"));
        assert_eq!(
            reservations(&t),
            vec!["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
    }

    #[test]
    fn custom_gateway_and_ipv6_edges_are_respected() {
        let t = TempDir::new("edges");
        let gw = Range::new("10.0.0.0/29".parse().unwrap(), None, None, Some(ip("10.0.0.4"))).unwrap();
        let v6 = range("fd00::/125"); // :: network, ::1 gateway, ::7 usable (no broadcast in IPv6)
        // IPv6 first, so the failing ADD below has an IPv6 reservation to undo.
        let c = conf(&t, vec![vec![v6], vec![gw]]);
        let mut got4 = BTreeSet::new();
        let mut got6 = BTreeSet::new();
        for i in 0..5 {
            let a = add("net", &c, &format!("c{i}"), "eth0", &[]).unwrap();
            got6.insert(a.ips[0].address.addr());
            got4.insert(a.ips[1].address.addr());
        }
        let want4: BTreeSet<IpAddr> = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"]
            .map(ip)
            .into();
        let want6: BTreeSet<IpAddr> = ["fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::6"].map(ip).into();
        assert_eq!((got4, got6), (want4, want6));
        assert_eq!(
            add("net", &c, "c5", "eth0", &[]).unwrap_err().code,
            Code::Internal,
            "v4 set is full"
        );
        assert_eq!(indexes(&t), 5, "the failed ADD left no index");
        assert!(
            !reservations(&t).contains(&"fd00::7".to_string()),
            "nor its IPv6 reservation"
        );
    }

    #[test]
    fn search_wraps_at_the_top_of_the_address_space_without_overflow() {
        let t = TempDir::new("top");
        let c = one(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124");
        std::fs::create_dir_all(t.path().join("net")).unwrap();
        std::fs::write(
            t.path().join("net/last_reserved_ip.0"),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        )
        .unwrap();
        assert_eq!(add1(&c, "a").unwrap(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff2"));
        // A cursor from another config (or garbage) restarts at the beginning.
        std::fs::write(t.path().join("net/last_reserved_ip.0"), "192.168.0.1").unwrap();
        assert_eq!(add1(&c, "b").unwrap(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff3"));
    }

    #[test]
    fn several_ranges_in_a_set_are_used_in_turn() {
        let t = TempDir::new("multi");
        let r1 = Range::new(
            "10.0.0.0/24".parse().unwrap(),
            Some(ip("10.0.0.10")),
            Some(ip("10.0.0.11")),
            None,
        )
        .unwrap();
        let r2 = Range::new(
            "10.0.1.0/24".parse().unwrap(),
            Some(ip("10.0.1.20")),
            Some(ip("10.0.1.21")),
            None,
        )
        .unwrap();
        let c = conf(&t, vec![vec![r1, r2]]);
        let got: Vec<IpNet> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| add("net", &c, id, "eth0", &[]).unwrap().ips[0].address)
            .collect();
        let want: Vec<IpNet> = ["10.0.0.10/24", "10.0.0.11/24", "10.0.1.20/24", "10.0.1.21/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        let err = add1(&c, "e").unwrap_err();
        assert_eq!(err.code, Code::Internal);
        assert_eq!(
            err.msg,
            "no free address in range set 10.0.0.0/24 (10.0.0.10-10.0.0.11), 10.0.1.0/24 (10.0.1.20-10.0.1.21) (4 reserved)"
        );
    }

    #[test]
    fn dual_stack_gets_one_address_from_each_set() {
        let t = TempDir::new("dual");
        let mut c = conf(&t, vec![vec![range("10.0.0.0/24")], vec![range("fd00::/64")]]);
        c.routes = vec![Route::new("0.0.0.0/0".parse().unwrap(), None)];
        let a = add("net", &c, "a", "eth0", &[]).unwrap();
        let got: Vec<(String, Option<IpAddr>)> = a.ips.iter().map(|i| (i.address.to_string(), i.gateway)).collect();
        assert_eq!(
            got,
            vec![
                ("10.0.0.2/24".to_string(), Some(ip("10.0.0.1"))),
                ("fd00::2/64".to_string(), Some(ip("fd00::1")))
            ]
        );
        assert_eq!(a.routes, c.routes);
        assert!(a.dns.is_empty());
        assert_eq!(
            check("net", &c, "a", "eth0").unwrap(),
            vec![ip("10.0.0.2"), ip("fd00::2")]
        );
        // Only the IPv6 address asked for: IPv4 is still picked.
        let b = add("net", &c, "b", "eth0", &[ip("fd00::99")]).unwrap();
        assert_eq!(b.ips[0].address.addr(), ip("10.0.0.3"));
        assert_eq!(b.ips[1].address.addr(), ip("fd00::99"));
        del("net", &c, "a", "eth0").unwrap();
        assert_eq!(reservations(&t), vec!["10.0.0.3", "fd00::99"]);
    }

    #[test]
    fn a_retried_add_returns_what_the_attachment_has() {
        let t = TempDir::new("retry");
        let c = conf(&t, vec![vec![range("10.0.0.0/24")], vec![range("fd00::/64")]]);
        let first = add("net", &c, "a", "eth0", &[]).unwrap();
        assert_eq!(add("net", &c, "a", "eth0", &[]).unwrap(), first);
        let with_request: Vec<IpAddr> = first.ips.iter().map(|i| i.address.addr()).collect();
        assert_eq!(add("net", &c, "a", "eth0", &with_request).unwrap(), first);
        // Another interface of the same container is another attachment.
        assert_ne!(add("net", &c, "a", "net1", &[]).unwrap().ips, first.ips);
        assert_eq!(reservations(&t).len(), 4);
        // A crash after the intent, before the reservation: the retry still gets one address per set.
        let owner = Owner::new("b", "eth0").unwrap();
        Store::open(t.path(), "net")
            .unwrap()
            .write_index(&owner, &[ip("10.0.0.77")])
            .unwrap();
        let b = add("net", &c, "b", "eth0", &[]).unwrap();
        assert_eq!(b.ips.len(), 2);
        assert_eq!(
            check("net", &c, "b", "eth0").unwrap().len(),
            2,
            "the stale intent is dropped"
        );
    }

    #[test]
    fn requested_addresses_are_honoured_or_refused_clearly() {
        let t = TempDir::new("request");
        let c = one(&t, "10.0.0.0/24");
        let a = add("net", &c, "a", "eth0", &[ip("10.0.0.7")]).unwrap();
        assert_eq!(a.ips[0].address.to_string(), "10.0.0.7/24");
        let refused = [
            (
                ip("10.0.0.7"),
                "requested IP 10.0.0.7 is already reserved by container a (eth0)",
            ),
            (ip("10.1.0.5"), "requested IP 10.1.0.5 is in no range set (10.0.0.0/24)"),
            (ip("fd00::5"), "requested IP fd00::5 is in no range set"),
            (ip("10.0.0.1"), "requested IP 10.0.0.1 is the gateway of 10.0.0.0/24"),
        ];
        for (want, msg) in refused {
            let err = add("net", &c, "b", "eth0", &[want]).unwrap_err();
            assert_eq!(err.code, Code::InvalidConfig, "{want}: {err}");
            assert!(err.msg.starts_with(msg), "{want}: {err}");
        }
        let err = add("net", &c, "b", "eth0", &[ip("10.0.0.8"), ip("10.0.0.9")]).unwrap_err();
        assert!(err.msg.contains("both in range set 10.0.0.0/24"), "{err}");
        let err = add("net", &c, "a", "eth0", &[ip("10.0.0.8")]).unwrap_err();
        assert!(err.msg.contains("already holds 10.0.0.7"), "{err}");
        assert_eq!(reservations(&t), vec!["10.0.0.7"], "refusals reserve nothing");
        assert_eq!(indexes(&t), 1, "and leave no index");
        // A requested address this attachment reserved before dying unindexed is simply taken up.
        let s = Store::open(t.path(), "net").unwrap();
        assert!(s.reserve(ip("10.0.0.9"), &Owner::new("c", "eth0").unwrap()).unwrap());
        drop(s);
        assert_eq!(
            add("net", &c, "c", "eth0", &[ip("10.0.0.9")]).unwrap().ips[0]
                .address
                .to_string(),
            "10.0.0.9/24"
        );
        assert_eq!(check("net", &c, "c", "eth0").unwrap(), vec![ip("10.0.0.9")]);
    }

    #[test]
    fn exhaustion_is_an_error_and_status_50_until_an_address_is_freed() {
        let t = TempDir::new("full");
        let c = one(&t, "10.0.0.0/30"); // .2 is the only address to hand out
        status("net", &c).unwrap();
        assert_eq!(add1(&c, "a").unwrap(), ip("10.0.0.2"));
        let err = add1(&c, "b").unwrap_err();
        assert_eq!(err.code, Code::Internal);
        assert_eq!(err.msg, "no free address in range set 10.0.0.0/30 (1 reserved)");
        assert_eq!(indexes(&t), 1, "the failed ADD left no index");
        let err = status("net", &c).unwrap_err();
        assert_eq!(err.code, Code::NotAvailable);
        assert!(err.msg.contains("10.0.0.0/30"), "{err}");
        del("net", &c, "a", "eth0").unwrap();
        status("net", &c).unwrap();
        assert_eq!(add1(&c, "b").unwrap(), ip("10.0.0.2"));
    }

    #[test]
    fn del_is_idempotent_and_check_knows_who_has_nothing() {
        let t = TempDir::new("del");
        let c = one(&t, "10.0.0.0/24");
        del("net", &c, "a", "eth0").unwrap();
        gc("net", &c, &[]).unwrap();
        status("net", &c).unwrap();
        assert!(
            net_files(&t).is_empty(),
            "DEL, GC and STATUS of an unused network create nothing"
        );
        assert_eq!(check("net", &c, "a", "eth0").unwrap_err().code, Code::UnknownContainer);
        add1(&c, "a").unwrap();
        add1(&c, "b").unwrap();
        assert_eq!(check("net", &c, "a", "eth0").unwrap(), vec![ip("10.0.0.2")]);
        del("net", &c, "a", "eth0").unwrap();
        del("net", &c, "a", "eth0").unwrap();
        let err = check("net", &c, "a", "eth0").unwrap_err();
        assert_eq!(err.code, Code::UnknownContainer);
        assert!(err.msg.contains("a (eth0)"), "{err}");
        assert_eq!(reservations(&t), vec!["10.0.0.3"], "b's address is untouched");
    }

    #[test]
    fn gc_frees_what_no_valid_attachment_holds_and_keeps_the_rest() {
        let t = TempDir::new("gc");
        let c = conf(&t, vec![vec![range("10.0.0.0/24")], vec![range("fd00::/64")]]);
        for id in ["a", "b", "c"] {
            add("net", &c, id, "eth0", &[]).unwrap();
        }
        let keep = |id: &str| Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        };
        gc("net", &c, &[keep("a"), keep("c")]).unwrap();
        assert_eq!(reservations(&t), vec!["10.0.0.2", "10.0.0.4", "fd00::2", "fd00::4"]);
        assert_eq!(
            check("net", &c, "a", "eth0").unwrap(),
            vec![ip("10.0.0.2"), ip("fd00::2")]
        );
        assert_eq!(check("net", &c, "b", "eth0").unwrap_err().code, Code::UnknownContainer);
        gc("net", &c, &[]).unwrap();
        assert!(reservations(&t).is_empty());
        assert_eq!(indexes(&t), 0);
    }

    #[test]
    fn concurrent_adds_get_distinct_addresses() {
        let t = TempDir::new("threads");
        let c = one(&t, "10.0.0.0/24");
        let got: Vec<IpAddr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..100)
                .map(|i| {
                    let c = &c;
                    s.spawn(move || add1(c, &format!("pod{i}")))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("add"))
                .collect()
        });
        let distinct: BTreeSet<IpAddr> = got.iter().copied().collect();
        assert_eq!(distinct.len(), 100);
        assert!(distinct.iter().all(|a| c.ranges[0][0].allocatable(*a)));
        assert_eq!(reservations(&t).len(), 100);
        assert_eq!(indexes(&t), 100);
        assert!(!net_files(&t).iter().any(|n| n.starts_with('.')), "no temporaries left");
    }

    #[test]
    fn resolv_conf_fills_the_dns_and_a_missing_one_reserves_nothing() {
        let t = TempDir::new("dns");
        let path = t.path().join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver 10.96.0.10\nsearch svc.cluster.local\noptions ndots:5\n",
        )
        .unwrap();
        let mut c = one(&t, "10.0.0.0/24");
        c.resolv_conf = Some(path.clone());
        let a = add("net", &c, "a", "eth0", &[]).unwrap();
        assert_eq!(a.dns.nameservers, vec!["10.96.0.10"]);
        assert_eq!((a.dns.search.len(), a.dns.options.len()), (1, 1));
        c.resolv_conf = Some(t.path().join("missing"));
        let err = add("net", &c, "b", "eth0", &[]).unwrap_err();
        assert_eq!(err.code, Code::Io);
        assert!(err.msg.contains("resolvConf"), "{err}");
        assert_eq!(reservations(&t), vec!["10.0.0.2"]);
    }

    #[test]
    fn bad_names_and_confs_are_refused_before_touching_the_disk() {
        let t = TempDir::new("names");
        let c = one(&t, "10.0.0.0/24");
        for network in ["", "..", "../etc", "a/b", ".hidden"] {
            let err = add(network, &c, "a", "eth0", &[]).unwrap_err();
            assert_eq!(err.code, Code::InvalidConfig, "{network:?}");
            assert!(err.msg.contains("network name"), "{err}");
        }
        assert_eq!(
            add("net", &c, "../a", "eth0", &[]).unwrap_err().code,
            Code::InvalidEnvironment
        );
        assert_eq!(
            add("net", &c, "a", "e/0", &[]).unwrap_err().code,
            Code::InvalidEnvironment
        );
        let mut empty = c.clone();
        empty.ranges.clear();
        assert_eq!(
            add("net", &empty, "a", "eth0", &[]).unwrap_err().code,
            Code::InvalidConfig
        );
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn host_local_plugin_serves_every_command() {
        let t = TempDir::new("plugin");
        let netconf = |extra: serde_json::Value| {
            let mut v = serde_json::json!({
                "cniVersion": "1.1.0", "name": "net", "type": "host-local",
                "ipam": {"type": "host-local", "subnet": "10.0.0.0/24", "dataDir": t.path(),
                         "routes": [{"dst": "0.0.0.0/0"}]}
            });
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            NetConf::parse(v.to_string().as_bytes()).unwrap()
        };
        let inv = |cmd: &str, args: &str| {
            let env = [
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", args),
            ];
            Invocation::from_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap()
        };
        let conf = netconf(serde_json::json!({}));
        let r = HostLocal.add(&inv("ADD", "IP=10.0.0.9"), &conf).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.9/24");
        assert_eq!((r.ips[0].interface, r.interfaces.len(), r.routes.len()), (None, 0, 1));
        HostLocal.check(&inv("CHECK", ""), &conf).unwrap();
        HostLocal.status(&conf).unwrap();
        let bad = HostLocal.add(&inv("ADD", "IP=10.0.0.x"), &conf).unwrap_err();
        assert_eq!(bad.code, Code::InvalidEnvironment);
        let keep = netconf(serde_json::json!({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}));
        HostLocal.gc(&keep).unwrap();
        HostLocal.check(&inv("CHECK", ""), &conf).unwrap();
        HostLocal
            .gc(&netconf(serde_json::json!({"cni.dev/valid-attachments": []})))
            .unwrap();
        assert_eq!(
            HostLocal.check(&inv("CHECK", ""), &conf).unwrap_err().code,
            Code::UnknownContainer
        );
        let r = HostLocal.add(&inv("ADD", "IP=10.0.0.10/24"), &conf).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.10/24");
        HostLocal.del(&inv("DEL", ""), &conf).unwrap();
        HostLocal.del(&inv("DEL", ""), &conf).unwrap();
        assert!(reservations(&t).is_empty());
    }
}
