//! The LoadBalancer Service weft provisions for each Gateway, in the controller's namespace, selecting the
//! controller's own pods: its address is the Gateway's, and each listener port P maps to a pod port of its own
//! (20000 and up, kept for as long as the port is), so that the data plane knows from the port a connection
//! arrives on which Gateway and listener port it is for. The data plane reads the ports back from the Services
//! as they are, so it and the controller never disagree.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub const NAMESPACE_LABEL: &str = "gateway.weft.dev/namespace";
pub const NAME_LABEL: &str = "gateway.weft.dev/name";
/// The first pod port given to a Gateway listener port.
const FIRST_POD_PORT: i32 = 20000;

/// The Gateway (namespace, name) a provisioned Service is for.
pub fn owner(service: &Service) -> Option<(&str, &str)> {
    let labels = service.metadata.labels.as_ref()?;
    Some((labels.get(NAMESPACE_LABEL)?, labels.get(NAME_LABEL)?))
}

/// The pod port serving Gateway listener port `port`, unless an older provisioned Service in `existing` claims
/// it too. Two controller replicas may each give a new Gateway the same free port from snapshots that do not yet
/// hold the other's Service; the older Service keeps the port (the same answer in every replica), the newer one
/// is rewritten with a free port and is not served until then.
pub fn pod_port(service: &Service, port: i32, existing: &[Service]) -> Option<u16> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    let Some(IntOrString::Int(n)) = &ports.iter().find(|p| p.port == port)?.target_port else {
        return None;
    };
    let age = |s: &Service| (s.metadata.creation_timestamp.clone(), s.metadata.name.clone());
    let contested = existing.iter().any(|other| {
        other.metadata.name != service.metadata.name
            && owner(other).is_some()
            && target_ports(other).any(|t| t == *n)
            && age(other) < age(service)
    });
    if contested { None } else { u16::try_from(*n).ok() }
}

/// The numeric target ports of a Service.
fn target_ports(service: &Service) -> impl Iterator<Item = i32> + '_ {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| match p.target_port {
            Some(IntOrString::Int(n)) => Some(n),
            _ => None,
        })
}

/// The LoadBalancer's addresses.
pub fn addresses(service: &Service) -> Vec<String> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref());
    ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

/// The Service's name: `gw-NAMESPACE-NAME`, shortened with a hash when that is too long for a name.
pub fn name(namespace: &str, name: &str) -> String {
    let full = format!("gw-{namespace}-{name}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = full
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{}-{:08x}", full[..54].trim_end_matches('-'), hash as u32)
}

/// The Service Gateway `namespace/gateway` should have for its listener `ports`, in `controller_namespace`,
/// selecting `selector`, with the load balancer `address` the Gateway asks for (none: any); `existing` are the
/// provisioned Services as they are (their pod ports are kept).
pub fn service(
    controller_namespace: &str,
    selector: &BTreeMap<String, String>,
    (namespace, gateway): (&str, &str),
    ports: &BTreeSet<i32>,
    address: Option<IpAddr>,
    existing: &[Service],
) -> Service {
    let mine = existing.iter().find(|s| owner(s) == Some((namespace, gateway)));
    let mut taken: BTreeSet<i32> = existing.iter().flat_map(target_ports).collect();
    let mut service_ports = Vec::new();
    for &port in ports {
        let pod = match mine.and_then(|s| pod_port(s, port, existing)) {
            Some(p) => p as i32,
            None => {
                let free = (FIRST_POD_PORT..)
                    .find(|p| !taken.contains(p))
                    .unwrap_or(FIRST_POD_PORT);
                taken.insert(free);
                free
            }
        };
        service_ports.push(ServicePort {
            name: Some(format!("port-{port}")),
            port,
            target_port: Some(IntOrString::Int(pod)),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        });
    }
    Service {
        metadata: ObjectMeta {
            name: Some(name(namespace, gateway)),
            namespace: Some(controller_namespace.to_string()),
            labels: Some(BTreeMap::from([
                (NAMESPACE_LABEL.to_string(), namespace.to_string()),
                (NAME_LABEL.to_string(), gateway.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(selector.clone()),
            ports: Some(service_ports),
            load_balancer_ip: address.map(|a| a.to_string()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gateway infra/`gateway`'s Service for listener `ports`, the provisioned Services being `existing`.
    fn provisioned(gateway: &str, ports: &[i32], existing: &[Service]) -> Service {
        let selector = BTreeMap::from([("app".to_string(), "weft-ingress".to_string())]);
        let ports = ports.iter().copied().collect();
        service("weft-ingress", &selector, ("infra", gateway), &ports, None, existing)
    }

    #[test]
    fn pod_ports_are_kept_and_new_ones_take_the_first_free() {
        let first = provisioned("a", &[80, 443], &[]);
        assert_eq!(pod_port(&first, 80, &[]), Some(20000));
        assert_eq!(pod_port(&first, 443, &[]), Some(20001));
        let second = provisioned("b", &[80], std::slice::from_ref(&first));
        assert_eq!(pod_port(&second, 80, &[]), Some(20002));
        let again = provisioned("a", &[443, 8080], &[first, second]);
        assert_eq!(pod_port(&again, 443, &[]), Some(20001));
        // A pod port given up is not taken again at once: connections to it may still be in flight.
        assert_eq!(pod_port(&again, 8080, &[]), Some(20003));
        assert_eq!(owner(&again), Some(("infra", "a")));
        assert!(name("n".repeat(40).as_str(), &"g".repeat(40)).len() <= 63);
        // An address the Gateway asks for is asked of the load balancer.
        let selector = BTreeMap::new();
        let ip = "172.18.1.200".parse().ok();
        let asked = service(
            "weft-ingress",
            &selector,
            ("infra", "c"),
            &BTreeSet::from([80]),
            ip,
            &[],
        );
        assert_eq!(asked.spec.unwrap().load_balancer_ip.as_deref(), Some("172.18.1.200"));
    }

    #[test]
    fn of_two_services_given_one_pod_port_by_two_replicas_the_older_keeps_it() {
        let at = |s: &mut Service, secs: i64| {
            let time = format!("2026-12-04T00:00:0{secs}Z");
            s.metadata.creation_timestamp = serde_json::from_value(serde_json::Value::String(time)).unwrap();
        };
        // Each replica saw only its own Gateway: both took the first free port.
        let mut a = provisioned("a", &[80], &[]);
        let mut b = provisioned("b", &[80], &[]);
        at(&mut a, 1);
        at(&mut b, 2);
        let both = [a.clone(), b.clone()];
        assert_eq!(pod_port(&a, 80, &both), Some(20000));
        assert_eq!(
            pod_port(&b, 80, &both),
            None,
            "the newer is not served on the contested port"
        );
        let b_again = provisioned("b", &[80], &both);
        assert_eq!(pod_port(&b_again, 80, &[a.clone(), b_again.clone()]), Some(20001));
        let a_again = provisioned("a", &[80], &both);
        assert_eq!(pod_port(&a_again, 80, &[]), Some(20000));
    }
}
