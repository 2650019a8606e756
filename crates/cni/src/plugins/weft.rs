//! The `weft` type: everything a node needs for a pod in one exec. The pod gets a veth on the node's
//! bridge, an address from the node's pod CIDR, masquerade for traffic leaving the cluster CIDR, hairpin,
//! its port mappings and bandwidth limits (runtime capabilities). Masquerade and port mappings are one nft
//! transaction. The node's settings come from a small file the node agent writes (`nodeConfig`).

use super::Plugin;
use super::bandwidth::{ifb_name, shape, validate};
use super::bridge::{Settings, attach_pod, check_pod, first_of, remove_pod_link};
use crate::attach;
use crate::firewall::portmap::{Mapping, flush_udp_conntrack};
use crate::firewall::{Change, undo};
use crate::ipam::{self, config::IpamConf};
use crate::journal::{Journal, remove_links};
use crate::spec::result::{Dns, Interface, IpConfig, Route};
use crate::spec::{CniError, CniResult, Code, Invocation, NetConf, Result};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use weft_netlink::{Handle, Netns};

pub const DEFAULT_NODE_CONFIG: &str = "/run/weft/node.json";
pub(crate) const FIREWALL: &str = "weft";
const VETH: &str = "veth";
const IFB: &str = "ifb";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WeftConf {
    #[serde(default)]
    node_config: Option<PathBuf>,
}

/// What the node agent writes for weft-cni.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's share of the cluster CIDR; pods get addresses from it, the bridge its first address.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: IpNet,
    /// Pod traffic to anything outside it is masqueraded to the node's address.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: IpNet,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Pod MTU: the uplink's, less the overlay's overhead (VXLAN: 50).
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Root of weft-cni's state on this node (IPAM and journals).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// DNS for the result (kubelet writes the pod's resolv.conf itself; runtimes without kubelet use this).
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub attachment: Mode,
}

/// How pods hang off the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A veth on the node's bridge; the bridge holds the gateway address (flannel's layout).
    #[default]
    Bridge,
    /// A veth with a /32 route on the node and no bridge; the pod's gateway is the link-local 169.254.1.1
    /// (Calico's layout). All pod traffic, same-node too, is routed by the node.
    Routed,
}

/// The routed mode's gateway, resolved by a permanent neighbour entry to the node's end of the veth.
const ROUTED_GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);

fn default_bridge() -> String {
    "weft0".into()
}

fn default_mtu() -> u32 {
    1500
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(crate::state::DEFAULT_STATE_DIR)
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read(path).map_err(|e| {
            CniError::new(
                Code::NotAvailable,
                format!(
                    "node config {} is not readable (is the weft agent running?)",
                    path.display()
                ),
            )
            .with_details(e)
        })?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| CniError::config(format!("node config {} is not JSON", path.display())).with_details(e))?;
        let node: NodeConfig = crate::spec::config::typed(value, &format!("node config {}", path.display()))?;
        if !node.cluster_cidr.contains(&node.pod_cidr) {
            return Err(CniError::config(format!(
                "node config: podCIDR {} is not inside clusterCIDR {}",
                node.pod_cidr, node.cluster_cidr
            )));
        }
        if node.attachment == Mode::Routed && !node.pod_cidr.addr().is_ipv4() {
            return Err(CniError::config(
                "node config: the routed attachment is IPv4-only; use bridge for IPv6",
            ));
        }
        crate::spec::env::validate_ifname(&node.bridge).map_err(|_| {
            CniError::config(format!(
                "node config: bridge {:?} is not an interface name",
                node.bridge
            ))
        })?;
        if !(576..=65535).contains(&node.mtu) {
            return Err(CniError::config(format!(
                "node config: mtu {} is outside 576-65535",
                node.mtu
            )));
        }
        Ok(node)
    }

    fn ipam(&self) -> Result<IpamConf> {
        IpamConf::single(self.pod_cidr.trunc(), None, self.state_dir.join("ipam"))
    }

    fn journal(&self, kind: &str, conf: &NetConf, inv: &Invocation) -> Result<Journal> {
        Journal::new(&self.state_dir, &conf.name, kind, &inv.container_id, &inv.ifname)
    }
}

fn node(conf: &NetConf) -> Result<NodeConfig> {
    let c: WeftConf = conf.plugin("weft")?;
    NodeConfig::load(&c.node_config.unwrap_or_else(|| PathBuf::from(DEFAULT_NODE_CONFIG)))
}

pub struct Weft;

impl Plugin for Weft {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult> {
        let node = node(conf)?;
        let rc = conf.runtime_config()?;
        let mappings: Vec<Mapping> = rc.port_mappings.iter().map(Mapping::parse).collect::<Result<_>>()?;
        let limits = rc.bandwidth.unwrap_or_default();
        validate(&limits)?;
        let pod_ns = Netns::open(&inv.netns)?;
        let ipam_conf = node.ipam()?;
        let alloc = ipam::add(
            &conf.name,
            &ipam_conf,
            &inv.container_id,
            &inv.ifname,
            &ipam::requested_ips(inv, conf)?,
        )?;
        let (mut ips, mut routes) = (alloc.ips, alloc.routes);
        let host_name = attach::host_veth_name(&inv.container_id, &inv.ifname);
        let done = (|| {
            let veth_journal = node.journal(VETH, conf, inv)?;
            let settings = Settings {
                bridge: &node.bridge,
                veth_journal: &veth_journal,
                mtu: node.mtu,
                hairpin: true,
                promisc: false,
                gateway: true,
                default_gateway: true,
                force_address: true,
            };
            let (interfaces, ips) = match node.attachment {
                Mode::Bridge => attach_pod(inv, conf, &settings, &pod_ns, &host_name, &mut ips, &mut routes)?,
                Mode::Routed => attach_routed(inv, &node, &veth_journal, &pod_ns, &host_name, &mut ips, &mut routes)?,
            };
            let pod_ips: Vec<_> = ips.iter().map(|ip| ip.address.addr()).collect();
            let mut change = Change::default();
            for ip in &pod_ips {
                change.masquerade(&conf.name, *ip, node.cluster_cidr);
            }
            if !mappings.is_empty() {
                // 127.0.0.1 traffic may leave through the interface that leads to the pod.
                let towards_pod = if node.attachment == Mode::Bridge {
                    node.bridge.as_str()
                } else {
                    host_name.as_str()
                };
                crate::plugins::portmap::allow_localhost(towards_pod)?;
                change.port_mappings(&mappings, &pod_ips, true);
            }
            let elements = change.elements.clone();
            change.commit(&node.journal(FIREWALL, conf, inv)?)?;
            flush_udp_conntrack(&elements)?;
            if limits.ingress_rate > 0 || limits.egress_rate > 0 {
                let mut host = Handle::new()?;
                let veth = host
                    .link_by_name(&host_name)?
                    .ok_or_else(|| CniError::new(Code::Io, format!("{host_name} vanished")))?;
                shape(
                    &mut host,
                    &veth,
                    &limits,
                    &node.journal(IFB, conf, inv)?,
                    &ifb_name(&inv.container_id, &inv.ifname),
                )?;
            }
            Ok((interfaces, ips))
        })();
        match done {
            Ok((interfaces, ips)) => Ok(CniResult {
                interfaces,
                ips,
                routes,
                dns: node.dns.clone(),
            }),
            Err(err) => {
                let _ = teardown(&node, inv, conf);
                Err(err)
            }
        }
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        teardown(&node(conf)?, inv, conf)
    }

    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<()> {
        let node = node(conf)?;
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::config("CHECK needs prevResult"))?;
        check_pod(
            inv,
            (node.attachment == Mode::Bridge).then_some(node.bridge.as_str()),
            &prev,
        )?;
        ipam::check(&conf.name, &node.ipam()?, &inv.container_id, &inv.ifname).map(drop)
    }

    fn gc(&self, conf: &NetConf) -> Result<()> {
        let node = node(conf)?;
        let valid = conf.valid_attachments()?;
        let mut errors = Vec::new();
        errors.extend(ipam::gc(&conf.name, &node.ipam()?, &valid).err());
        for kind in [FIREWALL, VETH, IFB] {
            match Journal::stale(&node.state_dir, &conf.name, kind, &valid) {
                Ok(stale) => {
                    for journal in stale {
                        let undone = if kind == FIREWALL {
                            undo(&journal).and_then(|removed| flush_udp_conntrack(&removed))
                        } else {
                            remove_links(&journal)
                        };
                        errors.extend(undone.err());
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        first_of(errors)
    }

    fn status(&self, conf: &NetConf) -> Result<()> {
        let node = node(conf)?;
        ipam::status(&conf.name, &node.ipam()?)
    }
}

/// The routed attachment: the pod has its address as a /32 and a default route via 169.254.1.1, which a
/// permanent neighbour entry resolves to the node's end of the veth; the node routes the /32 to the veth.
fn attach_routed(
    inv: &Invocation,
    node: &NodeConfig,
    veth_journal: &Journal,
    pod_ns: &Netns,
    host_name: &str,
    ips: &mut [IpConfig],
    routes: &mut Vec<Route>,
) -> Result<(Vec<Interface>, Vec<IpConfig>)> {
    let mut host = Handle::new()?;
    let mut pod = pod_ns.handle()?;
    let v4 = ips
        .iter()
        .find(|ip| ip.address.addr().is_ipv4())
        .map(|ip| ip.address.addr());
    veth_journal.write(&[host_name.to_string()])?;
    let mac = attach::mac_for(v4, &inv.container_id);
    let pair = attach::create_veth(&mut host, &mut pod, pod_ns, host_name, &inv.ifname, node.mtu, mac)?;
    weft_netlink::sysctl::set("net/ipv4/ip_forward", "1")?;
    host.set_up(pair.host.index)?;
    let gateway = IpAddr::V4(ROUTED_GATEWAY);
    let host_mac: [u8; 6] = pair
        .host
        .mac
        .as_slice()
        .try_into()
        .map_err(|_| CniError::internal("host veth MAC", "not 6 bytes"))?;
    for ip in ips.iter_mut() {
        ip.address = IpNet::new(ip.address.addr(), 32).map_err(|e| CniError::internal("pod address", e))?;
        ip.gateway = Some(gateway);
        ip.interface = Some(1);
        host.replace_route(&weft_netlink::Route::on_link(ip.address, pair.host.index))?;
        pod.add_address(pair.pod.index, ip.address)?;
    }
    pod.set_up(pair.pod.index)?;
    pod.set_neighbour(pair.pod.index, gateway, host_mac)?;
    let on_link = IpNet::new(gateway, 32).map_err(|e| CniError::internal("gateway", e))?;
    pod.add_route(&weft_netlink::Route::on_link(on_link, pair.pod.index))?;
    let default =
        IpNet::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0).map_err(|e| CniError::internal("default", e))?;
    let mut via = weft_netlink::Route::via(default, gateway);
    via.oif = Some(pair.pod.index);
    pod.add_route(&via)?;
    routes.push(Route::new(default, Some(gateway)));
    let interfaces = vec![
        attach::interface(&pair.host, ""),
        attach::interface(&pair.pod, &inv.netns),
    ];
    Ok((interfaces, ips.to_vec()))
}

/// Removes everything the attachment has on the node, collecting errors and carrying on.
fn teardown(node: &NodeConfig, inv: &Invocation, conf: &NetConf) -> Result<()> {
    let mut errors = Vec::new();
    errors.extend(
        node.ipam()
            .and_then(|c| ipam::del(&conf.name, &c, &inv.container_id, &inv.ifname))
            .err(),
    );
    errors.extend(
        node.journal(FIREWALL, conf, inv)
            .and_then(|j| undo(&j))
            .and_then(|removed| flush_udp_conntrack(&removed))
            .err(),
    );
    errors.extend(node.journal(IFB, conf, inv).and_then(|j| remove_links(&j)).err());
    errors.extend(
        node.journal(VETH, conf, inv)
            .and_then(|j| remove_pod_link(inv, &j))
            .err(),
    );
    first_of(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<NodeConfig> {
        let path = std::env::temp_dir().join(format!("weft-node-{}-{}.json", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let out = NodeConfig::load(&path);
        std::fs::remove_file(&path).unwrap();
        out
    }

    #[test]
    fn node_config_defaults_and_errors() {
        let n = load(r#"{"podCIDR":"10.244.1.0/24","clusterCIDR":"10.244.0.0/16"}"#).unwrap();
        assert_eq!((n.bridge.as_str(), n.mtu), ("weft0", 1500));
        for (text, needle) in [
            (
                r#"{"podCIDR":"10.245.1.0/24","clusterCIDR":"10.244.0.0/16"}"#,
                "not inside",
            ),
            (
                r#"{"podCIDR":"10.244.1.0/24","clusterCIDR":"10.244.0.0/16","mtu":10}"#,
                "mtu",
            ),
            (
                r#"{"podCIDR":"10.244.1.0/24","clusterCIDR":"10.244.0.0/16","brige":"x"}"#,
                "brige",
            ),
            (r#"{"podCIDR":"banana","clusterCIDR":"10.244.0.0/16"}"#, "podCIDR"),
            ("{", "not JSON"),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        let missing = NodeConfig::load(Path::new("/nonexistent/weft/node.json")).unwrap_err();
        assert_eq!(missing.code, Code::NotAvailable);
    }
}
