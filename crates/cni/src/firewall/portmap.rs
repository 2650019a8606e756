//! Port mappings (hostPort): DNAT maps keyed on protocol and port (and the host address, for mappings bound
//! to one), hairpin masquerade for a pod reaching its own mapping, and stale UDP conntrack entries cleared.

use super::{Change, Element};
use crate::spec::config::PortMapping;
use crate::spec::{CniError, Result};
use std::net::IpAddr;
use weft_netlink::conntrack;

/// A mapping, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: &'static str,
    pub host_ip: Option<IpAddr>,
}

impl Mapping {
    pub fn parse(m: &PortMapping) -> Result<Mapping> {
        let bad = |msg: String| CniError::config(format!("portMappings: {msg}"));
        if m.host_port == 0 {
            return Err(bad("hostPort must be 1-65535, not 0".into()));
        }
        if m.container_port == 0 {
            return Err(bad("containerPort must be 1-65535, not 0".into()));
        }
        let protocol = match m.protocol.to_ascii_lowercase().as_str() {
            "tcp" | "" => "tcp",
            "udp" => "udp",
            "sctp" => "sctp",
            other => return Err(bad(format!("protocol {other:?} is not tcp, udp or sctp"))),
        };
        let host_ip = match m.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => None,
            text => Some(
                text.parse()
                    .map_err(|_| bad(format!("hostIP {text:?} is not an IP address")))?,
            ),
        };
        Ok(Mapping {
            host_port: m.host_port,
            container_port: m.container_port,
            protocol,
            host_ip,
        })
    }
}

impl Change {
    /// DNAT `mappings` to the pod's addresses of the same family; with `snat`, a pod reaching its own
    /// mapping through a node address is masqueraded so the reply comes back through the node.
    pub fn port_mappings(&mut self, mappings: &[Mapping], pod_ips: &[IpAddr], snat: bool) {
        for pod in pod_ips {
            let v = if pod.is_ipv4() { "4" } else { "6" };
            let mut any = false;
            for m in mappings {
                let target = format!("{} . {}", pod, m.container_port);
                match m.host_ip {
                    Some(host) if host.is_ipv4() == pod.is_ipv4() => {
                        self.element(
                            &format!("hostip-ports{v}"),
                            format!("{host} . {} . {} : {target}", m.protocol, m.host_port),
                        );
                    }
                    Some(_) => continue,
                    None => self.element(
                        &format!("hostports{v}"),
                        format!("{} . {} : {target}", m.protocol, m.host_port),
                    ),
                }
                any = true;
            }
            if snat && any {
                self.element(&format!("hairpin{v}"), format!("{pod} . {pod}"));
            }
        }
    }
}

/// Deletes conntrack entries for the UDP host ports among `elements`, so a client whose flow was set up
/// before the mapping changed is not kept on a stale (or black-holed) destination.
pub fn flush_udp_conntrack(elements: &[Element]) -> Result<()> {
    for e in elements {
        let key = e.text.split(" : ").next().unwrap_or_default();
        let fields: Vec<&str> = key.split(" . ").collect();
        let (proto, port) = match fields.as_slice() {
            [proto, port] | [_, proto, port] => (*proto, *port),
            _ => continue,
        };
        if proto != "udp" || !e.set.contains("ports") {
            continue;
        }
        // Nothing matched is not an error; only failing to run conntrack at all is.
        conntrack::delete(&["-p", "udp", "--orig-port-dst", port])
            .map_err(|err| CniError::io("cannot run conntrack (is the conntrack package installed?)", err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(host_port: u16, container_port: u16, protocol: &str, host_ip: &str) -> PortMapping {
        PortMapping {
            host_port,
            container_port,
            protocol: protocol.into(),
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn bad_mappings_name_the_field() {
        for (m, needle) in [
            (pm(0, 80, "tcp", ""), "hostPort"),
            (pm(80, 0, "tcp", ""), "containerPort"),
            (pm(80, 80, "icmp", ""), "protocol"),
            (pm(80, 80, "tcp", "nope"), "hostIP"),
        ] {
            assert!(Mapping::parse(&m).unwrap_err().msg.contains(needle), "{m:?}");
        }
        assert_eq!(Mapping::parse(&pm(80, 8080, "UDP", "0.0.0.0")).unwrap().protocol, "udp");
    }

    #[test]
    fn mappings_become_map_elements_per_family() {
        let ms: Vec<Mapping> = [
            pm(8080, 80, "tcp", ""),
            pm(5353, 53, "udp", "192.168.77.2"),
            pm(9090, 90, "tcp", "fd00::1"),
        ]
        .iter()
        .map(|m| Mapping::parse(m).unwrap())
        .collect();
        let mut c = Change::default();
        c.port_mappings(
            &ms,
            &["10.244.0.5".parse().unwrap(), "fd00:10::5".parse().unwrap()],
            true,
        );
        let text: Vec<String> = c.elements.iter().map(|e| format!("{} {}", e.set, e.text)).collect();
        assert_eq!(
            text,
            [
                "hostports4 tcp . 8080 : 10.244.0.5 . 80",
                "hostip-ports4 192.168.77.2 . udp . 5353 : 10.244.0.5 . 53",
                "hairpin4 10.244.0.5 . 10.244.0.5",
                "hostports6 tcp . 8080 : fd00:10::5 . 80",
                "hostip-ports6 fd00::1 . tcp . 9090 : fd00:10::5 . 90",
                "hairpin6 fd00:10::5 . fd00:10::5",
            ]
        );
    }
}
