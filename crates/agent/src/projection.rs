//! What the agent keeps of each object it follows. The API sends objects whole; the agent holds each one while it
//! is current (and the version before until its next plan) and reads few of its fields, so the rest is dropped
//! as the object arrives (`KubeSource::start_with`): of Pods their containers' ports, node, host network and
//! address; of Nodes their spec and addresses (a real node's status lists every image it holds); Services and
//! EndpointSlices, the bulk of a large cluster and read by the service proxy alone, become its compact forms
//! (`weft_model::compact`: addresses as IPs, ports as numbers, no selector, references or topology); and of every
//! object its managedFields and annotations (kubectl's `last-applied-configuration` is the whole object again) but a Node's underlay address.

use weft_model::Object;
use weft_model::k8s_openapi::api::core::v1::{Container, NodeStatus, PodSpec, PodStatus};

/// Drops, in place, what the agent never reads of `object`.
pub fn keep(object: &mut Object) {
    let is_node = matches!(object, Object::Node(_));
    let meta = object.meta_mut();
    meta.managed_fields = None;
    // Of a Node's annotations, the underlay address its agent wrote (IP pools' subnets).
    meta.annotations = meta.annotations.take().filter(|_| is_node).and_then(|mut a| {
        a.retain(|k, _| k == crate::ippool::ADDRESS_ANNOTATION);
        (!a.is_empty()).then_some(a)
    });
    meta.creation_timestamp = None;
    match object {
        Object::Service(s) => *object = Object::CompactService(Box::new((&**s).into())),
        Object::EndpointSlice(s) => *object = Object::CompactSlice(Box::new((&**s).into())),
        Object::Pod(p) => {
            p.metadata.uid = None;
            p.metadata.owner_references = None;
            p.spec = p.spec.take().map(|spec| PodSpec {
                node_name: spec.node_name,
                host_network: spec.host_network,
                // Named ports are what policies may refer to.
                containers: spec
                    .containers
                    .into_iter()
                    .map(|c| Container {
                        name: c.name,
                        ports: c.ports,
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            });
            p.status = p.status.take().map(|status| PodStatus {
                pod_ip: status.pod_ip,
                pod_ips: status.pod_ips,
                phase: status.phase,
                ..PodStatus::default()
            });
        }
        Object::Node(n) => {
            n.status = n.status.take().map(|status| NodeStatus {
                addresses: status.addresses,
                ..NodeStatus::default()
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::Key;

    #[test]
    fn what_the_planners_read_is_kept() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}, annotations: {n: v}, resourceVersion: \"3\"}\nspec: {nodeName: n1, containers: [{name: c, image: nginx, env: [{name: A, value: b}], ports: [{name: http, containerPort: 80}]}]}\nstatus: {podIP: 10.244.0.5, hostIP: 172.18.0.11}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec: {selector: {app: a}, clusterIP: 10.96.0.10, ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s-1, namespace: x, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [10.244.0.5], nodeName: n1, targetRef: {kind: Pod, name: a}}]\n";
        let mut objects = weft_model::parse(text, "t").unwrap();
        let before_pod = objects[0].clone();
        objects.iter_mut().for_each(keep);
        let (Object::Pod(pod), Object::CompactService(svc)) = (&objects[0], &objects[1]) else {
            panic!("kinds");
        };
        assert_eq!(pod.metadata.labels, before_pod.meta().labels.clone());
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("3"));
        assert!(pod.metadata.annotations.is_none());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.containers[0].ports.as_ref().unwrap()[0].container_port, 80);
        assert!(spec.containers[0].image.is_none() && spec.containers[0].env.is_none());
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
        assert!(status.host_ip.is_none());
        assert_eq!(svc.cluster_ip, Some("10.96.0.10".parse().unwrap()));
        assert_eq!(svc.ports[0].port, 80);
        assert_eq!(objects[1].key(), Key::new("Service", Some("x"), "s"));
        let Object::CompactSlice(slice) = &objects[2] else {
            panic!("slices are held compact");
        };
        assert_eq!(slice.endpoints[0].node.as_deref(), Some("n1"));
        assert_eq!(objects[2].key(), Key::new("EndpointSlice", Some("x"), "s-1"));
    }
}
