//! The `bridge` type, configured as the reference plugin is: a veth pair into the pod, its host end on a
//! Linux bridge, addresses from the IPAM plugin, optionally the gateway on the bridge and masquerade.

use super::Plugin;
use crate::attach;
use crate::delegate;
use crate::firewall::masq;
use crate::ipam::{self, config::IpamConf};
use crate::journal::{Journal, remove_links};
use crate::spec::result::{Dns, IpConfig, Route};
use crate::spec::{CniError, CniResult, Code, Command, Invocation, NetConf, Result};
use crate::state::DEFAULT_STATE_DIR;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use weft_netlink::{Netns, sysctl};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BridgeConf {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    /// Where weft-cni keeps its own state (masquerade journal); not a reference-plugin key.
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

const VETH: &str = "veth";

fn default_bridge() -> String {
    "cni0".into()
}

impl BridgeConf {
    fn parse(conf: &NetConf) -> Result<BridgeConf> {
        let mut c: BridgeConf = conf.plugin("bridge")?;
        attach_check_name(&c.bridge)?;
        if c.mtu.is_some_and(|m| !(576..=65535).contains(&m)) {
            return Err(CniError::config(format!(
                "bridge config: mtu {} is outside 576-65535",
                c.mtu.unwrap_or_default()
            )));
        }
        // isDefaultGateway implies isGateway, as in the reference plugin.
        c.is_gateway |= c.is_default_gateway;
        Ok(c)
    }

    fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// Records the host veth's name before it exists, so GC finds it whatever point an ADD died at.
    fn veth_journal(&self, conf: &NetConf, inv: &Invocation) -> Result<Journal> {
        Journal::new(&self.state_dir(), &conf.name, VETH, &inv.container_id, &inv.ifname)
    }
}

fn attach_check_name(name: &str) -> Result<()> {
    crate::spec::env::validate_ifname(name).map_err(|_| {
        CniError::config(format!(
            "bridge config: bridge name {name:?} is not a valid interface name"
        ))
    })
}

/// The IPAM plugin: host-local runs in this process; anything else is executed from CNI_PATH.
enum Ipam {
    HostLocal(IpamConf),
    External(String),
}

impl Ipam {
    fn from(conf: &NetConf) -> Result<Ipam> {
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "type")]
            kind: String,
        }
        let kind = conf
            .common::<Kind>("ipam")?
            .ok_or_else(|| CniError::config("bridge config: \"ipam\" is required"))?
            .kind;
        if kind == "host-local" {
            Ok(Ipam::HostLocal(IpamConf::from_netconf(conf)?))
        } else {
            Ok(Ipam::External(kind))
        }
    }

    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<(Vec<IpConfig>, Vec<Route>, Dns)> {
        match self {
            Ipam::HostLocal(ipam_conf) => {
                let requested = ipam::requested_ips(inv, conf)?;
                let a = ipam::add(&conf.name, ipam_conf, &inv.container_id, &inv.ifname, &requested)?;
                Ok((a.ips, a.routes, a.dns))
            }
            Ipam::External(kind) => {
                let r = delegate::call(kind, Command::Add, inv, conf)?.unwrap_or_default();
                Ok((r.ips, r.routes, r.dns))
            }
        }
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        match self {
            Ipam::HostLocal(c) => ipam::del(&conf.name, c, &inv.container_id, &inv.ifname),
            Ipam::External(kind) => delegate::call(kind, Command::Del, inv, conf).map(drop),
        }
    }
}

pub struct Bridge;

impl Plugin for Bridge {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult> {
        let c = BridgeConf::parse(conf)?;
        let ipam = Ipam::from(conf)?;
        let pod_ns = Netns::open(&inv.netns)?;
        let (mut ips, mut routes, ipam_dns) = ipam.add(inv, conf)?;
        if ips.is_empty() {
            let _ = ipam.del(inv, conf);
            return Err(CniError::new(Code::Internal, "IPAM returned no address"));
        }
        let host_name = attach::host_veth_name(&inv.container_id, &inv.ifname);
        let veth_journal = c.veth_journal(conf, inv)?;
        let settings = Settings {
            bridge: &c.bridge,
            veth_journal: &veth_journal,
            mtu: c.mtu.unwrap_or(1500),
            hairpin: c.hairpin_mode,
            promisc: c.promisc_mode,
            gateway: c.is_gateway,
            default_gateway: c.is_default_gateway,
            force_address: c.force_address,
        };
        let result =
            attach_pod(inv, conf, &settings, &pod_ns, &host_name, &mut ips, &mut routes).and_then(|attached| {
                if conf.common::<bool>("ipMasq")?.unwrap_or(false) {
                    let pods: Vec<(IpAddr, IpNet)> =
                        ips.iter().map(|ip| (ip.address.addr(), ip.address.trunc())).collect();
                    masq::add(&c.state_dir(), &conf.name, &inv.container_id, &inv.ifname, &pods)?;
                }
                Ok(attached)
            });
        let (interfaces, ips) = match result {
            Ok(done) => done,
            Err(err) => {
                // Nothing half-applied: undo in reverse order, keeping the first error.
                let _ = masq::del(&c.state_dir(), &conf.name, &inv.container_id, &inv.ifname);
                if let Ok(mut host) = weft_netlink::Handle::new() {
                    let _ = attach::remove(&mut host, &inv.netns, &inv.ifname, &host_name);
                }
                let _ = c.veth_journal(conf, inv).and_then(|j| j.remove());
                let _ = ipam.del(inv, conf);
                return Err(err);
            }
        };
        let mut dns: Dns = conf.common("dns")?.unwrap_or_default();
        if dns.is_empty() {
            dns = ipam_dns;
        }
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let c = BridgeConf::parse(conf)?;
        let mut errors = Vec::new();
        if let Err(e) = Ipam::from(conf).and_then(|ipam| ipam.del(inv, conf)) {
            errors.push(e);
        }
        if let Err(e) = masq::del(&c.state_dir(), &conf.name, &inv.container_id, &inv.ifname) {
            errors.push(e);
        }
        errors.extend(c.veth_journal(conf, inv).and_then(|j| remove_pod_link(inv, &j)).err());
        first_of(errors)
    }

    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let c = BridgeConf::parse(conf)?;
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::config("CHECK needs prevResult"))?;
        check_pod(inv, Some(&c.bridge), &prev)?;
        if let Ipam::HostLocal(ipam_conf) = Ipam::from(conf)? {
            ipam::check(&conf.name, &ipam_conf, &inv.container_id, &inv.ifname)?;
        }
        Ok(())
    }

    fn gc(&self, conf: &NetConf) -> Result<()> {
        let c = BridgeConf::parse(conf)?;
        let valid = conf.valid_attachments()?;
        let mut errors = Vec::new();
        if let Ipam::HostLocal(ipam_conf) = Ipam::from(conf)?
            && let Err(e) = ipam::gc(&conf.name, &ipam_conf, &valid)
        {
            errors.push(e);
        }
        if let Err(e) = masq::gc(&c.state_dir(), &conf.name, &valid) {
            errors.push(e);
        }
        match Journal::stale(&c.state_dir(), &conf.name, VETH, &valid) {
            Ok(stale) => errors.extend(stale.iter().filter_map(|j| remove_links(j).err())),
            Err(e) => errors.push(e),
        }
        first_of(errors)
    }

    fn status(&self, conf: &NetConf) -> Result<()> {
        BridgeConf::parse(conf)?;
        match Ipam::from(conf)? {
            Ipam::HostLocal(ipam_conf) => ipam::status(&conf.name, &ipam_conf),
            Ipam::External(_) => Ok(()),
        }
    }
}

/// Deletes the pod's link (in its namespace if that still exists, and the host end by name), then the
/// journal that recorded it.
pub fn remove_pod_link(inv: &Invocation, veth_journal: &Journal) -> Result<()> {
    let host_name = attach::host_veth_name(&inv.container_id, &inv.ifname);
    let mut host = weft_netlink::Handle::new()?;
    attach::remove(&mut host, &inv.netns, &inv.ifname, &host_name)?;
    veth_journal.remove()
}

/// Verifies what ADD set up: the bridge, the host veth on it, the pod's interface with its addresses.
pub fn check_pod(inv: &Invocation, bridge_name: Option<&str>, prev: &CniResult) -> Result<()> {
    let mut host = weft_netlink::Handle::new()?;
    let host_name = attach::host_veth_name(&inv.container_id, &inv.ifname);
    let veth = host
        .link_by_name(&host_name)?
        .ok_or_else(|| CniError::new(Code::Internal, format!("host veth {host_name} is missing")))?;
    if let Some(bridge_name) = bridge_name {
        let bridge = host
            .link_by_name(bridge_name)?
            .ok_or_else(|| CniError::new(Code::Internal, format!("bridge {bridge_name} is missing")))?;
        if veth.master != Some(bridge.index) {
            return Err(CniError::new(
                Code::Internal,
                format!("host veth {host_name} is not attached to {bridge_name}"),
            ));
        }
    }
    let mut pod = Netns::open(&inv.netns)?.handle()?;
    let link = pod.link_by_name(&inv.ifname)?.ok_or_else(|| {
        CniError::new(
            Code::Internal,
            format!("interface {} is missing in {}", inv.ifname, inv.netns),
        )
    })?;
    let have: Vec<IpNet> = pod.addresses(link.index)?.into_iter().map(|(_, a)| a).collect();
    for ip in prev.ips.iter().filter(|ip| {
        ip.interface
            .is_none_or(|i| prev.interfaces.get(i).is_some_and(|x| x.name == inv.ifname))
    }) {
        if !have.contains(&ip.address) {
            return Err(CniError::new(
                Code::Internal,
                format!("{} does not have address {}", inv.ifname, ip.address),
            ));
        }
    }
    Ok(())
}

/// Reports the first error, with the others in its details (best-effort teardown keeps going).
pub fn first_of(mut errors: Vec<CniError>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let mut first = errors.remove(0);
    if !errors.is_empty() {
        let rest: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let joined = if first.details.is_empty() {
            rest.join("; ")
        } else {
            format!("{}; {}", first.details, rest.join("; "))
        };
        first.details = joined;
    }
    Err(first)
}

type Attached = (Vec<crate::spec::result::Interface>, Vec<IpConfig>);

/// How a pod is attached to the node's bridge; the bridge type reads it from its config, the weft type
/// from the node's.
pub struct Settings<'a> {
    pub bridge: &'a str,
    /// Where the host veth's name is recorded before the veth exists.
    pub veth_journal: &'a Journal,
    pub mtu: u32,
    pub hairpin: bool,
    pub promisc: bool,
    pub gateway: bool,
    pub default_gateway: bool,
    pub force_address: bool,
}

/// Creates the veth pair (journaled first in `c.veth_journal`), puts it on the bridge, the gateway on the
/// bridge, and the addresses and routes in the pod. Returns the result's interfaces and IPs.
pub fn attach_pod(
    inv: &Invocation,
    conf: &NetConf,
    c: &Settings,
    pod_ns: &Netns,
    host_name: &str,
    ips: &mut [IpConfig],
    routes: &mut Vec<Route>,
) -> Result<Attached> {
    let mut host = weft_netlink::Handle::new()?;
    let mut pod = pod_ns.handle()?;
    let mtu = c.mtu;
    let gw4 = ips
        .iter()
        .find(|ip| ip.address.addr().is_ipv4())
        .and_then(|ip| ip.gateway);
    let bridge = attach::ensure_bridge(&mut host, c.bridge, attach::mac_for(gw4, c.bridge), mtu)?;
    if c.promisc && !bridge.promisc {
        host.set_promisc(bridge.index, true)?;
    }
    let v4 = ips
        .iter()
        .find(|ip| ip.address.addr().is_ipv4())
        .map(|ip| ip.address.addr());
    let mac = match conf
        .runtime_config()?
        .mac
        .or_else(|| inv.args.get("MAC").map(String::from))
    {
        Some(text) => weft_netlink::link::parse_mac(&text)
            .ok_or_else(|| CniError::config(format!("MAC {text:?} is not a MAC address")))?,
        None => attach::mac_for(v4, &inv.container_id),
    };
    c.veth_journal.write(&[host_name.to_string()])?;
    let pair = attach::create_veth(&mut host, &mut pod, pod_ns, host_name, &inv.ifname, mtu, mac)?;
    host.set_master(pair.host.index, bridge.index)?;
    if c.hairpin {
        host.set_hairpin(pair.host.index, true)?;
    }
    host.set_up(pair.host.index)?;

    if c.gateway {
        for ip in ips.iter_mut() {
            let gw = ip
                .gateway
                .ok_or_else(|| CniError::config(format!("isGateway needs a gateway for {}", ip.address)))?;
            let gw_net =
                IpNet::new(gw, ip.address.prefix_len()).map_err(|e| CniError::internal("gateway prefix", e))?;
            attach::ensure_gateway(&mut host, &bridge, gw_net, c.force_address)?;
        }
        if ips.iter().any(|ip| ip.address.addr().is_ipv4()) {
            sysctl::set("net/ipv4/ip_forward", "1")?;
        }
        if ips.iter().any(|ip| ip.address.addr().is_ipv6()) {
            sysctl::set("net/ipv6/conf/all/forwarding", "1")?;
        }
    }
    if c.default_gateway {
        for ip in ips.iter() {
            let default: IpNet = if ip.address.addr().is_ipv4() {
                "0.0.0.0/0".parse()
            } else {
                "::/0".parse()
            }
            .map_err(|e| CniError::internal("default route", e))?;
            if !routes.iter().any(|r| r.dst == default) {
                routes.push(Route::new(default, ip.gateway));
            }
        }
    }
    attach::configure_pod(&mut pod, pair.pod.index, ips, routes)?;
    for ip in ips.iter_mut() {
        ip.interface = Some(2);
    }
    let interfaces = vec![
        attach::interface(&bridge, ""),
        attach::interface(&pair.host, ""),
        attach::interface(&pair.pod, &inv.netns),
    ];
    Ok((interfaces, ips.to_vec()))
}
