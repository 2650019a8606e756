//! Compact forms of the objects a node component holds by the ten thousand and plans from: only the fields the
//! service proxy reads, addresses as `std::net` types, ports as `u16`, conditions as flags. k8s-openapi's
//! EndpointSlice is ~4 KB whatever it holds (every optional field of every endpoint is inline, each address a
//! string in a vector); this one is ~0.6 KB with five endpoints. A component's projection turns objects into
//! these as they arrive (`Object::CompactSlice`); readers take either form through `Object::endpoint_slice`.

use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::net::IpAddr;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An EndpointSlice of IP addresses, as the proxy reads it. Its metadata keeps name, namespace and
/// resourceVersion; the Service it belongs to (its label) is a field of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    /// The `kubernetes.io/service-name` label.
    pub service: Option<Box<str>>,
    pub address_type: AddressType,
    pub ports: Box<[SlicePort]>,
    /// The endpoints with an IP address (an FQDN slice has none).
    pub endpoints: Box<[Endpoint]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressType {
    IPv4,
    IPv6,
    /// FQDN, or a type this version does not know: no endpoint is an IP address.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// Empty when the port has no name (the API's default).
    pub name: Box<str>,
    pub protocol: Protocol,
    /// None: all ports (the API's meaning of a port without a number).
    pub port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's name of a protocol; none for one it does not define (TCP when unset, its default).
    pub fn parse(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// One endpoint, by its first address: the only one with a meaning (EndpointSlice controllers write exactly one,
/// and kube-proxy reads no other).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: IpAddr,
    pub node: Option<Box<str>>,
    pub hostname: Option<Box<str>>,
    /// The conditions as written (unset is none).
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

impl Endpoint {
    /// Ready, unless it says it is not (the API's documented default).
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    /// Serving follows ready when unset.
    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or(self.is_ready())
    }

    pub fn is_terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

impl From<&discovery::EndpointSlice> for EndpointSlice {
    fn from(slice: &discovery::EndpointSlice) -> EndpointSlice {
        let address_type = match slice.address_type.as_str() {
            "IPv4" => AddressType::IPv4,
            "IPv6" => AddressType::IPv6,
            _ => AddressType::Other,
        };
        let labels = crate::object::labels(&slice.metadata);
        let ports = slice.ports.iter().flatten().filter_map(|p| {
            Some(SlicePort {
                name: p.name.as_deref().unwrap_or_default().into(),
                protocol: Protocol::parse(p.protocol.as_deref())?,
                port: p.port.and_then(|n| u16::try_from(n).ok()),
            })
        });
        let endpoints = slice.endpoints.iter().filter_map(|e| {
            let conditions = e.conditions.as_ref();
            Some(Endpoint {
                address: e.addresses.first()?.parse().ok()?,
                node: e.node_name.as_deref().map(Box::from),
                hostname: e.hostname.as_deref().map(Box::from),
                ready: conditions.and_then(|c| c.ready),
                serving: conditions.and_then(|c| c.serving),
                terminating: conditions.and_then(|c| c.terminating),
            })
        });
        EndpointSlice {
            metadata: ObjectMeta {
                name: slice.metadata.name.clone(),
                namespace: slice.metadata.namespace.clone(),
                resource_version: slice.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            service: labels.get(SERVICE_NAME_LABEL).map(|s| s.as_str().into()),
            address_type,
            ports: ports.collect(),
            endpoints: endpoints.collect(),
        }
    }
}

/// Back to the API's form (what was dropped stays dropped; the protocol is written out).
impl From<&EndpointSlice> for discovery::EndpointSlice {
    fn from(slice: &EndpointSlice) -> discovery::EndpointSlice {
        let mut metadata = slice.metadata.clone();
        metadata.labels = slice
            .service
            .as_ref()
            .map(|s| [(SERVICE_NAME_LABEL.to_string(), s.to_string())].into());
        let ports = slice.ports.iter().map(|p| discovery::EndpointPort {
            name: (!p.name.is_empty()).then(|| p.name.to_string()),
            protocol: Some(p.protocol.as_str().to_string()),
            port: p.port.map(i32::from),
            ..discovery::EndpointPort::default()
        });
        let endpoints = slice.endpoints.iter().map(|e| discovery::Endpoint {
            addresses: vec![e.address.to_string()],
            node_name: e.node.as_deref().map(str::to_string),
            hostname: e.hostname.as_deref().map(str::to_string),
            conditions: Some(discovery::EndpointConditions {
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
            }),
            ..discovery::Endpoint::default()
        });
        discovery::EndpointSlice {
            metadata,
            address_type: match slice.address_type {
                AddressType::IPv4 => "IPv4",
                AddressType::IPv6 => "IPv6",
                AddressType::Other => "FQDN",
            }
            .to_string(),
            ports: Some(ports.collect()),
            endpoints: endpoints.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;

    #[test]
    fn a_slice_keeps_what_the_proxy_reads() {
        let text = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: x, resourceVersion: \"4\", labels: {kubernetes.io/service-name: web, other: y}}\naddressType: IPv4\nports: [{name: http, port: 8080}, {port: 53, protocol: UDP}]\nendpoints:\n- {addresses: [10.244.1.5, 10.244.1.6], nodeName: n1, hostname: a, targetRef: {kind: Pod, name: p}}\n- {addresses: [10.244.2.5], conditions: {ready: false, serving: true, terminating: true}}\n- {addresses: [not-an-ip]}\n";
        let Object::EndpointSlice(full) = crate::parse(text, "t").unwrap().remove(0) else {
            panic!("kind");
        };
        let slice = EndpointSlice::from(&*full);
        assert_eq!(slice.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(slice.metadata.resource_version.as_deref(), Some("4"));
        assert!(slice.metadata.labels.is_none());
        assert_eq!(slice.service.as_deref(), Some("web"));
        assert_eq!(slice.address_type, AddressType::IPv4);
        assert_eq!(
            slice.ports[..],
            [
                SlicePort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: Some(8080)
                },
                SlicePort {
                    name: "".into(),
                    protocol: Protocol::Udp,
                    port: Some(53)
                },
            ]
        );
        let addresses: Vec<String> = slice.endpoints.iter().map(|e| e.address.to_string()).collect();
        assert_eq!(addresses, ["10.244.1.5", "10.244.2.5"], "first addresses that are IPs");
        let (a, b) = (&slice.endpoints[0], &slice.endpoints[1]);
        assert_eq!((a.node.as_deref(), a.hostname.as_deref()), (Some("n1"), Some("a")));
        assert_eq!((a.is_ready(), a.is_serving(), a.is_terminating()), (true, true, false));
        assert_eq!((b.is_ready(), b.is_serving(), b.is_terminating()), (false, true, true));
        // Back to the API's form and compact again: nothing more is lost.
        let back = discovery::EndpointSlice::from(&slice);
        assert_eq!(EndpointSlice::from(&back), slice);
    }
}
