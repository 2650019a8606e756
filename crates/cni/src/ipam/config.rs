//! host-local's configuration, as users write it for the reference plugin: `ranges` (one or more range
//! sets; an attachment gets one address from each, so two sets make dual stack), or the legacy single range
//! at the top of `ipam`. Unknown keys are code 2, bad values code 7, each message naming the field.

use crate::spec::result::{Dns, Route};
use crate::spec::{CniError, NetConf, Result};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

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

/// One range of a subnet. Build it with [`Range::new`]; fields are public for reading and for tests, and
/// [`IpamConf::validate`] re-checks them before anything is allocated.
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
    ranges: Option<Vec<Vec<RawRange>>>,
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

/// The inverse of [`to_u128`]; IPv4 keeps the low 32 bits.
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

/// `ranges[0][1].rangeStart`, or plain `rangeStart` for the legacy top-level range.
fn field(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

impl Range {
    /// A range of `subnet`; missing bounds and gateway take the reference plugin's defaults: gateway and
    /// rangeStart the first address after the network, rangeEnd the last before the broadcast (IPv4) or
    /// the last address (IPv6).
    pub fn new(
        subnet: IpNet,
        range_start: Option<IpAddr>,
        range_end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Range> {
        Self::build("", subnet, range_start, range_end, gateway)
    }

    fn build(
        at: &str,
        subnet: IpNet,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Range> {
        if subnet.trunc() != subnet {
            return Err(bad(format!(
                "{} {subnet} has host bits set: the network is {}",
                field(at, "subnet"),
                subnet.trunc()
            )));
        }
        let v4 = subnet.addr().is_ipv4();
        let net = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast());
        // IPv4 never hands out network and broadcast; IPv6 only keeps the network (subnet-router anycast).
        let usable_last = if v4 { last.saturating_sub(1) } else { last };
        if usable_last < net.saturating_add(2) {
            return Err(bad(format!(
                "{} {subnet} is too small: it has no address besides the gateway",
                field(at, "subnet")
            )));
        }
        let range = Range {
            subnet,
            gateway: gateway.unwrap_or(from_u128(net + 1, v4)),
            start: start.unwrap_or(from_u128(net + 1, v4)),
            end: end.unwrap_or(from_u128(usable_last, v4)),
        };
        range.check(at)?;
        Ok(range)
    }

    fn parse(at: &str, raw: RawRange) -> Result<Range> {
        let subnet: IpNet = raw.subnet.parse().map_err(|_| {
            bad(format!(
                "{} {:?} is not a CIDR (like 10.244.0.0/24)",
                field(at, "subnet"),
                raw.subnet
            ))
        })?;
        let ip = |name: &str, text: Option<String>| -> Result<Option<IpAddr>> {
            text.map(|t| {
                t.parse::<IpAddr>()
                    .map_err(|_| bad(format!("{} {t:?} is not an IP address", field(at, name))))
            })
            .transpose()
        };
        let start = ip("rangeStart", raw.range_start)?;
        let end = ip("rangeEnd", raw.range_end)?;
        let gateway = ip("gateway", raw.gateway)?;
        Self::build(at, subnet, start, end, gateway)
    }

    /// Bounds and gateway inside the subnet, in order, and at least one address to hand out.
    fn check(&self, at: &str) -> Result<()> {
        for (name, ip) in [
            ("rangeStart", self.start),
            ("rangeEnd", self.end),
            ("gateway", self.gateway),
        ] {
            if !self.subnet.contains(&ip) {
                return Err(bad(format!(
                    "{} {ip} is outside subnet {}",
                    field(at, name),
                    self.subnet
                )));
            }
        }
        if to_u128(self.start) > to_u128(self.end) {
            return Err(bad(format!(
                "{} {} is after {} {}",
                field(at, "rangeStart"),
                self.start,
                field(at, "rangeEnd"),
                self.end
            )));
        }
        if self.capacity() == 0 {
            return Err(bad(format!(
                "{} {}-{} has no usable address: it holds only the gateway, network or broadcast address",
                field(at, "rangeStart"),
                self.start,
                self.end
            )));
        }
        Ok(())
    }

    pub fn is_ipv4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// Whether `ip` lies between rangeStart and rangeEnd (allocatable or not).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4() && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    /// Why `ip` in this range may not be handed out, if it may not.
    pub fn reserved_role(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == self.gateway {
            Some("gateway")
        } else if ip == self.subnet.network() {
            Some("network address")
        } else if self.is_ipv4() && ip == self.subnet.broadcast() {
            Some("broadcast address")
        } else {
            None
        }
    }

    /// Whether `ip` may be handed out from this range.
    pub fn allocatable(&self, ip: IpAddr) -> bool {
        self.contains(ip) && self.reserved_role(ip).is_none()
    }

    /// Addresses from rangeStart to rangeEnd.
    pub fn size(&self) -> u128 {
        to_u128(self.end).saturating_sub(to_u128(self.start)).saturating_add(1)
    }

    /// How many addresses this range can hand out.
    pub fn capacity(&self) -> u128 {
        let mut excluded = vec![self.gateway, self.subnet.network()];
        if self.is_ipv4() {
            excluded.push(self.subnet.broadcast());
        }
        excluded.sort();
        excluded.dedup();
        let inside = excluded.iter().filter(|ip| self.contains(**ip)).count() as u128;
        self.size().saturating_sub(inside)
    }

    /// `10.0.0.0/24`, or `10.0.0.0/24 (10.0.0.10-10.0.0.20)` when the bounds are not the defaults.
    pub fn label(&self) -> String {
        let v4 = self.is_ipv4();
        let net = to_u128(self.subnet.network());
        let last = to_u128(self.subnet.broadcast());
        let default_end = if v4 { last.saturating_sub(1) } else { last };
        if to_u128(self.start) == net + 1 && to_u128(self.end) == default_end {
            self.subnet.to_string()
        } else {
            format!("{} ({}-{})", self.subnet, self.start, self.end)
        }
    }
}

/// How error messages name a range set.
pub fn set_label(set: &[Range]) -> String {
    set.iter().map(Range::label).collect::<Vec<_>>().join(", ")
}

impl IpamConf {
    /// Reads `ipam` from the network configuration.
    pub fn from_netconf(conf: &NetConf) -> Result<IpamConf> {
        let raw: RawConf = conf
            .common("ipam")?
            .ok_or_else(|| CniError::config("network configuration has no \"ipam\""))?;
        let mut sets: Vec<RangeSet> = Vec::new();
        if let Some(subnet) = raw.subnet {
            // The reference puts the legacy range first.
            sets.push(vec![Range::parse(
                "",
                RawRange {
                    subnet,
                    range_start: raw.range_start,
                    range_end: raw.range_end,
                    gateway: raw.gateway,
                },
            )?]);
        } else if let Some(name) = [
            ("rangeStart", &raw.range_start),
            ("rangeEnd", &raw.range_end),
            ("gateway", &raw.gateway),
        ]
        .iter()
        .find_map(|(name, v)| v.is_some().then_some(name))
        {
            return Err(bad(format!("{name} needs a subnet next to it")));
        }
        for (i, set) in raw.ranges.unwrap_or_default().into_iter().enumerate() {
            let set = set
                .into_iter()
                .enumerate()
                .map(|(j, r)| Range::parse(&format!("ranges[{i}][{j}]"), r))
                .collect::<Result<RangeSet>>()?;
            sets.push(set);
        }
        // Empty strings are the reference's zero values: the defaults.
        let data_dir = raw
            .data_dir
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let conf = IpamConf {
            ranges: sets,
            routes: raw.routes,
            data_dir,
            resolv_conf: raw.resolv_conf.filter(|p| !p.as_os_str().is_empty()),
        };
        conf.validate()?;
        Ok(conf)
    }

    /// One range over all of `subnet` (the `weft` type's pod CIDR); the gateway defaults to its first
    /// address. Takes `gw`, `Some(gw)` or `None`.
    pub fn single(subnet: IpNet, gateway: impl Into<Option<IpAddr>>, data_dir: impl Into<PathBuf>) -> Result<IpamConf> {
        let range = Range::new(subnet, None, None, gateway.into())?;
        Self::new(vec![vec![range]], Vec::new(), data_dir.into(), None)
    }

    /// A validated configuration built in code.
    pub fn new(
        ranges: Vec<RangeSet>,
        routes: Vec<Route>,
        data_dir: PathBuf,
        resolv_conf: Option<PathBuf>,
    ) -> Result<IpamConf> {
        let conf = IpamConf {
            ranges,
            routes,
            data_dir,
            resolv_conf,
        };
        conf.validate()?;
        Ok(conf)
    }

    /// Everything allocation relies on: non-empty single-family sets of sound, non-overlapping ranges.
    pub fn validate(&self) -> Result<()> {
        if self.ranges.is_empty() {
            return Err(bad("no ranges: set \"subnet\" or \"ranges\"".into()));
        }
        for (i, set) in self.ranges.iter().enumerate() {
            let Some(first) = set.first() else {
                return Err(bad(format!("ranges[{i}] is empty: a range set needs a range")));
            };
            for (j, r) in set.iter().enumerate() {
                r.check(&format!("ranges[{i}][{j}]"))?;
                if r.is_ipv4() != first.is_ipv4() {
                    return Err(bad(format!(
                        "ranges[{i}] mixes IPv4 and IPv6 ({} and {}): use one range set per family",
                        first.subnet, r.subnet
                    )));
                }
            }
        }
        let all: Vec<(String, &Range)> = self
            .ranges
            .iter()
            .enumerate()
            .flat_map(|(i, set)| {
                set.iter()
                    .enumerate()
                    .map(move |(j, r)| (format!("ranges[{i}][{j}]"), r))
            })
            .collect();
        for (k, (at_a, a)) in all.iter().enumerate() {
            for (at_b, b) in &all[k + 1..] {
                if a.is_ipv4() == b.is_ipv4()
                    && to_u128(a.start) <= to_u128(b.end)
                    && to_u128(b.start) <= to_u128(a.end)
                {
                    return Err(bad(format!(
                        "ranges overlap: {at_a} {}-{} and {at_b} {}-{}",
                        a.start, a.end, b.start, b.end
                    )));
                }
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(gw) = route.gw
                && gw.is_ipv4() != route.dst.addr().is_ipv4()
            {
                return Err(bad(format!(
                    "routes[{i}].gw {gw} is not of the family of dst {}",
                    route.dst
                )));
            }
        }
        Ok(())
    }

    /// The result's DNS, from `resolvConf` when set.
    pub fn dns(&self) -> Result<Dns> {
        match &self.resolv_conf {
            None => Ok(Dns::default()),
            Some(path) => read_resolv_conf(path),
        }
    }
}

fn read_resolv_conf(path: &Path) -> Result<Dns> {
    let text =
        std::fs::read(path).map_err(|e| CniError::io(format!("ipam: cannot read resolvConf {}", path.display()), e))?;
    Ok(parse_resolv_conf(&String::from_utf8_lossy(&text)))
}

/// resolv.conf as the reference plugin reads it: nameserver (each), domain (last wins), search and options
/// (accumulated). Comments start with '#' or ';', at a line's start or as a word.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let mut words = line
            .split_whitespace()
            .take_while(|w| !w.starts_with('#') && !w.starts_with(';'));
        let Some(key) = words.next() else { continue };
        let values: Vec<String> = words.map(String::from).collect();
        let Some(first) = values.first() else { continue };
        match key {
            "nameserver" => dns.nameservers.push(first.clone()),
            "domain" => dns.domain = first.clone(),
            "search" => dns.search.extend(values),
            "options" => dns.options.extend(values),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Code;
    use serde_json::json;

    fn parse(ipam: serde_json::Value) -> Result<IpamConf> {
        let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "ipam": ipam});
        IpamConf::from_netconf(&NetConf::parse(conf.to_string().as_bytes()).expect("valid netconf"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn legacy_range_takes_the_reference_defaults() {
        let c = parse(json!({"type": "host-local", "subnet": "10.1.2.0/24"})).unwrap();
        let r = &c.ranges[0][0];
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))
        );
        assert!(!r.allocatable(r.gateway));
        assert_eq!(r.capacity(), 253);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.resolv_conf, None);
        assert!(c.routes.is_empty());
        // The reference accepts the broadcast as rangeEnd; it is still never handed out.
        let c = parse(json!({"type": "host-local", "subnet": "10.1.2.0/24", "rangeEnd": "10.1.2.255"})).unwrap();
        let r = &c.ranges[0][0];
        assert_eq!(
            (r.end, r.capacity(), r.allocatable(r.end)),
            (ip("10.1.2.255"), 253, false)
        );
    }

    #[test]
    fn ipv6_range_ends_at_the_last_address_and_skips_the_network() {
        let c = parse(json!({"type": "host-local", "ranges": [[{"subnet": "fd00::/120"}]]})).unwrap();
        let r = &c.ranges[0][0];
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("fd00::1"), ip("fd00::ff"), ip("fd00::1"))
        );
        assert!(r.allocatable(ip("fd00::ff")));
        assert!(!r.allocatable(ip("fd00::")));
        assert_eq!(r.capacity(), 254);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(json!({
            "type": "host-local",
            "subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.20", "gateway": "10.0.0.254",
            "ranges": [[{"subnet": "fd00::/64", "gateway": "fd00::fe"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::fe"}],
            "dataDir": "/run/ipam", "resolvConf": "/etc/resolv.conf"
        }))
        .unwrap();
        assert_eq!(c.ranges.len(), 2, "legacy range first, then `ranges`");
        let legacy = &c.ranges[0][0];
        assert_eq!(
            (legacy.start, legacy.end, legacy.gateway),
            (ip("10.0.0.10"), ip("10.0.0.20"), ip("10.0.0.254"))
        );
        assert_eq!(legacy.label(), "10.0.0.0/24 (10.0.0.10-10.0.0.20)");
        assert_eq!(c.ranges[1][0].gateway, ip("fd00::fe"));
        assert_eq!(c.ranges[1][0].label(), "fd00::/64");
        assert_eq!(c.routes[1].gw, Some(ip("fd00::fe")));
        assert_eq!(c.data_dir, PathBuf::from("/run/ipam"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
    }

    #[test]
    fn empty_strings_mean_the_defaults_as_in_the_reference() {
        let c = parse(json!({"type": "host-local", "subnet": "10.0.0.0/24", "dataDir": "", "resolvConf": ""})).unwrap();
        assert_eq!((c.data_dir, c.resolv_conf), (PathBuf::from(DEFAULT_DATA_DIR), None));
    }

    #[test]
    fn bad_configs_get_their_code_and_name_the_field() {
        use Code::{InvalidConfig as Bad, UnsupportedField as Unknown};
        let v4 = |extra: serde_json::Value| {
            let mut o = json!({"type": "host-local", "subnet": "10.0.0.0/24"});
            o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            o
        };
        let sets = |ranges: serde_json::Value| json!({"type": "host-local", "ranges": ranges});
        let cases = [
            (
                json!({"type": "host-local", "subnet": "10.0.0.0/33"}),
                Bad,
                "subnet \"10.0.0.0/33\" is not a CIDR",
            ),
            (
                json!({"type": "host-local", "subnet": "10.0.0.1"}),
                Bad,
                "subnet \"10.0.0.1\" is not a CIDR",
            ),
            (
                json!({"type": "host-local", "subnet": "10.0.0.5/24"}),
                Bad,
                "subnet 10.0.0.5/24 has host bits",
            ),
            (
                json!({"type": "host-local", "subnet": "10.0.0.0/31"}),
                Bad,
                "subnet 10.0.0.0/31 is too small",
            ),
            (json!({"type": "host-local", "subnet": "10.0.0.0/32"}), Bad, "too small"),
            (json!({"type": "host-local", "subnet": "fd00::/127"}), Bad, "too small"),
            (
                v4(json!({"rangeStart": "10.0.1.1"})),
                Bad,
                "rangeStart 10.0.1.1 is outside subnet 10.0.0.0/24",
            ),
            (v4(json!({"rangeEnd": "x"})), Bad, "rangeEnd \"x\" is not an IP address"),
            (v4(json!({"rangeEnd": "fd00::1"})), Bad, "rangeEnd fd00::1 is outside"),
            (v4(json!({"gateway": "fd00::1"})), Bad, "gateway fd00::1 is outside"),
            (v4(json!({"gateway": "10.9.0.1"})), Bad, "gateway 10.9.0.1 is outside"),
            (
                v4(json!({"rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.3"})),
                Bad,
                "rangeStart 10.0.0.9 is after rangeEnd",
            ),
            (
                v4(json!({"rangeStart": "10.0.0.1", "rangeEnd": "10.0.0.1"})),
                Bad,
                "no usable address",
            ),
            (json!({"type": "host-local"}), Bad, "no ranges"),
            (json!({"type": "host-local", "ranges": []}), Bad, "no ranges"),
            (sets(json!([[]])), Bad, "ranges[0] is empty"),
            (
                json!({"type": "host-local", "gateway": "10.0.0.1"}),
                Bad,
                "gateway needs a subnet",
            ),
            (
                sets(json!([[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]])),
                Bad,
                "ranges overlap: ranges[0][0]",
            ),
            (
                sets(
                    json!([[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.100"}, {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.100"}]]),
                ),
                Bad,
                "ranges overlap: ranges[0][0] 10.0.0.1-10.0.0.100 and ranges[0][1]",
            ),
            (v4(json!({"ranges": [[{"subnet": "10.0.0.128/25"}]]})), Bad, "overlap"),
            (
                sets(json!([[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]])),
                Bad,
                "ranges[0] mixes IPv4 and IPv6",
            ),
            (
                sets(json!([[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]])),
                Bad,
                "ranges[1][0].rangeStart",
            ),
            (sets(json!([[{"subnet": "10.0.0.0/24", "bogus": 1}]])), Unknown, "bogus"),
            (sets(json!([[{"rangeStart": "10.0.0.1"}]])), Bad, "subnet"),
            (v4(json!({"dataDirr": "/x"})), Unknown, "dataDirr"),
            (
                v4(json!({"routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]})),
                Bad,
                "routes[0].gw",
            ),
            (v4(json!({"routes": [{"dst": "nope"}]})), Bad, "routes"),
            (v4(json!({"dataDir": 5})), Bad, "dataDir"),
            (json!({"subnet": "10.0.0.0/24"}), Bad, "type"),
            (json!("host-local"), Bad, "ipam"),
        ];
        for (ipam, code, needle) in cases {
            let err = parse(ipam.clone()).expect_err(&ipam.to_string());
            assert_eq!(err.code, code, "{ipam}: {err}");
            assert!(err.msg.contains(needle), "{ipam}: {err:?} does not say {needle:?}");
        }
        let no_ipam = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap();
        let err = IpamConf::from_netconf(&no_ipam).unwrap_err();
        assert_eq!((err.code, err.msg.contains("ipam")), (Bad, true), "{err}");
    }

    #[test]
    fn dual_stack_is_two_range_sets() {
        let c =
            parse(json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/120"}]]}))
                .unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert!(c.ranges[0][0].is_ipv4() && !c.ranges[1][0].is_ipv4());
    }

    #[test]
    fn code_built_confs_are_validated_too() {
        let c = IpamConf::single("10.244.3.0/24".parse().unwrap(), None, "/tmp/x").unwrap();
        assert_eq!(c.ranges[0][0].gateway, ip("10.244.3.1"));
        assert_eq!(c.ranges[0][0].end, ip("10.244.3.254"));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let gw = IpamConf::single("10.244.3.0/24".parse().unwrap(), ip("10.244.3.254"), "/tmp/x").unwrap();
        assert_eq!(
            (gw.ranges[0][0].gateway, gw.ranges[0][0].capacity()),
            (ip("10.244.3.254"), 253)
        );
        let err = IpamConf::single("10.244.3.0/31".parse().unwrap(), None, "").unwrap_err();
        assert!(err.msg.contains("too small"), "{err}");
        let err = IpamConf::single("10.244.3.0/24".parse().unwrap(), ip("10.244.4.1"), "").unwrap_err();
        assert!(err.msg.contains("gateway 10.244.4.1 is outside"), "{err}");
        let gw = Range::new("10.0.0.0/29".parse().unwrap(), None, None, Some(ip("10.0.0.6"))).unwrap();
        assert_eq!((gw.gateway, gw.capacity()), (ip("10.0.0.6"), 5));
        let mut broken = c.clone();
        broken.ranges[0][0].end = ip("10.9.9.9");
        assert!(
            broken
                .validate()
                .unwrap_err()
                .msg
                .contains("rangeEnd 10.9.9.9 is outside")
        );
        broken.ranges = vec![vec![]];
        assert!(broken.validate().unwrap_err().msg.contains("ranges[0] is empty"));
    }

    #[test]
    fn range_edges_do_not_overflow() {
        let top = Range::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120".parse().unwrap(),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(top.end, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(top.capacity(), 254);
        let all = Range::new("::/0".parse().unwrap(), None, None, None).unwrap();
        assert_eq!(all.size(), u128::MAX);
        let v4 = Range::new("255.255.255.252/30".parse().unwrap(), None, None, None).unwrap();
        assert_eq!(
            (v4.start, v4.end, v4.capacity()),
            (ip("255.255.255.253"), ip("255.255.255.254"), 1)
        );
    }

    #[test]
    fn resolv_conf_becomes_the_result_dns() {
        let text = "# generated\n; also a comment\nnameserver 10.96.0.10\nnameserver  fd00::a # second\n\
                    domain cluster.local\nsearch default.svc.cluster.local svc.cluster.local\nsearch extra\n\
                    options ndots:5 timeout:1\noptions attempts:2\nsortlist 10.0.0.0\nnameserver\n  \n";
        let dns = parse_resolv_conf(text);
        assert_eq!(dns.nameservers, vec!["10.96.0.10", "fd00::a"]);
        assert_eq!(dns.domain, "cluster.local");
        assert_eq!(
            dns.search,
            vec!["default.svc.cluster.local", "svc.cluster.local", "extra"]
        );
        assert_eq!(dns.options, vec!["ndots:5", "timeout:1", "attempts:2"]);
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("\u{0}\u{ffff} garbage\n#nameserver 1.1.1.1").is_empty());
    }
}
