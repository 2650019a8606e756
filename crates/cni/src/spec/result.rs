//! The ADD result, held in its newest shape and written in whichever version the runtime asked for.

use super::error::{CniError, Code, Result};
use super::version::Version;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its subnet's prefix length, e.g. 10.244.1.5/24.
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    /// The attributes that only 1.1.0 results carry.
    fn strip_to_dst_gw(&self) -> Route {
        Route::new(self.dst, self.gw)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

impl CniResult {
    /// Writes the result in the shape of `version` (the config's `cniVersion`, as given).
    pub fn to_json(&self, version: &str) -> Result<Value> {
        let shape = Version::parse(version)?;
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if shape == Version::V020 {
            for (key, v4) in [("ip4", true), ("ip6", false)] {
                if let Some(ip) = self.ips.iter().find(|ip| ip.address.addr().is_ipv4() == v4) {
                    let routes: Vec<Route> = self
                        .routes
                        .iter()
                        .filter(|r| r.dst.addr().is_ipv4() == v4)
                        .map(Route::strip_to_dst_gw)
                        .collect();
                    let mut obj = json!({ "ip": ip.address.to_string() });
                    if let Some(gw) = ip.gateway {
                        obj["gateway"] = json!(gw.to_string());
                    }
                    if !routes.is_empty() {
                        obj["routes"] = json!(routes);
                    }
                    out.insert(key.into(), obj);
                }
            }
        } else {
            if !self.interfaces.is_empty() {
                out.insert("interfaces".into(), json!(self.interfaces));
            }
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut obj = Map::new();
                    if shape < Version::V100 {
                        let family = if ip.address.addr().is_ipv4() { "4" } else { "6" };
                        obj.insert("version".into(), json!(family));
                    }
                    obj.insert("address".into(), json!(ip.address.to_string()));
                    if let Some(gw) = ip.gateway {
                        obj.insert("gateway".into(), json!(gw.to_string()));
                    }
                    if let Some(idx) = ip.interface {
                        obj.insert("interface".into(), json!(idx));
                    }
                    Value::Object(obj)
                })
                .collect();
            if !ips.is_empty() {
                out.insert("ips".into(), Value::Array(ips));
            }
            let routes: Vec<Route> = if shape < Version::V110 {
                self.routes.iter().map(Route::strip_to_dst_gw).collect()
            } else {
                self.routes.clone()
            };
            if !routes.is_empty() {
                out.insert("routes".into(), json!(routes));
            }
        }
        if !self.dns.is_empty() {
            out.insert("dns".into(), json!(self.dns));
        }
        Ok(Value::Object(out))
    }

    /// Reads a `prevResult` written in any supported version.
    pub fn from_json(value: &Value) -> Result<CniResult> {
        let bad = |what: &str, err: &dyn std::fmt::Display| {
            CniError::new(Code::Decode, format!("prevResult: invalid {what}")).with_details(err)
        };
        let obj = value
            .as_object()
            .ok_or_else(|| CniError::new(Code::Decode, "prevResult must be a JSON object"))?;
        let mut result = CniResult::default();
        if let Some(dns) = obj.get("dns") {
            result.dns = Dns::deserialize(dns).map_err(|e| bad("dns", &e))?;
        }
        if obj.contains_key("ip4") || obj.contains_key("ip6") {
            #[derive(Deserialize)]
            struct Legacy {
                ip: IpNet,
                gateway: Option<IpAddr>,
                #[serde(default)]
                routes: Vec<Route>,
            }
            for key in ["ip4", "ip6"] {
                if let Some(v) = obj.get(key) {
                    let legacy = Legacy::deserialize(v).map_err(|e| bad(key, &e))?;
                    result.ips.push(IpConfig {
                        address: legacy.ip,
                        gateway: legacy.gateway,
                        interface: None,
                    });
                    result.routes.extend(legacy.routes);
                }
            }
            return Ok(result);
        }
        if let Some(v) = obj.get("interfaces") {
            result.interfaces = Vec::deserialize(v).map_err(|e| bad("interfaces", &e))?;
        }
        if let Some(v) = obj.get("ips") {
            #[derive(Deserialize)]
            struct Wire {
                address: IpNet,
                gateway: Option<IpAddr>,
                interface: Option<usize>,
            }
            let ips: Vec<Wire> = Vec::deserialize(v).map_err(|e| bad("ips", &e))?;
            for ip in ips {
                if ip.interface.is_some_and(|i| i >= result.interfaces.len()) {
                    return Err(CniError::new(
                        Code::Decode,
                        format!("prevResult: ip {} names a missing interface", ip.address),
                    ));
                }
                result.ips.push(IpConfig {
                    address: ip.address,
                    gateway: ip.gateway,
                    interface: ip.interface,
                });
            }
        }
        if let Some(v) = obj.get("routes") {
            result.routes = Vec::deserialize(v).map_err(|e| bad("routes", &e))?;
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "0a:58:0a:f4:00:01".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:f4:00:05".into(),
                    mtu: Some(1450),
                    sandbox: "/run/netns/pod".into(),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.244.0.5/24".parse().unwrap(),
                    gateway: Some("10.244.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                mtu: Some(1400),
                ..Route::new("0.0.0.0/0".parse().unwrap(), Some("10.244.0.1".parse().unwrap()))
            }],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn v110_keeps_route_attributes_and_has_no_ip_version() {
        let v = sample().to_json("1.1.0").unwrap();
        assert_eq!(v["routes"][0]["mtu"], 1400);
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["interfaces"][1]["sandbox"], "/run/netns/pod");
    }

    #[test]
    fn v100_drops_route_attributes() {
        let v = sample().to_json("1.0.0").unwrap();
        assert!(v["routes"][0].get("mtu").is_none());
        assert_eq!(v["cniVersion"], "1.0.0");
    }

    #[test]
    fn v031_and_v040_tag_each_ip_with_its_family() {
        for version in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_json(version).unwrap();
            assert_eq!(v["ips"][0]["version"], "4", "{version}");
            assert_eq!(v["ips"][1]["version"], "6", "{version}");
            assert_eq!(v["ips"][0]["interface"], 1);
        }
    }

    #[test]
    fn v020_uses_ip4_and_ip6_objects() {
        for version in ["0.1.0", "0.2.0"] {
            let v = sample().to_json(version).unwrap();
            assert_eq!(v["ip4"]["ip"], "10.244.0.5/24");
            assert_eq!(v["ip4"]["gateway"], "10.244.0.1");
            assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
            assert_eq!(v["ip6"]["ip"], "fd00::5/64");
            assert!(v.get("interfaces").is_none() && v.get("ips").is_none());
        }
    }

    #[test]
    fn every_version_round_trips_addresses_through_prev_result() {
        for version in super::super::version::SUPPORTED {
            let back = CniResult::from_json(&sample().to_json(version).unwrap()).unwrap();
            let addrs: Vec<_> = back.ips.iter().map(|ip| ip.address).collect();
            assert_eq!(
                addrs,
                vec!["10.244.0.5/24".parse::<IpNet>().unwrap(), "fd00::5/64".parse().unwrap()]
            );
        }
    }

    #[test]
    fn prev_result_with_dangling_interface_index_is_refused() {
        let v = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 3}]});
        assert_eq!(CniResult::from_json(&v).unwrap_err().code, Code::Decode);
    }
}
