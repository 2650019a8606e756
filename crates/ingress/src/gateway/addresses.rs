//! A Gateway's `spec.addresses` (GatewayStaticAddresses): weft gives each Gateway the address of its provisioned
//! LoadBalancer Service, so it honours one requested `IPAddress` (the Service's `spec.loadBalancerIP`, which the
//! load balancer assigns if it can: a lab's from its pool). Other address types are unsupported (the Gateway is
//! not accepted, `UnsupportedAddress`); an address that cannot be used (not an IP, unspecified, loopback,
//! multicast or broadcast, another Service's load balancer address, or more than one asked for) leaves the
//! Gateway not programmed (`AddressNotUsable`). An `IPAddress` without a value asks for any address.

use std::net::IpAddr;
use weft_gateway::api::GatewayAddress;

/// What a Gateway's `spec.addresses` ask of its Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// Any address (none asked for).
    Any,
    /// This one.
    Ip(IpAddr),
    /// An address type weft does not give, and which.
    Unsupported(String),
    /// An address that cannot be used, and why.
    Unusable(String),
}

/// What `addresses` ask for; `in_use` says whether another Service has a load balancer address.
pub fn requested(addresses: &[GatewayAddress], in_use: &dyn Fn(IpAddr) -> bool) -> Requested {
    if let Some(other) = addresses
        .iter()
        .find(|a| a.type_.as_deref().is_some_and(|t| t != "IPAddress"))
    {
        let type_ = other.type_.clone().unwrap_or_default();
        return Requested::Unsupported(format!(
            "address type {type_:?} is not supported: weft gives IP addresses"
        ));
    }
    let asked: Vec<&str> = addresses
        .iter()
        .map(|a| a.value.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    let value = match asked[..] {
        [] => return Requested::Any,
        [value] => value,
        _ => return Requested::Unusable("weft gives a Gateway one address: ask for one".into()),
    };
    let Ok(ip) = value.parse::<IpAddr>() else {
        return Requested::Unusable(format!("{value:?} is not an IP address"));
    };
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast {
        return Requested::Unusable(format!("{ip} cannot be a load balancer's address"));
    }
    if in_use(ip) {
        return Requested::Unusable(format!("{ip} is another Service's load balancer address"));
    }
    Requested::Ip(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(list: &[(Option<&str>, &str)]) -> Requested {
        let addresses: Vec<GatewayAddress> = list
            .iter()
            .map(|(type_, value)| GatewayAddress {
                type_: type_.map(str::to_string),
                value: value.to_string(),
            })
            .collect();
        requested(&addresses, &|ip| ip == "172.18.1.5".parse::<IpAddr>().unwrap())
    }

    #[test]
    fn one_usable_ip_address_is_honoured() {
        assert_eq!(ask(&[]), Requested::Any);
        assert_eq!(ask(&[(Some("IPAddress"), "")]), Requested::Any);
        let ip: IpAddr = "172.18.1.200".parse().unwrap();
        assert_eq!(ask(&[(None, "172.18.1.200")]), Requested::Ip(ip));
        assert_eq!(ask(&[(Some("IPAddress"), "172.18.1.200")]), Requested::Ip(ip));
        // The upstream test's steps: an unsupported type, then an unusable and a usable address, then the usable.
        let steps = [
            vec![
                (Some("test/fake-invalid-type"), "x"),
                (Some("IPAddress"), "0.0.0.0"),
                (Some("IPAddress"), "172.18.1.200"),
            ],
            vec![(Some("IPAddress"), "0.0.0.0"), (Some("IPAddress"), "172.18.1.200")],
        ];
        assert!(matches!(ask(&steps[0]), Requested::Unsupported(_)));
        assert!(matches!(ask(&steps[1]), Requested::Unusable(_)));
        assert!(matches!(
            ask(&[(Some("Hostname"), "gw.example")]),
            Requested::Unsupported(_)
        ));
        for unusable in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "nope",
            "172.18.1.5",
        ] {
            assert!(matches!(ask(&[(None, unusable)]), Requested::Unusable(_)), "{unusable}");
        }
    }
}
