//! host-local's configuration, as the reference plugin reads it: `ranges` (one or more range sets, so one
//! address per set: dual stack), or the legacy single range at the top of `ipam`.

use crate::spec::result::Route;
use crate::spec::{CniError, NetConf, Result};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
}

/// Ranges of one address family; an attachment gets one address from each set.
pub type RangeSet = Vec<Range>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConf {
    #[serde(rename = "type")]
    _kind: String,
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<Route>,
    data_dir: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRange {
    subnet: String,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub fn from_u128(value: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((value as u32).into())
    } else {
        IpAddr::V6(value.into())
    }
}

fn bad(msg: String) -> CniError {
    CniError::config(format!("ipam: {msg}"))
}

impl Range {
    fn parse(raw: RawRange) -> Result<Range> {
        let subnet: IpNet = raw
            .subnet
            .parse()
            .map_err(|_| bad(format!("subnet {:?} is not a CIDR", raw.subnet)))?;
        let subnet = subnet.trunc();
        let v4 = subnet.addr().is_ipv4();
        let (net, last) = (to_u128(subnet.network()), to_u128(subnet.broadcast()));
        // IPv4 keeps network and broadcast out; IPv6 only the subnet-router anycast address (the network).
        let usable_last = if v4 { last.saturating_sub(1) } else { last };
        if usable_last < net + 2 {
            return Err(bad(format!(
                "subnet {subnet} is too small: it has no address besides the gateway"
            )));
        }
        let addr = |field: &str, text: &Option<String>, default: u128| -> Result<IpAddr> {
            let Some(text) = text else {
                return Ok(from_u128(default, v4));
            };
            let ip: IpAddr = text
                .parse()
                .map_err(|_| bad(format!("{field} {text:?} is not an IP address")))?;
            if ip.is_ipv4() != v4 || !subnet.contains(&ip) {
                return Err(bad(format!("{field} {ip} is outside subnet {subnet}")));
            }
            Ok(ip)
        };
        let gateway = addr("gateway", &raw.gateway, net + 1)?;
        let start = addr("rangeStart", &raw.range_start, net + 1)?;
        let end = addr("rangeEnd", &raw.range_end, usable_last)?;
        if to_u128(start) > to_u128(end) {
            return Err(bad(format!("rangeStart {start} is after rangeEnd {end}")));
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// Whether `ip` may be handed out from this range.
    pub fn allocatable(&self, ip: IpAddr) -> bool {
        let v = to_u128(ip);
        ip.is_ipv4() == self.subnet.addr().is_ipv4()
            && (to_u128(self.start)..=to_u128(self.end)).contains(&v)
            && ip != self.gateway
            && v != to_u128(self.subnet.network())
            && !(self.subnet.addr().is_ipv4() && v == to_u128(self.subnet.broadcast()))
    }

    pub fn size(&self) -> u128 {
        to_u128(self.end) - to_u128(self.start) + 1
    }

    /// How many addresses this range can hand out.
    pub fn capacity(&self) -> u128 {
        let mut excluded = vec![self.gateway, self.subnet.network()];
        if self.subnet.addr().is_ipv4() {
            excluded.push(self.subnet.broadcast());
        }
        excluded.sort();
        excluded.dedup();
        let inside = excluded
            .iter()
            .filter(|ip| (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(**ip)))
            .count();
        self.size() - inside as u128
    }
}

impl IpamConf {
    /// Reads `ipam` from the network configuration; unknown keys are code 2, bad values code 7.
    pub fn from_netconf(conf: &NetConf) -> Result<IpamConf> {
        let value = conf.raw.get("ipam").ok_or_else(|| bad("\"ipam\" is missing".into()))?;
        let raw: RawConf = crate::spec::config::typed(value.clone(), "ipam")?;
        let mut sets: Vec<RangeSet> = Vec::new();
        if let Some(subnet) = raw.subnet {
            sets.push(vec![Range::parse(RawRange {
                subnet,
                range_start: raw.range_start,
                range_end: raw.range_end,
                gateway: raw.gateway,
            })?]);
        } else if raw.range_start.is_some() || raw.range_end.is_some() || raw.gateway.is_some() {
            return Err(bad("rangeStart, rangeEnd and gateway need a subnet".into()));
        }
        for set in raw.ranges {
            sets.push(set.into_iter().map(Range::parse).collect::<Result<_>>()?);
        }
        let conf = IpamConf {
            ranges: sets,
            routes: raw.routes,
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            resolv_conf: raw.resolv_conf,
        };
        conf.validate()?;
        Ok(conf)
    }

    /// One range from a pod CIDR, gateway at its first address (the `weft` type's node config).
    pub fn single(subnet: IpNet, data_dir: PathBuf) -> Result<IpamConf> {
        let range = Range::parse(RawRange {
            subnet: subnet.to_string(),
            range_start: None,
            range_end: None,
            gateway: None,
        })?;
        Ok(IpamConf {
            ranges: vec![vec![range]],
            routes: Vec::new(),
            data_dir,
            resolv_conf: None,
        })
    }

    fn validate(&self) -> Result<()> {
        if self.ranges.is_empty() || self.ranges.iter().any(Vec::is_empty) {
            return Err(bad("no ranges: set \"subnet\" or \"ranges\"".into()));
        }
        let all: Vec<&Range> = self.ranges.iter().flatten().collect();
        for set in &self.ranges {
            if set
                .iter()
                .any(|r| r.subnet.addr().is_ipv4() != set[0].subnet.addr().is_ipv4())
            {
                return Err(bad(format!(
                    "range set starting with {} mixes IPv4 and IPv6",
                    set[0].subnet
                )));
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let same_family = a.start.is_ipv4() == b.start.is_ipv4();
                if same_family && to_u128(a.start) <= to_u128(b.end) && to_u128(b.start) <= to_u128(a.end) {
                    return Err(bad(format!(
                        "ranges {}-{} and {}-{} overlap",
                        a.start, a.end, b.start, b.end
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Code;

    fn parse(ipam: serde_json::Value) -> Result<IpamConf> {
        let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "ipam": ipam});
        IpamConf::from_netconf(&NetConf::parse(conf.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn defaults_follow_the_reference_plugin() {
        let c = parse(serde_json::json!({"type": "host-local", "subnet": "10.1.2.0/24"})).unwrap();
        let r = &c.ranges[0][0];
        assert_eq!(
            (r.start.to_string(), r.end.to_string(), r.gateway.to_string()),
            ("10.1.2.1".into(), "10.1.2.254".into(), "10.1.2.1".into())
        );
        assert!(!r.allocatable(r.gateway));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/33"}),
                Code::InvalidConfig,
                "subnet",
            ),
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/32"}),
                Code::InvalidConfig,
                "too small",
            ),
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}),
                Code::InvalidConfig,
                "rangeStart",
            ),
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24", "rangeEnd": "x"}),
                Code::InvalidConfig,
                "rangeEnd",
            ),
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24", "gateway": "fd00::1"}),
                Code::InvalidConfig,
                "gateway",
            ),
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.3"}),
                Code::InvalidConfig,
                "after",
            ),
            (
                serde_json::json!({"type": "host-local"}),
                Code::InvalidConfig,
                "no ranges",
            ),
            (
                serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
                Code::InvalidConfig,
                "overlap",
            ),
            (
                serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
                Code::InvalidConfig,
                "mixes",
            ),
            (
                serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24", "bogus": 1}]]}),
                Code::UnsupportedField,
                "bogus",
            ),
            (
                serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24", "dataDirr": "/x"}),
                Code::UnsupportedField,
                "dataDirr",
            ),
        ];
        for (ipam, code, needle) in cases {
            let err = parse(ipam.clone()).unwrap_err();
            assert_eq!(err.code, code, "{ipam}: {err}");
            assert!(err.msg.contains(needle), "{ipam}: {err}");
        }
    }

    #[test]
    fn dual_stack_is_two_range_sets() {
        let c = parse(serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/120"}]]})).unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert_eq!(c.ranges[1][0].end.to_string(), "fd00::ff");
    }
}
