//! host-local IPAM: addresses from configured ranges, remembered in files on the node. It runs inside
//! weft-cni's own process when the bridge or weft type uses it, and as the `host-local` type for runtimes.

pub mod config;
pub mod store;

use crate::plugins::Plugin;
use crate::spec::config::Attachment;
use crate::spec::result::{Dns, IpConfig, Route};
use crate::spec::{CniError, CniResult, Code, Invocation, NetConf, Result};
use config::{IpamConf, Range, from_u128, to_u128};
use ipnet::IpNet;
use std::net::IpAddr;
use store::Store;

/// What an ADD hands out.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn ip_config(range: &Range, ip: IpAddr) -> Result<IpConfig> {
    let address = IpNet::new(ip, range.subnet.prefix_len()).map_err(|e| CniError::internal("address prefix", e))?;
    Ok(IpConfig {
        address,
        gateway: Some(range.gateway),
        interface: None,
    })
}

fn range_of(conf: &IpamConf, ip: IpAddr) -> Option<(usize, &Range)> {
    conf.ranges
        .iter()
        .enumerate()
        .find_map(|(i, set)| set.iter().find(|r| r.subnet.contains(&ip)).map(|r| (i, r)))
}

pub fn add(
    network: &str,
    conf: &IpamConf,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Allocation> {
    let store = Store::open(&conf.data_dir, network)?;
    let mut ips = Vec::new();
    if let Some(existing) = store.attachment(container_id, ifname)? {
        // A retried ADD gets what it already has.
        for ip in existing {
            let (_, range) = range_of(conf, ip)
                .ok_or_else(|| CniError::config(format!("reserved {ip} is in no configured range")))?;
            ips.push(ip_config(range, ip)?);
        }
    } else {
        for ip in requested {
            if range_of(conf, *ip).is_none_or(|(_, r)| !r.allocatable(*ip)) {
                return Err(CniError::config(format!(
                    "requested IP {ip} is not in any allocatable range"
                )));
            }
        }
        let mut taken: Vec<IpAddr> = Vec::new();
        let outcome = allocate_sets(&store, conf, container_id, ifname, requested, &mut taken);
        if let Err(e) = outcome.and_then(|()| store.write_attachment(container_id, ifname, &taken)) {
            for ip in &taken {
                let _ = store.release(*ip);
            }
            return Err(e);
        }
        for ip in taken {
            let (set, range) =
                range_of(conf, ip).ok_or_else(|| CniError::internal("allocation", "address outside ranges"))?;
            store.set_last_reserved(set, ip)?;
            ips.push(ip_config(range, ip)?);
        }
    }
    let dns = match &conf.resolv_conf {
        Some(path) => parse_resolv_conf(
            &std::fs::read_to_string(path)
                .map_err(|e| CniError::io(format!("cannot read resolvConf {}", path.display()), e))?,
        ),
        None => Dns::default(),
    };
    Ok(Allocation {
        ips,
        routes: conf.routes.clone(),
        dns,
    })
}

/// One address per range set: the requested one if any, else the next free after the last reserved.
fn allocate_sets(
    store: &Store,
    conf: &IpamConf,
    cid: &str,
    ifname: &str,
    requested: &[IpAddr],
    taken: &mut Vec<IpAddr>,
) -> Result<()> {
    for (i, set) in conf.ranges.iter().enumerate() {
        if let Some(ip) = requested.iter().find(|ip| set.iter().any(|r| r.subnet.contains(*ip))) {
            if !store.reserve(*ip, cid, ifname)? {
                let holder = store.owner(*ip)?.map(|(c, _)| c).unwrap_or_default();
                return Err(CniError::config(format!(
                    "requested IP {ip} is already reserved by container {holder}"
                )));
            }
            taken.push(*ip);
            continue;
        }
        let ip = next_free(store, set, store.last_reserved(i)?, cid, ifname)?.ok_or_else(|| {
            let subnets: Vec<String> = set.iter().map(|r| r.subnet.to_string()).collect();
            CniError::new(
                Code::Internal,
                format!("no free address in range set {}", subnets.join(", ")),
            )
        })?;
        taken.push(ip);
    }
    Ok(())
}

/// Probes candidates in order, starting after `last`, wrapping once around the set.
fn next_free(store: &Store, set: &[Range], last: Option<IpAddr>, cid: &str, ifname: &str) -> Result<Option<IpAddr>> {
    let start = last.and_then(|l| {
        set.iter()
            .position(|r| (to_u128(r.start)..=to_u128(r.end)).contains(&to_u128(l)))
            .map(|i| (i, to_u128(l) + 1))
    });
    let (first_range, first_value) = start.unwrap_or((0, to_u128(set[0].start)));
    let total: u128 = set.iter().map(Range::size).sum();
    let (mut idx, mut value) = (first_range, first_value);
    for _ in 0..=total {
        let range = &set[idx];
        if value > to_u128(range.end) {
            idx = (idx + 1) % set.len();
            value = to_u128(set[idx].start);
            continue;
        }
        let ip = from_u128(value, range.start.is_ipv4());
        if range.allocatable(ip) && store.reserve(ip, cid, ifname)? {
            return Ok(Some(ip));
        }
        value += 1;
    }
    Ok(None)
}

pub fn del(network: &str, conf: &IpamConf, container_id: &str, ifname: &str) -> Result<()> {
    Store::open(&conf.data_dir, network)?.remove_attachment(container_id, ifname)
}

pub fn check(network: &str, conf: &IpamConf, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    Store::open(&conf.data_dir, network)?
        .attachment(container_id, ifname)?
        .ok_or_else(|| {
            CniError::new(
                Code::UnknownContainer,
                format!("no addresses are reserved for {container_id}/{ifname}"),
            )
        })
}

pub fn gc(network: &str, conf: &IpamConf, valid: &[Attachment]) -> Result<()> {
    Store::open(&conf.data_dir, network)?.gc(valid)
}

/// Unavailable (50) when any range set has no free address left.
pub fn status(network: &str, conf: &IpamConf) -> Result<()> {
    let reserved = Store::open(&conf.data_dir, network)?.reserved()?;
    for set in &conf.ranges {
        let capacity: u128 = set.iter().map(Range::capacity).sum();
        let used = reserved
            .iter()
            .filter(|ip| set.iter().any(|r| r.allocatable(**ip)))
            .count() as u128;
        if used >= capacity {
            let subnets: Vec<String> = set.iter().map(|r| r.subnet.to_string()).collect();
            return Err(CniError::new(
                Code::NotAvailable,
                format!("address pool {} is exhausted ({used} reserved)", subnets.join(", ")),
            ));
        }
    }
    Ok(())
}

/// resolv.conf → the result's DNS: nameserver, domain, search, options.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(String::from)),
            Some("domain") => dns.domain = words.next().unwrap_or_default().to_string(),
            Some("search") => dns.search = words.map(String::from).collect(),
            Some("options") => dns.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    dns
}

/// Addresses asked for through the `ips` capability, `args.cni.ips` or CNI_ARGS `IP=` (comma separated).
pub fn requested_ips(inv: &Invocation, conf: &NetConf) -> Result<Vec<IpAddr>> {
    let mut ips = conf.requested_ips()?;
    if let Some(list) = inv.args.get("IP") {
        for ip in list.split(',') {
            ips.push(
                ip.parse()
                    .map_err(|_| CniError::env(format!("CNI_ARGS IP={ip:?} is not an IP address")))?,
            );
        }
    }
    Ok(ips)
}

/// The `host-local` type, for runtimes and other plugins that call it as a binary.
pub struct HostLocal;

impl Plugin for HostLocal {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult> {
        let a = add(
            &conf.name,
            &IpamConf::from_netconf(conf)?,
            &inv.container_id,
            &inv.ifname,
            &requested_ips(inv, conf)?,
        )?;
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
