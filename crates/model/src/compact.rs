//! Compact forms of the objects a node component holds by the ten thousand and plans from: only the fields the
//! service proxy reads, addresses as `std::net` types, ports as `u16`, conditions as flags, enumerations as
//! enums. k8s-openapi's EndpointSlice is ~4 KB whatever it holds (every optional field of every endpoint is
//! inline, each address a string in a vector), its Service ~1.7 KB; these are ~0.7 and ~0.5 KB (of which 0.35 KB
//! are the metadata). A component's projection turns objects into these as they arrive (`Object::CompactSlice`,
//! `Object::CompactService`); readers take either form through `Object::endpoint_slice` and `Object::service`.

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
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

/// A protocol as a user types it (`weft trace`): any case.
impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::parse(Some(&s.to_ascii_uppercase()))
            .ok_or_else(|| format!("unknown protocol {s:?} (TCP, UDP or SCTP)"))
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

/// A Service, as the proxy reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Name, namespace and resourceVersion.
    pub metadata: ObjectMeta,
    pub type_: ServiceType,
    /// None for headless Services (and an address that does not parse).
    pub cluster_ip: Option<IpAddr>,
    pub ports: Box<[ServicePort]>,
    /// `sessionAffinity: ClientIP`'s timeout in seconds (Kubernetes' default of 3 hours when unset); none without
    /// affinity.
    pub affinity_timeout: Option<i32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    pub health_check_node_port: Option<u16>,
    pub external_ips: Box<[IpAddr]>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Box<[IpAddr]>,
    pub load_balancer_source_ranges: Box<[IpNet]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Empty when the port has no name.
    pub name: Box<str>,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// Kubernetes' default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

impl From<&core::Service> for Service {
    fn from(svc: &core::Service) -> Service {
        let spec = svc.spec.clone().unwrap_or_default();
        let ips = |list: Option<&Vec<String>>| -> Box<[IpAddr]> {
            list.into_iter().flatten().filter_map(|ip| ip.parse().ok()).collect()
        };
        let ports = spec.ports.iter().flatten().filter_map(|p| {
            Some(ServicePort {
                name: p.name.as_deref().unwrap_or_default().into(),
                protocol: Protocol::parse(p.protocol.as_deref())?,
                port: u16::try_from(p.port).ok()?,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            })
        });
        let ingress = (svc.status.as_ref().and_then(|s| s.load_balancer.as_ref())).and_then(|lb| lb.ingress.as_ref());
        Service {
            metadata: ObjectMeta {
                name: svc.metadata.name.clone(),
                namespace: svc.metadata.namespace.clone(),
                resource_version: svc.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            type_: match spec.type_.as_deref() {
                Some("NodePort") => ServiceType::NodePort,
                Some("LoadBalancer") => ServiceType::LoadBalancer,
                Some("ExternalName") => ServiceType::ExternalName,
                _ => ServiceType::ClusterIP,
            },
            cluster_ip: spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()),
            ports: ports.collect(),
            affinity_timeout: (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                (spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()))
                    .and_then(|c| c.timeout_seconds)
                    .unwrap_or(DEFAULT_AFFINITY_SECONDS)
            }),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            health_check_node_port: spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()),
            external_ips: ips(spec.external_ips.as_ref()),
            load_balancer_ips: ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect(),
            load_balancer_source_ranges: (spec.load_balancer_source_ranges.iter().flatten())
                .filter_map(|r| r.trim().parse().ok())
                .collect(),
        }
    }
}

/// Back to the API's form (what was dropped stays dropped; defaults are written out).
impl From<&Service> for core::Service {
    fn from(svc: &Service) -> core::Service {
        let strings =
            |ips: &[IpAddr]| Some(ips.iter().map(IpAddr::to_string).collect()).filter(|v: &Vec<_>| !v.is_empty());
        let local = |yes: bool| Some(if yes { "Local" } else { "Cluster" }.to_string());
        let ports = svc.ports.iter().map(|p| core::ServicePort {
            name: (!p.name.is_empty()).then(|| p.name.to_string()),
            protocol: Some(p.protocol.as_str().to_string()),
            port: i32::from(p.port),
            node_port: p.node_port.map(i32::from),
            ..core::ServicePort::default()
        });
        let ingress: Vec<core::LoadBalancerIngress> = (svc.load_balancer_ips.iter())
            .map(|ip| core::LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ..core::LoadBalancerIngress::default()
            })
            .collect();
        core::Service {
            metadata: svc.metadata.clone(),
            spec: Some(core::ServiceSpec {
                type_: Some(
                    match svc.type_ {
                        ServiceType::ClusterIP => "ClusterIP",
                        ServiceType::NodePort => "NodePort",
                        ServiceType::LoadBalancer => "LoadBalancer",
                        ServiceType::ExternalName => "ExternalName",
                    }
                    .to_string(),
                ),
                cluster_ip: Some(svc.cluster_ip.map_or("None".to_string(), |ip| ip.to_string())),
                ports: Some(ports.collect()),
                session_affinity: Some(
                    if svc.affinity_timeout.is_some() {
                        "ClientIP"
                    } else {
                        "None"
                    }
                    .to_string(),
                ),
                session_affinity_config: svc.affinity_timeout.map(|t| core::SessionAffinityConfig {
                    client_ip: Some(core::ClientIPConfig {
                        timeout_seconds: Some(t),
                    }),
                }),
                internal_traffic_policy: local(svc.internal_local),
                external_traffic_policy: local(svc.external_local),
                health_check_node_port: svc.health_check_node_port.map(i32::from),
                external_ips: strings(&svc.external_ips),
                load_balancer_source_ranges: Some(
                    svc.load_balancer_source_ranges.iter().map(IpNet::to_string).collect(),
                )
                .filter(|v: &Vec<_>| !v.is_empty()),
                ..core::ServiceSpec::default()
            }),
            status: Some(core::ServiceStatus {
                load_balancer: Some(core::LoadBalancerStatus {
                    ingress: Some(ingress).filter(|i| !i.is_empty()),
                }),
                ..core::ServiceStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;

    /// One object from YAML, without the API's validation: the compact forms must cope with what validation
    /// would refuse (a stored object from an older server, a protocol the API does not define).
    fn unvalidated(text: &str) -> Object {
        crate::manifest::from_value(serde_saphyr::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn protocols_read_from_the_api_exactly_and_from_users_in_any_case() {
        assert_eq!(Protocol::parse(None), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse(Some("udp")), None);
        assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
        assert_eq!("Sctp".parse::<Protocol>().map(Protocol::as_str), Ok("SCTP"));
        assert!("icmp".parse::<Protocol>().is_err());
    }

    #[test]
    fn a_slice_keeps_what_the_proxy_reads() {
        let text = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: x, resourceVersion: \"4\", labels: {kubernetes.io/service-name: web, other: z}}\naddressType: IPv4\nports: [{name: http, port: 8080}, {port: 53, protocol: UDP}]\nendpoints:\n- {addresses: [10.244.1.5, 10.244.1.6], nodeName: n1, hostname: a, targetRef: {kind: Pod, name: p}}\n- {addresses: [10.244.2.5], conditions: {ready: false, serving: true, terminating: true}}\n- {addresses: [not-an-ip]}\n";
        let Object::EndpointSlice(full) = unvalidated(text) else {
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

    #[test]
    fn a_service_keeps_what_the_proxy_reads() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x, resourceVersion: \"7\", labels: {a: b}}\nspec: {type: LoadBalancer, selector: {app: web}, clusterIP: 10.96.0.20, externalIPs: [192.0.2.1], ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}, {port: 53, protocol: UDP}, {port: 9, protocol: QUIC}], sessionAffinity: ClientIP, externalTrafficPolicy: Local, healthCheckNodePort: 31000, loadBalancerSourceRanges: [10.0.0.0/8, \"not a range\"]}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.7}, {hostname: lb.example}]}}\n";
        let Object::Service(full) = unvalidated(text) else {
            panic!("kind");
        };
        let svc = Service::from(&*full);
        assert_eq!(svc.metadata.resource_version.as_deref(), Some("7"));
        assert!(svc.metadata.labels.is_none());
        assert_eq!(svc.type_, ServiceType::LoadBalancer);
        assert_eq!(svc.cluster_ip, Some("10.96.0.20".parse().unwrap()));
        assert_eq!(
            svc.ports[..],
            [
                ServicePort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: Some(30080)
                },
                ServicePort {
                    name: "".into(),
                    protocol: Protocol::Udp,
                    port: 53,
                    node_port: None
                },
            ],
            "a protocol the API does not define is no port"
        );
        assert_eq!(svc.affinity_timeout, Some(10800), "ClientIP affinity's default timeout");
        assert!(svc.external_local && !svc.internal_local);
        assert_eq!(svc.health_check_node_port, Some(31000));
        assert_eq!(svc.external_ips[..], ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(svc.load_balancer_ips[..], ["198.51.100.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            svc.load_balancer_source_ranges[..],
            ["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        // Back to the API's form and compact again: nothing more is lost.
        let back = core::Service::from(&svc);
        assert_eq!(Service::from(&back), svc);
        let headless = "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: x}\nspec: {clusterIP: None, ports: [{port: 80}]}\n";
        let Object::Service(full) = unvalidated(headless) else {
            panic!("kind");
        };
        let svc = Service::from(&*full);
        assert_eq!(
            (svc.type_, svc.cluster_ip, svc.affinity_timeout),
            (ServiceType::ClusterIP, None, None)
        );
    }
}
